//! `/healthz` (the process answers), `/readyz` (and its database does),
//! `/metrics` (optionally behind a token, or on a listener of its own), and
//! `/openapi.json` (this API's description).

use actix_web::{web, HttpRequest, HttpResponse};
use tandem_protocol::http::Health;

use crate::error::ApiError;
use crate::http::extract::bearer;
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

/// Marks the separate `/metrics` listener (`TANDEM_METRICS_LISTEN`).
#[derive(Debug, Clone, Copy)]
pub struct MetricsListener;

/// Prometheus metrics (OpenMetrics text format). With
/// `TANDEM_METRICS_LISTEN` they are served only there (404 on the API
/// address); with `TANDEM_METRICS_TOKEN` only to `Authorization: Bearer <token>`.
pub async fn metrics(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let here = req.app_data::<web::Data<MetricsListener>>().is_some();
    if state.config.metrics_listen.is_some() && !here {
        return Err(ApiError::NotFound("path"));
    }
    if let Some(token) = state.config.metrics_token.as_deref() {
        let presented = bearer(&req).unwrap_or_default();
        if !crate::crypto::secrets_equal(&presented, token) {
            return Err(ApiError::Unauthorized(
                "metrics token missing or wrong".into(),
            ));
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode()))
}

/// The separate metrics server: `GET /metrics` and nothing else.
pub fn metrics_server(
    listener: std::net::TcpListener,
    state: std::sync::Arc<crate::state::AppState>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(MetricsListener))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(|| async {
                ApiError::NotFound("path").into_response()
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of this API.
pub async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::json())
}
