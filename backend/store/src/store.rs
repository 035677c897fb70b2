//! [`Store`]: opens the database (one per shard), starts each shard's
//! writer and committer and the reader threads, and routes requests to them
//! through bounded queues (`chain`). The
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
use crate::chain::{Queue, Router};
use crate::config::StoreConfig;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::metrics::StoreMetrics;
use crate::shards::{Layout, Peers};
use crate::writer::{is_write, Committer, Place, Writer};
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

/// A read and its continuation.
struct ReadJob {
    request: Request,
    done: Done,
}

struct Inner {
    /// The writers' queues (`None` once closing; their drop wakes the
    /// writers).
    router: Option<Arc<Router>>,
    reads: Option<Sender<ReadJob>>,
    peers: Arc<Peers>,
    metrics: Arc<StoreMetrics>,
    threads: Vec<JoinHandle<()>>,
    /// How many threads were started (`threads` is drained at the close).
    spawned: usize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A chain in flight may hold the router a moment longer; its
        // queues close when it lets go (never while it answers anyone).
        self.router.take();
        self.reads.take();
        // A `done` that drops the last clone runs on a store thread (a
        // committer, a reader), which must not wait for the others: a
        // writer with more to apply waits for its committer's outcomes, and
        // that committer may be this thread. Their joining is left to a
        // thread of its own; this one ends once its queue is empty.
        let me = std::thread::current().id();
        let others: Vec<JoinHandle<()>> =
            self.threads.drain(..).filter(|handle| handle.thread().id() != me).collect();
        if others.len() < self.spawned {
            let _ = std::thread::Builder::new().name("store-close".into()).spawn(move || {
                for handle in others {
                    let _ = handle.join();
                }
            });
            return;
        }
        for handle in others {
            let _ = handle.join();
        }
    }
}

fn spawn(name: String, run: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(run)
        .map_err(|e| StoreError::Engine(EngineError::io(&e, format!("spawn: {e}"))))
}

impl Store {
    /// Opens the database in `config.dir` (created if missing; with several
    /// writers, one database per shard under it) and starts each shard's
    /// writer and committer and `config.readers` reader threads. Counters
    /// are recovered from the database lazily, on first use.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let layout = Layout::resolve(&config.dir, config.writers)?;
        crate::db::private_dir(&config.dir)?;
        let engines = (0..layout.count())
            .map(|shard| Engine::open(layout.dir(&config.dir, shard)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        layout.mark(&config.dir)?;
        let peers = Arc::new(Peers { layout, engines });
        let metrics = Arc::new(StoreMetrics::default());
        let (reads, read_rx) = bounded::<ReadJob>(config.queue);
        let mut threads = Vec::with_capacity(2 * layout.count() + config.readers);
        let (mut queues, mut receivers) = (Vec::new(), Vec::new());
        for _ in 0..layout.count() {
            let ((jobs, rx), (steps, steps_rx)) = (bounded(config.queue), unbounded());
            let bell = Arc::new(Bell::new());
            queues.push(Queue { jobs, steps, bell: bell.clone() });
            receivers.push((rx, steps_rx, bell));
        }
        let router = Arc::new(Router { layout, queues, metrics: metrics.clone() });
        for (shard, (rx, steps_rx, writer_bell)) in receivers.into_iter().enumerate() {
            // Unbounded: the writer hands over at most one batch with a commit
            // before it waits for that one's outcome (refusals aside, which it
            // makes one per batch of requests it took from its bounded queue).
            let (batches, batch_rx) = unbounded();
            let (outcome_tx, outcomes) = unbounded();
            let committer_bell = Arc::new(Bell::new());
            let committer = Committer {
                bell: writer_bell.clone(),
                batches: Some(batches),
                committer: committer_bell.clone(),
                outcomes,
            };
            let engine = peers.engines.get(shard).cloned().ok_or(EngineError::ThreadStopped)?;
            let place = Place { peers: peers.clone(), shard, router: Arc::downgrade(&router) };
            let writer = Writer::new(
                (engine.clone(), place),
                (rx, steps_rx),
                committer,
                config.clone(),
                metrics.clone(),
            );
            let suffix = if layout.count() == 1 { String::new() } else { format!("-{shard}") };
            threads.push(spawn(format!("store-writer{suffix}"), move || writer.run())?);
            let committer_metrics = metrics.clone();
            let ends = committer::Ends {
                batches: batch_rx,
                bell: committer_bell,
                outcomes: Some(outcome_tx),
                writer: writer_bell.clone(),
            };
            threads.push(spawn(format!("store-commit{suffix}"), move || {
                committer::run(&engine, ends, &committer_metrics);
            })?);
        }
        let retention_ms = u64::try_from(config.retention.as_millis()).unwrap_or(u64::MAX);
        for i in 0..config.readers {
            let (peers, rx, metrics) = (peers.clone(), read_rx.clone(), metrics.clone());
            threads.push(spawn(format!("store-reader-{i}"), move || {
                read_loop(&peers, &rx, &metrics, retention_ms);
            })?);
        }
        let spawned = threads.len();
        let inner = Inner { router: Some(router), reads: Some(reads), peers, metrics, threads, spawned };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Whether the store accepts writes now: false from an engine failure
    /// until the database is open again (see `README.md`, "Failures"); with
    /// several writers, while any shard's is closed.
    pub fn writable(&self) -> bool {
        self.inner.peers.engines.iter().all(|engine| engine.is_open())
    }

    /// The shard that holds `user`'s data (with several writers, its
    /// database is `shard-<n>` under the store's directory; always 0 with
    /// one). Each shard keeps its own copy of a message body its users'
    /// entries need, so what `messages_deleted` counts depends on it.
    pub fn shard_of(&self, user: protocol::UserId) -> usize {
        self.inner.peers.layout.user(user)
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }
}

fn read_loop(peers: &Peers, rx: &Receiver<ReadJob>, metrics: &StoreMetrics, retention_ms: u64) {
    while let Ok(job) = rx.recv() {
        metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        // The handles are let go after each read: fjall refuses to reopen a
        // database while a handle of the old one lives.
        (job.done)(reader::handle(peers, retention_ms, job.request));
    }
}

impl StoreApi for Store {
    fn writable(&self) -> bool {
        Store::writable(self)
    }

    fn call(&self, request: Request, done: Done) {
        let metrics = &self.inner.metrics;
        metrics.request(&request);
        if is_write(&request) {
            match &self.inner.router {
                Some(router) => router.start(request, done),
                None => done(Err(EngineError::Closed.into())),
            }
            return;
        }
        let Some(reads) = &self.inner.reads else {
            done(Err(EngineError::Closed.into()));
            return;
        };
        metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = reads.try_send(ReadJob { request, done }) {
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
