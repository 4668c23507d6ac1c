//! JSON bodies of control's HTTP API. Field names are camelCase on the wire,
//! ids are strings, times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

use crate::room::ResourceType;

/// A role on a workspace, project or resource: `owner ⊇ editor ⊇ viewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A user's role in their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Owner,
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<OrgRole> {
        match s {
            "owner" => Some(OrgRole::Owner),
            "member" => Some(OrgRole::Member),
            _ => None,
        }
    }
}

/// `team` (one per work-email organization) or `personal` (one per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceType {
    Team,
    Personal,
}

impl WorkspaceType {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceType::Team => "team",
            WorkspaceType::Personal => "personal",
        }
    }

    pub fn parse(s: &str) -> Option<WorkspaceType> {
        match s {
            "team" => Some(WorkspaceType::Team),
            "personal" => Some(WorkspaceType::Personal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub org_id: String,
    pub org_role: OrgRole,
    /// Whether the user proved their address (a verification link or an
    /// identity provider's `email_verified`). Until then they have their
    /// personal workspace only.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub email_verified: bool,
}

/// Answer of signup and login. The session token is shown once, never stored in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub user: User,
    pub session_token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub id: String,
    pub name: String,
    pub domain: String,
}

/// A workspace as the caller sees it, with the caller's effective role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSummary {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WorkspaceType,
    pub role: Role,
}

/// `GET /auth/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub user: User,
    pub org: Org,
    pub workspaces: Vec<WorkspaceSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The caller's effective role on this project.
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateResource {
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateResource {
    pub title: Option<String>,
}

/// A document, diagram or task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    pub project_id: String,
    pub resource_type: ResourceType,
    pub title: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The caller's effective role on this resource.
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// Names the new member by `userId` or by `email` (exactly one of them).
pub struct AddMember {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

/// An explicit grant on one workspace, project, document or diagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
}

/// One page of a list endpoint (`?limit=&cursor=`): every list of control
/// answers this shape. `limit` is 1..=[`MAX_PAGE`] ([`DEFAULT_PAGE`] when
/// absent); `cursor` is the `nextCursor` of the previous page, opaque.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Items per page when a list request names no `limit`.
pub const DEFAULT_PAGE: i64 = 50;
/// The largest `limit` a list request may ask for.
pub const MAX_PAGE: i64 = 200;

/// One event of `GET /workspaces/{id}/events` (the SSE `data:` line; the SSE
/// `event:` field carries `kind`, the SSE `id:` field carries `seq`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceEvent {
    /// The workspace's event number (the SSE id).
    pub seq: i64,
    /// `{entity}.{op}`: entity `project | document | diagram | task |
    /// conversation | member`, op `created | updated | deleted`.
    pub kind: String,
    /// The id of the entity (of the member's user for `member.*`).
    pub id: String,
    /// The project the entity lives in (for projects, their own id).
    pub project_id: Option<String>,
    /// The entity as the reader sees it, with their `role` (as `GET` of it
    /// answers), for `created`/`updated` of projects, documents, diagrams,
    /// tasks and conversations; `{id, projectId}` (or `{id, workspaceId}`)
    /// for `deleted`; `{userId, scopeKind, scopeId, memberRole}` for `member.*`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}
