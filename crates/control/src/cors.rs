//! Cross-origin access for browser apps (`TANDEM_CORS_ORIGINS`): preflights
//! are answered for every path (before routing, so 404/405 paths too), with
//! the headers a client sends and reads. Bearer tokens only: no credentials
//! (cookies) mode. Origins not in the list get no CORS headers (and a 400 to
//! a preflight); their requests still run, as for any non-browser client.

use actix_cors::Cors;
use actix_web::http::header;
use tandem_protocol::origin::OriginList;

use crate::admin::SharedOrigins;
use crate::observe::REQUEST_ID_HEADER;

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// The CORS middleware for an origin list (one per worker).
/// The list is read on every request, so a configuration reload changes it
/// at once.
pub fn middleware(origins: SharedOrigins) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            let Ok(o) = origin.to_str() else {
                return false;
            };
            origins.read().is_ok_and(|list| list.1.allows(o))
        })
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static(REQUEST_ID_HEADER),
            header::RANGE,
            header::HeaderName::from_static(tandem_protocol::files::SHA256_STATE_HEADER),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::ETAG,
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
            header::HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECS)
}

/// Parses `TANDEM_CORS_ORIGINS` (unset: no cross-origin access), warning
/// when every origin is allowed.
pub fn origins(setting: Option<&str>) -> anyhow::Result<OriginList> {
    let setting = setting.unwrap_or_default();
    let list =
        OriginList::parse(setting).map_err(|e| anyhow::anyhow!("TANDEM_CORS_ORIGINS: {e}"))?;
    if setting.split(',').any(|entry| entry.trim() == "*") {
        tracing::warn!("TANDEM_CORS_ORIGINS=*: web pages of any origin may call control");
    }
    Ok(list)
}
