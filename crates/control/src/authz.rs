//! The one authorization surface: [`can`].
//!
//! `can(actor, action, kind, facts)` is a pure function: the store loads the
//! facts (the workspace a thing lives in and the actor's explicit grants along
//! its chain) in one or two indexed queries, and every handler asks `can`.
//! Nothing here does I/O.
//!
//! Effective role = the highest grant along the chain
//! (resource member → project member → workspace member or the role the
//! workspace gives by itself), denied by default. An actor who cannot read a
//! thing is told it does not exist ([`Denial::NotFound`]); one who can read
//! it but may not do this is told [`Denial::Forbidden`].

pub use tandem_protocol::http::{OrgRole, Role, WorkspaceType};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: String,
    pub org_id: String,
    pub org_role: OrgRole,
}

/// What they want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See it, list it, list its members.
    Read,
    /// Open a live collaboration session (viewers read-only).
    Connect,
    /// Rename or change it, edit its content.
    Update,
    /// Create a child in it (a project in a workspace, a document in a project).
    CreateChild,
    /// Delete it.
    Delete,
    /// Add, change or remove members.
    ManageMembers,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Read,
        Action::Connect,
        Action::Update,
        Action::CreateChild,
        Action::Delete,
        Action::ManageMembers,
    ];
}

/// What it is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Workspace,
    Project,
    Document,
    Diagram,
    Task,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Workspace,
        ResourceKind::Project,
        ResourceKind::Document,
        ResourceKind::Diagram,
        ResourceKind::Task,
    ];

    /// Where in the chain grants on this kind sit.
    fn level(self) -> Level {
        match self {
            ResourceKind::Workspace => Level::Workspace,
            ResourceKind::Project => Level::Project,
            _ => Level::Resource,
        }
    }

    /// Whether explicit members can be added to this kind.
    pub fn has_members(self) -> bool {
        !matches!(self, ResourceKind::Task)
    }
}

impl From<tandem_protocol::ResourceType> for ResourceKind {
    fn from(t: tandem_protocol::ResourceType) -> Self {
        match t {
            tandem_protocol::ResourceType::Doc => ResourceKind::Document,
            tandem_protocol::ResourceType::Diagram => ResourceKind::Diagram,
            tandem_protocol::ResourceType::Task => ResourceKind::Task,
        }
    }
}

/// A link of the chain: a grant at `Level::Project` applies to the project and
/// everything in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Workspace,
    Project,
    Resource,
}

/// The workspace at the root of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFacts {
    pub kind: WorkspaceType,
    pub org_id: String,
    pub owner_id: Option<String>,
}

/// Everything `can` needs to know about one thing and one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub workspace: WorkspaceFacts,
    /// The actor's explicit grants along the chain of the thing.
    pub grants: Vec<(Level, Role)>,
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The actor cannot read it: answer as if it did not exist (404).
    NotFound,
    /// The actor can read it but may not do this (403).
    Forbidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the actor's effective role.
    Allow(Role),
    Deny(Denial),
}

impl Decision {
    /// `Ok(role)` or the denial, for `?` in handlers.
    pub fn into_result(self) -> Result<Role, Denial> {
        match self {
            Decision::Allow(role) => Ok(role),
            Decision::Deny(d) => Err(d),
        }
    }
}

/// The role a workspace gives by itself: the owner of a personal workspace is
/// its owner; in a team workspace the org owner is owner and every other org
/// member an editor.
pub fn workspace_role(actor: &Actor, ws: &WorkspaceFacts) -> Option<Role> {
    match ws.kind {
        WorkspaceType::Personal => {
            (ws.owner_id.as_deref() == Some(actor.user_id.as_str())).then_some(Role::Owner)
        }
        WorkspaceType::Team => (ws.org_id == actor.org_id).then_some(match actor.org_role {
            OrgRole::Owner => Role::Owner,
            OrgRole::Member => Role::Editor,
        }),
    }
}

/// The actor's effective role on a thing of `kind`: the highest grant along
/// its chain, `None` when there is none.
pub fn effective_role(actor: &Actor, kind: ResourceKind, facts: &Facts) -> Option<Role> {
    let level = kind.level();
    let explicit = facts
        .grants
        .iter()
        .filter(|(l, _)| *l <= level)
        .map(|(_, r)| *r);
    workspace_role(actor, &facts.workspace)
        .into_iter()
        .chain(explicit)
        .max()
}

/// The least role that may do `action` on `kind`; `None` when the action does
/// not apply to that kind at all.
pub fn required_role(action: Action, kind: ResourceKind) -> Option<Role> {
    use ResourceKind::*;
    match (action, kind) {
        (Action::Read, _) => Some(Role::Viewer),
        (Action::Connect, Document | Diagram | Task) => Some(Role::Viewer),
        (Action::Connect, Workspace | Project) => None,
        (Action::Update, _) => Some(Role::Editor),
        (Action::CreateChild, Workspace | Project) => Some(Role::Editor),
        (Action::CreateChild, Document | Diagram | Task) => None,
        (Action::Delete, Document | Diagram | Task) => Some(Role::Editor),
        (Action::Delete, Workspace | Project) => Some(Role::Owner),
        (Action::ManageMembers, Task) => None,
        (Action::ManageMembers, _) => Some(Role::Owner),
    }
}

/// May `actor` do `action` to the thing of `kind` described by `facts`?
pub fn can(actor: &Actor, action: Action, kind: ResourceKind, facts: &Facts) -> Decision {
    let Some(role) = effective_role(actor, kind, facts) else {
        return Decision::Deny(Denial::NotFound);
    };
    match required_role(action, kind) {
        Some(needed) if role >= needed => Decision::Allow(role),
        _ => Decision::Deny(Denial::Forbidden),
    }
}

#[cfg(test)]
mod tests;
