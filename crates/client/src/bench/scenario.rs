//! The scenarios, and running one against a target: prepare rooms (and
//! tokens), connect every client, run the timed phase, check that every room
//! converged, and read the server's memory and CPU around each phase.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::peer::{self, now_us, Digest, PeerReport, PeerSpec, Progress, Signals};
use super::procstat;
use super::report::{Report, ServerStats};
use super::stats::summarize_us;
use super::target::Target;

/// A load shape. Every scenario is bounded: it ends at its deadline even if
/// edits go missing (the report then says so).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub edits: u32,
    /// Edits per second per client.
    pub rate: f64,
    /// How long clients stay connected after the last delivery.
    pub hold: Duration,
    /// Large documents: size of the document seeded before the clients join.
    pub doc_bytes: usize,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// How long after the last edit is due missing deliveries are awaited.
    pub drain: Duration,
    /// Wire-level clients (`--wire`): remote updates are counted, not applied.
    pub wire: bool,
}

pub const NAMES: &[&str] = &["fanout", "rooms", "idle", "idle-10k", "large-doc", "burst"];

impl Scenario {
    /// The named scenario at full size, or its small `--quick` version.
    pub fn preset(name: &str, quick: bool) -> Option<Scenario> {
        let s = |rooms, per_room, edits, rate: f64, hold_secs| Scenario {
            name: name.to_string(),
            rooms,
            clients_per_room: per_room,
            edits,
            rate,
            hold: Duration::from_secs(hold_secs),
            doc_bytes: 0,
            connect_concurrency: 64,
            drain: Duration::from_secs(15),
            wire: false,
        };
        Some(match (name, quick) {
            ("fanout", false) => s(1, 50, 20, 5.0, 0),
            ("fanout", true) => s(1, 50, 10, 5.0, 0),
            ("rooms", false) => s(200, 2, 20, 2.0, 0),
            ("rooms", true) => s(50, 2, 6, 2.0, 0),
            ("idle", false) => s(100, 10, 1, 1.0, 15),
            ("idle", true) => s(20, 10, 1, 1.0, 2),
            ("idle-10k", false) => s(1000, 10, 1, 0.2, 20),
            ("idle-10k", true) => s(100, 10, 1, 1.0, 2),
            // Saturation: as fast as a client may type in bursts.
            ("burst", false) => s(1, 50, 100, 50.0, 0),
            ("burst", true) => s(1, 50, 40, 50.0, 0),
            ("large-doc", quick) => Scenario {
                doc_bytes: if quick { 1 << 20 } else { 10 << 20 },
                connect_concurrency: 1,
                ..s(1, 5, 20, 5.0, 0)
            },
            _ => return None,
        })
    }

    pub fn clients(&self) -> usize {
        self.rooms * self.clients_per_room
    }

    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate.max(0.001))
    }
}

/// Prints a progress line every second while the run lasts.
fn progress_printer(
    name: String,
    total: usize,
    progress: Arc<Progress>,
    expected: u64,
    pids: Vec<u32>,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let done = stop.clone();
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 5 }));
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tick.tick() => {}
            }
            let rss = procstat::sample_all(&pids).map_or(String::new(), |s| {
                format!("  server RSS {:.1} MiB", s.rss_kib as f64 / 1024.0)
            });
            let line = format!(
                "[{name} {:>4.0}s] connected {}/{total} failed {}  edits {}  remote updates {}/{expected}{rss}",
                started.elapsed().as_secs_f64(),
                progress.connected.load(Ordering::Relaxed),
                progress.failed.load(Ordering::Relaxed),
                progress.sent.load(Ordering::Relaxed),
                progress.received.load(Ordering::Relaxed),
            );
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
        if tty {
            eprintln!();
        }
    });
    stop
}

/// Runs `scenario` against `target`, reading `pids` for server figures.
pub async fn run(target: &Target, scenario: &Scenario, pids: &[u32]) -> anyhow::Result<Report> {
    let n = scenario.clients();
    let rooms = target.rooms(scenario.rooms, &scenario.name).await?;
    let room_of: Vec<usize> = (0..n).map(|i| i % scenario.rooms).collect();
    let seed = (scenario.doc_bytes > 0).then(|| Arc::new(peer::large_document(scenario.doc_bytes)));

    let progress = Arc::new(Progress::default());
    let (start_tx, start_rx) = watch::channel(false);
    let stop = CancellationToken::new();
    let signals = Signals {
        start: start_rx,
        stop: stop.clone(),
        progress: progress.clone(),
        connecting: Arc::new(Semaphore::new(scenario.connect_concurrency.max(1))),
    };
    let mut errors = Vec::new();

    // Large documents: one client uploads the document, then a probe waits
    // until a fresh joiner receives it whole.
    let mut seeder = None;
    if let Some(seed) = &seed {
        let url = target.url(&rooms[0]).await?;
        let spec = PeerSpec {
            url,
            framing: target.framing(&rooms[0]),
            edits: 0,
            period: scenario.period(),
            phase: Duration::ZERO,
            seed: Some(seed.clone()),
            wire: false,
        };
        // Its own counters: what it receives is not part of the figures.
        let own = Signals {
            progress: Arc::new(Progress::default()),
            ..signals.clone()
        };
        seeder = Some(tokio::spawn(peer::run(spec, own)));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let probe = check_room(target, &rooms[0]).await;
            if probe.first_sync_bytes >= seed.len() * 9 / 10 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the server never held the seeded document"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Tokens (Tandem) before anything is timed.
    let targets: Vec<_> = room_of.iter().map(|r| &rooms[*r]).collect();
    let urls = target.urls(&targets).await?;
    let expected_if_all =
        scenario.edits as u64 * (n as u64) * (scenario.clients_per_room as u64 - 1);
    let printer = progress_printer(
        scenario.name.clone(),
        n,
        progress.clone(),
        expected_if_all,
        pids.to_vec(),
    );
    // The whole server and its first process (the relay alone), from one reading.
    let (before, first_before) = read_server(pids);

    let period = scenario.period();
    let mut tasks = Vec::with_capacity(n);
    for (i, url) in urls.into_iter().enumerate() {
        let spec = PeerSpec {
            url,
            framing: target.framing(&rooms[room_of[i]]),
            edits: scenario.edits,
            period,
            phase: period.mul_f64(i as f64 / n as f64),
            seed: None,
            wire: scenario.wire,
        };
        tasks.push(tokio::spawn(peer::run(spec, signals.clone())));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(300);
    while progress.connected.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed) < n
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected_at = procstat::sample_all(pids);
    let connected = progress.connected.load(Ordering::Relaxed);

    // The timed phase.
    let start_us = now_us();
    let started = Instant::now();
    let _ = start_tx.send(true);
    let per_room_others = scenario.clients_per_room.saturating_sub(1) as u64;
    let edits_due = period.mul_f64(f64::from(scenario.edits)) + period;
    let deadline = started + edits_due + scenario.drain;
    loop {
        let sent = progress.sent.load(Ordering::Relaxed);
        let all_sent = sent >= scenario.edits as u64 * connected as u64;
        let expected = sent * per_room_others;
        if all_sent && progress.received.load(Ordering::Relaxed) >= expected {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let timed_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(scenario.hold).await;
    let (end, first_end) = read_server(pids);

    // Convergence: every client of a room, and a fresh joiner, hold the same
    // document. The fresh joiner comes while the others are still there (a
    // server without persistence may drop a room its last client left).
    let fresh: Vec<PeerReport> = futures_util::stream::iter(&rooms)
        .map(|room| check_room(target, room))
        .buffered(16)
        .collect()
        .await;
    stop.cancel();
    printer.cancel();
    let mut peers: Vec<PeerReport> = Vec::with_capacity(n);
    for t in tasks {
        peers.push(t.await.unwrap_or_else(|e| PeerReport {
            error: Some(format!("client task: {e}")),
            ..PeerReport::default()
        }));
    }
    if let Some(t) = seeder {
        let _ = t.await;
    }
    let mut digests: HashMap<usize, Vec<Digest>> = HashMap::new();
    for (i, p) in peers.iter().enumerate() {
        if let Some(d) = &p.digest {
            digests.entry(room_of[i]).or_default().push(d.clone());
        }
    }
    // Wire-level clients hold only their own edits: the fresh joiner must
    // hold every edit sent in the room.
    let mut sent_in_room = vec![0u32; scenario.rooms];
    for (i, p) in peers.iter().enumerate() {
        sent_in_room[room_of[i]] += p.sent;
    }
    let mut rooms_converged = 0;
    for (r, fresh) in fresh.into_iter().enumerate() {
        if scenario.wire {
            match fresh.digest {
                Some(d) if d.edits == sent_in_room[r] => rooms_converged += 1,
                Some(d) if errors.len() < 5 => errors.push(format!(
                    "room {r}: a fresh joiner holds {} of the {} edits sent",
                    d.edits, sent_in_room[r]
                )),
                Some(_) => {}
                None => errors.push(format!(
                    "room {r}: fresh client: {}",
                    fresh.error.unwrap_or_default()
                )),
            }
            continue;
        }
        let mut all = digests.remove(&r).unwrap_or_default();
        match fresh.digest {
            Some(d) => all.push(d),
            None => errors.push(format!(
                "room {r}: fresh client: {}",
                fresh.error.unwrap_or_default()
            )),
        }
        if all.len() > 1 && all.windows(2).all(|w| w[0] == w[1]) {
            rooms_converged += 1;
        } else if errors.len() < 5 {
            let edits: Vec<u32> = all.iter().map(|d| d.edits).collect();
            errors.push(format!(
                "room {r} did not converge: edits seen per client (fresh joiner last) {edits:?}"
            ));
        }
    }

    // Expected deliveries: what each client sent, times the others present in its room.
    let mut present = vec![0u64; scenario.rooms];
    for (i, p) in peers.iter().enumerate() {
        if p.connect_us.is_some() {
            present[room_of[i]] += 1;
        }
    }
    let mut updates_expected = 0;
    let mut connect = Vec::with_capacity(n);
    let mut latencies = Vec::new();
    let (mut sent, mut received, mut echoes) = (0u64, 0u64, 0u64);
    for (i, p) in peers.iter_mut().enumerate() {
        updates_expected += u64::from(p.sent) * present[room_of[i]].saturating_sub(1);
        sent += u64::from(p.sent);
        received += p.received;
        echoes += p.echoes;
        if let Some(us) = p.connect_us {
            connect.push(super::stats::us_sample(us));
        }
        latencies.append(&mut p.latencies_us);
        if let Some(e) = p.error.take() {
            if errors.len() < 5 {
                errors.push(e);
            }
        }
    }
    let connect_failures = n - connect.len();
    let last = progress.last_delivery_us.load(Ordering::Relaxed);
    let delivery_secs = last.saturating_sub(start_us) as f64 / 1e6;
    let server = match (before, connected_at, end) {
        (Some(b), Some(c), Some(e)) => Some(ServerStats {
            rss_before_kib: b.rss_kib,
            rss_connected_kib: c.rss_kib,
            rss_end_kib: e.rss_kib,
            rss_peak_kib: e.peak_kib,
            rss_per_conn_kib: (e.rss_kib as f64 - b.rss_kib as f64) / connected.max(1) as f64,
            first_rss_per_conn_kib: match (first_before, first_end) {
                (Some(fb), Some(fe)) => {
                    (fe.rss_kib as f64 - fb.rss_kib as f64) / connected.max(1) as f64
                }
                _ => 0.0,
            },
            cpu_connect_secs: c.cpu_secs - b.cpu_secs,
            cpu_timed_secs: e.cpu_secs - c.cpu_secs,
        }),
        _ => None,
    };
    let doc_bytes = seed.as_ref().map(|_| {
        let mut sizes: Vec<usize> = peers.iter().map(|p| p.first_sync_bytes).collect();
        sizes.sort_unstable();
        sizes.first().copied().unwrap_or(0)
    });
    Ok(Report {
        target: target.kind().label().into(),
        scenario: scenario.name.clone(),
        rooms: scenario.rooms,
        clients: n,
        edits_per_client: scenario.edits,
        rate_per_sec: scenario.rate,
        connect_ms: summarize_us(&mut connect),
        connect_failures,
        edits_sent: sent,
        updates_expected,
        updates_received: received,
        echoes_ignored: echoes,
        wire: scenario.wire,
        group: None,
        delivered_per_sec: if delivery_secs > 0.0 {
            received as f64 / delivery_secs
        } else {
            0.0
        },
        latency_ms: summarize_us(&mut latencies),
        rooms_converged,
        converged: rooms_converged == scenario.rooms,
        all_delivered: connect_failures == 0
            && received == updates_expected
            && sent == scenario.edits as u64 * n as u64,
        timed_secs,
        doc_bytes,
        server,
        errors,
    })
}

/// A fresh client joins `room`, syncs, and leaves: what the server holds.
async fn check_room(target: &Target, room: &super::target::RoomRef) -> PeerReport {
    let url = match target.url(room).await {
        Ok(u) => u,
        Err(e) => {
            return PeerReport {
                error: Some(e.to_string()),
                ..PeerReport::default()
            }
        }
    };
    let (_start, start) = watch::channel(false);
    let stop = CancellationToken::new();
    stop.cancel();
    let signals = Signals {
        start,
        stop,
        progress: Arc::new(Progress::default()),
        connecting: Arc::new(Semaphore::new(1)),
    };
    let spec = PeerSpec {
        url,
        framing: target.framing(room),
        edits: 0,
        period: Duration::from_secs(1),
        phase: Duration::ZERO,
        seed: None,
        wire: false,
    };
    peer::run(spec, signals).await
}

/// The sum over the server's processes and the first one's reading, taken once.
fn read_server(pids: &[u32]) -> (Option<procstat::Sample>, Option<procstat::Sample>) {
    let each = procstat::sample_each(pids);
    let first = each.as_ref().and_then(|v| v.first().copied());
    (each.as_deref().and_then(procstat::total), first)
}
