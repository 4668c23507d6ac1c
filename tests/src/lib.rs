//! Harness for end-to-end tests: a [`Stack`] is a real control (fresh SQLite
//! file) and a real relay, both on port 0, talking over loopback; tests drive
//! them through `tandem-client` as an application would.
//! [`Stack::start_cluster`] is the scaled-out form: two control replicas on
//! one fresh PostgreSQL database and relay nodes sharing a real Redis
//! ([`RedisServer`]); [`RelayProcess`] runs the real `tandem-relay` binary
//! for crash tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redis_server;

pub use redis_server::RedisServer;

use std::time::Duration;

use actix_web::dev::ServerHandle;
use tandem_client::api::{ControlApi, Session};
use tandem_client::collab::{CollabClient, ConnectError};
use tandem_control::ControlConfig;
use tandem_protocol::http::{Role, WorkspaceType};
use tandem_protocol::ResourceType;
use tandem_relay::RelayConfig;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-relay-secret";
pub const PASSWORD: &str = "password123";
/// Generous bound for things that happen "at once" on a loaded CI machine.
pub const SOON: Duration = Duration::from_secs(10);

pub struct Stack {
    pub api: ControlApi,
    pub control_url: String,
    pub relay_url: String,
    pub db_path: std::path::PathBuf,
    database_url: String,
    control_port: u16,
    control: Option<ServerHandle>,
    /// URLs of further control replicas on the same database (cluster stacks).
    pub replicas: Vec<String>,
    replica_handles: Vec<ServerHandle>,
    relay: CancellationToken,
    relay_done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    relay_config: RelayConfig,
    control_tweak: ControlTweak,
    /// Metrics of the in-process relay.
    pub relay_metrics: std::sync::Arc<tandem_relay::metrics::Metrics>,
    _dir: tempfile::TempDir,
}

/// A relay started in-process next to the stack's.
pub struct ExtraRelay {
    pub url: String,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Adjusts control's configuration in a test (kept for restarts and replicas).
pub type ControlTweak = std::sync::Arc<dyn Fn(&mut ControlConfig) + Send + Sync>;

async fn start_control(database_url: &str, port: u16, tweak: &ControlTweak) -> (u16, ServerHandle) {
    let mut config = ControlConfig::for_tests(database_url);
    config.relay_secret = Some(SECRET.into());
    config.listen.set_port(port);
    tweak(&mut config);
    let control = tandem_control::Application::build(config).await.unwrap();
    let port = control.port();
    let handle = control.handle();
    tokio::spawn(control.run_until_stopped());
    (port, handle)
}

async fn start_relay(
    config: RelayConfig,
) -> (ExtraRelay, std::sync::Arc<tandem_relay::metrics::Metrics>) {
    let relay = tandem_relay::Application::build(config).await.unwrap();
    let url = format!("ws://127.0.0.1:{}", relay.port());
    let metrics = relay.shared().metrics.clone();
    let stop = relay.shutdown_token();
    let done = tokio::spawn(relay.run_until_stopped());
    (ExtraRelay { url, stop, done }, metrics)
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// Starts control (on SQLite) and a relay configured by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> Stack {
        Self::start_on(Backend::Sqlite, tweak).await
    }

    /// [`Stack::start_with`] with control on the given database backend (a
    /// fresh PostgreSQL database needs `TANDEM_TEST_POSTGRES_URL`; see
    /// [`both_backends!`]).
    pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut RelayConfig)) -> Stack {
        Self::start_tuned(backend, tweak, |_| {}).await
    }

    /// [`Stack::start_on`] with control's configuration adjusted by `control`.
    pub async fn start_tuned(
        backend: Backend,
        tweak: impl FnOnce(&mut RelayConfig),
        control: impl Fn(&mut ControlConfig) + Send + Sync + 'static,
    ) -> Stack {
        let control: ControlTweak = std::sync::Arc::new(control);
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("tandem.db");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", db_path.display()),
            Backend::Postgres => postgres_database().expect("TANDEM_TEST_POSTGRES_URL is set"),
        };
        Self::assemble(dir, db_path, database_url, 1, tweak, control).await
    }

    /// The scaled-out stack: two control replicas on one fresh PostgreSQL
    /// database (SQLite when no PostgreSQL is configured, outside
    /// `scripts/test`), and a relay node on Redis, configured by `tweak`.
    /// More nodes: [`Stack::relay_via`].
    pub async fn start_cluster(redis: &RedisServer, tweak: impl FnOnce(&mut RelayConfig)) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("tandem.db");
        let database_url = match postgres_database() {
            Some(url) => url,
            None => format!("sqlite://{}", db_path.display()),
        };
        let url = redis.url();
        Self::assemble(
            dir,
            db_path,
            database_url,
            2,
            move |c| {
                c.redis_url = Some(url);
                tweak(c)
            },
            std::sync::Arc::new(|_: &mut ControlConfig| {}),
        )
        .await
    }

    async fn assemble(
        dir: tempfile::TempDir,
        db_path: std::path::PathBuf,
        database_url: String,
        controls: usize,
        tweak: impl FnOnce(&mut RelayConfig),
        control_tweak: ControlTweak,
    ) -> Stack {
        let (control_port, handle) = start_control(&database_url, 0, &control_tweak).await;
        let control_url = format!("http://127.0.0.1:{control_port}");
        let mut replicas = Vec::new();
        let mut replica_handles = Vec::new();
        for _ in 1..controls {
            let (port, handle) = start_control(&database_url, 0, &control_tweak).await;
            replicas.push(format!("http://127.0.0.1:{port}"));
            replica_handles.push(handle);
        }
        let mut rc = RelayConfig::for_tests(&control_url, SECRET);
        tweak(&mut rc);
        let (relay, relay_metrics) = start_relay(rc.clone()).await;
        Stack {
            api: ControlApi::new(&control_url),
            control_url,
            relay_url: relay.url,
            db_path,
            database_url,
            control_port,
            control: Some(handle),
            replicas,
            replica_handles,
            relay: relay.stop,
            relay_done: Some(relay.done),
            relay_config: rc,
            control_tweak,
            relay_metrics,
            _dir: dir,
        }
    }

    /// Another relay node, configured like the first but talking to `control_url`.
    pub async fn relay_via(
        &self,
        control_url: &str,
    ) -> (ExtraRelay, std::sync::Arc<tandem_relay::metrics::Metrics>) {
        let mut config = self.relay_config.clone();
        config.control_url = control_url.to_string();
        start_relay(config).await
    }

    /// Starts control again on the same port and database.
    pub async fn restart_control(&mut self) {
        self.stop_control().await;
        let (_, handle) =
            start_control(&self.database_url, self.control_port, &self.control_tweak).await;
        self.control = Some(handle);
    }

    /// Shuts the relay down gracefully and starts a fresh one (new port, same settings).
    pub async fn restart_relay(&mut self) {
        self.stop_relay().await;
        let (relay, metrics) = start_relay(self.relay_config.clone()).await;
        self.relay_url = relay.url;
        self.relay = relay.stop;
        self.relay_done = Some(relay.done);
        self.relay_metrics = metrics;
    }

    /// Another relay node on the same control, configured like the first.
    pub async fn extra_relay(&self) -> ExtraRelay {
        start_relay(self.relay_config.clone()).await.0
    }

    /// The room's state as control stored it.
    pub async fn stored(&self, room: &str) -> Vec<u8> {
        let res = reqwest::Client::new()
            .get(format!(
                "{}/collaboration/rooms/{room}/snapshot",
                self.control_url
            ))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "snapshot load: {}", res.status());
        res.bytes().await.unwrap().to_vec()
    }

    /// Stores `update` for the room directly, as a relay would.
    pub async fn store(&self, room: &str, update: Vec<u8>) {
        let res = reqwest::Client::new()
            .post(format!(
                "{}/collaboration/rooms/{room}/snapshot",
                self.control_url
            ))
            .bearer_auth(SECRET)
            .body(update)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "snapshot save: {}", res.status());
    }

    /// Stops control (the relay keeps running).
    pub async fn stop_control(&mut self) {
        if let Some(h) = self.control.take() {
            h.stop(false).await;
        }
    }

    /// Shuts the relay down gracefully and waits for it.
    pub async fn stop_relay(&mut self) {
        self.relay.cancel();
        if let Some(done) = self.relay_done.take() {
            done.await.unwrap().unwrap();
        }
    }

    /// A signed-up user whose address is verified (so a work address is in
    /// its domain's org), through `POST /auth/verify-email` with a link
    /// planted in the database as the emailed one would be.
    pub async fn user(&self, email: &str, name: &str) -> Session {
        let session = self.api.signup(email, PASSWORD, name).await.unwrap();
        let token = tandem_control::crypto::new_token();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        self.sql(&format!(
            "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) \
             VALUES ('{}', '{}', '{}', {now}, {})",
            tandem_control::crypto::hash_token(&token),
            session.user_id,
            email.trim().to_lowercase(),
            now + 3_600_000
        ));
        self.api.verify_email(&token).await.unwrap();
        session
    }

    /// Runs one statement on control's database.
    pub fn sql(&self, statement: &str) {
        use diesel::{Connection, RunQueryDsl};
        match self.database_url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut c = diesel::sqlite::SqliteConnection::establish(path).unwrap();
                // Wait for control's writers instead of failing on their lock.
                diesel::sql_query("PRAGMA busy_timeout = 10000")
                    .execute(&mut c)
                    .unwrap();
                diesel::sql_query(statement).execute(&mut c).unwrap();
            }
            None => {
                let mut c = diesel::pg::PgConnection::establish(&self.database_url).unwrap();
                diesel::sql_query(statement).execute(&mut c).unwrap();
            }
        }
    }

    /// A document in `owner`'s team workspace (owner must have a work email).
    pub async fn team_doc(&self, owner: &Session) -> String {
        let p = self
            .api
            .project_in(owner, WorkspaceType::Team, "Project")
            .await
            .unwrap();
        self.api
            .create_resource(owner, &p.id, ResourceType::Doc, "Doc")
            .await
            .unwrap()
            .id
    }

    /// Requests control answered on `route` (any method and status), from
    /// its `/metrics`.
    pub async fn control_requests(&self, route: &str) -> u64 {
        let body = reqwest::get(format!("{}/metrics", self.control_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let label = format!("route=\"{route}\"");
        body.lines()
            .filter(|l| l.starts_with("tandem_control_http_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Shares a document with `user` as `role`.
    pub async fn share(&self, owner: &Session, doc: &str, user: &Session, role: Role) {
        self.api
            .add_member(owner, "documents", doc, &user.user_id, role)
            .await
            .unwrap();
    }

    /// `ws://relay/doc-{id}?token=…` with a fresh token.
    pub async fn url(&self, user: &Session, doc: &str) -> String {
        self.url_on(&self.relay_url, user, doc).await
    }

    /// The same on another relay.
    pub async fn url_on(&self, relay: &str, user: &Session, doc: &str) -> String {
        let t = self
            .api
            .collab_token(user, ResourceType::Doc, doc)
            .await
            .unwrap();
        format!("{relay}/{}?token={}", t.room_id, t.token)
    }

    pub async fn connect(&self, user: &Session, doc: &str) -> CollabClient {
        self.connect_on(&self.relay_url, user, doc, yrs::Doc::new())
            .await
    }

    /// Connects `ydoc` to the room on `relay` and waits for the first sync.
    pub async fn connect_on(
        &self,
        relay: &str,
        user: &Session,
        doc: &str,
        ydoc: yrs::Doc,
    ) -> CollabClient {
        let url = self.url_on(relay, user, doc).await;
        let client = CollabClient::connect_with_doc(&url, ydoc).await.unwrap();
        assert!(
            client.wait_status(SOON, |s| s.synced).await.is_some(),
            "client did not sync"
        );
        client
    }

    pub async fn try_connect(
        &self,
        user: &Session,
        doc: &str,
    ) -> Result<CollabClient, ConnectError> {
        CollabClient::connect(&self.url(user, doc).await).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.relay.cancel();
        for h in self
            .control
            .take()
            .into_iter()
            .chain(self.replica_handles.drain(..))
        {
            tokio::spawn(async move { h.stop(false).await });
        }
    }
}

/// Where control keeps its data in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether PostgreSQL tests can run; with `TANDEM_TEST_REQUIRE_POSTGRES`
/// (set by `scripts/test`) a missing server is a failure, not a skip.
pub fn postgres_available() -> bool {
    if std::env::var("TANDEM_TEST_POSTGRES_URL").is_ok() {
        return true;
    }
    assert!(
        std::env::var("TANDEM_TEST_REQUIRE_POSTGRES").is_err(),
        "TANDEM_TEST_REQUIRE_POSTGRES is set but TANDEM_TEST_POSTGRES_URL is not"
    );
    eprintln!("skipping the PostgreSQL variant: TANDEM_TEST_POSTGRES_URL is not set (scripts/test sets it)");
    false
}

/// Runs an `async fn(Backend)` test once per backend, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::postgres_available() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// A fresh PostgreSQL database on the server `TANDEM_TEST_POSTGRES_URL` names
/// (`scripts/test` starts one and sets it, with `TANDEM_TEST_REQUIRE_POSTGRES`).
pub fn postgres_database() -> Option<String> {
    use diesel::{Connection, RunQueryDsl};
    if !postgres_available() {
        return None;
    }
    let admin = std::env::var("TANDEM_TEST_POSTGRES_URL").ok()?;
    let name = format!("tandem_e2e_{}", tandem_control::crypto::new_id());
    let mut conn = diesel::pg::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

/// A relay running as its own process (the real `tandem-relay` binary), for
/// crash and signal tests. Killed when dropped.
pub struct RelayProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl RelayProcess {
    pub fn start(control_url: &str, extra_env: &[(&str, &str)]) -> RelayProcess {
        use std::process::{Command, Stdio};
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new(binary("tandem-relay"));
        cmd.env("TANDEM_RELAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TANDEM_CONTROL_URL", control_url)
            .env("TANDEM_RELAY_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        RelayProcess {
            child,
            url: format!("ws://127.0.0.1:{port}"),
        }
    }

    pub fn port(&self) -> String {
        self.url.rsplit(':').next().unwrap().to_string()
    }

    pub async fn ready(&self) {
        let port = self.port();
        assert!(
            eventually(SOON, || {
                let port = port.clone();
                async move {
                    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
                        .await
                        .is_ok()
                }
            })
            .await,
            "relay process did not come up"
        );
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` as is to `addr` (`host:port`, or a `ws://` URL) and
/// returns the whole answer, read until the server closes (within [`SOON`]).
pub async fn raw_http(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.trim_start_matches("ws://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(SOON, s.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Appends text to the shared `Y.Text` named `t`.
pub fn type_text(client: &CollabClient, s: &str) {
    use yrs::{Text, Transact};
    let doc = client.doc();
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = text.len(&txn);
    text.insert(&mut txn, len, s);
}

pub fn text_of(client: &CollabClient) -> String {
    doc_text(client.doc())
}

pub fn doc_text(doc: &yrs::Doc) -> String {
    use yrs::{GetString, Transact};
    let text = doc.get_or_insert_text("t");
    let s = text.get_string(&doc.transact());
    s
}

/// The text of a stored update.
pub fn stored_text(state: &[u8]) -> String {
    use yrs::updates::decoder::Decode;
    use yrs::Transact;
    let doc = yrs::Doc::new();
    if !state.is_empty() {
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(state).unwrap())
            .unwrap();
    }
    doc_text(&doc)
}

/// Polls `f` until it holds (for state outside any client, like storage).
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f().await
}

/// Path of a binary built next to the test executable (`cargo build --bins`).
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        path.display()
    );
    path
}
