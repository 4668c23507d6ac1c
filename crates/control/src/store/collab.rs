//! Collaboration tokens and room access: issue a one-time token, consume it
//! atomically, and answer "may this user still be in this room?".

use std::collections::HashMap;

use diesel::prelude::*;
use tandem_protocol::http::Role;
use tandem_protocol::RoomId;

use super::{accounts, facts, now_ms, UserRow};
use crate::authz::{self, Action};
use crate::crypto;
use crate::db::schema::{self, collab_tokens};
use crate::db::{write_tx, DbConnection};
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

/// Why a verify was refused (all answered 403; the reason is for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownOrUsed,
    Expired,
    WrongRoom,
    NoAccess,
}

/// Consumes `token` for `room`: of any number of concurrent calls with one
/// token exactly one gets past the `DELETE` (it affects one row); the others
/// see zero rows. Then checks room, expiry and current access.
pub fn consume(
    conn: &mut DbConnection,
    token: &str,
    room: &RoomId,
) -> Result<Result<(UserRow, Role), Refusal>, ApiError> {
    let hash = crypto::hash_token(token);
    let claimed = write_tx(conn, |c| {
        let row: Option<(String, String, i64)> = collab_tokens::table
            .find(&hash)
            .select((
                collab_tokens::user_id,
                collab_tokens::room_id,
                collab_tokens::expires_at,
            ))
            .first(c)
            .optional()?;
        let deleted = diesel::delete(collab_tokens::table.find(&hash)).execute(c)?;
        Ok::<_, ApiError>(row.filter(|_| deleted == 1))
    })?;
    let Some((user_id, room_id, expires_at)) = claimed else {
        return Ok(Err(Refusal::UnknownOrUsed));
    };
    if expires_at <= now_ms() {
        return Ok(Err(Refusal::Expired));
    }
    if room_id != room.to_string() {
        return Ok(Err(Refusal::WrongRoom));
    }
    let Some(user) = accounts::user_by_id(conn, &user_id)? else {
        return Ok(Err(Refusal::NoAccess));
    };
    match access_of(conn, room, &[user_id])?
        .pop()
        .and_then(|(_, role)| role)
    {
        Some(role) => Ok(Ok((user, role))),
        None => Ok(Err(Refusal::NoAccess)),
    }
}

/// Access of each user to `room` (unknown users have none), in three queries
/// whatever the number of users: the room's chain, the users, their grants.
pub fn access_of(
    conn: &mut DbConnection,
    room: &RoomId,
    user_ids: &[String],
) -> Result<Vec<(String, Option<Role>)>, ApiError> {
    let Some((_, chain)) = facts::room(conn, room)? else {
        return Ok(user_ids.iter().map(|u| (u.clone(), None)).collect());
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
    Ok(user_ids
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
        .collect())
}
