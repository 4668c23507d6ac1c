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
//!
//! Conversations (chats) are not governed by the chain: their facts are the
//! actor's relation to the conversation (owner, participant, or someone
//! reading it through a share link) and what its owner lets participants do
//! (plan 003's permission matrix).

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
    /// Add, change or remove members (participants, share links of a conversation).
    ManageMembers,
    /// Change its title or name.
    Rename,
    /// Star or pin it.
    Star,
    /// Archive or unarchive it.
    Archive,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Connect,
        Action::Update,
        Action::CreateChild,
        Action::Delete,
        Action::ManageMembers,
        Action::Rename,
        Action::Star,
        Action::Archive,
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
    /// A chat in a project; see [`ConversationFacts`].
    Conversation,
    /// An organization; see [`OrgFacts`].
    Org,
}

impl ResourceKind {
    /// The kinds whose access follows the workspace → project → resource chain.
    pub const CHAIN: [ResourceKind; 5] = [
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
            ResourceKind::Org => Level::Workspace,
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
pub enum Facts {
    /// A workspace, project, document, diagram or task.
    Chain(ChainFacts),
    Conversation(ConversationFacts),
    Org(OrgFacts),
}

/// The facts of an organization: which one it is (the actor's own org and
/// role are on the [`Actor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgFacts {
    pub org_id: String,
}

impl From<OrgFacts> for Facts {
    fn from(f: OrgFacts) -> Facts {
        Facts::Org(f)
    }
}

/// The facts of a thing on the workspace → project → resource chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFacts {
    pub workspace: WorkspaceFacts,
    /// The actor's explicit grants along the chain of the thing.
    pub grants: Vec<(Level, Role)>,
}

impl From<ChainFacts> for Facts {
    fn from(f: ChainFacts) -> Facts {
        Facts::Chain(f)
    }
}

/// The facts of a conversation for one actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationFacts {
    /// `Owner` for its owner, `Editor` for a participant, `Viewer` for
    /// someone reading it through a live share link, `None` otherwise.
    pub relation: Option<Role>,
    /// What the owner lets participants do.
    pub participants_may: tandem_protocol::chat::ParticipantsMay,
}

impl From<ConversationFacts> for Facts {
    fn from(f: ConversationFacts) -> Facts {
        Facts::Conversation(f)
    }
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
pub fn effective_role(actor: &Actor, kind: ResourceKind, facts: &ChainFacts) -> Option<Role> {
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
        (_, Conversation | Org) => None,
        (Action::Rename, _) => Some(Role::Editor),
        (Action::Star | Action::Archive, _) => None,
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
    match (kind, facts) {
        (ResourceKind::Conversation, Facts::Conversation(f)) => conversation(action, f),
        (ResourceKind::Org, Facts::Org(f)) => org(actor, action, f),
        (ResourceKind::Conversation | ResourceKind::Org, _)
        | (_, Facts::Conversation(_) | Facts::Org(_)) => Decision::Deny(Denial::NotFound),
        (kind, Facts::Chain(f)) => {
            let Some(role) = effective_role(actor, kind, f) else {
                return Decision::Deny(Denial::NotFound);
            };
            match required_role(action, kind) {
                Some(needed) if role >= needed => Decision::Allow(role),
                _ => Decision::Deny(Denial::Forbidden),
            }
        }
    }
}

/// `can` for an org: its members read it; changing it or deciding who joins
/// goes by the admin policy ([`can_admin`]); outsiders are told it does not
/// exist.
pub fn can_org(actor: &Actor, action: Action, facts: &OrgFacts) -> Decision {
    can(actor, action, ResourceKind::Org, &Facts::Org(facts.clone()))
}

fn org(actor: &Actor, action: Action, f: &OrgFacts) -> Decision {
    let facts = AdminFacts::for_org(actor, &f.org_id);
    let admin = match action {
        Action::Read => AdminAction::View,
        Action::Update | Action::Rename => AdminAction::ManageSettings,
        Action::ManageMembers => AdminAction::ManageMembers,
        _ => match facts.role {
            None => return Decision::Deny(Denial::NotFound),
            Some(_) => return Decision::Deny(Denial::Forbidden),
        },
    };
    can_admin(admin, &facts)
}

/// What is done in the admin area (plan 001, phase 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminAction {
    /// Enter the admin area: org details and settings, member lists,
    /// workspace settings and guest access, join requests (read only).
    View,
    /// Add, change or remove members (of the org, of a workspace), decide
    /// join requests.
    ManageMembers,
    /// Change a workspace's guest access.
    ManageGuestAccess,
    /// Rename the org or a workspace, set the join policy.
    ManageSettings,
    /// Hand the org to another member.
    TransferOwnership,
    /// Read, verify and export the audit log.
    ReadAudit,
    /// Install and enable extensions, per workspace.
    ManageExtensions,
    /// Create, change and remove webhooks.
    ManageWebhooks,
    /// Apply the deployment's configuration, restart: instance admins only.
    ManageInstance,
}

impl AdminAction {
    pub const ALL: [AdminAction; 9] = [
        AdminAction::View,
        AdminAction::ManageMembers,
        AdminAction::ManageGuestAccess,
        AdminAction::ManageSettings,
        AdminAction::TransferOwnership,
        AdminAction::ReadAudit,
        AdminAction::ManageExtensions,
        AdminAction::ManageWebhooks,
        AdminAction::ManageInstance,
    ];
}

/// Who the actor is for the admin area of one org or workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminFacts {
    /// The actor's role there; `None` for an outsider. For an org: its
    /// owner is `Owner`, every other member `Editor` (as in the org's team
    /// workspace). For a workspace: the effective role on it.
    pub role: Option<Role>,
    /// An instance admin of the deployment (`TANDEM_ADMINS`); only they
    /// manage the instance.
    pub instance_admin: bool,
}

impl AdminFacts {
    /// The actor in the admin area of org `org_id` (not an instance admin:
    /// callers that know better set [`AdminFacts::instance_admin`]).
    pub fn for_org(actor: &Actor, org_id: &str) -> AdminFacts {
        let role = (actor.org_id == org_id).then_some(match actor.org_role {
            OrgRole::Owner => Role::Owner,
            OrgRole::Member => Role::Editor,
        });
        AdminFacts {
            role,
            instance_admin: false,
        }
    }

    /// The actor in the admin area of a workspace, by their effective role on it.
    pub fn for_workspace(actor: &Actor, facts: &ChainFacts) -> AdminFacts {
        AdminFacts {
            role: effective_role(actor, ResourceKind::Workspace, facts),
            instance_admin: false,
        }
    }
}

/// The admin policy, one table: the least role for each admin action
/// (`None`: no role suffices; only instance admins manage the instance).
/// Viewers cannot enter the admin area, editors look but change nothing,
/// owners manage members, guest access, settings, extensions, webhooks and
/// the audit log.
pub fn admin_required_role(action: AdminAction) -> Option<Role> {
    match action {
        AdminAction::View => Some(Role::Editor),
        AdminAction::ManageMembers
        | AdminAction::ManageGuestAccess
        | AdminAction::ManageSettings
        | AdminAction::TransferOwnership
        | AdminAction::ReadAudit
        | AdminAction::ManageExtensions
        | AdminAction::ManageWebhooks => Some(Role::Owner),
        AdminAction::ManageInstance => None,
    }
}

/// May the actor described by `facts` do `action` in the admin area?
/// Outsiders are told it does not exist (404); insiders without the role are
/// refused (403); instance admins manage the instance whatever their role.
pub fn can_admin(action: AdminAction, facts: &AdminFacts) -> Decision {
    if action == AdminAction::ManageInstance && facts.instance_admin {
        return Decision::Allow(facts.role.unwrap_or(Role::Owner));
    }
    let Some(role) = facts.role else {
        return Decision::Deny(Denial::NotFound);
    };
    match admin_required_role(action) {
        Some(needed) if role >= needed => Decision::Allow(role),
        _ => Decision::Deny(Denial::Forbidden),
    }
}

/// Plan 003's matrix: owner and participants read and send (`CreateChild` =
/// post a message); the owner alone deletes, manages participants and share
/// links, and changes the settings (`Update`); participants rename, star and
/// archive when the owner allows it; a share-link reader only reads; anyone
/// else is told it does not exist.
fn conversation(action: Action, f: &ConversationFacts) -> Decision {
    let Some(relation) = f.relation else {
        return Decision::Deny(Denial::NotFound);
    };
    let participant = relation == Role::Editor;
    let allowed = match action {
        Action::Read => true,
        Action::CreateChild => relation >= Role::Editor,
        Action::Rename => relation == Role::Owner || (participant && f.participants_may.rename),
        Action::Star => relation == Role::Owner || (participant && f.participants_may.star),
        Action::Archive => relation == Role::Owner || (participant && f.participants_may.archive),
        Action::Update | Action::Delete | Action::ManageMembers => relation == Role::Owner,
        Action::Connect => false,
    };
    if allowed {
        Decision::Allow(relation)
    } else {
        Decision::Deny(Denial::Forbidden)
    }
}

#[cfg(test)]
mod tests;
