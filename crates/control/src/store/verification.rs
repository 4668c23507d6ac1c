//! Email verification links: a random token (stored hashed) mailed through
//! the outbox as `{publicUrl}/verify-email?token=T`, single use, expiring
//! after [`TTL_MS`]. Using one marks the address verified and places the user
//! by their domain ([`super::joining::verify_in_tx`]), in one transaction.
//! Sending is limited per user ([`RESENDS_PER_WINDOW`] emails per
//! [`RESEND_WINDOW_MS`], the signup email included), counted in the database
//! so that every replica agrees.

use diesel::prelude::*;
use tandem_protocol::identity::VerificationSent;

use super::accounts::{retrying, user_by_id};
use super::{joining, now_ms, outbox, UserRow};
use crate::crypto;
use crate::db::schema::{email_verifications, users};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;

/// How long a link works: 24 hours.
pub const TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Verification emails one user may be sent per window.
pub const RESENDS_PER_WINDOW: i64 = 3;
pub const RESEND_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Longest token accepted (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

/// Outbox kind of verification emails (the dev console sender looks for it).
pub const MAIL_KIND: &str = "verify-email";

/// Creates a link for the user's address and queues its email, inside the
/// caller's transaction. Returns when the link expires.
pub fn issue(c: &mut DbConnection, user: &UserRow, public_url: &str) -> Result<i64, ApiError> {
    let token = crypto::new_token();
    let now = now_ms();
    let expires_at = now + TTL_MS;
    diesel::insert_into(email_verifications::table)
        .values((
            email_verifications::token_hash.eq(crypto::hash_token(&token)),
            email_verifications::user_id.eq(&user.id),
            email_verifications::email.eq(&user.email),
            email_verifications::created_at.eq(now),
            email_verifications::expires_at.eq(expires_at),
        ))
        .execute(c)?;
    let link = format!(
        "{}/verify-email?token={token}",
        public_url.trim_end_matches('/')
    );
    let body = format!(
        "Hello {},\n\nConfirm that {} is your address by opening this link:\n\n{link}\n\n\
         The link works once and expires in 24 hours. Until you confirm, you can use your \
         personal workspace only; afterwards you join your organization.\n\n\
         If you did not sign up for Tandem, ignore this email.\n",
        user.display_name, user.email
    );
    outbox::enqueue(
        c,
        MAIL_KIND,
        &user.email,
        "Confirm your email address for Tandem",
        &body,
    )?;
    Ok(expires_at)
}

/// Sends another link, unless the address is verified already (409) or the
/// user was sent [`RESENDS_PER_WINDOW`] links in the last window (429).
pub fn resend(
    conn: &mut DbConnection,
    user_id: &str,
    public_url: &str,
) -> Result<VerificationSent, ApiError> {
    write_tx(conn, |c| {
        // Takes the user's row lock on PostgreSQL (SQLite's write lock is
        // already exclusive): concurrent resends are counted one at a time.
        diesel::update(users::table.find(user_id))
            .set(users::last_seen_at.eq(now_ms()))
            .execute(c)?;
        let user = user_by_id(c, user_id)?.ok_or(ApiError::NotFound("user"))?;
        if user.email_verified() {
            return Err(ApiError::Conflict(
                "your email address is verified already".into(),
            ));
        }
        let now = now_ms();
        let recent: Vec<i64> = email_verifications::table
            .filter(email_verifications::user_id.eq(user_id))
            .filter(email_verifications::created_at.gt(now - RESEND_WINDOW_MS))
            .order(email_verifications::created_at.asc())
            .select(email_verifications::created_at)
            .load(c)?;
        if recent.len() as i64 >= RESENDS_PER_WINDOW {
            let oldest = recent.first().copied().unwrap_or(now);
            let wait_ms = (oldest + RESEND_WINDOW_MS - now).max(1000);
            return Err(ApiError::RateLimited((wait_ms as u64).div_ceil(1000)));
        }
        let expires_at = issue(c, &user, public_url)?;
        Ok(VerificationSent {
            email: user.email,
            expires_at,
        })
    })
}

/// Uses a link: exactly one use of a token succeeds. Unknown → 400; used or
/// expired → 410. Returns the user as they are afterwards (verified, placed).
pub fn verify(conn: &mut DbConnection, token: &str) -> Result<UserRow, ApiError> {
    let invalid = || ApiError::BadRequest("this verification link is not valid".into());
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(invalid());
    }
    let hash = crypto::hash_token(token);
    retrying(conn, |c| {
        let row: (String, String, i64, Option<i64>) = email_verifications::table
            .find(&hash)
            .select((
                email_verifications::user_id,
                email_verifications::email,
                email_verifications::expires_at,
                email_verifications::used_at,
            ))
            .first(c)
            .optional()?
            .ok_or_else(invalid)?;
        let (user_id, email, expires_at, used_at) = row;
        let now = now_ms();
        if used_at.is_some() {
            return Err(ApiError::Gone("this verification link was used already".into()).into());
        }
        if expires_at <= now {
            return Err(ApiError::Gone(
                "this verification link has expired; sign in and ask for a new one".into(),
            )
            .into());
        }
        let user = user_by_id(c, &user_id)?.ok_or_else(invalid)?;
        if user.email != email {
            return Err(ApiError::Gone("this link was sent to another address".into()).into());
        }
        let claimed = diesel::update(
            email_verifications::table
                .find(&hash)
                .filter(email_verifications::used_at.is_null()),
        )
        .set(email_verifications::used_at.eq(Some(now)))
        .execute(c)?;
        if claimed == 0 {
            return Err(ApiError::Gone("this verification link was used already".into()).into());
        }
        joining::verify_in_tx(c, &user_id)?;
        Ok(user_by_id(c, &user_id)?.ok_or_else(invalid)?)
    })
}
