//! Documents, diagrams and tasks: one table, told apart by `kind`.

use diesel::prelude::*;
use tandem_protocol::http::Role;
use tandem_protocol::ResourceType;

use super::facts::{grants_for, Chain};
use super::now_ms;
use super::workspace_events::{self as feed, Change, Entity, Op};
use crate::authz::{self, Action, Actor};
use crate::crypto;
use crate::db::schema::{members, resources};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::http::paths::Kind;
use crate::page::{cut, PageReq, Paged};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = resources)]
pub struct ResourceRow {
    pub id: String,
    pub kind: String,
    pub project_id: String,
    pub title: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ResourceRow {
    pub fn resource_type(&self) -> Option<ResourceType> {
        self.kind.parse().ok()
    }

    pub fn to_dto(
        &self,
        resource_type: ResourceType,
        role: Role,
    ) -> tandem_protocol::http::Resource {
        tandem_protocol::http::Resource {
            id: self.id.clone(),
            project_id: self.project_id.clone(),
            resource_type,
            title: self.title.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            role,
        }
    }
}

/// One page of the resources of one kind in a project that the actor may
/// read, oldest first, and the cursor of the next page (rows the actor may
/// not read are dropped after paging, so a page can be short).
pub fn list(
    conn: &mut DbConnection,
    actor: &Actor,
    project: &Chain,
    kind: Kind,
    page: &PageReq,
) -> Result<Paged<(ResourceRow, Role)>, ApiError> {
    let project_id = project.project_id.as_deref().unwrap_or_default();
    let mut query = resources::table
        .filter(resources::project_id.eq(project_id))
        .filter(resources::kind.eq(kind.resource_type().as_str()))
        .order((resources::created_at.asc(), resources::id.asc()))
        .select(ResourceRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            resources::created_at.gt(*at).or(resources::created_at
                .eq(*at)
                .and(resources::id.gt(id.clone()))),
        );
    }
    let (rows, next) = cut(query.load(conn)?, page, |r: &ResourceRow| {
        (r.created_at, r.id.as_str())
    });
    let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    ids.extend(project.scopes().into_iter().map(|(_, id)| id));
    let grants = grants_for(conn, &actor.user_id, &ids)?;
    let mut chain = project.clone();
    let readable = rows
        .into_iter()
        .filter_map(|r| {
            chain.resource_id = Some(r.id.clone());
            let facts = chain.facts(&grants);
            let role = authz::can(actor, Action::Read, kind.authz_kind(), &facts)
                .into_result()
                .ok()?;
            Some((r, role))
        })
        .collect();
    Ok((readable, next))
}

/// Creates a resource; for kinds with members its creator becomes its owner.
pub fn create(
    conn: &mut DbConnection,
    creator: &str,
    project_id: &str,
    kind: Kind,
    title: &str,
) -> Result<ResourceRow, ApiError> {
    let now = now_ms();
    let row = ResourceRow {
        id: crypto::new_id(),
        kind: kind.resource_type().as_str().to_string(),
        project_id: project_id.to_string(),
        title: title.to_string(),
        created_by: creator.to_string(),
        created_at: now,
        updated_at: now,
    };
    write_tx(conn, |c| {
        diesel::insert_into(resources::table)
            .values(&row)
            .execute(c)?;
        if kind.authz_kind().has_members() {
            super::members::insert(c, kind.scope_kind(), &row.id, creator, Role::Owner)?;
        }
        announce(c, &row, Op::Created, vec![])?;
        Ok::<_, ApiError>(())
    })?;
    Ok(row)
}

/// Writes a resource change to its workspace's feed.
fn announce(
    c: &mut DbConnection,
    row: &ResourceRow,
    op: Op,
    audience: Vec<String>,
) -> Result<(), ApiError> {
    let Some(workspace_id) = feed::workspace_of_project(c, &row.project_id)? else {
        return Ok(());
    };
    let data = match (op, row.resource_type()) {
        (Op::Deleted, _) | (_, None) => {
            serde_json::json!({ "id": row.id, "projectId": row.project_id })
        }
        (_, Some(t)) => serde_json::json!(row.to_dto(t, Role::Viewer)),
    };
    let change = Change {
        entity: Entity::of_resource_kind(&row.kind),
        op,
        id: &row.id,
        project_id: Some(&row.project_id),
        data,
        audience,
    };
    feed::record(c, &workspace_id, change)
}

pub fn retitle(conn: &mut DbConnection, id: &str, title: &str) -> Result<ResourceRow, ApiError> {
    write_tx(conn, |c| {
        diesel::update(resources::table.find(id))
            .set((
                resources::title.eq(title),
                resources::updated_at.eq(now_ms()),
            ))
            .execute(c)?;
        let row = resources::table
            .find(id)
            .select(ResourceRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("resource"))?;
        announce(c, &row, Op::Updated, vec![])?;
        Ok(row)
    })
}

/// Deletes a resource and the grants on it; everyone in its room is re-checked.
pub fn delete(conn: &mut DbConnection, row: &ResourceRow) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        let audience = feed::grantees(c, &row.id)?;
        announce(c, row, Op::Deleted, audience)?;
        diesel::delete(members::table.filter(members::scope_id.eq(&row.id))).execute(c)?;
        diesel::delete(resources::table.find(&row.id)).execute(c)?;
        let room = format!("{}-{}", row.kind, row.id);
        super::snapshots::delete(c, &room)?;
        super::events::record(c, Some(&room), None)?;
        Ok(())
    })
}
