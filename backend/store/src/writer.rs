//! The writer thread: the only thread that writes. It applies write requests
//! in arrival order with group commit: it takes what is queued (up to
//! `max_batch`; in Fsync mode it keeps collecting for up to `interval` after
//! the first request), applies every request into one [`Tx`], commits it as
//! one atomic fjall batch, and only then calls each request's `done`.
//!
//! A failed commit closes the database and the writer reopens it with
//! backoff (see [`crate::engine`]); meanwhile it answers every write
//! `Recovering` with the time left until its next attempt.
//!
//! Process durability commits with `PersistMode::Buffer`: fjall's batch commit
//! then flushes its journal `BufWriter` to the OS under the journal lock, so
//! an answered write survives `kill -9` (not a power loss). Fsync durability
//! commits with `PersistMode::SyncData`: one fdatasync per batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fjall::PersistMode;

use crate::api::{Done, Durability, Request, Response, StoreError};
use crate::codec::{meta, Enc, Key};
use crate::config::StoreConfig;
use crate::db::{Db, Ks, MetaCache, Tx};
use crate::engine::{Engine, FIRST_BACKOFF, MAX_BACKOFF};
use crate::error::EngineError;
use crate::metrics::StoreMetrics;
use crate::{devices, expiry, groups, messages, now_ms, prekeys};

/// A queued request and its continuation.
pub(crate) struct Job {
    /// The request.
    pub(crate) request: Request,
    /// Where its outcome goes.
    pub(crate) done: Done,
}

/// The writer's state.
pub(crate) struct Writer {
    engine: Arc<Engine>,
    /// The open database; `None` from a failed commit until a reopening works.
    db: Option<Arc<Db>>,
    rx: Receiver<Job>,
    config: StoreConfig,
    metrics: Arc<StoreMetrics>,
    cache: MetaCache,
    /// While closed: when to try reopening.
    retry_at: Instant,
    /// The wait after the next failure.
    backoff: Duration,
}

impl Writer {
    /// A writer over `db` fed by `rx`.
    pub(crate) fn new(
        engine: Arc<Engine>,
        rx: Receiver<Job>,
        config: StoreConfig,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        let db = engine.db().ok();
        metrics.writable.store(1, Ordering::Relaxed);
        let (retry_at, backoff) = (Instant::now(), FIRST_BACKOFF);
        Self { engine, db, rx, config, metrics, cache: MetaCache::new(), retry_at, backoff }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(crate) fn run(mut self) {
        let sweep_every =
            (self.config.retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut next_sweep = Instant::now() + sweep_every;
        loop {
            let mut jobs = Vec::new();
            let wake = if self.db.is_some() { next_sweep } else { self.retry_at };
            match self.rx.recv_deadline(wake) {
                Ok(job) => {
                    jobs.push(job);
                    self.collect(&mut jobs);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.metrics.queue_depth.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
            if self.db.is_none() && !self.reopen() {
                self.refuse(jobs);
                continue;
            }
            let sweep = Instant::now() >= next_sweep;
            let more = self.apply(jobs, sweep);
            if sweep {
                next_sweep = if more { Instant::now() } else { Instant::now() + sweep_every };
            }
        }
    }

    /// Adds what else belongs in this batch.
    fn collect(&self, jobs: &mut Vec<Job>) {
        match self.config.durability {
            Durability::Process => {
                while jobs.len() < self.config.max_batch {
                    match self.rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
            Durability::Fsync { interval } => {
                let deadline = Instant::now() + interval;
                while jobs.len() < self.config.max_batch {
                    match self.rx.recv_deadline(deadline) {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
    }

    fn persist_mode(&self) -> PersistMode {
        match self.config.durability {
            Durability::Process => PersistMode::Buffer,
            Durability::Fsync { .. } => PersistMode::SyncData,
        }
    }

    /// Reopens the database if its time has come; whether it is open.
    fn reopen(&mut self) -> bool {
        let now = Instant::now();
        if now < self.retry_at {
            return false;
        }
        let mode = self.persist_mode();
        let reopened = self.engine.open_again().and_then(|db| {
            let mut tx = Tx::new(&db, &mut self.cache, now_ms());
            tx.put(Ks::Meta, Key::from_slice(meta::REOPENED), tx.now.to_be_bytes().to_vec());
            tx.commit(mode)?;
            Ok(db)
        });
        match reopened {
            Ok(db) => {
                self.engine.publish(db.clone());
                self.db = Some(db);
                self.metrics.writable.store(1, Ordering::Relaxed);
                self.metrics.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::info!("store: database reopened; accepting writes again");
                true
            }
            Err(err) => {
                self.retry_at = now + self.backoff;
                self.engine.announce(self.backoff);
                tracing::warn!(%err, retry_in_ms = self.backoff.as_millis(), "store: reopening failed");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                false
            }
        }
    }

    /// Answers jobs that came while the database is closed.
    fn refuse(&self, jobs: Vec<Job>) {
        for job in jobs {
            (job.done)(Err(self.recovering()));
        }
    }

    /// The answer while closed: the time left until the next attempt.
    fn recovering(&self) -> StoreError {
        let left = self.retry_at.saturating_duration_since(Instant::now());
        StoreError::Recovering { retry_after_ms: u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1) }
    }

    /// A commit failed: close the database (fjall refuses every later write
    /// until it is reopened) and try again after the backoff.
    fn failed(&mut self) {
        self.db = None;
        self.retry_at = Instant::now() + self.backoff;
        self.engine.close(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.metrics.writable.store(0, Ordering::Relaxed);
        self.metrics.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies, commits and answers one batch; returns whether the sweep has
    /// more to do.
    fn apply(&mut self, jobs: Vec<Job>, sweep: bool) -> bool {
        let Some(db) = self.db.clone() else {
            self.refuse(jobs);
            return false;
        };
        let mode = self.persist_mode();
        let retention_ms = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
        let (max_devices, prekey_low) = (self.config.max_devices, self.config.prekey_low);
        let mut tx = Tx::new(&db, &mut self.cache, now_ms());
        let mut answers: Vec<(Done, Result<Response, StoreError>)> = Vec::with_capacity(jobs.len());
        let count = jobs.len() as u64;
        for job in jobs {
            tx.begin();
            let result = apply_one(&mut tx, job.request, max_devices, prekey_low);
            if result.is_err() {
                tx.rollback();
            }
            answers.push((job.done, result));
        }
        let mut more = false;
        if sweep {
            tx.begin();
            match expiry::sweep(&mut tx, retention_ms) {
                Ok(m) => more = m,
                Err(err) => {
                    tx.rollback();
                    tracing::warn!(%err, "store: retention sweep failed");
                }
            }
        }
        let (deleted, expired) = (tx.deleted, tx.expired);
        let outcome = if tx.is_empty() {
            Ok(false)
        } else {
            let started = Instant::now();
            let committed = tx.commit(mode).map(|()| true);
            self.metrics.committed(started.elapsed());
            committed
        };
        if count > 0 {
            self.metrics.write_batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.batch_requests.fetch_add(count, Ordering::Relaxed);
        }
        match outcome {
            Ok(wrote) => {
                if wrote {
                    self.backoff = FIRST_BACKOFF;
                    self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                    if mode != PersistMode::Buffer {
                        self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.metrics.messages_deleted.fetch_add(deleted, Ordering::Relaxed);
                self.metrics.expired_entries.fetch_add(expired, Ordering::Relaxed);
                for (done, result) in answers {
                    done(result);
                }
            }
            Err(err) => {
                // The batch was not answered and the cache was cleared: every
                // request of it is refused, to be retried once the database is
                // open again.
                self.metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                drop(db);
                tracing::error!(%err, retry_in_ms = self.backoff.as_millis(), "store: commit failed; reopening");
                self.failed();
                for (done, _) in answers {
                    done(Err(self.recovering()));
                }
                more = false;
            }
        }
        more
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("cached", &self.cache.len()).finish_non_exhaustive()
    }
}

/// Applies one write request to the batch.
fn apply_one(
    tx: &mut Tx<'_>,
    request: Request,
    max_devices: u32,
    prekey_low: u32,
) -> Result<Response, StoreError> {
    match request {
        Request::Connect(req) => devices::connect(tx, req, max_devices).map(Response::Connected),
        Request::Send(req) => messages::send(tx, req).map(Response::Sent),
        Request::Ack(req) => messages::ack(tx, req).map(Response::Receipts),
        Request::Read(req) => crate::cursors::read(tx, req).map(Response::Receipts),
        Request::Group(req) => groups::change(tx, req).map(Response::GroupChanged),
        Request::PrekeyUpload(req) => prekeys::upload(tx, req).map(Response::PrekeyStock),
        Request::PrekeyFetch(req) => prekeys::fetch(tx, req, prekey_low).map(Response::PrekeyFetched),
        Request::SetVisibility { user, visibility } => {
            tx.put(Ks::Meta, Enc::tag(meta::VISIBILITY).user(user).key(), vec![visibility as u8]);
            Ok(Response::Done)
        }
        Request::GetVisibility { .. }
        | Request::Inbox(_)
        | Request::GroupGet { .. }
        | Request::Cursors { .. } => Err(EngineError::ReadOnWriter.into()),
    }
}

/// Whether a request goes to the writer.
pub(crate) fn is_write(request: &Request) -> bool {
    !matches!(
        request,
        Request::GetVisibility { .. }
            | Request::Inbox(_)
            | Request::GroupGet { .. }
            | Request::Cursors { .. }
    )
}
