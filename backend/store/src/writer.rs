//! The writer thread: the only thread that writes. It applies write requests
//! in arrival order with group commit: it takes what is queued (up to
//! `max_batch`; in Fsync mode it keeps collecting for up to `interval` after
//! the first request), applies every request into one [`Tx`], and hands the
//! batch's writes and answers to the committer thread
//! ([`crate::committer`]), which commits them as one atomic fjall batch and
//! only then calls each request's `done`.
//!
//! The commit is pipelined: while batch N is being committed, the writer
//! applies batch N+1 over N's writes (a request sees every request before
//! it). It waits for N's outcome before it hands N+1 over: if N committed,
//! N's writes enter the writer's caches; if N failed, N+1 was built on
//! writes that never landed and every request of it is refused too. So at
//! most one batch is in flight, the caches only ever hold committed values,
//! and every answer still follows the commit of what it reports.
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
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use fjall::PersistMode;

use crate::api::{Durability, Request, Response, StoreError};
use crate::bell::Bell;
use crate::cache::MetaCache;
use crate::chain::{Job, Output, Router, Step, StepOut, Work};
use crate::codec::{meta, Enc, Key};
use crate::committer::{Answer, Batch, Commit, Counts, Outcome};
use crate::config::StoreConfig;
use crate::db::{Db, Ks, Tx, Writes};
use crate::engine::{Engine, FIRST_BACKOFF, MAX_BACKOFF};
use crate::error::EngineError;
use crate::metrics::StoreMetrics;
use crate::shards::Peers;
use crate::{cursors, devices, expiry, fanout, groups, messages, now_ms, prekeys};

/// The writer's ends: its own bell, and its channels to the committer
/// thread (see [`crate::bell`] for why each send rings).
pub(crate) struct Committer {
    /// What the writer sleeps on: rung by the store after each request it
    /// queues and by the committer after each outcome.
    pub(crate) bell: Arc<Bell>,
    /// Where built batches go (`None` once the writer is dropped).
    pub(crate) batches: Option<Sender<Batch>>,
    /// What the committer sleeps on.
    pub(crate) committer: Arc<Bell>,
    /// One outcome per batch with a commit, in order.
    pub(crate) outcomes: Receiver<Outcome>,
}

impl Drop for Committer {
    /// The committer learns the writer is gone from its queue, once woken.
    fn drop(&mut self) {
        self.batches.take();
        self.committer.ring();
    }
}

/// The writer's state.
pub(crate) struct Writer {
    engine: Arc<Engine>,
    /// The open database; `None` from a failed commit until a reopening works.
    db: Option<Arc<Db>>,
    rx: Receiver<Job>,
    /// Later steps of chains under way (`chain::Queue::steps`), taken in
    /// turn with requests.
    steps: Receiver<Job>,
    /// Which queue [`Writer::next`] tried first last time.
    fair: std::cell::Cell<bool>,
    committer: Committer,
    /// The batch being committed, if any: read under the next one, folded
    /// into the cache once its outcome says it committed.
    in_flight: Option<Arc<Writes>>,
    config: StoreConfig,
    metrics: Arc<StoreMetrics>,
    cache: MetaCache,
    /// While closed: when to try reopening.
    retry_at: Instant,
    /// The wait after the next failure.
    backoff: Duration,
    /// Every shard's engine, and this writer's shard.
    peers: Arc<Peers>,
    shard: usize,
    /// Where receipt notes for other shards go once their batch committed.
    router: Weak<Router>,
}

/// Where a writer is among the shards.
pub(crate) struct Place {
    /// Every shard's engine.
    pub(crate) peers: Arc<Peers>,
    /// The writer's shard.
    pub(crate) shard: usize,
    /// The shards' queues.
    pub(crate) router: Weak<Router>,
}

/// What woke the writer.
enum Wake {
    /// A request.
    Job(Job),
    /// The batch in flight settled.
    Settled,
    /// The sweep's or the reopening's time.
    Timeout,
    /// Every sender is gone.
    Disconnected,
}

impl Writer {
    /// A writer over `db` fed by `rx`, handing its batches to `committer`.
    pub(crate) fn new(
        (engine, place): (Arc<Engine>, Place),
        (rx, steps): (Receiver<Job>, Receiver<Job>),
        committer: Committer,
        config: StoreConfig,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        let db = engine.db().ok();
        let (retry_at, backoff) = (Instant::now(), FIRST_BACKOFF);
        let cache = MetaCache::new();
        let Place { peers, shard, router } = place;
        Self {
            engine,
            db,
            rx,
            steps,
            fair: std::cell::Cell::new(false),
            committer,
            in_flight: None,
            config,
            metrics,
            cache,
            retry_at,
            backoff,
            peers,
            shard,
            router,
        }
    }

    /// Runs until every sender is gone and the queue is drained. What is in
    /// flight then is the committer's to finish (the store's drop joins it).
    pub(crate) fn run(mut self) {
        self.committer.bell.attach();
        let sweep_every =
            (self.config.retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut next_sweep = Instant::now() + sweep_every;
        loop {
            let mut jobs = Vec::new();
            let wake = if self.db.is_some() { next_sweep } else { self.retry_at };
            match self.wait(wake) {
                Wake::Job(job) => {
                    jobs.push(job);
                    self.collect(&mut jobs);
                }
                Wake::Settled => continue,
                Wake::Timeout => {}
                Wake::Disconnected => break,
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

    /// Waits for a request until `deadline`; with a batch in flight, for its
    /// outcome too (a failed commit is acted on at once, not at the next request).
    fn wait(&mut self, deadline: Instant) -> Wake {
        loop {
            if self.in_flight.is_some() {
                match self.committer.outcomes.try_recv() {
                    Ok(outcome) => {
                        self.settle(Some(outcome));
                        return Wake::Settled;
                    }
                    Err(TryRecvError::Disconnected) => {
                        self.settle(None);
                        return Wake::Settled;
                    }
                    Err(TryRecvError::Empty) => {}
                }
            }
            match self.next() {
                Ok(job) => return Wake::Job(job),
                Err(TryRecvError::Disconnected) => return Wake::Disconnected,
                Err(TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return Wake::Timeout;
            }
            self.committer.bell.sleep(Some(deadline));
        }
    }

    /// The outcome of the batch in flight, once the committer sends it
    /// (`None`: the committer is gone).
    fn outcome(&self) -> Option<Outcome> {
        loop {
            match self.committer.outcomes.try_recv() {
                Ok(outcome) => return Some(outcome),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.committer.bell.sleep(None),
            }
        }
    }

    /// The next job: a chain's step before a new request. Disconnected
    /// once both queues are closed and empty.
    fn next(&self) -> Result<Job, TryRecvError> {
        if self.peers.layout.count() == 1 {
            // No chains with one shard.
            return self.rx.try_recv();
        }
        // Each queue first in turn: steps of other shards' chains cannot
        // starve this shard's own requests, nor the other way round.
        let steps_first = !self.fair.get();
        self.fair.set(steps_first);
        let (first, second) = if steps_first { (&self.steps, &self.rx) } else { (&self.rx, &self.steps) };
        match first.try_recv() {
            Ok(job) => Ok(job),
            Err(a) => match (second.try_recv(), a) {
                (Ok(job), _) => Ok(job),
                (Err(TryRecvError::Disconnected), TryRecvError::Disconnected) => {
                    Err(TryRecvError::Disconnected)
                }
                (Err(_), _) => Err(TryRecvError::Empty),
            },
        }
    }
    /// Adds what else belongs in this batch.
    fn collect(&self, jobs: &mut Vec<Job>) {
        // Fsync durability waits for more, up to its interval after the first.
        let deadline = match self.config.durability {
            Durability::Process => None,
            Durability::Fsync { interval } => Some(Instant::now() + interval),
        };
        while jobs.len() < self.config.max_batch {
            match self.next() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty) => match deadline {
                    Some(deadline) if Instant::now() < deadline => self.committer.bell.sleep(Some(deadline)),
                    _ => break,
                },
                Err(TryRecvError::Disconnected) => break,
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
                // Never below 0 (a reopening always follows a failure).
                let _ = self
                    .metrics
                    .closed
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
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

    /// Hands a batch to the committer; if it stopped (a continuation
    /// panicked on it), answers here, refusing what it would have committed.
    fn hand_over(&self, batch: Batch) {
        let sent = match &self.committer.batches {
            Some(batches) => batches.send(batch).map_err(|err| err.into_inner()),
            None => Err(batch),
        };
        match sent {
            Ok(()) => self.committer.committer.ring(),
            Err(Batch { commit, answers }) => {
                for (done, result) in answers {
                    done.call(if commit.is_some() { Err(EngineError::ThreadStopped.into()) } else { result });
                }
            }
        }
    }

    /// Answers jobs that came while the database is closed.
    fn refuse(&self, jobs: Vec<Job>) {
        let answers = jobs.into_iter().map(|job| (job.done, Err(self.recovering()))).collect();
        self.hand_over(Batch { commit: None, answers });
    }

    /// The answer while closed: the time left until the next attempt.
    fn recovering(&self) -> StoreError {
        let left = self.retry_at.saturating_duration_since(Instant::now());
        StoreError::Recovering { retry_after_ms: u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1) }
    }

    /// Acts on `outcome`, that of the batch in flight (`None`: the committer
    /// is gone); whether that batch committed.
    fn settle(&mut self, outcome: Option<Outcome>) -> bool {
        let Some(writes) = self.in_flight.take() else {
            return true;
        };
        match outcome {
            Some(Outcome::Committed) => {
                self.backoff = FIRST_BACKOFF;
                // The committer let go of its handle before it sent the
                // outcome; were it still held, forgetting is always right.
                match Arc::into_inner(writes) {
                    Some(writes) => self.cache.fold(writes),
                    None => self.cache.clear(),
                }
                true
            }
            failed => {
                let err = match failed {
                    Some(Outcome::Failed(err)) => err,
                    _ => EngineError::ThreadStopped.into(),
                };
                tracing::error!(%err, retry_in_ms = self.backoff.as_millis(), "store: commit failed; reopening");
                self.failed();
                false
            }
        }
    }

    /// A commit failed: the database is closed (fjall refuses every later
    /// write until it is reopened; the committer closed it and counted the
    /// failure), to be reopened after the backoff.
    fn failed(&mut self) {
        self.cache.clear();
        self.db = None;
        self.retry_at = Instant::now() + self.backoff;
        self.engine.close(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.metrics.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies one batch over the one in flight and hands it over once that
    /// one settled; returns whether the sweep has more to do.
    fn apply(&mut self, jobs: Vec<Job>, sweep: bool) -> bool {
        let Some(db) = self.db.clone() else {
            self.refuse(jobs);
            return false;
        };
        let retention_ms = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
        let (max_devices, prekey_low) = (self.config.max_devices, self.config.prekey_low);
        let pending = self.in_flight.clone();
        let peers = self.peers.clone();
        let mut tx = Tx::after(&db, &mut self.cache, pending.as_deref(), now_ms()).on(&peers, self.shard);
        let mut answers: Vec<Answer> = Vec::with_capacity(jobs.len() + 1);
        let count = jobs.len() as u64;
        for job in jobs {
            tx.begin();
            let result = match job.work {
                Work::Api(request) => apply_one(&mut tx, request, max_devices, prekey_low).map(Output::Api),
                Work::Step(step) => apply_step(&mut tx, *step).map(Output::Step),
            };
            if result.is_err() {
                tx.rollback();
            }
            let done = if tx.notes.is_empty() {
                job.done
            } else {
                job.done.after_notes(self.router.clone(), std::mem::take(&mut tx.notes))
            };
            answers.push((done, result));
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
        let counts = Counts { deleted: tx.deleted, expired: tx.expired, caught_up: tx.caught_up };
        let writes = tx.into_writes();
        drop(pending);
        if count > 0 {
            self.metrics.write_batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.batch_requests.fetch_add(count, Ordering::Relaxed);
        }
        let settled = self.in_flight.is_none() || {
            let outcome = self.outcome();
            self.settle(outcome)
        };
        if !settled {
            // Built on writes that never landed (a duplicate found there,
            // a seq counted on them): refused with the batch before.
            for (_, result) in &mut answers {
                *result = Err(self.recovering());
            }
            self.hand_over(Batch { commit: None, answers });
            return false;
        }
        if writes.is_empty() {
            self.hand_over(Batch { commit: None, answers });
            return more;
        }
        let writes = Arc::new(writes);
        self.in_flight = Some(writes.clone());
        let (mode, retry_after) = (self.persist_mode(), self.backoff);
        let commit = Commit { db, writes, mode, retry_after, counts };
        self.hand_over(Batch { commit: Some(commit), answers });
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
        Request::Send(req) => match messages::send(tx, req)? {
            (sent, enters) if enters.is_empty() => Ok(Response::Sent(sent)),
            // Only a chain (`crate::chain`) runs what spans shards.
            _ => Err(EngineError::CrossShard.into()),
        },
        Request::Ack(req) => messages::ack(tx, req).map(Response::Receipts),
        Request::Read(req) => crate::cursors::read(tx, req).map(Response::Receipts),
        Request::Group(req) => match groups::change(tx, req)? {
            (changed, enters) if enters.is_empty() => Ok(Response::GroupChanged(changed)),
            _ => Err(EngineError::CrossShard.into()),
        },
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

/// Applies one step of a chain to the batch.
fn apply_step(tx: &mut Tx<'_>, step: Step) -> Result<StepOut, StoreError> {
    match step {
        Step::Send(req) => messages::send(tx, req).map(|(sent, enters)| StepOut::Sent(sent, enters)),
        Step::Group(req) => groups::change(tx, req).map(|(changed, enters)| StepOut::Group(changed, enters)),
        Step::Enter(enter) => fanout::enter(tx, enter).map(StepOut::Entered),
        Step::Notes(notes) => cursors::store_notes(tx, notes).map(|()| StepOut::Done),
        Step::Trim(conv, conv_seq) => fanout::trim(tx, conv, conv_seq).map(|()| StepOut::Done),
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use crossbeam_channel::{bounded, unbounded};
    use protocol::{Conversation, DeviceId, UserId};

    use super::*;
    use crate::api::{Connect, SendMessage, Sent};
    use crate::chain::Finish;

    type Answered = Receiver<(u64, Result<Response, StoreError>)>;

    /// A writer on its own thread, with the test as its committer.
    struct Rig {
        jobs: Sender<Job>,
        batches: Receiver<Batch>,
        outcomes: Sender<Outcome>,
        /// The writer's bell, rung after each request and outcome as the store
        /// and the committer do.
        bell: Arc<Bell>,
        answers: Sender<(u64, Result<Response, StoreError>)>,
        answered: Answered,
        engine: Arc<Engine>,
        metrics: Arc<StoreMetrics>,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let engine = Arc::new(Engine::open(dir.path().to_path_buf()).unwrap());
            let metrics = Arc::new(StoreMetrics::default());
            let (jobs, rx) = bounded(16);
            let (batches_tx, batches) = unbounded();
            let (outcomes, outcomes_rx) = unbounded();
            let bell = Arc::new(Bell::new());
            let committer = Committer {
                bell: bell.clone(),
                batches: Some(batches_tx),
                committer: Arc::new(Bell::new()),
                outcomes: outcomes_rx,
            };
            let peers =
                Arc::new(Peers { layout: crate::shards::Layout::single(), engines: vec![engine.clone()] });
            let place = Place { peers, shard: 0, router: Weak::new() };
            let config = StoreConfig::new(dir.path());
            let (_steps, steps_rx) = unbounded();
            let writer =
                Writer::new((engine.clone(), place), (rx, steps_rx), committer, config, metrics.clone());
            std::thread::spawn(move || writer.run());
            let (answers, answered) = unbounded();
            Self { jobs, batches, outcomes, bell, answers, answered, engine, metrics, _dir: dir }
        }

        /// Queues `request`, answered under `label`.
        fn call(&self, label: u64, request: Request) {
            let answers = self.answers.clone();
            let done: crate::api::Done = Box::new(move |result| {
                let _ = answers.send((label, result));
            });
            self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
            self.jobs.send(Job { work: Work::Api(request), done: Finish::Api(done) }).unwrap();
            self.bell.ring();
        }

        /// Queues `request` and waits until the writer has applied it.
        fn applied(&self, label: u64, request: Request) {
            let before = self.metrics.batch_requests.load(Ordering::Relaxed);
            self.call(label, request);
            while self.metrics.batch_requests.load(Ordering::Relaxed) == before {
                std::thread::yield_now();
            }
        }

        /// The next batch handed over.
        fn batch(&self) -> Batch {
            self.batches.recv_timeout(Duration::from_secs(10)).unwrap()
        }

        /// Commits `batch` for real and answers it, as the committer does.
        fn commit(&self, batch: Batch) {
            if let Some(commit) = batch.commit {
                commit.writes.commit(&commit.db, PersistMode::Buffer).unwrap();
                drop(commit);
                self.outcomes.send(Outcome::Committed).unwrap();
                self.bell.ring();
            }
            for (done, result) in batch.answers {
                done.call(result);
            }
        }

        fn answer(&self) -> (u64, Result<Response, StoreError>) {
            self.answered.recv_timeout(Duration::from_secs(10)).unwrap()
        }
    }

    fn send(client_id: u64) -> Request {
        let to = Conversation::Direct(UserId(2));
        let payload = Bytes::from_static(b"hello");
        Request::Send(SendMessage { user: UserId(1), device: DeviceId(1), client_id, to, payload })
    }

    fn sent(answer: (u64, Result<Response, StoreError>)) -> (u64, Sent) {
        match answer {
            (label, Ok(Response::Sent(sent))) => (label, sent),
            other => panic!("expected Sent, got {other:?}"),
        }
    }

    /// The writer builds the next batch over the one being committed: a
    /// retried Send finds the first attempt there. If that batch commits,
    /// the retry is answered as its duplicate; if it fails, the retry is
    /// refused with it (its answer would name a message never stored).
    #[test]
    fn a_batch_built_on_a_failed_commit_is_refused_with_it() {
        let rig = Rig::new();
        for user in [1, 2] {
            rig.call(0, Request::Connect(Connect { user: UserId(user), device: DeviceId(1) }));
            rig.commit(rig.batch());
            assert!(matches!(rig.answer(), (0, Ok(Response::Connected(_)))));
        }

        // Batch N holds a Send; N+1, its retry, is built while N is in flight.
        rig.applied(1, send(10));
        let first = rig.batch();
        rig.applied(2, send(10));
        assert!(rig.batches.try_recv().is_err(), "N+1 waits for N's outcome");
        rig.commit(first);
        let (_, original) = sent(rig.answer());
        rig.commit(rig.batch());
        let (label, retry) = sent(rig.answer());
        assert_eq!(label, 2);
        assert!(retry.duplicate && !original.duplicate);
        assert_eq!(retry.message.id, original.message.id);

        // Now N fails while N+1 (its retry) is built on it.
        rig.applied(3, send(11));
        let failing = rig.batch();
        rig.applied(4, send(11));
        drop(failing.commit);
        let refusal = StoreError::Recovering { retry_after_ms: 100 };
        rig.outcomes.send(Outcome::Failed(refusal)).unwrap();
        rig.bell.ring();
        let refused = rig.batch();
        assert!(refused.commit.is_none(), "nothing of N+1 is committed");
        rig.commit(refused);
        let (label, result) = rig.answer();
        assert_eq!(label, 4);
        assert!(matches!(result, Err(StoreError::Recovering { .. })), "{result:?}");
        assert!(!rig.engine.is_open(), "closed until reopened");
    }
}
