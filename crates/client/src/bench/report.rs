//! What a scenario run reports (one JSON object per run), its human table,
//! and the side-by-side comparison of several servers (medians over runs,
//! ratios against Tandem).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::{median, Percentiles};

/// The server's processes during a run (summed when it has several).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// Before any client connected.
    pub rss_before_kib: u64,
    /// Every client connected and synced, before the first edit.
    pub rss_connected_kib: u64,
    /// At the end of the timed phase (and of the hold).
    pub rss_end_kib: u64,
    /// Peak RSS of the processes since they started.
    pub rss_peak_kib: u64,
    /// (end − before) / connections.
    pub rss_per_conn_kib: f64,
    /// The same for the first process alone (Tandem: the relay without control).
    #[serde(default)]
    pub first_rss_per_conn_kib: f64,
    /// CPU time spent while clients connected.
    pub cpu_connect_secs: f64,
    /// CPU time spent during the timed phase.
    pub cpu_timed_secs: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: String,
    pub scenario: String,
    pub rooms: usize,
    pub clients: usize,
    pub edits_per_client: u32,
    pub rate_per_sec: f64,
    /// Handshake (with the token verify, for Tandem) to first sync.
    pub connect_ms: Percentiles,
    pub connect_failures: usize,
    pub edits_sent: u64,
    pub updates_expected: u64,
    pub updates_received: u64,
    /// Wire level: a client's own edits the server sent back to it, not
    /// counted as received (y-websocket, Hocuspocus and y-sweet echo; Tandem does not).
    #[serde(default)]
    pub echoes_ignored: u64,
    /// Remote edits received per second, from the start of the timed phase
    /// to the last delivery.
    pub delivered_per_sec: f64,
    /// Wire-level clients: remote updates counted and timestamped from their
    /// bytes, never applied to a document (`--wire`).
    #[serde(default)]
    pub wire: bool,
    /// Set when several generator processes drove one server at once
    /// (`--group`): [`compare`] merges the reports of a group into one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Send to receive of every remote edit, at every client.
    pub latency_ms: Percentiles,
    pub rooms_converged: usize,
    pub converged: bool,
    pub all_delivered: bool,
    pub timed_secs: f64,
    /// Large documents: size of the document a late joiner received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerStats>,
    /// The first few client errors.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl Report {
    /// Server CPU time of the timed phase per remote update delivered (its
    /// inverse is the updates one fully busy core delivers per second).
    pub fn cpu_us_per_delivered(&self) -> Option<f64> {
        let cpu = self.server.as_ref()?.cpu_timed_secs;
        (self.updates_received > 0 && cpu > 0.0).then(|| cpu * 1e6 / self.updates_received as f64)
    }

    /// A few lines for a person.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} · {}: {} clients in {} rooms, {} edits each at {}/s",
            self.target,
            self.scenario,
            self.clients,
            self.rooms,
            self.edits_per_client,
            self.rate_per_sec
        );
        let _ = writeln!(
            s,
            "  connect   p50 {:.1} ms  p99 {:.1} ms  failures {}",
            self.connect_ms.p50, self.connect_ms.p99, self.connect_failures
        );
        let _ = writeln!(
            s,
            "  edits     sent {}  remote updates {}/{}  delivered {:.0}/s",
            self.edits_sent, self.updates_received, self.updates_expected, self.delivered_per_sec
        );
        if self.echoes_ignored > 0 {
            let _ = writeln!(
                s,
                "            echoes of a client's own edits ignored: {}",
                self.echoes_ignored
            );
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "  latency   p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            l.p50, l.p95, l.p99, l.max
        );
        let _ = writeln!(
            s,
            "  converged {} ({}/{} rooms)  all delivered {}",
            self.converged, self.rooms_converged, self.rooms, self.all_delivered
        );
        if let Some(b) = self.doc_bytes {
            let _ = writeln!(s, "  document  {b} bytes at first sync");
        }
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server    RSS {:.1} → {:.1} → {:.1} MiB (peak {:.1}), {:.2} KiB/conn ({:.2} first process), CPU {:.2} s connect + {:.2} s timed",
                mib(sv.rss_before_kib),
                mib(sv.rss_connected_kib),
                mib(sv.rss_end_kib),
                mib(sv.rss_peak_kib),
                sv.rss_per_conn_kib,
                sv.first_rss_per_conn_kib,
                sv.cpu_connect_secs,
                sv.cpu_timed_secs
            );
        }
        if let Some(us) = self.cpu_us_per_delivered() {
            let _ = writeln!(
                s,
                "  capacity  {us:.2} µs server CPU per delivered update = {:.0} updates/s per busy core{}",
                1e6 / us,
                if self.wire { " (wire-level clients)" } else { "" }
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error     {e}");
        }
        s
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One column of the comparison: how to read it from a report, and whether
/// more is better (for the ratio's direction).
struct Metric {
    name: &'static str,
    get: fn(&Report) -> Option<f64>,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "connect p50 ms",
        get: |r| Some(r.connect_ms.p50),
    },
    Metric {
        name: "connect p99 ms",
        get: |r| Some(r.connect_ms.p99),
    },
    Metric {
        name: "delivered/s",
        get: |r| Some(r.delivered_per_sec),
    },
    Metric {
        name: "latency p50 ms",
        get: |r| Some(r.latency_ms.p50),
    },
    Metric {
        name: "latency p95 ms",
        get: |r| Some(r.latency_ms.p95),
    },
    Metric {
        name: "latency p99 ms",
        get: |r| Some(r.latency_ms.p99),
    },
    Metric {
        name: "latency max ms",
        get: |r| Some(r.latency_ms.max),
    },
    Metric {
        name: "server RSS end MiB",
        get: |r| r.server.as_ref().map(|s| mib(s.rss_end_kib)),
    },
    Metric {
        name: "RSS/conn KiB",
        get: |r| r.server.as_ref().map(|s| s.rss_per_conn_kib),
    },
    Metric {
        name: "RSS/conn KiB (relay)",
        get: |r| {
            r.server
                .as_ref()
                .map(|s| s.first_rss_per_conn_kib)
                .filter(|_| r.target == "tandem")
        },
    },
    Metric {
        name: "CPU µs/delivered",
        get: |r| r.cpu_us_per_delivered(),
    },
    Metric {
        name: "delivered/CPU-s",
        get: |r| r.cpu_us_per_delivered().map(|us| 1e6 / us),
    },
    Metric {
        name: "server CPU s",
        get: |r| {
            r.server
                .as_ref()
                .map(|s| s.cpu_connect_secs + s.cpu_timed_secs)
        },
    },
];

/// Side-by-side table of many runs: per scenario, one row per metric, one
/// column per server (median over its runs), and the ratio of each peer to
/// Tandem. Runs that did not converge or lost edits are flagged.
pub fn compare(reports: &[Report]) -> String {
    let merged = merge_groups(reports);
    let reports = merged.as_slice();
    let mut by_scenario: BTreeMap<&str, BTreeMap<&str, Vec<&Report>>> = BTreeMap::new();
    for r in reports {
        by_scenario
            .entry(r.scenario.as_str())
            .or_default()
            .entry(r.target.as_str())
            .or_default()
            .push(r);
    }
    let order = ["tandem", "y-websocket", "hocuspocus", "y-sweet"];
    let mut out = String::new();
    for (scenario, targets) in by_scenario {
        let mut cols: Vec<&str> = order
            .iter()
            .copied()
            .filter(|t| targets.contains_key(t))
            .collect();
        cols.extend(targets.keys().copied().filter(|t| !order.contains(t)));
        let shape = targets.values().next().and_then(|v| v.first());
        let _ = writeln!(
            out,
            "\n## {scenario}{}",
            shape.map_or(String::new(), |r| format!(
                " — {} clients in {} rooms, {} edits each at {}/s",
                r.clients, r.rooms, r.edits_per_client, r.rate_per_sec
            ))
        );
        let mut header = format!("| {:<20} |", "metric (median)");
        let mut rule = format!("|{}|", "-".repeat(22));
        for c in &cols {
            let runs = targets.get(c).map_or(0, Vec::len);
            let _ = write!(header, " {:>18} |", format!("{c} ({runs})"));
            let _ = write!(rule, "{}:|", "-".repeat(19));
            if *c != "tandem" && targets.contains_key("tandem") {
                let _ = write!(header, " {:>8} |", "÷tandem");
                let _ = write!(rule, "{}:|", "-".repeat(9));
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for m in METRICS {
            let med = |t: &str| -> Option<f64> {
                let mut v: Vec<f64> = targets.get(t)?.iter().filter_map(|r| (m.get)(r)).collect();
                median(&mut v)
            };
            let base = med("tandem");
            let mut row = format!("| {:<20} |", m.name);
            for c in &cols {
                let v = med(c);
                let _ = write!(row, " {:>18} |", v.map_or("–".into(), fmt_num));
                if *c != "tandem" && targets.contains_key("tandem") {
                    let ratio = match (v, base) {
                        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
                        _ => "–".into(),
                    };
                    let _ = write!(row, " {ratio:>8} |");
                }
            }
            let _ = writeln!(out, "{row}");
        }
        let mut row = format!("| {:<20} |", "converged, all sent");
        for c in &cols {
            let runs = targets.get(c).map(Vec::as_slice).unwrap_or_default();
            let ok = runs
                .iter()
                .filter(|r| r.converged && r.all_delivered)
                .count();
            let _ = write!(row, " {:>18} |", format!("{ok}/{} runs", runs.len()));
            if *c != "tandem" && targets.contains_key("tandem") {
                let _ = write!(row, " {:>8} |", "");
            }
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

/// One report per group of generator processes that drove one server at
/// once: counts and rates add up; latency percentiles are the worst of the
/// processes' (the exact ones would need every sample), the p50 their
/// median; server figures are read by every process alike, so the largest
/// is kept. Reports without a group pass through.
pub fn merge_groups(reports: &[Report]) -> Vec<Report> {
    let mut out: Vec<Report> = Vec::new();
    let mut index: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for r in reports {
        let Some(group) = &r.group else {
            out.push(r.clone());
            continue;
        };
        let key = (group.clone(), r.target.clone(), r.scenario.clone());
        let Some(&i) = index.get(&key) else {
            index.insert(key, out.len());
            let mut first = r.clone();
            first.latency_ms.p50 = 0.0; // set below from all the processes
            out.push(first);
            continue;
        };
        let m = &mut out[i];
        m.rooms += r.rooms;
        m.clients += r.clients;
        m.connect_failures += r.connect_failures;
        m.edits_sent += r.edits_sent;
        m.updates_expected += r.updates_expected;
        m.updates_received += r.updates_received;
        m.echoes_ignored += r.echoes_ignored;
        m.delivered_per_sec += r.delivered_per_sec;
        m.rooms_converged += r.rooms_converged;
        m.converged &= r.converged;
        m.all_delivered &= r.all_delivered;
        m.timed_secs = m.timed_secs.max(r.timed_secs);
        for (a, b) in [
            (&mut m.connect_ms, &r.connect_ms),
            (&mut m.latency_ms, &r.latency_ms),
        ] {
            a.count += b.count;
            a.p95 = a.p95.max(b.p95);
            a.p99 = a.p99.max(b.p99);
            a.max = a.max.max(b.max);
        }
        if let (Some(a), Some(b)) = (&mut m.server, &r.server) {
            a.cpu_timed_secs = a.cpu_timed_secs.max(b.cpu_timed_secs);
            a.cpu_connect_secs = a.cpu_connect_secs.max(b.cpu_connect_secs);
            a.rss_end_kib = a.rss_end_kib.max(b.rss_end_kib);
            a.rss_peak_kib = a.rss_peak_kib.max(b.rss_peak_kib);
        }
        m.errors.extend(r.errors.iter().take(5).cloned());
    }
    // The p50s: the median of the processes' (connect p50s likewise).
    for (key, &i) in &index {
        let same = |r: &&Report| {
            r.group.as_deref() == Some(key.0.as_str()) && r.target == key.1 && r.scenario == key.2
        };
        let mut p50s: Vec<f64> = reports
            .iter()
            .filter(same)
            .map(|r| r.latency_ms.p50)
            .collect();
        let mut c50s: Vec<f64> = reports
            .iter()
            .filter(same)
            .map(|r| r.connect_ms.p50)
            .collect();
        out[i].latency_ms.p50 = median(&mut p50s).unwrap_or(0.0);
        out[i].connect_ms.p50 = median(&mut c50s).unwrap_or(0.0);
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, delivered: f64, p99: f64) -> Report {
        Report {
            target: target.into(),
            scenario: "fanout".into(),
            delivered_per_sec: delivered,
            latency_ms: Percentiles {
                count: 1,
                p50: 1.0,
                p95: 1.0,
                p99,
                max: p99,
            },
            converged: true,
            all_delivered: true,
            ..Report::default()
        }
    }

    #[test]
    fn compare_takes_medians_and_ratios_against_tandem() {
        let reports = vec![
            run("tandem", 1000.0, 2.0),
            run("tandem", 3000.0, 4.0),
            run("tandem", 2000.0, 3.0),
            run("hocuspocus", 500.0, 9.0),
        ];
        let t = compare(&reports);
        let row = t.lines().find(|l| l.starts_with("| delivered/s")).unwrap();
        assert!(
            row.contains("2000") && row.contains("500") && row.contains("0.25×"),
            "{row}"
        );
        let row = t.lines().find(|l| l.starts_with("| latency p99")).unwrap();
        assert!(row.contains("3.00") && row.contains("3.00×"), "{row}");
        assert!(t.contains("tandem (3)") && t.contains("hocuspocus (1)"));
        assert!(t.contains("3/3 runs") && t.contains("1/1 runs"));
    }

    #[test]
    fn reports_of_one_group_are_one_run() {
        let mut a = run("tandem", 1000.0, 2.0);
        a.group = Some("g1".into());
        a.updates_received = 100;
        a.server = Some(ServerStats {
            cpu_timed_secs: 1.0,
            ..ServerStats::default()
        });
        let mut b = a.clone();
        b.delivered_per_sec = 3000.0;
        b.latency_ms.p99 = 7.0;
        b.updates_received = 300;
        b.server.as_mut().unwrap().cpu_timed_secs = 2.0;
        let alone = run("tandem", 500.0, 1.0);
        let merged = merge_groups(&[a, b, alone]);
        assert_eq!(merged.len(), 2);
        let m = &merged[0];
        assert_eq!(m.delivered_per_sec, 4000.0);
        assert_eq!(m.updates_received, 400);
        assert_eq!(m.latency_ms.p99, 7.0);
        assert_eq!(m.cpu_us_per_delivered(), Some(2.0 * 1e6 / 400.0));
        assert_eq!(merged[1].delivered_per_sec, 500.0);
        let t = compare(std::slice::from_ref(m));
        assert!(t.contains("tandem (1)"), "{t}");
    }

    #[test]
    fn report_json_round_trips() {
        let r = run("tandem", 1.0, 1.0);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"deliveredPerSec\"") && json.contains("\"latencyMs\""));
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
