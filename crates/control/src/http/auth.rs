//! `/auth/*`: signup, login, logout, session context. Passwords are hashed
//! and checked by `state.passwords` outside every database call; attempts are
//! limited per client IP (in memory) and per account (in the database).

use actix_web::{web, HttpRequest, HttpResponse};
use tandem_protocol::http::{AuthResponse, LoginRequest, Org, SessionContext, SignupRequest};

use super::extract::AuthUser;
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::state::State;
use crate::store::accounts::{self, NewIdentity};
use crate::store::{throttle, verification, workspaces, UserRow};
use crate::validate;

/// Refuses the request when its client address is over the auth rate limit.
pub fn limit(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ip) = state.trusted_proxies.of_request(req) else {
        return Ok(());
    };
    state.auth_limiter.admit(ip)
}

pub async fn signup(
    state: State,
    req: HttpRequest,
    body: web::Json<SignupRequest>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req)?;
    let body = body.into_inner();
    let email = validate::email(&body.email)?;
    let display_name = validate::display_name(&body.display_name)?;
    let password = validate::password(&body.password)?.to_string();
    let password_hash = state.passwords.hash(password).await?;
    let ttl = state.config.session_ttl().as_millis() as i64;
    let public_url = state.config.public_url.clone();
    let response = state
        .db(move |c| {
            let who = NewIdentity {
                email,
                display_name,
                password_hash: Some(password_hash),
                external_sub: None,
                email_verified: false,
            };
            let user = accounts::first_sign_in(c, &who, |c, user| {
                verification::issue(c, user, &public_url).map(|_| ())
            })?;
            start_session(c, &user, ttl)
        })
        .await?;
    state.outbox_wake.notify_one();
    Ok(HttpResponse::Created().json(response))
}

pub async fn login(
    state: State,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<AuthResponse>, ApiError> {
    limit(&state, &req)?;
    let LoginRequest { email, password } = body.into_inner();
    let email = email.trim().to_lowercase();
    let user = checked_password(&state, &email, password).await?;
    let ttl = state.config.session_ttl().as_millis() as i64;
    let key = throttle::account_key(&email);
    let response = state
        .db(move |c| {
            throttle::reset(c, &key)?;
            start_session(c, &user, ttl)
        })
        .await?;
    Ok(web::Json(response))
}

/// The password account of `email` if `password` is its password: the
/// attempt is counted against the account first (429 past the limit), and
/// an unknown email costs the same hashing time as a wrong password.
pub async fn checked_password(
    state: &State,
    email: &str,
    password: String,
) -> Result<UserRow, ApiError> {
    let wrong = || ApiError::Unauthorized("email or password is wrong".into());
    let key = throttle::account_key(email);
    let lookup = email.to_string();
    let user = state
        .db(move |c| {
            throttle::admit(c, &key)?;
            accounts::user_by_email(c, &lookup)
        })
        .await?;
    let stored = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_password_hash.clone());
    let bounded = password.len() <= validate::MAX_PASSWORD_BYTES;
    let ok = state.passwords.verify(password, stored).await? && bounded;
    user.filter(|u| ok && u.password_hash.is_some())
        .ok_or_else(wrong)
}

/// Opens a session for a user who just proved who they are.
fn start_session(
    c: &mut DbConnection,
    user: &UserRow,
    ttl_ms: i64,
) -> Result<AuthResponse, ApiError> {
    let (session_token, expires_at) = accounts::create_session(c, &user.id, ttl_ms)?;
    Ok(AuthResponse {
        user: user.to_dto(),
        session_token,
        expires_at,
    })
}

pub async fn logout(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let token = user.credential;
    state
        .db(move |c| accounts::delete_session(c, &token))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn session(state: State, user: AuthUser) -> Result<web::Json<SessionContext>, ApiError> {
    let context = state.db(move |c| session_context(c, &user.user)).await?;
    Ok(web::Json(context))
}

/// What `GET /auth/session` shows: the user, their org, their workspaces.
pub fn session_context(c: &mut DbConnection, user: &UserRow) -> Result<SessionContext, ApiError> {
    let org = accounts::org_by_id(c, &user.org_id)?.ok_or(ApiError::NotFound("org"))?;
    let workspaces = workspaces::visible(c, &user.actor())?;
    Ok(SessionContext {
        user: user.to_dto(),
        org: Org {
            id: org.id,
            name: org.name,
            domain: org.domain,
        },
        workspaces,
    })
}
