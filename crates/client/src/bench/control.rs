//! Load on control's relay-facing endpoints at a fixed offered rate (open
//! loop: requests are issued on schedule whether or not earlier ones have
//! answered, and latency counts from the scheduled time, so a stall shows up
//! as latency instead of hiding as a lower rate).
//!
//! - `verify`: `POST /collaboration/verify`, each with its own one-time token
//!   (all created before the timed phase);
//! - `verify-batch`: the same tokens through `POST /collaboration/verify-batch`,
//!   the tokens scheduled within each millisecond in one call (as a relay
//!   coalesces concurrent connects); the rate, errors and latency count
//!   tokens, each from its own scheduled time;
//! - `check-access`: `GET /collaboration/check-access?roomId&userId` with the
//!   relay secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tandem_protocol::collab::{
    VerifyBatchItem, VerifyBatchRequest, VerifyBatchResponse, VerifyOutcome, VerifyRequest,
    MAX_VERIFY_BATCH, RELAY_SECRET_HEADER,
};
use tandem_protocol::http::WorkspaceType;
use tandem_protocol::ResourceType;
use tokio::sync::Semaphore;

use super::stats::{summarize_us, us_sample, Percentiles};
use crate::api::ControlApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    Verify,
    VerifyBatch,
    CheckAccess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlReport {
    pub endpoint: Endpoint,
    /// A label for the database (`sqlite`, `postgres`).
    pub database: String,
    pub offered_per_sec: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Requests not issued because `max_in_flight` were already waiting.
    pub shed: u64,
    pub achieved_per_sec: f64,
    pub latency_ms: Percentiles,
}

impl ControlReport {
    pub fn line(&self) -> String {
        let l = &self.latency_ms;
        format!(
            "{:<13} {:<9} offered {:>6.0}/s  achieved {:>7.1}/s  ok {:>6}  errors {:>4}  shed {:>4}  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            match self.endpoint {
                Endpoint::Verify => "verify",
                Endpoint::VerifyBatch => "verify-batch",
                Endpoint::CheckAccess => "check-access",
            },
            self.database,
            self.offered_per_sec,
            self.achieved_per_sec,
            self.ok,
            self.errors,
            self.shed,
            l.p50,
            l.p95,
            l.p99,
            l.max
        )
    }
}

pub struct ControlLoad {
    pub control: String,
    pub relay_secret: String,
    pub endpoint: Endpoint,
    pub rate: f64,
    pub duration: Duration,
    pub max_in_flight: usize,
    pub database: String,
}

/// Sets up a user and a document, then offers `rate` requests per second for `duration`.
pub async fn run(load: &ControlLoad) -> anyhow::Result<ControlReport> {
    let base = load.control.trim_end_matches('/').to_string();
    let api = ControlApi::new(&base);
    let email = format!("bench-{}@bench.tandem.dev", super::target::run_id());
    let session = api
        .signup(&email, "bench-password-1", "Bench")
        .await
        .map_err(|e| anyhow::anyhow!("signup: {e}"))?;
    let project = api
        .project_in(&session, WorkspaceType::Personal, "control bench")
        .await
        .map_err(|e| anyhow::anyhow!("project: {e}"))?;
    let doc = api
        .create_resource(&session, &project.id, ResourceType::Doc, "d")
        .await
        .map_err(|e| anyhow::anyhow!("document: {e}"))?;
    let room = format!("doc-{}", doc.id);
    let total = (load.rate * load.duration.as_secs_f64()).ceil().max(1.0) as usize;
    let tokens: Vec<String> = match load.endpoint {
        Endpoint::Verify | Endpoint::VerifyBatch => {
            stream::iter(0..total)
                .map(|_| {
                    let (api, session, doc) = (&api, &session, &doc.id);
                    async move {
                        api.collab_token(session, ResourceType::Doc, doc)
                            .await
                            .map(|t| t.token)
                            .map_err(|e| anyhow::anyhow!("token: {e}"))
                    }
                })
                .buffered(16)
                .try_collect()
                .await?
        }
        Endpoint::CheckAccess => Vec::new(),
    };
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(load.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    if load.endpoint == Endpoint::VerifyBatch {
        return run_batched(load, &base, &http, &room, tokens).await;
    }
    let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / load.rate.max(0.001));
    let started = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(total);
    let mut shed = 0u64;
    let secret = Arc::new(load.relay_secret.clone());
    for i in 0..total {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shed += 1;
            continue;
        };
        let req = match load.endpoint {
            Endpoint::Verify | Endpoint::VerifyBatch => http
                .post(format!("{base}/collaboration/verify"))
                .bearer_auth(tokens.get(i).map(String::as_str).unwrap_or_default())
                .header(RELAY_SECRET_HEADER, secret.as_str())
                .json(&VerifyRequest {
                    room_id: room.clone(),
                }),
            Endpoint::CheckAccess => http
                .get(format!("{base}/collaboration/check-access"))
                .query(&[
                    ("roomId", room.as_str()),
                    ("userId", session.user_id.as_str()),
                ])
                .bearer_auth(secret.as_str()),
        };
        let scheduled = Instant::now() - at.elapsed();
        handles.push(tokio::spawn(async move {
            let ok = match req.send().await {
                Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                Err(_) => false,
            };
            drop(permit);
            (ok, us_sample(scheduled.elapsed().as_micros() as u64))
        }));
    }
    let mut latencies = Vec::with_capacity(handles.len());
    let (mut ok, mut errors) = (0u64, 0u64);
    for h in handles {
        match h.await {
            Ok((true, us)) => {
                ok += 1;
                latencies.push(us);
            }
            _ => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ControlReport {
        endpoint: load.endpoint,
        database: load.database.clone(),
        offered_per_sec: load.rate,
        requests: total as u64,
        ok,
        errors,
        shed,
        achieved_per_sec: ok as f64 / elapsed.max(1e-9),
        latency_ms: summarize_us(&mut latencies),
    })
}

/// How long the batched verify gathers scheduled tokens into one call.
const BATCH_TICK: Duration = Duration::from_millis(1);

/// `verify-batch`: every [`BATCH_TICK`], one call with the tokens scheduled in it.
async fn run_batched(
    load: &ControlLoad,
    base: &str,
    http: &reqwest::Client,
    room: &str,
    tokens: Vec<String>,
) -> anyhow::Result<ControlReport> {
    let total = tokens.len();
    let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / load.rate.max(0.001));
    let started = tokio::time::Instant::now();
    let mut handles = Vec::new();
    let mut shed = 0u64;
    let mut next = 0usize;
    let mut tick = started;
    while next < total {
        tick += BATCH_TICK;
        tokio::time::sleep_until(tick).await;
        let mut batch = Vec::new();
        while next < total
            && batch.len() < MAX_VERIFY_BATCH
            && started + interval.mul_f64(next as f64) <= tick
        {
            batch.push((next, started + interval.mul_f64(next as f64)));
            next += 1;
        }
        if batch.is_empty() {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shed += batch.len() as u64;
            continue;
        };
        let items = batch
            .iter()
            .map(|(i, _)| VerifyBatchItem {
                token: tokens[*i].clone(),
                room_id: room.to_string(),
            })
            .collect();
        let req = http
            .post(format!("{base}/collaboration/verify-batch"))
            .bearer_auth(&load.relay_secret)
            .json(&VerifyBatchRequest { items });
        let scheduled: Vec<Instant> = batch
            .iter()
            .map(|(_, at)| Instant::now() - at.elapsed())
            .collect();
        handles.push(tokio::spawn(async move {
            let verified: Vec<bool> = match req.send().await {
                Ok(res) if res.status().is_success() => {
                    match res.json::<VerifyBatchResponse>().await {
                        Ok(r) => r
                            .results
                            .iter()
                            .map(|o| matches!(o, VerifyOutcome::Verified { .. }))
                            .collect(),
                        Err(_) => Vec::new(),
                    }
                }
                _ => Vec::new(),
            };
            drop(permit);
            scheduled
                .iter()
                .enumerate()
                .map(|(k, at)| {
                    (
                        verified.get(k).copied().unwrap_or(false),
                        us_sample(at.elapsed().as_micros() as u64),
                    )
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let (mut ok, mut errors) = (0u64, 0u64);
    for h in handles {
        match h.await {
            Ok(answers) => {
                for (verified, us) in answers {
                    if verified {
                        ok += 1;
                        latencies.push(us);
                    } else {
                        errors += 1;
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ControlReport {
        endpoint: load.endpoint,
        database: load.database.clone(),
        offered_per_sec: load.rate,
        requests: total as u64,
        ok,
        errors,
        shed,
        achieved_per_sec: ok as f64 / elapsed.max(1e-9),
        latency_ms: summarize_us(&mut latencies),
    })
}
