//! A Rust client for the relay: connects with a one-time token, keeps a
//! `yrs::Doc` in sync over the y-websocket protocol, shares awareness, and
//! reports `permission_revoked` and the close frame. Used by the end-to-end
//! tests and the load generator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tandem_protocol::collab::resume::{TicketMessage, MESSAGE_RESUME_TICKET};
use tandem_protocol::collab::ServerNotice;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, Origin, ReadTxn, Transact, TransactionMut, Update};

/// Transaction origin of updates that came from the relay (never sent back).
const REMOTE: &str = "tandem-remote";
/// Key of the doc observer that forwards local updates.
const OBSERVER: &str = "tandem-client";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The relay refused before the upgrade (400, 401, 403, 503…).
    #[error("relay answered HTTP {0}")]
    Http(u16),
    #[error("cannot connect: {0}")]
    Io(String),
}

/// Something the relay did that the application may care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The relay said access was revoked (a `permission_revoked` notice).
    Revoked(String),
    /// The socket closed, with the close code and reason if there was a frame.
    Closed(Option<(u16, String)>),
}

/// What the connection task updates for observers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The relay's SyncStep2 arrived: the doc holds the room's state.
    pub synced: bool,
    /// Size of the first SyncStep2 payload: what the room held when this client arrived.
    pub first_sync_bytes: Option<usize>,
    /// Remote updates applied so far.
    pub remote_updates: u64,
    /// Update messages (not SyncStep2 answers) that carried edits of this
    /// client's own (a relay echoing them, or another client relaying them).
    pub own_updates_back: u64,
    /// Frames received (any kind), including keepalives.
    pub frames: u64,
    pub closed: Option<Option<(u16, String)>>,
    /// The reason of a `permission_revoked` notice (auth message or text frame).
    pub revoked: Option<String>,
    /// y-protocols auth messages (permission denied) received.
    pub auth_messages: u64,
    /// Text frames received (only ever sent on the y-partykit path).
    pub text_frames: u64,
    /// The latest resume ticket the relay sent (connections opened with `?resume=1`).
    pub ticket: Option<String>,
    /// When that ticket expires (its `expiresInSecs` from when it arrived).
    pub ticket_expires: Option<std::time::Instant>,
    /// Resume-ticket messages received.
    pub tickets: u64,
    /// Messages of a type this client does not know (what a stock client would choke on).
    pub unknown_messages: u64,
}

/// The reason in a `permission_revoked` notice, or the raw text.
fn revocation_reason(notice: &str) -> String {
    match serde_json::from_str(notice) {
        Ok(ServerNotice::PermissionRevoked { reason }) => reason,
        Err(_) => notice.to_string(),
    }
}

pub struct CollabClient {
    doc: Doc,
    out: mpsc::UnboundedSender<WsMessage>,
    status: watch::Receiver<Status>,
    /// Awareness states of others, by client id (JSON, `null` once removed).
    peers: Arc<Mutex<HashMap<u64, String>>>,
    awareness_clock: AtomicU32,
}

impl Drop for CollabClient {
    fn drop(&mut self) {
        let _ = self.doc.unobserve_update_v1(OBSERVER);
        let _ = self.out.send(WsMessage::Close(None));
    }
}

fn encode(msg: &Message) -> WsMessage {
    WsMessage::Binary(Bytes::from(msg.encode_v1()))
}

impl CollabClient {
    /// Connects to `url` (`ws://relay/{roomId}?token=…`) with a fresh doc.
    pub async fn connect(url: &str) -> Result<CollabClient, ConnectError> {
        Self::connect_with_doc(url, Doc::new()).await
    }

    /// Connects with an existing doc: its state is offered to the room.
    pub async fn connect_with_doc(url: &str, doc: Doc) -> Result<CollabClient, ConnectError> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(res) => ConnectError::Http(res.status().as_u16()),
                other => ConnectError::Io(other.to_string()),
            })?;
        let (out, out_rx) = mpsc::unbounded_channel();
        let sender = out.clone();
        doc.observe_update_v1(OBSERVER, move |txn: &TransactionMut, e| {
            let remote = txn.origin().is_some_and(|o| *o == Origin::from(REMOTE));
            if !remote {
                let _ = sender.send(encode(&Message::Sync(SyncMessage::Update(
                    e.update.clone(),
                ))));
            }
        })
        .map_err(|e| ConnectError::Io(e.to_string()))?;
        let (status_tx, status) = watch::channel(Status::default());
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let sv = doc.transact().state_vector();
        let _ = out.send(encode(&Message::Sync(SyncMessage::SyncStep1(sv))));
        tokio::spawn(run(
            ws,
            out_rx,
            out.clone(),
            doc.clone(),
            status_tx,
            peers.clone(),
        ));
        Ok(CollabClient {
            doc,
            out,
            status,
            peers,
            awareness_clock: AtomicU32::new(0),
        })
    }

    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until `pred` holds for the status, or `timeout` passes.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Option<Status> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if pred(&s) {
                        return s.clone();
                    }
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .ok()
            .filter(|s| pred(s))
    }

    /// Waits until `pred` holds for the doc (checked after every remote update).
    pub async fn wait_doc(&self, timeout: Duration, pred: impl Fn(&Doc) -> bool) -> bool {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                if pred(&self.doc) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return pred(&self.doc);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Publishes this client's awareness state (JSON).
    pub fn set_awareness(&self, json: &str) {
        let clock = self.awareness_clock.fetch_add(1, Ordering::Relaxed) + 1;
        let mut clients = HashMap::new();
        clients.insert(
            self.doc.client_id(),
            AwarenessUpdateEntry {
                clock,
                json: Arc::from(json),
            },
        );
        let _ = self
            .out
            .send(encode(&Message::Awareness(AwarenessUpdate { clients })));
    }

    /// Awareness states of the other clients, as last heard.
    pub fn peers(&self) -> HashMap<u64, String> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Sends raw bytes (for tests of malformed input).
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.out.send(WsMessage::Binary(Bytes::from(bytes)));
    }

    /// Closes the connection politely.
    pub fn close(&self) {
        let _ = self.out.send(WsMessage::Close(None));
    }
}

async fn run(
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    mut out_rx: mpsc::UnboundedReceiver<WsMessage>,
    out: mpsc::UnboundedSender<WsMessage>,
    doc: Doc,
    status: watch::Sender<Status>,
    peers: Arc<Mutex<HashMap<u64, String>>>,
) {
    let (mut sink, mut stream) = ws.split();
    let closed = loop {
        tokio::select! {
            msg = out_rx.recv() => match msg {
                Some(m) => {
                    let is_close = matches!(m, WsMessage::Close(_));
                    if sink.send(m).await.is_err() || is_close {
                        // Keep reading: the relay's close frame is what we report.
                        if !is_close { break None; }
                    }
                }
                None => break None,
            },
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    status.send_modify(|s| s.frames += 1);
                    handle_frame(&bytes, &doc, &out, &status, &peers);
                }
                Some(Ok(WsMessage::Text(text))) => {
                    status.send_modify(|s| s.text_frames += 1);
                    if let Ok(ServerNotice::PermissionRevoked { reason }) = serde_json::from_str(&text) {
                        status.send_modify(|s| s.revoked = Some(reason));
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    break frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            },
        }
    };
    status.send_modify(|s| s.closed = Some(closed));
}

/// Applies a remote update; `step2` when it answers our SyncStep1 (synced).
fn apply_remote(doc: &Doc, status: &watch::Sender<Status>, u: &[u8], step2: bool) {
    let mut own = false;
    if let Ok(update) = Update::decode_v1(u) {
        let me = doc.client_id();
        own = !step2 && update.state_vector_lower().iter().any(|(c, _)| *c == me);
        let _ = doc.transact_mut_with(REMOTE).apply_update(update);
    }
    status.send_modify(|s| {
        s.remote_updates += 1;
        s.own_updates_back += u64::from(own);
        s.synced |= step2;
        if step2 && s.first_sync_bytes.is_none() {
            s.first_sync_bytes = Some(u.len());
        }
    });
}

fn handle_frame(
    bytes: &[u8],
    doc: &Doc,
    out: &mpsc::UnboundedSender<WsMessage>,
    status: &watch::Sender<Status>,
    peers: &Arc<Mutex<HashMap<u64, String>>>,
) {
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    for msg in MessageReader::new(&mut decoder) {
        let Ok(msg) = msg else { return };
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let update = doc.transact().encode_state_as_update_v1(&sv);
                let _ = out.send(encode(&Message::Sync(SyncMessage::SyncStep2(update))));
            }
            Message::Sync(SyncMessage::SyncStep2(u)) => apply_remote(doc, status, &u, true),
            Message::Sync(SyncMessage::Update(u)) => apply_remote(doc, status, &u, false),
            Message::Awareness(update) => {
                if let Ok(mut p) = peers.lock() {
                    for (id, entry) in update.clients {
                        if id != doc.client_id() {
                            p.insert(ClientID::get(&id), entry.json.to_string());
                        }
                    }
                }
                status.send_modify(|_| {});
            }
            Message::Auth(Some(notice)) => status.send_modify(|s| {
                s.auth_messages += 1;
                s.revoked = Some(revocation_reason(&notice));
            }),
            Message::Custom(MESSAGE_RESUME_TICKET, data) => {
                let parsed = serde_json::from_slice::<TicketMessage>(&data).ok();
                status.send_modify(|s| {
                    s.tickets += 1;
                    if let Some(m) = parsed {
                        s.ticket = Some(m.ticket);
                        s.ticket_expires = Some(
                            std::time::Instant::now() + Duration::from_secs(m.expires_in_secs),
                        );
                    }
                });
            }
            Message::Custom(..) => status.send_modify(|s| s.unknown_messages += 1),
            _ => {}
        }
    }
}
