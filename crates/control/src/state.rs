//! `AppState`: what every handler can reach — the database pool, the
//! configuration, the identity-provider verifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

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
    /// Grants remembered for at most a second, while the access feed stands still.
    pub access_cache: crate::store::access_cache::AccessCache,
    /// Single-token verifies waiting to share a database round.
    pub verify_queue: crate::verify_queue::VerifyQueue,
    /// Cancelled when the server starts shutting down: long polls answer at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub metrics: crate::metrics::Metrics,
    /// Brakes password guessing and account creation.
    pub auth_limiter: crate::ratelimit::RateLimiter,
    /// Brakes invite emails, per inviting user.
    pub invite_limiter: crate::ratelimit::RateLimiter<String>,
    /// Wakes the event streams of one conversation in this process at once
    /// (other replicas' events are found by polling).
    pub chat_events: Wakers,
    /// Wakes the outbox dispatcher.
    pub outbox_wake: tokio::sync::Notify,
    /// Delivers outbox emails.
    pub mailer: std::sync::Arc<dyn crate::mail::Sender>,
    /// Seals users' API keys; `None` without `TANDEM_SETTINGS_KEY`.
    pub secrets: Option<crate::crypto::SecretBox>,
    /// Hashes and checks passwords off the async workers, a few at a time,
    /// never holding a database connection.
    pub passwords: crate::auth::passwords::PasswordHasher,
    /// Whose `X-Forwarded-For` decides the client IP (`TANDEM_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::http::client_ip::TrustedProxies,
    /// Open event streams per user (`TANDEM_MAX_STREAMS_PER_USER`).
    pub stream_slots: crate::streams::StreamSlots,
    /// One poll loop per conversation with open streams.
    pub chat_pollers: crate::streams::Pollers,
    /// Wakes the sync event streams of one workspace in this process at once.
    pub sync_wakers: Wakers,
    /// One poll loop per workspace with open sync event streams.
    pub sync_pollers: crate::sync_live::SyncPollers,
    /// Wakes the event streams of one workspace in this process at once.
    pub workspace_events: Wakers,
    /// One poll loop per workspace with open streams.
    pub workspace_pollers: crate::streams::Pollers,
    /// The relay URL the demo page connects to: `TANDEM_PUBLIC_RELAY_URL`,
    /// or set once by `tandem dev` when its relay has a port.
    pub public_relay_url: std::sync::OnceLock<String>,
    /// Where the bytes of files are (`TANDEM_FILES_BACKEND`).
    pub files: crate::files::Storage,
    /// Wakes the webhook dispatcher.
    pub webhook_wake: tokio::sync::Notify,
    /// Sends webhook attempts (no redirects, resolved names checked).
    pub webhook_client: reqwest::Client,
    /// The settings a configuration reload changes (log filter, CORS, rate limits).
    pub runtime: crate::admin::Runtime,
}

pub type State = web::Data<Arc<AppState>>;

/// One `Notify` per key (a conversation id), made when someone waits on it
/// and dropped with its last waiter, so a write wakes only the streams of
/// its own conversation.
#[derive(Default)]
pub struct Wakers(Mutex<HashMap<String, Weak<Notify>>>);

impl Wakers {
    /// The `Notify` of `key`; hold it while waiting.
    pub fn subscribe(&self, key: &str) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(key).and_then(Weak::upgrade) {
            return n;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        map.insert(key.to_string(), Arc::downgrade(&n));
        n
    }

    /// Wakes everyone waiting on `key` now.
    pub fn wake(&self, key: &str) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(key).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

impl AppState {
    /// Tells waiting event polls that an access change was committed.
    pub fn access_changed(&self) {
        self.access_events.notify_waiters();
    }

    /// Tells this process's streams of a conversation that it has new events.
    pub fn chat_changed(&self, conversation_id: &str) {
        self.chat_events.wake(conversation_id);
    }

    /// Tells this process's sync streams of a workspace that it changed.
    pub fn sync_changed(&self, workspace_id: &str) {
        self.sync_wakers.wake(workspace_id);
    }

    /// Waits until `woken` fires or `every` has passed; `false` when the
    /// server is shutting down (the caller should stop).
    pub async fn nap(&self, woken: impl std::future::Future<Output = ()>, every: Duration) -> bool {
        tokio::select! {
            _ = woken => true,
            _ = tokio::time::sleep(every) => true,
            _ = self.shutdown.cancelled() => false,
        }
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
        // Log lines of the blocking work carry the request's id too.
        let span = tracing::Span::current();
        let request_id = crate::observe::request_id();
        let (out, touched) = web::block(move || {
            let _in_request = span.enter();
            // Audit entries appended by this job name its request.
            crate::store::audit::set_request_id(request_id);
            // Whatever an earlier job left behind is not ours.
            crate::store::workspace_events::take_pending();
            crate::store::webhooks::take_pending();
            let out = pool
                .get()
                .map_err(ApiError::from)
                .and_then(|mut c| f(&mut c));
            // `f` has committed (or rolled back) by now: wake the streams of
            // the workspaces it wrote events to (a rollback wakes in vain).
            let touched = crate::store::workspace_events::take_pending();
            (out, (touched, crate::store::webhooks::take_pending()))
        })
        .await?;
        let (touched, webhooks) = touched;
        for id in &touched {
            self.workspace_events.wake(id);
        }
        if webhooks {
            self.webhook_wake.notify_waiters();
        }
        out
    }
}
