//! The live event log of conversations: what `GET /conversations/{id}/events`
//! streams. Each conversation numbers its events 1, 2, 3… (`seq`, the SSE
//! event id). [`append`] bumps the conversation's `event_seq` first — an
//! UPDATE that locks the conversation row — so the events of one
//! conversation commit in `seq` order and a reader that has seen `n` never
//! later finds a smaller one.

use diesel::prelude::*;
use serde_json::Value;
use tandem_protocol::chat::ConversationEvent;

use super::now_ms;
use crate::db::schema::{conversation_events, conversations};
use crate::db::DbConnection;
use crate::error::ApiError;

/// Events older than this may be pruned; a reader resuming from before the
/// oldest kept event gets a fresh snapshot instead.
pub const RETENTION_MS: i64 = 60 * 60 * 1000;
/// Most events one read returns.
pub const PAGE: i64 = 500;

/// Takes the next seq of a conversation and locks its row until commit. Call
/// inside a write transaction, before reading what the event describes.
pub fn next_seq(conn: &mut DbConnection, id: &str) -> Result<i64, ApiError> {
    let n = diesel::update(conversations::table.find(id))
        .set(conversations::event_seq.eq(conversations::event_seq + 1))
        .execute(conn)?;
    if n == 0 {
        return Err(ApiError::NotFound("conversation"));
    }
    Ok(conversations::table
        .find(id)
        .select(conversations::event_seq)
        .first(conn)?)
}

/// Locks the conversation row like a writer would, without taking a seq:
/// what the caller reads next in this transaction is consistent with the
/// current seq.
pub fn lock(conn: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    diesel::update(conversations::table.find(id))
        .set(conversations::event_seq.eq(conversations::event_seq))
        .execute(conn)?;
    Ok(())
}

/// Writes an event with a seq already taken by [`next_seq`].
pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    seq: i64,
    kind: &str,
    data: &Value,
) -> Result<(), ApiError> {
    diesel::insert_into(conversation_events::table)
        .values((
            conversation_events::conversation_id.eq(id),
            conversation_events::seq.eq(seq),
            conversation_events::kind.eq(kind),
            conversation_events::data.eq(data.to_string()),
            conversation_events::created_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes the next seq and writes the event; returns the seq. Call inside a
/// write transaction.
pub fn append(
    conn: &mut DbConnection,
    id: &str,
    kind: &str,
    data: &Value,
) -> Result<i64, ApiError> {
    let seq = next_seq(conn, id)?;
    insert(conn, id, seq, kind, data)?;
    Ok(seq)
}

/// Events of a conversation after `after`, oldest first, at most [`PAGE`].
pub fn after(
    conn: &mut DbConnection,
    id: &str,
    after: i64,
) -> Result<Vec<ConversationEvent>, ApiError> {
    let rows: Vec<(i64, String, String)> = conversation_events::table
        .filter(conversation_events::conversation_id.eq(id))
        .filter(conversation_events::seq.gt(after))
        .order(conversation_events::seq.asc())
        .limit(PAGE)
        .select((
            conversation_events::seq,
            conversation_events::kind,
            conversation_events::data,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(seq, kind, data)| ConversationEvent {
            seq,
            kind,
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
        })
        .collect())
}

/// Drops a conversation's events older than the retention — always a
/// prefix of its seqs (up to the newest expired one), never a hole, even if
/// replicas' clocks disagree.
pub fn prune(conn: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    let newest_expired: Option<i64> = conversation_events::table
        .filter(conversation_events::conversation_id.eq(id))
        .filter(conversation_events::created_at.lt(now_ms() - RETENTION_MS))
        .select(diesel::dsl::max(conversation_events::seq))
        .first(conn)?;
    if let Some(upto) = newest_expired {
        diesel::delete(
            conversation_events::table
                .filter(conversation_events::conversation_id.eq(id))
                .filter(conversation_events::seq.le(upto)),
        )
        .execute(conn)?;
    }
    Ok(())
}
