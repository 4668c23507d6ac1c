//! `/workspaces`, `/workspaces/{id}/projects`.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::{CreateProject, Page, Project, WorkspaceSummary};

use super::{authorize, load};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::{projects, workspaces};
use crate::validate;

pub async fn list(
    state: State,
    user: AuthUser,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<WorkspaceSummary>>, ApiError> {
    let page = page.check()?;
    let (items, next_cursor) = state
        .db(move |c| workspaces::visible_page(c, &user.actor(), Some(&page)))
        .await?;
    Ok(web::Json(Page { items, next_cursor }))
}

pub async fn list_projects(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Project>>, ApiError> {
    let page = page.check()?;
    let list = state
        .db(move |c| {
            let actor = user.actor();
            let chain = load::workspace(c, &id)?;
            authorize(c, &actor, Action::Read, ResourceKind::Workspace, &chain)?;
            let (rows, next_cursor) = projects::list(c, &actor, &chain.workspace, &page)?;
            Ok(Page {
                items: rows.iter().map(|(p, role)| p.to_dto(*role)).collect(),
                next_cursor,
            })
        })
        .await?;
    Ok(web::Json(list))
}

pub async fn create_project(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    let name = validate::name(&body.name)?;
    let project = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::CreateChild,
                ResourceKind::Workspace,
                &chain,
            )?;
            let row = projects::create(c, user.id(), &chain.workspace.id, &name)?;
            Ok(row.to_dto(tandem_protocol::http::Role::Owner))
        })
        .await?;
    Ok(HttpResponse::Created().json(project))
}
