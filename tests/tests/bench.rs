//! The load generator (`tandem bench`) against a real Stack: tiny fanout and
//! rooms scenarios must report every edit delivered, every room converged,
//! and a complete report. Figures themselves are not asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_client::bench::report::Report;
use tandem_client::bench::target::Kind;
use tandem_client::bench::{run_scenario, RunArgs};
use tandem_e2e::Stack;

fn args(stack: &Stack, scenario: &str) -> RunArgs {
    RunArgs {
        target: Kind::Tandem,
        url: stack.relay_url.clone(),
        control: Some(stack.control_url.clone()),
        scenario: scenario.into(),
        quick: true,
        pids: vec![std::process::id()],
        json: None,
        rooms: None,
        clients_per_room: None,
        edits: None,
        rate: Some(20.0),
        hold_secs: Some(0),
        doc_bytes: None,
        wire: false,
        group: None,
    }
}

fn assert_complete(r: &Report, rooms: usize, per_room: usize, edits: u32) {
    let clients = rooms * per_room;
    assert_eq!(
        (r.rooms, r.clients, r.edits_per_client),
        (rooms, clients, edits)
    );
    assert_eq!(r.connect_failures, 0, "errors: {:?}", r.errors);
    assert_eq!(r.connect_ms.count, clients as u64);
    assert_eq!(r.edits_sent, u64::from(edits) * clients as u64);
    let expected = r.edits_sent * (per_room as u64 - 1);
    assert_eq!(r.updates_expected, expected);
    assert_eq!(
        r.updates_received, expected,
        "every edit reaches every other client"
    );
    assert_eq!(
        r.latency_ms.count, expected,
        "one latency sample per delivery"
    );
    assert!(r.all_delivered && r.converged, "{}", r.table());
    assert_eq!(r.rooms_converged, rooms);
    assert!(r.latency_ms.p50 <= r.latency_ms.p99 && r.latency_ms.p99 <= r.latency_ms.max);
    assert!(r.latency_ms.max < 10_000.0, "latencies are in milliseconds");
    assert!(r.delivered_per_sec > 0.0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let server = r.server.as_ref().expect("server figures from /proc");
    assert!(server.rss_end_kib > 0 && server.rss_peak_kib >= server.rss_end_kib);
    let json: serde_json::Value = serde_json::to_value(r).unwrap();
    for key in [
        "target",
        "scenario",
        "connectMs",
        "editsSent",
        "updatesReceived",
        "deliveredPerSec",
        "latencyMs",
        "converged",
        "roomsConverged",
        "server",
    ] {
        assert!(json.get(key).is_some(), "report lacks {key}: {json}");
    }
    for key in ["p50", "p95", "p99", "max"] {
        assert!(json["latencyMs"].get(key).is_some());
    }
    assert_eq!(json["target"], "tandem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_edit_and_converges() {
    let stack = Stack::start().await;
    let mut a = args(&stack, "fanout");
    a.clients_per_room = Some(6);
    a.edits = Some(5);
    let r = tokio::time::timeout(Duration::from_secs(60), run_scenario(&a))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(r.scenario, "fanout");
    assert_complete(&r, 1, 6, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_level_clients_count_every_edit_and_the_room_holds_them_all() {
    let stack = Stack::start().await;
    let mut a = args(&stack, "fanout");
    a.clients_per_room = Some(5);
    a.edits = Some(6);
    a.wire = true;
    let r = tokio::time::timeout(Duration::from_secs(60), run_scenario(&a))
        .await
        .expect("bounded")
        .unwrap();
    assert!(r.wire);
    // Counted from the bytes (one latency per delivery), and a fresh yrs
    // joiner holds every edit sent.
    assert_complete(&r, 1, 5, 6);
    assert!(r.cpu_us_per_delivered().is_some(), "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_scenario_keeps_rooms_apart_and_converged() {
    let stack = Stack::start().await;
    let mut a = args(&stack, "rooms");
    a.rooms = Some(4);
    a.edits = Some(3);
    let r = tokio::time::timeout(Duration::from_secs(60), run_scenario(&a))
        .await
        .expect("bounded")
        .unwrap();
    assert_complete(&r, 4, 2, 3);
    // Rooms are separate documents: each client got only its partner's edits.
    assert_eq!(r.updates_received, 4 * 2 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_doc_joiners_receive_the_whole_document() {
    let stack = Stack::start().await;
    let mut a = args(&stack, "large-doc");
    a.clients_per_room = Some(2);
    a.edits = Some(2);
    a.doc_bytes = Some(64 * 1024);
    let r = run_scenario(&a).await.unwrap();
    assert_complete(&r, 1, 2, 2);
    assert!(r.doc_bytes.unwrap() >= 64 * 1024, "{:?}", r.doc_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_is_reported_not_hidden() {
    let stack = Stack::start().await;
    // The relay driven as if it were a y-websocket server: room names it does
    // not know and no tokens. Every connection is refused (400), and the
    // report says so instead of hiding it.
    let mut a = args(&stack, "fanout");
    a.target = Kind::YWebsocket;
    a.clients_per_room = Some(2);
    a.edits = Some(1);
    let r = run_scenario(&a).await.unwrap();
    assert_eq!(r.connect_failures, 2);
    assert!(!r.all_delivered && !r.converged);
    assert!(r.errors.iter().any(|e| e.contains("400")), "{:?}", r.errors);
}
