//! Workspaces visible to a user, with the user's effective role on each.

use diesel::prelude::*;
use tandem_protocol::http::WorkspaceSummary;

use super::facts::{grants_for, Chain};
use super::WorkspaceRow;
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::db::schema::{members, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;

/// Every workspace the actor may read: their personal one, their org's team
/// one, and those they were made members of — each checked with `can`.
pub fn visible(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<WorkspaceSummary>, ApiError> {
    let member_of = members::table
        .filter(members::user_id.eq(&actor.user_id))
        .filter(members::scope_kind.eq("workspace"))
        .select(members::scope_id);
    let rows: Vec<WorkspaceRow> = workspaces::table
        .filter(
            workspaces::owner_id
                .eq(&actor.user_id)
                .and(workspaces::kind.eq("personal"))
                .or(workspaces::org_id
                    .eq(&actor.org_id)
                    .and(workspaces::kind.eq("team")))
                .or(workspaces::id.eq_any(member_of)),
        )
        .order((workspaces::created_at.asc(), workspaces::id.asc()))
        .select(WorkspaceRow::as_select())
        .load(conn)?;
    let ids: Vec<&str> = rows.iter().map(|w| w.id.as_str()).collect();
    let grants = grants_for(conn, &actor.user_id, &ids)?;
    Ok(rows
        .into_iter()
        .filter_map(|w| {
            let chain = Chain::for_workspace(w);
            let facts = chain.facts(&grants);
            let role = authz::can(actor, Action::Read, ResourceKind::Workspace, &facts)
                .into_result()
                .ok()?;
            let w = chain.workspace;
            Some(WorkspaceSummary {
                kind: w.kind(),
                id: w.id,
                name: w.name,
                role,
            })
        })
        .collect())
}
