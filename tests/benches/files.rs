//! Files benchmark (not a test): upload and download MB/s of 1 MB, 16 MB
//! (one part) and 100 MB (multipart) files through control's directory
//! backend and through S3 (control on the S3 backend as configured by
//! default: files up to `TANDEM_S3_THROUGH_CONTROL_BYTES`, 4 MiB, sent
//! through control, larger one-part files to presigned URLs, the parts of
//! multipart files through control with their SHA-256 states, so that
//! completion needs no read-back; and with every upload presigned,
//! `TANDEM_S3_VERIFY=checksum` and `readback`), beside a direct PUT/GET of
//! the same bytes to the same S3 server (the ceiling), and beside direct
//! PUTs that carry a signed `x-amz-checksum-sha256` (the guarantee Tandem's
//! one-part upload has; with and without a signed `content-length`). The
//! paths take turns in each round, so a change in the machine's load meets
//! them alike; the upload's steps are timed too.
//!
//!     scripts/bench files     # starts SeaweedFS on loopback, then runs this
//!
//! Needs `TANDEM_TEST_S3_URL=http://KEY:SECRET@HOST:PORT/BUCKET` (without it
//! only the directory backend is measured). Control runs in this process
//! (SQLite in a temp dir, 2 workers); every transfer is over loopback HTTP.
//! Tandem's upload is the whole flow: intent, parts (3 at a time, as `@tandem/client` sends them),
//! completion (none when the one PUT went through control and answered the
//! file; `checksum`: the store checked a one-part upload's signed
//! SHA-256, control asks for it; multipart through control: the parts'
//! recorded states prove it; presigned multipart and `readback`: control
//! reads the bytes back to check their SHA-256), the client's SHA-256 (and
//! the states it keeps at every MiB) included; its
//! download is `GET /files/{id}/content` and the redirect. Prints a table
//! and one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::{json, Value};
use tandem_control::{Application, ControlConfig};
use tandem_protocol::files::{Sha256State, SHA256_STATE_HEADER};

const MB: usize = 1_000_000;

/// Parts in flight at once: `@tandem/client`'s default `partConcurrency`.
const PART_CONCURRENCY: usize = 3;

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

struct Control {
    base: String,
    token: String,
    ws: String,
    _dir: tempfile::TempDir,
}

/// Control in this process; `through`: `TANDEM_S3_THROUGH_CONTROL_BYTES`.
async fn start_control(
    s3: Option<&S3>,
    verify: &str,
    through: i64,
    parts_through: bool,
) -> Control {
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
        config.s3_through_control_bytes = through;
        config.s3_parts_through_control = parts_through;
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

/// Seconds spent in each step of one upload through control.
#[derive(Default, Clone, Copy)]
struct Phases {
    hash: f64,
    intent: f64,
    send: f64,
    complete: f64,
}

/// Uploads through control (the whole flow); returns the file id, the
/// seconds it took and where they went.
async fn tandem_upload(http: &reqwest::Client, c: &Control, data: &[u8]) -> (String, f64, Phases) {
    let mut phases = Phases::default();
    let started = Instant::now();
    let (hash, states) = hash_with_states(data);
    phases.hash = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let intent: Value = http
        .post(format!("{}/workspaces/{}/files/uploads", c.base, c.ws))
        .bearer_auth(&c.token)
        .json(&json!({"name": "bench.bin", "size": data.len(), "contentType": "application/octet-stream", "sha256": hash}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intent["status"], "pending", "{intent}");
    phases.intent = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let parts = intent["parts"].as_array().unwrap().clone();
    let mut made = None;
    // Parts go out PART_CONCURRENCY at a time, the next as soon as one is
    // done (as @tandem/client's workers send them).
    let puts = futures_util::stream::iter(parts.iter())
        .map(|p| {
            let off = p["offset"].as_u64().unwrap() as usize;
            let len = p["size"].as_u64().unwrap() as usize;
            let body = data[off..off + len].to_vec();
            let url = p["url"].as_str().unwrap().to_string();
            let mut req = http.put(url);
            for (k, v) in p["headers"].as_object().unwrap() {
                req = req.header(k.as_str(), v.as_str().unwrap());
            }
            if p["sha256State"] == true {
                req = req.header(SHA256_STATE_HEADER, state_at(data, &states, off));
            }
            async move {
                let res = req.body(body).send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                let text = res.text().await.unwrap();
                serde_json::from_str::<Value>(&text).ok()
            }
        })
        .buffer_unordered(PART_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for answer in puts.into_iter().flatten() {
        if parts.len() == 1 && answer["file"]["id"].is_string() {
            made = Some(answer["file"]["id"].as_str().unwrap().to_string());
        }
    }
    phases.send = t.elapsed().as_secs_f64();
    if let Some(id) = made {
        // The PUT went through control, which made the file: no completion.
        return (id, started.elapsed().as_secs_f64(), phases);
    }
    let t = Instant::now();
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
    phases.complete = t.elapsed().as_secs_f64();
    let id = done["file"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"));
    (id.to_string(), started.elapsed().as_secs_f64(), phases)
}

/// The SHA-256 of `data` and its state at every MiB: what a client that
/// hashes a file once keeps for the parts it sends through control.
fn hash_with_states(data: &[u8]) -> (String, Vec<String>) {
    let mut hash = Sha256State::new();
    let mut states = Vec::with_capacity(data.len() / STATE_EVERY + 1);
    for piece in data.chunks(STATE_EVERY) {
        states.extend(hash.state_hex());
        hash.update(piece);
    }
    (hash.finish_hex(), states)
}

const STATE_EVERY: usize = 1 << 20;

/// The SHA-256 state at `offset` (a multiple of 64), from the nearest kept one.
fn state_at(data: &[u8], states: &[String], offset: usize) -> String {
    let i = offset / STATE_EVERY;
    let mut hash = Sha256State::resume(&states[i], (i * STATE_EVERY) as u64).unwrap();
    hash.update(&data[i * STATE_EVERY..offset]);
    hash.state_hex().unwrap()
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

/// A direct PUT and GET of the bytes to the S3 server: seconds each. With
/// `checksum`, the PUT carries (and signs) `x-amz-checksum-sha256`, which
/// the client computes first (timed): the same guarantee Tandem's one-part
/// upload has, without control.
async fn direct(
    http: &reqwest::Client,
    s3: &S3,
    data: &[u8],
    key: &str,
    checksum: bool,
    sign_length: bool,
) -> (f64, f64) {
    use base64::Engine;
    let bucket = Bucket::new(
        s3.endpoint.parse().unwrap(),
        UrlStyle::Path,
        s3.bucket.clone(),
        "us-east-1",
    )
    .unwrap();
    let creds = Credentials::new(s3.key.clone(), s3.secret.clone());
    let ttl = Duration::from_secs(600);
    let started = Instant::now();
    let mut action = bucket.put_object(Some(&creds), key);
    let mut header = None;
    if checksum {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        action
            .headers_mut()
            .insert("x-amz-checksum-sha256", b64.clone());
        if sign_length {
            action
                .headers_mut()
                .insert("content-length", data.len().to_string());
        }
        header = Some(b64);
    }
    let put = action.sign(ttl);
    let mut req = http.put(put).body(data.to_vec());
    if let Some(h) = header {
        req = req.header("x-amz-checksum-sha256", h);
    }
    let res = req.send().await.unwrap();
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

/// Runs per size: `TANDEM_BENCH_FILES_RUNS` (default 3 for 16 and 100 MB,
/// 15 for 1 MB, whose few milliseconds a busy machine disturbs most).
fn runs_for(size: usize) -> usize {
    match std::env::var("TANDEM_BENCH_FILES_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if n > 0 => n,
        _ if size <= MB => 15,
        _ => 3,
    }
}

#[tokio::main]
async fn main() {
    let s3 = s3_from_env();
    if s3.is_none() {
        eprintln!("TANDEM_TEST_S3_URL is not set: measuring the directory backend only");
    }
    let http = reqwest::Client::new();
    let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
    let mut phase_rows: Vec<(String, String, Phases)> = Vec::new();
    let mut seed = 1;
    let only: Option<Vec<String>> = std::env::var("TANDEM_BENCH_FILES_SIZES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let sizes = [("1 MB", MB), ("16 MB", 16 * MB), ("100 MB", 100 * MB)];
    let dir = start_control(None, "checksum", 0, false).await;
    let defaults = ControlConfig::for_tests("sqlite://:memory:");
    let (through, parts) = (
        defaults.s3_through_control_bytes,
        defaults.s3_parts_through_control,
    );
    let s3_control = match &s3 {
        Some(s3) => Some((
            start_control(Some(s3), "checksum", through, parts).await,
            start_control(Some(s3), "checksum", 0, false).await,
            start_control(Some(s3), "readback", 0, false).await,
        )),
        None => None,
    };
    // One path after the other within each round, so a change in the
    // machine's load meets every path alike.
    enum Path<'a> {
        Tandem(&'a Control),
        Direct { checksum: bool, sign_length: bool },
    }
    let mut paths: Vec<(&str, Path)> = vec![("tandem dir", Path::Tandem(&dir))];
    if let Some((default, checksum, readback)) = &s3_control {
        paths.push(("tandem s3 (default)", Path::Tandem(default)));
        paths.push(("tandem s3 presigned", Path::Tandem(checksum)));
        paths.push(("tandem s3 readback", Path::Tandem(readback)));
        let direct = |checksum, sign_length| Path::Direct {
            checksum,
            sign_length,
        };
        paths.push(("direct S3 (ceiling)", direct(false, false)));
        paths.push(("direct S3 + sha256", direct(true, false)));
        paths.push(("direct S3 + sha256+len", direct(true, true)));
    }
    for (label, size) in sizes {
        if only.as_ref().is_some_and(|o| {
            !o.iter()
                .any(|s| s.replace(' ', "") == label.replace(' ', ""))
        }) {
            continue;
        }
        let runs = runs_for(size);
        let mut ups = vec![Vec::new(); paths.len()];
        let mut downs = vec![Vec::new(); paths.len()];
        let mut phases = vec![Vec::<Phases>::new(); paths.len()];
        for round in 0..runs {
            for (i, (_, path)) in paths.iter().enumerate() {
                seed += 1;
                let data = random_bytes(size, seed);
                let (up, down) = match path {
                    Path::Tandem(c) => {
                        let (id, up, p) = tandem_upload(&http, c, &data).await;
                        phases[i].push(p);
                        (up, tandem_download(&http, c, &id, size).await)
                    }
                    Path::Direct {
                        checksum,
                        sign_length,
                    } => {
                        let s3 = s3.as_ref().unwrap();
                        let key = format!("bench/direct-{seed}-{round}");
                        direct(&http, s3, &data, &key, *checksum, *sign_length).await
                    }
                };
                ups[i].push(size as f64 / MB as f64 / up);
                downs[i].push(size as f64 / MB as f64 / down);
            }
        }
        for (i, (name, _)) in paths.iter().enumerate() {
            rows.push((
                label.into(),
                name.to_string(),
                median(ups[i].clone()),
                median(downs[i].clone()),
            ));
            if !phases[i].is_empty() {
                let med = |f: fn(&Phases) -> f64| median(phases[i].iter().map(f).collect());
                phase_rows.push((
                    label.into(),
                    name.to_string(),
                    Phases {
                        hash: med(|p| p.hash),
                        intent: med(|p| p.intent),
                        send: med(|p| p.send),
                        complete: med(|p| p.complete),
                    },
                ));
            }
        }
    }
    println!(
        "{:<8} {:<22} {:>14} {:>16}",
        "file", "path", "upload MB/s", "download MB/s"
    );
    for (size, path, up, down) in &rows {
        println!("{size:<8} {path:<22} {up:>14.1} {down:>16.1}");
    }
    println!();
    println!(
        "{:<8} {:<22} {:>9} {:>9} {:>9} {:>9}   (upload steps, ms, medians)",
        "file", "path", "sha256", "intent", "send", "complete"
    );
    for (size, path, p) in &phase_rows {
        println!(
            "{size:<8} {path:<22} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            p.hash * 1e3,
            p.intent * 1e3,
            p.send * 1e3,
            p.complete * 1e3
        );
    }
    let json: Vec<Value> = rows
        .iter()
        .map(|(s, p, u, d)| json!({"size": s, "path": p, "uploadMBps": u, "downloadMBps": d}))
        .collect();
    let steps: Vec<Value> = phase_rows
        .iter()
        .map(|(s, p, ph)| json!({"size": s, "path": p, "sha256Ms": ph.hash * 1e3, "intentMs": ph.intent * 1e3, "sendMs": ph.send * 1e3, "completeMs": ph.complete * 1e3}))
        .collect();
    println!(
        "{}",
        json!({"bench": "files", "results": json, "uploadSteps": steps})
    );
}
