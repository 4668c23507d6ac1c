//! Room snapshots: one compact Yjs update per room. Saving merges the
//! incoming update into what is stored (inside a write transaction that
//! holds the row), so two relays, a retried request or an out-of-order save
//! can never lose an edit; the result is re-encoded as one update, so the
//! stored state stays compact instead of growing into a list.

use diesel::prelude::*;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::now_ms;
use crate::db::schema::room_snapshots;
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use tandem_protocol::yjs::{any_depth, Walk, MAX_ANY_DEPTH};

/// What a save left behind (also the answer to the relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub size: i64,
    pub saves: i64,
    pub updated_at: i64,
}

/// The stored state of a room (empty when nothing was saved yet).
pub fn load(conn: &mut DbConnection, room_id: &str) -> Result<Vec<u8>, ApiError> {
    Ok(room_snapshots::table
        .find(room_id)
        .select(room_snapshots::state)
        .first::<Vec<u8>>(conn)
        .optional()?
        .unwrap_or_default())
}

/// Why a merge failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// Not a valid v1 update (or yrs panicked on it).
    Malformed(String),
    /// The merged document would be larger than allowed.
    TooLarge,
    /// No thread could be started for the work.
    NoThread(String),
}

/// Stack of the thread that runs a merge: room for yrs's recursion over
/// [`MAX_ANY_DEPTH`] levels, many times over (touched only as deep as used).
const MERGE_STACK: usize = 64 * 1024 * 1024;

/// Merges `stored` and `incoming` into one compact update of at most
/// `max_size` bytes. Hostile bytes can only be refused: nesting is measured
/// before yrs decodes anything, and yrs runs on a thread of its own with a
/// large stack and with panics caught.
pub fn merge_guarded(
    stored: &[u8],
    incoming: &[u8],
    max_size: usize,
) -> Result<Vec<u8>, MergeError> {
    shallow(stored)?;
    shallow(incoming)?;
    let merged = guarded(|| merge(stored, incoming))?;
    if merged.len() > max_size {
        return Err(MergeError::TooLarge);
    }
    Ok(merged)
}

/// Whether `update` decodes (guarded like [`merge_guarded`]), without applying it.
pub fn check(update: &[u8]) -> Result<(), MergeError> {
    shallow(update)?;
    guarded(|| {
        Update::decode_v1(update)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn shallow(update: &[u8]) -> Result<(), MergeError> {
    if !update.is_empty() && any_depth(update, MAX_ANY_DEPTH) == Walk::TooDeep {
        return Err(MergeError::Malformed(format!(
            "values nest deeper than {MAX_ANY_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Runs yrs work on a thread with [`MERGE_STACK`]; a panic becomes `Malformed`.
fn guarded<T: Send>(work: impl FnOnce() -> Result<T, String> + Send) -> Result<T, MergeError> {
    let panicked = || Err("the Yjs decoder panicked".to_string());
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("snapshot-merge".into())
            .stack_size(MERGE_STACK)
            .spawn_scoped(scope, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .unwrap_or_else(|_| panicked())
            })
            .map_err(|e| MergeError::NoThread(e.to_string()))?
            .join()
            .unwrap_or_else(|_| panicked())
            .map_err(MergeError::Malformed)
    })
}

/// Merges `stored` and `incoming` into one compact update. `Err` when either
/// is not a valid v1 update. (Unguarded: see [`merge_guarded`].)
pub fn merge(stored: &[u8], incoming: &[u8]) -> Result<Vec<u8>, String> {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for bytes in [stored, incoming] {
            if bytes.is_empty() {
                continue;
            }
            let update = Update::decode_v1(bytes).map_err(|e| e.to_string())?;
            txn.apply_update(update).map_err(|e| e.to_string())?;
        }
    }
    // Includes pending structs (updates waiting for predecessors): nothing is dropped.
    let merged = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    Ok(merged)
}

/// Merges `incoming` into the room's stored state. `max_size` bounds the result (413).
pub fn save(
    conn: &mut DbConnection,
    room_id: &str,
    incoming: &[u8],
    max_size: usize,
) -> Result<Saved, ApiError> {
    // Reject bytes that do not decode before taking the write lock (the
    // merge below applies them).
    check(incoming).map_err(|e| refusal(e, max_size))?;
    for attempt in 1..=3 {
        let result = write_tx(conn, |c| {
            let now = now_ms();
            // Touch the row first: on PostgreSQL this locks it until commit,
            // so concurrent saves of one room run one after the other.
            let touched = diesel::update(room_snapshots::table.find(room_id))
                .set(room_snapshots::updated_at.eq(now))
                .execute(c)?;
            if touched == 0 {
                diesel::insert_into(room_snapshots::table)
                    .values((
                        room_snapshots::room_id.eq(room_id),
                        room_snapshots::state.eq(Vec::<u8>::new()),
                        room_snapshots::size.eq(0i64),
                        room_snapshots::saves.eq(0i64),
                        room_snapshots::updated_at.eq(now),
                    ))
                    .execute(c)?;
            }
            let (stored, saves): (Vec<u8>, i64) = room_snapshots::table
                .find(room_id)
                .select((room_snapshots::state, room_snapshots::saves))
                .first(c)?;
            let merged = match merge_guarded(&stored, incoming, max_size) {
                Ok(merged) => merged,
                Err(MergeError::Malformed(e)) if check(&stored).is_err() => {
                    return Err(ApiError::Internal(anyhow::anyhow!(
                        "stored snapshot of {room_id} is corrupt: {e}"
                    )))
                }
                Err(e) => return Err(refusal(e, max_size)),
            };
            let size = merged.len() as i64;
            diesel::update(room_snapshots::table.find(room_id))
                .set((
                    room_snapshots::state.eq(merged),
                    room_snapshots::size.eq(size),
                    room_snapshots::saves.eq(saves + 1),
                ))
                .execute(c)?;
            Ok(Saved {
                size,
                saves: saves + 1,
                updated_at: now,
            })
        });
        match result {
            // Two first saves raced on the insert: the loser retries and merges.
            Err(ApiError::Conflict(_)) if attempt < 3 => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict("snapshot save raced too often".into()))
}

/// A refused incoming update: malformed 422, too large 413.
fn refusal(e: MergeError, max_size: usize) -> ApiError {
    match e {
        MergeError::Malformed(why) => ApiError::validation(format!("not a Yjs update: {why}")),
        MergeError::TooLarge => ApiError::PayloadTooLarge(max_size),
        MergeError::NoThread(e) => ApiError::Internal(anyhow::anyhow!("merge thread: {e}")),
    }
}

/// Forgets a room's snapshot (its resource was deleted).
pub fn delete(conn: &mut DbConnection, room_id: &str) -> Result<(), diesel::result::Error> {
    diesel::delete(room_snapshots::table.find(room_id)).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use yrs::{GetString, Text};

    use super::*;

    fn edit(doc: &Doc, s: &str) -> Vec<u8> {
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        let before = txn.state_vector();
        let len = text.len(&txn);
        text.insert(&mut txn, len, s);
        txn.encode_state_as_update_v1(&before)
    }

    fn text_of(update: &[u8]) -> String {
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
        let t = doc.get_or_insert_text("t");
        let s = t.get_string(&doc.transact());
        s
    }

    #[test]
    fn merging_keeps_both_sides_in_any_order() {
        let (a, b) = (Doc::new(), Doc::new());
        let ua = edit(&a, "A");
        let ub = edit(&b, "B");
        let ab = merge(&merge(&[], &ua).unwrap(), &ub).unwrap();
        let ba = merge(&merge(&[], &ub).unwrap(), &ua).unwrap();
        assert_eq!(text_of(&ab), text_of(&ba));
        assert_eq!(text_of(&ab).len(), 2);
        // Saving the same update twice changes nothing.
        assert_eq!(merge(&ab, &ua).unwrap(), ab);
    }

    #[test]
    fn out_of_order_updates_are_kept_until_their_predecessors_arrive() {
        let a = Doc::new();
        let first = edit(&a, "1");
        let second = edit(&a, "2");
        let stored = merge(&[], &second).unwrap();
        assert_eq!(text_of(&stored), "", "second alone cannot integrate yet");
        let stored = merge(&stored, &first).unwrap();
        assert_eq!(text_of(&stored), "12", "nothing was dropped");
    }

    #[test]
    fn compaction_stays_one_update() {
        let a = Doc::new();
        let mut stored = Vec::new();
        for i in 0..200 {
            stored = merge(&stored, &edit(&a, &i.to_string())).unwrap();
        }
        let full = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        assert_eq!(stored.len(), full.len());
        assert!(merge(&[], b"\xff\xff").is_err());
    }
}
