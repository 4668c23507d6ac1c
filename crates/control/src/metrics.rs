//! Prometheus metrics of control (`GET /metrics`, OpenMetrics text), kept
//! with the `prometheus-client` crate: HTTP requests by route, method and
//! status, request latency by route (this covers `/collaboration/verify` and
//! `/collaboration/check-access`), and snapshot saves.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    pub snapshot_saves: Counter,
    pub snapshot_bytes_saved: Counter,
    pub emails_sent: Counter,
    pub email_failures: Counter,
    pub chat_streams: prometheus_client::metrics::gauge::Gauge,
    /// Running conversation poll loops (one per conversation with open streams).
    pub chat_pollers: prometheus_client::metrics::gauge::Gauge,
    /// Looks those loops took at the database.
    pub chat_polls: Counter,
    /// File bytes received (uploads) and sent (downloads).
    pub files_bytes_in: Counter,
    pub files_bytes_out: Counter,
    /// Upload intents answered `exists` (no bytes sent).
    pub files_dedupe_hits: Counter,
    pub files_readback_bytes: Counter,
    /// Collector runs, and files whose bytes they removed.
    pub files_gc_runs: Counter,
    pub files_gc_removed: Counter,
    /// Database rounds that served single-token verifies (several calls
    /// share a round under load).
    pub verify_rounds: Counter,
    pub sync: SyncMetrics,
}

/// Metrics of the sync engine (`tandem_control_sync_*`).
#[derive(Default)]
pub struct SyncMetrics {
    pub pushes: Counter,
    pub mutations_applied: Counter,
    pub mutations_duplicate: Counter,
    pub mutations_rejected: Counter,
    /// Field writes (and deletes) that lost to a newer clock.
    pub conflicts: Counter,
    pub pulls: Counter,
    pub changes_pulled: Counter,
    pub resets: Counter,
    pub tombstones_pruned: Counter,
    /// Rows kept, tombstones included (measured by the compactor).
    pub log_rows: prometheus_client::metrics::gauge::Gauge,
    pub streams: prometheus_client::metrics::gauge::Gauge,
}

impl SyncMetrics {
    fn register(&self, r: &mut Registry) {
        let s = r.sub_registry_with_prefix("sync");
        s.register("pushes", "Push requests answered", self.pushes.clone());
        s.register(
            "mutations_applied",
            "Mutations applied",
            self.mutations_applied.clone(),
        );
        s.register(
            "mutations_duplicate",
            "Mutations replayed (nothing changed)",
            self.mutations_duplicate.clone(),
        );
        s.register(
            "mutations_rejected",
            "Mutations rejected (viewers, oversize rows)",
            self.mutations_rejected.clone(),
        );
        s.register(
            "conflicts",
            "Field writes and deletes that lost to a newer clock",
            self.conflicts.clone(),
        );
        s.register("pulls", "Pull requests answered", self.pulls.clone());
        s.register(
            "changes_pulled",
            "Changed rows sent by pulls",
            self.changes_pulled.clone(),
        );
        s.register(
            "resets",
            "Pulls answered with reset (cursor older than the compaction horizon)",
            self.resets.clone(),
        );
        s.register(
            "tombstones_pruned",
            "Tombstones pruned after the horizon",
            self.tombstones_pruned.clone(),
        );
        s.register(
            "log_rows",
            "Rows kept by the sync log, tombstones included",
            self.log_rows.clone(),
        );
        s.register("streams", "Open sync event streams", self.streams.clone());
    }
}

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem_control");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let snapshot_saves = Counter::default();
        let snapshot_bytes_saved = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "snapshot_saves",
            "Snapshot saves merged into storage",
            snapshot_saves.clone(),
        );
        registry.register(
            "snapshot_bytes_saved",
            "Bytes of updates received by snapshot saves",
            snapshot_bytes_saved.clone(),
        );
        let emails_sent = Counter::default();
        let email_failures = Counter::default();
        let chat_streams = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "emails_sent",
            "Emails handed to the sender",
            emails_sent.clone(),
        );
        registry.register(
            "email_failures",
            "Email attempts that failed (retried with backoff)",
            email_failures.clone(),
        );
        registry.register(
            "chat_streams",
            "Open conversation event streams",
            chat_streams.clone(),
        );
        let chat_pollers = prometheus_client::metrics::gauge::Gauge::default();
        let chat_polls = Counter::default();
        registry.register(
            "chat_pollers",
            "Conversation poll loops running (one per conversation with open streams)",
            chat_pollers.clone(),
        );
        registry.register(
            "chat_polls",
            "Database looks of conversation poll loops",
            chat_polls.clone(),
        );
        let sync = SyncMetrics::default();
        sync.register(&mut registry);
        let files_bytes_in = Counter::default();
        let files_bytes_out = Counter::default();
        let files_dedupe_hits = Counter::default();
        let files_readback_bytes = Counter::default();
        let files_gc_runs = Counter::default();
        let files_gc_removed = Counter::default();
        let verify_rounds = Counter::default();
        for (name, help, c) in [
            ("files_bytes_in", "File bytes received by uploads", &files_bytes_in),
            ("files_bytes_out", "File bytes sent by downloads (directory backend) or handed out as download URLs (S3)", &files_bytes_out),
            ("files_dedupe_hits", "Upload intents answered with an existing file", &files_dedupe_hits),
            ("files_readback_bytes", "File bytes read back (from the directory or the store) to check an upload's SHA-256 on completion", &files_readback_bytes),
            ("files_gc_runs", "File collector runs", &files_gc_runs),
            ("files_gc_removed", "Files whose bytes the collector removed", &files_gc_removed),
            ("verify_rounds", "Database rounds serving POST /collaboration/verify calls (calls arriving together share one)", &verify_rounds),
        ] {
            registry.register(name, help, c.clone());
        }
        Metrics {
            sync,
            registry,
            files_bytes_in,
            files_bytes_out,
            files_dedupe_hits,
            files_readback_bytes,
            files_gc_runs,
            files_gc_removed,
            verify_rounds,
            chat_pollers,
            chat_polls,
            requests,
            latency,
            snapshot_saves,
            snapshot_bytes_saved,
            emails_sent,
            email_failures,
            chat_streams,
        }
    }

    /// Records one answered request; `route` is the route pattern (ids never
    /// become labels), or `unmatched`. Methods outside HTTP's standard set
    /// count as `other`: a client cannot make labels up.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method_label(method).to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `method` label: a standard method, or `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
