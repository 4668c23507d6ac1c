//! Password attempts per account: at most [`MAX_ATTEMPTS`] in a
//! [`WINDOW_MS`] window per email address, known or not (so the answer says
//! nothing about which accounts exist), counted in the database so that every
//! replica agrees. An attempt is counted before the password is checked; a
//! successful login clears the count. The key is a hash of the address.

use diesel::prelude::*;

use super::accounts::retrying;
use super::now_ms;
use crate::crypto;
use crate::db::schema::login_throttle;
use crate::db::DbConnection;
use crate::error::ApiError;

pub const MAX_ATTEMPTS: i64 = 10;
/// 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// The throttle key of an email address (as typed, lowercased and trimmed).
pub fn account_key(email: &str) -> String {
    crypto::hash_token(&format!("login:{email}"))
}

/// Counts one attempt for `key`, or refuses it with 429 and how long to wait.
pub fn admit(conn: &mut DbConnection, key: &str) -> Result<(), ApiError> {
    retrying(conn, |c| {
        let now = now_ms();
        // Windows that ended are forgotten (the index keeps this cheap).
        diesel::delete(
            login_throttle::table.filter(login_throttle::window_start.le(now - WINDOW_MS)),
        )
        .execute(c)?;
        let row: Option<(i64, i64)> = login_throttle::table
            .find(key)
            .select((login_throttle::attempts, login_throttle::window_start))
            .first(c)
            .optional()?;
        match row {
            None => {
                diesel::insert_into(login_throttle::table)
                    .values((
                        login_throttle::account_hash.eq(key),
                        login_throttle::attempts.eq(1),
                        login_throttle::window_start.eq(now),
                    ))
                    .execute(c)?;
            }
            Some((attempts, start)) if attempts >= MAX_ATTEMPTS => {
                let wait_ms = (start + WINDOW_MS - now).max(1000);
                return Err(ApiError::RateLimited((wait_ms as u64).div_ceil(1000)).into());
            }
            Some(_) => {
                diesel::update(login_throttle::table.find(key))
                    .set(login_throttle::attempts.eq(login_throttle::attempts + 1i64))
                    .execute(c)?;
            }
        }
        Ok(())
    })
}

/// Clears the count after a successful login.
pub fn reset(conn: &mut DbConnection, key: &str) -> Result<(), ApiError> {
    diesel::delete(login_throttle::table.find(key)).execute(conn)?;
    Ok(())
}
