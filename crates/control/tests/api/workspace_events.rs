//! The workspace event stream (`GET /workspaces/{id}/events`): lists update
//! live. Changes reach the members who may read them (decided when they are
//! delivered), a user who loses the workspace gets `revoked` and nothing
//! after it, and a dropped stream resumes from `Last-Event-ID` without gaps.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, EventStream, Sse, TestApp, TestUser};

both_backends!(
    project_created_by_one_member_reaches_another,
    removed_member_gets_revoked_and_nothing_after,
    unreadable_documents_never_reach_a_reader,
    resume_after_a_dropped_stream_without_gaps,
    events_written_through_another_replica,
    conversations_reach_their_readers_only,
    streams_are_bounded_and_refused_to_outsiders
);

fn events_path(ws: &str) -> String {
    format!("/workspaces/{ws}/events")
}

async fn open_ready(app: &TestApp, ws: &str, who: &TestUser) -> (EventStream, i64) {
    let mut s = EventStream::open(app, &events_path(ws), &who.token, None).await;
    let ready = s.next().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.data["workspaceId"], ws);
    let seq = ready.id.expect("ready carries the current seq");
    (s, seq)
}

/// Two members of one org (and so of its team workspace).
async fn team(app: &TestApp) -> (TestUser, TestUser, String) {
    let owner = app.signup("olga@live.dev", "Olga").await;
    let member = app.signup("max@live.dev", "Max").await;
    let ws = app.workspace(&owner, "team").await;
    assert_eq!(app.workspace(&member, "team").await, ws);
    (owner, member, ws)
}

async fn add_member(app: &TestApp, by: &TestUser, scope: &str, who: &TestUser, role: &str) {
    let a = app
        .post(
            &format!("{scope}/members"),
            &by.token,
            json!({ "userId": who.id, "role": role }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

async fn remove_member(app: &TestApp, by: &TestUser, scope: &str, who: &TestUser) {
    let a = app
        .delete(&format!("{scope}/members/{}", who.id), &by.token)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
}

async fn project_created_by_one_member_reaches_another(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, ws) = team(&app).await;
    let (mut stream, start) = open_ready(&app, &ws, &member).await;

    let mut latencies = Vec::new();
    for i in 0..10 {
        let t0 = Instant::now();
        let p = app.create_project(&owner, &ws, &format!("P{i}")).await;
        let e = stream.next().await;
        latencies.push(t0.elapsed());
        assert_eq!(e.event, "project.created");
        assert_eq!(e.id, Some(start + 1 + i));
        assert_eq!(e.data["id"], p.as_str());
        assert_eq!(e.data["data"]["name"], format!("P{i}"));
        assert_eq!(e.data["data"]["workspaceId"], ws.as_str());
        // The reader's own role, not the creator's.
        assert_eq!(e.data["data"]["role"], "editor");
    }
    latencies.sort();
    eprintln!(
        "workspace event latency (POST sent → event received, {backend:?}): median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // Renames and deletions too.
    let p = app.create_project(&owner, &ws, "Renamed later").await;
    assert_eq!(stream.next().await.event, "project.created");
    let r = app
        .patch(
            &format!("/projects/{p}"),
            &owner.token,
            json!({"name": "New"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), &e.data["data"]["name"]),
        ("project.updated", &json!("New"))
    );
    let d = app.create_resource(&owner, &p, "documents", "Doc").await;
    let e = stream.next().await;
    assert_eq!(e.event, "document.created");
    assert_eq!(e.data["projectId"], p.as_str());
    assert_eq!(e.data["data"]["title"], "Doc");
    let r = app
        .patch(
            &format!("/documents/{d}"),
            &owner.token,
            json!({"title": "Doc 2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), &e.data["data"]["title"]),
        ("document.updated", &json!("Doc 2"))
    );
    assert_eq!(
        app.delete(&format!("/projects/{p}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("document.deleted", Some(d.as_str()))
    );
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("project.deleted", Some(p.as_str()))
    );
}

async fn removed_member_gets_revoked_and_nothing_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@revoke.dev", "Olga").await;
    let guest = app.signup("gus@elsewhere.dev", "Gus").await;
    let ws = app.workspace(&owner, "personal").await;
    add_member(&app, &owner, &format!("/workspaces/{ws}"), &guest, "viewer").await;
    let (mut stream, _) = open_ready(&app, &ws, &guest).await;

    app.create_project(&owner, &ws, "Before").await;
    let e = stream.next().await;
    assert_eq!(e.event, "project.created");
    assert_eq!(e.data["data"]["role"], "viewer");

    remove_member(&app, &owner, &format!("/workspaces/{ws}"), &guest).await;
    app.create_project(&owner, &ws, "After").await;
    let e = stream.next().await;
    assert_eq!(e.event, "revoked", "{e:?}");
    assert_eq!(e.data["reason"], "access_revoked");
    assert_eq!(e.id, None);
    assert!(
        stream.next_or_end().await.is_none(),
        "nothing after revoked"
    );
    // And no new stream.
    let again = app.get(&events_path(&ws), &guest.token).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

async fn unreadable_documents_never_reach_a_reader(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@docs.dev", "Olga").await;
    let guest = app.signup("gus@elsewhere.dev", "Gus").await;
    let ws = app.workspace(&owner, "personal").await;
    let open = app.create_project(&owner, &ws, "Shared").await;
    let closed = app.create_project(&owner, &ws, "Private").await;
    let shared_doc = app
        .create_resource(&owner, &closed, "documents", "One doc")
        .await;
    add_member(&app, &owner, &format!("/projects/{open}"), &guest, "viewer").await;
    add_member(
        &app,
        &owner,
        &format!("/documents/{shared_doc}"),
        &guest,
        "editor",
    )
    .await;
    // Not a workspace member: following it through what is shared with them.
    let (mut stream, _) = open_ready(&app, &ws, &guest).await;

    let secret = app
        .create_resource(&owner, &closed, "documents", "Secret")
        .await;
    let r = app
        .patch(
            &format!("/documents/{secret}"),
            &owner.token,
            json!({"title": "Still secret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let visible = app
        .create_resource(&owner, &open, "documents", "Visible")
        .await;
    assert_eq!(
        app.delete(&format!("/documents/{secret}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = app
        .patch(
            &format!("/documents/{shared_doc}"),
            &owner.token,
            json!({"title": "Shared doc"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("document.created", Some(visible.as_str()))
    );
    assert_eq!(e.data["data"]["role"], "viewer");
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("document.updated", Some(shared_doc.as_str()))
    );
    assert_eq!(e.data["data"]["role"], "editor");

    // The project grant goes mid-stream: its documents stop arriving, the
    // shared document in the other project still does.
    remove_member(&app, &owner, &format!("/projects/{open}"), &guest).await;
    let e = stream.next().await;
    assert_eq!(
        e.event, "member.deleted",
        "the guest learns of their own removal"
    );
    assert_eq!(e.data["data"]["userId"], guest.id.as_str());
    app.create_resource(&owner, &open, "documents", "Too late")
        .await;
    let r = app
        .patch(
            &format!("/documents/{shared_doc}"),
            &owner.token,
            json!({"title": "Sentinel"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), &e.data["data"]["title"]),
        ("document.updated", &json!("Sentinel"))
    );

    // Deleting the one shared document: the grantee hears of it, then loses the workspace.
    assert_eq!(
        app.delete(&format!("/documents/{shared_doc}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let e = stream.next().await;
    assert_eq!(e.event, "revoked", "{e:?}");
    assert!(stream.next_or_end().await.is_none());
}

async fn resume_after_a_dropped_stream_without_gaps(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, ws) = team(&app).await;
    let (mut stream, start) = open_ready(&app, &ws, &member).await;
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(format!("P{i}"));
        app.create_project(&owner, &ws, &names[i]).await;
    }
    let first = stream.next().await;
    assert_eq!(first.id, Some(start + 1));
    drop(stream);
    for i in 3..6 {
        names.push(format!("P{i}"));
        app.create_project(&owner, &ws, &names[i]).await;
    }
    let mut resumed = EventStream::open(&app, &events_path(&ws), &member.token, first.id).await;
    let mut got: Vec<Sse> = Vec::new();
    for _ in 1..6 {
        got.push(resumed.next().await);
    }
    let ids: Vec<i64> = got.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(
        ids,
        (start + 2..=start + 6).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let got_names: Vec<&str> = got
        .iter()
        .map(|e| e.data["data"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        got_names,
        names[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Live after the resume.
    app.create_project(&owner, &ws, "P6").await;
    assert_eq!(resumed.next().await.id, Some(start + 7));
    drop(resumed);

    // `?after=` works like the header.
    let mut s = EventStream::open(
        &app,
        &format!("{}?after={}", events_path(&ws), start + 5),
        &member.token,
        None,
    )
    .await;
    assert_eq!(s.next().await.id, Some(start + 6));
    drop(s);

    // Events gone (pruned) or a seq from elsewhere: `reset` at the current seq.
    app.sql(&format!(
        "DELETE FROM workspace_events WHERE workspace_id = '{ws}' AND seq <= {}",
        start + 3
    ));
    let mut s = EventStream::open(&app, &events_path(&ws), &member.token, Some(start + 1)).await;
    let e = s.next().await;
    assert_eq!((e.event.as_str(), e.id), ("reset", Some(start + 7)));
    drop(s);
    let mut s = EventStream::open(&app, &events_path(&ws), &member.token, Some(start + 99)).await;
    let e = s.next().await;
    assert_eq!((e.event.as_str(), e.id), ("reset", Some(start + 7)));
    // After a reset the stream goes on from there.
    app.create_project(&owner, &ws, "P7").await;
    assert_eq!(s.next().await.id, Some(start + 8));
    // Garbage Last-Event-ID is a 400.
    let bad = app
        .client
        .get(format!("{}{}", app.base, events_path(&ws)))
        .bearer_auth(&member.token)
        .header("last-event-id", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

async fn events_written_through_another_replica(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.replica(|c| c.chat_poll_ms = 50).await;
    let (owner, member, ws) = team(&app).await;
    let (mut stream, start) = open_ready(&other, &ws, &member).await;
    let t0 = Instant::now();
    let p = app.create_project(&owner, &ws, "Elsewhere").await;
    let e = stream.next().await;
    eprintln!(
        "cross-replica latency (poll every 50 ms, {backend:?}): {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (e.event.as_str(), e.id),
        ("project.created", Some(start + 1))
    );
    assert_eq!(e.data["id"], p.as_str());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

async fn conversations_reach_their_readers_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (owner, member, ws) = team(&app).await;
    let p = app.create_project(&owner, &ws, "Chats").await;
    let (mut stream, _) = open_ready(&app, &ws, &member).await;
    // The owner's private chat: not the member's to see.
    let private = app
        .post(
            &format!("/projects/{p}/conversations"),
            &owner.token,
            json!({"title": "Mine"}),
        )
        .await;
    assert_eq!(private.status, StatusCode::CREATED);
    let private = private.id();
    let shared = app
        .post(
            &format!("/projects/{p}/conversations"),
            &owner.token,
            json!({"title": "Ours"}),
        )
        .await
        .id();
    let add = app
        .post(
            &format!("/conversations/{shared}/participants"),
            &owner.token,
            json!({ "userId": member.id }),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    // Readability is decided at delivery: if the stream reads after the
    // participant was added, the creation reaches them too.
    let mut e = stream.next().await;
    if e.event == "conversation.created" {
        assert_eq!(e.data["id"], shared.as_str());
        e = stream.next().await;
    }
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("conversation.updated", Some(shared.as_str()))
    );
    assert_eq!(e.data["data"]["title"], "Ours");
    assert_eq!(e.data["data"]["role"], "editor");
    let r = app
        .patch(
            &format!("/conversations/{private}"),
            &owner.token,
            json!({"title": "Still mine"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .patch(
            &format!("/conversations/{shared}"),
            &owner.token,
            json!({"title": "Ours 2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), &e.data["data"]["title"]),
        ("conversation.updated", &json!("Ours 2"))
    );
    // Removed from it: it leaves their list.
    let r = app
        .delete(
            &format!("/conversations/{shared}/participants/{}", member.id),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data["id"].as_str()),
        ("conversation.deleted", Some(shared.as_str()))
    );
}

async fn streams_are_bounded_and_refused_to_outsiders(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_streams_per_user = 1).await;
    let (_owner, member, ws) = team(&app).await;
    let outsider = app.signup("out@elsewhere.dev", "Out").await;
    let refused = app.get(&events_path(&ws), &outsider.token).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let (_held, _) = open_ready(&app, &ws, &member).await;
    let second = app.get(&events_path(&ws), &member.token).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.code(), "rate_limited");
}
