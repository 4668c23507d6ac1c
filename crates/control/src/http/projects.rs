//! `/projects/{id}` and `/projects/{id}/{documents|diagrams|tasks}`.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::{CreateResource, Page, Project, Resource, Role, UpdateProject};

use super::paths::Kind;
use super::{authorize, load};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::{projects, resources};
use crate::validate;

pub async fn get(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<Project>, ApiError> {
    let project = state
        .db(move |c| {
            let (row, chain) = load::project(c, &id)?;
            let role = authorize(
                c,
                &user.actor(),
                Action::Read,
                ResourceKind::Project,
                &chain,
            )?;
            Ok(row.to_dto(role))
        })
        .await?;
    Ok(web::Json(project))
}

pub async fn update(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<UpdateProject>,
) -> Result<web::Json<Project>, ApiError> {
    let name = body
        .into_inner()
        .name
        .map(|n| validate::name(&n))
        .transpose()?;
    let project = state
        .db(move |c| {
            let (row, chain) = load::project(c, &id)?;
            let role = authorize(
                c,
                &user.actor(),
                Action::Update,
                ResourceKind::Project,
                &chain,
            )?;
            let row = match name {
                Some(name) => projects::rename(c, &row.id, &name)?,
                None => row,
            };
            Ok(row.to_dto(role))
        })
        .await?;
    Ok(web::Json(project))
}

pub async fn delete(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .db(move |c| {
            let (row, chain) = load::project(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::Delete,
                ResourceKind::Project,
                &chain,
            )?;
            projects::delete(c, &row.id)
        })
        .await?;
    state.access_changed();
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list_resources(
    state: State,
    user: AuthUser,
    path: web::Path<(String, Kind)>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Resource>>, ApiError> {
    let (id, kind) = path.into_inner();
    let page = page.check()?;
    let list = state
        .db(move |c| {
            let actor = user.actor();
            let (_, chain) = load::project(c, &id)?;
            authorize(c, &actor, Action::Read, ResourceKind::Project, &chain)?;
            let (rows, next_cursor) = resources::list(c, &actor, &chain, kind, &page)?;
            Ok(Page {
                items: rows
                    .iter()
                    .map(|(r, role)| r.to_dto(kind.resource_type(), *role))
                    .collect(),
                next_cursor,
            })
        })
        .await?;
    Ok(web::Json(list))
}

pub async fn create_resource(
    state: State,
    user: AuthUser,
    path: web::Path<(String, Kind)>,
    body: web::Json<CreateResource>,
) -> Result<HttpResponse, ApiError> {
    let (id, kind) = path.into_inner();
    let title = validate::title(&body.title)?;
    let created = state
        .db(move |c| {
            let (project, chain) = load::project(c, &id)?;
            let role = authorize(
                c,
                &user.actor(),
                Action::CreateChild,
                ResourceKind::Project,
                &chain,
            )?;
            let row = resources::create(c, user.id(), &project.id, kind, &title)?;
            // The creator owns what they create where the kind has members.
            let role = if kind.authz_kind().has_members() {
                Role::Owner
            } else {
                role
            };
            Ok(row.to_dto(kind.resource_type(), role))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}
