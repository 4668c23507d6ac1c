//! The access-change feed: a row per change that may revoke someone, with a
//! monotonic `seq` that relays long-poll. Rows are written in the same
//! transaction as the change they describe.

use diesel::prelude::*;
use tandem_protocol::collab::AccessEvent;

use super::now_ms;
use crate::db::schema::access_events;
use crate::db::DbConnection;

/// Events older than this are pruned (relays catch up with the periodic sweep).
const RETENTION_MS: i64 = 60 * 60 * 1000;
/// Most events one poll returns.
pub const PAGE: i64 = 500;

/// Records an access change. Call inside a write transaction (`write_tx`):
/// on PostgreSQL the table lock makes events commit in `seq` order, so a
/// poller that has seen `seq = n` never later finds a smaller one.
pub fn record(
    conn: &mut DbConnection,
    room_id: Option<&str>,
    user_id: Option<&str>,
) -> Result<(), diesel::result::Error> {
    use diesel::connection::SimpleConnection;
    if let DbConnection::Pg(_) = conn {
        conn.batch_execute("LOCK TABLE access_events IN SHARE ROW EXCLUSIVE MODE")?;
    }
    let now = now_ms();
    diesel::insert_into(access_events::table)
        .values((
            access_events::room_id.eq(room_id),
            access_events::user_id.eq(user_id),
            access_events::created_at.eq(now),
        ))
        .execute(conn)?;
    diesel::delete(access_events::table.filter(access_events::created_at.lt(now - RETENTION_MS)))
        .execute(conn)?;
    Ok(())
}

/// Events after `after`, oldest first, at most [`PAGE`].
pub fn after(
    conn: &mut DbConnection,
    after: i64,
) -> Result<Vec<AccessEvent>, diesel::result::Error> {
    let rows: Vec<(i64, Option<String>, Option<String>)> = access_events::table
        .filter(access_events::seq.gt(after))
        .order(access_events::seq.asc())
        .limit(PAGE)
        .select((
            access_events::seq,
            access_events::room_id,
            access_events::user_id,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(seq, room_id, user_id)| AccessEvent {
            seq,
            room_id,
            user_id,
        })
        .collect())
}

/// The newest `seq` (0 when there is none).
pub fn last_seq(conn: &mut DbConnection) -> Result<i64, diesel::result::Error> {
    let max: Option<i64> = access_events::table
        .select(diesel::dsl::max(access_events::seq))
        .first(conn)?;
    Ok(max.unwrap_or(0))
}
