//! The live side of the sync engine: one poll loop per workspace with open
//! event streams on this replica ([`SyncPollers`]), and the compactor.
//!
//! A workspace's loop reads two counters — the workspace's change seq and
//! the access-event feed's newest seq (with the events since the last look)
//! — every `TANDEM_SYNC_POLL_MS`, or at once when this replica pushes to the
//! workspace or changes someone's access. Streams wait on what it saw: a
//! moved change seq is a `poke`; an access event naming the stream's user
//! makes the stream re-check its access (and say `revoked` when it is gone).
//! Idle streams cost the database nothing, however many there are.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::db::write_tx;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{events, now_ms, sync};

/// Access events a loop remembers, for streams that look late.
const RECENT_ACCESS: usize = 1000;

/// What a workspace's poll loop last saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// False until the first look.
    pub ready: bool,
    /// The workspace's change seq.
    pub seq: i64,
    /// The access feed's newest seq.
    pub access_seq: i64,
    /// The latest access events `(seq, user)`, oldest first.
    pub recent: Arc<VecDeque<(i64, Option<String>)>>,
}

impl Seen {
    /// Whether a stream of `user_id` that has handled the access feed up to
    /// `handled` (-1: nothing yet) must re-check its access.
    pub fn recheck(&self, handled: i64, user_id: &str) -> bool {
        if handled < 0 {
            return true;
        }
        if self.access_seq <= handled {
            return false;
        }
        // The events after `handled` fell out of the window: cannot tell.
        if self.recent.front().is_none_or(|(s, _)| *s > handled + 1) {
            return true;
        }
        self.recent
            .iter()
            .any(|(s, u)| *s > handled && u.as_deref() == Some(user_id))
    }
}

/// The poll loops of this replica, by workspace id.
#[derive(Default)]
pub struct SyncPollers(Mutex<HashMap<String, watch::Sender<Seen>>>);

impl SyncPollers {
    /// Watches workspace `id`, starting its poll loop if it has none.
    pub fn watch(&self, state: &Arc<AppState>, id: &str) -> watch::Receiver<Seen> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(id) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Seen::default());
        map.insert(id.to_string(), tx.clone());
        tokio::spawn(poll(state.clone(), id.to_string(), tx));
        rx
    }

    /// Ends the loop of `id` if nobody watches it any more.
    fn retire(&self, id: &str, tx: &watch::Sender<Seen>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tx.receiver_count() > 0 {
            return false;
        }
        map.remove(id);
        true
    }

    fn retire_now(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Access events as a loop keeps them: `(seq, user)`.
type AccessNews = Vec<(i64, Option<String>)>;

/// One look: the change seq, and the access events after `access_seq`
/// (or, on the first look, `Err` with just the feed's newest seq).
fn look(
    c: &mut crate::db::DbConnection,
    ws: &str,
    access_seq: Option<i64>,
) -> Result<(i64, Result<AccessNews, i64>), ApiError> {
    let (seq, _) = sync::counters(c, ws)?;
    let access = match access_seq {
        None => Err(events::last_seq(c)?),
        Some(after) => Ok(events::after(c, after)?
            .into_iter()
            .map(|e| (e.seq, e.user_id))
            .collect()),
    };
    Ok((seq, access))
}

async fn poll(state: Arc<AppState>, id: String, tx: watch::Sender<Seen>) {
    let every = Duration::from_millis(state.config.sync_poll_ms.max(10));
    let waker = state.sync_wakers.subscribe(&id);
    let mut access_seq: Option<i64> = None;
    let mut recent: VecDeque<(i64, Option<String>)> = VecDeque::new();
    loop {
        let woken = waker.notified();
        let access = state.access_events.notified();
        let (i, a) = (id.clone(), access_seq);
        match state.db(move |c| look(c, &i, a)).await {
            Ok((seq, news)) => {
                let full = match news {
                    Err(last) => {
                        access_seq = Some(last);
                        false
                    }
                    Ok(list) => {
                        let full = list.len() as i64 >= events::PAGE;
                        for (s, u) in list {
                            access_seq = Some(s);
                            recent.push_back((s, u));
                            if recent.len() > RECENT_ACCESS {
                                recent.pop_front();
                            }
                        }
                        full
                    }
                };
                let next = Seen {
                    ready: true,
                    seq,
                    access_seq: access_seq.unwrap_or(0),
                    recent: Arc::new(recent.clone()),
                };
                tx.send_if_modified(|old| {
                    let moved =
                        !old.ready || old.seq != next.seq || old.access_seq != next.access_seq;
                    if moved {
                        *old = next;
                    }
                    moved
                });
                if full {
                    continue; // more access events wait
                }
            }
            Err(e) => tracing::warn!(error = %e, "sync poll failed; trying again"),
        }
        tokio::select! {
            _ = woken => {}
            _ = access => {}
            _ = tokio::time::sleep(every) => {}
            _ = tx.closed() => {}
            _ = state.shutdown.cancelled() => {
                state.sync_pollers.retire_now(&id);
                return;
            }
        }
        if tx.is_closed() && state.sync_pollers.retire(&id, &tx) {
            return;
        }
    }
}

/// Workspaces compacted per round (the rest wait for the next round).
const COMPACT_BATCH: i64 = 100;

/// The compactor: every `TANDEM_SYNC_COMPACT_INTERVAL_MS`, prunes
/// tombstones older than `TANDEM_SYNC_TOMBSTONE_HORIZON_MS` and measures
/// the log.
pub async fn compact(state: Arc<AppState>) {
    let every = Duration::from_millis(state.config.sync_compact_interval_ms.max(10));
    let horizon = i64::try_from(state.config.sync_tombstone_horizon_ms).unwrap_or(i64::MAX);
    loop {
        if !state.nap(std::future::pending(), every).await {
            return;
        }
        let cutoff = now_ms().saturating_sub(horizon);
        let round = state
            .db(move |c| {
                let mut pruned = 0;
                for ws in sync::workspaces_to_compact(c, cutoff, COMPACT_BATCH)? {
                    pruned += write_tx(c, |c| sync::compact(c, &ws, cutoff))?;
                }
                Ok((pruned, sync::log_size(c)?))
            })
            .await;
        match round {
            Ok((pruned, size)) => {
                state.metrics.sync.tombstones_pruned.inc_by(pruned as u64);
                state.metrics.sync.log_rows.set(size);
                if pruned > 0 {
                    tracing::info!(pruned, "sync tombstones pruned");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sync compaction failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(access_seq: i64, recent: &[(i64, Option<&str>)]) -> Seen {
        Seen {
            ready: true,
            seq: 0,
            access_seq,
            recent: Arc::new(
                recent
                    .iter()
                    .map(|(s, u)| (*s, u.map(String::from)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn only_events_naming_the_user_after_what_was_handled_count() {
        let s = seen(5, &[(3, Some("me")), (4, Some("you")), (5, None)]);
        assert!(s.recheck(-1, "me"), "first look always checks");
        assert!(!s.recheck(5, "me"), "nothing new");
        assert!(!s.recheck(3, "me"), "events 4 and 5 are not about me");
        assert!(s.recheck(2, "me"), "event 3 is");
        assert!(s.recheck(1, "you"), "event 2 fell out of the window");
    }
}
