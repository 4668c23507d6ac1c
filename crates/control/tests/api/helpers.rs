//! Test harness: `TestApp::spawn(backend)` and small HTTP helpers.
//!
//! PostgreSQL tests need `TANDEM_TEST_POSTGRES_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts a
//! server and sets it, together with `TANDEM_TEST_REQUIRE_POSTGRES=1`, which
//! turns a missing URL into a failure instead of a skip.

use diesel::{Connection, RunQueryDsl};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tandem_control::{Application, ControlConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Backend)` test once per backend, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_available() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )*};
}

pub fn postgres_available() -> bool {
    if std::env::var("TANDEM_TEST_POSTGRES_URL").is_ok() {
        return true;
    }
    assert!(
        std::env::var("TANDEM_TEST_REQUIRE_POSTGRES").is_err(),
        "TANDEM_TEST_REQUIRE_POSTGRES is set but TANDEM_TEST_POSTGRES_URL is not"
    );
    eprintln!("skipping the PostgreSQL variant: TANDEM_TEST_POSTGRES_URL is not set (scripts/test sets it)");
    false
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("tandem.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("TANDEM_TEST_POSTGRES_URL").unwrap();
                let name = format!("tandem_test_{}", tandem_control::crypto::new_id());
                let mut conn = diesel::pg::PgConnection::establish(&admin).unwrap();
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .unwrap();
                let (base, _) = admin.rsplit_once('/').unwrap();
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: std::sync::Arc<TestDb>,
    handle: actix_web::dev::ServerHandle,
    /// The separate metrics listener, when configured (`metrics_listen`).
    pub metrics_base: Option<String>,
    /// The running service's state (to drive background work, such as the
    /// file collector, step by step).
    pub state: std::sync::Arc<tandem_control::state::AppState>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// What a call answered: status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("answer has an id")
            .to_string()
    }
}

/// A signed-up user as the tests use them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub token: String,
    pub email: String,
}

/// An org as most tests start one: its owner (the first verified user of
/// the domain), its id and its team workspace.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub owner: TestUser,
    pub id: String,
    pub team: String,
}

impl TestApp {
    /// Signs up `owner_email` (the first of its domain, so the org's owner)
    /// and returns the org.
    pub async fn org(&self, owner_email: &str, name: &str) -> TestOrg {
        let owner = self.signup(owner_email, name).await;
        let id = self.org_of(&owner).await;
        let team = self.workspace(&owner, "team").await;
        TestOrg { owner, id, team }
    }

    /// The id of the user's org.
    pub async fn org_of(&self, user: &TestUser) -> String {
        self.session(user).await["user"]["orgId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `POST {members}` `{userId, role}` by `by`: grants `user_id` a role on
    /// the scope whose member list is `members` (`/projects/{id}/members`…).
    pub async fn grant(&self, members: &str, by: &TestUser, user_id: &str, role: &str) -> Answer {
        self.post(
            members,
            &by.token,
            json!({ "userId": user_id, "role": role }),
        )
        .await
    }

    /// `PATCH path` by `by`, asserting a 200; the answer's body.
    pub async fn patch_ok(&self, path: &str, by: &TestUser, body: Value) -> Value {
        let a = self.patch(path, &by.token, body).await;
        assert_eq!(a.status, StatusCode::OK, "PATCH {path}: {}", a.body);
        a.body
    }

    /// Asserts that each of `actions` is in the org's audit log, done by `by`.
    pub async fn assert_audited(&self, org: &str, by: &TestUser, actions: &[&str]) {
        let log = self.audit_actions(org, &by.token).await;
        for action in actions {
            assert!(
                log.iter().any(|(a, who)| a == action && *who == by.id),
                "{action} by {} missing from {log:?}",
                by.id
            );
        }
    }

    /// The actions in an org's audit log, oldest first, after checking the
    /// chain verifies.
    pub async fn audit_actions(&self, org: &str, token: &str) -> Vec<(String, String)> {
        let v = self.get(&format!("/orgs/{org}/audit/verify"), token).await;
        assert_eq!(v.body["ok"], true, "{}", v.body);
        let a = self
            .get(&format!("/orgs/{org}/audit?limit=200"), token)
            .await;
        assert_eq!(a.status, reqwest::StatusCode::OK, "{}", a.body);
        let mut out: Vec<(String, String)> = a.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("action"), s("actor"))
            })
            .collect();
        out.reverse();
        out
    }

    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut ControlConfig)) -> TestApp {
        Self::start(std::sync::Arc::new(TestDb::new(backend)), tweak).await
    }

    /// Another control process on the same database (a second replica, or
    /// the same service restarted with another configuration).
    pub async fn replica(&self, tweak: impl FnOnce(&mut ControlConfig)) -> TestApp {
        Self::start(self.db.clone(), tweak).await
    }

    async fn start(db: std::sync::Arc<TestDb>, tweak: impl FnOnce(&mut ControlConfig)) -> TestApp {
        let mut config = ControlConfig::for_tests(&db.url);
        tweak(&mut config);
        Self::serve(
            db,
            Application::build(config).await.expect("control starts"),
        )
    }

    /// Two replicas started at the same moment on one fresh database (both
    /// run migrations at once), as a deployment with two replicas starts.
    pub async fn spawn_pair(backend: Backend) -> (TestApp, TestApp) {
        let db = std::sync::Arc::new(TestDb::new(backend));
        let (a, b) = tokio::join!(
            Application::build(ControlConfig::for_tests(&db.url)),
            Application::build(ControlConfig::for_tests(&db.url)),
        );
        (
            Self::serve(db.clone(), a.expect("replica 1 starts")),
            Self::serve(db, b.expect("replica 2 starts")),
        )
    }

    fn serve(db: std::sync::Arc<TestDb>, app: Application) -> TestApp {
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics_base = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
        let handle = app.handle();
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            client: reqwest::Client::new(),
            db,
            handle,
            metrics_base,
            state,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
        };
        // A 500 is a bug, except the deliberate, explained `misconfigured`.
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR || body["error"]["code"] == "misconfigured",
            "500 from {path}: {body}"
        );
        Answer { status, body }
    }

    /// `POST /collaboration/verify` as a relay does: the user's one-time
    /// `token` as bearer and `secret` in the relay-secret header (each optional).
    pub async fn verify_token(
        &self,
        token: Option<&str>,
        room: &str,
        secret: Option<&str>,
    ) -> Answer {
        let mut req = self
            .client
            .post(format!("{}/collaboration/verify", self.base))
            .json(&json!({ "roomId": room }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = secret {
            req = req.header(tandem_protocol::collab::RELAY_SECRET_HEADER, s);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up and verifies the address (through `POST /auth/verify-email`
    /// with a link planted in the database), as most tests want a user who
    /// is in their domain's org.
    pub async fn signup(&self, email: &str, name: &str) -> TestUser {
        let user = self.signup_unverified(email, name).await;
        let a = self.verify(&user).await;
        assert_eq!(a.status, StatusCode::OK, "verify {email}: {}", a.body);
        user
    }

    /// Uses a verification link for `user` made for the test: its token is
    /// planted (hashed) in the database, as the emailed one would be.
    pub async fn verify(&self, user: &TestUser) -> Answer {
        let token = tandem_control::crypto::new_token();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        self.sql(&format!(
            "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) \
             VALUES ('{}', '{}', '{}', {now}, {})",
            tandem_control::crypto::hash_token(&token),
            user.id,
            user.email.to_lowercase(),
            now + 3_600_000
        ));
        self.call(
            Method::POST,
            "/auth/verify-email",
            None,
            Some(json!({ "token": token })),
        )
        .await
    }

    /// Signs up without verifying: the user has their personal workspace only.
    pub async fn signup_unverified(&self, email: &str, name: &str) -> TestUser {
        let a = self
            .call(
                Method::POST,
                "/auth/signup",
                None,
                Some(json!({"email": email, "password": "password123", "displayName": name})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "signup {email}: {}", a.body);
        TestUser {
            id: a.body["user"]["id"].as_str().unwrap().to_string(),
            token: a.body["sessionToken"].as_str().unwrap().to_string(),
            email: email.to_string(),
        }
    }

    /// [`TestApp::signup`] with owned arguments (for many users at once).
    pub async fn signup_owned(&self, email: String, name: String) -> TestUser {
        self.signup(&email, &name).await
    }

    pub async fn session(&self, user: &TestUser) -> Value {
        let a = self.get("/auth/session", &user.token).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body
    }

    /// The id of the user's workspace of the given type.
    pub async fn workspace(&self, user: &TestUser, kind: &str) -> String {
        let s = self.session(user).await;
        s["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} workspace in {s}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn create_project(&self, user: &TestUser, ws: &str, name: &str) -> String {
        let a = self
            .post(
                &format!("/workspaces/{ws}/projects"),
                &user.token,
                json!({"name": name}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.id()
    }

    /// `kind` is the path segment: documents, diagrams or tasks.
    pub async fn create_resource(
        &self,
        user: &TestUser,
        project: &str,
        kind: &str,
        title: &str,
    ) -> String {
        let a = self
            .post(
                &format!("/projects/{project}/{kind}"),
                &user.token,
                json!({"title": title}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.id()
    }
}

impl TestApp {
    /// Runs a statement on the test database directly (to set up states the
    /// API cannot reach, such as an expired invite).
    pub fn sql(&self, statement: &str) {
        self.sql_texts(statement);
    }

    /// Runs a query whose rows are one text column named `t`, on the test
    /// database directly (to inspect what is stored at rest).
    pub fn sql_texts(&self, query: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let rows: Vec<Row> = if let Some(path) = self.db.url.strip_prefix("sqlite://") {
            let mut c = diesel::sqlite::SqliteConnection::establish(path).unwrap();
            // Wait for the server's writers instead of failing on their lock.
            diesel::sql_query("PRAGMA busy_timeout = 10000")
                .execute(&mut c)
                .unwrap();
            diesel::sql_query(query).load(&mut c).unwrap()
        } else {
            let mut c = diesel::pg::PgConnection::establish(&self.db.url).unwrap();
            diesel::sql_query(query).load(&mut c).unwrap()
        };
        rows.into_iter().map(|r| r.t).collect()
    }

    /// Sends `n` POSTs of `body` to `path` at once, the i-th with
    /// `tokens[i % tokens.len()]`; returns every status and body.
    pub async fn post_concurrently(
        &self,
        n: usize,
        path: &str,
        tokens: &[&str],
        body: Value,
    ) -> Vec<(StatusCode, Value)> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let req = self
                    .client
                    .post(format!("{}{path}", self.base))
                    .bearer_auth(tokens[i % tokens.len()])
                    .json(&body);
                tokio::spawn(async move {
                    let res = req.send().await.unwrap();
                    (res.status(), res.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<i64>,
    pub event: String,
    pub data: Value,
}

/// A reader of a `text/event-stream` answer.
pub struct EventStream {
    res: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// Opens `GET path` with the given `Last-Event-ID`; asserts a 200 stream.
    pub async fn open(
        app: &TestApp,
        path: &str,
        token: &str,
        last_event_id: Option<i64>,
    ) -> EventStream {
        let mut req = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "event stream {path}");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        EventStream {
            res,
            buf: String::new(),
        }
    }

    /// The next event (keepalive comments skipped); panics after 10 s.
    pub async fn next(&mut self) -> Sse {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event within 10 s")
            .expect("the stream is still open")
    }

    /// The next event, or `None` when the stream ended.
    pub async fn next_or_end(&mut self) -> Option<Sse> {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event or the end within 10 s")
    }

    async fn next_inner(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keepalive)
                }
                ev.data = serde_json::from_str(&data).unwrap();
                return Some(ev);
            }
            match self.res.chunk().await.unwrap() {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }
}
