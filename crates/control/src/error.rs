//! `ApiError`: the one error type of HTTP handlers, mapped to a status and the
//! JSON envelope in one `match`. Internal causes are logged, never sent.
//!
//! Store functions return `StoreError`-free `ApiError`s directly: a storage
//! fault becomes `Internal` (logged here), a lost race `Conflict`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tandem_protocol::{ErrorBody, ErrorCode};

use crate::authz::Denial;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Misconfigured(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 413 with a message saying which bound was exceeded.
    #[error("{0}")]
    TooLarge(String),
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Validation(String),
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    /// A per-user cap is reached (e.g. open event streams): 429, no Retry-After.
    #[error("{0}")]
    TooMany(String),
    #[error("service temporarily unavailable")]
    Unavailable,
    #[error("the file is larger than the maximum of {0} bytes")]
    FileTooLarge(i64),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("the uploaded bytes do not match the declared sha256; nothing was kept")]
    HashMismatch,
    #[error("{0}")]
    SizeMismatch(String),
    #[error("{0}")]
    InvalidSignature(&'static str),
    #[error("the requested range is outside the file")]
    RangeNotSatisfiable,
    /// 408: an upload body slower than the minimum rate.
    #[error("the body did not arrive within {0} s; nothing of it was kept")]
    BodyTimeout(u64),
    /// A webhook URL pointing at a non-public address.
    #[error("{0}")]
    TargetRefused(String),
    /// 415 naming the media type the body must have.
    #[error("request body must be {0}")]
    WrongMediaType(&'static str),
    /// Any code with its own message (the extension checks' 422s).
    #[error("{1}")]
    Coded(ErrorCode, String),
    /// 403 `guest_access_denied`, saying what the setting allows.
    #[error("{0}")]
    GuestAccessDenied(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Gone(_) => ErrorCode::Gone,
            ApiError::Misconfigured(_) => ErrorCode::Misconfigured,
            ApiError::PayloadTooLarge(_) | ApiError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType | ApiError::WrongMediaType(_) => {
                ErrorCode::UnsupportedMediaType
            }
            ApiError::Coded(code, _) => *code,
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::RateLimited(_) | ApiError::TooMany(_) => ErrorCode::RateLimited,
            ApiError::Unavailable => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::FileTooLarge(_) => ErrorCode::FileTooLarge,
            ApiError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            ApiError::HashMismatch => ErrorCode::HashMismatch,
            ApiError::BodyTimeout(_) => ErrorCode::BodyTimeout,
            ApiError::SizeMismatch(_) => ErrorCode::SizeMismatch,
            ApiError::InvalidSignature(_) => ErrorCode::InvalidSignature,
            ApiError::RangeNotSatisfiable => ErrorCode::RangeNotSatisfiable,
            ApiError::TargetRefused(_) => ErrorCode::WebhookTargetRefused,
            ApiError::GuestAccessDenied(_) => ErrorCode::GuestAccessDenied,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        self.error_response()
    }

    pub fn validation(msg: impl Into<String>) -> Self {
        ApiError::Validation(msg.into())
    }

    /// A unique violation (a lost race, a duplicate) as `Conflict(msg)`;
    /// any other database error as usual.
    pub fn conflict_if_unique(e: diesel::result::Error, msg: &str) -> Self {
        if crate::db::is_unique_violation(&e) {
            ApiError::Conflict(msg.into())
        } else {
            e.into()
        }
    }

    /// Maps a denial of `can()` for a thing of the given noun.
    pub fn denied(denial: Denial, what: &'static str) -> Self {
        match denial {
            Denial::NotFound => ApiError::NotFound(what),
            Denial::Forbidden => ApiError::Forbidden,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            ApiError::Unavailable => tracing::warn!("answered 503: a dependency is unavailable"),
            ApiError::Misconfigured(why) => tracing::error!(%why, "misconfigured"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited(secs) = self {
            res.insert_header(("retry-after", secs.to_string()));
        }
        let body = ErrorBody::new(self.code(), self.to_string());
        res.json(body.with_request_id(crate::observe::request_id()))
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        if crate::db::is_unique_violation(&e) {
            return ApiError::Conflict("conflicts with an existing record".into());
        }
        ApiError::Internal(e.into())
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection available");
        ApiError::Unavailable
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}
