//! Permission re-checks. Two loops per relay node:
//!
//! - the **sweep**: every `TANDEM_RECHECK_SECS`, every room's users are
//!   checked with control in one batched call per room;
//! - the **feed**: control's access-change events are long-polled, and each
//!   event re-checks at once the rooms it touches (a user everywhere, or a
//!   whole room), so a revocation lands in well under a second.
//!
//! Users who lost access are kicked (`permission_revoked`, then 1008). If
//! control cannot answer, nobody is kicked (fail open); the failure is logged
//! and counted.

use std::sync::Arc;
use std::time::Duration;

use tandem_protocol::collab::AccessEvent;
use tandem_protocol::RoomId;
use tokio_util::sync::CancellationToken;

use crate::control_client::ControlClient;
use crate::hub::Hub;

/// How long one long poll of the feed waits.
const FEED_WAIT: Duration = Duration::from_secs(20);

/// Re-checks the given users of one room.
pub async fn check_room(hub: &Hub, control: &ControlClient, room: &RoomId, users: Vec<String>) {
    if users.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let result = control.check_access(room, &users).await;
    hub.metrics
        .check_access_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(results) => hub.apply_access(room, results).await,
        Err(e) => {
            hub.metrics.recheck_failures.inc();
            tracing::warn!(room = %room, error = %e, "permission re-check failed; nobody kicked (fail open)");
        }
    }
}

/// Re-checks every user of every live room.
pub async fn sweep(hub: &Hub, control: &ControlClient) {
    for (room, users) in hub.rooms_and_users().await {
        check_room(hub, control, &room, users).await;
    }
}

/// Re-checks what one batch of events touches.
async fn apply_events(hub: &Hub, control: &ControlClient, events: &[AccessEvent]) {
    for (room, users) in hub.rooms_and_users().await {
        let name = room.to_string();
        let whole_room = events
            .iter()
            .any(|e| e.room_id.as_deref() == Some(name.as_str()));
        let picked: Vec<String> = if whole_room {
            users
        } else {
            users
                .into_iter()
                .filter(|u| {
                    events
                        .iter()
                        .any(|e| e.user_id.as_deref() == Some(u.as_str()))
                })
                .collect()
        };
        check_room(hub, control, &room, picked).await;
    }
}

/// Runs the periodic sweep until shutdown.
pub async fn run_sweep(
    hub: Arc<Hub>,
    control: ControlClient,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => sweep(&hub, &control).await,
        }
    }
}

/// Follows control's access-change feed until shutdown, with backoff on errors.
pub async fn run_feed(hub: Arc<Hub>, control: ControlClient, stop: CancellationToken) {
    let mut cursor: Option<i64> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let poll = control.events(cursor, FEED_WAIT);
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = poll => r,
        };
        match result {
            Ok(batch) => {
                backoff = Duration::from_millis(250);
                if cursor.is_some() && !batch.events.is_empty() {
                    tracing::debug!(events = batch.events.len(), "access changes");
                    apply_events(&hub, &control, &batch.events).await;
                }
                cursor = Some(batch.last);
            }
            Err(e) => {
                hub.metrics.recheck_failures.inc();
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "access feed unavailable");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
