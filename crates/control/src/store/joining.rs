//! Where a verified user lands by their email domain, and what an org's
//! owners control about it: the join policy (`auto | approval | off`) and the
//! join requests it creates.
//!
//! Every user starts in a solo org (`personal-{userId}`) with their personal
//! workspace. Once their address is verified, [`place_verified`] applies the
//! domain's rules: free-mail and disposable domains stay solo; a domain
//! without an org gets one, with this user as owner and a team workspace;
//! an existing org takes them in by its policy. Moving into an org carries the
//! personal workspace along and drops the solo org.

use diesel::prelude::*;
use tandem_protocol::http::{OrgRole, Role, WorkspaceType};
use tandem_protocol::identity::{JoinPolicy, JoinRequest, OrgDetails};

use super::accounts::{insert_workspace, org_name_from_domain, retrying, user_by_id, TxError};
use super::{now_ms, OrgRow, UserRow};
use crate::auth::domains;
use crate::crypto;
use crate::db::schema::{org_join_requests, orgs, users, workspaces};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::page::{cut, PageReq, Paged};

/// What [`place_verified`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A free-mail or disposable domain: the user keeps their solo org.
    Personal,
    /// The first verified user of the domain: a new org, owned by them.
    Founded,
    /// Joined the domain's org as a member (`auto`).
    Joined,
    /// A join request waits for an owner (`approval`).
    Requested,
    /// The org takes nobody in by domain (`off`).
    Closed,
    /// Already in the domain's org.
    AlreadyIn,
}

/// Places a verified user (still in their solo org) by their email domain.
/// Runs inside the caller's write transaction; a lost race on `orgs.domain`
/// surfaces as a unique violation for [`retrying`] to try again.
pub fn place_verified(c: &mut DbConnection, user: &UserRow) -> Result<Placement, TxError> {
    let domain = domains::of_email(&user.email);
    if domain.is_empty() || domains::is_personal(domain) {
        return Ok(Placement::Personal);
    }
    let existing: Option<OrgRow> = orgs::table
        .filter(orgs::domain.eq(domain))
        .select(OrgRow::as_select())
        .first(c)
        .optional()?;
    let placement = match existing {
        None => {
            let now = now_ms();
            let org = OrgRow {
                id: crypto::new_id(),
                name: org_name_from_domain(domain),
                domain: domain.to_string(),
                owner_id: Some(user.id.clone()),
                created_at: now,
                join_policy: JoinPolicy::Auto.as_str().to_string(),
            };
            diesel::insert_into(orgs::table).values(&org).execute(c)?;
            let team = format!("{} Team", org.name);
            insert_workspace(c, &org.id, WorkspaceType::Team, None, &team, now)?;
            move_into(c, user, &org.id, OrgRole::Owner)?;
            Placement::Founded
        }
        Some(org) if org.id == user.org_id => Placement::AlreadyIn,
        Some(org) => match org.join_policy() {
            JoinPolicy::Auto => {
                move_into(c, user, &org.id, OrgRole::Member)?;
                announce_org_membership(
                    c,
                    super::workspace_events::Op::Created,
                    &user.id,
                    &org.id,
                    &[],
                )?;
                Placement::Joined
            }
            JoinPolicy::Approval => {
                let pending: i64 = org_join_requests::table
                    .find((&org.id, &user.id))
                    .count()
                    .get_result(c)?;
                if pending == 0 {
                    diesel::insert_into(org_join_requests::table)
                        .values((
                            org_join_requests::org_id.eq(&org.id),
                            org_join_requests::user_id.eq(&user.id),
                            org_join_requests::created_at.eq(now_ms()),
                        ))
                        .execute(c)?;
                }
                Placement::Requested
            }
            JoinPolicy::Off => Placement::Closed,
        },
    };
    tracing::info!(user_id = %user.id, ?placement, "verified user placed by domain");
    Ok(placement)
}

/// Moves `user` out of their solo org into `org_id` with `role`, with their
/// personal workspace; the solo org goes, and so do their join requests.
fn move_into(
    c: &mut DbConnection,
    user: &UserRow,
    org_id: &str,
    role: OrgRole,
) -> Result<(), diesel::result::Error> {
    diesel::update(users::table.find(&user.id))
        .set((users::org_id.eq(org_id), users::org_role.eq(role.as_str())))
        .execute(c)?;
    diesel::update(
        workspaces::table
            .filter(workspaces::owner_id.eq(&user.id))
            .filter(workspaces::kind.eq(WorkspaceType::Personal.as_str())),
    )
    .set(workspaces::org_id.eq(org_id))
    .execute(c)?;
    diesel::delete(
        orgs::table
            .find(&user.org_id)
            .filter(orgs::domain.eq(format!("personal-{}", user.id))),
    )
    .execute(c)?;
    diesel::delete(org_join_requests::table.filter(org_join_requests::user_id.eq(&user.id)))
        .execute(c)?;
    Ok(())
}

/// Announces that a user joined or left the org's membership, as a grant
/// is announced: `member.added` (`op` Created: the workspace feed's
/// `member.created`, and the org's webhooks) or `member.removed` (Deleted)
/// in each team workspace of the org, where a member is an editor, except
/// those in `skip` (already announced by the caller). Call in the
/// transaction that moved them.
pub(super) fn announce_org_membership(
    c: &mut DbConnection,
    op: super::workspace_events::Op,
    user_id: &str,
    org_id: &str,
    skip: &[String],
) -> Result<(), ApiError> {
    let teams: Vec<String> = workspaces::table
        .filter(workspaces::org_id.eq(org_id))
        .filter(workspaces::kind.eq(WorkspaceType::Team.as_str()))
        .select(workspaces::id)
        .load(c)?;
    let role = (op == super::workspace_events::Op::Created).then_some(Role::Editor);
    for team in teams.iter().filter(|t| !skip.contains(t)) {
        super::members::announce(c, op, "workspace", team, user_id, role)?;
    }
    Ok(())
}

/// Marks the user's address verified (if it is not yet) and places them by
/// domain, in one transaction; returns the user as they are now.
pub fn mark_verified(conn: &mut DbConnection, user_id: &str) -> Result<UserRow, ApiError> {
    retrying(conn, |c| {
        verify_in_tx(c, user_id)?;
        Ok(user_by_id(c, user_id)?.ok_or(ApiError::NotFound("user"))?)
    })
}

/// [`mark_verified`] inside the caller's transaction.
pub fn verify_in_tx(c: &mut DbConnection, user_id: &str) -> Result<(), TxError> {
    let Some(user) = user_by_id(c, user_id)? else {
        return Err(ApiError::NotFound("user").into());
    };
    if user.email_verified() {
        return Ok(());
    }
    diesel::update(users::table.find(user_id))
        .set(users::email_verified_at.eq(Some(now_ms())))
        .execute(c)?;
    place_verified(c, &user)?;
    Ok(())
}

impl OrgRow {
    pub fn details(&self) -> OrgDetails {
        OrgDetails {
            id: self.id.clone(),
            name: self.name.clone(),
            domain: self.domain.clone(),
            personal: self.is_personal(),
            join_policy: self.join_policy(),
        }
    }
}

/// Pending join requests of an org, oldest first.
pub fn join_requests(
    conn: &mut DbConnection,
    org_id: &str,
    page: &PageReq,
) -> Result<Paged<JoinRequest>, ApiError> {
    let mut query = org_join_requests::table
        .inner_join(users::table)
        .filter(org_join_requests::org_id.eq(org_id))
        .order((org_join_requests::created_at.asc(), users::id.asc()))
        .select((
            users::id,
            users::email,
            users::display_name,
            org_join_requests::created_at,
        ))
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            org_join_requests::created_at
                .gt(*at)
                .or(org_join_requests::created_at
                    .eq(*at)
                    .and(users::id.gt(id.clone()))),
        );
    }
    let rows: Vec<(String, String, String, i64)> = query.load(conn)?;
    let requests = rows
        .into_iter()
        .map(|(user_id, email, display_name, created_at)| JoinRequest {
            user_id,
            email,
            display_name,
            created_at,
        })
        .collect();
    Ok(cut(requests, page, |r: &JoinRequest| {
        (r.created_at, r.user_id.as_str())
    }))
}

/// Accepts (`true`) or refuses a pending join request; exactly one decision
/// on a request wins. Accepting moves the user in as a member.
pub fn decide(
    conn: &mut DbConnection,
    by: &str,
    org_id: &str,
    user_id: &str,
    accept: bool,
) -> Result<(), ApiError> {
    retrying(conn, |c| {
        let removed =
            diesel::delete(org_join_requests::table.find((org_id, user_id))).execute(c)?;
        if removed == 0 {
            return Err(ApiError::NotFound("join request").into());
        }
        if accept {
            let user = user_by_id(c, user_id)?.ok_or(ApiError::NotFound("join request"))?;
            move_into(c, &user, org_id, OrgRole::Member)?;
            announce_org_membership(
                c,
                super::workspace_events::Op::Created,
                user_id,
                org_id,
                &[],
            )?;
        }
        let action = if accept {
            "join_request.accept"
        } else {
            "join_request.refuse"
        };
        let entry = super::audit::Entry::new(by, action, format!("user:{user_id}"));
        super::audit::append(c, org_id, &entry)?;
        tracing::info!(org_id, user_id, accept, "join request decided");
        Ok(())
    })
}
