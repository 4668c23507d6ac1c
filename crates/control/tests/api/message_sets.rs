//! Plan 004's chat model on conversations: message sets (a user set and an
//! ai set per turn, several answers per ai set, one selected), message
//! parts, quick chats, summaries and branches. Flat conversations keep
//! working: a flat message is a set of one.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tandem_control::store::message_sets::{
    MAX_BRANCH_BYTES, MAX_BRANCH_MESSAGES, MAX_SET_MESSAGES, PAGE_BYTES, PAGE_MESSAGES,
};
use tandem_protocol::http::MAX_PAGE;

use crate::both_backends;
use crate::conversations::{add, cast, conversation, say, Cast};
use crate::helpers::{Backend, EventStream, Sse, TestApp, TestUser};

both_backends!(
    two_answers_stream_at_once_to_two_viewers_in_the_same_order,
    selection_is_exclusive_under_concurrent_selects,
    a_branch_holds_exactly_the_messages_up_to_its_point,
    flat_messages_are_sets_of_one,
    quick_chats_summaries_and_parts,
    set_refusals,
    a_page_of_sets_stops_at_the_message_budget,
    a_page_of_sets_stops_at_the_byte_budget,
    a_branch_copies_at_most_the_message_bound,
    a_branch_copies_at_most_the_byte_bound
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

/// One page of `GET …/sets?limit=200` (after `cursor`): the sets and the next cursor.
async fn page(
    app: &TestApp,
    who: &TestUser,
    c: &str,
    cursor: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let after = cursor.map(|k| format!("&cursor={k}")).unwrap_or_default();
    let a = app
        .get(
            &format!("/conversations/{c}/sets?limit={MAX_PAGE}{after}"),
            &who.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let next = a.body["nextCursor"].as_str().map(str::to_string);
    (a.body["items"].as_array().unwrap().clone(), next)
}

fn ids_of(sets: &[Value]) -> Vec<String> {
    sets.iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Messages and bytes (content and part contents: a lower bound of what is
/// stored) of a page of sets.
fn weight(sets: &[Value]) -> (i64, i64) {
    let messages: Vec<&Value> = sets
        .iter()
        .flat_map(|s| s["messages"].as_array().unwrap())
        .collect();
    let bytes = messages
        .iter()
        .map(|m| {
            let parts: usize = m["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["content"].as_str().unwrap_or("").len())
                .sum();
            (m["content"].as_str().unwrap().len() + parts) as i64
        })
        .sum();
    (messages.len() as i64, bytes)
}

async fn a_page_of_sets_stops_at_the_message_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Many answers").await;
    // Full sets: as many as fit in a page's messages, and one more.
    let fit = (PAGE_MESSAGES / MAX_SET_MESSAGES) as usize;
    let mut all = Vec::new();
    for _ in 0..=fit {
        let set = new_set(&app, &owner, &c, "ai").await;
        for i in 0..MAX_SET_MESSAGES {
            add_to_set(
                &app,
                &owner,
                &c,
                &set,
                json!({ "content": format!("answer {i}") }),
            )
            .await;
        }
        all.push(set);
    }
    // 200 sets asked for, but a page holds at most 200 messages: the client pages on.
    let (first, cursor) = page(&app, &owner, &c, None).await;
    assert_eq!(
        ids_of(&first),
        all[..fit],
        "whole sets, in order, up to the budget"
    );
    assert!(weight(&first).0 <= PAGE_MESSAGES);
    let cursor = cursor.expect("a cursor to the sets left out");
    let (rest, end) = page(&app, &owner, &c, Some(&cursor)).await;
    assert_eq!(ids_of(&rest), all[fit..]);
    assert_eq!(
        rest[0]["messages"].as_array().unwrap().len() as i64,
        MAX_SET_MESSAGES
    );
    assert_eq!(end, None);
}

/// An answer in `set` of `content` bytes, streamed in chunks, and parts
/// holding `part` bytes of content, sent as a client does: each request
/// under the body limit. Returns its id.
async fn heavy_answer(
    app: &TestApp,
    who: &TestUser,
    c: &str,
    set: &str,
    content: usize,
    part: usize,
) -> String {
    const PIECE: usize = 50_000;
    let m = add_to_set(app, who, c, set, json!({ "state": "streaming" })).await;
    let id = m["id"].as_str().unwrap().to_string();
    for n in (0..content)
        .step_by(PIECE)
        .map(|at| PIECE.min(content - at))
    {
        chunk(app, who, c, &id, &"a".repeat(n)).await;
    }
    for n in (0..part).step_by(PIECE).map(|at| PIECE.min(part - at)) {
        let a = app
            .post(
                &format!("/conversations/{c}/messages/{id}/parts"),
                &who.token,
                json!({ "level": 0, "content": "p".repeat(n) }),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    id
}

async fn a_page_of_sets_stops_at_the_byte_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Long answers").await;
    // Half of each answer's weight is in its parts: they count too.
    let (content, part) = (400_000, 400_000);
    let (lo, hi) = ((content + part) as i64, (content + part + 1_000) as i64);
    let fit = (PAGE_BYTES / lo) as usize;
    assert_eq!(
        PAGE_BYTES / hi,
        fit as i64,
        "sizes leave no doubt about what fits"
    );
    let mut all = Vec::new();
    for _ in 0..=fit {
        let set = new_set(&app, &owner, &c, "ai").await;
        heavy_answer(&app, &owner, &c, &set, content, part).await;
        all.push(set);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (sets, next) = page(&app, &owner, &c, cursor.as_deref()).await;
        assert!(weight(&sets).1 <= PAGE_BYTES, "a page within the budget");
        if pages == 0 {
            assert_eq!(ids_of(&sets), all[..fit], "as many sets as fit");
        }
        seen.extend(ids_of(&sets));
        pages += 1;
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!((seen, pages), (all, 2), "every set once, over two pages");

    // A set larger than the budget alone still makes a page of its own.
    let big = conversation(&app, &owner, &project, "One big turn").await;
    let set = new_set(&app, &owner, &big, "ai").await;
    for _ in 0..=fit {
        heavy_answer(&app, &owner, &big, &set, content, part).await;
    }
    let small = new_set(&app, &owner, &big, "user").await;
    add_to_set(
        &app,
        &owner,
        &big,
        &small,
        json!({ "content": "and then?" }),
    )
    .await;
    let (first, cursor) = page(&app, &owner, &big, None).await;
    assert_eq!(ids_of(&first), [set]);
    assert!(weight(&first).1 > PAGE_BYTES);
    let (rest, end) = page(&app, &owner, &big, cursor.as_deref()).await;
    assert_eq!((ids_of(&rest), end), (vec![small], None));
}

/// Stores `n` copies of a message of a conversation, each a set of one
/// like `set` (with its parts) at the same seq, directly in the database
/// (portable SQL): a big conversation without as many requests.
fn copies(app: &TestApp, message: &str, set: &str, n: i64) {
    let numbers =
        format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})");
    let id = format!("'{message}c' || CAST(n.i AS TEXT)");
    app.sql(&format!(
        "{numbers} INSERT INTO message_sets \
         (id, conversation_id, seq, set_type, level, selected_block_type, created_by, created_at) \
         SELECT {id}, s.conversation_id, s.seq, s.set_type, s.level, s.selected_block_type, \
         s.created_by, s.created_at FROM message_sets s, n WHERE s.id = '{set}'"
    ));
    app.sql(&format!(
        "{numbers} INSERT INTO messages (id, conversation_id, seq, user_id, role, content, state, \
         error_message, model, created_at, updated_at) \
         SELECT {id}, m.conversation_id, m.seq, m.user_id, m.role, m.content, m.state, \
         m.error_message, m.model, m.created_at, m.updated_at FROM messages m, n \
         WHERE m.id = '{message}'"
    ));
    app.sql(&format!(
        "{numbers} INSERT INTO message_set_members \
         (message_id, set_id, block_type, selected, is_review, parts) \
         SELECT {id}, {id}, b.block_type, b.selected, b.is_review, b.parts \
         FROM message_set_members b, n WHERE b.message_id = '{message}'"
    ));
}

fn count(app: &TestApp, query: &str) -> i64 {
    app.sql_texts(&format!("SELECT CAST(COUNT(*) AS TEXT) AS t FROM {query}"))[0]
        .parse()
        .unwrap()
}

async fn branch_at(
    app: &TestApp,
    who: &TestUser,
    c: &str,
    message: &str,
) -> crate::helpers::Answer {
    app.post(
        &format!("/conversations/{c}/branch"),
        &who.token,
        json!({ "messageId": message }),
    )
    .await
}

async fn a_branch_copies_at_most_the_message_bound(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Long chat").await;
    let seed = say(&app, &owner, &c, "seed").await;
    let seed = seed["id"].as_str().unwrap();
    copies(&app, seed, seed, MAX_BRANCH_MESSAGES - 2);
    let point = say(&app, &owner, &c, "the last message a branch may copy").await;
    let over = say(&app, &owner, &c, "one too many").await;
    assert_eq!(
        count(&app, &format!("messages WHERE conversation_id = '{c}'")),
        MAX_BRANCH_MESSAGES + 1
    );

    let at = over["id"].as_str().unwrap();
    branch_refused(
        &app,
        &owner,
        &c,
        at,
        &format!("at most {MAX_BRANCH_MESSAGES} messages"),
    )
    .await;

    // Exactly the bound is copied. Only on SQLite: the copy makes about eight
    // statements per message, which on PostgreSQL (a round trip each) takes
    // ~5 s for 2,000 messages in a debug build; the refusal above and the
    // byte test's successful branch run the same count on both.
    if backend == Backend::Sqlite {
        let b = branch_at(&app, &owner, &c, point["id"].as_str().unwrap()).await;
        assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
        let branch = b.id();
        assert_eq!(
            count(
                &app,
                &format!("messages WHERE conversation_id = '{branch}'")
            ),
            MAX_BRANCH_MESSAGES
        );
    }
}

/// Branching `c` at message `at` is refused with 413, naming the bound
/// (`says`), and makes no conversation.
async fn branch_refused(app: &TestApp, owner: &TestUser, c: &str, at: &str, says: &str) {
    let refused = branch_at(app, owner, c, at).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    assert_eq!(refused.code(), "payload_too_large");
    let why = refused.body["error"]["message"].as_str().unwrap();
    assert!(why.contains(says), "{why}");
    assert_eq!(
        count(app, &format!("conversations WHERE parent_chat_id = '{c}'")),
        0
    );
}

async fn a_branch_copies_at_most_the_byte_bound(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Heavy chat").await;
    say(&app, &owner, &c, "before").await;
    // A third of each answer's weight is in its parts: they count too.
    let (content, part) = (1_000_000, 500_000);
    let (lo, hi) = ((content + part) as i64, (content + part + 1_000) as i64);
    let fit = MAX_BRANCH_BYTES / lo;
    assert_eq!(
        MAX_BRANCH_BYTES / hi,
        fit,
        "sizes leave no doubt about what fits"
    );
    let set = new_set(&app, &owner, &c, "ai").await;
    let heavy = heavy_answer(&app, &owner, &c, &set, content, part).await;
    let heavy = heavy.as_str();
    // Far fewer messages than the message bound, but one answer more than the bytes allow.
    copies(&app, heavy, &set, fit);
    assert!(fit + 2 <= MAX_BRANCH_MESSAGES);

    branch_refused(
        &app,
        &owner,
        &c,
        heavy,
        &format!("at most {} MiB", MAX_BRANCH_BYTES >> 20),
    )
    .await;

    // One answer fewer fits.
    app.sql(&format!(
        "DELETE FROM message_set_members WHERE message_id = '{heavy}c1'"
    ));
    app.sql(&format!("DELETE FROM messages WHERE id = '{heavy}c1'"));
    let b = branch_at(&app, &owner, &c, heavy).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    assert_eq!(
        count(
            &app,
            &format!("messages WHERE conversation_id = '{}'", b.id())
        ),
        fit + 1
    );
}
