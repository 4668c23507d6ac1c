//! Share links (plan 003), tool-call idempotency and usage attribution
//! (plan 004 §3.3 and the usage table).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::conversations::{add, cast, conversation, post_message, say, Cast};
use crate::helpers::{Backend, TestApp};

both_backends!(
    share_view_fork_join_revoke,
    concurrent_tool_calls_create_one_execution,
    usage_is_charged_to_the_user_who_triggered_it
);

async fn share_view_fork_join_revoke(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    // Someone of another org entirely, with a project of their own.
    let stranger = app.signup("sam@far.example", "Sam").await;
    let sams_ws = app.workspace(&stranger, "personal").await;
    let sams_project = app.create_project(&stranger, &sams_ws, "Mine").await;

    let c = conversation(&app, &owner, &project, "Worth sharing").await;
    say(&app, &owner, &c, "q1").await;
    say(&app, &owner, &c, "q2").await;
    // Only the owner creates share links.
    add(&app, &owner, &c, &collab).await;
    let a = app
        .post(
            &format!("/conversations/{c}/share"),
            &collab.token,
            Value::Null,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .post(
            &format!("/conversations/{c}/share"),
            &outsider.token,
            Value::Null,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let share = app
        .post(
            &format!("/conversations/{c}/share"),
            &owner.token,
            Value::Null,
        )
        .await;
    assert_eq!(share.status, StatusCode::CREATED, "{}", share.body);
    let share_id = share.body["shareId"].as_str().unwrap().to_string();
    let link = format!("/shares/{share_id}");

    // Anyone signed in reads it, read-only.
    let view = app.get(&link, &stranger.token).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.body["conversation"]["id"], c.as_str());
    assert_eq!(view.body["conversation"]["role"], "viewer");
    assert_eq!(view.body["owner"]["displayName"], "Olga");
    // Readers through a link see names, not email addresses.
    assert!(view.body["owner"].get("email").is_none(), "{}", view.body);
    assert!(view.body["messages"][0]["senderUser"]
        .get("email")
        .is_none());
    assert_eq!(view.body["messages"].as_array().unwrap().len(), 2);
    let anon = app.call(reqwest::Method::GET, &link, None, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    // The link gives no other access to the conversation itself.
    assert_eq!(
        app.get(&format!("/conversations/{c}"), &stranger.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let a = app
        .post(
            &format!("/conversations/{c}/messages"),
            &stranger.token,
            json!({ "content": "hi" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/shares/not-a-share", &stranger.token).await.status,
        StatusCode::NOT_FOUND
    );
    // A share id is a secret: 43 characters nobody can guess.
    assert_eq!(share_id.len(), 43);

    // "Continue privately": a copy in the viewer's own project, owned by them.
    let fork = app
        .post(
            &format!("{link}/fork"),
            &stranger.token,
            json!({ "projectId": sams_project }),
        )
        .await;
    assert_eq!(fork.status, StatusCode::CREATED, "{}", fork.body);
    let fork_id = fork.id();
    assert_ne!(fork_id, c);
    assert_eq!(fork.body["ownerId"], stranger.id.as_str());
    assert_eq!(fork.body["projectId"], sams_project.as_str());
    assert_eq!(fork.body["forkedFrom"], c.as_str());
    assert_eq!(fork.body["title"], "Worth sharing");
    let copied = app
        .get(
            &format!("/conversations/{fork_id}/messages"),
            &stranger.token,
        )
        .await;
    let texts: Vec<&str> = copied.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["q1", "q2"]);
    // The fork is private: writing to it does not touch the original.
    say(&app, &stranger, &fork_id, "my own follow-up").await;
    assert_eq!(
        app.get(&format!("/conversations/{c}/messages"), &owner.token)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get(&format!("/conversations/{fork_id}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Forking into a project the viewer cannot write to is refused.
    let a = app
        .post(
            &format!("{link}/fork"),
            &stranger.token,
            json!({ "projectId": project }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // "Continue with creator": the viewer joins the shared conversation.
    let join = app
        .post(&format!("{link}/join"), &stranger.token, Value::Null)
        .await;
    assert_eq!(join.status, StatusCode::OK, "{}", join.body);
    assert_eq!(join.body["id"], c.as_str());
    assert_eq!(join.body["isCollaborative"], true);
    assert_eq!(join.body["role"], "editor");
    say(&app, &stranger, &c, "hello from Sam").await;
    let sams_list = app.get("/conversations", &stranger.token).await;
    let listed: HashSet<&str> = sams_list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, HashSet::from([c.as_str(), fork_id.as_str()]));
    // Joining again changes nothing.
    let again = app
        .post(&format!("{link}/join"), &stranger.token, Value::Null)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let people = app
        .get(&format!("/conversations/{c}/participants"), &owner.token)
        .await;
    assert_eq!(people.body["items"].as_array().unwrap().len(), 3);

    // A lost link: the owner revokes every link of the conversation at once.
    let spare = app
        .post(
            &format!("/conversations/{c}/share"),
            &owner.token,
            Value::Null,
        )
        .await;
    let spare = format!("/shares/{}", spare.body["shareId"].as_str().unwrap());
    assert_eq!(
        app.get(&spare, &outsider.token).await.status,
        StatusCode::OK
    );
    let all = app
        .delete(&format!("/conversations/{c}/shares"), &stranger.token)
        .await;
    assert_eq!(all.status, StatusCode::FORBIDDEN);
    let all = app
        .delete(&format!("/conversations/{c}/shares"), &owner.token)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["revoked"], 2);
    assert_eq!(
        app.get(&spare, &outsider.token).await.status,
        StatusCode::GONE
    );
    let share = app
        .post(
            &format!("/conversations/{c}/share"),
            &owner.token,
            Value::Null,
        )
        .await;
    let link = format!("/shares/{}", share.body["shareId"].as_str().unwrap());
    // Revoking: only the owner; afterwards the link answers 410 and joins fail.
    assert_eq!(
        app.delete(&link, &stranger.token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&link, &owner.token).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.get(&link, &outsider.token).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(gone.code(), "gone");
    assert_eq!(
        app.post(&format!("{link}/join"), &outsider.token, Value::Null)
            .await
            .status,
        StatusCode::GONE
    );
    // Those who joined keep their participation.
    assert_eq!(
        app.get(&format!("/conversations/{c}"), &stranger.token)
            .await
            .status,
        StatusCode::OK
    );
}

async fn concurrent_tool_calls_create_one_execution(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Tools").await;
    add(&app, &owner, &c, &collab).await;
    let question = say(&app, &owner, &c, "search the web").await;
    let m = post_message(
        &app,
        &owner,
        &c,
        json!({ "content": "", "role": "assistant", "state": "streaming" }),
    )
    .await;
    // Tool calls belong to assistant messages.
    let on_question = format!(
        "/conversations/{c}/messages/{}/tools",
        question["id"].as_str().unwrap()
    );
    let a = app
        .post(
            &on_question,
            &owner.token,
            json!({ "toolCallId": "x", "toolName": "y" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let tools = format!(
        "/conversations/{c}/messages/{}/tools",
        m["id"].as_str().unwrap()
    );
    let body =
        json!({ "toolCallId": "call_abc", "toolName": "web_search", "args": { "q": "yjs" } });

    // Both viewers' clients try to run the tool call at once, many times.
    let answers = app
        .post_concurrently(24, &tools, &[&owner.token, &collab.token], body.clone())
        .await;
    let mut created = 0;
    let mut ids = HashSet::new();
    let mut starter = String::new();
    for (status, body) in answers {
        match status {
            StatusCode::CREATED => {
                created += 1;
                starter = body["startedBy"].as_str().unwrap().to_string();
            }
            StatusCode::OK => {}
            other => panic!("unexpected {other}: {body}"),
        }
        assert_eq!(body["status"], "running");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1, "exactly one attempt creates the execution");
    assert_eq!(ids.len(), 1, "everyone gets the same record");

    // Only the one who got 201 reports the outcome, once; later attempts
    // return the finished record.
    let (runner, other) = if starter == owner.id {
        (&owner, &collab)
    } else {
        (&collab, &owner)
    };
    let finish = format!("/conversations/{c}/tools/call_abc");
    let a = app
        .post(
            &finish,
            &other.token,
            json!({ "status": "completed", "result": "fake" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let done = app
        .post(
            &finish,
            &runner.token,
            json!({ "status": "completed", "result": { "hits": 3 } }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["result"], json!({ "hits": 3 }));
    let twice = app
        .post(
            &finish,
            &runner.token,
            json!({ "status": "failed", "error": "late" }),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let again = app.post(&tools, &owner.token, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"], "completed");
    assert_eq!(again.body["result"], json!({ "hits": 3 }));
    let got = app.get(&finish, &collab.token).await;
    assert!(got.body["startedAt"].as_i64().is_some());
    assert!(got.body["completedAt"].as_i64().is_some());

    // Outsiders see nothing; bad input is refused.
    assert_eq!(
        app.post(&tools, &outsider.token, body.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&finish, &outsider.token).await.status,
        StatusCode::NOT_FOUND
    );
    let a = app
        .post(
            &tools,
            &owner.token,
            json!({ "toolCallId": "", "toolName": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let a = app
        .post(&finish, &owner.token, json!({ "status": "exploded" }))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get(&format!("/conversations/{c}/tools/never"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn usage_is_charged_to_the_user_who_triggered_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Costs").await;
    add(&app, &owner, &c, &collab).await;
    // Carl asks; the answer (attributed to Carl) is generated by Olga's client.
    say(&app, &collab, &c, "expensive question").await;
    let answer = post_message(
        &app,
        &collab,
        &c,
        json!({ "content": "answer", "role": "assistant", "model": "big" }),
    )
    .await;
    let answer_id = || answer["id"].as_str().unwrap().to_string();
    // A second answer for Carl, whose usage is recorded after he leaves.
    let later = post_message(
        &app,
        &collab,
        &c,
        json!({ "content": "later answer", "role": "assistant", "model": "big" }),
    )
    .await;
    let later_id = later["id"].as_str().unwrap().to_string();
    let record = |token: String, model: &str, i: i64, o: i64, message: Option<String>| {
        let body = match message {
            Some(m) => {
                json!({ "model": model, "inputTokens": i, "outputTokens": o, "conversationId": c, "messageId": m })
            }
            None => json!({ "model": model, "inputTokens": i, "outputTokens": o }),
        };
        let app = &app;
        async move { app.post("/usage", &token, body).await }
    };
    let a = record(owner.token.clone(), "big", 100, 400, Some(answer_id())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.body["userId"],
        collab.id.as_str(),
        "charged to the triggering user"
    );
    let a = record(owner.token.clone(), "big", 10, 20, None).await;
    assert_eq!(a.body["userId"], owner.id.as_str());
    let a = record(collab.token.clone(), "small", 5, 5, None).await;
    assert_eq!(a.status, StatusCode::CREATED);
    // A non-participant cannot charge usage to a conversation they cannot see.
    let a = record(outsider.token.clone(), "big", 1, 1, Some(answer_id())).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    for bad in [
        json!({ "model": "m", "inputTokens": -1, "outputTokens": 0 }),
        json!({ "model": "", "inputTokens": 1, "outputTokens": 0 }),
        json!({ "model": "m", "inputTokens": 1, "outputTokens": 0, "messageId": "x" }),
        json!({ "model": "m", "inputTokens": 1 }),
    ] {
        let a = app.post("/usage", &owner.token, bad.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    let carls = app.get("/usage?days=7", &collab.token).await;
    assert_eq!(carls.status, StatusCode::OK);
    let totals = carls.body["totals"].as_array().unwrap();
    let big: Vec<&Value> = totals.iter().filter(|t| t["model"] == "big").collect();
    assert_eq!(big.len(), 1);
    assert_eq!(
        (
            big[0]["inputTokens"].as_i64(),
            big[0]["outputTokens"].as_i64()
        ),
        (Some(100), Some(400))
    );
    assert_eq!(big[0]["day"].as_str().unwrap().len(), 10);
    let olgas = app.get("/usage", &owner.token).await;
    let totals = olgas.body["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0]["inputTokens"], 10);

    // The org's owner (Olga, the first user of chat.dev) sees it per user and day.
    let org_id = app.session(&owner).await["user"]["orgId"]
        .as_str()
        .unwrap()
        .to_string();
    let org = app
        .get(&format!("/orgs/{org_id}/usage?days=1"), &owner.token)
        .await;
    assert_eq!(org.status, StatusCode::OK, "{}", org.body);
    let mut rows: Vec<(String, String, i64)> = org.body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["userId"].as_str().unwrap().to_string(),
                t["model"].as_str().unwrap().to_string(),
                t["inputTokens"].as_i64().unwrap() + t["outputTokens"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    let mut want = vec![
        (collab.id.clone(), "big".to_string(), 500),
        (collab.id.clone(), "small".to_string(), 10),
        (owner.id.clone(), "big".to_string(), 30),
    ];
    want.sort();
    assert_eq!(rows, want);
    // Members may not read the org's usage; other orgs cannot see it exists.
    assert_eq!(
        app.get(&format!("/orgs/{org_id}/usage"), &collab.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let stranger = app.signup("sam@far.example", "Sam").await;
    assert_eq!(
        app.get(&format!("/orgs/{org_id}/usage"), &stranger.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/usage?days=0", &owner.token).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Nobody is billed for a conversation they no longer take part in: Carl
    // leaves, and usage recorded for his answer is charged to the recorder.
    let left = app
        .delete(
            &format!("/conversations/{c}/participants/{}", collab.id),
            &collab.token,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    let a = record(owner.token.clone(), "big", 7, 7, Some(later_id)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["userId"], owner.id.as_str());
    // Only assistant messages name who pays.
    let question = say(&app, &owner, &c, "a user message").await;
    let a = record(
        owner.token.clone(),
        "big",
        1,
        1,
        Some(question["id"].as_str().unwrap().to_string()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}
