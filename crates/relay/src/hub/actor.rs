//! The room actor: one task per live room, owning the sans-IO room and the
//! send queues of its connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_protocol::collab::{close, UserAccess};
use tandem_protocol::RoomId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::peers::{Peers, PEERS};
use super::persist::Persist;
use super::{Cmd, Hub, JoinError, Kill, Member, RoomHandle};
use crate::cluster::Inbound;
use crate::room::{ConnId, Outgoing, Room};

/// How often a room in a cluster looks for lost envelopes.
const TROUBLE_CHECK: Duration = Duration::from_millis(500);

pub(super) struct ConnEntry {
    member: Member,
    out: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<Kill>>,
}

pub(super) struct RoomActor {
    pub(super) id: RoomId,
    generation: u64,
    pub(super) room: Room,
    pub(super) conns: HashMap<ConnId, ConnEntry>,
    pub(super) hub: Arc<Hub>,
    pub(super) persist: Persist,
    /// With several nodes: the room's place in the cluster.
    pub(super) peers: Option<Peers>,
    /// The actor's own queue, for save tasks to report back (weak: the actor
    /// must not keep its channel open by itself).
    pub(super) me: mpsc::WeakSender<Cmd>,
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

async fn recv_opt(inbox: &mut Option<mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl RoomActor {
    pub(super) fn new(hub: Arc<Hub>, id: RoomId, handle: &RoomHandle) -> RoomActor {
        RoomActor {
            id,
            generation: handle.generation,
            room: Room::new(),
            conns: HashMap::new(),
            hub,
            persist: Persist::default(),
            peers: None,
            me: handle.tx.downgrade(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        if !self.load().await {
            self.stop(&mut rx).await;
            return;
        }
        let mut inbox = self.join_cluster();
        let sweep_every = self.hub.config.awareness_timeout / 2;
        let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(10)));
        let mut trouble = tokio::time::interval(TROUBLE_CHECK);
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
                msg = recv_opt(&mut inbox) => match msg {
                    Some(msg) => self.on_cluster(msg),
                    None => inbox = None,
                },
                _ = trouble.tick(), if self.peers.is_some() => self.check_trouble(),
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
        self.leave_cluster().await;
        if self.persist.dirty_since.is_some() {
            self.hub.metrics.dirty_rooms.dec();
            tracing::error!("room stopped with changes control has not acknowledged");
        }
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
            Cmd::Saved(report) => self.saved(report),
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
                    self.room.set_writable(*conn, entry.member.writable());
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

    /// Sends each outgoing message to its connections, and what the room
    /// broadcasts from its own clients to the other nodes; a connection
    /// whose queue is full is dropped as a slow consumer.
    pub(super) fn dispatch(&mut self, out: Vec<Outgoing>) {
        let mut queue = out;
        let mut to_peers = Vec::new();
        let (mut frames, mut bytes) = (0u64, 0u64);
        while !queue.is_empty() {
            let mut slow = Vec::new();
            // Counted locally and added to the shared counters once.
            let mut send = |id: ConnId, c: &ConnEntry, msg: &Bytes| {
                frames += 1;
                bytes += msg.len() as u64;
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
                        if except != Some(PEERS) {
                            to_peers.push(msg);
                        }
                    }
                }
            }
            for conn in slow {
                self.hub.metrics.slow_consumers.inc();
                tracing::warn!(conn, "send queue full; dropping slow client");
                let slow = Kill::plain(close::TRY_AGAIN_LATER, close::REASON_SLOW_CONSUMER);
                queue.extend(self.detach(conn, Some(slow)));
            }
        }
        self.hub.metrics.frames_out.inc_by(frames);
        self.hub.metrics.bytes_out.inc_by(bytes);
        self.publish_frames(to_peers);
    }

    /// Takes a connection out of the room (closing it with `kill`, if
    /// given); returns what the room tells the others.
    fn detach(&mut self, conn: ConnId, kill: Option<Kill>) -> Vec<Outgoing> {
        let Some(mut entry) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        self.hub.metrics.connections.dec();
        tracing::info!(user_id = %entry.member.user_id, conn, "left");
        if let (Some(kill), Some(k)) = (kill, entry.kill.take()) {
            let _ = k.send(kill);
        }
        self.room.leave(conn)
    }

    /// Closes one connection with `kill` and removes it.
    fn drop_conn(&mut self, conn: ConnId, kill: Kill) {
        let out = self.detach(conn, Some(kill));
        self.dispatch(out);
    }

    fn remove(&mut self, conn: ConnId) {
        let out = self.detach(conn, None);
        self.dispatch(out);
    }

    fn kill_all(&mut self, kill: Kill) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn, kill.clone());
        }
    }
}
