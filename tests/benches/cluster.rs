//! Cross-node benchmark (not a test): update latency p50/p99 and throughput
//! when writer and reader sit on different relay nodes (through Redis),
//! against the same load on one node.
//!
//!     scripts/bench cluster     # builds release binaries, then runs this
//!
//! Control runs in this process (SQLite in a temp dir); the two relays are
//! release `tandem-relay` processes sharing a real `redis-server`. Latency:
//! one writer sends 1 000 single-character updates, one every 5 ms; the
//! reader's doc observer timestamps each arrival. Throughput: 4 writers send
//! 2 000 updates each, one round of one update per writer at a time, as fast
//! as this process can; the time until the reader holds all 8 000. (The
//! relays get a large send queue: with the default 1 024, the writers, which
//! also receive each other's updates, are dropped as slow consumers — the
//! relay's backpressure working, not a throughput figure.) Prints a table
//! and one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_client::api::Session;
use tandem_client::collab::CollabClient;
use tandem_e2e::{type_text, RedisServer, RelayProcess, Stack};

const LATENCY_UPDATES: usize = 1_000;
const WRITERS: usize = 4;
const UPDATES_PER_WRITER: usize = 2_000;

/// Arrival times of remote updates at a client.
fn record_arrivals(client: &CollabClient) -> Arc<Mutex<Vec<Instant>>> {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let sink = arrivals.clone();
    client
        .doc()
        .observe_update_v1("bench", move |_, _| {
            sink.lock().unwrap().push(Instant::now());
        })
        .unwrap();
    arrivals
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn connect(stack: &Stack, relay: &str, user: &Session, doc: &str) -> CollabClient {
    stack.connect_on(relay, user, doc, yrs::Doc::new()).await
}

/// p50 and p99 in ms of one writer's updates as seen by one reader.
async fn latency(
    stack: &Stack,
    owner: &Session,
    writer_relay: &str,
    reader_relay: &str,
) -> (f64, f64) {
    let doc = stack.team_doc(owner).await;
    let reader = connect(stack, reader_relay, owner, &doc).await;
    let writer = connect(stack, writer_relay, owner, &doc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrivals = record_arrivals(&reader);
    let mut sent = Vec::with_capacity(LATENCY_UPDATES);
    for _ in 0..LATENCY_UPDATES {
        sent.push(Instant::now());
        type_text(&writer, "x");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < LATENCY_UPDATES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    assert_eq!(got.len(), LATENCY_UPDATES, "updates went missing");
    let mut ms: Vec<f64> = got
        .iter()
        .zip(&sent)
        .map(|(r, s)| r.duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Updates per second reaching one reader from several writers at full speed.
async fn throughput(stack: &Stack, owner: &Session, writer_relay: &str, reader_relay: &str) -> f64 {
    let doc = stack.team_doc(owner).await;
    let reader = connect(stack, reader_relay, owner, &doc).await;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(connect(stack, writer_relay, owner, &doc).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrivals = record_arrivals(&reader);
    let total = WRITERS * UPDATES_PER_WRITER;
    let started = Instant::now();
    for _ in 0..UPDATES_PER_WRITER {
        for w in &writers {
            type_text(w, "y");
        }
        tokio::task::yield_now().await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    assert_eq!(got.len(), total, "updates went missing");
    let last = *got.last().unwrap();
    total as f64 / last.duration_since(started).as_secs_f64()
}

#[tokio::main]
async fn main() {
    let redis = RedisServer::start().expect("redis-server is installed");
    let stack = Stack::start().await;
    let owner = stack.user("bench@cluster.dev", "Bench").await;
    let url = redis.url();
    let env = [
        ("TANDEM_REDIS_URL", url.as_str()),
        ("TANDEM_ROOM_IDLE_MS", "600000"),
        ("TANDEM_SEND_QUEUE", "100000"),
        ("TANDEM_MAX_CONNECTIONS_PER_USER", "0"),
    ];
    let node1 = RelayProcess::start(&stack.control_url, &env);
    let node2 = RelayProcess::start(&stack.control_url, &env);
    node1.ready().await;
    node2.ready().await;

    println!(
        "{:<34} {:>10} {:>10} {:>16}",
        "", "p50 (ms)", "p99 (ms)", "updates/s"
    );
    let mut json = Vec::new();
    for (label, reader) in [
        ("single node (writer, reader on 1)", &node1.url),
        ("cross-node (writer on 1, reader on 2)", &node2.url),
    ] {
        let (p50, p99) = latency(&stack, &owner, &node1.url, reader).await;
        let rate = throughput(&stack, &owner, &node1.url, reader).await;
        println!("{label:<34} {p50:>10.2} {p99:>10.2} {rate:>16.0}");
        json.push(format!(
            r#"{{"case":"{label}","p50_ms":{p50:.3},"p99_ms":{p99:.3},"updates_per_s":{rate:.0}}}"#
        ));
    }
    println!("[{}]", json.join(","));
}
