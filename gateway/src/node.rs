//! One gateway node (one process): starts the workers and the admin listener,
//! and turns signals into the shutdown phases (pingora's conventions):
//!
//! - SIGTERM: graceful drain. Readiness turns false, workers stop accepting and
//!   send GOAWAY to their sessions spread over the drain window, and the process
//!   exits when every session is gone or at the drain deadline.
//! - SIGINT: fast stop. Every session gets close 1001 now.
//! - SIGHUP: reload the token verification keys without dropping sessions.
//!
//! Under systemd (`Type=notify`), READY=1 is sent once every worker listens and
//! STOPPING=1 when a drain starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use gateway_admin::Registry;
use gateway_auth::{keys, Verifier};
use gateway_core::{Config as SessionConfig, Limits, RateLimit};
use gateway_ws::HandshakeConfig;
use mio::{Poll, Waker};
use protocol::Decoder;

use crate::config::Config;
use crate::directory::Directory;
use crate::worker::{Command, Shared, Worker};

/// A running node.
#[derive(Debug)]
pub struct Node {
    workers: Vec<JoinHandle<std::io::Result<()>>>,
    inboxes: Arc<Vec<(Sender<Command>, Arc<Waker>)>>,
    ready: Arc<AtomicBool>,
    admin: gateway_admin::AdminHandle,
    listen: SocketAddr,
    drain: (Duration, Duration),
    keys_dir: PathBuf,
    verifier: Arc<RwLock<Arc<Verifier>>>,
}

impl Node {
    /// Loads keys, binds every worker's listener and the admin listener, and
    /// starts the threads.
    pub fn start(config: &Config) -> Result<Self> {
        let keys_dir = config.keys_dir();
        if config.auth.dev_key {
            let signer = keys::load_or_create_dev_signer(&config.node.data_dir)
                .with_context(|| format!("dev signing key in {}", config.node.data_dir.display()))?;
            keys::write_public_key(&keys_dir, signer.key_id(), &signer.public_key())
                .with_context(|| format!("writing the dev public key into {}", keys_dir.display()))?;
        }
        let verifier = Arc::new(RwLock::new(Arc::new(load_verifier(&keys_dir, config.auth.leeway_secs)?)));

        let workers = config.worker_threads();
        let mut polls = Vec::with_capacity(workers);
        let mut inboxes = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().context("creating a poll")?;
            let waker =
                Arc::new(Waker::new(poll.registry(), Worker::waker_token()).context("creating a waker")?);
            let (sender, receiver) = crossbeam_channel::bounded(config.limits.worker_inbox);
            polls.push(poll);
            inboxes.push((sender, waker));
            receivers.push(receiver);
        }
        let inboxes = Arc::new(inboxes);
        let registry = Arc::new(Registry::new(workers));
        let shared = Shared {
            session: session_config(config),
            verifier: verifier.clone(),
            directory: Arc::new(Directory::default()),
            inboxes: inboxes.clone(),
            // Each worker holds its share of the node's limit.
            max_connections: config.listen.max_connections.div_ceil(workers),
            resume_ratio: config.listen.accept_resume_ratio,
            connections_per_ip: (config.limits.connections_per_ip_per_sec, config.limits.connections_per_ip_burst),
        };
        let mut listen = config.listen.ws_addr()?;
        let mut threads = Vec::with_capacity(workers);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        for (index, (poll, receiver)) in polls.into_iter().zip(receivers).enumerate() {
            let metrics = registry.worker(index).cloned().context("worker metrics")?;
            let backlog = i32::try_from(config.listen.backlog).unwrap_or(i32::MAX);
            let worker = Worker::new(index, listen, backlog, receiver, poll, shared.clone(), metrics)
                .with_context(|| format!("binding {listen}"))?;
            // Port 0: the first worker picks the port, the others share it.
            listen = worker.local_addr().context("listener address")?;
            let core =
                config.node.pin_workers.then(|| cores.get(index % cores.len().max(1)).copied()).flatten();
            let thread = std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker.run()
                })
                .context("spawning a worker")?;
            threads.push(thread);
        }
        let ready = Arc::new(AtomicBool::new(true));
        let admin_addr = config.listen.admin_addr()?;
        let admin = gateway_admin::spawn(admin_addr, registry, ready.clone())
            .with_context(|| format!("binding the admin listener {admin_addr}"))?;
        notify_systemd("READY=1");
        tracing::info!(%listen, admin = %admin.local_addr(), workers, "gateway node ready");
        Ok(Self {
            workers: threads,
            inboxes,
            ready,
            admin,
            listen,
            drain: (config.drain.window(), config.drain.deadline()),
            keys_dir,
            verifier,
        })
    }

    /// Address clients connect to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Handles signals until the node has stopped.
    pub fn run_until_stopped(mut self) -> Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals =
            signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("signals")?;
        let workers_done = {
            let workers = std::mem::take(&mut self.workers);
            // Ends the signal loop below once every worker has returned.
            let signals = signals.handle();
            std::thread::spawn(move || {
                let mut result = Ok(());
                for worker in workers {
                    match worker.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => result = Err(err),
                        Err(_) => result = Err(std::io::Error::other("a worker panicked")),
                    }
                }
                signals.close();
                result
            })
        };
        for signal in signals.forever() {
            match signal {
                SIGTERM => {
                    tracing::info!("SIGTERM: draining");
                    self.ready.store(false, Ordering::Release);
                    notify_systemd("STOPPING=1");
                    let (window, deadline) = self.drain;
                    let deadline = Instant::now() + deadline;
                    broadcast(&self.inboxes, || Command::Drain { window, deadline });
                }
                SIGINT => {
                    tracing::info!("SIGINT: stopping now");
                    self.ready.store(false, Ordering::Release);
                    broadcast(&self.inboxes, || Command::Stop);
                }
                SIGHUP => match load_verifier(&self.keys_dir, self.verifier_leeway()) {
                    Ok(verifier) => {
                        tracing::info!(keys = verifier.len(), "SIGHUP: verification keys reloaded");
                        if let Ok(mut current) = self.verifier.write() {
                            *current = Arc::new(verifier);
                        }
                    }
                    Err(err) => tracing::error!(%err, "SIGHUP: keeping the old keys"),
                },
                _ => {}
            }
        }
        let result = workers_done.join().map_err(|_| anyhow::anyhow!("worker joiner panicked"))?;
        self.admin.shutdown();
        tracing::info!("gateway node stopped");
        Ok(result?)
    }

    fn verifier_leeway(&self) -> u64 {
        self.verifier.read().map_or(gateway_auth::DEFAULT_LEEWAY_SECS, |v| v.leeway())
    }
}

fn broadcast(inboxes: &[(Sender<Command>, Arc<Waker>)], command: impl Fn() -> Command) {
    for (sender, waker) in inboxes {
        if sender.send(command()).is_ok() {
            let _ = waker.wake();
        }
    }
}

fn load_verifier(dir: &std::path::Path, leeway: u64) -> Result<Verifier> {
    let verifier =
        keys::load_verifier(dir).with_context(|| format!("verification keys in {}", dir.display()))?;
    if verifier.is_empty() {
        anyhow::bail!("no verification key (*.pub) in {}: no client could authenticate", dir.display());
    }
    Ok(verifier.with_leeway(leeway))
}

fn session_config(config: &Config) -> SessionConfig {
    let s = &config.session;
    SessionConfig {
        handshake: HandshakeConfig { echo: s.echo_route, ..HandshakeConfig::default() },
        handshake_timeout: s.handshake_timeout(),
        auth_timeout: s.auth_timeout(),
        heartbeat: s.heartbeat(),
        heartbeat_misses: s.heartbeat_misses,
        max_message: s.max_message,
        outbound: Limits { pause_bytes: s.outbound_pause_bytes, max_bytes: s.outbound_queue_bytes },
        write_stall: s.write_stall(),
        linger: Duration::from_secs(2),
        decoder: Decoder::new(),
        rate: Some(RateLimit { per_sec: config.limits.frames_per_sec, burst: config.limits.frames_burst }),
    }
}

/// Sends `state` to systemd when started with `Type=notify` (no-op otherwise).
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return };
    if let Err(err) = socket.send_to(state.as_bytes(), &path) {
        tracing::warn!(%err, "sd_notify");
    }
}
