//! The server's side of an open WebSocket (RFC 6455): frames read from a
//! client, frames written to it. The upgrade itself is in `handshake`.
//!
//! Written for what an idle connection costs. Between frames it holds no
//! buffer: each read takes what the socket has into a buffer on the stack,
//! and only the bytes of a frame not yet complete are kept, in an allocation
//! of their size that is freed once the frame is taken. A frame larger than
//! the stack buffer is read straight into an allocation of its length. There
//! are no wakers of its own (the socket's registration is the only one) and
//! a few words of state: 112 bytes, where tungstenite's stream took
//! 352 plus two waker `Arc`s and a read buffer it kept for life.
//!
//! Every method is cancel-safe: its state lives in the struct, so a
//! `select!` may drop a `next()` at any point without losing bytes.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes read from the socket at once onto the stack.
const STACK_READ: usize = 16 * 1024;
/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;
/// Messages at least this large are written from where they are (no copy).
const WRITE_DIRECT: usize = 16 * 1024;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A whole message from the client. Pings are answered and pongs dropped
/// inside [`WebSocket::next`]; they never come out.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Binary(Bytes),
    /// A text message (the relay speaks binary only; its content is dropped).
    Text,
    /// The client's close frame (answered already).
    Close,
}

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// A frame RFC 6455 forbids: the connection is closed with 1002.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A message longer than the limit (known from its header, before its
    /// payload is read): closed with 1009.
    #[error("message longer than {0} bytes")]
    TooBig(usize),
}

/// A fragmented message while its frames arrive (rare: boxed).
struct Partial {
    opcode: u8,
    payload: BytesMut,
}

pub struct WebSocket<S> {
    io: S,
    /// Bytes read that do not make a whole frame yet (no allocation while
    /// the socket is quiet).
    rbuf: BytesMut,
    partial: Option<Box<Partial>>,
    /// Control frames owed to the client (a pong, the answer to its close),
    /// written before anything else and before more is read.
    owed: Vec<u8>,
    max_message: usize,
    close_sent: bool,
    close_received: bool,
    /// The stream ended (closed, failed or at EOF): `next` yields `None`.
    ended: bool,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of the header itself.
    size: usize,
    /// Payload bytes.
    len: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A socket whose upgrade was answered; `read` holds bytes the client
    /// sent after its request head.
    pub fn new(io: S, read: &[u8], max_message: usize) -> Self {
        WebSocket {
            io,
            rbuf: BytesMut::from(read),
            partial: None,
            owed: Vec::new(),
            max_message,
            close_sent: false,
            close_received: false,
            ended: false,
        }
    }

    /// The next message; `None` once the stream ended. After an error it
    /// ends too.
    pub async fn next(&mut self) -> Option<Result<Incoming, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Bytes held for frames not yet complete (0 while the socket is quiet).
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity() + self.partial.as_ref().map_or(0, |p| p.payload.capacity())
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Err(e) = ready!(self.poll_write_owed(cx)) {
                return self.fail(e.into());
            }
            if self.close_sent && self.close_received {
                self.ended = true;
                return Poll::Ready(None);
            }
            let mut rbuf = std::mem::take(&mut self.rbuf);
            let step = self.take_frame(&mut rbuf);
            if rbuf.is_empty() {
                rbuf = BytesMut::new(); // frees what the frames came in
            }
            self.rbuf = rbuf;
            match step {
                Err(e) => return self.fail(e),
                Ok(Step::Message(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(Step::Consumed) => continue,
                Ok(Step::Need(missing)) => match ready!(self.poll_fill(cx, missing)) {
                    Ok(0) => {
                        self.ended = true;
                        return Poll::Ready(None);
                    }
                    Ok(_) => {}
                    Err(e) => return self.fail(e.into()),
                },
            }
        }
    }

    fn fail(&mut self, e: WsError) -> Poll<Option<Result<Incoming, WsError>>> {
        self.ended = true;
        self.rbuf = BytesMut::new();
        self.partial = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Reads more: onto the stack and then into `rbuf`, or, for the rest of
    /// a frame larger than the stack buffer, straight into an allocation of
    /// the frame's size.
    fn poll_fill(&mut self, cx: &mut Context<'_>, missing: usize) -> Poll<io::Result<usize>> {
        if missing > STACK_READ {
            if self.rbuf.capacity() - self.rbuf.len() < missing {
                let mut exact = BytesMut::with_capacity(self.rbuf.len() + missing);
                exact.put_slice(&self.rbuf);
                self.rbuf = exact;
            }
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut tmp = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut tmp))?;
        let got = tmp.filled();
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::from(got);
        } else {
            self.rbuf.extend_from_slice(got);
        }
        Poll::Ready(Ok(got.len()))
    }

    /// Takes one frame from the front of `buf` if it is all there.
    fn take_frame(&mut self, buf: &mut BytesMut) -> Result<Step, WsError> {
        let Some(h) = parse_header(buf)? else {
            return Ok(Step::Need(0));
        };
        if h.opcode < CLOSE {
            let so_far = self.partial.as_ref().map_or(0, |p| p.payload.len());
            if h.len.saturating_add(so_far) > self.max_message {
                return Err(WsError::TooBig(self.max_message));
            }
        }
        let total = h.size + h.len;
        if buf.len() < total {
            return Ok(Step::Need(total - buf.len()));
        }
        // A frame too large for the stack buffer was read into an allocation
        // of its own size (`poll_fill`): taken as it is, with no copy.
        let whole = total == buf.len() && h.len > STACK_READ;
        let payload = if whole {
            let mut frame = std::mem::take(buf);
            frame.advance(h.size);
            unmask(&mut frame, h.mask);
            frame.freeze()
        } else {
            let payload = &mut buf[h.size..total];
            unmask(payload, h.mask);
            let payload = Bytes::copy_from_slice(payload);
            buf.advance(total);
            payload
        };
        self.on_frame(h, payload)
    }

    fn on_frame(&mut self, h: Header, payload: Bytes) -> Result<Step, WsError> {
        match h.opcode {
            PING => {
                if !self.close_sent {
                    frame_header(&mut self.owed, PONG, payload.len());
                    self.owed.extend_from_slice(&payload);
                }
                Ok(Step::Consumed)
            }
            PONG => Ok(Step::Consumed),
            CLOSE => {
                let code = close_code(&payload)?;
                self.close_received = true;
                if !self.close_sent {
                    // Answer with the client's code (none when it gave none).
                    let echo = code.map(u16::to_be_bytes);
                    let echo = echo.as_ref().map_or(&[][..], |c| &c[..]);
                    frame_header(&mut self.owed, CLOSE, echo.len());
                    self.owed.extend_from_slice(echo);
                    self.close_sent = true;
                }
                Ok(Step::Message(Incoming::Close))
            }
            TEXT | BINARY if self.partial.is_some() => Err(WsError::Protocol(
                "a new message began before the last one ended",
            )),
            TEXT | BINARY if h.fin => Ok(Step::Message(message(h.opcode, payload))),
            TEXT | BINARY => {
                self.partial = Some(Box::new(Partial {
                    opcode: h.opcode,
                    payload: BytesMut::from(&payload[..]),
                }));
                Ok(Step::Consumed)
            }
            _ => {
                // CONTINUATION (parse_header refused every other opcode)
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol("a continuation frame began no message"));
                };
                partial.payload.extend_from_slice(&payload);
                if !h.fin {
                    return Ok(Step::Consumed);
                }
                let Some(done) = self.partial.take() else {
                    return Ok(Step::Consumed);
                };
                Ok(Step::Message(message(done.opcode, done.payload.freeze())))
            }
        }
    }

    /// Writes the control frames owed, then frees their buffer.
    fn poll_write_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.owed.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.owed))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed.drain(..n);
        }
        self.owed = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Writes `msgs` as binary frames with as few syscalls as it can: small
    /// messages are gathered into one buffer that lives only for this
    /// write; large ones are written from where they are. Control frames
    /// owed go first, so frames never interleave.
    pub async fn send_binary(&mut self, msgs: &[Bytes]) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_owed(cx)).await?;
        let small: usize = msgs
            .iter()
            .filter(|m| m.len() < WRITE_DIRECT)
            .map(|m| m.len() + 10)
            .sum();
        let mut buf = Vec::with_capacity(small.min(256 * 1024) + 10);
        for m in msgs {
            frame_header(&mut buf, BINARY, m.len());
            if m.len() < WRITE_DIRECT {
                buf.extend_from_slice(m);
            } else {
                self.io.write_all(&buf).await?;
                buf.clear();
                self.io.write_all(m).await?;
            }
        }
        if !buf.is_empty() {
            self.io.write_all(&buf).await?;
        }
        Ok(())
    }

    /// Writes one text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_owed(cx)).await?;
        let mut buf = Vec::with_capacity(text.len() + 10);
        frame_header(&mut buf, TEXT, text.len());
        buf.extend_from_slice(text.as_bytes());
        self.io.write_all(&buf).await
    }

    /// Starts the closing handshake with `code` and `reason` (or none), unless
    /// a close frame went out already (then only what is owed is written).
    /// Read on with [`next`](Self::next) until it yields `None` to see the
    /// client's answer.
    pub async fn close(&mut self, code: Option<(u16, &str)>) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_owed(cx)).await?;
        if self.close_sent {
            return Ok(());
        }
        self.close_sent = true;
        let mut payload = Vec::new();
        if let Some((code, reason)) = code {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(truncate(reason, MAX_CONTROL - 2).as_bytes());
        }
        let mut buf = Vec::with_capacity(payload.len() + 2);
        frame_header(&mut buf, CLOSE, payload.len());
        buf.extend_from_slice(&payload);
        self.io.write_all(&buf).await?;
        self.io.flush().await
    }
}

/// What one look at the read buffer gave.
enum Step {
    Message(Incoming),
    /// A control frame or a fragment was taken: look again.
    Consumed,
    /// The frame at the front is incomplete: this many more bytes finish it
    /// (0 while its header is incomplete).
    Need(usize),
}

fn message(opcode: u8, payload: Bytes) -> Incoming {
    match opcode {
        TEXT => Incoming::Text,
        _ => Incoming::Binary(payload),
    }
}

/// The frame header at the front of `b`, `None` while it is incomplete;
/// every frame RFC 6455 forbids a client to send is refused here, before its
/// payload is read.
fn parse_header(b: &[u8]) -> Result<Option<Header>, WsError> {
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(WsError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("a client's frame must be masked"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                let len = u64::from_be_bytes(a);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("payload length's top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= CLOSE && (!fin || len > MAX_CONTROL as u64) {
        return Err(WsError::Protocol(
            "a control frame must be whole and at most 125 bytes",
        ));
    }
    let Some(m) = b.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        size: at + 4,
        // Larger than any limit on a 32-bit target: refused as too big.
        len: usize::try_from(len).unwrap_or(usize::MAX),
    }))
}

/// The status code of a close frame's payload, checked (RFC 6455 §7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("a close frame's code is two bytes")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(WsError::Protocol("a close code a peer may not send"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::Protocol("a close reason that is not UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

/// Appends the header of an unmasked, final frame of `len` bytes.
fn frame_header(buf: &mut Vec<u8>, opcode: u8, len: usize) {
    buf.push(0x80 | opcode);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// XORs `buf` with the 4-byte `mask`, eight bytes at a time.
fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at mask byte 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use proptest::prelude::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
    use tokio_tungstenite::tungstenite::Message;

    /// A frame as a client sends it: masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(&mut out, opcode, payload.len());
        out[0] = if fin { out[0] } else { out[0] & 0x7F };
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        unmask(&mut out[start..], mask); // XOR both ways
        out
    }

    fn pair(max: usize) -> (WebSocket<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 20);
        (WebSocket::new(server, &[], max), client)
    }

    async fn next(ws: &mut WebSocket<DuplexStream>) -> Option<Result<Incoming, WsError>> {
        tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("next() should not hang")
    }

    #[test]
    fn unmask_matches_a_byte_at_a_time() {
        for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 100] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    /// A stock client (tungstenite, client role) over a real socket: every
    /// length encoding, a fragmented message, a ping, and the close handshake.
    #[tokio::test]
    async fn a_stock_client_round_trips_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = WebSocket::new(stream, &[], 1 << 20);
            let mut got = 0;
            loop {
                match ws.next().await {
                    Some(Ok(Incoming::Binary(b))) => {
                        got += 1;
                        ws.send_binary(&[b]).await.unwrap();
                        assert_eq!(ws.buffered_capacity(), 0, "nothing held between frames");
                    }
                    Some(Ok(Incoming::Close)) => {
                        ws.close(None).await.unwrap();
                    }
                    Some(other) => panic!("unexpected {other:?}"),
                    None => break got,
                }
            }
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut client =
            tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
        let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 300_000];
        for (i, n) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..*n).map(|j| (i + j) as u8).collect();
            client.send(Message::binary(body.clone())).await.unwrap();
            match client.next().await.unwrap().unwrap() {
                Message::Binary(b) => assert_eq!(&b[..], &body[..], "size {n}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        // Three fragments with a ping between the first two.
        let frag = |fin, op, data: &[u8]| {
            let header = FrameHeader {
                is_final: fin,
                opcode: op,
                ..FrameHeader::default()
            };
            Message::Frame(Frame::from_payload(header, Bytes::copy_from_slice(data)))
        };
        client
            .send(frag(false, OpCode::Data(Data::Binary), b"ab"))
            .await
            .unwrap();
        client
            .send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        client
            .send(frag(false, OpCode::Data(Data::Continue), b"cd"))
            .await
            .unwrap();
        client
            .send(frag(true, OpCode::Data(Data::Continue), b"ef"))
            .await
            .unwrap();
        let mut pong = false;
        loop {
            match client.next().await.unwrap().unwrap() {
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"hi");
                    pong = true;
                }
                Message::Binary(b) => {
                    assert_eq!(&b[..], b"abcdef");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pong, "the ping was answered");
        client
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await
            .unwrap();
        match client.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("expected the close answered, got {other:?}"),
        }
        assert_eq!(server.await.unwrap(), sizes.len() + 1);
    }

    #[tokio::test]
    async fn forbidden_frames_are_refused_before_their_payload() {
        let mask = [1, 2, 3, 4];
        let mut unmasked = client_frame(true, BINARY, b"x", mask);
        unmasked[1] &= 0x7F;
        let mut reserved = client_frame(true, BINARY, b"x", mask);
        reserved[0] |= 0x40;
        let mut top_bit = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
        top_bit.extend_from_slice(&mask);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", unmasked),
            ("reserved bits", reserved),
            ("unknown opcode", client_frame(true, 0x3, b"", mask)),
            ("fragmented ping", client_frame(false, PING, b"", mask)),
            (
                "ping over 125 bytes",
                client_frame(true, PING, &[0; 126], mask),
            ),
            (
                "continuation first",
                client_frame(true, CONTINUATION, b"x", mask),
            ),
            (
                "new message inside a fragmented one",
                [
                    client_frame(false, BINARY, b"a", mask),
                    client_frame(true, BINARY, b"b", mask),
                ]
                .concat(),
            ),
            (
                "one-byte close payload",
                client_frame(true, CLOSE, &[3], mask),
            ),
            (
                "close code 1005",
                client_frame(true, CLOSE, &1005u16.to_be_bytes(), mask),
            ),
            (
                "close code 999",
                client_frame(true, CLOSE, &999u16.to_be_bytes(), mask),
            ),
            (
                "close reason not UTF-8",
                client_frame(true, CLOSE, &[0x03, 0xE8, 0xFF, 0xFE], mask),
            ),
            ("length's top bit", top_bit),
        ];
        for (name, bytes) in cases {
            let (mut ws, mut client) = pair(1 << 20);
            client.write_all(&bytes).await.unwrap();
            match next(&mut ws).await {
                Some(Err(WsError::Protocol(_))) => {}
                other => panic!("{name}: expected a protocol error, got {other:?}"),
            }
            assert!(next(&mut ws).await.is_none(), "{name}: the stream ends");
            assert_eq!(ws.buffered_capacity(), 0, "{name}");
        }
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_from_its_header() {
        // The header alone of a frame one byte over the limit: refused
        // without waiting for (or buffering) its payload.
        let (mut ws, mut client) = pair(1000);
        let mut header = vec![0x82, 0x80 | 126];
        header.extend_from_slice(&1001u16.to_be_bytes());
        header.extend_from_slice(&[9, 9, 9, 9]);
        client.write_all(&header).await.unwrap();
        assert!(matches!(
            next(&mut ws).await,
            Some(Err(WsError::TooBig(1000)))
        ));
        // Fragments that add up to more than the limit.
        let (mut ws, mut client) = pair(1000);
        let mask = [5, 6, 7, 8];
        client
            .write_all(&client_frame(false, BINARY, &[1; 600], mask))
            .await
            .unwrap();
        client
            .write_all(&client_frame(true, CONTINUATION, &[1; 401], mask))
            .await
            .unwrap();
        assert!(matches!(
            next(&mut ws).await,
            Some(Err(WsError::TooBig(1000)))
        ));
        // Exactly at the limit is fine.
        let (mut ws, mut client) = pair(1000);
        client
            .write_all(&client_frame(true, BINARY, &[7; 1000], mask))
            .await
            .unwrap();
        assert!(matches!(next(&mut ws).await, Some(Ok(Incoming::Binary(b))) if b.len() == 1000));
    }

    #[tokio::test]
    async fn a_half_frame_is_held_only_until_it_completes() {
        let (mut ws, mut client) = pair(1 << 20);
        let frame = client_frame(true, BINARY, &[42; 50_000], [1, 1, 2, 3]);
        client.write_all(&frame[..20_000]).await.unwrap();
        let pending = tokio::time::timeout(Duration::from_millis(50), ws.next()).await;
        assert!(pending.is_err(), "no message from half a frame");
        let held = ws.buffered_capacity();
        assert!((20_000..=frame.len()).contains(&held), "held {held}");
        client.write_all(&frame[20_000..]).await.unwrap();
        match next(&mut ws).await {
            Some(Ok(Incoming::Binary(b))) => {
                assert!(b.len() == 50_000 && b.iter().all(|x| *x == 42))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(ws.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn a_close_started_here_ends_when_the_client_answers() {
        let (mut ws, mut client) = pair(1 << 20);
        ws.close(Some((4401, "TICKET_REFUSED"))).await.unwrap();
        let mut got = vec![0; 2 + 2 + 14];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], &[0x88, 16, 0x11, 0x31]);
        assert_eq!(&got[4..], b"TICKET_REFUSED");
        // A ping after our close is not answered; the client's close ends it.
        client
            .write_all(&client_frame(true, PING, b"p", [0; 4]))
            .await
            .unwrap();
        client
            .write_all(&client_frame(true, CLOSE, &4401u16.to_be_bytes(), [3; 4]))
            .await
            .unwrap();
        assert!(matches!(next(&mut ws).await, Some(Ok(Incoming::Close))));
        assert!(next(&mut ws).await.is_none());
        drop(ws);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing more was written: {rest:?}");
    }

    /// One message cut into fragments (`cuts` gives their lengths) with a
    /// ping after each fragment but the last.
    fn encode(message: &[u8], cuts: &[usize], mask: [u8; 4], pings: &mut Vec<Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = message;
        let mut first = true;
        for cut in cuts {
            if rest.len() <= *cut {
                break;
            }
            let (head, tail) = rest.split_at(*cut);
            let op = if first { BINARY } else { CONTINUATION };
            out.extend(client_frame(false, op, head, mask));
            let ping = vec![pings.len() as u8; pings.len() % 5];
            out.extend(client_frame(true, PING, &ping, mask));
            pings.push(ping);
            rest = tail;
            first = false;
        }
        let op = if first { BINARY } else { CONTINUATION };
        out.extend(client_frame(true, op, rest, mask));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Messages of any length, fragmented anywhere, with pings between
        /// fragments, arriving in reads cut anywhere: the same messages come
        /// out in order, each ping is answered with its payload, and nothing
        /// is held afterwards.
        #[test]
        fn frames_cut_anywhere_make_the_same_messages(
            messages in proptest::collection::vec(
                (
                    prop_oneof![0usize..200, 120usize..70_000],
                    proptest::collection::vec(1usize..40_000, 0..3),
                    any::<[u8; 4]>(),
                ),
                1..6,
            ),
            chunk in prop_oneof![1usize..8, 1usize..5_000, 10_000usize..100_000],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut wire = Vec::new();
                let mut pings = Vec::new();
                let mut sent = Vec::new();
                for (i, (len, cuts, mask)) in messages.iter().enumerate() {
                    let body: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
                    wire.extend(encode(&body, cuts, *mask, &mut pings));
                    sent.push(body);
                }
                let (mut ws, client) = pair(1 << 20);
                let (mut client_read, mut client_write) = tokio::io::split(client);
                let writer = tokio::spawn(async move {
                    for piece in wire.chunks(chunk) {
                        client_write.write_all(piece).await.unwrap();
                    }
                    client_write
                });
                for body in &sent {
                    match next(&mut ws).await {
                        Some(Ok(Incoming::Binary(b))) => assert_eq!(&b[..], &body[..]),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(ws.buffered_capacity(), 0);
                let _client_write = writer.await.unwrap();
                ws.close(None).await.unwrap(); // flushes the pongs owed first
                let mut expected = Vec::new();
                for ping in &pings {
                    frame_header(&mut expected, PONG, ping.len());
                    expected.extend_from_slice(ping);
                }
                expected.extend_from_slice(&[0x88, 0]);
                let mut got = vec![0; expected.len()];
                client_read.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expected);
            });
        }
    }
}
