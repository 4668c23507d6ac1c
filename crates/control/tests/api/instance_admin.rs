//! Instance administration: only verified `TANDEM_ADMINS` reach `/admin/*`;
//! the effective configuration never shows a secret; settings are checked
//! without being applied; a reload (HTTP or SIGHUP) changes the CORS origins,
//! the log filter and the auth rate limit of the running server.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

const SECRETS: [&str; 4] = [
    "relay-secret-do-not-show",
    "s3-access-key-do-not-show",
    "s3-secret-key-do-not-show",
    "metrics-token-do-not-show",
];

async fn spawn(backend: Backend, reload_file: &std::path::Path) -> TestApp {
    spawn_with_keys(backend, reload_file, None).await
}

/// `keys`: the current and a previous settings key (both secrets).
async fn spawn_with_keys(
    backend: Backend,
    reload_file: &std::path::Path,
    keys: Option<(String, String)>,
) -> TestApp {
    let path = reload_file.to_path_buf();
    TestApp::spawn_with(backend, move |c| {
        if let Some((current, previous)) = keys {
            c.settings_key = Some(current);
            c.settings_key_previous = vec![previous];
        }
        c.admins = vec!["Root@Admin.test".into(), "late@admin.test".into()];
        c.relay_secret = Some(SECRETS[0].into());
        // S3 settings are only accepted with the S3 backend (start-up refuses
        // half a configuration); nothing talks to this endpoint in the test.
        c.files_backend = "s3".into();
        c.s3_endpoint = Some("http://127.0.0.1:9".into());
        c.s3_bucket = Some("tandem".into());
        c.files_part_bytes = 5 * 1024 * 1024;
        c.s3_access_key_id = Some(SECRETS[1].into());
        c.s3_secret_access_key = Some(SECRETS[2].into());
        c.metrics_token = Some(SECRETS[3].into());
        c.cors_origins = Some("https://app.example.com".into());
        c.reload_file = Some(path);
    })
    .await
}

/// Whether a preflight from `origin` is allowed.
async fn preflight_allowed(app: &TestApp, origin: &str) -> bool {
    let res = app
        .client
        .request(Method::OPTIONS, format!("{}/workspaces", app.base))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    res.status().is_success()
        && res
            .headers()
            .get("access-control-allow-origin")
            .is_some_and(|v| v == origin)
}

async fn admins_only_and_secrets_masked(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reload.env");
    std::fs::write(&file, "# nothing yet\n").unwrap();
    let keys = (
        tandem_control::crypto::new_settings_key(),
        tandem_control::crypto::new_settings_key(),
    );
    let app = spawn_with_keys(backend, &file, Some(keys.clone())).await;
    let admin = app.signup("root@admin.test", "Root").await;
    let unverified = app.signup_unverified("late@admin.test", "Late").await;
    let user = app.signup("someone@admin.test", "Someone").await;

    for path in ["/admin/config"] {
        assert_eq!(
            app.get(path, &user.token).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.get(path, &unverified.token).await.status,
            StatusCode::FORBIDDEN
        );
        let a = app.call(Method::GET, path, None, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    for path in ["/admin/config/validate", "/admin/config/reload"] {
        let a = app.post(path, &user.token, json!({"settings": {}})).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
    }

    let res = app
        .client
        .get(format!("{}/admin/config", app.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for s in SECRETS.iter().chain([&keys.0.as_str(), &keys.1.as_str()]) {
        assert!(!text.contains(s), "{s} shown in {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let setting = |key: &str| {
        body["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {body}"))
            .clone()
    };
    let relay = setting("TANDEM_RELAY_SECRET");
    assert_eq!(relay["secret"], true);
    assert_eq!(relay["value"], "••••");
    assert_eq!(setting("TANDEM_S3_SECRET_ACCESS_KEY")["value"], "••••");
    assert_eq!(
        setting("TANDEM_SETTINGS_KEY_PREVIOUS")["value"],
        json!(["••••"])
    );
    assert_eq!(setting("TANDEM_PBKDF2_ITERATIONS")["value"], 1000);
    assert_eq!(setting("TANDEM_CORS_ORIGINS")["reloadable"], true);
    assert_eq!(setting("TANDEM_DATABASE_URL")["reloadable"], false);
    assert_eq!(body["runtime"]["corsOrigins"], "https://app.example.com");
    // A database URL's password never shows (PostgreSQL URLs may have one).
    let db = setting("TANDEM_DATABASE_URL")["value"]
        .as_str()
        .unwrap()
        .to_string();
    if let Some(pass) = url::Url::parse(&app.db.url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        assert!(!db.contains(&pass), "{db}");
    }

    // Validation answers per setting and applies nothing.
    let a = app
        .post(
            "/admin/config/validate",
            &admin.token,
            json!({"settings": {
                "TANDEM_CONTROL_LISTEN": "not an address",
                "TANDEM_CORS_ORIGINS": "ftp://x y",
                "TANDEM_DB_POOL_SIZE": "lots",
                "TANDEM_DEV": "maybe",
                "TANDEM_NO_SUCH_THING": "1",
                "TANDEM_DATABASE_URL": "mysql://db/x",
                "TANDEM_RELAY_SECRET": "anything goes",
                "TANDEM_PBKDF2_ITERATIONS": "1200",
                "RUST_LOG": "info,tandem_control=debug",
            }}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["valid"], false);
    let mut keys: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "TANDEM_CONTROL_LISTEN",
            "TANDEM_CORS_ORIGINS",
            "TANDEM_DATABASE_URL",
            "TANDEM_DB_POOL_SIZE",
            "TANDEM_DEV",
            "TANDEM_NO_SUCH_THING"
        ],
        "{}",
        a.body
    );
    let a = app
        .post(
            "/admin/config/validate",
            &admin.token,
            json!({"settings": {"TANDEM_CORS_ORIGINS": "https://new.example.com", "RUST_LOG": "warn", "TANDEM_DEV": "false"}}),
        )
        .await;
    assert_eq!(a.body, json!({"valid": true, "errors": []}));
    assert!(!preflight_allowed(&app, "https://new.example.com").await);
}

async fn reload_changes_the_running_server(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reload.env");
    std::fs::write(&file, "RUST_LOG=info\n").unwrap();
    let app = spawn(backend, &file).await;
    let admin = app.signup("root@admin.test", "Root").await;
    assert!(preflight_allowed(&app, "https://app.example.com").await);
    assert!(!preflight_allowed(&app, "https://new.example.com").await);

    std::fs::write(
        &file,
        "# reloadable settings\nTANDEM_CORS_ORIGINS=\"https://new.example.com, https://app.example.com\"\n\
         RUST_LOG=warn,tandem_control=debug\nTANDEM_AUTH_RATE_PER_MINUTE=2\nTANDEM_DB_POOL_SIZE=3\n",
    )
    .unwrap();
    let a = app
        .post("/admin/config/reload", &admin.token, Value::Null)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["logFilter"], "warn,tandem_control=debug");
    assert_eq!(a.body["authRatePerMinute"], 2);
    assert!(a.body["reloadedAt"].is_i64());
    assert!(preflight_allowed(&app, "https://new.example.com").await);
    assert!(preflight_allowed(&app, "https://app.example.com").await);
    let cfg = app.get("/admin/config", &admin.token).await;
    assert_eq!(
        cfg.body["runtime"]["logFilter"],
        "warn,tandem_control=debug"
    );
    // The new auth limit is in force: the third login in the minute is refused.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let a = app
            .call(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": "root@admin.test", "password": "wrong password"})),
            )
            .await;
        statuses.push(a.status);
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");

    // An invalid file changes nothing.
    std::fs::write(
        &file,
        "TANDEM_CORS_ORIGINS=https://other.example.com\nRUST_LOG=a=b=c[\n",
    )
    .unwrap();
    let a = app
        .post("/admin/config/reload", &admin.token, Value::Null)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("RUST_LOG"));
    assert!(!preflight_allowed(&app, "https://other.example.com").await);
    assert!(preflight_allowed(&app, "https://new.example.com").await);

    // SIGHUP re-reads the file too.
    std::fs::write(&file, "TANDEM_CORS_ORIGINS=https://hup.example.com\n").unwrap();
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !preflight_allowed(&app, "https://hup.example.com").await {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!preflight_allowed(&app, "https://new.example.com").await);
}

both_backends!(
    admins_only_and_secrets_masked,
    reload_changes_the_running_server
);
