//! Workspace invites with the email outbox, and user settings with API keys
//! encrypted at rest.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    invite_flow_with_smtp_delivery,
    concurrent_accepts_add_the_member_once,
    invite_refusals,
    api_keys_are_sealed_and_masked
);

/// A minimal SMTP server on a real socket: accepts every message and keeps
/// its DATA; answers 451 to the first `fail_first` messages.
pub async fn smtp_sink(fail_first: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let failures = Arc::new(Mutex::new(fail_first));
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let (seen, failures) = (seen.clone(), failures.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.to_ascii_uppercase();
                    if cmd.starts_with("EHLO") {
                        w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.unwrap();
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go on\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            r.read_line(&mut line).await.unwrap();
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        let fail = {
                            let mut f = failures.lock().unwrap();
                            let fail = *f > 0;
                            *f = f.saturating_sub(1);
                            fail
                        };
                        if fail {
                            w.write_all(b"451 try again later\r\n").await.unwrap();
                        } else {
                            seen.lock().unwrap().push(data);
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        }
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, got)
}

pub async fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition not met within 10 s");
}

pub fn token_in(mail: &str) -> String {
    let at = mail.find("token=").expect("a link with a token") + "token=".len();
    mail[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn invite_flow_with_smtp_delivery(backend: Backend) {
    // The first delivery fails (451): the outbox retries until it is sent.
    let (port, mails) = smtp_sink(1).await;
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.public_url = "https://app.example".into();
    })
    .await;
    let owner = app.signup("ola@inv.dev", "Ola").await;
    let ws = app.workspace(&owner, "personal").await;
    let project = app.create_project(&owner, &ws, "Shared soon").await;
    let a = app
        .post(
            &format!("/workspaces/{ws}/invites"),
            &owner.token,
            json!({ "email": "Bea@Guest.example", "role": "viewer" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["status"], "pending");
    assert_eq!(a.body["email"], "bea@guest.example");
    let shown = a.body["token"].as_str().unwrap().to_string();
    let week = a.body["expiresAt"].as_i64().unwrap() - a.body["createdAt"].as_i64().unwrap();
    assert_eq!(week, 7 * 24 * 3600 * 1000);

    // The email arrives through SMTP, with the accept link.
    let mail = until(|| mails.lock().unwrap().first().cloned()).await;
    assert!(mail.contains("Subject: Join Personal on Tandem"), "{mail}");
    assert!(mail.contains("To: bea@guest.example"), "{mail}");
    assert!(
        mail.contains("https://app.example/invites/accept?token="),
        "{mail}"
    );
    let token = token_in(&mail);
    assert_eq!(token, shown);

    // The list shows it without the token; the token is stored hashed and
    // the sent email's body is cleared from the outbox.
    let list = app
        .get(&format!("/workspaces/{ws}/invites"), &owner.token)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["items"][0].get("token").is_none());
    until(|| {
        let dump = dump_invites_and_outbox(&app);
        assert!(dump.contains("bea@guest.example"), "{dump}");
        (!dump.contains(&token)).then_some(())
    })
    .await;

    let bea = app.signup("bea@guest.example", "Bea").await;
    assert_eq!(
        app.get(&format!("/projects/{project}"), &bea.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let ok = app
        .post("/invites/accept", &bea.token, json!({ "token": token }))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, json!({ "workspaceId": ws, "role": "viewer" }));
    // Bea is now a viewer of the workspace: reads, cannot write.
    assert_eq!(
        app.get(&format!("/projects/{project}"), &bea.token)
            .await
            .status,
        StatusCode::OK
    );
    let a = app
        .post(
            &format!("/workspaces/{ws}/projects"),
            &bea.token,
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let members = app
        .get(&format!("/workspaces/{ws}/members"), &owner.token)
        .await;
    assert!(members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["userId"] == bea.id.as_str() && m["role"] == "viewer"));
    let list = app
        .get(&format!("/workspaces/{ws}/invites"), &owner.token)
        .await;
    assert_eq!(list.body["items"][0]["status"], "accepted");
}

/// Every stored token hash, email body and subject, as one string.
fn dump_invites_and_outbox(app: &TestApp) -> String {
    app.sql_texts(
        "SELECT token_hash || email AS t FROM workspace_invites \
         UNION ALL SELECT body || subject || recipient AS t FROM outbox",
    )
    .join("\n")
}

async fn concurrent_accepts_add_the_member_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("ola@inv.dev", "Ola").await;
    let ws = app.workspace(&owner, "personal").await;
    let a = app
        .post(
            &format!("/workspaces/{ws}/invites"),
            &owner.token,
            json!({ "email": "bea@guest.example" }),
        )
        .await;
    let token = a.body["token"].as_str().unwrap().to_string();
    let bea = app.signup("bea@guest.example", "Bea").await;
    let answers = app
        .post_concurrently(
            20,
            "/invites/accept",
            &[&bea.token],
            json!({ "token": token }),
        )
        .await;
    let mut ok = 0;
    for (status, body) in answers {
        match status {
            StatusCode::OK => {
                ok += 1;
                assert_eq!(body["role"], "editor");
            }
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "conflict"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one accept succeeds");
    let members = app
        .get(&format!("/workspaces/{ws}/members"), &owner.token)
        .await;
    let beas: Vec<&Value> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["userId"] == bea.id.as_str())
        .collect();
    assert_eq!(beas.len(), 1);
    assert_eq!(beas[0]["role"], "editor");
}

async fn invite_refusals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("ola@inv.dev", "Ola").await;
    let member = app.signup("max@inv.dev", "Max").await;
    let ws = app.workspace(&owner, "team").await;
    let bea = app.signup("bea@guest.example", "Bea").await;
    let path = format!("/workspaces/{ws}/invites");
    let invite = |email: &str| {
        let (app, path, t, body) = (
            &app,
            path.clone(),
            owner.token.clone(),
            json!({ "email": email }),
        );
        async move {
            let a = app.post(&path, &t, body).await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
            (a.id(), a.body["token"].as_str().unwrap().to_string())
        }
    };
    // Team members who are not owners cannot invite or list; strangers get 404.
    let a = app
        .post(&path, &member.token, json!({ "email": "x@y.example" }))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&path, &bea.token).await.status,
        StatusCode::NOT_FOUND
    );
    let a = app
        .post(&path, &owner.token, json!({ "email": "not an email" }))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Someone else's invite: 403, and it stays usable for the invitee.
    let (_, t1) = invite("bea@guest.example").await;
    let a = app
        .post("/invites/accept", &member.token, json!({ "token": t1 }))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Revoked: 410.
    let (id2, t2) = invite("bea@guest.example").await;
    let r = app.delete(&format!("{path}/{id2}"), &owner.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "revoked");
    let a = app
        .post("/invites/accept", &bea.token, json!({ "token": t2 }))
        .await;
    assert_eq!(a.status, StatusCode::GONE);
    // Expired: 410.
    let (id3, t3) = invite("bea@guest.example").await;
    app.sql(&format!(
        "UPDATE workspace_invites SET expires_at = 1 WHERE id = '{id3}'"
    ));
    let a = app
        .post("/invites/accept", &bea.token, json!({ "token": t3 }))
        .await;
    assert_eq!(a.status, StatusCode::GONE);
    assert_eq!(a.body["error"]["message"], "the invite has expired");
    // Unknown token: 404.
    let a = app
        .post("/invites/accept", &bea.token, json!({ "token": "nope" }))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // The first one still works; an accepted invite cannot be revoked.
    let a = app
        .post("/invites/accept", &bea.token, json!({ "token": t1 }))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let list = app.get(&path, &owner.token).await;
    let statuses: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["expired", "revoked", "accepted"]);
    let accepted_id = list.body["items"][2]["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("{path}/{accepted_id}"), &owner.token)
            .await
            .status,
        StatusCode::CONFLICT
    );
    // Each invite sends an email: one user may send 10 a minute, then 429.
    for i in 3..10 {
        invite(&format!("guest{i}@guest.example")).await;
    }
    let a = app
        .post(
            &path,
            &owner.token,
            json!({ "email": "one-too-many@guest.example" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.code(), "rate_limited");
}

async fn api_keys_are_sealed_and_masked(backend: Backend) {
    let key = tandem_control::crypto::new_settings_key();
    let k = key.clone();
    let app = TestApp::spawn_with(backend, move |c| c.settings_key = Some(k)).await;
    let ada = app.signup("ada@keys.dev", "Ada").await;
    let secret = "sk-proj-THIS-IS-SECRET-0123456789wxyz";
    let a = app
        .call(
            reqwest::Method::PUT,
            "/me/settings/api-keys/openai",
            Some(&ada.token),
            Some(json!({ "key": secret })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["apiKeys"]["openai"], "sk-…wxyz");
    let a = app
        .patch(
            "/me/settings",
            &ada.token,
            json!({ "modelPreferences": { "default": "gpt-x" } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let got = app.get("/me/settings", &ada.token).await;
    assert_eq!(got.body["apiKeys"], json!({ "openai": "sk-…wxyz" }));
    assert_eq!(got.body["modelPreferences"], json!({ "default": "gpt-x" }));
    assert!(!got.body.to_string().contains("SECRET"));
    // At rest: neither the key nor a recognisable part of it.
    let dump = dump_api_keys(&app);
    assert!(
        !dump.contains("SECRET") && !dump.contains("0123456789"),
        "{dump}"
    );
    // Another user sees only their own (empty) settings.
    let bob = app.signup("bob@keys.dev", "Bob").await;
    assert_eq!(
        app.get("/me/settings", &bob.token).await.body["apiKeys"],
        json!({})
    );

    // A control with another settings key fails clearly, naming the keys.
    let rotated = app.replica(|_| {}).await;
    let a = rotated.get("/me/settings", &ada.token).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.code(), "misconfigured");
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TANDEM_SETTINGS_KEY"));
    // With the old key listed as previous it reads them, and re-seals them.
    let k = key.clone();
    let new_key = tandem_control::crypto::new_settings_key();
    let nk = new_key.clone();
    let rotating = app
        .replica(move |c| {
            c.settings_key = Some(nk);
            c.settings_key_previous = vec![k];
        })
        .await;
    assert_eq!(
        rotating.get("/me/settings", &ada.token).await.body["apiKeys"]["openai"],
        "sk-…wxyz"
    );
    let only_new = app.replica(move |c| c.settings_key = Some(new_key)).await;
    assert_eq!(
        only_new.get("/me/settings", &ada.token).await.body["apiKeys"]["openai"],
        "sk-…wxyz"
    );
    // Without any key, storing is refused with a clear error.
    let keyless = app.replica(|c| c.settings_key = None).await;
    let a = keyless
        .call(
            reqwest::Method::PUT,
            "/me/settings/api-keys/anthropic",
            Some(&bob.token),
            Some(json!({ "key": secret })),
        )
        .await;
    assert_eq!(a.code(), "misconfigured");

    // Bad input and deletion.
    for (path, body) in [
        ("/me/settings/api-keys/Open%20AI", json!({ "key": secret })),
        ("/me/settings/api-keys/openai", json!({ "key": "" })),
        ("/me/settings/api-keys/openai", json!({ "key": "a\u{0}b" })),
    ] {
        let a = app
            .call(reqwest::Method::PUT, path, Some(&ada.token), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
    assert_eq!(
        app.delete("/me/settings/api-keys/openai", &ada.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/me/settings/api-keys/openai", &ada.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/me/settings", &ada.token).await.body["apiKeys"],
        json!({})
    );
}

fn dump_api_keys(app: &TestApp) -> String {
    let rows = app.sql_texts("SELECT key_id || ' ' || ciphertext AS t FROM user_api_keys");
    assert_eq!(rows.len(), 1);
    rows.concat()
}
