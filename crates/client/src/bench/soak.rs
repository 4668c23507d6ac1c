//! `tandem bench soak`: clients edit and join/leave rooms continuously across
//! relay nodes while services are killed (SIGKILL) and restarted in turn by an
//! outside command (`scripts/soak`), and every fault is checked:
//!
//! - **durability**: every edit *acknowledged* (echoed to another client by the
//!   relay) more than `save_delay` before the kill is in the room's stored
//!   state at control once the services are back;
//! - **convergence**: once the clients are back and quiet, every editor of a
//!   room and a fresh joiner (no local state) hold the same document;
//! - **memory**: relay and control RSS sampled every few seconds; the slope of
//!   a least-squares line through each process lifetime is bounded;
//! - **no reconnect storm**: token requests per client are counted (by the
//!   clients, and by control's `/metrics`) and bounded.
//!
//! One cycle: new rooms, editors connect (alternating nodes), edit with churn
//! (editors hop to the other node, visitors join and leave), the fault, the
//! restart, recovery, then the checks; editors leave and the next cycle takes
//! the next fault. Violations make the run fail.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tandem_protocol::http::WorkspaceType;
use tandem_protocol::ResourceType;
use tokio::sync::watch;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Map, Observable, ReadTxn, StateVector, Transact, Update};

use crate::api::{ControlApi, Session};
use crate::collab::CollabClient;

#[derive(Debug, Args)]
pub struct SoakArgs {
    #[arg(long)]
    pub control: String,
    /// The relay nodes' WebSocket URLs (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub relays: Vec<String>,
    #[arg(long, env = "TANDEM_RELAY_SECRET", hide_env_values = true)]
    pub relay_secret: String,
    /// Run with `kill NAME` and `start NAME` for each fault; `start` returns
    /// once the service is ready again.
    #[arg(long)]
    pub fault_cmd: PathBuf,
    /// The faults, taken in turn (comma-separated names given to `--fault-cmd`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "relay1,control,redis,postgres"
    )]
    pub faults: Vec<String>,
    /// Total length of the run.
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    #[arg(long, default_value_t = 3)]
    pub rooms: usize,
    #[arg(long, default_value_t = 3)]
    pub editors: usize,
    /// Milliseconds between two edits of one editor.
    #[arg(long, default_value_t = 250)]
    pub edit_ms: u64,
    /// Edits acknowledged longer ago than this before a kill must survive it
    /// (the relay's save max delay, plus the time a save takes).
    #[arg(long, default_value_t = 2_000)]
    pub save_delay_ms: u64,
    /// Seconds of editing before each fault.
    #[arg(long, default_value_t = 8)]
    pub edit_secs: u64,
    /// Milliseconds a killed service stays down.
    #[arg(long, default_value_t = 1_500)]
    pub down_ms: u64,
    /// Processes whose RSS is sampled: `name=pidfile` (comma-separated; the
    /// file is read again at every sample, so restarts are followed).
    #[arg(long, value_delimiter = ',')]
    pub pidfiles: Vec<String>,
    /// Largest RSS growth trend allowed in one process lifetime (MiB per minute).
    #[arg(long, default_value_t = 3.0)]
    pub max_rss_slope: f64,
    /// Failed token requests allowed per client (a client lives through one fault).
    #[arg(long, default_value_t = 12)]
    pub max_failed_tokens: u64,
    /// Appends the JSON summary to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Longest any recovery step may take before it counts as a violation.
const RECOVERY: Duration = Duration::from_secs(30);
const RSS_EVERY: Duration = Duration::from_secs(2);
/// RSS samples this soon after a process started are left out of its trend.
const RSS_WARMUP: Duration = Duration::from_secs(20);
/// A lifetime shorter than this (after warm-up) is too short for a trend.
const RSS_MIN_SPAN: Duration = Duration::from_secs(30);

/// What editors do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Edit,
    Quiet,
    Leave,
}

/// First time each edit was seen by a client other than its author.
type Acks = Arc<Mutex<HashMap<String, Instant>>>;

struct Room {
    /// The resource id (documents are created at control).
    doc_id: String,
    /// The room id the relay and control use (`doc-…`).
    room_id: String,
    acks: Acks,
}

/// Per-client counters (the storm check).
#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    token_failures: AtomicU64,
    connects: AtomicU64,
}

/// What an editor task shares with the coordinator.
struct EditorState {
    doc: Doc,
    room: usize,
    /// Synced and open right now.
    live: Mutex<bool>,
    counters: Counters,
}

struct Ctx {
    api: ControlApi,
    session: Session,
    relays: Vec<String>,
    edit: Duration,
    /// Every client's counters (editors and visitors), for the report.
    clients: Mutex<Vec<Arc<Counters>>>,
}

impl Ctx {
    /// A URL with a fresh token, retrying with backoff while control is away.
    async fn url(
        &self,
        room: &Room,
        node: usize,
        c: &Counters,
        stop: &watch::Receiver<Mode>,
    ) -> Option<String> {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *stop.borrow() == Mode::Leave {
                return None;
            }
            c.token_requests.fetch_add(1, Ordering::Relaxed);
            let call = self
                .api
                .collab_token(&self.session, ResourceType::Doc, &room.doc_id);
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(t)) => {
                    let relay = &self.relays[node % self.relays.len()];
                    return Some(format!("{relay}/{}?token={}", t.room_id, t.token));
                }
                _ => {
                    c.token_failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Connects (token, socket, first sync) with `doc`; retries with backoff,
    /// hopping to the next node after a failure.
    async fn connect(
        &self,
        room: &Room,
        node: &mut usize,
        doc: &Doc,
        c: &Counters,
        stop: &watch::Receiver<Mode>,
    ) -> Option<CollabClient> {
        let mut backoff = Duration::from_millis(250);
        loop {
            let url = self.url(room, *node, c, stop).await?;
            if let Ok(Ok(client)) = tokio::time::timeout(
                Duration::from_secs(5),
                CollabClient::connect_with_doc(&url, doc.clone()),
            )
            .await
            {
                let synced = client
                    .wait_status(Duration::from_secs(10), |s| s.synced || s.closed.is_some())
                    .await;
                if synced.is_some_and(|s| s.synced && s.closed.is_none()) {
                    c.connects.fetch_add(1, Ordering::Relaxed);
                    return Some(client);
                }
            }
            *node += 1;
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// `d` ± 25 %, so clients that lost their connection together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

/// One editor: connected while the cycle lasts, editing in `Edit` mode, hopping
/// to the other node now and then, reconnecting after faults.
async fn editor(
    ctx: Arc<Ctx>,
    rooms: Arc<Vec<Room>>,
    me: Arc<EditorState>,
    name: String,
    mut node: usize,
    mut mode: watch::Receiver<Mode>,
) {
    let room = &rooms[me.room];
    let map = me.doc.get_or_insert_map("m");
    let mut seq = 0u64;
    let mut client: Option<CollabClient> = None;
    let mut next_hop = Instant::now() + hop_after(&name);
    loop {
        let current = *mode.borrow();
        if current == Mode::Leave {
            break;
        }
        let open = client.as_ref().is_some_and(|c| {
            let s = c.status();
            s.synced && s.closed.is_none()
        });
        if !open {
            *me.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
            drop(client.take());
            client = ctx
                .connect(room, &mut node, &me.doc, &me.counters, &mode)
                .await;
            if client.is_none() {
                break;
            }
            *me.live.lock().unwrap_or_else(|p| p.into_inner()) = true;
            continue;
        }
        if current == Mode::Edit {
            if Instant::now() >= next_hop {
                // Leave and join again on the other node.
                *me.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
                if let Some(c) = client.take() {
                    c.close();
                }
                node += 1;
                next_hop = Instant::now() + hop_after(&name) * 2;
                continue;
            }
            seq += 1;
            let key = format!("{name}:{seq}");
            map.insert(&mut me.doc.transact_mut(), key, seq as i64);
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.edit) => {}
            _ = mode.changed() => {}
        }
    }
    *me.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
    if let Some(c) = client {
        c.close();
    }
}

/// A few seconds, different per editor.
fn hop_after(name: &str) -> Duration {
    let h = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Duration::from_millis(4_000 + h % 6_000)
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultReport {
    pub cycle: usize,
    pub fault: String,
    /// Edits acknowledged more than the save delay before the kill.
    pub required_edits: usize,
    pub missing_edits: usize,
    /// Milliseconds from the restart to every editor connected again.
    pub reconnect_ms: Option<u64>,
    /// Milliseconds from quiet to every room converged (fresh joiner included).
    pub converge_ms: Option<u64>,
    /// Milliseconds from the restart to the stored state holding every required edit.
    pub durable_ms: Option<u64>,
    pub edits_made: usize,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RssTrend {
    pub name: String,
    pub pid: u32,
    pub samples: usize,
    pub span_secs: f64,
    pub first_mib: f64,
    pub last_mib: f64,
    /// Least-squares slope after the warm-up, MiB per minute.
    pub slope_mib_per_min: f64,
    /// Long enough to be judged.
    pub judged: bool,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    pub minutes: f64,
    pub faults: Vec<FaultReport>,
    pub rss: Vec<RssTrend>,
    pub clients: usize,
    pub connects: u64,
    pub token_requests: u64,
    pub token_failures: u64,
    /// Most failed token requests of one client (each lives through one fault).
    pub max_failed_tokens_per_client: u64,
    /// Most token requests of one client.
    pub max_token_requests_per_client: u64,
    /// Token requests control counted (summed over its restarts).
    pub control_token_requests: u64,
    pub violations: Vec<String>,
}

/// RSS samples: (name, pid) → (seconds since start, KiB).
type Samples = Arc<Mutex<BTreeMap<(String, u32), Vec<(f64, f64)>>>>;

fn read_rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples RSS of every pidfile, and control's token counter, until `stop`.
async fn sampler(
    pidfiles: Vec<(String, PathBuf)>,
    samples: Samples,
    control: String,
    tokens: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut last_seen = 0u64;
    loop {
        let t = started.elapsed().as_secs_f64();
        for (name, file) in &pidfiles {
            let pid = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                if let Some(kib) = read_rss_kib(pid) {
                    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                    s.entry((name.clone(), pid)).or_default().push((t, kib));
                }
            }
        }
        if let Some(n) = control_token_count(&http, &control).await {
            // Control's counters restart with it: a drop means a new process.
            let added = if n >= last_seen { n - last_seen } else { n };
            tokens.fetch_add(added, Ordering::Relaxed);
            last_seen = n;
        }
        tokio::select! {
            _ = tokio::time::sleep(RSS_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Sum of `tandem_control_http_requests_total` for the token route.
async fn control_token_count(http: &reqwest::Client, control: &str) -> Option<u64> {
    let text = http
        .get(format!("{control}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| {
                l.starts_with("tandem_control_http_requests_total{")
                    && l.contains("route=\"/collaboration/token\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn trends(samples: &BTreeMap<(String, u32), Vec<(f64, f64)>>) -> Vec<RssTrend> {
    samples
        .iter()
        .map(|((name, pid), points)| {
            let start = points.first().map_or(0.0, |p| p.0);
            let kept: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|p| p.0 - start >= RSS_WARMUP.as_secs_f64())
                .collect();
            let span = match (kept.first(), kept.last()) {
                (Some(a), Some(b)) => b.0 - a.0,
                _ => 0.0,
            };
            RssTrend {
                name: name.clone(),
                pid: *pid,
                samples: points.len(),
                span_secs: span,
                first_mib: points.first().map_or(0.0, |p| p.1 / 1024.0),
                last_mib: points.last().map_or(0.0, |p| p.1 / 1024.0),
                slope_mib_per_min: slope(&kept) * 60.0 / 1024.0,
                judged: span >= RSS_MIN_SPAN.as_secs_f64(),
            }
        })
        .collect()
}

async fn fault(cmd: &std::path::Path, action: &str, name: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(cmd)
        .args([action, name])
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "{} {action} {name}: {status}",
        cmd.display()
    );
    Ok(())
}

fn state_vector(doc: &Doc) -> StateVector {
    doc.transact().state_vector()
}

/// The keys of the edit map in an encoded update (a stored snapshot).
fn stored_keys(update: &[u8]) -> Option<std::collections::HashSet<String>> {
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    let u = Update::decode_v1(update).ok()?;
    doc.transact_mut().apply_update(u).ok()?;
    let txn = doc.transact();
    Some(map.keys(&txn).map(str::to_string).collect())
}

/// Runs the soak; `Err` when setup failed, violations are in the report.
pub async fn run(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(!args.relays.is_empty(), "--relays is empty");
    let control = args.control.trim_end_matches('/').to_string();
    let api = ControlApi::new(&control);
    let email = format!("soak-{}@bench.tandem.dev", super::target::run_id());
    let session = api
        .signup(&email, "soak-password-1", "Soak")
        .await
        .map_err(|e| anyhow::anyhow!("signup: {e}"))?;
    let ctx = Arc::new(Ctx {
        api,
        session,
        relays: args
            .relays
            .iter()
            .map(|r| r.trim_end_matches('/').to_string())
            .collect(),
        edit: Duration::from_millis(args.edit_ms.max(10)),
        clients: Mutex::new(Vec::new()),
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let samples: Samples = Arc::default();
    let control_tokens = Arc::new(AtomicU64::new(0));
    let stop_sampler = tokio_util::sync::CancellationToken::new();
    let pidfiles: Vec<(String, PathBuf)> = args
        .pidfiles
        .iter()
        .filter_map(|p| {
            p.split_once('=')
                .map(|(n, f)| (n.to_string(), PathBuf::from(f)))
        })
        .collect();
    let sampler_task = tokio::spawn(sampler(
        pidfiles,
        samples.clone(),
        control.clone(),
        control_tokens.clone(),
        stop_sampler.clone(),
    ));

    let started = Instant::now();
    let total = Duration::from_secs_f64(args.minutes.max(0.1) * 60.0);
    let save_delay = Duration::from_millis(args.save_delay_ms);
    let mut report = SoakReport {
        minutes: args.minutes,
        ..SoakReport::default()
    };
    let mut cycle = 0usize;
    // A cycle takes about edit_secs + down + recovery + checks; start one only
    // if it can end in time.
    let cycle_guess =
        Duration::from_secs(args.edit_secs + 12) + Duration::from_millis(args.down_ms);
    while cycle == 0 || started.elapsed() + cycle_guess <= total {
        let name = args.faults[cycle % args.faults.len()].clone();
        let r = run_cycle(
            &ctx,
            args,
            &http,
            &control,
            cycle,
            &name,
            save_delay,
            &mut report.violations,
        )
        .await?;
        eprintln!(
            "soak: cycle {cycle} ({name}): {} edits, {} required, {} missing, reconnect {:?} ms, converged {:?} ms, durable {:?} ms",
            r.edits_made, r.required_edits, r.missing_edits, r.reconnect_ms, r.converge_ms, r.durable_ms
        );
        report.faults.push(r);
        cycle += 1;
    }
    stop_sampler.cancel();
    let _ = sampler_task.await;

    report.rss = trends(&samples.lock().unwrap_or_else(|p| p.into_inner()));
    for t in &report.rss {
        if t.judged && t.slope_mib_per_min > args.max_rss_slope {
            report.violations.push(format!(
                "{} (pid {}) RSS grows {:.2} MiB/min over {:.0} s (bound {:.2})",
                t.name, t.pid, t.slope_mib_per_min, t.span_secs, args.max_rss_slope
            ));
        }
    }
    let clients = ctx.clients.lock().unwrap_or_else(|p| p.into_inner());
    report.clients = clients.len();
    for c in clients.iter() {
        report.connects += c.connects.load(Ordering::Relaxed);
        let requests = c.token_requests.load(Ordering::Relaxed);
        report.token_requests += requests;
        report.max_token_requests_per_client = report.max_token_requests_per_client.max(requests);
        let failed = c.token_failures.load(Ordering::Relaxed);
        report.token_failures += failed;
        report.max_failed_tokens_per_client = report.max_failed_tokens_per_client.max(failed);
    }
    if report.max_failed_tokens_per_client > args.max_failed_tokens {
        report.violations.push(format!(
            "a client failed {} token requests (bound {}): a reconnect storm",
            report.max_failed_tokens_per_client, args.max_failed_tokens
        ));
    }
    report.control_token_requests = control_tokens.load(Ordering::Relaxed);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_cycle(
    ctx: &Arc<Ctx>,
    args: &SoakArgs,
    http: &reqwest::Client,
    control: &str,
    cycle: usize,
    fault_name: &str,
    save_delay: Duration,
    violations: &mut Vec<String>,
) -> anyhow::Result<FaultReport> {
    let mut out = FaultReport {
        cycle,
        fault: fault_name.to_string(),
        ..FaultReport::default()
    };
    // Rooms of this cycle.
    let mut rooms = Vec::new();
    let project = ctx
        .api
        .project_in(&ctx.session, WorkspaceType::Personal, "soak")
        .await
        .map_err(|e| anyhow::anyhow!("project: {e}"))?;
    for i in 0..args.rooms {
        let doc = ctx
            .api
            .create_resource(
                &ctx.session,
                &project.id,
                ResourceType::Doc,
                &format!("soak {cycle}.{i}"),
            )
            .await
            .map_err(|e| anyhow::anyhow!("document: {e}"))?;
        rooms.push(Room {
            room_id: format!("doc-{}", doc.id),
            doc_id: doc.id,
            acks: Acks::default(),
        });
    }
    let rooms = Arc::new(rooms);
    let (mode_tx, mode_rx) = watch::channel(Mode::Edit);
    let mut editors = Vec::new();
    let mut tasks = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for e in 0..args.editors {
            let doc = Doc::new();
            let acks = room.acks.clone();
            doc.get_or_insert_map("m").observe(
                "soak",
                move |txn: &yrs::TransactionMut, event: &yrs::types::map::MapEvent| {
                    let remote = txn
                        .origin()
                        .is_some_and(|o| *o == yrs::Origin::from("tandem-remote"));
                    if remote {
                        let now = Instant::now();
                        let mut acks = acks.lock().unwrap_or_else(|p| p.into_inner());
                        for key in event.keys(txn).keys() {
                            acks.entry(key.to_string()).or_insert(now);
                        }
                    }
                },
            );
            let state = Arc::new(EditorState {
                doc,
                room: r,
                live: Mutex::new(false),
                counters: Counters::default(),
            });
            editors.push(state.clone());
            let name = format!("c{cycle}r{r}e{e}");
            tasks.push(tokio::spawn(editor(
                ctx.clone(),
                rooms.clone(),
                state,
                name,
                r + e,
                mode_rx.clone(),
            )));
        }
    }

    // Edit (with hops) for a while; a visitor joins and leaves meanwhile.
    let visitors = tokio::spawn(visit(ctx.clone(), rooms.clone(), mode_rx.clone()));
    tokio::time::sleep(Duration::from_secs(args.edit_secs)).await;

    // The fault.
    let killed_at = Instant::now();
    let required: Vec<(usize, String)> = rooms
        .iter()
        .enumerate()
        .flat_map(|(i, room)| {
            let acks = room.acks.lock().unwrap_or_else(|p| p.into_inner());
            acks.iter()
                .filter(|(_, at)| killed_at.saturating_duration_since(**at) > save_delay)
                .map(|(k, _)| (i, k.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.required_edits = required.len();
    fault(&args.fault_cmd, "kill", fault_name).await?;
    tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
    fault(&args.fault_cmd, "start", fault_name).await?;
    let restarted = Instant::now();

    // Every editor back (they keep editing meanwhile).
    let all_live = |eds: &[Arc<EditorState>]| {
        eds.iter()
            .all(|e| *e.live.lock().unwrap_or_else(|p| p.into_inner()))
    };
    while !all_live(&editors[..]) && restarted.elapsed() < RECOVERY {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if all_live(&editors[..]) {
        out.reconnect_ms = Some(restarted.elapsed().as_millis() as u64);
    } else {
        violations.push(format!(
            "cycle {cycle} ({fault_name}): editors not all back after {RECOVERY:?}"
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Quiet, then every room converges, a fresh joiner included.
    let _ = mode_tx.send(Mode::Quiet);
    let quiet = Instant::now();
    let mut converged = true;
    for (r, room) in rooms.iter().enumerate() {
        let docs: Vec<&Doc> = editors
            .iter()
            .filter(|e| e.room == r)
            .map(|e| &e.doc)
            .collect();
        let same = || {
            let first = state_vector(docs[0]);
            docs.iter().all(|d| state_vector(d) == first)
        };
        while !(all_live(&editors[..]) && same()) && quiet.elapsed() < RECOVERY {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let counters = Arc::new(Counters::default());
        ctx.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters.clone());
        let mut node = cycle + r + 1;
        let joiner_doc = Doc::new();
        let joiner = tokio::time::timeout(
            RECOVERY,
            ctx.connect(room, &mut node, &joiner_doc, &counters, &mode_rx),
        )
        .await
        .ok()
        .flatten();
        let ok = match &joiner {
            Some(j) => {
                let until = Instant::now()
                    + RECOVERY
                        .saturating_sub(quiet.elapsed())
                        .max(Duration::from_secs(5));
                loop {
                    let first = state_vector(docs[0]);
                    if same() && state_vector(j.doc()) == first {
                        break true;
                    }
                    if Instant::now() >= until {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            None => false,
        };
        if !ok {
            converged = false;
            let lens: Vec<u32> = docs
                .iter()
                .map(|d| d.get_or_insert_map("m").len(&d.transact()))
                .collect();
            let jl = joiner_doc
                .get_or_insert_map("m")
                .len(&joiner_doc.transact());
            violations.push(format!(
                "cycle {cycle} ({fault_name}): room {} did not converge (editors hold {lens:?} edits, a fresh joiner {jl})",
                room.room_id
            ));
        }
        if let Some(j) = joiner {
            j.close();
        }
    }
    if converged {
        out.converge_ms = Some(quiet.elapsed().as_millis() as u64);
    }
    out.edits_made = editors
        .iter()
        .map(|e| e.doc.get_or_insert_map("m").len(&e.doc.transact()) as usize)
        .sum::<usize>()
        / args.editors.max(1);

    // Durability: the stored state holds every edit acknowledged long enough before the kill.
    let mut missing = required.len();
    let deadline = Instant::now() + RECOVERY;
    while Instant::now() < deadline {
        missing = 0;
        for (r, room) in rooms.iter().enumerate() {
            let url = format!("{control}/collaboration/rooms/{}/snapshot", room.room_id);
            let stored = match http.get(&url).bearer_auth(&args.relay_secret).send().await {
                Ok(res) if res.status().is_success() => {
                    res.bytes().await.ok().and_then(|b| stored_keys(&b))
                }
                _ => None,
            };
            let want = required.iter().filter(|(i, _)| *i == r);
            missing += match stored {
                Some(keys) => want.filter(|(_, k)| !keys.contains(k)).count(),
                None => want.count(),
            };
        }
        if missing == 0 {
            out.durable_ms = Some(restarted.elapsed().as_millis() as u64);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    out.missing_edits = missing;
    if missing > 0 {
        violations.push(format!(
            "cycle {cycle} ({fault_name}): {missing} of {} acknowledged edits are not in the stored state",
            required.len()
        ));
    }

    // Everyone leaves.
    let _ = mode_tx.send(Mode::Leave);
    for t in tasks {
        let _ = t.await;
    }
    let _ = visitors.await;
    let mut clients = ctx.clients.lock().unwrap_or_else(|p| p.into_inner());
    for e in &editors {
        clients.push(Arc::new(Counters {
            token_requests: AtomicU64::new(e.counters.token_requests.load(Ordering::Relaxed)),
            token_failures: AtomicU64::new(e.counters.token_failures.load(Ordering::Relaxed)),
            connects: AtomicU64::new(e.counters.connects.load(Ordering::Relaxed)),
        }));
    }
    Ok(out)
}

/// Visitors: join a room with an empty document, sync, stay a moment, leave;
/// one after another until the cycle goes quiet.
async fn visit(ctx: Arc<Ctx>, rooms: Arc<Vec<Room>>, mode: watch::Receiver<Mode>) {
    let mut n = 0usize;
    while *mode.borrow() == Mode::Edit {
        let counters = Arc::new(Counters::default());
        ctx.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters.clone());
        let room = &rooms[n % rooms.len()];
        let mut node = n;
        let doc = Doc::new();
        let joined = tokio::time::timeout(
            Duration::from_secs(5),
            ctx.connect(room, &mut node, &doc, &counters, &mode),
        )
        .await;
        if let Ok(Some(client)) = joined {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            client.close();
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl SoakReport {
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let required: usize = self.faults.iter().map(|f| f.required_edits).sum();
        let missing: usize = self.faults.iter().map(|f| f.missing_edits).sum();
        let max = |f: fn(&FaultReport) -> Option<u64>| {
            self.faults.iter().filter_map(f).max().unwrap_or(0)
        };
        s.push_str(&format!(
            "soak: {:.1} min, {} faults ({}), {} clients, {} connects\n",
            self.minutes,
            self.faults.len(),
            self.faults
                .iter()
                .map(|f| f.fault.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            self.clients,
            self.connects
        ));
        s.push_str(&format!(
            "durability: {required} acknowledged edits required to survive, {missing} missing; slowest to be stored {} ms after restart\n",
            max(|f| f.durable_ms)
        ));
        s.push_str(&format!(
            "convergence: {}/{} faults converged; slowest reconnect {} ms, slowest convergence {} ms\n",
            self.faults.iter().filter(|f| f.converge_ms.is_some()).count(),
            self.faults.len(),
            max(|f| f.reconnect_ms),
            max(|f| f.converge_ms)
        ));
        s.push_str(&format!(
            "tokens: {} requested by clients ({} failed), {} counted by control; {:.2} per connect; at most {} by one client ({} failed)\n",
            self.token_requests,
            self.token_failures,
            self.control_token_requests,
            self.token_requests as f64 / self.connects.max(1) as f64,
            self.max_token_requests_per_client,
            self.max_failed_tokens_per_client
        ));
        for t in &self.rss {
            s.push_str(&format!(
                "rss: {:<8} pid {:<7} {:>4} samples over {:>5.0} s, {:>6.1} → {:>6.1} MiB, slope {:>+6.2} MiB/min{}\n",
                t.name,
                t.pid,
                t.samples,
                t.span_secs,
                t.first_mib,
                t.last_mib,
                t.slope_mib_per_min,
                if t.judged { "" } else { " (too short to judge)" }
            ));
        }
        if self.violations.is_empty() {
            s.push_str("soak: no violations\n");
        } else {
            for v in &self.violations {
                s.push_str(&format!("VIOLATION: {v}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0))
            .collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i), if i % 2 == 0 { 10.0 } else { 12.0 }))
            .collect();
        assert!(slope(&flat).abs() < 0.02);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn trends_skip_the_warm_up_and_judge_long_lifetimes_only() {
        let mut samples = BTreeMap::new();
        // 2 MiB/min after a warm-up jump; sampled every 2 s for 100 s.
        let growing: Vec<(f64, f64)> = (0..50)
            .map(|i| {
                let t = f64::from(i) * 2.0;
                let kib = if t < 10.0 {
                    1000.0 + 500.0 * t
                } else {
                    50_000.0 + t * 2048.0 / 60.0
                };
                (t, kib)
            })
            .collect();
        samples.insert(("relay".to_string(), 1), growing);
        samples.insert(
            ("control".to_string(), 2),
            vec![(0.0, 100.0), (20.0, 100.0)],
        );
        let t = trends(&samples);
        let relay = t.iter().find(|t| t.name == "relay").expect("relay");
        assert!((relay.slope_mib_per_min - 2.0).abs() < 0.01, "{relay:?}");
        assert!(relay.judged);
        let control = t.iter().find(|t| t.name == "control").expect("control");
        assert!(!control.judged);
    }

    #[test]
    fn stored_keys_reads_the_edit_map() {
        let doc = Doc::new();
        let map = doc.get_or_insert_map("m");
        map.insert(&mut doc.transact_mut(), "a:1", 1_i64);
        map.insert(&mut doc.transact_mut(), "b:1", 1_i64);
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let keys = stored_keys(&update).expect("decodes");
        assert_eq!(keys.len(), 2);
        assert!(keys.contains("a:1") && keys.contains("b:1"));
        assert!(stored_keys(&[0xff, 0xff]).is_none());
    }
}
