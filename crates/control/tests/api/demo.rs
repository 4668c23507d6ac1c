//! The embedded demo app: served at `/` (and its assets, and app routes for
//! GETs that ask for HTML) only when `TANDEM_SERVE_DEMO` is on; API paths
//! answer as before.

use reqwest::{header, StatusCode};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(demo_is_served_when_enabled, demo_is_off_by_default);

async fn get(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .header(header::ACCEPT, accept)
        .send()
        .await
        .unwrap()
}

fn content_type(res: &reqwest::Response) -> String {
    res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string()
}

async fn demo_is_served_when_enabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.serve_demo = true;
        c.public_relay_url = Some("ws://relay.test:1999".into());
    })
    .await;

    // `/` is the page, with the relay URL filled in, whatever the Accept.
    let page = get(&app, "/", "*/*").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(content_type(&page).starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<div id="root">"#), "{html}");
    assert!(html.contains(r#"<meta name="tandem-relay-url" content="ws://relay.test:1999">"#));
    assert!(html.contains("/assets/app.js"));

    // Its script and style.
    let js = get(&app, "/assets/app.js", "*/*").await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(content_type(&js).starts_with("text/javascript"));
    assert!(js.bytes().await.unwrap().len() > 1000);
    let css = get(&app, "/assets/app.css", "text/css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(content_type(&css).starts_with("text/css"));

    // App routes: the page for a browser's navigation.
    let verify = get(&app, "/verify-email?token=abc", "text/html,*/*;q=0.8").await;
    assert_eq!(verify.status(), StatusCode::OK);
    assert!(verify.text().await.unwrap().contains(r#"<div id="root">"#));

    // Unknown paths for API clients, unknown assets: the JSON 404.
    for (path, accept) in [
        ("/no-such-api", "application/json"),
        ("/no-such-api", "*/*"),
        ("/assets/missing.js", "*/*"),
    ] {
        let res = get(&app, path, accept).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // API routes answer as before, even to a browser asking for HTML.
    let api = get(&app, "/auth/session", "text/html").await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    // Other methods on app paths are not pages.
    let post = app
        .client
        .post(format!("{}/verify-email", app.base))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
}

async fn demo_is_off_by_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/", "/assets/app.js", "/verify-email"] {
        let res = get(&app, path, "text/html").await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}
