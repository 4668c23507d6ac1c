//! JSON bodies of the sync engine (`/workspaces/{id}/sync/*`): local-first
//! collections of JSON rows, field-level last-writer-wins by hybrid logical
//! clock. See `proto-docs/sync.md`. camelCase on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most mutations in one push (more: 413).
pub const MAX_BATCH: usize = 500;
/// Largest push body, in bytes (more: 413).
pub const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;
/// Largest `fields` of one mutation, and largest stored row (its fields with
/// their clocks), in bytes of JSON.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// Most fields one row may hold.
pub const MAX_FIELDS: usize = 256;
/// Longest collection name (`[A-Za-z][A-Za-z0-9_]*`).
pub const MAX_COLLECTION_LEN: usize = 64;
/// Longest row id and field name, in bytes.
pub const MAX_ROW_ID_LEN: usize = 256;
pub const MAX_FIELD_NAME_LEN: usize = 128;
/// Longest client id and client group id (`[A-Za-z0-9_-]`).
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Changes one pull returns by default, and at most.
pub const DEFAULT_PULL: i64 = 500;
pub const MAX_PULL: i64 = 1000;
/// A pull page stops growing past this many bytes of row data (it always
/// holds at least one change).
pub const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;
/// Collection names a client keeps for itself (its outbox and bookkeeping).
pub const RESERVED_COLLECTIONS: [&str; 3] = ["pending_ops", "sync_state", "sync_runs"];

/// `POST /workspaces/{id}/sync/push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRequest {
    /// The client's group (one browser profile: its tabs share a database).
    pub client_group_id: String,
    /// The client (one outbox); its mutation ids increase.
    pub client_id: String,
    pub mutations: Vec<Mutation>,
}

/// One change of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mutation {
    /// Increases per client (gaps allowed); a replayed id is a duplicate.
    pub id: i64,
    pub collection: String,
    pub row_id: String,
    /// `put` (replace the row), `patch` (set the given fields) or `delete`.
    pub op: String,
    /// The row's fields (`put`) or the fields to set (`patch`); absent for `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub fields: Option<Map<String, Value>>,
    /// `"{unix ms, 13 digits}:{counter, 6 digits}:{clientId}"`.
    pub hlc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PushResponse {
    /// The client's last mutation id after this push (0 if none yet).
    pub last_mutation_id: i64,
    pub results: Vec<MutationResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MutationResult {
    pub id: i64,
    /// `applied`, `duplicate` (seen before: nothing changed) or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /workspaces/{id}/sync/pull`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PullResponse {
    /// Where the next pull continues (opaque).
    pub cursor: String,
    /// More changes follow: pull again with `cursor` at once.
    pub has_more: bool,
    /// Drop the local copy first: these pages are the whole current state.
    pub reset: bool,
    pub changes: Vec<Change>,
    /// Last mutation id of each of the caller's clients (of `clientGroupId` if given).
    pub last_mutation_ids: BTreeMap<String, i64>,
}

/// The current state of one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub collection: String,
    pub row_id: String,
    /// Every field of the row; `null` when it is deleted.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub fields: Option<Map<String, Value>>,
    pub deleted: bool,
    /// The newest clock of the row.
    pub hlc: String,
}

/// Data of the `poke` event of `GET /workspaces/{id}/sync/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Poke {
    /// The cursor a complete pull would end at now.
    pub cursor: String,
}

/// Data of the `revoked` event: the caller lost the workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub reason: String,
}
