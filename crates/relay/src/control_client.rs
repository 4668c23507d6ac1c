//! The relay's client for control's relay-facing endpoints. Every call has a
//! timeout; a failure is reported as [`ControlError::Unavailable`] so callers
//! can fail open (re-checks) or answer 503 (connects).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_protocol::collab::{
    AccessBatchItem, AccessBatchRequest, AccessEvents, CheckAccessBatchRequest,
    CheckAccessBatchResponse, CheckAccessResponse, UserAccess, VerifyBatchItem, VerifyBatchRequest,
    VerifyOutcome, VerifyRequest, VerifyResponse, MAX_ACCESS_BATCH, MAX_BATCH_USERS,
    MAX_DOCUMENT_BYTES_HEADER, MAX_VERIFY_BATCH, RELAY_SECRET_HEADER,
};
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;
use tokio::sync::{mpsc, oneshot, Notify};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Control answered 403 or 404: the token or the access is refused (a
    /// 401, the relay's secret refused, is `Unavailable`).
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
    /// batched ([`ControlClient::with_batching`]).
    verifies: Option<mpsc::UnboundedSender<Pending<VerifyBatchItem>>>,
    /// Where [`ControlClient::access`] queues its check, likewise.
    access_checks: Option<mpsc::UnboundedSender<Pending<AccessBatchItem>>>,
}

/// How the relay coalesces the verifies of concurrent connects into
/// `POST /collaboration/verify-batch` calls, and the access checks of
/// concurrent resume-ticket joins into `POST /collaboration/check-access-batch`
/// calls (`TANDEM_VERIFY_BATCH_MAX`, `TANDEM_VERIFY_BATCH_WINDOW_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyBatching {
    /// Most tokens (or access checks) per call (capped at [`MAX_VERIFY_BATCH`]
    /// and [`MAX_ACCESS_BATCH`]); 1 turns batching off.
    pub max: usize,
    /// Longest a token waits for others while a call to control is already
    /// in flight. A token that finds no call in flight goes at once (alone,
    /// through `/collaboration/verify`, or with the tokens queued behind it),
    /// so batching adds no wait to a connect on a quiet relay.
    pub window: Duration,
}

/// A request waiting in a batch (a token to verify, an access to check),
/// and where its answer goes.
struct Pending<I: Batched> {
    item: I,
    reply: oneshot::Sender<Result<I::Answer, ControlError>>,
}

/// What the relay asks control in batches: each item on its own, or many in
/// one call answered per item in order.
trait Batched: Clone + Send + Sync + 'static {
    type Answer: Send + 'static;
    /// The batch route, for the log line when control lacks it.
    const ROUTE: &'static str;
    /// Most items per call.
    const MAX: usize;
    fn one(
        &self,
        control: &ControlClient,
    ) -> impl std::future::Future<Output = Result<Self::Answer, ControlError>> + Send;
    /// The answers in the order of `items`; `Err(Refused(404))` when control
    /// does not know the route (nothing was done).
    fn many(
        control: &ControlClient,
        items: Vec<Self>,
    ) -> impl std::future::Future<
        Output = Result<Vec<Result<Self::Answer, ControlError>>, ControlError>,
    > + Send;
}

impl Batched for VerifyBatchItem {
    type Answer = VerifyResponse;
    const ROUTE: &'static str = "/collaboration/verify-batch";
    const MAX: usize = MAX_VERIFY_BATCH;

    /// `POST /collaboration/verify`: one token.
    async fn one(&self, control: &ControlClient) -> Result<VerifyResponse, ControlError> {
        let req = control
            .http
            .post(format!("{}/collaboration/verify", control.base))
            .bearer_auth(&self.token)
            .header(RELAY_SECRET_HEADER, &control.secret)
            .json(&VerifyRequest {
                room_id: self.room_id.clone(),
            });
        control.send(req).await
    }

    async fn many(
        control: &ControlClient,
        items: Vec<Self>,
    ) -> Result<Vec<Result<VerifyResponse, ControlError>>, ControlError> {
        let expected = items.len();
        let results: Vec<VerifyOutcome> = control
            .post_batch(Self::ROUTE, &VerifyBatchRequest { items }, expected)
            .await?;
        Ok(results
            .into_iter()
            .map(|outcome| match outcome {
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
            })
            .collect())
    }
}

impl Batched for AccessBatchItem {
    /// The user's role in the room; `None`: no access.
    type Answer = Option<Role>;
    const ROUTE: &'static str = "/collaboration/check-access-batch";
    const MAX: usize = MAX_ACCESS_BATCH;

    /// `POST /collaboration/check-access` for one user.
    async fn one(&self, control: &ControlClient) -> Result<Option<Role>, ControlError> {
        let results = control
            .check_access(self.room_id.as_str(), std::slice::from_ref(&self.user_id))
            .await?;
        Ok(results
            .into_iter()
            .find(|a| a.user_id == self.user_id && a.has_access)
            .and_then(|a| a.role))
    }

    async fn many(
        control: &ControlClient,
        items: Vec<Self>,
    ) -> Result<Vec<Result<Option<Role>, ControlError>>, ControlError> {
        let expected = items.len();
        let results: Vec<CheckAccessResponse> = control
            .post_batch(Self::ROUTE, &AccessBatchRequest { items }, expected)
            .await?;
        Ok(results
            .into_iter()
            .map(|a| Ok(if a.has_access { a.role } else { None }))
            .collect())
    }
}

/// The body of a batch answer (`VerifyBatchResponse`, `AccessBatchResponse`).
#[derive(serde::Deserialize)]
struct BatchResults<T> {
    results: Vec<T>,
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
            verifies: None,
            access_checks: None,
        })
    }

    /// Batches concurrent verifies and access checks (see [`VerifyBatching`]);
    /// must be called inside the runtime (it starts the tasks that gather
    /// them, which end when the last clone of this client is dropped).
    pub fn with_batching(mut self, batching: VerifyBatching) -> ControlClient {
        self.verifies = None;
        self.access_checks = None;
        if batching.max > 1 {
            let plain = self.clone();
            self.verifies = Some(gatherer(plain.clone(), batching));
            self.access_checks = Some(gatherer(plain, batching));
        }
        self
    }

    /// `item` asked on its own, or queued for the next batch when `queue` is set.
    async fn ask<I: Batched>(
        &self,
        queue: Option<&mpsc::UnboundedSender<Pending<I>>>,
        item: I,
    ) -> Result<I::Answer, ControlError> {
        let Some(queue) = queue else {
            return item.one(self).await;
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(p)) = queue.send(Pending { item, reply }) {
            return p.item.one(self).await;
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ControlError::Unavailable("batch dropped".into())))
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
            // Every route the relay calls takes the relay's secret first: a
            // 401 is this node's configuration, not the user's access.
            401 => {
                // Every connect meets it: said at most once a minute.
                static SAID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let minute = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() / 60 + 1);
                if SAID.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute {
                    tracing::error!(
                        "control refused this relay's secret: TANDEM_RELAY_SECRET must be the same on control and every relay node"
                    );
                }
                Err(ControlError::Unavailable(
                    "control refused the relay's secret".into(),
                ))
            }
            s @ (403 | 404) => Err(ControlError::Refused(s)),
            s => Err(ControlError::Unavailable(format!("status {s}"))),
        }
    }

    /// `POST {route}` (the secret as Bearer) of a batch of `expected` items:
    /// their results, one per item, or the error for all of them.
    async fn post_batch<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
        expected: usize,
    ) -> Result<Vec<T>, ControlError> {
        let req = self
            .http
            .post(format!("{}{route}", self.base))
            .bearer_auth(&self.secret)
            .json(body);
        let res: BatchResults<T> = self.send(req).await?;
        if res.results.len() != expected {
            return Err(ControlError::Unavailable(format!(
                "a batch of {expected} was answered with {} results",
                res.results.len()
            )));
        }
        Ok(res.results)
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
        let item = VerifyBatchItem {
            token: token.to_string(),
            room_id: room.to_string(),
        };
        self.ask(self.verifies.as_ref(), item).await
    }

    /// One user's role in one room (`None`: no access): with the checks of
    /// concurrent ticket joins when batching is on, else on its own.
    pub async fn access(&self, room: &RoomId, user_id: &str) -> Result<Option<Role>, ControlError> {
        let item = AccessBatchItem {
            room_id: room.to_string(),
            user_id: user_id.to_string(),
        };
        self.ask(self.access_checks.as_ref(), item).await
    }

    /// Access of many users to one room (in batches of at most `MAX_BATCH_USERS`).
    pub async fn check_access(
        &self,
        room: &(impl std::fmt::Display + ?Sized),
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

/// Starts gathering queued items into batches of at most `batching.max`
/// (and `I::MAX`): a batch leaves when no call to control is in flight, when
/// `batching.window` has passed since its first item arrived, or when it is
/// full. The task runs until every sender is gone.
fn gatherer<I: Batched>(
    control: ControlClient,
    batching: VerifyBatching,
) -> mpsc::UnboundedSender<Pending<I>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let max = batching.max.min(I::MAX);
    tokio::spawn(gather(control, rx, max, batching.window));
    tx
}

async fn gather<I: Batched>(
    control: ControlClient,
    mut queue: mpsc::UnboundedReceiver<Pending<I>>,
    max: usize,
    window: Duration,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let landed = Arc::new(Notify::new());
    // Set when control does not know the batch route (an older control
    // during a rolling upgrade): items then go one by one.
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
            send_batch(&control, batch, &singles).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            landed.notify_one();
        });
    }
}

/// Asks control about `batch` (in one call when it holds more than one item
/// and control knows the batch route) and answers each waiting caller.
async fn send_batch<I: Batched>(
    control: &ControlClient,
    batch: Vec<Pending<I>>,
    singles: &AtomicBool,
) {
    let together = if batch.len() > 1 && !singles.load(Ordering::Relaxed) {
        let items = batch.iter().map(|p| p.item.clone()).collect();
        match I::many(control, items).await {
            Ok(answers) => Some(answers),
            // Not a route of this control (nothing was done): one by one from now on.
            Err(ControlError::Refused(404)) => {
                tracing::warn!(
                    route = I::ROUTE,
                    "control does not know this batch route; asking one by one"
                );
                singles.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => Some(batch.iter().map(|_| Err(e.again())).collect()),
        }
    } else {
        None
    };
    let answers = match together {
        Some(answers) => answers,
        None => futures_util::future::join_all(batch.iter().map(|p| p.item.one(control))).await,
    };
    for (p, answer) in batch.into_iter().zip(answers) {
        let _ = p.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// How a stand-in control answers one request: its path and body to a
    /// status and a JSON body.
    type Answer = Arc<dyn Fn(&str, &[u8]) -> (u16, String) + Send + Sync>;

    /// A stand-in for control on a real socket: holds each request `hold`,
    /// answers it with `answer`, and records the most it served at once and
    /// every path it served.
    async fn fake_control(
        hold: Duration,
        answer: Answer,
        most: Arc<AtomicUsize>,
        served: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (now, most, served, answer) =
                    (now.clone(), most.clone(), served.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    loop {
                        let mut len = 0usize;
                        let mut path = String::new();
                        loop {
                            let mut line = String::new();
                            if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if path.is_empty() {
                                path = line.split(' ').nth(1).unwrap_or_default().to_string();
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
                        tokio::time::sleep(hold).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        let (status, json) = answer(&path, &body);
                        served.lock().unwrap().push(path);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            json.len()
                        );
                        let reply = [head.as_bytes(), json.as_bytes()].concat();
                        if socket.get_mut().write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    /// What the stand-in answers access checks with: users named `yes…`
    /// are editors, the others have no access.
    fn access_answer(batch_route: bool) -> Answer {
        Arc::new(move |path, body| {
            let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let access = |user: &str| {
                if user.starts_with("yes") {
                    serde_json::json!({"hasAccess": true, "role": "editor"})
                } else {
                    serde_json::json!({"hasAccess": false})
                }
            };
            match path {
                "/collaboration/check-access-batch" if batch_route => {
                    let results: Vec<_> = body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| access(i["userId"].as_str().unwrap()))
                        .collect();
                    (200, serde_json::json!({ "results": results }).to_string())
                }
                "/collaboration/check-access" => {
                    let results: Vec<_> = body["userIds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|u| {
                            let mut a = access(u.as_str().unwrap());
                            a["userId"] = u.clone();
                            a
                        })
                        .collect();
                    (200, serde_json::json!({ "results": results }).to_string())
                }
                _ => (404, "{}".into()),
            }
        })
    }

    /// 40 concurrent access checks through a client that batches them; the
    /// answers each caller got, and the paths control served.
    async fn forty_checks(batch_route: bool) -> (Vec<Option<Role>>, Vec<String>) {
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let url = fake_control(
            Duration::from_millis(20),
            access_answer(batch_route),
            Arc::new(AtomicUsize::new(0)),
            served.clone(),
        )
        .await;
        let client = ControlClient::new(&url, "secret")
            .unwrap()
            .with_batching(VerifyBatching {
                max: 64,
                // Long: a batch leaves when no call is in flight or it is full,
                // never on a slow machine's timer.
                window: Duration::from_secs(5),
            });
        let checks: Vec<_> = (0..40)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let room = RoomId::parse(&format!("doc-{}", i % 7)).unwrap();
                    let user = if i % 3 == 0 {
                        format!("no{i}")
                    } else {
                        format!("yes{i}")
                    };
                    client.access(&room, &user).await.unwrap()
                })
            })
            .collect();
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap());
        }
        let paths = served.lock().unwrap().clone();
        (answers, paths)
    }

    fn expected_roles() -> Vec<Option<Role>> {
        (0..40)
            .map(|i| (i % 3 != 0).then_some(Role::Editor))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_access_checks_share_calls_and_each_gets_its_answer() {
        let (answers, paths) = forty_checks(true).await;
        assert_eq!(answers, expected_roles());
        let batches = paths
            .iter()
            .filter(|p| *p == "/collaboration/check-access-batch")
            .count();
        assert!(batches >= 1, "{paths:?}");
        assert!(paths.len() < 40, "40 checks made {} calls", paths.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_batch_route_access_checks_go_one_by_one() {
        let (answers, paths) = forty_checks(false).await;
        assert_eq!(answers, expected_roles());
        // One refused batch call at most; after it, only single checks.
        let batches: Vec<usize> = paths
            .iter()
            .enumerate()
            .filter(|(_, p)| *p == "/collaboration/check-access-batch")
            .map(|(i, _)| i)
            .collect();
        assert!(batches.len() <= 1, "{paths:?}");
        let singles = paths.len() - batches.len();
        assert_eq!(singles, 40, "{paths:?}");
    }

    /// A stand-in for control's snapshot endpoint: holds each request a
    /// moment and records the most it served at once.
    async fn slow_control(most: Arc<AtomicUsize>, served: Arc<AtomicUsize>) -> String {
        let counted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer: Answer = Arc::new(move |_, _| {
            served.fetch_add(1, Ordering::SeqCst);
            (200, String::new())
        });
        fake_control(Duration::from_millis(20), answer, most, counted).await
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
