//! Webhooks of an organization (`/orgs/{id}/webhooks/…`), delivered with
//! Standard Webhooks headers. See `proto-docs/webhooks.md`.

use serde::{Deserialize, Serialize};

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 9] = [
    "member.added",
    "member.removed",
    "member.role_changed",
    "document.created",
    "document.deleted",
    "document.saved",
    "conversation.message_created",
    "file.uploaded",
    "org.updated",
];

/// `POST /orgs/{id}/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` or `http://…`, at most 2,000 characters, no credentials.
    /// Its host must not be (or resolve to) a private, loopback, link-local,
    /// unique-local, multicast or unspecified address.
    pub url: String,
    /// Event types to deliver (1 to 9 of [`EVENT_TYPES`]).
    pub events: Vec<String>,
    /// At most 500 characters.
    #[serde(default)]
    pub description: Option<String>,
}

/// `PATCH /orgs/{id}/webhooks/{hookId}`: what to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` re-enables a disabled endpoint (its failure streak starts over);
    /// `false` disables it (reason `manual`).
    pub enabled: Option<bool>,
}

/// A webhook endpoint (its secret is never shown again after creation or rotation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it is disabled: `manual`, `gone` (it answered 410), `failing`
    /// (every delivery failed for 5 days) or `exhausted` (a delivery used its
    /// whole retry schedule). `null` while enabled.
    pub disabled_reason: Option<String>,
    /// Unix ms of the first failure of the current streak; `null` when the
    /// last attempt succeeded.
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// 201 of `POST /orgs/{id}/webhooks`: the endpoint and its signing secret,
/// shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_` + base64 of 32 random bytes. Keep it: it is not shown again.
    pub secret: String,
}

/// 200 of `POST /orgs/{id}/webhooks/{hookId}/rotate-secret`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecret {
    /// The new secret (`whsec_…`), shown this once; every later attempt is
    /// signed with it.
    pub secret: String,
}

/// One attempt to deliver a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// From 1.
    pub attempt: i64,
    /// Unix ms when it started.
    pub at: i64,
    /// The HTTP status answered; `null` when there was no answer.
    pub status_code: Option<i64>,
    /// Why it failed (`timed out`, `redirect not followed`, `refused: …`,
    /// a connection error, or `HTTP 500`); `null` on success.
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The start of the answer's body (at most 4 KiB, lossy UTF-8).
    pub response_body: Option<String>,
}

/// One message to one endpoint, and its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: String,
    /// The message id: the `webhook-id` header, the same on every attempt
    /// (and for every endpoint the event went to).
    pub event_id: String,
    /// The event type, e.g. `document.created`.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub created_at: i64,
    /// Unix ms of the next attempt while `pending`.
    pub next_attempt_at: Option<i64>,
    /// The most recent attempts, oldest first (at most 20).
    pub attempts: Vec<WebhookAttempt>,
}
