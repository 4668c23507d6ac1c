//! Webhooks of an organization (the admin policy's `ManageWebhooks`:
//! owners; members get 403, outsiders 404):
//! `POST|GET /orgs/{id}/webhooks`, `GET|PATCH|DELETE
//! /orgs/{id}/webhooks/{hookId}`, `POST …/rotate-secret`, `GET
//! …/deliveries`, `POST …/deliveries/{deliveryId}/redeliver`. The signing
//! secret is shown by create and rotate only.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::Page;
use tandem_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, UpdateWebhook, WebhookDelivery, WebhookEndpoint, WebhookSecret,
};

use super::orgs::as_admin;
use crate::authz::AdminAction::ManageWebhooks;
use crate::crypto;
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::{AppState, State};
use crate::store::webhooks::{self as store, EndpointRow, NewEndpoint};

/// Runs `f` with endpoint `hook_id` of the org once the admin policy lets
/// the user manage the org's webhooks.
async fn with_hook<T, F>(
    state: &AppState,
    user: AuthUser,
    (org_id, hook_id): (String, String),
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut DbConnection, &AuthUser, EndpointRow) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    as_admin(state, user, org_id, ManageWebhooks, move |c, user, org| {
        let hook = store::get(c, &org.id, &hook_id)?;
        f(c, user, hook)
    })
    .await
}

/// A fresh secret and its sealed form for endpoint `id`.
fn new_secret(state: &AppState, id: &str) -> Result<(String, String, String), ApiError> {
    let sbox = state.secrets.as_ref().ok_or_else(|| {
        ApiError::Misconfigured(
            "TANDEM_SETTINGS_KEY is not set, so webhook secrets cannot be stored".into(),
        )
    })?;
    let secret = crypto::new_webhook_secret();
    let sealed = sbox.seal(&secret, &EndpointRow::secret_aad(id));
    Ok((secret, sealed, sbox.key_id().to_string()))
}

pub async fn create(
    state: State,
    user: AuthUser,
    org_id: web::Path<String>,
    body: web::Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let url = store::check_url(&body.url)?;
    let events = store::check_events(&body.events)?;
    let description = store::check_description(body.description.as_deref().unwrap_or(""))?;
    // Who asks is checked before the (slower) name resolution.
    let org = as_admin(
        &state,
        user.clone(),
        org_id.into_inner(),
        ManageWebhooks,
        |_, _, org| Ok(org),
    )
    .await?;
    crate::webhooks::check_target(&url, state.config.webhook_allow_private).await?;
    let id = crypto::new_id();
    let (secret, sealed, key_id) = new_secret(&state, &id)?;
    let new = NewEndpoint {
        id,
        org_id: org.id,
        url: url.to_string(),
        description,
        events,
        secret_sealed: sealed,
        secret_key_id: key_id,
        created_by: user.id().to_string(),
    };
    let row = state.db(move |c| store::create(c, new)).await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        endpoint: row.to_dto(),
        secret,
    }))
}

pub async fn list(
    state: State,
    user: AuthUser,
    org_id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<WebhookEndpoint>>, ApiError> {
    let page = page.check()?;
    let items = as_admin(
        &state,
        user,
        org_id.into_inner(),
        ManageWebhooks,
        move |c, _, org| store::list(c, &org.id, &page),
    )
    .await?;
    Ok(web::Json(items))
}

pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<WebhookEndpoint>, ApiError> {
    let row = with_hook(&state, user, path.into_inner(), |_, _, hook| Ok(hook)).await?;
    Ok(web::Json(row.to_dto()))
}

pub async fn update(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<UpdateWebhook>,
) -> Result<web::Json<WebhookEndpoint>, ApiError> {
    let (org_id, hook_id) = path.into_inner();
    let mut change = body.into_inner();
    let url = change.url.as_deref().map(store::check_url).transpose()?;
    if let Some(events) = &change.events {
        change.events = Some(store::check_events(events)?);
    }
    if let Some(d) = &change.description {
        change.description = Some(store::check_description(d)?);
    }
    let ids = (org_id.clone(), hook_id.clone());
    with_hook(&state, user.clone(), ids, |_, _, _| Ok(())).await?;
    if let Some(url) = url {
        crate::webhooks::check_target(&url, state.config.webhook_allow_private).await?;
        change.url = Some(url.to_string());
    }
    let row = state
        .db(move |c| store::update(c, user.id(), &org_id, &hook_id, &change))
        .await?;
    Ok(web::Json(row.to_dto()))
}

pub async fn delete(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    with_hook(&state, user, path.into_inner(), |c, user, hook| {
        store::delete(c, user.id(), &hook.org_id, &hook.id)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn rotate_secret(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<WebhookSecret>, ApiError> {
    let ids = path.into_inner();
    let (secret, sealed, key_id) = new_secret(&state, &ids.1)?;
    with_hook(&state, user, ids, move |c, user, hook| {
        store::set_secret(c, user.id(), &hook.org_id, &hook.id, &sealed, &key_id)
    })
    .await?;
    Ok(web::Json(WebhookSecret { secret }))
}

pub async fn deliveries(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<WebhookDelivery>>, ApiError> {
    let page = page.check()?;
    let items = with_hook(&state, user, path.into_inner(), move |c, _, hook| {
        store::deliveries(c, &hook.id, &page)
    })
    .await?;
    Ok(web::Json(items))
}

pub async fn redeliver(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org_id, hook_id, delivery_id) = path.into_inner();
    let delivery = with_hook(&state, user, (org_id, hook_id), move |c, _, hook| {
        store::redeliver(c, &hook, &delivery_id)
    })
    .await?;
    Ok(HttpResponse::Accepted().json(delivery))
}
