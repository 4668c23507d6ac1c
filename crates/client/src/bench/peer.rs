//! One simulated user: a WebSocket, a `yrs::Doc`, and a loop that syncs,
//! types at a fixed rate once the timed phase starts, applies every remote
//! update and records how long each remote edit took to arrive.
//!
//! Every edit appends its send time (microseconds on the generator's clock)
//! to the shared array `e` and types a few characters into the text `t`; an
//! observer on `e` hands the receiver the send time of each remote edit as it
//! is integrated, whatever server relayed it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use yrs::types::Change;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, Doc, Number, Observable, Out, ReadTxn, StateVector, Text, Transact, Update};

use super::edits::{self, STAMP_DIGITS};
use super::stats::us_sample;
use super::wire::{Framing, Sync};

/// Microseconds since the generator started: the clock edits carry.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// How long a client waits for its first sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Real clients renew their awareness about this often; servers that drop
/// silent sockets (Hocuspocus after 60 s) rely on it.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What one client does.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub url: String,
    pub framing: Framing,
    /// Edits to make once the timed phase starts.
    pub edits: u32,
    /// Time between two edits.
    pub period: Duration,
    /// Delay of the first edit after the start (spreads clients over a period).
    pub phase: Duration,
    /// An update to send right after the first sync (seeds a large document).
    pub seed: Option<Arc<Vec<u8>>>,
    /// Wire level: edits carry their send time as a fixed-width string
    /// (nothing else), and remote updates are counted and timestamped from
    /// their last bytes, never applied (see [`wire_stamp`]).
    pub wire: bool,
}

/// Counters shared by all clients, for the progress line and the deadline.
#[derive(Debug, Default)]
pub struct Progress {
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// `now_us()` of the latest remote edit received.
    pub last_delivery_us: AtomicU64,
}

/// What every client listens to.
#[derive(Clone)]
pub struct Signals {
    /// Becomes true when the timed phase starts.
    pub start: watch::Receiver<bool>,
    /// Ends the client (after the drain).
    pub stop: CancellationToken,
    pub progress: Arc<Progress>,
    /// Bounds concurrent handshakes; released once synced.
    pub connecting: Arc<Semaphore>,
}

/// A document's identity for the convergence check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// (client, clock) pairs, sorted (encoded state vectors are in hash order).
    pub state_vector: Vec<(u64, u32)>,
    pub edits: u32,
    pub text_len: u32,
    /// FNV-1a over the edit values in document order.
    pub hash: u64,
}

#[derive(Debug, Default)]
pub struct PeerReport {
    /// Handshake to first sync (SyncStep2 received), when it connected.
    pub connect_us: Option<u64>,
    /// Size of the first SyncStep2's update.
    pub first_sync_bytes: usize,
    pub sent: u32,
    pub received: u64,
    /// Wire level: this client's own edits sent back to it (not counted as received).
    pub echoes: u64,
    pub latencies_us: Vec<u32>,
    pub digest: Option<Digest>,
    pub error: Option<String>,
}

/// The text of the edits (a few characters, as typing).
const TYPED: &str = "typing..";

/// Builds the document's digest.
pub fn digest(doc: &Doc) -> Digest {
    let edits = doc.get_or_insert_array("e");
    let text = doc.get_or_insert_text("t");
    let txn = doc.transact();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut count = 0;
    for v in edits.iter(&txn) {
        count += 1;
        let bits = match v {
            Out::Any(Any::Number(n)) => n.as_i64().unwrap_or(-1) as u64,
            _ => u64::MAX,
        };
        for b in bits.to_le_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
    }
    let mut state_vector: Vec<(u64, u32)> = txn
        .state_vector()
        .iter()
        .map(|(c, k)| (c.get(), *k))
        .collect();
    state_vector.sort_unstable();
    Digest {
        state_vector,
        edits: count,
        text_len: text.len(&txn),
        hash,
    }
}

/// A document of about `bytes` of text typed in 100-character edits (one
/// transaction each, as a person types), encoded as one update.
pub fn large_document(bytes: usize) -> Vec<u8> {
    let doc = Doc::with_client_id(client_id());
    let text = doc.get_or_insert_text("t");
    let chunk = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore ";
    let mut len = 0usize;
    while len < bytes {
        text.insert(&mut doc.transact_mut(), len as u32, chunk);
        len += chunk.len();
    }
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

/// Runs one client to the end; never panics on what the server sends.
pub async fn run(spec: PeerSpec, signals: Signals) -> PeerReport {
    let mut report = PeerReport::default();
    if let Err(e) = drive(&spec, &signals, &mut report).await {
        report.error = Some(e);
    }
    if report.connect_us.is_none() {
        signals.progress.failed.fetch_add(1, Ordering::Relaxed);
    }
    report
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(
    ws: &mut Socket,
    bytes: impl Into<tokio_tungstenite::tungstenite::Bytes>,
) -> Result<(), String> {
    ws.send(Message::Binary(bytes.into()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// A random 32-bit client id, as yjs makes them (yrs makes 53-bit ones,
/// which servers built on older yrs truncate, turning a client's own edits
/// into strangers' when they come back).
fn client_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    // splitmix64
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) & 0xffff_ffff).max(1)
}

async fn drive(spec: &PeerSpec, signals: &Signals, report: &mut PeerReport) -> Result<(), String> {
    let doc = Doc::with_client_id(client_id());
    let edits = doc.get_or_insert_array("e");
    let text = doc.get_or_insert_text("t");
    // Send times of edits integrated by the last transaction.
    let arrived: Arc<Mutex<Vec<i64>>> = Arc::default();
    let sink = arrived.clone();
    edits.observe("bench", move |txn, e| {
        if let Ok(mut sink) = sink.lock() {
            for change in e.delta(txn) {
                if let Change::Added(values) = change {
                    sink.extend(values.iter().filter_map(|v| match v {
                        Out::Any(Any::Number(n)) => n.as_i64(),
                        _ => None,
                    }));
                }
            }
        }
    });
    let permit = signals
        .connecting
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    // Small buffers: a generator holds thousands of these sockets.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let (mut ws, _) = tokio::time::timeout(
        SYNC_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(spec.url.as_str(), Some(config), true),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let framing = &spec.framing;
    if let Some(auth) = framing.auth("") {
        send(&mut ws, auth).await?;
    }
    let sv = doc.transact().state_vector().encode_v1();
    send(&mut ws, framing.step1(&sv)).await?;

    // Until the first sync: answer the server's SyncStep1, apply its SyncStep2.
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no first sync".to_string())?;
        let bytes = match frame {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(c))) => return Err(format!("closed before sync: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("closed before sync".into()),
        };
        match framing.parse(&bytes) {
            Some(Sync::Step1(sv)) => {
                let sv = StateVector::decode_v1(sv).map_err(|e| e.to_string())?;
                let update = doc.transact().encode_state_as_update_v1(&sv);
                send(&mut ws, framing.step2(&update)).await?;
            }
            Some(Sync::Step2(update)) => {
                apply(&doc, update)?;
                report.first_sync_bytes = update.len();
                break;
            }
            Some(Sync::Update(update)) => apply(&doc, update)?,
            None => {}
        }
    }
    report.connect_us = Some(started.elapsed().as_micros() as u64);
    drop(permit);
    if let Ok(mut a) = arrived.lock() {
        a.clear();
    }
    if let Some(seed) = &spec.seed {
        apply(&doc, seed)?;
        send(&mut ws, framing.update(seed)).await?;
    }
    signals.progress.connected.fetch_add(1, Ordering::Relaxed);

    let mut start = signals.start.clone();
    let mut started_edits = *start.borrow();
    let mut next_edit = tokio::time::Instant::now() + spec.phase;
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    // Built once; each tick sends a cheap clone.
    let keepalive_frame = tokio_tungstenite::tungstenite::Bytes::from(framing.keepalive());
    let progress = &signals.progress;
    loop {
        let edit_due = started_edits && report.sent < spec.edits;
        tokio::select! {
            biased;
            _ = signals.stop.cancelled() => break,
            frame = ws.next() => {
                let bytes = match frame {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(c))) => return Err(format!("closed by server: {c:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("read: {e}")),
                    None => return Err("closed by server".into()),
                };
                match framing.parse(&bytes) {
                    Some(Sync::Step1(sv)) => {
                        let sv = StateVector::decode_v1(sv).map_err(|e| e.to_string())?;
                        let update = doc.transact().encode_state_as_update_v1(&sv);
                        send(&mut ws, framing.step2(&update)).await?;
                    }
                    Some(Sync::Update(update)) if spec.wire => {
                        let now = now_us();
                        let carried = edits::carried(update, doc.client_id().get())
                            .ok_or("an update the wire-level reader cannot walk")?;
                        for sent_at in carried.stamps {
                            report.latencies_us.push(us_sample(now.saturating_sub(sent_at)));
                        }
                        report.echoes += carried.echoes;
                        if carried.delivered > 0 {
                            report.received += carried.delivered;
                            progress.received.fetch_add(carried.delivered, Ordering::Relaxed);
                            progress.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                    Some(Sync::Step2(_)) if spec.wire => {}
                    Some(Sync::Step2(update) | Sync::Update(update)) => {
                        apply(&doc, update)?;
                        let now = now_us();
                        // Drained in place: the buffer keeps its capacity for the next update.
                        let mut n = 0u64;
                        if let Ok(mut a) = arrived.lock() {
                            for sent_at in a.drain(..) {
                                let sent_at = u64::try_from(sent_at).unwrap_or(now);
                                report.latencies_us.push(us_sample(now.saturating_sub(sent_at)));
                                n += 1;
                            }
                        }
                        if n > 0 {
                            report.received += n;
                            progress.received.fetch_add(n, Ordering::Relaxed);
                            progress.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                    None => {}
                }
            }
            changed = start.changed(), if !started_edits => {
                if changed.is_err() { break; }
                started_edits = *start.borrow();
                next_edit = tokio::time::Instant::now() + spec.phase;
            }
            _ = tokio::time::sleep_until(next_edit), if edit_due => {
                let update = if spec.wire {
                    // Only this client's own edits are in its document.
                    let mut txn = doc.transact_mut();
                    let stamp = format!("{:0width$}", now_us(), width = STAMP_DIGITS);
                    edits.push_back(&mut txn, Any::String(stamp.into()));
                    txn.encode_update_v1()
                } else {
                    let mut txn = doc.transact_mut();
                    edits.push_back(&mut txn, Any::Number(Number::Int(now_us() as i64)));
                    let len = text.len(&txn);
                    let at = (report.sent.wrapping_mul(7919)) % (len + 1);
                    text.insert(&mut txn, at, TYPED);
                    txn.encode_update_v1()
                };
                if let Ok(mut a) = arrived.lock() { a.clear(); }
                send(&mut ws, framing.update(&update)).await?;
                report.sent += 1;
                progress.sent.fetch_add(1, Ordering::Relaxed);
                next_edit += spec.period;
            }
            _ = keepalive.tick() => send(&mut ws, keepalive_frame.clone()).await?,
        }
    }
    report.digest = Some(digest(&doc));
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(())
}

fn apply(doc: &Doc, update: &[u8]) -> Result<(), String> {
    let update = Update::decode_v1(update).map_err(|e| format!("bad update: {e}"))?;
    doc.transact_mut()
        .apply_update(update)
        .map_err(|e| format!("cannot apply update: {e}"))
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::bench::wire::Framing;

    #[test]
    fn a_wire_edit_is_read_back_from_either_framing() {
        let doc = Doc::with_client_id(7);
        let edits = doc.get_or_insert_array("e");
        let update = {
            let mut txn = doc.transact_mut();
            let stamp = format!("{:0width$}", 123_456_789, width = STAMP_DIGITS);
            edits.push_back(&mut txn, Any::String(stamp.into()));
            txn.encode_update_v1()
        };
        for framing in [
            Framing::Plain,
            Framing::Hocuspocus {
                doc: "room-1".into(),
            },
        ] {
            let msg = framing.update(&update);
            let Some(Sync::Update(inner)) = framing.parse(&msg) else {
                panic!("not an update: {msg:?}");
            };
            let carried = super::edits::carried(inner, 8).unwrap();
            assert_eq!(carried.stamps, vec![123_456_789]);
        }
        // A yrs client applies it like any other edit.
        apply(&Doc::new(), &update).unwrap();
        assert_eq!(digest(&doc).edits, 1);
    }
}
