//! The caller's settings: `GET/PATCH /me/settings`,
//! `PUT/DELETE /me/settings/api-keys/{provider}`. API keys are stored
//! encrypted and only ever answered masked.

use actix_web::{web, HttpResponse};
use tandem_protocol::chat::{PutApiKey, Settings, UpdateSettings};

use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::State;
use crate::store::settings;
use crate::validate;

const MAX_KEY_CHARS: usize = 1024;
const MAX_PREFERENCES_BYTES: usize = 16 * 1024;

fn provider(raw: &str) -> Result<&str, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    ok.then_some(raw).ok_or_else(|| {
        ApiError::validation("provider must be 1-64 characters of a-z, 0-9, - and _")
    })
}

pub async fn get(state: State, user: AuthUser) -> Result<web::Json<Settings>, ApiError> {
    let st = state.clone();
    let s = state
        .db(move |c| settings::get(c, st.secrets.as_ref(), user.id()))
        .await?;
    Ok(web::Json(s))
}

pub async fn update(
    state: State,
    user: AuthUser,
    body: web::Json<UpdateSettings>,
) -> Result<web::Json<Settings>, ApiError> {
    let body = body.into_inner();
    if let Some(p) = &body.model_preferences {
        if p.to_string().len() > MAX_PREFERENCES_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_PREFERENCES_BYTES));
        }
    }
    let st = state.clone();
    let s = state
        .db(move |c| {
            if let Some(p) = &body.model_preferences {
                settings::set_preferences(c, user.id(), p)?;
            }
            settings::get(c, st.secrets.as_ref(), user.id())
        })
        .await?;
    Ok(web::Json(s))
}

pub async fn put_key(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<PutApiKey>,
) -> Result<web::Json<Settings>, ApiError> {
    let provider = provider(&path)?.to_string();
    let key = validate::text("key", &body.key, MAX_KEY_CHARS)?;
    let st = state.clone();
    let s = state
        .db(move |c| {
            let sbox = st.secrets.as_ref().ok_or_else(settings::missing_key)?;
            settings::put_key(c, sbox, user.id(), &provider, &key)?;
            settings::get(c, Some(sbox), user.id())
        })
        .await?;
    Ok(web::Json(s))
}

pub async fn delete_key(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider(&path)?.to_string();
    state
        .db(move |c| settings::delete_key(c, user.id(), &provider))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
