//! The workspace event feed: what `GET /workspaces/{id}/events` streams.
//!
//! Every change to a project, document, diagram, task, conversation or
//! member grant in a workspace is written here ([`record`]) in the same
//! transaction as the change. Each workspace numbers its events 1, 2, 3…
//! (`workspaces.event_seq`): [`record`] bumps it first — an UPDATE that locks
//! the workspace row — so the events of one workspace commit in `seq` order
//! and a reader that has seen `n` never later finds a smaller one.
//!
//! Who sees an event is decided when it is delivered ([`visible`]), with
//! `can()` over the facts as they are then: a grant removed mid-stream stops
//! delivery at once.

use std::cell::RefCell;
use std::collections::HashSet;

use diesel::prelude::*;
use serde_json::Value;

pub use tandem_protocol::http::WorkspaceEvent;

use super::facts::{self, grants_for, Chain, WorkspaceRow};
use super::{conversations, now_ms};
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::db::schema::{members, projects, resources, workspace_events, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;

/// Events older than this may be pruned; a reader resuming from before the
/// oldest kept event is told to `reset` (reload its lists).
pub const RETENTION_MS: i64 = 60 * 60 * 1000;
/// Most events one read returns.
pub const PAGE: i64 = 500;

thread_local! {
    /// Workspaces that got events on this thread since [`take_pending`]:
    /// `AppState::db` wakes their streams once the work (and its commit) is done.
    static PENDING: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// The workspaces written to on this thread since the last call.
pub fn take_pending() -> Vec<String> {
    PENDING.with(|p| p.borrow_mut().drain().collect())
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Project,
    Document,
    Diagram,
    Task,
    Conversation,
    Member,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Project => "project",
            Entity::Document => "document",
            Entity::Diagram => "diagram",
            Entity::Task => "task",
            Entity::Conversation => "conversation",
            Entity::Member => "member",
        }
    }

    fn parse(s: &str) -> Option<Entity> {
        Some(match s {
            "project" => Entity::Project,
            "document" => Entity::Document,
            "diagram" => Entity::Diagram,
            "task" => Entity::Task,
            "conversation" => Entity::Conversation,
            "member" => Entity::Member,
            _ => return None,
        })
    }

    /// The entity of a resource row's `kind` (`doc`, `diagram`, `task`).
    pub fn of_resource_kind(kind: &str) -> Entity {
        match kind {
            "diagram" => Entity::Diagram,
            "task" => Entity::Task,
            _ => Entity::Document,
        }
    }

    fn authz_kind(self) -> ResourceKind {
        match self {
            Entity::Project => ResourceKind::Project,
            Entity::Document => ResourceKind::Document,
            Entity::Diagram => ResourceKind::Diagram,
            Entity::Task => ResourceKind::Task,
            Entity::Conversation => ResourceKind::Conversation,
            Entity::Member => ResourceKind::Workspace,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Created,
    Updated,
    Deleted,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Created => "created",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
        }
    }
}

/// One change, as [`record`] writes it.
pub struct Change<'a> {
    pub entity: Entity,
    pub op: Op,
    pub id: &'a str,
    pub project_id: Option<&'a str>,
    /// The entity as of the change, without anyone's `role` (removed if present).
    pub data: Value,
    /// Users who get the event besides those `can()` lets read the entity
    /// (a deleted thing's grantees, a removed participant).
    pub audience: Vec<String>,
}

/// Records a change in workspace `workspace_id`. Call inside a write
/// transaction. A workspace that no longer exists records nothing.
pub fn record(
    conn: &mut DbConnection,
    workspace_id: &str,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let n = diesel::update(workspaces::table.find(workspace_id))
        .set(workspaces::event_seq.eq(workspaces::event_seq + 1))
        .execute(conn)?;
    if n == 0 {
        return Ok(());
    }
    let seq: i64 = workspaces::table
        .find(workspace_id)
        .select(workspaces::event_seq)
        .first(conn)?;
    let mut data = change.data;
    if let Some(o) = data.as_object_mut() {
        o.remove("role");
    }
    let audience = (!change.audience.is_empty())
        .then(|| serde_json::to_string(&change.audience).unwrap_or_default());
    let now = now_ms();
    let kind = format!("{}.{}", change.entity.as_str(), change.op.as_str());
    diesel::insert_into(workspace_events::table)
        .values((
            workspace_events::workspace_id.eq(workspace_id),
            workspace_events::seq.eq(seq),
            workspace_events::kind.eq(&kind),
            workspace_events::entity_id.eq(change.id),
            workspace_events::project_id.eq(change.project_id),
            workspace_events::data.eq(data.to_string()),
            workspace_events::audience.eq(audience),
            workspace_events::created_at.eq(now),
        ))
        .execute(conn)?;
    // Members and documents are announced to the org's webhooks too.
    super::webhooks::from_feed(conn, workspace_id, &kind, &data)?;
    if seq % PRUNE_EVERY == 0 {
        prune(conn, workspace_id, now)?;
    }
    PENDING.with(|p| p.borrow_mut().insert(workspace_id.to_string()));
    Ok(())
}

/// A workspace's expired events are looked for once per this many events
/// (not on every write, which holds the workspace row).
const PRUNE_EVERY: i64 = 64;

/// Drops a workspace's events older than the retention — always a prefix
/// of its seqs, never a hole, even if replicas' clocks disagree.
fn prune(conn: &mut DbConnection, workspace_id: &str, now: i64) -> Result<(), ApiError> {
    let newest_expired: Option<i64> = workspace_events::table
        .filter(workspace_events::workspace_id.eq(workspace_id))
        .filter(workspace_events::created_at.lt(now - RETENTION_MS))
        .select(diesel::dsl::max(workspace_events::seq))
        .first(conn)?;
    if let Some(upto) = newest_expired {
        diesel::delete(
            workspace_events::table
                .filter(workspace_events::workspace_id.eq(workspace_id))
                .filter(workspace_events::seq.le(upto)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// The workspace a project belongs to.
pub fn workspace_of_project(
    conn: &mut DbConnection,
    project_id: &str,
) -> Result<Option<String>, ApiError> {
    Ok(projects::table
        .find(project_id)
        .select(projects::workspace_id)
        .first(conn)
        .optional()?)
}

/// The workspace and project of a grant's scope (`workspace`, `project`,
/// `doc`, `diagram`).
pub fn scope_place(
    conn: &mut DbConnection,
    scope_kind: &str,
    scope_id: &str,
) -> Result<Option<(String, Option<String>)>, ApiError> {
    Ok(match scope_kind {
        "workspace" => Some((scope_id.to_string(), None)),
        "project" => workspace_of_project(conn, scope_id)?.map(|w| (w, Some(scope_id.to_string()))),
        _ => resources::table
            .inner_join(projects::table)
            .filter(resources::id.eq(scope_id))
            .select((projects::workspace_id, projects::id))
            .first::<(String, String)>(conn)
            .optional()?
            .map(|(w, p)| (w, Some(p))),
    })
}

/// Who holds an explicit grant on a scope (the audience of its deletion).
pub fn grantees(conn: &mut DbConnection, scope_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(members::table
        .filter(members::scope_id.eq(scope_id))
        .select(members::user_id)
        .load(conn)?)
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub kind: String,
    pub entity_id: String,
    pub project_id: Option<String>,
    pub data: Value,
    pub audience: Vec<String>,
}

/// Events of a workspace after `after`, oldest first, at most [`PAGE`].
pub fn after(
    conn: &mut DbConnection,
    workspace_id: &str,
    after: i64,
) -> Result<Vec<StoredEvent>, ApiError> {
    type Row = (i64, String, String, Option<String>, String, Option<String>);
    let rows: Vec<Row> = workspace_events::table
        .filter(workspace_events::workspace_id.eq(workspace_id))
        .filter(workspace_events::seq.gt(after))
        .order(workspace_events::seq.asc())
        .limit(PAGE)
        .select((
            workspace_events::seq,
            workspace_events::kind,
            workspace_events::entity_id,
            workspace_events::project_id,
            workspace_events::data,
            workspace_events::audience,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, kind, entity_id, project_id, data, audience)| StoredEvent {
                seq,
                kind,
                entity_id,
                project_id,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
                audience: audience
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_default(),
            },
        )
        .collect())
}

/// The workspace row with its current `event_seq`.
pub fn head(
    conn: &mut DbConnection,
    workspace_id: &str,
) -> Result<Option<(WorkspaceRow, i64)>, ApiError> {
    let Some(w) = facts::workspace(conn, workspace_id)? else {
        return Ok(None);
    };
    let seq: i64 = workspaces::table
        .find(workspace_id)
        .select(workspaces::event_seq)
        .first(conn)?;
    Ok(Some((w, seq)))
}

/// The current `event_seq` of a workspace (`None` once it is gone), what
/// poll loops watch.
pub fn seq(conn: &mut DbConnection, workspace_id: &str) -> Result<Option<i64>, ApiError> {
    Ok(workspaces::table
        .find(workspace_id)
        .select(workspaces::event_seq)
        .first(conn)
        .optional()?)
}

/// Whether the actor may follow the workspace: they can read it, or hold a
/// grant on something in it (a project, document or diagram shared with them).
pub fn may_follow(
    conn: &mut DbConnection,
    actor: &Actor,
    workspace: &WorkspaceRow,
) -> Result<bool, ApiError> {
    let chain = Chain::for_workspace(workspace.clone());
    let facts = facts::for_chain(conn, &actor.user_id, &chain)?;
    if authz::can(actor, Action::Read, ResourceKind::Workspace, &facts)
        .into_result()
        .is_ok()
    {
        return Ok(true);
    }
    let in_projects = projects::table
        .filter(projects::workspace_id.eq(&workspace.id))
        .select(projects::id);
    let project_grants: i64 = members::table
        .filter(members::user_id.eq(&actor.user_id))
        .filter(members::scope_id.eq_any(in_projects))
        .count()
        .get_result(conn)?;
    if project_grants > 0 {
        return Ok(true);
    }
    let in_resources = resources::table
        .inner_join(projects::table)
        .filter(projects::workspace_id.eq(&workspace.id))
        .select(resources::id);
    let resource_grants: i64 = members::table
        .filter(members::user_id.eq(&actor.user_id))
        .filter(members::scope_id.eq_any(in_resources))
        .count()
        .get_result(conn)?;
    Ok(resource_grants > 0)
}

/// The events of `events` the actor may see now, each with the actor's
/// role in its data. Decided with `can()` over the current facts.
pub fn visible(
    conn: &mut DbConnection,
    actor: &Actor,
    workspace: &WorkspaceRow,
    events: Vec<StoredEvent>,
) -> Result<Vec<WorkspaceEvent>, ApiError> {
    let mut out = Vec::new();
    for e in events {
        if let Some(data) = deliverable(conn, actor, workspace, &e)? {
            out.push(WorkspaceEvent {
                seq: e.seq,
                kind: e.kind,
                id: e.entity_id,
                project_id: e.project_id,
                data,
            });
        }
    }
    Ok(out)
}

/// The data the actor gets for `e`, or `None` when they may not see it.
fn deliverable(
    conn: &mut DbConnection,
    actor: &Actor,
    workspace: &WorkspaceRow,
    e: &StoredEvent,
) -> Result<Option<Value>, ApiError> {
    let (entity, op) = match e.kind.split_once('.') {
        Some((entity, op)) => (Entity::parse(entity), op),
        None => (None, ""),
    };
    let Some(entity) = entity else {
        return Ok(None);
    };
    let deleted = op == "deleted";
    let in_audience = e.audience.contains(&actor.user_id);
    let with_role = |role: Option<authz::Role>| -> Option<Value> {
        let mut data = e.data.clone();
        if let (Some(role), Some(o)) = (role, data.as_object_mut()) {
            o.insert("role".into(), Value::String(role.as_str().into()));
        }
        Some(data)
    };
    match entity {
        Entity::Conversation => {
            if deleted {
                return Ok(in_audience.then(|| e.data.clone()));
            }
            let Some((_, facts)) = conversations::load(conn, &e.entity_id, &actor.user_id)? else {
                return Ok(None);
            };
            let role = authz::can(
                actor,
                Action::Read,
                ResourceKind::Conversation,
                &facts.into(),
            )
            .into_result()
            .ok();
            Ok(role.and_then(|r| with_role(Some(r))))
        }
        Entity::Member => {
            if e.data["userId"] == actor.user_id.as_str() {
                return Ok(Some(e.data.clone()));
            }
            let chain = Chain {
                workspace: workspace.clone(),
                project_id: e.project_id.clone(),
                resource_id: e.data["scopeKind"]
                    .as_str()
                    .filter(|k| !matches!(*k, "workspace" | "project"))
                    .and_then(|_| e.data["scopeId"].as_str())
                    .map(str::to_string),
            };
            let kind = if chain.resource_id.is_some() {
                ResourceKind::Document
            } else if chain.project_id.is_some() {
                ResourceKind::Project
            } else {
                ResourceKind::Workspace
            };
            Ok(readable(conn, actor, &chain, kind)?.map(|_| e.data.clone()))
        }
        Entity::Project | Entity::Document | Entity::Diagram | Entity::Task => {
            let chain = if entity == Entity::Project {
                Chain {
                    workspace: workspace.clone(),
                    project_id: Some(e.entity_id.clone()),
                    resource_id: None,
                }
            } else {
                Chain {
                    workspace: workspace.clone(),
                    project_id: e.project_id.clone(),
                    resource_id: Some(e.entity_id.clone()),
                }
            };
            if !deleted && !exists(conn, entity, &e.entity_id)? {
                // Gone since; its `deleted` event follows.
                return Ok(None);
            }
            let role = readable(conn, actor, &chain, entity.authz_kind())?;
            if deleted {
                return Ok((role.is_some() || in_audience).then(|| e.data.clone()));
            }
            Ok(role.and_then(|r| with_role(Some(r))))
        }
    }
}

fn exists(conn: &mut DbConnection, entity: Entity, id: &str) -> Result<bool, ApiError> {
    let n: i64 = if entity == Entity::Project {
        projects::table
            .filter(projects::id.eq(id))
            .count()
            .get_result(conn)?
    } else {
        resources::table
            .filter(resources::id.eq(id))
            .count()
            .get_result(conn)?
    };
    Ok(n > 0)
}

/// The actor's role on the thing at the end of `chain`, if they may read it.
fn readable(
    conn: &mut DbConnection,
    actor: &Actor,
    chain: &Chain,
    kind: ResourceKind,
) -> Result<Option<authz::Role>, ApiError> {
    let ids: Vec<&str> = chain.scopes().into_iter().map(|(_, id)| id).collect();
    let grants = grants_for(conn, &actor.user_id, &ids)?;
    Ok(authz::can(actor, Action::Read, kind, &chain.facts(&grants))
        .into_result()
        .ok())
}
