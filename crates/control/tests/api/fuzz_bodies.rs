//! Property-based fuzzing of the JSON bodies control reads from the network:
//! for each body-taking endpoint, generated JSON values, valid bodies with
//! fields replaced, dropped or added, and byte-level mutations of valid
//! bodies. Whatever arrives, the answer is never a 5xx, an error is always
//! the JSON envelope, and the server still serves valid requests afterwards.
//!
//! Bounded here (`TANDEM_FUZZ_CASES`, default 24 per endpoint and kind);
//! the long run: `TANDEM_FUZZ_CASES=5000 cargo test -p tandem-control --test
//! api fuzz_bodies`.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRng, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(fuzz_bodies);

fn cases() -> usize {
    std::env::var("TANDEM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Any JSON value, a few levels deep, with the strings and numbers that
/// tend to break parsers and validators.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        prop_oneof![
            Just(""),
            Just("owner"),
            Just("viewer"),
            Just("doc"),
            Just("a@b.c"),
            Just("\u{0}"),
            Just("../../etc/passwd"),
            Just("'; DROP TABLE users; --"),
        ]
        .prop_map(Value::from),
        Just(Value::from("x".repeat(70_000))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body with one field replaced by any value, dropped, or joined by another.
fn mutated(seed: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = seed
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let n = keys.len().max(1);
    (0..n, 0..3u8, any_json(), "[a-zA-Z]{1,10}").prop_map(move |(i, how, value, extra)| {
        let mut body = seed.clone();
        if let (Some(obj), Some(key)) = (body.as_object_mut(), keys.get(i)) {
            match how {
                0 => {
                    obj.insert(key.clone(), value);
                }
                1 => {
                    obj.remove(key);
                }
                _ => {
                    obj.insert(extra, value);
                }
            }
        }
        body
    })
}

/// The bytes of a valid body, truncated and with bytes changed.
fn garbled(seed: &Value) -> impl Strategy<Value = Vec<u8>> {
    let bytes = serde_json::to_vec(seed).unwrap_or_default();
    let len = bytes.len();
    (
        0..=len,
        prop::collection::vec((0..len.max(1), any::<u8>()), 0..4),
    )
        .prop_map(move |(cut, flips)| {
            let mut b = bytes.clone();
            for (at, byte) in flips {
                if let Some(slot) = b.get_mut(at) {
                    *slot = byte;
                }
            }
            b.truncate(cut.max(1));
            b
        })
}

fn sample<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, n: usize, seed: u8) -> Vec<T> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[seed; 32]),
    );
    (0..n)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> StatusCode {
    let res = app
        .client
        .request(method.clone(), format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("control answers");
    let status = res.status();
    let text = res.text().await.expect("body read");
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
    assert!(
        !status.is_server_error(),
        "{status} from {method} {path} for {shown}: {text}"
    );
    if status.is_client_error() {
        let err: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON {status} from {method} {path}: {text}"));
        assert!(err["error"]["code"].is_string(), "{method} {path}: {err}");
        assert!(
            err["error"]["message"].is_string(),
            "{method} {path}: {err}"
        );
    }
    status
}

async fn fuzz_bodies(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_rate_per_minute = 0).await;
    let owner = app.signup("fuzz-owner@fuzz.dev", "Owner").await;
    let other = app.signup("fuzz-other@fuzz.dev", "Other").await;
    let ws = app.workspace(&owner, "personal").await;
    let project = app.create_project(&owner, &ws, "P").await;
    let doc = app
        .create_resource(&owner, &project, "documents", "D")
        .await;
    let conv = app
        .post(
            &format!("/projects/{project}/conversations"),
            &owner.token,
            json!({"title": "C"}),
        )
        .await
        .id();

    let post = Method::POST;
    let patch = Method::PATCH;
    let endpoints: Vec<(Method, String, Value)> = vec![
        (
            post.clone(),
            "/auth/signup".into(),
            json!({"email": "new@fuzz.dev", "password": "password123", "displayName": "N"}),
        ),
        (
            post.clone(),
            "/auth/login".into(),
            json!({"email": "fuzz-owner@fuzz.dev", "password": "wrong-password"}),
        ),
        (
            post.clone(),
            "/auth/verify-email".into(),
            json!({"token": "abc"}),
        ),
        (
            post.clone(),
            format!("/workspaces/{ws}/projects"),
            json!({"name": "Q"}),
        ),
        (
            patch.clone(),
            format!("/projects/{project}"),
            json!({"name": "P2"}),
        ),
        (
            post.clone(),
            format!("/projects/{project}/documents"),
            json!({"title": "E"}),
        ),
        (
            patch.clone(),
            format!("/documents/{doc}"),
            json!({"title": "D2"}),
        ),
        (
            post.clone(),
            format!("/documents/{doc}/members"),
            json!({"userId": other.id, "role": "viewer"}),
        ),
        (
            post.clone(),
            "/collaboration/token".into(),
            json!({"resourceType": "doc", "resourceId": doc}),
        ),
        (
            post.clone(),
            format!("/projects/{project}/conversations"),
            json!({"title": "C2"}),
        ),
        (
            patch.clone(),
            format!("/conversations/{conv}"),
            json!({"title": "C3", "starred": true}),
        ),
        (
            post.clone(),
            format!("/conversations/{conv}/messages"),
            json!({"content": "hi"}),
        ),
        (
            post.clone(),
            "/usage".into(),
            json!({"model": "m", "inputTokens": 1, "outputTokens": 2}),
        ),
    ];

    let n = cases();
    for (i, (method, path, seed)) in endpoints.iter().enumerate() {
        let salt = i as u8;
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for v in sample(any_json(), n, salt) {
            bodies.push(serde_json::to_vec(&v).expect("serializable"));
        }
        for v in sample(mutated(seed.clone()), n, salt.wrapping_add(100)) {
            bodies.push(serde_json::to_vec(&v).expect("serializable"));
        }
        bodies.extend(sample(garbled(seed), n, salt.wrapping_add(200)));
        assert_eq!(bodies.len(), 3 * n, "{method} {path}: cases generated");
        for body in bodies {
            send(&app, method, path, &owner.token, body).await;
        }
    }

    // Still serving, with nothing corrupted: the originals are readable.
    let project_answer = app.get(&format!("/projects/{project}"), &owner.token).await;
    assert_eq!(
        project_answer.status,
        StatusCode::OK,
        "{}",
        project_answer.body
    );
    let doc_answer = app.get(&format!("/documents/{doc}"), &owner.token).await;
    assert_eq!(doc_answer.status, StatusCode::OK, "{}", doc_answer.body);
    let fresh = app
        .post(
            &format!("/workspaces/{ws}/projects"),
            &owner.token,
            json!({"name": "after"}),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.body);
}
