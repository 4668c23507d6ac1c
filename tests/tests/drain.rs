//! Rolling restarts: `POST /admin/drain` on a relay node saves every room to
//! control, closes its clients with 1012 and refuses new connections, while
//! another node keeps serving the same rooms; `?exit=true` stops the node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_client::collab::{CollabClient, ConnectError};
use tandem_e2e::{
    postgres_available, stored_text, text_of, type_text, Backend, Stack, SECRET, SOON,
};
use tandem_protocol::collab::close;

fn http(ws_url: &str) -> String {
    ws_url.replacen("ws://", "http://", 1)
}

async fn drain(relay: &str, secret: Option<&str>, exit: bool) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!(
        "{}/admin/drain{}",
        http(relay),
        if exit { "?exit=true" } else { "" }
    ));
    if let Some(s) = secret {
        req = req.bearer_auth(s);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn drains_a_node(backend: Backend) {
    // Nothing is saved before the drain but by the drain itself.
    let stack = Stack::start_on(backend, |c| {
        c.save_debounce_ms = 600_000;
        c.save_max_delay_ms = 600_000;
    })
    .await;
    let other = stack.extra_relay().await;
    let owner = stack.user("owner@drain.dev", "Owner").await;
    let doc = stack.team_doc(&owner).await;
    let room = format!("doc-{doc}");

    let writer = stack.connect(&owner, &doc).await;
    let watcher = stack.connect(&owner, &doc).await;
    type_text(&writer, "typed before the drain");
    assert!(
        watcher
            .wait_doc(SOON, |_| text_of(&watcher) == "typed before the drain")
            .await
    );

    // Only with the relay secret.
    assert_eq!(drain(&stack.relay_url, None, false).await.0, 401);
    assert_eq!(drain(&stack.relay_url, Some("wrong"), false).await.0, 401);
    assert_eq!(
        stored_text(&stack.stored(&room).await),
        "",
        "saved before the drain"
    );

    let relay = stack.relay_url.clone();
    let drained = tokio::spawn(async move { drain(&relay, Some(SECRET), false).await });
    let status = writer
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .expect("the client was closed");
    assert_eq!(
        status.closed,
        Some(Some((
            close::SERVICE_RESTART,
            close::REASON_DRAINING.to_string()
        )))
    );
    // The edit was in control when the client saw 1012.
    assert_eq!(
        stored_text(&stack.stored(&room).await),
        "typed before the drain"
    );
    let (code, body) = drained.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["rooms"], 1);
    assert_eq!(body["complete"], true);
    assert!(watcher
        .wait_status(SOON, |s| s.closed.is_some())
        .await
        .is_some());

    // New connections are refused; readiness says so.
    match stack.try_connect(&owner, &doc).await {
        Err(ConnectError::Http(503)) => {}
        other => panic!("expected 503, got {:?}", other.map(|_| "a connection")),
    }
    let ready = reqwest::get(format!("{}/readyz", http(&stack.relay_url)))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    // The other node serves the room, from what was saved.
    let moved: CollabClient = stack
        .connect_on(&other.url, &owner, &doc, yrs::Doc::new())
        .await;
    assert_eq!(text_of(&moved), "typed before the drain");
    type_text(&moved, "!");
    let again = stack
        .connect_on(&other.url, &owner, &doc, yrs::Doc::new())
        .await;
    assert!(
        again
            .wait_doc(SOON, |_| text_of(&again) == "typed before the drain!")
            .await
    );

    // `?exit=true`: the node stops once drained.
    let leaving = stack.extra_relay().await;
    let c = stack
        .connect_on(&leaving.url, &owner, &doc, yrs::Doc::new())
        .await;
    let (code, body) = drain(&leaving.url, Some(SECRET), true).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["exiting"], true);
    assert!(c.wait_status(SOON, |s| s.closed.is_some()).await.is_some());
    let stopped = tokio::time::timeout(SOON, leaving.done).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the drained node did not stop"
    );
    other.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_a_node_sqlite() {
    drains_a_node(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_a_node_postgres() {
    if postgres_available() {
        drains_a_node(Backend::Postgres).await;
    }
}
