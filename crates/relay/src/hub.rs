//! Room actors and their registry.
//!
//! Each live room is one task that owns a sans-IO [`Room`] and the send
//! queues of its connections; everything reaches it as a [`Cmd`] on its
//! channel, so a room is never touched by two tasks at once and no lock is
//! held across an await. The registry maps a room id to the one running
//! actor: exactly one live copy per room id, created on the first join.
//! An actor whose room stayed empty (and saved) for the idle period removes
//! itself from the registry and stops; a join that raced with that retries on
//! a fresh actor.
//!
//! Persistence: an actor first loads its room from control (joins wait in
//! its queue meanwhile, so nobody sees an empty document that is later
//! replaced). After changes it saves the state-vector diff since control's
//! last acknowledgement: debounced (`save_debounce` after the last change, at
//! most `save_max_delay` after the first unsaved one), at once when the last
//! client leaves, and on shutdown. The room stays dirty until control
//! acknowledges; failures are retried with backoff and never drop state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tandem_protocol::collab::{close, ServerNotice, UserAccess};
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use yrs::{ReadTxn, StateVector, Transact};

use crate::control_client::{ControlClient, ControlError};
use crate::metrics::Metrics;
use crate::room::{ConnId, Outgoing, Room};

/// Who is on a connection, as control verified them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
}

impl Member {
    pub fn writable(&self) -> bool {
        self.role >= Role::Editor
    }
}

/// Tells a connection to close: an optional text notice first, then the close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub notice: Option<String>,
    pub code: u16,
    pub reason: &'static str,
}

impl Kill {
    pub fn revoked() -> Kill {
        let notice = ServerNotice::PermissionRevoked {
            reason: "Your access to this resource has been revoked".into(),
        };
        Kill {
            notice: serde_json::to_string(&notice).ok(),
            code: close::POLICY_VIOLATION,
            reason: close::REASON_AUTH_FORBIDDEN,
        }
    }

    pub fn plain(code: u16, reason: &'static str) -> Kill {
        Kill {
            notice: None,
            code,
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("room is full")]
    Full,
    #[error("relay is shutting down")]
    ShuttingDown,
}

enum Cmd {
    Join {
        conn: ConnId,
        member: Member,
        out: mpsc::Sender<Bytes>,
        kill: oneshot::Sender<Kill>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Frame {
        conn: ConnId,
        bytes: Bytes,
    },
    Leave {
        conn: ConnId,
    },
    Users {
        reply: oneshot::Sender<Vec<String>>,
    },
    Access {
        results: Vec<UserAccess>,
    },
    /// A save finished: control has everything up to `sv` when it succeeded.
    Saved {
        sv: StateVector,
        outcome: Result<(), ControlError>,
    },
    Shutdown,
}

/// Settings of every room actor.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub max_connections_per_room: usize,
    pub send_queue: usize,
    pub room_idle: Duration,
    pub awareness_timeout: Duration,
    /// Save this long after the last change…
    pub save_debounce: Duration,
    /// …but no later than this after the first unsaved change.
    pub save_max_delay: Duration,
    /// How long shutdown keeps trying to save a dirty room.
    pub flush_deadline: Duration,
}

#[derive(Clone)]
struct RoomHandle {
    tx: mpsc::Sender<Cmd>,
    generation: u64,
}

/// A connection's end of its room: where to send frames, what to write out.
pub struct Link {
    pub conn: ConnId,
    pub outbound: mpsc::Receiver<Bytes>,
    pub kill: oneshot::Receiver<Kill>,
    room: mpsc::Sender<Cmd>,
}

impl Link {
    /// Hands a frame from the client to the room (waits if the room is busy).
    pub async fn send(&self, bytes: Bytes) -> bool {
        self.room
            .send(Cmd::Frame {
                conn: self.conn,
                bytes,
            })
            .await
            .is_ok()
    }

    /// Leaves the room (also fine if the room already dropped this connection).
    pub async fn leave(&self) {
        let _ = self.room.send(Cmd::Leave { conn: self.conn }).await;
    }
}

pub struct Hub {
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
    config: HubConfig,
    next_id: AtomicU64,
    control: ControlClient,
    pub metrics: Arc<Metrics>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(
        config: HubConfig,
        control: ControlClient,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            config,
            next_id: AtomicU64::new(1),
            control,
            metrics,
            tracker,
            shutdown,
        })
    }

    fn handle(self: &Arc<Hub>, room: &RoomId) -> Option<RoomHandle> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let mut rooms = self.rooms.lock().ok()?;
        if let Some(h) = rooms.get(room).filter(|h| !h.tx.is_closed()) {
            return Some(h.clone());
        }
        let (tx, rx) = mpsc::channel(256);
        let handle = RoomHandle {
            tx,
            generation: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        rooms.insert(room.clone(), handle.clone());
        self.metrics.rooms.inc();
        let actor = RoomActor {
            id: room.clone(),
            generation: handle.generation,
            room: Room::new(),
            conns: HashMap::new(),
            hub: self.clone(),
            persist: Persist::default(),
            me: handle.tx.downgrade(),
        };
        let span = tracing::info_span!("room", room = %room);
        self.tracker.spawn(actor.run(rx).instrument(span));
        Some(handle)
    }

    /// Joins `member` to `room`, starting the room if it is not live.
    pub async fn join(self: &Arc<Hub>, room: &RoomId, member: Member) -> Result<Link, JoinError> {
        loop {
            let handle = self.handle(room).ok_or(JoinError::ShuttingDown)?;
            let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (out_tx, out_rx) = mpsc::channel(self.config.send_queue.max(1));
            let (kill_tx, kill_rx) = oneshot::channel();
            let (reply_tx, reply_rx) = oneshot::channel();
            let cmd = Cmd::Join {
                conn,
                member: member.clone(),
                out: out_tx,
                kill: kill_tx,
                reply: reply_tx,
            };
            if handle.tx.send(cmd).await.is_err() {
                continue; // the actor stopped between lookup and send
            }
            match reply_rx.await {
                Ok(Ok(())) => {
                    return Ok(Link {
                        conn,
                        outbound: out_rx,
                        kill: kill_rx,
                        room: handle.tx,
                    })
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => continue, // the actor was stopping; try a fresh one
            }
        }
    }

    fn live(&self) -> Vec<(RoomId, mpsc::Sender<Cmd>)> {
        self.rooms
            .lock()
            .map(|r| r.iter().map(|(id, h)| (id.clone(), h.tx.clone())).collect())
            .unwrap_or_default()
    }

    /// The live rooms with the distinct users in each.
    pub async fn rooms_and_users(&self) -> Vec<(RoomId, Vec<String>)> {
        let mut out = Vec::new();
        for (id, tx) in self.live() {
            let (reply, rx) = oneshot::channel();
            if tx.send(Cmd::Users { reply }).await.is_ok() {
                if let Ok(users) = rx.await {
                    out.push((id, users));
                }
            }
        }
        out
    }

    /// Applies fresh access results to a room: kicks who lost access, updates roles.
    pub async fn apply_access(&self, room: &RoomId, results: Vec<UserAccess>) {
        let tx = self
            .rooms
            .lock()
            .ok()
            .and_then(|r| r.get(room).map(|h| h.tx.clone()));
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Access { results }).await;
        }
    }

    /// Closes every connection with 1001 and stops every room.
    pub async fn shutdown(&self) {
        for (_, tx) in self.live() {
            let _ = tx.send(Cmd::Shutdown).await;
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn forget(&self, room: &RoomId, generation: u64) {
        if let Ok(mut rooms) = self.rooms.lock() {
            if rooms.get(room).is_some_and(|h| h.generation == generation) {
                rooms.remove(room);
                self.metrics.rooms.dec();
            }
        }
    }
}

struct ConnEntry {
    member: Member,
    out: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<Kill>>,
}

/// Where the room stands with control.
struct Persist {
    /// What control has acknowledged (its stored state covers this).
    acked: StateVector,
    /// When the first change not yet acknowledged happened.
    dirty_since: Option<Instant>,
    last_change: Instant,
    saving: bool,
    /// After a failure: not before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// `updates_applied` of the room when last looked at.
    seen_updates: u64,
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
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct RoomActor {
    id: RoomId,
    generation: u64,
    room: Room,
    conns: HashMap<ConnId, ConnEntry>,
    hub: Arc<Hub>,
    persist: Persist,
    /// The actor's own queue, for save tasks to report back (weak: the actor
    /// must not keep its channel open by itself).
    me: mpsc::WeakSender<Cmd>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl RoomActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        if !self.load().await {
            self.stop(&mut rx).await;
            return;
        }
        let sweep_every = self.hub.config.awareness_timeout / 2;
        let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(10)));
        let idle = self.hub.config.room_idle;
        let mut empty_since = Some(Instant::now());
        loop {
            let evict_at = empty_since.filter(|_| self.is_clean()).map(|t| t + idle);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => {
                        self.kill_all(Kill::plain(close::GOING_AWAY, close::REASON_SHUTDOWN));
                        self.flush().await;
                        break;
                    }
                    Some(cmd) => self.handle(cmd),
                },
                _ = sweep.tick() => {
                    let out = self.room.sweep_awareness(now_ms(), self.hub.config.awareness_timeout.as_millis() as u64);
                    self.dispatch(out);
                }
                _ = sleep_until_opt(self.next_save_at()) => self.start_save(),
                _ = sleep_until_opt(evict_at) => {
                    tracing::debug!("idle and saved: evicting");
                    break;
                }
            }
            self.note_changes();
            empty_since = match (self.conns.is_empty(), empty_since) {
                (true, None) => Some(Instant::now()),
                (true, since) => since,
                (false, _) => None,
            };
        }
        self.stop(&mut rx).await;
    }

    /// Unregisters, refuses late joins (they retry on a fresh actor), stops.
    async fn stop(&mut self, rx: &mut mpsc::Receiver<Cmd>) {
        self.hub.forget(&self.id, self.generation);
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let Cmd::Join { reply, .. } = cmd {
                drop(reply);
            }
        }
        if self.persist.dirty_since.is_some() {
            self.hub.metrics.dirty_rooms.dec();
            tracing::error!("room stopped with changes control has not acknowledged");
        }
        tracing::debug!("room stopped");
    }

    /// Loads the room's stored state before anyone is let in; retries while
    /// control is away. `false` when the relay shuts down first.
    async fn load(&mut self) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = std::time::Instant::now();
            let attempt = tokio::select! {
                _ = self.hub.shutdown.cancelled() => return false,
                r = self.hub.control.load_snapshot(&self.id) => r,
            };
            match attempt {
                Ok(state) => {
                    self.hub
                        .metrics
                        .load_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.hub.metrics.loads.inc();
                    if !state.is_empty() {
                        if let Err(e) = self.room.apply(&state) {
                            tracing::error!(error = %e, "stored state does not decode; starting from what clients send");
                        }
                    }
                    self.persist.acked = self.room.doc().transact().state_vector();
                    self.persist.seen_updates = self.room.stats().updates_applied;
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

    fn is_clean(&self) -> bool {
        self.persist.dirty_since.is_none() && !self.persist.saving
    }

    /// Marks the room dirty when updates were applied since last time.
    fn note_changes(&mut self) {
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
    fn next_save_at(&self) -> Option<Instant> {
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

    fn start_save(&mut self) {
        let Some(me) = self.me.upgrade() else { return };
        let (sv, update) = self.pending_update();
        self.persist.saving = true;
        let (control, metrics, room) = (
            self.hub.control.clone(),
            self.hub.metrics.clone(),
            self.id.clone(),
        );
        let span = tracing::info_span!("save", room = %room);
        self.hub.tracker.spawn(
            async move {
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
                let _ = me.send(Cmd::Saved { sv, outcome }).await;
            }
            .instrument(span),
        );
    }

    fn saved(&mut self, sv: StateVector, outcome: Result<(), ControlError>) {
        self.persist.saving = false;
        match outcome {
            Ok(()) => {
                self.hub.metrics.saves.inc();
                self.persist.acked = sv;
                self.persist.retry_at = None;
                self.persist.backoff = FIRST_BACKOFF;
                let current = self.room.doc().transact().state_vector();
                if current == self.persist.acked {
                    self.mark_clean();
                }
            }
            Err(ControlError::Refused(404)) => {
                tracing::warn!("room's resource was deleted; dropping its unsaved changes");
                self.mark_clean();
            }
            Err(e) => {
                self.hub.metrics.save_failures.inc();
                self.hub.metrics.save_retries.inc();
                let wait = self.persist.backoff;
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "save failed; the room stays dirty");
                self.persist.retry_at = Some(Instant::now() + wait);
                self.persist.backoff = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn mark_clean(&mut self) {
        if self.persist.dirty_since.take().is_some() {
            self.hub.metrics.dirty_rooms.dec();
        }
    }

    /// On shutdown: saves until control acknowledges or the deadline passes.
    async fn flush(&mut self) {
        self.note_changes();
        let deadline = Instant::now() + self.hub.config.flush_deadline;
        while self.persist.dirty_since.is_some() && Instant::now() < deadline {
            let (sv, update) = self.pending_update();
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
            self.saved(sv, outcome);
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

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join {
                conn,
                member,
                out,
                kill,
                reply,
            } => {
                if self.conns.len() >= self.hub.config.max_connections_per_room {
                    let _ = reply.send(Err(JoinError::Full));
                    return;
                }
                let writable = member.writable();
                tracing::info!(user_id = %member.user_id, role = member.role.as_str(), conn, "joined");
                self.conns.insert(
                    conn,
                    ConnEntry {
                        member,
                        out,
                        kill: Some(kill),
                    },
                );
                self.hub.metrics.connections.inc();
                let _ = reply.send(Ok(()));
                let out = self.room.join(conn, writable);
                self.dispatch(out);
            }
            Cmd::Frame { conn, bytes } => {
                self.hub.metrics.frames_in.inc();
                self.hub.metrics.bytes_in.inc_by(bytes.len() as u64);
                let dropped_before = self.room.stats().updates_dropped_readonly;
                match self.room.receive(conn, &bytes) {
                    Ok(out) => self.dispatch(out),
                    Err(crate::room::RoomError::UnknownConnection) => {}
                    Err(e) => {
                        self.hub.metrics.bad_messages.inc();
                        tracing::warn!(conn, error = %e, "bad message; closing the connection");
                        self.drop_conn(
                            conn,
                            Kill::plain(close::PROTOCOL_ERROR, close::REASON_BAD_MESSAGE),
                        );
                    }
                }
                let dropped = self.room.stats().updates_dropped_readonly - dropped_before;
                if dropped > 0 {
                    self.hub.metrics.readonly_updates_dropped.inc_by(dropped);
                }
            }
            Cmd::Leave { conn } => self.remove(conn),
            Cmd::Users { reply } => {
                let mut users: Vec<String> = self
                    .conns
                    .values()
                    .map(|c| c.member.user_id.clone())
                    .collect();
                users.sort();
                users.dedup();
                let _ = reply.send(users);
            }
            Cmd::Access { results } => self.apply_access(results),
            Cmd::Saved { sv, outcome } => self.saved(sv, outcome),
            Cmd::Shutdown => {}
        }
    }

    fn apply_access(&mut self, results: Vec<UserAccess>) {
        let by_user: HashMap<&str, &UserAccess> =
            results.iter().map(|r| (r.user_id.as_str(), r)).collect();
        let mut revoked = Vec::new();
        for (conn, entry) in self.conns.iter_mut() {
            let Some(access) = by_user.get(entry.member.user_id.as_str()) else {
                continue;
            };
            match (access.has_access, access.role) {
                (true, Some(role)) if role != entry.member.role => {
                    tracing::info!(user_id = %entry.member.user_id, from = entry.member.role.as_str(), to = role.as_str(), "role changed");
                    entry.member.role = role;
                    self.room.set_writable(*conn, role >= Role::Editor);
                }
                (true, _) => {}
                (false, _) => revoked.push(*conn),
            }
        }
        for conn in revoked {
            if let Some(entry) = self.conns.get(&conn) {
                tracing::info!(user_id = %entry.member.user_id, conn, "access revoked; kicking");
            }
            self.hub.metrics.kicks.inc();
            self.drop_conn(conn, Kill::revoked());
        }
    }

    /// Sends each outgoing message to its connections; a connection whose
    /// queue is full is dropped as a slow consumer.
    fn dispatch(&mut self, out: Vec<Outgoing>) {
        let mut queue = out;
        while !queue.is_empty() {
            let mut slow = Vec::new();
            let metrics = &self.hub.metrics;
            let mut send = |id: ConnId, c: &ConnEntry, msg: &Bytes| {
                metrics.frames_out.inc();
                metrics.bytes_out.inc_by(msg.len() as u64);
                if c.out.try_send(msg.clone()).is_err() {
                    slow.push(id);
                }
            };
            for o in queue.drain(..) {
                match o {
                    Outgoing::To(id, msg) => {
                        if let Some(c) = self.conns.get(&id) {
                            send(id, c, &msg);
                        }
                    }
                    Outgoing::Broadcast { except, msg } => {
                        for (id, c) in self.conns.iter().filter(|(id, _)| Some(**id) != except) {
                            send(*id, c, &msg);
                        }
                    }
                }
            }
            for conn in slow {
                self.hub.metrics.slow_consumers.inc();
                tracing::warn!(conn, "send queue full; dropping slow client");
                if let Some(mut entry) = self.conns.remove(&conn) {
                    self.hub.metrics.connections.dec();
                    if let Some(kill) = entry.kill.take() {
                        let _ = kill.send(Kill::plain(
                            close::TRY_AGAIN_LATER,
                            close::REASON_SLOW_CONSUMER,
                        ));
                    }
                }
                queue.extend(self.room.leave(conn));
            }
        }
    }

    /// Closes one connection with `kill` and removes it.
    fn drop_conn(&mut self, conn: ConnId, kill: Kill) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            if let Some(k) = entry.kill.take() {
                let _ = k.send(kill);
            }
        }
        self.remove(conn);
    }

    fn remove(&mut self, conn: ConnId) {
        if let Some(entry) = self.conns.remove(&conn) {
            self.hub.metrics.connections.dec();
            tracing::info!(user_id = %entry.member.user_id, conn, "left");
            let out = self.room.leave(conn);
            self.dispatch(out);
        }
    }

    fn kill_all(&mut self, kill: Kill) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn, kill.clone());
        }
    }
}
