//! The room's side of the cluster. To the sans-IO room, all other relay
//! nodes are one writable connection, [`PEERS`]: what the room broadcasts
//! from its own clients is published (one `Frame` envelope per dispatch),
//! and what arrives from other nodes is fed to the room as frames of that
//! connection, so the same sync and awareness rules apply to both.
//!
//! Catching up: when the room's subscription starts (or starts again after
//! Redis came back), when a peer's sequence has a gap, and when this node's
//! own envelopes were lost, the room sends `Hello` (its state vector and
//! awareness). Every other node answers with a `Reply` (what the hello's
//! sender lacks, plus its own state vector), which is answered with an
//! `Answer` (what the replier lacks). Two nodes of a room therefore
//! converge as soon as both reach Redis again, whatever was lost.

use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::StateVector;

use super::actor::RoomActor;
use super::persist::raise_acked;
use crate::cluster::envelope::{Envelope, Kind, PeerId, Saved, EVERYONE, MAX_PARTS};
use crate::cluster::ledger::{Ledger, Owed, Receipt};
use crate::cluster::{Cluster, Inbound, Membership};
use crate::room::{ConnId, Outgoing};

/// The connection id under which the other nodes appear in the room
/// (client connections are numbered from 1).
pub(super) const PEERS: ConnId = 0;

pub(super) struct Peers {
    pub(super) cluster: Cluster,
    membership: Membership,
    pub(super) ledger: Ledger,
}

/// A fresh random peer id (never [`EVERYONE`]).
fn new_peer_id() -> PeerId {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// Whether a y-websocket message carries a document update (sync, not awareness).
fn is_document(msg: &[u8]) -> bool {
    msg.first() == Some(&0)
}

fn messages_for_peers(out: &mut Vec<Outgoing>) -> Vec<Bytes> {
    let mut mine = Vec::new();
    out.retain(|o| match o {
        Outgoing::To(PEERS, msg) => {
            mine.push(msg.clone());
            false
        }
        _ => true,
    });
    mine
}

impl RoomActor {
    /// Joins the room's channel (after the load); the inbox, when clustered.
    pub(super) fn join_cluster(&mut self) -> Option<tokio::sync::mpsc::Receiver<Inbound>> {
        let cluster = self.hub.cluster.clone()?;
        let (membership, inbox) = cluster.join(&self.id);
        // Its greeting is sent once the subscription is active (`Subscribed`).
        let _ = self.room.join(PEERS, true);
        self.peers = Some(Peers {
            cluster,
            membership,
            ledger: Ledger::new(new_peer_id()),
        });
        Some(inbox)
    }

    /// Leaves the room's channel and gives the save lease back.
    pub(super) async fn leave_cluster(&mut self) {
        if let Some(p) = self.peers.take() {
            p.cluster.release_lease(&self.id, p.ledger.me()).await;
        }
    }

    /// Publishes one envelope (in pieces of at most `MAX_PARTS` messages).
    /// Returns the sequence number of the last piece.
    fn send(&mut self, kind: Kind, to: PeerId, parts: Vec<Bytes>) -> Option<u64> {
        let p = self.peers.as_mut()?;
        let mut last = None;
        let mut parts = parts.into_iter().peekable();
        while parts.peek().is_some() || last.is_none() {
            let chunk: Vec<Bytes> = parts.by_ref().take(MAX_PARTS).collect();
            let seq = p.ledger.next_seq();
            let envelope = Envelope {
                kind,
                from: p.ledger.me(),
                to,
                seq,
                parts: chunk,
            };
            p.cluster.publish(&p.membership, envelope.encode());
            last = Some(seq);
        }
        last
    }

    /// What the room's own clients sent, for the other nodes.
    pub(super) fn publish_frames(&mut self, msgs: Vec<Bytes>) {
        if msgs.is_empty() || self.peers.is_none() {
            return;
        }
        let document = msgs.iter().any(|m| is_document(m));
        if let Some(seq) = self.send(Kind::Frame, EVERYONE, msgs) {
            if let Some(p) = self.peers.as_mut().filter(|_| document) {
                let me = p.ledger.me();
                p.ledger.owe_frame(me, seq);
            }
        }
    }

    /// Asks every other node for what this one lacks, and tells them its awareness.
    fn hello(&mut self) {
        self.hub.metrics.cluster_resyncs.inc();
        let mut greeting = self.room.greeting(PEERS);
        let parts = messages_for_peers(&mut greeting);
        self.send(Kind::Hello, EVERYONE, parts);
    }

    pub(super) fn check_trouble(&mut self) {
        if self
            .peers
            .as_ref()
            .is_some_and(|p| p.membership.take_trouble())
        {
            tracing::debug!("envelopes were lost; catching up with the other nodes");
            self.hello();
        }
    }

    pub(super) fn on_cluster(&mut self, msg: Inbound) {
        match msg {
            Inbound::Subscribed => self.hello(),
            Inbound::Message(bytes) => match Envelope::decode(bytes) {
                Ok(envelope) => self.on_envelope(envelope),
                Err(e) => {
                    self.hub.metrics.cluster_bad_messages.inc();
                    tracing::warn!(error = %e, "dropped a malformed cluster envelope");
                }
            },
        }
    }

    fn on_envelope(&mut self, env: Envelope) {
        let Some(p) = self.peers.as_mut() else { return };
        let me = p.ledger.me();
        if env.from == me || env.from == EVERYONE {
            return; // our own, back from Redis
        }
        let receipt = p.ledger.heard(env.from, env.seq);
        if receipt == Receipt::Stale || (env.to != EVERYONE && env.to != me) {
            return;
        }
        if env.kind == Kind::Saved {
            self.on_saved_elsewhere(&env);
        } else {
            self.apply_from_peer(&env);
        }
        if receipt == Receipt::Gap {
            tracing::debug!(
                peer = env.from,
                "a peer's envelopes went missing; catching up"
            );
            self.hello();
        }
    }

    /// Feeds an envelope's messages to the room, answers what needs answering.
    fn apply_from_peer(&mut self, env: &Envelope) {
        let before = self.room.stats().updates_applied;
        let mut answers = Vec::new();
        for part in &env.parts {
            match self.room.receive(PEERS, part) {
                Ok(mut out) => {
                    answers.extend(messages_for_peers(&mut out));
                    self.dispatch(out);
                }
                Err(e) => {
                    let mut leftover = self.room.take_leftover();
                    answers.extend(messages_for_peers(&mut leftover));
                    self.dispatch(leftover);
                    self.hub.metrics.cluster_bad_messages.inc();
                    tracing::warn!(peer = env.from, error = %e, "bad message from another node; skipped");
                }
            }
        }
        let changed = self.room.stats().updates_applied != before;
        if let Some(p) = self.peers.as_mut() {
            if env.kind.is_full_state() {
                p.ledger.full_state(env.from, env.seq);
                if changed {
                    p.ledger.owe_state(env.from, env.seq);
                }
            } else if changed {
                p.ledger.owe_frame(env.from, env.seq);
            }
        }
        match env.kind {
            Kind::Hello => {
                let mut greeting = self.room.greeting(PEERS);
                answers.extend(messages_for_peers(&mut greeting));
                self.send(Kind::Reply, env.from, answers);
            }
            Kind::Reply => {
                self.send(Kind::Answer, env.from, answers);
            }
            Kind::Frame | Kind::Answer | Kind::Saved => {}
        }
    }

    /// Another node saved: settles what its save covers.
    fn on_saved_elsewhere(&mut self, env: &Envelope) {
        let Ok(saved) = Saved::from_parts(&env.parts) else {
            self.hub.metrics.cluster_bad_messages.inc();
            return;
        };
        if let Ok(sv) = StateVector::decode_v1(&saved.state_vector) {
            raise_acked(&mut self.persist.acked, &sv);
        }
        let Some(p) = self.peers.as_mut() else { return };
        let before = p.ledger.owed();
        let settled = p.ledger.settle(env.from, &saved.covers);
        if p.ledger.owed() != before {
            self.persist.settled_at = Some(tokio::time::Instant::now());
        }
        if settled && self.persist.dirty_since.is_some() {
            tracing::debug!(
                saver = env.from,
                "another node saved everything this one holds"
            );
            self.mark_clean();
        }
    }

    /// This node saved: settles its debts and tells the others what it saved.
    pub(super) fn after_own_save(
        &mut self,
        owed: &Owed,
        sv: &StateVector,
        covers: Vec<(PeerId, u64)>,
    ) {
        if let Some(p) = self.peers.as_mut() {
            p.ledger.settle_own(owed);
        }
        let saved = Saved {
            state_vector: Bytes::from(yrs::updates::encoder::Encode::encode_v1(sv)),
            covers,
        };
        self.send(Kind::Saved, EVERYONE, saved.into_parts());
    }
}

#[cfg(test)]
mod tests {
    use yrs::{ReadTxn, Transact};

    use super::*;

    #[test]
    fn peer_ids_are_never_everyone_and_differ() {
        let a = new_peer_id();
        let b = new_peer_id();
        assert_ne!(a, EVERYONE);
        assert_ne!(a, b);
    }

    #[test]
    fn only_sync_messages_count_as_document() {
        assert!(is_document(&[0, 2, 0]));
        assert!(!is_document(&[1, 1, 0]));
        assert!(!is_document(&[]));
    }

    #[test]
    fn the_doc_of_a_fresh_room_encodes_its_state_vector() {
        let room = crate::room::Room::new();
        let sv = room.doc().transact().state_vector();
        assert_eq!(
            StateVector::decode_v1(&yrs::updates::encoder::Encode::encode_v1(&sv)).unwrap(),
            sv
        );
    }
}
