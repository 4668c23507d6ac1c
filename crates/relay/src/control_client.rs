//! The relay's client for control's relay-facing endpoints. Every call has a
//! timeout; a failure is reported as [`ControlError::Unavailable`] so callers
//! can fail open (re-checks) or answer 503 (connects).

use std::time::Duration;

use tandem_protocol::collab::{
    AccessEvents, CheckAccessBatchRequest, CheckAccessBatchResponse, UserAccess, VerifyRequest,
    VerifyResponse, MAX_BATCH_USERS, MAX_DOCUMENT_BYTES_HEADER, RELAY_SECRET_HEADER,
};
use tandem_protocol::RoomId;

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

#[derive(Clone)]
pub struct ControlClient {
    base: String,
    secret: String,
    http: reqwest::Client,
}

impl ControlClient {
    pub fn new(base: &str, secret: &str) -> anyhow::Result<ControlClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(ControlClient {
            base: base.trim_end_matches('/').to_string(),
            secret: secret.to_string(),
            http,
        })
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

    /// Consumes a one-time collaboration token for `room`.
    pub async fn verify(&self, token: &str, room: &RoomId) -> Result<VerifyResponse, ControlError> {
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
