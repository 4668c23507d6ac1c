//! Proving an address and linking identities:
//! `POST /auth/verify-email {token}` (no login needed: the token is the
//! proof) → the verified user's session context; `POST
//! /auth/verify-email/resend` (signed in) → 202; `POST /auth/link-identity
//! {password}` with `Authorization: Bearer <IdP JWT>` → links the JWT's
//! subject to the verified password account of its email.

use actix_web::{web, HttpRequest, HttpResponse};
use tandem_protocol::http::SessionContext;
use tandem_protocol::identity::{LinkIdentityRequest, VerifyEmailRequest};

use super::auth::{checked_password, limit, session_context};
use super::extract::{bearer, identity_from_jwt, AuthUser};
use crate::error::ApiError;
use crate::state::State;
use crate::store::{accounts, throttle, verification};

pub async fn verify_email(
    state: State,
    req: HttpRequest,
    body: web::Json<VerifyEmailRequest>,
) -> Result<web::Json<SessionContext>, ApiError> {
    limit(&state, &req)?;
    let token = body.into_inner().token;
    let context = state
        .db(move |c| {
            let user = verification::verify(c, token.trim())?;
            session_context(c, &user)
        })
        .await?;
    Ok(web::Json(context))
}

pub async fn resend(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let public_url = state.config.public_url.clone();
    let id = user.id().to_string();
    let sent = state
        .db(move |c| verification::resend(c, &id, &public_url))
        .await?;
    state.outbox_wake.notify_one();
    Ok(HttpResponse::Accepted().json(sent))
}

pub async fn link_identity(
    state: State,
    req: HttpRequest,
    body: web::Json<LinkIdentityRequest>,
) -> Result<web::Json<SessionContext>, ApiError> {
    limit(&state, &req)?;
    let token = bearer(&req)
        .ok_or_else(|| ApiError::Unauthorized("send the identity-provider JWT as Bearer".into()))?;
    let who = identity_from_jwt(&state, &token).await?;
    let user = checked_password(&state, &who.email, body.into_inner().password).await?;
    let sub = who.external_sub.unwrap_or_default();
    let key = throttle::account_key(&who.email);
    let context = state
        .db(move |c| {
            throttle::reset(c, &key)?;
            let user = accounts::link_external(c, &user.id, &sub)?;
            session_context(c, &user)
        })
        .await?;
    Ok(web::Json(context))
}
