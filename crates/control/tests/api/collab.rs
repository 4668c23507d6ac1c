//! Collaboration tokens, `/collaboration/verify`, check-access and the
//! access-change feed.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestUser};

both_backends!(
    token_then_verify_once,
    concurrent_verifies_of_one_token_exactly_one_wins,
    concurrent_verifies_share_rounds_each_with_its_own_answer,
    verify_refusals,
    verify_flood_without_the_relay_secret_consumes_nothing,
    check_access_single_and_batched,
    access_changes_reach_the_feed,
);

const SECRET: &str = "test-relay-secret";

async fn verify(app: &TestApp, token: Option<&str>, room: &str) -> crate::helpers::Answer {
    app.verify_token(token, room, Some(SECRET)).await
}

/// A team member's document, plus the owner and the doc id.
async fn setup(app: &TestApp) -> (TestUser, TestUser, String) {
    let owner = app.signup("olga@collab.dev", "Olga").await;
    let member = app.signup("max@collab.dev", "Max").await;
    let team = app.workspace(&owner, "team").await;
    let p = app.create_project(&owner, &team, "P").await;
    let doc = app.create_resource(&owner, &p, "documents", "Doc").await;
    (owner, member, doc)
}

async fn token_for(app: &TestApp, user: &TestUser, kind: &str, id: &str) -> (String, String) {
    let a = app
        .post(
            "/collaboration/token",
            &user.token,
            json!({"resourceType": kind, "resourceId": id}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    (
        a.body["token"].as_str().unwrap().to_string(),
        a.body["roomId"].as_str().unwrap().to_string(),
    )
}

async fn token_then_verify_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, member, doc) = setup(&app).await;
    let (token, room) = token_for(&app, &member, "doc", &doc).await;
    assert_eq!(room, format!("doc-{doc}"));
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    let ok = verify(&app, Some(&token), &room).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["userId"], member.id.as_str());
    assert_eq!(ok.body["userName"], "Max");
    assert_eq!(ok.body["role"], "editor");
    let again = verify(&app, Some(&token), &room).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "a token works once");
}

async fn concurrent_verifies_of_one_token_exactly_one_wins(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.db_pool_size = 16).await;
    let (_, member, doc) = setup(&app).await;
    for _round in 0..2 {
        let (token, room) = token_for(&app, &member, "doc", &doc).await;
        let calls = (0..60).map(|_| verify(&app, Some(&token), &room));
        let answers = futures_util::future::join_all(calls).await;
        let ok = answers
            .iter()
            .filter(|a| a.status == StatusCode::OK)
            .count();
        let refused = answers
            .iter()
            .filter(|a| a.status == StatusCode::FORBIDDEN)
            .count();
        assert_eq!(
            (ok, refused),
            (1, 59),
            "{:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
    }
}

/// Single verifies arriving together share database rounds (fewer rounds
/// than calls), and each call still gets the answer of its own token: its
/// user, its role, or a refusal (used, wrong room) that does not spill over
/// to the calls it shared a round with.
async fn concurrent_verifies_share_rounds_each_with_its_own_answer(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.db_pool_size = 16).await;
    let (owner, member, doc) = setup(&app).await;
    let room = format!("doc-{doc}");
    let used = token_for(&app, &member, "doc", &doc).await.0;
    assert_eq!(
        verify(&app, Some(&used), &room).await.status,
        StatusCode::OK
    );
    // (token, room it is sent for, expected user or None for a refusal)
    let mut calls: Vec<(String, String, Option<String>)> = Vec::new();
    for i in 0..60 {
        let user = if i % 2 == 0 { &owner } else { &member };
        let (token, _) = token_for(&app, user, "doc", &doc).await;
        match i % 10 {
            3 => calls.push((used.clone(), room.clone(), None)),
            7 => calls.push((token, format!("diagram-{doc}"), None)),
            _ => calls.push((token, room.clone(), Some(user.id.clone()))),
        }
    }
    let rounds_before = crate::files::metric(&app, "verify_rounds").await;
    let answers = futures_util::future::join_all(
        calls
            .iter()
            .map(|(token, room, _)| verify(&app, Some(token), room)),
    )
    .await;
    let rounds = crate::files::metric(&app, "verify_rounds").await - rounds_before;
    for ((_, _, expected), answer) in calls.iter().zip(&answers) {
        match expected {
            Some(user) => {
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                assert_eq!(answer.body["userId"], user.as_str());
                let role = if *user == owner.id { "owner" } else { "editor" };
                assert_eq!(answer.body["role"], role);
            }
            None => assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body),
        }
    }
    assert!(
        (1..calls.len() as u64).contains(&rounds),
        "{} calls took {rounds} database rounds",
        calls.len()
    );
}

async fn verify_refusals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, doc) = setup(&app).await;
    let outsider = app.signup("out@gmail.com", "Out").await;
    let room = format!("doc-{doc}");

    // Outsiders cannot get a token (404: they cannot see the document).
    let a = app
        .post(
            "/collaboration/token",
            &outsider.token,
            json!({"resourceType": "doc", "resourceId": doc}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Wrong type for the id, unknown type, unknown id.
    let a = app
        .post(
            "/collaboration/token",
            &owner.token,
            json!({"resourceType": "diagram", "resourceId": doc}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = app
        .post(
            "/collaboration/token",
            &owner.token,
            json!({"resourceType": "chat", "resourceId": doc}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Verify: missing token 401, unknown 403, malformed room 400, wrong room 403.
    assert_eq!(
        verify(&app, None, &room).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        verify(&app, Some("nope"), &room).await.status,
        StatusCode::FORBIDDEN
    );
    let (t, _) = token_for(&app, &member, "doc", &doc).await;
    assert_eq!(
        verify(&app, Some(&t), "chat-123").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        verify(&app, Some(&t), "doc-other").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        verify(&app, Some(&t), &room).await.status,
        StatusCode::FORBIDDEN,
        "the wrong-room try used it up"
    );
    // Access lost between token and verify.
    let p = app
        .get(&format!("/documents/{doc}"), &owner.token)
        .await
        .body["projectId"]
        .as_str()
        .unwrap()
        .to_string();
    let guest = app.signup("guest@elsewhere.dev", "Guest").await;
    app.post(
        &format!("/projects/{p}/members"),
        &owner.token,
        json!({"userId": guest.id, "role": "viewer"}),
    )
    .await;
    let (t, _) = token_for(&app, &guest, "doc", &doc).await;
    app.delete(&format!("/projects/{p}/members/{}", guest.id), &owner.token)
        .await;
    assert_eq!(
        verify(&app, Some(&t), &room).await.status,
        StatusCode::FORBIDDEN
    );
    // Viewer role comes through.
    app.post(
        &format!("/projects/{p}/members"),
        &owner.token,
        json!({"userId": guest.id, "role": "viewer"}),
    )
    .await;
    let (t, _) = token_for(&app, &guest, "doc", &doc).await;
    assert_eq!(verify(&app, Some(&t), &room).await.body["role"], "viewer");
}

/// Only a relay may consume tokens: a flood of verifies carrying a valid
/// token but no (or a wrong) relay secret is refused with 401 and leaves the
/// token usable.
async fn verify_flood_without_the_relay_secret_consumes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, member, doc) = setup(&app).await;
    let (token, room) = token_for(&app, &member, "doc", &doc).await;
    let secrets = [None, Some(""), Some("wrong"), Some("test-relay-secret-")];
    let calls = (0..40).map(|i| app.verify_token(Some(&token), &room, secrets[i % secrets.len()]));
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.code(), "unauthorized");
    }
    // The session token of the user is no relay secret either.
    let a = app
        .verify_token(Some(&token), &room, Some(&member.token))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // The token was not consumed: the relay still gets it, once.
    let ok = verify(&app, Some(&token), &room).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["userId"], member.id.as_str());
    assert_eq!(
        verify(&app, Some(&token), &room).await.status,
        StatusCode::FORBIDDEN
    );
}

/// Expired tokens are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    use diesel::{Connection, RunQueryDsl};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, member, doc) = setup(&app).await;
    let (t, room) = token_for(&app, &member, "doc", &doc).await;
    // Age the token in the database instead of waiting five minutes.
    let path = app.db.url.strip_prefix("sqlite://").unwrap().to_string();
    let mut conn = diesel::sqlite::SqliteConnection::establish(&path).unwrap();
    diesel::sql_query("UPDATE collab_tokens SET expires_at = expires_at - 301000")
        .execute(&mut conn)
        .unwrap();
    assert_eq!(
        verify(&app, Some(&t), &room).await.status,
        StatusCode::FORBIDDEN
    );
    // And the next token issue sweeps expired rows away.
    diesel::sql_query("UPDATE collab_tokens SET expires_at = 0")
        .execute(&mut conn)
        .unwrap();
    token_for(&app, &member, "doc", &doc).await;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: N = diesel::sql_query("SELECT COUNT(*) AS n FROM collab_tokens")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(left.n, 1);
}

async fn check_access_single_and_batched(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, doc) = setup(&app).await;
    let outsider = app.signup("out@gmail.com", "Out").await;
    let room = format!("doc-{doc}");
    let q = |user: &str| format!("/collaboration/check-access?roomId={room}&userId={user}");
    let a = app.get(&q(&member.id), SECRET).await;
    assert_eq!(a.body, json!({"hasAccess": true, "role": "editor"}));
    let a = app.get(&q(&outsider.id), SECRET).await;
    assert_eq!(a.body, json!({"hasAccess": false}));
    assert_eq!(app.get(&q("nobody"), SECRET).await.body["hasAccess"], false);
    // Bad secret / no secret → 401; missing or malformed params → 400.
    assert_eq!(
        app.get(&q(&member.id), "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(Method::GET, &q(&member.id), None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(
            &format!("/collaboration/check-access?roomId={room}"),
            SECRET
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(
            &format!("/collaboration/check-access?userId={}", member.id),
            SECRET
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(
            &format!(
                "/collaboration/check-access?roomId=bad&userId={}",
                member.id
            ),
            SECRET
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    // A user's session token is not the relay secret.
    assert_eq!(
        app.get(&q(&member.id), &owner.token).await.status,
        StatusCode::UNAUTHORIZED
    );

    let batch = app
        .post(
            "/collaboration/check-access",
            SECRET,
            json!({"roomId": room, "userIds": [owner.id, member.id, outsider.id, "ghost"]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    assert_eq!(
        batch.body["results"],
        json!([
            {"userId": owner.id, "hasAccess": true, "role": "owner"},
            {"userId": member.id, "hasAccess": true, "role": "editor"},
            {"userId": outsider.id, "hasAccess": false},
            {"userId": "ghost", "hasAccess": false},
        ])
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let a = app
        .post(
            "/collaboration/check-access",
            SECRET,
            json!({"roomId": room, "userIds": too_many}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A deleted document: nobody has access.
    app.delete(&format!("/documents/{doc}"), &owner.token).await;
    assert_eq!(
        app.get(&q(&owner.id), SECRET).await.body["hasAccess"],
        false
    );
}

async fn access_changes_reach_the_feed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, _, doc) = setup(&app).await;
    let guest = app.signup("guest@elsewhere.dev", "Guest").await;
    let start = app.get("/collaboration/events", SECRET).await;
    assert_eq!(start.status, StatusCode::OK);
    let cursor = start.body["last"].as_i64().unwrap();
    assert_eq!(
        app.get("/collaboration/events", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );

    // A poll with nothing new waits for its timeout and returns the same cursor.
    let idle = app
        .get(
            &format!("/collaboration/events?after={cursor}&timeoutMs=50"),
            SECRET,
        )
        .await;
    assert_eq!(idle.body, json!({"events": [], "last": cursor}));

    // A waiting poll is answered as soon as a member is removed.
    let members = format!("/documents/{doc}/members");
    app.grant(&members, &owner, &guest.id, "editor").await;
    let after_add = app
        .get(
            &format!("/collaboration/events?after={cursor}&timeoutMs=50"),
            SECRET,
        )
        .await;
    let cursor = after_add.body["last"].as_i64().unwrap();
    assert_eq!(after_add.body["events"][0]["userId"], guest.id.as_str());

    let poll = {
        let url = format!(
            "{}/collaboration/events?after={cursor}&timeoutMs=10000",
            app.base
        );
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(SECRET)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    app.delete(&format!("{members}/{}", guest.id), &owner.token)
        .await;
    let got = poll.await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "poll answered late"
    );
    assert_eq!(got["events"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got["events"][0]["userId"], guest.id.as_str());
    assert!(got["last"].as_i64().unwrap() > cursor);

    // Deleting the document is an event for its room.
    let cursor = got["last"].as_i64().unwrap();
    app.delete(&format!("/documents/{doc}"), &owner.token).await;
    let got = app
        .get(
            &format!("/collaboration/events?after={cursor}&timeoutMs=50"),
            SECRET,
        )
        .await;
    assert_eq!(got.body["events"][0]["roomId"], format!("doc-{doc}"));
}
