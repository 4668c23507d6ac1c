//! Awareness rules for client connections. A connection may set or clear
//! only the awareness client ids it announced: an id is taken by the first
//! connection that announces it, and another connection's id is refused
//! (unless both connections belong to the same user: a client that
//! reconnects keeps its Yjs client id). Beyond that, per connection: at most
//! `max_states` ids, states of at most `max_state_bytes` of JSON, and at most
//! `max_updates_per_sec` awareness messages (more are dropped whole).
//! A `null` state (a removal) for an id the connection does not hold is
//! dropped, not kept.

/// The caps, per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessLimits {
    pub max_states: usize,
    pub max_state_bytes: usize,
    pub max_updates_per_sec: u32,
}

impl Default for AwarenessLimits {
    fn default() -> Self {
        AwarenessLimits {
            max_states: 4,
            max_state_bytes: 16 * 1024,
            max_updates_per_sec: 60,
        }
    }
}

/// A fixed one-second window counter.
#[derive(Debug, Clone, Default)]
pub(super) struct Rate {
    window_start_ms: u64,
    count: u32,
}

impl Rate {
    /// Counts one message at `now_ms`; false when over `per_sec` in this window.
    pub(super) fn allow(&mut self, now_ms: u64, per_sec: u32) -> bool {
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 {
            self.window_start_ms = now_ms;
            self.count = 0;
        }
        if self.count >= per_sec {
            return false;
        }
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_resets_each_second() {
        let mut r = Rate::default();
        assert!((0..3).all(|_| r.allow(5_000, 3)));
        assert!(!r.allow(5_500, 3));
        assert!(r.allow(6_000, 3));
    }
}
