//! Shared machinery of conversation event streams (`http/chat_stream.rs`):
//!
//! - [`StreamSlots`]: how many streams each user holds open on this replica,
//!   so one user cannot hold an unbounded number (`TANDEM_MAX_STREAMS_PER_USER`).
//! - [`Pollers`]: one poll loop per conversation with open streams on this
//!   replica. It looks at the conversation's event counter (one small read
//!   every `TANDEM_CHAT_POLL_MS`, or at once when this replica writes) and
//!   tells every stream of that conversation when it moved; streams read
//!   their events only then. Idle streams cost the database nothing, however
//!   many there are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::state::AppState;
use crate::store::{conversations, workspace_events};

/// Open streams per user.
#[derive(Default)]
pub struct StreamSlots(Arc<Mutex<HashMap<String, usize>>>);

/// One open stream of a user; the slot is given back when it drops.
pub struct StreamSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    user_id: String,
}

impl StreamSlots {
    /// A slot for `user_id`, unless they already hold `max`.
    pub fn take(&self, user_id: &str, max: usize) -> Option<StreamSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(user_id.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            counts: self.0.clone(),
            user_id: user_id.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

/// What a poll loop last saw of its conversation: its event counter, or
/// `None` once it is gone. Streams only wait for it to change.
pub type Seen = Option<i64>;

/// What a set of poll loops watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Feed {
    /// Conversations (`conversations.event_seq`).
    #[default]
    Chat,
    /// Workspaces (`workspaces.event_seq`).
    Workspace,
}

/// The poll loops of this replica, by conversation (or workspace) id.
#[derive(Default)]
pub struct Pollers(Mutex<HashMap<String, watch::Sender<Seen>>>, Feed);

impl Pollers {
    /// Watches conversation `id`, starting its poll loop if it has none.
    pub fn new(feed: Feed) -> Pollers {
        Pollers(Mutex::default(), feed)
    }

    pub fn watch(&self, state: &Arc<AppState>, id: &str) -> watch::Receiver<Seen> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(id) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Some(-1));
        map.insert(id.to_string(), tx.clone());
        tokio::spawn(poll(state.clone(), id.to_string(), tx, self.1));
        rx
    }

    /// Ends the loop of `id` if nobody watches it any more (decided under
    /// the lock `watch` takes, so no new watcher is left with a dead loop).
    fn retire(&self, id: &str, tx: &watch::Sender<Seen>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tx.receiver_count() > 0 {
            return false;
        }
        map.remove(id);
        true
    }

    /// Forgets the loop of `id` (the server is shutting down).
    fn retire_now(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Gauge of running poll loops (of conversations), decremented however the loop ends.
struct Running<'a>(&'a AppState, Feed);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.1 == Feed::Chat {
            self.0.metrics.chat_pollers.dec();
        }
    }
}

impl AppState {
    fn pollers(&self, feed: Feed) -> &Pollers {
        match feed {
            Feed::Chat => &self.chat_pollers,
            Feed::Workspace => &self.workspace_pollers,
        }
    }
}

async fn poll(state: Arc<AppState>, id: String, tx: watch::Sender<Seen>, feed: Feed) {
    if feed == Feed::Chat {
        state.metrics.chat_pollers.inc();
    }
    let _running = Running(&state, feed);
    let every = Duration::from_millis(state.config.chat_poll_ms.max(10));
    let waker = match feed {
        Feed::Chat => state.chat_events.subscribe(&id),
        Feed::Workspace => state.workspace_events.subscribe(&id),
    };
    loop {
        let woken = waker.notified();
        let i = id.clone();
        if feed == Feed::Chat {
            state.metrics.chat_polls.inc();
        }
        let seen = state.db(move |c| match feed {
            Feed::Chat => Ok(conversations::get(c, &i)?.map(|r| r.event_seq)),
            Feed::Workspace => workspace_events::seq(c, &i),
        });
        match seen.await {
            Ok(seen) => {
                tx.send_if_modified(|old| {
                    let moved = *old != seen;
                    *old = seen;
                    moved
                });
            }
            Err(e) => tracing::warn!(error = %e, "conversation poll failed; trying again"),
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(every) => {}
            _ = tx.closed() => {}
            _ = state.shutdown.cancelled() => {
                state.pollers(feed).retire_now(&id);
                return;
            }
        }
        if tx.is_closed() && state.pollers(feed).retire(&id, &tx) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_user_and_given_back() {
        let slots = StreamSlots::default();
        let a: Vec<_> = (0..3).filter_map(|_| slots.take("a", 3)).collect();
        assert_eq!(a.len(), 3);
        assert!(slots.take("a", 3).is_none());
        let b = slots.take("b", 3);
        assert!(b.is_some());
        drop(a);
        assert!(slots.take("a", 3).is_some());
        drop(b);
        assert!(slots.0.lock().unwrap().is_empty(), "nothing left behind");
    }
}
