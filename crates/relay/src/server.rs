//! `Application::build(config)`: binds the listener, starts the re-check
//! loops, and serves connections until shutdown. Shutdown (Ctrl-C, SIGTERM,
//! or [`Application::shutdown_token`]) stops accepting, closes every socket
//! with 1001 and waits for connections to finish, up to a deadline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::config::RelayConfig;
use crate::control_client::ControlClient;
use crate::hub::{Hub, HubConfig};
use crate::metrics::Metrics;
use crate::recheck;
use tandem_protocol::origin::OriginList;

/// What every connection task shares.
pub struct Shared {
    pub config: RelayConfig,
    pub control: ControlClient,
    pub hub: Arc<Hub>,
    /// Caps the number of open connections.
    pub connections: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// `TANDEM_CORS_ORIGINS`, when set: browsers from other origins are refused.
    pub origins: Option<OriginList>,
    /// Handshakes per client IP.
    pub handshakes: crate::transport::limits::IpLimiter,
    /// Cancelled to stop the node (`POST /admin/drain?exit=true`, signals).
    pub stop: CancellationToken,
    /// Resume tickets (`None` when `TANDEM_RESUME_TICKET_SECS` is 0).
    pub tickets: Option<crate::tickets::Tickets>,
    /// `/readyz`'s answers, reused for a second.
    pub readiness: crate::transport::ops::Readiness,
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    /// `TANDEM_RELAY_OPS_LISTEN`, bound.
    ops: Option<std::net::TcpListener>,
    ops_port: Option<u16>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Application {
    pub async fn build(config: RelayConfig) -> anyhow::Result<Application> {
        let secret = config
            .relay_secret
            .clone()
            .filter(|s| !s.is_empty())
            .context("TANDEM_RELAY_SECRET is required")?;
        let origins = match config.cors_origins.as_deref() {
            Some(list) => Some(OriginList::parse(list).context("TANDEM_CORS_ORIGINS")?),
            None => None,
        };
        let control = ControlClient::new(&config.control_url, &secret)?.with_batching(
            crate::control_client::VerifyBatching {
                max: config.verify_batch_max,
                window: Duration::from_millis(config.verify_batch_window_ms),
            },
        );
        let listener =
            listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        // Bound like the client port, then handed to the ops thread's runtime.
        let ops = match config.ops_listen {
            Some(addr) => Some(
                listen(addr)
                    .and_then(|l| l.into_std())
                    .with_context(|| format!("cannot listen on {addr} (ops)"))?,
            ),
            None => None,
        };
        let ops_port = match &ops {
            Some(l) => Some(l.local_addr()?.port()),
            None => None,
        };
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let cluster = match config.redis_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                tracing::info!("several relay nodes: rooms fan out through Redis");
                Some(Cluster::start(
                    url,
                    metrics.clone(),
                    &tracker,
                    stop.clone(),
                )?)
            }
            None => None,
        };
        let hub = Hub::new(
            HubConfig {
                max_connections_per_room: config.max_connections_per_room,
                // 0: no cap (load generators connect one user many times).
                max_connections_per_user: match config.max_connections_per_user {
                    0 => usize::MAX,
                    n => n,
                },
                send_queue: config.send_queue,
                send_budget_bytes: config.send_budget_bytes.max(1),
                limits: crate::room::Limits {
                    max_messages_per_frame: config.max_messages_per_frame.max(1),
                    max_document_bytes: config.max_document_bytes,
                    awareness: crate::room::awareness::AwarenessLimits {
                        max_states: config.awareness_max_states,
                        max_state_bytes: config.awareness_max_state_bytes,
                        max_updates_per_sec: config.awareness_max_updates_per_sec,
                    },
                },
                room_idle: Duration::from_millis(config.room_idle_ms),
                awareness_timeout: Duration::from_millis(config.awareness_timeout_ms),
                save_debounce: Duration::from_millis(config.save_debounce_ms),
                save_max_delay: Duration::from_millis(
                    config.save_max_delay_ms.max(config.save_debounce_ms),
                ),
                flush_deadline: Duration::from_secs(config.shutdown_secs.max(1)),
                save_lease: Duration::from_millis(config.save_lease_ms.max(100)),
            },
            control.clone(),
            cluster,
            metrics.clone(),
            tracker.clone(),
            stop.clone(),
        );
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            control,
            hub,
            metrics,
            origins,
            handshakes: crate::transport::limits::IpLimiter::new(
                config.handshake_rate,
                config.handshake_burst,
                config.handshake_limit_loopback,
            ),
            stop: stop.clone(),
            tickets: crate::tickets::Tickets::new(&secret, config.resume_ticket_secs),
            readiness: Default::default(),
            config,
        });
        tracing::info!(addr = %format!("ws://{}:{port}", shared.config.listen.ip()), control = %shared.config.control_url, "relay listening");
        Ok(Application {
            listener,
            port,
            ops,
            ops_port,
            shared,
            tracker,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `TANDEM_RELAY_OPS_LISTEN`, when set.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops_port
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Cancel it to shut the relay down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the token is cancelled or the process gets Ctrl-C/SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            ops,
            shared,
            tracker,
            stop,
            ..
        } = self;
        if let Some(ops) = ops {
            crate::transport::ops::start(ops, shared.clone(), stop.clone())?;
        }
        let signals = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            signals.cancel();
        });
        tracker.spawn(
            recheck::run_sweep(
                shared.hub.clone(),
                shared.control.clone(),
                shared.config.recheck_interval(),
                stop.clone(),
            )
            .instrument(tracing::info_span!("recheck_sweep")),
        );
        tracker.spawn(
            recheck::run_feed(shared.hub.clone(), shared.control.clone(), stop.clone())
                .instrument(tracing::info_span!("access_feed")),
        );
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let conn = crate::transport::conn::serve(stream, shared.clone());
                        crate::metrics::log_task_size_once(crate::metrics::TaskKind::Connection, std::mem::size_of_val(&conn));
                        tracker.spawn(conn);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(
            rooms = shared.hub.room_count(),
            "shutting down: closing connections with 1001"
        );
        shared.hub.shutdown().await;
        tracker.close();
        let deadline = Duration::from_secs(shared.config.shutdown_secs);
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed with connections still open");
        }
        stop.cancel(); // the ops thread too
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// The accept queue's length: a reconnect storm (every client of a restarted
/// node at once) overflowed tokio's default of 1024, and a dropped SYN is
/// retried by the client's kernel only after 1 s, then 3 s. The kernel caps
/// it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
