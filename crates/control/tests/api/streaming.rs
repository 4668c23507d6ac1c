//! Streaming to every viewer (plan 004 §3): an assistant message created in
//! state `streaming`, appended to in chunks, completed or failed; viewers
//! receive everything live over server-sent events, in order, and resume
//! after a reconnect from `Last-Event-ID` without gaps or duplicates. Also
//! presence, and a stream served by a second control replica.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::conversations::{add, cast, conversation, post_message, say, Cast};
use crate::helpers::{Backend, EventStream, Sse, TestApp, TestUser};

both_backends!(
    two_viewers_see_the_same_chunks_in_order,
    reconnect_resumes_without_gaps_or_duplicates,
    failed_generation_and_streaming_rules,
    removed_participant_stream_is_closed,
    events_from_another_replica,
    presence_lists_recent_heartbeats
);

async fn start_stream(app: &TestApp, who: &TestUser, c: &str) -> String {
    let m = post_message(
        app,
        who,
        c,
        json!({ "content": "", "role": "assistant", "state": "streaming", "model": "m1" }),
    )
    .await;
    assert_eq!(m["state"], "streaming");
    m["id"].as_str().unwrap().to_string()
}

async fn chunk(app: &TestApp, who: &TestUser, c: &str, m: &str, delta: &str) -> i64 {
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/chunks"),
            &who.token,
            json!({ "delta": delta }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["seq"].as_i64().unwrap()
}

fn deltas(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event == "chunk")
        .map(|e| e.data["data"]["delta"].as_str().unwrap())
        .collect()
}

async fn two_viewers_see_the_same_chunks_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Live").await;
    add(&app, &owner, &c, &collab).await;
    say(&app, &collab, &c, "explain streams").await;
    let path = format!("/conversations/{c}/events");
    let mut a = EventStream::open(&app, &path, &owner.token, None).await;
    let mut b = EventStream::open(&app, &path, &collab.token, None).await;

    // Both start from the same snapshot (the question is in it).
    let (sa, sb) = (a.next().await, b.next().await);
    assert_eq!(sa.event, "snapshot");
    assert_eq!(sa.id, sb.id);
    assert_eq!(sa.data["data"]["messages"][0]["content"], "explain streams");
    assert_eq!(sa.data["data"]["conversation"]["id"], c.as_str());

    let m = start_stream(&app, &collab, &c).await;
    let words: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    for w in &words {
        chunk(&app, &collab, &c, &m, w).await;
    }
    let done = app
        .post(
            &format!("/conversations/{c}/messages/{m}/finish"),
            &collab.token,
            json!({}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["state"], "idle");

    // message + 30 chunks + message_finished, on both streams, identical.
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..32 {
        got_a.push(a.next().await);
        got_b.push(b.next().await);
    }
    assert_eq!(got_a, got_b);
    assert_eq!(got_a[0].event, "message");
    assert_eq!(got_a[0].data["data"]["id"], m.as_str());
    assert_eq!(got_a[31].event, "message_finished");
    assert_eq!(got_a[31].data["data"]["state"], "idle");
    // Consecutive ids, offsets that add up, text that matches the stored message.
    let first = sa.id.unwrap();
    for (i, e) in got_a.iter().enumerate() {
        assert_eq!(e.id, Some(first + 1 + i as i64));
        assert_eq!(e.data["seq"], json!(e.id.unwrap()));
    }
    let mut offset = 0;
    for e in got_a.iter().filter(|e| e.event == "chunk") {
        assert_eq!(e.data["data"]["offset"], json!(offset));
        offset += e.data["data"]["delta"].as_str().unwrap().chars().count();
    }
    let text = deltas(&got_a);
    assert_eq!(text, words.concat());
    let stored = app
        .get(&format!("/conversations/{c}/messages"), &owner.token)
        .await;
    assert_eq!(stored.body["items"][1]["content"], text.as_str());
    assert_eq!(stored.body["items"][1]["state"], "idle");
    assert_eq!(stored.body["items"][1]["senderUser"]["displayName"], "Carl");
}

async fn reconnect_resumes_without_gaps_or_duplicates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c_ = cast(&app).await;
    let (owner, viewer) = (&c_.owner, &c_.collab);
    let c = conversation(&app, owner, &c_.project, "Resume").await;
    add(&app, owner, &c, viewer).await;
    let path = format!("/conversations/{c}/events");
    let m = start_stream(&app, owner, &c).await;

    let mut s = EventStream::open(&app, &path, &viewer.token, None).await;
    let snap = s.next().await;
    assert_eq!(snap.event, "snapshot");
    // The snapshot already holds the (empty) streaming message.
    assert_eq!(snap.data["data"]["messages"][0]["state"], "streaming");
    let mut received = vec![];
    for i in 0..8 {
        chunk(&app, owner, &c, &m, &format!("a{i} ")).await;
    }
    for _ in 0..5 {
        received.push(s.next().await);
    }
    // The viewer drops the connection mid-stream; more chunks arrive meanwhile.
    let last_seen = received.last().unwrap().id.unwrap();
    drop(s);
    for i in 0..6 {
        chunk(&app, owner, &c, &m, &format!("b{i} ")).await;
    }
    let mut s = EventStream::open(&app, &path, &viewer.token, Some(last_seen)).await;
    for i in 0..4 {
        chunk(&app, owner, &c, &m, &format!("c{i} ")).await;
    }
    let finish = app
        .post(
            &format!("/conversations/{c}/messages/{m}/finish"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(finish.status, StatusCode::OK);
    // 3 missed a-chunks + 6 b-chunks + 4 c-chunks + message_finished.
    for _ in 0..14 {
        received.push(s.next().await);
    }
    let ids: Vec<i64> = received.iter().map(|e| e.id.unwrap()).collect();
    let expected: Vec<i64> = (snap.id.unwrap() + 1..=snap.id.unwrap() + 19).collect();
    assert_eq!(ids, expected, "every event exactly once, in order");
    assert_eq!(received.last().unwrap().event, "message_finished");
    let all: String = (0..8)
        .map(|i| format!("a{i} "))
        .chain((0..6).map(|i| format!("b{i} ")))
        .chain((0..4).map(|i| format!("c{i} ")))
        .collect();
    assert_eq!(deltas(&received), all);
    let stored = app
        .get(&format!("/conversations/{c}/messages"), &viewer.token)
        .await;
    assert_eq!(stored.body["items"][0]["content"], all.as_str());

    // Resuming from the newest id: nothing old is repeated, new events come.
    let newest = *ids.last().unwrap();
    let mut s2 = EventStream::open(&app, &path, &viewer.token, Some(newest)).await;
    say(&app, viewer, &c, "thanks").await;
    let next = s2.next().await;
    assert_eq!(
        (next.event.as_str(), next.id),
        ("message", Some(newest + 1))
    );
    // An id this conversation never had: a fresh snapshot instead of a guess.
    let mut s3 = EventStream::open(&app, &path, &viewer.token, Some(newest + 1000)).await;
    let snap = s3.next().await;
    assert_eq!(
        (snap.event.as_str(), snap.id),
        ("snapshot", Some(newest + 1))
    );
    assert_eq!(snap.data["data"]["messages"].as_array().unwrap().len(), 2);
    // A malformed Last-Event-ID is a 400, not a stream.
    let bad = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&viewer.token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

async fn failed_generation_and_streaming_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Failing").await;
    add(&app, &owner, &c, &collab).await;
    let m = start_stream(&app, &owner, &c).await;
    let mut s = EventStream::open(
        &app,
        &format!("/conversations/{c}/events"),
        &collab.token,
        None,
    )
    .await;
    s.next().await;
    chunk(&app, &owner, &c, &m, "partial").await;
    // Only the user the message is attributed to streams into it.
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/chunks"),
            &collab.token,
            json!({ "delta": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/chunks"),
            &outsider.token,
            json!({ "delta": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let failed = app
        .post(
            &format!("/conversations/{c}/messages/{m}/finish"),
            &owner.token,
            json!({ "errorMessage": "provider timed out" }),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.body["state"], "error");
    assert_eq!(failed.body["errorMessage"], "provider timed out");
    assert_eq!(s.next().await.event, "chunk");
    let fin = s.next().await;
    assert_eq!(fin.event, "message_finished");
    assert_eq!(fin.data["data"]["errorMessage"], "provider timed out");
    // A finished message takes no more chunks and cannot finish twice.
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/chunks"),
            &owner.token,
            json!({ "delta": "late" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/finish"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    // Unknown message: 404. Non-streaming messages never take chunks.
    let plain = say(&app, &owner, &c, "plain").await;
    let a = app
        .post(
            &format!(
                "/conversations/{c}/messages/{}/chunks",
                plain["id"].as_str().unwrap()
            ),
            &owner.token,
            json!({ "delta": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = app
        .post(
            &format!("/conversations/{c}/messages/nope/chunks"),
            &owner.token,
            json!({ "delta": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let stored = app
        .get(&format!("/conversations/{c}/messages"), &owner.token)
        .await;
    assert_eq!(stored.body["items"][0]["content"], "partial");
}

async fn removed_participant_stream_is_closed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Kick").await;
    add(&app, &owner, &c, &collab).await;
    let path = format!("/conversations/{c}/events");
    // A non-participant cannot open the stream at all.
    let denied = app.get(&path, &outsider.token).await;
    assert_eq!(denied.status, StatusCode::NOT_FOUND);

    let mut s = EventStream::open(&app, &path, &collab.token, None).await;
    s.next().await;
    let r = app
        .delete(
            &format!("/conversations/{c}/participants/{}", collab.id),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let closed = s.next().await;
    assert_eq!(closed.event, "closed");
    assert_eq!(closed.data["reason"], "access_revoked");
    assert_eq!(s.next_or_end().await, None);
}

async fn events_from_another_replica(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c_ = cast(&app).await;
    let replica = app.replica(|_| {}).await;
    let c = conversation(&app, &c_.owner, &c_.project, "Two replicas").await;
    add(&app, &c_.owner, &c, &c_.collab).await;
    // The viewer streams from replica B; the writer talks to replica A.
    let mut s = EventStream::open(
        &replica,
        &format!("/conversations/{c}/events"),
        &c_.collab.token,
        None,
    )
    .await;
    s.next().await;
    let m = start_stream(&app, &c_.owner, &c).await;
    for i in 0..5 {
        chunk(&app, &c_.owner, &c, &m, &format!("{i}")).await;
    }
    let mut got = vec![];
    for _ in 0..6 {
        got.push(s.next().await);
    }
    assert_eq!(got[0].event, "message");
    assert_eq!(deltas(&got), "01234");
}

async fn presence_lists_recent_heartbeats(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.presence_window_ms = 1_500).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Who is here").await;
    add(&app, &owner, &c, &collab).await;
    let path = format!("/conversations/{c}/presence");
    let beat = |who: TestUser| {
        let (app, path) = (&app, path.clone());
        async move { app.post(&path, &who.token, Value::Null).await }
    };
    assert_eq!(beat(owner.clone()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(beat(collab.clone()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(beat(outsider.clone()).await.status, StatusCode::NOT_FOUND);
    let here = app.get(&path, &owner.token).await;
    assert_eq!(here.status, StatusCode::OK);
    let mut names: Vec<&str> = here.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"]["displayName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Carl", "Olga"]);
    // After the window only the one who kept beating is listed.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    beat(collab.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let here = app.get(&path, &collab.token).await;
    let names: Vec<&str> = here.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"]["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Carl"]);
    assert_eq!(
        app.get(&path, &outsider.token).await.status,
        StatusCode::NOT_FOUND
    );
}
