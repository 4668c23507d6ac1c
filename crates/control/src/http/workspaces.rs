//! `/workspaces`, `PATCH /workspaces/{id}` (name, guest access: owners),
//! `/workspaces/{id}/projects`.

use actix_web::{web, HttpResponse};
use tandem_protocol::admin::{UpdateWorkspace, WorkspaceSettings};
use tandem_protocol::http::{CreateProject, Page, Project, WorkspaceSummary};

use super::{authorize, authorize_admin, load};
use crate::authz::{Action, AdminAction, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::{admin, projects, workspaces};
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

pub async fn update(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<UpdateWorkspace>,
) -> Result<web::Json<WorkspaceSettings>, ApiError> {
    let UpdateWorkspace { name, guest_access } = body.into_inner();
    let name = name.as_deref().map(validate::name).transpose()?;
    let settings = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            let mut needed = vec![AdminAction::View];
            needed.extend(name.as_ref().map(|_| AdminAction::ManageSettings));
            needed.extend(guest_access.map(|_| AdminAction::ManageGuestAccess));
            authorize_admin(c, &user.actor(), &needed, &chain)?;
            admin::update_workspace(c, user.id(), &chain.workspace, name, guest_access)
        })
        .await?;
    if settings.clamped_grants > 0 {
        state.access_changed();
    }
    Ok(web::Json(settings))
}
