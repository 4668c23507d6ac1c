//! What every server-sent event stream of control shares (conversations,
//! workspaces, sync): the resume point a client asks for, the per-user slot,
//! the spawned pump feeding a bounded channel, the `text/event-stream`
//! response, and the wait between two reads with its keepalive comments.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;
use crate::streams::{Pollers, Seen, StreamSlot};

/// A stream re-reads (and re-checks access) at least this often, for access
/// changes made through other replicas.
pub const RECHECK: Duration = Duration::from_secs(15);

/// Where a stream resumes: `Last-Event-ID` (a seq number, else 400), or
/// else `?after=` when it is not negative; `None` starts afresh.
pub fn resume_point(req: &HttpRequest, after: Option<i64>) -> Result<Option<i64>, ApiError> {
    let header = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be a seq number".into()))
        })
        .transpose()?;
    Ok(header.or(after.filter(|n| *n >= 0)))
}

/// Opens a stream for `user_id`: takes one of their
/// `TANDEM_MAX_STREAMS_PER_USER` slots (429 when all are held), spawns
/// `pump` with the sending half of a channel of `buffer` frames and the
/// slot (given back when the pump ends), and answers with the stream.
pub fn open<F, Fut>(
    state: &AppState,
    user_id: &str,
    buffer: usize,
    pump: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(mpsc::Sender<Bytes>, StreamSlot) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max = state.config.max_streams_per_user;
    let slot = state.stream_slots.take(user_id, max).ok_or_else(|| {
        ApiError::TooMany(format!(
            "at most {max} open event streams per user; close one first"
        ))
    })?;
    let (tx, rx) = mpsc::channel::<Bytes>(buffer);
    tokio::spawn(pump(tx, slot));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Counts an open stream in `gauge` for as long as it lives.
pub struct Counted(Gauge);

impl Counted {
    pub fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Sends a keepalive comment; `false` when the client is gone.
pub async fn keepalive(tx: &mpsc::Sender<Bytes>, last_sent: &mut Instant) -> bool {
    if tx
        .send(Bytes::from_static(b": keepalive\n\n"))
        .await
        .is_err()
    {
        return false;
    }
    *last_sent = Instant::now();
    true
}

/// Waits until `id` moved (its poll loop in `pollers` says so), access
/// changed on this replica (`access`), or [`RECHECK`] passed since this
/// call, sending a keepalive comment after each `TANDEM_CHAT_KEEPALIVE_MS`
/// of silence (which is also how a client that went away is noticed).
/// `false`: stop the stream.
pub async fn wait(
    state: &Arc<AppState>,
    pollers: &Pollers,
    id: &str,
    tx: &mpsc::Sender<Bytes>,
    moved: &mut watch::Receiver<Seen>,
    access: impl Future<Output = ()>,
    last_sent: &mut Instant,
) -> bool {
    let every = Duration::from_millis(state.config.chat_keepalive_ms.max(10));
    let read_at = Instant::now();
    tokio::pin!(access);
    loop {
        tokio::select! {
            changed = moved.changed() => {
                if changed.is_err() {
                    // Its loop ended (shutting down): watch anew.
                    *moved = pollers.watch(state, id);
                }
                return true;
            }
            _ = &mut access => return true,
            _ = tokio::time::sleep_until(read_at + RECHECK) => return true,
            _ = tokio::time::sleep_until(*last_sent + every) => {
                if !keepalive(tx, last_sent).await {
                    return false;
                }
            }
            _ = tx.closed() => return false,
            _ = state.shutdown.cancelled() => return false,
        }
    }
}
