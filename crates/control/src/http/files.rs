//! Files: `/workspaces/{id}/files/uploads`, `/files/uploads/{uploadId}[/complete]`,
//! `/files/{id}[/content|/url]`, and the signed transfer URLs control
//! serves itself, `/blobs/{fileId}[/parts/{n}]` (the directory backend's
//! uploads and downloads, small uploads to S3). See `proto-docs/files.md`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;

use tandem_protocol::files::{
    CompleteUpload, CompletedPart, CreateUpload, FileAnswer, FileMeta, Sha256State, UploadAnswer,
    SHA256_STATE_HEADER,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{authorize, load};
use crate::authz::{self, Action, ResourceKind};
use crate::error::ApiError;
use crate::files::{chain_proves, content_disposition, now_secs, BlobStore, Download, Storage};
use crate::http::extract::Caller;
use crate::state::{AppState, State};
use crate::store::facts;
use crate::store::files::{self, Completed, FileRow};
use crate::store::now_ms;
use crate::validate;

const MAX_NAME_CHARS: usize = 255;
const MAX_CONTENT_TYPE_CHARS: usize = 255;

/// Control's URL, which the directory backend's URLs start with:
/// `TANDEM_PUBLIC_CONTROL_URL` when set (a forged `Host` or `X-Forwarded-*`
/// header cannot send a transfer elsewhere), else as this client reached it.
fn base_url(state: &State, req: &HttpRequest) -> String {
    if let Some(url) = &state.config.public_control_url {
        return url.trim_end_matches('/').to_string();
    }
    let ci = req.connection_info();
    format!("{}://{}", ci.scheme(), ci.host())
}

struct Intent {
    name: String,
    size: i64,
    content_type: String,
    sha256: String,
}

fn check_intent(body: CreateUpload, max_bytes: i64) -> Result<Intent, ApiError> {
    let name = validate::text("name", &body.name, MAX_NAME_CHARS)?;
    if body.size < 0 {
        return Err(ApiError::validation("size must be ≥ 0"));
    }
    if body.size > max_bytes {
        return Err(ApiError::FileTooLarge(max_bytes));
    }
    let content_type = validate::text("contentType", &body.content_type, MAX_CONTENT_TYPE_CHARS)?;
    let well_formed = content_type.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && content_type
                .bytes()
                .all(|c| c.is_ascii_graphic() || c == b' ')
    });
    if !well_formed {
        return Err(ApiError::validation(
            "contentType must be a MIME type such as image/png",
        ));
    }
    let sha256 = body.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::validation("sha256 must be 64 hexadecimal digits"));
    }
    Ok(Intent {
        name,
        size: body.size,
        content_type,
        sha256,
    })
}

/// `POST /workspaces/{id}/files/uploads`: 200 `exists` (dedupe hit: the
/// same bytes are in this workspace) or 201 `pending` with part URLs.
pub async fn create_upload(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<CreateUpload>,
) -> Result<HttpResponse, ApiError> {
    let cfg = &state.config;
    let (max_bytes, part_limit) = (cfg.files_max_bytes, cfg.files_part_bytes);
    let (quota, ttl_ms) = (
        cfg.files_quota_bytes,
        cfg.files_upload_ttl_secs as i64 * 1000,
    );
    let parts_through_control = state.files.parts_through_control();
    let found = state
        .db(move |c| {
            let user = caller.sign_in(c)?;
            let intent = check_intent(body.into_inner(), max_bytes)?;
            let part_bytes = if intent.size > part_limit {
                part_limit
            } else {
                0
            };
            let chain = load::workspace(c, &id)?;
            let ws = chain.workspace.id.clone();
            authorize(
                c,
                &user.actor(),
                Action::CreateChild,
                ResourceKind::Workspace,
                &chain,
            )?;
            if let Some(existing) = files::find_ready(c, &ws, &intent.sha256)? {
                return Ok(Err(existing));
            }
            let now = now_ms();
            let file_id = crate::crypto::new_id();
            let row = FileRow {
                storage_key: format!("{ws}/{file_id}"),
                id: file_id,
                workspace_id: ws,
                state: files::PENDING.into(),
                name: intent.name,
                content_type: intent.content_type,
                size_bytes: intent.size,
                sha256: intent.sha256,
                part_bytes,
                multipart_id: None,
                created_by: Some(user.id().to_string()),
                created_at: now,
                expires_at: now + ttl_ms,
                completed_at: None,
                unreferenced_since: None,
                deleted_at: None,
                parts_through_control: part_bytes > 0 && parts_through_control,
            };
            files::create_pending(c, &row, quota)?;
            Ok(Ok(row))
        })
        .await?;
    let mut row = match found {
        Err(existing) => {
            state.metrics.files_dedupe_hits.inc();
            return Ok(HttpResponse::Ok().json(UploadAnswer::Exists {
                file: existing.to_dto(),
            }));
        }
        Ok(row) => row,
    };
    match state.files.begin(&row.plan()).await {
        Ok(Some(multipart)) => {
            let (id, m) = (row.id.clone(), multipart.clone());
            state
                .db(move |c| files::set_multipart_id(c, &id, &m))
                .await?;
            row.multipart_id = Some(multipart);
        }
        Ok(None) => {}
        Err(e) => {
            let id = row.id.clone();
            state.db(move |c| files::remove(c, &id)).await?;
            return Err(e);
        }
    }
    let answer = pending_answer(&state, &row, &base_url(&state, &req), Vec::new())?;
    Ok(HttpResponse::Created().json(answer))
}

fn pending_answer(
    state: &State,
    row: &FileRow,
    base: &str,
    received: Vec<i64>,
) -> Result<UploadAnswer, ApiError> {
    let plan = row.plan();
    Ok(UploadAnswer::Pending {
        upload_id: row.id.clone(),
        parts: state.files.part_urls(&plan, base)?,
        expires_at: row.expires_at,
        part_size: row.part_bytes,
        received_parts: received,
    })
}

/// The caller's own upload (anyone else's is a 404), while they may still
/// upload to the workspace.
async fn own_upload(state: &State, caller: Caller, id: String) -> Result<FileRow, ApiError> {
    state.db(move |c| own_upload_in(c, caller, &id)).await
}

/// [`own_upload`] on a connection.
fn own_upload_in(
    c: &mut crate::db::DbConnection,
    caller: Caller,
    id: &str,
) -> Result<FileRow, ApiError> {
    let user = caller.sign_in(c)?;
    validate::id(id).map_err(|_| ApiError::NotFound("upload"))?;
    let row = files::get(c, id)?
        .filter(|r| r.created_by.as_deref() == Some(user.id()))
        .ok_or(ApiError::NotFound("upload"))?;
    let chain = load::workspace(c, &row.workspace_id)?;
    authorize(
        c,
        &user.actor(),
        Action::CreateChild,
        ResourceKind::Workspace,
        &chain,
    )?;
    Ok(row)
}

/// `GET /files/uploads/{uploadId}`: fresh part URLs and the parts already
/// received, to resume an interrupted upload.
pub async fn get_upload(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<UploadAnswer>, ApiError> {
    let row = own_upload(&state, caller, id.into_inner()).await?;
    if row.is_ready() {
        return Ok(web::Json(UploadAnswer::Exists { file: row.to_dto() }));
    }
    if !row.is_open_upload(now_ms()) {
        return Err(ApiError::NotFound("upload"));
    }
    let received = state.files.received_parts(&row.plan()).await?;
    Ok(web::Json(pending_answer(
        &state,
        &row,
        &base_url(&state, &req),
        received,
    )?))
}

/// `POST /files/uploads/{uploadId}/complete`: checks size and sha256 and
/// answers 201 `{file}`. A mismatch keeps nothing (422); missing parts are
/// a 409 that keeps what arrived.
pub async fn complete(
    state: State,
    caller: Caller,
    id: web::Path<String>,
    body: Option<web::Json<CompleteUpload>>,
) -> Result<HttpResponse, ApiError> {
    let parts = body.and_then(|b| b.into_inner().parts);
    let too_many = parts.as_ref().is_some_and(|p| p.len() > 10_000);
    // The caller's own upload, taken for completing in the same trip to the
    // database (exactly one completion wins).
    let id = id.into_inner();
    let (row, taking) = state
        .db(move |c| {
            let row = own_upload_in(c, caller, &id)?;
            if too_many {
                return Err(ApiError::validation("at most 10000 parts"));
            }
            if row.is_ready() {
                return Ok((row, files::Taking::Taken));
            }
            let taking = files::begin_completing(c, &row.id, now_ms())?;
            Ok((row, taking))
        })
        .await?;
    if row.is_ready() {
        return Ok(HttpResponse::Created().json(FileAnswer { file: row.to_dto() }));
    }
    match (taking, row.state.as_str()) {
        (files::Taking::Taken, _) => {}
        (files::Taking::PartsBeingWritten, _) => return Err(ApiError::Conflict(
            "a part of this upload is still being sent; complete it once that request has ended"
                .into(),
        )),
        (files::Taking::NotOpen, files::COMPLETING) => {
            return Err(ApiError::Conflict("this upload is being completed".into()))
        }
        (files::Taking::NotOpen, _) => return Err(ApiError::NotFound("upload")),
    }
    // Bytes sent straight to the store are counted now; through control
    // they were counted as they passed.
    let count_in = (!state.files.bytes_pass_control(&row.plan())).then_some(row.size_bytes);
    // Checking may take seconds; a client that goes away meanwhile must not
    // leave the upload half-completed, so the check runs on its own task.
    let file = tokio::spawn(check_and_keep(state.get_ref().clone(), row, parts))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    if let Some(bytes) = count_in {
        state.metrics.files_bytes_in.inc_by(bytes as u64);
    }
    Ok(HttpResponse::Created().json(FileAnswer {
        file: file.to_dto(),
    }))
}

/// Checks a completing upload's bytes and makes it a ready file; a mismatch
/// removes it, anything else gives it back to its client.
async fn check_and_keep(
    state: Arc<AppState>,
    row: FileRow,
    parts: Option<Vec<CompletedPart>>,
) -> Result<FileRow, ApiError> {
    let plan = row.plan();
    // Only a multipart upload through control can be proven by the chain of
    // its parts' recorded states; anything else is checked by `finish`.
    let chained = plan.part_bytes > 0 && state.files.bytes_pass_control(&plan);
    let proven = chained && {
        let fid = row.id.clone();
        let recorded = state.db(move |c| files::parts(c, &fid)).await?;
        chain_proves(&recorded, plan.part_count(), &row.sha256)
    };
    let checked = state
        .files
        .finish(&plan, &row.sha256, parts.as_deref(), proven)
        .await;
    let fid = row.id.clone();
    match checked {
        Ok(read_back) => {
            state.metrics.files_readback_bytes.inc_by(read_back);
        }
        Err(e @ (ApiError::HashMismatch | ApiError::SizeMismatch(_))) => {
            state.files.abort(&plan).await?;
            state.db(move |c| files::remove(c, &fid)).await?;
            return Err(e);
        }
        Err(e) => {
            state.db(move |c| files::back_to_pending(c, &fid)).await?;
            return Err(e);
        }
    }
    keep(&state, &row).await
}

/// Makes a completing upload whose bytes were checked a ready file (or, when
/// the same bytes became ready meanwhile, that file, removing these).
async fn keep(state: &AppState, row: &FileRow) -> Result<FileRow, ApiError> {
    let fid = row.id.clone();
    let done = state
        .db(move |c| files::mark_ready(c, &fid, now_ms()))
        .await?;
    settle(state, row, done).await
}

/// The file an upload came to; a duplicate's own bytes are removed.
async fn settle(state: &AppState, row: &FileRow, done: Completed) -> Result<FileRow, ApiError> {
    Ok(match done {
        Completed::Ready(f) => f,
        Completed::Duplicate(existing) => {
            state.files.delete(&row.storage_key).await?;
            state.metrics.files_dedupe_hits.inc();
            existing
        }
    })
}

/// A ready file the caller may read (else 404), or, for `Action::Delete`,
/// delete (its uploader while an editor, or a workspace owner).
///
/// Reading is allowed to whoever may read the file's workspace, and to
/// whoever may read a conversation of that workspace where a message
/// attaches the file (a participant who is not a member of the workspace).
async fn readable(
    state: &State,
    caller: Caller,
    id: String,
    action: Action,
) -> Result<FileRow, ApiError> {
    state
        .db(move |c| {
            let user = caller.sign_in(c)?;
            validate::id(&id).map_err(|_| ApiError::NotFound("file"))?;
            let row = files::get(c, &id)?
                .filter(FileRow::is_ready)
                .ok_or(ApiError::NotFound("file"))?;
            let actor = user.actor();
            match workspace_allows(c, &actor, &row, action) {
                Ok(()) => Ok(row),
                Err(ApiError::NotFound(_))
                    if action == Action::Read && read_through_conversation(c, &actor, &row)? =>
                {
                    Ok(row)
                }
                Err(e) => Err(e),
            }
        })
        .await
}

fn is_denied(e: &ApiError) -> bool {
    matches!(e, ApiError::NotFound(_) | ApiError::Forbidden)
}

/// `can()` on the file's workspace: Read, or Delete as [`readable`] says.
/// Not allowed to read it: `NotFound`.
fn workspace_allows(
    c: &mut crate::db::DbConnection,
    actor: &authz::Actor,
    row: &FileRow,
    action: Action,
) -> Result<(), ApiError> {
    let hidden = |e: ApiError| match e {
        ApiError::NotFound(_) | ApiError::Forbidden => ApiError::NotFound("file"),
        e => e,
    };
    let chain = load::workspace(c, &row.workspace_id).map_err(hidden)?;
    let facts = facts::for_chain(c, &actor.user_id, &chain)?;
    let may = |action| {
        authz::can(actor, action, ResourceKind::Workspace, &facts)
            .into_result()
            .map_err(|d| ApiError::denied(d, "workspace"))
    };
    may(Action::Read).map_err(hidden)?;
    if action == Action::Delete {
        let own = row.created_by.as_deref() == Some(actor.user_id.as_str());
        may(if own { Action::Update } else { Action::Delete })?;
    }
    Ok(())
}

/// Whether `can()` lets the actor read a conversation (of the file's
/// workspace) where a message attaches the file.
fn read_through_conversation(
    c: &mut crate::db::DbConnection,
    actor: &authz::Actor,
    row: &FileRow,
) -> Result<bool, ApiError> {
    let candidates = files::conversations_attaching(c, &row.id, &row.workspace_id, &actor.user_id)?;
    for conversation in candidates {
        match super::conversations::authorized(c, actor, &conversation, Action::Read) {
            Ok(_) => return Ok(true),
            Err(e) if is_denied(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// `GET /files/{id}`: metadata.
pub async fn get(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<FileMeta>, ApiError> {
    let row = readable(&state, caller, id.into_inner(), Action::Read).await?;
    Ok(web::Json(row.to_dto()))
}

/// A signed download URL of a readable file, valid for `TANDEM_FILES_URL_TTL_SECS`.
async fn signed_download(
    state: &State,
    caller: Caller,
    req: &HttpRequest,
    id: String,
) -> Result<(String, u64), ApiError> {
    let row = readable(state, caller, id, Action::Read).await?;
    let expires_at = now_secs() + state.config.files_url_ttl_secs;
    let url = state.files.download_url(
        &Download {
            file_id: &row.id,
            key: &row.storage_key,
            name: &row.name,
            content_type: &row.content_type,
            expires_at,
        },
        &base_url(state, req),
    )?;
    if state.files.dir().is_none() {
        state.metrics.files_bytes_out.inc_by(row.size_bytes as u64);
    }
    Ok((url, expires_at))
}

/// `GET /files/{id}/content`: 302 to a short-lived signed URL.
pub async fn content(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (url, _) = signed_download(&state, caller, &req, id.into_inner()).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `GET /files/{id}/url`: the same signed URL as JSON `{url, expiresAt}`
/// (for `<a href>` and `<img src>`, which cannot send a bearer token).
pub async fn url(
    state: State,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (url, expires) = signed_download(&state, caller, &req, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "url": url, "expiresAt": expires as i64 * 1000 })))
}

/// `DELETE /files/{id}`: gone at once for everyone; bytes collected later.
pub async fn delete(
    state: State,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = readable(&state, caller, id.into_inner(), Action::Delete).await?;
    state
        .db(move |c| files::soft_delete(c, &row.id, now_ms()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct Signed {
    expires: Option<String>,
    signature: Option<String>,
}

fn dir_store(state: &State) -> Result<&crate::files::dir::DirStore, ApiError> {
    state.files.dir().ok_or(ApiError::NotFound("blob"))
}

/// `PUT /blobs/{fileId}/parts/{n}` (signed): one part of an upload to the
/// directory backend, streamed to disk, exactly the part's length; a small
/// upload to S3 sent through control, which it also completes; or a part
/// of a multipart S3 upload, passed on and hashed from its claimed state.
pub async fn put_part(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, i64)>,
    query: web::Query<Signed>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.files.signer().verify(
        "PUT",
        req.path(),
        query.expires.as_deref(),
        query.signature.as_deref(),
    )?;
    let (id, n) = path.into_inner();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    // Not text: not a state either ([`claimed_state`] says so).
    let claim = req
        .headers()
        .get(SHA256_STATE_HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let started = tokio::time::Instant::now();
    let Began {
        row,
        start,
        deadline,
        len,
        writing,
    } = PartWrite::begin(state.get_ref(), id, n, declared, claim).await?;
    let plan = row.plan();
    let last = n == plan.part_count();
    let expect = (last && start.is_some()).then_some(row.sha256.as_str());
    let write = async {
        match &state.files {
            Storage::Dir(dir) => Ok(dir.write_part(&plan, n, start, expect, body).await?.1),
            Storage::S3(s3) => s3.put_part_through(&plan, n, start, expect, body).await,
        }
    };
    // The deadline counts from before the record was made, so the record
    // (which lasts a margin longer) outlives the request.
    let written = tokio::time::timeout_at(started + deadline, write)
        .await
        .unwrap_or_else(|_| {
            tracing::info!(file = %row.id, part = n, "upload body too slow: cut off");
            Err(ApiError::BodyTimeout(deadline.as_secs()))
        });
    let hash = match written {
        Ok(hash) => hash,
        Err(e) => {
            let refusal = match e {
                ApiError::HashMismatch => refused(&state, &row).await,
                _ => Ok(()),
            };
            // Ended before answering, so a completion sent right after the
            // answer does not find the part still being written.
            writing.end(None).await;
            refusal?;
            return Err(e);
        }
    };
    // Where the hash ended is recorded, so completion can prove a
    // multipart file without reading it back ([`chain_proves`]).
    let end = hash.and_then(|hash| match last {
        true => Some(hash.finish_hex()),
        false => hash.state_hex(),
    });
    state.metrics.files_bytes_in.inc_by(len as u64);
    let etag = (header::ETAG, format!("\"{n}\""));
    let one_part_s3 = state.files.dir().is_none() && plan.part_bytes == 0;
    if !one_part_s3 {
        writing.end(end).await;
        return Ok(HttpResponse::Ok().insert_header(etag).finish());
    }
    // Through control, the bytes were checked on the way: the part ends and
    // the file is made now, in one trip to the database (on a task of its
    // own, so a client leaving cannot stop it halfway).
    let file = tokio::spawn(keep_checked(
        state.get_ref().clone(),
        row,
        writing.hand_over(),
        end,
    ))
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(match file {
        Some(file) => HttpResponse::Ok().insert_header(etag).json(FileAnswer {
            file: file.to_dto(),
        }),
        // A completion call is checking the same bytes, or another PUT of
        // this upload is still running: the file is made by a completion.
        None => HttpResponse::Ok().insert_header(etag).finish(),
    })
}

/// The SHA-256 state a part's client claims for the bytes before it
/// (`tandem-sha256-state`), if it sent one.
fn claimed_state(value: Option<&str>, offset: i64) -> Result<Option<Sha256State>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    Sha256State::resume(value, offset as u64)
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(
                "tandem-sha256-state must be 64 hex digits: the SHA-256 state of the file's \
                 bytes before this part (which must start on a 64-byte block)",
            )
        })
}

/// How much longer than its body's deadline a part's writer counts: what a
/// request cut off at the deadline still does (answering, a write already
/// handed to the disk, ending its record) happens within it.
const PART_RECORD_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// One request writing a part through control: its record (a writer of
/// [`files::begin_part`]), which holds completion off until it ends.
#[derive(Debug, Clone)]
struct Writer {
    id: String,
    file_id: String,
    n: i64,
}

impl Writer {
    /// Ends the record (with `end`, the SHA-256 state at the part's end).
    async fn end(self, state: &AppState, end: Option<String>) -> Result<(), ApiError> {
        state
            .db(move |c| files::end_part(c, &self.id, &self.file_id, self.n, end.as_deref()))
            .await
    }
}

/// A part's request, let in by [`PartWrite::begin`].
struct Began {
    /// The upload.
    row: FileRow,
    /// The SHA-256 state to hash the part from, if it is hashed.
    start: Option<Sha256State>,
    /// When its body must have arrived.
    deadline: std::time::Duration,
    /// The part's length.
    len: i64,
    /// Its writer's record.
    writing: PartWrite,
}

/// A [`Writer`] ended when its request ends: by [`PartWrite::end`], or when
/// dropped (a client gone) on a task of its own.
struct PartWrite {
    state: Arc<AppState>,
    writer: Option<Writer>,
}

impl PartWrite {
    /// Checks that part `n` of upload `id` may be sent through control now
    /// (the upload is open, `declared` is the part's length, a `claim`ed
    /// SHA-256 state is one) and records its writer until the body's
    /// deadline and a margin, all in one trip to the database. The state to
    /// hash the part from is SHA-256's initial state for a one-part upload or
    /// a first part; for a later part, the state its client claims, or none
    /// (and then the upload is read back).
    ///
    /// (A request dropped while this trip runs leaves its writer to stop
    /// counting at its time.)
    async fn begin(
        state: &Arc<AppState>,
        id: String,
        n: i64,
        declared: Option<i64>,
        claim: Option<String>,
    ) -> Result<Began, ApiError> {
        let app = state.clone();
        let (row, start, deadline, len, writer) = state
            .db(move |c| {
                let now = now_ms();
                let row = files::get(c, &id)?
                    .filter(|r| r.is_open_upload(now))
                    .ok_or(ApiError::NotFound("upload"))?;
                let plan = row.plan();
                let (offset, len) = plan
                    .part_range(n)
                    .ok_or(ApiError::NotFound("upload part"))?;
                if declared.is_some_and(|d| d != len) {
                    return Err(ApiError::SizeMismatch(format!(
                        "part {n} must be exactly {len} bytes"
                    )));
                }
                if !app.files.bytes_pass_control(&plan) {
                    return Err(ApiError::NotFound("upload part"));
                }
                let start = match (plan.part_bytes > 0, n) {
                    (false, _) | (true, 1) => Some(Sha256State::new()),
                    _ if app.files.wants_state(&plan, n) => {
                        claimed_state(claim.as_deref(), offset)?
                    }
                    _ => None,
                };
                // A body slower than the minimum rate is cut off: the part
                // stays unwritten (the client sends it again).
                let deadline = app.config.upload_body_deadline(len as u64);
                let lasts = deadline + PART_RECORD_MARGIN;
                let until =
                    now.saturating_add(i64::try_from(lasts.as_millis()).unwrap_or(i64::MAX));
                let claimed = start
                    .as_ref()
                    .filter(|_| n > 1)
                    .and_then(Sha256State::state_hex);
                let writer = files::begin_part(c, &row.id, n, claimed.as_deref(), now, until)?;
                Ok((row, start, deadline, len, writer))
            })
            .await?;
        let writing = PartWrite {
            state: state.clone(),
            writer: Some(Writer {
                id: writer,
                file_id: row.id.clone(),
                n,
            }),
        };
        Ok(Began {
            row,
            start,
            deadline,
            len,
            writing,
        })
    }

    /// The writer, for whoever ends it instead: this guard no longer does.
    fn hand_over(mut self) -> Option<Writer> {
        self.writer.take()
    }

    /// The part is written (or its request failed); `end` is the SHA-256
    /// state at its end, if known. A failure is logged: the writer then
    /// stops counting at its time.
    async fn end(mut self, end: Option<String>) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.end(&self.state, end).await {
                tracing::warn!(error = %e, "could not end a part's writer; it stops counting at its deadline");
            }
        }
    }
}

impl Drop for PartWrite {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let state = self.state.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = writer.end(&state, None).await {
                    tracing::warn!(error = %e, "could not end a part's writer; it stops counting at its deadline");
                }
            });
        }
    }
}

/// Ends an upload whose bytes were refused, while it is still pending (a
/// completed upload's bytes are never touched): it is abandoned (expired
/// now: gone for its client) and its bytes removed. A store may keep the
/// part of a body that control cut short (SeaweedFS does), possibly only
/// after a moment, removing bytes can fail, and another request may still
/// be writing: the row is left to the collector, which removes what an
/// abandoned upload left once nothing writes into it.
async fn refused(state: &AppState, row: &FileRow) -> Result<(), ApiError> {
    let id = row.id.clone();
    let ended = state.db(move |c| files::abandon(c, &id, now_ms())).await?;
    if !ended {
        return Ok(());
    }
    if let Err(e) = state.files.abort(&row.plan()).await {
        tracing::warn!(error = %e, "could not remove a refused upload's bytes; the collector will");
    }
    Ok(())
}

/// Ends the record of its `part` being written (`end`: the SHA-256 state at
/// its end) and completes an upload whose bytes were checked as they
/// arrived, in one trip to the database; `None` when a completion call took
/// it first or another request is still writing it.
async fn keep_checked(
    state: Arc<AppState>,
    row: FileRow,
    writer: Option<Writer>,
    end: Option<String>,
) -> Result<Option<FileRow>, ApiError> {
    let id = row.id.clone();
    let ending = writer.clone();
    let done = state
        .db(move |c| {
            let now = now_ms();
            let taking = match &ending {
                Some(w) => {
                    files::end_part_and_begin_completing(c, &w.id, &id, w.n, end.as_deref(), now)?
                }
                None => files::begin_completing(c, &id, now)?,
            };
            if taking != files::Taking::Taken {
                return Ok(None);
            }
            match files::mark_ready(c, &id, now_ms()) {
                Ok(done) => Ok(Some(done)),
                Err(e) => {
                    // Stored and checked: a completion call can still make it.
                    files::back_to_pending(c, &id)?;
                    Err(e)
                }
            }
        })
        .await;
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            // The writer may not have ended with the transaction that failed.
            if let Some(w) = writer {
                if let Err(e) = w.end(&state, None).await {
                    tracing::warn!(error = %e, "could not end a part's writer; it stops counting at its deadline");
                }
            }
            return Err(e);
        }
    };
    match done {
        Some(done) => settle(&state, &row, done).await.map(Some),
        None => Ok(None),
    }
}

/// A single `bytes=` range of a file of `len` bytes: `(start, end inclusive)`.
/// `None`: serve the whole file (no header, several ranges, or not bytes).
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(ApiError::RangeNotSatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| ApiError::RangeNotSatisfiable)?;
        if suffix == 0 || len == 0 {
            return Err(ApiError::RangeNotSatisfiable);
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ApiError::RangeNotSatisfiable)?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ApiError::RangeNotSatisfiable)?
                .min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(ApiError::RangeNotSatisfiable);
        }
        (start, end)
    };
    Ok(Some(range))
}

/// `GET /blobs/{fileId}` (signed): the bytes of a ready file, with `Range`.
pub async fn get_blob(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<Signed>,
) -> Result<HttpResponse, ApiError> {
    let dir = dir_store(&state)?;
    dir.signer.verify(
        "GET",
        req.path(),
        query.expires.as_deref(),
        query.signature.as_deref(),
    )?;
    let id = id.into_inner();
    let row = state
        .db(move |c| files::get(c, &id))
        .await?
        .filter(FileRow::is_ready)
        .ok_or(ApiError::NotFound("file"))?;
    let (mut file, len) = dir.open(&row.storage_key).await?;
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => parse_range(v, len)?,
        None => None,
    };
    let mut res = match range {
        Some(_) => HttpResponse::PartialContent(),
        None => HttpResponse::Ok(),
    };
    let (start, count) = match range {
        Some((s, e)) => {
            res.insert_header((header::CONTENT_RANGE, format!("bytes {s}-{e}/{len}")));
            (s, e - s + 1)
        }
        None => (0, len),
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let metrics = state.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), 256 * 1024).inspect(
        move |chunk| {
            if let Ok(b) = chunk {
                metrics.metrics.files_bytes_out.inc_by(b.len() as u64);
            }
        },
    );
    res.insert_header((header::CONTENT_TYPE, row.content_type.as_str()))
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&row.name)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, format!("\"{}\"", row.sha256)))
        .insert_header((header::CACHE_CONTROL, "private, no-transform"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("content-security-policy", "sandbox; default-src 'none'"))
        .no_chunking(count);
    Ok(res.streaming(stream))
}
