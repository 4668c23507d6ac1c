//! Hostile clients against a real relay: foreign browser origins, the
//! SyncStep1 flood, documents pushed past their size limit, saves control
//! refuses as too large.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_e2e::{
    both_backends, eventually, stored_text, text_of, type_text, Backend, RelayProcess, Stack, SOON,
};
use tandem_protocol::collab::close;
use tandem_protocol::http::Role;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use yrs::{ReadTxn, Text, Transact};

/// Opens a socket with the given `Origin` header; the HTTP status of a refusal, or 101.
async fn status_with_origin(url: &str, origin: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_before_control_is_asked() {
    let stack = Stack::start_with(|c| {
        c.cors_origins = Some("http://localhost:*, https://app.example.com".into());
    })
    .await;
    let owner = stack.user("owner@origin.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let url = stack.url(&owner, &doc).await;
    assert_eq!(
        status_with_origin(&url, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        status_with_origin(&url, Some("http://localhost.evil.example:3000")).await,
        403
    );
    assert_eq!(stack.relay_metrics.origins_refused.get(), 2);
    // The token was never sent to control: it still works once.
    assert_eq!(
        status_with_origin(&url, Some("http://localhost:5173")).await,
        101
    );
    // Allowed origins and clients without an Origin header pass.
    let url = stack.url(&owner, &doc).await;
    assert_eq!(
        status_with_origin(&url, Some("https://app.example.com")).await,
        101
    );
    let url = stack.url(&owner, &doc).await;
    assert_eq!(status_with_origin(&url, None).await, 101);
}

/// A Yjs update holding `len` characters of text in `t`.
fn text_update(len: usize) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    text.insert(&mut doc.transact_mut(), 0, &"a".repeat(len));
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    update
}

/// One frame of `n` SyncStep1 messages with an empty state vector: `[0, 0, 1, 0]` each.
fn step1_flood(n: usize) -> Vec<u8> {
    [0u8, 0, 1, 0].repeat(n)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99).div_ceil(100) - 1]
}

/// Issue 11: one frame of 20,000 SyncStep1s from a viewer of a 2 MB
/// document grew the relay by 1.8 GiB and stalled every other room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncstep1_flood_from_a_viewer_costs_little_and_stalls_no_other_room() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@flood.dev", "Owner").await;
    let viewer = stack.user("viewer@gmail.com", "Viewer").await;
    let big = stack.team_doc(&owner).await;
    let small = stack.team_doc(&owner).await;
    stack.share(&owner, &big, &viewer, Role::Viewer).await;
    stack
        .store(&format!("doc-{big}"), text_update(2_000_000))
        .await;
    let relay = RelayProcess::start(&stack.control_url, &[]);
    relay.ready().await;

    let v = stack
        .connect_on(&relay.url, &viewer, &big, yrs::Doc::new())
        .await;
    assert!(v.status().first_sync_bytes.unwrap() >= 2_000_000);
    let b1 = stack
        .connect_on(&relay.url, &owner, &small, yrs::Doc::new())
        .await;
    let b2 = stack
        .connect_on(&relay.url, &owner, &small, yrs::Doc::new())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = relay.status_kib("VmRSS");

    v.send_raw(step1_flood(20_000));
    let mut latencies = Vec::new();
    for i in 0..60 {
        let mark = format!("<{i}>");
        let started = Instant::now();
        type_text(&b1, &mark);
        assert!(
            b2.wait_doc(SOON, |_| text_of(&b2).contains(&mark)).await,
            "edit {i} never arrived"
        );
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = v
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the flooding viewer is closed");
    assert_eq!(
        closed.closed,
        Some(Some((
            close::MESSAGE_TOO_BIG,
            close::REASON_TOO_MANY_MESSAGES.into()
        )))
    );
    let peak = relay.status_kib("VmHWM");
    let grew_mib = peak.saturating_sub(rss_before) / 1024;
    let p99 = p99(latencies);
    eprintln!("flood: RSS {rss_before} KiB before, peak {peak} KiB (+{grew_mib} MiB); p99 in the other room {p99:?}");
    assert!(grew_mib < 64, "relay grew by {grew_mib} MiB");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
}

const MAX_DOC: usize = 64 * 1024;

// Control stores documents: these run on SQLite and on PostgreSQL.
both_backends!(
    an_update_past_the_document_limit_is_refused_and_later_edits_survive_a_sigkill,
    a_save_refused_as_too_large_is_terminal_and_visible,
);

/// Control stores documents of at most 64 KiB; the relay learns it at load.
async fn small_documents(backend: Backend, fast_saves: bool) -> Stack {
    Stack::start_tuned(
        backend,
        |c| {
            if fast_saves {
                c.save_debounce_ms = 100;
                c.save_max_delay_ms = 300;
            }
        },
        |c| c.max_snapshot_bytes = MAX_DOC,
    )
    .await
}

async fn an_update_past_the_document_limit_is_refused_and_later_edits_survive_a_sigkill(
    backend: Backend,
) {
    let stack = small_documents(backend, true).await;
    let owner = stack.user("owner@oversize.dev", "Owner").await;
    let bob = stack.user("bob@oversize.dev", "Bob").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    // The relay has no limit of its own: it learns control's when the room loads.
    let mut relay = RelayProcess::start(
        &stack.control_url,
        &[
            ("TANDEM_SAVE_DEBOUNCE_MS", "100"),
            ("TANDEM_SAVE_MAX_DELAY_MS", "300"),
        ],
    );
    relay.ready().await;
    let a = stack
        .connect_on(&relay.url, &owner, &doc, yrs::Doc::new())
        .await;
    let b = stack
        .connect_on(&relay.url, &bob, &doc, yrs::Doc::new())
        .await;
    type_text(&a, "before;");
    assert!(b.wait_doc(SOON, |_| text_of(&b) == "before;").await);
    type_text(&a, &"x".repeat(MAX_DOC + 1024));
    let s = a
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the oversized writer is closed");
    assert_eq!(
        s.closed,
        Some(Some((
            close::DOCUMENT_TOO_LARGE,
            close::REASON_DOCUMENT_TOO_LARGE.into()
        )))
    );
    // Another user's small edit is applied, saved, and survives a SIGKILL.
    type_text(&b, "after;");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    relay.kill();
    assert_eq!(stored_text(&stack.stored(&room).await), "before;after;");
    let relay = RelayProcess::start(&stack.control_url, &[]);
    relay.ready().await;
    let c = stack
        .connect_on(&relay.url, &bob, &doc, yrs::Doc::new())
        .await;
    assert_eq!(text_of(&c), "before;after;");
}

/// Two relays (no Redis) each accept half a document; together they pass
/// control's limit. The second save's 413 is terminal and visible.
async fn a_save_refused_as_too_large_is_terminal_and_visible(backend: Backend) {
    let stack = small_documents(backend, true).await;
    let owner = stack.user("owner@unsaveable.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let (second, metrics2) = stack.relay_via(&stack.control_url).await;
    // Both relays load the room while it is empty.
    let b = stack
        .connect_on(&second.url, &owner, &doc, yrs::Doc::new())
        .await;
    let a = stack.connect(&owner, &doc).await;
    let half = "a".repeat(MAX_DOC * 5 / 8);
    type_text(&a, &half);
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await).len() == half.len()
        })
        .await
    );
    let other_half = "b".repeat(MAX_DOC * 5 / 8);
    type_text(&b, &other_half);
    let s = b
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the second relay's clients are told");
    assert_eq!(
        s.closed,
        Some(Some((
            close::DOCUMENT_TOO_LARGE,
            close::REASON_DOCUMENT_UNSAVEABLE.into()
        )))
    );
    assert_eq!(metrics2.saves_too_large.get(), 1);
    // The room lets go (no retry loop), and control kept what it had.
    assert!(eventually(SOON, || async { metrics2.rooms.get() == 0 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metrics2.saves_too_large.get(), 1);
    assert_eq!(metrics2.save_retries.get(), 0);
    assert_eq!(metrics2.dirty_rooms.get(), 0);
    assert_eq!(stored_text(&stack.stored(&room).await), half);
    second.stop.cancel();
}

fn verify_calls(stack: &Stack) -> u64 {
    stack
        .relay_metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("tandem_relay_verify_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_the_wrong_shape_never_reach_control() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@shape.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let good = stack.url(&owner, &doc).await;
    let (base, _) = good.split_once("?token=").unwrap();
    for bad in [
        "abc".to_string(),
        "A".repeat(44),
        format!("{}%2B", "A".repeat(40)),
        "A".repeat(4000),
    ] {
        assert_eq!(
            status_with_origin(&format!("{base}?token={bad}"), None).await,
            403,
            "{bad}"
        );
    }
    assert_eq!(stack.relay_metrics.tokens_malformed.get(), 4);
    assert_eq!(verify_calls(&stack), 0, "control was never asked");
    assert_eq!(status_with_origin(&good, None).await, 101);
    assert_eq!(verify_calls(&stack), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_from_one_address_is_limited() {
    let stack = Stack::start_with(|c| {
        c.handshake_rate = 2;
        c.handshake_burst = 10;
        c.handshake_limit_loopback = true;
    })
    .await;
    let owner = stack.user("owner@hsflood.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let base = format!("{}/doc-{doc}", stack.relay_url);
    let mut limited = 0;
    for i in 0..40 {
        let token = format!("{:0>43}", i);
        match status_with_origin(&format!("{base}?token={token}"), None).await {
            429 => limited += 1,
            403 => {}
            s => panic!("status {s}"),
        }
    }
    assert!(limited >= 28, "{limited} of 40 limited");
    assert_eq!(stack.relay_metrics.handshakes_limited.get(), limited);
    assert!(
        verify_calls(&stack) <= 12,
        "control asked {} times",
        verify_calls(&stack)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_holds_at_most_the_cap_of_connections_in_a_room() {
    let stack = Stack::start_with(|c| c.max_connections_per_user = 2).await;
    let owner = stack.user("owner@percap.dev", "Owner").await;
    let bob = stack.user("bob@percap.dev", "Bob").await;
    let doc = stack.team_doc(&owner).await;
    let _a = stack.connect(&owner, &doc).await;
    let _b = stack.connect(&owner, &doc).await;
    let c = stack.try_connect(&owner, &doc).await.unwrap();
    let s = c
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the third is closed");
    assert_eq!(
        s.closed,
        Some(Some((
            close::TRY_AGAIN_LATER,
            close::REASON_USER_ROOM_FULL.into()
        )))
    );
    assert_eq!(stack.relay_metrics.user_room_limited.get(), 1);
    // Someone else still gets in.
    let _d = stack.connect(&bob, &doc).await;
}

/// An awareness message setting `client`'s state to `json`.
fn awareness_frame(client: u64, clock: u32, json: &str) -> Vec<u8> {
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        yrs::ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: std::sync::Arc::from(json),
        },
    );
    yrs::updates::encoder::Encode::encode_v1(&yrs::sync::Message::Awareness(AwarenessUpdate {
        clients,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cannot_set_or_clear_another_ones_awareness() {
    let stack = Stack::start().await;
    let alice = stack.user("alice@spoof.dev", "Alice").await;
    let mallory = stack.user("mallory@spoof.dev", "Mallory").await;
    let bob = stack.user("bob@spoof.dev", "Bob").await;
    let doc = stack.team_doc(&alice).await;
    let a = stack.connect(&alice, &doc).await;
    let m = stack.connect(&mallory, &doc).await;
    let b = stack.connect(&bob, &doc).await;
    let alice_id = a.doc().client_id().get();
    a.set_awareness(r#"{"user":"Alice"}"#);
    assert!(
        eventually(SOON, || async {
            b.peers().get(&alice_id).map(String::as_str) == Some(r#"{"user":"Alice"}"#)
        })
        .await
    );
    // Mallory overwrites Alice's state with a higher clock, then clears it.
    m.send_raw(awareness_frame(alice_id, 100, r#"{"user":"Not Alice"}"#));
    m.send_raw(awareness_frame(alice_id, 101, "null"));
    // Her own state still goes through (so the messages above were read).
    m.set_awareness(r#"{"user":"Mallory"}"#);
    let mallory_id = m.doc().client_id().get();
    assert!(eventually(SOON, || async { b.peers().contains_key(&mallory_id) }).await);
    assert_eq!(
        b.peers().get(&alice_id).map(String::as_str),
        Some(r#"{"user":"Alice"}"#)
    );
    assert_eq!(stack.relay_metrics.awareness_refused.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_at_its_byte_budget_alone() {
    let stack = Stack::start_with(|c| {
        c.send_budget_bytes = 256 * 1024;
        c.max_message_bytes = 1024 * 1024;
    })
    .await;
    let owner = stack.user("owner@budget.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    // A raw socket that never reads.
    let url = stack.url(&owner, &doc).await;
    let (_stuck, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let w = stack.connect(&owner, &doc).await;
    let r = stack.connect(&owner, &doc).await;
    for i in 0..200 {
        type_text(&w, &format!("{i}:{}", "z".repeat(64 * 1024)));
        if stack.relay_metrics.slow_consumers.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        eventually(SOON, || async {
            stack.relay_metrics.slow_consumers.get() == 1
        })
        .await,
        "the stuck client was dropped"
    );
    // The others stay and converge.
    type_text(&w, "end");
    assert!(r.wait_doc(SOON, |_| text_of(&r).ends_with("end")).await);
    assert!(w.status().closed.is_none() && r.status().closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upgrades_are_refused_before_the_token_is_spent() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@upgrade.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let url = stack.url(&owner, &doc).await;
    let target = url.split_once("://").unwrap().1;
    let target = &target[target.find('/').unwrap()..];
    let request = |headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n{headers}\r\n")
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (format!("Sec-WebSocket-Version: 13\r\n{key}"), "400"), // no Connection: Upgrade
        (format!("Connection: Upgrade\r\n{key}"), "426"),
        (
            format!("Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}"),
            "426",
        ),
        (
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".into(),
            "400",
        ),
        (
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"
                .into(),
            "400",
        ),
    ];
    for (headers, status) in cases {
        let answer = tandem_e2e::raw_http(&stack.relay_url, &request(&headers)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{headers:?}: {answer}"
        );
        assert!(answer.contains(r#""code":"#), "a JSON error: {answer}");
        if status == "426" {
            assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
        }
    }
    // None of them reached control: the token still opens the room, and the
    // 101 carries the accept value RFC 6455 prescribes for the key.
    let headers = format!("Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack.relay_url.trim_start_matches("ws://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request(&headers).as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(SOON, s.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    // The read may hold the room's first frames after the head, as bytes
    // (binary: not to be read as text).
    let raw = &head[..n];
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the whole head in one read")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    // A frame RFC 6455 forbids (unmasked, from a client): after the room's
    // greeting, the relay closes with 1002 BAD_FRAME.
    let rest = raw[end..].to_vec();
    s.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
    let mut wire = rest;
    tokio::time::timeout(SOON, s.read_to_end(&mut wire))
        .await
        .unwrap()
        .unwrap();
    let mut at = 0;
    let mut close = None;
    while at + 2 <= wire.len() {
        let (op, len7) = (wire[at] & 0x0F, usize::from(wire[at + 1] & 0x7F));
        let (len, start) = match len7 {
            126 => (
                usize::from(u16::from_be_bytes([wire[at + 2], wire[at + 3]])),
                at + 4,
            ),
            127 => panic!("no frame this large is expected"),
            n => (n, at + 2),
        };
        if op == 0x8 {
            close = Some(wire[start..start + len].to_vec());
        }
        at = start + len;
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1002);
    assert_eq!(&close[2..], close::REASON_BAD_FRAME.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_counts_each_connection_while_it_lives() {
    let stack = Stack::start_with(|c| c.max_connections = 2).await;
    let owner = stack.user("owner@connlimit.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    let b = stack.connect(&owner, &doc).await;
    // Both are joined and idle: the third is refused with 503.
    let url = stack.url(&owner, &doc).await;
    assert_eq!(status_with_origin(&url, None).await, 503);
    assert!(a.status().closed.is_none() && b.status().closed.is_none());
    // One leaves: its place is free again.
    drop(a);
    assert!(
        eventually(SOON, || async {
            let url = stack.url(&owner, &doc).await;
            status_with_origin(&url, None).await == 101
        })
        .await,
        "a place freed by a closed connection is taken again"
    );
}
