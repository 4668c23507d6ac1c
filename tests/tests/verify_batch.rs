//! A burst of connects shares calls to control's verify (the relay batches
//! concurrent connects' tokens into `POST /collaboration/verify-batch`), and
//! every connect is still authenticated by its own token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_client::collab::{CollabClient, ConnectError};
use tandem_e2e::{both_backends, text_of, type_text, Backend, Stack, SOON};
use tandem_protocol::http::Role;
use tandem_protocol::ResourceType;

both_backends!(a_connect_burst_shares_verify_calls_and_authenticates_each);

/// Calls control answered on `/collaboration/verify` and on
/// `/collaboration/verify-batch`, from its `/metrics`.
async fn verify_calls(stack: &Stack) -> (u64, u64) {
    (
        stack.control_requests("/collaboration/verify").await,
        stack.control_requests("/collaboration/verify-batch").await,
    )
}

async fn a_connect_burst_shares_verify_calls_and_authenticates_each(backend: Backend) {
    // A wide window, so that a slow (debug, loaded) machine still gathers the burst.
    let stack = Stack::start_on(backend, |c| c.verify_batch_window_ms = 50).await;
    let owner = stack.user("owner@burst.dev", "Owner").await;
    let viewer = stack.user("viewer@gmail.com", "Viewer").await;
    let doc = stack.team_doc(&owner).await;
    let other = stack.team_doc(&owner).await;
    stack.share(&owner, &doc, &viewer, Role::Viewer).await;

    // 24 editors' connects over two rooms, a viewer's, and two that must fail:
    // a well-formed token control never issued, and a token of `other` used
    // on `doc`'s room.
    let mut urls = Vec::new();
    for i in 0..24 {
        let room = if i % 2 == 0 { &doc } else { &other };
        urls.push(stack.url(&owner, room).await);
    }
    urls.push(stack.url(&viewer, &doc).await);
    urls.push(format!(
        "{}/doc-{doc}?token={}",
        stack.relay_url,
        "A".repeat(43)
    ));
    let wrong = stack
        .api
        .collab_token(&owner, ResourceType::Doc, &other)
        .await
        .unwrap();
    urls.push(format!(
        "{}/doc-{doc}?token={}",
        stack.relay_url, wrong.token
    ));

    let (single_before, batch_before) = verify_calls(&stack).await;
    let connects = urls.iter().map(|u| CollabClient::connect(u));
    let mut results = futures_util::future::join_all(connects).await;
    let (single_after, batch_after) = verify_calls(&stack).await;
    let calls = (single_after - single_before) + (batch_after - batch_before);
    eprintln!(
        "{} connects, {} calls to control ({} verify-batch)",
        urls.len(),
        calls,
        batch_after - batch_before
    );
    assert!(
        (1..urls.len() as u64).contains(&calls),
        "{} connects made {calls} verify calls",
        urls.len()
    );
    assert!(batch_after > batch_before, "no batch was sent");

    let misdirected = results.pop().unwrap();
    let unknown = results.pop().unwrap();
    for refused in [unknown, misdirected] {
        match refused {
            Err(ConnectError::Http(403)) => {}
            Err(e) => panic!("expected 403, got {e}"),
            Ok(_) => panic!("a connect with a bad token was accepted"),
        }
    }
    let v = results.pop().unwrap().expect("the viewer connects");
    let editors: Vec<CollabClient> = results
        .into_iter()
        .map(|r| r.expect("an editor connects"))
        .collect();
    for c in editors.iter().chain([&v]) {
        assert!(
            c.wait_status(SOON, |s| s.synced).await.is_some(),
            "not synced"
        );
    }
    // Each connection got its own token's role: the viewer's edit is not
    // applied, an editor's reaches everyone in the room (and only that room).
    type_text(&v, "VIEWER");
    type_text(&editors[0], "editor");
    for c in editors.iter().step_by(2).chain([&v]) {
        assert!(
            c.wait_doc(SOON, |_| text_of(c).contains("editor")).await,
            "an edit did not arrive"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        text_of(&editors[2]),
        "editor",
        "a viewer's edit was applied"
    );
    assert_eq!(text_of(&editors[1]), "", "an edit crossed rooms");
}
