//! Latency samples and their summary: exact nearest-rank percentiles over
//! every sample (a run has at most a few million, so sorting is cheap).

use serde::{Deserialize, Serialize};

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of sorted samples.
pub fn nearest_rank(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Summarizes samples given in microseconds (sorts them in place).
pub fn summarize_us(samples: &mut [u32]) -> Percentiles {
    samples.sort_unstable();
    let ms = |p: f64| nearest_rank(samples, p).map_or(0.0, |us| f64::from(us) / 1000.0);
    Percentiles {
        count: samples.len() as u64,
        p50: ms(50.0),
        p95: ms(95.0),
        p99: ms(99.0),
        max: ms(100.0),
    }
}

/// The median of a set of values (mean of the two middle ones for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Microseconds to a sample (saturating at about 71 minutes).
pub fn us_sample(us: u64) -> u32 {
    u32::try_from(us).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_follows_the_definition() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&s, 50.0), Some(50));
        assert_eq!(nearest_rank(&s, 95.0), Some(95));
        assert_eq!(nearest_rank(&s, 99.0), Some(99));
        assert_eq!(nearest_rank(&s, 100.0), Some(100));
        assert_eq!(nearest_rank(&s, 0.1), Some(1));
        assert_eq!(nearest_rank(&[7], 99.0), Some(7));
        assert_eq!(nearest_rank(&[], 50.0), None);
        // 5 samples: p50 is the 3rd, p99 the 5th.
        assert_eq!(nearest_rank(&[10, 20, 30, 40, 50], 50.0), Some(30));
        assert_eq!(nearest_rank(&[10, 20, 30, 40, 50], 99.0), Some(50));
        assert_eq!(nearest_rank(&[10, 20, 30, 40, 50], 40.0), Some(20));
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let mut s: Vec<u32> = (1..=1000).rev().map(|i| i * 1000).collect();
        let p = summarize_us(&mut s);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p95, 950.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(summarize_us(&mut []), Percentiles::default());
    }

    #[test]
    fn one_slow_sample_in_a_hundred_is_the_max_not_the_p99() {
        let mut s = vec![1000u32; 99];
        s.push(250_000);
        let p = summarize_us(&mut s);
        assert_eq!((p.p50, p.p99, p.max), (1.0, 1.0, 250.0));
        s.push(250_000);
        assert_eq!(summarize_us(&mut s).p99, 250.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(us_sample(u64::MAX), u32::MAX);
    }
}
