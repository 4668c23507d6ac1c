//! The sync engine's storage (`proto-docs/sync.md`).
//!
//! - `sync_rows` holds one row per synced row: the winning value and clock
//!   of each field (`state`, `{"field": [hlc, value]}`), the clock of the
//!   newest `put`/`delete` (`clear_hlc`), and `seq`, the workspace's change
//!   counter at the row's last change. Pulls read "rows with `seq` >
//!   cursor", so the table is its own compacted change log: a row changed a
//!   thousand times is one entry.
//! - `sync_workspaces.seq` is that counter. A push bumps it *first*, which
//!   locks the workspace's counter row until commit: pushes to one workspace
//!   commit one after another, in `seq` order, so a reader whose snapshot
//!   shows `seq = n` has every change `≤ n` (the late-commit problem of
//!   sequences handed out before commit cannot happen). SQLite's writers
//!   are serialized by `BEGIN IMMEDIATE` anyway.
//! - Tombstones (deleted rows) are pruned after the horizon; the highest
//!   pruned `seq` is kept as `pruned_seq`, and a cursor older than it resets.
//! - `sync_clients` remembers each client's last mutation id (idempotence).

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use serde_json::{Map, Value};
use tandem_protocol::sync::{
    Change, Mutation, MutationResult, PullResponse, PushRequest, MAX_BATCH, MAX_CLIENT_ID_LEN,
    MAX_COLLECTION_LEN, MAX_FIELDS, MAX_FIELD_NAME_LEN, MAX_PULL_BYTES, MAX_ROW_BYTES,
    MAX_ROW_ID_LEN, RESERVED_COLLECTIONS,
};

use crate::db::schema::{sync_clients, sync_rows, sync_workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;

// ---------------------------------------------------------------- clocks

/// A parsed hybrid logical clock `"{ms:13}:{counter:6}:{clientId}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hlc {
    pub ms: i64,
    pub counter: u32,
    pub client: String,
}

impl Hlc {
    /// Parses `s`, whose client part must be `client`.
    pub fn parse(s: &str, client: &str) -> Result<Hlc, String> {
        let bad = || {
            format!("hlc must be \"{{13-digit ms}}:{{6-digit counter}}:{{clientId}}\" with this client's id (got {:?})", truncate(s, 100))
        };
        let mut parts = s.splitn(3, ':');
        let (Some(ms), Some(counter), Some(who)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms, 13) || !digits(counter, 6) || who != client {
            return Err(bad());
        }
        Ok(Hlc {
            ms: ms.parse().map_err(|_| bad())?,
            counter: counter.parse().map_err(|_| bad())?,
            client: who.to_string(),
        })
    }

    /// The clock with its time at most `limit` (a clock from the future is
    /// pulled back to the server's time plus the drift allowance).
    pub fn clamp(mut self, limit: i64) -> Hlc {
        if self.ms > limit {
            self.ms = limit;
        }
        self
    }

    pub fn render(&self) -> String {
        format!("{:013}:{:06}:{}", self.ms, self.counter, self.client)
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ------------------------------------------------------------ validation

/// What a push mutation does, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Patch,
    Delete,
}

/// A mutation that passed every check, with its clock clamped.
#[derive(Debug, Clone)]
pub struct Checked {
    pub id: i64,
    pub collection: String,
    pub row_id: String,
    pub op: Op,
    pub fields: Map<String, Value>,
    pub hlc: String,
}

/// Why a push is refused as a whole.
#[derive(Debug)]
pub enum Invalid {
    /// 400
    Bad(String),
    /// 413
    TooLarge(String),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        match e {
            Invalid::Bad(m) => ApiError::BadRequest(m),
            Invalid::TooLarge(m) => ApiError::TooLarge(m),
        }
    }
}

pub fn client_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn collection_ok(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.len() <= MAX_COLLECTION_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED_COLLECTIONS.contains(&s)
}

/// Row ids and field names: not empty, bounded, no control characters.
fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Checks a whole push body; clocks ahead of `clock_limit` are clamped.
pub fn check_push(
    req: PushRequest,
    clock_limit: i64,
) -> Result<(String, String, Vec<Checked>), Invalid> {
    use Invalid::{Bad, TooLarge};
    if !client_id_ok(&req.client_id) || !client_id_ok(&req.client_group_id) {
        return Err(Bad(format!(
            "clientId and clientGroupId must be 1..={MAX_CLIENT_ID_LEN} characters of A-Z a-z 0-9 _ -"
        )));
    }
    if req.mutations.len() > MAX_BATCH {
        return Err(TooLarge(format!(
            "at most {MAX_BATCH} mutations per push (got {})",
            req.mutations.len()
        )));
    }
    let mut out = Vec::with_capacity(req.mutations.len());
    let mut prev = 0;
    for m in req.mutations {
        let at = m.id;
        let fail = |why: String| Bad(format!("mutation {at}: {why}"));
        if m.id <= prev {
            return Err(Bad(format!(
                "mutation ids must be positive and increase within a push (got {} after {prev})",
                m.id
            )));
        }
        prev = m.id;
        let Mutation {
            id,
            collection,
            row_id,
            op,
            fields,
            hlc,
        } = m;
        if !collection_ok(&collection) {
            return Err(fail(format!(
                "collection must match [A-Za-z][A-Za-z0-9_]* (at most {MAX_COLLECTION_LEN}) and not be one of {RESERVED_COLLECTIONS:?} (got {:?})",
                truncate(&collection, 80)
            )));
        }
        if !name_ok(&row_id, MAX_ROW_ID_LEN) {
            return Err(fail(format!(
                "rowId must be 1..={MAX_ROW_ID_LEN} bytes without control characters"
            )));
        }
        let op = match op.as_str() {
            "put" => Op::Put,
            "patch" => Op::Patch,
            "delete" => Op::Delete,
            other => {
                return Err(fail(format!(
                    "op must be put, patch or delete (got {:?})",
                    truncate(other, 40)
                )))
            }
        };
        let fields = match (op, fields) {
            (Op::Delete, Some(_)) => return Err(fail("delete takes no fields".into())),
            (Op::Delete, None) => Map::new(),
            (Op::Patch, None) => return Err(fail("patch needs fields".into())),
            (Op::Put, None) => Map::new(),
            (_, Some(f)) => f,
        };
        if fields.len() > MAX_FIELDS {
            return Err(TooLarge(format!(
                "mutation {id}: at most {MAX_FIELDS} fields per row"
            )));
        }
        if let Some(k) = fields.keys().find(|k| !name_ok(k, MAX_FIELD_NAME_LEN)) {
            return Err(fail(format!(
                "field names must be 1..={MAX_FIELD_NAME_LEN} bytes without control characters (got {:?})",
                truncate(k, 40)
            )));
        }
        let size = serde_json::to_string(&fields)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > MAX_ROW_BYTES {
            return Err(TooLarge(format!(
                "mutation {id}: fields are {size} bytes of JSON, at most {MAX_ROW_BYTES}"
            )));
        }
        let hlc = Hlc::parse(&hlc, &req.client_id)
            .map_err(fail)?
            .clamp(clock_limit)
            .render();
        out.push(Checked {
            id,
            collection,
            row_id,
            op,
            fields,
            hlc,
        });
    }
    Ok((req.client_group_id, req.client_id, out))
}

// ------------------------------------------------------------- row state

/// The state of one row: the newest clear (`put` or `delete`) and each
/// field's winning value with its clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowState {
    pub clear_hlc: String,
    pub clear_delete: bool,
    pub fields: BTreeMap<String, (String, Value)>,
}

impl RowState {
    /// A tombstone: the newest clear is a delete and no later field was set.
    pub fn deleted(&self) -> bool {
        self.clear_delete && self.fields.is_empty()
    }

    /// The newest clock of the row.
    pub fn hlc(&self) -> String {
        self.fields
            .values()
            .map(|(h, _)| h)
            .chain(std::iter::once(&self.clear_hlc))
            .max()
            .cloned()
            .unwrap_or_default()
    }

    /// Applies one mutation by last-writer-wins per field; returns how
    /// many of its writes lost to newer ones (conflicts).
    pub fn apply(&mut self, op: Op, fields: &Map<String, Value>, hlc: &str) -> u64 {
        let mut lost = 0;
        if matches!(op, Op::Put | Op::Delete) {
            if hlc > self.clear_hlc.as_str() {
                self.clear_hlc = hlc.to_string();
                self.clear_delete = op == Op::Delete;
                // Everything older than the clear is gone; later patches stay.
                self.fields.retain(|_, (h, _)| h.as_str() > hlc);
            } else if op == Op::Delete {
                lost += 1;
            }
        }
        for (k, v) in fields {
            // A put writes at its own clear clock; a patch must be newer than it.
            let after_clear = match op {
                Op::Put => hlc >= self.clear_hlc.as_str(),
                _ => hlc > self.clear_hlc.as_str(),
            };
            let newer = self.fields.get(k).is_none_or(|(h, _)| hlc > h.as_str());
            if after_clear && newer {
                self.fields.insert(k.clone(), (hlc.to_string(), v.clone()));
            } else {
                lost += 1;
            }
        }
        lost
    }

    fn to_json(&self) -> String {
        let map: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, (h, v))| {
                (
                    k.clone(),
                    Value::Array(vec![Value::String(h.clone()), v.clone()]),
                )
            })
            .collect();
        Value::Object(map).to_string()
    }

    fn from_row(r: &SyncRow) -> RowState {
        let mut fields = BTreeMap::new();
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&r.state) {
            for (k, v) in map {
                if let Value::Array(mut pair) = v {
                    if pair.len() == 2 {
                        let value = pair.pop().unwrap_or(Value::Null);
                        if let Some(Value::String(h)) = pair.pop() {
                            fields.insert(k, (h, value));
                        }
                    }
                }
            }
        }
        RowState {
            clear_hlc: r.clear_hlc.clone(),
            clear_delete: r.clear_delete,
            fields,
        }
    }

    /// The fields as the client sees them (`None` for a tombstone).
    fn visible(&self) -> Option<Map<String, Value>> {
        (!self.deleted()).then(|| {
            self.fields
                .iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect()
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sync_rows)]
struct SyncRow {
    workspace_id: String,
    collection: String,
    row_id: String,
    seq: i64,
    hlc: String,
    clear_hlc: String,
    clear_delete: bool,
    deleted: bool,
    state: String,
    updated_at: i64,
}

// ------------------------------------------------------------------ push

/// What a push did.
pub struct Pushed {
    pub last_mutation_id: i64,
    pub results: Vec<MutationResult>,
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub conflicts: u64,
}

fn result(id: i64, status: &str, error: Option<String>) -> MutationResult {
    MutationResult {
        id,
        status: status.into(),
        error,
    }
}

/// Locks the workspace's counter row until commit (making it on the
/// workspace's first push) and returns its seq. Call inside a write
/// transaction, before reading rows: pushes to one workspace then commit in
/// the order of the seqs they give out, so a reader never skips one.
fn lock_counter(c: &mut DbConnection, ws: &str) -> Result<i64, ApiError> {
    // An UPDATE takes the row lock even when it changes nothing.
    let touch = |c: &mut DbConnection| {
        diesel::update(sync_workspaces::table.find(ws))
            .set(sync_workspaces::seq.eq(sync_workspaces::seq))
            .execute(c)
    };
    if touch(c)? == 0 {
        // The first push of a workspace: make its counter (a concurrent
        // first push may make it too; both then lock the one row).
        use diesel::sql_types::Text;
        const SQL: &str = "INSERT INTO sync_workspaces (workspace_id, seq, pruned_seq) \
                           VALUES ({}, 0, 0) ON CONFLICT DO NOTHING";
        match c {
            DbConnection::Pg(pg) => diesel::sql_query(SQL.replace("{}", "$1"))
                .bind::<Text, _>(ws)
                .execute(pg)?,
            DbConnection::Sqlite(lite) => diesel::sql_query(SQL.replace("{}", "?"))
                .bind::<Text, _>(ws)
                .execute(lite)?,
        };
        touch(c)?;
    }
    Ok(sync_workspaces::table
        .find(ws)
        .select(sync_workspaces::seq)
        .first(c)?)
}

/// Applies a checked push in one write transaction (the caller opens it).
/// `may_write`: the user may change the workspace's data (else every new
/// mutation is rejected). Replayed ids are duplicates and change nothing.
#[allow(clippy::too_many_arguments)]
pub fn push(
    c: &mut DbConnection,
    ws: &str,
    user_id: &str,
    may_write: bool,
    group: &str,
    client: &str,
    mutations: Vec<Checked>,
    now: i64,
) -> Result<Pushed, ApiError> {
    // Lock the workspace's counter first, so the client's last id read
    // next cannot change under us (a retry racing its original waits here).
    let locked = may_write && !mutations.is_empty();
    let counter = if locked { lock_counter(c, ws)? } else { 0 };
    // Seqs are given only to rows that change: a replayed or refused batch
    // leaves the counter alone, so it wakes no other device.
    let mut seq = counter + 1;
    let known: Option<(String, i64)> = sync_clients::table
        .find((ws, client))
        .select((sync_clients::user_id, sync_clients::last_mutation_id))
        .first(c)
        .optional()?;
    let last = match &known {
        Some((owner, _)) if owner != user_id => {
            return Err(ApiError::Forbidden);
        }
        Some((_, last)) => *last,
        None => 0,
    };
    let mut out = Pushed {
        last_mutation_id: last,
        results: Vec::with_capacity(mutations.len()),
        applied: 0,
        duplicates: 0,
        rejected: 0,
        conflicts: 0,
    };
    let fresh: Vec<&Checked> = mutations.iter().filter(|m| m.id > last).collect();
    let mut oversize: HashSet<i64> = HashSet::new();
    if locked && !fresh.is_empty() {
        let mut rows = load_rows(c, ws, &fresh)?;
        for m in &fresh {
            let key = (m.collection.clone(), m.row_id.clone());
            let Some(slot) = rows.get_mut(&key) else {
                continue; // load_rows made an entry for every key
            };
            let before = slot.state.clone();
            out.conflicts += slot.state.apply(m.op, &m.fields, &m.hlc);
            if slot.state.fields.len() > MAX_FIELDS || slot.state.to_json().len() > MAX_ROW_BYTES {
                slot.state = before;
                oversize.insert(m.id);
                continue;
            }
            // Even a write that lost entirely moves the row, so its writer
            // pulls the winning value.
            slot.seq = seq;
            slot.changed = true;
            seq += 1;
        }
        write_rows(c, ws, rows.iter(), now)?;
        if seq - 1 > counter {
            diesel::update(sync_workspaces::table.find(ws))
                .set(sync_workspaces::seq.eq(seq - 1))
                .execute(c)?;
        }
    }
    for m in &mutations {
        let r = if m.id <= last {
            out.duplicates += 1;
            result(m.id, "duplicate", None)
        } else if !may_write {
            out.rejected += 1;
            result(
                m.id,
                "rejected",
                Some("you may read this workspace but not change it".into()),
            )
        } else if oversize.contains(&m.id) {
            out.rejected += 1;
            result(
                m.id,
                "rejected",
                Some(format!(
                    "the row would exceed {MAX_FIELDS} fields or {MAX_ROW_BYTES} bytes"
                )),
            )
        } else {
            out.applied += 1;
            result(m.id, "applied", None)
        };
        out.results.push(r);
    }
    if let Some(max) = mutations.iter().map(|m| m.id).max() {
        out.last_mutation_id = out.last_mutation_id.max(max);
        if known.is_some() {
            diesel::update(sync_clients::table.find((ws, client)))
                .set((
                    sync_clients::client_group_id.eq(group),
                    sync_clients::last_mutation_id.eq(out.last_mutation_id),
                    sync_clients::updated_at.eq(now),
                ))
                .execute(c)?;
        } else {
            diesel::insert_into(sync_clients::table)
                .values((
                    sync_clients::workspace_id.eq(ws),
                    sync_clients::client_id.eq(client),
                    sync_clients::client_group_id.eq(group),
                    sync_clients::user_id.eq(user_id),
                    sync_clients::last_mutation_id.eq(out.last_mutation_id),
                    sync_clients::updated_at.eq(now),
                ))
                .execute(c)?;
            forget_old_clients(c, ws, user_id)?;
        }
    }
    Ok(out)
}

/// Most client ids a user keeps per workspace (each tab session is one).
/// Past it, the ids used longest ago are forgotten: a replay from one of
/// them would apply again, so the cap is far above any real device count.
pub const MAX_CLIENTS_PER_USER: i64 = 200;

/// Forgets the user's client ids in `ws` beyond [`MAX_CLIENTS_PER_USER`],
/// the least recently used first. Called as a new id is stored, so at most
/// one row goes at a time.
fn forget_old_clients(c: &mut DbConnection, ws: &str, user_id: &str) -> Result<(), ApiError> {
    let stale: Vec<String> = sync_clients::table
        .filter(sync_clients::workspace_id.eq(ws))
        .filter(sync_clients::user_id.eq(user_id))
        .order((
            sync_clients::updated_at.desc(),
            sync_clients::client_id.desc(),
        ))
        .offset(MAX_CLIENTS_PER_USER)
        .limit(16)
        .select(sync_clients::client_id)
        .load(c)?;
    if !stale.is_empty() {
        diesel::delete(
            sync_clients::table
                .filter(sync_clients::workspace_id.eq(ws))
                .filter(sync_clients::client_id.eq_any(&stale)),
        )
        .execute(c)?;
    }
    Ok(())
}

/// A row a push touches: whether it is stored, its state, its seq.
struct Slot {
    exists: bool,
    state: RowState,
    seq: i64,
    changed: bool,
}

type Slots = HashMap<(String, String), Slot>;

/// Loads the stored state of every row the mutations touch, one primary-key
/// lookup each (an `IN (…)` list can be planned as a scan of the whole
/// table while PostgreSQL's statistics still say it is small), and makes an
/// entry for each: `(exists, state, seq)`.
fn load_rows(c: &mut DbConnection, ws: &str, fresh: &[&Checked]) -> Result<Slots, ApiError> {
    let mut rows = Slots::new();
    for m in fresh {
        let key = (m.collection.clone(), m.row_id.clone());
        if rows.contains_key(&key) {
            continue;
        }
        let found: Option<SyncRow> = sync_rows::table
            .find((ws, &m.collection, &m.row_id))
            .select(SyncRow::as_select())
            .first(c)
            .optional()?;
        let slot = match found {
            Some(r) => Slot {
                exists: true,
                state: RowState::from_row(&r),
                seq: r.seq,
                changed: false,
            },
            None => Slot {
                exists: false,
                state: RowState::default(),
                seq: 0,
                changed: false,
            },
        };
        rows.insert(key, slot);
    }
    Ok(rows)
}

fn write_rows<'a>(
    c: &mut DbConnection,
    ws: &str,
    rows: impl Iterator<Item = (&'a (String, String), &'a Slot)>,
    now: i64,
) -> Result<(), ApiError> {
    let mut inserts = Vec::new();
    for ((collection, row_id), slot) in rows {
        if !slot.changed {
            continue; // every mutation on it was refused
        }
        let (state, seq) = (&slot.state, slot.seq);
        let row = SyncRow {
            workspace_id: ws.to_string(),
            collection: collection.clone(),
            row_id: row_id.clone(),
            seq,
            hlc: state.hlc(),
            clear_hlc: state.clear_hlc.clone(),
            clear_delete: state.clear_delete,
            deleted: state.deleted(),
            state: state.to_json(),
            updated_at: now,
        };
        if slot.exists {
            diesel::update(sync_rows::table.find((ws, collection, row_id)))
                .set(&row)
                .execute(c)?;
        } else {
            inserts.push(row);
        }
    }
    match c {
        // One statement per 200 rows (10 parameters each, far below the limit).
        DbConnection::Pg(pg) => {
            for chunk in inserts.chunks(200) {
                diesel::insert_into(sync_rows::table)
                    .values(chunk)
                    .execute(pg)?;
            }
        }
        // In-process: a statement per row costs little.
        DbConnection::Sqlite(lite) => {
            for row in &inserts {
                diesel::insert_into(sync_rows::table)
                    .values(row)
                    .execute(lite)?;
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ pull

/// A decoded pull cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// No cursor: the whole current state.
    Start,
    /// Every change up to this seq was seen: `c{seq}`.
    At(i64),
    /// Inside a full-state scan: rows up to `pos` were sent; tombstones up to
    /// `start` are skipped (the client never had them); `pruned` is the
    /// pruned seq when the scan began: `s{pos}.{start}.{pruned}`.
    Scan { pos: i64, start: i64, pruned: i64 },
}

impl Cursor {
    pub fn parse(s: Option<&str>) -> Result<Cursor, ApiError> {
        let bad = || ApiError::BadRequest("cursor is not one this server made".into());
        let num = |p: &str| -> Result<i64, ApiError> {
            if p.is_empty() || p.len() > 18 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let Some(s) = s.filter(|s| !s.is_empty()) else {
            return Ok(Cursor::Start);
        };
        if let Some(n) = s.strip_prefix('c') {
            return Ok(Cursor::At(num(n)?));
        }
        if let Some(rest) = s.strip_prefix('s') {
            let mut p = rest.split('.');
            if let (Some(a), Some(b), Some(d), None) = (p.next(), p.next(), p.next(), p.next()) {
                return Ok(Cursor::Scan {
                    pos: num(a)?,
                    start: num(b)?,
                    pruned: num(d)?,
                });
            }
        }
        Err(bad())
    }

    pub fn render(&self) -> String {
        match self {
            Cursor::Start => String::new(),
            Cursor::At(n) => format!("c{n}"),
            Cursor::Scan { pos, start, pruned } => format!("s{pos}.{start}.{pruned}"),
        }
    }
}

/// The workspace's counter and pruned seq (0, 0 before its first push).
pub fn counters(c: &mut DbConnection, ws: &str) -> Result<(i64, i64), ApiError> {
    Ok(sync_workspaces::table
        .find(ws)
        .select((sync_workspaces::seq, sync_workspaces::pruned_seq))
        .first(c)
        .optional()?
        .unwrap_or((0, 0)))
}

/// Rows a pull reads from the database at once.
const PULL_CHUNK: i64 = 128;

/// One page of changes after `cursor`. Call inside one read snapshot
/// (`read_tx`): the counter and the rows must agree.
pub fn pull(
    c: &mut DbConnection,
    ws: &str,
    user_id: &str,
    group: Option<&str>,
    cursor: Cursor,
    limit: i64,
) -> Result<PullResponse, ApiError> {
    let (seq, pruned) = counters(c, ws)?;
    // Where to read from, which tombstones to skip, whether to reset.
    let (from, skip_until, scan_pruned, reset) = match cursor {
        Cursor::Start => (0, Some(seq), pruned, false),
        Cursor::At(n) if n < pruned || n > seq => (0, Some(seq), pruned, true),
        Cursor::At(n) => (n, None, pruned, false),
        Cursor::Scan {
            pos,
            start,
            pruned: p,
        } if p != pruned || pos > seq || start > seq => (0, Some(seq), pruned, true),
        Cursor::Scan { pos, start, .. } => (pos, Some(start), pruned, false),
    };
    // Read in chunks, so a page never holds more than its byte cap plus one
    // chunk of rows in memory (rows are up to 64 KiB each).
    let mut has_more = false;
    let mut changes = Vec::new();
    let mut bytes = 0;
    let mut last = from;
    'read: loop {
        let want = (limit - changes.len() as i64).min(PULL_CHUNK);
        let mut q = sync_rows::table
            .filter(sync_rows::workspace_id.eq(ws))
            .filter(sync_rows::seq.gt(last))
            .into_boxed();
        if let Some(until) = skip_until {
            q = q.filter(sync_rows::deleted.eq(false).or(sync_rows::seq.gt(until)));
        }
        let rows: Vec<SyncRow> = q
            .order(sync_rows::seq.asc())
            .limit(want + 1)
            .select(SyncRow::as_select())
            .load(c)?;
        let more = rows.len() as i64 > want;
        for r in rows.iter().take(want as usize) {
            if !changes.is_empty() && bytes + r.state.len() > MAX_PULL_BYTES {
                has_more = true;
                break 'read;
            }
            bytes += r.state.len();
            last = r.seq;
            let state = RowState::from_row(r);
            changes.push(Change {
                collection: r.collection.clone(),
                row_id: r.row_id.clone(),
                fields: state.visible(),
                deleted: r.deleted,
                hlc: r.hlc.clone(),
            });
        }
        if !more {
            break;
        }
        if changes.len() as i64 >= limit {
            has_more = true;
            break;
        }
    }
    let next = match (has_more, skip_until) {
        (true, Some(start)) => Cursor::Scan {
            pos: last,
            start,
            pruned: scan_pruned,
        },
        (true, None) => Cursor::At(last),
        (false, _) => Cursor::At(seq.max(last)),
    };
    Ok(PullResponse {
        cursor: next.render(),
        has_more,
        reset,
        changes,
        last_mutation_ids: last_mutation_ids(c, ws, user_id, group)?,
    })
}

/// Most clients whose last mutation id a pull reports.
const MAX_CLIENTS_REPORTED: i64 = 1000;

fn last_mutation_ids(
    c: &mut DbConnection,
    ws: &str,
    user_id: &str,
    group: Option<&str>,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut q = sync_clients::table
        .filter(sync_clients::workspace_id.eq(ws))
        .filter(sync_clients::user_id.eq(user_id))
        .into_boxed();
    if let Some(g) = group {
        q = q.filter(sync_clients::client_group_id.eq(g.to_string()));
    }
    let rows: Vec<(String, i64)> = q
        .order(sync_clients::updated_at.desc())
        .limit(MAX_CLIENTS_REPORTED)
        .select((sync_clients::client_id, sync_clients::last_mutation_id))
        .load(c)?;
    Ok(rows.into_iter().collect())
}

// ------------------------------------------------------------ compaction

/// Workspaces holding tombstones older than `cutoff` (at most `n`).
pub fn workspaces_to_compact(
    c: &mut DbConnection,
    cutoff: i64,
    n: i64,
) -> Result<Vec<String>, ApiError> {
    Ok(sync_rows::table
        .filter(sync_rows::deleted.eq(true))
        .filter(sync_rows::updated_at.lt(cutoff))
        .select(sync_rows::workspace_id)
        .distinct()
        .limit(n)
        .load(c)?)
}

/// Prunes a workspace's tombstones older than `cutoff`, raising its
/// `pruned_seq` past them. Call inside a write transaction. Returns how
/// many were pruned.
pub fn compact(c: &mut DbConnection, ws: &str, cutoff: i64) -> Result<usize, ApiError> {
    // Lock the counter like a writer: no push interleaves.
    diesel::update(sync_workspaces::table.find(ws))
        .set(sync_workspaces::seq.eq(sync_workspaces::seq))
        .execute(c)?;
    let expired = || {
        sync_rows::table
            .filter(sync_rows::workspace_id.eq(ws))
            .filter(sync_rows::deleted.eq(true))
            .filter(sync_rows::updated_at.lt(cutoff))
    };
    let newest: Option<i64> = expired()
        .select(diesel::dsl::max(sync_rows::seq))
        .first(c)?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    diesel::update(
        sync_workspaces::table
            .find(ws)
            .filter(sync_workspaces::pruned_seq.lt(newest)),
    )
    .set(sync_workspaces::pruned_seq.eq(newest))
    .execute(c)?;
    Ok(diesel::delete(expired()).execute(c)?)
}

/// Rows kept (tombstones included): the size of the change log.
pub fn log_size(c: &mut DbConnection) -> Result<i64, ApiError> {
    Ok(sync_rows::table.count().get_result(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn fields_keep_the_highest_clock() {
        let mut s = RowState::default();
        s.apply(
            Op::Put,
            &f(json!({"a": 1, "b": 1})),
            "0000000000002:000000:x",
        );
        assert_eq!(
            s.apply(Op::Patch, &f(json!({"a": 2})), "0000000000001:000000:y"),
            1
        );
        s.apply(Op::Patch, &f(json!({"b": 3})), "0000000000003:000000:y");
        assert_eq!(s.visible(), Some(f(json!({"a": 1, "b": 3}))));
        // A tie on time and counter goes to the higher client id.
        s.apply(Op::Patch, &f(json!({"a": "z"})), "0000000000004:000000:z");
        s.apply(Op::Patch, &f(json!({"a": "a"})), "0000000000004:000000:a");
        assert_eq!(s.visible().unwrap()["a"], "z");
    }

    #[test]
    fn delete_clears_older_fields_and_later_patches_revive() {
        let mut s = RowState::default();
        s.apply(Op::Put, &f(json!({"a": 1})), "0000000000001:000000:x");
        s.apply(Op::Patch, &f(json!({"b": 1})), "0000000000005:000000:y");
        s.apply(Op::Delete, &Map::new(), "0000000000003:000000:x");
        assert_eq!(s.visible(), Some(f(json!({"b": 1}))));
        s.apply(Op::Delete, &Map::new(), "0000000000006:000000:x");
        assert!(s.deleted());
        assert_eq!(
            s.apply(Op::Patch, &f(json!({"c": 1})), "0000000000004:000000:y"),
            1
        );
        assert!(s.deleted());
        // A put replaces: fields it does not name are gone.
        s.apply(Op::Put, &f(json!({"d": 1})), "0000000000007:000000:x");
        assert_eq!(s.visible(), Some(f(json!({"d": 1}))));
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let ops = [
            (Op::Put, json!({"a": 1, "b": 1}), "0000000000001:000000:x"),
            (Op::Patch, json!({"a": 2}), "0000000000003:000000:y"),
            (Op::Delete, json!({}), "0000000000002:000000:z"),
            (Op::Patch, json!({"b": 5}), "0000000000004:000001:x"),
            (Op::Put, json!({"c": 1}), "0000000000003:000000:x"),
        ];
        let run = |order: &[usize]| {
            let mut s = RowState::default();
            for &i in order {
                let (op, v, h) = &ops[i];
                s.apply(*op, &f(v.clone()), h);
            }
            s
        };
        let a = run(&[0, 1, 2, 3, 4]);
        for order in [[4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 4, 0, 3, 2]] {
            assert_eq!(run(&order), a, "{order:?}");
        }
    }

    #[test]
    fn clocks_parse_strictly_and_clamp() {
        let h = Hlc::parse("1764720000000:000012:dev-1", "dev-1").unwrap();
        assert_eq!(
            h.clone().clamp(1764720000500).render(),
            "1764720000000:000012:dev-1"
        );
        assert_eq!(h.clamp(5).render(), "0000000000005:000012:dev-1");
        for bad in [
            "",
            "1:2:dev-1",
            "1764720000000:000012:other",
            "1764720000000:00001x:dev-1",
        ] {
            assert!(Hlc::parse(bad, "dev-1").is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        for c in [
            Cursor::At(0),
            Cursor::At(42),
            Cursor::Scan {
                pos: 1,
                start: 2,
                pruned: 3,
            },
        ] {
            assert_eq!(Cursor::parse(Some(&c.render())).unwrap(), c);
        }
        assert_eq!(Cursor::parse(None).unwrap(), Cursor::Start);
        for bad in [
            "x",
            "c",
            "c-1",
            "c1.2",
            "s1.2",
            "s1.2.3.4",
            "c99999999999999999999",
        ] {
            assert!(Cursor::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
