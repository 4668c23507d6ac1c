//! The error envelope of every non-2xx answer of control:
//! `{"error":{"code":"not_found","message":"...","requestId":"..."}}`.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. Each maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request could not be read (malformed JSON, bad query string).
    BadRequest,
    /// 401: no credentials, or credentials that are not valid.
    Unauthorized,
    /// 403: authenticated, but not allowed to do this.
    Forbidden,
    /// 404: no such thing, or not visible to the caller.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: conflicts with existing state (duplicate email, existing member).
    Conflict,
    /// 410: it existed but no longer can be used (an expired or revoked invite or share).
    Gone,
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: well-formed JSON whose fields are missing, of the wrong type or invalid.
    ValidationFailed,
    /// 429: too many requests.
    RateLimited,
    /// 500: a fault on the server; details are in its logs, never in the body.
    Internal,
    /// 500: the server is configured so it cannot do this (e.g. stored secrets
    /// were encrypted with another key); the message says what to fix.
    Misconfigured,
    /// 503: a dependency (database, control) is unavailable; retry later.
    Unavailable,
    /// 413: a file is larger than the server's maximum file size.
    FileTooLarge,
    /// 507: the workspace's file quota would be exceeded.
    QuotaExceeded,
    /// 422: the uploaded bytes do not have the declared SHA-256 (nothing was kept).
    HashMismatch,
    /// 422: the uploaded bytes are not the declared size, or parts are missing.
    SizeMismatch,
    /// 403: a signed URL whose signature is wrong or whose time is up.
    InvalidSignature,
    /// 416: a `Range` outside the file.
    RangeNotSatisfiable,
    /// 408: an upload's body did not arrive in time (slower than the
    /// server's minimum rate); nothing of it was kept: send it again.
    BodyTimeout,
    /// 422: a webhook URL whose host is (or resolves to) a private, loopback,
    /// link-local, multicast or unspecified address.
    WebhookTargetRefused,
    /// 422: an extension archive is not a readable zip (corrupt, encrypted,
    /// an unsupported compression method, or an entry whose bytes do not
    /// match its declared size or CRC).
    InvalidArchive,
    /// 422: an extension archive has an entry whose path is unsafe (`..`,
    /// absolute, a drive letter, a backslash), a symlink, or a duplicate name.
    UnsafeEntry,
    /// 422: an extension archive unpacks to too much: too many entries, too
    /// many bytes in all, or an entry compressed beyond the allowed ratio.
    ArchiveTooLarge,
    /// 422: `tandem-extension.json` is missing or invalid (JSON, fields,
    /// kind, semver version, settings schema, an entry not in the archive).
    InvalidManifest,
    /// 422: extension settings do not fit the extension's settings schema.
    InvalidSettings,
    /// 403: the workspace's guest access setting does not let someone from
    /// outside its org in (or not with this role).
    GuestAccessDenied,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal | ErrorCode::Misconfigured => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::FileTooLarge => 413,
            ErrorCode::QuotaExceeded => 507,
            ErrorCode::HashMismatch | ErrorCode::SizeMismatch => 422,
            ErrorCode::InvalidSignature => 403,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::BodyTimeout => 408,
            ErrorCode::WebhookTargetRefused => 422,
            ErrorCode::InvalidArchive
            | ErrorCode::UnsafeEntry
            | ErrorCode::ArchiveTooLarge
            | ErrorCode::InvalidManifest
            | ErrorCode::InvalidSettings => 422,
            ErrorCode::GuestAccessDenied => 403,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The request's id (also in the `x-request-id` header and the server's
    /// logs): quote it when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                request_id: None,
            },
        }
    }

    /// The same body, naming the request it answers.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        self.error.request_id = id;
        self
    }
}
