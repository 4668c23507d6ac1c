//! Files: uploads (single and multipart, resumable), dedupe per workspace,
//! hash and size checks, signed download URLs, access, the collector, quota
//! and size limits. Every test runs on both databases and, where it
//! applies, on both storage backends: the directory (always) and S3 (a real
//! S3-compatible server, when `TANDEM_TEST_S3_URL` is set:
//! `http://KEY:SECRET@HOST:PORT/BUCKET`; `scripts/test` starts SeaweedFS and
//! sets it with `TANDEM_TEST_REQUIRE_S3=1`).

use reqwest::{Method, StatusCode};
use ring::digest;
use serde_json::{json, Value};
use tandem_control::files::BlobStore;
use tandem_control::ControlConfig;

use crate::helpers::{Backend, TestApp, TestUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Dir,
    S3,
}

/// Runs an `async fn(Backend, Store)` test on both databases and both
/// storage backends, as `name::{sqlite,postgres}_{dir,s3}`.
macro_rules! all_variants {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Store;
            use $crate::helpers::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_dir() {
                super::$name(Backend::Sqlite, Store::Dir).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_dir() {
                if $crate::helpers::postgres_available() {
                    super::$name(Backend::Postgres, Store::Dir).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_s3() {
                if super::s3_available() {
                    super::$name(Backend::Sqlite, Store::S3).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                if $crate::helpers::postgres_available() && super::s3_available() {
                    super::$name(Backend::Postgres, Store::S3).await
                }
            }
        }
    )*};
}

pub fn s3_available() -> bool {
    if std::env::var("TANDEM_TEST_S3_URL").is_ok() {
        return true;
    }
    assert!(
        std::env::var("TANDEM_TEST_REQUIRE_S3").is_err(),
        "TANDEM_TEST_REQUIRE_S3 is set but TANDEM_TEST_S3_URL is not"
    );
    eprintln!("skipping the S3 variant: TANDEM_TEST_S3_URL is not set (scripts/test sets it)");
    false
}

/// Points `config` at the test S3 server (`http://KEY:SECRET@HOST:PORT/BUCKET`).
fn use_s3(config: &mut ControlConfig) {
    let raw = std::env::var("TANDEM_TEST_S3_URL").unwrap();
    let rest = raw.strip_prefix("http://").unwrap();
    let (creds, rest) = rest.split_once('@').unwrap();
    let (key, secret) = creds.split_once(':').unwrap();
    let (host, bucket) = rest.split_once('/').unwrap();
    config.files_backend = "s3".into();
    config.s3_endpoint = Some(format!("http://{host}"));
    config.s3_bucket = Some(bucket.trim_end_matches('/').to_string());
    config.s3_access_key_id = Some(key.into());
    config.s3_secret_access_key = Some(secret.into());
}

/// Smallest part S3 accepts (all but the last part).
const S3_MIN_PART: i64 = 5 * 1024 * 1024;

struct Env {
    app: TestApp,
    _dir: tempfile::TempDir,
    store: Store,
}

async fn spawn(backend: Backend, store: Store, tweak: impl FnOnce(&mut ControlConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = TestApp::spawn_with(backend, move |c| {
        c.files_dir = path;
        if store == Store::S3 {
            use_s3(c);
            // The presigned path; `small_s3_uploads_go_through_control`
            // tests the other.
            c.s3_through_control_bytes = 0;
        }
        tweak(c);
    })
    .await;
    Env {
        app,
        _dir: dir,
        store,
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Deterministic, incompressible-looking bytes.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut x: u32 = 0x9E37_79B9 ^ u32::from(seed);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 24) as u8);
    }
    out
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn intent(
    app: &TestApp,
    user: &TestUser,
    ws: &str,
    name: &str,
    data: &[u8],
) -> crate::helpers::Answer {
    app.post(
        &format!("/workspaces/{ws}/files/uploads"),
        &user.token,
        json!({
            "name": name,
            "size": data.len(),
            "contentType": "application/octet-stream",
            "sha256": sha256(data),
        }),
    )
    .await
}

/// Sends the parts of a pending upload (all, or those `only` names); returns
/// `(partNumber, status, etag)` of each PUT.
async fn put_parts(
    app: &TestApp,
    pending: &Value,
    data: &[u8],
    only: Option<&[i64]>,
) -> Vec<(i64, StatusCode, Option<String>)> {
    put_parts_claiming(app, pending, data, only, Some(data)).await
}

/// The SHA-256 state of the first `offset` bytes of `data`.
fn state_at(data: &[u8], offset: usize) -> String {
    let mut h = tandem_protocol::files::Sha256State::new();
    h.update(&data[..offset]);
    h.state_hex().expect("parts start on 64-byte blocks")
}

/// [`put_parts`], with each part that asks for it claiming the SHA-256
/// state of `claims` at its offset (`None`: no part claims any).
async fn put_parts_claiming(
    app: &TestApp,
    pending: &Value,
    data: &[u8],
    only: Option<&[i64]>,
    claims: Option<&[u8]>,
) -> Vec<(i64, StatusCode, Option<String>)> {
    let mut out = Vec::new();
    for p in pending["parts"].as_array().unwrap() {
        let n = p["partNumber"].as_i64().unwrap();
        if only.is_some_and(|o| !o.contains(&n)) {
            continue;
        }
        let (off, len) = (
            p["offset"].as_u64().unwrap() as usize,
            p["size"].as_u64().unwrap() as usize,
        );
        assert_eq!(p["method"], "PUT");
        let mut req = app.client.put(p["url"].as_str().unwrap());
        for (k, v) in p["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        if let (Some(claims), true) = (claims, p["sha256State"] == true) {
            req = req.header("tandem-sha256-state", state_at(claims, off));
        }
        let res = req
            .body(data[off..off + len].to_vec())
            .send()
            .await
            .unwrap();
        let etag = res
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        out.push((n, res.status(), etag));
    }
    out
}

/// `POST /files/uploads/{id}/complete` as `user`, naming the parts `puts` sent.
async fn complete(
    app: &TestApp,
    user: &TestUser,
    id: &str,
    puts: &[(i64, StatusCode, Option<String>)],
) -> crate::helpers::Answer {
    app.post(
        &format!("/files/uploads/{id}/complete"),
        &user.token,
        completed(puts),
    )
    .await
}

fn completed(puts: &[(i64, StatusCode, Option<String>)]) -> Value {
    json!({ "parts": puts.iter().map(|(n, _, e)| json!({"partNumber": n, "etag": e})).collect::<Vec<_>>() })
}

/// Uploads `data` to `ws` through the whole flow; returns the file.
pub async fn upload(app: &TestApp, user: &TestUser, ws: &str, name: &str, data: &[u8]) -> Value {
    let a = intent(app, user, ws, name, data).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["status"], "pending");
    let puts = put_parts(app, &a.body, data, None).await;
    for (n, status, _) in &puts {
        assert_eq!(*status, StatusCode::OK, "part {n}");
    }
    let id = a.body["uploadId"].as_str().unwrap();
    let done = complete(app, user, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    done.body["file"].clone()
}

/// The signed URL `/files/{id}/content` redirects to.
async fn signed_url(app: &TestApp, user: &TestUser, file: &str) -> String {
    let res = no_redirects()
        .get(format!("{}/files/{file}/content", app.base))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    res.headers()["location"].to_str().unwrap().to_string()
}

/// Downloads a file as `user`, following the redirect.
async fn download(app: &TestApp, user: &TestUser, file: &str) -> Vec<u8> {
    let url = signed_url(app, user, file).await;
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    res.bytes().await.unwrap().to_vec()
}

struct Team {
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    ws: String,
}

/// Alice (org owner) and Bob (member) share Acme's team workspace; Carol is
/// in another org.
async fn team(app: &TestApp) -> Team {
    let alice = app.signup("alice@acme.test", "Alice").await;
    let bob = app.signup("bob@acme.test", "Bob").await;
    let carol = app.signup("carol@other.test", "Carol").await;
    let ws = app.workspace(&alice, "team").await;
    Team {
        alice,
        bob,
        carol,
        ws,
    }
}

pub(crate) async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("tandem_control_{name}_total ")))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .unwrap()
}

async fn one_member_uploads_another_downloads(backend: Backend, store: Store) {
    let env = spawn(backend, store, |c| c.files_part_bytes = S3_MIN_PART).await;
    let app = &env.app;
    let t = team(app).await;
    for (name, size) in [
        ("small.bin", 300_000usize),
        ("large.bin", 2 * S3_MIN_PART as usize + 12_345),
        ("empty.txt", 0),
    ] {
        let data = bytes(size, 1 + size as u8);
        let file = upload(app, &t.alice, &t.ws, name, &data).await;
        assert_eq!(file["size"], size as i64);
        assert_eq!(file["sha256"], sha256(&data));
        assert_eq!(file["name"], name);
        assert_eq!(file["createdBy"], t.alice.id.as_str());
        let id = file["id"].as_str().unwrap();
        let meta = app.get(&format!("/files/{id}"), &t.bob.token).await;
        assert_eq!(meta.status, StatusCode::OK, "{}", meta.body);
        assert_eq!(meta.body, file);
        let got = download(app, &t.bob, id).await;
        assert_eq!(got.len(), data.len(), "{name}");
        assert!(got == data, "{name}: downloaded bytes differ");
    }
    assert!(metric(app, "files_bytes_in").await >= (2 * S3_MIN_PART) as u64);
    assert!(metric(app, "files_bytes_out").await >= (2 * S3_MIN_PART) as u64);
}

async fn multipart_upload_resumes(backend: Backend, store: Store) {
    let env = spawn(backend, store, |c| c.files_part_bytes = S3_MIN_PART).await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(2 * S3_MIN_PART as usize + 1000, 7);
    let a = intent(app, &t.alice, &t.ws, "big.bin", &data).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["parts"].as_array().unwrap().len(), 3);
    assert_eq!(a.body["partSize"], S3_MIN_PART);
    let id = a.body["uploadId"].as_str().unwrap().to_string();
    // Parts 1 and 3 arrive; the connection drops before part 2.
    let mut puts = put_parts(app, &a.body, &data, Some(&[1, 3])).await;
    assert!(puts.iter().all(|p| p.1 == StatusCode::OK));
    if env.store == Store::Dir {
        // Completing now names what is missing and keeps what arrived.
        let early = app
            .post(
                &format!("/files/uploads/{id}/complete"),
                &t.alice.token,
                json!({}),
            )
            .await;
        assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
        assert!(early.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[2]"));
    }
    // Resuming: fresh URLs, and what was received.
    let resumed = app
        .get(&format!("/files/uploads/{id}"), &t.alice.token)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["receivedParts"], json!([1, 3]));
    // Nobody else sees the upload.
    assert_eq!(
        app.get(&format!("/files/uploads/{id}"), &t.bob.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    puts.extend(put_parts(app, &resumed.body, &data, Some(&[2])).await);
    puts.sort_by_key(|p| p.0);
    let done = complete(app, &t.alice, &id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    let file = done.body["file"]["id"].as_str().unwrap().to_string();
    assert!(download(app, &t.bob, &file).await == data);
}

async fn same_bytes_again_are_a_dedupe_hit(backend: Backend, store: Store) {
    let env = spawn(backend, store, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(50_000, 3);
    let file = upload(app, &t.alice, &t.ws, "a.bin", &data).await;
    let hits = metric(app, "files_dedupe_hits").await;
    let again = intent(app, &t.bob, &t.ws, "copy-of-a.bin", &data).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["status"], "exists");
    assert_eq!(again.body["file"], file);
    assert!(again.body.get("parts").is_none(), "nothing to upload");
    assert_eq!(metric(app, "files_dedupe_hits").await, hits + 1);
    // Never across workspaces: Alice's personal workspace uploads afresh.
    let personal = app.workspace(&t.alice, "personal").await;
    let other = intent(app, &t.alice, &personal, "a.bin", &data).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_eq!(other.body["status"], "pending");
    // After a delete, the same bytes are uploaded again.
    let id = file["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/files/{id}"), &t.alice.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let after = intent(app, &t.bob, &t.ws, "a.bin", &data).await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);

    // Two uploads of the same new bytes at once: both complete, to one file,
    // and the second copy is not kept.
    let twin = bytes(20_000, 9);
    let (a, b) = (
        intent(app, &t.alice, &t.ws, "first", &twin).await,
        intent(app, &t.bob, &t.ws, "second", &twin).await,
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let mut files = Vec::new();
    for (who, pending) in [(&t.alice, &a.body), (&t.bob, &b.body)] {
        let puts = put_parts(app, pending, &twin, None).await;
        let up = pending["uploadId"].as_str().unwrap();
        let done = app
            .post(
                &format!("/files/uploads/{up}/complete"),
                &who.token,
                completed(&puts),
            )
            .await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
        files.push(done.body["file"].clone());
    }
    assert_eq!(files[0], files[1]);
    assert_eq!(files[0]["name"], "first");
    let second = b.body["uploadId"].as_str().unwrap();
    assert!(!app
        .state
        .files
        .exists(&format!("{}/{second}", t.ws))
        .await
        .unwrap());
    assert!(download(app, &t.bob, files[0]["id"].as_str().unwrap()).await == twin);
    // The race's loser was not counted.
    assert_ready_bytes_counted(app);
}

async fn bytes_not_matching_the_hash_are_refused(backend: Backend, store: Store) {
    refused_when_verifying(backend, store, "checksum").await;
    if store == Store::S3 {
        refused_when_verifying(backend, store, "readback").await;
    }
}

/// With `TANDEM_S3_VERIFY=verify` (the directory backend ignores it).
async fn refused_when_verifying(backend: Backend, store: Store, verify: &str) {
    let env = spawn(backend, store, |c| {
        c.files_part_bytes = S3_MIN_PART;
        c.s3_verify = verify.into();
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let store_checks = store == Store::S3 && verify == "checksum";
    let large = S3_MIN_PART as usize + 10;
    // One wrong byte: in a small file, and first, in the middle and last
    // in a multipart one (read back).
    for (size, wrong) in [
        (10_000usize, 5_000),
        (large, 0),
        (large, large / 2),
        (large, large - 1),
    ] {
        let declared = bytes(size, 1);
        let mut sent = declared.clone();
        sent[wrong] ^= 0xFF; // same size, other bytes
        let a = intent(app, &t.alice, &t.ws, "x.bin", &declared).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = a.body["uploadId"].as_str().unwrap().to_string();
        let one_part = a.body["parts"].as_array().unwrap().len() == 1;
        let checksum = &a.body["parts"][0]["headers"]["x-amz-checksum-sha256"];
        assert_eq!(checksum.is_string(), store_checks && one_part, "{}", a.body);
        if checksum.is_string() {
            // The header is signed: leaving it out is refused.
            let url = a.body["parts"][0]["url"].as_str().unwrap();
            let res = app
                .client
                .put(url)
                .body(declared.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
        }
        let puts = put_parts(app, &a.body, &sent, None).await;
        let refused_at_put = puts.iter().any(|p| p.1 == StatusCode::UNPROCESSABLE_ENTITY);
        let refused_by_store = puts.iter().any(|p| p.1 == StatusCode::BAD_REQUEST);
        assert_eq!(refused_by_store, store_checks && one_part, "{puts:?}");
        let done = complete(app, &t.alice, &id, &puts).await;
        if refused_by_store {
            // The store kept nothing; the upload waits for the right bytes.
            assert_eq!(done.status, StatusCode::CONFLICT, "{}", done.body);
            let key = format!("{}/{id}", t.ws);
            assert!(!app.state.files.exists(&key).await.unwrap());
            let puts = put_parts(app, &a.body, &declared, None).await;
            assert_eq!(puts[0].1, StatusCode::OK);
            let done = app
                .post(
                    &format!("/files/uploads/{id}/complete"),
                    &t.alice.token,
                    json!({}),
                )
                .await;
            assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
            assert!(download(app, &t.alice, &id).await == declared);
            continue;
        }
        if refused_at_put {
            assert_eq!(done.status, StatusCode::NOT_FOUND, "{}", done.body);
        } else {
            assert_eq!(
                done.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                done.body
            );
            assert_eq!(done.code(), "hash_mismatch");
        }
        // Nothing was kept: no row (or, for parts refused as they passed
        // control, an upload that expired at once, left to the collector for
        // whatever the store kept of the cut-off part or another request
        // still writes), no bytes.
        let rows = app.sql_texts(&format!(
            "SELECT id AS t FROM files WHERE id = '{id}' AND NOT (state = 'pending' AND expires_at <= {})",
            tandem_control::store::now_ms()
        ));
        assert!(rows.is_empty(), "{rows:?}");
        if !refused_at_put {
            let rows = app.sql_texts(&format!("SELECT id AS t FROM files WHERE id = '{id}'"));
            assert!(rows.is_empty(), "{rows:?}");
        }
        let key = format!("{}/{id}", t.ws);
        assert!(!app.state.files.exists(&key).await.unwrap());
        if env.store == Store::Dir {
            let uploads = env._dir.path().join("uploads").join(&id);
            assert!(!uploads.exists(), "parts left behind");
        }
    }
    // A body of the wrong size is refused too.
    let data = bytes(1000, 2);
    let a = intent(app, &t.alice, &t.ws, "short.bin", &data).await;
    let url = a.body["parts"][0]["url"].as_str().unwrap();
    let res = app
        .client
        .put(url)
        .body(data[..999].to_vec())
        .send()
        .await
        .unwrap();
    if env.store == Store::Dir {
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let id = a.body["uploadId"].as_str().unwrap();
    let done = app
        .post(
            &format!("/files/uploads/{id}/complete"),
            &t.alice.token,
            json!({}),
        )
        .await;
    assert!(
        [StatusCode::CONFLICT, StatusCode::UNPROCESSABLE_ENTITY].contains(&done.status),
        "{}",
        done.body
    );
}

async fn altered_or_expired_urls_are_refused(backend: Backend, store: Store) {
    let env = spawn(backend, store, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let one = upload(app, &t.alice, &t.ws, "one.bin", &bytes(1000, 1)).await;
    let two = upload(app, &t.alice, &t.ws, "two.bin", &bytes(1000, 2)).await;
    let (one, two) = (one["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    let url = signed_url(app, &t.bob, one).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    // Another file's path under this signature.
    let swapped = url.replace(one, two);
    assert_eq!(
        reqwest::get(&swapped).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // A changed signature.
    let (head, sig) = url.rsplit_once("ignature=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let altered = format!("{head}ignature={flipped}{}", &sig[1..]);
    let res = reqwest::get(&altered).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    if env.store == Store::Dir {
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_signature");
        // A later expiry under the old signature.
        let later = url.replace("expires=", "expires=9");
        assert_eq!(
            reqwest::get(&later).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        // No signature at all.
        let bare = url.split('?').next().unwrap();
        assert_eq!(
            reqwest::get(bare).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
    // An expired URL: a service whose URLs live 1 s.
    let short = app
        .replica(|c| {
            c.files_url_ttl_secs = 1;
            c.files_dir = env._dir.path().to_path_buf();
            if env.store == Store::S3 {
                use_s3(c);
            }
        })
        .await;
    let url = signed_url(&short, &t.bob, one).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

async fn outsiders_and_removed_members_get_404(backend: Backend, store: Store) {
    let env = spawn(backend, store, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let personal = app.workspace(&t.alice, "personal").await;
    let add = app
        .post(
            &format!("/workspaces/{personal}/members"),
            &t.alice.token,
            json!({"userId": t.carol.id, "role": "viewer"}),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    let file = upload(app, &t.alice, &personal, "p.bin", &bytes(2000, 5)).await;
    let id = file["id"].as_str().unwrap();
    // Carol, a viewer, reads but may not upload or delete.
    assert_eq!(
        app.get(&format!("/files/{id}"), &t.carol.token)
            .await
            .status,
        StatusCode::OK
    );
    assert!(download(app, &t.carol, id).await == bytes(2000, 5));
    let up = intent(app, &t.carol, &personal, "c.bin", &bytes(10, 1)).await;
    assert_eq!(up.status, StatusCode::FORBIDDEN, "{}", up.body);
    assert_eq!(
        app.delete(&format!("/files/{id}"), &t.carol.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Removed: everything is a 404.
    let rm = app
        .delete(
            &format!("/workspaces/{personal}/members/{}", t.carol.id),
            &t.alice.token,
        )
        .await;
    assert_eq!(rm.status, StatusCode::NO_CONTENT, "{}", rm.body);
    // Bob (same org, not a member of Alice's personal workspace) and Carol alike.
    for who in [&t.carol, &t.bob] {
        for path in [
            format!("/files/{id}"),
            format!("/files/{id}/content"),
            format!("/files/{id}/url"),
        ] {
            let a = app.get(&path, &who.token).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
            assert_eq!(a.code(), "not_found");
        }
        assert_eq!(
            app.delete(&format!("/files/{id}"), &who.token).await.status,
            StatusCode::NOT_FOUND
        );
        let up = intent(app, who, &personal, "c.bin", &bytes(10, 1)).await;
        assert_eq!(up.status, StatusCode::NOT_FOUND, "{}", up.body);
    }
    // An outsider of the team workspace too.
    let team_file = upload(app, &t.alice, &t.ws, "t.bin", &bytes(10, 9)).await;
    let tid = team_file["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/files/{tid}"), &t.carol.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Without a session: 401.
    let anon = app
        .call(Method::GET, &format!("/files/{tid}"), None, None)
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

/// Every workspace's count of its ready files' bytes (kept with each change,
/// read by the quota check) equals their sum.
fn assert_ready_bytes_counted(app: &TestApp) {
    let rows = app.sql_texts(
        "SELECT CAST(w.files_ready_bytes AS TEXT) || ' ' || CAST((SELECT COALESCE(SUM(f.size_bytes), 0) \
         FROM files f WHERE f.workspace_id = w.id AND f.state = 'ready') AS TEXT) AS t FROM workspaces w",
    );
    assert!(!rows.is_empty());
    for row in rows {
        let (counted, summed) = row.split_once(' ').unwrap();
        assert_eq!(counted, summed, "a workspace's ready bytes drifted");
    }
}

async fn limits_answer_clearly(backend: Backend, store: Store) {
    let env = spawn(backend, store, |c| {
        c.files_max_bytes = 1000;
        c.files_quota_bytes = 1500;
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let big = intent(app, &t.alice, &t.ws, "big.bin", &bytes(1001, 1)).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.body);
    assert_eq!(big.code(), "file_too_large");
    let first = upload(app, &t.alice, &t.ws, "a.bin", &bytes(800, 1)).await;
    let over = intent(app, &t.bob, &t.ws, "b.bin", &bytes(800, 2)).await;
    assert_eq!(
        over.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        over.body
    );
    assert_eq!(over.code(), "quota_exceeded");
    // Pending uploads count, and a dedupe hit costs nothing.
    let again = intent(app, &t.bob, &t.ws, "a-again.bin", &bytes(800, 1)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let small = intent(app, &t.bob, &t.ws, "s.bin", &bytes(600, 3)).await;
    assert_eq!(small.status, StatusCode::CREATED, "{}", small.body);
    let more = intent(app, &t.bob, &t.ws, "t.bin", &bytes(200, 4)).await;
    assert_eq!(more.code(), "quota_exceeded", "{}", more.body);
    // Deleting frees the space.
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/files/{id}"), &t.alice.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_ready_bytes_counted(app);
    let now = intent(app, &t.bob, &t.ws, "t.bin", &bytes(200, 4)).await;
    assert_eq!(now.status, StatusCode::CREATED, "{}", now.body);
    // Bad intents.
    for (body, what) in [
        (
            json!({"name": "x", "size": -1, "contentType": "a/b", "sha256": sha256(b"")}),
            "negative size",
        ),
        (
            json!({"name": "", "size": 1, "contentType": "a/b", "sha256": sha256(b"")}),
            "empty name",
        ),
        (
            json!({"name": "x", "size": 1, "contentType": "nonsense", "sha256": sha256(b"")}),
            "content type",
        ),
        (
            json!({"name": "x", "size": 1, "contentType": "a/b", "sha256": "abc"}),
            "short hash",
        ),
    ] {
        let a = app
            .post(
                &format!("/workspaces/{}/files/uploads", t.ws),
                &t.alice.token,
                body,
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            a.body
        );
    }
    // Uploads in progress per user and workspace are bounded.
    for i in 0..tandem_control::store::files::MAX_OPEN_UPLOADS {
        let data = format!("open {i}");
        let a = intent(app, &t.alice, &t.ws, "open.bin", data.as_bytes()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let one_more = intent(app, &t.alice, &t.ws, "open.bin", b"one more").await;
    assert_eq!(
        one_more.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        one_more.body
    );
}

async fn collector_removes_exactly_the_unreferenced(backend: Backend, store: Store) {
    let env = spawn(backend, store, |c| c.files_gc_grace_secs = 3600).await;
    let app = &env.app;
    let state = app.state.clone();
    let t = team(app).await;
    let project = app.create_project(&t.alice, &t.ws, "P").await;
    let conv = app
        .post(
            &format!("/projects/{project}/conversations"),
            &t.alice.token,
            json!({"title": "c"}),
        )
        .await
        .id();
    let mut ids = std::collections::BTreeMap::new();
    for (label, seed) in [
        ("attached", 1u8),
        ("synced", 2),
        ("old_unreferenced", 3),
        ("new_unreferenced", 4),
        ("old_deleted", 5),
        ("unsynced", 6),
        ("old_conversation", 7),
    ] {
        let f = upload(app, &t.alice, &t.ws, label, &bytes(3000, seed)).await;
        ids.insert(label, f["id"].as_str().unwrap().to_string());
    }
    let key = |label: &str| format!("{}/{}", t.ws, ids[label]);
    // References: a chat message, sync rows.
    let m = app
        .post(
            &format!("/conversations/{conv}/messages"),
            &t.alice.token,
            json!({"content": "see attached", "attachments": [ids["attached"]]}),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    assert_eq!(m.body["attachments"][0]["fileId"], ids["attached"].as_str());
    assert_eq!(m.body["attachments"][0]["name"], "attached");
    assert_eq!(m.body["attachments"][0]["sizeBytes"], 3000);
    let conv2 = app
        .post(
            &format!("/projects/{project}/conversations"),
            &t.alice.token,
            json!({"title": "d"}),
        )
        .await
        .id();
    let m2 = app
        .post(
            &format!("/conversations/{conv2}/messages"),
            &t.alice.token,
            json!({"content": "x", "attachments": [ids["old_conversation"]]}),
        )
        .await;
    assert_eq!(m2.status, StatusCode::CREATED, "{}", m2.body);
    let (ws, synced, unsynced) = (t.ws.clone(), ids["synced"].clone(), ids["unsynced"].clone());
    state
        .db(move |c| {
            use tandem_control::store::files::{add_ref, remove_ref};
            add_ref(c, &ws, &synced, "sync", "notes/1")?;
            add_ref(c, &ws, &synced, "sync", "notes/1")?; // again: fine
            add_ref(c, &ws, &unsynced, "sync", "notes/2")?;
            remove_ref(c, "sync", "notes/2", None)
        })
        .await
        .unwrap();
    // A file of another workspace cannot be referenced from here.
    let personal = app.workspace(&t.alice, "personal").await;
    let foreign = upload(app, &t.alice, &personal, "f", &bytes(10, 8)).await;
    let bad = app
        .post(
            &format!("/conversations/{conv}/messages"),
            &t.alice.token,
            json!({"content": "x", "attachments": [foreign["id"]]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let (ws, fid) = (t.ws.clone(), foreign["id"].as_str().unwrap().to_string());
    let err = state
        .db(move |c| tandem_control::store::files::add_ref(c, &ws, &fid, "sync", "x/1"))
        .await;
    assert!(err.is_err());

    let hour = 3600 * 1000;
    let now = tandem_control::store::now_ms();
    app.sql(&format!(
        "UPDATE files SET unreferenced_since = {} WHERE id IN ('{}', '{}')",
        now - 2 * hour,
        ids["old_unreferenced"],
        ids["unsynced"]
    ));
    let d = app
        .delete(&format!("/files/{}", ids["old_deleted"]), &t.alice.token)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    app.sql(&format!(
        "UPDATE files SET deleted_at = {} WHERE id = '{}'",
        now - 2 * hour,
        ids["old_deleted"]
    ));
    // The conversation goes (with its message): its file is noticed as
    // unreferenced by the next run and kept for the grace period.
    assert_eq!(
        app.delete(&format!("/conversations/{conv2}"), &t.alice.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    assert_ready_bytes_counted(app);
    // Killed mid-run: marked, then nothing more.
    let marked = tandem_control::files::collector::mark(&state, now)
        .await
        .unwrap();
    assert_eq!(marked, 3, "old_unreferenced, unsynced, old_deleted");
    assert_ready_bytes_counted(app);
    // A marked file cannot be referenced any more, nor read.
    let (ws, f) = (t.ws.clone(), ids["old_unreferenced"].clone());
    assert!(state
        .db(move |c| tandem_control::store::files::add_ref(c, &ws, &f, "sync", "late/1"))
        .await
        .is_err());
    assert_eq!(
        app.get(
            &format!("/files/{}", ids["old_unreferenced"]),
            &t.alice.token
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Killed again: one file fully swept, one only had its bytes removed.
    assert_eq!(
        tandem_control::files::collector::sweep(&state, 1)
            .await
            .unwrap(),
        1
    );
    let left: Vec<String> =
        app.sql_texts("SELECT storage_key AS t FROM files WHERE state = 'collecting'");
    assert_eq!(left.len(), 2);
    state.files.delete(&left[0]).await.unwrap();
    // A full run finishes the job, idempotently.
    let removed = tandem_control::files::collector::run(&state, now)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    for label in ["old_unreferenced", "unsynced", "old_deleted"] {
        assert!(
            !state.files.exists(&key(label)).await.unwrap(),
            "{label} bytes remain"
        );
        let rows = app.sql_texts(&format!(
            "SELECT id AS t FROM files WHERE id = '{}'",
            ids[label]
        ));
        assert!(rows.is_empty(), "{label} row remains");
    }
    for label in ["attached", "synced", "new_unreferenced", "old_conversation"] {
        assert!(
            state.files.exists(&key(label)).await.unwrap(),
            "{label} was removed"
        );
        let a = app
            .get(&format!("/files/{}", ids[label]), &t.bob.token)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{label}: {}", a.body);
    }
    // Nothing more to do now; after the grace period, only the unreferenced.
    assert_eq!(
        tandem_control::files::collector::run(&state, now)
            .await
            .unwrap(),
        0
    );
    let later = now + hour + 60_000;
    let removed = tandem_control::files::collector::run(&state, later)
        .await
        .unwrap();
    assert_eq!(
        removed, 3,
        "new_unreferenced, old_conversation and the personal one"
    );
    assert_ready_bytes_counted(app);
    for label in ["attached", "synced"] {
        assert!(
            state.files.exists(&key(label)).await.unwrap(),
            "{label} was removed"
        );
    }
    for label in ["new_unreferenced", "old_conversation"] {
        assert!(
            !state.files.exists(&key(label)).await.unwrap(),
            "{label} bytes remain"
        );
    }
    // Dropping the last sync reference starts its grace period.
    state
        .db(|c| tandem_control::store::files::remove_ref(c, "sync", "notes/1", None))
        .await
        .unwrap();
    assert_eq!(
        tandem_control::files::collector::run(&state, now)
            .await
            .unwrap(),
        0
    );
    let removed = tandem_control::files::collector::run(&state, later + hour)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(state.files.exists(&key("attached")).await.unwrap());
    assert!(metric(app, "files_gc_removed").await >= 5);
    assert_ready_bytes_counted(app);
}

async fn range_requests(backend: Backend) {
    let env = spawn(backend, Store::Dir, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(1000, 4);
    let file = upload(app, &t.alice, &t.ws, "r.bin", &data).await;
    let url = signed_url(app, &t.bob, file["id"].as_str().unwrap()).await;
    for (range, from, to) in [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=100-5000", 100, 999),
    ] {
        let res = app
            .client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            res.headers()["content-range"].to_str().unwrap(),
            format!("bytes {from}-{to}/1000")
        );
        assert_eq!(
            res.bytes().await.unwrap().as_ref(),
            &data[from..=to],
            "{range}"
        );
    }
    for range in ["bytes=1000-", "bytes=50-10"] {
        let res = app
            .client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);
}

async fn message_attachments_and_links(backend: Backend, store: Store) {
    let env = spawn(backend, store, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let project = app.create_project(&t.alice, &t.ws, "P").await;
    let conv = app
        .post(
            &format!("/projects/{project}/conversations"),
            &t.alice.token,
            json!({"title": "c"}),
        )
        .await
        .id();
    let file = upload(app, &t.alice, &t.ws, "photo.png", &bytes(500, 1)).await;
    let m = app
        .post(
            &format!("/conversations/{conv}/messages"),
            &t.alice.token,
            json!({"content": "two", "attachments": [file["id"], {"name": "l", "contentType": "text/html", "sizeBytes": 1, "url": "https://example.com/"}]}),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    let fid = file["id"].as_str().unwrap();
    assert_eq!(
        m.body["attachments"],
        json!([
            {"name": "photo.png", "contentType": "application/octet-stream", "sizeBytes": 500, "url": format!("/files/{fid}/content"), "fileId": fid},
            {"name": "l", "contentType": "text/html", "sizeBytes": 1, "url": "https://example.com/"}
        ])
    );
    let list = app
        .get(&format!("/conversations/{conv}/messages"), &t.alice.token)
        .await;
    assert_eq!(list.body["items"][0]["attachments"], m.body["attachments"]);
    for bad in [
        json!(["nope!"]),
        json!(["0123456789abcdef0123456789abcdef"]),
        json!([{"name": "l", "contentType": "a/b", "sizeBytes": 1, "url": "https://x/", "fileId": fid}]),
    ] {
        let a = app
            .post(
                &format!("/conversations/{conv}/messages"),
                &t.alice.token,
                json!({"content": "x", "attachments": bad}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            a.body
        );
    }
}

/// A conversation participant who is not a member of the workspace reads
/// (never deletes) the files attached in that conversation, and only those,
/// for as long as they take part in it.
async fn attachments_are_readable_through_their_conversation(backend: Backend, store: Store) {
    let env = spawn(backend, store, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let dave = app.signup("dave@else.test", "Dave").await;
    let project = app.create_project(&t.alice, &t.ws, "P").await;
    let new_conversation = |title: &'static str| {
        let (token, project) = (t.alice.token.clone(), project.clone());
        async move {
            app.post(
                &format!("/projects/{project}/conversations"),
                &token,
                json!({ "title": title }),
            )
            .await
            .id()
        }
    };
    let (conv_a, conv_b) = (new_conversation("a").await, new_conversation("b").await);
    let data_a = bytes(300_000, 7);
    let data_b = bytes(1000, 8);
    let file_a = upload(app, &t.alice, &t.ws, "a.bin", &data_a).await;
    let file_b = upload(app, &t.alice, &t.ws, "b.bin", &data_b).await;
    let (fa, fb) = (
        file_a["id"].as_str().unwrap().to_string(),
        file_b["id"].as_str().unwrap().to_string(),
    );
    for (conv, file, who) in [(&conv_a, &fa, &t.carol), (&conv_b, &fb, &dave)] {
        let a = app
            .post(
                &format!("/conversations/{conv}/participants"),
                &t.alice.token,
                json!({ "userId": who.id }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let m = app
            .post(
                &format!("/conversations/{conv}/messages"),
                &t.alice.token,
                json!({"content": "see attached", "attachments": [file]}),
            )
            .await;
        assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    }
    // Carol is in another org and no member of the workspace.
    assert_eq!(
        app.get(&format!("/workspaces/{}/projects", t.ws), &t.carol.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let meta = app.get(&format!("/files/{fa}"), &t.carol.token).await;
    assert_eq!(meta.status, StatusCode::OK, "{}", meta.body);
    assert_eq!(meta.body, file_a);
    let got = download(app, &t.carol, &fa).await;
    assert!(got == data_a, "the participant's download differs");
    let url = app.get(&format!("/files/{fa}/url"), &t.carol.token).await;
    assert_eq!(url.status, StatusCode::OK, "{}", url.body);
    let res = reqwest::get(url.body["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data_a[..]);
    // Reading only: no delete, no upload to the workspace.
    assert_eq!(
        app.delete(&format!("/files/{fa}"), &t.carol.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let up = intent(app, &t.carol, &t.ws, "x.bin", b"x").await;
    assert_eq!(up.status, StatusCode::NOT_FOUND, "{}", up.body);
    // B's file is not readable through A, nor A's through B.
    for (who, file) in [(&t.carol, &fb), (&dave, &fa)] {
        for suffix in ["", "/content", "/url"] {
            let a = app.get(&format!("/files/{file}{suffix}"), &who.token).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{suffix}: {}", a.body);
        }
    }
    assert!(download(app, &dave, &fb).await == data_b);
    // Carol's participation ends: so does her access to A's file.
    let gone = app
        .delete(
            &format!("/conversations/{conv_a}/participants/{}", t.carol.id),
            &t.alice.token,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    for suffix in ["", "/content", "/url"] {
        let a = app
            .get(&format!("/files/{fa}{suffix}"), &t.carol.token)
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{suffix}: {}", a.body);
    }
    // The file stays readable to the workspace and to B's participant of B's file.
    assert!(download(app, &t.bob, &fa).await == data_a);
}

/// With `TANDEM_PUBLIC_CONTROL_URL`, the directory backend's transfer URLs
/// start with it whatever `Host` or `X-Forwarded-*` the request came with.
async fn transfer_urls_use_the_public_control_url(backend: Backend) {
    let public = "https://control.example.test";
    let env = spawn(backend, Store::Dir, |c| {
        c.public_control_url = Some(format!("{public}/"));
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(5000, 3);
    let forged = |req: reqwest::RequestBuilder| {
        req.bearer_auth(&t.alice.token)
            .header("host", "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "http")
            .header("forwarded", "host=evil.example;proto=http")
    };
    let pending: Value =
        forged(no_redirects().post(format!("{}/workspaces/{}/files/uploads", app.base, t.ws)))
            .json(&json!({
                "name": "p.bin", "size": data.len(),
                "contentType": "application/octet-stream", "sha256": sha256(&data),
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    let part = pending["parts"][0]["url"].as_str().unwrap();
    assert!(part.starts_with(&format!("{public}/blobs/")), "{part}");
    // The URL is good: sent to this control, the part is taken.
    let local = part.replacen(public, &app.base, 1);
    let res = app
        .client
        .put(&local)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = pending["uploadId"].as_str().unwrap();
    let done = app
        .post(
            &format!("/files/uploads/{id}/complete"),
            &t.alice.token,
            json!({}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    let res = forged(no_redirects().get(format!("{}/files/{id}/content", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{public}/blobs/{id}?")),
        "{location}"
    );
    let url: Value = forged(no_redirects().get(format!("{}/files/{id}/url", app.base)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = url["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{public}/blobs/{id}?")), "{url}");
    let got = app
        .client
        .get(url.replacen(public, &app.base, 1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

all_variants!(
    a_part_still_being_sent_holds_off_completion,
    a_trickled_body_is_cut_off,
    one_member_uploads_another_downloads,
    multipart_upload_resumes,
    same_bytes_again_are_a_dedupe_hit,
    bytes_not_matching_the_hash_are_refused,
    altered_or_expired_urls_are_refused,
    outsiders_and_removed_members_get_404,
    limits_answer_clearly,
    collector_removes_exactly_the_unreferenced,
    message_attachments_and_links,
    attachments_are_readable_through_their_conversation,
    chained_parts_are_proven_without_a_read_back,
);
crate::both_backends!(
    range_requests,
    transfer_urls_use_the_public_control_url,
    a_part_is_being_written_until_its_last_request_ends_or_lapses
);

/// Runs an `async fn(Backend)` test on both databases with S3 storage.
macro_rules! s3_variants {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_s3() {
                if super::s3_available() {
                    super::$name(Backend::Sqlite).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                if $crate::helpers::postgres_available() && super::s3_available() {
                    super::$name(Backend::Postgres).await
                }
            }
        }
    )*};
}

s3_variants!(small_s3_uploads_go_through_control);

/// A PUT of `body` to a part URL, as a stream of 1,000-byte chunks with no
/// `Content-Length` (so only the bytes themselves can tell their length).
async fn put_chunked(app: &TestApp, url: &str, body: Vec<u8>) -> reqwest::Response {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    app.client
        .put(url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap()
}

async fn small_s3_uploads_go_through_control(backend: Backend) {
    const LIMIT: i64 = 64 * 1024;
    let env = spawn(backend, Store::S3, |c| c.s3_through_control_bytes = LIMIT).await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(50_000, 3);
    let key = |id: &str| format!("{}/{id}", t.ws);
    let pending = |a: &crate::helpers::Answer| -> (String, String) {
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let parts = a.body["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{}", a.body);
        (
            a.body["uploadId"].as_str().unwrap().to_string(),
            parts[0]["url"].as_str().unwrap().to_string(),
        )
    };

    // Up to the limit, the part URL is control's, signed by control.
    let (id, url) = pending(&intent(app, &t.alice, &t.ws, "a.bin", &data).await);
    assert!(
        url.starts_with(&format!("{}/blobs/{id}/parts/1?", app.base)),
        "{url}"
    );
    let altered = url.replace("signature=", "signature=00");
    let res = app
        .client
        .put(&altered)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Too few bytes (no Content-Length to refuse them early): the store's
    // request is cut short, nothing is stored, the upload waits.
    let res = put_chunked(app, &url, data[..49_000].to_vec()).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "size_mismatch", "{body}");
    assert!(!app.state.files.exists(&key(&id)).await.unwrap());
    let again = app
        .get(&format!("/files/uploads/{id}"), &t.alice.token)
        .await;
    assert_eq!(again.body["status"], "pending", "{}", again.body);

    // The right bytes: stored, checked and made a file by the PUT itself.
    let res = put_chunked(app, &url, data.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let put: Value = res.json().await.unwrap();
    assert_eq!(put["file"]["id"], id.as_str(), "{put}");
    assert_eq!(put["file"]["size"], 50_000, "{put}");
    assert_eq!(put["file"]["sha256"], sha256(&data).as_str(), "{put}");
    assert!(app.state.files.exists(&key(&id)).await.unwrap());
    assert!(metric(app, "files_bytes_in").await >= 50_000);
    // Completing as well is harmless: the same file.
    let done = app
        .post(
            &format!("/files/uploads/{id}/complete"),
            &t.alice.token,
            json!({}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(done.body["file"]["id"], id.as_str());
    assert_eq!(download(app, &t.bob, &id).await, data);
    // The same bytes again: a dedupe hit, nothing to send.
    let hit = intent(app, &t.bob, &t.ws, "again.bin", &data).await;
    assert_eq!(hit.status, StatusCode::OK, "{}", hit.body);
    assert_eq!(hit.body["file"]["id"], id.as_str());

    // Other bytes than declared, same length: refused, nothing kept.
    let other = bytes(20_000, 4);
    let mut wrong = other.clone();
    wrong[10_000] ^= 0xFF;
    let (bad, url) = pending(&intent(app, &t.alice, &t.ws, "b.bin", &other).await);
    let res = app.client.put(&url).body(wrong).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "hash_mismatch", "{body}");
    // The upload is gone for its client at once; whatever part of the cut
    // body the store kept (SeaweedFS may keep it, and only after a moment)
    // is the collector's once the store has settled (a minute in production,
    // `ABANDONED_SETTLE_MS`; here the store is given 300 ms).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let now = tandem_control::store::now_ms();
    tandem_control::files::collector::run(&app.state, now)
        .await
        .unwrap();
    let state = app.sql_texts(&format!("SELECT state AS t FROM files WHERE id = '{bad}'"));
    assert_eq!(
        state,
        vec!["pending".to_string()],
        "kept until the store settles"
    );
    let settled =
        tandem_control::store::now_ms() + tandem_control::store::files::ABANDONED_SETTLE_MS;
    tandem_control::files::collector::run(&app.state, settled)
        .await
        .unwrap();
    assert!(!app.state.files.exists(&key(&bad)).await.unwrap());
    let gone = app
        .get(&format!("/files/uploads/{bad}"), &t.alice.token)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // Two uploads of the same bytes at once: the second PUT answers the
    // first's file, and its own copy is removed.
    let twin = bytes(30_000, 5);
    let (first, url1) = pending(&intent(app, &t.alice, &t.ws, "1.bin", &twin).await);
    let (second, url2) = pending(&intent(app, &t.bob, &t.ws, "2.bin", &twin).await);
    let put = |url: String| {
        let (client, twin) = (app.client.clone(), twin.clone());
        async move {
            let res = client.put(url).body(twin).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let a = put(url1).await;
    let b = put(url2).await;
    assert_eq!(a["file"]["id"], first.as_str(), "{a}");
    assert_eq!(b["file"]["id"], first.as_str(), "{b}");
    assert!(!app.state.files.exists(&key(&second)).await.unwrap());

    // Above the limit, the bytes go straight to the store.
    let large = bytes(LIMIT as usize + 1, 6);
    let a = intent(app, &t.alice, &t.ws, "c.bin", &large).await;
    let (_, url) = pending(&a);
    assert!(!url.starts_with(&app.base), "{url}");
    assert!(a.body["parts"][0]["headers"]["x-amz-checksum-sha256"].is_string());
}

/// A second PUT of an upload's part, still running when the first has
/// arrived, holds off completion: were the upload completed meanwhile, the
/// second PUT's bytes could change the ready file's (the directory backend
/// writes into them) and its refusal remove them (both backends). Through
/// control on S3 the first PUT makes no file while the second runs; once
/// the second is refused the upload is gone, and no ready file lost bytes.
async fn a_part_still_being_sent_holds_off_completion(backend: Backend, store: Store) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = spawn(backend, store, |c| {
        if store == Store::S3 {
            c.s3_through_control_bytes = 64 * 1024;
        }
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let (data, wrong) = (bytes(10_000, 21), bytes(10_000, 22));
    let a = intent(app, &t.alice, &t.ws, "twice.bin", &data).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let id = a.body["uploadId"].as_str().unwrap().to_string();
    // The second PUT (wrong bytes) starts first and stalls halfway.
    let url = reqwest::Url::parse(a.body["parts"][0]["url"].as_str().unwrap()).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        url.path(),
        url.query().unwrap(),
        wrong.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&wrong[..5_000]).await.unwrap();
    let writing = format!("SELECT file_id AS t FROM file_part_writers WHERE file_id = '{id}'");
    let started = std::time::Instant::now();
    while app.sql_texts(&writing).is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The first PUT sends the right bytes, whole.
    let puts = put_parts(app, &a.body, &data, None).await;
    assert_eq!(puts[0].1, StatusCode::OK);
    let upload = app
        .get(&format!("/files/uploads/{id}"), &t.alice.token)
        .await;
    assert_eq!(upload.body["status"], "pending", "{}", upload.body);
    let done = complete(app, &t.alice, &id, &puts).await;
    assert_eq!(done.status, StatusCode::CONFLICT, "{}", done.body);
    // The second PUT ends with wrong bytes: refused, and the upload with it.
    slow.write_all(&wrong[5_000..]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("control answers the second PUT")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    let done = complete(app, &t.alice, &id, &puts).await;
    assert_eq!(done.status, StatusCode::NOT_FOUND, "{}", done.body);
    assert_ready_bytes_counted(app);
    // Nothing ready holds these bytes: uploading them again is no dedupe
    // hit, and the file made then reads back whole.
    let again = intent(app, &t.alice, &t.ws, "twice.bin", &data).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    let puts = put_parts(app, &again.body, &data, None).await;
    let id = again.body["uploadId"].as_str().unwrap();
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    let file = done.body["file"]["id"].as_str().unwrap();
    assert_eq!(download(app, &t.bob, file).await, data);
    assert_ready_bytes_counted(app);
}

/// The record completion waits on: a part is being written while any of
/// its requests runs (two at once: until both ended), and no longer once a
/// request's time has passed (a process that died mid-request never ends
/// its requests); a request ending late cannot end another's writing.
async fn a_part_is_being_written_until_its_last_request_ends_or_lapses(backend: Backend) {
    use tandem_control::db::DbConnection;
    use tandem_control::error::ApiError;
    use tandem_control::store::files::{abandon, begin_completing, end_part, Taking};
    type Step = Box<dyn FnOnce(&mut DbConnection, &str) -> Result<Taking, ApiError> + Send>;
    let env = spawn(backend, Store::Dir, |_| {}).await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(1_000, 23);
    let a = intent(app, &t.alice, &t.ws, "record.bin", &data).await;
    let id = a.body["uploadId"].as_str().unwrap().to_string();
    let now = tandem_control::store::now_ms();
    let db = |f: Step| {
        let id = id.clone();
        async move { app.state.db(move |c| f(c, &id)).await.unwrap() }
    };
    // Two requests write part 1; the first ends: still being written.
    let (w1, w2) = (
        begin(app, &id, now, now + 60_000).await,
        begin(app, &id, now, now + 60_000).await,
    );
    let taking = db(Box::new(move |c, id| {
        end_part(c, &w1, id, 1, None)?;
        begin_completing(c, id, now)
    }))
    .await;
    assert_eq!(taking, Taking::PartsBeingWritten);
    // The second ends too: completion takes the upload.
    let taking = db(Box::new(move |c, id| {
        end_part(c, &w2, id, 1, None)?;
        begin_completing(c, id, now)
    }))
    .await;
    assert_eq!(taking, Taking::Taken);
    // Being completed, the upload is not abandoned by a refusal.
    let abandoned = db(Box::new(move |c, id| {
        Ok(match abandon(c, id, now)? {
            true => Taking::NotOpen,
            false => Taking::Taken,
        })
    }))
    .await;
    assert_eq!(abandoned, Taking::Taken, "abandoned while being completed");
    // Given back, then a request that never ends holds completion off
    // until its time, and no longer.
    app.sql(&format!(
        "UPDATE files SET state = 'pending' WHERE id = '{id}'"
    ));
    let stuck = begin(app, &id, now, now + 1_000).await;
    let held = db(Box::new(move |c, id| begin_completing(c, id, now + 999))).await;
    assert_eq!(held, Taking::PartsBeingWritten);
    let lapsed = db(Box::new(move |c, id| begin_completing(c, id, now + 1_001))).await;
    assert_eq!(lapsed, Taking::Taken);
    // Given back again: a new request writes; the lapsed one ending late
    // does not end the new one's writing.
    app.sql(&format!(
        "UPDATE files SET state = 'pending' WHERE id = '{id}'"
    ));
    let live = begin(app, &id, now + 2_000, now + 60_000).await;
    let taking = db(Box::new(move |c, id| {
        end_part(c, &stuck, id, 1, None)?;
        begin_completing(c, id, now + 2_001)
    }))
    .await;
    assert_eq!(taking, Taking::PartsBeingWritten);
    let taking = db(Box::new(move |c, id| {
        end_part(c, &live, id, 1, None)?;
        begin_completing(c, id, now + 2_002)
    }))
    .await;
    assert_eq!(taking, Taking::Taken);
}

/// A writer of part 1 of upload `id` as of `now`, counting until `until`.
async fn begin(app: &TestApp, id: &str, now: i64, until: i64) -> String {
    let id = id.to_string();
    app.state
        .db(move |c| tandem_control::store::files::begin_part(c, &id, 1, None, now, until))
        .await
        .unwrap()
}

/// A part's body slower than the minimum rate (here: 10,000 bytes due in
/// half a second) is cut off with 408 `body_timeout`; the upload is not
/// harmed: the same part sent again completes it, byte for byte. On S3 the
/// part goes through control (the only S3 path whose body control reads).
async fn a_trickled_body_is_cut_off(backend: Backend, store: Store) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = spawn(backend, store, |c| {
        c.upload_body_grace_secs = 0;
        c.upload_min_bytes_per_sec = 20_000;
        if store == Store::S3 {
            c.s3_through_control_bytes = 64 * 1024;
        }
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let data = bytes(10_000, 9);
    let a = intent(app, &t.alice, &t.ws, "slow.bin", &data).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let url = reqwest::Url::parse(a.body["parts"][0]["url"].as_str().unwrap()).unwrap();
    assert!(
        url.as_str().starts_with(&app.base),
        "a part sent to control: {url}"
    );
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target = format!("{}?{}", url.path(), url.query().unwrap());
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..1000]).await.unwrap(); // and then nothing more
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("control answers a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(s);
    // Nothing was kept: the upload still waits for the part, which now
    // arrives in time and completes it.
    let id = a.body["uploadId"].as_str().unwrap();
    let again = app
        .get(&format!("/files/uploads/{id}"), &t.alice.token)
        .await;
    assert_eq!(again.body["status"], "pending", "{}", again.body);
    let puts = put_parts(app, &a.body, &data, None).await;
    assert_eq!(puts[0].1, StatusCode::OK);
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    let file = done.body["file"]["id"].as_str().unwrap();
    assert_eq!(download(app, &t.bob, file).await, data);
}

/// The bytes read back from the store to check uploads, so far.
async fn read_back(app: &TestApp) -> u64 {
    metric(app, "files_readback_bytes").await
}

/// Multipart uploads through control (the directory backend, and S3's
/// parts): parts that carry the SHA-256 state they start from are proven on
/// completion without a read-back;
/// anything that breaks the chain (a part sent twice, a part without its
/// state) is read back instead, and a lying state proves nothing.
async fn chained_parts_are_proven_without_a_read_back(backend: Backend, store: Store) {
    let env = spawn(backend, store, |c| c.files_part_bytes = S3_MIN_PART).await;
    let app = &env.app;
    let t = team(app).await;
    let size = 2 * S3_MIN_PART as usize + 4321;
    let (alice, ws) = (&t.alice, &t.ws);
    let upload_with = |seed: u8, claims: bool| {
        let data = bytes(size, seed);
        async move {
            let a = intent(app, alice, ws, "big.bin", &data).await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
            let parts = a.body["parts"].as_array().unwrap();
            assert_eq!(parts.len(), 3, "{}", a.body);
            for p in parts {
                let n = p["partNumber"].as_i64().unwrap();
                let id = a.body["uploadId"].as_str().unwrap();
                let url = p["url"].as_str().unwrap();
                assert!(
                    url.starts_with(&format!("{}/blobs/{id}/parts/{n}?", app.base)),
                    "{url}"
                );
                assert_eq!(p["sha256State"] == true, n > 1, "{p}");
            }
            let claims = claims.then_some(&data[..]);
            let puts = put_parts_claiming(app, &a.body, &data, None, claims).await;
            (a, data, puts)
        }
    };

    // Every part with its state: no read-back, and the bytes are whole.
    let (a, data, puts) = upload_with(1, true).await;
    assert!(puts.iter().all(|p| p.1 == StatusCode::OK), "{puts:?}");
    let id = a.body["uploadId"].as_str().unwrap();
    let in_before = metric(app, "files_bytes_in").await;
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(done.body["file"]["sha256"], sha256(&data).as_str());
    assert_eq!(read_back(app).await, 0, "a proven upload is not read back");
    let left = app.sql_texts(&format!(
        "SELECT file_id AS t FROM file_parts WHERE file_id = '{id}'"
    ));
    assert!(
        left.is_empty(),
        "a ready file keeps no part records: {left:?}"
    );
    assert_eq!(
        metric(app, "files_bytes_in").await,
        in_before,
        "the parts were counted as they passed"
    );
    assert!(download(app, &t.bob, id).await == data);

    // A part sent twice: the store may hold either, so it is read back.
    let (a, data, mut puts) = upload_with(2, true).await;
    puts.extend(put_parts(app, &a.body, &data, Some(&[2])).await);
    assert!(puts.iter().all(|p| p.1 == StatusCode::OK), "{puts:?}");
    let id = a.body["uploadId"].as_str().unwrap();
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(read_back(app).await, size as u64);

    // Parts without their states: passed on unchecked, then read back.
    let (a, data, puts) = upload_with(3, false).await;
    assert!(puts.iter().all(|p| p.1 == StatusCode::OK), "{puts:?}");
    let id = a.body["uploadId"].as_str().unwrap();
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(read_back(app).await, 2 * size as u64);
    assert!(download(app, &t.alice, id).await == data);

    // A client that claims the states of the declared bytes while sending
    // others: every part is taken (the last one ends in the declared hash,
    // since its claimed start is right), but the chain does not close, the
    // read-back finds the difference, and nothing is kept.
    let declared = bytes(size, 4);
    let mut sent = declared.clone();
    sent[100] ^= 0xFF; // in part 1
    let a = intent(app, &t.alice, &t.ws, "lie.bin", &declared).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let puts = put_parts_claiming(app, &a.body, &sent, None, Some(&declared)).await;
    assert!(puts.iter().all(|p| p.1 == StatusCode::OK), "{puts:?}");
    let id = a.body["uploadId"].as_str().unwrap().to_string();
    let done = complete(app, &t.alice, &id, &puts).await;
    assert_eq!(
        done.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        done.body
    );
    assert_eq!(done.code(), "hash_mismatch");
    let rows = app.sql_texts(&format!("SELECT id AS t FROM files WHERE id = '{id}'"));
    assert!(rows.is_empty(), "{rows:?}");
    assert!(!app
        .state
        .files
        .exists(&format!("{}/{id}", t.ws))
        .await
        .unwrap());

    // A part can no longer be recorded once completion took the upload:
    // checking the upload and recording the part are one transaction, so a
    // part that slipped past the request's first check (which a test cannot
    // time) is refused there instead of reaching the store unrecorded.
    let data = bytes(size, 7);
    let a = intent(app, alice, ws, "taken.bin", &data).await;
    let id = a.body["uploadId"].as_str().unwrap().to_string();
    app.sql(&format!(
        "UPDATE files SET state = 'completing' WHERE id = '{id}'"
    ));
    let (fid, now) = (id.clone(), tandem_control::store::now_ms());
    let recorded = app
        .state
        .db(move |c| {
            tandem_control::store::files::begin_part(c, &fid, 2, None, now, now + 60_000)
                .map(|_| ())
        })
        .await;
    assert!(
        matches!(recorded, Err(tandem_control::error::ApiError::NotFound(_))),
        "{recorded:?}"
    );
    let rows = app.sql_texts(&format!(
        "SELECT file_id AS t FROM file_parts WHERE file_id = '{id}'"
    ));
    assert!(rows.is_empty(), "{rows:?}");

    // The last part with a wrong byte and honest states is refused as it
    // arrives; the upload is gone.
    let declared = bytes(size, 5);
    let mut sent = declared.clone();
    sent[size - 1] ^= 0xFF;
    let a = intent(app, &t.alice, &t.ws, "last.bin", &declared).await;
    let puts = put_parts_claiming(app, &a.body, &sent, None, Some(&sent)).await;
    let codes: Vec<StatusCode> = puts.iter().map(|p| p.1).collect();
    assert_eq!(
        codes,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::UNPROCESSABLE_ENTITY
        ]
    );
    let id = a.body["uploadId"].as_str().unwrap();
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::NOT_FOUND, "{}", done.body);

    // A state that is not one is a clear 422, and takes nothing.
    let data = bytes(size, 6);
    let a = intent(app, &t.alice, &t.ws, "bad.bin", &data).await;
    let p = &a.body["parts"][1];
    let off = p["offset"].as_u64().unwrap() as usize;
    let res = app
        .client
        .put(p["url"].as_str().unwrap())
        .header("tandem-sha256-state", "not-a-state")
        .body(data[off..off + S3_MIN_PART as usize].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tandem-sha256-state"),
        "{body}"
    );
}

/// With `TANDEM_S3_PARTS_THROUGH_CONTROL=false`, parts go straight to the
/// store (presigned) and completion reads the file back; uploads begun
/// before the setting changed keep the way they began with.
async fn presigned_parts_are_read_back(backend: Backend) {
    let env = spawn(backend, Store::S3, |c| {
        c.files_part_bytes = S3_MIN_PART;
        c.s3_parts_through_control = false;
    })
    .await;
    let app = &env.app;
    let t = team(app).await;
    let size = S3_MIN_PART as usize + 999;
    let data = bytes(size, 9);
    let a = intent(app, &t.alice, &t.ws, "big.bin", &data).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    for p in a.body["parts"].as_array().unwrap() {
        assert!(!p["url"].as_str().unwrap().starts_with(&app.base), "{p}");
        assert!(p.get("sha256State").is_none(), "{p}");
    }
    let puts = put_parts(app, &a.body, &data, None).await;
    let id = a.body["uploadId"].as_str().unwrap();
    let done = complete(app, &t.alice, id, &puts).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(read_back(app).await, size as u64);
    assert!(download(app, &t.bob, id).await == data);

    // The way is recorded with the upload, so a change of the setting
    // applies only to uploads begun after it.
    let other = bytes(size, 10);
    let a = intent(app, &t.alice, &t.ws, "other.bin", &other).await;
    let id = a.body["uploadId"].as_str().unwrap();
    let through: Vec<String> = app.sql_texts(&format!(
        "SELECT CAST(parts_through_control AS TEXT) AS t FROM files WHERE id = '{id}'"
    ));
    assert!(
        through == ["0"] || through == ["false"],
        "recorded with the upload: {through:?}"
    );
}

s3_variants!(presigned_parts_are_read_back);
