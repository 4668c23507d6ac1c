//! Several relay nodes serving the same rooms, through Redis pub/sub.
//!
//! - [`envelope`]: what nodes send each other (pure encoding).
//! - [`ledger`]: which changes a node can show are saved (pure).
//! - this file: the Redis side. One subscriber connection per node carries
//!   every room channel the node holds (`tandem:room:{roomId}`, subscribed
//!   only while the room is live here); one multiplexed connection publishes
//!   (batched, in order) and holds the save leases (`tandem:saver:{roomId}`).
//!
//! Pub/sub does not promise delivery, so nothing here is trusted to arrive:
//! a room learns when its subscription (re)starts ([`Inbound::Subscribed`])
//! and when its own messages or messages for it were lost
//! ([`Membership::take_trouble`]); either way it asks the other nodes for
//! their state again. When Redis is away the node goes on serving its own
//! clients; the outage is logged and counted, and the rooms catch up once it
//! is back. This module never touches a room: the room actor (see
//! `hub::peers`) decides what to send and what to apply.

pub mod envelope;
pub mod ledger;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tandem_protocol::RoomId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::Metrics;

/// How long one connect or command to Redis may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Envelopes queued for publishing before new ones are dropped (and the
/// rooms told they lost some).
const PUBLISH_QUEUE: usize = 16_384;
/// Envelopes published in one pipeline.
const PUBLISH_BATCH: usize = 512;
/// Envelopes queued for one room before new ones are dropped (and the room
/// told it missed some).
const ROOM_INBOX: usize = 4_096;
/// Backoff bounds while Redis is unreachable.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Takes the save lease if it is free or already ours, for `ARGV[2]` ms.
const CLAIM: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";
/// Gives the lease back if it is ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

/// What reaches a room from the cluster.
#[derive(Debug)]
pub enum Inbound {
    /// An envelope from the room's channel (not yet decoded).
    Message(Bytes),
    /// The room's subscription is active (again): time to say hello.
    Subscribed,
}

/// Set when a room lost envelopes (some never reached Redis, or its inbox
/// was full and some were dropped): it must repair by asking for state again.
#[derive(Debug, Default)]
struct Trouble(AtomicBool);

struct Port {
    id: u64,
    tx: mpsc::Sender<Inbound>,
    trouble: Arc<Trouble>,
}

enum SubCmd {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
}

struct Outbound {
    channel: Arc<str>,
    payload: Bytes,
    trouble: Arc<Trouble>,
}

struct Inner {
    client: redis::Client,
    /// Channel name → the live room on this node.
    ports: Mutex<HashMap<Arc<str>, Port>>,
    next_port: AtomicU64,
    subscriber: mpsc::UnboundedSender<SubCmd>,
    publisher: mpsc::Sender<Outbound>,
    /// The command connection (publishing and leases), made on first use
    /// and dropped on error.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    claim: redis::Script,
    release: redis::Script,
    metrics: Arc<Metrics>,
}

/// A node's handle on the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

fn channel_of(room: &RoomId) -> Arc<str> {
    Arc::from(format!("tandem:room:{room}"))
}

fn lease_key(room: &RoomId) -> String {
    format!("tandem:saver:{room}")
}

impl Cluster {
    /// Starts the subscriber and publisher tasks. Does not wait for Redis:
    /// a node whose Redis is down starts and serves its own clients.
    pub fn start(
        url: &str,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<Cluster> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("TANDEM_REDIS_URL is not a Redis URL: {e}"))?;
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::channel(PUBLISH_QUEUE);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                client,
                ports: Mutex::new(HashMap::new()),
                next_port: AtomicU64::new(1),
                subscriber: sub_tx,
                publisher: pub_tx,
                conn: tokio::sync::Mutex::new(None),
                claim: redis::Script::new(CLAIM),
                release: redis::Script::new(RELEASE),
                metrics,
            }),
        };
        tracker.spawn(
            run_subscriber(cluster.inner.clone(), sub_rx, stop.clone())
                .instrument(tracing::info_span!("cluster_subscriber")),
        );
        tracker.spawn(
            run_publisher(cluster.inner.clone(), pub_rx, stop)
                .instrument(tracing::info_span!("cluster_publisher")),
        );
        Ok(cluster)
    }

    /// Registers the live room on this node and subscribes to its channel;
    /// returns the membership and the room's inbox. Dropping the membership
    /// unsubscribes.
    pub fn join(&self, room: &RoomId) -> (Membership, mpsc::Receiver<Inbound>) {
        let channel = channel_of(room);
        let (tx, inbox) = mpsc::channel(ROOM_INBOX);
        let trouble = Arc::new(Trouble::default());
        let id = self.inner.next_port.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut ports) = self.inner.ports.lock() {
            ports.insert(
                channel.clone(),
                Port {
                    id,
                    tx,
                    trouble: trouble.clone(),
                },
            );
        }
        let _ = self
            .inner
            .subscriber
            .send(SubCmd::Subscribe(channel.clone()));
        let membership = Membership {
            channel,
            id,
            trouble,
            cluster: self.clone(),
        };
        (membership, inbox)
    }

    /// Queues an envelope for the room's channel. Never waits: when the
    /// queue is full the envelope is dropped and the room told.
    pub fn publish(&self, m: &Membership, payload: Bytes) {
        let out = Outbound {
            channel: m.channel.clone(),
            payload,
            trouble: m.trouble.clone(),
        };
        if self.inner.publisher.try_send(out).is_err() {
            self.inner.metrics.cluster_publish_lost.inc();
            m.trouble.0.store(true, Ordering::Relaxed);
        }
    }

    /// Takes (or renews) the room's save lease for `peer`; `Ok(false)` when
    /// another peer holds it.
    pub async fn claim_lease(
        &self,
        room: &RoomId,
        peer: envelope::PeerId,
        ttl: Duration,
    ) -> Result<bool, ClusterError> {
        let mut conn = self.inner.conn().await?;
        let mut call = self.inner.claim.key(lease_key(room));
        call.arg(peer.to_string()).arg(ttl.as_millis() as u64);
        let got: i64 = timed(call.invoke_async(&mut conn)).await.inspect_err(|_| {
            self.inner.drop_conn();
        })?;
        Ok(got == 1)
    }

    /// Gives the room's save lease back if `peer` holds it (best effort).
    pub async fn release_lease(&self, room: &RoomId, peer: envelope::PeerId) {
        let Ok(mut conn) = self.inner.conn().await else {
            return;
        };
        let mut call = self.inner.release.key(lease_key(room));
        call.arg(peer.to_string());
        let _: Result<i64, _> = timed(call.invoke_async(&mut conn)).await;
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(REDIS_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClusterError::Timeout),
    }
}

impl Inner {
    fn connection_config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
    }

    /// The command connection, connecting if there is none.
    async fn conn(&self) -> Result<MultiplexedConnection, ClusterError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = timed(
            self.client
                .get_multiplexed_async_connection_with_config(&Self::connection_config()),
        )
        .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets a connection that failed (the next use reconnects).
    fn drop_conn(&self) {
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }

    fn set_up(&self, up: bool) {
        let was = self.metrics.cluster_up.get() == 1;
        self.metrics.cluster_up.set(i64::from(up));
        if was && !up {
            self.metrics.cluster_outages.inc();
        }
    }

    fn channels(&self) -> Vec<Arc<str>> {
        self.ports
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn tell(&self, channel: &str, msg: Inbound) {
        let Ok(ports) = self.ports.lock() else { return };
        let Some(port) = ports.get(channel) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = port.tx.try_send(msg) {
            self.metrics.cluster_inbound_dropped.inc();
            port.trouble.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A room's place in the cluster, held by its actor.
pub struct Membership {
    channel: Arc<str>,
    id: u64,
    trouble: Arc<Trouble>,
    cluster: Cluster,
}

impl Membership {
    /// Whether envelopes of this room were lost either way since last asked.
    pub fn take_trouble(&self) -> bool {
        self.trouble.0.swap(false, Ordering::Relaxed)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let inner = &self.cluster.inner;
        let removed = inner.ports.lock().is_ok_and(|mut ports| {
            if ports.get(&self.channel).is_some_and(|p| p.id == self.id) {
                ports.remove(&self.channel);
                true
            } else {
                false
            }
        });
        if removed {
            let _ = inner
                .subscriber
                .send(SubCmd::Unsubscribe(self.channel.clone()));
        }
    }
}

async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Holds the subscriber connection: (re)connects, subscribes every live
/// room, routes messages to rooms, follows joins and leaves.
async fn run_subscriber(
    inner: Arc<Inner>,
    mut cmds: mpsc::UnboundedReceiver<SubCmd>,
    stop: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut ever_up = false;
    loop {
        let connect = tokio::time::timeout(REDIS_TIMEOUT, inner.client.get_async_pubsub());
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = connect => r,
        };
        let Ok(Ok(pubsub)) = pubsub else {
            inner.set_up(false);
            if backoff == FIRST_BACKOFF {
                tracing::warn!("redis unreachable; serving local clients only until it is back");
            }
            if !pause(&stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        // The registry is the truth: queued joins and leaves are folded in.
        while cmds.try_recv().is_ok() {}
        let channels = inner.channels();
        if !channels.is_empty() {
            let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
            if timed(sink.subscribe(&names)).await.is_err() {
                if !pause(&stop, backoff).await {
                    return;
                }
                continue;
            }
        }
        inner.set_up(true);
        backoff = FIRST_BACKOFF;
        if ever_up {
            tracing::info!(rooms = channels.len(), "redis is back; rooms catch up");
        }
        ever_up = true;
        for c in &channels {
            inner.tell(c, Inbound::Subscribed);
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(SubCmd::Subscribe(c)) => {
                        if timed(sink.subscribe(&*c)).await.is_err() {
                            break;
                        }
                        inner.tell(&c, Inbound::Subscribed);
                    }
                    Some(SubCmd::Unsubscribe(c)) => {
                        let rejoined = inner.ports.lock().is_ok_and(|p| p.contains_key(&c));
                        if !rejoined && timed(sink.unsubscribe(&*c)).await.is_err() {
                            break;
                        }
                    }
                },
                msg = stream.next() => match msg {
                    Some(msg) => {
                        inner.metrics.cluster_received.inc();
                        let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                        inner.tell(msg.get_channel_name(), Inbound::Message(payload));
                    }
                    None => break,
                },
            }
        }
        inner.set_up(false);
        tracing::warn!("lost the redis subscription; reconnecting");
    }
}

/// Publishes queued envelopes in order, in pipelined batches. A batch that
/// fails is dropped and its rooms are told (they ask for state again).
async fn run_publisher(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Outbound>,
    stop: CancellationToken,
) {
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let sent = if tokio::time::Instant::now() >= retry_at {
            publish_batch(&inner, &batch).await
        } else {
            false
        };
        if sent {
            inner.metrics.cluster_published.inc_by(batch.len() as u64);
        } else {
            // Redis is away: do not try again for every envelope.
            retry_at = tokio::time::Instant::now() + Duration::from_millis(250);
            inner
                .metrics
                .cluster_publish_lost
                .inc_by(batch.len() as u64);
            for m in &batch {
                m.trouble.0.store(true, Ordering::Relaxed);
            }
        }
    }
}

async fn publish_batch(inner: &Inner, batch: &[Outbound]) -> bool {
    let Ok(mut conn) = inner.conn().await else {
        return false;
    };
    let mut pipe = redis::pipe();
    for m in batch {
        pipe.cmd("PUBLISH")
            .arg(&*m.channel)
            .arg(m.payload.as_ref())
            .ignore();
    }
    let ok = timed(pipe.query_async::<()>(&mut conn)).await.is_ok();
    if !ok {
        inner.drop_conn();
    }
    ok
}
