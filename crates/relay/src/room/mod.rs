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
//!
//! Client connections ([`Room::join_client`]) are hostile by default: a frame
//! holds at most [`Limits::max_messages_per_frame`] messages; their SyncStep1s
//! are not answered inline but coalesced into one pending answer per
//! connection ([`Room::answer_step2`], which the actor calls when the previous
//! answer was written out); an update that would grow the document past
//! [`Limits::max_document_bytes`] is refused; awareness follows
//! [`awareness`]'s rules. Another relay node ([`Room::join`]) is trusted.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tandem_protocol::yjs::{any_depth, Walk, MAX_ANY_DEPTH};

use bytes::Bytes;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::time::{Clock, SystemClock};
use yrs::sync::{Awareness, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

/// Identifies one connection within a room.
pub type ConnId = u64;

/// The y-websocket keepalive: an awareness message with zero entries.
pub const KEEPALIVE: &[u8] = &[1, 1, 0];

/// A message for one connection or for all but one (or but some).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    To(ConnId, Bytes),
    /// To every connection of the room except `except` (if any).
    Broadcast {
        except: Option<ConnId>,
        msg: Bytes,
    },
    /// The updates of several connections merged into one: to every
    /// connection except them.
    Merged {
        senders: Vec<ConnId>,
        msg: Bytes,
    },
}

impl Outgoing {
    /// What this message gives connection `conn`, if anything.
    pub fn message_for(&self, conn: ConnId) -> Option<&Bytes> {
        match self {
            Outgoing::To(to, msg) if *to == conn => Some(msg),
            Outgoing::Broadcast { except, msg } if *except != Some(conn) => Some(msg),
            Outgoing::Merged { senders, msg } if !senders.contains(&conn) => Some(msg),
            _ => None,
        }
    }
}

/// Most updates merged into one message, and most bytes of them: a run of
/// more is merged in pieces of this size.
const MERGE_MAX_UPDATES: usize = 64;
const MERGE_MAX_BYTES: usize = 256 * 1024;

/// Why a connection's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("message is not valid y-websocket: {0}")]
    Malformed(String),
    #[error("connection is not in the room")]
    UnknownConnection,
    #[error("more than {0} messages in one frame")]
    TooManyMessages(usize),
    #[error("the update would grow the document past {0} bytes")]
    DocumentTooLarge(usize),
}

/// What a room accepts from its client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most y-websocket messages in one frame.
    pub max_messages_per_frame: usize,
    /// Largest document (v1 encoding of the whole state), if any.
    pub max_document_bytes: Option<usize>,
    /// Awareness caps.
    pub awareness: awareness::AwarenessLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages_per_frame: 64,
            max_document_bytes: None,
            awareness: awareness::AwarenessLimits::default(),
        }
    }
}

/// What the room counts about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Document updates applied that changed the document (new items or
    /// deletions, or updates held back until what they build on arrives).
    pub updates_applied: u64,
    /// Updates that went out merged with others (see [`Room::hold_updates`]).
    pub updates_merged: u64,
    /// Updates dropped because their sender is read-only.
    pub updates_dropped_readonly: u64,
    /// SyncStep1s folded into an answer already pending.
    pub step2_coalesced: u64,
    /// Awareness entries dropped (see [`awareness`]).
    pub awareness_refused: u64,
}

struct ConnState {
    writable: bool,
    /// A client (hostile rules) rather than another relay node.
    client: bool,
    /// Awareness client ids this connection has announced.
    clients: HashSet<u64>,
    /// What the connection's pending SyncStep1s, coalesced, ask for.
    pending_step2: Option<StateVector>,
    /// Awareness updates accepted in the current rate window.
    awareness_rate: awareness::Rate,
    /// Who is on it (client connections of one user may take over each
    /// other's awareness ids).
    user: Option<Arc<str>>,
}

pub struct Room {
    awareness: Awareness,
    conns: HashMap<ConnId, ConnState>,
    stats: RoomStats,
    limits: Limits,
    /// The awareness clock (milliseconds), also for awareness rates.
    clock: Arc<dyn Clock>,
    /// What a frame refused halfway had already changed, for the others.
    leftover: Vec<Outgoing>,
    /// Upper bound of the document's encoded size: exact after a load or a
    /// recount, plus every update applied since.
    size_bound: usize,
    /// The SyncStep2 a client with an empty document is sent, while the
    /// document is exactly the state it was loaded from: the stored bytes as
    /// they came (no encode of the whole document for the first joiners).
    pristine: Option<Bytes>,
    /// While held (see [`Room::hold_updates`]): the updates applied, with
    /// their senders, in order.
    held: Option<Vec<(ConnId, Vec<u8>)>>,
}

/// The part of `a` that `b` has too: per client, the smaller clock. A
/// SyncStep2 for it answers both requests.
fn intersect(a: &StateVector, b: &StateVector) -> StateVector {
    let mut out = StateVector::default();
    for (client, clock) in a.iter() {
        let m = (*clock).min(b.get(client));
        if m > 0 {
            out.set_max(*client, m);
        }
    }
    out
}

/// `state` (a v1 update) framed as a SyncStep2 message, one copy.
fn stored_step2(state: &[u8]) -> Bytes {
    sync_message(1, state)
}

/// `update` (v1) framed as an Update message, one copy.
fn update_message(update: &[u8]) -> Bytes {
    sync_message(2, update)
}

/// A sync message of `kind` (1: SyncStep2, 2: Update) carrying `state`.
fn sync_message(kind: u8, state: &[u8]) -> Bytes {
    let mut msg = Vec::with_capacity(state.len() + 12);
    msg.extend_from_slice(&[0, kind]);
    let mut len = state.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            msg.push(byte);
            break;
        }
        msg.push(byte | 0x80);
    }
    msg.extend_from_slice(state);
    Bytes::from(msg)
}

/// The updates of `piece` merged into one, unless a struct id (a client's
/// clock) is in two of them: the room kept the first, a merge may keep
/// another, so such a piece goes as it came (`None`). Well-behaved clients
/// send such overlaps too, e.g. several clients' SyncStep2s after a relay
/// restart that lost edits they all hold.
fn merge_disjoint(piece: &[(ConnId, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut updates = Vec::with_capacity(piece.len());
    // Every update's clock ranges, (client, start, end), in one list: sorted,
    // an overlap of neighbours (in one update or two) refuses.
    let mut ranges = Vec::new();
    for (_, bytes) in piece {
        let update = Update::decode_v1(bytes).ok()?;
        for (client, r) in update.insertions(true).iter() {
            ranges.extend(r.iter().map(|r| (client.get(), r.start, r.end)));
        }
        updates.push(update);
    }
    ranges.sort_unstable();
    let overlap = ranges
        .windows(2)
        .any(|w| w[0].0 == w[1].0 && w[0].2 > w[1].1);
    if overlap {
        return None;
    }
    Some(Update::merge_updates(updates).encode_v1())
}

fn encode(msg: &Message) -> Bytes {
    Bytes::from(msg.encode_v1())
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room::with_clock(SystemClock)
    }

    /// An empty room whose awareness reads time from `clock` (milliseconds).
    pub fn with_clock<C: Clock + 'static>(clock: C) -> Room {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let c = clock.clone();
        let awareness = Awareness::with_clock(Doc::new(), move || c.now());
        Room {
            awareness,
            clock,
            conns: HashMap::new(),
            stats: RoomStats::default(),
            limits: Limits::default(),
            leftover: Vec::new(),
            size_bound: 0,
            pristine: None,
            held: None,
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether an update of `len` bytes would need a recount (an encode of
    /// the whole document) to be admitted.
    pub fn near_limit(&self, len: usize) -> bool {
        self.limits
            .max_document_bytes
            .is_some_and(|max| self.size_bound.saturating_add(len) > max)
    }

    /// An upper bound of the document's encoded size, in bytes.
    pub fn size_bound(&self) -> usize {
        self.size_bound
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

    /// Adds a trusted connection (another relay node): its SyncStep1s are
    /// answered inline and its updates and awareness are taken as they come.
    /// Returns what it must be sent first: the room's SyncStep1 (so it sends
    /// what the room lacks) and the awareness states of everyone present.
    pub fn join(&mut self, conn: ConnId, writable: bool) -> Vec<Outgoing> {
        self.insert(conn, writable, None)
    }

    /// Adds a client connection (see the module docs for its rules); returns
    /// its greeting, like [`Room::join`].
    pub fn join_client(&mut self, conn: ConnId, writable: bool, user: &str) -> Vec<Outgoing> {
        self.insert(conn, writable, Some(Arc::from(user)))
    }

    fn insert(&mut self, conn: ConnId, writable: bool, user: Option<Arc<str>>) -> Vec<Outgoing> {
        self.insert_state(conn, writable, user);
        self.greeting(conn)
    }

    fn insert_state(&mut self, conn: ConnId, writable: bool, user: Option<Arc<str>>) {
        let client = user.is_some();
        self.conns.insert(
            conn,
            ConnState {
                writable,
                client,
                clients: HashSet::new(),
                pending_step2: None,
                awareness_rate: awareness::Rate::default(),
                user,
            },
        );
    }

    /// After a refused frame: what its earlier messages changed (to send on).
    pub fn take_leftover(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.leftover)
    }

    /// Whether `conn` has a SyncStep1 waiting for its answer.
    pub fn has_pending_step2(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.pending_step2.is_some())
    }

    /// The SyncStep2 answering `conn`'s pending SyncStep1s (all of them at
    /// once), if any. Encodes what the connection lacks: call it off the
    /// async workers when the document is large.
    pub fn answer_step2(&mut self, conn: ConnId) -> Option<Bytes> {
        let sv = self.conns.get_mut(&conn)?.pending_step2.take()?;
        Some(self.step2_for(&sv))
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

    /// From now on the document updates that client connections send are
    /// held back instead of broadcast one by one, until
    /// [`Room::release_updates`]. Everything else (answers, awareness,
    /// other nodes' updates) still goes out as it comes, so awareness can
    /// arrive before the edits of the same run.
    pub fn hold_updates(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Bytes of the updates held back (see [`Room::hold_updates`]).
    pub fn held_bytes(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, |h| h.iter().map(|(_, u)| u.len()).sum())
    }

    /// Ends [`Room::hold_updates`]: the updates held back go out merged
    /// into one message (in pieces of at most `MERGE_MAX_UPDATES` and
    /// `MERGE_MAX_BYTES`) for every connection but their senders. When a
    /// piece has several senders, each of them gets the others' updates of
    /// it as they came: nobody receives their own updates back. A piece
    /// in which a struct id is twice is not merged (see `merge_disjoint`).
    pub fn release_updates(&mut self) -> Vec<Outgoing> {
        let Some(held) = self.held.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rest = &held[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < MERGE_MAX_UPDATES {
                bytes += rest[n].1.len();
                if n > 0 && bytes > MERGE_MAX_BYTES {
                    break;
                }
                n += 1;
            }
            let (piece, next) = rest.split_at(n);
            self.merge_piece(piece, &mut out);
            rest = next;
        }
        out
    }

    /// One piece of [`Room::release_updates`].
    fn merge_piece(&mut self, piece: &[(ConnId, Vec<u8>)], out: &mut Vec<Outgoing>) {
        let one_by_one = |out: &mut Vec<Outgoing>| {
            for (conn, update) in piece {
                out.push(Outgoing::Broadcast {
                    except: Some(*conn),
                    msg: update_message(update),
                });
            }
        };
        if piece.len() < 2 {
            return one_by_one(out);
        }
        // Every update was decoded and applied already; a merge that fails
        // anyway (or panics inside yrs) sends them as they came.
        let merged = catch_unwind(AssertUnwindSafe(|| merge_disjoint(piece)));
        let Ok(Some(merged)) = merged else {
            return one_by_one(out);
        };
        self.stats.updates_merged += piece.len() as u64;
        let msg = update_message(&merged);
        let mut senders: Vec<ConnId> = piece.iter().map(|(conn, _)| *conn).collect();
        senders.sort_unstable();
        senders.dedup();
        if let [sender] = senders[..] {
            out.push(Outgoing::Broadcast {
                except: Some(sender),
                msg,
            });
            return;
        }
        let each: Vec<Bytes> = piece.iter().map(|(_, u)| update_message(u)).collect();
        for sender in &senders {
            for ((from, _), msg) in piece.iter().zip(&each) {
                if from != sender {
                    out.push(Outgoing::To(*sender, msg.clone()));
                }
            }
        }
        out.push(Outgoing::Merged { senders, msg });
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
        let (writable, client) = self
            .conns
            .get(&conn)
            .map(|c| (c.writable, c.client))
            .ok_or(RoomError::UnknownConnection)?;
        // Count (and decode) first: an oversized batch does no work at all.
        let cap = if client {
            self.limits.max_messages_per_frame
        } else {
            usize::MAX
        };
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let mut msgs = Vec::new();
        for msg in MessageReader::new(&mut decoder) {
            if msgs.len() >= cap {
                return Err(RoomError::TooManyMessages(cap));
            }
            msgs.push(msg.map_err(|e| RoomError::Malformed(e.to_string()))?);
        }
        let mut out = Vec::new();
        for msg in msgs {
            // A panic inside yrs (decoding an update happens as it is
            // applied) must not lose what earlier messages already changed.
            let one = catch_unwind(AssertUnwindSafe(|| {
                self.one(conn, msg, writable, client, &mut out)
            }))
            .unwrap_or_else(|_| Err(RoomError::Malformed("decoder panicked".into())));
            if let Err(e) = one {
                // What earlier messages of the frame changed still goes out.
                self.leftover = out;
                return Err(e);
            }
        }
        Ok(out)
    }

    /// Handles one decoded message of `conn`'s frame, adding to `out`.
    fn one(
        &mut self,
        conn: ConnId,
        msg: Message,
        writable: bool,
        client: bool,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), RoomError> {
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) if client => self.want_step2(conn, sv),
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                out.push(Outgoing::To(conn, self.step2_for(&sv)));
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                if !writable {
                    self.stats.updates_dropped_readonly += 1;
                    return Ok(());
                }
                if client {
                    self.admit(update.len())?;
                }
                if self.apply(&update)? {
                    // Only clients' updates are held: another node's go out
                    // as they come (a merge would leave out the other nodes).
                    match self.held.as_mut().filter(|_| client) {
                        Some(held) => held.push((conn, update)),
                        None => out.push(Outgoing::Broadcast {
                            except: Some(conn),
                            msg: update_message(&update),
                        }),
                    }
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
        Ok(())
    }

    /// Records a SyncStep1 of `conn`, folded into one already pending.
    fn want_step2(&mut self, conn: ConnId, sv: StateVector) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending_step2 = Some(match c.pending_step2.take() {
                Some(pending) => {
                    self.stats.step2_coalesced += 1;
                    intersect(&pending, &sv)
                }
                None => sv,
            });
        }
    }

    /// Whether an update of `len` bytes may be applied under the document
    /// limit. The bound is recounted exactly (an encode of the whole
    /// document) only when it would pass the limit.
    fn admit(&mut self, len: usize) -> Result<(), RoomError> {
        let Some(max) = self.limits.max_document_bytes else {
            return Ok(());
        };
        if self.size_bound.saturating_add(len) > max {
            self.recount();
            if self.size_bound.saturating_add(len) > max {
                return Err(RoomError::DocumentTooLarge(max));
            }
        }
        Ok(())
    }

    /// Sets the size bound to the document's exact encoded size.
    pub fn recount(&mut self) {
        let len = self
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
            .len();
        self.size_bound = len;
    }

    /// Applies a stored state (the load before anyone joins); until the
    /// document changes, it is what a client with an empty document is sent.
    pub fn load(&mut self, state: &[u8]) -> Result<bool, RoomError> {
        let changed = self.apply(state)?;
        self.pristine = Some(stored_step2(state));
        Ok(changed)
    }

    /// Starts a load done in two steps, for large states: until the
    /// document changes, a client with an empty document is sent `state` as
    /// its SyncStep2 ([`Room::pristine_answer`]), already while the state is
    /// integrated elsewhere ([`Room::integrate`], then [`Room::finish_load`]).
    /// The caller holds every other message back until then.
    pub fn begin_load(&mut self, state: &[u8]) {
        self.pristine = Some(stored_step2(state));
    }

    /// Decodes `state` and integrates it into a new document (the slow part
    /// of a load: run it off the async workers).
    pub fn integrate(state: &[u8]) -> Result<Doc, RoomError> {
        if any_depth(state, MAX_ANY_DEPTH) == Walk::TooDeep {
            return Err(RoomError::Malformed(format!(
                "values nested deeper than {MAX_ANY_DEPTH} levels"
            )));
        }
        let doc = Doc::new();
        let update = catch_unwind(AssertUnwindSafe(|| Update::decode_v1(state)))
            .map_err(|_| RoomError::Malformed("decoder panicked".into()))?
            .map_err(|e| RoomError::Malformed(e.to_string()))?;
        {
            let mut txn = doc.transact_mut();
            catch_unwind(AssertUnwindSafe(|| txn.apply_update(update)))
                .map_err(|_| RoomError::Malformed("integration panicked".into()))?
                .map_err(|e| RoomError::Malformed(e.to_string()))?;
        }
        Ok(doc)
    }

    /// Ends a load begun with [`Room::begin_load`]: `doc` (from
    /// [`Room::integrate`] of the `len` stored bytes) becomes the room's
    /// document, or, when the state did not decode, nothing stored is sent
    /// any more and the room starts from what clients send.
    pub fn finish_load(&mut self, loaded: Result<Doc, RoomError>, len: usize) {
        match loaded {
            Ok(doc) => {
                let c = self.clock.clone();
                self.awareness = Awareness::with_clock(doc, move || c.now());
                self.size_bound = len;
            }
            Err(_) => self.pristine = None,
        }
    }

    /// The stored state as a SyncStep2, when `frame` is exactly a SyncStep1
    /// of an empty document from a client and the document is still the one
    /// loaded: the only message answered while a load is being integrated.
    pub fn pristine_answer(&self, conn: ConnId, frame: &[u8]) -> Option<Bytes> {
        const EMPTY_STEP1: &[u8] = &[0, 0, 1, 0];
        if frame != EMPTY_STEP1 || !self.conns.get(&conn).is_some_and(|c| c.client) {
            return None;
        }
        self.pristine.clone()
    }

    /// Adds a client connection without its greeting (while a load is being
    /// integrated; send [`Room::greeting`] after).
    pub fn join_client_quiet(&mut self, conn: ConnId, writable: bool, user: &str) {
        self.insert_state(conn, writable, Some(Arc::from(user)));
    }

    /// SyncStep2 carrying what a peer with state vector `sv` lacks.
    fn step2_for(&self, sv: &StateVector) -> Bytes {
        if sv.is_empty() {
            if let Some(pristine) = &self.pristine {
                return pristine.clone();
            }
        }
        let update = self.doc().transact().encode_state_as_update_v1(sv);
        encode(&Message::Sync(SyncMessage::SyncStep2(update)))
    }

    /// Applies a v1 update to the document; an update that brings nothing
    /// new (another node's copy of what the room has) is not counted.
    pub fn apply(&mut self, update: &[u8]) -> Result<bool, RoomError> {
        let update_len = update.len();
        // yrs recurses into nested values without a limit: a few bytes per
        // level would overflow the stack and abort the whole process (no
        // `catch_unwind` stops that), so the nesting is measured first.
        if any_depth(update, MAX_ANY_DEPTH) == Walk::TooDeep {
            return Err(RoomError::Malformed(format!(
                "values nested deeper than {MAX_ANY_DEPTH} levels"
            )));
        }
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
            self.size_bound = self.size_bound.saturating_add(update_len);
            self.pristine = None;
        }
        Ok(changed)
    }

    fn apply_awareness(
        &mut self,
        conn: ConnId,
        mut update: AwarenessUpdate,
    ) -> Result<Vec<Outgoing>, RoomError> {
        // A keepalive (no entries) changes nothing: do not send it to everyone.
        if update.clients.is_empty() {
            return Ok(Vec::new());
        }
        if self.conns.get(&conn).is_some_and(|c| c.client) {
            self.filter_awareness(conn, &mut update);
            if update.clients.is_empty() {
                return Ok(Vec::new());
            }
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

    /// Drops the entries of a client's awareness update that break the rules
    /// of [`awareness`]; takes over ids held by the same user's other connections.
    fn filter_awareness(&mut self, conn: ConnId, update: &mut AwarenessUpdate) {
        let limits = self.limits.awareness.clone();
        let now = self.clock.now();
        let Some(me) = self.conns.get_mut(&conn) else {
            return;
        };
        if !me.awareness_rate.allow(now, limits.max_updates_per_sec) {
            self.stats.awareness_refused += update.clients.len() as u64;
            update.clients.clear();
            return;
        }
        let user = me.user.clone();
        let mut held = me.clients.len();
        let mut taken_over = Vec::new();
        let mut refused = 0u64;
        let conns = &self.conns;
        update.clients.retain(|id, entry| {
            let id = id.get();
            let mine = conns.get(&conn).is_some_and(|c| c.clients.contains(&id));
            let holder = conns
                .iter()
                .find(|(other, c)| **other != conn && c.clients.contains(&id));
            let keep = match holder {
                Some((other, c)) if user.is_some() && c.user == user => {
                    taken_over.push((*other, id));
                    entry.json.as_ref() != "null"
                }
                Some(_) => false,
                None if entry.json.as_ref() == "null" => mine,
                None if entry.json.len() > limits.max_state_bytes => false,
                None if mine => true,
                None if held < limits.max_states => {
                    held += 1;
                    true
                }
                None => false,
            };
            if !keep {
                refused += 1;
            }
            keep
        });
        self.stats.awareness_refused += refused;
        for (other, id) in taken_over {
            if let Some(c) = self.conns.get_mut(&other) {
                c.clients.remove(&id);
            }
        }
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

pub mod awareness;

#[cfg(test)]
mod tests;
