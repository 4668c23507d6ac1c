//! Single-token verifies (`POST /collaboration/verify`) share database
//! rounds: each call queues its token, and a round claims everything queued
//! (up to [`MAX_VERIFY_BATCH`]) with [`collab::consume_many`], the statement
//! behind `verify-batch`. [`ROUNDS_IN_FLIGHT`] rounds run at once (one); a
//! call arriving while a round runs waits for the next, which takes it
//! together with every call that arrived meanwhile, so under load a round
//! serves many calls (group commit), and a call alone waits for nothing but
//! its own round.
//!
//! The rounds run on tasks of their own on the runtime that started control
//! (not on the HTTP worker of the call that started them, which a graceful
//! shutdown may stop first): a caller that goes away (its client
//! disconnected) cannot stop a round halfway or leave the queue without a
//! runner. A job whose caller went away is dropped before its round, so its
//! token is not spent. At most [`MAX_QUEUED`] calls wait; past that (a
//! database that stopped answering) a call is answered 503 at once instead
//! of waiting behind rounds that each wait out the pool's timeout.
//!
//! Semantics are those of a single verify: a token is claimed at most once
//! (two calls with one token in one round: the first is verified, the
//! second refused), and each call gets its own verdict.

use std::sync::{Arc, Mutex};

use tandem_protocol::collab::MAX_VERIFY_BATCH;
use tandem_protocol::room::RoomId;
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::collab::{self, Verdict};

/// Rounds running at once. One: the fewest, largest rounds. At 5,000
/// verifies/s it gave the lowest p99 on both databases (medians of 3, p99
/// SQLite / PostgreSQL: one round 4.52 / 3.13 ms, two 5.52 / 4.06, four
/// 4.84 / 4.28; BENCHMARKS.md). A round that hangs holds up the queue, which
/// is why callers that left are dropped and the queue is bounded.
const ROUNDS_IN_FLIGHT: usize = 1;

/// Calls that may wait for a round: twenty full rounds.
const MAX_QUEUED: usize = 20 * MAX_VERIFY_BATCH;

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
pub struct VerifyQueue {
    queue: Mutex<Queue>,
    /// Where the rounds run.
    runtime: tokio::runtime::Handle,
}

impl VerifyQueue {
    /// A queue whose rounds run on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> VerifyQueue {
        VerifyQueue {
            queue: Mutex::new(Queue::default()),
            runtime,
        }
    }

    /// Verifies one token in the next round; `Unavailable` when the round's
    /// database work failed or too many calls wait already.
    pub async fn verify(
        state: &Arc<AppState>,
        token: String,
        room: RoomId,
    ) -> Result<Verdict, ApiError> {
        let (answer, verdict) = oneshot::channel();
        let start = {
            let mut q = state.verify_queue.lock();
            if q.jobs.len() >= MAX_QUEUED {
                tracing::warn!(waiting = q.jobs.len(), "verify queue full: answering 503");
                return Err(ApiError::Unavailable);
            }
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
            state.verify_queue.runtime.spawn(rounds(state.clone()));
        }
        verdict.await.map_err(|_| ApiError::Unavailable)?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next round's jobs (at most [`MAX_VERIFY_BATCH`]), without those
    /// whose caller went away; none, and the runner stands down, when the
    /// queue is empty.
    fn next_round(&self) -> Vec<Job> {
        let mut q = self.lock();
        q.jobs.retain(|j| !j.answer.is_closed());
        if q.jobs.is_empty() {
            q.runners -= 1;
            return Vec::new();
        }
        let take = q.jobs.len().min(MAX_VERIFY_BATCH);
        q.jobs.drain(..take).collect()
    }
}

/// Stands the runner down if its task ends before the queue is empty (a
/// panic, or the runtime shutting down); when it was the last one, the
/// queued callers are answered `Unavailable` (their answers dropped) instead
/// of waiting for a runner that is gone, and the next call starts a new one.
struct Runner<'a> {
    queue: &'a VerifyQueue,
    /// Set when the runner stood down in [`VerifyQueue::next_round`].
    done: bool,
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut q = self.queue.lock();
            q.runners = q.runners.saturating_sub(1);
            if q.runners == 0 {
                q.jobs.clear();
            }
        }
    }
}

/// Runs rounds until the queue is empty.
async fn rounds(state: Arc<AppState>) {
    let mut runner = Runner {
        queue: &state.verify_queue,
        done: false,
    };
    loop {
        let jobs = runner.queue.next_round();
        if jobs.is_empty() {
            runner.done = true;
            return;
        }
        let (claims, answers): (Vec<(String, RoomId)>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.token, j.room), j.answer))
            .unzip();
        state.metrics.verify_rounds.inc();
        let app = state.clone();
        let verdicts = state
            .db(move |c| collab::consume_many(c, &app.access_cache, &claims))
            .await;
        match verdicts {
            Ok(verdicts) => {
                for (answer, verdict) in answers.into_iter().zip(verdicts) {
                    // A caller that went away no longer waits for its answer.
                    let _ = answer.send(Ok(verdict));
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, tokens = answers.len(), "a verify round failed");
                for answer in answers {
                    let _ = answer.send(Err(ApiError::Unavailable));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> VerifyQueue {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        VerifyQueue::new(rt.handle().clone())
    }

    /// Queues `n` jobs named 0.. (as a call does, the runner counted);
    /// returns their receivers.
    fn push(q: &VerifyQueue, n: usize) -> Vec<oneshot::Receiver<Result<Verdict, ApiError>>> {
        let room = RoomId::parse("doc-room1").expect("a room id");
        let mut out = Vec::new();
        let mut g = q.lock();
        for i in 0..n {
            let (answer, rx) = oneshot::channel();
            g.jobs.push(Job {
                token: i.to_string(),
                room: room.clone(),
                answer,
            });
            out.push(rx);
        }
        g.runners += 1;
        out
    }

    #[test]
    fn rounds_take_at_most_a_batch_in_order_and_skip_callers_that_left() {
        let q = queue();
        let mut waiting = push(&q, MAX_VERIFY_BATCH + 5);
        // Callers 1 and 3 went away: their tokens are not claimed.
        drop(waiting.remove(3));
        drop(waiting.remove(1));
        let first: Vec<String> = q.next_round().into_iter().map(|j| j.token).collect();
        assert_eq!(first.len(), MAX_VERIFY_BATCH);
        assert_eq!(&first[..3], ["0", "2", "4"]);
        let second: Vec<String> = q.next_round().into_iter().map(|j| j.token).collect();
        assert_eq!(second.len(), 3);
        assert_eq!(second.last().map(String::as_str), Some("104"));
        assert_eq!(q.lock().runners, 1, "still running while it found work");
        assert!(q.next_round().is_empty());
        assert_eq!(q.lock().runners, 0, "stood down on an empty queue");
    }

    #[test]
    fn a_runner_gone_before_the_queue_emptied_stands_down_and_frees_its_callers() {
        let q = queue();
        let mut waiting = push(&q, 3);
        q.lock().runners += 1; // a second runner
        drop(Runner {
            queue: &q,
            done: false,
        });
        // Another runner remains: the jobs stay for it.
        assert_eq!(q.lock().runners, 1);
        assert_eq!(q.lock().jobs.len(), 3);
        drop(Runner {
            queue: &q,
            done: false,
        });
        // The last one gone: nobody would answer, so the callers are freed.
        assert_eq!(q.lock().runners, 0);
        assert!(q.lock().jobs.is_empty());
        for rx in &mut waiting {
            assert!(rx.try_recv().is_err(), "the answer was dropped: 503");
        }
        // A runner that stood down normally changes nothing.
        push(&q, 1);
        drop(Runner {
            queue: &q,
            done: true,
        });
        assert_eq!(q.lock().runners, 1);
    }
}
