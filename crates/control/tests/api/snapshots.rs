//! Snapshot storage for the relay: load, merge-on-save (concurrent savers
//! never lose an edit), bounds, and the metrics that count them.

use reqwest::StatusCode;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

const SECRET: &str = "test-relay-secret";

both_backends!(
    save_load_and_merge,
    concurrent_saves_keep_every_edit,
    snapshot_refusals,
    hostile_updates_are_refused_and_control_lives,
);

fn edit(doc: &Doc, s: &str) -> Vec<u8> {
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let before = txn.state_vector();
    let len = text.len(&txn);
    text.insert(&mut txn, len, s);
    txn.encode_state_as_update_v1(&before)
}

fn text_of(state: &[u8]) -> String {
    let doc = Doc::new();
    if !state.is_empty() {
        doc.transact_mut()
            .apply_update(Update::decode_v1(state).unwrap())
            .unwrap();
    }
    let t = doc.get_or_insert_text("t");
    let s = t.get_string(&doc.transact());
    s
}

async fn doc_room(app: &TestApp) -> (crate::helpers::TestUser, String) {
    let owner = app.signup("olga@snap.dev", "Olga").await;
    let ws = app.workspace(&owner, "team").await;
    let p = app.create_project(&owner, &ws, "P").await;
    let d = app.create_resource(&owner, &p, "documents", "D").await;
    (owner, format!("doc-{d}"))
}

async fn save(app: &TestApp, room: &str, body: Vec<u8>, secret: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/collaboration/rooms/{room}/snapshot", app.base))
        .bearer_auth(secret)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn load(app: &TestApp, room: &str) -> Vec<u8> {
    let res = app
        .client
        .get(format!("{}/collaboration/rooms/{room}/snapshot", app.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.bytes().await.unwrap().to_vec()
}

async fn save_load_and_merge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, room) = doc_room(&app).await;
    assert!(load(&app, &room).await.is_empty(), "nothing stored yet");
    let a = Doc::new();
    let res = save(&app, &room, edit(&a, "hello"), SECRET).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A diff that builds on it, then the same diff again (a retry), then an older one.
    let second = edit(&a, " world");
    assert_eq!(
        save(&app, &room, second.clone(), SECRET).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        save(&app, &room, second, SECRET).await.status(),
        StatusCode::OK
    );
    let stored = load(&app, &room).await;
    assert_eq!(text_of(&stored), "hello world");
    // Stored state is one compact update: the size of the whole document.
    let full = a
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert_eq!(stored.len(), full.len());
    // Metrics count the saves.
    let m = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("tandem_control_snapshot_saves_total 3"), "{m}");
    assert!(
        m.contains("route=\"/collaboration/rooms/{roomId}/snapshot\""),
        "{m}"
    );
}

async fn concurrent_saves_keep_every_edit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.db_pool_size = 12).await;
    let (_, room) = doc_room(&app).await;
    // Twenty writers ("relay nodes"), each with its own edits, saving at once.
    let docs: Vec<Doc> = (0..20).map(|_| Doc::new()).collect();
    let saves = docs
        .iter()
        .enumerate()
        .map(|(i, d)| save(&app, &room, edit(d, &format!("<{i}>")), SECRET));
    for res in futures_util::future::join_all(saves).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    let text = text_of(&load(&app, &room).await);
    for i in 0..20 {
        assert!(text.contains(&format!("<{i}>")), "edit {i} lost: {text}");
    }
}

async fn snapshot_refusals(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_save_bytes = 4096;
        c.max_snapshot_bytes = 8192;
    })
    .await;
    let (owner, room) = doc_room(&app).await;
    let a = Doc::new();
    assert_eq!(
        save(&app, &room, edit(&a, "x"), "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        save(&app, &room, b"\xff\xfe\x01".to_vec(), SECRET)
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        save(&app, &room, Vec::new(), SECRET).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        save(&app, "chat-1", edit(&a, "x"), SECRET).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        save(&app, "doc-nosuchdoc", edit(&a, "x"), SECRET)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // One request over the limit.
    let big = edit(&a, &"y".repeat(5000));
    let res = save(&app, &room, big, SECRET).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    // Requests under the limit that would grow the document past its limit.
    let b = Doc::new();
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        last = save(&app, &room, edit(&b, &"z".repeat(3000)), SECRET)
            .await
            .status();
        if last != StatusCode::OK {
            break;
        }
    }
    assert_eq!(last, StatusCode::PAYLOAD_TOO_LARGE);
    let kept = load(&app, &room).await;
    assert!(kept.len() <= 8192, "stored state stays within the limit");
    // Deleting the document deletes its snapshot; the room is gone.
    let id = room.strip_prefix("doc-").unwrap();
    app.delete(&format!("/documents/{id}"), &owner.token).await;
    let res = app
        .client
        .get(format!("{}/collaboration/rooms/{room}/snapshot", app.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A v1 update of one item in root `m` holding one `Any`: `[[[…null…]]]`,
/// `depth` levels deep in two bytes per level.
fn nesting_bomb(depth: usize) -> Vec<u8> {
    let mut bomb = vec![1, 1, 7, 0, 8, 1, 1, b'm', 1];
    for _ in 0..depth {
        bomb.extend_from_slice(&[117, 1]);
    }
    bomb.extend_from_slice(&[126, 0]);
    bomb
}

/// yrs recurses over nested values without a limit: a body of nested
/// arrays would overflow the merging thread's stack and abort control.
/// It is refused (422) before yrs sees it; malformed prefixes of a real
/// update are refused, never a 500; moderate nesting still saves; and
/// control keeps serving.
async fn hostile_updates_are_refused_and_control_lives(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, room) = doc_room(&app).await;
    for depth in [100_000, 4_000_000] {
        let res = save(&app, &room, nesting_bomb(depth), SECRET).await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "depth {depth}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("nest"),
            "{body}"
        );
    }
    // Nesting a real document may have is kept.
    let res = save(&app, &room, nesting_bomb(200), SECRET).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Every prefix of a real update: refused or saved, never a 500.
    let a = Doc::new();
    edit(&a, "hello");
    let full = edit(&a, " world, with more text");
    for cut in 1..full.len() {
        let status = save(&app, &room, full[..cut].to_vec(), SECRET)
            .await
            .status();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
            "prefix {cut}: {status}"
        );
    }
    // Control is alive and the document still takes real edits.
    let b = Doc::new();
    assert_eq!(
        save(&app, &room, edit(&b, "still"), SECRET).await.status(),
        StatusCode::OK
    );
    assert!(text_of(&load(&app, &room).await).contains("still"));
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
