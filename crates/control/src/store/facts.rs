//! Loads the facts `authz::can` decides on: the workspace at the root of a
//! thing's chain (one indexed join) and the actor's explicit grants along that
//! chain (one indexed query on `members`).

use std::collections::HashMap;

use diesel::prelude::*;
use tandem_protocol::http::{Role, WorkspaceType};
use tandem_protocol::RoomId;

use super::{ProjectRow, ResourceRow};
use crate::authz::{ChainFacts, Facts, Level, WorkspaceFacts};
use crate::db::schema::{members, projects, resources, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspaces)]
pub struct WorkspaceRow {
    pub id: String,
    pub org_id: String,
    pub kind: String,
    pub owner_id: Option<String>,
    pub name: String,
    pub created_at: i64,
}

impl WorkspaceRow {
    pub fn kind(&self) -> WorkspaceType {
        WorkspaceType::parse(&self.kind).unwrap_or(WorkspaceType::Personal)
    }

    pub fn facts(&self) -> WorkspaceFacts {
        WorkspaceFacts {
            kind: self.kind(),
            org_id: self.org_id.clone(),
            owner_id: self.owner_id.clone(),
        }
    }
}

/// The ids along a thing's chain, root first.
#[derive(Debug, Clone)]
pub struct Chain {
    pub workspace: WorkspaceRow,
    pub project_id: Option<String>,
    pub resource_id: Option<String>,
}

/// The actor's explicit grants, by scope id.
pub type Grants = HashMap<String, Role>;

impl Chain {
    pub fn for_workspace(workspace: WorkspaceRow) -> Chain {
        Chain {
            workspace,
            project_id: None,
            resource_id: None,
        }
    }

    /// The ids along the chain, each with its level.
    pub fn scopes(&self) -> Vec<(Level, &str)> {
        let mut v = vec![(Level::Workspace, self.workspace.id.as_str())];
        v.extend(self.project_id.as_deref().map(|p| (Level::Project, p)));
        v.extend(self.resource_id.as_deref().map(|r| (Level::Resource, r)));
        v
    }

    /// The facts of this chain, given the actor's grants (loaded for it or for many chains).
    pub fn facts(&self, grants: &Grants) -> Facts {
        Facts::Chain(ChainFacts {
            workspace: self.workspace.facts(),
            grants: self
                .scopes()
                .into_iter()
                .filter_map(|(level, id)| grants.get(id).map(|r| (level, *r)))
                .collect(),
        })
    }
}

/// The actor's explicit grants on any of the given scope ids, in one query.
pub fn grants_for(
    conn: &mut DbConnection,
    user_id: &str,
    ids: &[&str],
) -> Result<Grants, ApiError> {
    let mut grants = Grants::new();
    // Bounded batches keep the bind-parameter count portable.
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String)> = members::table
            .filter(members::user_id.eq(user_id))
            .filter(members::scope_id.eq_any(chunk))
            .select((members::scope_id, members::role))
            .load(conn)?;
        grants.extend(
            rows.into_iter()
                .filter_map(|(scope, role)| Some((scope, Role::parse(&role)?))),
        );
    }
    Ok(grants)
}

/// Facts for one chain and one actor.
pub fn for_chain(conn: &mut DbConnection, user_id: &str, chain: &Chain) -> Result<Facts, ApiError> {
    let ids: Vec<&str> = chain.scopes().into_iter().map(|(_, id)| id).collect();
    Ok(chain.facts(&grants_for(conn, user_id, &ids)?))
}

pub fn workspace(conn: &mut DbConnection, id: &str) -> Result<Option<WorkspaceRow>, ApiError> {
    Ok(workspaces::table
        .find(id)
        .select(WorkspaceRow::as_select())
        .first(conn)
        .optional()?)
}

/// A project and the chain above it.
pub fn project(conn: &mut DbConnection, id: &str) -> Result<Option<(ProjectRow, Chain)>, ApiError> {
    let row: Option<(ProjectRow, WorkspaceRow)> = projects::table
        .inner_join(workspaces::table)
        .filter(projects::id.eq(id))
        .select((ProjectRow::as_select(), WorkspaceRow::as_select()))
        .first(conn)
        .optional()?;
    Ok(row.map(|(p, w)| {
        let chain = Chain {
            workspace: w,
            project_id: Some(p.id.clone()),
            resource_id: None,
        };
        (p, chain)
    }))
}

/// The resource of a room (of the room's type) and the chain above it.
pub fn room(
    conn: &mut DbConnection,
    room: &RoomId,
) -> Result<Option<(ResourceRow, Chain)>, ApiError> {
    Ok(resource(conn, &room.resource_id)?.filter(|(r, _)| r.kind == room.resource_type.as_str()))
}

/// A document, diagram or task and the chain above it.
pub fn resource(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<(ResourceRow, Chain)>, ApiError> {
    let row: Option<(ResourceRow, WorkspaceRow)> = resources::table
        .inner_join(projects::table.inner_join(workspaces::table))
        .filter(resources::id.eq(id))
        .select((ResourceRow::as_select(), WorkspaceRow::as_select()))
        .first(conn)
        .optional()?;
    Ok(row.map(|(r, w)| {
        let chain = Chain {
            workspace: w,
            project_id: Some(r.project_id.clone()),
            resource_id: Some(r.id.clone()),
        };
        (r, chain)
    }))
}
