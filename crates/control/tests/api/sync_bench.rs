//! `scripts/bench sync`: the sync engine's load figures (ignored by
//! `cargo test`; run with `--ignored --nocapture`, in release for real
//! figures). Prints one `SYNC_BENCH {json}` line per backend. No timing
//! assertions: these are measurements, not tests.
//!
//! - ingest: 4 clients push batches of 250 new rows, 40,000 changes;
//! - latency: 1,000 open event streams; one device patches a row, another
//!   (with a stream among the 1,000) sees the poke and pulls the row: p50/p99;
//! - initial sync: 100,000 rows pulled from no cursor, 1,000 per page.
//!
//! Sizes: `TANDEM_SYNC_BENCH_INGEST`, `…_STREAMS`, `…_WRITES`, `…_ROWS`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, TestUser};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn hlc(counter: usize, client: &str) -> String {
    format!("{:013}:{:06}:{client}", now_ms(), counter % 1_000_000)
}

async fn push(app: &TestApp, who: &TestUser, ws: &str, client: &str, mutations: Vec<Value>) {
    let a = app
        .post(
            &format!("/workspaces/{ws}/sync/push"),
            &who.token,
            json!({"clientGroupId": client, "clientId": client, "mutations": mutations}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

fn row(id: usize, row: String, client: &str) -> Value {
    json!({"id": id, "collection": "items", "rowId": row, "op": "put",
           "fields": {"title": format!("item {row}"), "done": false, "rank": id},
           "hlc": hlc(id, client)})
}

/// Pushes `total` new rows from `clients` concurrent clients, `batch` per push.
async fn load_rows(
    app: &TestApp,
    who: &TestUser,
    ws: &str,
    total: usize,
    clients: usize,
    batch: usize,
    tag: &str,
) -> f64 {
    let started = Instant::now();
    let per = total / clients;
    let tasks = (0..clients).map(|c| {
        let client = format!("{tag}{c}");
        async move {
            let mut id = 0;
            while id < per {
                let n = batch.min(per - id);
                let muts = (id..id + n)
                    .map(|i| row(i + 1, format!("{client}-{i}"), &client))
                    .collect();
                push(app, who, ws, &client, muts).await;
                id += n;
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    (per * clients) as f64 / started.elapsed().as_secs_f64()
}

/// Reads an event stream, sending each `poke`'s arrival instant to `tx`.
async fn listen(res: reqwest::Response, tx: Option<tokio::sync::mpsc::UnboundedSender<Instant>>) {
    let mut res = res;
    let mut buf = String::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.starts_with("event: poke") {
                if let Some(tx) = &tx {
                    let _ = tx.send(Instant::now());
                }
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn bench(backend: Backend) {
    let ingest_n = env("TANDEM_SYNC_BENCH_INGEST", 40_000);
    let streams = env("TANDEM_SYNC_BENCH_STREAMS", 1_000);
    let writes = env("TANDEM_SYNC_BENCH_WRITES", 300);
    let rows_n = env("TANDEM_SYNC_BENCH_ROWS", 100_000);
    let app = TestApp::spawn_with(backend, |c| {
        c.max_streams_per_user = streams + 10;
        c.db_pool_size = 16;
        c.workers = 2;
    })
    .await;
    let who = app.signup("bench@sync-bench.dev", "Bench").await;
    let ws = app.workspace(&who, "team").await;
    let personal = app.workspace(&who, "personal").await;

    // 1. Push ingest.
    let ingest = load_rows(&app, &who, &ws, ingest_n, 4, 250, "ingest").await;

    // 2. Write-to-other-device latency with `streams` open event streams.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams + 10)
        .build()
        .unwrap();
    let open = |i: usize| {
        let req = client
            .get(format!("{}/workspaces/{ws}/sync/events", app.base))
            .bearer_auth(&who.token);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "stream {i}");
            res
        }
    };
    let mut bystanders = Vec::new();
    for chunk in (1..streams).collect::<Vec<_>>().chunks(100) {
        for res in futures_util::future::join_all(chunk.iter().map(|i| open(*i))).await {
            bystanders.push(tokio::spawn(listen(res, None)));
        }
    }
    let (tx, mut pokes) = tokio::sync::mpsc::unbounded_channel();
    let observer = tokio::spawn(listen(open(0).await, Some(tx)));
    pokes.recv().await.expect("the first poke");
    let mut cursor = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?limit=1&cursor=c999999999"),
            &who.token,
        )
        .await;
    // Skip to the end: pull until done.
    while cursor.body["hasMore"] == true {
        let c = cursor.body["cursor"].as_str().unwrap().to_string();
        cursor = app
            .get(
                &format!("/workspaces/{ws}/sync/pull?limit=1000&cursor={c}"),
                &who.token,
            )
            .await;
    }
    let mut at = cursor.body["cursor"].as_str().unwrap().to_string();
    let mut latencies = Vec::with_capacity(writes);
    for i in 0..writes {
        let sent = Instant::now();
        let m = json!({"id": i + 1, "collection": "items", "rowId": "hot", "op": "patch",
                       "fields": {"n": i}, "hlc": hlc(i, "writer")});
        push(&app, &who, &ws, "writer", vec![m]).await;
        // The other device: its poke, then its pull.
        tokio::time::timeout(Duration::from_secs(10), pokes.recv())
            .await
            .expect("a poke within 10 s");
        let p = app
            .get(
                &format!("/workspaces/{ws}/sync/pull?cursor={at}"),
                &who.token,
            )
            .await;
        assert_eq!(p.body["changes"][0]["fields"]["n"], i, "{}", p.body);
        at = p.body["cursor"].as_str().unwrap().to_string();
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        while pokes.try_recv().is_ok() {}
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    observer.abort();
    for b in bystanders {
        b.abort();
    }

    // 3. Initial sync of `rows_n` rows (in another workspace).
    load_rows(&app, &who, &personal, rows_n, 4, 500, "init").await;
    let started = Instant::now();
    let mut got = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/workspaces/{personal}/sync/pull?limit=1000"),
            Some(c) => format!("/workspaces/{personal}/sync/pull?limit=1000&cursor={c}"),
        };
        let a = app.get(&path, &who.token).await;
        got += a.body["changes"].as_array().unwrap().len();
        cursor = Some(a.body["cursor"].as_str().unwrap().to_string());
        if a.body["hasMore"] != true {
            break;
        }
    }
    let initial = started.elapsed().as_secs_f64();
    assert_eq!(got, rows_n);

    let line = json!({
        "backend": format!("{backend:?}").to_lowercase(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "ingest_changes_per_s": ingest.round(),
        "ingest_changes": ingest_n,
        "streams": streams,
        "latency_ms_p50": (percentile(&latencies, 0.5) * 10.0).round() / 10.0,
        "latency_ms_p99": (percentile(&latencies, 0.99) * 10.0).round() / 10.0,
        "latency_writes": writes,
        "initial_sync_rows": rows_n,
        "initial_sync_s": (initial * 100.0).round() / 100.0,
    });
    println!("SYNC_BENCH {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench sync"]
async fn sync_bench_sqlite() {
    bench(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench sync"]
async fn sync_bench_postgres() {
    if crate::helpers::postgres_available() {
        bench(Backend::Postgres).await
    }
}
