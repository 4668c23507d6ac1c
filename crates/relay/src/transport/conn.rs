//! One accepted TCP connection, from request head to WebSocket close.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tandem_protocol::collab::{close, is_collab_token_shape};
use tandem_protocol::ErrorCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::handshake::{self, Form, HttpError, Route};
use super::prefixed::Prefixed;
use crate::control_client::ControlError;
use crate::hub::{JoinError, Kill, Member};
use crate::room::KEEPALIVE;
use crate::server::Shared;

/// How long one write to a client may take before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from a socket at once.
const READ_BUFFER: usize = 4 * 1024;
/// Most queued messages written to a socket before one flush.
const WRITE_BATCH: usize = 64;

type Ws = WebSocketStream<Prefixed<TcpStream>>;

/// Serves one TCP connection.
pub async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let head = match handshake::read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => return e.write_to(&mut stream).await,
    };
    let (room, token, form) = match handshake::route(&head) {
        Ok(Route::Health) => {
            return handshake::respond(&mut stream, 200, r#"{"status":"ok"}"#).await
        }
        Ok(Route::Metrics) => {
            let body = shared.metrics.encode();
            let ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            return handshake::respond_with(&mut stream, 200, ctype, &body).await;
        }
        Ok(Route::Drain { exit }) => return drain(&mut stream, &head, &shared, exit).await,
        Ok(Route::Ready) => {
            if shared.hub.is_draining() {
                return draining().write_to(&mut stream).await;
            }
            if shared.control.ready().await {
                return handshake::respond(&mut stream, 200, r#"{"status":"ready"}"#).await;
            }
            return unreachable_control().write_to(&mut stream).await;
        }
        Ok(Route::Room(room, token, form)) => (room, token, form),
        Err(e) => return e.write_to(&mut stream).await,
    };
    if shared.hub.is_draining() {
        return draining().write_to(&mut stream).await;
    }
    if let (Some(allowed), Some(origin)) = (&shared.origins, &head.origin) {
        if !allowed.allows(origin) {
            shared.metrics.origins_refused.inc();
            return HttpError::new(403, ErrorCode::Forbidden, "origin not allowed")
                .write_to(&mut stream)
                .await;
        }
    }
    if let Ok(peer) = stream.peer_addr() {
        if !shared
            .handshakes
            .allow(peer.ip(), std::time::Instant::now())
        {
            shared.metrics.handshakes_limited.inc();
            return HttpError::new(
                429,
                ErrorCode::RateLimited,
                "too many handshakes from this address",
            )
            .write_to(&mut stream)
            .await;
        }
    }
    let Some(token) = token else {
        return HttpError::new(401, ErrorCode::Unauthorized, "missing ?token=")
            .write_to(&mut stream)
            .await;
    };
    if !is_collab_token_shape(&token) {
        // Not a token control could have made: no need to ask it.
        shared.metrics.tokens_malformed.inc();
        return HttpError::new(403, ErrorCode::Forbidden, "token refused")
            .write_to(&mut stream)
            .await;
    }
    let Ok(_permit) = shared.connections.clone().try_acquire_owned() else {
        return HttpError::new(
            503,
            ErrorCode::Unavailable,
            "relay is at its connection limit",
        )
        .write_to(&mut stream)
        .await;
    };
    let started = std::time::Instant::now();
    let verified = shared.control.verify(&token, &room).await;
    shared
        .metrics
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
    let member = match verified {
        Ok(v) => Member {
            user_id: v.user_id,
            user_name: v.user_name,
            role: v.role,
        },
        Err(ControlError::Refused(_)) => {
            return HttpError::new(403, ErrorCode::Forbidden, "token refused")
                .write_to(&mut stream)
                .await
        }
        Err(ControlError::BadRequest | ControlError::TooLarge) => {
            return HttpError::new(400, ErrorCode::BadRequest, "bad room id")
                .write_to(&mut stream)
                .await
        }
        Err(ControlError::Unavailable(why)) => {
            tracing::warn!(room = %room, error = %why, "control unreachable during connect");
            return unreachable_control().write_to(&mut stream).await;
        }
    };
    // tungstenite zero-fills its whole read buffer before every read (128 KiB
    // by default): that was the relay's top symbol under load and 128 KiB of
    // RSS per idle socket. The buffer still grows for large messages.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes));
    let ws = match tokio_tungstenite::accept_async_with_config(
        Prefixed::new(head.raw, stream),
        Some(config),
    )
    .await
    {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(error = %e, "WebSocket handshake failed");
            return;
        }
    };
    let span = tracing::info_span!("conn", room = %room, user_id = %member.user_id);
    pump(ws, room, form, member, shared).instrument(span).await;
}

/// The y-protocols auth message "permission denied" (`[2][0][varString]`)
/// carrying `reason`: what every y-websocket client understands.
fn permission_denied(reason: &str) -> Bytes {
    use yrs::updates::encoder::Encode;
    Bytes::from(yrs::sync::Message::Auth(Some(reason.to_string())).encode_v1())
}

/// Closes with `kill`. A notice goes first as the auth message on every
/// path, and also as a JSON text frame on the y-partykit path only (a stock
/// y-websocket provider throws on text frames).
async fn close_with(ws: &mut Ws, form: Form, kill: Kill) {
    if let Some(notice) = kill.notice {
        let auth = Message::Binary(permission_denied(&notice));
        let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(auth)).await;
        if form == Form::Partykit {
            let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::text(notice))).await;
        }
    }
    let frame = CloseFrame {
        code: CloseCode::from(kill.code),
        reason: kill.reason.into(),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(Some(frame))).await;
    // Read until the client answers the close (or gives up), so it sees the frame.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

/// Writes `first` and whatever else is already queued (up to a batch), then
/// flushes once: one syscall for a burst instead of one per message. Takes
/// what was written off the link's byte count; returns whether a SyncStep2
/// answer was among it.
async fn write_batch(
    ws: &mut Ws,
    first: Bytes,
    link: &mut crate::hub::Link,
) -> Result<bool, WsError> {
    let mut step2 = false;
    let mut bytes = 0;
    let mut msg = first;
    for i in 0..WRITE_BATCH {
        if i > 0 {
            match link.outbound.try_recv() {
                Ok(more) => msg = more,
                Err(_) => break,
            }
        }
        step2 |= msg.starts_with(&[0, 1]);
        bytes += msg.len();
        ws.feed(Message::Binary(std::mem::take(&mut msg))).await?;
    }
    let flushed = ws.flush().await;
    link.queued
        .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    flushed.map(|()| step2)
}

/// Moves frames between the socket and the room until either side ends.
async fn pump(
    mut ws: Ws,
    room: tandem_protocol::RoomId,
    form: Form,
    member: Member,
    shared: Arc<Shared>,
) {
    let mut link = match shared.hub.join(&room, member).await {
        Ok(link) => link,
        Err(JoinError::Full) => {
            return close_with(
                &mut ws,
                form,
                Kill::plain(close::TRY_AGAIN_LATER, close::REASON_ROOM_FULL),
            )
            .await;
        }
        Err(JoinError::UserFull) => {
            shared.metrics.user_room_limited.inc();
            return close_with(
                &mut ws,
                form,
                Kill::plain(close::TRY_AGAIN_LATER, close::REASON_USER_ROOM_FULL),
            )
            .await;
        }
        Err(JoinError::ShuttingDown) => {
            let kill = match shared.hub.is_draining() {
                true => Kill::plain(close::SERVICE_RESTART, close::REASON_DRAINING),
                false => Kill::plain(close::GOING_AWAY, close::REASON_SHUTDOWN),
            };
            return close_with(&mut ws, form, kill).await;
        }
    };
    let keepalive = Duration::from_millis(shared.config.keepalive_ms.max(100));
    let mut idle = Box::pin(tokio::time::sleep(keepalive));
    let kill = loop {
        tokio::select! {
            // A kill is sent just before the room drops the send queue: look at it first.
            biased;
            kill = &mut link.kill => break kill.ok(),
            out = link.outbound.recv() => match out {
                Some(bytes) => {
                    match tokio::time::timeout(SEND_TIMEOUT, write_batch(&mut ws, bytes, &mut link)).await {
                        Ok(Ok(step2)) => {
                            idle.as_mut().reset(tokio::time::Instant::now() + keepalive);
                            if step2 && !link.step2_written().await {
                                break Some(ended(&mut link));
                            }
                        }
                        _ => break None,
                    }
                }
                None => break Some(ended(&mut link)),
            },
            _ = &mut idle => {
                if !matches!(tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Binary(Bytes::from_static(KEEPALIVE)))).await, Ok(Ok(()))) {
                    break None;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + keepalive);
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    if !link.send(bytes).await {
                        break Some(ended(&mut link));
                    }
                }
                Some(Ok(Message::Text(_))) => break Some(Kill::plain(close::UNSUPPORTED_DATA, close::REASON_BINARY_ONLY)),
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => {} // ping/pong: answered by tungstenite
                Some(Err(WsError::Capacity(_))) => break Some(Kill::plain(close::MESSAGE_TOO_BIG, close::REASON_MESSAGE_TOO_BIG)),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "socket error");
                    break None;
                }
            },
        }
    };
    link.leave().await;
    match kill {
        Some(kill) => close_with(&mut ws, form, kill).await,
        None => {
            let _ = ws.close(None).await;
        }
    }
}

/// The 503 of `/readyz` and of a connect while the node drains.
fn draining() -> HttpError {
    HttpError::new(503, ErrorCode::Unavailable, "relay is draining")
}

/// `POST /admin/drain[?exit=true]` with `Authorization: Bearer
/// <TANDEM_RELAY_SECRET>`: refuses new connections from now on, saves every
/// room to control and closes its clients with 1012, then answers
/// `{status, rooms, complete, exiting}`; with `exit`, the node then stops.
async fn drain(stream: &mut TcpStream, head: &handshake::Head, shared: &Shared, exit: bool) {
    let given = head
        .authorization
        .as_deref()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    // Guesses of the secret are braked like handshakes.
    if let Ok(peer) = stream.peer_addr() {
        if !shared
            .handshakes
            .allow(peer.ip(), std::time::Instant::now())
        {
            return HttpError::new(429, ErrorCode::RateLimited, "too many requests")
                .write_to(stream)
                .await;
        }
    }
    let secret = shared.config.relay_secret.as_deref().unwrap_or_default();
    if !given.is_some_and(|t| !secret.is_empty() && same_secret(t, secret)) {
        return HttpError::new(401, ErrorCode::Unauthorized, "the relay secret is required")
            .write_to(stream)
            .await;
    }
    tracing::warn!(
        exit,
        "drain: refusing new connections, saving rooms, closing clients with 1012"
    );
    let deadline = Duration::from_secs(shared.config.shutdown_secs.max(1));
    let (rooms, complete) = shared.hub.drain(deadline).await;
    tracing::info!(rooms, complete, "drained");
    let body = serde_json::json!({
        "status": "drained",
        "rooms": rooms,
        "complete": complete,
        "exiting": exit,
    });
    handshake::respond(stream, 200, &body.to_string()).await;
    if exit {
        shared.stop.cancel();
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 503 of `/readyz` and of a connect while control is away.
fn unreachable_control() -> HttpError {
    HttpError::new(503, ErrorCode::Unavailable, "control is unreachable")
}

/// Why the room let go of a connection: the kill it queued (a graceful
/// shutdown queues 1001 first), else the room's actor died — 1011.
fn ended(link: &mut crate::hub::Link) -> Kill {
    link.kill
        .try_recv()
        .unwrap_or_else(|_| Kill::plain(close::INTERNAL_ERROR, ""))
}
