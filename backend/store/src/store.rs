//! [`Store`]: opens the database, starts the writer, its committer and the
//! reader threads, and routes requests to them through bounded queues. The
//! threads stop when the last clone is dropped: the queues disconnect, the
//! writer applies what is queued, the committer commits and answers what
//! the writer handed it, and the drop joins them (so the directory can be
//! reopened at once).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use crate::api::{Done, Request, StoreApi, StoreError};
use crate::bell::Bell;
use crate::config::StoreConfig;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::metrics::StoreMetrics;
use crate::writer::{is_write, Committer, Job, Writer};
use crate::{committer, reader};

/// The embedded store. Cheap to clone.
///
/// ```no_run
/// use backend_store::{Store, StoreApi, StoreConfig, Request};
/// let store = Store::open(StoreConfig::new("/var/lib/gateway/store")).unwrap();
/// store.call(Request::GetVisibility { user: protocol::UserId(1) }, Box::new(|result| {
///     println!("{result:?}");
/// }));
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writes: Option<Sender<Job>>,
    /// Rung after each request queued for the writer (see `bell.rs`).
    writer: Arc<Bell>,
    reads: Option<Sender<Job>>,
    engine: Arc<Engine>,
    metrics: Arc<StoreMetrics>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writes.take();
        self.writer.ring();
        self.reads.take();
        // A `done` that drops the last clone runs on a store thread, which
        // cannot join itself; it exits on its own once its queue is empty.
        let me = std::thread::current().id();
        for handle in self.threads.drain(..) {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl Store {
    /// Opens the database in `config.dir` (created if missing) and starts the
    /// writer, its committer and `config.readers` reader threads. Counters
    /// are recovered from the database lazily, on first use.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let engine = Arc::new(Engine::open(config.dir.clone())?);
        let metrics = Arc::new(StoreMetrics::default());
        let (writes, write_rx) = bounded(config.queue);
        let (reads, read_rx) = bounded::<Job>(config.queue);
        let spawn_err = |e: std::io::Error| StoreError::Engine(EngineError::io(&e, format!("spawn: {e}")));
        let mut threads = Vec::with_capacity(2 + config.readers);
        // Unbounded: the writer hands over at most one batch with a commit
        // before it waits for that one's outcome (refusals aside, which it
        // makes one per batch of requests it took from its bounded queue).
        let (batches, batch_rx) = unbounded();
        let (outcome_tx, outcomes) = unbounded();
        let (writer_bell, committer_bell) = (Arc::new(Bell::new()), Arc::new(Bell::new()));
        let committer = Committer {
            bell: writer_bell.clone(),
            batches: Some(batches),
            committer: committer_bell.clone(),
            outcomes,
        };
        let writer = Writer::new(engine.clone(), write_rx, committer, config.clone(), metrics.clone());
        threads.push(
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer.run())
                .map_err(spawn_err)?,
        );
        let (committer_engine, committer_metrics) = (engine.clone(), metrics.clone());
        let ends = committer::Ends {
            batches: batch_rx,
            bell: committer_bell,
            outcomes: Some(outcome_tx),
            writer: writer_bell.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("store-commit".into())
                .spawn(move || committer::run(&committer_engine, ends, &committer_metrics))
                .map_err(spawn_err)?,
        );
        let retention_ms = u64::try_from(config.retention.as_millis()).unwrap_or(u64::MAX);
        for i in 0..config.readers {
            let (engine, rx, metrics) = (engine.clone(), read_rx.clone(), metrics.clone());
            let handle = std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || read_loop(&engine, &rx, &metrics, retention_ms))
                .map_err(spawn_err)?;
            threads.push(handle);
        }
        let inner =
            Inner { writes: Some(writes), writer: writer_bell, reads: Some(reads), engine, metrics, threads };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Whether the store accepts writes now: false from an engine failure
    /// until the database is open again (see `README.md`, "Failures").
    pub fn writable(&self) -> bool {
        self.inner.engine.is_open()
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }
}

fn read_loop(engine: &Engine, rx: &Receiver<Job>, metrics: &StoreMetrics, retention_ms: u64) {
    while let Ok(job) = rx.recv() {
        metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        // The handle is let go after each read: fjall refuses to reopen a
        // database while a handle of the old one lives.
        let answer = engine.db().and_then(|db| reader::handle(&db, retention_ms, job.request));
        (job.done)(answer);
    }
}

impl StoreApi for Store {
    fn writable(&self) -> bool {
        Store::writable(self)
    }

    fn call(&self, request: Request, done: Done) {
        let metrics = &self.inner.metrics;
        metrics.request(&request);
        let write = is_write(&request);
        let queue = if write { &self.inner.writes } else { &self.inner.reads };
        let Some(queue) = queue else {
            done(Err(EngineError::Closed.into()));
            return;
        };
        metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(Job { request, done }) {
            Ok(()) if write => self.inner.writer.ring(),
            Ok(()) => {}
            Err(err) => {
                metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                let (job, error) = match err {
                    TrySendError::Full(job) => {
                        metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                        (job, StoreError::Overloaded)
                    }
                    TrySendError::Disconnected(job) => (job, EngineError::ThreadStopped.into()),
                };
                (job.done)(Err(error));
            }
        }
    }
}
