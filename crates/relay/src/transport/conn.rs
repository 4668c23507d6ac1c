//! One accepted TCP connection, from request head to WebSocket close.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tandem_protocol::collab::resume::{RESUME_PARAM, TICKET_PARAM as RESUME_TICKET_PARAM};
use tandem_protocol::collab::{close, is_collab_token_shape};
use tandem_protocol::ErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::handshake::{self, Form, HttpError, Route};
use super::ops::{self, draining, same_secret, unreachable_control};
use super::ws::{Incoming, WebSocket, WsError};
use crate::control_client::ControlError;
use crate::hub::{JoinError, Kill, Member, Next};
use crate::room::KEEPALIVE;
use crate::server::Shared;

/// How long one write to a client may take before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most queued messages written to a socket before one flush.
const WRITE_BATCH: usize = 64;

pub(crate) type Ws = WebSocket<TcpStream>;

/// Serves one TCP connection. The phase before the pump (request head,
/// token verify at control, WebSocket handshake, joining the room) runs in
/// its own boxed future: a task's size is that of its largest state, and
/// the HTTP client's futures would otherwise stay in every connection's task
/// for its life. A combinator rather than an `async fn`: the task is then
/// the pump and a tag, where an `async fn` would also keep its arguments.
pub fn serve(stream: TcpStream, shared: Arc<Shared>) -> impl Future<Output = ()> + Send {
    use futures_util::future::{Either, FutureExt};
    // No span per connection: the subscriber's registry would keep one
    // slot and the formatted fields for every open connection. The room's
    // span (its actor) logs joins and leaves with the user and connection id.
    Box::pin(upgrade(stream, shared.clone())).then(move |up| match up {
        Some((ws, up)) => Either::Left(pump(ws, up, shared)),
        None => Either::Right(std::future::ready(())),
    })
}

/// Who and where an upgraded connection is, joined to its room.
struct Upgraded {
    room: tandem_protocol::RoomId,
    form: Form,
    link: crate::hub::Link,
    /// Resume tickets for this connection (it asked with `?resume=1`).
    resume: Option<Box<crate::tickets::Resume>>,
    /// Counts the connection against the relay's limit while it lives.
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Everything up to an open WebSocket whose user control verified, joined
/// to its room (`None` when the connection was answered and closed already).
async fn upgrade(mut stream: TcpStream, shared: Arc<Shared>) -> Option<(Ws, Upgraded)> {
    let _ = stream.set_nodelay(true);
    let head = match handshake::read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => {
            e.write_to(&mut stream).await;
            return None;
        }
    };
    let (room, token, form) = match handshake::route(&head) {
        Ok(Route::Ops(route)) => {
            let to = (route, ops::Address::Client);
            ops::answer(&mut stream, to, &head, &shared, &shared.control).await;
            return None;
        }
        Ok(Route::Drain { exit }) => {
            drain(&mut stream, &head, &shared, exit).await;
            return None;
        }
        Ok(Route::Room(room, token, form)) => (room, token, form),
        Err(e) => {
            e.write_to(&mut stream).await;
            return None;
        }
    };
    if shared.hub.is_draining() {
        draining().write_to(&mut stream).await;
        return None;
    }
    if let (Some(allowed), Some(origin)) = (&shared.origins, &head.origin) {
        if !allowed.allows(origin) {
            shared.metrics.origins_refused.inc();
            {
                HttpError::new(403, ErrorCode::Forbidden, "origin not allowed")
                    .write_to(&mut stream)
                    .await;
                return None;
            }
        }
    }
    if let Ok(peer) = stream.peer_addr() {
        if !shared
            .handshakes
            .allow(peer.ip(), std::time::Instant::now())
        {
            shared.metrics.handshakes_limited.inc();
            {
                HttpError::new(
                    429,
                    ErrorCode::RateLimited,
                    "too many handshakes from this address",
                )
                .write_to(&mut stream)
                .await;
                return None;
            }
        }
    }
    // `?ticket=` stands in for `?token=` (a token, when both are given, wins).
    let credential = match (token, handshake::query_param(&head, RESUME_TICKET_PARAM)) {
        (Some(token), _) => Credential::Token(token),
        (None, Some(ticket)) => Credential::Ticket(ticket),
        (None, None) => {
            HttpError::new(401, ErrorCode::Unauthorized, "missing ?token=")
                .write_to(&mut stream)
                .await;
            return None;
        }
    };
    if let Credential::Token(token) = &credential {
        if !is_collab_token_shape(token) {
            // Not a token control could have made: no need to ask it.
            shared.metrics.tokens_malformed.inc();
            HttpError::new(403, ErrorCode::Forbidden, "token refused")
                .write_to(&mut stream)
                .await;
            return None;
        }
    }
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        {
            HttpError::new(
                503,
                ErrorCode::Unavailable,
                "relay is at its connection limit",
            )
            .write_to(&mut stream)
            .await;
            return None;
        }
    };
    let wants_resume = handshake::query_param(&head, RESUME_PARAM).is_some();
    let member = match credential {
        Credential::Token(token) => verify_token(&mut stream, &shared, &token, &room).await?,
        Credential::Ticket(ticket) => {
            match crate::tickets::admit(&shared, &ticket, &room).await {
                Ok(member) => Some(member),
                Err(crate::tickets::AdmitError::Unavailable) => {
                    unreachable_control().write_to(&mut stream).await;
                    return None;
                }
                // Refused after the upgrade (close 4401), so that browsers,
                // which never see an HTTP status, can tell it apart.
                Err(crate::tickets::AdmitError::Refused) => None,
            }
        }
    };
    let answer = handshake::switching_protocols(&head);
    match tokio::time::timeout(SEND_TIMEOUT, stream.write_all(answer.as_bytes())).await {
        Ok(Ok(())) => {}
        _ => {
            tracing::info!("WebSocket handshake failed: the 101 could not be written");
            return None;
        }
    }
    let mut ws = WebSocket::new(stream, &head.rest, shared.config.max_message_bytes);
    let Some(member) = member else {
        crate::tickets::refuse(&mut ws).await;
        return None;
    };
    let resume = match (&shared.tickets, wants_resume) {
        (Some(tickets), true) => {
            let resume =
                crate::tickets::Resume::new(member.clone(), tickets, std::time::Instant::now());
            let first = [resume.first(tickets, &room)];
            shared.metrics.tickets_issued.inc();
            if !matches!(
                tokio::time::timeout(SEND_TIMEOUT, ws.send_binary(&first)).await,
                Ok(Ok(()))
            ) {
                return None;
            }
            Some(resume)
        }
        _ => None,
    };
    let link = match shared.hub.join(&room, member).await {
        Ok(link) => link,
        Err(e) => {
            let kill = match e {
                JoinError::Full => Kill::plain(close::TRY_AGAIN_LATER, close::REASON_ROOM_FULL),
                JoinError::UserFull => {
                    shared.metrics.user_room_limited.inc();
                    Kill::plain(close::TRY_AGAIN_LATER, close::REASON_USER_ROOM_FULL)
                }
                JoinError::ShuttingDown if shared.hub.is_draining() => {
                    Kill::plain(close::SERVICE_RESTART, close::REASON_DRAINING)
                }
                JoinError::ShuttingDown => Kill::plain(close::GOING_AWAY, close::REASON_SHUTDOWN),
            };
            close_with(&mut ws, form, kill).await;
            return None;
        }
    };
    Some((
        ws,
        Upgraded {
            room,
            form,
            link,
            resume,
            permit,
        },
    ))
}

/// How a connect authenticates.
enum Credential {
    Token(String),
    Ticket(String),
}

/// Consumes a one-time token at control; `None` once the refusal is answered.
async fn verify_token(
    stream: &mut TcpStream,
    shared: &Shared,
    token: &str,
    room: &tandem_protocol::RoomId,
) -> Option<Option<Member>> {
    let started = std::time::Instant::now();
    let verified = shared.control.verify(token, room).await;
    shared
        .metrics
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
    match verified {
        Ok(v) => Some(Some(Member {
            user_id: v.user_id,
            user_name: v.user_name,
            role: v.role,
        })),
        Err(ControlError::Refused(_)) => {
            HttpError::new(403, ErrorCode::Forbidden, "token refused")
                .write_to(stream)
                .await;
            None
        }
        Err(ControlError::BadRequest | ControlError::TooLarge) => {
            HttpError::new(400, ErrorCode::BadRequest, "bad room id")
                .write_to(stream)
                .await;
            None
        }
        Err(ControlError::Unavailable(why)) => {
            tracing::warn!(room = %room, error = %why, "control unreachable during connect");
            unreachable_control().write_to(stream).await;
            None
        }
    }
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
        let auth = [permission_denied(&notice)];
        let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send_binary(&auth)).await;
        if form == Form::Partykit {
            let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send_text(&notice)).await;
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(Some((kill.code, kill.reason)))).await;
    // Read until the client answers the close (or gives up), so it sees the frame.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

/// Writes what the room queued (up to a batch) with one flush; takes what
/// was written off the queue's byte count. Returns whether a SyncStep2
/// answer was among it.
async fn write_batch(ws: &mut Ws, link: &crate::hub::Link) -> std::io::Result<bool> {
    let mut batch = Vec::new();
    link.out.take(&mut batch, WRITE_BATCH);
    let step2 = batch.iter().any(|m| m.starts_with(&[0, 1]));
    let bytes: usize = batch.iter().map(Bytes::len).sum();
    let written = ws.send_binary(&batch).await;
    drop(batch);
    link.out.wrote(bytes);
    written.map(|()| step2)
}

/// What woke an idle connection.
enum Wake {
    Out(Next),
    Keepalive,
    In(Option<Result<Incoming, WsError>>),
}

/// What the pump does next: what woke it, with nothing left to drop, so
/// that no value lives on in the task across the awaits that follow.
enum Step {
    Write,
    Keepalive,
    Frame(Bytes),
    /// End the loop: with a kill to send, or none; `broken` when the
    /// socket failed (no close frame then).
    End {
        kill: Option<Kill>,
        broken: bool,
    },
}

fn step(wake: Wake, room: &tandem_protocol::RoomId) -> Step {
    let end = |kill| Step::End {
        kill: Some(kill),
        broken: false,
    };
    match wake {
        // A kill comes before queued messages (the outbox yields it first).
        Wake::Out(Next::Kill(kill)) => end(kill),
        Wake::Out(Next::Closed) => end(Kill::plain(close::INTERNAL_ERROR, "")),
        Wake::Out(Next::Messages) => Step::Write,
        Wake::Keepalive => Step::Keepalive,
        Wake::In(Some(Ok(Incoming::Binary(bytes)))) => Step::Frame(bytes),
        Wake::In(Some(Ok(Incoming::Text))) => end(Kill::plain(
            close::UNSUPPORTED_DATA,
            close::REASON_BINARY_ONLY,
        )),
        Wake::In(Some(Ok(Incoming::Close)) | None) => Step::End {
            kill: None,
            broken: false,
        },
        Wake::In(Some(Err(WsError::TooBig(_)))) => end(Kill::plain(
            close::MESSAGE_TOO_BIG,
            close::REASON_MESSAGE_TOO_BIG,
        )),
        Wake::In(Some(Err(WsError::Protocol(why)))) => {
            tracing::debug!(room = %room, why, "WebSocket protocol violation");
            end(Kill::plain(close::PROTOCOL_ERROR, close::REASON_BAD_FRAME))
        }
        Wake::In(Some(Err(WsError::Io(e)))) => {
            tracing::debug!(room = %room, error = %e, "socket error");
            Step::End {
                kill: None,
                broken: true,
            }
        }
    }
}

fn keepalive(shared: &Shared) -> Duration {
    Duration::from_millis(shared.config.keepalive_ms.max(100))
}

/// Moves frames between the socket and the room until either side ends.
/// A function returning an async block, not an `async fn`: the arguments
/// are taken apart here, so the task keeps only the parts it uses (an
/// `async fn` keeps its arguments as given and as moved into its body).
/// Every await but the idle wait runs in a box of its own: a task is as
/// large as its largest state, for its whole life.
fn pump(ws: Ws, up: Upgraded, shared: Arc<Shared>) -> impl Future<Output = ()> + Send {
    let Upgraded {
        room,
        form,
        link,
        mut resume,
        permit,
    } = up;
    let mut ws = ws;
    async move {
        // Counts the connection against the limit while it lives.
        let _permit = permit;
        let mut idle = Box::pin(tokio::time::sleep(keepalive(&shared)));
        let (kill, broken) = loop {
            // Biased: the outbox first (a kill comes before queued
            // messages), then the keepalive, then the client.
            let wake = std::future::poll_fn(|cx| {
                if let Poll::Ready(next) = link.out.poll_next(cx) {
                    return Poll::Ready(Wake::Out(next));
                }
                if idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Keepalive);
                }
                ws.poll_next(cx).map(Wake::In)
            })
            .await;
            match step(wake, &room) {
                Step::Write => {
                    let written = Box::pin(tokio::time::timeout(
                        SEND_TIMEOUT,
                        write_batch(&mut ws, &link),
                    ))
                    .await;
                    let Ok(Ok(step2)) = written else {
                        break (None, true);
                    };
                    if !Box::pin(send_ticket(&mut ws, &mut resume, &shared, &room)).await {
                        break (None, true);
                    }
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + keepalive(&shared));
                    if step2 && !link.step2_written().await {
                        break (Some(ended(&link)), false);
                    }
                }
                Step::Keepalive => {
                    let ka = [Bytes::from_static(KEEPALIVE)];
                    let written =
                        Box::pin(tokio::time::timeout(SEND_TIMEOUT, ws.send_binary(&ka))).await;
                    if !matches!(written, Ok(Ok(())))
                        || !Box::pin(send_ticket(&mut ws, &mut resume, &shared, &room)).await
                    {
                        break (None, true);
                    }
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + keepalive(&shared));
                }
                Step::Frame(bytes) => {
                    if !link.send(bytes).await {
                        break (Some(ended(&link)), false);
                    }
                }
                Step::End { kill, broken } => break (kill, broken),
            }
        };
        Box::pin(async move {
            link.leave().await;
            match kill {
                _ if broken => {}
                Some(kill) => close_with(&mut ws, form, kill).await,
                None => {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(None)).await;
                }
            }
        })
        .await;
    }
}

/// Sends a fresh resume ticket when one is due (half its life after the
/// last); false when the write failed.
async fn send_ticket(
    ws: &mut Ws,
    resume: &mut Option<Box<crate::tickets::Resume>>,
    shared: &Shared,
    room: &tandem_protocol::RoomId,
) -> bool {
    let now = std::time::Instant::now();
    let Some(msg) = crate::tickets::refresh(resume, shared.tickets.as_ref(), room, now) else {
        return true;
    };
    shared.metrics.tickets_issued.inc();
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send_binary(&[msg])).await,
        Ok(Ok(()))
    )
}

/// `POST /admin/drain[?exit=true]` with `Authorization: Bearer
/// <TANDEM_RELAY_SECRET>`: refuses new connections from now on, saves every
/// room to control and closes its clients with 1012, then answers
/// `{status, rooms, complete, exiting}`; with `exit`, the node then stops.
async fn drain(stream: &mut TcpStream, head: &handshake::Head, shared: &Shared, exit: bool) {
    let given = ops::bearer(head);
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

/// Why the room let go of a connection: the kill it queued (a graceful
/// shutdown queues 1001 first), else the room's actor died — 1011.
fn ended(link: &crate::hub::Link) -> Kill {
    link.out
        .take_kill()
        .unwrap_or_else(|| Kill::plain(close::INTERNAL_ERROR, ""))
}
