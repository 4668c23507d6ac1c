//! Single-token verifies (`POST /collaboration/verify`) share database
//! rounds: each call queues its token, and a round claims everything queued
//! (up to [`MAX_VERIFY_BATCH`]) with [`collab::consume_many`], the statement
//! behind `verify-batch`. At most [`ROUNDS_IN_FLIGHT`] rounds run at once; a
//! call arriving while they all run waits for the next free one, which takes
//! it together with every call that arrived meanwhile, so under load a
//! round serves many calls (group commit), and a call alone waits for
//! nothing but its own round.
//!
//! The rounds run on a task of their own, started by the call that finds no
//! round running: a caller that goes away (its client disconnected) cannot
//! stop a round halfway or leave the queue without a runner. Semantics are
//! those of a single verify: a token is claimed at most once (two calls with
//! one token in one round: the first is verified, the second refused), and
//! each call gets its own verdict.

use std::sync::{Arc, Mutex};

use tandem_protocol::collab::MAX_VERIFY_BATCH;
use tandem_protocol::room::RoomId;
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::collab::{self, Verdict};

/// Rounds running at once: more let PostgreSQL serve them side by side
/// and keep one slow round from holding up every caller; SQLite takes their
/// writes one at a time anyway.
const ROUNDS_IN_FLIGHT: usize = 4;

struct Job {
    token: String,
    room: RoomId,
    answer: oneshot::Sender<Result<Verdict, ApiError>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Tasks running rounds; each takes `jobs` until they are empty.
    runners: usize,
}

/// The queue of single verifies waiting for a database round.
#[derive(Default)]
pub struct VerifyQueue {
    queue: Mutex<Queue>,
}

impl VerifyQueue {
    /// Verifies one token in the next round; `Unavailable` when the round's
    /// database work failed.
    pub async fn verify(
        state: &Arc<AppState>,
        token: String,
        room: RoomId,
    ) -> Result<Verdict, ApiError> {
        let (answer, verdict) = oneshot::channel();
        let start = {
            let mut q = state.verify_queue.lock();
            q.jobs.push(Job {
                token,
                room,
                answer,
            });
            let start = q.runners < ROUNDS_IN_FLIGHT;
            q.runners += usize::from(start);
            start
        };
        if start {
            actix_web::rt::spawn(rounds(state.clone()));
        }
        verdict.await.map_err(|_| ApiError::Unavailable)?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next round's jobs (at most [`MAX_VERIFY_BATCH`]); none, and the
    /// runner stands down, when the queue is empty.
    fn next_round(&self) -> Vec<Job> {
        let mut q = self.lock();
        if q.jobs.is_empty() {
            q.runners -= 1;
            return Vec::new();
        }
        let take = q.jobs.len().min(MAX_VERIFY_BATCH);
        q.jobs.drain(..take).collect()
    }
}

/// Stands the runner down if its task panics; when it was the last one, the
/// queued callers are answered `Unavailable` (their answers dropped) instead
/// of waiting for a runner that is gone, and the next call starts a new one.
struct Runner<'a>(&'a VerifyQueue);

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock();
            q.runners = q.runners.saturating_sub(1);
            if q.runners == 0 {
                q.jobs.clear();
            }
        }
    }
}

/// Runs rounds until the queue is empty.
async fn rounds(state: Arc<AppState>) {
    let _runner = Runner(&state.verify_queue);
    loop {
        let jobs = state.verify_queue.next_round();
        if jobs.is_empty() {
            return;
        }
        let claims: Vec<(String, RoomId)> = jobs
            .iter()
            .map(|j| (j.token.clone(), j.room.clone()))
            .collect();
        state.metrics.verify_rounds.inc();
        let app = state.clone();
        let verdicts = state
            .db(move |c| collab::consume_many(c, &app.access_cache, &claims))
            .await;
        match verdicts {
            Ok(verdicts) => {
                for (job, verdict) in jobs.into_iter().zip(verdicts) {
                    // A caller that went away no longer waits for its answer.
                    let _ = job.answer.send(Ok(verdict));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tokens = jobs.len(), "a verify round failed");
                for job in jobs {
                    let _ = job.answer.send(Err(ApiError::Unavailable));
                }
            }
        }
    }
}
