//! `/collaboration/rooms/{roomId}/snapshot` (relay secret): load a room's
//! stored document, and save (merge) new state into it. Bodies are raw Yjs
//! v1 updates (`application/octet-stream`). A load also says, in
//! `x-tandem-max-document-bytes`, the largest document a save can store.

use actix_web::{web, HttpResponse};
use tandem_protocol::collab::MAX_DOCUMENT_BYTES_HEADER;
use tandem_protocol::RoomId;

use super::collab::parse_room;
use super::extract::RelayAuth;
use crate::error::ApiError;
use crate::state::State;
use crate::store::{facts, snapshots, webhooks};

/// 404 when the room's resource does not exist (deleted): nothing to load or save.
fn require_resource(c: &mut crate::db::DbConnection, room: &RoomId) -> Result<(), ApiError> {
    facts::room(c, room)?
        .map(|_| ())
        .ok_or(ApiError::NotFound("room"))
}

pub async fn load(
    state: State,
    _relay: RelayAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = parse_room(&path)?;
    let id = room.to_string();
    let bytes = state
        .db(move |c| {
            require_resource(c, &room)?;
            snapshots::load(c, &id)
        })
        .await?;
    // The relay refuses updates that would grow a room past what a save can store.
    let max = state
        .config
        .max_snapshot_bytes
        .min(state.config.max_save_bytes);
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((MAX_DOCUMENT_BYTES_HEADER, max.to_string()))
        .body(bytes))
}

/// Reads a body of at most `limit` bytes (413 beyond).
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub async fn save(
    state: State,
    _relay: RelayAuth,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<snapshots::Saved>, ApiError> {
    let room = parse_room(&path)?;
    let body = read_limited(payload, state.config.max_save_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::validation("empty update"));
    }
    let max = state.config.max_snapshot_bytes;
    let id = room.to_string();
    state.metrics.snapshot_bytes_saved.inc_by(body.len() as u64);
    let debounce = i64::try_from(state.config.webhook_save_debounce_ms).unwrap_or(i64::MAX);
    let saved = state
        .db(move |c| {
            require_resource(c, &room)?;
            let saved = snapshots::save(c, &id, &body, max)?;
            if room.resource_type == tandem_protocol::ResourceType::Doc {
                // Announced once the save has committed, debounced per document.
                webhooks::document_saved(c, &room.resource_id, saved.size, saved.saves, debounce)?;
            }
            Ok(saved)
        })
        .await?;
    state.metrics.snapshot_saves.inc();
    Ok(web::Json(saved))
}
