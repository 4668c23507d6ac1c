//! `tandem bench storm`: the reconnect storm. N clients (default 10,000 over
//! 1,000 rooms) connect to a relay this command starts and sync; then the
//! relay is killed (SIGKILL) and started again on the same port, and every
//! client reconnects with exponential backoff and full jitter (the schedule of
//! `@tandem/client`: a random delay in [cap/2, cap], cap doubling from 250 ms
//! to 10 s) and syncs again. Reports the time until each client and all of
//! them are back and synced, and what the storm cost control: its requests
//! by route (token, verify, check-access, snapshot loads) and its CPU time.
//! With `--tickets`, clients ask for resume tickets (`?resume=1`) and rejoin
//! with them, falling back to a token when one is refused (4401). With
//! `--nodes N` (and `--redis-url`), N relays share the rooms through Redis,
//! every room has clients on each of them, and only the first node is
//! killed: its clients come back while the others' stay.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tandem_protocol::collab::close;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::procstat;
use super::stats::{self, Percentiles};
use super::target::{Kind, RoomRef, Target};
use crate::collab::CollabClient;

#[derive(Debug, Args)]
pub struct StormArgs {
    /// Control's base URL (it must share the relay secret).
    #[arg(long)]
    pub control: String,
    /// The `tandem-relay` binary: the storm starts it, kills it and starts it again.
    #[arg(long)]
    pub relay_bin: PathBuf,
    #[arg(long, env = "TANDEM_RELAY_SECRET", hide_env_values = true)]
    pub relay_secret: String,
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    #[arg(long, default_value_t = 1_000)]
    pub rooms: usize,
    /// Clients ask for resume tickets and rejoin with them.
    #[arg(long)]
    pub tickets: bool,
    /// Control's process, for its CPU time during the storm.
    #[arg(long)]
    pub control_pid: Option<u32>,
    /// Give up waiting for the clients after this long (per phase).
    #[arg(long, default_value_t = 180)]
    pub timeout_secs: u64,
    #[arg(long, default_value_t = 250)]
    pub backoff_initial_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    pub backoff_max_ms: u64,
    /// Connections opened at once while setting up (before the storm).
    #[arg(long, default_value_t = 200)]
    pub setup_concurrency: usize,
    /// Relay nodes sharing the rooms through Redis (needs `--redis-url`).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Redis for several nodes (`TANDEM_REDIS_URL` of each relay).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Label of control's database in the report.
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    /// The relay's log (default: discarded).
    #[arg(long)]
    pub relay_log: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StormReport {
    pub scenario: &'static str,
    pub tickets: bool,
    pub database: String,
    pub clients: usize,
    pub rooms: usize,
    /// Relay nodes; only the first was killed.
    pub nodes: usize,
    /// Clients of the killed node.
    pub storming: usize,
    /// Clients of the killed node back and synced before the timeout.
    pub back: usize,
    /// Clients of the other nodes that dropped or synced again during the
    /// storm (0 when they stayed).
    pub others_reconnected: usize,
    /// Kill to every client synced again.
    pub total_ms: f64,
    /// Kill to the restarted relay answering `/healthz`.
    pub relay_restart_ms: f64,
    /// Of that, the kill until the old process was reaped (its sockets closed).
    pub relay_kill_ms: f64,
    /// The kill to the new process listening (a TCP handshake completes).
    pub relay_listening_ms: f64,
    /// The kill to the new process's ops address answering `/healthz`.
    pub relay_ops_health_ms: Option<f64>,
    /// The slowest `/healthz` of probes every 20 ms during the storm, on
    /// the ops address (when the relay has one) and on the client port.
    pub slowest_health_ms: (Option<f64>, f64),
    /// Kill to each client synced again.
    pub per_client_ms: Percentiles,
    /// Control's requests during the storm, by route.
    pub control_requests: BTreeMap<String, u64>,
    /// Control's CPU seconds during the storm, and as a share of one core.
    pub control_cpu_secs: Option<f64>,
    pub control_cpu_pct: Option<f64>,
    /// Token requests the clients made during the storm.
    pub token_requests: u64,
    /// Tickets the relay refused (4401) during the storm.
    pub tickets_refused: u64,
    /// Connection attempts that failed (refused socket, 503) during the storm.
    pub failed_attempts: u64,
    pub load_average: String,
}

impl StormReport {
    pub fn table(&self) -> String {
        let route = |r: &str| self.control_requests.get(r).copied().unwrap_or(0);
        format!(
            "reconnect storm ({} , {}): {} clients / {} rooms on {} node(s), {} of {} back, \
             {} of the other nodes' reconnected\n  \
             all back and synced: {:.0} ms (relay answering /healthz after {:.0} ms; the \
             kill took {:.0} ms, listening after {:.0} ms, its ops address answering /healthz \
             after {}; slowest /healthz during the storm: ops address {}, client port {:.0} ms)\n  \
             per client: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms\n  \
             control: token {}, verify {} (and {} verify-batch), check-access {} (and {} check-access-batch), \
             snapshot loads {}; CPU {} \n  \
             client token requests {}, tickets refused {}, failed attempts {}; load {}\n",
            if self.tickets { "tickets" } else { "tokens" },
            self.database,
            self.clients,
            self.rooms,
            self.nodes,
            self.back,
            self.storming,
            self.others_reconnected,
            self.total_ms,
            self.relay_restart_ms,
            self.relay_kill_ms,
            self.relay_listening_ms,
            self.relay_ops_health_ms
                .map_or("n/a".to_string(), |ms| format!("{ms:.0} ms")),
            self.slowest_health_ms
                .0
                .map_or("n/a".to_string(), |ms| format!("{ms:.1} ms")),
            self.slowest_health_ms.1,
            self.per_client_ms.p50,
            self.per_client_ms.p99,
            self.per_client_ms.max,
            route("/collaboration/token"),
            route("/collaboration/verify"),
            route("/collaboration/verify-batch"),
            route("/collaboration/check-access"),
            route("/collaboration/check-access-batch"),
            self.control_requests
                .iter()
                .filter(|(k, _)| k.contains("snapshot"))
                .map(|(_, v)| *v)
                .sum::<u64>(),
            match (self.control_cpu_secs, self.control_cpu_pct) {
                (Some(s), Some(p)) => format!("{s:.2} s ({p:.0} % of a core)"),
                _ => "n/a".into(),
            },
            self.token_requests,
            self.tickets_refused,
            self.failed_attempts,
            self.load_average,
        )
    }
}

/// What a client tells the coordinator.
enum Note {
    Synced(usize, Instant),
    /// Its synced connection closed.
    Dropped(usize, Instant),
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    tickets_refused: AtomicU64,
    failed_attempts: AtomicU64,
}

/// Full-jitter exponential backoff, as `@tandem/client` does it.
struct Backoff {
    attempt: u32,
    initial: u64,
    max: u64,
    rng: u64,
}

impl Backoff {
    fn new(initial: u64, max: u64, seed: u64) -> Backoff {
        Backoff {
            attempt: 0,
            initial: initial.max(1),
            max: max.max(initial.max(1)),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> Duration {
        let cap = self
            .max
            .min(self.initial.saturating_mul(1u64 << self.attempt.min(30)));
        self.attempt += 1;
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_millis(cap / 2 + (frac * (cap as f64 / 2.0)) as u64)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Control's request counters by route, from its `/metrics`.
async fn control_requests(http: &reqwest::Client, control: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(res) = http.get(format!("{control}/metrics")).send().await else {
        return out;
    };
    let body = res.text().await.unwrap_or_default();
    for line in body
        .lines()
        .filter(|l| l.starts_with("tandem_control_http_requests_total{"))
    {
        let route = line
            .split("route=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let n = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        *out.entry(route.to_string()).or_default() += n as u64;
    }
    out
}

struct Relay {
    bin: PathBuf,
    port: u16,
    /// `TANDEM_RELAY_OPS_LISTEN` (a relay built before it ignores it).
    ops_port: u16,
    control: String,
    secret: String,
    /// With several nodes.
    redis: Option<String>,
    log: Option<PathBuf>,
    child: Option<tokio::process::Child>,
}

impl Relay {
    /// Starts the relay; answers when it was first seen listening and when
    /// its ops address answered `/healthz` (if it has one). It has then also
    /// answered `/healthz` on the client port.
    async fn start(&mut self) -> anyhow::Result<(Instant, Option<Instant>)> {
        let stdout = match &self.log {
            Some(p) => std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => std::process::Stdio::null(),
        };
        let mut cmd = tokio::process::Command::new(&self.bin);
        if let Some(redis) = &self.redis {
            cmd.env("TANDEM_REDIS_URL", redis);
        }
        let child = cmd
            .env("TANDEM_RELAY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "TANDEM_RELAY_OPS_LISTEN",
                format!("127.0.0.1:{}", self.ops_port),
            )
            .env("TANDEM_CONTROL_URL", &self.control)
            .env("TANDEM_RELAY_SECRET", &self.secret)
            .env("TANDEM_MAX_CONNECTIONS_PER_USER", "0")
            .env("TANDEM_MAX_CONNECTIONS_PER_ROOM", "100000")
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Listening: the kernel completes a TCP handshake (before the relay
        // accepts it, so a storm queued at the port does not delay this).
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() >= deadline {
                anyhow::bail!("the relay did not listen on port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let listening = Instant::now();
        // `/healthz` on both addresses, probed from threads of their own:
        // this process's runtime is as busy as the relay's with the storm's
        // clients, and would delay its own probes by seconds.
        let (port, ops_port) = (self.port, self.ops_port);
        let client_port = std::thread::spawn(move || probe_health(port, deadline));
        let ops = std::thread::spawn(move || probe_health(ops_port, deadline));
        let joined = tokio::task::spawn_blocking(move || {
            (client_port.join().ok().flatten(), ops.join().ok().flatten())
        })
        .await?;
        match joined {
            (Some(_), ops) => Ok((listening, ops)),
            (None, _) => anyhow::bail!("the relay did not start on port {}", self.port),
        }
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill(); // SIGKILL
            let _ = c.wait().await;
        }
    }
}

/// How long one `GET /healthz` on `port` took to answer 200, with a
/// blocking socket (outside any runtime); `None` when nothing listens there
/// or the answer was not a 200.
fn time_health(port: u16) -> Option<Duration> {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer
        .starts_with("HTTP/1.1 200")
        .then(|| started.elapsed())
}

/// When `GET /healthz` on `port` first answered 200; `None` past
/// `deadline`, or after 2 s of nothing listening (a relay built before the
/// ops address, asked there).
fn probe_health(port: u16, deadline: Instant) -> Option<Instant> {
    let started = Instant::now();
    while Instant::now() < deadline {
        if time_health(port).is_some() {
            return Some(Instant::now());
        }
        if started.elapsed() > Duration::from_secs(2)
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    target: Arc<Target>,
    // This client's node, and the node the target's token URLs name.
    (relay, base): (String, String),
    room: RoomRef,
    tickets: bool,
    args: (u64, u64),
    setup: Arc<Semaphore>,
    notes: mpsc::UnboundedSender<Note>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(args.0, args.1, i as u64 + 1);
    let mut ticket: Option<(String, Instant)> = None;
    let mut permit = setup.acquire_owned().await.ok();
    while !stop.is_cancelled() {
        let valid = ticket
            .take()
            .filter(|(_, exp)| *exp > Instant::now() + Duration::from_secs(1));
        let url = match &valid {
            Some((t, _)) => format!("{relay}/doc-{}?ticket={t}&resume=1", room.name),
            None => {
                counters.token_requests.fetch_add(1, Ordering::Relaxed);
                match target.url(&room).await {
                    Ok(u) => match u.strip_prefix(&base) {
                        Some(rest) if tickets => format!("{relay}{rest}&resume=1"),
                        Some(rest) => format!("{relay}{rest}"),
                        None => {
                            // Not a URL of the node the target names: never expected.
                            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        }
                    },
                    Err(_) => {
                        counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                }
            }
        };
        let c = match CollabClient::connect(&url).await {
            Ok(c) => c,
            Err(_) => {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                ticket = valid; // the relay may just not be back yet
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let s = c
            .wait_status(Duration::from_secs(60), |s| s.synced || s.closed.is_some())
            .await;
        match s {
            Some(s) if s.synced => {
                let _ = notes.send(Note::Synced(i, Instant::now()));
                permit = None;
                backoff.reset();
                tokio::select! {
                    _ = c.wait_status(Duration::from_secs(24 * 3600), |s| s.closed.is_some()) => {
                        let _ = notes.send(Note::Dropped(i, Instant::now()));
                    }
                    _ = stop.cancelled() => break,
                }
                let st = c.status();
                if tickets {
                    ticket = st.ticket.zip(st.ticket_expires);
                }
                drop(c);
                tokio::time::sleep(backoff.next()).await;
            }
            Some(s)
                if s.closed.as_ref().is_some_and(|c| {
                    c.as_ref()
                        .is_some_and(|(code, _)| *code == close::TICKET_REFUSED)
                }) =>
            {
                // Refused ticket: a fresh token at once.
                counters.tickets_refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
    drop(permit);
}

/// Waits until every client in `expected` has reported a sync at or after
/// `since`; also returns how many clients not expected dropped or synced
/// again since then (each counted once).
async fn wait_all(
    notes: &mut mpsc::UnboundedReceiver<Note>,
    expected: &[bool],
    since: Instant,
    timeout: Duration,
) -> (Vec<Option<Instant>>, usize) {
    let mut at = vec![None; expected.len()];
    let want = expected.iter().filter(|e| **e).count();
    let mut back = 0;
    let mut others = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while back < want {
        match tokio::time::timeout_at(deadline, notes.recv()).await {
            Ok(Some(Note::Synced(i, t) | Note::Dropped(i, t))) if t >= since && !expected[i] => {
                others.insert(i);
            }
            Ok(Some(Note::Synced(i, t))) if t >= since => {
                if at[i].is_none() {
                    at[i] = Some(t);
                    back += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (at, others.len())
}

pub async fn run(args: &StormArgs) -> anyhow::Result<StormReport> {
    let nodes = args.nodes.max(1);
    anyhow::ensure!(
        nodes == 1 || args.redis_url.is_some(),
        "--nodes {nodes} needs --redis-url"
    );
    anyhow::ensure!(
        nodes == 1 || args.clients >= args.rooms.max(1) * nodes,
        "--nodes {nodes} needs at least {} clients (every room on every node)",
        args.rooms.max(1) * nodes
    );
    let mut relays = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let ops_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut relay = Relay {
            bin: args.relay_bin.clone(),
            port,
            ops_port,
            control: args.control.clone(),
            secret: args.relay_secret.clone(),
            redis: args.redis_url.clone().filter(|_| nodes > 1),
            log: args.relay_log.clone(),
            child: None,
        };
        relay.start().await?;
        relays.push(relay);
    }
    let urls: Vec<String> = relays
        .iter()
        .map(|r| format!("ws://127.0.0.1:{}", r.port))
        .collect();
    let target = Arc::new(Target::open(Kind::Tandem, &urls[0], Some(&args.control)).await?);
    let rooms = target.rooms(args.rooms.max(1), "storm").await?;
    let (tx, mut notes) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let setup = Arc::new(Semaphore::new(args.setup_concurrency.max(1)));
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let started = Instant::now();
    // Client i is in room i mod rooms; a room's clients take turns over the nodes.
    let node_of = |i: usize| (i / rooms.len()) % nodes;
    for i in 0..args.clients {
        tokio::spawn(client(
            i,
            target.clone(),
            (urls[node_of(i)].clone(), urls[0].clone()),
            rooms[i % rooms.len()].clone(),
            args.tickets,
            (args.backoff_initial_ms, args.backoff_max_ms),
            setup.clone(),
            tx.clone(),
            counters.clone(),
            stop.clone(),
        ));
    }
    let everyone = vec![true; args.clients];
    let (first, _) = wait_all(&mut notes, &everyone, started, timeout).await;
    let connected = first.iter().filter(|t| t.is_some()).count();
    anyhow::ensure!(
        connected == args.clients,
        "only {connected} of {} clients connected and synced",
        args.clients
    );
    eprintln!(
        "storm: {} clients synced on {nodes} node(s) in {:.1} s; killing the first",
        args.clients,
        started.elapsed().as_secs_f64()
    );
    // Let tickets arrive and the relay save nothing pending (empty rooms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let before = control_requests(&http, &args.control).await;
    let cpu_before = args.control_pid.and_then(procstat::sample);
    let tokens_before = counters.token_requests.load(Ordering::Relaxed);
    let refused_before = counters.tickets_refused.load(Ordering::Relaxed);
    let failed_before = counters.failed_attempts.load(Ordering::Relaxed);
    let t0 = Instant::now();
    relays[0].kill().await;
    let relay_kill_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Probes of `/healthz` every 20 ms from now until everyone is back,
    // from threads of their own: the slowest answer on each address.
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = |port: u16| {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while probing.load(Ordering::Relaxed) {
                if let Some(took) = time_health(port) {
                    slowest = slowest.max(took);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            slowest
        })
    };
    let probes = (probe(relays[0].ops_port), probe(relays[0].port));
    let (listening, ops_healthy) = relays[0].start().await?;
    let relay_listening_ms = listening.duration_since(t0).as_secs_f64() * 1000.0;
    let relay_ops_health_ms = ops_healthy.map(|at| at.duration_since(t0).as_secs_f64() * 1000.0);
    let relay_restart_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let killed: Vec<bool> = (0..args.clients).map(|i| node_of(i) == 0).collect();
    let (again, others_reconnected) = wait_all(&mut notes, &killed, t0, timeout).await;
    probing.store(false, Ordering::Relaxed);
    let slowest =
        |h: std::thread::JoinHandle<Duration>| h.join().unwrap_or_default().as_secs_f64() * 1000.0;
    let slowest_health_ms = (ops_healthy.map(|_| slowest(probes.0)), slowest(probes.1));
    let window = t0.elapsed();
    let cpu_after = args.control_pid.and_then(procstat::sample);
    let after = control_requests(&http, &args.control).await;
    stop.cancel();
    let back = again.iter().filter(|t| t.is_some()).count();
    let mut samples: Vec<u32> = again
        .iter()
        .flatten()
        .map(|t| stats::us_sample(t.duration_since(t0).as_micros() as u64))
        .collect();
    let total_ms = again
        .iter()
        .flatten()
        .map(|t| t.duration_since(t0).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let control_requests = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    let control_cpu_secs = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.cpu_secs - a.cpu_secs),
        _ => None,
    };
    let report = StormReport {
        scenario: "reconnect-storm",
        tickets: args.tickets,
        database: args.database.clone(),
        clients: args.clients,
        rooms: rooms.len(),
        nodes,
        storming: killed.iter().filter(|k| **k).count(),
        back,
        others_reconnected,
        total_ms,
        relay_restart_ms,
        relay_kill_ms,
        relay_listening_ms,
        relay_ops_health_ms,
        slowest_health_ms,
        per_client_ms: stats::summarize_us(&mut samples),
        control_requests,
        control_cpu_secs,
        control_cpu_pct: control_cpu_secs.map(|s| 100.0 * s / window.as_secs_f64().max(1e-3)),
        token_requests: counters.token_requests.load(Ordering::Relaxed) - tokens_before,
        tickets_refused: counters.tickets_refused.load(Ordering::Relaxed) - refused_before,
        failed_attempts: counters.failed_attempts.load(Ordering::Relaxed) - failed_before,
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    };
    // Let the clients close before the relays go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for relay in &mut relays {
        relay.kill().await;
    }
    Ok(report)
}
