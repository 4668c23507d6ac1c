//! Files and what refers to them. A file row goes
//! `pending` → (`completing`) → `ready` → `deleted` → `collecting` → gone;
//! see `migrations/*/2026-12-03-000020_files` and `crate::files::collector`.
//!
//! References: a chat message attachment (`message_attachments.file_id`) or
//! any other row through [`add_ref`] / [`remove_ref`] with a `(kind, id)`
//! pair — the sync engine uses `("sync", "{collection}/{rowId}")`. A file
//! nothing refers to is kept for the grace period and then collected.

use diesel::dsl::{exists, not, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use tandem_protocol::files::FileMeta;

use super::accounts::TxError;
use super::now_ms;
use crate::db::schema::{
    file_part_writers, file_parts, file_refs, files, message_attachments, workspaces,
};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;

pub const PENDING: &str = "pending";
pub const COMPLETING: &str = "completing";
pub const READY: &str = "ready";
pub const DELETED: &str = "deleted";
pub const COLLECTING: &str = "collecting";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = files)]
pub struct FileRow {
    pub id: String,
    pub workspace_id: String,
    pub state: String,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub storage_key: String,
    pub part_bytes: i64,
    pub multipart_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
    pub unreferenced_since: Option<i64>,
    pub deleted_at: Option<i64>,
    /// The parts go through control (`TANDEM_S3_PARTS_THROUGH_CONTROL` when
    /// the upload began).
    pub parts_through_control: bool,
}

impl FileRow {
    pub fn to_dto(&self) -> FileMeta {
        FileMeta {
            id: self.id.clone(),
            workspace_id: self.workspace_id.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size_bytes,
            sha256: self.sha256.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
        }
    }

    pub fn plan(&self) -> crate::files::Plan {
        crate::files::Plan {
            file_id: self.id.clone(),
            key: self.storage_key.clone(),
            size: self.size_bytes,
            part_bytes: self.part_bytes,
            multipart_id: self.multipart_id.clone(),
            content_type: self.content_type.clone(),
            sha256: self.sha256.clone(),
            expires_at: (self.expires_at / 1000).max(0) as u64,
            parts_through_control: self.parts_through_control,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state == READY
    }

    /// A pending upload that may still receive parts or be completed.
    pub fn is_open_upload(&self, now: i64) -> bool {
        self.state == PENDING && self.expires_at > now
    }
}

/// Bytes a workspace holds: ready files and uploads not yet expired.
pub fn used_bytes(c: &mut DbConnection, workspace_id: &str, now: i64) -> Result<i64, ApiError> {
    let ready: i64 = workspaces::table
        .find(workspace_id)
        .select(workspaces::files_ready_bytes)
        .first(c)
        .optional()?
        .unwrap_or(0);
    let open: i64 = files::table
        .filter(files::workspace_id.eq(workspace_id))
        .filter(files::state.eq_any([PENDING, COMPLETING]))
        .filter(files::expires_at.gt(now))
        .select(sql::<BigInt>(
            "CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)",
        ))
        .first(c)?;
    Ok(ready.saturating_add(open))
}

/// Adds `delta` to the bytes of `workspace_id`'s ready files; called in the
/// write transaction that moves a file to or from `ready`.
fn count_ready(
    c: &mut DbConnection,
    workspace_id: &str,
    delta: i64,
) -> Result<(), diesel::result::Error> {
    diesel::update(workspaces::table.find(workspace_id))
        .set(workspaces::files_ready_bytes.eq(workspaces::files_ready_bytes + delta))
        .execute(c)?;
    Ok(())
}

/// The ready file of a workspace with these bytes, if any (dedupe).
pub fn find_ready(
    c: &mut DbConnection,
    workspace_id: &str,
    sha256: &str,
) -> Result<Option<FileRow>, ApiError> {
    Ok(files::table
        .filter(files::workspace_id.eq(workspace_id))
        .filter(files::sha256.eq(sha256))
        .filter(files::state.eq(READY))
        .select(FileRow::as_select())
        .first(c)
        .optional()?)
}

/// Records an upload intent, unless it would take the workspace over
/// `quota` bytes (checked in the same write transaction).
/// Most uploads one user may have in progress in one workspace: each holds
/// quota and (on S3) a multipart upload until it completes or expires.
pub const MAX_OPEN_UPLOADS: i64 = 32;

pub fn create_pending(c: &mut DbConnection, row: &FileRow, quota: i64) -> Result<(), ApiError> {
    write_tx(c, |c| {
        // Intents for one workspace are checked one at a time (the row lock
        // lasts until commit), so two cannot both fit in its last free bytes.
        diesel::update(workspaces::table.find(&row.workspace_id))
            .set(workspaces::event_seq.eq(workspaces::event_seq))
            .execute(c)?;
        let open: i64 = files::table
            .filter(files::workspace_id.eq(&row.workspace_id))
            .filter(files::created_by.eq(&row.created_by))
            .filter(files::state.eq_any([PENDING, COMPLETING]))
            .filter(files::expires_at.gt(row.created_at))
            .count()
            .get_result(c)?;
        if open >= MAX_OPEN_UPLOADS {
            return Err(ApiError::TooMany(format!(
                "at most {MAX_OPEN_UPLOADS} uploads in progress per user and workspace; \
                 complete some or let them expire first"
            )));
        }
        let used = used_bytes(c, &row.workspace_id, row.created_at)?;
        if used.saturating_add(row.size_bytes) > quota {
            return Err(ApiError::QuotaExceeded(format!(
                "this workspace holds {used} bytes of files; {} more would exceed its quota of {quota} bytes",
                row.size_bytes
            )));
        }
        diesel::insert_into(files::table).values(row).execute(c)?;
        Ok(())
    })
}

pub fn get(c: &mut DbConnection, id: &str) -> Result<Option<FileRow>, ApiError> {
    Ok(files::table
        .find(id)
        .select(FileRow::as_select())
        .first(c)
        .optional()?)
}

pub fn set_multipart_id(c: &mut DbConnection, id: &str, multipart: &str) -> Result<(), ApiError> {
    diesel::update(files::table.find(id))
        .set(files::multipart_id.eq(multipart))
        .execute(c)?;
    Ok(())
}

/// Records that part `n` of an upload is being written through control by
/// one more request, until at most `writing_until`, claimed to start from
/// SHA-256 state `start`, while the upload is open (else `NotFound`).
/// Returns the request's writer id, for [`end_part`]. A part sent again
/// counts another attempt and forgets the end it had.
///
/// The check and the record are one write transaction that locks the
/// upload's row, as taking it for completion does (`begin_completing`): a
/// part either is recorded before completion reads the records (and then
/// completion waits until it is written, and an unfinished or repeated one
/// proves nothing), or is refused. No part can reach the store unrecorded
/// while a completion trusts the records.
pub fn begin_part(
    c: &mut DbConnection,
    id: &str,
    n: i64,
    start: Option<&str>,
    now: i64,
    writing_until: i64,
) -> Result<String, ApiError> {
    write_tx(c, |c| {
        let open = diesel::update(
            files::table
                .find(id)
                .filter(files::state.eq(PENDING))
                .filter(files::expires_at.gt(now)),
        )
        .set(files::state.eq(files::state))
        .execute(c)?;
        if open == 0 {
            return Err(ApiError::NotFound("upload"));
        }
        let again = diesel::update(file_parts::table.find((id, n)))
            .set((
                file_parts::attempts.eq(file_parts::attempts + 1),
                file_parts::end_state.eq(None::<String>),
            ))
            .execute(c)?;
        if again == 0 {
            // The row lock above serialises this upload's parts: no other
            // request can insert the same part meanwhile.
            diesel::insert_into(file_parts::table)
                .values((
                    file_parts::file_id.eq(id),
                    file_parts::part_number.eq(n),
                    file_parts::start_state.eq(start),
                    file_parts::attempts.eq(1),
                ))
                .execute(c)?;
        }
        // Writers whose time has passed are gone, whatever became of them.
        diesel::delete(
            file_part_writers::table
                .filter(file_part_writers::file_id.eq(id))
                .filter(file_part_writers::writing_until.le(now)),
        )
        .execute(c)?;
        let writer = crate::crypto::new_id();
        diesel::insert_into(file_part_writers::table)
            .values((
                file_part_writers::id.eq(&writer),
                file_part_writers::file_id.eq(id),
                file_part_writers::part_number.eq(n),
                file_part_writers::writing_until.eq(writing_until),
            ))
            .execute(c)?;
        Ok(writer)
    })
}

/// The request `writer` (of [`begin_part`]) writing part `n` ended; with
/// `end`, the SHA-256 state at the part's end (the file's SHA-256 for the
/// last part), recorded unless the part was sent more than once.
pub fn end_part(
    c: &mut DbConnection,
    writer: &str,
    id: &str,
    n: i64,
    end: Option<&str>,
) -> Result<(), ApiError> {
    write_tx(c, |c| end_part_in(c, writer, id, n, end))
}

/// [`end_part`] inside the caller's write transaction.
fn end_part_in(
    c: &mut DbConnection,
    writer: &str,
    id: &str,
    n: i64,
    end: Option<&str>,
) -> Result<(), ApiError> {
    diesel::delete(file_part_writers::table.find(writer)).execute(c)?;
    if let Some(end) = end {
        diesel::update(
            file_parts::table
                .find((id, n))
                .filter(file_parts::attempts.eq(1)),
        )
        .set(file_parts::end_state.eq(end))
        .execute(c)?;
    }
    Ok(())
}

/// One part of an upload sent through control.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = file_parts)]
pub struct PartRecord {
    pub part_number: i64,
    /// The SHA-256 state its client claimed it starts from (none for part 1).
    pub start_state: Option<String>,
    /// Where control's hash of it ended (the file's SHA-256 for the last
    /// part); none until it is stored, or when it came without a claim.
    pub end_state: Option<String>,
    /// Times it was sent.
    pub attempts: i32,
}

/// The recorded parts of an upload, by number.
pub fn parts(c: &mut DbConnection, id: &str) -> Result<Vec<PartRecord>, ApiError> {
    Ok(file_parts::table
        .filter(file_parts::file_id.eq(id))
        .order(file_parts::part_number)
        .select(PartRecord::as_select())
        .load(c)?)
}

/// Whether an upload was taken for completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taking {
    /// Taken: this caller completes it (exactly one caller wins).
    Taken,
    /// Not open: completed, being completed, or expired.
    NotOpen,
    /// Open, but a part is still being written through control.
    PartsBeingWritten,
}

/// Takes an open upload for completing, unless a part of it is still being
/// written through control (a writer of [`begin_part`] that has neither
/// ended nor passed its time). The row is locked first, as [`begin_part`]
/// locks it, so a part is either recorded before the check reads the
/// writers or refused.
pub fn begin_completing(c: &mut DbConnection, id: &str, now: i64) -> Result<Taking, ApiError> {
    write_tx(c, |c| take(c, id, now))
}

/// [`end_part`] and then [`begin_completing`], in one transaction: a
/// one-part upload whose `PUT` through control makes the file.
pub fn end_part_and_begin_completing(
    c: &mut DbConnection,
    writer: &str,
    id: &str,
    n: i64,
    end: Option<&str>,
    now: i64,
) -> Result<Taking, ApiError> {
    write_tx(c, |c| {
        // The upload's row first, as `begin_part` locks it, then the part.
        diesel::update(files::table.find(id))
            .set(files::state.eq(files::state))
            .execute(c)?;
        end_part_in(c, writer, id, n, end)?;
        take(c, id, now)
    })
}

/// [`begin_completing`] inside the caller's write transaction.
fn take(c: &mut DbConnection, id: &str, now: i64) -> Result<Taking, ApiError> {
    let taken = diesel::update(
        files::table
            .find(id)
            .filter(files::state.eq(PENDING))
            .filter(files::expires_at.gt(now)),
    )
    .set(files::state.eq(COMPLETING))
    .execute(c)?;
    if taken == 0 {
        return Ok(Taking::NotOpen);
    }
    let writing: i64 = file_part_writers::table
        .filter(file_part_writers::file_id.eq(id))
        .filter(file_part_writers::writing_until.gt(now))
        .count()
        .get_result(c)?;
    if writing > 0 {
        diesel::update(files::table.find(id))
            .set(files::state.eq(PENDING))
            .execute(c)?;
        return Ok(Taking::PartsBeingWritten);
    }
    Ok(Taking::Taken)
}

/// Abandons a pending upload: it expires now, so its client sees it gone
/// and the collector removes whatever bytes it left.
/// `false` when it was no longer pending (then its bytes are not to be touched).
pub fn abandon(c: &mut DbConnection, id: &str, now: i64) -> Result<bool, ApiError> {
    let n = diesel::update(files::table.find(id).filter(files::state.eq(PENDING)))
        .set(files::expires_at.eq(now))
        .execute(c)?;
    Ok(n == 1)
}

/// Gives an upload back to its client (parts were missing).
pub fn back_to_pending(c: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    diesel::update(files::table.find(id).filter(files::state.eq(COMPLETING)))
        .set(files::state.eq(PENDING))
        .execute(c)?;
    Ok(())
}

/// What completing an upload came to.
pub enum Completed {
    /// This upload is now the workspace's file of these bytes.
    Ready(FileRow),
    /// The same bytes became ready meanwhile through another upload: that
    /// file, and this upload's row was removed (its bytes must be too).
    Duplicate(FileRow),
}

/// Turns a checked upload into a ready file (unreferenced from now on
/// until something refers to it).
pub fn mark_ready(c: &mut DbConnection, id: &str, now: i64) -> Result<Completed, ApiError> {
    let done = write_tx(c, |c| {
        let n = diesel::update(files::table.find(id).filter(files::state.eq(COMPLETING)))
            .set((
                files::state.eq(READY),
                files::completed_at.eq(now),
                files::unreferenced_since.eq(now),
            ))
            .execute(c)?;
        if n == 1 {
            // The parts' chain proved what it could; a ready file needs it no more.
            diesel::delete(file_parts::table.filter(file_parts::file_id.eq(id))).execute(c)?;
            if let Some(row) = get(c, id)? {
                count_ready(c, &row.workspace_id, row.size_bytes)?;
                super::webhooks::emit_in_workspace(
                    c,
                    &row.workspace_id,
                    "file.uploaded",
                    serde_json::json!({ "file": row.to_dto() }),
                )?;
            }
        }
        Ok::<_, TxError>(n)
    });
    match done {
        Ok(1) => get(c, id)?
            .map(Completed::Ready)
            .ok_or(ApiError::NotFound("upload")),
        Ok(_) => Err(ApiError::Gone(
            "this upload expired before it was completed".into(),
        )),
        Err(TxError::Db(e)) if crate::db::is_unique_violation(&e) => {
            let row = get(c, id)?.ok_or(ApiError::NotFound("upload"))?;
            remove(c, id)?;
            find_ready(c, &row.workspace_id, &row.sha256)?
                .map(Completed::Duplicate)
                .ok_or_else(|| ApiError::Conflict("the upload raced with another; retry".into()))
        }
        Err(TxError::Db(e)) => Err(e.into()),
        Err(TxError::Api(e)) => Err(e),
    }
}

/// Removes a file row (its references go with it).
pub fn remove(c: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    diesel::delete(files::table.find(id)).execute(c)?;
    Ok(())
}

/// `DELETE /files/{id}`: the file disappears at once (metadata and
/// downloads answer 404, its dedupe entry is gone); its bytes are collected
/// after the grace period.
pub fn soft_delete(c: &mut DbConnection, id: &str, now: i64) -> Result<bool, ApiError> {
    write_tx(c, |c| {
        let Some(row) = get(c, id)? else {
            return Ok(false);
        };
        let n = diesel::update(files::table.find(id).filter(files::state.eq(READY)))
            .set((files::state.eq(DELETED), files::deleted_at.eq(now)))
            .execute(c)?;
        if n == 1 {
            count_ready(c, &row.workspace_id, -row.size_bytes)?;
        }
        Ok(n == 1)
    })
}

/// Claims a ready file of `workspace_id` for a new reference: it stops
/// counting as unreferenced, and the collector (which re-checks that row)
/// can no longer take it. `NotFound` when it is not a ready file of that
/// workspace. Call inside the write transaction that stores the reference.
pub fn claim(c: &mut DbConnection, workspace_id: &str, file_id: &str) -> Result<FileRow, ApiError> {
    let n = diesel::update(
        files::table
            .find(file_id)
            .filter(files::workspace_id.eq(workspace_id))
            .filter(files::state.eq(READY)),
    )
    .set(files::unreferenced_since.eq(None::<i64>))
    .execute(c)?;
    if n != 1 {
        return Err(ApiError::NotFound("file"));
    }
    get(c, file_id)?.ok_or(ApiError::NotFound("file"))
}

/// Records that `(kind, id)` (e.g. `("sync", "notes/row-1")`) refers to a
/// ready file of `workspace_id`; adding the same reference again is fine.
/// `NotFound` when it is not a ready file of that workspace.
pub fn add_ref(
    c: &mut DbConnection,
    workspace_id: &str,
    file_id: &str,
    kind: &str,
    id: &str,
) -> Result<(), ApiError> {
    write_tx(c, |c| add_ref_in_tx(c, workspace_id, file_id, kind, id))
}

/// [`add_ref`] inside the caller's write transaction.
pub fn add_ref_in_tx(
    c: &mut DbConnection,
    workspace_id: &str,
    file_id: &str,
    kind: &str,
    id: &str,
) -> Result<(), ApiError> {
    claim(c, workspace_id, file_id)?;
    let exists: bool =
        diesel::select(exists(file_refs::table.find((file_id, kind, id)))).get_result(c)?;
    if !exists {
        diesel::insert_into(file_refs::table)
            .values((
                file_refs::file_id.eq(file_id),
                file_refs::ref_kind.eq(kind),
                file_refs::ref_id.eq(id),
                file_refs::created_at.eq(now_ms()),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// Drops the references of `(kind, id)` (to one file, or to every file
/// when `file_id` is `None`); files left without any reference start their
/// grace period now. Removing what is not there is fine.
pub fn remove_ref(
    c: &mut DbConnection,
    kind: &str,
    id: &str,
    file_id: Option<&str>,
) -> Result<(), ApiError> {
    write_tx(c, |c| remove_ref_in_tx(c, kind, id, file_id))
}

/// [`remove_ref`] inside the caller's write transaction.
pub fn remove_ref_in_tx(
    c: &mut DbConnection,
    kind: &str,
    id: &str,
    file_id: Option<&str>,
) -> Result<(), ApiError> {
    let mut q = file_refs::table
        .filter(file_refs::ref_kind.eq(kind))
        .filter(file_refs::ref_id.eq(id))
        .select(file_refs::file_id)
        .into_boxed();
    if let Some(f) = file_id {
        q = q.filter(file_refs::file_id.eq(f));
    }
    let touched: Vec<String> = q.load(c)?;
    if touched.is_empty() {
        return Ok(());
    }
    diesel::delete(
        file_refs::table
            .filter(file_refs::ref_kind.eq(kind))
            .filter(file_refs::ref_id.eq(id))
            .filter(file_refs::file_id.eq_any(&touched)),
    )
    .execute(c)?;
    notice_unreferenced(c, Some(&touched), now_ms())?;
    Ok(())
}

/// Starts the grace period of ready files nothing refers to any more (all
/// of them, or those in `only`). References that disappear without
/// [`remove_ref`] (a conversation deleted with its messages) are noticed
/// here by the collector's first step.
pub fn notice_unreferenced(
    c: &mut DbConnection,
    only: Option<&[String]>,
    now: i64,
) -> Result<usize, ApiError> {
    let mut q = diesel::update(files::table)
        .filter(files::state.eq(READY))
        .filter(files::unreferenced_since.is_null())
        .filter(not(exists(
            file_refs::table.filter(file_refs::file_id.eq(files::id)),
        )))
        .filter(not(exists(
            message_attachments::table
                .filter(message_attachments::file_id.eq(files::id.nullable())),
        )))
        .into_boxed();
    if let Some(ids) = only {
        q = q.filter(files::id.eq_any(ids));
    }
    Ok(q.set(files::unreferenced_since.eq(now)).execute(c)?)
}

/// How long after an upload expired (or was abandoned) the collector waits
/// before removing what it left: a transfer still in flight then, or a body
/// control cut short that the store finishes keeping a moment later, has
/// ended by this time.
pub const ABANDONED_SETTLE_MS: i64 = 60_000;

/// Most ready files [`mark_collectable`] marks per call (each is a
/// statement of its own, to keep the workspace's byte count exact); the
/// collector's next run takes the rest.
pub const MARK_READY_BATCH: i64 = 1_000;

/// The collector's mark: files whose bytes may go now are set to
/// `collecting` (nothing can claim them after that). Ready files nothing
/// has referred to for `grace_ms` (at most [`MARK_READY_BATCH`] per call),
/// deleted files deleted `grace_ms` ago, uploads past their expiry by
/// [`ABANDONED_SETTLE_MS`].
pub fn mark_collectable(c: &mut DbConnection, now: i64, grace_ms: i64) -> Result<usize, ApiError> {
    let cutoff = now.saturating_sub(grace_ms);
    let unreferenced = || {
        files::state
            .eq(READY)
            .and(files::unreferenced_since.le(cutoff))
            .and(not(exists(
                file_refs::table.filter(file_refs::file_id.eq(files::id)),
            )))
            .and(not(exists(message_attachments::table.filter(
                message_attachments::file_id.eq(files::id.nullable()),
            ))))
    };
    let candidates: Vec<(String, String, i64)> = files::table
        .filter(unreferenced())
        .order(files::unreferenced_since.asc())
        .limit(MARK_READY_BATCH)
        .select((files::id, files::workspace_id, files::size_bytes))
        .load(c)?;
    let mut marked = 0;
    for (id, workspace_id, size) in candidates {
        // Each ready file leaves `ready` in the statement that re-checks it
        // (a reference may have come meanwhile), with its bytes uncounted
        // in the same transaction.
        marked += write_tx(c, |c| {
            let n = diesel::update(files::table.find(&id).filter(unreferenced()))
                .set(files::state.eq(COLLECTING))
                .execute(c)?;
            if n == 1 {
                count_ready(c, &workspace_id, -size)?;
            }
            Ok::<_, diesel::result::Error>(n)
        })?;
    }
    let deleted = files::state.eq(DELETED).and(files::deleted_at.le(cutoff));
    // (Not while a request still writes into one: what it writes after the
    // sweep would be nobody's.)
    let writing = file_part_writers::table
        .filter(file_part_writers::file_id.eq(files::id))
        .filter(file_part_writers::writing_until.gt(now));
    let abandoned = files::state
        .eq_any([PENDING, COMPLETING])
        .and(files::expires_at.le(now.saturating_sub(ABANDONED_SETTLE_MS)))
        .and(not(exists(writing)));
    marked += diesel::update(files::table)
        .filter(deleted.or(abandoned))
        .set(files::state.eq(COLLECTING))
        .execute(c)?;
    Ok(marked)
}

/// Files marked for collection (oldest first).
pub fn collecting(c: &mut DbConnection, limit: i64) -> Result<Vec<FileRow>, ApiError> {
    Ok(files::table
        .filter(files::state.eq(COLLECTING))
        .order(files::created_at.asc())
        .limit(limit)
        .select(FileRow::as_select())
        .load(c)?)
}

/// Removes a collected file's row, only if it is still marked.
pub fn remove_collected(c: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    diesel::delete(files::table.find(id).filter(files::state.eq(COLLECTING))).execute(c)?;
    Ok(())
}

/// Most conversations [`conversations_attaching`] returns: a user who takes
/// part in more conversations attaching one file is asked about these.
pub const MAX_ATTACHING_CONVERSATIONS: i64 = 16;

/// Conversations of `workspace_id` that `user_id` owns or takes part in and
/// where a message attaches `file_id` (at most
/// [`MAX_ATTACHING_CONVERSATIONS`]): the candidates through which the file
/// may be read (the caller still asks `can()` on each). One query, on the
/// attachments' `file_id` index.
pub fn conversations_attaching(
    c: &mut DbConnection,
    file_id: &str,
    workspace_id: &str,
    user_id: &str,
) -> Result<Vec<String>, ApiError> {
    use crate::db::schema::{conversation_participants, conversations, messages, projects};
    let takes_part = exists(
        conversation_participants::table
            .filter(conversation_participants::conversation_id.eq(conversations::id))
            .filter(conversation_participants::user_id.eq(user_id)),
    );
    Ok(message_attachments::table
        .inner_join(messages::table.on(messages::id.eq(message_attachments::message_id)))
        .inner_join(conversations::table.on(conversations::id.eq(messages::conversation_id)))
        .inner_join(projects::table.on(projects::id.eq(conversations::project_id)))
        .filter(message_attachments::file_id.eq(file_id))
        .filter(projects::workspace_id.eq(workspace_id))
        .filter(conversations::owner_id.eq(user_id).or(takes_part))
        .select(conversations::id)
        .distinct()
        .limit(MAX_ATTACHING_CONVERSATIONS)
        .load(c)?)
}
