//! Projects: rows, listing within a workspace, create, rename, delete.

use diesel::prelude::*;
use tandem_protocol::http::Role;

use super::facts::{grants_for, Chain};
use super::workspace_events::{self as feed, Change, Entity, Op};
use super::{now_ms, WorkspaceRow};
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::crypto;
use crate::db::schema::{members, projects, resources};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{cut, PageReq, Paged};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
pub struct ProjectRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProjectRow {
    pub fn to_dto(&self, role: Role) -> tandem_protocol::http::Project {
        tandem_protocol::http::Project {
            id: self.id.clone(),
            workspace_id: self.workspace_id.clone(),
            name: self.name.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            role,
        }
    }
}

/// One page of the projects of a workspace the actor may read, each with
/// their role, oldest first; and the cursor of the next page. (Rows the
/// actor may not read are dropped after paging, so a page can be short.)
pub fn list(
    conn: &mut DbConnection,
    actor: &Actor,
    workspace: &WorkspaceRow,
    page: &PageReq,
) -> Result<Paged<(ProjectRow, Role)>, ApiError> {
    let mut query = projects::table
        .filter(projects::workspace_id.eq(&workspace.id))
        .order((projects::created_at.asc(), projects::id.asc()))
        .select(ProjectRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            projects::created_at.gt(*at).or(projects::created_at
                .eq(*at)
                .and(projects::id.gt(id.clone()))),
        );
    }
    let (rows, next) = cut(query.load(conn)?, page, |p: &ProjectRow| {
        (p.created_at, p.id.as_str())
    });
    let mut ids: Vec<&str> = rows.iter().map(|p| p.id.as_str()).collect();
    ids.push(&workspace.id);
    let grants = grants_for(conn, &actor.user_id, &ids)?;
    let mut chain = Chain::for_workspace(workspace.clone());
    let readable = rows
        .into_iter()
        .filter_map(|p| {
            chain.project_id = Some(p.id.clone());
            let facts = chain.facts(&grants);
            let role = authz::can(actor, Action::Read, ResourceKind::Project, &facts)
                .into_result()
                .ok()?;
            Some((p, role))
        })
        .collect();
    Ok((readable, next))
}

/// Creates a project; its creator becomes its owner (an explicit grant).
pub fn create(
    conn: &mut DbConnection,
    creator: &str,
    workspace_id: &str,
    name: &str,
) -> Result<ProjectRow, ApiError> {
    let now = now_ms();
    let row = ProjectRow {
        id: crypto::new_id(),
        workspace_id: workspace_id.to_string(),
        name: name.to_string(),
        created_by: creator.to_string(),
        created_at: now,
        updated_at: now,
    };
    write_tx(conn, |c| {
        diesel::insert_into(projects::table)
            .values(&row)
            .execute(c)?;
        super::members::insert(c, "project", &row.id, creator, Role::Owner)?;
        feed::record(c, workspace_id, change(&row, Op::Created, vec![]))?;
        Ok::<_, ApiError>(())
    })?;
    Ok(row)
}

/// A project change for the workspace feed.
fn change(row: &ProjectRow, op: Op, audience: Vec<String>) -> Change<'_> {
    Change {
        entity: Entity::Project,
        op,
        id: &row.id,
        project_id: Some(&row.id),
        data: if op == Op::Deleted {
            serde_json::json!({ "id": row.id, "workspaceId": row.workspace_id })
        } else {
            serde_json::json!(row.to_dto(Role::Viewer))
        },
        audience,
    }
}

pub fn rename(conn: &mut DbConnection, id: &str, name: &str) -> Result<ProjectRow, ApiError> {
    write_tx(conn, |c| {
        diesel::update(projects::table.find(id))
            .set((projects::name.eq(name), projects::updated_at.eq(now_ms())))
            .execute(c)?;
        let row = projects::table
            .find(id)
            .select(ProjectRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("project"))?;
        feed::record(c, &row.workspace_id, change(&row, Op::Updated, vec![]))?;
        Ok(row)
    })
}

/// Deletes a project, its documents, diagrams and tasks, and every grant on them.
pub fn delete(conn: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        let project: Option<ProjectRow> = projects::table
            .find(id)
            .select(ProjectRow::as_select())
            .first(c)
            .optional()?;
        let children: Vec<(String, String)> = resources::table
            .filter(resources::project_id.eq(id))
            .select((resources::kind, resources::id))
            .load(c)?;
        for (kind, rid) in &children {
            if let Some(p) = &project {
                let audience = feed::grantees(c, rid)?;
                let gone = Change {
                    entity: Entity::of_resource_kind(kind),
                    op: Op::Deleted,
                    id: rid,
                    project_id: Some(id),
                    data: serde_json::json!({ "id": rid, "projectId": id }),
                    audience,
                };
                feed::record(c, &p.workspace_id, gone)?;
            }
            diesel::delete(members::table.filter(members::scope_id.eq(rid))).execute(c)?;
            let room = format!("{kind}-{rid}");
            super::snapshots::delete(c, &room)?;
            super::events::record(c, Some(&room), None)?;
        }
        if let Some(p) = &project {
            let audience = feed::grantees(c, id)?;
            feed::record(c, &p.workspace_id, change(p, Op::Deleted, audience))?;
        }
        diesel::delete(members::table.filter(members::scope_id.eq(id))).execute(c)?;
        diesel::delete(resources::table.filter(resources::project_id.eq(id))).execute(c)?;
        diesel::delete(projects::table.find(id)).execute(c)?;
        Ok::<_, ApiError>(())
    })
}
