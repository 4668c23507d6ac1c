//! The relay's client for control's relay-facing endpoints. Every call has a
//! timeout; a failure is reported as [`ControlError::Unavailable`] so callers
//! can fail open (re-checks) or answer 503 (connects).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_protocol::collab::{
    AccessEvents, CheckAccessBatchRequest, CheckAccessBatchResponse, UserAccess, VerifyBatchItem,
    VerifyBatchRequest, VerifyBatchResponse, VerifyOutcome, VerifyRequest, VerifyResponse,
    MAX_BATCH_USERS, MAX_DOCUMENT_BYTES_HEADER, MAX_VERIFY_BATCH, RELAY_SECRET_HEADER,
};
use tandem_protocol::RoomId;
use tokio::sync::{mpsc, oneshot, Notify};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Control answered 401/403: the token or the secret is refused.
    #[error("refused by control ({0})")]
    Refused(u16),
    /// Control answered 400 or 422.
    #[error("control says the request is malformed")]
    BadRequest,
    /// Control answered 413: the document is past what it stores.
    #[error("control refused the document as too large")]
    TooLarge,
    /// Control is down, slow, or answered something unexpected.
    #[error("control unavailable: {0}")]
    Unavailable(String),
}

impl ControlError {
    /// The same error again, for every connect of a batch that failed as a whole.
    fn again(&self) -> ControlError {
        match self {
            ControlError::Refused(s) => ControlError::Refused(*s),
            ControlError::BadRequest => ControlError::BadRequest,
            ControlError::TooLarge => ControlError::TooLarge,
            ControlError::Unavailable(why) => ControlError::Unavailable(why.clone()),
        }
    }
}

fn unavailable(e: reqwest::Error) -> ControlError {
    ControlError::Unavailable(e.to_string())
}

/// A room's stored state, as loaded.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub state: bytes::Bytes,
    /// [`MAX_DOCUMENT_BYTES_HEADER`], when control sent it.
    pub max_document_bytes: Option<usize>,
}

/// Most room saves one relay node has in flight to control at once. A burst
/// of dirty rooms (a thousand rooms edited in the same second, a drain) waits
/// here for a turn instead of opening a connection to control per room, which
/// would cost control a connection each and the relay an HTTP connection's
/// buffers each for as long as the pool keeps it.
pub const SAVES_IN_FLIGHT: usize = 16;
/// Idle connections to control the relay keeps for reuse.
const IDLE_CONNECTIONS: usize = 32;

#[derive(Clone)]
pub struct ControlClient {
    base: String,
    secret: String,
    http: reqwest::Client,
    /// Turns for saves ([`SAVES_IN_FLIGHT`]).
    saves: Arc<tokio::sync::Semaphore>,
    /// Where [`ControlClient::verify`] queues its token when verifies are
    /// batched ([`ControlClient::with_verify_batching`]).
    batcher: Option<mpsc::UnboundedSender<PendingVerify>>,
}

/// How the relay coalesces the verifies of concurrent connects into
/// `POST /collaboration/verify-batch` calls (`TANDEM_VERIFY_BATCH_MAX`,
/// `TANDEM_VERIFY_BATCH_WINDOW_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyBatching {
    /// Most tokens per call (capped at [`MAX_VERIFY_BATCH`]); 1 turns batching off.
    pub max: usize,
    /// Longest a token waits for others while a call to control is already
    /// in flight. A token that finds no call in flight goes at once (alone,
    /// through `/collaboration/verify`, or with the tokens queued behind it),
    /// so batching adds no wait to a connect on a quiet relay.
    pub window: Duration,
}

/// One connect waiting for its token's answer.
struct PendingVerify {
    token: String,
    room: RoomId,
    reply: oneshot::Sender<Result<VerifyResponse, ControlError>>,
}

impl ControlClient {
    pub fn new(base: &str, secret: &str) -> anyhow::Result<ControlClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .build()?;
        Ok(ControlClient {
            base: base.trim_end_matches('/').to_string(),
            secret: secret.to_string(),
            http,
            saves: Arc::new(tokio::sync::Semaphore::new(SAVES_IN_FLIGHT)),
            batcher: None,
        })
    }

    /// Batches concurrent verifies (see [`VerifyBatching`]); must be called
    /// inside the runtime (it starts the task that gathers the tokens, which
    /// ends when the last clone of this client is dropped).
    pub fn with_verify_batching(mut self, batching: VerifyBatching) -> ControlClient {
        let max = batching.max.min(MAX_VERIFY_BATCH);
        if max <= 1 {
            self.batcher = None;
            return self;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let plain = ControlClient {
            batcher: None,
            ..self.clone()
        };
        tokio::spawn(gather_verifies(plain, rx, max, batching.window));
        self.batcher = Some(tx);
        self
    }

    /// Sends a request; any answer but 2xx becomes the matching error.
    async fn answer(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ControlError> {
        let res = req.send().await.map_err(unavailable)?;
        match res.status().as_u16() {
            200..=299 => Ok(res),
            400 | 422 => Err(ControlError::BadRequest),
            413 => Err(ControlError::TooLarge),
            s @ (401 | 403 | 404) => Err(ControlError::Refused(s)),
            s => Err(ControlError::Unavailable(format!("status {s}"))),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ControlError> {
        self.answer(req).await?.json().await.map_err(unavailable)
    }

    /// Consumes a one-time collaboration token for `room`: on its own, or
    /// with the tokens of concurrent connects when batching is on.
    pub async fn verify(&self, token: &str, room: &RoomId) -> Result<VerifyResponse, ControlError> {
        let Some(batcher) = &self.batcher else {
            return self.verify_one(token, room).await;
        };
        let (reply, answer) = oneshot::channel();
        let pending = PendingVerify {
            token: token.to_string(),
            room: room.clone(),
            reply,
        };
        if batcher.send(pending).is_err() {
            return self.verify_one(token, room).await;
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ControlError::Unavailable("verify batch dropped".into())))
    }

    /// `POST /collaboration/verify`: one token.
    async fn verify_one(&self, token: &str, room: &RoomId) -> Result<VerifyResponse, ControlError> {
        let req = self
            .http
            .post(format!("{}/collaboration/verify", self.base))
            .bearer_auth(token)
            .header(RELAY_SECRET_HEADER, &self.secret)
            .json(&VerifyRequest {
                room_id: room.to_string(),
            });
        self.send(req).await
    }

    /// `POST /collaboration/verify-batch`: the answers in the order of `items`.
    async fn verify_batch(
        &self,
        items: Vec<VerifyBatchItem>,
    ) -> Result<Vec<VerifyOutcome>, ControlError> {
        let expected = items.len();
        let req = self
            .http
            .post(format!("{}/collaboration/verify-batch", self.base))
            .bearer_auth(&self.secret)
            .json(&VerifyBatchRequest { items });
        let res: VerifyBatchResponse = self.send(req).await?;
        if res.results.len() != expected {
            return Err(ControlError::Unavailable(format!(
                "verify-batch answered {} results for {expected} tokens",
                res.results.len()
            )));
        }
        Ok(res.results)
    }

    /// Access of many users to one room (in batches of at most `MAX_BATCH_USERS`).
    pub async fn check_access(
        &self,
        room: &RoomId,
        user_ids: &[String],
    ) -> Result<Vec<UserAccess>, ControlError> {
        let mut out = Vec::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(MAX_BATCH_USERS) {
            let req = self
                .http
                .post(format!("{}/collaboration/check-access", self.base))
                .bearer_auth(&self.secret)
                .json(&CheckAccessBatchRequest {
                    room_id: room.to_string(),
                    user_ids: chunk.to_vec(),
                });
            let res: CheckAccessBatchResponse = self.send(req).await?;
            out.extend(res.results);
        }
        Ok(out)
    }

    /// Access changes after `after` (long poll up to `wait`); `None` asks for
    /// the current cursor only.
    pub async fn events(
        &self,
        after: Option<i64>,
        wait: Duration,
    ) -> Result<AccessEvents, ControlError> {
        let mut url = format!("{}/collaboration/events", self.base);
        if let Some(after) = after {
            url.push_str(&format!("?after={after}&timeoutMs={}", wait.as_millis()));
        }
        let req = self
            .http
            .get(url)
            .timeout(wait + Duration::from_secs(10))
            .bearer_auth(&self.secret);
        self.send(req).await
    }

    /// The stored state of a room (empty when nothing was saved), and the
    /// largest document control stores when it says; `Refused(404)` when the
    /// room's resource no longer exists.
    pub async fn load_snapshot(&self, room: &RoomId) -> Result<Loaded, ControlError> {
        let req = self
            .http
            .get(format!("{}/collaboration/rooms/{room}/snapshot", self.base))
            .timeout(Duration::from_secs(60))
            .bearer_auth(&self.secret);
        let res = self.answer(req).await?;
        let max_document_bytes = res
            .headers()
            .get(MAX_DOCUMENT_BYTES_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let state = res.bytes().await.map_err(unavailable)?;
        Ok(Loaded {
            state,
            max_document_bytes,
        })
    }

    /// Merges `update` into the room's stored state.
    pub async fn save_snapshot(&self, room: &RoomId, update: Vec<u8>) -> Result<(), ControlError> {
        let _turn = self
            .saves
            .acquire()
            .await
            .map_err(|_| ControlError::Unavailable("saves closed".into()))?;
        let req = self
            .http
            .post(format!("{}/collaboration/rooms/{room}/snapshot", self.base))
            .timeout(Duration::from_secs(60))
            .bearer_auth(&self.secret)
            .header("content-type", "application/octet-stream")
            .body(update);
        self.answer(req).await.map(|_| ())
    }

    /// Whether control answers `/readyz`.
    pub async fn ready(&self) -> bool {
        let res = self.http.get(format!("{}/readyz", self.base)).send().await;
        res.is_ok_and(|r| r.status().is_success())
    }
}

/// Gathers queued verifies into batches: a batch leaves when no call to
/// control is in flight, when `window` has passed since its first token
/// arrived, or when it holds `max` tokens. Runs until every sender is gone.
async fn gather_verifies(
    control: ControlClient,
    mut queue: mpsc::UnboundedReceiver<PendingVerify>,
    max: usize,
    window: Duration,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let landed = Arc::new(Notify::new());
    // Set when control does not know `/collaboration/verify-batch` (an older
    // control during a rolling upgrade): tokens then go one by one.
    let singles = Arc::new(AtomicBool::new(false));
    while let Some(first) = queue.recv().await {
        let deadline = tokio::time::Instant::now() + window;
        let mut batch = vec![first];
        while batch.len() < max {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        while batch.len() < max && in_flight.load(Ordering::Acquire) > 0 {
            tokio::select! {
                next = queue.recv() => match next {
                    Some(p) => batch.push(p),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                // A spurious wake (a permit left by an earlier landing) only
                // re-checks the loop's condition.
                _ = landed.notified() => {}
            }
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (control, in_flight, landed, singles) = (
            control.clone(),
            in_flight.clone(),
            landed.clone(),
            singles.clone(),
        );
        tokio::spawn(async move {
            send_verifies(&control, batch, &singles).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            landed.notify_one();
        });
    }
}

/// Verifies `batch` and answers each waiting connect.
async fn send_verifies(control: &ControlClient, batch: Vec<PendingVerify>, singles: &AtomicBool) {
    if batch.len() == 1 || singles.load(Ordering::Relaxed) {
        let answers = batch.iter().map(|p| control.verify_one(&p.token, &p.room));
        let answers = futures_util::future::join_all(answers).await;
        for (p, answer) in batch.into_iter().zip(answers) {
            let _ = p.reply.send(answer);
        }
        return;
    }
    let items = batch
        .iter()
        .map(|p| VerifyBatchItem {
            token: p.token.clone(),
            room_id: p.room.to_string(),
        })
        .collect();
    match control.verify_batch(items).await {
        Ok(outcomes) => {
            for (p, outcome) in batch.into_iter().zip(outcomes) {
                let answer = match outcome {
                    VerifyOutcome::Verified {
                        user_id,
                        user_name,
                        role,
                    } => Ok(VerifyResponse {
                        user_id,
                        user_name,
                        role,
                    }),
                    VerifyOutcome::Refused => Err(ControlError::Refused(403)),
                    VerifyOutcome::Invalid { .. } => Err(ControlError::BadRequest),
                };
                let _ = p.reply.send(answer);
            }
        }
        // Not a route of this control (nothing was consumed): one by one from now on.
        Err(ControlError::Refused(404)) => {
            tracing::warn!(
                "control has no /collaboration/verify-batch; verifying tokens one by one"
            );
            singles.store(true, Ordering::Relaxed);
            Box::pin(send_verifies(control, batch, singles)).await;
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.again()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// A stand-in for control's snapshot endpoint on a real socket: holds
    /// each request a moment and records the most it served at once.
    async fn slow_control(most: Arc<AtomicUsize>, served: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (now, most, served) = (now.clone(), most.clone(), served.clone());
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap();
                                }
                            }
                        }
                        let mut body = vec![0; len];
                        socket.read_exact(&mut body).await.unwrap();
                        let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(at_once, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if socket.get_mut().write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_saves_takes_turns() {
        let (most, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let url = slow_control(most.clone(), served.clone()).await;
        let client = ControlClient::new(&url, "secret").unwrap();
        let saves: Vec<_> = (0..SAVES_IN_FLIGHT * 4)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let room = RoomId::parse(&format!("doc-{i}")).unwrap();
                    client.save_snapshot(&room, vec![1, 2, 3]).await
                })
            })
            .collect();
        for save in saves {
            save.await.unwrap().unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), SAVES_IN_FLIGHT * 4);
        let most = most.load(Ordering::SeqCst);
        assert!(
            (2..=SAVES_IN_FLIGHT).contains(&most),
            "{most} saves at once (at most {SAVES_IN_FLIGHT}, and more than one)"
        );
    }
}
