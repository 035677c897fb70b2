//! The node's part in a fleet (cluster mode, `[cluster]`): one thread with
//! a single-threaded tokio runtime, beside the workers, that does
//! everything that waits on the network for routing.
//!
//! - the node's lease in the registry: joined at start (a new epoch),
//!   renewed every third of the lease, given up at the end of a drain;
//! - registry calls from the hubs ([`FleetCall`]): a session is placed
//!   before its sync starts, removed by compare-and-set when it closes;
//!   a placement it replaced on another node is closed there (REPLACE);
//! - the router ([`router`]): items for devices not on this node are looked
//!   up (a per-node placement cache, then the registry) and sent over the
//!   link to the node that holds them, batched per node; a device found
//!   nowhere gets its push note;
//! - the link listener ([`inbound`]): frames from other nodes go to the
//!   sessions of this node's workers.
//!
//! The workers never wait on it: their calls and batches cross bounded or
//! per-session channels, and answers come back on their reply channels.

mod confirms;
mod inbound;
mod lanes;
mod lease;
mod lookups;
mod metrics;
mod parked;
mod presence;
mod router;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use backend_push::PushApi;
use gateway_hub::{FleetCall, Remote, Ticket};
use routing::{Directory, Link as _, SessionRef};
use routing_registry::{Config as RegistryConfig, NodeId};
use tokio::sync::mpsc;

use crate::backend::ReplySink;
use crate::config::ClusterConfig;
use crate::driver::Inbox;
pub(crate) use metrics::FleetMetrics;

/// Batches of fleet items one node may have queued for its router before
/// the workers' outboxes keep them (and, past their bound, shed them).
const ROUTER_QUEUE: usize = 1_024;

/// Items for this node's sessions, gathered into one batch per worker and
/// posted together.
pub(super) struct PerWorker(Vec<Vec<Remote>>);

impl PerWorker {
    pub(super) fn new(inboxes: &[Inbox]) -> Self {
        Self(inboxes.iter().map(|_| Vec::new()).collect())
    }

    /// Adds `item` for `to`'s worker; false if the node has no such worker.
    pub(super) fn push(&mut self, to: SessionRef, item: Remote) -> bool {
        self.0.get_mut(to.worker).map(|batch| batch.push(item)).is_some()
    }

    /// Offers each worker its batch without waiting; returns how many items
    /// a full inbox refused (shed: a live entry stays in the store).
    pub(super) fn post(self, inboxes: &[Inbox]) -> u64 {
        let mut refused = 0;
        for (inbox, batch) in inboxes.iter().zip(self.0) {
            let items = batch.len() as u64;
            if items > 0 && inbox.offer(batch).is_err() {
                refused += items;
            }
        }
        refused
    }
}

/// What the workers hold of the fleet thread.
#[derive(Debug, Clone)]
pub(crate) struct FleetHandle {
    batches: mpsc::Sender<Vec<Remote>>,
    calls: mpsc::UnboundedSender<(FleetCall, ReplySink<Ticket>)>,
}

impl FleetHandle {
    /// A registry call for the fleet thread; a Register's answer comes back
    /// on `reply`.
    pub(crate) fn call(&self, call: FleetCall, reply: &ReplySink<Ticket>) {
        if let Err(mpsc::error::SendError((FleetCall::Register { ticket, .. }, reply))) =
            self.calls.send((call, reply.clone()))
        {
            // The fleet thread is gone (the node is stopping): serve the
            // session unplaced rather than leave it waiting.
            reply.registered(ticket);
        }
    }
}

impl routing::Link<Remote> for FleetHandle {
    /// Never blocks a worker: a full router queue gives the batch back.
    fn offer(&self, batch: Vec<Remote>) -> Result<(), Vec<Remote>> {
        match self.batches.try_send(batch) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(batch)) => Err(batch),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }
}

/// What the fleet thread needs from the node.
pub(crate) struct Parts {
    pub(crate) directory: Arc<Directory>,
    pub(crate) inboxes: Arc<Vec<Inbox>>,
    pub(crate) push: Arc<dyn PushApi>,
    /// `messaging.presence_grace_ms`: what another node is told of a user
    /// who left here a moment ago.
    pub(crate) grace_ms: u64,
}

/// The running fleet thread, as the node holds it.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) handle: FleetHandle,
    pub(crate) metrics: Arc<FleetMetrics>,
    /// Set at the end of a drain: the lease is given up.
    leaving: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    /// Reads the secret, binds the link listener and starts the fleet
    /// thread, which joins the registry (retrying while it is down: the node
    /// serves its own sessions meanwhile).
    pub(crate) fn start(node: u32, config: &ClusterConfig, parts: Parts) -> Result<Self> {
        let secret = read_secret(config)?;
        let listen = config.link_listen_addr()?;
        let advertise = config.link_advertise.clone().unwrap_or_else(|| config.link_listen.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the fleet runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("binding the link listener {listen}"))?;
        let (batches, batches_rx) = mpsc::channel(ROUTER_QUEUE);
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(FleetMetrics::default());
        let leaving = Arc::new(tokio::sync::Notify::new());
        let registry = RegistryConfig {
            timeout: Duration::from_millis(config.registry_timeout_ms),
            lease: Duration::from_millis(config.lease_ms),
            ..RegistryConfig::default()
        };
        let mut links = routing_links::LinkConfig::new(node, 0, secret);
        links.queue_bytes = config.link_queue_bytes;
        links.window = config.link_window_bytes;
        let setup = router::Setup {
            node: NodeId(node),
            advertise,
            urls: config.registry.clone(),
            cluster: config.registry_cluster,
            registry,
            links: Arc::new(links),
            cache: Duration::from_millis(config.cache_ms),
            parts,
            metrics: metrics.clone(),
            leaving: leaving.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || runtime.block_on(router::run(setup, listener, batches_rx, calls_rx)))
            .context("spawning the fleet thread")?;
        tracing::info!(node, link = %listen, "fleet: link listener bound");
        Ok(Self { handle: FleetHandle { batches, calls }, metrics, leaving, thread: Some(thread) })
    }

    /// The drain is over: give up the lease (other nodes stop routing here
    /// at once) and stop the thread.
    pub(crate) fn leave(mut self) {
        self.leaving.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The cluster secret from `cluster.secret_file` (trailing whitespace
/// trimmed, at least 32 bytes left).
fn read_secret(config: &ClusterConfig) -> Result<Vec<u8>> {
    let path = config.secret_file.as_ref().context("cluster.secret_file is required")?;
    let mut secret =
        std::fs::read(path).with_context(|| format!("reading the cluster secret {}", path.display()))?;
    let mode = std::fs::metadata(path).map(|meta| meta.permissions().mode()).unwrap_or(0);
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the cluster secret is readable by other users: chmod 600 it"
        );
    }
    while secret.last().is_some_and(u8::is_ascii_whitespace) {
        secret.pop();
    }
    if secret.len() < 32 {
        anyhow::bail!(
            "the cluster secret in {} has {} bytes: at least 32 are needed",
            path.display(),
            secret.len()
        );
    }
    Ok(secret)
}

/// The registry is reachable (a call just succeeded) or not.
fn set_health(flag: &AtomicBool, healthy: bool) {
    if flag.swap(healthy, Ordering::Relaxed) != healthy {
        if healthy {
            tracing::info!("fleet: registry reachable again");
        } else {
            tracing::warn!("fleet: registry unreachable: messages are stored and acknowledged, live delivery to other nodes waits for the next sync");
        }
    }
}
