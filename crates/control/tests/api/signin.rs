//! First sign-in (plan 004's `handleFirstSignIn`), login, logout, sessions.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    work_domain_first_user_owns_org_and_team_workspace,
    second_user_of_a_domain_joins_as_member,
    personal_domain_gets_a_solo_org,
    concurrent_signups,
    login_logout_and_session_tokens,
);

fn workspaces(session: &Value) -> Vec<(String, String, String)> {
    session["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["type"].as_str().unwrap().to_string(),
                w["name"].as_str().unwrap().to_string(),
                w["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn work_domain_first_user_owns_org_and_team_workspace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.signup("ada@sparkcapital.com", "Ada").await;
    let s = app.session(&ada).await;
    assert_eq!(s["user"]["orgRole"], "owner");
    assert_eq!(s["user"]["email"], "ada@sparkcapital.com");
    assert_eq!(s["org"]["domain"], "sparkcapital.com");
    assert_eq!(s["org"]["name"], "Sparkcapital");
    let mut ws = workspaces(&s);
    ws.sort();
    assert_eq!(
        ws,
        vec![
            ("personal".into(), "Personal".into(), "owner".into()),
            ("team".into(), "Sparkcapital Team".into(), "owner".into()),
        ]
    );
    // The same list from /workspaces.
    let list = app.get("/workspaces", &ada.token).await;
    assert_eq!(list.body["items"], s["workspaces"]);
    assert_eq!(list.body["nextCursor"], serde_json::Value::Null);
}

async fn second_user_of_a_domain_joins_as_member(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.signup("ada@acme.io", "Ada").await;
    let bob = app.signup("Bob@ACME.io", "Bob").await;
    let (sa, sb) = (app.session(&ada).await, app.session(&bob).await);
    assert_eq!(sb["user"]["email"], "bob@acme.io");
    assert_eq!(sb["user"]["orgRole"], "member");
    assert_eq!(sa["org"]["id"], sb["org"]["id"]);
    let team_a = app.workspace(&ada, "team").await;
    let team_b = app.workspace(&bob, "team").await;
    assert_eq!(team_a, team_b, "one team workspace per org");
    let mut ws = workspaces(&sb);
    ws.sort();
    assert_eq!(
        ws,
        vec![
            ("personal".into(), "Personal".into(), "owner".into()),
            ("team".into(), "Acme Team".into(), "editor".into()),
        ]
    );
    // Each has their own personal workspace, invisible to the other.
    let pa = app.workspace(&ada, "personal").await;
    assert_ne!(pa, app.workspace(&bob, "personal").await);
    let a = app
        .get(&format!("/workspaces/{pa}/projects"), &bob.token)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

async fn personal_domain_gets_a_solo_org(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = app.signup("carol@gmail.com", "Carol").await;
    let b = app.signup("dan@gmail.com", "Dan").await;
    let (sa, sb) = (app.session(&a).await, app.session(&b).await);
    assert_eq!(sa["org"]["domain"], format!("personal-{}", a.id));
    assert_eq!(sa["org"]["name"], "Carol");
    assert_eq!(sa["user"]["orgRole"], "owner");
    assert_ne!(sa["org"]["id"], sb["org"]["id"]);
    assert_eq!(sb["user"]["orgRole"], "owner");
    assert_eq!(
        workspaces(&sa),
        vec![("personal".into(), "Personal".into(), "owner".into())]
    );
    // Every listed personal domain behaves the same.
    for (i, domain) in ["outlook.com", "proton.me", "icloud.com"]
        .iter()
        .enumerate()
    {
        let u = app.signup(&format!("u{i}@{domain}"), "U").await;
        let s = app.session(&u).await;
        assert_eq!(s["org"]["domain"], format!("personal-{}", u.id));
        assert_eq!(workspaces(&s).len(), 1);
    }
}

/// Concurrent signups of one new domain all succeed, each in a solo org
/// until verified (`identity::concurrent_verifications_make_one_org` covers
/// the org they then share); the same email twice at once makes one account.
async fn concurrent_signups(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    const N: usize = 12;
    let signups = (0..N).map(|i| {
        app.call(
            Method::POST,
            "/auth/signup",
            None,
            Some(json!({"email": format!("user{i}@racing.dev"), "password": "password123", "displayName": format!("User {i}")})),
        )
    });
    let answers = futures_util::future::join_all(signups).await;
    let mut orgs = std::collections::BTreeSet::new();
    for a in &answers {
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        assert_eq!(a.body["user"]["emailVerified"], false);
        let token = a.body["sessionToken"].as_str().unwrap();
        let s = app.get("/auth/session", token).await.body;
        orgs.insert(s["org"]["id"].as_str().unwrap().to_string());
        assert_eq!(s["workspaces"].as_array().unwrap().len(), 1, "{s}");
    }
    assert_eq!(orgs.len(), N, "no shared org before verification");

    // The same email twice at once: one account, one 409.
    let twice = (0..2).map(|_| {
        app.call(
            Method::POST,
            "/auth/signup",
            None,
            Some(json!({"email": "same@racing.dev", "password": "password123", "displayName": "Same"})),
        )
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(twice)
        .await
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);
}

async fn login_logout_and_session_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.signup("ada@example.org", "Ada").await;
    let login = |email: &'static str, password: &'static str| {
        app.call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
    };
    let ok = login("ADA@example.org", "password123").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["user"]["id"], ada.id.as_str());
    let token = ok.body["sessionToken"].as_str().unwrap().to_string();
    assert_ne!(token, ada.token, "each login is a new session");

    let wrong = login("ada@example.org", "password124").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "unauthorized");
    let unknown = login("nobody@example.org", "password123").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // Alike but for the request id each answer names.
    let without_id = |body: &serde_json::Value| {
        let mut body = body.clone();
        body["error"].as_object_mut().unwrap().remove("requestId");
        body
    };
    assert_eq!(
        without_id(&unknown.body),
        without_id(&wrong.body),
        "unknown email and wrong password look alike"
    );

    // Logout ends that session only.
    let out = app
        .call(Method::POST, "/auth/logout", Some(&token), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/auth/session", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/auth/session", &ada.token).await.status,
        StatusCode::OK
    );

    // Duplicate signup.
    let dup = app
        .call(
            Method::POST,
            "/auth/signup",
            None,
            Some(json!({"email": "ada@example.org", "password": "password123", "displayName": "Ada 2"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "conflict");
}

/// Session tokens expire: with a 1-second lifetime, a token stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.session_ttl_secs = 1).await;
    let ada = app.signup("ada@expiry.dev", "Ada").await;
    assert_eq!(
        app.get("/auth/session", &ada.token).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/auth/session", &ada.token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Tokens are stored hashed: the clear token is nowhere in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_are_stored_hashed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ada = app.signup("ada@hash.dev", "Ada").await;
    let path = app.db.url.strip_prefix("sqlite://").unwrap().to_string();
    // Checkpoint-independent: read the main file and the WAL.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    let hay = String::from_utf8_lossy(&bytes);
    assert!(
        !hay.contains(&ada.token),
        "clear session token found in the database"
    );
    assert!(hay.contains(&tandem_control::crypto::hash_token(&ada.token)));
    assert!(!hay.contains("password123"));
}

/// Login and signup are rate limited per client address (429 + Retry-After).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_attempts_are_rate_limited() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth_rate_per_minute = 3).await;
    app.signup_unverified("ada@limit.dev", "Ada").await; // 1
    let attempt = || {
        app.call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "ada@limit.dev", "password": "wrong-password"})),
        )
    };
    assert_eq!(attempt().await.status, StatusCode::UNAUTHORIZED); // 2
    assert_eq!(attempt().await.status, StatusCode::UNAUTHORIZED); // 3
    let limited = attempt().await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let res = app
        .client
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": "ada@limit.dev", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
}
