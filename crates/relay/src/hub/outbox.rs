//! A connection's send queue: what the room queues for one client, and the
//! kill that may end it.
//!
//! One small allocation per connection (a tokio channel costs a 32-slot block
//! up front, plus a byte counter and a oneshot for the kill). The queue is a
//! `VecDeque` that is given back to the allocator whenever the writer empties
//! it, so an idle connection holds no queue memory.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::Kill;

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// Bytes queued and being written (the writer subtracts what it wrote).
    bytes: usize,
    kill: Option<Kill>,
    /// The room let go of the connection (nothing more will be queued).
    closed: bool,
    /// The connection's task, waiting for something to do. A waker rather
    /// than a `Notify`: waiting then costs the task no future of its own.
    waiter: Option<Waker>,
}

/// Shared by the room (producer) and the connection's task (consumer).
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
}

/// Why [`Outbox::push`] refused a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// The queue holds its most messages, or the byte budget is spent.
    Slow,
    /// The connection was closed or killed.
    Closed,
}

/// What the connection's task takes next.
#[derive(Debug)]
pub enum Next {
    /// Messages to write, oldest first.
    Messages,
    /// The room closes the connection with this.
    Kill(Kill),
    /// The room let go of the connection without a kill (its actor ended).
    Closed,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` unless `max_len` messages are queued or it would take
    /// the queued bytes past `budget` (one message always fits an empty queue).
    pub fn push(&self, msg: Bytes, max_len: usize, budget: usize) -> Result<(), Full> {
        let mut s = self.lock();
        if s.closed || s.kill.is_some() {
            return Err(Full::Closed);
        }
        if s.queue.len() >= max_len || (s.bytes > 0 && s.bytes + msg.len() > budget) {
            return Err(Full::Slow);
        }
        s.bytes += msg.len();
        s.queue.push_back(msg);
        let waiter = s.waiter.take();
        drop(s);
        if let Some(w) = waiter {
            w.wake();
        }
        Ok(())
    }

    /// Tells the connection to close with `kill` (what is still queued is
    /// not written).
    pub fn kill(&self, kill: Kill) {
        let mut s = self.lock();
        if s.kill.is_none() && !s.closed {
            s.kill = Some(kill);
            s.queue = VecDeque::new();
        }
        s.closed = true;
        let waiter = s.waiter.take();
        drop(s);
        if let Some(w) = waiter {
            w.wake();
        }
    }

    /// The room let go of the connection (without a kill, if none was given).
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let waiter = s.waiter.take();
        drop(s);
        if let Some(w) = waiter {
            w.wake();
        }
    }

    /// Waits until there is something to do: a kill first, then queued
    /// messages (take them with [`Outbox::take`]), then the close.
    pub fn next(&self) -> impl Future<Output = Next> + '_ {
        std::future::poll_fn(|cx| self.poll_next(cx))
    }

    /// [`next`](Self::next) as a poll: one waiter (the connection's task).
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let mut s = self.lock();
        if let Some(kill) = s.kill.take() {
            return Poll::Ready(Next::Kill(kill));
        }
        if !s.queue.is_empty() {
            return Poll::Ready(Next::Messages);
        }
        if s.closed {
            return Poll::Ready(Next::Closed);
        }
        match &s.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Moves up to `max` queued messages into `into`; frees the queue's
    /// memory when this empties it (an idle connection holds none).
    pub fn take(&self, into: &mut Vec<Bytes>, max: usize) {
        let mut s = self.lock();
        let n = s.queue.len().min(max);
        into.extend(s.queue.drain(..n));
        if s.queue.is_empty() {
            s.queue = VecDeque::new();
        }
    }

    /// The writer wrote `n` bytes of what was queued.
    pub fn wrote(&self, n: usize) {
        let mut s = self.lock();
        s.bytes = s.bytes.saturating_sub(n);
    }

    /// The kill, if the room sent one (after the connection's task ended its loop).
    pub fn take_kill(&self) -> Option<Kill> {
        self.lock().kill.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_bytes_and_freed_when_emptied() {
        let o = Outbox::default();
        for _ in 0..4 {
            o.push(Bytes::from_static(b"ab"), 4, 100).unwrap();
        }
        assert_eq!(o.push(Bytes::from_static(b"ab"), 4, 100), Err(Full::Slow));
        let mut got = Vec::new();
        o.take(&mut got, 64);
        assert_eq!(got.len(), 4);
        // Bytes still count until written.
        assert_eq!(o.push(Bytes::from(vec![0; 95]), 64, 100), Err(Full::Slow));
        o.wrote(8);
        // One message always fits an empty queue, whatever its size.
        o.push(Bytes::from(vec![0; 500]), 64, 100).unwrap();
        got.clear();
        o.take(&mut got, 64);
        o.wrote(500);
        for _ in 0..100 {
            o.push(Bytes::from_static(b"x"), 1000, 1000).unwrap();
        }
        assert!(o.lock().queue.capacity() >= 100);
        got.clear();
        o.take(&mut got, 64);
        assert!(o.lock().queue.capacity() >= 36);
        o.take(&mut got, 64);
        assert_eq!(got.len(), 100);
        assert_eq!(
            o.lock().queue.capacity(),
            0,
            "an emptied queue that grew is freed"
        );
    }

    #[tokio::test]
    async fn a_kill_comes_before_queued_messages_and_ends_the_queue() {
        let o = Outbox::default();
        o.push(Bytes::from_static(b"a"), 8, 100).unwrap();
        assert!(matches!(o.next().await, Next::Messages));
        o.kill(Kill::plain(1001, "bye"));
        match o.next().await {
            Next::Kill(k) => assert_eq!(k.code, 1001),
            other => panic!("{other:?}"),
        }
        assert!(matches!(o.next().await, Next::Closed));
        assert_eq!(o.push(Bytes::from_static(b"b"), 8, 100), Err(Full::Closed));
    }

    #[tokio::test]
    async fn next_wakes_on_a_push_from_another_task() {
        let o = std::sync::Arc::new(Outbox::default());
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { matches!(o.next().await, Next::Messages) }
        });
        tokio::task::yield_now().await;
        o.push(Bytes::from_static(b"a"), 8, 100).unwrap();
        assert!(waiter.await.unwrap());
        o.close();
        let mut got = Vec::new();
        o.take(&mut got, 8);
        assert!(matches!(o.next().await, Next::Closed));
    }
}
