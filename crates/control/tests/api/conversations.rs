//! Plan 003's testing checklist for collaborative conversations: the list,
//! access, sending, updating, deleting, attribution and the edge cases.
//! Everyone is in one team workspace, so the project is visible to all:
//! only the conversation's owner and participants may see a conversation.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, EventStream, TestApp, TestUser};

both_backends!(
    list_as_owner_and_as_collaborator,
    pagination_walks_every_item_once,
    get_and_send,
    update_rules,
    delete_rules,
    attribution,
    edge_cases,
    bad_input
);

pub struct Cast {
    pub owner: TestUser,
    pub collab: TestUser,
    pub outsider: TestUser,
    pub project: String,
}

pub async fn cast(app: &TestApp) -> Cast {
    let owner = app.signup("olga@chat.dev", "Olga").await;
    let collab = app.signup("carl@chat.dev", "Carl").await;
    let outsider = app.signup("nina@chat.dev", "Nina").await;
    let ws = app.workspace(&owner, "team").await;
    let project = app.create_project(&owner, &ws, "Research").await;
    Cast {
        owner,
        collab,
        outsider,
        project,
    }
}

pub async fn conversation(app: &TestApp, who: &TestUser, project: &str, title: &str) -> String {
    let a = app
        .post(
            &format!("/projects/{project}/conversations"),
            &who.token,
            json!({ "title": title }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["ownerId"], who.id.as_str());
    assert_eq!(a.body["isCollaborative"], false);
    assert_eq!(a.body["lastMessageAt"], Value::Null);
    a.id()
}

pub async fn add(app: &TestApp, owner: &TestUser, c: &str, who: &TestUser) {
    let a = app
        .post(
            &format!("/conversations/{c}/participants"),
            &owner.token,
            json!({ "userId": who.id }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body["user"]["displayName"].is_string());
}

/// Posts a message (any `SendMessage` body); asserts 201.
pub async fn post_message(app: &TestApp, who: &TestUser, c: &str, body: Value) -> Value {
    let a = app
        .post(&format!("/conversations/{c}/messages"), &who.token, body)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body
}

pub async fn say(app: &TestApp, who: &TestUser, c: &str, text: &str) -> Value {
    post_message(app, who, c, json!({ "content": text })).await
}

/// `lastMessageAt` has millisecond resolution: messages meant to be ordered
/// by time are sent on different milliseconds.
async fn next_ms() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

async fn list_as_owner_and_as_collaborator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let ws = app.workspace(&owner, "team").await;
    let other_project = app.create_project(&owner, &ws, "Other").await;
    let shared = conversation(&app, &owner, &project, "Shared").await;
    let private = conversation(&app, &owner, &project, "Private").await;
    let elsewhere = conversation(&app, &owner, &other_project, "Elsewhere").await;
    add(&app, &owner, &shared, &collab).await;
    let carls_own = conversation(&app, &collab, &project, "Carl's own").await;

    // Order of last messages: private, then elsewhere, then shared (newest).
    say(&app, &owner, &private, "one").await;
    next_ms().await;
    say(&app, &owner, &elsewhere, "two").await;
    next_ms().await;
    say(&app, &collab, &shared, "three").await;

    // Owner: own conversations (the collaborative one included), newest first;
    // conversations without messages last.
    let mine = app.get("/conversations", &owner.token).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        ids(&mine.body),
        vec![shared.clone(), elsewhere.clone(), private.clone()]
    );
    assert_eq!(mine.body["nextCursor"], Value::Null);
    assert_eq!(mine.body["items"][0]["isCollaborative"], true);
    assert_eq!(mine.body["items"][0]["role"], "owner");

    // Collaborator: the collaborative conversation and their own, nothing else of Olga's.
    let carls = app.get("/conversations", &collab.token).await;
    assert_eq!(ids(&carls.body), vec![shared.clone(), carls_own.clone()]);
    assert_eq!(carls.body["items"][0]["role"], "editor");
    // A bystander in the same team workspace sees none of them.
    let ninas = app.get("/conversations", &outsider.token).await;
    assert_eq!(ids(&ninas.body), Vec::<String>::new());

    // Filters: project, starred, archived.
    let in_project = app
        .get(
            &format!("/conversations?projectId={other_project}"),
            &owner.token,
        )
        .await;
    assert_eq!(ids(&in_project.body), vec![elsewhere.clone()]);
    let a = app
        .patch(
            &format!("/conversations/{private}"),
            &owner.token,
            json!({ "starred": true }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = app
        .patch(
            &format!("/conversations/{elsewhere}"),
            &owner.token,
            json!({ "archived": true }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let starred = app.get("/conversations?starred=true", &owner.token).await;
    assert_eq!(ids(&starred.body), vec![private.clone()]);
    let archived = app.get("/conversations?archived=true", &owner.token).await;
    assert_eq!(ids(&archived.body), vec![elsewhere.clone()]);
    let active = app.get("/conversations?archived=false", &owner.token).await;
    assert_eq!(ids(&active.body), vec![shared.clone(), private.clone()]);
    let combined = app
        .get(
            &format!("/conversations?projectId={project}&starred=false"),
            &owner.token,
        )
        .await;
    assert_eq!(ids(&combined.body), vec![shared.clone()]);

    // A new message moves a conversation to the top, for everyone who sees it.
    next_ms().await;
    say(&app, &owner, &private, "four").await;
    let mine = app.get("/conversations", &owner.token).await;
    assert_eq!(ids(&mine.body)[0], private);
    let carls = app.get("/conversations", &collab.token).await;
    assert_eq!(ids(&carls.body), vec![shared, carls_own]);
}

async fn pagination_walks_every_item_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = cast(&app).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let id = conversation(&app, &c.owner, &c.project, &format!("C{i}")).await;
        if i % 2 == 0 {
            say(&app, &c.owner, &id, "hi").await;
        }
        made.push(id);
    }
    let all = app.get("/conversations?limit=200", &c.owner.token).await;
    let expected = ids(&all.body);
    assert_eq!(expected.len(), 7);
    let mut seen = Vec::new();
    let mut path = "/conversations?limit=3".to_string();
    loop {
        let page = app.get(&path, &c.owner.token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(ids(&page.body));
        match page.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/conversations?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    made.sort();
    seen.sort();
    assert_eq!(seen, made);
}

async fn get_and_send(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Plans").await;
    add(&app, &owner, &c, &collab).await;
    let path = format!("/conversations/{c}");

    let got = app.get(&path, &owner.token).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["title"], "Plans");
    assert_eq!(got.body["isCollaborative"], true);
    assert_eq!(app.get(&path, &collab.token).await.status, StatusCode::OK);
    // A non-participant gets nothing, not even confirmation that it exists.
    let denied = app.get(&path, &outsider.token).await;
    assert_eq!(denied.status, StatusCode::NOT_FOUND);
    assert_eq!(denied.code(), "not_found");
    assert_eq!(
        app.get(
            "/conversations/0123456789abcdef0123456789abcdef",
            &owner.token
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Both can send; each message is attributed to its sender and bumps lastMessageAt.
    let m1 = say(&app, &owner, &c, "from the owner").await;
    assert_eq!(m1["userId"], owner.id.as_str());
    assert_eq!(m1["role"], "user");
    assert_eq!(m1["state"], "idle");
    let after_first = app.get(&path, &owner.token).await.body["lastMessageAt"]
        .as_i64()
        .unwrap();
    assert_eq!(after_first, m1["createdAt"].as_i64().unwrap());
    let m2 = say(&app, &collab, &c, "from the collaborator").await;
    assert_eq!(m2["userId"], collab.id.as_str());
    let after_second = app.get(&path, &collab.token).await.body["lastMessageAt"]
        .as_i64()
        .unwrap();
    assert!(after_second >= after_first);
    assert_eq!(after_second, m2["createdAt"].as_i64().unwrap());

    let sent = app
        .post(
            &format!("{path}/messages"),
            &outsider.token,
            json!({ "content": "let me in" }),
        )
        .await;
    assert_eq!(sent.status, StatusCode::NOT_FOUND);
    let list = app.get(&format!("{path}/messages"), &collab.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get(&format!("{path}/messages"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn update_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Draft").await;
    add(&app, &owner, &c, &collab).await;
    let path = format!("/conversations/{c}");

    // The owner changes everything.
    let a = app
        .patch(
            &path,
            &owner.token,
            json!({ "title": "Final", "starred": true, "archived": true }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["title"], "Final");
    assert_eq!(a.body["starred"], true);
    assert_eq!(a.body["archived"], true);

    // By default a participant may do none of it (403: they can read it).
    for body in [
        json!({"title": "Mine"}),
        json!({"starred": false}),
        json!({"archived": false}),
    ] {
        let a = app.patch(&path, &collab.token, body.clone()).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{body}");
    }
    // A non-participant: 404 for everything.
    let a = app
        .patch(&path, &outsider.token, json!({"title": "Mine"}))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // The owner allows renaming only: renaming works, starring still does not.
    let a = app
        .patch(
            &path,
            &owner.token,
            json!({ "participantsMay": { "rename": true } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["participantsMay"],
        json!({"rename": true, "star": false, "archive": false})
    );
    let a = app
        .patch(&path, &collab.token, json!({"title": "Renamed by Carl"}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["title"], "Renamed by Carl");
    assert_eq!(a.body["role"], "editor");
    let a = app
        .patch(
            &path,
            &collab.token,
            json!({"title": "x", "starred": false}),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Nothing of a refused change was applied.
    assert_eq!(
        app.get(&path, &owner.token).await.body["title"],
        "Renamed by Carl"
    );
    // Star and archive allowed too; the settings themselves stay the owner's.
    app.patch(
        &path,
        &owner.token,
        json!({ "participantsMay": { "rename": true, "star": true, "archive": true } }),
    )
    .await;
    let a = app
        .patch(
            &path,
            &collab.token,
            json!({"starred": false, "archived": false}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = app
        .patch(
            &path,
            &collab.token,
            json!({ "participantsMay": { "rename": false } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Concurrent patches of different fields both stick (no lost update).
    for i in 0..8 {
        let title = format!("T{i}");
        let (a, b) = tokio::join!(
            app.patch(&path, &owner.token, json!({ "title": title })),
            app.patch(&path, &collab.token, json!({ "starred": i % 2 == 0 })),
        );
        assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
        let now = app.get(&path, &owner.token).await;
        assert_eq!(now.body["title"], title.as_str());
        assert_eq!(now.body["starred"], i % 2 == 0);
    }
}

async fn delete_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Doomed").await;
    add(&app, &owner, &c, &collab).await;
    let m = say(&app, &collab, &c, "hello").await;
    let a = app
        .post(
            &format!("/conversations/{c}/messages"),
            &owner.token,
            json!({ "content": "with a file", "attachments": [
                { "name": "a.pdf", "contentType": "application/pdf", "sizeBytes": 10, "url": "https://files.example/a.pdf" }
            ] }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let path = format!("/conversations/{c}");

    assert_eq!(
        app.delete(&path, &collab.token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&path, &outsider.token).await.status,
        StatusCode::NOT_FOUND
    );
    // A participant cannot add participants either.
    let a = app
        .post(
            &format!("{path}/participants"),
            &collab.token,
            json!({ "userId": outsider.id }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    assert_eq!(
        app.delete(&path, &owner.token).await.status,
        StatusCode::NO_CONTENT
    );
    for who in [&owner, &collab] {
        assert_eq!(
            app.get(&path, &who.token).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("{path}/messages"), &who.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("{path}/participants"), &who.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    // Participants went with it: it is gone from the collaborator's list.
    assert!(ids(&app.get("/conversations", &collab.token).await.body).is_empty());
    // And so did its messages: a usage record naming one is refused.
    let a = app
        .post(
            "/usage",
            &collab.token,
            json!({ "model": "m", "inputTokens": 1, "outputTokens": 1, "conversationId": c, "messageId": m["id"] }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&path, &owner.token).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn attribution(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Who said what").await;
    add(&app, &owner, &c, &collab).await;
    say(&app, &owner, &c, "question from Olga").await;
    say(&app, &collab, &c, "question from Carl").await;
    // The assistant's answer to Carl is attributed to Carl (who triggered it).
    post_message(
        &app,
        &collab,
        &c,
        json!({ "content": "the answer", "role": "assistant", "model": "gpt-x" }),
    )
    .await;

    let list = app
        .get(&format!("/conversations/{c}/messages"), &owner.token)
        .await;
    let list = list.body["items"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = list
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
                m["senderUser"]["displayName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("user".into(), "question from Olga".into(), "Olga".into()),
            ("user".into(), "question from Carl".into(), "Carl".into()),
            ("assistant".into(), "the answer".into(), "Carl".into()),
        ]
    );
    assert_eq!(list[2]["model"], "gpt-x");
    assert_eq!(list[1]["senderUser"]["id"], collab.id.as_str());

    // Participants with user details: the owner first, then Carl.
    let p = app
        .get(&format!("/conversations/{c}/participants"), &collab.token)
        .await;
    let p = p.body["items"].as_array().unwrap().clone();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0]["kind"].as_str(), p[0]["user"]["displayName"].as_str()),
        (Some("owner"), Some("Olga"))
    );
    assert_eq!(
        (p[1]["kind"].as_str(), p[1]["user"]["email"].as_str()),
        (Some("participant"), Some("carl@chat.dev"))
    );
}

async fn edge_cases(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        outsider,
        project,
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Edges").await;

    // The owner also recorded as a participant: listed once, everywhere.
    add(&app, &owner, &c, &owner).await;
    let mine = app.get("/conversations", &owner.token).await;
    assert_eq!(ids(&mine.body), vec![c.clone()]);
    let p = app
        .get(&format!("/conversations/{c}/participants"), &owner.token)
        .await;
    assert_eq!(p.body["items"].as_array().unwrap().len(), 1);
    // Adding someone twice is a conflict; an unknown user a 404.
    add(&app, &owner, &c, &collab).await;
    let again = app
        .post(
            &format!("/conversations/{c}/participants"),
            &owner.token,
            json!({ "userId": collab.id }),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let ghost = app
        .post(
            &format!("/conversations/{c}/participants"),
            &owner.token,
            json!({ "userId": "nobody" }),
        )
        .await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);

    // One participant removed: they lose access; the others keep it.
    add(&app, &owner, &c, &outsider).await;
    let removed = app
        .delete(
            &format!("/conversations/{c}/participants/{}", outsider.id),
            &owner.token,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/conversations/{c}"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&app.get("/conversations", &outsider.token).await.body).is_empty());
    assert_eq!(
        app.get(&format!("/conversations/{c}"), &collab.token)
            .await
            .status,
        StatusCode::OK
    );
    say(&app, &collab, &c, "still here").await;
    // A participant may leave on their own; leaving twice is a 404.
    let left = app
        .delete(
            &format!("/conversations/{c}/participants/{}", collab.id),
            &collab.token,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    let twice = app
        .delete(
            &format!("/conversations/{c}/participants/{}", collab.id),
            &collab.token,
        )
        .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);

    // Deleted while a collaborator is viewing: their live stream is told and ends.
    add(&app, &owner, &c, &collab).await;
    let mut view = EventStream::open(
        &app,
        &format!("/conversations/{c}/events"),
        &collab.token,
        None,
    )
    .await;
    assert_eq!(view.next().await.event, "snapshot");
    assert_eq!(
        app.delete(&format!("/conversations/{c}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let closed = view.next().await;
    assert_eq!(closed.event, "closed");
    assert_eq!(closed.data["reason"], "deleted");
    assert_eq!(view.next_or_end().await, None);
}

async fn bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = cast(&app).await;
    let conv = conversation(&app, &c.owner, &c.project, "Inputs").await;
    let t = &c.owner.token;
    let cases = [
        (
            format!("/projects/{}/conversations", c.project),
            json!({ "title": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/projects/{}/conversations", c.project),
            json!({ "title": "x".repeat(500) }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/projects/{}/conversations", c.project),
            json!({ "title": 5 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/projects/nope/conversations".to_string(),
            json!({ "title": "x" }),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/conversations/{conv}/messages"),
            json!({ "content": "   " }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/conversations/{conv}/messages"),
            json!({ "content": "x", "role": "system" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/conversations/{conv}/messages"),
            json!({ "content": "x", "state": "streaming" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/conversations/{conv}/messages"),
            json!({ "content": "x", "extra": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/conversations/{conv}/participants"),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, body, status) in cases {
        let a = app.post(&path, t, body.clone()).await;
        assert_eq!(a.status, status, "{path} {body}: {}", a.body);
        assert!(a.body["error"]["message"].is_string());
    }
    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=1000", StatusCode::UNPROCESSABLE_ENTITY),
        ("cursor=garbage", StatusCode::BAD_REQUEST),
        ("starred=maybe", StatusCode::BAD_REQUEST),
        ("unknown=1", StatusCode::BAD_REQUEST),
    ] {
        let a = app.get(&format!("/conversations?{query}"), t).await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
    }
    let a = app
        .call(reqwest::Method::GET, "/conversations", None, None)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = app
        .call(
            reqwest::Method::PUT,
            &format!("/conversations/{conv}"),
            Some(t),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}
