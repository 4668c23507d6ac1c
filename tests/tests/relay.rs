//! Live collaboration end to end: control and relay on port 0, Rust clients
//! over real WebSockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_client::collab::{CollabClient, ConnectError};
use tandem_e2e::{text_of, type_text, Stack, SOON};
use tandem_protocol::collab::close;
use tandem_protocol::http::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge() {
    let stack = Stack::start().await;
    let alice = stack.user("alice@conv.dev", "Alice").await;
    let bob = stack.user("bob@conv.dev", "Bob").await;
    let doc = stack.team_doc(&alice).await;
    let a = stack.connect(&alice, &doc).await;
    let b = stack.connect(&bob, &doc).await;
    type_text(&a, "hello ");
    type_text(&b, "world");
    for _ in 0..20 {
        type_text(&a, "a");
        type_text(&b, "b");
    }
    let converged = |c: &CollabClient| {
        let t = text_of(c);
        t.matches('a').count() >= 20
            && t.matches('b').count() >= 20
            && t.contains("hello")
            && t.contains("world")
    };
    assert!(
        a.wait_doc(SOON, |_| converged(&a)).await,
        "a: {}",
        text_of(&a)
    );
    assert!(
        b.wait_doc(SOON, |_| converged(&b)).await,
        "b: {}",
        text_of(&b)
    );
    assert_eq!(text_of(&a), text_of(&b));
    // A late joiner gets everything on sync.
    let c = stack.connect(&alice, &doc).await;
    assert!(c.wait_doc(SOON, |_| text_of(&c) == text_of(&a)).await);
}

/// Edits that reach a room together go out merged into one update message
/// for the others; nobody gets their own edits back, and everyone converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_arriving_together_go_out_merged_and_never_back_to_their_sender() {
    let stack = Stack::start().await;
    let alice = stack.user("alice@merge.dev", "Alice").await;
    let bob = stack.user("bob@merge.dev", "Bob").await;
    let carol = stack.user("carol@merge.dev", "Carol").await;
    let doc = stack.team_doc(&alice).await;
    let a = stack.connect(&alice, &doc).await;
    let b = stack.connect(&bob, &doc).await;
    let c = stack.connect(&carol, &doc).await;
    // Each edit is a message of its own; written as fast as the clients can,
    // they queue up at the room faster than it takes them one by one (a
    // burst again if a fast machine kept up with the first).
    let mut sent = 0;
    for _ in 0..5 {
        for _ in 0..300 {
            type_text(&a, "a");
            type_text(&b, "b");
        }
        sent += 300;
        let done = |c: &CollabClient| {
            let t = text_of(c);
            t.matches('a').count() == sent && t.matches('b').count() == sent
        };
        for (name, client) in [("a", &a), ("b", &b), ("c", &c)] {
            assert!(
                client.wait_doc(SOON, |_| done(client)).await,
                "{name}: {}",
                text_of(client)
            );
        }
        assert_eq!(text_of(&a), text_of(&c));
        assert_eq!(text_of(&b), text_of(&c));
        if stack.relay_metrics.updates_merged.get() > 0 {
            break;
        }
    }
    let merged = stack.relay_metrics.updates_merged.get();
    assert!(merged > 0, "no run of updates was merged in 5 bursts");
    assert_eq!(a.status().own_updates_back, 0, "a got its own edits back");
    assert_eq!(b.status().own_updates_back, 0, "b got its own edits back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_upgrade() {
    let mut stack = Stack::start().await;
    let alice = stack.user("alice@refuse.dev", "Alice").await;
    let doc = stack.team_doc(&alice).await;
    let relay = stack.relay_url.clone();
    let status = |r: Result<CollabClient, ConnectError>| match r {
        Err(ConnectError::Http(s)) => s,
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    };
    assert_eq!(
        status(CollabClient::connect(&format!("{relay}/chat-{doc}?token=x")).await),
        400
    );
    assert_eq!(
        status(CollabClient::connect(&format!("{relay}/doc-{doc}")).await),
        401
    );
    assert_eq!(
        status(CollabClient::connect(&format!("{relay}/doc-{doc}?token=forged")).await),
        403
    );
    // One token used twice: the second use fails.
    let url = stack.url(&alice, &doc).await;
    let first = CollabClient::connect(&url).await.unwrap();
    assert!(first.wait_status(SOON, |s| s.synced).await.is_some());
    assert_eq!(status(CollabClient::connect(&url).await), 403);
    // A token for another room.
    let other = stack.team_doc(&alice).await;
    let t = stack
        .api
        .collab_token(&alice, tandem_protocol::ResourceType::Doc, &other)
        .await
        .unwrap();
    assert_eq!(
        status(CollabClient::connect(&format!("{relay}/doc-{doc}?token={}", t.token)).await),
        403
    );
    // Control down → 503.
    let url = stack.url(&alice, &doc).await;
    stack.stop_control().await;
    assert_eq!(status(CollabClient::connect(&url).await), 503);
}

/// A relay whose secret control refuses is misconfigured: its clients get
/// 503 (try later), not 403 (no access), and the token is not spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_the_wrong_secret_answers_503() {
    let stack = Stack::start_with(|rc| rc.relay_secret = Some("not-the-secret".into())).await;
    let alice = stack.user("alice@wrong-secret.dev", "Alice").await;
    let doc = stack.team_doc(&alice).await;
    let url = stack.url(&alice, &doc).await;
    match CollabClient::connect(&url).await {
        Err(ConnectError::Http(s)) => assert_eq!(s, 503),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected through a relay with the wrong secret"),
    }
    // Control never took the token: it is still good for its one use.
    let token = url.split("token=").nth(1).unwrap();
    let verified = reqwest::Client::new()
        .post(format!("{}/collaboration/verify", stack.control_url))
        .bearer_auth(token)
        .header(
            tandem_protocol::collab::RELAY_SECRET_HEADER,
            tandem_e2e::SECRET,
        )
        .json(&serde_json::json!({ "roomId": format!("doc-{doc}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_edits_do_not_apply() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@view.dev", "Owner").await;
    let viewer = stack.user("viewer@gmail.com", "Viewer").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &viewer, Role::Viewer).await;
    let o = stack.connect(&owner, &doc).await;
    let v = stack.connect(&viewer, &doc).await;
    type_text(&v, "VIEWER-EDIT");
    type_text(&o, "owner");
    assert!(
        v.wait_doc(SOON, |_| text_of(&v).contains("owner")).await,
        "viewer still receives"
    );
    // The owner never sees the viewer's edit, nor does anyone who joins later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(text_of(&o), "owner");
    let late = stack.connect(&owner, &doc).await;
    assert!(
        late.wait_doc(SOON, |_| text_of(&late) == "owner").await,
        "{}",
        text_of(&late)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_kicks_them_within_a_second() {
    // The sweep is an hour away: only the access feed can do this.
    let stack = Stack::start_with(|c| c.recheck_secs = 3600).await;
    let owner = stack.user("owner@kick.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    let o = stack.connect(&owner, &doc).await;
    let g = stack.connect(&guest, &doc).await;
    // Let the relay's feed poll settle on its cursor.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    stack
        .api
        .remove_member(&owner, "documents", &doc, &guest.user_id)
        .await
        .unwrap();
    let s = g
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("guest kicked");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "kick took {took:?}");
    // The y-websocket path: the notice as the y-protocols auth message, never a text frame.
    assert!(
        s.revoked.as_deref().is_some_and(|r| r.contains("revoked")),
        "permission_revoked notice first: {s:?}"
    );
    assert_eq!((s.auth_messages, s.text_frames), (1, 0), "{s:?}");
    assert_eq!(
        s.closed,
        Some(Some((
            close::POLICY_VIOLATION,
            close::REASON_AUTH_FORBIDDEN.into()
        )))
    );
    // The owner stays.
    type_text(&o, "still here");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(o.status().closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_alone_kicks_with_a_short_interval() {
    use diesel::{Connection, RunQueryDsl};
    let stack = Stack::start_with(|c| c.recheck_secs = 1).await;
    let owner = stack.user("owner@sweep.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    let g = stack.connect(&guest, &doc).await;
    // Revoke behind the feed's back: delete the grant in the database directly.
    let mut conn =
        diesel::sqlite::SqliteConnection::establish(&stack.db_path.to_string_lossy()).unwrap();
    diesel::sql_query(format!(
        "DELETE FROM members WHERE user_id = '{}'",
        guest.user_id
    ))
    .execute(&mut conn)
    .unwrap();
    let s = g
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("kicked by the sweep");
    assert!(s.revoked.is_some());
    assert_eq!(s.text_frames, 0);
    assert_eq!(
        s.closed,
        Some(Some((
            close::POLICY_VIOLATION,
            close::REASON_AUTH_FORBIDDEN.into()
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_control_down_nobody_is_kicked_and_editing_goes_on() {
    let mut stack = Stack::start_with(|c| c.recheck_secs = 1).await;
    let owner = stack.user("owner@down.dev", "Owner").await;
    let bob = stack.user("bob@down.dev", "Bob").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    let b = stack.connect(&bob, &doc).await;
    stack.stop_control().await;
    // Several sweeps fail while control is away.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        a.status().closed.is_none() && b.status().closed.is_none(),
        "fail open"
    );
    type_text(&a, "offline-edit");
    assert!(b.wait_doc(SOON, |_| text_of(&b) == "offline-edit").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_is_shared_and_removed_on_leave() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@aw.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    let b = stack.connect(&owner, &doc).await;
    a.set_awareness(r#"{"user":{"name":"A"}}"#);
    let a_id = a.doc().client_id().get();
    assert!(b
        .wait_status(SOON, |_| b
            .peers()
            .get(&a_id)
            .is_some_and(|s| s.contains("\"A\"")))
        .await
        .is_some());
    a.close();
    assert!(
        b.wait_status(SOON, |_| b.peers().get(&a_id).is_some_and(|s| s == "null"))
            .await
            .is_some(),
        "removal broadcast: {:?}",
        b.peers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partykit_url_form_works() {
    let stack = Stack::start().await;
    let owner = stack.user("owner@party.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let t = stack
        .api
        .collab_token(&owner, tandem_protocol::ResourceType::Doc, &doc)
        .await
        .unwrap();
    let url = format!(
        "{}/parties/main/{}?token={}",
        stack.relay_url, t.room_id, t.token
    );
    let p = CollabClient::connect(&url).await.unwrap();
    assert!(p.wait_status(SOON, |s| s.synced).await.is_some());
    let a = stack.connect(&owner, &doc).await;
    type_text(&p, "via partykit path");
    assert!(
        a.wait_doc(SOON, |_| text_of(&a) == "via partykit path")
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partykit_path_also_gets_the_revocation_as_a_text_frame() {
    let stack = Stack::start_with(|c| c.recheck_secs = 3600).await;
    let owner = stack.user("owner@party-kick.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    let t = stack
        .api
        .collab_token(&guest, tandem_protocol::ResourceType::Doc, &doc)
        .await
        .unwrap();
    let url = format!(
        "{}/parties/main/{}?token={}",
        stack.relay_url, t.room_id, t.token
    );
    let g = CollabClient::connect(&url).await.unwrap();
    assert!(g.wait_status(SOON, |s| s.synced).await.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack
        .api
        .remove_member(&owner, "documents", &doc, &guest.user_id)
        .await
        .unwrap();
    let s = g
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("guest kicked");
    assert_eq!((s.auth_messages, s.text_frames), (1, 1), "{s:?}");
    assert!(s.revoked.as_deref().is_some_and(|r| r.contains("revoked")));
    assert_eq!(
        s.closed,
        Some(Some((
            close::POLICY_VIOLATION,
            close::REASON_AUTH_FORBIDDEN.into()
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_close_with_clear_codes() {
    let stack = Stack::start_with(|c| {
        c.max_connections_per_room = 2;
        c.max_message_bytes = 64 * 1024;
    })
    .await;
    let owner = stack.user("owner@limits.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    let b = stack.connect(&owner, &doc).await;
    // Third connection: room full.
    let c = stack.try_connect(&owner, &doc).await.unwrap();
    let s = c.wait_status(SOON, |s| s.closed.is_some()).await.unwrap();
    assert_eq!(
        s.closed,
        Some(Some((
            close::TRY_AGAIN_LATER,
            close::REASON_ROOM_FULL.into()
        )))
    );
    // Oversized frame: 1009 for that client only.
    b.send_raw(vec![0u8; 100 * 1024]);
    let s = b.wait_status(SOON, |s| s.closed.is_some()).await.unwrap();
    assert_eq!(s.closed.unwrap().unwrap().0, close::MESSAGE_TOO_BIG);
    // Malformed y-websocket: 1002 for that client only.
    let d = stack.connect(&owner, &doc).await;
    d.send_raw(vec![0, 9, 9]);
    let s = d.wait_status(SOON, |s| s.closed.is_some()).await.unwrap();
    assert_eq!(
        s.closed,
        Some(Some((
            close::PROTOCOL_ERROR,
            close::REASON_BAD_MESSAGE.into()
        )))
    );
    // The room and the well-behaved client are fine.
    type_text(&a, "ok");
    let e = stack.connect(&owner, &doc).await;
    assert!(e.wait_doc(SOON, |_| text_of(&e) == "ok").await);
    assert!(a.status().closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_get_keepalives() {
    let stack = Stack::start_with(|c| c.keepalive_ms = 200).await;
    let owner = stack.user("owner@keep.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    let before = a.status().frames;
    let s = a.wait_status(SOON, |s| s.frames >= before + 3).await;
    assert!(s.is_some(), "no keepalives on an idle socket");
    assert!(a.status().closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sockets_with_1001() {
    let mut stack = Stack::start().await;
    let owner = stack.user("owner@bye.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let a = stack.connect(&owner, &doc).await;
    stack.stop_relay().await;
    let s = a.wait_status(SOON, |s| s.closed.is_some()).await.unwrap();
    assert_eq!(
        s.closed,
        Some(Some((close::GOING_AWAY, close::REASON_SHUTDOWN.into())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_downgrade_makes_a_connection_read_only() {
    let stack = Stack::start_with(|c| c.recheck_secs = 3600).await;
    let owner = stack.user("owner@downgrade.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    let o = stack.connect(&owner, &doc).await;
    let g = stack.connect(&guest, &doc).await;
    type_text(&g, "before;");
    assert!(o.wait_doc(SOON, |_| text_of(&o) == "before;").await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack
        .api
        .set_member_role(&owner, "documents", &doc, &guest.user_id, Role::Viewer)
        .await
        .unwrap();
    // The feed re-checks the guest at once; give it a moment, then edit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    type_text(&g, "after");
    type_text(&o, "owner");
    assert!(o.wait_doc(SOON, |_| text_of(&o).ends_with("owner")).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(text_of(&o), "before;owner", "a viewer's edit was applied");
    assert!(g.status().closed.is_none(), "a downgrade is not a kick");
}
