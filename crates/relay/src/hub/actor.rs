//! The room actor: one task per live room, owning the sans-IO room and the
//! send queues of its connections.
//!
//! Heavy document work (encoding a large document for a SyncStep2 answer,
//! applying a large frame, recounting a document near its size limit) runs
//! through [`heavy`]: `block_in_place`, so the worker's other tasks (other
//! rooms) move to another thread while this room works.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_protocol::collab::{close, UserAccess};
use tandem_protocol::RoomId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::peers::{Peers, PEERS};
use super::persist::Persist;
use super::{Cmd, Hub, Join, JoinError, Kill, Member, Outbox, RoomHandle};
use crate::cluster::Inbound;
use crate::room::{ConnId, Outgoing, Room, RoomError};

/// How often a room in a cluster looks for lost envelopes.
const TROUBLE_CHECK: Duration = Duration::from_millis(500);
/// A frame this large is applied off the async workers.
const HEAVY_FRAME: usize = 64 * 1024;
/// A document this large is encoded off the async workers.
const HEAVY_DOC: usize = 256 * 1024;
/// Most frames taken from a room's queue in one run (their updates merged).
const RUN: usize = 64;
/// A run ends once its frames reach this many bytes (the last frame may
/// take it past).
const RUN_BYTES: usize = 1024 * 1024;

/// Runs `f` off the async workers when `big` (and the runtime has several
/// workers): the worker's other tasks move to another thread meanwhile.
pub(super) fn heavy<T>(big: bool, f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if big && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

pub(super) struct ConnEntry {
    member: Member,
    /// The connection's send queue (and where a kill goes).
    out: Arc<Outbox>,
    /// A SyncStep2 answer was sent and not yet written out.
    step2_in_flight: bool,
}

impl Drop for ConnEntry {
    /// The room let go of the connection: its task ends once it sees this.
    fn drop(&mut self) {
        self.out.close();
    }
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
    /// Set when control refused a save as too large: the room stops.
    pub(super) unsaveable: bool,
    /// While a large stored state is being integrated.
    pub(super) loading: Option<Loading>,
}

/// A load in progress: the stored state is integrated into a document on a
/// blocking thread while clients join and empty joiners already receive the
/// stored bytes; everything else they send waits here, in order.
pub(super) struct Loading {
    pub(super) task: Option<tokio::task::JoinHandle<Result<yrs::Doc, RoomError>>>,
    /// Bytes of the stored state.
    pub(super) len: usize,
    /// Commands held back (`None`: the room's queue closed).
    pub(super) held: Vec<Option<Cmd>>,
    /// Bytes of the frames held back.
    pub(super) bytes: usize,
    /// Connections that joined meanwhile (their greeting waits).
    pub(super) greet: Vec<ConnId>,
    /// The room's queue closed meanwhile.
    pub(super) closed: bool,
}

/// Most bytes and commands held back while a load is integrated; beyond
/// them the room stops taking commands (senders wait) until it is done.
const HELD_BYTES: usize = 16 * 1024 * 1024;
const HELD_COMMANDS: usize = 4096;

impl Loading {
    pub(super) fn new(
        task: tokio::task::JoinHandle<Result<yrs::Doc, RoomError>>,
        len: usize,
    ) -> Loading {
        Loading {
            task: Some(task),
            len,
            held: Vec::new(),
            bytes: 0,
            greet: Vec::new(),
            closed: false,
        }
    }

    fn accepting(&self) -> bool {
        !self.closed && self.bytes < HELD_BYTES && self.held.len() < HELD_COMMANDS
    }
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

async fn join_opt<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
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
        let mut room = Room::new();
        room.set_limits(hub.config.limits.clone());
        RoomActor {
            unsaveable: false,
            id,
            generation: handle.generation,
            room,
            conns: HashMap::new(),
            hub,
            persist: Persist::default(),
            peers: None,
            me: handle.tx.downgrade(),
            loading: None,
        }
    }

    /// The actor's life. An async block rather than an `async fn`: the
    /// arguments of an `async fn` are stored twice in its future (as given
    /// and as moved into the body), and the actor is large; the rare awaits
    /// (load, stop, flush) run in boxes of their own, since a task is as
    /// large as its largest state for its whole life.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            if !Box::pin(self.load()).await {
                Box::pin(self.stop(&mut rx)).await;
                return;
            }
            // A large stored state is integrated on a blocking thread while the
            // room already answers empty joiners with it (see `Loading`).
            let mut integrating = self.loading.as_mut().and_then(|l| l.task.take());
            let mut inbox = match integrating {
                Some(_) => None,
                None => self.join_cluster(),
            };
            let sweep_every = self.hub.config.awareness_timeout / 2;
            let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(10)));
            let mut trouble = tokio::time::interval(TROUBLE_CHECK);
            let idle = self.hub.config.room_idle;
            let mut empty_since = Some(Instant::now());
            let mut drained = None;
            loop {
                let evict_at = empty_since.filter(|_| self.is_clean()).map(|t| t + idle);
                let accepting = self.loading.as_ref().is_none_or(Loading::accepting);
                tokio::select! {
                    cmd = rx.recv(), if accepting => {
                        if self.take_run(cmd, &mut rx, &mut drained).await {
                            break;
                        }
                    }
                    loaded = join_opt(&mut integrating) => {
                        integrating = None;
                        let loaded = loaded.unwrap_or_else(|_| Err(RoomError::Malformed("integration failed".into())));
                        let held = self.finish_loading(loaded);
                        inbox = self.join_cluster();
                        let mut stop = false;
                        for cmd in held {
                            if self.command(cmd, &mut drained).await {
                                stop = true;
                                break;
                            }
                        }
                        if stop {
                            break;
                        }
                    }
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
                if self.unsaveable {
                    break;
                }
                self.note_changes();
                empty_since = match (self.conns.is_empty(), empty_since) {
                    (true, None) => Some(Instant::now()),
                    (true, since) => since,
                    (false, _) => None,
                };
            }
            Box::pin(self.stop(&mut rx)).await;
            if let Some(done) = drained {
                let _ = done.send(());
            }
        }
    }

    /// `first` and the frames queued right behind it (at most [`RUN`] and
    /// [`RUN_BYTES`]): the document updates of such a run of frames go out
    /// merged, one message instead of one per frame for every connection
    /// (see [`Room::hold_updates`]). A quiet room's runs are single frames,
    /// sent as they come; a busy room's grow with its queue. True when the
    /// room stops.
    async fn take_run(
        &mut self,
        first: Option<Cmd>,
        rx: &mut mpsc::Receiver<Cmd>,
        drained: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        let mut cmd = first;
        let mut bytes = 0;
        for taken in 1.. {
            let frame = match &cmd {
                Some(Cmd::Frame { bytes: b, .. }) if self.loading.is_none() => {
                    bytes += b.len();
                    true
                }
                _ => false,
            };
            if frame {
                self.room.hold_updates();
            } else {
                self.release_updates();
            }
            if self.take(cmd, drained).await {
                return true;
            }
            if !frame || taken >= RUN || bytes >= RUN_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(next) => cmd = Some(next),
                Err(_) => break,
            }
        }
        self.release_updates();
        false
    }

    /// Sends what [`Room::hold_updates`] held back.
    fn release_updates(&mut self) {
        let before = self.room.stats().updates_merged;
        let big = self.room.held_bytes() >= HEAVY_FRAME;
        let out = heavy(big, || self.room.release_updates());
        let merged = self.room.stats().updates_merged - before;
        if merged > 0 {
            self.hub.metrics.updates_merged.inc_by(merged);
        }
        if !out.is_empty() {
            self.dispatch(out);
        }
    }

    /// One command from the room's queue, held back while a load is
    /// integrated; true when the room stops.
    async fn take(
        &mut self,
        cmd: Option<Cmd>,
        drained: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        // What to handle now (`Some(None)`: the queue closed).
        let todo = match self.loading.as_mut() {
            Some(loading) if cmd.is_none() => {
                loading.closed = true;
                loading.held.push(None);
                None
            }
            Some(_) => cmd.and_then(|cmd| self.while_loading(cmd)).map(Some),
            None => Some(cmd),
        };
        match todo {
            Some(cmd) => self.command(cmd, drained).await,
            None => false,
        }
    }

    /// One command from the room's queue (`None`: the queue closed); true
    /// when the room stops.
    async fn command(
        &mut self,
        cmd: Option<Cmd>,
        drained: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        match cmd {
            Some(Cmd::Shutdown) | None => {
                self.kill_all(Kill::plain(close::GOING_AWAY, close::REASON_SHUTDOWN));
                Box::pin(self.flush()).await;
                true
            }
            // Saved first: a client that sees 1012 finds its edits in control.
            Some(Cmd::Drain { done }) => {
                Box::pin(self.flush()).await;
                self.kill_all(Kill::plain(close::SERVICE_RESTART, close::REASON_DRAINING));
                *drained = Some(done);
                true
            }
            Some(cmd) => {
                self.handle(cmd);
                false
            }
        }
    }

    /// A command that arrives while the stored state is being integrated:
    /// joins are admitted (greeted later), a client's SyncStep1 of an empty
    /// document is answered with the stored state at once, everything else
    /// is held back, in order, until the document is in place. Returns what
    /// is to be handled now.
    fn while_loading(&mut self, cmd: Cmd) -> Option<Cmd> {
        match cmd {
            Cmd::Join(join) => {
                self.join(*join, false);
                None
            }
            Cmd::Users { .. } | Cmd::Step2Written { .. } => Some(cmd),
            Cmd::Frame { conn, bytes } => {
                let idle = self.conns.get(&conn).is_some_and(|c| !c.step2_in_flight);
                match self.room.pristine_answer(conn, &bytes).filter(|_| idle) {
                    Some(answer) => {
                        self.hub.metrics.frames_in.inc();
                        self.hub.metrics.bytes_in.inc_by(bytes.len() as u64);
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.step2_in_flight = true;
                        }
                        self.dispatch(vec![Outgoing::To(conn, answer)]);
                    }
                    None => {
                        if let Some(loading) = self.loading.as_mut() {
                            loading.bytes += bytes.len();
                            loading.held.push(Some(Cmd::Frame { conn, bytes }));
                        }
                    }
                }
                None
            }
            cmd => {
                if let Some(loading) = self.loading.as_mut() {
                    loading.held.push(Some(cmd));
                }
                None
            }
        }
    }

    /// Puts the integrated document in place, greets who joined meanwhile;
    /// returns the commands held back, to be handled in order.
    fn finish_loading(&mut self, loaded: Result<yrs::Doc, RoomError>) -> Vec<Option<Cmd>> {
        let Some(loading) = self.loading.take() else {
            return Vec::new();
        };
        if let Err(e) = &loaded {
            tracing::error!(error = %e, "stored state does not decode; starting from what clients send");
        }
        self.room.finish_load(loaded, loading.len);
        self.mark_loaded();
        tracing::info!(
            bytes = loading.len,
            held = loading.held.len(),
            "stored state integrated"
        );
        for conn in loading.greet {
            if self.conns.contains_key(&conn) {
                let greeting = self.room.greeting(conn);
                self.dispatch(greeting);
            }
        }
        loading.held
    }

    /// Unregisters, refuses late joins (they retry on a fresh actor), stops.
    async fn stop(&mut self, rx: &mut mpsc::Receiver<Cmd>) {
        self.hub.forget(&self.id, self.generation);
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let Cmd::Join(join) = cmd {
                drop(join.reply);
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
            Cmd::Join(join) => self.join(*join, true),
            Cmd::Frame { conn, bytes } => self.on_frame(conn, bytes),
            Cmd::Step2Written { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.step2_in_flight = false;
                }
                self.answer_step2(conn);
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
            Cmd::Saved(report) => self.saved(*report),
            Cmd::Shutdown | Cmd::Drain { .. } => {}
        }
    }

    /// Admits a connection (`greet`: with its greeting now, else after the load).
    fn join(&mut self, join: Join, greet: bool) {
        let Join {
            conn,
            member,
            out,
            reply,
        } = join;
        if self.conns.len() >= self.hub.config.max_connections_per_room {
            let _ = reply.send(Err(JoinError::Full));
            return;
        }
        let same_user = self
            .conns
            .values()
            .filter(|c| c.member.user_id == member.user_id)
            .count();
        if same_user >= self.hub.config.max_connections_per_user {
            let _ = reply.send(Err(JoinError::UserFull));
            return;
        }
        let writable = member.writable();
        tracing::info!(user_id = %member.user_id, role = member.role.as_str(), conn, "joined");
        let greeting = match greet {
            true => self.room.join_client(conn, writable, &member.user_id),
            false => {
                self.room.join_client_quiet(conn, writable, &member.user_id);
                if let Some(loading) = self.loading.as_mut() {
                    loading.greet.push(conn);
                }
                Vec::new()
            }
        };
        self.conns.insert(
            conn,
            ConnEntry {
                member,
                out,
                step2_in_flight: false,
            },
        );
        self.hub.metrics.connections.inc();
        let _ = reply.send(Ok(()));
        self.dispatch(greeting);
    }

    /// One frame from a client: applied (off the workers when large), its
    /// SyncStep1s answered once the previous answer was written out.
    fn on_frame(&mut self, conn: ConnId, bytes: Bytes) {
        let metrics = self.hub.metrics.clone();
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(bytes.len() as u64);
        let before = self.room.stats().clone();
        let big = bytes.len() >= HEAVY_FRAME || self.room.near_limit(bytes.len());
        let result = heavy(big, || self.room.receive(conn, &bytes));
        if result.is_err() {
            let leftover = self.room.take_leftover();
            self.dispatch(leftover);
        }
        match result {
            Ok(out) => self.dispatch(out),
            Err(RoomError::UnknownConnection) => {}
            Err(RoomError::TooManyMessages(n)) => {
                metrics.frames_too_many_messages.inc();
                tracing::warn!(
                    conn,
                    max = n,
                    "too many messages in one frame; closing the connection"
                );
                self.drop_conn(
                    conn,
                    Kill::plain(close::MESSAGE_TOO_BIG, close::REASON_TOO_MANY_MESSAGES),
                );
            }
            Err(RoomError::DocumentTooLarge(max)) => {
                metrics.updates_too_large.inc();
                tracing::warn!(
                    conn,
                    max,
                    "update refused: the document would outgrow its limit"
                );
                self.drop_conn(
                    conn,
                    Kill::plain(close::DOCUMENT_TOO_LARGE, close::REASON_DOCUMENT_TOO_LARGE),
                );
            }
            Err(e) => {
                metrics.bad_messages.inc();
                tracing::warn!(conn, error = %e, "bad message; closing the connection");
                self.drop_conn(
                    conn,
                    Kill::plain(close::PROTOCOL_ERROR, close::REASON_BAD_MESSAGE),
                );
            }
        }
        let after = self.room.stats();
        let dropped = after.updates_dropped_readonly - before.updates_dropped_readonly;
        if dropped > 0 {
            metrics.readonly_updates_dropped.inc_by(dropped);
        }
        let coalesced = after.step2_coalesced - before.step2_coalesced;
        if coalesced > 0 {
            metrics.step2_coalesced.inc_by(coalesced);
        }
        let refused = after.awareness_refused - before.awareness_refused;
        if refused > 0 {
            metrics.awareness_refused.inc_by(refused);
        }
        self.answer_step2(conn);
    }

    /// Sends `conn` the answer to its pending SyncStep1s, unless its previous
    /// answer is still on its way (then they wait, coalesced).
    fn answer_step2(&mut self, conn: ConnId) {
        let ready = self.conns.get(&conn).is_some_and(|c| !c.step2_in_flight)
            && self.room.has_pending_step2(conn);
        if !ready {
            return;
        }
        let big = self.room.size_bound() >= HEAVY_DOC;
        let Some(answer) = heavy(big, || self.room.answer_step2(conn)) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.step2_in_flight = true;
        }
        self.dispatch(vec![Outgoing::To(conn, answer)]);
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
            let budget = self.hub.config.send_budget_bytes;
            let max_len = self.hub.config.send_queue.max(1);
            let mut send = |id: ConnId, c: &ConnEntry, msg: &Bytes| {
                frames += 1;
                bytes += msg.len() as u64;
                // Past the byte budget (one message always fits an empty queue).
                if c.out.push(msg.clone(), max_len, budget).is_err() {
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
                    // Broadcast or Merged: every connection it is for, and
                    // the other nodes unless it came from them.
                    all => {
                        for (id, c) in self.conns.iter() {
                            if let Some(msg) = all.message_for(*id) {
                                send(*id, c, msg);
                            }
                        }
                        if let Some(msg) = all.message_for(PEERS) {
                            to_peers.push(msg.clone());
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
        let Some(entry) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        self.hub.metrics.connections.dec();
        tracing::info!(user_id = %entry.member.user_id, conn, "left");
        if let Some(kill) = kill {
            entry.out.kill(kill);
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

    pub(super) fn kill_all(&mut self, kill: Kill) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn, kill.clone());
        }
    }
}
