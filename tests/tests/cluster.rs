//! Scale-out: several relay nodes sharing rooms through a real Redis, two
//! control replicas on one PostgreSQL database (`scripts/test` provides
//! both; outside it the tests skip without Redis and use SQLite without
//! PostgreSQL). Clients of one room are spread over the nodes as a load
//! balancer without sticky sessions would spread them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_e2e::{
    eventually, stored_text, text_of, type_text, RedisServer, RelayProcess, Stack, SOON,
};
use tandem_protocol::collab::close;
use tandem_protocol::http::Role;

fn has_all(text: &str, parts: &[String]) -> bool {
    parts.iter().all(|p| text.contains(p.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_three_nodes_converge_and_share_awareness() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stack = Stack::start_cluster(&redis, |_| {}).await;
    // Node 2 talks to the second control replica, node 3 to the first.
    let (node2, _) = stack.relay_via(&stack.replicas[0]).await;
    let (node3, _) = stack.relay_via(&stack.control_url).await;
    let owner = stack.user("owner@spread.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let mut clients = Vec::new();
    for relay in [&stack.relay_url, &node2.url, &node3.url] {
        for _ in 0..2 {
            clients.push(stack.connect_on(relay, &owner, &doc, yrs::Doc::new()).await);
        }
    }
    let mut expected = Vec::new();
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            let s = format!("[{i}.{round}]");
            type_text(c, &s);
            expected.push(s);
        }
    }
    for c in &clients {
        assert!(
            c.wait_doc(SOON, |_| has_all(&text_of(c), &expected)).await,
            "a client has {}",
            text_of(c)
        );
    }
    let first = text_of(&clients[0]);
    assert!(
        clients.iter().all(|c| text_of(c) == first),
        "same order everywhere"
    );

    // Awareness crosses nodes, and so does its removal when a client leaves.
    let leaving = clients.remove(0);
    leaving.set_awareness(r#"{"user":"on node 1"}"#);
    let id = leaving.doc().client_id().get();
    let far = clients.last().unwrap();
    assert!(
        eventually(SOON, || async {
            far.peers()
                .get(&id)
                .is_some_and(|j| j.contains("on node 1"))
        })
        .await,
        "awareness did not reach node 3"
    );
    drop(leaving);
    assert!(
        eventually(SOON, || async {
            far.peers().get(&id).is_some_and(|j| j == "null")
        })
        .await,
        "the leave did not reach node 3"
    );
    node2.stop.cancel();
    node3.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_saves_a_shared_room_and_the_other_settles() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Typing goes on for 3 s, well past save_lease + save_max_delay (1.2 s):
    // a node settled bit by bit by the saver's notices must not start saving
    // by itself.
    let stack = Stack::start_cluster(&redis, |c| {
        c.save_debounce_ms = 50;
        c.save_max_delay_ms = 200;
        c.save_lease_ms = 1_000;
    })
    .await;
    let (node2, m2) = stack.relay_via(&stack.replicas[0]).await;
    let m1 = stack.relay_metrics.clone();
    let owner = stack.user("owner@onesaver.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    let a = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    let b = stack
        .connect_on(&node2.url, &owner, &doc, yrs::Doc::new())
        .await;
    let mut expected = Vec::new();
    for i in 0..1500 {
        let y = format!("B{i};");
        type_text(&b, &y);
        expected.push(y);
        if i % 5 == 0 {
            let x = format!("A{i};");
            type_text(&a, &x);
            expected.push(x);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        eventually(SOON, || async {
            has_all(&stored_text(&stack.stored(&room).await), &expected)
        })
        .await,
        "stored: {}",
        stored_text(&stack.stored(&room).await)
    );
    // Both nodes end clean: one saved, the other settled with its notices.
    assert!(
        eventually(SOON, || async {
            m1.dirty_rooms.get() == 0 && m2.dirty_rooms.get() == 0
        })
        .await,
        "dirty rooms: {} and {}",
        m1.dirty_rooms.get(),
        m2.dirty_rooms.get()
    );
    let (s1, s2) = (m1.saves.get(), m2.saves.get());
    let left = m1.saves_left_to_holder.get() + m2.saves_left_to_holder.get();
    assert!(
        s1 == 0 || s2 == 0,
        "both nodes saved ({s1} and {s2}): the lease should leave it to one"
    );
    assert!(left > 0, "the other node never deferred to the saver");
    node2.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_saver_loses_nothing_another_node_holds() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The in-process node saves by itself 1.5 s after the lease holder stops
    // settling its debts.
    let stack = Stack::start_cluster(&redis, |c| {
        c.save_debounce_ms = 50;
        c.save_max_delay_ms = 500;
        c.save_lease_ms = 1_000;
    })
    .await;
    let owner = stack.user("owner@killsaver.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");
    // The real binary: takes the lease for a minute and saves only when its
    // last client leaves.
    let redis_url = redis.url();
    let mut doomed = RelayProcess::start(
        &stack.replicas[0],
        &[
            ("TANDEM_REDIS_URL", redis_url.as_str()),
            ("TANDEM_SAVE_LEASE_MS", "60000"),
            ("TANDEM_SAVE_DEBOUNCE_MS", "3600000"),
            ("TANDEM_SAVE_MAX_DELAY_MS", "3600000"),
        ],
    );
    doomed.ready().await;
    // Alone in the room, the doomed node saves "one;" when its client leaves,
    // and so takes the room's save lease for a minute.
    let a1 = stack
        .connect_on(&doomed.url, &owner, &doc, yrs::Doc::new())
        .await;
    type_text(&a1, "one;");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a1);
    assert!(
        eventually(SOON, || async {
            stored_text(&stack.stored(&room).await) == "one;"
        })
        .await,
        "the doomed node saved"
    );
    let survivor = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    assert_eq!(text_of(&survivor), "one;");
    let a2 = stack
        .connect_on(&doomed.url, &owner, &doc, yrs::Doc::new())
        .await;
    type_text(&a2, "two;");
    assert!(
        survivor
            .wait_doc(SOON, |_| text_of(&survivor) == "one;two;")
            .await
    );
    doomed.kill(); // SIGKILL: "two;" was never saved by its node
    drop(a2); // and its client is gone for good
    assert!(
        eventually(Duration::from_secs(20), || async {
            stored_text(&stack.stored(&room).await) == "one;two;"
        })
        .await,
        "stored: {}",
        stored_text(&stack.stored(&room).await)
    );
    let m = &stack.relay_metrics;
    assert!(
        m.saves_left_to_holder.get() >= 1,
        "the survivor first left the save to the holder"
    );
    assert!(eventually(SOON, || async { m.dirty_rooms.get() == 0 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconverge_after_redis_restarts_mid_session() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let stack = Stack::start_cluster(&redis, |c| c.recheck_secs = 3600).await;
    let (node2, m2) = stack.relay_via(&stack.replicas[0]).await;
    let m1 = stack.relay_metrics.clone();
    let owner = stack.user("owner@redisdown.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    let b = stack
        .connect_on(&node2.url, &owner, &doc, yrs::Doc::new())
        .await;
    type_text(&a, "before;");
    assert!(b.wait_doc(SOON, |_| text_of(&b) == "before;").await);
    assert!(
        eventually(SOON, || async {
            m1.cluster_up.get() == 1 && m2.cluster_up.get() == 1
        })
        .await
    );

    redis.stop();
    assert!(
        eventually(SOON, || async {
            m1.cluster_up.get() == 0 && m2.cluster_up.get() == 0
        })
        .await,
        "the outage was not noticed"
    );
    // Each node goes on serving its own clients.
    type_text(&a, "a-during;");
    type_text(&b, "b-during;");
    let a2 = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    assert!(
        a2.wait_doc(SOON, |_| text_of(&a2).contains("a-during;"))
            .await
    );
    b.set_awareness(r#"{"user":"b"}"#);

    redis.restart();
    let expected = [
        "before;".to_string(),
        "a-during;".into(),
        "b-during;".into(),
    ];
    for c in [&a, &b, &a2] {
        assert!(
            c.wait_doc(Duration::from_secs(20), |_| has_all(&text_of(c), &expected))
                .await,
            "after the restart a client has {}",
            text_of(c)
        );
    }
    assert_eq!(text_of(&a), text_of(&b));
    let id = b.doc().client_id().get();
    assert!(
        eventually(SOON, || async {
            a.peers().get(&id).is_some_and(|j| j.contains("\"b\""))
        })
        .await,
        "awareness set during the outage did not cross"
    );
    assert!(m1.cluster_outages.get() >= 1 && m2.cluster_outages.get() >= 1);
    // Live traffic flows again.
    type_text(&b, "after;");
    assert!(a.wait_doc(SOON, |_| text_of(&a).ends_with("after;")).await);
    node2.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_is_kicked_on_whichever_node_holds_them() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The sweep is an hour away: the access feed (served by the other
    // control replica for node 2) must do it.
    let stack = Stack::start_cluster(&redis, |c| c.recheck_secs = 3600).await;
    let (node2, _) = stack.relay_via(&stack.replicas[0]).await;
    let owner = stack.user("owner@revoke.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    let o = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    let g1 = stack
        .connect_on(&stack.relay_url, &guest, &doc, yrs::Doc::new())
        .await;
    let g2 = stack
        .connect_on(&node2.url, &guest, &doc, yrs::Doc::new())
        .await;
    // Let the feeds settle on their cursors.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack
        .api
        .remove_member(&owner, "documents", &doc, &guest.user_id)
        .await
        .unwrap();
    for g in [&g1, &g2] {
        let s = g
            .wait_status(SOON, |s| s.closed.is_some())
            .await
            .expect("guest kicked");
        assert!(s.revoked.is_some());
        assert_eq!(
            s.closed,
            Some(Some((
                close::POLICY_VIOLATION,
                close::REASON_AUTH_FORBIDDEN.into()
            )))
        );
    }
    type_text(&o, "still here");
    assert!(o.status().closed.is_none());
    node2.stop.cancel();
}

/// What a client typed before its node died reaches the others when it
/// reconnects through the load balancer to another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_killed_node_reconnects_to_another_and_pushes_its_edits() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stack = Stack::start_cluster(&redis, |_| {}).await;
    let owner = stack.user("owner@failover.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let redis_url = redis.url();
    let mut doomed = RelayProcess::start(
        &stack.control_url,
        &[("TANDEM_REDIS_URL", redis_url.as_str())],
    );
    doomed.ready().await;
    let survivor = stack
        .connect_on(&stack.relay_url, &owner, &doc, yrs::Doc::new())
        .await;
    let kept = yrs::Doc::new();
    let a = stack
        .connect_on(&doomed.url, &owner, &doc, kept.clone())
        .await;
    doomed.kill();
    assert!(a.wait_status(SOON, |s| s.closed.is_some()).await.is_some());
    // Typed while disconnected, then reconnected elsewhere.
    {
        use yrs::{Text, Transact};
        let t = kept.get_or_insert_text("t");
        let mut txn = kept.transact_mut();
        t.insert(&mut txn, 0, "offline;");
    }
    drop(a);
    let _back = stack.connect_on(&stack.relay_url, &owner, &doc, kept).await;
    assert!(
        survivor
            .wait_doc(SOON, |_| text_of(&survivor) == "offline;")
            .await
    );
}

/// A small reconnect storm against one of two nodes (`tandem bench storm
/// --nodes 2`): every room has clients on both; the killed node's clients
/// all come back (with resume tickets) and sync, and the other node's never
/// drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_on_one_of_two_nodes_leaves_the_other_nodes_clients_alone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stack = Stack::start().await;
    let args = tandem_client::bench::storm::StormArgs {
        control: stack.control_url.clone(),
        relay_bin: tandem_e2e::binary("tandem-relay"),
        relay_secret: tandem_e2e::SECRET.into(),
        clients: 60,
        rooms: 6,
        tickets: true,
        control_pid: None,
        timeout_secs: 60,
        backoff_initial_ms: 50,
        backoff_max_ms: 500,
        setup_concurrency: 20,
        nodes: 2,
        redis_url: Some(redis.url()),
        database: "sqlite".into(),
        relay_log: None,
        json: None,
    };
    let report = tandem_client::bench::storm::run(&args).await.unwrap();
    assert_eq!(report.nodes, 2);
    assert_eq!(
        report.storming, 30,
        "half the clients were on the killed node"
    );
    assert_eq!(report.back, 30, "{}", report.table());
    assert_eq!(report.others_reconnected, 0, "{}", report.table());
    assert!(report.tickets_refused <= 30);
}
