//! `Application::build(config)`: binds the listener (port 0 in tests), opens
//! the database and applies migrations, loads identity-provider keys, and
//! returns a server that `main`, `tandem dev` and the tests all start the
//! same way.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use tandem_protocol::{ErrorBody, ErrorCode};

use crate::auth::jwt::JwtVerifier;
use crate::config::ControlConfig;
use crate::state::AppState;
use crate::{cors, crypto, db, http, observe};

/// Invites one user may send per minute (each sends an email).
const INVITES_PER_MINUTE: u32 = 10;

pub struct Application {
    port: u16,
    /// Port of the separate `/metrics` listener (`TANDEM_METRICS_LISTEN`).
    metrics_port: Option<u16>,
    server: Server,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(mut config: ControlConfig) -> anyhow::Result<Application> {
        if config.relay_secret.as_deref().is_none_or(str::is_empty) {
            anyhow::ensure!(
                config.dev,
                "TANDEM_RELAY_SECRET is required (or run in development mode with --dev)"
            );
            config.relay_secret = Some(crypto::new_token());
        }
        let origins = cors::origins(config.cors_origins.as_deref())?;
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        if config.public_url.trim().is_empty() {
            config.public_url = format!("http://{}:{port}", config.listen.ip());
        }
        check_jwt_settings(&config)?;
        anyhow::ensure!(
            config.webhook_retention_days.is_finite() && config.webhook_retention_days >= 0.0,
            "TANDEM_WEBHOOK_RETENTION_DAYS must be a number of days, 0 or more"
        );
        let trusted_proxies =
            crate::http::client_ip::TrustedProxies::parse(&config.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("TANDEM_TRUSTED_PROXIES: {e}"))?;

        let (url, size) = (config.database_url.clone(), config.db_pool_size);
        let (pool, database) = tokio::task::spawn_blocking(move || db::connect(&url, size))
            .await?
            .context("cannot open the database")?;
        let jwt = match &config.jwks {
            Some(jwks) => Some(
                JwtVerifier::load(jwks, config.jwt_issuer.clone(), config.jwt_audience.clone())
                    .await
                    .context("cannot load identity provider keys (TANDEM_JWKS)")?,
            ),
            None => None,
        };
        let mailer = crate::mail::sender(config.smtp_url.as_deref(), config.dev)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let secrets = match &config.settings_key {
            Some(k) => Some(
                crypto::SecretBox::new(k, &config.settings_key_previous)
                    .map_err(|e| anyhow::anyhow!("TANDEM_SETTINGS_KEY: {e}"))?,
            ),
            None => {
                tracing::warn!("TANDEM_SETTINGS_KEY is not set: users cannot store API keys");
                None
            }
        };
        let iterations = config.pbkdf2_iterations;
        let config_rate = config.auth_rate_per_minute;
        let passwords = crate::auth::passwords::PasswordHasher::new(
            iterations,
            config.password_hash_concurrency,
        );
        tracing::info!(
            personal_domains = crate::auth::domains::count(),
            hash_concurrency = passwords.concurrency(),
            trusted_proxies = config.trusted_proxies.len(),
            "identity settings"
        );
        let config_cors = config.cors_origins.clone();
        let files = crate::files::Storage::from_config(
            &config,
            crate::files::UrlSigner::new(config.relay_secret.as_deref().unwrap_or_default()),
        )?;
        if config.webhook_allow_private {
            tracing::warn!(
                "TANDEM_WEBHOOK_ALLOW_PRIVATE: webhooks may target private and loopback addresses"
            );
        }
        let webhook_client = crate::webhooks::client(config.webhook_allow_private)?;
        let state = Arc::new(AppState {
            files,
            pool,
            database,
            dummy_password_hash: crypto::dummy_password_hash(iterations),
            jwt,
            config,
            access_events: tokio::sync::Notify::new(),
            access_cache: Default::default(),
            verify_queue: crate::verify_queue::VerifyQueue::new(tokio::runtime::Handle::current()),
            shutdown: tokio_util::sync::CancellationToken::new(),
            metrics: crate::metrics::Metrics::new(),
            auth_limiter: crate::ratelimit::RateLimiter::new(config_rate),
            invite_limiter: crate::ratelimit::RateLimiter::new(INVITES_PER_MINUTE),
            chat_events: crate::state::Wakers::default(),
            outbox_wake: tokio::sync::Notify::new(),
            mailer,
            secrets,
            passwords,
            trusted_proxies,
            stream_slots: Default::default(),
            chat_pollers: Default::default(),
            sync_wakers: Default::default(),
            sync_pollers: Default::default(),
            workspace_events: crate::state::Wakers::default(),
            workspace_pollers: crate::streams::Pollers::new(crate::streams::Feed::Workspace),
            public_relay_url: std::sync::OnceLock::new(),
            webhook_wake: tokio::sync::Notify::new(),
            webhook_client,
            runtime: crate::admin::Runtime::new(
                config_cors.as_deref().unwrap_or_default(),
                origins,
            ),
        });
        if state.config.reload_file.is_some() {
            crate::admin::reload(&state).map_err(|e| {
                anyhow::anyhow!("TANDEM_RELOAD_FILE: {}", crate::admin::describe(&e))
            })?;
        }
        if let Some(url) = state.config.public_relay_url.clone() {
            let _ = state.public_relay_url.set(url);
        }
        tokio::spawn(crate::mail::dispatch(state.clone()));
        tokio::spawn(crate::webhooks::dispatch(state.clone()));
        tokio::spawn(crate::sync_live::compact(state.clone()));
        tokio::spawn(crate::files::collector::every_interval(state.clone()));
        let server = serve(listener, state.clone())?;
        let metrics_port = serve_metrics(&state)?;
        // Ctrl-C, SIGTERM or `shutdown_token().cancel()`: end long polls, then
        // stop gracefully (in-flight requests get the shutdown timeout).
        let (stop, handle) = (state.shutdown.clone(), server.handle());
        let signals = state.config.handle_signals;
        if signals {
            tokio::spawn(reload_on_hangup(state.clone()));
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal(), if signals => tracing::info!("shutdown signal received"),
                _ = stop.cancelled() => {}
            }
            stop.cancel();
            handle.stop(true).await;
        });
        tracing::info!(
            addr = %format!("http://{}:{port}", state.config.listen.ip()),
            database = state.database.backend_name(),
            "control listening"
        );
        Ok(Application {
            port,
            metrics_port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener, when one is configured.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A handle to stop the server (tests use it to simulate an outage).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Cancel it to shut the server down gracefully.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.state.shutdown.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// With identity-provider keys, `iss` and `aud` must be checked: a token the
/// same provider signed for another application must not sign users in here.
/// `TANDEM_JWT_ALLOW_ANY_ISSUER_AUDIENCE=true` waives this, loudly.
fn check_jwt_settings(config: &ControlConfig) -> anyhow::Result<()> {
    if config.jwks.is_none() {
        return Ok(());
    }
    let issuer = config
        .jwt_issuer
        .as_deref()
        .is_some_and(|i| !i.trim().is_empty());
    let audience = config.jwt_audience.iter().any(|a| !a.trim().is_empty());
    if issuer && audience {
        return Ok(());
    }
    anyhow::ensure!(
        config.jwt_allow_any_issuer_audience,
        "TANDEM_JWKS is set, so TANDEM_JWT_ISSUER and TANDEM_JWT_AUDIENCE are required \
         (tokens your identity provider signs for other applications would sign users in); \
         set TANDEM_JWT_ALLOW_ANY_ISSUER_AUDIENCE=true to accept them anyway"
    );
    tracing::warn!(
        issuer_checked = issuer,
        audience_checked = audience,
        "SECURITY: TANDEM_JWT_ALLOW_ANY_ISSUER_AUDIENCE is on: identity-provider JWTs are \
         accepted without checking both issuer and audience; any token these keys sign, \
         for any application, signs users in"
    );
    Ok(())
}

fn serve(listener: TcpListener, state: Arc<AppState>) -> anyhow::Result<Server> {
    let origins = state.runtime.cors.clone();
    let workers = match state.config.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let max_body = state.config.max_body_bytes;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(http::json_error),
            )
            .app_data(web::PathConfig::default().error_handler(http::path_error))
            .app_data(web::QueryConfig::default().error_handler(http::query_error))
            .configure(http::routes)
            .default_service(web::to(http::demo::fallback))
            .wrap(cors::middleware(origins.clone()))
            // Outermost: ids, span, log line and metrics for everything.
            .wrap(from_fn(observe::request))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Starts the separate `/metrics` listener when `TANDEM_METRICS_LISTEN` is
/// set; it stops with the shutdown token.
fn serve_metrics(state: &Arc<AppState>) -> anyhow::Result<Option<u16>> {
    let Some(addr) = state.config.metrics_listen else {
        return Ok(None);
    };
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let port = listener.local_addr()?.port();
    let server = http::health::metrics_server(listener, state.clone())?;
    let (stop, handle) = (state.shutdown.clone(), server.handle());
    tokio::spawn(server);
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.stop(true).await;
    });
    tracing::info!(addr = %format!("http://{}:{port}/metrics", addr.ip()), "metrics listening");
    Ok(Some(port))
}

/// The JSON 404 of a path no route knows.
pub(crate) fn not_found() -> HttpResponse {
    let body = ErrorBody::new(ErrorCode::NotFound, "no such path");
    HttpResponse::NotFound().json(body.with_request_id(observe::request_id()))
}

/// SIGHUP: re-read `TANDEM_RELOAD_FILE` and apply what it changes.
async fn reload_on_hangup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {}
                _ = state.shutdown.cancelled() => return,
            }
            match crate::admin::reload(&state) {
                Ok(_) => tracing::info!("SIGHUP: configuration reloaded"),
                Err(e) => {
                    tracing::error!(errors = %crate::admin::describe(&e), "SIGHUP: reload refused; nothing changed")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
