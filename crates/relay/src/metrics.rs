//! Prometheus metrics of the relay (`GET /metrics` on the relay's port,
//! OpenMetrics text), kept with the `prometheus-client` crate.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Rooms loaded in memory.
    pub rooms: Gauge,
    /// Rooms with changes control has not acknowledged.
    pub dirty_rooms: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub loads: Counter,
    pub load_failures: Counter,
    pub saves: Counter,
    pub save_failures: Counter,
    pub save_retries: Counter,
    pub bytes_saved: Counter,
    pub kicks: Counter,
    pub recheck_failures: Counter,
    pub slow_consumers: Counter,
    pub bad_messages: Counter,
    pub readonly_updates_dropped: Counter,
    /// Saves not made because another node holds the room's save lease.
    pub saves_left_to_holder: Counter,
    /// 1 while the Redis subscription is up (0 without Redis).
    pub cluster_up: Gauge,
    pub cluster_outages: Counter,
    pub cluster_published: Counter,
    /// Envelopes that never reached Redis (queue full or Redis away).
    pub cluster_publish_lost: Counter,
    pub cluster_received: Counter,
    /// Envelopes dropped because a room's inbox was full.
    pub cluster_inbound_dropped: Counter,
    /// Hellos sent: a room (re)joined or caught up after a loss.
    pub cluster_resyncs: Counter,
    pub cluster_bad_messages: Counter,
    pub origins_refused: Counter,
    pub handshakes_limited: Counter,
    pub tokens_malformed: Counter,
    pub tickets_issued: Counter,
    pub ticket_joins: Counter,
    pub tickets_refused: Counter,
    pub user_room_limited: Counter,
    pub frames_too_many_messages: Counter,
    pub step2_coalesced: Counter,
    pub updates_merged: Counter,
    pub updates_too_large: Counter,
    pub saves_too_large: Counter,
    pub awareness_refused: Counter,
    pub verify_seconds: Histogram,
    pub check_access_seconds: Histogram,
    pub save_seconds: Histogram,
    pub load_seconds: Histogram,
}

fn seconds() -> Histogram {
    // 0.1 ms … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem_relay");
        let m = Metrics {
            connections: Gauge::default(),
            rooms: Gauge::default(),
            dirty_rooms: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            loads: Counter::default(),
            load_failures: Counter::default(),
            saves: Counter::default(),
            save_failures: Counter::default(),
            save_retries: Counter::default(),
            bytes_saved: Counter::default(),
            kicks: Counter::default(),
            recheck_failures: Counter::default(),
            slow_consumers: Counter::default(),
            bad_messages: Counter::default(),
            readonly_updates_dropped: Counter::default(),
            saves_left_to_holder: Counter::default(),
            cluster_up: Gauge::default(),
            cluster_outages: Counter::default(),
            cluster_published: Counter::default(),
            cluster_publish_lost: Counter::default(),
            cluster_received: Counter::default(),
            cluster_inbound_dropped: Counter::default(),
            cluster_resyncs: Counter::default(),
            cluster_bad_messages: Counter::default(),
            origins_refused: Counter::default(),
            handshakes_limited: Counter::default(),
            tokens_malformed: Counter::default(),
            tickets_issued: Counter::default(),
            ticket_joins: Counter::default(),
            tickets_refused: Counter::default(),
            user_room_limited: Counter::default(),
            frames_too_many_messages: Counter::default(),
            step2_coalesced: Counter::default(),
            updates_merged: Counter::default(),
            updates_too_large: Counter::default(),
            saves_too_large: Counter::default(),
            awareness_refused: Counter::default(),
            verify_seconds: seconds(),
            check_access_seconds: seconds(),
            save_seconds: seconds(),
            load_seconds: seconds(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register("rooms", "Rooms loaded in memory", m.rooms.clone());
        registry.register(
            "dirty_rooms",
            "Rooms with changes not yet acknowledged by control",
            m.dirty_rooms.clone(),
        );
        registry.register(
            "frames_in",
            "WebSocket messages received from clients",
            m.frames_in.clone(),
        );
        registry.register(
            "frames_out",
            "WebSocket messages queued to clients",
            m.frames_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes received from clients",
            m.bytes_in.clone(),
        );
        registry.register("bytes_out", "Bytes queued to clients", m.bytes_out.clone());
        registry.register("loads", "Rooms loaded from control", m.loads.clone());
        registry.register(
            "load_failures",
            "Failed attempts to load a room from control",
            m.load_failures.clone(),
        );
        registry.register("saves", "Snapshots saved to control", m.saves.clone());
        registry.register(
            "save_failures",
            "Failed snapshot saves",
            m.save_failures.clone(),
        );
        registry.register(
            "save_retries",
            "Snapshot saves retried after a failure",
            m.save_retries.clone(),
        );
        registry.register(
            "bytes_saved",
            "Bytes sent to control in snapshot saves",
            m.bytes_saved.clone(),
        );
        registry.register(
            "kicks",
            "Connections closed because access was revoked",
            m.kicks.clone(),
        );
        registry.register(
            "recheck_failures",
            "Permission re-checks that could not reach control",
            m.recheck_failures.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections dropped because their send queue filled",
            m.slow_consumers.clone(),
        );
        registry.register(
            "bad_messages",
            "Connections closed for malformed messages",
            m.bad_messages.clone(),
        );
        registry.register(
            "readonly_updates_dropped",
            "Updates from read-only connections dropped",
            m.readonly_updates_dropped.clone(),
        );
        for (name, help, counter) in [
            (
                "saves_left_to_holder",
                "Saves left to the node holding the room's save lease",
                &m.saves_left_to_holder,
            ),
            (
                "cluster_outages",
                "Times the Redis subscription was lost",
                &m.cluster_outages,
            ),
            (
                "cluster_published",
                "Envelopes published to other relay nodes",
                &m.cluster_published,
            ),
            (
                "cluster_publish_lost",
                "Envelopes that never reached Redis",
                &m.cluster_publish_lost,
            ),
            (
                "cluster_received",
                "Envelopes received from Redis",
                &m.cluster_received,
            ),
            (
                "cluster_inbound_dropped",
                "Envelopes dropped because a room's inbox was full",
                &m.cluster_inbound_dropped,
            ),
            (
                "cluster_resyncs",
                "Catch-up exchanges started with the other nodes",
                &m.cluster_resyncs,
            ),
            (
                "cluster_bad_messages",
                "Malformed envelopes or messages from Redis, dropped",
                &m.cluster_bad_messages,
            ),
            (
                "origins_refused",
                "Handshakes refused for a browser origin not allowed",
                &m.origins_refused,
            ),
            (
                "handshakes_limited",
                "Handshakes refused by the per-IP rate limit",
                &m.handshakes_limited,
            ),
            (
                "tokens_malformed",
                "Handshakes refused for a token of the wrong shape, without asking control",
                &m.tokens_malformed,
            ),
            (
                "tickets_issued",
                "Resume tickets sent to clients that asked (?resume=1)",
                &m.tickets_issued,
            ),
            (
                "ticket_joins",
                "Connections let in with a resume ticket (no token verify at control)",
                &m.ticket_joins,
            ),
            (
                "tickets_refused",
                "Resume tickets refused (expired, bad MAC, other room, no access): closed 4401",
                &m.tickets_refused,
            ),
            (
                "user_room_limited",
                "Connections refused by the per-user cap in one room",
                &m.user_room_limited,
            ),
            (
                "frames_too_many_messages",
                "Connections closed for too many messages in one frame",
                &m.frames_too_many_messages,
            ),
            (
                "step2_coalesced",
                "SyncStep1 requests folded into an answer already pending",
                &m.step2_coalesced,
            ),
            (
                "updates_merged",
                "Updates that arrived together and went out merged into one message",
                &m.updates_merged,
            ),
            (
                "updates_too_large",
                "Updates refused because the document would outgrow its limit",
                &m.updates_too_large,
            ),
            (
                "saves_too_large",
                "Saves control refused as too large (413): the room's unsaved changes are dropped",
                &m.saves_too_large,
            ),
            (
                "awareness_refused",
                "Awareness entries dropped (another connection's client id, over the caps, or over the rate)",
                &m.awareness_refused,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "cluster_up",
            "1 while the Redis subscription is up",
            m.cluster_up.clone(),
        );
        registry.register(
            "verify_seconds",
            "Latency of a connect's token verification at control (batched or alone)",
            m.verify_seconds.clone(),
        );
        registry.register(
            "check_access_seconds",
            "Latency of batched check-access calls",
            m.check_access_seconds.clone(),
        );
        registry.register(
            "save_seconds",
            "Latency of snapshot saves",
            m.save_seconds.clone(),
        );
        registry.register(
            "load_seconds",
            "Latency of room loads",
            m.load_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The long-lived tasks whose size the relay logs once at their first spawn.
#[derive(Debug, Clone, Copy)]
pub enum TaskKind {
    Connection,
    Room,
}

/// Logs the size of a task's future once per kind: what every connection's
/// or room's task holds for its whole life besides its heap allocations.
pub fn log_task_size_once(kind: TaskKind, bytes: usize) {
    static CONNECTION: std::sync::Once = std::sync::Once::new();
    static ROOM: std::sync::Once = std::sync::Once::new();
    let once = match kind {
        TaskKind::Connection => &CONNECTION,
        TaskKind::Room => &ROOM,
    };
    once.call_once(|| tracing::info!(?kind, bytes, "task size"));
}
