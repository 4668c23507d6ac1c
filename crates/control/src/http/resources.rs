//! `/{documents|diagrams|tasks}/{id}`.

use actix_web::{web, HttpResponse};
use tandem_protocol::http::{Resource, UpdateResource};

use super::paths::Kind;
use super::{authorize, load};
use crate::authz::Action;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::State;
use crate::store::resources;
use crate::validate;

pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<(Kind, String)>,
) -> Result<web::Json<Resource>, ApiError> {
    let (kind, id) = path.into_inner();
    let resource = state
        .db(move |c| {
            let (row, chain) = load::resource(c, &id, kind)?;
            let role = authorize(c, &user.actor(), Action::Read, kind.authz_kind(), &chain)?;
            Ok(row.to_dto(kind.resource_type(), role))
        })
        .await?;
    Ok(web::Json(resource))
}

pub async fn update(
    state: State,
    user: AuthUser,
    path: web::Path<(Kind, String)>,
    body: web::Json<UpdateResource>,
) -> Result<web::Json<Resource>, ApiError> {
    let (kind, id) = path.into_inner();
    let title = body
        .into_inner()
        .title
        .map(|t| validate::title(&t))
        .transpose()?;
    let resource = state
        .db(move |c| {
            let (row, chain) = load::resource(c, &id, kind)?;
            let role = authorize(c, &user.actor(), Action::Update, kind.authz_kind(), &chain)?;
            let row = match title {
                Some(title) => resources::retitle(c, &row.id, &title)?,
                None => row,
            };
            Ok(row.to_dto(kind.resource_type(), role))
        })
        .await?;
    Ok(web::Json(resource))
}

pub async fn delete(
    state: State,
    user: AuthUser,
    path: web::Path<(Kind, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path.into_inner();
    state
        .db(move |c| {
            let (row, chain) = load::resource(c, &id, kind)?;
            authorize(c, &user.actor(), Action::Delete, kind.authz_kind(), &chain)?;
            resources::delete(c, &row)
        })
        .await?;
    state.access_changed();
    Ok(HttpResponse::NoContent().finish())
}
