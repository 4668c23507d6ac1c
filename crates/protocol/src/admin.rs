//! The admin surface of control: org members and ownership, workspace
//! settings (guest access), and the per-org audit log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{OrgRole, Role};

/// Who outside a workspace's org may be a member or share-link participant,
/// and with which highest role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum GuestAccess {
    /// Nobody from outside the org.
    Off,
    /// Outsiders at most as viewers (share links: read, not join).
    View,
    /// Outsiders with any role (the default; as before the setting existed).
    Edit,
}

impl GuestAccess {
    pub const ALL: [GuestAccess; 3] = [GuestAccess::Off, GuestAccess::View, GuestAccess::Edit];

    pub fn as_str(self) -> &'static str {
        match self {
            GuestAccess::Off => "off",
            GuestAccess::View => "view",
            GuestAccess::Edit => "edit",
        }
    }

    pub fn parse(s: &str) -> Option<GuestAccess> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The highest role a guest may hold; `None` when guests are not let in.
    pub fn max_role(self) -> Option<Role> {
        match self {
            GuestAccess::Off => None,
            GuestAccess::View => Some(Role::Viewer),
            GuestAccess::Edit => Some(Role::Owner),
        }
    }
}

/// `PATCH /workspaces/{id}`: the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWorkspace {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub guest_access: Option<GuestAccess>,
}

/// A workspace's settings, as `PATCH /workspaces/{id}` answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSettings {
    pub id: String,
    pub org_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: crate::http::WorkspaceType,
    pub guest_access: GuestAccess,
    /// Guests' grants changed by this request (removed or lowered to viewer).
    pub clamped_grants: i64,
}

/// `POST /orgs/{id}/transfer`: the org member who becomes its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferOrg {
    pub user_id: String,
}

/// One member of an org (`GET /orgs/{id}/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrgMember {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub org_role: OrgRole,
    pub created_at: i64,
}

/// One entry of an org's audit log. `hash = sha256(prevHash ‖ canonical JSON
/// of the entry without prevHash and hash)`, lowercase hex; see
/// proto-docs/admin.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// 1, 2, 3… per org, without gaps.
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub org_id: String,
    /// The id of the user who did it (`system` for the server itself).
    pub actor: String,
    /// What was done, e.g. `member.add`, `org.transfer` (proto-docs/admin.md).
    pub action: String,
    /// What it was done to, `kind:id` (e.g. `workspace:abc`).
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// `GET /orgs/{id}/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// Every entry links to the one before and hashes to its stored hash.
    pub ok: bool,
    /// Entries checked (all of them when `ok`; up to the first broken one otherwise).
    pub checked: i64,
    /// The first entry that does not verify (missing, altered, or mislinked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken_seq: Option<i64>,
    /// The last entry's seq and hash: record them elsewhere to detect a
    /// later truncation of the log's tail.
    pub head_seq: i64,
    pub head_hash: String,
}
