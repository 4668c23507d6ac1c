//! Persistence benchmark (not a test): load and save times of 1 MB and 10 MB
//! documents, and the relay's memory per loaded room.
//!
//!     scripts/bench persistence     # builds release binaries, then runs this
//!
//! Control runs in this process (SQLite in a temp dir); the relay is the
//! release `tandem-relay` binary in its own process, so its RSS can be read
//! from /proc. Prints a table and one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_client::collab::CollabClient;
use tandem_e2e::{binary, eventually, Stack, SECRET};
use yrs::{ReadTxn, StateVector, Text, Transact};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A document of about `bytes` of text, typed in 100-character edits (as
/// people type: many items, not one blob).
fn document(bytes: usize) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    let chunk = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore ";
    // One transaction per edit, as a person types: yrs 0.28 grows memory
    // quadratically with the number of inserts in a single transaction
    // (1 MB typed in one transaction took 5 GB here).
    let mut len = 0;
    while len < bytes {
        text.insert(&mut doc.transact_mut(), len as u32, chunk);
        len += chunk.len();
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    state
}

struct Relay(Child, String);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_relay(control_url: &str) -> Relay {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary("tandem-relay"))
        .env("TANDEM_RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TANDEM_CONTROL_URL", control_url)
        .env("TANDEM_RELAY_SECRET", SECRET)
        .env("TANDEM_ROOM_IDLE_MS", "600000")
        .env("TANDEM_MAX_MESSAGE_BYTES", "67108864")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ok = eventually(Duration::from_secs(10), || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "relay did not start");
    Relay(child, format!("ws://127.0.0.1:{port}"))
}

#[tokio::main]
async fn main() {
    let stack = Stack::start().await;
    let owner = stack.user("bench@persist.dev", "Bench").await;
    let relay = start_relay(&stack.control_url).await;
    let pid = relay.0.id();
    let mut json = Vec::new();
    println!(
        "{:<10} {:>12} {:>14} {:>16} {:>18}",
        "document", "stored bytes", "save (ms)", "cold load (ms)", "relay RSS +KiB"
    );
    for (label, size) in [("1 MB", 1024 * 1024), ("10 MB", 10 * 1024 * 1024)] {
        let doc = stack.team_doc(&owner).await;
        let room = format!("doc-{doc}");
        let state = document(size);
        // Save: what a relay's first save of this document costs at control
        // (HTTP + merge into storage + write).
        let started = Instant::now();
        stack.store(&room, state.clone()).await;
        let save_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Cold load: connect to the unloaded room until the first sync
        // (verify + load from control + apply + SyncStep2 to the client).
        let before = rss_kib(pid);
        let url = stack.url_on(&relay.1, &owner, &doc).await;
        let started = Instant::now();
        let client = CollabClient::connect(&url).await.unwrap();
        client
            .wait_status(Duration::from_secs(120), |s| s.synced)
            .await
            .expect("synced");
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let grew = rss_kib(pid).saturating_sub(before);
        println!(
            "{label:<10} {:>12} {save_ms:>14.1} {load_ms:>16.1} {grew:>18}",
            state.len()
        );
        json.push(format!(r#"{{"doc":"{label}","storedBytes":{},"saveMs":{save_ms:.1},"coldLoadMs":{load_ms:.1},"relayRssGrowthKiB":{grew}}}"#, state.len()));
    }
    // Memory per loaded room: 200 small rooms (about 1 KB each), loaded and
    // left idle (clients gone, rooms kept: idle timeout 10 min).
    let rooms = 200;
    let mut docs = Vec::new();
    let ws = stack
        .api
        .workspace(&owner, tandem_protocol::http::WorkspaceType::Team)
        .await
        .unwrap();
    let project = stack.api.create_project(&owner, &ws, "many").await.unwrap();
    let small = document(1024);
    for _ in 0..rooms {
        let d = stack
            .api
            .create_resource(&owner, &project.id, tandem_protocol::ResourceType::Doc, "d")
            .await
            .unwrap();
        stack.store(&format!("doc-{}", d.id), small.clone()).await;
        docs.push(d.id);
    }
    // A fresh relay process, so the big documents above do not blur the figure.
    drop(relay);
    let relay = start_relay(&stack.control_url).await;
    let pid = relay.0.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    for d in &docs {
        let c = CollabClient::connect(&stack.url_on(&relay.1, &owner, d).await)
            .await
            .unwrap();
        c.wait_status(Duration::from_secs(10), |s| s.synced)
            .await
            .expect("synced");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_room = rss_kib(pid).saturating_sub(before) as f64 / rooms as f64;
    println!(
        "relay RSS per loaded room (1 KB documents, {rooms} rooms, no clients): {per_room:.1} KiB"
    );
    json.push(format!(
        r#"{{"roomsLoaded":{rooms},"relayRssPerRoomKiB":{per_room:.1}}}"#
    ));
    println!("JSON [{}]", json.join(","));
}
