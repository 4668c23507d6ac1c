//! Handshake limits per client IP: a token bucket per address (`rate`
//! handshakes a second, bursts of `burst`). Full buckets are forgotten when
//! the table grows, so a spray of addresses costs bounded memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most addresses remembered before full buckets are swept.
const MAX_TRACKED: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct IpLimiter {
    rate: f64,
    burst: f64,
    /// Whether loopback peers (a local proxy, a load generator) are limited too.
    limit_loopback: bool,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl IpLimiter {
    /// `rate` 0 turns the limit off.
    pub fn new(rate: u32, burst: u32, limit_loopback: bool) -> IpLimiter {
        IpLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            limit_loopback,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one handshake from `ip`'s bucket at `now`; false when it is empty.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 || (ip.is_loopback() && !self.limit_loopback) {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_the_rate() {
        let l = IpLimiter::new(10, 5, true);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..5).all(|_| l.allow(ip, t0)));
        assert!(!l.allow(ip, t0));
        assert!(l.allow(other, t0), "per address");
        assert!(l.allow(ip, t0 + Duration::from_millis(100)));
        assert!(!l.allow(ip, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn off_and_loopback() {
        let t0 = Instant::now();
        let off = IpLimiter::new(0, 1, true);
        assert!((0..100).all(|_| off.allow("203.0.113.7".parse().unwrap(), t0)));
        let l = IpLimiter::new(1, 1, false);
        assert!((0..100).all(|_| l.allow("127.0.0.1".parse().unwrap(), t0)));
        assert!(l.allow("::ffff:203.0.113.9".parse().unwrap(), t0));
    }
}
