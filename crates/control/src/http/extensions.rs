//! Org extensions: `GET/POST /orgs/{id}/extensions` (list; upload a zip,
//! owners), `GET/DELETE /orgs/{id}/extensions/{ext}`, decided by the admin
//! policy (`View`, `ManageExtensions`); per workspace:
//! `GET /workspaces/{id}/extensions` (enabled ones, members),
//! `PUT /workspaces/{id}/extensions/{ext}` `{enabled, settings}` (workspace
//! owners), `GET /workspaces/{id}/extensions/{ext}/files/{path}` (members,
//! enabled extensions only, sandboxed). See `proto-docs/extensions.md`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tandem_protocol::extensions::{Extension, SetWorkspaceExtension, WorkspaceExtension};
use tandem_protocol::http::Page;

use super::orgs::as_admin;
use super::{authorize, authorize_admin, load};
use crate::authz::AdminAction::{ManageExtensions, View};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::extensions::{self, Limits};
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::extensions as store;

/// What served extension files may do: run their own scripts in an opaque
/// origin (no access to control's origin, cookies or storage), load only
/// their own files, and call nothing.
pub const FILE_CSP: &str = "sandbox allow-scripts; default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; connect-src 'none'; object-src 'none'; base-uri 'none'; \
     form-action 'none'";

pub async fn list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Extension>>, ApiError> {
    let page = page.check()?;
    let (rows, next_cursor) = as_admin(&state, user, id.into_inner(), View, move |c, _, org| {
        store::list(c, &org.id, &page)
    })
    .await?;
    let items = rows.iter().map(store::ExtensionRow::to_dto).collect();
    Ok(web::Json(Page { items, next_cursor }))
}

pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Extension>, ApiError> {
    let (id, ext) = path.into_inner();
    let row = as_admin(&state, user, id, View, move |c, _, org| {
        store::get(c, &org.id, &ext)?.ok_or(ApiError::NotFound("extension"))
    })
    .await?;
    Ok(web::Json(row.to_dto()))
}

pub async fn delete(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, ext) = path.into_inner();
    as_admin(
        &state,
        user,
        id,
        ManageExtensions,
        move |c, user, org| match store::delete(c, user.id(), &org.id, &ext)? {
            true => Ok(()),
            false => Err(ApiError::NotFound("extension")),
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /orgs/{id}/extensions` with the zip as the body: 201 for a new
/// extension, 200 for an upgrade.
pub async fn upload(
    state: State,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let is_zip = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/zip"));
    if !is_zip {
        return Err(ApiError::WrongMediaType("application/zip"));
    }
    let user_id = user.id().to_string();
    let org = as_admin(
        &state,
        user,
        id.into_inner(),
        ManageExtensions,
        |_, _, org| Ok(org),
    )
    .await?;
    let cap = state.config.extensions_max_bytes;
    let zip = read_body(&req, body, cap).await?;
    let limits = Limits {
        max_total_bytes: state.config.extensions_max_unpacked_bytes,
        ..Limits::default()
    };
    let pkg = web::block(move || extensions::read_package(&zip, &limits))
        .await?
        .map_err(|r| ApiError::Coded(r.code, r.message))?;
    let (row, created) = state
        .db(move |c| store::install(c, &org.id, &user_id, &pkg))
        .await?;
    let mut res = match created {
        true => HttpResponse::Created(),
        false => HttpResponse::Ok(),
    };
    Ok(res.json(row.to_dto()))
}

/// Reads a raw body of at most `cap` bytes (413 beyond).
async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    cap: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(ApiError::PayloadTooLarge(cap));
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(ApiError::PayloadTooLarge(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub async fn workspace_list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<WorkspaceExtension>>, ApiError> {
    let page = page.check()?;
    let (rows, next_cursor) = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::Read,
                ResourceKind::Workspace,
                &chain,
            )?;
            store::enabled_in(c, &chain.workspace.id, &page)
        })
        .await?;
    let items = rows.iter().map(|(ext, en)| en.to_dto(ext)).collect();
    Ok(web::Json(Page { items, next_cursor }))
}

/// Enables or disables an extension of the workspace's org in the
/// workspace: the admin policy's `ManageExtensions` on the workspace decides
/// (its owners).
pub async fn set(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<SetWorkspaceExtension>,
) -> Result<web::Json<WorkspaceExtension>, ApiError> {
    let (id, ext_id) = path.into_inner();
    let body = body.into_inner();
    let out = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize_admin(c, &user.actor(), &[ManageExtensions], &chain)?;
            let ws = &chain.workspace;
            let ext = store::get(c, &ws.org_id, &ext_id)?.ok_or(ApiError::NotFound("extension"))?;
            let row =
                store::set_for_workspace(c, &ws.id, &ext, body.enabled, body.settings, user.id())?;
            Ok(row.to_dto(&ext))
        })
        .await?;
    Ok(web::Json(out))
}

/// Serves a file of an enabled extension, read-only, sandboxed, never sniffed.
pub async fn file(
    state: State,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, ext_id, file_path) = path.into_inner();
    if extensions::archive::check_path(&file_path).is_err() {
        return Err(ApiError::NotFound("extension file"));
    }
    let row = state
        .db(move |c| {
            let chain = load::workspace(c, &id)?;
            authorize(
                c,
                &user.actor(),
                Action::Read,
                ResourceKind::Workspace,
                &chain,
            )?;
            let ws = &chain.workspace;
            store::enabled_file(c, &ws.id, &ws.org_id, &ext_id, &file_path)
        })
        .await?
        .ok_or(ApiError::NotFound("extension file"))?;
    let etag = format!("\"{}\"", row.sha256);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, FILE_CSP))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header(("cross-origin-resource-policy", "cross-origin"));
    if matches {
        return Ok(res.finish());
    }
    Ok(res.content_type(row.content_type).body(row.bytes))
}
