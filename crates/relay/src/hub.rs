//! Room actors and their registry.
//!
//! Each live room is one task that owns a sans-IO [`Room`] and the send
//! queues of its connections; everything reaches it as a [`Cmd`] on its
//! channel, so a room is never touched by two tasks at once and no lock is
//! held across an await. The registry maps a room id to the one running
//! actor: exactly one live copy per room id, created on the first join.
//! An actor whose room stayed empty for the idle period removes itself from
//! the registry and stops; a join that raced with that retries on a fresh
//! actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tandem_protocol::collab::{close, ServerNotice, UserAccess};
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
    Shutdown,
}

/// Settings of every room actor.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub max_connections_per_room: usize,
    pub send_queue: usize,
    pub room_idle: Duration,
    pub awareness_timeout: Duration,
}

/// Counters, read by logs now and by `/metrics` later.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicU64,
    pub rooms: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub kicks: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub bad_messages: AtomicU64,
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
    pub stats: HubStats,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(config: HubConfig, tracker: TaskTracker, shutdown: CancellationToken) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            config,
            next_id: AtomicU64::new(1),
            stats: HubStats::default(),
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
        self.stats.rooms.fetch_add(1, Ordering::Relaxed);
        let actor = RoomActor {
            id: room.clone(),
            generation: handle.generation,
            room: Room::new(),
            conns: HashMap::new(),
            hub: self.clone(),
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
                self.stats.rooms.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

struct ConnEntry {
    member: Member,
    out: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<Kill>>,
}

struct RoomActor {
    id: RoomId,
    generation: u64,
    room: Room,
    conns: HashMap<ConnId, ConnEntry>,
    hub: Arc<Hub>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl RoomActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        tracing::debug!("room started");
        let sweep_every = self.hub.config.awareness_timeout / 2;
        let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(10)));
        let idle = self.hub.config.room_idle;
        let mut empty_since = Some(tokio::time::Instant::now());
        loop {
            let idle_deadline = empty_since.map(|t| t + idle);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => {
                        self.kill_all(Kill::plain(close::GOING_AWAY, close::REASON_SHUTDOWN));
                        break;
                    }
                    Some(cmd) => self.handle(cmd),
                },
                _ = sweep.tick() => {
                    let out = self.room.sweep_awareness(now_ms(), self.hub.config.awareness_timeout.as_millis() as u64);
                    self.dispatch(out);
                }
                _ = async { tokio::time::sleep_until(idle_deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if idle_deadline.is_some() => {
                    // Empty for the whole grace period: unregister, then refuse late joins.
                    self.hub.forget(&self.id, self.generation);
                    rx.close();
                    while let Some(cmd) = rx.recv().await {
                        if let Cmd::Join { reply, .. } = cmd {
                            drop(reply); // the joiner retries on a fresh actor
                        }
                    }
                    break;
                }
            }
            empty_since = match (self.conns.is_empty(), empty_since) {
                (true, None) => Some(tokio::time::Instant::now()),
                (true, since) => since,
                (false, _) => None,
            };
        }
        self.hub.forget(&self.id, self.generation);
        tracing::debug!("room stopped");
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
                self.hub.stats.connections.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Ok(()));
                let out = self.room.join(conn, writable);
                self.dispatch(out);
            }
            Cmd::Frame { conn, bytes } => {
                self.hub.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                match self.room.receive(conn, &bytes) {
                    Ok(out) => self.dispatch(out),
                    Err(crate::room::RoomError::UnknownConnection) => {}
                    Err(e) => {
                        self.hub.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(conn, error = %e, "bad message; closing the connection");
                        self.drop_conn(
                            conn,
                            Kill::plain(close::PROTOCOL_ERROR, close::REASON_BAD_MESSAGE),
                        );
                    }
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
            self.hub.stats.kicks.fetch_add(1, Ordering::Relaxed);
            self.drop_conn(conn, Kill::revoked());
        }
    }

    /// Sends each outgoing message to its connections; a connection whose
    /// queue is full is dropped as a slow consumer.
    fn dispatch(&mut self, out: Vec<Outgoing>) {
        let mut queue = out;
        while !queue.is_empty() {
            let mut slow = Vec::new();
            for o in queue.drain(..) {
                match o {
                    Outgoing::To(conn, msg) => {
                        if let Some(c) = self.conns.get(&conn) {
                            self.hub.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                            if c.out.try_send(msg).is_err() {
                                slow.push(conn);
                            }
                        }
                    }
                    Outgoing::Broadcast { except, msg } => {
                        for (id, c) in &self.conns {
                            if Some(*id) == except {
                                continue;
                            }
                            self.hub.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                            if c.out.try_send(msg.clone()).is_err() {
                                slow.push(*id);
                            }
                        }
                    }
                }
            }
            for conn in slow {
                self.hub
                    .stats
                    .slow_consumers
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn, "send queue full; dropping slow client");
                if let Some(mut entry) = self.conns.remove(&conn) {
                    self.hub.stats.connections.fetch_sub(1, Ordering::Relaxed);
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
            self.hub.stats.connections.fetch_sub(1, Ordering::Relaxed);
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
