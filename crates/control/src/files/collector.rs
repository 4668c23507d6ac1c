//! The file collector: removes the bytes of files nothing has referred to
//! for the grace period (`TANDEM_FILES_GC_GRACE_SECS`), of deleted files,
//! and of abandoned uploads.
//!
//! Safe to kill at any point: each run is (1) notice newly unreferenced
//! files, (2) mark what may go (`state = collecting`; from then on nothing
//! can refer to it), (3) for each marked file delete its bytes, then its
//! row. Every step is idempotent and a run starts by finishing what an
//! earlier, interrupted run marked, so a crash between any two steps only
//! delays the removal. Several replicas may run it at once.

use std::sync::Arc;
use std::time::Duration;

use super::BlobStore;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::files;

/// Marked files handled per batch.
const BATCH: i64 = 100;

/// Steps 1 and 2: notice unreferenced files and mark what may go as of
/// `now` (unix ms). Returns how many were marked.
pub async fn mark(state: &AppState, now: i64) -> Result<usize, ApiError> {
    let grace =
        i64::try_from(state.config.files_gc_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    state
        .db(move |c| {
            files::notice_unreferenced(c, None, now)?;
            files::mark_collectable(c, now, grace)
        })
        .await
}

/// Step 3 for at most `limit` marked files: bytes, then row. Returns how
/// many were removed.
pub async fn sweep(state: &AppState, limit: i64) -> Result<usize, ApiError> {
    let marked = state.db(move |c| files::collecting(c, limit)).await?;
    let mut removed = 0;
    for row in marked {
        state.files.abort(&row.plan()).await?;
        let id = row.id.clone();
        state.db(move |c| files::remove_collected(c, &id)).await?;
        removed += 1;
    }
    Ok(removed)
}

/// One whole run as of `now`: finishes earlier runs' marks, marks, sweeps.
/// Returns the number of files removed.
pub async fn run(state: &AppState, now: i64) -> Result<usize, ApiError> {
    let mut removed = sweep_all(state).await?;
    mark(state, now).await?;
    removed += sweep_all(state).await?;
    state.metrics.files_gc_runs.inc();
    state.metrics.files_gc_removed.inc_by(removed as u64);
    Ok(removed)
}

async fn sweep_all(state: &AppState) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let n = sweep(state, BATCH).await?;
        total += n;
        if (n as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Runs the collector every `TANDEM_FILES_GC_INTERVAL_SECS` until shutdown.
pub async fn every_interval(state: Arc<AppState>) {
    let secs = state.config.files_gc_interval_secs;
    if secs == 0 {
        return;
    }
    loop {
        if !state
            .nap(std::future::pending(), Duration::from_secs(secs))
            .await
        {
            return;
        }
        match run(&state, crate::store::now_ms()).await {
            Ok(removed) => tracing::info!(removed, "file collector ran"),
            Err(e) => tracing::warn!(error = %e, "file collector failed; will retry"),
        }
    }
}
