//! Users, organizations and sessions: first sign-in (plan 004's
//! `handleFirstSignIn`), password login, session tokens, identity-provider
//! users.

use diesel::prelude::*;
use tandem_protocol::http::{OrgRole, WorkspaceType};

use super::{now_ms, OrgRow, UserRow, WorkspaceRow};
use crate::crypto;
use crate::db::schema::{orgs, sessions, users, workspaces};
use crate::db::{is_unique_violation, write_tx, DbConnection};
use crate::error::ApiError;

/// Email domains that get a solo organization instead of a shared one.
pub const PERSONAL_EMAIL_DOMAINS: [&str; 11] = [
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "protonmail.com",
    "proton.me",
];

/// How often a first sign-in is retried after losing a race on a unique key.
const SIGN_IN_ATTEMPTS: usize = 5;

/// Who is signing in for the first time.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// Lowercased, validated email.
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub external_sub: Option<String>,
}

enum TxError {
    Db(diesel::result::Error),
    EmailTaken,
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
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

fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

/// Creates the user, and with it their org (if the domain has none yet or is
/// personal), the org's team workspace (work domains, once), and their
/// personal workspace, in one write transaction. Two users of a new domain
/// signing up at once still yield one org and one team workspace: the loser of
/// the race on `orgs.domain` retries and joins the winner's org.
pub fn first_sign_in(conn: &mut DbConnection, who: &NewIdentity) -> Result<UserRow, ApiError> {
    for attempt in 1..=SIGN_IN_ATTEMPTS {
        match write_tx(conn, |c| create_user_tx(c, who)) {
            Ok(user) => return Ok(user),
            Err(TxError::EmailTaken) => {
                return Err(ApiError::Conflict(
                    "an account with this email exists".into(),
                ))
            }
            Err(TxError::Db(e)) if is_unique_violation(&e) && attempt < SIGN_IN_ATTEMPTS => {
                tracing::debug!(attempt, "first sign-in lost a race, retrying");
            }
            Err(TxError::Db(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "sign-in raced too often; try again".into(),
    ))
}

fn create_user_tx(conn: &mut DbConnection, who: &NewIdentity) -> Result<UserRow, TxError> {
    let taken: i64 = users::table
        .filter(users::email.eq(&who.email))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Err(TxError::EmailTaken);
    }
    let now = now_ms();
    let user_id = crypto::new_id();
    let domain = email_domain(&who.email);
    let personal = PERSONAL_EMAIL_DOMAINS.contains(&domain);

    let existing: Option<OrgRow> = if personal {
        None
    } else {
        orgs::table
            .filter(orgs::domain.eq(domain))
            .select(OrgRow::as_select())
            .first(conn)
            .optional()?
    };
    let is_first = existing.is_none();
    let org = match existing {
        Some(org) => org,
        None => {
            let org = OrgRow {
                id: crypto::new_id(),
                name: if personal {
                    who.display_name.clone()
                } else {
                    org_name_from_domain(domain)
                },
                domain: if personal {
                    format!("personal-{user_id}")
                } else {
                    domain.to_string()
                },
                owner_id: None,
                created_at: now,
            };
            diesel::insert_into(orgs::table)
                .values(&org)
                .execute(conn)?;
            org
        }
    };

    let user = UserRow {
        id: user_id,
        email: who.email.clone(),
        display_name: who.display_name.clone(),
        password_hash: who.password_hash.clone(),
        external_sub: who.external_sub.clone(),
        org_id: org.id.clone(),
        org_role: if is_first {
            OrgRole::Owner
        } else {
            OrgRole::Member
        }
        .as_str()
        .to_string(),
        created_at: now,
        last_seen_at: now,
    };
    diesel::insert_into(users::table)
        .values(&user)
        .execute(conn)?;

    if is_first {
        diesel::update(orgs::table.find(&org.id))
            .set(orgs::owner_id.eq(&user.id))
            .execute(conn)?;
        if !personal {
            insert_workspace(
                conn,
                &org.id,
                WorkspaceType::Team,
                None,
                &format!("{} Team", org.name),
                now,
            )?;
        }
    }
    insert_workspace(
        conn,
        &org.id,
        WorkspaceType::Personal,
        Some(&user.id),
        "Personal",
        now,
    )?;
    tracing::info!(user_id = %user.id, org_id = %org.id, first_in_org = is_first, "user created");
    Ok(user)
}

fn insert_workspace(
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

/// The user behind an identity-provider subject, created (with org and
/// workspaces) at their first sign-in. An existing password account with the
/// same email is linked to the subject.
pub fn user_for_external(conn: &mut DbConnection, who: &NewIdentity) -> Result<UserRow, ApiError> {
    let sub = who.external_sub.as_deref().unwrap_or_default();
    for _ in 0..SIGN_IN_ATTEMPTS {
        let found: Option<UserRow> = users::table
            .filter(users::external_sub.eq(sub))
            .select(UserRow::as_select())
            .first(conn)
            .optional()?;
        if let Some(user) = found {
            return Ok(user);
        }
        if let Some(user) = user_by_email(conn, &who.email)? {
            if user.external_sub.is_some() {
                return Err(ApiError::Conflict(
                    "this email belongs to another identity-provider account".into(),
                ));
            }
            diesel::update(
                users::table
                    .find(&user.id)
                    .filter(users::external_sub.is_null()),
            )
            .set(users::external_sub.eq(sub))
            .execute(conn)?;
            continue;
        }
        match first_sign_in(conn, who) {
            // Another request for the same subject or email won: look again.
            Err(ApiError::Conflict(_)) => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict(
        "sign-in raced too often; try again".into(),
    ))
}
