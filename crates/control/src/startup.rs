//! `Application::build(config)`: binds the listener (port 0 in tests), opens
//! the database and applies migrations, loads identity-provider keys, and
//! returns a server that `main`, `tandem dev` and the tests all start the
//! same way.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use futures_util::FutureExt;
use tandem_protocol::{ErrorBody, ErrorCode};

use crate::auth::jwt::JwtVerifier;
use crate::config::ControlConfig;
use crate::state::AppState;
use crate::{crypto, db, http};

/// Invites one user may send per minute (each sends an email).
const INVITES_PER_MINUTE: u32 = 10;

pub struct Application {
    port: u16,
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
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();

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
        let mailer =
            crate::mail::sender(config.smtp_url.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
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
        let state = Arc::new(AppState {
            pool,
            database,
            dummy_password_hash: crypto::dummy_password_hash(iterations),
            jwt,
            config,
            access_events: tokio::sync::Notify::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            metrics: crate::metrics::Metrics::new(),
            auth_limiter: crate::ratelimit::RateLimiter::new(config_rate),
            invite_limiter: crate::ratelimit::RateLimiter::new(INVITES_PER_MINUTE),
            chat_events: crate::state::Wakers::default(),
            outbox_wake: tokio::sync::Notify::new(),
            mailer,
            secrets,
            public_relay_url: std::sync::OnceLock::new(),
        });
        if let Some(url) = state.config.public_relay_url.clone() {
            let _ = state.public_relay_url.set(url);
        }
        tokio::spawn(crate::mail::dispatch(state.clone()));
        let server = serve(listener, state.clone())?;
        // Ctrl-C, SIGTERM or `shutdown_token().cancel()`: end long polls, then
        // stop gracefully (in-flight requests get the shutdown timeout).
        let (stop, handle) = (state.shutdown.clone(), server.handle());
        let signals = state.config.handle_signals;
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
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
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

fn serve(listener: TcpListener, state: Arc<AppState>) -> anyhow::Result<Server> {
    let workers = match state.config.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let max_body = state.config.max_body_bytes;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let metrics_state = data.clone();
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(http::json_error),
            )
            .app_data(web::PathConfig::default().error_handler(http::path_error))
            .app_data(web::QueryConfig::default().error_handler(http::query_error))
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                let method = req.method().clone();
                let state = metrics_state.clone();
                let started = Instant::now();
                srv.call(req).map(move |res| {
                    if let Ok(res) = &res {
                        let status = res.status().as_u16();
                        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
                        let elapsed = started.elapsed();
                        state.metrics.observe(&route, method.as_str(), status, elapsed.as_secs_f64());
                        // The route pattern, not the path: paths carry secrets (share ids).
                        tracing::info!(%method, %route, status, ms = elapsed.as_millis() as u64, "request");
                    }
                    res
                })
            })
            .configure(http::routes)
            .default_service(web::to(http::demo::fallback))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

/// The JSON 404 of a path no route knows.
pub(crate) fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(ErrorBody::new(ErrorCode::NotFound, "no such path"))
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
