//! What browsers need from control: CORS (preflights on every path, headers
//! on answers and errors, nothing for other origins) and request ids on
//! every answer and in the error envelope.

use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    preflights_from_allowed_origins,
    other_origins_get_no_cors_headers,
    answers_and_errors_carry_cors_headers,
    request_ids_are_echoed_or_made,
    log_lines_name_the_request_id,
);

const ORIGINS: &str = "http://localhost:*, https://app.example.com";
const PAGE: &str = "http://localhost:5173";

async fn spawn_with_origins(backend: Backend, origins: Option<&str>) -> TestApp {
    let origins = origins.map(str::to_string);
    TestApp::spawn_with(backend, |c| {
        c.cors_origins = origins;
        c.auth_rate_per_minute = 2;
    })
    .await
}

/// Sends a request with the given extra headers; returns status, headers, body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let (status, h) = (res.status(), res.headers().clone());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, h, body)
}

async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
) -> (StatusCode, HeaderMap, Value) {
    let headers = [
        ("origin", origin),
        ("access-control-request-method", method),
        (
            "access-control-request-headers",
            "authorization,content-type,last-event-id,x-request-id",
        ),
    ];
    send(app, Method::OPTIONS, path, &headers, None).await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn listed(h: &HeaderMap, name: &str) -> Vec<String> {
    header(h, name)
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn preflights_from_allowed_origins(backend: Backend) {
    let app = spawn_with_origins(backend, Some(ORIGINS)).await;
    // Real routes (with and without path parameters), a route without the
    // asked method (405 otherwise) and no route at all (404 otherwise).
    for (path, method) in [
        ("/auth/signup", "POST"),
        ("/projects/p1/documents", "POST"),
        ("/me/settings/api-keys/openai", "PUT"),
        ("/conversations/c1/events", "GET"),
        ("/healthz", "DELETE"),
        ("/no/such/path", "PATCH"),
    ] {
        for origin in [PAGE, "http://localhost", "https://app.example.com"] {
            let (status, h, _) = preflight(&app, path, origin, method).await;
            assert_eq!(status, StatusCode::OK, "{method} {path} from {origin}");
            assert_eq!(header(&h, "access-control-allow-origin"), origin);
            let methods = listed(&h, "access-control-allow-methods");
            for m in ["get", "post", "put", "patch", "delete"] {
                assert!(methods.contains(&m.to_string()), "{methods:?}");
            }
            let allowed = listed(&h, "access-control-allow-headers");
            for name in [
                "authorization",
                "content-type",
                "last-event-id",
                "x-request-id",
            ] {
                assert!(allowed.contains(&name.to_string()), "{allowed:?}");
            }
            assert_eq!(header(&h, "access-control-max-age"), "3600");
            assert!(h.get("access-control-allow-credentials").is_none());
            assert_eq!(header(&h, "x-request-id").len(), 32);
        }
    }
}

async fn other_origins_get_no_cors_headers(backend: Backend) {
    let app = spawn_with_origins(backend, Some(ORIGINS)).await;
    for origin in ["http://evil.example", "https://localhost:3000", "null"] {
        let (status, h, body) = preflight(&app, "/auth/login", origin, "POST").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{origin}");
        assert!(h.get("access-control-allow-origin").is_none(), "{origin}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert_eq!(body["error"]["requestId"], header(&h, "x-request-id"));
        // A simple request still runs (browsers hide the answer), unmarked.
        let (status, h, _) = send(&app, Method::GET, "/healthz", &[("origin", origin)], None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(h.get("access-control-allow-origin").is_none());
    }
    // A method or header outside the lists is refused too.
    let asks = [("origin", PAGE), ("access-control-request-method", "TRACE")];
    let (status, h, _) = send(&app, Method::OPTIONS, "/healthz", &asks, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.get("access-control-allow-origin").is_none());

    // Unset: no origin is allowed.
    let closed = spawn_with_origins(backend, None).await;
    let (status, h, _) = preflight(&closed, "/auth/login", PAGE, "POST").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.get("access-control-allow-origin").is_none());
    let (_, h, _) = send(&closed, Method::GET, "/healthz", &[("origin", PAGE)], None).await;
    assert!(h.get("access-control-allow-origin").is_none());

    // `*`: any origin.
    let open = spawn_with_origins(backend, Some("*")).await;
    let (status, h, _) = preflight(&open, "/auth/login", "https://any.example", "POST").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        "https://any.example"
    );
}

fn assert_cors(h: &HeaderMap, what: &str) {
    assert_eq!(header(h, "access-control-allow-origin"), PAGE, "{what}");
    let exposed = listed(h, "access-control-expose-headers");
    for name in ["retry-after", "x-request-id"] {
        assert!(exposed.contains(&name.to_string()), "{what}: {exposed:?}");
    }
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "{what}"
    );
}

async fn answers_and_errors_carry_cors_headers(backend: Backend) {
    let app = spawn_with_origins(backend, Some(ORIGINS)).await;
    let from_page = [("origin", PAGE)];
    let signup = json!({"email": "cors@tandem.dev", "password": "password123", "displayName": "C"});
    let (status, h, body) =
        send(&app, Method::POST, "/auth/signup", &from_page, Some(signup)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_cors(&h, "201");

    let (status, h, _) = send(&app, Method::GET, "/auth/session", &from_page, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_cors(&h, "401");

    let (status, h, _) = send(&app, Method::GET, "/no/such/path", &from_page, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_cors(&h, "404");

    let (status, h, _) = send(&app, Method::DELETE, "/healthz", &from_page, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_cors(&h, "405");

    // Two attempts a minute are allowed here; the signup was the first.
    let login = json!({"email": "cors@tandem.dev", "password": "wrong-password"});
    let mut last = (StatusCode::OK, HeaderMap::new());
    for _ in 0..2 {
        let (status, h, _) = send(
            &app,
            Method::POST,
            "/auth/login",
            &from_page,
            Some(login.clone()),
        )
        .await;
        last = (status, h);
    }
    assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS);
    assert_cors(&last.1, "429");
    assert!(!header(&last.1, "retry-after").is_empty());
}

async fn request_ids_are_echoed_or_made(backend: Backend) {
    let app = spawn_with_origins(backend, Some(ORIGINS)).await;
    let given = "req-42.abc_DEF";
    let (_, h, _) = send(
        &app,
        Method::GET,
        "/healthz",
        &[("x-request-id", given)],
        None,
    )
    .await;
    assert_eq!(header(&h, "x-request-id"), given);

    // Errors: the id in the header and in the envelope.
    let (status, h, body) = send(
        &app,
        Method::GET,
        "/auth/session",
        &[("x-request-id", given)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "x-request-id"), given);
    assert_eq!(body["error"]["requestId"], given, "{body}");

    // Made when absent or not sane; fresh for each request.
    let too_long = "a".repeat(65);
    let mut seen = Vec::new();
    for bad in [
        None,
        Some("has space"),
        Some("a/b"),
        Some(too_long.as_str()),
    ] {
        let headers: Vec<(&str, &str)> = bad.iter().map(|b| ("x-request-id", *b)).collect();
        let (status, h, body) = send(&app, Method::GET, "/nope", &headers, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let id = header(&h, "x-request-id").to_string();
        assert_eq!(id.len(), 32, "{bad:?}: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(body["error"]["requestId"], id.as_str());
        assert!(!seen.contains(&id));
        seen.push(id);
    }

    // Validation errors (from extractors) and event streams carry it too.
    let signup = app.signup("ids@tandem.dev", "Ids").await;
    let ws = app.workspace(&signup, "personal").await;
    let auth = format!("Bearer {}", signup.token);
    let (status, h, body) = send(
        &app,
        Method::POST,
        &format!("/workspaces/{ws}/projects"),
        &[("authorization", &auth), ("x-request-id", "bad-body")],
        Some(json!({"nme": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(header(&h, "x-request-id"), "bad-body");
    assert_eq!(body["error"]["requestId"], "bad-body");

    let project = app.create_project(&signup, &ws, "P").await;
    let conv = app
        .post(
            &format!("/projects/{project}/conversations"),
            &signup.token,
            json!({"title": "t"}),
        )
        .await;
    let res = app
        .client
        .get(format!("{}/conversations/{}/events", app.base, conv.id()))
        .bearer_auth(&signup.token)
        .header("x-request-id", "stream-1")
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "content-type"), "text/event-stream");
    assert_eq!(header(res.headers(), "x-request-id"), "stream-1");
    assert_cors(res.headers(), "event stream");
}

/// Everything logged in this test process (installed once, on first use).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn log_lines_name_the_request_id(backend: Backend) {
    let logs = captured_logs();
    // Without a settings key, storing an API key is a logged 500 `misconfigured`.
    let app = TestApp::spawn_with(backend, |c| c.settings_key = None).await;
    let u = app.signup("logs@tandem.dev", "Logs").await;
    let id = format!("log-check-{backend:?}");
    let auth = format!("Bearer {}", u.token);
    let (status, _, body) = send(
        &app,
        Method::PUT,
        "/me/settings/api-keys/openai",
        &[("authorization", &auth), ("x-request-id", &id)],
        Some(json!({"key": "sk-test-123"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "misconfigured");
    assert_eq!(body["error"]["requestId"], id.as_str());

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(&id)).collect();
    // The handler's own line (logged while answering) and the access line.
    assert!(
        ours.iter().any(|l| l.contains("misconfigured")),
        "{ours:#?}"
    );
    assert!(ours.iter().any(|l| l.contains("status=500")), "{ours:#?}");
    // And never the key.
    assert!(!text.contains("sk-test-123"));
}
