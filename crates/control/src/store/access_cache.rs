//! A very short-lived memory of granted room access, for the relay's
//! `check-access` calls and the access check of `verify`.
//!
//! An entry is only trusted while the access-change feed has not moved: each
//! lookup reads the feed's last `seq` (one indexed `MAX`), and any new event —
//! committed by this replica or another one — empties the cache. Every change
//! that may revoke access writes such an event in its own transaction
//! (`store::events`), so a revocation is never answered from memory. Only
//! grants are remembered, for at most [`TTL`], which bounds how long a change
//! that writes no event (an upgrade of a role) can go unseen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tandem_protocol::http::Role;

/// Longest an entry is used.
pub const TTL: Duration = Duration::from_secs(1);
/// Most entries kept (then the cache starts over).
const MAX_ENTRIES: usize = 50_000;

/// What is remembered of a user allowed in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    /// Shown to the room's other clients (a rename shows within [`TTL`]).
    pub user_name: String,
}

#[derive(Default)]
pub struct AccessCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The feed position the entries were computed at.
    seq: i64,
    /// room id → user id → when it was computed, the role.
    entries: HashMap<String, HashMap<String, (Instant, Grant)>>,
    len: usize,
}

impl Inner {
    /// Forgets everything when the feed moved on.
    fn at(&mut self, seq: i64) {
        if self.seq != seq {
            self.entries.clear();
            self.len = 0;
            self.seq = seq;
        }
    }
}

impl AccessCache {
    /// The role remembered for `user` in `room` at feed position `seq`.
    pub fn get(&self, seq: i64, room: &str, user: &str) -> Option<Grant> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.at(seq);
        match inner.entries.get(room).and_then(|users| users.get(user)) {
            Some((at, grant)) if at.elapsed() < TTL => Some(grant.clone()),
            _ => None,
        }
    }

    /// Remembers a grant computed after reading feed position `seq`.
    pub fn put(&self, seq: i64, room: &str, user: &str, grant: Grant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.at(seq);
        if inner.len >= MAX_ENTRIES {
            inner.entries.clear();
            inner.len = 0;
        }
        let fresh = inner
            .entries
            .entry(room.to_string())
            .or_default()
            .insert(user.to_string(), (Instant::now(), grant))
            .is_none();
        if fresh {
            inner.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_feed_position_forgets_every_grant() {
        let cache = AccessCache::default();
        let editor = Grant {
            role: Role::Editor,
            user_name: "Ann".into(),
        };
        cache.put(4, "doc-a", "u1", editor.clone());
        assert_eq!(cache.get(4, "doc-a", "u1"), Some(editor));
        assert_eq!(cache.get(4, "doc-a", "u2"), None);
        assert_eq!(cache.get(4, "doc-b", "u1"), None);
        assert_eq!(cache.get(5, "doc-a", "u1"), None);
        // …and does not come back at the old position either.
        assert_eq!(cache.get(4, "doc-a", "u1"), None);
    }

    #[test]
    fn entries_are_bounded() {
        let cache = AccessCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            let grant = Grant {
                role: Role::Viewer,
                user_name: String::new(),
            };
            cache.put(1, "doc-a", &format!("u{i}"), grant);
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.len <= MAX_ENTRIES);
    }
}
