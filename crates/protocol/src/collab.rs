//! The collaboration handshake between app, control and relay, and what the
//! relay says on the socket besides the y-websocket protocol.

use serde::{Deserialize, Serialize};

use crate::http::Role;
use crate::room::ResourceType;

/// How long a collaboration token lives, in seconds.
pub const COLLAB_TOKEN_TTL_SECS: i64 = 5 * 60;

/// Length of a collaboration token: 32 random bytes, base64url without padding.
pub const COLLAB_TOKEN_LEN: usize = 43;

/// Whether `token` has the shape of a collaboration token (43 characters of
/// base64url): the relay refuses anything else without asking control.
pub fn is_collab_token_shape(token: &str) -> bool {
    token.len() == COLLAB_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `POST /collaboration/token` (signed-in user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub resource_type: ResourceType,
    pub resource_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// One-time token for the relay (`?token=`).
    pub token: String,
    /// `"{resourceType}-{resourceId}"`.
    pub room_id: String,
    pub expires_at: i64,
}

/// Response header of `GET /collaboration/rooms/{roomId}/snapshot`: the
/// largest document control will store for the room, in bytes (Yjs v1
/// encoding). The relay refuses updates that would grow a room past it.
pub const MAX_DOCUMENT_BYTES_HEADER: &str = "x-tandem-max-document-bytes";

/// Header carrying the relay's shared secret on `POST /collaboration/verify`,
/// whose `Authorization` carries the user's one-time token: control answers
/// 401 unless both are right, so only a relay can consume tokens.
pub const RELAY_SECRET_HEADER: &str = "x-tandem-relay-secret";

/// `POST /collaboration/verify` (relay; `Authorization: Bearer <token>` and
/// [`RELAY_SECRET_HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    pub room_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub user_id: String,
    pub user_name: String,
    /// `viewer` connections are read-only.
    pub role: Role,
}

/// Most tokens one `POST /collaboration/verify-batch` may carry.
pub const MAX_VERIFY_BATCH: usize = 100;

/// `POST /collaboration/verify-batch` (relay; its secret as Bearer): consumes
/// many one-time tokens in one call, each exactly as `POST
/// /collaboration/verify` would (a token succeeds once, whichever relay,
/// replica or call presents it first; a token named twice in one batch
/// succeeds at most once). At most [`MAX_VERIFY_BATCH`] items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyBatchRequest {
    pub items: Vec<VerifyBatchItem>,
}

/// One token to consume for one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyBatchItem {
    /// The client's one-time token (`?token=`).
    pub token: String,
    /// `"{resourceType}-{resourceId}"`.
    pub room_id: String,
}

/// The answers, one per item, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyBatchResponse {
    pub results: Vec<VerifyOutcome>,
}

/// What became of one token of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum VerifyOutcome {
    /// Consumed: the connection may join as this user (what `verify` answers 200 with).
    #[serde(rename_all = "camelCase")]
    Verified {
        user_id: String,
        user_name: String,
        /// `viewer` connections are read-only.
        role: Role,
    },
    /// Unknown, already used, expired, for another room, or the user has no
    /// access (what `verify` answers 403 to). An expired or misdirected token
    /// is consumed all the same.
    Refused,
    /// The item is malformed (a room id that does not parse); nothing was consumed.
    #[serde(rename_all = "camelCase")]
    Invalid { message: String },
}

/// `GET /collaboration/check-access?roomId&userId` (relay secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckAccessResponse {
    pub has_access: bool,
    /// The user's role when they have access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Most users one batched check may name.
pub const MAX_BATCH_USERS: usize = 1000;

/// `POST /collaboration/check-access` (relay secret): all users of a room at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckAccessBatchRequest {
    pub room_id: String,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserAccess {
    pub user_id: String,
    pub has_access: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckAccessBatchResponse {
    pub results: Vec<UserAccess>,
}

/// Most items one `POST /collaboration/check-access-batch` may carry.
pub const MAX_ACCESS_BATCH: usize = 100;

/// `POST /collaboration/check-access-batch` (relay secret): the access of
/// users to rooms, any mix of rooms, in one call (the relay gathers the
/// checks of concurrent resume-ticket joins into it). At most
/// [`MAX_ACCESS_BATCH`] items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessBatchRequest {
    pub items: Vec<AccessBatchItem>,
}

/// One user in one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessBatchItem {
    /// `"{resourceType}-{resourceId}"`.
    pub room_id: String,
    pub user_id: String,
}

/// The answers, one per item, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessBatchResponse {
    pub results: Vec<CheckAccessResponse>,
}

/// One access change: re-check `userId` everywhere, or everyone in `roomId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessEvent {
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `GET /collaboration/events?after=N&timeoutMs=T` (relay secret, long poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessEvents {
    pub events: Vec<AccessEvent>,
    /// The cursor for the next call (`after=last`).
    pub last: i64,
}

/// The notice the relay sends before closing a revoked connection: as the
/// reason of a y-protocols auth message (`[2][0][varString json]`, "permission
/// denied") on every path, and also as a JSON text frame on the y-partykit
/// path (`/parties/main/...`) only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerNotice {
    PermissionRevoked { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        assert!(is_collab_token_shape(&"aZ09-_".repeat(8)[..43]));
        assert!(is_collab_token_shape(&"A".repeat(43)));
        for bad in [
            "",
            "short",
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
            &format!("{}%", "A".repeat(42)),
            &"é".repeat(21),
        ] {
            assert!(!is_collab_token_shape(bad), "{bad}");
        }
    }
}

/// Resume tickets (`proto-docs/relay-protocol.md`, "Resume tickets").
pub mod resume {
    use serde::{Deserialize, Serialize};

    /// The y-websocket message tag of a resume ticket (relay → client, only
    /// to connections that asked with `?resume=1`): `[100][varString json]`,
    /// the JSON being a [`TicketMessage`].
    pub const MESSAGE_RESUME_TICKET: u8 = 100;
    /// Query parameter asking for tickets on this connection.
    pub const RESUME_PARAM: &str = "resume";
    /// Query parameter presenting a ticket in place of `token`.
    pub const TICKET_PARAM: &str = "ticket";
    /// Longest ticket the relay reads.
    pub const MAX_TICKET_LEN: usize = 1024;

    /// What the resume-ticket message carries.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TicketMessage {
        pub ticket: String,
        /// Seconds the ticket is accepted from when it was sent.
        pub expires_in_secs: u64,
    }
}

/// WebSocket close codes the relay uses, and their reason strings.
pub mod close {
    /// Normal closure (the client said goodbye).
    pub const NORMAL: u16 = 1000;
    /// The relay is shutting down; reconnect (to another node).
    pub const GOING_AWAY: u16 = 1001;
    /// A message that is not y-websocket (malformed varints, unknown sync
    /// step: `BAD_MESSAGE`), or a frame RFC 6455 forbids (unmasked, reserved
    /// bits, an oversized or fragmented control frame, a broken fragment
    /// sequence, a bad close code: `BAD_FRAME`).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame where only binary frames are expected.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Access was revoked (`AUTH_FORBIDDEN`), after a `permission_revoked` notice
    /// (auth message; also a text frame on the y-partykit path).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The relay failed; reconnect.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The relay node is draining (`POST /admin/drain`, a rolling restart):
    /// the room was saved to control first; reconnect (to another node).
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later: the room is full, or the client reads too slowly.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The document is at its size limit: the update was refused
    /// (`DOCUMENT_TOO_LARGE`), or control refused to store the room
    /// (`DOCUMENT_UNSAVEABLE`). In the 4400–4499 range, which stock
    /// y-websocket (3.x) treats as final: reconnecting would send the same
    /// update again.
    pub const DOCUMENT_TOO_LARGE: u16 = 4413;

    /// A resume ticket (`?ticket=`) was refused: expired, tampered with,
    /// for another room, signed with another relay secret, or the user lost
    /// access. Sent right after the upgrade, before any room message; the
    /// client connects again with a fresh token (never with the same ticket).
    pub const TICKET_REFUSED: u16 = 4401;

    pub const REASON_AUTH_FORBIDDEN: &str = "AUTH_FORBIDDEN";
    pub const REASON_TICKET_REFUSED: &str = "TICKET_REFUSED";
    pub const REASON_SHUTDOWN: &str = "SHUTDOWN";
    pub const REASON_DRAINING: &str = "DRAINING";
    pub const REASON_ROOM_FULL: &str = "ROOM_FULL";
    pub const REASON_SLOW_CONSUMER: &str = "SLOW_CONSUMER";
    pub const REASON_MESSAGE_TOO_BIG: &str = "MESSAGE_TOO_BIG";
    pub const REASON_BAD_MESSAGE: &str = "BAD_MESSAGE";
    pub const REASON_BAD_FRAME: &str = "BAD_FRAME";
    pub const REASON_BINARY_ONLY: &str = "BINARY_ONLY";
    pub const REASON_TOO_MANY_MESSAGES: &str = "TOO_MANY_MESSAGES";
    /// The user already holds the most connections one user may have in the room.
    pub const REASON_USER_ROOM_FULL: &str = "USER_ROOM_FULL";
    pub const REASON_DOCUMENT_TOO_LARGE: &str = "DOCUMENT_TOO_LARGE";
    pub const REASON_DOCUMENT_UNSAVEABLE: &str = "DOCUMENT_UNSAVEABLE";
}
