//! Persistence benchmark (not a test): load and save times of 1 MB and 10 MB
//! documents, and the relay's memory per loaded room.
//!
//!     scripts/bench persistence     # builds release binaries, then runs this
//!
//! Control runs in this process (SQLite in a temp dir); the relay is the
//! release `tandem-relay` binary in its own process, so its RSS can be read
//! from /proc. Prints a table and one JSON line. The cold load's breakdown
//! is measured apart, after it: control serving the stored state over HTTP
//! (what the relay's load does first) and a client integrating that state
//! into a fresh `yrs` document (what the client does last).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_client::bench::peer::large_document;
use tandem_client::collab::CollabClient;
use tandem_e2e::{RelayProcess, Stack};

fn rss_kib(pid: u32) -> u64 {
    tandem_client::bench::procstat::sample(pid).map_or(0, |s| s.rss_kib)
}

/// A relay process that keeps loaded rooms (no idle eviction) and accepts
/// 64 MiB frames.
async fn start_relay(control_url: &str) -> RelayProcess {
    let relay = RelayProcess::start(
        control_url,
        &[
            ("TANDEM_ROOM_IDLE_MS", "600000"),
            ("TANDEM_MAX_MESSAGE_BYTES", "67108864"),
        ],
    );
    relay.ready().await;
    relay
}

/// Decodes and integrates a stored state into a fresh document, as a
/// client that joins with nothing does with the relay's SyncStep2.
fn integrate(state: &[u8]) {
    use yrs::updates::decoder::Decode;
    use yrs::Transact;
    let doc = yrs::Doc::new();
    doc.transact_mut()
        .apply_update(yrs::Update::decode_v1(state).unwrap())
        .unwrap();
}

#[tokio::main]
async fn main() {
    let stack = Stack::start().await;
    let owner = stack.user("bench@persist.dev", "Bench").await;
    let relay = start_relay(&stack.control_url).await;
    let pid = relay.child.id();
    let mut json = Vec::new();
    println!(
        "{:<10} {:>12} {:>14} {:>16} {:>18} {:>14} {:>16}",
        "document",
        "stored bytes",
        "save (ms)",
        "cold load (ms)",
        "relay RSS +KiB",
        "of it: fetch",
        "client integrate"
    );
    for (label, size) in [("1 MB", 1024 * 1024), ("10 MB", 10 * 1024 * 1024)] {
        let doc = stack.team_doc(&owner).await;
        let room = format!("doc-{doc}");
        let state = large_document(size);
        // Save: what a relay's first save of this document costs at control
        // (HTTP + merge into storage + write).
        let started = Instant::now();
        stack.store(&room, state.clone()).await;
        let save_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Cold load: connect to the unloaded room until the first sync
        // (verify + load from control + apply + SyncStep2 to the client).
        let before = rss_kib(pid);
        let url = stack.url_on(&relay.url, &owner, &doc).await;
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
        let started = Instant::now();
        let stored = stack.stored(&room).await;
        let fetch_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        integrate(&stored);
        let integrate_ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{label:<10} {:>12} {save_ms:>14.1} {load_ms:>16.1} {grew:>18} {fetch_ms:>14.1} {integrate_ms:>16.1}",
            state.len()
        );
        json.push(format!(r#"{{"doc":"{label}","storedBytes":{},"saveMs":{save_ms:.1},"coldLoadMs":{load_ms:.1},"relayRssGrowthKiB":{grew},"fetchMs":{fetch_ms:.1},"clientIntegrateMs":{integrate_ms:.1}}}"#, state.len()));
    }
    // Memory per loaded room: 200 small rooms (about 1 KB each), loaded and
    // left idle (clients gone, rooms kept: idle timeout 10 min).
    let rooms = 200;
    let mut docs = Vec::new();
    let project = stack
        .api
        .project_in(&owner, tandem_protocol::http::WorkspaceType::Team, "many")
        .await
        .unwrap();
    let small = large_document(1024);
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
    let pid = relay.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    for d in &docs {
        let c = CollabClient::connect(&stack.url_on(&relay.url, &owner, d).await)
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
