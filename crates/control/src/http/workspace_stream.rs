//! `GET /workspaces/{id}/events`: what changes in a workspace, live, as
//! server-sent events — projects, documents, diagrams, tasks, conversations
//! and member grants being created, updated and deleted.
//!
//! - Without `Last-Event-ID` (or `?after=`) the stream opens with a `ready`
//!   event whose id is the workspace's current seq: load lists through the
//!   REST endpoints after it, then apply the events that follow.
//! - With `Last-Event-ID: n` it resumes with the events after `n`, without
//!   gaps or repeats; if they were pruned (or `n` is not a seq of this
//!   workspace) it sends `reset` (reload your lists) with the current seq.
//! - Each event reaches only users `can()` lets read its entity, decided
//!   when it is delivered. Events a reader may not see are skipped; an
//!   `id:`-only frame then moves their `Last-Event-ID` past them.
//! - A user who can no longer read the workspace (nor anything in it) gets
//!   `revoked` and the stream ends; nothing is sent after it.
//! - Events written by this replica wake the stream at once; other
//!   replicas' are found by the workspace's one poll loop
//!   (`TANDEM_CHAT_POLL_MS`). Streams count against
//!   `TANDEM_MAX_STREAMS_PER_USER` together with conversation streams.

use std::sync::Arc;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sse;
use crate::authz::Actor;
use crate::db::{read_tx, DbConnection};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::{AppState, State};
use crate::store::workspace_events::{self as feed, WorkspaceEvent};
use crate::streams::StreamSlot;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamParams {
    after: Option<i64>,
}

/// What one look at the database found.
enum Step {
    /// A fresh start (`ready`) or a resume that cannot be served (`reset`), at this seq.
    Start(&'static str, i64),
    /// The events the reader may see, and the seq read up to.
    Events(Vec<WorkspaceEvent>, i64),
    /// The reader lost the workspace (or it was deleted).
    Revoked(&'static str),
}

fn frame(e: &WorkspaceEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.seq,
        e.kind,
        serde_json::to_string(e).unwrap_or_default()
    ))
}

fn step(
    c: &mut DbConnection,
    actor: &Actor,
    id: &str,
    after: Option<i64>,
) -> Result<Step, ApiError> {
    read_tx(c, |c| {
        let Some((workspace, seq)) = feed::head(c, id)? else {
            return Ok(Step::Revoked("deleted"));
        };
        if !feed::may_follow(c, actor, &workspace)? {
            return Ok(Step::Revoked("access_revoked"));
        }
        let Some(after) = after else {
            return Ok(Step::Start("ready", seq));
        };
        if after == seq {
            return Ok(Step::Events(vec![], seq));
        }
        let stored = feed::after(c, id, after)?;
        // The next event must be exactly `after + 1`; if it was pruned (or
        // `after` is not a seq of this workspace) the reader starts over.
        if after > seq || stored.first().is_none_or(|e| e.seq != after + 1) {
            return Ok(Step::Start("reset", seq));
        }
        let upto = stored.last().map_or(after, |e| e.seq);
        Ok(Step::Events(
            feed::visible(c, actor, &workspace, stored)?,
            upto,
        ))
    })
}

pub async fn events(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<String>,
    params: web::Query<StreamParams>,
) -> Result<HttpResponse, ApiError> {
    let after = sse::resume_point(&req, params.after)?;
    let actor = user.actor();
    let id = id.into_inner();
    // Refuse before streaming: someone who may not follow it gets a 404.
    let check = (actor.clone(), id.clone());
    let id = state
        .db(move |c| {
            let chain = super::load::workspace(c, &check.1)?;
            if !feed::may_follow(c, &check.0, &chain.workspace)? {
                return Err(ApiError::NotFound("workspace"));
            }
            Ok(chain.workspace.id)
        })
        .await?;
    let shared = state.get_ref().clone();
    let user_id = actor.user_id.clone();
    sse::open(&state, &user_id, 64, move |tx, slot| {
        pump(shared, actor, id, after, tx, slot)
    })
}

async fn pump(
    state: Arc<AppState>,
    actor: Actor,
    id: String,
    mut after: Option<i64>,
    tx: mpsc::Sender<Bytes>,
    _slot: StreamSlot,
) {
    let mut last_sent = Instant::now();
    let mut moved = state.workspace_pollers.watch(&state, &id);
    loop {
        // Marked seen before reading, so a move during the read wakes us again.
        moved.borrow_and_update();
        let access = state.access_events.notified();
        let (a, i) = (actor.clone(), id.clone());
        let found = state.db(move |c| step(c, &a, &i, after)).await;
        let mut full_page = false;
        let mut out: Vec<Bytes> = Vec::new();
        match found {
            Ok(Step::Revoked(reason)) => {
                let data = json!({ "reason": reason });
                let _ = tx
                    .send(Bytes::from(format!("event: revoked\ndata: {data}\n\n")))
                    .await;
                return;
            }
            Ok(Step::Start(kind, seq)) => {
                after = Some(seq);
                let data = json!({ "seq": seq, "workspaceId": id });
                out.push(Bytes::from(format!(
                    "id: {seq}\nevent: {kind}\ndata: {data}\n\n"
                )));
            }
            Ok(Step::Events(list, upto)) => {
                full_page = after.is_some_and(|a| upto - a >= feed::PAGE);
                let last = list.last().map(|e| e.seq);
                out.extend(list.iter().map(frame));
                if after != Some(upto) && last != Some(upto) {
                    // Events this reader may not see: move their cursor past them.
                    out.push(Bytes::from(format!("id: {upto}\n\n")));
                }
                after = Some(upto);
            }
            Err(e) => {
                // A database hiccup: keep the stream, try again at the next tick.
                tracing::warn!(error = %e, "workspace stream could not read events");
            }
        }
        for b in out {
            if tx.send(b).await.is_err() {
                return;
            }
            last_sent = Instant::now();
        }
        if full_page {
            continue;
        }
        let pollers = &state.workspace_pollers;
        if !sse::wait(
            &state,
            pollers,
            &id,
            &tx,
            &mut moved,
            access,
            &mut last_sent,
        )
        .await
        {
            return;
        }
    }
}
