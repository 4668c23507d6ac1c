//! `/auth/*`: signup, login, logout, session context.

use actix_web::{web, HttpRequest, HttpResponse};
use tandem_protocol::http::{AuthResponse, LoginRequest, Org, SessionContext, SignupRequest};

use super::extract::AuthUser;
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::state::State;
use crate::store::accounts::{self, NewIdentity};
use crate::store::{workspaces, UserRow};
use crate::{crypto, validate};

/// Refuses the request when its address is over the auth rate limit.
fn limit(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ip) = req.peer_addr().map(|a| a.ip()) else {
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
    let iterations = state.config.pbkdf2_iterations;
    let ttl = state.config.session_ttl().as_millis() as i64;
    let response = state
        .db(move |c| {
            let who = NewIdentity {
                email,
                display_name,
                password_hash: Some(crypto::hash_password(&password, iterations)),
                external_sub: None,
            };
            let user = accounts::first_sign_in(c, &who)?;
            start_session(c, &user, ttl)
        })
        .await?;
    Ok(HttpResponse::Created().json(response))
}

pub async fn login(
    state: State,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<AuthResponse>, ApiError> {
    limit(&state, &req)?;
    let body = body.into_inner();
    let email = body.email.trim().to_lowercase();
    let ttl = state.config.session_ttl().as_millis() as i64;
    let st = state.clone();
    let response = state
        .db(move |c| {
            let user = accounts::user_by_email(c, &email)?;
            let stored = user
                .as_ref()
                .and_then(|u| u.password_hash.as_deref())
                .unwrap_or(&st.dummy_password_hash);
            let password_ok = crypto::verify_password(&body.password, stored);
            let user = user
                .filter(|u| password_ok && u.password_hash.is_some())
                .ok_or_else(|| ApiError::Unauthorized("email or password is wrong".into()))?;
            start_session(c, &user, ttl)
        })
        .await?;
    Ok(web::Json(response))
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
    let context = state
        .db(move |c| {
            let org =
                accounts::org_by_id(c, &user.user.org_id)?.ok_or(ApiError::NotFound("org"))?;
            let workspaces = workspaces::visible(c, &user.actor())?;
            Ok(SessionContext {
                user: user.user.to_dto(),
                org: Org {
                    id: org.id,
                    name: org.name,
                    domain: org.domain,
                },
                workspaces,
            })
        })
        .await?;
    Ok(web::Json(context))
}
