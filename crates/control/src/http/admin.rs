//! Instance administration, for the verified addresses of `TANDEM_ADMINS`
//! (everyone else: 403): `GET /admin/config` (effective settings, secrets
//! masked), `POST /admin/config/validate` (check settings, apply nothing),
//! `POST /admin/config/reload` (re-read `TANDEM_RELOAD_FILE`, like SIGHUP).

use actix_web::web;
use tandem_protocol::extensions::{
    AdminConfig, RuntimeSettings, ValidateConfigRequest, ValidateConfigResponse,
};

use crate::admin;
use crate::authz::{can_admin, AdminAction, AdminFacts, Decision};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::State;

/// The instance's admin area, decided by the one admin policy table: only
/// instance admins (`TANDEM_ADMINS`) may `ManageInstance`. Everyone else is
/// refused with 403 (the area's existence is no secret).
fn require_admin(state: &State, user: &AuthUser) -> Result<(), ApiError> {
    let facts = AdminFacts {
        role: None,
        instance_admin: admin::is_admin(&state.config, &user.user),
    };
    match can_admin(AdminAction::ManageInstance, &facts) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(_) => Err(ApiError::Forbidden),
    }
}

pub async fn config(state: State, user: AuthUser) -> Result<web::Json<AdminConfig>, ApiError> {
    require_admin(&state, &user)?;
    let runtime = state.runtime.settings(&state);
    Ok(web::Json(AdminConfig {
        settings: admin::effective_settings(&state.config, &runtime),
        runtime,
    }))
}

pub async fn validate(
    state: State,
    user: AuthUser,
    body: web::Json<ValidateConfigRequest>,
) -> Result<web::Json<ValidateConfigResponse>, ApiError> {
    require_admin(&state, &user)?;
    if body.settings.len() > 200 {
        return Err(ApiError::validation("at most 200 settings at once"));
    }
    let errors = admin::validate(&body.settings);
    Ok(web::Json(ValidateConfigResponse {
        valid: errors.is_empty(),
        errors,
    }))
}

pub async fn reload(state: State, user: AuthUser) -> Result<web::Json<RuntimeSettings>, ApiError> {
    require_admin(&state, &user)?;
    let s = state.clone();
    let settings = web::block(move || admin::reload(&s))
        .await?
        .map_err(|e| ApiError::validation(admin::describe(&e)))?;
    tracing::info!(user = %user.id(), "configuration reloaded");
    Ok(web::Json(settings))
}
