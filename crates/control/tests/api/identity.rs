//! Verified identity before tenancy (issue 11): email verification through
//! the outbox and a real SMTP server, the domain's org taking verified users
//! in by its join policy, free-mail domains, per-account login throttling,
//! trusted proxies, and password hashing off the database connections.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Answer, Backend, TestApp};
use crate::invites::{smtp_sink, token_in, until};

both_backends!(
    stranger_at_a_domain_is_kept_out_until_verified,
    verification_links_are_single_use_and_expire,
    resends_are_limited_per_user,
    first_verified_user_of_a_domain_owns_it,
    concurrent_verifications_make_one_org,
    free_mail_strangers_get_separate_orgs,
    join_policy_approval,
    join_policy_off_and_org_permissions,
    failed_logins_are_throttled_per_account,
);

type Mails = Arc<Mutex<Vec<String>>>;

/// An app whose emails go to a real SMTP server on loopback.
async fn app_with_smtp(backend: Backend) -> (TestApp, Mails) {
    let (port, mails) = smtp_sink(0).await;
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.public_url = "https://app.example".into();
    })
    .await;
    (app, mails)
}

/// The token of the `n`-th (0-based) verification email sent to `to`.
async fn mailed_token(mails: &Mails, to: &str, n: usize) -> String {
    let mail = until(|| {
        mails
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(&format!("To: {to}")) && m.contains("/verify-email?token="))
            .nth(n)
            .cloned()
    })
    .await;
    assert!(
        mail.contains("https://app.example/verify-email?token="),
        "{mail}"
    );
    assert!(
        mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    token_in(&mail)
}

async fn use_link(app: &TestApp, token: &str) -> Answer {
    app.call(
        Method::POST,
        "/auth/verify-email",
        None,
        Some(json!({ "token": token })),
    )
    .await
}

fn kinds(session: &Value) -> Vec<String> {
    let mut v: Vec<String> = session["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["type"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The regression of issue 11: `anything@acme.com` with a password used to
/// land in Acme's org as an editor of its team workspace.
async fn stranger_at_a_domain_is_kept_out_until_verified(backend: Backend) {
    let (app, mails) = app_with_smtp(backend).await;
    let ada = app.signup_unverified("ada@acme.com", "Ada").await;
    let a = use_link(&app, &mailed_token(&mails, "ada@acme.com", 0).await).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["user"]["emailVerified"], true);
    assert_eq!(a.body["user"]["orgRole"], "owner");
    assert_eq!(a.body["org"]["domain"], "acme.com");
    let team = app.workspace(&ada, "team").await;
    let project = app.create_project(&ada, &team, "Secret plans").await;
    let doc = app
        .create_resource(&ada, &project, "documents", "Plan")
        .await;

    // The stranger signs up at the same domain and never opens the link.
    let eve = app.signup_unverified("eve@acme.com", "Eve").await;
    let s = app.session(&eve).await;
    assert_eq!(s["user"]["emailVerified"], false);
    assert_eq!(s["user"]["orgRole"], "owner", "of their solo org");
    assert_eq!(s["org"]["domain"], format!("personal-{}", eve.id));
    assert_eq!(kinds(&s), vec!["personal"]);
    let denied = [
        app.get(&format!("/workspaces/{team}/projects"), &eve.token)
            .await,
        app.get(&format!("/projects/{project}"), &eve.token).await,
        app.get(&format!("/projects/{project}/documents"), &eve.token)
            .await,
        app.get(&format!("/documents/{doc}"), &eve.token).await,
        app.post(
            "/collaboration/token",
            &eve.token,
            json!({"resourceType": "doc", "resourceId": doc}),
        )
        .await,
    ];
    for a in denied {
        assert!(
            a.status == StatusCode::NOT_FOUND || a.status == StatusCode::FORBIDDEN,
            "unverified stranger got {}: {}",
            a.status,
            a.body
        );
    }
    let write = app
        .patch(
            &format!("/documents/{doc}"),
            &eve.token,
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(write.status, StatusCode::NOT_FOUND);
    // Their own workspace works at once.
    let mine = app.workspace(&eve, "personal").await;
    app.create_project(&eve, &mine, "Mine").await;

    // A colleague opens the mailed link and is in, as before.
    let bob = app.signup_unverified("bob@acme.com", "Bob").await;
    let a = use_link(&app, &mailed_token(&mails, "bob@acme.com", 0).await).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["user"]["orgRole"], "member");
    assert_eq!(a.body["org"]["id"], app.session(&ada).await["org"]["id"]);
    assert_eq!(kinds(&a.body), vec!["personal", "team"]);
    assert_eq!(app.workspace(&bob, "team").await, team);
    let read = app.get(&format!("/documents/{doc}"), &bob.token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["role"], "editor");
    let t = app
        .post(
            "/collaboration/token",
            &bob.token,
            json!({"resourceType": "doc", "resourceId": doc}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    // Bob's personal workspace came along, still his alone.
    let bob_personal = app.workspace(&bob, "personal").await;
    let peek = app
        .get(&format!("/workspaces/{bob_personal}/projects"), &ada.token)
        .await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
}

async fn verification_links_are_single_use_and_expire(backend: Backend) {
    let (app, mails) = app_with_smtp(backend).await;
    let u = app.signup_unverified("una@links.dev", "Una").await;
    let token = mailed_token(&mails, "una@links.dev", 0).await;
    // Stored hashed; the sent email's body is cleared from the outbox.
    let stored = app.sql_texts("SELECT token_hash AS t FROM email_verifications");
    assert_eq!(stored, vec![tandem_control::crypto::hash_token(&token)]);
    until(|| {
        let bodies = app.sql_texts("SELECT body AS t FROM outbox");
        bodies.iter().all(|b| b.is_empty()).then_some(())
    })
    .await;

    let bad = use_link(&app, "not-a-token").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "bad_request");
    let huge = use_link(&app, &"x".repeat(10_000)).await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST);
    let ok = use_link(&app, &token).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["user"]["id"], u.id.as_str());
    assert_eq!(ok.body["user"]["emailVerified"], true);
    let again = use_link(&app, &token).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert_eq!(again.code(), "gone");
    assert_eq!(app.session(&u).await["user"]["emailVerified"], true);
    // A verified user has nothing to resend.
    let resend = app
        .call(
            Method::POST,
            "/auth/verify-email/resend",
            Some(&u.token),
            None,
        )
        .await;
    assert_eq!(resend.status, StatusCode::CONFLICT);

    // An expired link is refused and verifies nothing.
    let v = app.signup_unverified("vic@links.dev", "Vic").await;
    let token = mailed_token(&mails, "vic@links.dev", 0).await;
    app.sql("UPDATE email_verifications SET expires_at = 1 WHERE used_at IS NULL");
    let expired = use_link(&app, &token).await;
    assert_eq!(expired.status, StatusCode::GONE);
    assert!(
        expired.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.body
    );
    assert_eq!(app.session(&v).await["user"]["emailVerified"], false);
    // Malformed bodies are 4xx, not 500.
    let missing = app
        .call(Method::POST, "/auth/verify-email", None, Some(json!({})))
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Resend needs a session.
    let anon = app
        .call(Method::POST, "/auth/verify-email/resend", None, None)
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

async fn resends_are_limited_per_user(backend: Backend) {
    let (app, mails) = app_with_smtp(backend).await;
    let u = app.signup_unverified("rex@resend.dev", "Rex").await;
    let other = app.signup_unverified("sam@resend.dev", "Sam").await;
    let app = &app;
    let resend = |t: String| async move {
        app.call(Method::POST, "/auth/verify-email/resend", Some(&t), None)
            .await
    };
    // The signup email counts: two more fit in the window, then 429.
    for _ in 0..2 {
        let a = resend(u.token.clone()).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        assert_eq!(a.body["email"], "rex@resend.dev");
    }
    let res = app
        .client
        .post(format!("{}/auth/verify-email/resend", app.base))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "retry-after {retry}");
    // Another user is not affected.
    assert_eq!(
        resend(other.token.clone()).await.status,
        StatusCode::ACCEPTED
    );
    // Every link sent works until used (the last one here).
    let last = mailed_token(&mails, "rex@resend.dev", 2).await;
    assert_eq!(use_link(app, &last).await.status, StatusCode::OK);
    let first = mailed_token(&mails, "rex@resend.dev", 0).await;
    assert_eq!(use_link(app, &first).await.status, StatusCode::OK);
}

/// Plan 004's "first user owns the org" now means the first *verified* one.
async fn first_verified_user_of_a_domain_owns_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let early = app.signup_unverified("early@newco.io", "Early").await;
    let late = app.signup_unverified("late@newco.io", "Late").await;
    assert_eq!(app.verify(&late).await.status, StatusCode::OK);
    let a = app.verify(&early).await;
    assert_eq!(a.status, StatusCode::OK);
    let (se, sl) = (app.session(&early).await, app.session(&late).await);
    assert_eq!(sl["user"]["orgRole"], "owner");
    assert_eq!(se["user"]["orgRole"], "member");
    assert_eq!(sl["org"]["domain"], "newco.io");
    assert_eq!(se["org"]["id"], sl["org"]["id"]);
    assert_eq!(sl["org"]["name"], "Newco");
    // Their solo orgs are gone: one org row per user left here.
    let orgs = app.sql_texts("SELECT domain AS t FROM orgs ORDER BY domain");
    assert_eq!(orgs, vec!["newco.io".to_string()]);
}

async fn concurrent_verifications_make_one_org(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    const N: usize = 10;
    let mut users = Vec::new();
    for i in 0..N {
        users.push(
            app.signup_unverified(&format!("user{i}@racing.dev"), &format!("User {i}"))
                .await,
        );
    }
    let answers = futures_util::future::join_all(users.iter().map(|u| app.verify(u))).await;
    let mut orgs = std::collections::BTreeSet::new();
    let mut teams = std::collections::BTreeSet::new();
    let mut owners = 0;
    for (a, u) in answers.iter().zip(&users) {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let s = app.session(u).await;
        orgs.insert(s["org"]["id"].as_str().unwrap().to_string());
        owners += usize::from(s["user"]["orgRole"] == "owner");
        for w in s["workspaces"].as_array().unwrap() {
            if w["type"] == "team" {
                teams.insert(w["id"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(orgs.len(), 1, "exactly one org for the domain");
    assert_eq!(teams.len(), 1, "exactly one team workspace");
    assert_eq!(owners, 1, "exactly one org owner");
}

async fn free_mail_strangers_get_separate_orgs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for domain in [
        "yahoo.co.uk",
        "gmx.de",
        "web.de",
        "mail.ru",
        "mailinator.com",
    ] {
        let a = app.signup(&format!("one@{domain}"), "One").await;
        let b = app.signup(&format!("two@{domain}"), "Two").await;
        let (sa, sb) = (app.session(&a).await, app.session(&b).await);
        assert_ne!(sa["org"]["id"], sb["org"]["id"], "{domain}");
        assert_eq!(sa["org"]["domain"], format!("personal-{}", a.id));
        assert_eq!(sb["user"]["orgRole"], "owner", "{domain}");
        assert_eq!(kinds(&sa), vec!["personal"], "{domain}");
        assert_eq!(sa["user"]["emailVerified"], true);
        let other_ws = app.workspace(&b, "personal").await;
        let peek = app
            .get(&format!("/workspaces/{other_ws}/projects"), &a.token)
            .await;
        assert_eq!(peek.status, StatusCode::NOT_FOUND, "{domain}");
    }
    // A subdomain of a free-mail domain is personal too.
    let c = app.signup("c@eu.mailinator.com", "C").await;
    assert_eq!(kinds(&app.session(&c).await), vec!["personal"]);
}

async fn join_policy_approval(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@appr.dev", "Olga").await;
    let member = app.signup("max@appr.dev", "Max").await;
    let org = app.org_of(&owner).await;
    let got = app.get(&format!("/orgs/{org}"), &member.token).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["joinPolicy"], "auto");
    assert_eq!(got.body["personal"], false);
    let set = app
        .patch(
            &format!("/orgs/{org}"),
            &owner.token,
            json!({"joinPolicy": "approval"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["joinPolicy"], "approval");

    // Verified colleagues now wait for an owner.
    let carol = app.signup("carol@appr.dev", "Carol").await;
    let dave = app.signup("dave@appr.dev", "Dave").await;
    let sc = app.session(&carol).await;
    assert_eq!(sc["org"]["domain"], format!("personal-{}", carol.id));
    assert_eq!(kinds(&sc), vec!["personal"]);
    let path = format!("/orgs/{org}/join-requests");
    let list = app.get(&path, &owner.token).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![carol.id.as_str(), dave.id.as_str()]);
    assert_eq!(list.body["items"][0]["email"], "carol@appr.dev");
    // Paged like every list: one at a time, each once.
    let first = app.get(&format!("{path}?limit=1"), &owner.token).await;
    assert_eq!(first.body["items"][0]["userId"], carol.id.as_str());
    let cursor = first.body["nextCursor"].as_str().unwrap().to_string();
    let second = app
        .get(&format!("{path}?limit=1&cursor={cursor}"), &owner.token)
        .await;
    assert_eq!(second.body["items"][0]["userId"], dave.id.as_str());
    assert!(second.body["nextCursor"].is_null(), "{}", second.body);
    // Members may not see or decide them; outsiders do not see the org.
    assert_eq!(
        app.get(&path, &member.token).await.status,
        StatusCode::FORBIDDEN
    );
    let accept_carol = format!("{path}/{}/accept", carol.id);
    let by_member = app.post(&accept_carol, &member.token, json!({})).await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    let by_carol = app.post(&accept_carol, &carol.token, json!({})).await;
    assert_eq!(by_carol.status, StatusCode::NOT_FOUND);

    let ok = app
        .call(Method::POST, &accept_carol, Some(&owner.token), None)
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let sc = app.session(&carol).await;
    assert_eq!(sc["org"]["id"], org.as_str());
    assert_eq!(sc["user"]["orgRole"], "member");
    assert_eq!(kinds(&sc), vec!["personal", "team"]);
    let twice = app
        .call(Method::POST, &accept_carol, Some(&owner.token), None)
        .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);

    let no = app
        .call(
            Method::POST,
            &format!("{path}/{}/refuse", dave.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(no.status, StatusCode::NO_CONTENT);
    let sd = app.session(&dave).await;
    assert_eq!(kinds(&sd), vec!["personal"]);
    assert_eq!(sd["org"]["domain"], format!("personal-{}", dave.id));
    let list = app.get(&path, &owner.token).await;
    assert_eq!(list.body["items"], json!([]));
}

async fn join_policy_off_and_org_permissions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("otto@closed.dev", "Otto").await;
    let member = app.signup("mia@closed.dev", "Mia").await;
    let outsider = app.signup("xavier@elsewhere.dev", "Xavier").await;
    let org = app.org_of(&owner).await;
    let path = format!("/orgs/{org}");
    let off = json!({"joinPolicy": "off"});
    assert_eq!(
        app.patch(&path, &member.token, off.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.patch(&path, &outsider.token, off.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&path, &outsider.token).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = app
        .patch(&path, &owner.token, json!({"joinPolicy": "sometimes"}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = app.patch(&path, &owner.token, off).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["joinPolicy"], "off");

    let nina = app.signup("nina@closed.dev", "Nina").await;
    let s = app.session(&nina).await;
    assert_eq!(s["org"]["domain"], format!("personal-{}", nina.id));
    assert_eq!(kinds(&s), vec!["personal"]);
    let list = app
        .get(&format!("{path}/join-requests"), &owner.token)
        .await;
    assert_eq!(list.body["items"], json!([]), "off makes no requests");
    // Members already in stay in.
    assert_eq!(kinds(&app.session(&member).await), vec!["personal", "team"]);
    // A solo org has no join policy to set.
    let solo = app.org_of(&nina).await;
    let a = app
        .patch(
            &format!("/orgs/{solo}"),
            &nina.token,
            json!({"joinPolicy": "auto"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let got = app.get(&format!("/orgs/{solo}"), &nina.token).await;
    assert_eq!(got.body["personal"], true);
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn failed_logins_are_throttled_per_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("tom@throttle.dev", "Tom").await;
    app.signup("ann@throttle.dev", "Ann").await;
    // A success resets the count: 9 failures, a success, then 10 more fit.
    for _ in 0..9 {
        let r = login(&app, "tom@throttle.dev", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login(&app, "tom@throttle.dev", "password123").await;
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..10 {
        let r = login(&app, "TOM@throttle.dev", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // The 11th attempt waits, even with the right password.
    let r = login(&app, "tom@throttle.dev", "password123").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "retry-after {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other accounts are not affected.
    let r = login(&app, "ann@throttle.dev", "password123").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Unknown accounts are throttled alike: the answer tells nothing.
    for _ in 0..10 {
        let r = login(&app, "ghost@throttle.dev", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login(&app, "ghost@throttle.dev", "wrong-password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // When the window has passed, Tom may try again.
    app.sql("UPDATE login_throttle SET window_start = 0");
    let r = login(&app, "tom@throttle.dev", "password123").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Stored: hashes of addresses, no address.
    let keys = app.sql_texts("SELECT account_hash AS t FROM login_throttle");
    assert!(keys.iter().all(|k| !k.contains('@')), "{keys:?}");
}

async fn login_from(app: &TestApp, forwarded: Option<&str>, email: &str) -> StatusCode {
    let mut req = app
        .client
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": email, "password": "wrong-password"}));
    if let Some(xff) = forwarded {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().status()
}

/// Behind a trusted load balancer, the per-IP limit applies to the client
/// named by `X-Forwarded-For`; from anyone else the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_decides_the_client_ip() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth_rate_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let one = Some("6.6.6.6, 203.0.113.1");
    assert_eq!(
        login_from(&app, one, "a@p.dev").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, one, "b@p.dev").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, Some("203.0.113.1"), "c@p.dev").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the same client, whatever it writes left of its address"
    );
    let two = Some("203.0.113.2");
    assert_eq!(
        login_from(&app, two, "d@p.dev").await,
        StatusCode::UNAUTHORIZED
    );

    // Not a trusted peer: the header is ignored, the peer is the client.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth_rate_per_minute = 2;
        c.trusted_proxies = vec!["10.0.0.0/8".into()];
    })
    .await;
    assert_eq!(
        login_from(&app, Some("203.0.113.1"), "a@p.dev").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, Some("203.0.113.2"), "b@p.dev").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, Some("203.0.113.3"), "c@p.dev").await,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed headers from an untrusted peer change nothing"
    );

    // A bad setting stops startup.
    let mut config = tandem_control::ControlConfig::for_tests("sqlite:///nonexistent/x.db");
    config.trusted_proxies = vec!["10.0.0.0/99".into()];
    let err = tandem_control::Application::build(config)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("TANDEM_TRUSTED_PROXIES"), "{err}");
}

/// Hashing never holds a database connection: with one connection in the
/// pool and logins queued behind slow hashes, a request that needs the
/// database answers long before the hashes are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashing_holds_no_connection() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.db_pool_size = 1;
        c.pbkdf2_iterations = 300_000;
        c.password_hash_concurrency = 1;
    })
    .await;
    let u = app.signup("hana@hash.dev", "Hana").await;
    let started = std::time::Instant::now();
    assert_eq!(
        login(&app, "hana@hash.dev", "password123").await.status(),
        StatusCode::OK
    );
    let one_hash = started.elapsed();
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let (client, base) = (app.client.clone(), app.base.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{base}/auth/login"))
                    .json(&json!({"email": "hana@hash.dev", "password": "password123"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    tokio::time::sleep(one_hash / 4).await;
    let asked = std::time::Instant::now();
    let s = app.get("/auth/session", &u.token).await;
    let waited = asked.elapsed();
    assert_eq!(s.status, StatusCode::OK);
    for t in burst {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let burst_took = started.elapsed() - one_hash;
    assert!(
        waited < one_hash / 2,
        "a database request waited {waited:?} behind password hashing (one hash {one_hash:?}, burst {burst_took:?})"
    );
}
