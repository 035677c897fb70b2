//! The committer thread: commits the batches the writer built, one at a
//! time and in order, and answers their requests once their commit returned.
//!
//! It lets the writer apply the next batch while this one is being written
//! (fjall's commit is about half of the writer's time under chat), so a
//! request waits behind one commit rather than behind a commit and the
//! building of the batch before it. The writer reads the batch in flight
//! under the next one, takes its [`Outcome`] before handing the next one
//! over, and refuses the next one if this one failed (it was built on
//! writes that never landed).
//!
//! Every answer of the store's writes is given here, refusals included, and
//! an outcome is sent before its batch's answers: an answer may drop the
//! last handle of the store, whose drop joins the writer, so the writer
//! never waits on this thread while it answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use fjall::PersistMode;

use crate::api::StoreError;
use crate::bell::Bell;
use crate::chain::{Finish, Output};
use crate::db::{Db, Writes};
use crate::engine::Engine;
use crate::metrics::StoreMetrics;

/// A request's (or a step's) continuation and its result.
pub(crate) type Answer = (Finish, Result<Output, StoreError>);

/// What the writer hands over: writes to commit (if any) and the answers to
/// give once they are on disk.
pub(crate) struct Batch {
    /// The commit; `None` for answers that wait on no write of their own
    /// (they still go after every batch handed over before them).
    pub(crate) commit: Option<Commit>,
    /// The batch's answers, in request order.
    pub(crate) answers: Vec<Answer>,
}

/// One group commit.
pub(crate) struct Commit {
    /// The database the batch was built on.
    pub(crate) db: Arc<Db>,
    /// The writes; the writer keeps a clone to read them until the outcome.
    pub(crate) writes: Arc<Writes>,
    /// How durably.
    pub(crate) mode: PersistMode,
    /// What the requests are told to wait if it fails: the writer's backoff
    /// before its next reopening.
    pub(crate) retry_after: Duration,
    /// What the batch does that metrics count.
    pub(crate) counts: Counts,
}

/// What a batch does that metrics count, added once it committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    /// Message bodies deleted.
    pub(crate) deleted: u64,
    /// Inbox entries expired.
    pub(crate) expired: u64,
    /// Messages entered from a conversation's log.
    pub(crate) caught_up: u64,
}

/// How a commit ended, sent to the writer for each [`Batch`] with a commit.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// On disk: the writer folds the writes into its caches.
    Committed,
    /// Not written: the database was closed and the batch's requests were
    /// answered `Recovering`. The writer reopens it.
    Failed(StoreError),
}

/// The committer's ends: the batches it takes (its bell rung after each),
/// and the outcomes it gives (the writer's bell rung after each).
pub(crate) struct Ends {
    /// The batches, in order.
    pub(crate) batches: Receiver<Batch>,
    /// What this thread sleeps on: the writer rings it after each batch.
    pub(crate) bell: Arc<Bell>,
    /// The outcomes (`None` once the ends are dropped).
    pub(crate) outcomes: Option<Sender<Outcome>>,
    /// What the writer sleeps on: rung here after each outcome.
    pub(crate) writer: Arc<Bell>,
}

impl Drop for Ends {
    /// The writer learns the committer is gone from its channels, once
    /// woken: they are closed first, then the writer rung. This runs however
    /// the thread ends, a continuation's panic included (tests unwind), so a
    /// writer waiting for an outcome is never left asleep, and with it the
    /// store's drop that joins it; a batch it hands over from then on is
    /// answered by the writer itself (`Writer::hand_over`). (Batches queued
    /// before such a panic are dropped unanswered: the daemon aborts on one.)
    fn drop(&mut self) {
        self.batches = crossbeam_channel::never();
        self.outcomes.take();
        self.writer.ring();
    }
}

/// Runs until the writer is gone and every batch it handed over is answered.
pub(crate) fn run(engine: &Engine, ends: Ends, metrics: &StoreMetrics) {
    ends.bell.attach();
    loop {
        let Batch { commit, mut answers } = match ends.batches.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                ends.bell.sleep(None);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if let Some(commit) = commit {
            let retry_after = commit.retry_after;
            let outcome = match commit.write(metrics) {
                Ok(()) => Outcome::Committed,
                Err(err) => {
                    // Closed before anyone hears `Recovering`, so that whoever
                    // does finds the store unwritable (the writer, which
                    // reopens it, learns from the outcome).
                    engine.close(retry_after);
                    metrics.failures.fetch_add(1, Ordering::Relaxed);
                    let retry_after_ms = u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX).max(1);
                    for (_, result) in &mut answers {
                        *result = Err(StoreError::Recovering { retry_after_ms });
                    }
                    Outcome::Failed(err)
                }
            };
            // The writer gone, the store is closing: the answers still go.
            if ends.outcomes.as_ref().is_some_and(|outcomes| outcomes.send(outcome).is_ok()) {
                ends.writer.ring();
            }
        }
        for (done, result) in answers {
            done.call(result);
        }
    }
}

impl Commit {
    /// Writes the batch and counts it. Its handles on the database and the
    /// writes are let go on return, before the writer hears the outcome: it
    /// then owns the writes again, and a failed database can be reopened.
    fn write(self, metrics: &StoreMetrics) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.writes.commit(&self.db, self.mode);
        metrics.committed(started.elapsed());
        match result {
            Ok(()) => {
                metrics.commits.fetch_add(1, Ordering::Relaxed);
                if self.mode != PersistMode::Buffer {
                    metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                metrics.messages_deleted.fetch_add(self.counts.deleted, Ordering::Relaxed);
                metrics.expired_entries.fetch_add(self.counts.expired, Ordering::Relaxed);
                metrics.caught_up.fetch_add(self.counts.caught_up, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                Err(err)
            }
        }
    }
}
