//! Memory and CPU time of server processes, read from `/proc/PID`.

use serde::Serialize;

/// Kernel clock ticks per second as `/proc/PID/stat` reports them (USER_HZ,
/// fixed at 100 on Linux for userspace).
const USER_HZ: f64 = 100.0;

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub rss_kib: u64,
    /// Peak RSS since the process started (VmHWM).
    pub peak_kib: u64,
    /// User + system CPU time.
    pub cpu_secs: f64,
}

/// Reads a process; `None` when it is gone or unreadable.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Sample {
        rss_kib: status_kib(&status, "VmRSS:")?,
        peak_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        cpu_secs: cpu_secs(&stat)?,
    })
}

/// One reading of each process, taken together; `None` if one is gone.
pub fn sample_each(pids: &[u32]) -> Option<Vec<Sample>> {
    pids.iter().map(|pid| sample(*pid)).collect()
}

/// The sum of several readings (a server made of more than one process).
pub fn total(samples: &[Sample]) -> Option<Sample> {
    if samples.is_empty() {
        return None;
    }
    let mut total = Sample::default();
    for s in samples {
        total.rss_kib += s.rss_kib;
        total.peak_kib += s.peak_kib;
        total.cpu_secs += s.cpu_secs;
    }
    Some(total)
}

/// The sum of several processes, read now.
pub fn sample_all(pids: &[u32]) -> Option<Sample> {
    total(&sample_each(pids)?)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// utime + stime from `/proc/PID/stat` (fields 14 and 15; the command name in
/// field 2 may contain spaces, so count from its closing parenthesis).
fn cpu_secs(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200";
        assert_eq!(cpu_secs(stat), Some(3.0));
        assert_eq!(cpu_secs("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.peak_kib >= s.rss_kib);
        assert!(sample_all(&[std::process::id(), std::process::id()])
            .is_some_and(|t| t.rss_kib >= 2 * s.rss_kib / 2));
        assert_eq!(sample_all(&[u32::MAX]), None);
        assert_eq!(sample_all(&[]), None);
    }
}
