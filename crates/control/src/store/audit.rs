//! The per-org audit log: a hash chain of every privileged operation.
//!
//! Each entry is appended by [`append`] inside the write transaction of the
//! change it records, so an entry exists exactly when its change committed.
//! `hash = sha256(prevHash ‖ canonical JSON of the entry)` in lowercase hex,
//! where the entry is `{action, actor, after, at, before, orgId, requestId,
//! seq, target}` (every key present, `null` when empty) and canonical JSON
//! is: object keys sorted by their UTF-8 bytes, no whitespace, strings
//! escaped as JSON requires and nothing else (non-ASCII as is), numbers
//! integers. The first entry's `prevHash` is 64 zeros. proto-docs/admin.md
//! shows how to recompute the chain from an export.
//!
//! Appends of one org are serialized so the chain never forks: on SQLite by
//! the write lock every write transaction takes (`BEGIN IMMEDIATE`), on
//! PostgreSQL by a transaction-scoped advisory lock on the org; the primary
//! key `(org_id, seq)` refuses a second entry with the same `seq` anyway.
//! Triggers in both databases refuse UPDATE and DELETE of entries (and
//! TRUNCATE on PostgreSQL). Entries have no foreign key to `orgs`: the log
//! of an org outlives it (solo orgs are dropped when their user joins a
//! domain org; their entries stay and `tandem audit verify` still checks them).

use std::cell::RefCell;

use diesel::prelude::*;
use ring::digest;
use serde_json::Value;
use tandem_protocol::admin::{AuditEntry, AuditVerification};

use super::now_ms;
use crate::db::schema::{audit_log, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;

/// `prevHash` of an org's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The actor of entries the server makes by itself.
pub const SYSTEM: &str = "system";
/// Rows read at a time by verification and export.
pub const CHUNK: i64 = 500;
/// First key of the PostgreSQL advisory lock that serializes an org's appends.
const LOCK_CLASS: i32 = 0x6175_6474; // "audt"

thread_local! {
    /// The id of the request whose database work runs on this thread.
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Names the request whose work this thread does next (`AppState::db` calls
/// it); entries appended meanwhile carry it.
pub fn set_request_id(id: Option<String>) {
    REQUEST_ID.with(|r| *r.borrow_mut() = id);
}

fn current_request_id() -> Option<String> {
    REQUEST_ID.with(|r| r.borrow().clone())
}

/// What a privileged operation appends.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    /// The user who did it ([`SYSTEM`] for the server).
    pub actor: &'a str,
    /// `noun.verb`, e.g. `member.add`.
    pub action: &'a str,
    /// `kind:id`, e.g. `workspace:abc`.
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl<'a> Entry<'a> {
    pub fn new(actor: &'a str, action: &'a str, target: impl Into<String>) -> Self {
        Entry {
            actor,
            action,
            target: target.into(),
            before: None,
            after: None,
        }
    }

    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }

    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
struct Row {
    org_id: String,
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
    request_id: Option<String>,
    prev_hash: String,
    hash: String,
}

impl Row {
    /// The entry as the API shows it; a stored `before`/`after` that is not
    /// JSON (only a forger could store one) shows as a JSON string.
    fn to_dto(&self) -> AuditEntry {
        let json = |t: &Option<String>| {
            t.as_ref()
                .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())))
        };
        AuditEntry {
            seq: self.seq,
            at: self.at,
            org_id: self.org_id.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            before: json(&self.before),
            after: json(&self.after),
            request_id: self.request_id.clone(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Writes `v` as canonical JSON (sorted keys, no whitespace) into `out`.
pub fn canonical_into(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_into(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_into(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `v` as canonical JSON.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    canonical_into(v, &mut out);
    out
}

/// The hash of an entry: `sha256(prevHash ‖ canonical JSON)` of the entry's
/// fields other than `prevHash` and `hash`, lowercase hex.
pub fn entry_hash(e: &AuditEntry) -> String {
    let body = serde_json::json!({
        "action": e.action,
        "actor": e.actor,
        "after": e.after,
        "at": e.at,
        "before": e.before,
        "orgId": e.org_id,
        "requestId": e.request_id,
        "seq": e.seq,
        "target": e.target,
    });
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(e.prev_hash.as_bytes());
    ctx.update(canonical(&body).as_bytes());
    hex::encode(ctx.finish())
}

/// Serializes appends to one org's log until the transaction ends.
fn lock_chain(conn: &mut DbConnection, org_id: &str) -> Result<(), diesel::result::Error> {
    if let DbConnection::Pg(_) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(LOCK_CLASS)
            .bind::<diesel::sql_types::Text, _>(org_id)
            .execute(conn)?;
    }
    Ok(())
}

/// The newest entry's seq and hash (`0` and [`GENESIS`] for an empty log).
fn head(conn: &mut DbConnection, org_id: &str) -> Result<(i64, String), diesel::result::Error> {
    let last: Option<(i64, String)> = audit_log::table
        .filter(audit_log::org_id.eq(org_id))
        .order(audit_log::seq.desc())
        .select((audit_log::seq, audit_log::hash))
        .first(conn)
        .optional()?;
    Ok(last.unwrap_or_else(|| (0, GENESIS.to_string())))
}

/// Appends `entry` to the log of `org_id`. Call inside the write transaction
/// of the change it records (`write_tx`): the entry commits with it or not
/// at all, and the chain lock is held until then.
pub fn append(
    conn: &mut DbConnection,
    org_id: &str,
    entry: &Entry<'_>,
) -> Result<AuditEntry, diesel::result::Error> {
    lock_chain(conn, org_id)?;
    let (seq, prev_hash) = head(conn, org_id)?;
    let mut e = AuditEntry {
        seq: seq + 1,
        at: now_ms(),
        org_id: org_id.to_string(),
        actor: entry.actor.to_string(),
        action: entry.action.to_string(),
        target: entry.target.clone(),
        before: entry.before.clone(),
        after: entry.after.clone(),
        request_id: current_request_id(),
        prev_hash,
        hash: String::new(),
    };
    e.hash = entry_hash(&e);
    let row = Row {
        org_id: e.org_id.clone(),
        seq: e.seq,
        at: e.at,
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        before: e.before.as_ref().map(canonical),
        after: e.after.as_ref().map(canonical),
        request_id: e.request_id.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    };
    diesel::insert_into(audit_log::table)
        .values(&row)
        .execute(conn)?;
    Ok(e)
}

/// The org a workspace belongs to (`None` when the workspace is gone).
pub fn org_of_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
) -> Result<Option<String>, diesel::result::Error> {
    workspaces::table
        .find(workspace_id)
        .select(workspaces::org_id)
        .first(conn)
        .optional()
}

/// [`append`] to the log of the org a workspace belongs to.
pub fn append_for_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
    entry: &Entry<'_>,
) -> Result<(), diesel::result::Error> {
    if let Some(org) = org_of_workspace(conn, workspace_id)? {
        append(conn, &org, entry)?;
    }
    Ok(())
}

/// [`append`] to the log of the org a conversation's workspace belongs to.
pub fn append_for_conversation(
    conn: &mut DbConnection,
    conversation_id: &str,
    entry: &Entry<'_>,
) -> Result<(), ApiError> {
    if let Some(ws) = super::admin::workspace_of_conversation(conn, conversation_id)? {
        append_for_workspace(conn, &ws, entry)?;
    }
    Ok(())
}

/// Filters of `GET /orgs/{id}/audit`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// `at >= since` (ms).
    pub since: Option<i64>,
    /// `at < until` (ms).
    pub until: Option<i64>,
}

/// One page of an org's log, newest first, after the entry with seq
/// `before_seq` (exclusive) when given; `limit + 1` rows are read so the
/// caller learns whether more follow.
pub fn list(
    conn: &mut DbConnection,
    org_id: &str,
    filter: &Filter,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<(Vec<AuditEntry>, Option<i64>), ApiError> {
    let mut q = audit_log::table
        .filter(audit_log::org_id.eq(org_id))
        .order(audit_log::seq.desc())
        .limit(limit + 1)
        .select(Row::as_select())
        .into_boxed();
    if let Some(s) = before_seq {
        q = q.filter(audit_log::seq.lt(s));
    }
    if let Some(a) = &filter.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(a) = &filter.actor {
        q = q.filter(audit_log::actor.eq(a.clone()));
    }
    if let Some(t) = filter.since {
        q = q.filter(audit_log::at.ge(t));
    }
    if let Some(t) = filter.until {
        q = q.filter(audit_log::at.lt(t));
    }
    let mut rows: Vec<Row> = q.load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next = rows.last().filter(|_| more).map(|r| r.seq);
    Ok((rows.iter().map(Row::to_dto).collect(), next))
}

/// Up to [`CHUNK`] entries of an org with `seq > after`, oldest first.
pub fn chunk_after(
    conn: &mut DbConnection,
    org_id: &str,
    after: i64,
) -> Result<Vec<AuditEntry>, diesel::result::Error> {
    let rows: Vec<Row> = audit_log::table
        .filter(audit_log::org_id.eq(org_id))
        .filter(audit_log::seq.gt(after))
        .order(audit_log::seq.asc())
        .limit(CHUNK)
        .select(Row::as_select())
        .load(conn)?;
    Ok(rows.iter().map(Row::to_dto).collect())
}

/// Checks an org's whole chain, [`CHUNK`] rows at a time: seqs run 1, 2, 3…
/// without gaps, each `prevHash` is the previous entry's hash, and each hash
/// is what its content hashes to. Stops at the first entry that fails.
pub fn verify(
    conn: &mut DbConnection,
    org_id: &str,
) -> Result<AuditVerification, diesel::result::Error> {
    let mut checker = Checker::default();
    loop {
        let rows = chunk_after(conn, org_id, checker.last_seq)?;
        let done = (rows.len() as i64) < CHUNK;
        for e in &rows {
            if !checker.check(e) {
                return Ok(checker.result());
            }
        }
        if done {
            return Ok(checker.result());
        }
    }
}

/// Verification state over entries fed in `seq` order.
#[derive(Debug)]
pub struct Checker {
    last_seq: i64,
    last_hash: String,
    checked: i64,
    broken: Option<i64>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            last_seq: 0,
            last_hash: GENESIS.to_string(),
            checked: 0,
            broken: None,
        }
    }
}

impl Checker {
    /// Checks the next entry; `false` (and no further checks) once one fails.
    pub fn check(&mut self, e: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let good =
            e.seq == self.last_seq + 1 && e.prev_hash == self.last_hash && entry_hash(e) == e.hash;
        if !good {
            // A missing entry shows as a gap: the first seq not as expected.
            self.broken = Some(e.seq.min(self.last_seq + 1));
            return false;
        }
        self.checked += 1;
        self.last_seq = e.seq;
        self.last_hash = e.hash.clone();
        true
    }

    pub fn result(&self) -> AuditVerification {
        AuditVerification {
            ok: self.broken.is_none(),
            checked: self.checked,
            first_broken_seq: self.broken,
            head_seq: self.last_seq,
            head_hash: self.last_hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let v = serde_json::json!({"b": [1, {"z": null, "a": "é\n"}], "a": true});
        assert_eq!(canonical(&v), r#"{"a":true,"b":[1,{"a":"é\n","z":null}]}"#);
    }

    #[test]
    fn a_chain_verifies_and_a_change_breaks_it_where_it_is() {
        let mut entries = Vec::new();
        let mut prev = GENESIS.to_string();
        for seq in 1..=3 {
            let mut e = AuditEntry {
                seq,
                at: 1000 + seq,
                org_id: "o".into(),
                actor: "u".into(),
                action: "member.add".into(),
                target: format!("workspace:w{seq}"),
                before: None,
                after: Some(serde_json::json!({"role": "editor"})),
                request_id: Some("r".into()),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = entry_hash(&e);
            prev = e.hash.clone();
            entries.push(e);
        }
        let mut c = Checker::default();
        assert!(entries.iter().all(|e| c.check(e)));
        assert_eq!(c.result().checked, 3);
        entries[1].after = Some(serde_json::json!({"role": "owner"}));
        let mut c = Checker::default();
        entries.iter().all(|e| c.check(e));
        assert_eq!(c.result().first_broken_seq, Some(2));
        // A missing entry is reported at its seq.
        entries.remove(1);
        let mut c = Checker::default();
        entries.iter().all(|e| c.check(e));
        assert_eq!(c.result().first_broken_seq, Some(2));
        assert_eq!(c.result().checked, 1);
    }
}
