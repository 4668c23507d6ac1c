//! Two control replicas on one database, started at the same moment and
//! answering requests in turn (as behind a load balancer): nothing that
//! matters lives in one replica's memory.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    sessions_and_tokens_work_across_replicas,
    first_sign_ins_racing_on_two_replicas_make_one_org,
    the_feed_of_one_replica_sees_changes_made_on_the_other,
    snapshot_saves_through_both_replicas_merge,
    a_revocation_on_one_replica_is_not_answered_from_the_others_memory,
);

const SECRET: &str = "test-relay-secret";

async fn verify(app: &TestApp, token: &str, room: &str) -> StatusCode {
    app.verify_token(Some(token), room, Some(SECRET))
        .await
        .status
}

async fn sessions_and_tokens_work_across_replicas(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@replicas.dev", "Olga").await;
    // A session made on one replica is good on the other.
    let team = b.workspace(&owner, "team").await;
    let p = b.create_project(&owner, &team, "P").await;
    let doc = a.create_resource(&owner, &p, "documents", "Doc").await;
    // A token issued by one replica is consumed once, by whichever answers.
    let t = a
        .post(
            "/collaboration/token",
            &owner.token,
            json!({"resourceType": "doc", "resourceId": doc}),
        )
        .await;
    let (token, room) = (
        t.body["token"].as_str().unwrap().to_string(),
        t.body["roomId"].as_str().unwrap().to_string(),
    );
    assert_eq!(verify(&b, &token, &room).await, StatusCode::OK);
    assert_eq!(verify(&a, &token, &room).await, StatusCode::FORBIDDEN);
    // Concurrent verifies of one token on both replicas: exactly one wins.
    for _ in 0..3 {
        let t = b
            .post(
                "/collaboration/token",
                &owner.token,
                json!({"resourceType": "doc", "resourceId": doc}),
            )
            .await;
        let token = t.body["token"].as_str().unwrap().to_string();
        let calls = (0..20).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            verify(app, &token, &room)
        });
        let answers = futures_util::future::join_all(calls).await;
        let ok = answers.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{answers:?}");
    }
    // Logging out on one replica ends the session on both.
    let out = b
        .call(Method::POST, "/auth/logout", Some(&owner.token), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        a.get("/auth/session", &owner.token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn first_sign_ins_racing_on_two_replicas_make_one_org(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let signups = (0..6).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let email = format!("user{i}@race.dev");
        async move { app.signup(&email, "Racer").await }
    });
    let users = futures_util::future::join_all(signups).await;
    let mut orgs = Vec::new();
    let mut owners = 0;
    for (i, u) in users.iter().enumerate() {
        let app = if i % 2 == 0 { &b } else { &a };
        let s: Value = app.session(u).await;
        orgs.push(s["org"]["id"].as_str().unwrap().to_string());
        if s["user"]["orgRole"] == "owner" {
            owners += 1;
        }
        let teams = s["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["type"] == "team")
            .count();
        assert_eq!(teams, 1, "{s}");
    }
    orgs.dedup();
    assert_eq!(orgs.len(), 1, "one org for the domain");
    assert_eq!(owners, 1, "exactly one first user");
}

async fn the_feed_of_one_replica_sees_changes_made_on_the_other(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@feed.dev", "Olga").await;
    let guest = a.signup("guest@elsewhere.dev", "Guest").await;
    let team = a.workspace(&owner, "team").await;
    let p = a.create_project(&owner, &team, "P").await;
    let doc = a.create_resource(&owner, &p, "documents", "Doc").await;
    let members = format!("/documents/{doc}/members");
    a.grant(&members, &owner, &guest.id, "editor").await;
    let cursor = b.get("/collaboration/events", SECRET).await.body["last"]
        .as_i64()
        .unwrap();
    // A poll waiting on replica b is answered when replica a commits a change.
    let poll = {
        let b = &b;
        async move {
            b.get(
                &format!("/collaboration/events?after={cursor}&timeoutMs=10000"),
                SECRET,
            )
            .await
        }
    };
    let remove = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        a.delete(&format!("{members}/{}", guest.id), &owner.token)
            .await
    };
    let started = std::time::Instant::now();
    let (polled, removed) = tokio::join!(poll, remove);
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the poll waited for its timeout"
    );
    assert_eq!(polled.body["events"][0]["userId"], guest.id.as_str());
    // The cursor means the same on both replicas.
    let last = polled.body["last"].as_i64().unwrap();
    let again = a
        .get(
            &format!("/collaboration/events?after={last}&timeoutMs=50"),
            SECRET,
        )
        .await;
    assert_eq!(again.body, json!({"events": [], "last": last}));
}

async fn snapshot_saves_through_both_replicas_merge(backend: Backend) {
    use yrs::{GetString, ReadTxn, Text, Transact};
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@merge.dev", "Olga").await;
    let team = a.workspace(&owner, "team").await;
    let p = a.create_project(&owner, &team, "P").await;
    let doc = a.create_resource(&owner, &p, "documents", "Doc").await;
    let path = format!("/collaboration/rooms/doc-{doc}/snapshot");
    // Two writers' edits, saved concurrently through different replicas.
    let saves = (0..10).map(|i| {
        let d = yrs::Doc::new();
        let t = d.get_or_insert_text("t");
        t.insert(&mut d.transact_mut(), 0, &format!("<{i}>"));
        let update = d
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        let app = if i % 2 == 0 { &a } else { &b };
        let url = format!("{}{path}", app.base);
        async move {
            app.client
                .post(url)
                .bearer_auth(SECRET)
                .body(update)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures_util::future::join_all(saves).await {
        assert!(status.is_success(), "{status}");
    }
    let stored = b
        .client
        .get(format!("{}{path}", b.base))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let d = yrs::Doc::new();
    d.transact_mut()
        .apply_update(yrs::updates::decoder::Decode::decode_v1(&stored).unwrap())
        .unwrap();
    let text = d.get_or_insert_text("t").get_string(&d.transact());
    for i in 0..10 {
        assert!(text.contains(&format!("<{i}>")), "{text}");
    }
}

/// check-access remembers grants for a moment; a revocation committed by the
/// other replica must still be seen at once (the feed moved).
async fn a_revocation_on_one_replica_is_not_answered_from_the_others_memory(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@cache.dev", "Olga").await;
    let guest = a.signup("guest@elsewhere-cache.dev", "Guest").await;
    let team = a.workspace(&owner, "team").await;
    let p = a.create_project(&owner, &team, "P").await;
    let doc = a.create_resource(&owner, &p, "documents", "Doc").await;
    let members = format!("/documents/{doc}/members");
    a.grant(&members, &owner, &guest.id, "editor").await;
    let check = format!(
        "/collaboration/check-access?roomId=doc-{doc}&userId={}",
        guest.id
    );
    for _ in 0..3 {
        let yes = b.get(&check, SECRET).await;
        assert_eq!(yes.body["hasAccess"], true, "{:?}", yes.body);
        assert_eq!(yes.body["role"], "editor");
    }
    let removed = a
        .delete(&format!("{members}/{}", guest.id), &owner.token)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let no = b.get(&check, SECRET).await;
    assert_eq!(no.body["hasAccess"], false, "{:?}", no.body);
    // A grant again is seen at once too (denials are never remembered).
    a.grant(&members, &owner, &guest.id, "viewer").await;
    let again = b.get(&check, SECRET).await;
    assert_eq!(again.body["role"], "viewer", "{:?}", again.body);
}
