//! A stream that first yields bytes already read from it: the relay reads
//! the HTTP request itself (to verify the token with control before
//! upgrading), and whatever came after the head goes to tungstenite first.
//!
//! It also holds no read buffer while the socket is idle: tungstenite is
//! given a small read buffer (what it keeps per connection), and each read
//! here takes whatever the socket has into a buffer on the stack; what does
//! not fit the caller's buffer is kept in an allocation of exactly its size,
//! freed as soon as it is consumed.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once (on the stack).
const STACK_READ: usize = 16 * 1024;

pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if !self.prefix.has_remaining() {
                self.prefix = Bytes::new(); // frees it
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= STACK_READ {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut tmp = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut self.inner).poll_read(cx, &mut tmp) {
            Poll::Ready(Ok(())) => {
                let got = tmp.filled();
                let n = got.len().min(buf.remaining());
                buf.put_slice(&got[..n]);
                if n < got.len() {
                    self.prefix = Bytes::copy_from_slice(&got[n..]);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn replays_the_prefix_then_reads_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut s = String::new();
        p.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }

    #[tokio::test]
    async fn small_reads_keep_what_did_not_fit_and_free_it_once_read() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        a.write_all(&data).await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::new(), b);
        let mut got = Vec::new();
        let mut small = [0u8; 100];
        loop {
            let n = p.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            // Whatever is kept is less than one stack read.
            assert!(p.prefix.len() < STACK_READ);
        }
        assert_eq!(got, data);
        assert!(p.prefix.is_empty());
    }
}
