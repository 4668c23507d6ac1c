//! Organizations: `GET /orgs/{id}` (members), `PATCH /orgs/{id}`
//! `{name?, joinPolicy?}` (owners), the join requests an `approval` policy
//! creates: `GET /orgs/{id}/join-requests`,
//! `POST /orgs/{id}/join-requests/{userId}/accept|refuse` (owners); the
//! member list `GET /orgs/{id}/members`, `DELETE /orgs/{id}/members/{userId}`
//! and `POST /orgs/{id}/transfer {userId}` (owners). Outsiders get 404,
//! members 403 where owners are needed (the admin policy, `authz::can_admin`).

use actix_web::{web, HttpResponse};
use tandem_protocol::admin::{OrgMember, TransferOrg};
use tandem_protocol::http::Page;
use tandem_protocol::identity::{JoinRequest, OrgDetails, UpdateOrg};

use crate::authz::{self, Action, AdminAction, AdminFacts, OrgFacts};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::{AppState, State};
use crate::store::{accounts, admin, joining, OrgRow};
use crate::validate;

/// Loads the org and asks `can()` whether the user may do `action` to it.
pub(crate) fn authorized(
    c: &mut DbConnection,
    user: &AuthUser,
    org_id: &str,
    action: Action,
) -> Result<OrgRow, ApiError> {
    let org = accounts::org_by_id(c, org_id)?.ok_or(ApiError::NotFound("org"))?;
    let facts = OrgFacts {
        org_id: org.id.clone(),
    };
    authz::can_org(&user.actor(), action, &facts)
        .into_result()
        .map_err(|d| ApiError::denied(d, "org"))?;
    Ok(org)
}

/// Loads the org and asks the admin policy whether the user may do `action`.
pub fn admin_authorized(
    c: &mut DbConnection,
    user: &AuthUser,
    org_id: &str,
    action: AdminAction,
) -> Result<OrgRow, ApiError> {
    let org = accounts::org_by_id(c, org_id)?.ok_or(ApiError::NotFound("org"))?;
    let facts = AdminFacts::for_org(&user.actor(), &org.id);
    authz::can_admin(action, &facts)
        .into_result()
        .map_err(|d| ApiError::denied(d, "org"))?;
    Ok(org)
}

/// Runs `f` with the org in one database job once the admin policy lets the
/// user do `action` there (outsiders 404, members without the role 403): the
/// preamble of the org admin handlers (webhooks, extensions).
pub async fn as_admin<T, F>(
    state: &AppState,
    user: AuthUser,
    org_id: String,
    action: AdminAction,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut DbConnection, &AuthUser, OrgRow) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    state
        .db(move |c| {
            let org = admin_authorized(c, &user, &org_id, action)?;
            f(c, &user, org)
        })
        .await
}

pub async fn get(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<OrgDetails>, ApiError> {
    let org = state
        .db(move |c| authorized(c, &user, &id, Action::Read))
        .await?;
    Ok(web::Json(org.details()))
}

pub async fn update(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<UpdateOrg>,
) -> Result<web::Json<OrgDetails>, ApiError> {
    let body = body.into_inner();
    let name = body.name.as_deref().map(validate::name).transpose()?;
    let org = state
        .db(move |c| {
            let org = authorized(c, &user, &id, Action::Update)?;
            admin::update_org(c, user.id(), &org, name, body.join_policy)
        })
        .await?;
    Ok(web::Json(org.details()))
}

pub async fn transfer(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<TransferOrg>,
) -> Result<web::Json<OrgDetails>, ApiError> {
    let to = validate::id(&body.user_id)?.to_string();
    let org = state
        .db(move |c| {
            let org = admin_authorized(c, &user, &id, AdminAction::TransferOwnership)?;
            admin::transfer(c, &user.user, &org, &to)
        })
        .await?;
    state.access_changed();
    Ok(web::Json(org.details()))
}

pub async fn members(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<OrgMember>>, ApiError> {
    let page = page.check()?;
    let (items, next_cursor) = state
        .db(move |c| {
            let org = admin_authorized(c, &user, &id, AdminAction::View)?;
            admin::org_members(c, &org.id, &page)
        })
        .await?;
    Ok(web::Json(Page { items, next_cursor }))
}

pub async fn remove_member(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, member_id) = path.into_inner();
    state
        .db(move |c| {
            let org = admin_authorized(c, &user, &id, AdminAction::ManageMembers)?;
            admin::remove_org_member(c, user.id(), &org, &member_id)
        })
        .await?;
    state.access_changed();
    Ok(HttpResponse::NoContent().finish())
}

pub async fn join_requests(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<JoinRequest>>, ApiError> {
    let page = page.check()?;
    let (items, next_cursor) = state
        .db(move |c| {
            let org = authorized(c, &user, &id, Action::ManageMembers)?;
            joining::join_requests(c, &org.id, &page)
        })
        .await?;
    Ok(web::Json(Page { items, next_cursor }))
}

async fn decide(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    accept: bool,
) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    state
        .db(move |c| {
            let org = authorized(c, &user, &id, Action::ManageMembers)?;
            joining::decide(c, user.id(), &org.id, &user_id, accept)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn accept(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide(state, user, path, true).await
}

pub async fn refuse(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide(state, user, path, false).await
}
