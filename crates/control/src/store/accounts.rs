//! Users, organizations and sessions: first sign-in (plan 004's
//! `handleFirstSignIn`, gated on a verified address), password login, session
//! tokens, identity-provider users. Where a verified user lands by their email
//! domain is decided in [`super::joining`].

use diesel::prelude::*;
use tandem_protocol::http::{OrgRole, WorkspaceType};

use super::{joining as org_store, now_ms, OrgRow, UserRow, WorkspaceRow};
use crate::crypto;
use crate::db::schema::{orgs, sessions, users, workspaces};
use crate::db::{is_unique_violation, write_tx, DbConnection};
use crate::error::ApiError;

/// How often a write transaction is retried after losing a race on a unique key.
const TX_ATTEMPTS: usize = 5;

/// Who is signing in for the first time.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// Lowercased, validated email.
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub external_sub: Option<String>,
    /// Whether the address is proven already (an identity provider's
    /// `email_verified: true`); password signups start unverified.
    pub email_verified: bool,
}

/// An error inside a write transaction: a raw database error (a unique
/// violation means a lost race, and the transaction is tried again) or an
/// answer for the client.
pub enum TxError {
    Db(diesel::result::Error),
    Api(ApiError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<ApiError> for TxError {
    fn from(e: ApiError) -> Self {
        TxError::Api(e)
    }
}

/// Runs `f` in a write transaction, again when it lost a race on a unique key
/// (two first users of a domain creating its org at once: the loser retries
/// and joins the winner's org).
pub fn retrying<T>(
    conn: &mut DbConnection,
    mut f: impl FnMut(&mut DbConnection) -> Result<T, TxError>,
) -> Result<T, ApiError> {
    for attempt in 1..=TX_ATTEMPTS {
        match write_tx(conn, &mut f) {
            Ok(v) => return Ok(v),
            Err(TxError::Db(e)) if is_unique_violation(&e) && attempt < TX_ATTEMPTS => {
                tracing::debug!(attempt, "write transaction lost a race, retrying");
            }
            Err(TxError::Db(e)) => return Err(e.into()),
            Err(TxError::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::Conflict("raced too often; try again".into()))
}

/// `sparkcapital.com` → `Sparkcapital`.
pub fn org_name_from_domain(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or(domain);
    let mut chars = label.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => domain.to_string(),
    }
}

/// Creates the user with their solo org (`personal-{userId}`) and personal
/// workspace, runs `then` (e.g. queueing the verification email) in the same
/// transaction, and — when the address is already verified — places them in
/// their domain's org ([`org_store::place_verified`]).
pub fn first_sign_in(
    conn: &mut DbConnection,
    who: &NewIdentity,
    then: impl Fn(&mut DbConnection, &UserRow) -> Result<(), ApiError>,
) -> Result<UserRow, ApiError> {
    retrying(conn, |c| {
        let user = create_user_tx(c, who)?;
        then(c, &user)?;
        if who.email_verified {
            org_store::place_verified(c, &user)?;
        }
        Ok(user_by_id(c, &user.id)?.unwrap_or(user))
    })
}

fn create_user_tx(conn: &mut DbConnection, who: &NewIdentity) -> Result<UserRow, TxError> {
    let taken: i64 = users::table
        .filter(users::email.eq(&who.email))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Err(ApiError::Conflict("an account with this email exists".into()).into());
    }
    let now = now_ms();
    let user_id = crypto::new_id();
    let org = OrgRow {
        id: crypto::new_id(),
        name: who.display_name.clone(),
        domain: format!("personal-{user_id}"),
        owner_id: None,
        created_at: now,
        join_policy: tandem_protocol::identity::JoinPolicy::Off
            .as_str()
            .to_string(),
    };
    diesel::insert_into(orgs::table)
        .values(&org)
        .execute(conn)?;
    let user = UserRow {
        id: user_id,
        email: who.email.clone(),
        display_name: who.display_name.clone(),
        password_hash: who.password_hash.clone(),
        external_sub: who.external_sub.clone(),
        org_id: org.id.clone(),
        org_role: OrgRole::Owner.as_str().to_string(),
        created_at: now,
        last_seen_at: now,
        email_verified_at: who.email_verified.then_some(now),
    };
    diesel::insert_into(users::table)
        .values(&user)
        .execute(conn)?;
    diesel::update(orgs::table.find(&org.id))
        .set(orgs::owner_id.eq(&user.id))
        .execute(conn)?;
    insert_workspace(
        conn,
        &org.id,
        WorkspaceType::Personal,
        Some(&user.id),
        "Personal",
        now,
    )?;
    tracing::info!(user_id = %user.id, verified = who.email_verified, "user created");
    Ok(user)
}

pub(crate) fn insert_workspace(
    conn: &mut DbConnection,
    org_id: &str,
    kind: WorkspaceType,
    owner_id: Option<&str>,
    name: &str,
    now: i64,
) -> Result<(), diesel::result::Error> {
    let row = WorkspaceRow {
        id: crypto::new_id(),
        org_id: org_id.to_string(),
        kind: kind.as_str().to_string(),
        owner_id: owner_id.map(str::to_string),
        name: name.to_string(),
        created_at: now,
    };
    diesel::insert_into(workspaces::table)
        .values(&row)
        .execute(conn)
        .map(|_| ())
}

pub fn user_by_email(conn: &mut DbConnection, email: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn user_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn org_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<OrgRow>, ApiError> {
    Ok(orgs::table
        .find(id)
        .select(OrgRow::as_select())
        .first(conn)
        .optional()?)
}

/// Stores a new session for the user; returns the clear token and its expiry.
pub fn create_session(
    conn: &mut DbConnection,
    user_id: &str,
    ttl_ms: i64,
) -> Result<(String, i64), ApiError> {
    let token = crypto::new_token();
    let now = now_ms();
    let expires_at = now.saturating_add(ttl_ms);
    // Expired sessions of this user go when a new one comes.
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::expires_at.le(now)),
    )
    .execute(conn)?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(crypto::hash_token(&token)),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok((token, expires_at))
}

/// The user of an unexpired session token.
pub fn user_by_session(conn: &mut DbConnection, token: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(crypto::hash_token(token)))
        .filter(sessions::expires_at.gt(now_ms()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn delete_session(conn: &mut DbConnection, token: &str) -> Result<(), ApiError> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(crypto::hash_token(token))))
        .execute(conn)?;
    Ok(())
}

/// The user behind an identity-provider subject, created (with a solo org and
/// a personal workspace, and placed in their domain's org when the provider
/// says `email_verified: true`) at their first sign-in.
///
/// Linking: an existing account with the same email is never linked here
/// (the answer is a 409 that says what to do). A password account links only
/// through [`link_external`], after its password is proven, and only once its
/// address is verified. A known subject whose provider now says
/// `email_verified: true` for the address on file becomes verified.
pub fn user_for_external(conn: &mut DbConnection, who: &NewIdentity) -> Result<UserRow, ApiError> {
    let sub = who.external_sub.as_deref().unwrap_or_default();
    for _ in 0..TX_ATTEMPTS {
        if let Some(user) = user_by_sub(conn, sub)? {
            if who.email_verified && !user.email_verified() && user.email == who.email {
                return org_store::mark_verified(conn, &user.id);
            }
            return Ok(user);
        }
        if let Some(user) = user_by_email(conn, &who.email)? {
            return Err(link_refusal(&user));
        }
        match first_sign_in(conn, who, |_, _| Ok(())) {
            // Another request for the same subject or email won: look again.
            Err(ApiError::Conflict(_)) => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict(
        "sign-in raced too often; try again".into(),
    ))
}

fn user_by_sub(conn: &mut DbConnection, sub: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(users::table
        .filter(users::external_sub.eq(sub))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Why an identity-provider sign-in does not take over `existing`, the
/// account that already has its email.
fn link_refusal(existing: &UserRow) -> ApiError {
    let why = if existing.external_sub.is_some() {
        "this email belongs to another identity-provider account"
    } else if !existing.email_verified() {
        "an account with this email exists and its address is not verified; it is never linked \
         to an identity provider until it is: open the verification link sent to this address, \
         then link with POST /auth/link-identity and the account's password"
    } else {
        "an account with this email exists: link this identity to it once with \
         POST /auth/link-identity and the account's password"
    };
    ApiError::Conflict(why.into())
}

/// Links the identity-provider subject `sub` to the password account
/// `user_id`, whose password the caller just proved. Refused when the account
/// is unverified or already linked.
pub fn link_external(
    conn: &mut DbConnection,
    user_id: &str,
    sub: &str,
) -> Result<UserRow, ApiError> {
    retrying(conn, |c| {
        let user = users::table
            .find(user_id)
            .select(UserRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::Unauthorized("email or password is wrong".into()))?;
        if user.external_sub.is_some() || !user.email_verified() {
            return Err(link_refusal(&user).into());
        }
        if user_by_sub(c, sub)?.is_some() {
            return Err(ApiError::Conflict(
                "this identity-provider account is linked to another user".into(),
            )
            .into());
        }
        diesel::update(
            users::table
                .find(user_id)
                .filter(users::external_sub.is_null()),
        )
        .set(users::external_sub.eq(sub))
        .execute(c)?;
        tracing::info!(user_id, "identity-provider account linked");
        Ok(UserRow {
            external_sub: Some(sub.to_string()),
            ..user
        })
    })
}
