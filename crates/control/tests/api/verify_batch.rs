//! `POST /collaboration/verify-batch`: many one-time tokens consumed in one
//! call, answered per token; each token still succeeds exactly once, across
//! batches, single verifies and replicas. `POST
//! /collaboration/check-access-batch`: the access of many users to many rooms
//! in one call, answered per pair.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestUser};

both_backends!(
    a_batch_answers_each_token_in_order,
    one_token_in_concurrent_batches_and_verifies_succeeds_once,
    one_token_on_two_replicas_succeeds_once,
    batch_limits_and_secret,
    an_access_batch_answers_each_pair_in_order,
    access_batch_limits_and_secret,
);

const SECRET: &str = "test-relay-secret";

/// A team with a document; the owner and a member (editor).
async fn setup(app: &TestApp) -> (TestUser, TestUser, String, String) {
    let owner = app.signup("olga@batch.dev", "Olga").await;
    let member = app.signup("max@batch.dev", "Max").await;
    let team = app.workspace(&owner, "team").await;
    let p = app.create_project(&owner, &team, "P").await;
    let doc = app.create_resource(&owner, &p, "documents", "Doc").await;
    (owner, member, doc, p)
}

async fn token(app: &TestApp, user: &TestUser, doc: &str) -> String {
    let a = app
        .post(
            "/collaboration/token",
            &user.token,
            json!({"resourceType": "doc", "resourceId": doc}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["token"].as_str().unwrap().to_string()
}

/// `POST {route}` with the relay secret `secret` and `{items}`, each pair
/// named by `keys`.
async fn post_pairs(
    app: &TestApp,
    route: &str,
    secret: &str,
    keys: (&str, &str),
    items: &[(&str, &str)],
) -> crate::helpers::Answer {
    let items: Vec<Value> = items
        .iter()
        .map(|(a, b)| json!({ keys.0: a, keys.1: b }))
        .collect();
    app.post(route, secret, json!({ "items": items })).await
}

async fn batch(app: &TestApp, items: &[(&str, &str)]) -> crate::helpers::Answer {
    let keys = ("token", "roomId");
    post_pairs(app, "/collaboration/verify-batch", SECRET, keys, items).await
}

fn outcomes(a: &crate::helpers::Answer) -> Vec<String> {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

async fn a_batch_answers_each_token_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, doc, project) = setup(&app).await;
    let room = format!("doc-{doc}");
    let other = app
        .create_resource(&owner, &project, "documents", "Other")
        .await;
    let used = token(&app, &member, &doc).await;
    let first = app.verify_token(Some(&used), &room, Some(SECRET)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let good = token(&app, &member, &doc).await;
    let owners = token(&app, &owner, &doc).await;
    let twice = token(&app, &member, &doc).await;
    let misdirected = token(&app, &member, &other).await;
    let unparsable_room = token(&app, &member, &doc).await;
    // Access lost between token and verify: a guest removed from the project.
    let guest = app.signup("guest@elsewhere.dev", "Guest").await;
    let added = app
        .post(
            &format!("/projects/{project}/members"),
            &owner.token,
            json!({"userId": guest.id, "role": "viewer"}),
        )
        .await;
    assert!(added.status.is_success(), "{}", added.body);
    let revoked = token(&app, &guest, &doc).await;
    app.delete(
        &format!("/projects/{project}/members/{}", guest.id),
        &owner.token,
    )
    .await;
    let unknown = "A".repeat(43);
    let a = batch(
        &app,
        &[
            (&good, &room),
            (&used, &room),
            (&unknown, &room),
            ("not-a-token", &room),
            (&twice, &room),
            (&twice, &room),
            (&misdirected, &room),
            (&unparsable_room, "chat-123"),
            (&revoked, &room),
            (&owners, &room),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&a),
        [
            "verified", "refused", "refused", "refused", "verified", "refused", "refused",
            "invalid", "refused", "verified"
        ],
        "{}",
        a.body
    );
    let r = &a.body["results"];
    assert_eq!(
        r[0],
        json!({"outcome": "verified", "userId": member.id, "userName": "Max", "role": "editor"})
    );
    assert_eq!(r[9]["userId"], owner.id.as_str());
    assert_eq!(r[9]["role"], "owner");
    assert!(
        r[7]["message"].as_str().unwrap().contains("roomId"),
        "{}",
        r[7]
    );
    // The misdirected token was used up by the wrong-room try (as with
    // `verify`); the one with a malformed room was not touched.
    let other_room = format!("doc-{other}");
    assert_eq!(
        outcomes(&batch(&app, &[(&misdirected, &other_room)]).await),
        ["refused"]
    );
    assert_eq!(
        outcomes(&batch(&app, &[(&unparsable_room, &room), (&good, &room)]).await),
        ["verified", "refused"]
    );
    // An expired token is refused.
    if backend == Backend::Sqlite {
        use diesel::{Connection, RunQueryDsl};
        let expiring = token(&app, &member, &doc).await;
        let path = app.db.url.strip_prefix("sqlite://").unwrap().to_string();
        let mut conn = diesel::sqlite::SqliteConnection::establish(&path).unwrap();
        diesel::sql_query("UPDATE collab_tokens SET expires_at = expires_at - 301000")
            .execute(&mut conn)
            .unwrap();
        assert_eq!(
            outcomes(&batch(&app, &[(&expiring, &room)]).await),
            ["refused"]
        );
    }
}

/// The same token in several concurrent batches and single verifies: exactly one success.
async fn one_token_in_concurrent_batches_and_verifies_succeeds_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.db_pool_size = 16).await;
    let (_, member, doc, _) = setup(&app).await;
    let room = format!("doc-{doc}");
    for _round in 0..3 {
        let contested = token(&app, &member, &doc).await;
        // Each batch also carries a token of its own, which always succeeds.
        let mut own = Vec::new();
        for _ in 0..8 {
            own.push(token(&app, &member, &doc).await);
        }
        let batches = own.iter().map(|t| {
            let app = &app;
            let (contested, room) = (contested.clone(), room.clone());
            async move { batch(app, &[(&contested, &room), (t, &room)]).await }
        });
        let singles = (0..8).map(|_| app.verify_token(Some(&contested), &room, Some(SECRET)));
        let (batches, singles) = tokio::join!(
            futures_util::future::join_all(batches),
            futures_util::future::join_all(singles)
        );
        let mut wins = 0;
        for a in &batches {
            let o = outcomes(a);
            assert_eq!(o[1], "verified", "{}", a.body);
            wins += usize::from(o[0] == "verified");
        }
        for a in &singles {
            match a.status {
                StatusCode::OK => wins += 1,
                StatusCode::FORBIDDEN => {}
                s => panic!("verify answered {s}: {}", a.body),
            }
        }
        assert_eq!(wins, 1, "exactly one of 16 calls consumed the token");
    }
}

/// Two replicas on one database: a token batched on both succeeds once.
async fn one_token_on_two_replicas_succeeds_once(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let (_, member, doc, _) = setup(&a).await;
    let room = format!("doc-{doc}");
    for _ in 0..5 {
        let t = token(&a, &member, &doc).await;
        let items = [(t.as_str(), room.as_str())];
        let (x, y) = tokio::join!(batch(&a, &items), batch(&b, &items));
        let wins = [outcomes(&x), outcomes(&y)]
            .iter()
            .filter(|o| o[0] == "verified")
            .count();
        assert_eq!(wins, 1);
    }
}

async fn batch_limits_and_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, member, doc, _) = setup(&app).await;
    let room = format!("doc-{doc}");
    let t = token(&app, &member, &doc).await;
    // Too many items, or none: 422 with the usual error body, nothing consumed.
    let filler = "B".repeat(43);
    let mut items: Vec<(&str, &str)> = vec![(&t, &room)];
    items.extend(std::iter::repeat_n((filler.as_str(), room.as_str()), 100));
    let a = batch(&app, &items).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.code(), "validation_failed", "{}", a.body);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("100"));
    assert!(a.body["error"]["requestId"].is_string(), "{}", a.body);
    let a = batch(&app, &[]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    // Unknown fields and wrong types: 422 too (control's answer to a body that does not parse).
    for body in [
        json!({"items": [{"token": t, "roomId": room, "extra": 1}]}),
        json!({"items": [{"token": 5, "roomId": room}]}),
        json!({"tokens": [t]}),
    ] {
        let a = app.post("/collaboration/verify-batch", SECRET, body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
        assert_eq!(a.code(), "validation_failed", "{}", a.body);
    }
    // A huge token is refused without a lookup, and the batch still answers.
    let huge = "C".repeat(16 * 1024);
    assert_eq!(outcomes(&batch(&app, &[(&huge, &room)]).await), ["refused"]);
    // A body over control's limit (64 KiB in tests): 413 with the usual error body.
    let huge = "C".repeat(70 * 1024);
    let a = batch(&app, &[(&huge, &room)]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert_eq!(a.code(), "payload_too_large", "{}", a.body);
    // Without the relay secret (or with the user's session): 401, nothing consumed.
    for secret in ["wrong", member.token.as_str()] {
        let a = app
            .post(
                "/collaboration/verify-batch",
                secret,
                json!({"items": [{"token": t, "roomId": room}]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    // The token survived all of that, and works once.
    assert_eq!(outcomes(&batch(&app, &[(&t, &room)]).await), ["verified"]);
    assert_eq!(outcomes(&batch(&app, &[(&t, &room)]).await), ["refused"]);
}

async fn access_batch(
    app: &TestApp,
    secret: &str,
    items: &[(&str, &str)],
) -> crate::helpers::Answer {
    let keys = ("roomId", "userId");
    post_pairs(
        app,
        "/collaboration/check-access-batch",
        secret,
        keys,
        items,
    )
    .await
}

/// Each result as its role, or "-" for no access.
fn roles(a: &crate::helpers::Answer) -> Vec<String> {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| match (r["hasAccess"].as_bool(), r["role"].as_str()) {
            (Some(true), Some(role)) => role.to_string(),
            (Some(false), None) => "-".to_string(),
            _ => panic!("malformed result {r}"),
        })
        .collect()
}

async fn an_access_batch_answers_each_pair_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, doc, project) = setup(&app).await;
    let room = format!("doc-{doc}");
    // Another company's document, in a room the batch mixes in.
    let stranger = app.signup("sam@elsewhere.dev", "Sam").await;
    let ws = app.workspace(&stranger, "team").await;
    let p = app.create_project(&stranger, &ws, "Theirs").await;
    let theirs = app.create_resource(&stranger, &p, "documents", "T").await;
    let theirs = format!("doc-{theirs}");
    // A guest with a viewer's grant on the project.
    let guest = app.signup("guest@gmail.com", "Guest").await;
    let added = app
        .post(
            &format!("/projects/{project}/members"),
            &owner.token,
            json!({"userId": guest.id, "role": "viewer"}),
        )
        .await;
    assert!(added.status.is_success(), "{}", added.body);
    let pairs = [
        (room.as_str(), member.id.as_str()),
        (room.as_str(), owner.id.as_str()),
        (theirs.as_str(), member.id.as_str()),
        (theirs.as_str(), stranger.id.as_str()),
        (room.as_str(), guest.id.as_str()),
        (room.as_str(), "no-such-user"),
        ("doc-no-such-document", owner.id.as_str()),
        (room.as_str(), member.id.as_str()),
    ];
    let expected = [
        "editor", "owner", "-", "owner", "viewer", "-", "-", "editor",
    ];
    assert_eq!(roles(&access_batch(&app, SECRET, &pairs).await), expected);
    // Asked again, now partly from control's access cache: the same answers.
    assert_eq!(roles(&access_batch(&app, SECRET, &pairs).await), expected);
    // Each answer is what the single check says.
    for ((r, u), want) in pairs.iter().zip(expected) {
        let one = app
            .get(
                &format!("/collaboration/check-access?roomId={r}&userId={u}"),
                SECRET,
            )
            .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.body);
        assert_eq!(one.body["hasAccess"], want != "-", "{r} {u}: {}", one.body);
    }
    // The guest removed, a second guest's editor grant made a viewer's: the
    // next batch says so (the cache does not outlive an access change).
    let other_guest = app.signup("gail@gmail.com", "Gail").await;
    let members = format!("/projects/{project}/members");
    let a = app.grant(&members, &owner, &other_guest.id, "editor").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let before = access_batch(&app, SECRET, &[(&room, &other_guest.id)]).await;
    assert_eq!(roles(&before), ["editor"]);
    app.delete(&format!("{members}/{}", guest.id), &owner.token)
        .await;
    let a = app
        .patch(
            &format!("{members}/{}", other_guest.id),
            &owner.token,
            json!({"role": "viewer"}),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.body);
    let after = access_batch(
        &app,
        SECRET,
        &[
            (&room, &guest.id),
            (&room, &other_guest.id),
            (&room, &owner.id),
        ],
    )
    .await;
    assert_eq!(roles(&after), ["-", "viewer", "owner"]);
}

async fn access_batch_limits_and_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, member, doc, _) = setup(&app).await;
    let room = format!("doc-{doc}");
    let pair = (room.as_str(), member.id.as_str());
    // None, or more than 100: 422 with the usual error body.
    for n in [0, 101] {
        let a = access_batch(&app, SECRET, &vec![pair; n]).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{n}: {}",
            a.body
        );
        assert_eq!(a.code(), "validation_failed", "{}", a.body);
        assert!(a.body["error"]["message"].as_str().unwrap().contains("100"));
    }
    assert_eq!(
        roles(&access_batch(&app, SECRET, &vec![pair; 100]).await).len(),
        100
    );
    // A room id that does not parse: 422 naming the item.
    let a = access_batch(&app, SECRET, &[pair, ("chat-123", &member.id)]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let message = a.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("items[1].roomId"), "{message}");
    // Unknown fields and wrong types: 422.
    for body in [
        json!({"items": [{"roomId": room, "userId": member.id, "extra": 1}]}),
        json!({"items": [{"roomId": room, "userId": 5}]}),
        json!({"roomId": room, "userIds": [member.id]}),
    ] {
        let a = app
            .post("/collaboration/check-access-batch", SECRET, body)
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    }
    // Without the relay secret (or with the user's session): 401.
    for secret in ["wrong", member.token.as_str()] {
        let a = access_batch(&app, secret, &[pair]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
}
