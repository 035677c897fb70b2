//! One gateway node (one process): starts the workers and the admin listener,
//! and turns signals into the shutdown phases (pingora's conventions):
//!
//! - SIGTERM: graceful drain. Readiness turns false, workers close their
//!   listeners (new connections are refused) and send GOAWAY to their sessions
//!   spread over the drain window, and the process exits when every session is
//!   gone or at the drain deadline.
//! - SIGINT: fast stop. Every session gets close 1001 now.
//! - SIGHUP: reload the token verification keys (the `.pub` files; the
//!   development key, when used, stays as loaded at start) and the wss listener's TLS
//!   certificate and key without dropping sessions (open connections keep
//!   the certificate they were accepted with; a reload that fails keeps the
//!   old keys or certificate).
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
use gateway_admin::Registry;
use gateway_auth::{keys, Signer, Verifier};
use gateway_core::{Config as SessionConfig, Limits, RateLimit};
use gateway_tls::Reloadable;
use gateway_ws::HandshakeConfig;
use protocol::Decoder;

use crate::backend::{reply_channel, Backend};
use crate::config::{Config, Driver};
use crate::driver::{
    self, epoll, uring, Command, Core, Inbox, Listen, Reconfigure, Route, Shared, Waker, Worker,
};
use crate::fds;
use crate::fleet::Fleet;

/// A running node.
#[derive(Debug)]
pub struct Node {
    workers: Vec<JoinHandle<std::io::Result<()>>>,
    inboxes: Arc<Vec<Inbox>>,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    admin: gateway_admin::AdminHandle,
    listen: SocketAddr,
    wss: Option<SocketAddr>,
    drain: (Duration, Duration),
    keys_dir: PathBuf,
    /// The development signer and its file, when `auth.dev_key` applies.
    dev_key: Option<(Signer, PathBuf)>,
    verifier: Arc<RwLock<Arc<Verifier>>>,
    tls: Option<Reloadable>,
    /// The configuration the node started with (SIGHUP compares against it).
    started: Config,
    /// The fleet thread, in cluster mode.
    fleet: Option<Fleet>,
}

impl Node {
    /// Loads keys, binds every worker's listener and the admin listener, and
    /// starts the threads.
    pub fn start(config: &Config) -> Result<Self> {
        let max_connections =
            fds::connection_limit(config.listen.max_connections, fds::raise_open_file_limit())?;
        private_dir(&config.node.data_dir)?;
        let keys_dir = config.keys_dir();
        let dev_key = config.uses_dev_key().then(|| load_dev_key(config)).transpose()?;
        let verifier = load_verifier(&keys_dir, dev_key.as_ref(), config.auth.leeway_secs)?;
        let verifier = Arc::new(RwLock::new(Arc::new(verifier)));
        let wss = config.listen.wss_addr()?;
        let tls = wss.map(|_| load_tls(config)).transpose()?;

        let driver = driver::choose(config.node.driver, config.node.driver_required)?;
        let backend = Backend::start(config)?;
        let workers = config.worker_threads();
        let mut inboxes = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let waker = Arc::new(Waker::new().context("creating a waker (eventfd)")?);
            let (sender, receiver) = crossbeam_channel::bounded(config.limits.worker_inbox);
            inboxes.push(Inbox { sender, waker });
            receivers.push(receiver);
        }
        let inboxes = Arc::new(inboxes);
        let directory = Arc::new(routing::Directory::default());
        let fleet = config
            .cluster
            .enabled()
            .then(|| {
                let parts = crate::fleet::Parts {
                    directory: directory.clone(),
                    inboxes: inboxes.clone(),
                    push: backend.push.clone(),
                    grace_ms: config.messaging.presence_grace_ms,
                };
                Fleet::start(config.node.id, &config.cluster, parts)
            })
            .transpose()?;
        let mut routes: Vec<Route> = inboxes.iter().cloned().map(Route::Worker).collect();
        let mut sources = vec![backend.metrics.clone()];
        if let Some(fleet) = &fleet {
            routes.push(Route::Fleet(fleet.handle.clone()));
            let metrics = fleet.metrics.clone();
            sources.push(Arc::new(move |out: &mut String| metrics.render(out)));
        }
        let store = backend.store.clone();
        let source = Arc::new(move |out: &mut String| sources.iter().for_each(|source| source(out)));
        let mut registry =
            Registry::new(workers).with_source(source).with_store_probe(Arc::new(move || store.writable()));
        if let Some(fleet) = &fleet {
            let metrics = fleet.metrics.clone();
            registry = registry.with_fleet_probe(Arc::new(move || metrics.registry_healthy()));
        }
        let registry = Arc::new(registry);
        let shared = Shared {
            hub: gateway_hub::Setup {
                config: hub_config(config, crate::media::start(config)?),
                session: session_config(config),
                verifier: verifier.clone(),
                recent_tokens: Arc::new(gateway_auth::RecentTokens::new(
                    gateway_auth::FingerprintKey::generate()
                        .context("drawing the key of the recent tokens' fingerprints")?,
                    config.limits.recent_tokens,
                    RECENT_TOKEN_SECS,
                )),
                directory,
            },
            tls: tls.clone(),
            inboxes: inboxes.clone(),
            routes: Arc::new(routes),
            fleet: fleet.as_ref().map(|fleet| fleet.handle.clone()),
            // Each worker holds its share of the node's limit.
            max_connections: max_connections.div_ceil(workers),
            resume_ratio: config.listen.accept_resume_ratio,
            connections_per_ip: (
                config.limits.connections_per_ip_per_sec,
                config.limits.connections_per_ip_burst,
            ),
            backend,
        };
        let mut listen = Listen {
            ws: config.listen.ws_addr()?,
            wss,
            backlog: i32::try_from(config.listen.backlog).unwrap_or(i32::MAX),
            accepts_per_turn: usize::try_from(config.listen.accepts_per_turn).unwrap_or(usize::MAX),
        };
        let parts = Workers {
            driver,
            uring: uring_sizes(config),
            receivers,
            registry: &registry,
            pin: config.node.pin_workers,
        };
        let threads = spawn_workers(parts, &shared, &mut listen)?;
        let ready = Arc::new(AtomicBool::new(true));
        let admin_addr = config.listen.admin_addr()?;
        let admin = gateway_admin::spawn(admin_addr, registry.clone(), ready.clone())
            .with_context(|| format!("binding the admin listener {admin_addr}"))?;
        notify_systemd("READY=1");
        let wss = listen.wss.map(|wss| wss.to_string());
        tracing::info!(
            listen = %listen.ws, wss, admin = %admin.local_addr(), workers, ?driver, max_connections,
            fd_reserve = fds::FD_RESERVE, "gateway node ready"
        );
        Ok(Self {
            workers: threads,
            inboxes,
            registry,
            ready,
            admin,
            listen: listen.ws,
            wss: listen.wss,
            drain: (config.drain.window(), config.drain.deadline()),
            keys_dir,
            dev_key,
            verifier,
            tls,
            started: config.clone(),
            fleet,
        })
    }

    /// Address clients connect to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Address wss:// clients connect to, when `listen.wss` is set.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Handles signals until the node has stopped.
    /// `reload` re-reads the configuration on SIGHUP (the same file and
    /// overrides as at start).
    pub fn run_until_stopped(mut self, reload: impl Fn() -> Result<Config>) -> Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals =
            signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("signals")?;
        let stopped = Arc::new(AtomicBool::new(false));
        let watchdog = match crate::watchdog::interval_from_env() {
            Some(interval) => {
                let wakers = self.inboxes.iter().map(|inbox| inbox.waker.clone()).collect();
                Some(crate::watchdog::spawn(
                    interval,
                    self.registry.clone(),
                    wakers,
                    stopped.clone(),
                    notify_systemd,
                )?)
            }
            None => None,
        };
        let workers_done = {
            let workers = std::mem::take(&mut self.workers);
            // Ends the signal loop below once every worker has returned.
            let signals = signals.handle();
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                let mut result = Ok(());
                for worker in workers {
                    match worker.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => result = Err(err),
                        Err(_) => result = Err(std::io::Error::other("a worker panicked")),
                    }
                }
                stopped.store(true, Ordering::Release);
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
                SIGHUP => {
                    self.reload_settings(&reload);
                    match load_verifier(&self.keys_dir, self.dev_key.as_ref(), self.verifier_leeway()) {
                        Ok(verifier) => {
                            tracing::info!(keys = verifier.len(), "SIGHUP: verification keys reloaded");
                            if let Ok(mut current) = self.verifier.write() {
                                *current = Arc::new(verifier);
                            }
                        }
                        Err(err) => tracing::error!(%err, "SIGHUP: keeping the old keys"),
                    }
                    if let Some(tls) = &self.tls {
                        match tls.reload() {
                            Ok(()) => tracing::info!(
                                cert = %tls.settings().cert.display(),
                                "SIGHUP: TLS certificate reloaded"
                            ),
                            Err(err) => {
                                tracing::error!(err = %err, "SIGHUP: keeping the old TLS certificate")
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let result = workers_done.join().map_err(|_| anyhow::anyhow!("worker joiner panicked"))?;
        if let Some(watchdog) = watchdog {
            watchdog.thread().unpark();
            let _ = watchdog.join();
        }
        if let Some(fleet) = self.fleet.take() {
            // Every session is gone: give up the lease, so other nodes stop
            // routing here now rather than when it expires.
            fleet.leave();
        }
        self.admin.shutdown();
        tracing::info!("gateway node stopped");
        Ok(result?)
    }

    /// SIGHUP: session settings and limits from the re-read configuration.
    /// Settings that need a restart (addresses, workers, TLS files' location)
    /// are reported, not applied.
    fn reload_settings(&self, reload: &impl Fn() -> Result<Config>) {
        let config = match reload() {
            Ok(config) => config,
            Err(err) => return tracing::error!(err = format!("{err:#}"), "SIGHUP: keeping the old settings"),
        };
        let max_connections =
            match fds::connection_limit(config.listen.max_connections, fds::raise_open_file_limit()) {
                Ok(max_connections) => max_connections,
                Err(err) => {
                    return tracing::error!(err = format!("{err:#}"), "SIGHUP: keeping the old settings")
                }
            };
        if config.listen != self.started.listen
            || config.node != self.started.node
            || config.tls != self.started.tls
            || config.store != self.started.store
            || config.push != self.started.push
            || config.messaging != self.started.messaging
            || config.auth != self.started.auth
            || config.cluster != self.started.cluster
        {
            tracing::warn!(
                "SIGHUP: [node], [listen], [tls] paths, [store], [push], [messaging], [cluster] and [auth] apply only after a restart"
            );
        }
        let (limits, started) = (&config.limits, &self.started.limits);
        if (limits.worker_inbox, limits.logins_in_flight, limits.login_queue, limits.recent_tokens)
            != (started.worker_inbox, started.logins_in_flight, started.login_queue, started.recent_tokens)
        {
            tracing::warn!(
                "SIGHUP: limits.worker_inbox, limits.logins_in_flight, limits.login_queue and limits.recent_tokens apply only after a restart"
            );
        }
        let reconfigure = || {
            Command::Reconfigure(Box::new(Reconfigure {
                session: session_config(&config),
                max_connections,
                connections_per_ip: (
                    config.limits.connections_per_ip_per_sec,
                    config.limits.connections_per_ip_burst,
                ),
            }))
        };
        broadcast(&self.inboxes, reconfigure);
        tracing::info!("SIGHUP: session settings and limits reloaded");
    }

    fn verifier_leeway(&self) -> u64 {
        self.verifier.read().map_or(gateway_auth::DEFAULT_LEEWAY_SECS, |v| v.leeway())
    }
}

/// The workers' driver and inbox receivers, before their threads start.
struct Workers<'a> {
    driver: Driver,
    /// The rings' sizes, with the io_uring driver.
    uring: gateway_uring::Sizes,
    receivers: Vec<crossbeam_channel::Receiver<Command>>,
    registry: &'a Registry,
    /// Pin each worker thread to a core.
    pin: bool,
}

/// Binds every worker's listeners and starts its thread. `listen` ends
/// with the ports the first worker bound (port 0: it picks them, the others
/// share them).
fn spawn_workers(
    Workers { driver, uring, receivers, registry, pin }: Workers<'_>,
    shared: &Shared,
    listen: &mut Listen,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>> {
    let mut threads = Vec::with_capacity(receivers.len());
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for (index, receiver) in receivers.into_iter().enumerate() {
        let metrics = registry.worker(index).cloned().context("worker metrics")?;
        let waker = shared.inboxes.get(index).map(|inbox| inbox.waker.clone()).context("worker waker")?;
        let fd = waker.raw_fd();
        let replies = reply_channel(waker, metrics.clone());
        let worker = match driver {
            Driver::Epoll => {
                let core = Core::new(index, receiver, shared.clone(), metrics, replies);
                epoll::Worker::new(core, *listen, fd).map(Worker::Epoll)
            }
            Driver::IoUring => {
                let core = Core::new(index, receiver, shared.clone(), metrics, replies);
                uring::Worker::new(core, *listen, fd, uring).map(Worker::Uring)
            }
        }
        .with_context(|| match listen.wss {
            Some(wss) => format!("binding {} and {wss}", listen.ws),
            None => format!("binding {}", listen.ws),
        })?;
        listen.ws = worker.local_addr().context("listener address")?;
        listen.wss = worker.wss_addr().context("wss listener address")?;
        let core = pin.then(|| cores.get(index % cores.len().max(1)).copied()).flatten();
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
    Ok(threads)
}

/// The io_uring rings' sizes from `[node]`.
fn uring_sizes(config: &Config) -> gateway_uring::Sizes {
    gateway_uring::Sizes {
        entries: config.node.uring_entries,
        buffers: u16::try_from(config.node.uring_buffers).unwrap_or(1 << 15),
        buffer_size: config.node.uring_buffer_size,
    }
}

/// Creates the data directory, or makes an existing one, private (0700): the
/// store, keys and dead letters under it are nobody else's.
fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("making the data directory {} private", dir.display()))
}

fn broadcast(inboxes: &[Inbox], command: impl Fn() -> Command) {
    for inbox in inboxes {
        inbox.command(command());
    }
}

/// The wss listener's TLS configuration from `[tls]`.
fn load_tls(config: &Config) -> Result<Reloadable> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        anyhow::bail!("listen.wss needs tls.cert and tls.key");
    };
    let settings = gateway_tls::Settings {
        cert: cert.clone(),
        key: key.clone(),
        session_tickets: config.tls.session_tickets,
    };
    Reloadable::load(settings).context("TLS certificate of the wss listener")
}

/// The development signer (created on first use, never rewritten), announced
/// at WARN with its path on every start: a node that accepts its tokens must
/// not go unnoticed.
fn load_dev_key(config: &Config) -> Result<(Signer, PathBuf)> {
    let data_dir = &config.node.data_dir;
    let signer = keys::load_or_create_dev_signer(data_dir)
        .with_context(|| format!("dev signing key in {}", data_dir.display()))?;
    let path = keys::dev_key_path(data_dir);
    tracing::warn!(
        path = %path.display(),
        key_id = signer.key_id(),
        "development signing key in use: tokens of `gateway token` are accepted (set auth.keys_dir \
         to production keys, or auth.dev_key = \"off\")"
    );
    Ok((signer, path))
}

/// Every `.pub` key in `dir`, and the development key's public half.
fn load_verifier(
    dir: &std::path::Path,
    dev_key: Option<&(Signer, PathBuf)>,
    leeway: u64,
) -> Result<Verifier> {
    let dev = dev_key.map(|(signer, path)| (signer, path.as_path()));
    let verifier =
        keys::load_node_keys(dir, dev).with_context(|| format!("verification keys in {}", dir.display()))?;
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
        outbound_preauth: s.outbound_preauth_bytes,
        echo_max_message: s.echo_max_message,
        write_stall: s.write_stall(),
        linger: s.linger(),
        decoder: Decoder::new(),
        rate: Some(RateLimit { per_sec: config.limits.frames_per_sec, burst: config.limits.frames_burst }),
        sync_window: config.messaging.sync_window,
    }
}

/// How long a closed session's token is remembered (`limits.recent_tokens`):
/// past a reconnect storm's backoff (at most 60 s between tries, SPEC §4)
/// many times over.
const RECENT_TOKEN_SECS: u64 = 600;

fn hub_config(config: &Config, media: Option<Arc<gateway_media::Media>>) -> gateway_hub::HubConfig {
    let m = &config.messaging;
    gateway_hub::HubConfig {
        // Each worker holds its share of the node's in-flight budget.
        max_inflight: config.store.max_inflight.div_ceil(config.worker_threads()).max(1),
        max_logins: config.limits.logins_in_flight.div_ceil(config.worker_threads()).max(1),
        login_queue: config.limits.login_queue.div_ceil(config.worker_threads()),
        grace: Duration::from_millis(m.presence_grace_ms),
        typing_interval: Duration::from_millis(m.typing_interval_ms),
        prekey_fetches_per_min: m.prekey_fetches_per_min,
        prekey_low: config.store.prekey_low,
        max_payload: u32::try_from(config.session.max_payload).unwrap_or(u32::MAX),
        max_batch: gateway_hub::HubConfig::MAX_BATCH,
        fleet: config.cluster.enabled(),
        ack_wait: Duration::from_millis(config.cluster.ack_wait_ms),
        media,
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
