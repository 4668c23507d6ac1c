//! Workspace invites (plan 004 §4.3): a secret token (stored hashed) that
//! expires after 7 days; accepting adds the invitee as a member with the
//! invited role, exactly once. The invite email is written to the outbox in
//! the same transaction as the invite.

use diesel::prelude::*;
use serde_json::json;
use tandem_protocol::chat::{AcceptedInvite, Invite};
use tandem_protocol::http::Role;

use super::audit::{self, Entry};
use super::{events, members, now_ms, outbox, UserRow};
use crate::crypto;
use crate::db::schema::{members as members_t, workspace_invites};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{cut, PageReq};

pub const TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspace_invites)]
pub struct InviteRow {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub role: String,
    pub token_hash: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl InviteRow {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }

    pub fn status(&self, now: i64) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }

    pub fn to_dto(&self, token: Option<String>) -> Invite {
        Invite {
            id: self.id.clone(),
            workspace_id: self.workspace_id.clone(),
            email: self.email.clone(),
            role: self.role(),
            invited_by: self.invited_by.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            revoked_at: self.revoked_at,
            status: self.status(now_ms()).to_string(),
            token,
        }
    }
}

/// What the invite email says.
pub struct Letter<'a> {
    pub workspace_name: &'a str,
    pub inviter: &'a UserRow,
    pub public_url: &'a str,
}

/// Creates an invite and queues its email; returns the row and the token
/// (shown once).
pub fn create(
    conn: &mut DbConnection,
    workspace_id: &str,
    email: &str,
    role: Role,
    letter: &Letter<'_>,
) -> Result<(InviteRow, String), ApiError> {
    let token = crypto::new_token();
    let now = now_ms();
    let row = InviteRow {
        id: crypto::new_id(),
        workspace_id: workspace_id.to_string(),
        email: email.to_string(),
        role: role.as_str().to_string(),
        token_hash: crypto::hash_token(&token),
        invited_by: letter.inviter.id.clone(),
        created_at: now,
        expires_at: now + TTL_MS,
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
    };
    let subject = format!("Join {} on Tandem", letter.workspace_name);
    let body = format!(
        "{} ({}) invited you to join {} as {}.\n\nAccept the invitation: {}/invites/accept?token={}\n\nThe link expires in 7 days.\n",
        letter.inviter.display_name,
        letter.inviter.email,
        letter.workspace_name,
        role.as_str(),
        letter.public_url.trim_end_matches('/'),
        token
    );
    write_tx(conn, |c| {
        // An invite to someone the guest access would not let in fails now
        // (for addresses of no user yet, it is checked on accepting).
        if let Some(u) = super::accounts::user_by_email(c, email)? {
            super::admin::check_guest_in(c, workspace_id, &u.id, role)?;
        }
        diesel::insert_into(workspace_invites::table)
            .values(&row)
            .execute(c)?;
        outbox::enqueue(c, "invite", email, &subject, &body)?;
        let entry = Entry::new(
            &letter.inviter.id,
            "invite.create",
            format!("invite:{}", row.id),
        )
        .after(json!({ "workspaceId": workspace_id, "email": email, "role": role.as_str() }));
        audit::append_for_workspace(c, workspace_id, &entry)?;
        Ok::<_, ApiError>(())
    })?;
    Ok((row, token))
}

/// One page of a workspace's invites, newest first, and the next cursor.
pub fn list(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &PageReq,
) -> Result<(Vec<InviteRow>, Option<String>), ApiError> {
    let mut query = workspace_invites::table
        .filter(workspace_invites::workspace_id.eq(workspace_id))
        .order((
            workspace_invites::created_at.desc(),
            workspace_invites::id.asc(),
        ))
        .select(InviteRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            workspace_invites::created_at
                .lt(*at)
                .or(workspace_invites::created_at
                    .eq(*at)
                    .and(workspace_invites::id.gt(id.clone()))),
        );
    }
    Ok(cut(query.load(conn)?, page, |r: &InviteRow| {
        (r.created_at, r.id.as_str())
    }))
}

/// Revokes a pending invite of the workspace.
pub fn revoke(
    conn: &mut DbConnection,
    by: &str,
    workspace_id: &str,
    id: &str,
) -> Result<InviteRow, ApiError> {
    write_tx(conn, |c| {
        let row: InviteRow = workspace_invites::table
            .find(id)
            .filter(workspace_invites::workspace_id.eq(workspace_id))
            .select(InviteRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("invite"))?;
        if row.accepted_at.is_some() {
            return Err(ApiError::Conflict("the invite was already accepted".into()));
        }
        let revoked_at = Some(now_ms());
        diesel::update(workspace_invites::table.find(id))
            .set(workspace_invites::revoked_at.eq(revoked_at))
            .execute(c)?;
        let entry = Entry::new(by, "invite.revoke", format!("invite:{id}"))
            .before(json!({ "email": row.email, "role": row.role, "status": "pending" }))
            .after(json!({ "status": "revoked" }));
        audit::append_for_workspace(c, workspace_id, &entry)?;
        Ok(InviteRow { revoked_at, ..row })
    })
}

/// Accepts an invite for `user`: exactly one accept of a token succeeds
/// (a conditional update claims it), and adds the membership in the same
/// transaction; an existing higher grant is kept.
pub fn accept(
    conn: &mut DbConnection,
    token: &str,
    user: &UserRow,
) -> Result<AcceptedInvite, ApiError> {
    let hash = crypto::hash_token(token);
    write_tx(conn, |c| {
        let row: InviteRow = workspace_invites::table
            .filter(workspace_invites::token_hash.eq(&hash))
            .select(InviteRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("invite"))?;
        let now = now_ms();
        match row.status(now) {
            "accepted" => return Err(ApiError::Conflict("the invite was already accepted".into())),
            "revoked" => return Err(ApiError::Gone("the invite was revoked".into())),
            "expired" => return Err(ApiError::Gone("the invite has expired".into())),
            _ => {}
        }
        if !row.email.eq_ignore_ascii_case(&user.email) {
            return Err(ApiError::Forbidden);
        }
        let claimed = diesel::update(
            workspace_invites::table
                .find(&row.id)
                .filter(workspace_invites::accepted_at.is_null())
                .filter(workspace_invites::revoked_at.is_null()),
        )
        .set((
            workspace_invites::accepted_at.eq(Some(now)),
            workspace_invites::accepted_by.eq(Some(&user.id)),
        ))
        .execute(c)?;
        if claimed == 0 {
            return Err(ApiError::Conflict("the invite was already accepted".into()));
        }
        // A guest gets at most what the workspace's guest access allows.
        let invited = match super::admin::role_limit(c, &row.workspace_id, &user.id)? {
            Some(max) => row.role().min(max),
            None => {
                return Err(ApiError::GuestAccessDenied(
                    "this workspace no longer lets people from outside its organization in".into(),
                ))
            }
        };
        let existing: Option<String> = members_t::table
            .find((&row.workspace_id, &user.id))
            .select(members_t::role)
            .first(c)
            .optional()?;
        let role = match existing.as_deref().and_then(Role::parse) {
            Some(have) if have >= invited => have,
            Some(_) => {
                diesel::update(members_t::table.find((&row.workspace_id, &user.id)))
                    .set(members_t::role.eq(invited.as_str()))
                    .execute(c)?;
                invited
            }
            None => {
                members::insert(c, "workspace", &row.workspace_id, &user.id, invited)?;
                invited
            }
        };
        events::record(c, None, Some(&user.id))?;
        let op = if existing.is_some() {
            super::workspace_events::Op::Updated
        } else {
            super::workspace_events::Op::Created
        };
        members::announce(c, op, "workspace", &row.workspace_id, &user.id, Some(role))?;
        let entry = Entry::new(&user.id, "invite.accept", format!("invite:{}", row.id))
            .before(json!({ "role": existing }))
            .after(json!({
                "workspaceId": row.workspace_id,
                "userId": user.id,
                "role": role.as_str(),
            }));
        audit::append_for_workspace(c, &row.workspace_id, &entry)?;
        Ok(AcceptedInvite {
            workspace_id: row.workspace_id.clone(),
            role,
        })
    })
}
