//! `/{workspaces|projects|documents|diagrams}/{id}/members[/{userId}]`.
//! Reading the list needs read access; changing it needs `ManageMembers`
//! (owners), except that anyone may remove themselves.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::{AddMember, Member, Page, UpdateMember};

use super::paths::{Kind, Scope};
use super::{authorize, load};
use crate::authz::{Action, ResourceKind};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::{accounts, members, Chain, UserRow};

/// What a member path points at.
struct Target {
    chain: Chain,
    kind: ResourceKind,
    scope_kind: &'static str,
    scope_id: String,
}

fn target(c: &mut DbConnection, scope: Scope, id: &str) -> Result<Target, ApiError> {
    let (chain, kind, scope_kind) = match scope {
        Scope::Workspaces => (
            load::workspace(c, id)?,
            ResourceKind::Workspace,
            "workspace",
        ),
        Scope::Projects => (load::project(c, id)?.1, ResourceKind::Project, "project"),
        Scope::Documents => (
            load::resource(c, id, Kind::Documents)?.1,
            ResourceKind::Document,
            Kind::Documents.scope_kind(),
        ),
        Scope::Diagrams => (
            load::resource(c, id, Kind::Diagrams)?.1,
            ResourceKind::Diagram,
            Kind::Diagrams.scope_kind(),
        ),
    };
    let scope_id = id.to_string();
    Ok(Target {
        chain,
        kind,
        scope_kind,
        scope_id,
    })
}

pub async fn list(
    state: State,
    user: AuthUser,
    path: web::Path<(Scope, String)>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Member>>, ApiError> {
    let (scope, id) = path.into_inner();
    let page = page.check()?;
    let list = state
        .db(move |c| {
            let t = target(c, scope, &id)?;
            authorize(c, &user.actor(), Action::Read, t.kind, &t.chain)?;
            members::list(c, &t.scope_id, &page)
        })
        .await?;
    Ok(web::Json(list))
}

pub async fn add(
    state: State,
    user: AuthUser,
    path: web::Path<(Scope, String)>,
    body: web::Json<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let (scope, id) = path.into_inner();
    let AddMember {
        user_id,
        email,
        role,
    } = body.into_inner();
    let member = state
        .db(move |c| {
            let t = target(c, scope, &id)?;
            authorize(c, &user.actor(), Action::ManageMembers, t.kind, &t.chain)?;
            let invitee = invitee(c, user_id, email)?;
            members::add(c, user.id(), t.scope_kind, &t.scope_id, &invitee.id, role)
        })
        .await?;
    state.access_changed();
    Ok(HttpResponse::Created().json(member))
}

/// The user a new grant names: by id, or by email (any case).
fn invitee(
    c: &mut DbConnection,
    user_id: Option<String>,
    email: Option<String>,
) -> Result<UserRow, ApiError> {
    match (user_id, email) {
        (Some(id), None) => crate::validate::id(&id)
            .ok()
            .map(|u| accounts::user_by_id(c, u))
            .transpose()?
            .flatten()
            .ok_or_else(|| ApiError::validation("userId does not name a user")),
        (None, Some(email)) => accounts::user_by_email(c, &crate::validate::email(&email)?)?
            .ok_or_else(|| ApiError::validation("email does not name a user")),
        _ => Err(ApiError::validation("give exactly one of userId and email")),
    }
}

pub async fn update(
    state: State,
    user: AuthUser,
    path: web::Path<(Scope, String, String)>,
    body: web::Json<UpdateMember>,
) -> Result<web::Json<Member>, ApiError> {
    let (scope, id, member_id) = path.into_inner();
    let role = body.role;
    let member = state
        .db(move |c| {
            let t = target(c, scope, &id)?;
            authorize(c, &user.actor(), Action::ManageMembers, t.kind, &t.chain)?;
            members::set_role(c, user.id(), &t.scope_id, &member_id, role)
        })
        .await?;
    state.access_changed();
    Ok(web::Json(member))
}

pub async fn remove(
    state: State,
    user: AuthUser,
    path: web::Path<(Scope, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (scope, id, member_id) = path.into_inner();
    state
        .db(move |c| {
            let t = target(c, scope, &id)?;
            let action = if member_id == user.id() {
                Action::Read
            } else {
                Action::ManageMembers
            };
            authorize(c, &user.actor(), action, t.kind, &t.chain)?;
            members::remove(c, user.id(), &t.scope_id, &member_id)
        })
        .await?;
    state.access_changed();
    Ok(HttpResponse::NoContent().finish())
}
