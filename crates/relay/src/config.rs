//! Relay configuration: flags, each with a `TANDEM_*` environment twin.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "tandem-relay", about = "Tandem relay: live Yjs rooms", version)]
pub struct RelayConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long = "relay-listen",
        env = "TANDEM_RELAY_LISTEN",
        default_value = "127.0.0.1:1999"
    )]
    pub listen: SocketAddr,

    /// A separate address for `/healthz`, `/readyz` and `/metrics`, served by
    /// a thread of its own (answered even while every worker is busy);
    /// `/metrics` then answers 404 on the client port. Unset: all on the
    /// client port.
    #[arg(long = "ops-listen", env = "TANDEM_RELAY_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,

    /// Bearer token `GET /metrics` requires (401 without it). Unset: open.
    #[arg(
        long = "metrics-token",
        env = "TANDEM_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// Base URL of control.
    #[arg(
        long,
        env = "TANDEM_CONTROL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub control_url: String,

    /// Shared secret for control's relay endpoints.
    #[arg(
        long = "relay-secret",
        env = "TANDEM_RELAY_SECRET",
        hide_env_values = true
    )]
    pub relay_secret: Option<String>,

    /// Seconds between permission re-checks of every connection.
    #[arg(long, env = "TANDEM_RECHECK_SECS", default_value_t = 30)]
    pub recheck_secs: u64,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "TANDEM_MAX_MESSAGE_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Most y-websocket messages one WebSocket frame may hold.
    #[arg(long, env = "TANDEM_MAX_MESSAGES_PER_FRAME", default_value_t = 64)]
    pub max_messages_per_frame: usize,

    /// Bytes queued for one slow client before it is dropped.
    #[arg(long, env = "TANDEM_SEND_BUDGET_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub send_budget_bytes: usize,

    /// Largest document a room may grow to, in bytes (Yjs v1 encoding). The
    /// smaller of this and what control announces when a room loads applies.
    #[arg(long, env = "TANDEM_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<usize>,

    /// Awareness client ids one connection may hold.
    #[arg(long, env = "TANDEM_AWARENESS_MAX_STATES", default_value_t = 4)]
    pub awareness_max_states: usize,

    /// Largest awareness state (JSON), in bytes.
    #[arg(long, env = "TANDEM_AWARENESS_MAX_STATE_BYTES", default_value_t = 16 * 1024)]
    pub awareness_max_state_bytes: usize,

    /// Awareness messages per second accepted from one connection.
    #[arg(long, env = "TANDEM_AWARENESS_MAX_RATE", default_value_t = 60)]
    pub awareness_max_updates_per_sec: u32,

    /// Handshakes per second one client IP may start (0: no limit).
    #[arg(long, env = "TANDEM_HANDSHAKE_RATE", default_value_t = 20)]
    pub handshake_rate: u32,

    /// Handshakes one client IP may start at once before the rate applies.
    #[arg(long, env = "TANDEM_HANDSHAKE_BURST", default_value_t = 60)]
    pub handshake_burst: u32,

    /// Also limit loopback peers (a local proxy or load generator is exempt by default).
    #[arg(long, env = "TANDEM_HANDSHAKE_LIMIT_LOOPBACK", default_value_t = false)]
    pub handshake_limit_loopback: bool,

    /// Connections one user may hold in one room (0: no cap).
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_USER", default_value_t = 8)]
    pub max_connections_per_user: usize,

    /// Browser origins allowed to open sockets (comma-separated; entries like
    /// `http://localhost:*` allow any port). Unset: no `Origin` check.
    #[arg(long, env = "TANDEM_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Most connections one room holds.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_ROOM", default_value_t = 1000)]
    pub max_connections_per_room: usize,

    /// Most connections the relay holds in all.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Messages queued for one client before it is dropped as too slow.
    #[arg(long, env = "TANDEM_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Milliseconds of silence after which a keepalive is sent to a client.
    #[arg(long, env = "TANDEM_KEEPALIVE_MS", default_value_t = 10_000)]
    pub keepalive_ms: u64,

    /// Milliseconds after which an awareness state that was not renewed is removed.
    #[arg(long, env = "TANDEM_AWARENESS_TIMEOUT_MS", default_value_t = 30_000)]
    pub awareness_timeout_ms: u64,

    /// Milliseconds an empty room stays in memory before it is dropped.
    #[arg(long, env = "TANDEM_ROOM_IDLE_MS", default_value_t = 30_000)]
    pub room_idle_ms: u64,

    /// Save a changed room this many milliseconds after its last change…
    #[arg(long, env = "TANDEM_SAVE_DEBOUNCE_MS", default_value_t = 2_000)]
    pub save_debounce_ms: u64,

    /// …and at most this many milliseconds after its first unsaved change.
    #[arg(long, env = "TANDEM_SAVE_MAX_DELAY_MS", default_value_t = 10_000)]
    pub save_max_delay_ms: u64,

    /// Seconds graceful shutdown waits for connections to close and rooms to save.
    #[arg(long, env = "TANDEM_SHUTDOWN_SECS", default_value_t = 10)]
    pub shutdown_secs: u64,

    /// Redis URL (`redis://host:6379`): several relay nodes share rooms
    /// through it. Unset: this relay is a single node.
    #[arg(long, env = "TANDEM_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// With Redis: milliseconds a node that saved a room stays its only saver.
    #[arg(long, env = "TANDEM_SAVE_LEASE_MS", default_value_t = 15_000)]
    pub save_lease_ms: u64,

    /// Most connect tokens verified in one call to control
    /// (`POST /collaboration/verify-batch`, at most 100), and most ticket
    /// joins' access checks in one `POST /collaboration/check-access-batch`;
    /// 1: one call per connect.
    #[arg(long, env = "TANDEM_VERIFY_BATCH_MAX", default_value_t = 64)]
    pub verify_batch_max: usize,

    /// Longest a connect's token waits, in milliseconds, for others to share
    /// a call to control while one is already in flight (none in flight: it
    /// goes at once).
    #[arg(long, env = "TANDEM_VERIFY_BATCH_WINDOW_MS", default_value_t = 2)]
    pub verify_batch_window_ms: u64,

    /// Seconds a resume ticket lives (issued to clients that connect with
    /// `?resume=1`, accepted as `?ticket=` in place of a token); 0 turns
    /// tickets off.
    #[arg(long, env = "TANDEM_RESUME_TICKET_SECS", default_value_t = 60)]
    pub resume_ticket_secs: u64,

    /// Log format: `text` or `json`.
    #[arg(
        long = "relay-log-format",
        env = "TANDEM_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,
}

impl RelayConfig {
    /// Port 0, the given control and secret, short intervals.
    pub fn for_tests(control_url: impl Into<String>, secret: impl Into<String>) -> RelayConfig {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: None,
            metrics_token: None,
            control_url: control_url.into(),
            relay_secret: Some(secret.into()),
            recheck_secs: 30,
            max_message_bytes: 1024 * 1024,
            max_messages_per_frame: 64,
            send_budget_bytes: 8 * 1024 * 1024,
            max_document_bytes: None,
            cors_origins: None,
            handshake_rate: 20,
            handshake_burst: 60,
            handshake_limit_loopback: false,
            // The e2e suites connect one user many times; tests of the cap set it.
            max_connections_per_user: 0,
            awareness_max_states: 4,
            awareness_max_state_bytes: 16 * 1024,
            awareness_max_updates_per_sec: 60,
            max_connections_per_room: 100,
            max_connections: 1000,
            send_queue: 256,
            keepalive_ms: 10_000,
            awareness_timeout_ms: 30_000,
            room_idle_ms: 1_000,
            save_debounce_ms: 100,
            save_max_delay_ms: 500,
            shutdown_secs: 5,
            redis_url: None,
            save_lease_ms: 2_000,
            verify_batch_max: 64,
            verify_batch_window_ms: 2,
            resume_ticket_secs: 60,
            log_format: "text".into(),
        }
    }

    pub fn recheck_interval(&self) -> Duration {
        Duration::from_secs(self.recheck_secs.max(1))
    }
}
