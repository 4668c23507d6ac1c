//! Room actors and their registry.
//!
//! Each live room is one task that owns a sans-IO [`Room`] and the send
//! queues of its connections; everything reaches it as a [`Cmd`] on its
//! channel (or, with several relay nodes, as an envelope in its cluster
//! inbox), so a room is never touched by two tasks at once and no lock is
//! held across an await. The registry maps a room id to the one running
//! actor: exactly one live copy per room id on this node, created on the
//! first join. An actor whose room stayed empty (and saved) for the idle
//! period removes itself from the registry and stops; a join that raced with
//! that retries on a fresh actor.
//!
//! - [`actor`]: the actor loop, connections, dispatch.
//! - [`persist`]: load before anyone joins, debounced diff saves, the save
//!   lease with several nodes, flush on shutdown.
//! - [`peers`]: the room's side of the cluster (other relay nodes appear to
//!   the room as one writable connection, [`peers::PEERS`]).
//!
//! [`Room`]: crate::room::Room

mod actor;
mod outbox;
mod peers;
mod persist;

pub use outbox::{Next, Outbox};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

use crate::cluster::Cluster;
use crate::control_client::ControlClient;
use crate::metrics::Metrics;
use crate::room::ConnId;

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

/// Tells a connection to close: an optional notice first (the JSON
/// [`ServerNotice`], sent as the y-protocols auth message, and as a text frame
/// on the y-partykit path), then the close frame.
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
    #[error("the user holds the most connections one user may have in the room")]
    UserFull,
    #[error("relay is shutting down")]
    ShuttingDown,
}

enum Cmd {
    /// Boxed, like the other large commands: a room's queue allocates its
    /// slots 32 at a time, each as large as the largest command.
    Join(Box<Join>),
    Frame {
        conn: ConnId,
        bytes: Bytes,
    },
    /// The connection wrote out the SyncStep2 answer it was sent.
    Step2Written {
        conn: ConnId,
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
    /// A save attempt finished (or was left to another node).
    Saved(Box<persist::SaveReport>),
    Shutdown,
    /// Save to control, then close every connection with 1012 and stop;
    /// `done` fires once the room stopped.
    Drain {
        done: oneshot::Sender<()>,
    },
}

struct Join {
    conn: ConnId,
    member: Member,
    out: Arc<Outbox>,
    reply: oneshot::Sender<Result<(), JoinError>>,
}

/// Settings of every room actor.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub max_connections_per_room: usize,
    /// Connections one user may hold in one room.
    pub max_connections_per_user: usize,
    pub send_queue: usize,
    /// Bytes queued for one connection before it is dropped as too slow.
    pub send_budget_bytes: usize,
    /// What rooms accept from clients (the document limit is lowered to what
    /// control announces at load).
    pub limits: crate::room::Limits,
    pub room_idle: Duration,
    pub awareness_timeout: Duration,
    /// Save this long after the last change…
    pub save_debounce: Duration,
    /// …but no later than this after the first unsaved change.
    pub save_max_delay: Duration,
    /// How long shutdown keeps trying to save a dirty room.
    pub flush_deadline: Duration,
    /// With several nodes: how long a node that saved a room stays its saver.
    pub save_lease: Duration,
}

#[derive(Clone)]
struct RoomHandle {
    tx: mpsc::Sender<Cmd>,
    generation: u64,
}

/// A connection's end of its room: where to send frames, what to write out.
pub struct Link {
    pub conn: ConnId,
    /// What the room queued for this connection, and its kill.
    pub out: Arc<Outbox>,
    room: mpsc::Sender<Cmd>,
}

/// A command handed to the room: done at once when its queue had room, else
/// a boxed wait for room (so the connection's task, which awaits this for
/// every frame, stays small: an `async fn` here would put its whole state,
/// the command included, into every connection's task).
pub type Queued<'a> = futures_util::future::Either<
    std::future::Ready<bool>,
    std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>,
>;

impl Link {
    /// Hands a frame from the client to the room (waits if the room is busy).
    pub fn send(&self, bytes: Bytes) -> Queued<'_> {
        let conn = self.conn;
        self.command(Cmd::Frame { conn, bytes })
    }

    /// Tells the room the SyncStep2 answer it sent was written out (the next
    /// one may be prepared).
    pub fn step2_written(&self) -> Queued<'_> {
        self.command(Cmd::Step2Written { conn: self.conn })
    }

    /// Queues `cmd` now when there is room, else waits for room (boxed).
    fn command(&self, cmd: Cmd) -> Queued<'_> {
        use futures_util::future::Either;
        match self.room.try_send(cmd) {
            Ok(()) => Either::Left(std::future::ready(true)),
            Err(mpsc::error::TrySendError::Closed(_)) => Either::Left(std::future::ready(false)),
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                Either::Right(Box::pin(async move { self.room.send(cmd).await.is_ok() }))
            }
        }
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
    /// Set when `TANDEM_REDIS_URL` is: rooms fan out to the other nodes.
    cluster: Option<Cluster>,
    pub metrics: Arc<Metrics>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Set by [`Hub::drain`]: no room starts again on this node.
    draining: AtomicBool,
}

impl Hub {
    pub fn new(
        config: HubConfig,
        control: ControlClient,
        cluster: Option<Cluster>,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            config,
            next_id: AtomicU64::new(1),
            control,
            cluster,
            metrics,
            tracker,
            shutdown,
            draining: AtomicBool::new(false),
        })
    }

    fn handle(self: &Arc<Hub>, room: &RoomId) -> Option<RoomHandle> {
        if self.shutdown.is_cancelled() || self.is_draining() {
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
        let actor = actor::RoomActor::new(self.clone(), room.clone(), &handle);
        let span = tracing::info_span!("room", room = %room);
        let task = actor.run(rx).instrument(span);
        crate::metrics::log_task_size_once(
            crate::metrics::TaskKind::Room,
            std::mem::size_of_val(&task),
        );
        self.tracker.spawn(task);
        Some(handle)
    }

    /// Joins `member` to `room`, starting the room if it is not live.
    pub async fn join(self: &Arc<Hub>, room: &RoomId, member: Member) -> Result<Link, JoinError> {
        loop {
            let handle = self.handle(room).ok_or(JoinError::ShuttingDown)?;
            let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
            let out = Arc::new(Outbox::default());
            let (reply_tx, reply_rx) = oneshot::channel();
            let cmd = Cmd::Join(Box::new(Join {
                conn,
                member: member.clone(),
                out: out.clone(),
                reply: reply_tx,
            }));
            if handle.tx.send(cmd).await.is_err() {
                continue; // the actor stopped between lookup and send
            }
            match reply_rx.await {
                Ok(Ok(())) => {
                    return Ok(Link {
                        conn,
                        out,
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

    /// Whether [`Hub::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Drains this node (a rolling restart): no room starts again here; each
    /// live room saves to control, closes its connections with 1012 and
    /// stops. Waits for every room, up to `deadline`; answers how many rooms
    /// were drained and whether all of them finished in time.
    pub async fn drain(&self, deadline: Duration) -> (usize, bool) {
        self.draining.store(true, Ordering::SeqCst);
        let mut waits = Vec::new();
        for (_, tx) in self.live() {
            let (done, rx) = oneshot::channel();
            if tx.send(Cmd::Drain { done }).await.is_ok() {
                waits.push(rx);
            }
        }
        let rooms = waits.len();
        let all = futures_util::future::join_all(waits);
        let complete = tokio::time::timeout(deadline, all).await.is_ok();
        (rooms, complete)
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
