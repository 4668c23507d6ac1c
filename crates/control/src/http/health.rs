//! `/healthz` (the process answers) and `/readyz` (and its database does),
//! `/metrics`, and `/openapi.json` (this API's description).

use actix_web::web;
use tandem_protocol::http::Health;

use crate::error::ApiError;
use crate::state::State;

pub async fn healthz() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".into(),
    })
}

pub async fn readyz(state: State) -> Result<web::Json<Health>, ApiError> {
    state
        .db(|c| crate::db::ping(c).map_err(|_| ApiError::Unavailable))
        .await?;
    Ok(web::Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (OpenMetrics text format).
pub async fn metrics(state: State) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of this API.
pub async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::json())
}
