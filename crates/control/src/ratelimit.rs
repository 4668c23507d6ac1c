//! A fixed-window rate limiter per client IP, for the endpoints that guess
//! passwords or create accounts. In memory, per replica: with several
//! replicas the effective limit is the sum (a brake, not an exact quota).
//! The key is the TCP peer address; behind a proxy that is the proxy, so put
//! the equivalent limit at the proxy too.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, expired windows are pruned.
const PRUNE_AT: usize = 10_000;

/// Keyed by client IP by default; by user id for per-user limits.
pub struct RateLimiter<K = IpAddr> {
    /// Changed at runtime by a configuration reload.
    per_minute: AtomicU32,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute == 0` turns limiting off.
    pub fn new(per_minute: u32) -> RateLimiter<K> {
        RateLimiter {
            per_minute: AtomicU32::new(per_minute),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The limit in force (0: none).
    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    /// Changes the limit (a configuration reload); windows already open keep their counts.
    pub fn set_per_minute(&self, per_minute: u32) {
        self.per_minute.store(per_minute, Ordering::Relaxed);
    }

    /// [`check`](Self::check) as the API's answer: 429 with `Retry-After`.
    pub fn admit(&self, key: K) -> Result<(), crate::error::ApiError> {
        self.check(key)
            .map_err(|wait| crate::error::ApiError::RateLimited(wait.as_secs().max(1)))
    }

    /// `Ok(())` if `ip` may make one more request now, else how long to wait.
    pub fn check(&self, ip: K) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: K, now: Instant) -> Result<(), Duration> {
        let per_minute = self.per_minute();
        if per_minute == 0 {
            return Ok(());
        }
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= per_minute {
            return Err(WINDOW.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_window() {
        let l = RateLimiter::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(a, t0).is_ok());
        }
        let wait = l.check_at(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            l.check_at(b, t0).is_ok(),
            "other addresses are not affected"
        );
        assert!(l.check_at(a, t0 + WINDOW).is_ok(), "a new window starts");
        assert!(RateLimiter::<IpAddr>::new(0).check_at(a, t0).is_ok());
    }
}
