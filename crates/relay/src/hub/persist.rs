//! A room's persistence. An actor first loads its room from control (joins
//! wait in its queue meanwhile, so nobody sees an empty document that is
//! later replaced). After changes it saves the state-vector diff since what
//! control acknowledged: debounced (`save_debounce` after the last change,
//! at most `save_max_delay` after the first unsaved one), at once when the
//! last client leaves, and on shutdown. The room stays dirty until control
//! acknowledges; failures are retried with backoff and never drop state.
//!
//! With several nodes, every node holds every change, so one node saves a
//! room at a time: the holder of the room's lease in Redis, taken (or
//! renewed) at each save. A node that finds the lease taken leaves the save
//! to its holder and settles with the holder's `Saved` notices (see
//! `cluster::ledger`); if none settles it within `save_lease +
//! save_max_delay` (the holder died, notices were lost), or Redis cannot be
//! asked, it saves by itself. Saves merge at control, so a second saver
//! costs bytes, never data.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;
use yrs::{ReadTxn, StateVector, Transact};

use super::actor::{Loading, RoomActor};
use super::{Cmd, Kill};
use crate::cluster::envelope::PeerId;
use crate::cluster::ledger::Owed;
use crate::control_client::ControlError;
use crate::room::Room;
use tandem_protocol::collab::close;

/// Where the room stands with control.
pub(super) struct Persist {
    /// What control has acknowledged (its stored state covers this).
    pub(super) acked: StateVector,
    /// When the first change not yet acknowledged happened.
    pub(super) dirty_since: Option<Instant>,
    last_change: Instant,
    saving: bool,
    /// After a failure or a deferral: not before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// `updates_applied` of the room when last looked at.
    seen_updates: u64,
    /// With several nodes: when another node's save last settled some of
    /// what this one owes (a saver that keeps settling is alive).
    pub(super) settled_at: Option<Instant>,
}

impl Default for Persist {
    fn default() -> Self {
        Persist {
            acked: StateVector::default(),
            dirty_since: None,
            last_change: Instant::now(),
            saving: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            seen_updates: 0,
            settled_at: None,
        }
    }
}

/// A stored state at least this large is integrated on a blocking thread
/// while the room already serves it to empty joiners.
pub(super) const INTEGRATE_APART: usize = 64 * 1024;

pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a save attempt reports to its actor.
pub(super) struct SaveReport {
    /// The room's state vector when the save started.
    sv: StateVector,
    /// The room's `updates_applied` when the save started.
    upto: u64,
    /// With several nodes: what this node owed and could vouch for then.
    cluster: Option<(Owed, Vec<(PeerId, u64)>)>,
    outcome: Result<Outcome, ControlError>,
}

enum Outcome {
    Saved,
    /// Another node holds the room's lease: it saves.
    LeftToHolder,
}

/// Raises `acked` to cover `sv` too (both say "control has these blocks").
pub(super) fn raise_acked(acked: &mut StateVector, sv: &StateVector) {
    for (client, clock) in sv.iter() {
        acked.set_max(*client, *clock);
    }
}

impl RoomActor {
    pub(super) async fn load(&mut self) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = std::time::Instant::now();
            let attempt = tokio::select! {
                _ = self.hub.shutdown.cancelled() => return false,
                r = self.hub.control.load_snapshot(&self.id) => r,
            };
            match attempt {
                Ok(loaded) => {
                    self.hub
                        .metrics
                        .load_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.hub.metrics.loads.inc();
                    let state = loaded.state;
                    self.learn_limit(loaded.max_document_bytes);
                    if state.len() >= INTEGRATE_APART {
                        // Clients join, and empty ones get the stored bytes,
                        // while the state is integrated (see `Loading`).
                        self.room.begin_load(&state);
                        let len = state.len();
                        let task = tokio::task::spawn_blocking(move || Room::integrate(&state));
                        self.loading = Some(Loading::new(task, len));
                        tracing::info!(bytes = len, "room loaded; integrating");
                        return true;
                    }
                    if !state.is_empty() {
                        if let Err(e) = self.room.load(&state) {
                            tracing::error!(error = %e, "stored state does not decode; starting from what clients send");
                        }
                    }
                    self.mark_loaded();
                    tracing::info!(bytes = state.len(), "room loaded");
                    return true;
                }
                Err(ControlError::Refused(404)) => {
                    tracing::warn!("room's resource does not exist; serving it empty, unsaved");
                    return true;
                }
                Err(e) => {
                    self.hub.metrics.load_failures.inc();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot load room; joiners wait");
                    tokio::select! {
                        _ = self.hub.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The room's document is what control stores: nothing to save yet.
    pub(super) fn mark_loaded(&mut self) {
        self.persist.acked = self.room.doc().transact().state_vector();
        self.persist.seen_updates = self.room.stats().updates_applied;
    }

    /// The document limit: the smaller of the configured one and control's.
    fn learn_limit(&mut self, from_control: Option<usize>) {
        let mut limits = self.room.limits().clone();
        limits.max_document_bytes = match (limits.max_document_bytes, from_control) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.room.set_limits(limits);
    }

    pub(super) fn is_clean(&self) -> bool {
        self.persist.dirty_since.is_none() && !self.persist.saving && self.loading.is_none()
    }

    /// Marks the room dirty when updates were applied since last time.
    pub(super) fn note_changes(&mut self) {
        let applied = self.room.stats().updates_applied;
        if applied == self.persist.seen_updates {
            return;
        }
        self.persist.seen_updates = applied;
        let now = Instant::now();
        self.persist.last_change = now;
        if self.persist.dirty_since.is_none() {
            self.persist.dirty_since = Some(now);
            self.hub.metrics.dirty_rooms.inc();
        }
    }

    /// When the next save should start, if one is due.
    pub(super) fn next_save_at(&self) -> Option<Instant> {
        let p = &self.persist;
        let since = p.dirty_since?;
        if p.saving {
            return None;
        }
        let cfg = &self.hub.config;
        let due = if self.conns.is_empty() {
            Instant::now()
        } else {
            (p.last_change + cfg.save_debounce).min(since + cfg.save_max_delay)
        };
        Some(p.retry_at.map_or(due, |r| r.max(due)))
    }

    /// The update control lacks (diff against its acknowledged state vector).
    fn pending_update(&self) -> (StateVector, Vec<u8>) {
        let txn = self.room.doc().transact();
        (
            txn.state_vector(),
            txn.encode_state_as_update_v1(&self.persist.acked),
        )
    }

    /// Whether this node must save without asking for the lease: it has
    /// owed changes for longer than a live saver would have needed to settle
    /// any of them (counted from the last settlement, so a room under
    /// constant typing, never settled completely, still leaves it to the saver).
    fn must_save_alone(&self) -> bool {
        let cfg = &self.hub.config;
        let Some(dirty) = self.persist.dirty_since else {
            return false;
        };
        let waiting_since = self.persist.settled_at.map_or(dirty, |s| s.max(dirty));
        waiting_since.elapsed() >= cfg.save_lease + cfg.save_max_delay
    }

    pub(super) fn start_save(&mut self) {
        let Some(me) = self.me.upgrade() else { return };
        if self.persist.backoff != FIRST_BACKOFF {
            // The last attempt failed: this one is a retry.
            self.hub.metrics.save_retries.inc();
        }
        let big = self.room.size_bound() >= 256 * 1024;
        let (sv, update) = super::actor::heavy(big, || self.pending_update());
        let upto = self.room.stats().updates_applied;
        self.persist.saving = true;
        let cluster = self
            .peers
            .as_ref()
            .map(|p| (p.ledger.owed(), p.ledger.covers()));
        let lease = self
            .peers
            .as_ref()
            .filter(|_| !self.must_save_alone())
            .map(|p| (p.cluster.clone(), p.ledger.me()));
        let ttl = self.hub.config.save_lease;
        let (control, metrics, room) = (
            self.hub.control.clone(),
            self.hub.metrics.clone(),
            self.id.clone(),
        );
        let span = tracing::info_span!("save", room = %room);
        self.hub.tracker.spawn(
            async move {
                if let Some((redis, peer)) = lease {
                    match redis.claim_lease(&room, peer, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let outcome = Ok(Outcome::LeftToHolder);
                            let report = SaveReport {
                                sv,
                                upto,
                                cluster,
                                outcome,
                            };
                            let _ = me.send(Cmd::Saved(Box::new(report))).await;
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "save lease unavailable; saving anyway")
                        }
                    }
                }
                let started = std::time::Instant::now();
                let bytes = update.len();
                let outcome = control.save_snapshot(&room, update).await;
                metrics
                    .save_seconds
                    .observe(started.elapsed().as_secs_f64());
                if outcome.is_ok() {
                    metrics.bytes_saved.inc_by(bytes as u64);
                    tracing::debug!(bytes, ms = started.elapsed().as_millis() as u64, "saved");
                }
                let outcome = outcome.map(|()| Outcome::Saved);
                let _ = me
                    .send(Cmd::Saved(Box::new(SaveReport {
                        sv,
                        upto,
                        cluster,
                        outcome,
                    })))
                    .await;
            }
            .instrument(span),
        );
    }

    pub(super) fn saved(&mut self, report: SaveReport) {
        self.persist.saving = false;
        let SaveReport {
            sv,
            upto,
            cluster,
            outcome,
        } = report;
        match outcome {
            Ok(Outcome::Saved) => {
                self.hub.metrics.saves.inc();
                raise_acked(&mut self.persist.acked, &sv);
                self.persist.retry_at = None;
                self.persist.backoff = FIRST_BACKOFF;
                if let Some((owed, covers)) = cluster {
                    self.after_own_save(&owed, &sv, covers);
                }
                // Changes that arrived while the save ran keep the room dirty.
                if self.room.stats().updates_applied == upto {
                    self.mark_clean();
                }
            }
            Ok(Outcome::LeftToHolder) => {
                self.hub.metrics.saves_left_to_holder.inc();
                self.persist.retry_at = Some(Instant::now() + self.hub.config.save_max_delay);
            }
            Err(ControlError::Refused(404)) => {
                tracing::warn!("room's resource was deleted; dropping its unsaved changes");
                self.mark_clean();
            }
            Err(ControlError::TooLarge) => {
                // Terminal: retrying would be refused again. Tell everyone,
                // drop what cannot be stored, and let the room go.
                self.hub.metrics.saves_too_large.inc();
                tracing::error!(
                    clients = self.conns.len(),
                    "control refused the room's document as too large (413); its unsaved changes are dropped and its clients closed"
                );
                self.mark_clean();
                self.unsaveable = true;
                self.kill_all(Kill::plain(
                    close::DOCUMENT_TOO_LARGE,
                    close::REASON_DOCUMENT_UNSAVEABLE,
                ));
            }
            Err(e) => {
                self.hub.metrics.save_failures.inc();
                let wait = self.persist.backoff;
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "save failed; the room stays dirty");
                self.persist.retry_at = Some(Instant::now() + wait);
                self.persist.backoff = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }

    pub(super) fn mark_clean(&mut self) {
        self.persist.retry_at = None;
        if self.persist.dirty_since.take().is_some() {
            self.hub.metrics.dirty_rooms.dec();
        }
    }

    /// On shutdown: saves until control acknowledges or the deadline passes
    /// (without asking for the lease: the node is leaving).
    pub(super) async fn flush(&mut self) {
        self.note_changes();
        let deadline = Instant::now() + self.hub.config.flush_deadline;
        while self.persist.dirty_since.is_some() && Instant::now() < deadline {
            let (sv, update) = self.pending_update();
            let upto = self.room.stats().updates_applied;
            let outcome = match tokio::time::timeout_at(
                deadline,
                self.hub.control.save_snapshot(&self.id, update),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => break,
            };
            let failed = outcome.is_err();
            let outcome = outcome.map(|()| Outcome::Saved);
            self.saved(SaveReport {
                sv,
                upto,
                cluster: None,
                outcome,
            });
            if failed {
                tokio::time::sleep(
                    Duration::from_millis(200)
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
        if self.persist.dirty_since.is_none() {
            tracing::info!("flushed on shutdown");
        }
    }
}
