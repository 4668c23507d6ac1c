//! Files benchmark (not a test): upload and download MB/s of 1 MB, 16 MB
//! (one part) and 100 MB (multipart) files through control's directory
//! backend and through S3 presigned URLs (control on the S3 backend, with
//! `TANDEM_S3_VERIFY=checksum` and `readback`), beside a direct PUT/GET of
//! the same bytes to the same S3 server (the ceiling).
//!
//!     scripts/bench files     # starts SeaweedFS on loopback, then runs this
//!
//! Needs `TANDEM_TEST_S3_URL=http://KEY:SECRET@HOST:PORT/BUCKET` (without it
//! only the directory backend is measured). Control runs in this process
//! (SQLite in a temp dir, 2 workers); every transfer is over loopback HTTP.
//! Tandem's upload is the whole flow: intent, parts (up to 4 at once),
//! completion (`checksum`: the store checked a one-part upload's signed
//! SHA-256, control asks for it; multipart and `readback`: control reads the
//! bytes back to check their SHA-256), the client's SHA-256 included; its
//! download is `GET /files/{id}/content` and the redirect. Prints a table
//! and one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::{json, Value};
use tandem_control::{Application, ControlConfig};

const MB: usize = 1_000_000;

struct S3 {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

fn s3_from_env() -> Option<S3> {
    let raw = std::env::var("TANDEM_TEST_S3_URL").ok()?;
    let rest = raw.strip_prefix("http://")?;
    let (creds, rest) = rest.split_once('@')?;
    let (key, secret) = creds.split_once(':')?;
    let (host, bucket) = rest.split_once('/')?;
    Some(S3 {
        endpoint: format!("http://{host}"),
        bucket: bucket.trim_end_matches('/').into(),
        key: key.into(),
        secret: secret.into(),
    })
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn sha256(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Control {
    base: String,
    token: String,
    ws: String,
    _dir: tempfile::TempDir,
}

async fn start_control(s3: Option<&S3>, verify: &str) -> Control {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ControlConfig::for_tests(format!(
        "sqlite://{}",
        dir.path().join("tandem.db").display()
    ));
    config.files_dir = dir.path().join("files");
    config.files_max_bytes = 1 << 30;
    if let Some(s3) = s3 {
        config.files_backend = "s3".into();
        config.s3_endpoint = Some(s3.endpoint.clone());
        config.s3_bucket = Some(s3.bucket.clone());
        config.s3_access_key_id = Some(s3.key.clone());
        config.s3_secret_access_key = Some(s3.secret.clone());
        config.s3_verify = verify.into();
    }
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let res: Value = http
        .post(format!("{base}/auth/signup"))
        .json(
            &json!({"email": "bench@files.dev", "password": "password123", "displayName": "Bench"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = res["sessionToken"].as_str().unwrap().to_string();
    let session: Value = http
        .get(format!("{base}/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws = session["workspaces"][0]["id"].as_str().unwrap().to_string();
    Control {
        base,
        token,
        ws,
        _dir: dir,
    }
}

/// Uploads through control (the whole flow); returns the file id and seconds.
async fn tandem_upload(http: &reqwest::Client, c: &Control, data: &[u8]) -> (String, f64) {
    let started = Instant::now();
    let intent: Value = http
        .post(format!("{}/workspaces/{}/files/uploads", c.base, c.ws))
        .bearer_auth(&c.token)
        .json(&json!({"name": "bench.bin", "size": data.len(), "contentType": "application/octet-stream", "sha256": sha256(data)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intent["status"], "pending", "{intent}");
    let parts = intent["parts"].as_array().unwrap().clone();
    for batch in parts.chunks(4) {
        let puts = batch.iter().map(|p| {
            let off = p["offset"].as_u64().unwrap() as usize;
            let len = p["size"].as_u64().unwrap() as usize;
            let body = data[off..off + len].to_vec();
            let url = p["url"].as_str().unwrap().to_string();
            let mut req = http.put(url);
            for (k, v) in p["headers"].as_object().unwrap() {
                req = req.header(k.as_str(), v.as_str().unwrap());
            }
            async move {
                let res = req.body(body).send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
            }
        });
        join_all(puts).await;
    }
    let done: Value = http
        .post(format!(
            "{}/files/uploads/{}/complete",
            c.base,
            intent["uploadId"].as_str().unwrap()
        ))
        .bearer_auth(&c.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = done["file"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"));
    (id.to_string(), started.elapsed().as_secs_f64())
}

async fn tandem_download(http: &reqwest::Client, c: &Control, id: &str, size: usize) -> f64 {
    let started = Instant::now();
    let res = http
        .get(format!("{}/files/{id}/content", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let n = drain(res).await;
    assert_eq!(n, size);
    started.elapsed().as_secs_f64()
}

async fn drain(mut res: reqwest::Response) -> usize {
    let mut n = 0;
    while let Some(chunk) = res.chunk().await.unwrap() {
        n += chunk.len();
    }
    n
}

/// A direct PUT and GET of the bytes to the S3 server: seconds each.
async fn direct(http: &reqwest::Client, s3: &S3, data: &[u8], key: &str) -> (f64, f64) {
    let bucket = Bucket::new(
        s3.endpoint.parse().unwrap(),
        UrlStyle::Path,
        s3.bucket.clone(),
        "us-east-1",
    )
    .unwrap();
    let creds = Credentials::new(s3.key.clone(), s3.secret.clone());
    let ttl = Duration::from_secs(600);
    let put = bucket.put_object(Some(&creds), key).sign(ttl);
    let started = Instant::now();
    let res = http.put(put).body(data.to_vec()).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let up = started.elapsed().as_secs_f64();
    let get = bucket.get_object(Some(&creds), key).sign(ttl);
    let started = Instant::now();
    let res = http.get(get).send().await.unwrap();
    assert_eq!(drain(res).await, data.len());
    let down = started.elapsed().as_secs_f64();
    let del = bucket.delete_object(Some(&creds), key).sign(ttl);
    let _ = http.delete(del).send().await;
    (up, down)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let s3 = s3_from_env();
    if s3.is_none() {
        eprintln!("TANDEM_TEST_S3_URL is not set: measuring the directory backend only");
    }
    let http = reqwest::Client::new();
    let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
    let mut seed = 1;
    let sizes = [
        ("1 MB", MB, 5),
        ("16 MB", 16 * MB, 3),
        ("100 MB", 100 * MB, 3),
    ];
    let dir = start_control(None, "checksum").await;
    let s3_control = match &s3 {
        Some(s3) => Some((
            start_control(Some(s3), "checksum").await,
            start_control(Some(s3), "readback").await,
        )),
        None => None,
    };
    for (label, size, runs) in sizes {
        let mut paths: Vec<(&str, &Control)> = vec![("tandem dir", &dir)];
        if let Some((checksum, readback)) = &s3_control {
            paths.push(("tandem s3 checksum", checksum));
            paths.push(("tandem s3 readback", readback));
        }
        for (name, c) in paths {
            let (mut ups, mut downs) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                seed += 1;
                let data = random_bytes(size, seed);
                let (id, up) = tandem_upload(&http, c, &data).await;
                ups.push(size as f64 / MB as f64 / up);
                downs.push(size as f64 / MB as f64 / tandem_download(&http, c, &id, size).await);
            }
            rows.push((label.into(), name.into(), median(ups), median(downs)));
        }
        if let Some(s3) = &s3 {
            let (mut ups, mut downs) = (Vec::new(), Vec::new());
            for i in 0..runs {
                seed += 1;
                let data = random_bytes(size, seed);
                let (up, down) =
                    direct(&http, s3, &data, &format!("bench/direct-{seed}-{i}")).await;
                ups.push(size as f64 / MB as f64 / up);
                downs.push(size as f64 / MB as f64 / down);
            }
            rows.push((
                label.into(),
                "direct S3 (ceiling)".into(),
                median(ups),
                median(downs),
            ));
        }
    }
    println!(
        "{:<8} {:<22} {:>14} {:>16}",
        "file", "path", "upload MB/s", "download MB/s"
    );
    for (size, path, up, down) in &rows {
        println!("{size:<8} {path:<22} {up:>14.1} {down:>16.1}");
    }
    let json: Vec<Value> = rows
        .iter()
        .map(|(s, p, u, d)| json!({"size": s, "path": p, "uploadMBps": u, "downloadMBps": d}))
        .collect();
    println!("{}", json!({"bench": "files", "results": json}));
}
