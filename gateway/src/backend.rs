//! The backend bridge: the store and push services as the workers see them,
//! embedded in this process or reached over gRPC (`[store] mode`, `[push]
//! mode`), and the channel that brings store answers back to a worker.
//!
//! A worker never waits for the store: it calls [`StoreApi::call`] (which never
//! blocks) with a completion that puts the answer on the worker's reply
//! channel and wakes its loop. The wake is coalesced: a flag set by the first
//! answer since the worker last drained the channel, so a burst of answers
//! costs one wake-up, not one per answer. The channel has no bound of its own:
//! each worker caps its requests in flight (`store.max_inflight`), which bounds
//! it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::Waker;
use anyhow::{Context, Result};
use backend_push::{ProviderConfig, Push, PushApi, PushConfig as EmbeddedPushConfig};
use backend_rpc::{RemotePush, RemotePushConfig, RemoteStore, RemoteStoreConfig};
use backend_store::{Done, Durability, Request, Response, Store, StoreApi, StoreConfig, StoreError};
use crossbeam_channel::{Receiver, Sender};
use gateway_admin::{Render, WorkerMetrics};

use crate::config::{self, BackendMode, Config};

/// The store and push services of this node.
#[derive(Clone)]
pub struct Backend {
    /// Messages, inboxes, cursors, groups, devices, prekeys.
    pub store: Arc<dyn StoreApi>,
    /// Notifications to offline devices.
    pub push: Arc<dyn PushApi>,
    /// Prometheus text of the embedded services (empty for remote ones: their
    /// own processes export them).
    pub metrics: Arc<Render>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("store", &self.store)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Opens or connects the services `config` names.
    pub fn start(config: &Config) -> Result<Self> {
        let mut sources: Vec<Box<Render>> = Vec::new();
        let store: Arc<dyn StoreApi> = match config.store.mode {
            BackendMode::Embedded => {
                let dir = config.node.data_dir.join("store");
                let store = Store::open(store_config(&config.store, dir.clone()))
                    .with_context(|| format!("opening the store in {}", dir.display()))?;
                let metrics = store.clone();
                sources.push(Box::new(move |out| metrics.metrics().render(out)));
                Arc::new(store)
            }
            BackendMode::Remote => {
                let mut remote = RemoteStoreConfig::new(config.store.endpoint.clone());
                remote.request_timeout = Duration::from_millis(config.store.timeout_ms);
                // No more client threads than the node has workers: a
                // one-worker node (a fleet packed on one box) runs the client
                // on one thread.
                remote.worker_threads = remote.worker_threads.min(config.worker_threads());
                Arc::new(
                    RemoteStore::start(remote)
                        .with_context(|| format!("store endpoint {}", config.store.endpoint))?,
                )
            }
        };
        let push: Arc<dyn PushApi> = match config.push.mode {
            BackendMode::Embedded => {
                let push = Push::start(push_config(config)).context("starting the push service")?;
                let metrics = push.metrics();
                sources.push(Box::new(move |out| metrics.render(out)));
                Arc::new(push)
            }
            BackendMode::Remote => Arc::new(
                RemotePush::start(RemotePushConfig::new(config.push.endpoint.clone()))
                    .with_context(|| format!("push endpoint {}", config.push.endpoint))?,
            ),
        };
        let metrics = Arc::new(move |out: &mut String| sources.iter().for_each(|source| source(out)));
        Ok(Self { store, push, metrics })
    }
}

fn store_config(store: &config::StoreConfig, dir: std::path::PathBuf) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.durability = match store.durability {
        config::Durability::Process => Durability::Process,
        config::Durability::Fsync => {
            Durability::Fsync { interval: Duration::from_millis(store.fsync_interval_ms) }
        }
    };
    config.max_devices = store.max_devices;
    config.retention = Duration::from_secs(u64::from(store.retention_days) * 86_400);
    config.prekey_low = store.prekey_low;
    config.writers = store.writers;
    config
}

fn push_config(config: &Config) -> EmbeddedPushConfig {
    let push = &config.push;
    EmbeddedPushConfig {
        provider: match push.provider.as_str() {
            "log" => ProviderConfig::Log,
            url => ProviderConfig::Webhook { url: url.to_owned() },
        },
        window: Duration::from_millis(push.window_ms),
        max_tries: push.max_tries,
        dead_letter: Some(config.node.data_dir.join("push-dead-letter.jsonl")),
        ..EmbeddedPushConfig::default()
    }
}

/// A store (or, in cluster mode, registry) answer on its way back to the
/// worker that asked.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    /// What the asking hub handed with the request, to finish it.
    pub(crate) ticket: T,
    /// The answer.
    pub(crate) outcome: Outcome,
}

/// What a [`Reply`] answers.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A store request.
    Store(Result<Response, StoreError>),
    /// A session's placement in the registry is over (placed, or not: the
    /// fleet thread places it later).
    Registered,
}

/// The sending side of a worker's reply channel, cloned into completions.
#[derive(Debug)]
pub(crate) struct ReplySink<P> {
    sender: Sender<Reply<P>>,
    waker: Arc<Waker>,
    /// The worker's metrics: each answer's latency goes to
    /// `gateway_store_request_seconds`.
    metrics: Arc<WorkerMetrics>,
    /// Set by the first answer since the worker last drained: later answers
    /// need not wake it again.
    woken: Arc<AtomicBool>,
}

impl<P> Clone for ReplySink<P> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            waker: self.waker.clone(),
            metrics: self.metrics.clone(),
            woken: self.woken.clone(),
        }
    }
}

/// The worker's side of its reply channel.
#[derive(Debug)]
pub(crate) struct Replies<P> {
    receiver: Receiver<Reply<P>>,
    woken: Arc<AtomicBool>,
}

/// A reply channel for one worker whose loop `waker` wakes.
pub(crate) fn reply_channel<P>(waker: Arc<Waker>, metrics: Arc<WorkerMetrics>) -> (ReplySink<P>, Replies<P>) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let woken = Arc::new(AtomicBool::new(false));
    (ReplySink { sender, waker, metrics, woken: woken.clone() }, Replies { receiver, woken })
}

impl<P: Send + 'static> ReplySink<P> {
    /// Sends `request` to `store`; the answer comes back on this channel with
    /// `ticket`.
    pub(crate) fn call(&self, store: &dyn StoreApi, request: Request, ticket: P) {
        let sink = self.clone();
        let asked = Instant::now();
        let done: Done = Box::new(move |result| {
            sink.metrics.store_request.observe(asked.elapsed());
            sink.deliver(Reply { ticket, outcome: Outcome::Store(result) });
        });
        store.call(request, done);
    }

    /// The fleet thread is done with a session's placement.
    pub(crate) fn registered(&self, ticket: P) {
        self.deliver(Reply { ticket, outcome: Outcome::Registered });
    }

    fn deliver(&self, reply: Reply<P>) {
        // The worker is gone only when the node stops: nothing to answer then.
        if self.sender.send(reply).is_ok() && !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl<P> Replies<P> {
    /// Takes every answer that arrived, re-arming the wake-up first so that an
    /// answer arriving meanwhile wakes the loop again.
    pub(crate) fn drain(&self, mut each: impl FnMut(Reply<P>)) {
        self.woken.store(false, Ordering::Release);
        while let Ok(reply) = self.receiver.try_recv() {
            each(reply);
        }
    }
}
