//! Organizations: `GET /orgs/{id}` (members), `PATCH /orgs/{id}`
//! `{joinPolicy}` (owners), and the join requests an `approval` policy
//! creates: `GET /orgs/{id}/join-requests`,
//! `POST /orgs/{id}/join-requests/{userId}/accept|refuse` (owners).
//! Outsiders get 404, members 403 where owners are needed.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::Page;
use tandem_protocol::identity::{JoinRequest, OrgDetails, UpdateOrg};

use crate::authz::{self, Action, OrgFacts};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::{accounts, joining, OrgRow};

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
    let org = state
        .db(move |c| {
            let org = authorized(c, &user, &id, Action::Update)?;
            match body.join_policy {
                Some(policy) => joining::set_join_policy(c, &org, policy),
                None => Ok(org),
            }
        })
        .await?;
    Ok(web::Json(org.details()))
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
            joining::decide(c, &org.id, &user_id, accept)
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
