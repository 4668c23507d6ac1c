//! What an org's owners manage: the org's name and join policy, its
//! members and ownership, and each workspace's name and guest access. Every
//! change appends to the org's audit log in its own transaction.
//!
//! A *guest* of a workspace is a user whose org is not the workspace's org.
//! Guest access `off` lets no guest in, `view` lets guests in as viewers at
//! most (share links: read, not join), `edit` (the default) as anyone.
//! Lowering it clamps what guests hold at once: `off` removes their grants
//! in the workspace (on it, its projects and their documents and diagrams)
//! and their conversation participations there; `view` lowers their grants
//! to `viewer` and removes their participations (taking part in a chat is
//! writing to it). Each clamped grant goes through the access feed, so live
//! connections lose what they no longer have.

use diesel::prelude::*;
use serde_json::json;
use tandem_protocol::admin::{GuestAccess, OrgMember, WorkspaceSettings};
use tandem_protocol::http::{OrgRole, Role, WorkspaceType};
use tandem_protocol::identity::JoinPolicy;

use super::audit::{self, Entry};
use super::members::announce;
use super::workspace_events::Op;
use super::{events, now_ms, OrgRow, UserRow, WorkspaceRow};
use crate::crypto;
use crate::db::schema::{
    conversation_participants, conversations, members, orgs, projects, resources, users, workspaces,
};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{PageReq, Paged};

/// The guest access of a workspace (`edit` when unreadable or gone).
pub fn guest_access(c: &mut DbConnection, workspace_id: &str) -> Result<GuestAccess, ApiError> {
    let raw: Option<String> = workspaces::table
        .find(workspace_id)
        .select(workspaces::guest_access)
        .first(c)
        .optional()?;
    Ok(raw
        .as_deref()
        .and_then(GuestAccess::parse)
        .unwrap_or(GuestAccess::Edit))
}

/// Whether `user_id` is a guest of the workspace, and its guest access.
fn guest_of(
    c: &mut DbConnection,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<GuestAccess>, ApiError> {
    let ws: Option<(String, String)> = workspaces::table
        .find(workspace_id)
        .select((workspaces::org_id, workspaces::guest_access))
        .first(c)
        .optional()?;
    let Some((org_id, access)) = ws else {
        return Ok(None);
    };
    let user_org: Option<String> = users::table
        .find(user_id)
        .select(users::org_id)
        .first(c)
        .optional()?;
    Ok((user_org.as_deref() != Some(org_id.as_str()))
        .then(|| GuestAccess::parse(&access).unwrap_or(GuestAccess::Edit)))
}

/// The highest role `user_id` may hold in the workspace: `Some(Owner)` for
/// insiders, the guest access's limit for guests (`None`: not at all).
pub fn role_limit(
    c: &mut DbConnection,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Role>, ApiError> {
    Ok(match guest_of(c, workspace_id, user_id)? {
        None => Some(Role::Owner),
        Some(access) => access.max_role(),
    })
}

/// Refuses a grant of `role` on a scope to a guest the workspace's guest
/// access does not let in with that role (403 `guest_access_denied`).
pub fn check_guest(
    c: &mut DbConnection,
    scope_kind: &str,
    scope_id: &str,
    user_id: &str,
    role: Role,
) -> Result<(), ApiError> {
    let Some((workspace_id, _)) = super::workspace_events::scope_place(c, scope_kind, scope_id)?
    else {
        return Ok(());
    };
    check_guest_in(c, &workspace_id, user_id, role)
}

/// [`check_guest`] by workspace.
pub fn check_guest_in(
    c: &mut DbConnection,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> Result<(), ApiError> {
    match role_limit(c, workspace_id, user_id)? {
        Some(max) if role <= max => Ok(()),
        Some(max) => Err(ApiError::GuestAccessDenied(format!(
            "people from outside this workspace's organization may be at most {} here",
            max.as_str()
        ))),
        None => Err(ApiError::GuestAccessDenied(
            "this workspace lets nobody from outside its organization in".into(),
        )),
    }
}

/// The workspace a conversation lives in.
pub fn workspace_of_conversation(
    c: &mut DbConnection,
    conversation_id: &str,
) -> Result<Option<String>, ApiError> {
    Ok(conversations::table
        .inner_join(projects::table)
        .filter(conversations::id.eq(conversation_id))
        .select(projects::workspace_id)
        .first(c)
        .optional()?)
}

/// Renames the org and/or sets its join policy, with an audit entry.
pub fn update_org(
    conn: &mut DbConnection,
    by: &str,
    org: &OrgRow,
    name: Option<String>,
    policy: Option<JoinPolicy>,
) -> Result<OrgRow, ApiError> {
    if policy.is_some() && org.is_personal() {
        return Err(ApiError::validation(
            "a personal organization has no email domain, so no join policy",
        ));
    }
    if name.is_none() && policy.is_none() {
        return Ok(org.clone());
    }
    write_tx(conn, |c| {
        let current: OrgRow = orgs::table
            .find(&org.id)
            .select(OrgRow::as_select())
            .first(c)?;
        let mut next = current.clone();
        if let Some(n) = &name {
            next.name = n.clone();
        }
        if let Some(p) = policy {
            next.join_policy = p.as_str().to_string();
        }
        diesel::update(orgs::table.find(&org.id))
            .set((
                orgs::name.eq(&next.name),
                orgs::join_policy.eq(&next.join_policy),
            ))
            .execute(c)?;
        let view = |o: &OrgRow| json!({ "name": o.name, "joinPolicy": o.join_policy });
        let entry = Entry::new(by, "org.update", format!("org:{}", org.id))
            .before(view(&current))
            .after(view(&next));
        audit::append(c, &org.id, &entry)?;
        super::webhooks::emit(c, &org.id, "org.updated", json!(next.details()))?;
        Ok(next)
    })
}

/// Hands the org to `new_owner` (a member of it); the old owner becomes a
/// member.
pub fn transfer(
    conn: &mut DbConnection,
    by: &UserRow,
    org: &OrgRow,
    new_owner: &str,
) -> Result<OrgRow, ApiError> {
    write_tx(conn, |c| {
        let target: Option<UserRow> = users::table
            .find(new_owner)
            .select(UserRow::as_select())
            .first(c)
            .optional()?;
        let Some(target) = target.filter(|u| u.org_id == org.id) else {
            return Err(ApiError::validation(
                "userId does not name a member of this org",
            ));
        };
        if target.org_role() == OrgRole::Owner {
            return Err(ApiError::Conflict(
                "this member already owns the org".into(),
            ));
        }
        let owners: Vec<String> = users::table
            .filter(users::org_id.eq(&org.id))
            .filter(users::org_role.eq(OrgRole::Owner.as_str()))
            .select(users::id)
            .load(c)?;
        diesel::update(users::table.filter(users::id.eq_any(&owners)))
            .set(users::org_role.eq(OrgRole::Member.as_str()))
            .execute(c)?;
        diesel::update(users::table.find(&target.id))
            .set(users::org_role.eq(OrgRole::Owner.as_str()))
            .execute(c)?;
        diesel::update(orgs::table.find(&org.id))
            .set(orgs::owner_id.eq(Some(&target.id)))
            .execute(c)?;
        // The old owner's team-workspace role drops from owner to editor.
        for id in &owners {
            events::record(c, None, Some(id))?;
        }
        let entry = Entry::new(&by.id, "org.transfer", format!("org:{}", org.id))
            .before(json!({ "ownerId": org.owner_id, "owners": owners }))
            .after(json!({ "ownerId": target.id }));
        audit::append(c, &org.id, &entry)?;
        Ok(OrgRow {
            owner_id: Some(target.id.clone()),
            ..org.clone()
        })
    })
}

/// One page of an org's members, oldest first.
pub fn org_members(
    conn: &mut DbConnection,
    org_id: &str,
    page: &PageReq,
) -> Result<Paged<OrgMember>, ApiError> {
    let mut q = users::table
        .filter(users::org_id.eq(org_id))
        .order((users::created_at.asc(), users::id.asc()))
        .select(UserRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        q = q.filter(
            users::created_at
                .gt(*at)
                .or(users::created_at.eq(*at).and(users::id.gt(id.clone()))),
        );
    }
    let rows: Vec<UserRow> = q.load(conn)?;
    let (rows, next) = crate::page::cut(rows, page, |u: &UserRow| (u.created_at, u.id.as_str()));
    let items = rows
        .into_iter()
        .map(|u| OrgMember {
            org_role: u.org_role(),
            user_id: u.id,
            email: u.email,
            display_name: u.display_name,
            created_at: u.created_at,
        })
        .collect();
    Ok((items, next))
}

/// The ids of every scope of a workspace: it, its projects, their resources.
fn scopes_of(c: &mut DbConnection, workspace_ids: &[String]) -> Result<Vec<String>, ApiError> {
    let project_ids: Vec<String> = projects::table
        .filter(projects::workspace_id.eq_any(workspace_ids))
        .select(projects::id)
        .load(c)?;
    let resource_ids: Vec<String> = resources::table
        .filter(resources::project_id.eq_any(&project_ids))
        .select(resources::id)
        .load(c)?;
    let mut all = workspace_ids.to_vec();
    all.extend(project_ids);
    all.extend(resource_ids);
    Ok(all)
}

/// Ends `user_id`'s grants on `scopes` (each announced to the workspace's
/// feed) and their participations in conversations of those workspaces;
/// returns how many grants ended.
fn end_grants(
    c: &mut DbConnection,
    workspace_ids: &[String],
    scopes: &[String],
    user_id: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let grants: Vec<(String, String)> = members::table
        .filter(members::user_id.eq(user_id))
        .filter(members::scope_id.eq_any(scopes))
        .select((members::scope_id, members::scope_kind))
        .load(c)?;
    for (scope_id, kind) in &grants {
        announce(c, Op::Deleted, kind, scope_id, user_id, None)?;
    }
    diesel::delete(
        members::table
            .filter(members::user_id.eq(user_id))
            .filter(members::scope_id.eq_any(scopes)),
    )
    .execute(c)?;
    let convos = conversations::table
        .inner_join(projects::table)
        .filter(projects::workspace_id.eq_any(workspace_ids))
        .select(conversations::id);
    let convo_ids: Vec<String> = convos.load(c)?;
    diesel::delete(
        conversation_participants::table
            .filter(conversation_participants::user_id.eq(user_id))
            .filter(conversation_participants::conversation_id.eq_any(&convo_ids)),
    )
    .execute(c)?;
    Ok(grants)
}

/// Removes a member from the org: every grant they hold in its workspaces,
/// projects and resources ends (through the access feed, which kicks their
/// live connections), and they move to a solo org of their own with their
/// personal workspace. The owner cannot be removed (transfer first).
pub fn remove_org_member(
    conn: &mut DbConnection,
    by: &str,
    org: &OrgRow,
    user_id: &str,
) -> Result<(), ApiError> {
    if org.is_personal() {
        return Err(ApiError::NotFound("member"));
    }
    write_tx(conn, |c| {
        let user: Option<UserRow> = users::table
            .find(user_id)
            .select(UserRow::as_select())
            .first(c)
            .optional()?;
        let Some(user) = user.filter(|u| u.org_id == org.id) else {
            return Err(ApiError::NotFound("member"));
        };
        if user.org_role() == OrgRole::Owner {
            return Err(ApiError::Conflict(
                "the owner cannot be removed; transfer the ownership first".into(),
            ));
        }
        let personal = |c: &mut DbConnection| -> Result<Vec<String>, ApiError> {
            Ok(workspaces::table
                .filter(workspaces::owner_id.eq(&user.id))
                .filter(workspaces::kind.eq(WorkspaceType::Personal.as_str()))
                .select(workspaces::id)
                .load(c)?)
        };
        let own = personal(c)?;
        let org_workspaces: Vec<String> = workspaces::table
            .filter(workspaces::org_id.eq(&org.id))
            .filter(workspaces::id.ne_all(&own))
            .select(workspaces::id)
            .load(c)?;
        let scopes = scopes_of(c, &org_workspaces)?;
        let ended = end_grants(c, &org_workspaces, &scopes, &user.id)?;
        // Membership itself made them an editor of each team workspace:
        // that ends too (`member.removed`), where no grant said it already.
        let announced: Vec<String> = ended
            .iter()
            .filter(|(_, kind)| kind == "workspace")
            .map(|(id, _)| id.clone())
            .collect();
        super::joining::announce_org_membership(c, Op::Deleted, &user.id, &org.id, &announced)?;
        let now = now_ms();
        let solo = OrgRow {
            id: crypto::new_id(),
            name: user.display_name.clone(),
            domain: format!("personal-{}", user.id),
            owner_id: None,
            created_at: now,
            join_policy: JoinPolicy::Off.as_str().to_string(),
        };
        diesel::insert_into(orgs::table).values(&solo).execute(c)?;
        diesel::update(users::table.find(&user.id))
            .set((
                users::org_id.eq(&solo.id),
                users::org_role.eq(OrgRole::Owner.as_str()),
            ))
            .execute(c)?;
        diesel::update(workspaces::table.filter(workspaces::id.eq_any(&own)))
            .set(workspaces::org_id.eq(&solo.id))
            .execute(c)?;
        events::record(c, None, Some(&user.id))?;
        let entry = Entry::new(by, "org.member.remove", format!("user:{}", user.id))
            .before(json!({ "orgRole": user.org_role, "email": user.email }))
            .after(json!({ "endedGrants": ended.len() }));
        audit::append(c, &org.id, &entry)?;
        Ok(())
    })
}

/// Renames a workspace and/or sets its guest access; lowering the guest
/// access clamps what guests hold (see the module's documentation).
pub fn update_workspace(
    conn: &mut DbConnection,
    by: &str,
    ws: &WorkspaceRow,
    name: Option<String>,
    access: Option<GuestAccess>,
) -> Result<WorkspaceSettings, ApiError> {
    write_tx(conn, |c| {
        let before_access = guest_access(c, &ws.id)?;
        let current_name: String = workspaces::table
            .find(&ws.id)
            .select(workspaces::name)
            .first(c)?;
        let next_name = name.clone().unwrap_or_else(|| current_name.clone());
        let next_access = access.unwrap_or(before_access);
        diesel::update(workspaces::table.find(&ws.id))
            .set((
                workspaces::name.eq(&next_name),
                workspaces::guest_access.eq(next_access.as_str()),
            ))
            .execute(c)?;
        let clamped = if next_access < before_access {
            clamp_guests(c, ws, next_access)?
        } else {
            0
        };
        let entry = Entry::new(by, "workspace.update", format!("workspace:{}", ws.id))
            .before(json!({ "name": current_name, "guestAccess": before_access.as_str() }))
            .after(json!({
                "name": next_name,
                "guestAccess": next_access.as_str(),
                "clampedGrants": clamped,
            }));
        audit::append(c, &ws.org_id, &entry)?;
        Ok(WorkspaceSettings {
            id: ws.id.clone(),
            org_id: ws.org_id.clone(),
            name: next_name,
            kind: ws.kind(),
            guest_access: next_access,
            clamped_grants: clamped,
        })
    })
}

/// Applies a lowered guest access to the guests of `ws`; returns how many
/// grants and participations changed.
fn clamp_guests(
    c: &mut DbConnection,
    ws: &WorkspaceRow,
    access: GuestAccess,
) -> Result<i64, ApiError> {
    let ws_ids = vec![ws.id.clone()];
    let scopes = scopes_of(c, &ws_ids)?;
    let outsiders = users::table
        .filter(users::org_id.ne(&ws.org_id))
        .select(users::id);
    let guest_grants: Vec<(String, String, String, String)> = members::table
        .filter(members::scope_id.eq_any(&scopes))
        .filter(members::user_id.eq_any(outsiders))
        .select((
            members::scope_id,
            members::scope_kind,
            members::user_id,
            members::role,
        ))
        .load(c)?;
    let mut changed = 0;
    for (scope_id, kind, user_id, role) in guest_grants {
        match access.max_role() {
            None => {
                announce(c, Op::Deleted, &kind, &scope_id, &user_id, None)?;
                diesel::delete(members::table.find((&scope_id, &user_id))).execute(c)?;
            }
            Some(max) if Role::parse(&role).is_some_and(|r| r > max) => {
                announce(c, Op::Updated, &kind, &scope_id, &user_id, Some(max))?;
                diesel::update(members::table.find((&scope_id, &user_id)))
                    .set(members::role.eq(max.as_str()))
                    .execute(c)?;
            }
            Some(_) => continue,
        }
        events::record(c, None, Some(&user_id))?;
        changed += 1;
    }
    if access < GuestAccess::Edit {
        let convo_ids: Vec<String> = conversations::table
            .inner_join(projects::table)
            .filter(projects::workspace_id.eq(&ws.id))
            .select(conversations::id)
            .load(c)?;
        let outsiders = users::table
            .filter(users::org_id.ne(&ws.org_id))
            .select(users::id);
        let removed = diesel::delete(
            conversation_participants::table
                .filter(conversation_participants::conversation_id.eq_any(&convo_ids))
                .filter(conversation_participants::user_id.eq_any(outsiders)),
        )
        .execute(c)?;
        changed += removed as i64;
    }
    Ok(changed)
}
