//! `/workspaces/{id}/sync/{push,pull,events}`: the sync engine
//! (`proto-docs/sync.md`). Readers of the workspace pull and listen;
//! editors push (a viewer's mutations are `rejected`, one by one).

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tandem_protocol::sync::{
    Poke, PullResponse, PushRequest, PushResponse, Revoked, DEFAULT_PULL, MAX_PULL,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{load, sse};
use crate::authz::{self, Action, Actor, Decision, ResourceKind};
use crate::db::{read_tx, write_tx, DbConnection};
use crate::error::ApiError;
use crate::http::extract::{AuthUser, Caller};
use crate::state::{AppState, State};
use crate::store::{facts, now_ms, sync};
use crate::streams::StreamSlot;

/// Loads the workspace and the caller's standing: 404 unless they may read
/// it; `true` when they may also change its data (`can(Update)`).
fn standing(c: &mut DbConnection, actor: &Actor, id: &str) -> Result<(String, bool), ApiError> {
    let chain = load::workspace(c, id)?;
    let facts = facts::for_chain(c, &actor.user_id, &chain)?;
    authz::can(actor, Action::Read, ResourceKind::Workspace, &facts)
        .into_result()
        .map_err(|d| ApiError::denied(d, "workspace"))?;
    let may_write = matches!(
        authz::can(actor, Action::Update, ResourceKind::Workspace, &facts),
        Decision::Allow(_)
    );
    Ok((chain.workspace.id, may_write))
}

pub async fn push(
    state: State,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<PushRequest>,
) -> Result<web::Json<PushResponse>, ApiError> {
    let drift = i64::try_from(state.config.sync_max_drift_ms).unwrap_or(i64::MAX);
    let now = now_ms();
    // Checked here, not on the pool's connection; a bad session is answered
    // first all the same.
    let checked = sync::check_push(body.into_inner(), now.saturating_add(drift));
    let (ws, pushed) = state
        .db(move |c| {
            let actor = caller.sign_in(c)?.actor();
            let (group, client, mutations) = checked?;
            write_tx(c, |c| {
                let (ws, may_write) = standing(c, &actor, &id)?;
                let pushed = sync::push(
                    c,
                    &ws,
                    &actor.user_id,
                    may_write,
                    &group,
                    &client,
                    mutations,
                    now,
                )?;
                Ok::<_, ApiError>((ws, pushed))
            })
        })
        .await?;
    let m = &state.metrics.sync;
    m.pushes.inc();
    m.mutations_applied.inc_by(pushed.applied);
    m.mutations_duplicate.inc_by(pushed.duplicates);
    m.mutations_rejected.inc_by(pushed.rejected);
    m.conflicts.inc_by(pushed.conflicts);
    if pushed.applied > 0 {
        state.sync_changed(&ws);
    }
    Ok(web::Json(PushResponse {
        last_mutation_id: pushed.last_mutation_id,
        results: pushed.results,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullParams {
    cursor: Option<String>,
    limit: Option<i64>,
    client_group_id: Option<String>,
}

/// A pull's parameters: `(limit, clientGroupId, cursor)`.
fn check_pull(params: PullParams) -> Result<(i64, Option<String>, sync::Cursor), ApiError> {
    let PullParams {
        cursor,
        limit,
        client_group_id,
    } = params;
    let limit = limit.unwrap_or(DEFAULT_PULL);
    if !(1..=MAX_PULL).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be 1..={MAX_PULL}"
        )));
    }
    if client_group_id
        .as_deref()
        .is_some_and(|g| !sync::client_id_ok(g))
    {
        return Err(ApiError::BadRequest(
            "clientGroupId must be 1..=64 characters of A-Z a-z 0-9 _ -".into(),
        ));
    }
    Ok((
        limit,
        client_group_id,
        sync::Cursor::parse(cursor.as_deref())?,
    ))
}

pub async fn pull(
    state: State,
    caller: Caller,
    id: web::Path<String>,
    params: web::Query<PullParams>,
) -> Result<web::Json<PullResponse>, ApiError> {
    let page = state
        .db(move |c| {
            let actor = caller.sign_in(c)?.actor();
            let (limit, group, cursor) = check_pull(params.into_inner())?;
            read_tx(c, |c| {
                let (ws, _) = standing(c, &actor, &id)?;
                sync::pull(c, &ws, &actor.user_id, group.as_deref(), cursor, limit)
            })
        })
        .await?;
    let m = &state.metrics.sync;
    m.pulls.inc();
    m.changes_pulled.inc_by(page.changes.len() as u64);
    if page.reset {
        m.resets.inc();
    }
    Ok(web::Json(page))
}

pub async fn events(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.actor();
    let check = actor.clone();
    let ws = state.db(move |c| Ok(standing(c, &check, &id)?.0)).await?;
    let shared = state.get_ref().clone();
    let user_id = actor.user_id.clone();
    sse::open(&state, &user_id, 16, move |tx, slot| {
        pump(shared, actor, ws, tx, slot)
    })
}

fn frame(event: &str, data: &impl serde::Serialize) -> Bytes {
    Bytes::from(format!(
        "event: {event}\ndata: {}\n\n",
        serde_json::to_string(data).unwrap_or_default()
    ))
}

/// Whether the user may still read the workspace (`None`: could not tell).
async fn still_reader(state: &Arc<AppState>, actor: &Actor, ws: &str) -> Option<bool> {
    let (a, w) = (actor.clone(), ws.to_string());
    match state.db(move |c| standing(c, &a, &w)).await {
        Ok(_) => Some(true),
        Err(ApiError::NotFound(_)) => Some(false),
        Err(e) => {
            tracing::warn!(error = %e, "sync stream could not check access");
            None
        }
    }
}

async fn pump(
    state: Arc<AppState>,
    actor: Actor,
    ws: String,
    tx: mpsc::Sender<Bytes>,
    _slot: StreamSlot,
) {
    let _open = sse::Counted::new(&state.metrics.sync.streams);
    let keepalive = Duration::from_millis(state.config.chat_keepalive_ms.max(10));
    let mut seen = state.sync_pollers.watch(&state, &ws);
    let mut handled_access = -1;
    let mut poked: Option<i64> = None;
    let mut last_sent = Instant::now();
    loop {
        let now = seen.borrow_and_update().clone();
        if now.ready {
            if now.recheck(handled_access, &actor.user_id) {
                match still_reader(&state, &actor, &ws).await {
                    Some(false) => {
                        let gone = Revoked {
                            reason: "access_revoked".into(),
                        };
                        let _ = tx.send(frame("revoked", &gone)).await;
                        return;
                    }
                    Some(true) => handled_access = now.access_seq,
                    None => {} // checked again at the next look
                }
            }
            if poked != Some(now.seq) {
                let poke = Poke {
                    cursor: sync::Cursor::At(now.seq).render(),
                };
                if tx.send(frame("poke", &poke)).await.is_err() {
                    return;
                }
                poked = Some(now.seq);
                last_sent = Instant::now();
            }
        }
        tokio::select! {
            changed = seen.changed() => {
                if changed.is_err() {
                    // Its loop ended (shutting down): watch anew.
                    seen = state.sync_pollers.watch(&state, &ws);
                }
            }
            _ = tokio::time::sleep_until(last_sent + keepalive) => {
                if !sse::keepalive(&tx, &mut last_sent).await {
                    return;
                }
            }
            _ = tx.closed() => return,
            _ = state.shutdown.cancelled() => return,
        }
    }
}
