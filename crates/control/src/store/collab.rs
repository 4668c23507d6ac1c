//! Collaboration tokens and room access: issue a one-time token, consume it
//! atomically, and answer "may this user still be in this room?".

use std::collections::HashMap;

use diesel::prelude::*;
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;

use super::access_cache::{AccessCache, Grant};
use super::{events, facts, now_ms, UserRow};
use crate::authz::{self, Action};
use crate::crypto;
use crate::db::schema::{self, collab_tokens};
use crate::db::{sqlite_writer, write_tx, DbConnection};
use crate::error::ApiError;

/// Stores a new one-time token for `user` and `room` (hashed); returns the clear
/// token and its expiry. Expired tokens of everyone are removed on the way.
pub fn issue(
    conn: &mut DbConnection,
    user_id: &str,
    room: &RoomId,
    ttl_ms: i64,
) -> Result<(String, i64), ApiError> {
    let token = crypto::new_token();
    let now = now_ms();
    let expires_at = now + ttl_ms;
    write_tx(conn, |c| {
        diesel::delete(collab_tokens::table.filter(collab_tokens::expires_at.le(now)))
            .execute(c)?;
        diesel::insert_into(collab_tokens::table)
            .values((
                collab_tokens::token_hash.eq(crypto::hash_token(&token)),
                collab_tokens::user_id.eq(user_id),
                collab_tokens::room_id.eq(room.to_string()),
                collab_tokens::created_at.eq(now),
                collab_tokens::expires_at.eq(expires_at),
            ))
            .execute(c)?;
        Ok::<_, ApiError>(())
    })?;
    Ok((token, expires_at))
}

/// What a verify answers: the user's id and grant, or why not.
pub type Verdict = Result<(String, Grant), Refusal>;

/// Why a verify was refused (all answered 403; the reason is for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownOrUsed,
    Expired,
    WrongRoom,
    NoAccess,
}

/// Consumes tokens, each for its room (`POST /collaboration/verify-batch`,
/// and the rounds of single verifies, [`crate::verify_queue`]): one
/// `DELETE … WHERE token_hash IN (…) RETURNING …` claims them all, so of
/// any number of concurrent claims of one token (on any replica of control:
/// the database is the arbiter) exactly one gets its row back. Then one
/// read of the access feed, then the access of the claimed users, from
/// `cache` or decided per room in three queries. A token named twice is
/// claimed once: its second item is refused. Answers in the order of
/// `items`.
pub fn consume_many(
    conn: &mut DbConnection,
    cache: &AccessCache,
    items: &[(String, RoomId)],
) -> Result<Vec<Verdict>, ApiError> {
    let hashes: Vec<String> = items.iter().map(|(t, _)| crypto::hash_token(t)).collect();
    let mut unique: Vec<&str> = hashes.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut claimed = claim_many(conn, &unique)?;
    let now = now_ms();
    let mut out: Vec<Verdict> = Vec::with_capacity(items.len());
    // Items whose token was claimed for the right room, awaiting their grant.
    let mut pending: Vec<(usize, String)> = Vec::new();
    for (i, ((_, room), hash)) in items.iter().zip(&hashes).enumerate() {
        let verdict = match claimed.remove(hash) {
            None => Err(Refusal::UnknownOrUsed),
            Some(c) if c.expires_at <= now => Err(Refusal::Expired),
            Some(c) if c.room_id != room.to_string() => Err(Refusal::WrongRoom),
            Some(c) => {
                pending.push((i, c.user_id));
                Err(Refusal::NoAccess) // replaced below when access is granted
            }
        };
        out.push(verdict);
    }
    if pending.is_empty() {
        return Ok(out);
    }
    let pairs: Vec<(RoomId, String)> = pending
        .iter()
        .map(|(i, user_id)| (items[*i].1.clone(), user_id.clone()))
        .collect();
    for ((i, user_id), grant) in pending.into_iter().zip(grants_of(conn, cache, &pairs)?) {
        if let Some(grant) = grant {
            out[i] = Ok((user_id, grant));
        }
    }
    Ok(out)
}

/// [`grant_of`] for many (room, user) pairs at once, in order: answered
/// from `cache` where it can, the rest in three queries per distinct room.
pub fn grants_of(
    conn: &mut DbConnection,
    cache: &AccessCache,
    pairs: &[(RoomId, String)],
) -> Result<Vec<Option<Grant>>, ApiError> {
    // Read the feed position first: a grant computed afterwards cannot
    // predate a revocation that position already covers.
    let seq = events::last_seq(conn)?;
    let mut out: Vec<Option<Grant>> = Vec::with_capacity(pairs.len());
    let mut misses: HashMap<String, (RoomId, Vec<String>)> = HashMap::new();
    for (room, user_id) in pairs {
        let room_name = room.to_string();
        let hit = cache.get(seq, &room_name, user_id);
        if hit.is_none() {
            misses
                .entry(room_name)
                .or_insert_with(|| (room.clone(), Vec::new()))
                .1
                .push(user_id.clone());
        }
        out.push(hit);
    }
    let mut decided: HashMap<(String, String), Grant> = HashMap::new();
    for (room_name, (room, mut users)) in misses {
        users.sort_unstable();
        users.dedup();
        let (mut rows, access) = decide(conn, &room, &users)?;
        for (user_id, role) in access {
            let (Some(role), Some(user)) = (role, rows.remove(&user_id)) else {
                continue;
            };
            let grant = Grant {
                role,
                user_name: user.display_name,
            };
            cache.put(seq, &room_name, &user_id, grant.clone());
            decided.insert((room_name.clone(), user_id), grant);
        }
    }
    for ((room, user_id), slot) in pairs.iter().zip(out.iter_mut()) {
        if slot.is_none() {
            *slot = decided.get(&(room.to_string(), user_id.clone())).cloned();
        }
    }
    Ok(out)
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    token_hash: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    room_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    expires_at: i64,
}

/// Deletes the rows of `hashes` (distinct) and returns them by hash, in one statement.
fn claim_many(
    conn: &mut DbConnection,
    hashes: &[&str],
) -> Result<HashMap<String, ClaimedRow>, ApiError> {
    use diesel::sql_types::Text;
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders = |pg: bool| {
        (1..=hashes.len())
            .map(|i| if pg { format!("${i}") } else { "?".to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = |pg: bool| {
        format!(
            "DELETE FROM collab_tokens WHERE token_hash IN ({}) \
             RETURNING token_hash, user_id, room_id, expires_at",
            placeholders(pg)
        )
    };
    let rows: Vec<ClaimedRow> = match conn {
        DbConnection::Pg(pg) => {
            let mut query = diesel::sql_query(sql(true)).into_boxed();
            for h in hashes {
                query = query.bind::<Text, _>(*h);
            }
            query.load(pg)?
        }
        DbConnection::Sqlite(lite) => {
            let mut query = diesel::sql_query(sql(false)).into_boxed();
            for h in hashes {
                query = query.bind::<Text, _>(*h);
            }
            let _writer = sqlite_writer();
            query.load(lite)?
        }
    };
    Ok(rows
        .into_iter()
        .map(|r| (r.token_hash.clone(), r))
        .collect())
}

/// Whether one user may be in `room` (and as what), answered from `cache`
/// while the access feed has not moved (see [`AccessCache`]); only grants
/// are remembered.
pub fn grant_of(
    conn: &mut DbConnection,
    cache: &AccessCache,
    room: &RoomId,
    user_id: &str,
) -> Result<Option<Grant>, ApiError> {
    let pair = [(room.clone(), user_id.to_string())];
    Ok(grants_of(conn, cache, &pair)?.pop().flatten())
}

/// Access of each user to `room` (unknown users have none), in three queries
/// whatever the number of users: the room's chain, the users, their grants.
pub fn access_of(
    conn: &mut DbConnection,
    room: &RoomId,
    user_ids: &[String],
) -> Result<Vec<(String, Option<Role>)>, ApiError> {
    Ok(decide(conn, room, user_ids)?.1)
}

/// [`access_of`], and the users' rows found on the way.
type Decisions = (HashMap<String, UserRow>, Vec<(String, Option<Role>)>);

fn decide(
    conn: &mut DbConnection,
    room: &RoomId,
    user_ids: &[String],
) -> Result<Decisions, ApiError> {
    let Some((_, chain)) = facts::room(conn, room)? else {
        let none = user_ids.iter().map(|u| (u.clone(), None)).collect();
        return Ok((HashMap::new(), none));
    };
    let scope_ids: Vec<&str> = chain.scopes().into_iter().map(|(_, id)| id).collect();
    let mut users = HashMap::new();
    let mut grants: HashMap<String, facts::Grants> = HashMap::new();
    for chunk in user_ids.chunks(500) {
        let rows: Vec<UserRow> = schema::users::table
            .filter(schema::users::id.eq_any(chunk))
            .select(UserRow::as_select())
            .load(conn)?;
        users.extend(rows.into_iter().map(|u| (u.id.clone(), u)));
        let rows: Vec<(String, String, String)> = schema::members::table
            .filter(schema::members::scope_id.eq_any(&scope_ids))
            .filter(schema::members::user_id.eq_any(chunk))
            .select((
                schema::members::user_id,
                schema::members::scope_id,
                schema::members::role,
            ))
            .load(conn)?;
        for (user, scope, role) in rows {
            if let Some(role) = Role::parse(&role) {
                grants.entry(user).or_default().insert(scope, role);
            }
        }
    }
    let none = facts::Grants::new();
    let decisions = user_ids
        .iter()
        .map(|id| {
            let role = users.get(id).and_then(|u| {
                let facts = chain.facts(grants.get(id).unwrap_or(&none));
                authz::can(
                    &u.actor(),
                    Action::Connect,
                    room.resource_type.into(),
                    &facts,
                )
                .into_result()
                .ok()
            });
            (id.clone(), role)
        })
        .collect();
    Ok((users, decisions))
}
