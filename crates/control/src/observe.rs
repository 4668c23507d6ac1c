//! What wraps every request: its id (`x-request-id`, taken from the client
//! when sane, else made here), a tracing span carrying it around the handler
//! (and its blocking database work, see `AppState::db`), the id on every
//! response and in the error envelope, the access log line and the HTTP
//! metrics.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::Error;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::State;

/// The header a request id travels in, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id accepted from a client.
const MAX_REQUEST_ID_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1..=64 characters of `[A-Za-z0-9._-]`
/// (so it is safe in logs and headers); otherwise a fresh one is made.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The middleware (`middleware::from_fn(observe::request)`), outermost, so
/// CORS answers and 404s get an id too.
pub async fn request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| sane(s))
        .map_or_else(crate::crypto::new_id, str::to_owned);
    let span = tracing::info_span!("request", request_id = %id);
    let res = REQUEST_ID
        .scope(
            id.clone(),
            handle(req, next, id.clone()).instrument(span.clone()),
        )
        .await?;
    // Bodies produced after the handler returned (event streams) are
    // polled in the request's span too.
    Ok(res.map_body(|_, body| BoxBody::new(InSpan { body, span, id })))
}

/// A body polled inside its request's span and id scope.
struct InSpan {
    body: BoxBody,
    span: tracing::Span,
    id: String,
}

impl MessageBody for InSpan {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let body = Pin::new(&mut this.body);
        REQUEST_ID.sync_scope(this.id.clone(), || body.poll_next(cx))
    }
}

async fn handle(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    id: String,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let method = req.method().clone();
    let state = req.app_data::<State>().cloned();
    let started = Instant::now();
    // Handlers' errors arrive as responses; an `Err` only from middleware
    // faults, which actix answers itself.
    let mut res = next.call(req).await?.map_into_boxed_body();
    // A refused CORS preflight: the JSON envelope instead of plain text.
    let refused = res.response().error().and_then(|e| {
        e.as_error::<actix_cors::CorsError>()
            .map(ToString::to_string)
    });
    if let Some(why) = refused {
        let answer = ApiError::BadRequest(format!("CORS: {why}")).into_response();
        res = ServiceResponse::new(res.request().clone(), answer);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status = res.status().as_u16();
    // The route pattern, not the path: paths carry secrets (share ids).
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let elapsed = started.elapsed();
    if let Some(state) = state {
        let secs = elapsed.as_secs_f64();
        state.metrics.observe(&route, method.as_str(), status, secs);
    }
    tracing::info!(%method, %route, status, ms = elapsed.as_millis() as u64, "request");
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sane_ids_only() {
        assert!(super::sane("abc-DEF_1.2"));
        assert!(super::sane(&"a".repeat(64)));
        assert!(!super::sane(&"a".repeat(65)));
        assert!(!super::sane(""));
        assert!(!super::sane("a b"));
        assert!(!super::sane("a\u{e9}"));
        assert!(!super::sane("a/b"));
    }
}
