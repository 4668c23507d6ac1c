//! Resume tickets end to end: control and relay on port 0, Rust clients over
//! real WebSockets. A ticket rejoins without a token verify at control (the
//! verifies are counted on control's own `/metrics`); expired, tampered,
//! foreign and revoked tickets are closed with 4401 `TICKET_REFUSED`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_client::api::Session;
use tandem_client::collab::CollabClient;
use tandem_e2e::{text_of, type_text, Backend, Stack, SOON};
use tandem_protocol::collab::close;
use tandem_protocol::http::Role;

async fn verifies(stack: &Stack) -> u64 {
    stack.control_requests("/collaboration/verify").await
}

/// Connects with a fresh token and `?resume=1`; waits for sync and the first ticket.
async fn connect_resumable(stack: &Stack, user: &Session, doc: &str) -> (CollabClient, String) {
    let url = format!("{}&resume=1", stack.url(user, doc).await);
    let c = CollabClient::connect(&url).await.unwrap();
    let s = c
        .wait_status(SOON, |s| s.synced && s.ticket.is_some())
        .await
        .expect("synced with a ticket");
    (c, s.ticket.unwrap())
}

fn ticket_url(relay: &str, doc: &str, ticket: &str) -> String {
    format!("{relay}/doc-{doc}?ticket={ticket}&resume=1")
}

/// Waits for the close of a connection whose ticket was refused.
async fn assert_refused(url: &str, what: &str) {
    let c = CollabClient::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{what}: upgraded then closed, got {e}"));
    let s = c
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .unwrap_or_else(|| panic!("{what}: not closed"));
    assert_eq!(
        s.closed,
        Some(Some((
            close::TICKET_REFUSED,
            close::REASON_TICKET_REFUSED.into()
        ))),
        "{what}"
    );
    assert!(
        !s.synced && s.frames == 0,
        "{what}: nothing of the room: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_rejoins_after_a_relay_restart_without_a_verify() {
    let mut stack = Stack::start().await;
    let alice = stack.user("alice@ticket.dev", "Alice").await;
    let doc = stack.team_doc(&alice).await;
    let (a, ticket) = connect_resumable(&stack, &alice, &doc).await;
    type_text(&a, "before restart");
    // Without ?resume=1 no ticket is ever sent.
    let plain = stack.connect(&alice, &doc).await;
    assert!(
        plain
            .wait_doc(SOON, |_| text_of(&plain) == "before restart")
            .await
    );
    assert_eq!(
        (plain.status().tickets, plain.status().unknown_messages),
        (0, 0)
    );
    tokio::time::sleep(Duration::from_millis(700)).await; // saved (debounce 100 ms)
    drop((a, plain));
    // Another relay process (new port, same secret): tickets are node-independent.
    stack.restart_relay().await;
    let before = verifies(&stack).await;
    let checks_before = stack.control_requests("/collaboration/check-access").await;
    let b = CollabClient::connect(&ticket_url(&stack.relay_url, &doc, &ticket))
        .await
        .unwrap();
    let s = b
        .wait_status(SOON, |s| s.synced && s.ticket.is_some())
        .await
        .expect("rejoined with the ticket");
    assert!(s.closed.is_none());
    assert!(b.wait_doc(SOON, |_| text_of(&b) == "before restart").await);
    // A ticket join gets a ticket of its own, and edits go through (editor role).
    assert_eq!(s.tickets, 1);
    type_text(&b, "+after");
    let c = stack.connect(&alice, &doc).await;
    assert!(
        c.wait_doc(SOON, |_| text_of(&c) == "before restart+after")
            .await
    );
    // One verify for `c`, none for the ticket join; one access check for it.
    assert_eq!(verifies(&stack).await, before + 1);
    assert!(stack.control_requests("/collaboration/check-access").await > checks_before);
    assert_eq!(stack.relay_metrics.ticket_joins.get(), 1);
    // A ticket is not single-use within its life (documented): it can be presented again.
    let again = CollabClient::connect(&ticket_url(&stack.relay_url, &doc, &ticket))
        .await
        .unwrap();
    assert!(again.wait_status(SOON, |s| s.synced).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_and_foreign_tickets_are_refused() {
    let stack = Stack::start_with(|c| c.resume_ticket_secs = 1).await;
    let alice = stack.user("alice@refuseticket.dev", "Alice").await;
    let bob = stack.user("bob@refuseticket.dev", "Bob").await;
    let doc = stack.team_doc(&alice).await;
    let other = stack.team_doc(&alice).await;
    let relay = stack.relay_url.clone();
    let (_a, ticket) = connect_resumable(&stack, &alice, &doc).await;
    let before = verifies(&stack).await;
    // Another room.
    assert_refused(&ticket_url(&relay, &other, &ticket), "other room").await;
    // Tampered: the claims swapped for Bob's, the MAC kept.
    let (_b, bobs) = connect_resumable(&stack, &bob, &doc).await;
    let (a_signed, a_mac) = ticket.rsplit_once('.').unwrap();
    let (b_signed, _) = bobs.rsplit_once('.').unwrap();
    assert_ne!(a_signed, b_signed);
    let forged = format!("{b_signed}.{a_mac}");
    assert_refused(&ticket_url(&relay, &doc, &forged), "tampered").await;
    // Garbage and a different relay secret's ticket.
    assert_refused(&ticket_url(&relay, &doc, "rt1.e30.AAAA"), "garbage").await;
    let foreign = tandem_relay::tickets::Tickets::new("another-secret", 60).unwrap();
    let member = tandem_relay::hub::Member {
        user_id: alice.user_id.clone(),
        user_name: "Alice".into(),
        role: Role::Owner,
    };
    let room = tandem_protocol::RoomId::parse(&format!("doc-{doc}")).unwrap();
    let other_secret = foreign.issue(&member, &room, std::time::SystemTime::now());
    assert_refused(&ticket_url(&relay, &doc, &other_secret), "other secret").await;
    // Expired (1 s life; expiry is whole seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused(&ticket_url(&relay, &doc, &ticket), "expired").await;
    // Control was never asked to verify anything for these.
    assert_eq!(verifies(&stack).await, before + 1, "only Bob's token");
    assert_eq!(stack.relay_metrics.tickets_refused.get(), 5);
    // Asking for a ticket without presenting any credential is still a 401.
    let no_cred = CollabClient::connect(&format!("{relay}/doc-{doc}?resume=1")).await;
    assert!(matches!(
        no_cred,
        Err(tandem_client::collab::ConnectError::Http(401))
    ));
}

// On both databases: the access check behind a ticket join is control's.
tandem_e2e::both_backends!(a_revoked_users_ticket_is_refused_and_a_downgrade_applies);

async fn a_revoked_users_ticket_is_refused_and_a_downgrade_applies(backend: Backend) {
    let stack = Stack::start_on(backend, |c| c.recheck_secs = 3600).await;
    let owner = stack.user("owner@revticket.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let viewer = stack.user("viewer@gmail.com", "Viewer").await;
    let doc = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &guest, Role::Editor).await;
    stack.share(&owner, &doc, &viewer, Role::Editor).await;
    let o = stack.connect(&owner, &doc).await;
    let (g, guest_ticket) = connect_resumable(&stack, &guest, &doc).await;
    let (v, viewer_ticket) = connect_resumable(&stack, &viewer, &doc).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the feed settles
    stack
        .api
        .remove_member(&owner, "documents", &doc, &guest.user_id)
        .await
        .unwrap();
    assert!(g.wait_status(SOON, |s| s.closed.is_some()).await.is_some());
    // The ticket issued before the revocation does not let the guest back.
    assert_refused(
        &ticket_url(&stack.relay_url, &doc, &guest_ticket),
        "revoked",
    )
    .await;
    // A ticket issued while an editor rejoins with the role control has now.
    stack
        .api
        .set_member_role(&owner, "documents", &doc, &viewer.user_id, Role::Viewer)
        .await
        .unwrap();
    drop(v);
    let v2 = CollabClient::connect(&ticket_url(&stack.relay_url, &doc, &viewer_ticket))
        .await
        .unwrap();
    assert!(v2.wait_status(SOON, |s| s.synced).await.is_some());
    type_text(&v2, "VIEWER-EDIT");
    type_text(&o, "owner");
    assert!(v2.wait_doc(SOON, |_| text_of(&v2).contains("owner")).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(text_of(&o), "owner", "the viewer's edit was dropped");
}

// On both databases: a storm of ticket joins shares access checks.
tandem_e2e::both_backends!(a_ticket_storm_shares_access_checks_and_answers_each);

/// After a relay restart, every client rejoins with its ticket at once. The
/// relay gathers their access checks into `POST
/// /collaboration/check-access-batch` calls (fewer calls than joins), and each
/// join still gets its own answer: the owners' and the viewer's with their
/// roles, the revoked guest's refused in the middle of a batch.
async fn a_ticket_storm_shares_access_checks_and_answers_each(backend: Backend) {
    // A wide window, so that a slow (debug, loaded) machine still gathers the storm.
    let mut stack = Stack::start_on(backend, |c| {
        c.recheck_secs = 3600;
        c.verify_batch_window_ms = 50;
    })
    .await;
    let owner = stack.user("owner@storm.dev", "Owner").await;
    let guest = stack.user("guest@gmail.com", "Guest").await;
    let viewer = stack.user("viewer@gmail.com", "Viewer").await;
    let mut docs = Vec::new();
    for _ in 0..3 {
        docs.push(stack.team_doc(&owner).await);
    }
    stack.share(&owner, &docs[0], &guest, Role::Editor).await;
    stack.share(&owner, &docs[0], &viewer, Role::Viewer).await;
    let mut joins: Vec<(String, String)> = Vec::new(); // (doc, ticket)
    let mut clients = Vec::new();
    for i in 0..15 {
        let doc = &docs[i % 3];
        let (c, t) = connect_resumable(&stack, &owner, doc).await;
        clients.push(c);
        joins.push((doc.clone(), t));
    }
    let (g, guest_ticket) = connect_resumable(&stack, &guest, &docs[0]).await;
    let (v, viewer_ticket) = connect_resumable(&stack, &viewer, &docs[0]).await;
    type_text(&clients[0], "kept");
    tokio::time::sleep(Duration::from_millis(700)).await; // saved; the feed settles
    stack
        .api
        .remove_member(&owner, "documents", &docs[0], &guest.user_id)
        .await
        .unwrap();
    drop((clients, g, v));
    stack.restart_relay().await;

    let singles = stack.control_requests("/collaboration/check-access").await;
    let batches = stack
        .control_requests("/collaboration/check-access-batch")
        .await;
    let verified = verifies(&stack).await;
    let mut urls: Vec<String> = joins
        .iter()
        .map(|(doc, t)| ticket_url(&stack.relay_url, doc, t))
        .collect();
    urls.insert(7, ticket_url(&stack.relay_url, &docs[0], &viewer_ticket));
    urls.insert(3, ticket_url(&stack.relay_url, &docs[0], &guest_ticket));
    let connects = urls.iter().map(|u| CollabClient::connect(u));
    let results = futures_util::future::join_all(connects).await;
    let mut clients: Vec<CollabClient> =
        results.into_iter().map(|r| r.expect("upgraded")).collect();
    let guest = clients.remove(3);
    let s = guest
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the revoked guest is closed");
    assert_eq!(
        s.closed.map(|c| c.map(|(code, _)| code)),
        Some(Some(close::TICKET_REFUSED))
    );
    for c in &clients {
        assert!(
            c.wait_status(SOON, |s| s.synced).await.is_some(),
            "a ticket join did not sync"
        );
    }
    let singles = stack.control_requests("/collaboration/check-access").await - singles;
    let batches = stack
        .control_requests("/collaboration/check-access-batch")
        .await
        - batches;
    eprintln!(
        "{} ticket joins: {batches} check-access-batch and {singles} check-access calls",
        urls.len()
    );
    assert!(batches >= 1, "no batch was sent");
    assert!(
        singles + batches < urls.len() as u64,
        "{} joins made {} calls",
        urls.len(),
        singles + batches
    );
    assert_eq!(
        verifies(&stack).await,
        verified,
        "a ticket join verified a token"
    );
    assert_eq!(
        stack.relay_metrics.ticket_joins.get(),
        urls.len() as u64 - 1
    );
    // Each join got its own role: the viewer's edit is dropped, an owner's
    // reaches the room's others.
    let viewer = clients.remove(7);
    type_text(&viewer, "VIEWER");
    type_text(&clients[0], "+owner");
    assert!(
        viewer
            .wait_doc(SOON, |_| text_of(&viewer).contains("+owner"))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(text_of(&clients[3]), "kept+owner");
}
