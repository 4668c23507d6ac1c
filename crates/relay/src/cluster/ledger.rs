//! Which changes of a room this node can show are in control, sans-IO.
//!
//! With several nodes, one saves a room (the lease holder) and the others
//! must know when what *they* hold is in control, or else save it
//! themselves. Every envelope a peer sends carries the next number of its
//! sequence. A node can vouch for a peer up to `n` when it received that
//! peer's envelopes 1…n without a gap since it last got the peer's full
//! state (a Reply or Answer to its own state vector). A save then announces
//! what it covers: the saver's own sequence and every peer it vouches for.
//!
//! A node owes control every document update it applied until a save — its
//! own or another node's — covers it:
//!
//! - a **frame** carries only its sender's clients' updates (its own clients'
//!   under its own number), so any save whose `covers` reaches the frame's
//!   number settles it;
//! - a **full state** (Reply, Answer) may carry anything its sender held, so
//!   only the sender's own save made at or after that number settles it (or
//!   this node's own save).
//!
//! Updates it cannot prove covered stay owed, and the room stays dirty until
//! the node saves them itself.

use std::collections::HashMap;

use super::envelope::PeerId;

/// Most peers remembered per room (old, silent ones are forgotten first).
const MAX_PEERS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Heard {
    last: u64,
    /// Every envelope up to `last` arrived (or was folded into a full state).
    vouched: bool,
}

#[derive(Debug)]
pub struct Ledger {
    me: PeerId,
    sent: u64,
    heard: HashMap<PeerId, Heard>,
    owed: Owed,
}

/// What a node owes control: per peer, the highest sequence number of an
/// applied frame / full state that no save is known to cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owed {
    pub frames: HashMap<PeerId, u64>,
    pub states: HashMap<PeerId, u64>,
}

impl Owed {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.states.is_empty()
    }
}

fn raise(map: &mut HashMap<PeerId, u64>, peer: PeerId, seq: u64) {
    let e = map.entry(peer).or_insert(seq);
    *e = (*e).max(seq);
}

/// Removes the entries of `map` that `covered` reaches.
fn drop_covered(map: &mut HashMap<PeerId, u64>, covered: impl Fn(PeerId) -> Option<u64>) {
    map.retain(|peer, owed| covered(*peer).is_none_or(|c| c < *owed));
}

/// What a received envelope revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    InOrder,
    /// Envelopes of a vouched peer went missing: ask for its state again.
    Gap,
    /// Already seen (or from before a full state): ignore the sequence.
    Stale,
}

impl Ledger {
    pub fn new(me: PeerId) -> Ledger {
        Ledger {
            me,
            sent: 0,
            heard: HashMap::new(),
            owed: Owed::default(),
        }
    }

    pub fn me(&self) -> PeerId {
        self.me
    }

    /// Numbers the next envelope this node sends.
    pub fn next_seq(&mut self) -> u64 {
        self.sent += 1;
        self.sent
    }

    /// Notes an envelope of `from` (whoever it is addressed to).
    pub fn heard(&mut self, from: PeerId, seq: u64) -> Receipt {
        if self.heard.len() >= MAX_PEERS && !self.heard.contains_key(&from) {
            self.heard.retain(|_, h| h.vouched);
        }
        let Some(h) = self.heard.get_mut(&from) else {
            self.heard.insert(
                from,
                Heard {
                    last: seq,
                    vouched: false,
                },
            );
            return Receipt::InOrder;
        };
        if seq <= h.last {
            return Receipt::Stale;
        }
        let gap = seq != h.last + 1;
        h.last = seq;
        if gap && h.vouched {
            h.vouched = false;
            return Receipt::Gap;
        }
        Receipt::InOrder
    }

    /// `from`'s envelope `seq` carried everything it had that this node
    /// lacked: from here on its sequence can be vouched for.
    pub fn full_state(&mut self, from: PeerId, seq: u64) {
        self.heard.insert(
            from,
            Heard {
                last: seq,
                vouched: true,
            },
        );
    }

    /// A frame of `origin` (this node's own, under the number it was sent
    /// with) changed the document.
    pub fn owe_frame(&mut self, origin: PeerId, seq: u64) {
        raise(&mut self.owed.frames, origin, seq);
    }

    /// A full state from `sender` changed the document.
    pub fn owe_state(&mut self, sender: PeerId, seq: u64) {
        raise(&mut self.owed.states, sender, seq);
    }

    /// What a save made now covers: this node's sequence and every peer it vouches for.
    pub fn covers(&self) -> Vec<(PeerId, u64)> {
        let mut out: Vec<(PeerId, u64)> = self
            .heard
            .iter()
            .filter(|(_, h)| h.vouched)
            .map(|(p, h)| (*p, h.last))
            .collect();
        out.push((self.me, self.sent));
        out
    }

    /// What this node owes now (taken when its own save starts).
    pub fn owed(&self) -> Owed {
        self.owed.clone()
    }

    /// `saver` saved what `covers` lists; `true` when nothing is owed any more.
    pub fn settle(&mut self, saver: PeerId, covers: &[(PeerId, u64)]) -> bool {
        let find = |peer: PeerId| covers.iter().find(|(p, _)| *p == peer).map(|(_, s)| *s);
        drop_covered(&mut self.owed.frames, find);
        drop_covered(&mut self.owed.states, |peer| {
            if peer == saver {
                find(peer)
            } else {
                None
            }
        });
        self.owed.is_empty()
    }

    /// This node's own save of everything in `snapshot` succeeded.
    pub fn settle_own(&mut self, snapshot: &Owed) -> bool {
        drop_covered(&mut self.owed.frames, |p| snapshot.frames.get(&p).copied());
        drop_covered(&mut self.owed.states, |p| snapshot.states.get(&p).copied());
        self.owed.is_empty()
    }

    pub fn owes_nothing(&self) -> bool {
        self.owed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vouches_only_for_unbroken_runs_after_a_full_state() {
        let mut l = Ledger::new(1);
        assert_eq!(l.heard(2, 5), Receipt::InOrder);
        assert_eq!(l.covers(), vec![(1, 0)], "no full state from 2 yet");
        l.full_state(2, 6);
        assert_eq!(l.heard(2, 7), Receipt::InOrder);
        assert!(l.covers().contains(&(2, 7)));
        assert_eq!(l.heard(2, 7), Receipt::Stale);
        assert_eq!(l.heard(2, 9), Receipt::Gap, "8 went missing");
        assert!(!l.covers().iter().any(|(p, _)| *p == 2));
        assert_eq!(l.heard(2, 11), Receipt::InOrder, "no second alarm");
        l.full_state(2, 12);
        assert!(l.covers().contains(&(2, 12)));
    }

    #[test]
    fn owed_frames_settle_when_covered_by_anyone() {
        let mut l = Ledger::new(1);
        let mine = l.next_seq();
        l.owe_frame(1, mine);
        l.owe_frame(3, 4);
        assert!(!l.settle(2, &[(1, mine)]), "3's frame is still owed");
        assert!(!l.settle(2, &[(3, 3)]), "3 up to 3 does not cover 4");
        assert!(l.settle(2, &[(3, 4)]));
        assert!(l.owes_nothing());
    }

    #[test]
    fn owed_states_settle_only_by_their_sender_or_me() {
        let mut l = Ledger::new(1);
        l.owe_state(3, 10);
        assert!(
            !l.settle(2, &[(3, 50)]),
            "2 vouching for 3's frames says nothing of 3's whole state"
        );
        assert!(!l.settle(3, &[(3, 9)]), "3 saved before it sent that state");
        assert!(l.settle(3, &[(3, 10)]));
        l.owe_state(4, 1);
        let snapshot = l.owed();
        l.owe_frame(5, 1);
        assert!(
            !l.settle_own(&snapshot),
            "5's frame came after the snapshot"
        );
        assert_eq!(l.owed().frames.len(), 1);
    }

    #[test]
    fn forgets_unvouched_peers_first_when_full() {
        let mut l = Ledger::new(1);
        l.full_state(2, 1);
        for p in 10..(10 + MAX_PEERS as u64) {
            l.heard(p, 1);
        }
        assert!(l.heard.len() <= MAX_PEERS);
        assert!(l.covers().contains(&(2, 1)), "the vouched peer stays");
    }
}
