//! The email outbox: rows written in the transaction of what they announce,
//! sent later by [`crate::mail::dispatch`]. Several control replicas may
//! dispatch at once: a row is claimed with a conditional update (a lease),
//! so each email is handed to the sender by one replica at a time.

use diesel::prelude::*;

use super::now_ms;
use crate::crypto;
use crate::db::schema::outbox;
use crate::db::DbConnection;
use crate::error::ApiError;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn enqueue(
    conn: &mut DbConnection,
    kind: &str,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<(), ApiError> {
    let now = now_ms();
    diesel::insert_into(outbox::table)
        .values((
            outbox::id.eq(crypto::new_id()),
            outbox::kind.eq(kind),
            outbox::recipient.eq(recipient),
            outbox::subject.eq(subject),
            outbox::body.eq(body),
            outbox::created_at.eq(now),
            outbox::attempts.eq(0),
            outbox::next_attempt_at.eq(now),
            outbox::claimed_until.eq(0),
        ))
        .execute(conn)?;
    Ok(())
}

/// Claims the most overdue unsent row for `lease_ms`, if any (a row another
/// replica claims first is skipped).
pub fn claim_one(conn: &mut DbConnection, lease_ms: i64) -> Result<Option<OutboxRow>, ApiError> {
    let now = now_ms();
    let due: Vec<String> = outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::next_attempt_at.le(now))
        .filter(outbox::claimed_until.lt(now))
        .order(outbox::next_attempt_at.asc())
        .limit(8)
        .select(outbox::id)
        .load(conn)?;
    for id in due {
        let n = diesel::update(
            outbox::table
                .find(&id)
                .filter(outbox::sent_at.is_null())
                .filter(outbox::claimed_until.lt(now)),
        )
        .set(outbox::claimed_until.eq(now + lease_ms))
        .execute(conn)?;
        if n == 1 {
            return Ok(outbox::table
                .find(&id)
                .select(OutboxRow::as_select())
                .first(conn)
                .optional()?);
        }
    }
    Ok(None)
}

/// Marks a row sent and clears its body (it may hold a secret link).
pub fn mark_sent(conn: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::sent_at.eq(Some(now_ms())),
            outbox::body.eq(""),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Attempts after which an email is given up (about two days of retries).
pub const MAX_ATTEMPTS: i64 = 60;

/// Records a failed attempt; the next one waits 2^attempts seconds (≤ 1 h);
/// after [`MAX_ATTEMPTS`] it is kept, with its last error, but not retried.
pub fn mark_failed(conn: &mut DbConnection, row: &OutboxRow, error: &str) -> Result<(), ApiError> {
    let attempts = row.attempts + 1;
    let backoff = 1000i64 << attempts.clamp(0, 12);
    let next = if attempts >= MAX_ATTEMPTS {
        i64::MAX
    } else {
        now_ms() + backoff.min(3_600_000)
    };
    diesel::update(outbox::table.find(&row.id))
        .set((
            outbox::attempts.eq(attempts),
            outbox::next_attempt_at.eq(next),
            outbox::claimed_until.eq(0),
            outbox::last_error.eq(Some(error.chars().take(500).collect::<String>())),
        ))
        .execute(conn)?;
    Ok(())
}
