//! `/collaboration/*`: one-time tokens for the relay, their verification,
//! access checks and the access-change feed the relay long-polls.

use std::time::Duration;

use actix_web::{web, HttpRequest};
use serde::Deserialize;
use tandem_protocol::collab::is_collab_token_shape;
use tandem_protocol::collab::{
    AccessBatchRequest, AccessBatchResponse, AccessEvents, CheckAccessBatchRequest,
    CheckAccessBatchResponse, CheckAccessResponse, TokenRequest, TokenResponse, UserAccess,
    VerifyBatchRequest, VerifyBatchResponse, VerifyOutcome, VerifyRequest, VerifyResponse,
    COLLAB_TOKEN_TTL_SECS, MAX_ACCESS_BATCH, MAX_BATCH_USERS, MAX_VERIFY_BATCH,
};
use tandem_protocol::RoomId;

use super::extract::{bearer, Caller, RelayAuth, RelaySecretHeader};
use super::paths::Kind;
use super::{authorize, load};
use crate::authz::Action;
use crate::error::ApiError;
use crate::state::State;
use crate::store::{collab, events};
use crate::verify_queue::VerifyQueue;

pub fn parse_room(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(raw).map_err(|e| ApiError::BadRequest(format!("roomId: {e}")))
}

/// A batch of the relay's holds 1 to `max` items (422 otherwise).
fn batch_size(items: usize, max: usize) -> Result<(), ApiError> {
    if (1..=max).contains(&items) {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "items: between 1 and {max} per call"
    )))
}

/// `POST /collaboration/token`: needs `Connect` on the resource.
pub async fn token(
    state: State,
    caller: Caller,
    body: web::Json<TokenRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    let TokenRequest {
        resource_type,
        resource_id,
    } = body.into_inner();
    let room = RoomId::new(resource_type, resource_id);
    let kind = Kind::from_type(resource_type);
    let response = state
        .db(move |c| {
            let user = caller.sign_in(c)?;
            let (_, chain) = load::resource(c, &room.resource_id, kind)?;
            authorize(c, &user.actor(), Action::Connect, kind.authz_kind(), &chain)?;
            let (token, expires_at) =
                collab::issue(c, user.id(), &room, COLLAB_TOKEN_TTL_SECS * 1000)?;
            Ok(TokenResponse {
                token,
                room_id: room.to_string(),
                expires_at,
            })
        })
        .await?;
    Ok(web::Json(response))
}

/// `POST /collaboration/verify` (relay secret in its own header): consumes
/// the token (once, atomically). Without the secret nothing is consumed.
pub async fn verify(
    state: State,
    _relay: RelaySecretHeader,
    req: HttpRequest,
    body: web::Json<VerifyRequest>,
) -> Result<web::Json<VerifyResponse>, ApiError> {
    let room = parse_room(&body.room_id)?;
    let token =
        bearer(&req).ok_or_else(|| ApiError::Unauthorized("missing collaboration token".into()))?;
    let room_name = room.to_string();
    let outcome = VerifyQueue::verify(state.get_ref(), token, room).await?;
    match outcome {
        Ok((user_id, grant)) => {
            tracing::info!(room = %room_name, user_id = %user_id, role = grant.role.as_str(), "collaboration token verified");
            Ok(web::Json(VerifyResponse {
                user_id,
                user_name: grant.user_name,
                role: grant.role,
            }))
        }
        Err(refusal) => {
            tracing::info!(room = %room_name, ?refusal, "collaboration token refused");
            Err(ApiError::Forbidden)
        }
    }
}

/// `POST /collaboration/verify-batch` (relay secret as Bearer): consumes up
/// to [`MAX_VERIFY_BATCH`] tokens in one statement and answers per token, in
/// order. A malformed room id is answered `invalid` for its item alone (its
/// token is not consumed); a token that is not a token's shape is refused
/// without a lookup. One log line per batch.
pub async fn verify_batch(
    state: State,
    _relay: RelayAuth,
    body: web::Json<VerifyBatchRequest>,
) -> Result<web::Json<VerifyBatchResponse>, ApiError> {
    let items = body.into_inner().items;
    batch_size(items.len(), MAX_VERIFY_BATCH)?;
    let mut results: Vec<Option<VerifyOutcome>> = Vec::with_capacity(items.len());
    let mut claims: Vec<(String, RoomId)> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match RoomId::parse(&item.room_id) {
            Err(e) => results.push(Some(VerifyOutcome::Invalid {
                message: format!("roomId: {e}"),
            })),
            Ok(_) if !is_collab_token_shape(&item.token) => {
                results.push(Some(VerifyOutcome::Refused))
            }
            Ok(room) => {
                results.push(None);
                slots.push(i);
                claims.push((item.token, room));
            }
        }
    }
    let app = state.get_ref().clone();
    let outcomes = if claims.is_empty() {
        Vec::new()
    } else {
        state
            .db(move |c| collab::consume_many(c, &app.access_cache, &claims))
            .await?
    };
    let (mut verified, mut refused) = (0usize, 0usize);
    for (slot, outcome) in slots.into_iter().zip(outcomes) {
        results[slot] = Some(match outcome {
            Ok((user_id, grant)) => {
                verified += 1;
                VerifyOutcome::Verified {
                    user_id,
                    user_name: grant.user_name,
                    role: grant.role,
                }
            }
            Err(refusal) => {
                refused += 1;
                tracing::debug!(?refusal, "collaboration token refused");
                VerifyOutcome::Refused
            }
        });
    }
    let results: Vec<VerifyOutcome> = results
        .into_iter()
        .map(|r| r.unwrap_or(VerifyOutcome::Refused))
        .collect();
    tracing::info!(
        items = results.len(),
        verified,
        refused,
        "collaboration token batch verified"
    );
    Ok(web::Json(VerifyBatchResponse { results }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckAccessQuery {
    room_id: Option<String>,
    user_id: Option<String>,
}

/// `GET /collaboration/check-access?roomId&userId` (relay secret).
pub async fn check_access(
    state: State,
    _relay: RelayAuth,
    query: web::Query<CheckAccessQuery>,
) -> Result<web::Json<CheckAccessResponse>, ApiError> {
    let CheckAccessQuery { room_id, user_id } = query.into_inner();
    let (Some(room_id), Some(user_id)) = (room_id, user_id) else {
        return Err(ApiError::BadRequest(
            "roomId and userId are required".into(),
        ));
    };
    let room = parse_room(&room_id)?;
    let app = state.get_ref().clone();
    let role = state
        .db(move |c| collab::grant_of(c, &app.access_cache, &room, &user_id))
        .await?
        .map(|g| g.role);
    Ok(web::Json(CheckAccessResponse {
        has_access: role.is_some(),
        role,
    }))
}

/// `POST /collaboration/check-access` (relay secret): every user of a room at once.
pub async fn check_access_batch(
    state: State,
    _relay: RelayAuth,
    body: web::Json<CheckAccessBatchRequest>,
) -> Result<web::Json<CheckAccessBatchResponse>, ApiError> {
    let CheckAccessBatchRequest { room_id, user_ids } = body.into_inner();
    let room = parse_room(&room_id)?;
    if user_ids.len() > MAX_BATCH_USERS {
        return Err(ApiError::validation(format!(
            "at most {MAX_BATCH_USERS} userIds per call"
        )));
    }
    let access = state
        .db(move |c| collab::access_of(c, &room, &user_ids))
        .await?;
    Ok(web::Json(CheckAccessBatchResponse {
        results: access
            .into_iter()
            .map(|(user_id, role)| UserAccess {
                user_id,
                has_access: role.is_some(),
                role,
            })
            .collect(),
    }))
}

/// `POST /collaboration/check-access-batch` (relay secret): up to
/// [`MAX_ACCESS_BATCH`] (room, user) pairs, any mix of rooms, answered in
/// order from one database connection (the access cache first, then three
/// queries per distinct room). A room id that does not parse refuses the
/// whole call (422 naming the item): the relay only sends parsed ones.
pub async fn check_access_many(
    state: State,
    _relay: RelayAuth,
    body: web::Json<AccessBatchRequest>,
) -> Result<web::Json<AccessBatchResponse>, ApiError> {
    let items = body.into_inner().items;
    batch_size(items.len(), MAX_ACCESS_BATCH)?;
    let pairs = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match RoomId::parse(&item.room_id) {
            Ok(room) => Ok((room, item.user_id)),
            Err(e) => Err(ApiError::validation(format!("items[{i}].roomId: {e}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let app = state.get_ref().clone();
    let grants = state
        .db(move |c| collab::grants_of(c, &app.access_cache, &pairs))
        .await?;
    Ok(web::Json(AccessBatchResponse {
        results: grants
            .into_iter()
            .map(|g| CheckAccessResponse {
                has_access: g.is_some(),
                role: g.map(|g| g.role),
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    after: Option<i64>,
    timeout_ms: Option<u64>,
}

/// Longest a poll waits for an event.
const MAX_POLL: Duration = Duration::from_secs(30);
/// How often a waiting poll looks at the table (changes made by other replicas).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// `GET /collaboration/events?after=N&timeoutMs=T` (relay secret): events
/// after `N`, waiting up to `T` ms (default 20 s) for one. Without `after`,
/// answers at once with no events and the current cursor.
pub async fn events(
    state: State,
    _relay: RelayAuth,
    query: web::Query<EventsQuery>,
) -> Result<web::Json<AccessEvents>, ApiError> {
    let Some(after) = query.after else {
        let last = state.db(|c| Ok(events::last_seq(c)?)).await?;
        return Ok(web::Json(AccessEvents {
            events: vec![],
            last,
        }));
    };
    let wait = Duration::from_millis(query.timeout_ms.unwrap_or(20_000)).min(MAX_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = state.access_events.notified();
        let found = state.db(move |c| Ok(events::after(c, after)?)).await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            let last = found.last().map(|e| e.seq).unwrap_or(after);
            return Ok(web::Json(AccessEvents {
                events: found,
                last,
            }));
        }
        let nap = POLL_INTERVAL.min(deadline - tokio::time::Instant::now());
        if !state.nap(notified, nap).await {
            return Ok(web::Json(AccessEvents {
                events: vec![],
                last: after,
            }));
        }
    }
}
