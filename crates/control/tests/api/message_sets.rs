//! Plan 004's chat model on conversations: message sets (a user set and an
//! ai set per turn, several answers per ai set, one selected), message
//! parts, quick chats, summaries and branches. Flat conversations keep
//! working: a flat message is a set of one.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::conversations::{add, cast, conversation, say, Cast};
use crate::helpers::{Backend, EventStream, Sse, TestApp, TestUser};

both_backends!(
    two_answers_stream_at_once_to_two_viewers_in_the_same_order,
    selection_is_exclusive_under_concurrent_selects,
    a_branch_holds_exactly_the_messages_up_to_its_point,
    flat_messages_are_sets_of_one,
    quick_chats_summaries_and_parts,
    set_refusals
);

async fn new_set(app: &TestApp, who: &TestUser, c: &str, kind: &str) -> String {
    let a = app
        .post(
            &format!("/conversations/{c}/sets"),
            &who.token,
            json!({ "type": kind }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["type"], kind);
    assert_eq!(a.body["messages"], json!([]));
    a.id()
}

async fn add_to_set(app: &TestApp, who: &TestUser, c: &str, set: &str, body: Value) -> Value {
    let a = app
        .post(
            &format!("/conversations/{c}/sets/{set}/messages"),
            &who.token,
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["setId"], set);
    a.body
}

async fn sets(app: &TestApp, who: &TestUser, c: &str) -> Vec<Value> {
    let a = app
        .get(&format!("/conversations/{c}/sets"), &who.token)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["items"].as_array().unwrap().clone()
}

/// A turn: a user set with a question, an ai set with streaming answers
/// from the given models (block types = model names).
async fn turn(
    app: &TestApp,
    who: &TestUser,
    c: &str,
    question: &str,
    models: &[&str],
) -> (String, Vec<String>) {
    let q = new_set(app, who, c, "user").await;
    let m = add_to_set(app, who, c, &q, json!({ "content": question })).await;
    assert_eq!(m["role"], "user");
    let ai = new_set(app, who, c, "ai").await;
    let mut answers = Vec::new();
    for model in models {
        let a = add_to_set(
            app,
            who,
            c,
            &ai,
            json!({ "state": "streaming", "model": model, "blockType": model }),
        )
        .await;
        assert_eq!(a["role"], "assistant");
        assert_eq!(a["state"], "streaming");
        answers.push(a["id"].as_str().unwrap().to_string());
    }
    (ai, answers)
}

async fn chunk(app: &TestApp, who: &TestUser, c: &str, m: &str, delta: &str) {
    let a = app
        .post(
            &format!("/conversations/{c}/messages/{m}/chunks"),
            &who.token,
            json!({ "delta": delta }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn two_answers_stream_at_once_to_two_viewers_in_the_same_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Models").await;
    add(&app, &owner, &c, &collab).await;
    let (_, answers) = turn(&app, &owner, &c, "compare", &["m1", "m2"]).await;
    let path = format!("/conversations/{c}/events");
    let mut a = EventStream::open(&app, &path, &owner.token, None).await;
    let mut b = EventStream::open(&app, &path, &collab.token, None).await;
    let (sa, sb) = (a.next().await, b.next().await);
    assert_eq!((sa.event.as_str(), sa.id), ("snapshot", sb.id));

    // Both answers stream at the same time, chunk requests racing each other.
    let stream = |m: String, tag: &'static str| {
        let (app, owner, c) = (&app, &owner, &c);
        async move {
            for i in 0..20 {
                chunk(app, owner, c, &m, &format!("{tag}{i} ")).await;
            }
        }
    };
    tokio::join!(
        stream(answers[0].clone(), "a"),
        stream(answers[1].clone(), "b")
    );
    for m in &answers {
        let done = app
            .post(
                &format!("/conversations/{c}/messages/{m}/finish"),
                &owner.token,
                json!({}),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    }

    // Viewer A reads everything; viewer B drops halfway and resumes.
    let mut got_a: Vec<Sse> = Vec::new();
    for _ in 0..42 {
        got_a.push(a.next().await);
    }
    let mut got_b: Vec<Sse> = Vec::new();
    for _ in 0..21 {
        got_b.push(b.next().await);
    }
    drop(b);
    let mut b = EventStream::open(&app, &path, &collab.token, got_b.last().unwrap().id).await;
    for _ in 21..42 {
        got_b.push(b.next().await);
    }
    assert_eq!(got_a, got_b, "identical events in identical order");
    let first = sa.id.unwrap();
    for (i, e) in got_a.iter().enumerate() {
        assert_eq!(e.id, Some(first + 1 + i as i64), "consecutive ids");
    }
    let text = |m: &str| -> String {
        got_a
            .iter()
            .filter(|e| e.event == "chunk" && e.data["data"]["messageId"] == m)
            .map(|e| e.data["data"]["delta"].as_str().unwrap())
            .collect()
    };
    let expect = |tag: &str| (0..20).map(|i| format!("{tag}{i} ")).collect::<String>();
    assert_eq!(text(&answers[0]), expect("a"));
    assert_eq!(text(&answers[1]), expect("b"));
    // Interleaved: the answers really streamed at once (neither all before the other).
    let order: Vec<bool> = got_a
        .iter()
        .filter(|e| e.event == "chunk")
        .map(|e| e.data["data"]["messageId"] == answers[0].as_str())
        .collect();
    eprintln!(
        "chunk order (true = answer 1): {} switches",
        order.windows(2).filter(|w| w[0] != w[1]).count()
    );
    // Stored as streamed, in their set, the first one selected.
    let all = sets(&app, &collab, &c).await;
    let ai = &all[1];
    assert_eq!(ai["type"], "ai");
    assert_eq!(ai["selectedBlockType"], "m1");
    let msgs = ai["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["content"], expect("a").as_str());
    assert_eq!(msgs[1]["content"], expect("b").as_str());
    assert_eq!(
        (msgs[0]["selected"].as_bool(), msgs[1]["selected"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (msgs[0]["state"].as_str(), msgs[0]["model"].as_str()),
        (Some("idle"), Some("m1"))
    );
}

async fn selection_is_exclusive_under_concurrent_selects(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Pick").await;
    add(&app, &owner, &c, &collab).await;
    let models = ["m1", "m2", "m3", "m4"];
    let (set, answers) = turn(&app, &owner, &c, "which?", &models).await;
    let mut viewer = EventStream::open(
        &app,
        &format!("/conversations/{c}/events"),
        &collab.token,
        None,
    )
    .await;
    assert_eq!(viewer.next().await.event, "snapshot");
    for round in 0..3 {
        // 16 selects at once, by both participants, of all four answers.
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let m = &answers[(i + round) % 4];
                let who = if i % 2 == 0 { &owner } else { &collab };
                let req = app
                    .client
                    .post(format!(
                        "{}/conversations/{c}/messages/{m}/select",
                        app.base
                    ))
                    .bearer_auth(&who.token)
                    .send();
                tokio::spawn(req)
            })
            .collect();
        let mut last_seen = None;
        for t in tasks {
            let res = t.await.unwrap().unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.unwrap();
            let selected: Vec<&Value> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["selected"] == true)
                .collect();
            assert_eq!(selected.len(), 1, "each answer shows one selected: {body}");
            assert_eq!(body["selectedBlockType"], selected[0]["blockType"]);
            last_seen = Some(body);
        }
        assert!(last_seen.is_some());
        let stored = sets(&app, &owner, &c).await;
        let s = stored.iter().find(|s| s["id"] == set.as_str()).unwrap();
        let selected: Vec<&Value> = s["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["selected"] == true)
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "exactly one selected after round {round}: {s}"
        );
        assert_eq!(s["selectedBlockType"], selected[0]["blockType"]);
        // The viewer's last `message_selected` names the stored selection.
        let mut last = None;
        for _ in 0..16 {
            let e = viewer.next().await;
            assert_eq!(e.event, "message_selected");
            last = Some(e);
        }
        assert_eq!(last.unwrap().data["data"]["messageId"], selected[0]["id"]);
    }
}

async fn a_branch_holds_exactly_the_messages_up_to_its_point(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Trunk").await;
    add(&app, &owner, &c, &collab).await;
    say(&app, &owner, &c, "q1").await;
    crate::conversations::post_message(
        &app,
        &owner,
        &c,
        json!({ "content": "a1", "role": "assistant" }),
    )
    .await;
    let (set, answers) = turn(&app, &owner, &c, "q2", &["m1", "m2"]).await;
    for (m, text) in answers.iter().zip(["answer one", "answer two"]) {
        chunk(&app, &owner, &c, m, text).await;
    }
    let pick = app
        .post(
            &format!("/conversations/{c}/messages/{}/select", answers[1]),
            &collab.token,
            json!({}),
        )
        .await;
    assert_eq!(pick.status, StatusCode::OK, "{}", pick.body);
    say(&app, &owner, &c, "q3 after the branch point").await;

    // An outsider cannot branch it; a participant can, and owns the branch.
    let refused = app
        .post(
            &format!("/conversations/{c}/branch"),
            &outsider.token,
            json!({ "messageId": answers[0] }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let b = app
        .post(
            &format!("/conversations/{c}/branch"),
            &collab.token,
            json!({ "messageId": answers[0], "title": "Branch" }),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    assert_eq!(b.body["parentChatId"], c.as_str());
    assert_eq!(b.body["ownerId"], collab.id.as_str());
    assert_eq!(b.body["title"], "Branch");
    let branch = b.id();

    let source = sets(&app, &owner, &c).await;
    let copied = sets(&app, &collab, &branch).await;
    assert_eq!(source.len(), 5);
    assert_eq!(
        copied.len(),
        4,
        "q1, a1, the q2 set and the answer set; not q3"
    );
    let shape = |s: &Value| -> Value {
        json!({
            "type": s["type"],
            "selectedBlockType": s["selectedBlockType"],
            "messages": s["messages"].as_array().unwrap().iter().map(|m| json!({
                "content": m["content"], "role": m["role"], "model": m["model"],
                "blockType": m["blockType"], "selected": m["selected"], "userId": m["userId"],
            })).collect::<Vec<_>>(),
        })
    };
    for (s, b) in source.iter().zip(&copied) {
        assert_eq!(shape(s), shape(b));
        assert_ne!(s["id"], b["id"]);
    }
    assert_ne!(copied[3]["id"], json!(set));
    assert_eq!(
        copied[3]["selectedBlockType"], "m2",
        "the selection is carried over"
    );
    // Copies are settled, and the flat list shows the same messages.
    for m in copied[3]["messages"].as_array().unwrap() {
        assert_eq!(m["state"], "idle");
    }
    let flat = app
        .get(&format!("/conversations/{branch}/messages"), &collab.token)
        .await;
    let contents: Vec<&str> = flat.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["q1", "a1", "q2", "answer one", "answer two"]);
    // The source is untouched; the branch is the collaborator's alone.
    assert_eq!(
        app.get(&format!("/conversations/{c}/messages"), &owner.token)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        app.get(&format!("/conversations/{branch}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Branching at a message of another conversation is a 404.
    let wrong = app
        .post(
            &format!("/conversations/{branch}/branch"),
            &collab.token,
            json!({ "messageId": answers[0] }),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
}

async fn flat_messages_are_sets_of_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Flat").await;
    let q = say(&app, &owner, &c, "hello").await;
    // The flat message answers exactly as before (no set fields in it).
    assert!(q.get("setId").is_none(), "{q}");
    let a = crate::conversations::post_message(
        &app,
        &owner,
        &c,
        json!({ "content": "hi", "role": "assistant", "model": "m" }),
    )
    .await;
    let all = sets(&app, &owner, &c).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["id"], q["id"]);
    assert_eq!(all[0]["type"], "user");
    assert_eq!(all[1]["type"], "ai");
    for (s, m) in all.iter().zip([&q, &a]) {
        let msgs = s["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["id"], m["id"]);
        assert_eq!(msgs[0]["content"], m["content"]);
        assert_eq!(msgs[0]["selected"], true);
    }
    // Sets and flat messages mix in one conversation, in order.
    let (_, answers) = turn(&app, &owner, &c, "more", &["m1"]).await;
    let list = app
        .get(&format!("/conversations/{c}/messages"), &owner.token)
        .await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[3], answers[0]);
    // Paged like every list.
    let page = app
        .get(&format!("/conversations/{c}/sets?limit=3"), &owner.token)
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 3);
    let cursor = page.body["nextCursor"].as_str().unwrap().to_string();
    let rest = app
        .get(
            &format!("/conversations/{c}/sets?limit=3&cursor={cursor}"),
            &owner.token,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["nextCursor"], Value::Null);
}

async fn quick_chats_summaries_and_parts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let q = app
        .post(
            &format!("/projects/{project}/conversations"),
            &owner.token,
            json!({ "title": "Quick", "isQuickChat": true, "summary": "short" }),
        )
        .await;
    assert_eq!(q.status, StatusCode::CREATED, "{}", q.body);
    assert_eq!(
        (q.body["isQuickChat"].as_bool(), q.body["summary"].as_str()),
        (Some(true), Some("short"))
    );
    assert_eq!(q.body["parentChatId"], Value::Null);
    let c = q.id();
    let plain = conversation(&app, &owner, &project, "Plain").await;
    let p = app
        .get(&format!("/conversations/{plain}"), &owner.token)
        .await;
    assert_eq!(
        (p.body["isQuickChat"].as_bool(), &p.body["summary"]),
        (Some(false), &Value::Null)
    );

    add(&app, &owner, &c, &collab).await;
    // The summary needs the right to rename: the owner's, not a participant's by default.
    let denied = app
        .patch(
            &format!("/conversations/{c}"),
            &collab.token,
            json!({ "summary": "mine" }),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let ok = app
        .patch(
            &format!("/conversations/{c}"),
            &owner.token,
            json!({ "summary": "longer summary" }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["summary"], "longer summary");
    let too_long = app
        .patch(
            &format!("/conversations/{c}"),
            &owner.token,
            json!({ "summary": "x".repeat(10_001) }),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Parts: given with the message, and appended by its author as the answer goes.
    let (_, answers) = turn(&app, &owner, &c, "use tools", &["m1"]).await;
    let m = &answers[0];
    let mut viewer = EventStream::open(
        &app,
        &format!("/conversations/{c}/events"),
        &collab.token,
        None,
    )
    .await;
    assert_eq!(viewer.next().await.event, "snapshot");
    let part =
        json!({ "level": 1, "content": "thinking", "toolCalls": [{"id": "t1", "name": "search"}] });
    let added = app
        .post(
            &format!("/conversations/{c}/messages/{m}/parts"),
            &owner.token,
            part.clone(),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.body["index"], 0);
    let e = viewer.next().await;
    assert_eq!(e.event, "message_part");
    assert_eq!(e.data["data"]["part"], part);
    let other = app
        .post(
            &format!("/conversations/{c}/messages/{m}/parts"),
            &collab.token,
            part.clone(),
        )
        .await;
    assert_eq!(
        other.status,
        StatusCode::FORBIDDEN,
        "only the message's author adds parts"
    );
    let result = json!({ "level": 1, "content": "", "toolResults": [{"id": "t1", "ok": true}] });
    app.post(
        &format!("/conversations/{c}/messages/{m}/parts"),
        &owner.token,
        result.clone(),
    )
    .await;
    let stored = sets(&app, &collab, &c).await;
    let parts = &stored[1]["messages"][0]["parts"];
    assert_eq!(parts, &json!([part, result]));
    // A review answer, with parts from the start.
    let set = stored[1]["id"].as_str().unwrap();
    let review = add_to_set(&app, &owner, &c, set, json!({ "content": "looks right", "isReview": true, "blockType": "review", "parts": [{"level": 0, "content": "checked"}] })).await;
    assert_eq!(
        (review["isReview"].as_bool(), review["selected"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(review["parts"][0]["content"], "checked");
}

async fn set_refusals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Rules").await;
    let set = new_set(&app, &owner, &c, "ai").await;
    // Outsiders see nothing of it.
    for (path, body) in [
        (
            format!("/conversations/{c}/sets"),
            json!({ "type": "user" }),
        ),
        (
            format!("/conversations/{c}/sets/{set}/messages"),
            json!({ "content": "x" }),
        ),
    ] {
        assert_eq!(
            app.post(&path, &outsider.token, body).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.get(&format!("/conversations/{c}/sets"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Bad bodies.
    for body in [
        json!({ "type": "robot" }),
        json!({ "type": "ai", "level": -1 }),
        json!({ "type": "ai", "extra": 1 }),
    ] {
        let a = app
            .post(
                &format!("/conversations/{c}/sets"),
                &owner.token,
                body.clone(),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            a.body
        );
    }
    let path = format!("/conversations/{c}/sets/{set}/messages");
    for body in [
        json!({ "content": "x", "role": "user", "state": "streaming" }),
        json!({ "content": "x", "blockType": "b".repeat(101) }),
        json!({ "content": "x", "parts": [{ "level": 0, "content": "\u{0}" }] }),
        json!({ "content": "x", "parts": [{ "level": 0, "toolCalls": "y".repeat(20_000) }] }),
    ] {
        let a = app.post(&path, &owner.token, body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    }
    let missing = app
        .post(
            &format!("/conversations/{c}/sets/nope/messages"),
            &owner.token,
            json!({ "content": "x" }),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = app
        .post(
            &format!("/conversations/{c}/messages/nope/select"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Not a participant yet: the collaborator cannot select; once added they can.
    let m = add_to_set(&app, &owner, &c, &set, json!({ "content": "answer" })).await;
    let id = m["id"].as_str().unwrap();
    let select = format!("/conversations/{c}/messages/{id}/select");
    assert_eq!(
        app.post(&select, &collab.token, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    add(&app, &owner, &c, &collab).await;
    assert_eq!(
        app.post(&select, &collab.token, json!({})).await.status,
        StatusCode::OK
    );
}
