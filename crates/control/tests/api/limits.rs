//! Limits at the edge of control: every list is a page, usage is recorded
//! once per message.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::conversations::{add, cast, conversation, post_message, say, Cast};
use crate::helpers::{Backend, EventStream, TestApp, TestUser};

both_backends!(
    every_list_pages_through_every_item_once,
    page_limits_and_cursors_are_checked,
    usage_is_recorded_once_per_message,
    event_streams_are_capped_per_user,
    one_poll_loop_per_conversation,
);

/// Reads every page of `path` with `limit`, asserting the page shape; returns
/// the items in order.
async fn walk(app: &TestApp, path: &str, token: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut url = format!("{path}{sep}limit={limit}");
    let mut items = Vec::new();
    for _ in 0..100 {
        let a = app.get(&url, token).await;
        assert_eq!(a.status, StatusCode::OK, "{url}: {}", a.body);
        let page = a.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: no items in {}", a.body));
        assert!(page.len() <= limit, "{url}: {} items", page.len());
        items.extend(page.iter().cloned());
        match a.body["nextCursor"].as_str() {
            Some(c) => url = format!("{path}{sep}limit={limit}&cursor={c}"),
            None => {
                assert!(a.body["nextCursor"].is_null(), "{}", a.body);
                return items;
            }
        }
    }
    panic!("{path}: more than 100 pages");
}

fn field(items: &[Value], pointer: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{pointer} in {i}"))
                .to_string()
        })
        .collect()
}

/// Asserts that `got` is `want` with no item twice.
fn same_once(what: &str, got: Vec<String>, want: &[String]) {
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "{what}: an item came twice: {got:?}"
    );
    assert_eq!(
        unique,
        want.iter().collect::<HashSet<_>>(),
        "{what}: every item, once"
    );
}

async fn every_list_pages_through_every_item_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let guests: Vec<TestUser> = futures_util::future::join_all(
        (0..6).map(|i| app.signup_owned(format!("g{i}@guests{i}.example"), format!("G{i}"))),
    )
    .await;
    let ws = app.workspace(&owner, "team").await;

    // Projects (Research, made by `cast`, and 6 more).
    let mut projects = vec![project.clone()];
    for i in 0..6 {
        projects.push(app.create_project(&owner, &ws, &format!("P{i}")).await);
    }
    let got = walk(&app, &format!("/workspaces/{ws}/projects"), &owner.token, 3).await;
    same_once("projects", field(&got, "/id"), &projects);

    // Documents.
    let mut docs = Vec::new();
    for i in 0..7 {
        docs.push(
            app.create_resource(&owner, &project, "documents", &format!("D{i}"))
                .await,
        );
    }
    let got = walk(
        &app,
        &format!("/projects/{project}/documents"),
        &owner.token,
        2,
    )
    .await;
    same_once("documents", field(&got, "/id"), &docs);

    // Members of a project: its creator and six guests.
    let mut members = vec![owner.id.clone()];
    for g in &guests {
        let a = app
            .post(
                &format!("/projects/{project}/members"),
                &owner.token,
                json!({"userId": g.id, "role": "viewer"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        members.push(g.id.clone());
    }
    let got = walk(
        &app,
        &format!("/projects/{project}/members"),
        &owner.token,
        3,
    )
    .await;
    same_once("members", field(&got, "/userId"), &members);

    // Workspaces: a guest's own, plus four they were made a member of.
    let mut spaces: Vec<String> = app.session(&guests[0]).await["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect();
    for g in &guests[1..5] {
        let theirs = app.workspace(g, "personal").await;
        let a = app
            .post(
                &format!("/workspaces/{theirs}/members"),
                &g.token,
                json!({"userId": guests[0].id, "role": "viewer"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        spaces.push(theirs);
    }
    let got = walk(&app, "/workspaces", &guests[0].token, 2).await;
    same_once("workspaces", field(&got, "/id"), &spaces);

    // Invites, newest first.
    let mut invites = Vec::new();
    for i in 0..5 {
        let a = app
            .post(
                &format!("/workspaces/{ws}/invites"),
                &owner.token,
                json!({"email": format!("new{i}@invited.example")}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        invites.push(a.id());
    }
    let got = walk(&app, &format!("/workspaces/{ws}/invites"), &owner.token, 2).await;
    same_once("invites", field(&got, "/id"), &invites);

    // Participants (owner first) and presence.
    let c = conversation(&app, &owner, &project, "Paged").await;
    let mut people = vec![owner.id.clone()];
    for g in &guests {
        add(&app, &owner, &c, g).await;
        people.push(g.id.clone());
    }
    let got = walk(
        &app,
        &format!("/conversations/{c}/participants"),
        &owner.token,
        2,
    )
    .await;
    assert_eq!(got[0]["kind"], "owner");
    same_once("participants", field(&got, "/userId"), &people);
    for who in std::iter::once(&owner).chain(&guests) {
        let a = app
            .call(
                reqwest::Method::POST,
                &format!("/conversations/{c}/presence"),
                Some(&who.token),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
    }
    let got = walk(
        &app,
        &format!("/conversations/{c}/presence"),
        &owner.token,
        3,
    )
    .await;
    same_once("presence", field(&got, "/user/id"), &people);

    // Messages: 55, so the default page (50) is not all of them; in order.
    let mut sent = Vec::new();
    for i in 0..55 {
        sent.push(
            say(&app, &owner, &c, &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let first = app
        .get(&format!("/conversations/{c}/messages"), &owner.token)
        .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 50);
    assert!(first.body["nextCursor"].is_string());
    let got = walk(
        &app,
        &format!("/conversations/{c}/messages"),
        &owner.token,
        7,
    )
    .await;
    assert_eq!(field(&got, "/id"), sent, "messages in order, each once");

    // The messages of a shared conversation, through the link.
    let share = app
        .post(
            &format!("/conversations/{c}/share"),
            &owner.token,
            Value::Null,
        )
        .await;
    assert_eq!(share.status, StatusCode::CREATED, "{}", share.body);
    let link = format!("/shares/{}", share.body["shareId"].as_str().unwrap());
    let mut read = Vec::new();
    let mut url = format!("{link}?limit=20");
    loop {
        let a = app.get(&url, &guests[5].token).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body["messages"].as_array().unwrap().len() <= 20);
        read.extend(field(a.body["messages"].as_array().unwrap(), "/id"));
        match a.body["nextCursor"].as_str() {
            Some(cur) => url = format!("{link}?limit=20&cursor={cur}"),
            None => break,
        }
    }
    assert_eq!(read, sent);
}

async fn page_limits_and_cursors_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast { owner, project, .. } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Bounds").await;
    let ws = app.workspace(&owner, "team").await;
    for path in [
        "/workspaces".to_string(),
        format!("/workspaces/{ws}/projects"),
        format!("/projects/{project}/tasks"),
        format!("/projects/{project}/members"),
        format!("/workspaces/{ws}/invites"),
        format!("/conversations/{c}/messages"),
        format!("/conversations/{c}/participants"),
        format!("/conversations/{c}/presence"),
        "/conversations".to_string(),
    ] {
        for (query, status) in [
            ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
            ("limit=201", StatusCode::UNPROCESSABLE_ENTITY),
            ("limit=-1", StatusCode::UNPROCESSABLE_ENTITY),
            ("limit=x", StatusCode::BAD_REQUEST),
            ("cursor=nonsense", StatusCode::BAD_REQUEST),
            ("cursor=1.a%20b", StatusCode::BAD_REQUEST),
            ("offset=5", StatusCode::BAD_REQUEST),
            ("limit=200", StatusCode::OK),
        ] {
            let a = app.get(&format!("{path}?{query}"), &owner.token).await;
            assert_eq!(a.status, status, "{path}?{query}: {}", a.body);
        }
    }
}

async fn assistant_message(app: &TestApp, who: &TestUser, c: &str) -> String {
    post_message(app, who, c, json!({"content": "a", "role": "assistant"})).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The caller's input tokens in `GET /usage`.
async fn input_tokens(app: &TestApp, token: String) -> i64 {
    let a = app.get("/usage", &token).await;
    a.body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["inputTokens"].as_i64().unwrap())
        .sum()
}

async fn usage_is_recorded_once_per_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Once").await;
    add(&app, &owner, &c, &collab).await;
    let answer = || assistant_message(&app, &collab, &c);
    let body = |m: &str| json!({"model": "m", "inputTokens": 100, "outputTokens": 1, "conversationId": c, "messageId": m});
    let totals = |who: &TestUser| input_tokens(&app, who.token.clone());
    // Twice, in turn: the second is a 409 and changes nothing.
    let m1 = answer().await;
    let a = app.post("/usage", &collab.token, body(&m1)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = app.post("/usage", &owner.token, body(&m1)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.code(), "conflict");
    assert_eq!(totals(&collab).await, 100);
    // Twenty at once, from both: exactly one counts.
    let m2 = answer().await;
    let answers = app
        .post_concurrently(20, "/usage", &[&owner.token, &collab.token], body(&m2))
        .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let conflicts = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 19), "{answers:?}");
    assert_eq!(totals(&collab).await, 200);
    // Usage without a message is not limited.
    for _ in 0..2 {
        let a = app
            .post(
                "/usage",
                &owner.token,
                json!({"model": "m", "inputTokens": 1, "outputTokens": 1}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    // Someone who left cannot record usage on the conversation any more.
    let m3 = answer().await;
    let left = app
        .delete(
            &format!("/conversations/{c}/participants/{}", collab.id),
            &collab.token,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    let a = app.post("/usage", &collab.token, body(&m3)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
}

async fn metrics_text(app: &TestApp, base: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app.client.get(format!("{base}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Made-up methods and paths do not make new metric series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_stay_bounded() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        for path in [
            format!("/nowhere/{i}"),
            "/workspaces".to_string(),
            format!("/projects/p{i}"),
        ] {
            let res = app
                .client
                .request(method.clone(), format!("{}{path}", app.base))
                .send()
                .await
                .unwrap();
            assert!(
                res.status().is_client_error(),
                "{method} {path}: {}",
                res.status()
            );
        }
        let res = app
            .client
            .get(format!("{}/random/{i}/x", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let (status, text) = metrics_text(&app, &app.base, None).await;
    assert_eq!(status, StatusCode::OK);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tandem_control_http_requests_total{"))
        .collect();
    assert!(series.len() <= 8, "{series:#?}");
    assert!(
        !text.contains("M1X") && !text.contains("/nowhere/") && !text.contains("/projects/p1"),
        "{text}"
    );
    assert!(
        series.iter().any(|l| l.contains("method=\"other\"")),
        "{series:#?}"
    );
    assert!(
        series.iter().any(|l| l.contains("route=\"unmatched\"")),
        "{series:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.metrics_token = Some("m-token".into())
    })
    .await;
    for token in [None, Some(""), Some("wrong"), Some("test-relay-secret")] {
        let (status, text) = metrics_text(&app, &app.base, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(!text.contains("tandem_control"), "{text}");
    }
    let (status, text) = metrics_text(&app, &app.base, Some("m-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("tandem_control_http_requests_total"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_listen_elsewhere() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let (status, _) = metrics_text(&app, &app.base, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the API address");
    let elsewhere = app.metrics_base.clone().expect("a metrics listener");
    assert_ne!(elsewhere, app.base);
    let (status, text) = metrics_text(&app, &elsewhere, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("tandem_control_http_requests_total"),
        "{text}"
    );
    // Only /metrics there: the API is not.
    let res = app
        .client
        .get(format!("{elsewhere}/workspaces"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let (_, text) = metrics_text(app, &app.base, None).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (up to 5 s) until `check` holds.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

async fn open_status(
    app: &TestApp,
    path: &str,
    token: &str,
) -> (StatusCode, Option<reqwest::Response>) {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (res.status(), Some(res))
}

async fn event_streams_are_capped_per_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_streams_per_user = 3;
        // A client that went away is noticed at the next keepalive.
        c.chat_keepalive_ms = 100;
    })
    .await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Capped").await;
    let d = conversation(&app, &owner, &project, "Other").await;
    add(&app, &owner, &c, &collab).await;
    let path = format!("/conversations/{c}/events");
    let mut open = vec![
        EventStream::open(&app, &path, &owner.token, None).await,
        EventStream::open(&app, &path, &owner.token, None).await,
        EventStream::open(
            &app,
            &format!("/conversations/{d}/events"),
            &owner.token,
            None,
        )
        .await,
    ];
    // A fourth, of any conversation, is refused.
    for p in [&path, &format!("/conversations/{d}/events")] {
        let (status, res) = open_status(&app, p, &owner.token).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let body: Value = res.unwrap().json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    // Others are not affected.
    let mut theirs = EventStream::open(&app, &path, &collab.token, None).await;
    // Closing one gives its slot back.
    drop(open.remove(0));
    let mut reopened = None;
    for _ in 0..100 {
        let (status, res) = open_status(&app, &path, &owner.token).await;
        if status == StatusCode::OK {
            reopened = res;
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the freed slot within 5 s");
    drop(reopened);
    // The open streams still work.
    say(&app, &collab, &c, "still here").await;
    for s in [&mut open[0], &mut theirs] {
        assert_eq!(s.next().await.event, "snapshot");
        let e = s.next().await;
        assert_eq!(
            (e.event.as_str(), &e.data["data"]["content"]),
            ("message", &json!("still here"))
        );
    }
}

async fn one_poll_loop_per_conversation(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.chat_poll_ms = 50;
        c.chat_keepalive_ms = 100;
        c.max_streams_per_user = 16;
    })
    .await;
    let Cast {
        owner,
        collab,
        project,
        ..
    } = cast(&app).await;
    let c = conversation(&app, &owner, &project, "Busy").await;
    let d = conversation(&app, &owner, &project, "Quiet").await;
    add(&app, &owner, &c, &collab).await;
    let (pc, pd) = (
        format!("/conversations/{c}/events"),
        format!("/conversations/{d}/events"),
    );
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(EventStream::open(&app, &pc, &owner.token, None).await);
        streams.push(EventStream::open(&app, &pc, &collab.token, None).await);
    }
    let mut quiet = vec![
        EventStream::open(&app, &pd, &owner.token, None).await,
        EventStream::open(&app, &pd, &owner.token, None).await,
    ];
    for s in streams.iter_mut().chain(quiet.iter_mut()) {
        assert_eq!(s.next().await.event, "snapshot");
    }
    assert_eq!(metric(&app, "tandem_control_chat_streams").await, 10.0);
    assert_eq!(metric(&app, "tandem_control_chat_pollers").await, 2.0);
    // Idle, the ten streams cost two polls per interval, not ten.
    let before = metric(&app, "tandem_control_chat_polls_total").await;
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let polls = metric(&app, "tandem_control_chat_polls_total").await - before;
    let intervals = started.elapsed().as_millis() as f64 / 50.0;
    assert!(
        polls <= 2.0 * (intervals + 2.0),
        "{polls} polls in {intervals} intervals"
    );
    assert!(polls >= 2.0, "the loops poll: {polls}");
    // A write through another replica reaches every stream of the conversation.
    let other = app.replica(|_| {}).await;
    say(&other, &collab, &c, "from afar").await;
    for s in &mut streams {
        let e = s.next().await;
        assert_eq!(
            (e.event.as_str(), &e.data["data"]["content"]),
            ("message", &json!("from afar"))
        );
    }
    // The loops end with their last stream.
    drop(streams);
    drop(quiet);
    eventually("no poll loops left", || async {
        metric(&app, "tandem_control_chat_pollers").await == 0.0
    })
    .await;
}
