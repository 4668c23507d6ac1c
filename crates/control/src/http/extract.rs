//! `AuthUser`: the signed-in user, as an extractor, so a handler's signature
//! says it needs a login. Accepts `Authorization: Bearer <session token>` or,
//! when an identity provider is configured, `Bearer <JWT>`.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, FromRequest, HttpRequest};
use tandem_protocol::collab::RELAY_SECRET_HEADER;

use crate::auth::jwt::{looks_like_jwt, JwtError};
use crate::authz::Actor;
use crate::error::ApiError;
use crate::state::State;
use crate::store::accounts::{self, NewIdentity};
use crate::store::UserRow;
use crate::validate;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: UserRow,
    /// The bearer credential, kept so that logout can end this session.
    pub credential: String,
}

impl AuthUser {
    pub fn actor(&self) -> Actor {
        self.user.actor()
    }

    pub fn id(&self) -> &str {
        &self.user.id
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 16 * 1024)
        .then(|| token.to_string())
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<AuthUser, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            let state = state.ok_or_else(no_state)?;
            state.db(move |c| caller.sign_in(c)).await
        })
    }
}

/// The bearer credential of a request, checked as far as it can be without
/// the database: an identity-provider JWT is verified here, a session token
/// is looked up by [`Caller::sign_in`]. A handler that goes to the database
/// anyway takes a `Caller` and signs it in on that trip, instead of an
/// [`AuthUser`], which costs a trip of its own.
/// (No `Debug`: it holds the credential.)
#[derive(Clone)]
pub struct Caller {
    credential: String,
    /// Who a verified JWT names.
    identity: Option<NewIdentity>,
}

impl Caller {
    /// The signed-in user: 401 when the session is invalid or has expired.
    pub fn sign_in(self, c: &mut crate::db::DbConnection) -> Result<AuthUser, ApiError> {
        let user = match &self.identity {
            Some(who) => accounts::user_for_external(c, who)?,
            None => accounts::user_by_session(c, &self.credential)?.ok_or_else(|| {
                ApiError::Unauthorized("session is invalid or has expired".into())
            })?,
        };
        Ok(AuthUser {
            user,
            credential: self.credential,
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let state = state.ok_or_else(no_state)?;
            let credential = token.ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer credentials".into())
            })?;
            let identity = match (&state.jwt, looks_like_jwt(&credential)) {
                (Some(_), true) => Some(identity_from_jwt(&state, &credential).await?),
                _ => None,
            };
            Ok(Caller {
                credential,
                identity,
            })
        })
    }
}

fn no_state() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("no app state"))
}

/// Verifies an identity-provider JWT and reads who it names (401 when it is
/// not acceptable or there is no identity provider).
pub async fn identity_from_jwt(state: &State, token: &str) -> Result<NewIdentity, ApiError> {
    let verifier = state
        .jwt
        .as_ref()
        .ok_or_else(|| ApiError::Unauthorized("no identity provider is configured".into()))?;
    let claims = verifier
        .verify(token, crate::store::now_ms() / 1000)
        .await
        .map_err(jwt_error)?;
    let email = claims
        .email
        .as_deref()
        .ok_or_else(|| ApiError::Unauthorized("JWT lacks the email claim".into()))
        .and_then(|e| {
            validate::email(e)
                .map_err(|_| ApiError::Unauthorized("JWT email claim is not valid".into()))
        })?;
    let display_name = claims
        .name
        .as_deref()
        .and_then(|n| validate::display_name(n).ok())
        .unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_string());
    Ok(NewIdentity {
        email,
        display_name,
        password_hash: None,
        external_sub: Some(claims.sub),
        email_verified: claims.email_verified,
    })
}

fn jwt_error(e: JwtError) -> ApiError {
    tracing::info!(reason = %e, "identity-provider token refused");
    ApiError::Unauthorized(e.to_string())
}

/// A caller that presented the relay's shared secret.
#[derive(Debug, Clone, Copy)]
pub struct RelayAuth;

/// The relay's shared secret in [`RELAY_SECRET_HEADER`] (on
/// `/collaboration/verify`, whose `Authorization` carries the user's token),
/// compared in constant time.
#[derive(Debug, Clone, Copy)]
pub struct RelaySecretHeader;

impl FromRequest for RelaySecretHeader {
    type Error = ApiError;
    type Future = std::future::Ready<Result<RelaySecretHeader, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = req
            .headers()
            .get(RELAY_SECRET_HEADER)
            .and_then(|v| v.to_str().ok());
        let ok = match (req.app_data::<State>(), presented) {
            (Some(state), Some(secret)) => {
                !secret.is_empty() && crate::crypto::secrets_equal(secret, state.relay_secret())
            }
            _ => false,
        };
        std::future::ready(if ok {
            Ok(RelaySecretHeader)
        } else {
            Err(ApiError::Unauthorized(format!(
                "relay secret missing or wrong in {RELAY_SECRET_HEADER}"
            )))
        })
    }
}

impl FromRequest for RelayAuth {
    type Error = ApiError;
    type Future = std::future::Ready<Result<RelayAuth, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ok = match (req.app_data::<State>(), bearer(req)) {
            (Some(state), Some(token)) => {
                crate::crypto::secrets_equal(&token, state.relay_secret())
            }
            _ => false,
        };
        std::future::ready(if ok {
            Ok(RelayAuth)
        } else {
            Err(ApiError::Unauthorized(
                "relay secret missing or wrong".into(),
            ))
        })
    }
}
