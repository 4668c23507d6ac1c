//! Bad input gets a clear JSON error with the right status, never a 500.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(bad_bodies, bad_credentials_and_paths);

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    ctype: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("content-type", ctype)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.expect("error answers are JSON");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body)
}

async fn bad_bodies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let u = app.signup("bad@input.dev", "Bad").await;
    let ws = app.workspace(&u, "personal").await;
    let path = format!("/workspaces/{ws}/projects");
    let json_ct = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            json_ct,
            b"{\"name\": ".to_vec(),
            400,
            "bad_request",
        ),
        (
            "not JSON at all",
            json_ct,
            b"hello".to_vec(),
            400,
            "bad_request",
        ),
        (
            "missing field",
            json_ct,
            b"{}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "wrong type",
            json_ct,
            b"{\"name\": 42}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "unknown field",
            json_ct,
            b"{\"name\": \"a\", \"extra\": 1}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "empty name",
            json_ct,
            b"{\"name\": \"   \"}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "name too long",
            json_ct,
            format!("{{\"name\": \"{}\"}}", "x".repeat(201)).into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "oversized body",
            json_ct,
            format!("{{\"name\": \"{}\"}}", "x".repeat(70_000)).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "wrong content type",
            "text/plain",
            b"{\"name\": \"a\"}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "array instead of object",
            json_ct,
            b"[1,2]".to_vec(),
            422,
            "validation_failed",
        ),
    ];
    for (what, ctype, body, status, code) in cases {
        let (s, b) = raw(&app, Method::POST, &path, Some(&u.token), ctype, body).await;
        assert_eq!(s.as_u16(), status, "{what}: {b}");
        assert_eq!(b["error"]["code"], code, "{what}");
    }
    // Nothing was created by any of them.
    let list = app.get(&path, &u.token).await;
    assert_eq!(list.body, json!({"items": [], "nextCursor": null}));

    // Signup validation.
    for (body, what) in [
        (
            json!({"email": "not-an-email", "password": "password123", "displayName": "X"}),
            "email",
        ),
        (
            json!({"email": "x@y.dev", "password": "short", "displayName": "X"}),
            "password",
        ),
        (
            json!({"email": "x@y.dev", "password": "password123", "displayName": ""}),
            "displayName",
        ),
        (
            json!({"email": "x@y.dev", "password": "password123"}),
            "missing displayName",
        ),
        (
            json!({"email": ["x@y.dev"], "password": "password123", "displayName": "X"}),
            "email type",
        ),
    ] {
        let a = app
            .call(Method::POST, "/auth/signup", None, Some(body))
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            a.body
        );
    }
    // Role and member bodies.
    let p = app.create_project(&u, &ws, "P").await;
    let a = app
        .post(
            &format!("/projects/{p}/members"),
            &u.token,
            json!({"userId": 5, "role": "viewer"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let a = app
        .patch(&format!("/projects/{p}"), &u.token, json!({"name": null}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "absent name changes nothing");
    assert_eq!(a.body["name"], "P");
}

async fn bad_credentials_and_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let u = app.signup("paths@input.dev", "P").await;
    // No credentials, bad credentials, wrong scheme.
    let a = app.call(Method::GET, "/workspaces", None, None).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let a = app.get("/workspaces", "not-a-real-token").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(format!("{}/workspaces", app.base))
        .header("authorization", format!("Basic {}", u.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A JWT-shaped token when no identity provider is configured.
    assert_eq!(
        app.get("/workspaces", "a.b.c").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Unknown ids and ids that cannot exist.
    for path in [
        "/projects/0123456789abcdef0123456789abcdef".to_string(),
        "/documents/doesnotexist".to_string(),
        "/diagrams/x".to_string(),
        "/tasks/x".to_string(),
        format!("/projects/{}", "%F0%9F%92%A9"),
        format!("/projects/{}", "a".repeat(300)),
        "/workspaces/nope/projects".to_string(),
        "/projects/nope/documents".to_string(),
        "/workspaces/nope/members".to_string(),
        "/no/such/path".to_string(),
        "/projects/x/chats".to_string(),
    ] {
        let a = app.get(&path, &u.token).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    // Wrong method on a known path.
    let a = app
        .call(Method::PUT, "/workspaces", Some(&u.token), Some(json!({})))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // Health.
    let h = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(h.body["status"], "ok");
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.body["status"], "ready");
}
