//! Workspaces visible to a user, with the user's effective role on each.

use diesel::prelude::*;
use tandem_protocol::http::WorkspaceSummary;

use super::facts::{grants_for, Chain};
use super::WorkspaceRow;
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::db::schema::{members, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::page::{cut, PageReq};

/// Every workspace the actor may read: their personal one, their org's team
/// one, and those they were made members of — each checked with `can`.
pub fn visible(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<WorkspaceSummary>, ApiError> {
    Ok(visible_page(conn, actor, None)?.0)
}

/// [`visible`], one page at a time (every one without a page), and the
/// cursor of the next page (unreadable rows are dropped after paging).
pub fn visible_page(
    conn: &mut DbConnection,
    actor: &Actor,
    page: Option<&PageReq>,
) -> Result<(Vec<WorkspaceSummary>, Option<String>), ApiError> {
    let member_of = members::table
        .filter(members::user_id.eq(&actor.user_id))
        .filter(members::scope_kind.eq("workspace"))
        .select(members::scope_id);
    let mut query = workspaces::table
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
        .into_boxed();
    let (rows, next) = match page {
        None => (query.load(conn)?, None),
        Some(page) => {
            query = query.limit(page.fetch());
            if let Some((at, id)) = &page.after {
                query = query.filter(
                    workspaces::created_at.gt(*at).or(workspaces::created_at
                        .eq(*at)
                        .and(workspaces::id.gt(id.clone()))),
                );
            }
            cut(query.load(conn)?, page, |w: &WorkspaceRow| {
                (w.created_at, w.id.as_str())
            })
        }
    };
    let ids: Vec<&str> = rows.iter().map(|w| w.id.as_str()).collect();
    let grants = grants_for(conn, &actor.user_id, &ids)?;
    let readable = rows
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
        .collect();
    Ok((readable, next))
}
