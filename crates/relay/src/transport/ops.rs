//! Health, readiness and metrics (`GET /healthz`, `/readyz`, `/metrics`).
//! They are answered on the client port, and, with `TANDEM_RELAY_OPS_LISTEN`,
//! on a separate address served by a thread and runtime of their own: a
//! probe there is answered even while every worker of the node is busy,
//! and `/metrics` then leaves the public port (404 there).

use std::sync::Arc;

use tandem_protocol::ErrorCode;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::handshake::{self, Head, HttpError};
use crate::control_client::ControlClient;
use crate::server::Shared;

/// An operations endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ops {
    Health,
    Ready,
    Metrics,
}

impl Ops {
    pub fn of_path(path: &str) -> Option<Ops> {
        match path {
            "/healthz" => Some(Ops::Health),
            "/readyz" => Some(Ops::Ready),
            "/metrics" => Some(Ops::Metrics),
            _ => None,
        }
    }
}

/// Connections the ops address serves at once; more wait to be accepted.
const OPS_CONNECTIONS: usize = 64;

/// How long a readiness answer is reused.
pub const READY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether control answers, asked at most once per [`READY_TTL`] whatever
/// the number of `/readyz` probes (the client port's are anyone's): one
/// probe asks while the others wait for its answer.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl Readiness {
    pub async fn check(&self, control: &ControlClient) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last {
            if at.elapsed() < READY_TTL {
                return ready;
            }
        }
        let ready = control.ready().await;
        *last = Some((std::time::Instant::now(), ready));
        ready
    }
}

/// The 503 of `/readyz` and of a connect while the node drains.
pub fn draining() -> HttpError {
    HttpError::new(503, ErrorCode::Unavailable, "relay is draining")
}

/// The 503 of `/readyz` and of a connect while control is away.
pub fn unreachable_control() -> HttpError {
    HttpError::new(503, ErrorCode::Unavailable, "control is unreachable")
}

/// Compares secrets without an early exit on the first differing byte.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of `head`, if any.
pub fn bearer(head: &Head) -> Option<&str> {
    head.authorization
        .as_deref()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Where an ops request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// The client port (`TANDEM_RELAY_LISTEN`).
    Client,
    /// `TANDEM_RELAY_OPS_LISTEN`.
    Ops,
}

/// Answers `route`, arrived at `address`, on `stream` (`control` answers
/// readiness). With an ops address, `/metrics` is served there only.
pub async fn answer(
    stream: &mut TcpStream,
    (route, address): (Ops, Address),
    head: &Head,
    shared: &Shared,
    control: &ControlClient,
) {
    let elsewhere = address == Address::Client && shared.config.ops_listen.is_some();
    match route {
        Ops::Metrics if elsewhere => {
            HttpError::new(
                404,
                ErrorCode::NotFound,
                "metrics are served on the ops address",
            )
            .write_to(stream)
            .await
        }
        Ops::Health => handshake::respond(stream, 200, r#"{"status":"ok"}"#).await,
        Ops::Ready if shared.hub.is_draining() => draining().write_to(stream).await,
        Ops::Ready if shared.readiness.check(control).await => {
            handshake::respond(stream, 200, r#"{"status":"ready"}"#).await
        }
        Ops::Ready => unreachable_control().write_to(stream).await,
        Ops::Metrics => {
            let wanted = shared
                .config
                .metrics_token
                .as_deref()
                .filter(|t| !t.is_empty());
            if let Some(token) = wanted {
                if !bearer(head).is_some_and(|given| same_secret(given, token)) {
                    return HttpError::new(
                        401,
                        ErrorCode::Unauthorized,
                        "the metrics token is required",
                    )
                    .write_to(stream)
                    .await;
                }
            }
            let body = shared.metrics.encode();
            let ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            handshake::respond_with(stream, 200, ctype, &body).await
        }
    }
}

/// Serves the ops endpoints on `listener` from a thread of its own until
/// `stop` is cancelled. Readiness asks control through a client of its own.
pub fn start(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let secret = shared.config.relay_secret.clone().unwrap_or_default();
    let control = ControlClient::new(&shared.config.control_url, &secret)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("relay-ops".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    tracing::error!("the ops address cannot be served");
                    return;
                };
                let turns = Arc::new(Semaphore::new(OPS_CONNECTIONS));
                loop {
                    let Ok(turn) = turns.clone().acquire_owned().await else {
                        return;
                    };
                    let accepted = tokio::select! {
                        _ = stop.cancelled() => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((stream, _)) = accepted else {
                        continue;
                    };
                    let (shared, control) = (shared.clone(), control.clone());
                    tokio::spawn(async move {
                        serve(stream, &shared, &control).await;
                        drop(turn);
                    });
                }
            })
        })?;
    Ok(())
}

/// One request on the ops address.
async fn serve(mut stream: TcpStream, shared: &Shared, control: &ControlClient) {
    let _ = stream.set_nodelay(true);
    let head = match handshake::read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => return e.write_to(&mut stream).await,
    };
    if head.method != "GET" {
        return HttpError::new(405, ErrorCode::MethodNotAllowed, "only GET")
            .write_to(&mut stream)
            .await;
    }
    match Ops::of_path(&head.path) {
        Some(route) => answer(&mut stream, (route, Address::Ops), &head, shared, control).await,
        None => {
            HttpError::new(404, ErrorCode::NotFound, "not an ops endpoint")
                .write_to(&mut stream)
                .await
        }
    }
}
