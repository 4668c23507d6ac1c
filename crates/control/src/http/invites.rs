//! Workspace invites: `GET/POST /workspaces/{id}/invites`,
//! `DELETE /workspaces/{id}/invites/{inviteId}` (workspace owners), and
//! `POST /invites/accept` `{token}` (the invitee, signed in with the invited
//! email).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tandem_protocol::chat::{AcceptedInvite, CreateInvite, Invite};
use tandem_protocol::http::{Page, Role};

use super::{authorize, load};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::invites::{self, Letter};
use crate::validate;

pub async fn create(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<CreateInvite>,
) -> Result<HttpResponse, ApiError> {
    let email = validate::email(&body.email)?;
    state.invite_limiter.admit(user.id().to_string())?;
    let role = body.role.unwrap_or(Role::Editor);
    let public_url = state.config.public_url.clone();
    let invite = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::ManageMembers,
                ResourceKind::Workspace,
                &chain,
            )?;
            let letter = Letter {
                workspace_name: &chain.workspace.name,
                inviter: &user.user,
                public_url: &public_url,
            };
            let (row, token) = invites::create(c, &chain.workspace.id, &email, role, &letter)?;
            Ok(row.to_dto(Some(token)))
        })
        .await?;
    state.outbox_wake.notify_one();
    Ok(HttpResponse::Created().json(invite))
}

pub async fn list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Invite>>, ApiError> {
    let page = page.check()?;
    let list = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::ManageMembers,
                ResourceKind::Workspace,
                &chain,
            )?;
            let (rows, next_cursor) = invites::list(c, &chain.workspace.id, &page)?;
            Ok(Page {
                items: rows.iter().map(|r| r.to_dto(None)).collect(),
                next_cursor,
            })
        })
        .await?;
    Ok(web::Json(list))
}

pub async fn revoke(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Invite>, ApiError> {
    let (id, invite_id) = path.into_inner();
    let revoked = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::ManageMembers,
                ResourceKind::Workspace,
                &chain,
            )?;
            Ok(invites::revoke(c, user.id(), &chain.workspace.id, &invite_id)?.to_dto(None))
        })
        .await?;
    Ok(web::Json(revoked))
}

/// `POST /invites/accept`: the token from the invite's email link.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: String,
}

pub async fn accept(
    state: State,
    user: AuthUser,
    body: web::Json<AcceptBody>,
) -> Result<web::Json<AcceptedInvite>, ApiError> {
    if body.token.is_empty() || body.token.len() > 256 {
        return Err(ApiError::NotFound("invite"));
    }
    let accepted = state
        .db(move |c| invites::accept(c, &body.token, &user.user))
        .await?;
    state.access_changed();
    Ok(web::Json(accepted))
}
