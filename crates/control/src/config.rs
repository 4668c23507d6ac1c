//! Control's configuration: one typed struct, filled from defaults, then
//! `TANDEM_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Default of `TANDEM_S3_THROUGH_CONTROL_BYTES`: one-part S3 uploads up to
/// 4 MiB go through control.
pub const S3_THROUGH_CONTROL_BYTES: i64 = 4 * 1024 * 1024;

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;

#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(name = "tandem-control", about = "Tandem control service", version)]
pub struct ControlConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TANDEM_CONTROL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// `sqlite://PATH` (created if missing) or `postgres://USER:PASS@HOST/DB`.
    #[arg(
        long,
        env = "TANDEM_DATABASE_URL",
        default_value = "sqlite://./data/tandem.db"
    )]
    pub database_url: String,

    /// Shared secret the relay presents to control. Required unless `--dev`.
    #[arg(long, env = "TANDEM_RELAY_SECRET", hide_env_values = true)]
    pub relay_secret: Option<String>,

    /// Development mode: allows a missing relay secret (a random one is made).
    #[arg(long, env = "TANDEM_DEV", default_value_t = false)]
    pub dev: bool,

    /// PBKDF2-HMAC-SHA256 iterations for new password hashes.
    #[arg(long, env = "TANDEM_PBKDF2_ITERATIONS", default_value_t = DEFAULT_PBKDF2_ITERATIONS)]
    pub pbkdf2_iterations: u32,

    /// Lifetime of a session token, in seconds (default 30 days).
    #[arg(long, env = "TANDEM_SESSION_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// JWKS of an external identity provider: a file path or an http(s) URL.
    /// When set, `Authorization: Bearer <JWT>` signs users in.
    #[arg(long, env = "TANDEM_JWKS")]
    pub jwks: Option<String>,

    /// Required `iss` claim of identity-provider JWTs.
    #[arg(long, env = "TANDEM_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accepted audiences: the JWT's `aud` or `azp` must be one of these
    /// (comma-separated). Required, with the issuer, when `TANDEM_JWKS` is set.
    #[arg(long, env = "TANDEM_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// Accept identity-provider JWTs without checking `iss` and `aud` when
    /// they are not configured (any token the keys sign, for any app, signs
    /// users in). Logged as a warning at startup.
    #[arg(
        long,
        env = "TANDEM_JWT_ALLOW_ANY_ISSUER_AUDIENCE",
        default_value_t = false
    )]
    pub jwt_allow_any_issuer_audience: bool,

    /// Largest accepted JSON body, in bytes.
    #[arg(long, env = "TANDEM_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest stored document (merged snapshot), in bytes.
    #[arg(long, env = "TANDEM_MAX_SNAPSHOT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_snapshot_bytes: usize,

    /// Largest snapshot save request, in bytes.
    #[arg(long, env = "TANDEM_MAX_SAVE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_save_bytes: usize,

    /// Login and signup attempts allowed per client IP per minute (0: no limit).
    #[arg(long, env = "TANDEM_AUTH_RATE_PER_MINUTE", default_value_t = 30)]
    pub auth_rate_per_minute: u32,

    /// Load balancers and reverse proxies (IPs or CIDRs, comma-separated)
    /// whose `X-Forwarded-For` is believed: for a request from one of them,
    /// the client is the right-most untrusted address of that header.
    /// Empty: the client is always the socket peer.
    #[arg(long, env = "TANDEM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Password hashes computed at once (0: one per core); more wait.
    #[arg(long, env = "TANDEM_PASSWORD_HASH_CONCURRENCY", default_value_t = 0)]
    pub password_hash_concurrency: usize,

    /// Database connections in the pool.
    #[arg(long, env = "TANDEM_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "TANDEM_CONTROL_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Log format: `text` or `json`.
    #[arg(long, env = "TANDEM_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Key that encrypts users' stored API keys (AES-256-GCM): 32 bytes as
    /// 64 hex characters or base64. Without it, API keys cannot be stored.
    #[arg(long, env = "TANDEM_SETTINGS_KEY", hide_env_values = true)]
    pub settings_key: Option<String>,

    /// Former settings keys (comma-separated), still accepted for reading;
    /// keys read with one are re-encrypted with the current key.
    #[arg(
        long,
        env = "TANDEM_SETTINGS_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub settings_key_previous: Vec<String>,

    /// SMTP server for outgoing email, `smtp://HOST:PORT` (plain SMTP, e.g. a
    /// local MTA). Unset: emails are written to the log (recipient and
    /// subject only).
    #[arg(long, env = "TANDEM_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender address of outgoing email.
    #[arg(
        long,
        env = "TANDEM_MAIL_FROM",
        default_value = "Tandem <noreply@localhost>"
    )]
    pub mail_from: String,

    /// Public base URL of the app, for links in emails (verification
    /// links, invites). Empty: control's own address (`tandem dev` does this).
    #[arg(
        long,
        env = "TANDEM_PUBLIC_URL",
        default_value = "http://localhost:3000"
    )]
    pub public_url: String,

    /// How often the outbox dispatcher looks for due emails, in milliseconds.
    #[arg(long, env = "TANDEM_OUTBOX_POLL_MS", default_value_t = 2_000)]
    pub outbox_poll_ms: u64,

    /// Deliver webhooks to private, loopback, link-local, unique-local and
    /// other non-public addresses too (`tandem dev` and tests). Off: such
    /// targets are refused at creation and at every delivery.
    #[arg(long, env = "TANDEM_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,

    /// Time allowed for one webhook attempt (connect, send, answer), in ms.
    #[arg(long, env = "TANDEM_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// Multiplies the webhook retry schedule (immediately, 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h, 24 h) and the 5-day failure window that disables an
    /// endpoint; tests use a tiny factor.
    #[arg(long, env = "TANDEM_WEBHOOK_RETRY_SCALE", default_value_t = 1.0)]
    pub webhook_retry_scale: f64,

    /// Webhook attempts in flight at once (per control process).
    #[arg(long, env = "TANDEM_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,

    /// At most one `document.saved` webhook event per document per this
    /// many milliseconds.
    #[arg(
        long,
        env = "TANDEM_WEBHOOK_SAVE_DEBOUNCE_MS",
        default_value_t = 60_000
    )]
    pub webhook_save_debounce_ms: u64,

    /// Finished webhook deliveries (delivered, or failed for good) are kept
    /// this many days, with their attempts, then pruned by the dispatcher.
    /// Fractions are allowed (`0.5` is 12 hours); pending deliveries are
    /// never pruned.
    #[arg(long, env = "TANDEM_WEBHOOK_RETENTION_DAYS", default_value_t = 30.0)]
    pub webhook_retention_days: f64,

    /// A user counts as present in a conversation for this long after a heartbeat.
    #[arg(long, env = "TANDEM_PRESENCE_WINDOW_MS", default_value_t = 30_000)]
    pub presence_window_ms: u64,

    /// How often an event stream looks for events written by other control
    /// replicas, in milliseconds (events of this replica arrive at once).
    #[arg(long, env = "TANDEM_CHAT_POLL_MS", default_value_t = 500)]
    pub chat_poll_ms: u64,

    /// Largest message (content), in bytes, streamed chunks included.
    #[arg(long, env = "TANDEM_MAX_CHAT_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_chat_message_bytes: usize,

    /// Bearer token that `GET /metrics` requires (unset: metrics are open).
    #[arg(long, env = "TANDEM_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Serve `/metrics` on this address, a listener of its own, and not on
    /// the API address (unset: on the API address).
    #[arg(long, env = "TANDEM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Conversation event streams one user may hold open on one replica
    /// (one more is a 429).
    #[arg(long, env = "TANDEM_MAX_STREAMS_PER_USER", default_value_t = 8)]
    pub max_streams_per_user: usize,

    /// An event stream sends a keepalive comment after this much silence, in
    /// milliseconds; a client that went away is noticed (and its stream
    /// slot freed) at the latest then.
    #[arg(long, env = "TANDEM_CHAT_KEEPALIVE_MS", default_value_t = 15_000)]
    pub chat_keepalive_ms: u64,
    /// Browser origins that may call control (CORS), comma-separated:
    /// `https://app.example.com`, `http://localhost:*` (any port), or `*`
    /// (any origin). Unset: no cross-origin access.
    #[arg(long, env = "TANDEM_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Serve the demo app (embedded in the binary) at `/`. Always on in
    /// `tandem dev`.
    #[arg(long, env = "TANDEM_SERVE_DEMO", default_value_t = false)]
    pub serve_demo: bool,

    /// The relay's WebSocket URL as browsers reach it (`ws://…` or
    /// `wss://…`), written into the demo page. `tandem dev` fills it in.
    #[arg(long, env = "TANDEM_PUBLIC_RELAY_URL")]
    pub public_relay_url: Option<String>,

    /// Sync: clocks (`hlc`) more than this many milliseconds ahead of the
    /// server's are clamped to the server's time plus this.
    #[arg(long, env = "TANDEM_SYNC_MAX_DRIFT_MS", default_value_t = 60_000)]
    pub sync_max_drift_ms: u64,

    /// Sync: deleted rows (tombstones) are pruned this many milliseconds
    /// after their deletion; clients that last pulled before a pruned
    /// deletion get a reset (the whole state) on their next pull.
    #[arg(long, env = "TANDEM_SYNC_TOMBSTONE_HORIZON_MS", default_value_t = 30 * 24 * 3600 * 1000)]
    pub sync_tombstone_horizon_ms: u64,

    /// Sync: how often tombstones past the horizon are looked for, in milliseconds.
    #[arg(
        long,
        env = "TANDEM_SYNC_COMPACT_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub sync_compact_interval_ms: u64,

    /// Sync: how often event streams look for changes written by other
    /// control replicas, in milliseconds (this replica's arrive at once).
    #[arg(long, env = "TANDEM_SYNC_POLL_MS", default_value_t = 500)]
    pub sync_poll_ms: u64,
    /// Where uploaded files are kept: `dir` (a directory on this machine;
    /// control signs and serves the transfer URLs) or `s3` (any S3-compatible
    /// store; see the `TANDEM_S3_*` settings).
    #[arg(long, env = "TANDEM_FILES_BACKEND", default_value = "dir")]
    pub files_backend: String,

    /// The directory of the `dir` files backend (created if missing).
    #[arg(long, env = "TANDEM_FILES_DIR", default_value = "./data/files")]
    pub files_dir: std::path::PathBuf,

    /// Largest file, in bytes (default 5 GiB); a larger one is a 413 `file_too_large`.
    #[arg(long, env = "TANDEM_FILES_MAX_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub files_max_bytes: i64,

    /// Bytes of files one workspace may hold (default 50 GiB); more is a
    /// 507 `quota_exceeded`. Pending uploads count.
    #[arg(long, env = "TANDEM_FILES_QUOTA_BYTES", default_value_t = 50 * 1024 * 1024 * 1024)]
    pub files_quota_bytes: i64,

    /// Files larger than this are sent in parts of this size (multipart,
    /// resumable); smaller ones in one PUT. At least 5 MiB with S3.
    #[arg(long, env = "TANDEM_FILES_PART_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub files_part_bytes: i64,

    /// Lifetime of signed download URLs, in seconds (losing access ends
    /// downloading within this time).
    #[arg(long, env = "TANDEM_FILES_URL_TTL_SECS", default_value_t = 300)]
    pub files_url_ttl_secs: u64,

    /// Lifetime of an upload intent (and its part URLs), in seconds.
    #[arg(long, env = "TANDEM_FILES_UPLOAD_TTL_SECS", default_value_t = 3600)]
    pub files_upload_ttl_secs: u64,

    /// An unreferenced or deleted file's bytes are removed this long after
    /// nothing referred to it, in seconds (default one day).
    #[arg(long, env = "TANDEM_FILES_GC_GRACE_SECS", default_value_t = 24 * 3600)]
    pub files_gc_grace_secs: u64,

    /// How often the file collector runs, in seconds (0: never, e.g. when
    /// another replica runs it).
    #[arg(long, env = "TANDEM_FILES_GC_INTERVAL_SECS", default_value_t = 3600)]
    pub files_gc_interval_secs: u64,

    /// S3 endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:8333` (path-style addressing is used).
    #[arg(long, env = "TANDEM_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 bucket (must exist).
    #[arg(long, env = "TANDEM_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 region.
    #[arg(long, env = "TANDEM_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id.
    #[arg(long, env = "TANDEM_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "TANDEM_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// How an S3 upload's bytes are checked on completion: `checksum` (a
    /// one-part upload's URL signs `x-amz-checksum-sha256`, so the store
    /// itself refuses other bytes, and control only asks it for the stored
    /// checksum; a store that does not answer one, and every multipart
    /// upload, is read back) or `readback` (control always reads the object
    /// back and hashes it).
    #[arg(long, env = "TANDEM_S3_VERIFY", default_value = "checksum")]
    pub s3_verify: String,

    /// One-part S3 uploads of at most this many bytes are sent to control,
    /// which hashes them while passing them on to the store and makes the
    /// file in the same request (one request fewer than a presigned `PUT`
    /// and its completion: small files upload faster, and control carries
    /// their bytes). 0: every upload goes straight to the store.
    #[arg(
        long,
        env = "TANDEM_S3_THROUGH_CONTROL_BYTES",
        default_value_t = S3_THROUGH_CONTROL_BYTES
    )]
    pub s3_through_control_bytes: i64,

    /// The parts of multipart S3 uploads are sent to control, which passes
    /// them on to the store while hashing each from the SHA-256 state its
    /// client sends with it (`tandem-sha256-state`): a file whose parts all
    /// came with their states is proven on completion without reading it
    /// back, so completing takes milliseconds whatever the size. `false`:
    /// clients send parts straight to the store (presigned), and completion
    /// reads the whole file back to check its SHA-256.
    #[arg(
        long,
        env = "TANDEM_S3_PARTS_THROUGH_CONTROL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub s3_parts_through_control: bool,

    /// An upload body sent to control (a part for the directory backend, a
    /// small S3 upload) must arrive within this many seconds plus its length
    /// at `TANDEM_UPLOAD_MIN_BYTES_PER_SEC`; slower, it is cut off with 408
    /// `BODY_TIMEOUT` (a client trickling bytes cannot hold a connection and
    /// an open part for ever).
    #[arg(long, env = "TANDEM_UPLOAD_BODY_GRACE_SECS", default_value_t = 30)]
    pub upload_body_grace_secs: u64,
    /// The slowest upload rate control waits for, in bytes per second.
    #[arg(long, env = "TANDEM_UPLOAD_MIN_BYTES_PER_SEC", default_value_t = 64 * 1024)]
    pub upload_min_bytes_per_sec: u64,

    /// Control's own public URL (`https://api.example.com`), which the
    /// directory files backend's transfer URLs start with. Unset: the
    /// scheme and host the request came with (`Host`, `X-Forwarded-*`),
    /// which a client or a misconfigured proxy can forge.
    #[arg(long, env = "TANDEM_PUBLIC_CONTROL_URL")]
    pub public_control_url: Option<String>,
    /// Largest extension upload (a zip), in bytes; more is a 413.
    #[arg(long, env = "TANDEM_EXTENSIONS_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub extensions_max_bytes: usize,

    /// Most bytes an extension's files may unpack to, all together.
    #[arg(
        long,
        env = "TANDEM_EXTENSIONS_MAX_UNPACKED_BYTES",
        default_value_t = 50 * 1024 * 1024
    )]
    pub extensions_max_unpacked_bytes: u64,

    /// Instance administrators: email addresses (comma-separated). A user
    /// is an admin once their address is verified.
    #[arg(long, env = "TANDEM_ADMINS", value_delimiter = ',')]
    pub admins: Vec<String>,

    /// A `KEY=VALUE` file re-read on SIGHUP and `POST /admin/config/reload`
    /// (and once at startup): it may set `RUST_LOG`, `TANDEM_CORS_ORIGINS`
    /// and `TANDEM_AUTH_RATE_PER_MINUTE`, which then override the environment.
    #[arg(long, env = "TANDEM_RELOAD_FILE")]
    pub reload_file: Option<std::path::PathBuf>,

    /// Stop on Ctrl-C/SIGTERM (off when an embedding program, like `tandem
    /// dev`, decides when control stops).
    #[arg(skip = true)]
    #[serde(skip)]
    pub handle_signals: bool,
}

impl ControlConfig {
    /// How long an upload body of `len` bytes may take to arrive.
    pub fn upload_body_deadline(&self, len: u64) -> std::time::Duration {
        let rate = self.upload_min_bytes_per_sec.max(1);
        std::time::Duration::from_secs(self.upload_body_grace_secs)
            + std::time::Duration::from_secs_f64(len as f64 / rate as f64)
    }

    /// A configuration for tests and `tandem dev`: port 0, the given database.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        ControlConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            relay_secret: Some("test-relay-secret".into()),
            dev: true,
            pbkdf2_iterations: 1_000,
            session_ttl_secs: 3600,
            jwks: None,
            jwt_issuer: None,
            jwt_audience: Vec::new(),
            jwt_allow_any_issuer_audience: false,
            max_body_bytes: 64 * 1024,
            max_snapshot_bytes: 64 * 1024 * 1024,
            max_save_bytes: 32 * 1024 * 1024,
            auth_rate_per_minute: 0,
            trusted_proxies: Vec::new(),
            password_hash_concurrency: 0,
            db_pool_size: 8,
            workers: 2,
            log_format: "text".into(),
            settings_key: Some(crate::crypto::new_settings_key()),
            settings_key_previous: Vec::new(),
            smtp_url: None,
            mail_from: "Tandem <noreply@localhost>".into(),
            public_url: "http://localhost:3000".into(),
            outbox_poll_ms: 100,
            webhook_allow_private: true,
            webhook_timeout_ms: 10_000,
            webhook_retry_scale: 1.0,
            webhook_concurrency: 8,
            webhook_save_debounce_ms: 60_000,
            webhook_retention_days: 30.0,
            presence_window_ms: 30_000,
            chat_poll_ms: 200,
            max_chat_message_bytes: 1024 * 1024,
            metrics_token: None,
            metrics_listen: None,
            max_streams_per_user: 8,
            chat_keepalive_ms: 15_000,
            cors_origins: None,
            serve_demo: false,
            public_relay_url: None,
            sync_max_drift_ms: 60_000,
            sync_tombstone_horizon_ms: 30 * 24 * 3600 * 1000,
            sync_compact_interval_ms: 60_000,
            sync_poll_ms: 200,
            files_backend: "dir".into(),
            files_dir: std::env::temp_dir()
                .join(format!("tandem-files-{}", crate::crypto::new_id())),
            files_max_bytes: 5 * 1024 * 1024 * 1024,
            files_quota_bytes: 50 * 1024 * 1024 * 1024,
            files_part_bytes: 16 * 1024 * 1024,
            files_url_ttl_secs: 300,
            files_upload_ttl_secs: 3600,
            files_gc_grace_secs: 24 * 3600,
            files_gc_interval_secs: 0,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_verify: "checksum".into(),
            s3_through_control_bytes: S3_THROUGH_CONTROL_BYTES,
            s3_parts_through_control: true,
            upload_body_grace_secs: 30,
            upload_min_bytes_per_sec: 64 * 1024,
            public_control_url: None,
            extensions_max_bytes: 10 * 1024 * 1024,
            extensions_max_unpacked_bytes: 50 * 1024 * 1024,
            admins: Vec::new(),
            reload_file: None,
            handle_signals: true,
        }
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
}
