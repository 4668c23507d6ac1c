//! A live room, sans-IO: one `yrs::Doc` plus awareness, and the y-websocket
//! sync protocol over them. Bytes come in with the id of the connection that
//! sent them; [`Outgoing`] messages go out. No sockets, no tasks, no clocks
//! of its own (the awareness clock is injected), so every rule here is
//! unit-tested without networking.
//!
//! Rules: answer SyncStep1 with SyncStep2 for everyone (read-only
//! connections too); apply and broadcast SyncStep2/Update only from writable
//! connections; broadcast awareness to the others and remember which
//! awareness client ids belong to which connection, so they can be removed
//! when it leaves or goes stale.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::time::Clock;
use yrs::sync::{Awareness, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

/// Identifies one connection within a room.
pub type ConnId = u64;

/// The y-websocket keepalive: an awareness message with zero entries.
pub const KEEPALIVE: &[u8] = &[1, 1, 0];

/// A message for one connection or for all but one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    To(ConnId, Bytes),
    /// To every connection of the room except `except` (if any).
    Broadcast {
        except: Option<ConnId>,
        msg: Bytes,
    },
}

/// Why a connection's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("message is not valid y-websocket: {0}")]
    Malformed(String),
    #[error("connection is not in the room")]
    UnknownConnection,
}

/// What the room counts about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Document updates applied that changed the document (new items or
    /// deletions, or updates held back until what they build on arrives).
    pub updates_applied: u64,
    /// Updates dropped because their sender is read-only.
    pub updates_dropped_readonly: u64,
}

struct ConnState {
    writable: bool,
    /// Awareness client ids this connection has announced.
    clients: HashSet<u64>,
}

pub struct Room {
    awareness: Awareness,
    conns: HashMap<ConnId, ConnState>,
    stats: RoomStats,
}

fn encode(msg: &Message) -> Bytes {
    Bytes::from(msg.encode_v1())
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room::with_awareness(Awareness::new(Doc::new()))
    }

    /// An empty room whose awareness reads time from `clock` (milliseconds).
    pub fn with_clock<C: Clock + 'static>(clock: C) -> Room {
        Room::with_awareness(Awareness::with_clock(Doc::new(), clock))
    }

    fn with_awareness(awareness: Awareness) -> Room {
        Room {
            awareness,
            conns: HashMap::new(),
            stats: RoomStats::default(),
        }
    }

    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    pub fn stats(&self) -> &RoomStats {
        &self.stats
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Adds a connection; returns what it must be sent first: the room's
    /// SyncStep1 (so it sends what the room lacks) and the awareness states
    /// of everyone present.
    pub fn join(&mut self, conn: ConnId, writable: bool) -> Vec<Outgoing> {
        self.conns.insert(
            conn,
            ConnState {
                writable,
                clients: HashSet::new(),
            },
        );
        self.greeting(conn)
    }

    /// The room's SyncStep1 and every awareness state, for `conn`: what a
    /// newcomer is sent, and what another relay node is sent to catch up.
    pub fn greeting(&self, conn: ConnId) -> Vec<Outgoing> {
        let sv = self.doc().transact().state_vector();
        let mut out = vec![Outgoing::To(
            conn,
            encode(&Message::Sync(SyncMessage::SyncStep1(sv))),
        )];
        if let Ok(update) = self.awareness.update() {
            if !update.clients.is_empty() {
                out.push(Outgoing::To(conn, encode(&Message::Awareness(update))));
            }
        }
        out
    }

    /// Makes a connection read-only or writable (a role change).
    pub fn set_writable(&mut self, conn: ConnId, writable: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.writable = writable;
        }
    }

    /// Removes a connection and the awareness states it announced; tells the others.
    pub fn leave(&mut self, conn: ConnId) -> Vec<Outgoing> {
        let Some(state) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        self.remove_awareness(state.clients.into_iter().collect(), None)
    }

    /// Handles one frame from `conn`.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8]) -> Result<Vec<Outgoing>, RoomError> {
        // yrs decoding of hostile input must not take the room down with it.
        match catch_unwind(AssertUnwindSafe(|| self.receive_inner(conn, frame))) {
            Ok(result) => result,
            Err(_) => Err(RoomError::Malformed("decoder panicked".into())),
        }
    }

    fn receive_inner(&mut self, conn: ConnId, frame: &[u8]) -> Result<Vec<Outgoing>, RoomError> {
        let writable = self
            .conns
            .get(&conn)
            .map(|c| c.writable)
            .ok_or(RoomError::UnknownConnection)?;
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let mut out = Vec::new();
        for msg in MessageReader::new(&mut decoder) {
            let msg = msg.map_err(|e| RoomError::Malformed(e.to_string()))?;
            match msg {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    out.push(Outgoing::To(conn, self.step2_for(&sv)));
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    if !writable {
                        self.stats.updates_dropped_readonly += 1;
                        continue;
                    }
                    if self.apply(&update)? {
                        out.push(Outgoing::Broadcast {
                            except: Some(conn),
                            msg: encode(&Message::Sync(SyncMessage::Update(update))),
                        });
                    }
                }
                Message::Awareness(update) => out.extend(self.apply_awareness(conn, update)?),
                Message::AwarenessQuery => {
                    if let Ok(update) = self.awareness.update() {
                        out.push(Outgoing::To(conn, encode(&Message::Awareness(update))));
                    }
                }
                Message::Auth(_) | Message::Custom(..) => {}
            }
        }
        Ok(out)
    }

    /// SyncStep2 carrying what a peer with state vector `sv` lacks.
    fn step2_for(&self, sv: &StateVector) -> Bytes {
        let update = self.doc().transact().encode_state_as_update_v1(sv);
        encode(&Message::Sync(SyncMessage::SyncStep2(update)))
    }

    /// Applies a v1 update to the document; an update that brings nothing
    /// new (another node's copy of what the room has) is not counted.
    pub fn apply(&mut self, update: &[u8]) -> Result<bool, RoomError> {
        let update = Update::decode_v1(update).map_err(|e| RoomError::Malformed(e.to_string()))?;
        let mut txn = self.doc().transact_mut();
        txn.apply_update(update)
            .map_err(|e| RoomError::Malformed(e.to_string()))?;
        let changed = !txn.insert_set().is_empty()
            || !txn.delete_set().is_empty()
            || txn.has_missing_updates();
        drop(txn);
        if changed {
            self.stats.updates_applied += 1;
        }
        Ok(changed)
    }

    fn apply_awareness(
        &mut self,
        conn: ConnId,
        update: AwarenessUpdate,
    ) -> Result<Vec<Outgoing>, RoomError> {
        // A keepalive (no entries) changes nothing: do not send it to everyone.
        if update.clients.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = update.clients.keys().map(ClientID::get).collect();
        let removed: Vec<u64> = update
            .clients
            .iter()
            .filter(|(_, e)| e.json.as_ref() == "null")
            .map(|(id, _)| id.get())
            .collect();
        let msg = encode(&Message::Awareness(update.clone()));
        self.awareness
            .apply_update(update)
            .map_err(|e| RoomError::Malformed(e.to_string()))?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.clients.extend(ids);
            for id in removed {
                c.clients.remove(&id);
            }
        }
        Ok(vec![Outgoing::Broadcast {
            except: Some(conn),
            msg,
        }])
    }

    /// Marks the given awareness clients as gone and builds the message that
    /// tells the room (to everyone but `except`).
    fn remove_awareness(&mut self, clients: Vec<u64>, except: Option<ConnId>) -> Vec<Outgoing> {
        let mut entries = HashMap::new();
        for id in clients {
            let cid = ClientID::new(id);
            let Some((clock, _)) = self.awareness.meta(cid) else {
                continue;
            };
            self.awareness.remove_state(cid);
            entries.insert(
                cid,
                AwarenessUpdateEntry {
                    clock: clock + 1,
                    json: Arc::from("null"),
                },
            );
        }
        if entries.is_empty() || self.conns.is_empty() {
            return Vec::new();
        }
        vec![Outgoing::Broadcast {
            except,
            msg: encode(&Message::Awareness(AwarenessUpdate { clients: entries })),
        }]
    }

    /// Removes awareness states not renewed for `timeout_ms` (clients renew
    /// every 15 s; y-protocols uses 30 s as the outdated timeout). Each
    /// removal is announced to everyone but the connection that owned the
    /// state: another relay node (the peers connection) sweeps its own.
    pub fn sweep_awareness(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<Outgoing> {
        let stale: HashSet<u64> = self
            .awareness
            .iter()
            .filter(|(_, state)| {
                state.data.is_some() && now_ms.saturating_sub(state.last_updated) >= timeout_ms
            })
            .map(|(id, _)| id.get())
            .collect();
        if stale.is_empty() {
            return Vec::new();
        }
        let mut by_owner: HashMap<Option<ConnId>, Vec<u64>> = HashMap::new();
        for (conn, c) in self.conns.iter_mut() {
            let owned: Vec<u64> = c.clients.intersection(&stale).copied().collect();
            c.clients.retain(|id| !stale.contains(id));
            if !owned.is_empty() {
                by_owner.entry(Some(*conn)).or_default().extend(owned);
            }
        }
        let owned: HashSet<u64> = by_owner.values().flatten().copied().collect();
        let orphans: Vec<u64> = stale.difference(&owned).copied().collect();
        if !orphans.is_empty() {
            by_owner.insert(None, orphans);
        }
        by_owner
            .into_iter()
            .flat_map(|(owner, ids)| self.remove_awareness(ids, owner))
            .collect()
    }
}

impl Default for Room {
    fn default() -> Self {
        Room::new()
    }
}

#[cfg(test)]
mod tests;
