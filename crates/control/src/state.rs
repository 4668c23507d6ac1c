//! `AppState`: what every handler can reach — the database pool, the
//! configuration, the identity-provider verifier.

use std::sync::Arc;

use actix_web::web;

use crate::auth::jwt::JwtVerifier;
use crate::config::ControlConfig;
use crate::db::{DatabaseUrl, DbConnection, DbPool};
use crate::error::ApiError;

pub struct AppState {
    pub pool: DbPool,
    /// Which backend the pool talks to (for logs and readiness).
    pub database: DatabaseUrl,
    pub config: ControlConfig,
    /// Set when `TANDEM_JWKS` is configured.
    pub jwt: Option<JwtVerifier>,
    /// Checked against when a login names an unknown email, so that the
    /// answer takes as long as for a wrong password.
    pub dummy_password_hash: String,
    /// Wakes long-polls of `/collaboration/events` in this process at once
    /// (other replicas' changes are found by polling the table).
    pub access_events: tokio::sync::Notify,
    /// Cancelled when the server starts shutting down: long polls answer at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub metrics: crate::metrics::Metrics,
    /// Brakes password guessing and account creation.
    pub auth_limiter: crate::ratelimit::RateLimiter,
    /// Brakes invite emails, per inviting user.
    pub invite_limiter: crate::ratelimit::RateLimiter<String>,
    /// Wakes conversation event streams in this process at once (other
    /// replicas' events are found by polling).
    pub chat_events: tokio::sync::Notify,
    /// Wakes the outbox dispatcher.
    pub outbox_wake: tokio::sync::Notify,
    /// Delivers outbox emails.
    pub mailer: std::sync::Arc<dyn crate::mail::Sender>,
    /// Seals users' API keys; `None` without `TANDEM_SETTINGS_KEY`.
    pub secrets: Option<crate::crypto::SecretBox>,
}

pub type State = web::Data<Arc<AppState>>;

impl AppState {
    /// Tells waiting event polls that an access change was committed.
    pub fn access_changed(&self) {
        self.access_events.notify_waiters();
    }

    /// Tells this process's conversation streams that events were written.
    pub fn chat_changed(&self) {
        self.chat_events.notify_waiters();
    }

    /// The shared secret relays present.
    pub fn relay_secret(&self) -> &str {
        self.config.relay_secret.as_deref().unwrap_or_default()
    }

    /// Runs blocking diesel work on the blocking thread pool, off the async
    /// workers, with a pooled connection.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }
}
