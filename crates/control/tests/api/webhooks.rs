//! Webhooks: endpoints (owners only, secret shown once), delivery to a real
//! HTTP receiver on port 0 (signed afresh on every attempt, stable
//! `webhook-id`), the retry schedule (scaled down), 410, redirects,
//! timeouts, manual redelivery, SSRF refusals, and every event type.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tandem_control::ControlConfig;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestOrg, TestUser};

both_backends!(
    endpoints_are_owned_and_the_secret_is_shown_once,
    failures_are_retried_with_fresh_signatures_and_one_id,
    a_410_disables_and_redelivery_works_once_reenabled,
    redirects_are_not_followed_and_timeouts_fail,
    a_failed_attempt_records_no_part_of_the_url,
    a_delivery_keeps_its_latest_attempts,
    non_public_targets_are_refused,
    every_event_type_is_delivered,
    finished_deliveries_are_pruned_after_the_retention,
    an_endpoint_made_on_one_replica_gets_the_events_of_another,
    joining_by_domain_announces_the_new_member,
    removing_an_org_member_announces_each_ended_membership,
);

/// How the receiver answers one request.
#[derive(Clone)]
enum Reply {
    Status(u16),
    /// Answers `status` after `ms` milliseconds.
    Slow(u16, u64),
    Redirect(String),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    timestamp: i64,
    signature: String,
    body: String,
}

/// A real HTTP server on 127.0.0.1:0 that records what it gets and answers
/// from a script (200 once the script is used up).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

type Shared = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<VecDeque<Reply>>>);

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let reply = shared.1.lock().unwrap().pop_front();
    shared.0.lock().unwrap().push(Received {
        path: req.path().to_string(),
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp").parse().unwrap_or(-1),
        signature: h("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match reply.unwrap_or(Reply::Status(200)) {
        Reply::Status(s) => HttpResponse::build(actix_web::http::StatusCode::from_u16(s).unwrap())
            .body(format!("answered {s}")),
        Reply::Slow(s, ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            HttpResponse::build(actix_web::http::StatusCode::from_u16(s).unwrap()).finish()
        }
        Reply::Redirect(to) => HttpResponse::Found()
            .insert_header(("location", to))
            .finish(),
    }
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let shared: Shared = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(script.into())),
        );
        let data = web::Data::new(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            got: shared.0,
            script: shared.1,
            handle,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (at most 10 s); returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the receiver got {} of {n} requests: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The signature of a request, computed here from the secret (the way a
/// receiver checks it).
fn sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(&key, format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An app whose retry schedule runs in milliseconds (5 s → 1 ms, 5 min → 60 ms).
async fn fast_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.webhook_retry_scale = 0.0002;
        c.outbox_poll_ms = 20;
    })
    .await
}

struct Org {
    owner: TestUser,
    id: String,
    team: String,
    project: String,
}

async fn org(app: &TestApp, domain: &str) -> Org {
    let TestOrg { owner, id, team } = app.org(&format!("olga@{domain}"), "Olga").await;
    let project = app.create_project(&owner, &team, "P").await;
    Org {
        owner,
        id,
        team,
        project,
    }
}

async fn hook(app: &TestApp, org: &Org, url: &str, events: &[&str]) -> (String, String) {
    let a = app
        .post(
            &format!("/orgs/{}/webhooks", org.id),
            &org.owner.token,
            json!({ "url": url, "events": events, "description": "test" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    (a.id(), a.body["secret"].as_str().unwrap().to_string())
}

async fn deliveries(app: &TestApp, org: &Org, hook: &str) -> Vec<Value> {
    let a = app
        .get(
            &format!("/orgs/{}/webhooks/{hook}/deliveries", org.id),
            &org.owner.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["items"].as_array().unwrap().clone()
}

/// Waits until the newest delivery of `hook` is no longer pending.
async fn settled(app: &TestApp, org: &Org, hook: &str) -> Value {
    let start = Instant::now();
    loop {
        let items = deliveries(app, org, hook).await;
        if let Some(d) = items.first().filter(|d| d["state"] != "pending") {
            return d.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still pending: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn endpoints_are_owned_and_the_secret_is_shown_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let o = org(&app, "hooks-crud.dev").await;
    let member = app.signup("mo@hooks-crud.dev", "Mo").await;
    let outsider = app.signup("ot@elsewhere-hooks.dev", "Ot").await;
    let base = format!("/orgs/{}/webhooks", o.id);
    let body = json!({ "url": "https://1.1.1.1/hook", "events": ["document.created"] });

    // Members may not manage (403), outsiders are told nothing (404).
    let a = app.post(&base, &member.token, body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(
        app.get(&base, &member.token).await.status,
        StatusCode::FORBIDDEN
    );
    let a = app.post(&base, &outsider.token, body.clone()).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    // Created: the secret once, whsec_ + base64 of 24+ bytes.
    let (id, secret) = hook(
        &app,
        &o,
        "https://1.1.1.1/hook",
        &["document.created", "org.updated"],
    )
    .await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(raw.len() >= 24);
    // Never again: not in the list, the endpoint, an update, nor in the database.
    let list = app.get(&base, &o.owner.token).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let one = app.get(&format!("{base}/{id}"), &o.owner.token).await;
    assert_eq!(
        one.body["events"],
        json!(["document.created", "org.updated"])
    );
    assert_eq!(one.body["enabled"], true);
    for shown in [&list.body, &one.body] {
        assert!(!shown.to_string().contains(&secret[6..]), "{shown}");
        assert!(!shown.to_string().contains("secret"), "{shown}");
    }
    let stored = app.sql_texts("SELECT secret_sealed AS t FROM webhook_endpoints");
    assert!(!stored[0].contains(&secret[6..]));
    assert_eq!(
        app.get(&format!("{base}/{id}"), &member.token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("{base}/{id}"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Change it; disable and enable.
    let a = app
        .patch_ok(
            &format!("{base}/{id}"),
            &o.owner,
            json!({ "events": ["file.uploaded"], "description": "files", "enabled": false }),
        )
        .await;
    assert_eq!(a["events"], json!(["file.uploaded"]));
    assert_eq!(a["enabled"], false);
    assert_eq!(a["disabledReason"], "manual");
    let a = app
        .patch(
            &format!("{base}/{id}"),
            &o.owner.token,
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(a.body["enabled"], true);
    assert_eq!(a.body["disabledReason"], Value::Null);

    // Rotation: a new secret, shown once.
    let r = app
        .post(
            &format!("{base}/{id}/rotate-secret"),
            &o.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rotated = r.body["secret"].as_str().unwrap();
    assert!(rotated.starts_with("whsec_"));
    assert_ne!(rotated, secret);
    let r = app
        .post(
            &format!("{base}/{id}/rotate-secret"),
            &member.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Bad input.
    for bad in [
        json!({ "url": "ftp://1.1.1.1/", "events": ["org.updated"] }),
        json!({ "url": "https://u:p@1.1.1.1/", "events": ["org.updated"] }),
        json!({ "url": "https://1.1.1.1/", "events": [] }),
        json!({ "url": "https://1.1.1.1/", "events": ["nope"] }),
        json!({ "url": "https://1.1.1.1/", "events": ["org.updated"], "description": "x".repeat(501) }),
        json!({ "url": "https://1.1.1.1/" }),
    ] {
        let a = app.post(&base, &o.owner.token, bad.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            a.body
        );
    }

    // Paged list.
    for _ in 0..2 {
        hook(&app, &o, "https://1.1.1.1/more", &["org.updated"]).await;
    }
    let p1 = app.get(&format!("{base}?limit=2"), &o.owner.token).await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
    let cursor = p1.body["nextCursor"].as_str().unwrap();
    let p2 = app
        .get(&format!("{base}?limit=2&cursor={cursor}"), &o.owner.token)
        .await;
    assert_eq!(p2.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2.body["nextCursor"], Value::Null);

    // Delete.
    let a = app.delete(&format!("{base}/{id}"), &member.token).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app.delete(&format!("{base}/{id}"), &o.owner.token).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = app.get(&format!("{base}/{id}"), &o.owner.token).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Every change is in the org's audit log, by the owner.
    app.assert_audited(
        &o.id,
        &o.owner,
        &[
            "webhook.create",
            "webhook.update",
            "webhook.rotate_secret",
            "webhook.delete",
        ],
    )
    .await;
    let a = app
        .get(&format!("/orgs/{}/audit", o.id), &o.owner.token)
        .await;
    assert!(
        !a.body.to_string().contains("whsec_"),
        "a secret in the audit log"
    );
}

async fn failures_are_retried_with_fresh_signatures_and_one_id(backend: Backend) {
    let app = fast_app(backend).await;
    // Each failure takes 1 s to answer, so the three attempts fall on three
    // different seconds (webhook-timestamp has 1 s resolution).
    let rx = Receiver::start(vec![Reply::Slow(500, 1000), Reply::Slow(500, 1000)]).await;
    let o = org(&app, "hooks-retry.dev").await;
    let (id, secret) = hook(&app, &o, &format!("{}/in", rx.url), &["document.created"]).await;
    let doc = app
        .create_resource(&o.owner, &o.project, "documents", "Plan")
        .await;

    let got = rx.wait_for(3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let d = settled(&app, &o, &id).await;
    assert_eq!(d["state"], "delivered", "{d}");
    for r in &got {
        // The same message id on every attempt, each signed for its own timestamp.
        assert_eq!(r.id, got[0].id);
        assert!(r.id.starts_with("msg_"));
        assert_eq!(r.body, got[0].body);
        assert_eq!(r.signature, sign(&secret, &r.id, r.timestamp, &r.body));
        assert!((r.timestamp - now_secs()).abs() < 30);
    }
    let stamps: Vec<i64> = got.iter().map(|r| r.timestamp).collect();
    assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2], "{stamps:?}");
    assert_ne!(got[0].signature, got[1].signature);
    assert_ne!(got[1].signature, got[2].signature);
    // The body: {type, timestamp, data}.
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "document.created");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["id"], doc.as_str());
    assert_eq!(body["data"]["workspaceId"], o.team.as_str());

    // The log: event id, type, three attempts with status, error, duration.
    assert_eq!(d["eventId"], got[0].id.as_str());
    assert_eq!(d["eventType"], "document.created");
    assert_eq!(d["nextAttemptAt"], Value::Null);
    let attempts = d["attempts"].as_array().unwrap();
    let codes: Vec<i64> = attempts
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 500, 200]);
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert_eq!(attempts[2]["error"], Value::Null);
    assert!(attempts[0]["durationMs"].as_i64().unwrap() >= 900);
    assert_eq!(attempts[2]["responseBody"], "answered 200");
    let e = app
        .get(&format!("/orgs/{}/webhooks/{id}", o.id), &o.owner.token)
        .await;
    assert_eq!(e.body["enabled"], true);
    assert_eq!(e.body["failingSince"], Value::Null);
}

async fn a_410_disables_and_redelivery_works_once_reenabled(backend: Backend) {
    let app = fast_app(backend).await;
    let rx = Receiver::start(vec![Reply::Status(410)]).await;
    let o = org(&app, "hooks-gone.dev").await;
    let (id, secret) = hook(&app, &o, &rx.url, &["document.created"]).await;
    let base = format!("/orgs/{}/webhooks/{id}", o.id);
    app.create_resource(&o.owner, &o.project, "documents", "A")
        .await;
    rx.wait_for(1).await;
    let d = settled(&app, &o, &id).await;
    assert_eq!(d["state"], "failed");
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "no retry after 410"
    );
    let e = app.get(&base, &o.owner.token).await;
    assert_eq!(e.body["enabled"], false);
    assert_eq!(e.body["disabledReason"], "gone");

    // A disabled endpoint gets no new events and cannot redeliver.
    app.create_resource(&o.owner, &o.project, "documents", "B")
        .await;
    assert_eq!(deliveries(&app, &o, &id).await.len(), 1);
    let did = d["id"].as_str().unwrap();
    let a = app
        .post(
            &format!("{base}/deliveries/{did}/redeliver"),
            &o.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);

    // Re-enabled: a manual redelivery sends the same message, signed anew.
    app.patch(&base, &o.owner.token, json!({ "enabled": true }))
        .await;
    let a = app
        .post(
            &format!("{base}/deliveries/{did}/redeliver"),
            &o.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let got = rx.wait_for(2).await;
    assert_eq!(got[1].id, got[0].id);
    assert_eq!(
        got[1].signature,
        sign(&secret, &got[1].id, got[1].timestamp, &got[1].body)
    );
    let d = settled(&app, &o, &id).await;
    assert_eq!(d["state"], "delivered");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2);
    // Unknown delivery: 404; another org's owner: 404.
    let a = app
        .post(
            &format!("{base}/deliveries/nope/redeliver"),
            &o.owner.token,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // The 410 disabled it in the server's name; the owner re-enabled it.
    let log = app.audit_actions(&o.id, &o.owner.token).await;
    assert!(
        log.iter()
            .any(|(a, by)| a == "webhook.disable" && by == "system"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|(a, by)| a == "webhook.update" && *by == o.owner.id),
        "{log:?}"
    );
}

async fn redirects_are_not_followed_and_timeouts_fail(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.webhook_retry_scale = 0.0002;
        c.outbox_poll_ms = 20;
        c.webhook_timeout_ms = 300;
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    rx.script.lock().unwrap().extend([
        Reply::Redirect(format!("{}/elsewhere", rx.url)),
        Reply::Slow(200, 1500),
    ]);
    let o = org(&app, "hooks-redirect.dev").await;
    let (id, _) = hook(&app, &o, &format!("{}/hook", rx.url), &["document.created"]).await;
    app.create_resource(&o.owner, &o.project, "documents", "A")
        .await;
    rx.wait_for(3).await;
    let d = settled(&app, &o, &id).await;
    assert_eq!(d["state"], "delivered", "{d}");
    // Nothing went to the redirect's target.
    assert!(rx.got().iter().all(|r| r.path == "/hook"), "{:?}", rx.got());
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{d}");
    assert_eq!(attempts[0]["statusCode"], 302);
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("redirect"),
        "{d}"
    );
    assert_eq!(attempts[1]["statusCode"], Value::Null);
    assert!(
        attempts[1]["error"].as_str().unwrap().contains("timed out"),
        "{d}"
    );
    assert!(attempts[1]["durationMs"].as_i64().unwrap() < 1400);
    assert_eq!(attempts[2]["statusCode"], 200);
}

/// A request error names its URL; the attempt's record must not, since an
/// endpoint's path or query may hold a secret of its receiver.
async fn a_failed_attempt_records_no_part_of_the_url(backend: Backend) {
    let app = fast_app(backend).await;
    // A port nobody listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = org(&app, "hooks-refused.dev").await;
    let url = format!("http://127.0.0.1:{port}/in/path-secret-5e7?key=query-secret-9a1");
    let (id, _) = hook(&app, &o, &url, &["document.created"]).await;
    app.create_resource(&o.owner, &o.project, "documents", "A")
        .await;
    // Retries follow (for longer than this test waits); two attempts will do.
    let start = Instant::now();
    let d = loop {
        let items = deliveries(&app, &o, &id).await;
        if let Some(d) = items
            .first()
            .filter(|d| d["attempts"].as_array().unwrap().len() >= 2)
        {
            break d.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{items:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for a in d["attempts"].as_array().unwrap() {
        let error = a["error"].as_str().unwrap();
        assert!(!error.is_empty(), "{d}");
        for secret in ["path-secret-5e7", "query-secret-9a1", "/in/"] {
            assert!(!error.contains(secret), "{error}");
        }
    }
}

/// Redeliveries add attempts without end: a delivery keeps its latest 20.
async fn a_delivery_keeps_its_latest_attempts(backend: Backend) {
    let app = fast_app(backend).await;
    let rx = Receiver::start(vec![]).await;
    let o = org(&app, "hooks-kept.dev").await;
    let (id, _) = hook(&app, &o, &rx.url, &["document.created"]).await;
    app.create_resource(&o.owner, &o.project, "documents", "A")
        .await;
    let base = format!("/orgs/{}/webhooks/{id}", o.id);
    for n in 1..=23 {
        rx.wait_for(n).await;
        let d = settled(&app, &o, &id).await;
        assert_eq!(d["state"], "delivered", "{d}");
        if n == 23 {
            let numbers: Vec<i64> = d["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["attempt"].as_i64().unwrap())
                .collect();
            assert_eq!(numbers, (4..=23).collect::<Vec<_>>());
            let did = d["id"].as_str().unwrap();
            let rows = app.sql_texts(&format!(
                "SELECT delivery_id AS t FROM webhook_attempts WHERE delivery_id = '{did}'"
            ));
            assert_eq!(rows.len(), 20);
            break;
        }
        let a = app
            .post(
                &format!("{base}/deliveries/{}/redeliver", d["id"].as_str().unwrap()),
                &o.owner.token,
                json!({}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    }
}

async fn non_public_targets_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.webhook_allow_private = false;
        c.webhook_retry_scale = 0.0002;
        c.outbox_poll_ms = 20;
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let o = org(&app, "hooks-ssrf.dev").await;
    let base = format!("/orgs/{}/webhooks", o.id);
    for url in [
        rx.url.clone(),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://0.0.0.0/".to_string(),
    ] {
        let a = app
            .post(
                &base,
                &o.owner.token,
                json!({ "url": url, "events": ["org.updated"] }),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            a.body
        );
        assert_eq!(a.code(), "webhook_target_refused", "{url}");
    }
    // A public target is accepted, but not changed into a private one.
    let (id, _) = hook(&app, &o, "https://1.1.1.1/hook", &["document.created"]).await;
    let a = app
        .patch(
            &format!("{base}/{id}"),
            &o.owner.token,
            json!({ "url": rx.url }),
        )
        .await;
    assert_eq!(a.code(), "webhook_target_refused");

    // Where the target points is checked again at delivery: the stored URL
    // turned private (as a DNS answer may change) is refused, not contacted.
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        app.sql(&format!(
            "UPDATE webhook_endpoints SET url = '{target}', enabled = TRUE, disabled_reason = NULL WHERE id = '{id}'"
        ));
        app.create_resource(&o.owner, &o.project, "documents", "A")
            .await;
        let start = Instant::now();
        let d = loop {
            let items = deliveries(&app, &o, &id).await;
            let d = items[0].clone();
            if !d["attempts"].as_array().unwrap().is_empty() {
                break d;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{items:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let error = d["attempts"][0]["error"].as_str().unwrap();
        assert!(error.starts_with("refused:"), "{target}: {error}");
    }
    assert!(rx.got().is_empty(), "{:?}", rx.got());
}

fn yjs_edit(text: &str) -> Vec<u8> {
    use yrs::{ReadTxn, Text, Transact};
    let doc = yrs::Doc::new();
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    txn.encode_state_as_update_v1(&yrs::StateVector::default())
}

async fn save_snapshot(app: &TestApp, doc: &str, text: &str) {
    let res = app
        .client
        .post(format!(
            "{}/collaboration/rooms/doc-{doc}/snapshot",
            app.base
        ))
        .bearer_auth("test-relay-secret")
        .header("content-type", "application/octet-stream")
        .body(yjs_edit(text))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

async fn every_event_type_is_delivered(backend: Backend) {
    let app = fast_app(backend).await;
    let rx = Receiver::start(vec![]).await;
    let o = org(&app, "hooks-all.dev").await;
    let all = tandem_protocol::webhooks::EVENT_TYPES;
    // Joined the org before the hook was made (joining is announced too).
    let colleague = app.signup("cy@hooks-all.dev", "Cy").await;
    let (_, secret) = hook(&app, &o, &rx.url, &all).await;

    // Things in a personal workspace announce nothing.
    let personal = app.workspace(&o.owner, "personal").await;
    let pp = app.create_project(&o.owner, &personal, "Mine").await;
    app.create_resource(&o.owner, &pp, "documents", "Private")
        .await;

    let members = format!("/projects/{}/members", o.project);
    let a = app.grant(&members, &o.owner, &colleague.id, "viewer").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    app.patch_ok(
        &format!("{members}/{}", colleague.id),
        &o.owner,
        json!({ "role": "editor" }),
    )
    .await;
    let a = app
        .delete(&format!("{members}/{}", colleague.id), &o.owner.token)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let doc = app
        .create_resource(&o.owner, &o.project, "documents", "D")
        .await;
    // Two saves in a row: one `document.saved` (debounced).
    save_snapshot(&app, &doc, "hello").await;
    save_snapshot(&app, &doc, "again").await;
    let a = app
        .delete(&format!("/documents/{doc}"), &o.owner.token)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let c = crate::conversations::conversation(&app, &o.owner, &o.project, "Chat").await;
    crate::conversations::say(&app, &o.owner, &c, "hi there").await;
    let file = crate::files::upload(&app, &o.owner, &o.team, "a.txt", b"some bytes").await;
    app.patch_ok(
        &format!("/orgs/{}", o.id),
        &o.owner,
        json!({ "joinPolicy": "approval" }),
    )
    .await;

    let got = rx.wait_for(all.len()).await;
    // Give a stray extra event (a second save, the personal document) a moment to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = if rx.got().len() > got.len() {
        rx.got()
    } else {
        got
    };
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let mut types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    types.sort();
    let mut want = all.to_vec();
    want.sort();
    assert_eq!(types, want, "one of each: {bodies:#?}");
    for r in &got {
        assert_eq!(r.signature, sign(&secret, &r.id, r.timestamp, &r.body));
    }
    let of = |t: &str| bodies.iter().find(|b| b["type"] == t).unwrap()["data"].clone();
    assert_eq!(of("member.added")["userId"], colleague.id.as_str());
    assert_eq!(of("member.added")["role"], "viewer");
    assert_eq!(of("member.added")["scopeId"], o.project.as_str());
    assert_eq!(of("member.role_changed")["role"], "editor");
    assert_eq!(of("member.removed")["userId"], colleague.id.as_str());
    assert_eq!(of("document.created")["title"], "D");
    assert_eq!(of("document.saved")["id"], doc.as_str());
    assert_eq!(of("document.saved")["workspaceId"], o.team.as_str());
    assert_eq!(of("document.deleted")["id"], doc.as_str());
    assert_eq!(
        of("conversation.message_created")["conversationId"],
        c.as_str()
    );
    assert_eq!(
        of("conversation.message_created")["message"]["content"],
        "hi there"
    );
    assert_eq!(of("file.uploaded")["file"]["id"], file["id"]);
    assert_eq!(of("file.uploaded")["workspaceId"], o.team.as_str());
    assert_eq!(of("org.updated")["joinPolicy"], "approval");
    assert_eq!(of("org.updated")["id"], o.id.as_str());
}

/// Polls `query` (rows of one text column `t`) until `done` holds (10 s at most).
async fn until_rows(app: &TestApp, query: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let rows = app.sql_texts(query);
        if done(&rows) {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{query}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const FINISHED: &str = "SELECT id AS t FROM webhook_deliveries WHERE state <> 'pending'";
const ALL: &str = "SELECT id AS t FROM webhook_deliveries";

/// A retention of one minute; retries on the real schedule (a failed
/// attempt waits at least 4.5 s, so a failing delivery stays pending).
fn one_minute_retention(c: &mut ControlConfig) {
    c.webhook_retention_days = 1.0 / 1440.0;
    c.outbox_poll_ms = 20;
}

async fn finished_deliveries_are_pruned_after_the_retention(backend: Backend) {
    let app = TestApp::spawn_with(backend, one_minute_retention).await;
    let ok = Receiver::start(vec![]).await;
    let failing = Receiver::start(vec![Reply::Status(500); 50]).await;
    let gone = Receiver::start(vec![Reply::Status(410)]).await;
    let o = org(&app, "hooks-prune.dev").await;
    let saved = ["document.created", "document.saved"];
    hook(&app, &o, &ok.url, &saved).await;
    hook(&app, &o, &failing.url, &["document.created"]).await;
    hook(&app, &o, &gone.url, &["document.created"]).await;

    // Old: two delivered, one failed for good (410), one waiting for a retry.
    let old_doc = app
        .create_resource(&o.owner, &o.project, "documents", "Old")
        .await;
    save_snapshot(&app, &old_doc, "old").await;
    until_rows(&app, FINISHED, |r| r.len() == 3).await;
    failing.wait_for(1).await;
    let old = app.sql_texts(ALL);
    assert_eq!(old.len(), 4, "{old:?}");
    let old_pending =
        app.sql_texts("SELECT id AS t FROM webhook_deliveries WHERE state = 'pending'");
    assert_eq!(old_pending.len(), 1);
    // An hour ago, as far as the retention and the debounce are concerned.
    app.sql("UPDATE webhook_deliveries SET created_at = created_at - 3600000, next_attempt_at = next_attempt_at - 3600000 WHERE state <> 'pending'");
    app.sql(
        "UPDATE webhook_deliveries SET created_at = created_at - 3600000 WHERE state = 'pending'",
    );
    app.sql("UPDATE webhook_debounce SET last_at = last_at - 3600000");

    // New: two delivered, one retrying (the 410 disabled its endpoint).
    let new_doc = app
        .create_resource(&o.owner, &o.project, "documents", "New")
        .await;
    save_snapshot(&app, &new_doc, "new").await;
    until_rows(&app, FINISHED, |r| r.len() == 5).await;
    let all = until_rows(&app, ALL, |r| r.len() == 7).await;
    let mut want: Vec<String> = all.iter().filter(|id| !old.contains(id)).cloned().collect();
    want.extend(old_pending.clone());
    want.sort();

    // Another replica's dispatcher prunes as it starts: exactly the old
    // finished deliveries go, with their attempts, and the expired mark.
    let replica = app.replica(one_minute_retention).await;
    let mut kept = until_rows(&replica, ALL, |r| r.len() == 4).await;
    kept.sort();
    assert_eq!(kept, want);
    let attempts = app.sql_texts("SELECT DISTINCT delivery_id AS t FROM webhook_attempts");
    assert!(attempts.iter().all(|d| kept.contains(d)), "{attempts:?}");
    assert!(attempts.contains(&old_pending[0]), "{attempts:?}");
    assert_eq!(
        app.sql_texts("SELECT subject AS t FROM webhook_debounce"),
        vec![format!("document.saved:{new_doc}")]
    );
    // Nothing else is old enough.
    let again = tandem_control::webhooks::prune(&replica.state)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(app.sql_texts(ALL).len(), 4);
}

async fn an_endpoint_made_on_one_replica_gets_the_events_of_another(backend: Backend) {
    let a = fast_app(backend).await;
    // Replicas of one deployment share its settings key (which seals the
    // signing secrets).
    let key = a.state.config.settings_key.clone();
    let b = a
        .replica(|c| {
            c.webhook_retry_scale = 0.0002;
            c.outbox_poll_ms = 20;
            c.settings_key = key;
        })
        .await;
    let rx = Receiver::start(vec![]).await;
    let o = org(&a, "hooks-replicas.dev").await;
    // B writes events while the org has no endpoint…
    b.create_resource(&o.owner, &o.project, "documents", "Before")
        .await;
    // …then A makes one: B's next events go to it, in a workspace and org-wide.
    let (id, _) = hook(&a, &o, &rx.url, &["document.created", "org.updated"]).await;
    let doc = b
        .create_resource(&o.owner, &o.project, "documents", "After")
        .await;
    b.patch_ok(
        &format!("/orgs/{}", o.id),
        &o.owner,
        json!({ "name": "Renamed" }),
    )
    .await;
    let got = rx.wait_for(2).await;
    let mut bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["type"].as_str().unwrap().to_string());
    assert_eq!(bodies[0]["type"], "document.created");
    assert_eq!(bodies[0]["data"]["id"], doc.as_str());
    assert_eq!(bodies[1]["type"], "org.updated");
    assert_eq!(bodies[1]["data"]["name"], "Renamed");
    // Disabled on A: B sends it nothing more.
    a.patch_ok(
        &format!("/orgs/{}/webhooks/{id}", o.id),
        &o.owner,
        json!({ "enabled": false }),
    )
    .await;
    b.create_resource(&o.owner, &o.project, "documents", "Later")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 2, "{:?}", rx.got());
    assert_eq!(a.sql_texts(ALL).len(), 2);
}

async fn joining_by_domain_announces_the_new_member(backend: Backend) {
    let app = fast_app(backend).await;
    let rx = Receiver::start(vec![]).await;
    let o = org(&app, "hooks-join.dev").await;
    hook(&app, &o, &rx.url, &["member.added"]).await;
    let announced = |r: &Received| -> Value {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], "member.added", "{body}");
        body["data"].clone()
    };
    let feed = |user: &str| {
        app.sql_texts(&format!(
            "SELECT kind AS t FROM workspace_events WHERE workspace_id = '{}' AND entity_id = '{user}'",
            o.team
        ))
    };

    // `auto`: a verified address of the domain joins at once, an editor of
    // the team workspace.
    let max = app.signup("max@hooks-join.dev", "Max").await;
    let got = rx.wait_for(1).await;
    let data = announced(&got[0]);
    assert_eq!(data["userId"], max.id.as_str());
    assert_eq!(data["role"], "editor");
    assert_eq!(data["scopeKind"], "workspace");
    assert_eq!(data["scopeId"], o.team.as_str());
    assert_eq!(data["workspaceId"], o.team.as_str());
    assert_eq!(feed(&max.id), vec!["member.created".to_string()]);

    // `approval`: the request adds nobody; the owner's acceptance does.
    app.patch_ok(
        &format!("/orgs/{}", o.id),
        &o.owner,
        json!({ "joinPolicy": "approval" }),
    )
    .await;
    let ann = app.signup("ann@hooks-join.dev", "Ann").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.got().len(), 1, "{:?}", rx.got());
    assert!(feed(&ann.id).is_empty());
    let accept = format!("/orgs/{}/join-requests/{}/accept", o.id, ann.id);
    let a = app
        .call(reqwest::Method::POST, &accept, Some(&o.owner.token), None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let got = rx.wait_for(2).await;
    let data = announced(&got[1]);
    assert_eq!(data["userId"], ann.id.as_str());
    assert_eq!(data["role"], "editor");
    assert_eq!(feed(&ann.id), vec!["member.created".to_string()]);
}

async fn removing_an_org_member_announces_each_ended_membership(backend: Backend) {
    let app = fast_app(backend).await;
    let rx = Receiver::start(vec![]).await;
    let o = org(&app, "hooks-leave.dev").await;
    // Max also holds explicit grants (the team workspace, a project); Ann
    // is an editor of the team workspace only because she is in the org.
    let max = app.signup("max@hooks-leave.dev", "Max").await;
    let ann = app.signup("ann@hooks-leave.dev", "Ann").await;
    for scope in [
        format!("/workspaces/{}/members", o.team),
        format!("/projects/{}/members", o.project),
    ] {
        let a = app.grant(&scope, &o.owner, &max.id, "viewer").await;
        assert!(a.status.is_success(), "{scope}: {}", a.body);
    }
    hook(&app, &o, &rx.url, &["member.removed"]).await;

    for user in [&max, &ann] {
        let path = format!("/orgs/{}/members/{}", o.id, user.id);
        let a = app
            .call(reqwest::Method::DELETE, &path, Some(&o.owner.token), None)
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    }
    // One `member.removed` per ended membership, none twice: Max's two
    // grants (his explicit workspace grant stands for his membership
    // there), and Ann's membership of the team workspace.
    rx.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = rx.got();
    assert_eq!(got.len(), 3, "{got:?}");
    let mut ended: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["type"], "member.removed", "{body}");
            assert_eq!(body["data"]["role"], Value::Null, "{body}");
            assert_eq!(body["data"]["workspaceId"], o.team.as_str(), "{body}");
            let s = |k: &str| body["data"][k].as_str().unwrap().to_string();
            (s("userId"), s("scopeKind"), s("scopeId"))
        })
        .collect();
    ended.sort();
    let mut want = vec![
        (max.id.clone(), "project".into(), o.project.clone()),
        (max.id.clone(), "workspace".into(), o.team.clone()),
        (ann.id.clone(), "workspace".into(), o.team.clone()),
    ];
    want.sort();
    assert_eq!(ended, want);
}
