//! The HTTP request before the upgrade. The relay reads it itself so that it
//! can refuse with a plain HTTP status before any WebSocket exists:
//! 400 bad room id or not a WebSocket request, 401 no token, 403 refused by
//! control, 503 control unreachable, relay full or draining. `GET /healthz`,
//! `GET /readyz` and `POST /admin/drain` are answered here too.
//!
//! It also answers the upgrade itself ([`switching_protocols`]); the frames
//! that follow are `ws`'s.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tandem_protocol::{ErrorBody, ErrorCode, RoomId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A request head, read and parsed.
#[derive(Debug)]
pub struct Head {
    /// Whatever the client sent after the head (a client should wait for
    /// the 101; the bytes are kept rather than lost if one does not).
    pub rest: Bytes,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub is_websocket: bool,
    /// What the WebSocket handshake needs (RFC 6455, section 4.2.1).
    pub upgrade: UpgradeHeaders,
    /// The `Origin` header (browsers send it; other clients usually don't).
    pub origin: Option<String>,
    /// The `Authorization` header (`POST /admin/drain` needs the relay secret).
    pub authorization: Option<String>,
}

/// The headers of a WebSocket opening handshake besides `Upgrade`.
#[derive(Debug, Default, Clone)]
pub struct UpgradeHeaders {
    /// `Connection` lists the `Upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Version`, as sent.
    pub version: Option<String>,
    /// `Sec-WebSocket-Key`, as sent.
    pub key: Option<String>,
}

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`, `/readyz` or `/metrics`.
    Ops(super::ops::Ops),
    /// `POST /admin/drain[?exit=true]`: a rolling restart of this node.
    Drain { exit: bool },
    /// A room, with the token if one was given, and the URL form used.
    Room(RoomId, Option<String>, Form),
}

/// The URL form a client connected with: it decides how a revocation is told
/// (a stock y-websocket provider throws on text frames; the y-partykit form
/// also gets the JSON notice as a text frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `/{roomId}`
    YWebsocket,
    /// `/parties/main/{roomId}`
    Partykit,
}

/// Reads up to the end of the request head (`\r\n\r\n`).
pub async fn read_head(stream: &mut TcpStream) -> Result<Head, HttpError> {
    let mut buf = BytesMut::with_capacity(2048);
    let read = async {
        loop {
            if buf.len() >= MAX_HEAD {
                return Err(HttpError::new(
                    431,
                    ErrorCode::BadRequest,
                    "request head too large",
                ));
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|_| HttpError::silent())?;
            if n == 0 {
                return Err(HttpError::silent());
            }
            if let Some(head) = parse(&buf)? {
                return Ok(head);
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| HttpError::silent())?
}

/// Parses a request head once it is complete (`Ok(None)` until then).
pub(crate) fn parse(buf: &BytesMut) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => {
            return Err(HttpError::new(
                400,
                ErrorCode::BadRequest,
                "malformed HTTP request",
            ))
        }
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let is_websocket = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let upgrade = UpgradeHeaders {
        connection_upgrade: req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && String::from_utf8_lossy(h.value)
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }),
        version: header("sec-websocket-version"),
        key: header("sec-websocket-key"),
    };
    Ok(Some(Head {
        rest: Bytes::copy_from_slice(&buf[len..]),
        method: req.method.unwrap_or("").to_string(),
        path,
        query,
        is_websocket,
        upgrade,
        origin: header("origin"),
        authorization: header("authorization"),
    }))
}

/// Maps a request to a route: `/{roomId}` or `/parties/main/{roomId}`, with `?token=`.
pub fn route(head: &Head) -> Result<Route, HttpError> {
    if head.path == "/admin/drain" {
        if head.method != "POST" {
            return Err(HttpError::new(
                405,
                ErrorCode::MethodNotAllowed,
                "only POST",
            ));
        }
        let exit = head.query.as_deref().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "exit=true" || kv == "exit=1" || kv == "exit")
        });
        return Ok(Route::Drain { exit });
    }
    if head.method != "GET" {
        return Err(HttpError::new(405, ErrorCode::MethodNotAllowed, "only GET"));
    }
    if let Some(ops) = super::ops::Ops::of_path(&head.path) {
        return Ok(Route::Ops(ops));
    }
    let (name, form) = match head.path.strip_prefix("/parties/main/") {
        Some(name) => (name, Form::Partykit),
        None => (
            head.path.strip_prefix('/').unwrap_or_default(),
            Form::YWebsocket,
        ),
    };
    let room = RoomId::parse(name)
        .map_err(|e| HttpError::new(400, ErrorCode::BadRequest, &format!("bad room id: {e}")))?;
    check_upgrade(head)?;
    let token = head.query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty())
    });
    Ok(Route::Room(room, token, form))
}

/// The WebSocket version this relay speaks (RFC 6455).
const WS_VERSION: &str = "13";

/// Refuses a room request that is not a well-formed WebSocket opening
/// handshake, before any token is spent on it: 400, or 426 with the version
/// the relay speaks.
fn check_upgrade(head: &Head) -> Result<(), HttpError> {
    let up = &head.upgrade;
    if !head.is_websocket || !up.connection_upgrade {
        return Err(HttpError::new(
            400,
            ErrorCode::BadRequest,
            "expected a WebSocket upgrade",
        ));
    }
    if up.version.as_deref() != Some(WS_VERSION) {
        return Err(HttpError::new(
            426,
            ErrorCode::BadRequest,
            "unsupported WebSocket version (Sec-WebSocket-Version: 13 expected)",
        ));
    }
    // A key is 16 random bytes in base64: 24 characters.
    let key_ok = up.key.as_deref().is_some_and(|k| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(k)
            .is_ok_and(|raw| raw.len() == 16)
    });
    if !key_ok {
        return Err(HttpError::new(
            400,
            ErrorCode::BadRequest,
            "missing or malformed Sec-WebSocket-Key",
        ));
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of the key and
/// RFC 6455's GUID.
fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// The 101 answer to a checked opening handshake.
pub fn switching_protocols(head: &Head) -> String {
    let key = head.upgrade.key.as_deref().unwrap_or_default();
    let accept = accept_key(key);
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )
}

/// The first non-empty value of query parameter `name`.
pub fn query_param(head: &Head, name: &str) -> Option<String> {
    head.query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v.to_string())
    })
}

/// A refusal before the upgrade.
#[derive(Debug)]
pub struct HttpError {
    pub status: u16,
    body: Option<ErrorBody>,
}

impl HttpError {
    pub fn new(status: u16, code: ErrorCode, message: &str) -> Self {
        HttpError {
            status,
            body: Some(ErrorBody::new(code, message)),
        }
    }

    /// Close without answering (the client went away or is too slow).
    fn silent() -> Self {
        HttpError {
            status: 0,
            body: None,
        }
    }

    pub async fn write_to(&self, stream: &mut TcpStream) {
        if let Some(body) = &self.body {
            let json = serde_json::to_string(body).unwrap_or_default();
            respond(stream, self.status, &json).await;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a small JSON answer and closes.
pub async fn respond(stream: &mut TcpStream, status: u16, json: &str) {
    respond_with(stream, status, "application/json", json).await
}

/// Writes an answer with the given content type and closes.
pub async fn respond_with(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    // A 426 names the version the relay speaks (RFC 6455, section 4.4).
    let version = match status {
        426 => "sec-websocket-version: 13\r\n",
        _ => "",
    };
    let res = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{version}connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = stream.write_all(res.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, ws: bool) -> Head {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Head {
            rest: Bytes::new(),
            method: "GET".into(),
            path,
            query,
            is_websocket: ws,
            upgrade: UpgradeHeaders {
                connection_upgrade: ws,
                version: Some("13".into()),
                key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            },
            origin: None,
            authorization: None,
        }
    }

    #[test]
    fn routes() {
        let room = RoomId::parse("doc-abc").unwrap();
        assert_eq!(
            route(&head("/doc-abc?token=t1", true)).unwrap(),
            Route::Room(room.clone(), Some("t1".into()), Form::YWebsocket)
        );
        assert_eq!(
            route(&head("/parties/main/doc-abc?x=1&token=t2", true)).unwrap(),
            Route::Room(room.clone(), Some("t2".into()), Form::Partykit)
        );
        assert_eq!(
            route(&head("/doc-abc", true)).unwrap(),
            Route::Room(room.clone(), None, Form::YWebsocket)
        );
        assert_eq!(
            route(&head("/doc-abc?token=", true)).unwrap(),
            Route::Room(room, None, Form::YWebsocket)
        );
        assert_eq!(
            route(&head("/healthz", false)).unwrap(),
            Route::Ops(super::super::ops::Ops::Health)
        );
        for bad in ["/chat-1", "/", "/doc-", "/doc-a/b", "/parties/other/doc-a"] {
            assert_eq!(route(&head(bad, true)).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(
            route(&head("/doc-abc?token=t", false)).unwrap_err().status,
            400
        );
    }

    #[test]
    fn query_params() {
        let h = head("/doc-abc?resume=1&ticket=rt1.a.b&x", true);
        assert_eq!(query_param(&h, "resume").as_deref(), Some("1"));
        assert_eq!(query_param(&h, "ticket").as_deref(), Some("rt1.a.b"));
        assert_eq!(query_param(&h, "x"), None);
        assert_eq!(query_param(&h, "token"), None);
    }

    #[test]
    fn parses_heads_incrementally() {
        let full = b"GET /doc-1?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let partial = BytesMut::from(&full[..20]);
        assert!(parse(&partial).unwrap().is_none());
        let mut with_frame = BytesMut::from(&full[..]);
        with_frame.extend_from_slice(b"\x82\x00");
        let h = parse(&with_frame).unwrap().unwrap();
        assert_eq!(h.path, "/doc-1");
        assert_eq!(h.query.as_deref(), Some("token=x"));
        assert!(h.is_websocket);
        assert!(h.upgrade.connection_upgrade);
        assert_eq!(h.upgrade.version.as_deref(), Some("13"));
        assert_eq!(&h.rest[..], b"\x82\x00", "bytes after the head are kept");
        check_upgrade(&h).unwrap();
        assert!(parse(&BytesMut::from(&b"\x00\x01garbage\r\n\r\n"[..])).is_err());
    }

    #[test]
    fn answers_the_upgrade_as_rfc_6455_says() {
        // The example of RFC 6455, section 1.3.
        let h = head("/doc-abc?token=t1", true);
        let answer = switching_protocols(&h);
        assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(answer.ends_with("\r\n\r\n"));
    }

    #[test]
    fn refuses_malformed_upgrades_before_any_token_is_spent() {
        let status = |edit: &dyn Fn(&mut Head)| {
            let mut h = head("/doc-abc?token=t1", true);
            edit(&mut h);
            route(&h).err().map(|e| e.status)
        };
        assert_eq!(status(&|_| {}), None);
        assert_eq!(status(&|h| h.upgrade.connection_upgrade = false), Some(400));
        assert_eq!(status(&|h| h.upgrade.version = None), Some(426));
        assert_eq!(status(&|h| h.upgrade.version = Some("8".into())), Some(426));
        assert_eq!(status(&|h| h.upgrade.key = None), Some(400));
        for bad in ["", "not base64!", "AAAA", "dGhlIHNhbXBsZSBub25jZQ==AAAA"] {
            assert_eq!(
                status(&|h| h.upgrade.key = Some(bad.into())),
                Some(400),
                "{bad:?}"
            );
        }
    }
}
