//! Queries over the tenancy tables. Every function takes a connection and
//! returns rows or an [`ApiError`]; authorization decisions are not made here
//! but by `authz::can` over the [`Facts`] that [`facts`] loads.

pub mod access_cache;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod chat_events;
pub mod collab;
pub mod conversations;
pub mod events;
pub mod extensions;
pub mod facts;
pub mod files;
pub mod invites;
pub mod joining;
pub mod members;
pub mod message_sets;
pub mod messages;
pub mod outbox;
pub mod projects;
pub mod resources;
pub mod settings;
pub mod snapshots;
pub mod sync;
pub mod throttle;
pub mod usage;
pub mod verification;
pub mod webhooks;
pub mod workspace_events;
pub mod workspaces;

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;

use tandem_protocol::http::OrgRole;

use crate::authz::Actor;
use crate::db::schema::{orgs, users};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub external_sub: Option<String>,
    pub org_id: String,
    pub org_role: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// When the user proved their address; `None` until then.
    pub email_verified_at: Option<i64>,
}

impl UserRow {
    pub fn org_role(&self) -> OrgRole {
        OrgRole::parse(&self.org_role).unwrap_or(OrgRole::Member)
    }

    /// The user as shown next to messages and in participant lists.
    pub fn summary(&self) -> tandem_protocol::chat::UserSummary {
        tandem_protocol::chat::UserSummary {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
        }
    }

    /// The user as the API shows them to themselves.
    pub fn to_dto(&self) -> tandem_protocol::http::User {
        tandem_protocol::http::User {
            id: self.id.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            org_id: self.org_id.clone(),
            org_role: self.org_role(),
            email_verified: self.email_verified(),
        }
    }

    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// The user as `can()` sees them.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.id.clone(),
            org_id: self.org_id.clone(),
            org_role: self.org_role(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = orgs)]
pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub owner_id: Option<String>,
    pub created_at: i64,
    /// `auto | approval | off`, as [`OrgRow::join_policy`] reads it.
    pub join_policy: String,
}

impl OrgRow {
    /// The join policy; an unreadable value lets nobody in.
    pub fn join_policy(&self) -> tandem_protocol::identity::JoinPolicy {
        tandem_protocol::identity::JoinPolicy::parse(&self.join_policy)
            .unwrap_or(tandem_protocol::identity::JoinPolicy::Off)
    }

    /// A solo org (`personal-{userId}`), as free-mail and unverified users get.
    pub fn is_personal(&self) -> bool {
        self.domain.starts_with("personal-")
    }
}

pub use facts::{Chain, WorkspaceRow};
pub use projects::ProjectRow;
pub use resources::ResourceRow;
