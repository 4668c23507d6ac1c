//! Durable documents: what reached the relay survives restarts, crashes,
//! control outages and several relays saving the same room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tandem_client::collab::CollabClient;
use tandem_e2e::{
    both_backends, eventually, stored_text, text_of, type_text, Backend, RelayProcess, Stack, SOON,
};
use yrs::{ReadTxn, Text, Transact};

// Each runs with control on SQLite and on PostgreSQL.
both_backends!(
    edits_survive_a_graceful_relay_restart,
    saves_are_debounced_and_the_last_leave_saves_at_once,
    control_down_then_back_saves_the_dirty_room,
    two_relays_saving_one_room_keep_both_sides,
    nobody_sees_an_empty_document_while_it_loads,
    edits_made_while_a_large_load_integrates_are_kept,
    an_idle_room_is_evicted_and_reloads_intact,
    a_sigkilled_relay_plus_reconnecting_clients_lose_nothing,
    sigterm_flushes_dirty_rooms_and_exits_zero,
);

async fn edits_survive_a_graceful_relay_restart(backend: Backend) {
    // Saves are an hour away: only the shutdown flush can save these edits.
    let mut stack = Stack::start_on(backend, |c| {
        c.save_debounce_ms = 3_600_000;
        c.save_max_delay_ms = 3_600_000;
    })
    .await;
    let owner = stack.user("owner@restart.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    type_text(&a, "kept across a restart");
    let b = stack.connect(&owner, &doc).await;
    assert!(
        b.wait_doc(SOON, |_| text_of(&b) == "kept across a restart")
            .await
    );
    stack.restart_relay().await;
    assert_eq!(
        stored_text(&stack.stored(&format!("doc-{doc}")).await),
        "kept across a restart"
    );
    let c = stack.connect(&owner, &doc).await;
    assert_eq!(
        text_of(&c),
        "kept across a restart",
        "loaded before the first sync"
    );
}

async fn saves_are_debounced_and_the_last_leave_saves_at_once(backend: Backend) {
    let stack = Stack::start_on(backend, |c| {
        c.save_debounce_ms = 200;
        c.save_max_delay_ms = 600;
    })
    .await;
    let owner = stack.user("owner@debounce.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let a = stack.connect(&owner, &doc).await;
    // Typing continuously: the max delay still forces a save while typing goes on.
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        type_text(&a, &format!("{i},"));
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let partial = stored_text(&stack.stored(&room).await);
    assert!(
        !partial.is_empty(),
        "nothing saved during 1.5 s of typing (max delay 600 ms)"
    );
    // Several edits were folded into each save: far fewer saves than edits.
    let saves = stack.relay_metrics.saves.get();
    assert!(
        saves >= 1 && saves < i as u64 / 3,
        "{saves} saves for {i} edits"
    );
    // After the last change, the debounce saves the rest.
    let expect = text_of(&a);
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await) == expect
        })
        .await
    );
    // The last client leaving saves at once.
    type_text(&a, "bye");
    drop(a);
    assert!(
        eventually(Duration::from_secs(2), || async {
            stored_text(&stack.stored(&room).await).ends_with("bye")
        })
        .await
    );
    // Control commits before it answers, so the stored text can be seen a
    // moment before the relay hears the answer and marks the room clean.
    let m = stack.relay_metrics.clone();
    assert!(
        eventually(SOON, || async { m.dirty_rooms.get() == 0 }).await,
        "{} rooms still dirty after the last save",
        m.dirty_rooms.get()
    );
}

async fn control_down_then_back_saves_the_dirty_room(backend: Backend) {
    let mut stack = Stack::start_on(backend, |c| {
        c.save_debounce_ms = 50;
        c.save_max_delay_ms = 100;
        c.recheck_secs = 3600;
    })
    .await;
    let owner = stack.user("owner@outage.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let a = stack.connect(&owner, &doc).await;
    type_text(&a, "before;");
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await) == "before;"
        })
        .await
    );
    stack.stop_control().await;
    type_text(&a, "during outage;");
    // Saves fail and are retried; the room stays dirty.
    let m = stack.relay_metrics.clone();
    assert!(
        eventually(SOON, || async { m.save_failures.get() >= 2 }).await,
        "saves were not retried"
    );
    assert_eq!(m.dirty_rooms.get(), 1);
    stack.restart_control().await;
    assert!(
        eventually(Duration::from_secs(40), || async {
            stored_text(&stack.stored(&room).await) == "before;during outage;"
        })
        .await,
        "dirty state saved once control is back"
    );
    assert!(eventually(SOON, || async { m.dirty_rooms.get() == 0 }).await);
    assert!(a.status().closed.is_none(), "clients were not disturbed");
}

async fn two_relays_saving_one_room_keep_both_sides(backend: Backend) {
    let stack = Stack::start_on(backend, |c| {
        c.save_debounce_ms = 50;
        c.save_max_delay_ms = 100;
    })
    .await;
    let second = stack.extra_relay().await;
    let owner = stack.user("owner@tworelays.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    // Without Redis the two relays do not talk: each holds its own copy.
    let a = stack.connect(&owner, &doc).await;
    let b = stack
        .connect_on(&second.url, &owner, &doc, yrs::Doc::new())
        .await;
    for i in 0..20 {
        type_text(&a, &format!("A{i};"));
        type_text(&b, &format!("B{i};"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        eventually(SOON, || async {
            let t = stored_text(&stack.stored(&room).await);
            (0..20).all(|i| t.contains(&format!("A{i};")) && t.contains(&format!("B{i};")))
        })
        .await,
        "stored: {}",
        stored_text(&stack.stored(&room).await)
    );
    second.stop.cancel();
}

async fn nobody_sees_an_empty_document_while_it_loads(backend: Backend) {
    let stack = Stack::start_on(backend, |_| {}).await;
    let owner = stack.user("owner@loading.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    // ~2 MB stored before any relay opened the room: loading takes a while.
    let source = yrs::Doc::new();
    let big = "x".repeat(2 * 1024 * 1024);
    {
        let text = source.get_or_insert_text("t");
        let mut txn = source.transact_mut();
        text.insert(&mut txn, 0, &big);
    }
    let state = source
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    stack.store(&room, state.clone()).await;
    // Twelve clients race into the unloaded room.
    let mut urls = Vec::new();
    for _ in 0..12 {
        urls.push(stack.url(&owner, &doc).await);
    }
    let clients =
        futures_util::future::join_all(urls.iter().map(|u| CollabClient::connect(u))).await;
    for c in &clients {
        let c = c.as_ref().unwrap();
        let s = c
            .wait_status(Duration::from_secs(30), |s| s.synced)
            .await
            .expect("synced");
        assert!(
            s.first_sync_bytes.unwrap_or(0) >= big.len(),
            "a client's first sync had {:?} bytes: it saw the room before it loaded",
            s.first_sync_bytes
        );
    }
    assert_eq!(
        stack.relay_metrics.loads.get(),
        1,
        "exactly one load for the room"
    );
}

/// A large stored state is sent to empty joiners while the relay still
/// integrates it; whatever clients send meanwhile (their edits, a copy with
/// offline edits, a quick leave) is held back and applied after, in order.
async fn edits_made_while_a_large_load_integrates_are_kept(backend: Backend) {
    let stack = Stack::start_on(backend, |_| {}).await;
    let owner = stack.user("owner@integrate.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    // ~2 MB in 100-character edits: thousands of items to integrate.
    let state = tandem_client::bench::peer::large_document(2 * 1024 * 1024);
    stack.store(&room, state.clone()).await;
    let stored = stored_text(&state);
    // One client comes back with its copy of the stored document and an
    // edit made offline; it joins while the room loads.
    let offline = yrs::Doc::new();
    {
        let update = yrs::updates::decoder::Decode::decode_v1(&state).unwrap();
        offline.transact_mut().apply_update(update).unwrap();
        let text = offline.get_or_insert_text("t");
        let mut txn = offline.transact_mut();
        text.insert(&mut txn, 0, "[offline]");
    }
    // The first client opens the room, types at once (an insert that needs
    // nothing stored, so a room that applied it to its still-empty document
    // would lose it when the stored state is put in place) and leaves: its
    // edit reaches the relay while the stored state is integrated, and no
    // other client holds it.
    let c = CollabClient::connect(&stack.url(&owner, &doc).await)
        .await
        .unwrap();
    type_text(&c, "[c]");
    drop(c);
    let (url_a, url_b) = (stack.url(&owner, &doc).await, stack.url(&owner, &doc).await);
    let (a, b) = tokio::join!(
        CollabClient::connect(&url_a),
        CollabClient::connect_with_doc(&url_b, offline),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // The client with a copy types at once too.
    type_text(&b, "[b]");
    let s = a
        .wait_status(Duration::from_secs(30), |s| s.synced)
        .await
        .expect("synced");
    assert!(s.first_sync_bytes.unwrap_or(0) >= state.len());
    type_text(&a, "[a]");
    let want = |t: &str| {
        t.len() == stored.len() + "[offline][a][c][b]".len()
            && ["[offline]", "[a]", "[b]", "[c]"]
                .iter()
                .all(|e| t.contains(e))
    };
    for client in [&a, &b] {
        assert!(
            client
                .wait_doc(Duration::from_secs(30), |d| want(&tandem_e2e::doc_text(d)))
                .await,
            "a client lacks an edit: {} characters",
            text_of(client).len()
        );
    }
    let late = stack.connect(&owner, &doc).await;
    assert!(want(&text_of(&late)), "a late joiner lacks an edit");
    assert_eq!(text_of(&late), text_of(&a));
    assert_eq!(text_of(&a), text_of(&b));
    drop((a, b, late));
    assert!(
        eventually(Duration::from_secs(30), || async {
            want(&stored_text(&stack.stored(&room).await))
        })
        .await,
        "control does not hold every edit"
    );
    assert_eq!(stack.relay_metrics.loads.get(), 1);
}

async fn an_idle_room_is_evicted_and_reloads_intact(backend: Backend) {
    let stack = Stack::start_on(backend, |c| c.room_idle_ms = 100).await;
    let owner = stack.user("owner@evict.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    type_text(&a, "persisted");
    drop(a);
    let m = stack.relay_metrics.clone();
    assert!(
        eventually(SOON, || async { m.rooms.get() == 0 }).await,
        "room not evicted"
    );
    assert_eq!(m.loads.get(), 1);
    let b = stack.connect(&owner, &doc).await;
    assert_eq!(text_of(&b), "persisted");
    assert_eq!(m.loads.get(), 2, "reloaded from control");
    // The relay's metrics endpoint reports it all.
    let port = stack.relay_url.rsplit(':').next().unwrap();
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tandem_relay_loads_total 2",
        "tandem_relay_saves_total",
        "tandem_relay_connections 1",
        "tandem_relay_verify_seconds_bucket",
    ] {
        assert!(body.contains(name), "{name} missing from\n{body}");
    }
}

const NEVER_SAVE_WHILE_BUSY: [(&str, &str); 2] = [
    ("TANDEM_SAVE_DEBOUNCE_MS", "3600000"),
    ("TANDEM_SAVE_MAX_DELAY_MS", "3600000"),
];

async fn a_sigkilled_relay_plus_reconnecting_clients_lose_nothing(backend: Backend) {
    let stack = Stack::start_on(backend, |_| {}).await;
    let owner = stack.user("owner@crash.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let mut relay = RelayProcess::start(&stack.control_url, &NEVER_SAVE_WHILE_BUSY);
    relay.ready().await;

    // "one" is saved (its client leaves, which saves at once)…
    let a = stack
        .connect_on(&relay.url, &owner, &doc, yrs::Doc::new())
        .await;
    type_text(&a, "one;");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await) == "one;"
        })
        .await
    );
    // …"two" only ever reaches the relay's memory.
    let b_doc = yrs::Doc::new();
    let b = stack
        .connect_on(&relay.url, &owner, &doc, b_doc.clone())
        .await;
    assert!(b.wait_doc(SOON, |_| text_of(&b) == "one;").await);
    type_text(&b, "two;");
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.kill(); // SIGKILL
    assert!(b.wait_status(SOON, |s| s.closed.is_some()).await.is_some());
    assert_eq!(
        stored_text(&stack.stored(&room).await),
        "one;",
        "two was never saved"
    );
    drop(b);

    // A new relay loads what control stored; nothing is corrupt.
    let relay2 = RelayProcess::start(
        &stack.control_url,
        &[
            ("TANDEM_SAVE_DEBOUNCE_MS", "50"),
            ("TANDEM_SAVE_MAX_DELAY_MS", "100"),
        ],
    );
    relay2.ready().await;
    let c = stack
        .connect_on(&relay2.url, &owner, &doc, yrs::Doc::new())
        .await;
    assert_eq!(text_of(&c), "one;");
    // The client that held "two" reconnects with its document and pushes it.
    let _b2_stays_connected = stack.connect_on(&relay2.url, &owner, &doc, b_doc).await;
    assert!(
        c.wait_doc(SOON, |_| text_of(&c) == "one;two;").await,
        "c sees {}",
        text_of(&c)
    );
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await) == "one;two;"
        })
        .await
    );
}

async fn sigterm_flushes_dirty_rooms_and_exits_zero(backend: Backend) {
    let stack = Stack::start_on(backend, |_| {}).await;
    let owner = stack.user("owner@sigterm.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let mut relay = RelayProcess::start(&stack.control_url, &NEVER_SAVE_WHILE_BUSY);
    relay.ready().await;
    let a = stack
        .connect_on(&relay.url, &owner, &doc, yrs::Doc::new())
        .await;
    type_text(&a, "flushed on SIGTERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stack.stored(&room).await.is_empty());
    let pid = relay.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || relay.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let s = a.wait_status(SOON, |s| s.closed.is_some()).await.unwrap();
    assert_eq!(s.closed.unwrap().unwrap().0, 1001);
    assert_eq!(
        stored_text(&stack.stored(&room).await),
        "flushed on SIGTERM"
    );
}
