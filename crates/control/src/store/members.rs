//! Explicit grants on workspaces, projects, documents and diagrams.

use diesel::prelude::*;
use tandem_protocol::http::{Member, Page, Role};

use super::audit::{self, Entry};
use super::workspace_events::{self as feed, Change, Entity, Op};
use super::{admin, events, now_ms};
use crate::db::schema::{members, users};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::PageReq;

/// Adds a grant; a second grant for the same user and scope is a conflict.
pub fn insert(
    conn: &mut DbConnection,
    scope_kind: &str,
    scope_id: &str,
    user_id: &str,
    role: Role,
) -> Result<(), ApiError> {
    diesel::insert_into(members::table)
        .values((
            members::scope_id.eq(scope_id),
            members::user_id.eq(user_id),
            members::scope_kind.eq(scope_kind),
            members::role.eq(role.as_str()),
            members::created_at.eq(now_ms()),
        ))
        .execute(conn)
        .map_err(|e| ApiError::conflict_if_unique(e, "this user is already a member"))?;
    Ok(())
}

/// Writes a grant change to the feed of the workspace the scope is in.
/// Call inside the write transaction of the change.
pub fn announce(
    c: &mut DbConnection,
    op: Op,
    scope_kind: &str,
    scope_id: &str,
    user_id: &str,
    role: Option<Role>,
) -> Result<(), ApiError> {
    let Some((workspace_id, project_id)) = feed::scope_place(c, scope_kind, scope_id)? else {
        return Ok(());
    };
    let change = Change {
        entity: Entity::Member,
        op,
        id: user_id,
        project_id: project_id.as_deref(),
        data: serde_json::json!({
            "userId": user_id,
            "scopeKind": scope_kind,
            "scopeId": scope_id,
            "memberRole": role.map(|r| r.as_str()),
        }),
        audience: vec![],
    };
    feed::record(c, &workspace_id, change)
}

/// One page of the members of a scope with their user details, oldest grant first.
pub fn list(
    conn: &mut DbConnection,
    scope_id: &str,
    page: &PageReq,
) -> Result<Page<Member>, ApiError> {
    let rows = rows(conn, scope_id, Err(page))?;
    Ok(crate::page::page(
        rows,
        page,
        |m| (m.created_at, m.user_id.as_str()),
        |m| m,
    ))
}

/// The members of a scope: one (`Ok(user_id)`) or a page (`Err(page)`).
fn rows(
    conn: &mut DbConnection,
    scope_id: &str,
    only: Result<&str, &PageReq>,
) -> Result<Vec<Member>, ApiError> {
    let mut query = members::table
        .inner_join(users::table)
        .filter(members::scope_id.eq(scope_id))
        .into_boxed();
    match only {
        Ok(user_id) => query = query.filter(members::user_id.eq(user_id)),
        Err(page) => {
            query = query.limit(page.fetch());
            if let Some((at, id)) = &page.after {
                query = query.filter(
                    members::created_at.gt(*at).or(members::created_at
                        .eq(*at)
                        .and(members::user_id.gt(id.clone()))),
                );
            }
        }
    }
    let rows: Vec<(String, String, String, String, i64)> = query
        .order((members::created_at.asc(), members::user_id.asc()))
        .select((
            members::user_id,
            users::email,
            users::display_name,
            members::role,
            members::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(user_id, email, display_name, role, created_at)| {
            Some(Member {
                user_id,
                email,
                display_name,
                role: Role::parse(&role)?,
                created_at,
            })
        })
        .collect())
}

/// One member of a scope, with user details.
pub fn get(
    conn: &mut DbConnection,
    scope_id: &str,
    user_id: &str,
) -> Result<Option<Member>, ApiError> {
    Ok(rows(conn, scope_id, Ok(user_id))?.pop())
}

/// Appends the audit entry of a grant change to the log of the org the
/// scope is in (inside the change's transaction).
fn audit_grant(
    c: &mut DbConnection,
    by: &str,
    action: &str,
    scope_kind: &str,
    scope_id: &str,
    user_id: &str,
    (before, after): (Option<Role>, Option<Role>),
) -> Result<(), ApiError> {
    let Some((workspace_id, _)) = feed::scope_place(c, scope_kind, scope_id)? else {
        return Ok(());
    };
    let grant = |r: Role| serde_json::json!({ "userId": user_id, "role": r.as_str() });
    let entry = Entry {
        actor: by,
        action,
        target: format!("{scope_kind}:{scope_id}"),
        before: before.map(grant),
        after: after.map(grant),
    };
    audit::append_for_workspace(c, &workspace_id, &entry)?;
    Ok(())
}

/// Grants `role` to a user (a new member), recording an access change and
/// an audit entry by `by`. Someone from outside the workspace's org gets in
/// only as its guest access allows (403 `guest_access_denied`).
pub fn add(
    conn: &mut DbConnection,
    by: &str,
    scope_kind: &str,
    scope_id: &str,
    user_id: &str,
    role: Role,
) -> Result<Member, ApiError> {
    write_tx(conn, |c| {
        // The workspace row first (as every writer of its feed), then the grant.
        announce(c, Op::Created, scope_kind, scope_id, user_id, Some(role))?;
        admin::check_guest(c, scope_kind, scope_id, user_id, role)?;
        insert(c, scope_kind, scope_id, user_id, role)?;
        events::record(c, None, Some(user_id))?;
        audit_grant(
            c,
            by,
            "member.add",
            scope_kind,
            scope_id,
            user_id,
            (None, Some(role)),
        )?;
        Ok::<_, ApiError>(())
    })?;
    get(conn, scope_id, user_id)?.ok_or(ApiError::NotFound("member"))
}

/// Changes a member's role; `NotFound` when they are not a member. A
/// downgrade may revoke access (editor → viewer is read-only), so it is
/// recorded as an access change.
pub fn set_role(
    conn: &mut DbConnection,
    by: &str,
    scope_id: &str,
    user_id: &str,
    role: Role,
) -> Result<Member, ApiError> {
    write_tx(conn, |c| {
        let kind = scope_kind_of(c, scope_id, user_id)?;
        announce(c, Op::Updated, &kind, scope_id, user_id, Some(role))?;
        let before = role_of(c, scope_id, user_id)?.ok_or(ApiError::NotFound("member"))?;
        if role > before {
            admin::check_guest(c, &kind, scope_id, user_id, role)?;
        }
        diesel::update(members::table.find((scope_id, user_id)))
            .set(members::role.eq(role.as_str()))
            .execute(c)?;
        events::record(c, None, Some(user_id))?;
        audit_grant(
            c,
            by,
            "member.role",
            &kind,
            scope_id,
            user_id,
            (Some(before), Some(role)),
        )?;
        Ok::<_, ApiError>(())
    })?;
    get(conn, scope_id, user_id)?.ok_or(ApiError::NotFound("member"))
}

/// Removes a member; `NotFound` when they were not one.
pub fn remove(
    conn: &mut DbConnection,
    by: &str,
    scope_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        let kind = scope_kind_of(c, scope_id, user_id)?;
        announce(c, Op::Deleted, &kind, scope_id, user_id, None)?;
        let before = role_of(c, scope_id, user_id)?.ok_or(ApiError::NotFound("member"))?;
        diesel::delete(members::table.find((scope_id, user_id))).execute(c)?;
        events::record(c, None, Some(user_id))?;
        audit_grant(
            c,
            by,
            "member.remove",
            &kind,
            scope_id,
            user_id,
            (Some(before), None),
        )?;
        Ok(())
    })
}

/// The role of a grant, if there is one.
fn role_of(c: &mut DbConnection, scope_id: &str, user_id: &str) -> Result<Option<Role>, ApiError> {
    Ok(members::table
        .find((scope_id, user_id))
        .select(members::role)
        .first::<String>(c)
        .optional()?
        .and_then(|r| Role::parse(&r)))
}

/// The kind of scope a grant is on (`workspace`, `project`, `doc`, `diagram`).
fn scope_kind_of(c: &mut DbConnection, scope_id: &str, user_id: &str) -> Result<String, ApiError> {
    Ok(members::table
        .find((scope_id, user_id))
        .select(members::scope_kind)
        .first::<String>(c)
        .optional()?
        .unwrap_or_else(|| "workspace".into()))
}
