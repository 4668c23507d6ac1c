//! `GET /conversations/{id}/events`: the conversation live, as server-sent
//! events.
//!
//! - Without `Last-Event-ID` (or `?after=`) the stream opens with a
//!   `snapshot` event (the conversation and its messages) whose id is the
//!   conversation's current seq; every later event has the next seq.
//! - With `Last-Event-ID: n` it resumes with the events after `n`, without
//!   gaps or repeats; if they were pruned (or `n` is not a seq of this
//!   conversation) it sends a fresh `snapshot` instead.
//! - Events written by this replica wake the stream at once; events written
//!   by other replicas are found by the conversation's one poll loop
//!   (`streams::Pollers`, every `TANDEM_CHAT_POLL_MS`), shared by all its
//!   streams on this replica. A stream reads the database only when the
//!   conversation moved, when access changed on this replica, and every 15 s.
//! - Access is re-checked on every such read: a removed participant or a
//!   deleted conversation gets a final `closed` event and the stream ends.
//! - A user holds at most `TANDEM_MAX_STREAMS_PER_USER` streams per replica (429).
//! - A comment line after `TANDEM_CHAT_KEEPALIVE_MS` (15 s) of silence keeps
//!   proxies from timing the stream out, and finds clients that went away.

use std::sync::Arc;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tandem_protocol::chat::ConversationEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conversations::authorized;
use super::sse;
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::db::{read_tx, DbConnection};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::{AppState, State};
use crate::store::conversations::ConversationRow;
use crate::store::{chat_events, conversations, messages};
use crate::streams::StreamSlot;
use tandem_protocol::http::{Role, MAX_PAGE};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamParams {
    after: Option<i64>,
}

/// What one look at the database found.
enum Step {
    Snapshot(ConversationEvent),
    Events(Vec<ConversationEvent>),
    /// The viewer lost access, or the conversation was deleted.
    Closed(&'static str),
}

fn frame(e: &ConversationEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.seq,
        e.kind,
        serde_json::to_string(e).unwrap_or_default()
    ))
}

/// The conversation and its newest messages (at most `MAX_PAGE`; with
/// `olderMessages: true` when earlier ones exist, read through
/// `GET …/messages`) as of its current seq. Called inside a read snapshot:
/// writers change messages and bump the seq in one transaction, so the two agree.
fn snapshot(
    c: &mut DbConnection,
    row: &ConversationRow,
    role: Role,
) -> Result<ConversationEvent, ApiError> {
    let (messages, older) = messages::latest(c, &row.id, MAX_PAGE)?;
    Ok(ConversationEvent {
        seq: row.event_seq,
        kind: "snapshot".into(),
        data: json!({
            "conversation": row.to_dto(role),
            "messages": messages,
            "olderMessages": older,
        }),
    })
}

/// One look, in one consistent read snapshot: access, then what is new.
fn step(
    c: &mut DbConnection,
    actor: &Actor,
    id: &str,
    after: Option<i64>,
) -> Result<Step, ApiError> {
    read_tx(c, |c| step_in(c, actor, id, after))
}

fn step_in(
    c: &mut DbConnection,
    actor: &Actor,
    id: &str,
    after: Option<i64>,
) -> Result<Step, ApiError> {
    let Some((row, facts)) = conversations::load(c, id, &actor.user_id)? else {
        return Ok(Step::Closed("deleted"));
    };
    let Ok(role) = authz::can(
        actor,
        Action::Read,
        ResourceKind::Conversation,
        &facts.into(),
    )
    .into_result() else {
        return Ok(Step::Closed("access_revoked"));
    };
    let Some(after) = after else {
        return Ok(Step::Snapshot(snapshot(c, &row, role)?));
    };
    if after == row.event_seq {
        return Ok(Step::Events(vec![]));
    }
    let mut events = chat_events::after(c, id, after)?;
    // The next event must be exactly `after + 1`; if it was pruned (or
    // `after` is not a seq of this conversation) start over from a snapshot.
    if after > row.event_seq || events.first().is_none_or(|e| e.seq != after + 1) {
        return Ok(Step::Snapshot(snapshot(c, &row, role)?));
    }
    // Nothing after the viewer's own removal reaches them.
    if let Some(i) = events
        .iter()
        .position(|e| e.kind == "participant_removed" && e.data["userId"] == actor.user_id.as_str())
    {
        events.truncate(i + 1);
    }
    Ok(Step::Events(events))
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
    // Refuse before streaming: a non-viewer gets an ordinary 404.
    let check = (actor.clone(), id.clone());
    let row_id = state
        .db(move |c| Ok(authorized(c, &check.0, &check.1, Action::Read)?.0.id))
        .await?;
    let shared = state.get_ref().clone();
    let user_id = actor.user_id.clone();
    sse::open(&state, &user_id, 64, move |tx, slot| {
        pump(shared, actor, row_id, after, tx, slot)
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
    let _open = sse::Counted::new(&state.metrics.chat_streams);
    let mut last_sent = Instant::now();
    let mut moved = state.chat_pollers.watch(&state, &id);
    loop {
        // Marked seen before reading, so a move during the read wakes us again.
        moved.borrow_and_update();
        let access = state.access_events.notified();
        let (a, i) = (actor.clone(), id.clone());
        let found = state.db(move |c| step(c, &a, &i, after)).await;
        let mut full_page = false;
        match found {
            Ok(Step::Closed(reason)) => {
                let data = json!({ "reason": reason });
                let _ = tx
                    .send(Bytes::from(format!("event: closed\ndata: {data}\n\n")))
                    .await;
                return;
            }
            Ok(Step::Snapshot(e)) => {
                after = Some(e.seq);
                if tx.send(frame(&e)).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            Ok(Step::Events(list)) => {
                full_page = list.len() as i64 >= chat_events::PAGE;
                for e in &list {
                    after = Some(e.seq);
                    if tx.send(frame(e)).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
            Err(e) => {
                // A database hiccup: keep the stream, try again at the next tick.
                tracing::warn!(error = %e, "conversation stream could not read events");
            }
        }
        if full_page {
            continue;
        }
        let pollers = &state.chat_pollers;
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
