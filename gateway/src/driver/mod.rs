//! The drivers: the IO around each worker's hub. A driver owns the sockets,
//! buffers, the clock and the wake-ups, feeds its worker's
//! [`gateway_hub::Hub`] events with the time, and carries the hub's work
//! out (session output, store calls, push work, batches for other workers).
//! It holds no messaging state and makes no messaging decisions.
//!
//! - [`epoll`]: the mio (epoll) loop, one thread per worker (the default).
//! - [`uring`]: an io_uring ring per worker (`node.driver = "io_uring"`),
//!   when [`choose`] finds the host can run it.
//!
//! What every driver shares: the commands other threads send a worker, the
//! link that carries a hub's batches to another worker's inbox, the
//! worker's [`waker`], and the worker's [`worker::Core`] (hub, inbox,
//! deadlines, admission, connection limit, the work a turn sends out).

mod admission;
mod deadlines;
pub(crate) mod epoll;
mod stream;
pub(crate) mod uring;
pub(crate) mod waker;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use gateway_core::Config as SessionConfig;
use gateway_hub::Remote;
use gateway_tls::Reloadable;

use crate::backend::Backend;
use crate::config::Driver;
pub(crate) use waker::Waker;
pub(crate) use worker::Core;

/// A command from another thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// New session settings and limits (SIGHUP): they apply to every session
    /// from its next call on, except the WebSocket message limit, which each
    /// session fixed at its upgrade.
    Reconfigure(Box<Reconfigure>),
    /// Start draining: stop accepting, GOAWAY every live session within
    /// `window`, close what is left at `deadline`.
    Drain {
        /// Spread GOAWAYs over this long.
        window: Duration,
        /// Close every session by then.
        deadline: Instant,
    },
    /// Stop now (SIGINT): close every session with 1001 and exit.
    Stop,
    /// Output for sessions of this worker, batched by another worker's hub.
    Remote(Vec<Remote>),
}

/// The reloadable part of a worker's settings.
#[derive(Debug)]
pub(crate) struct Reconfigure {
    /// Session settings.
    pub(crate) session: SessionConfig,
    /// The node's connection limit (0: none).
    pub(crate) max_connections: usize,
    /// New connections per client IP: per second and burst, for the node.
    pub(crate) connections_per_ip: (u32, u32),
}

/// A worker's inbox as other threads see it: a bounded channel and the
/// waker of the worker's loop. It is also the [`routing::Link`] a hub's
/// batches for that worker go over.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    pub(crate) sender: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

impl Inbox {
    /// Sends `command`, waiting for room (commands from the node are rare
    /// and must not be lost).
    pub(crate) fn command(&self, command: Command) {
        if self.sender.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl routing::Link<Remote> for Inbox {
    /// Never blocks the sending worker's loop: a full inbox gives the batch
    /// back (it stays in the hub's outbox for the next turn).
    fn offer(&self, batch: Vec<Remote>) -> Result<(), Vec<Remote>> {
        match self.sender.try_send(Command::Remote(batch)) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(Command::Remote(batch))) => Err(batch),
            // The worker is gone (the node is stopping): nobody to deliver to.
            Err(_) => Ok(()),
        }
    }
}

/// Where a hub's batches go: another worker's inbox, or (cluster mode) the
/// node's fleet router, the outbox destination after the workers.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// A worker of this node.
    Worker(Inbox),
    /// The fleet router.
    Fleet(crate::fleet::FleetHandle),
}

impl routing::Link<Remote> for Route {
    fn offer(&self, batch: Vec<Remote>) -> Result<(), Vec<Remote>> {
        match self {
            Self::Worker(inbox) => inbox.offer(batch),
            Self::Fleet(fleet) => fleet.offer(batch),
        }
    }
}

/// What a worker's driver shares with the node.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The hub's settings and what the hubs share (directory, verifier).
    pub(crate) hub: gateway_hub::Setup,
    /// The wss listener's TLS configuration, when there is one; SIGHUP
    /// reloads it. Read once per accepted wss connection.
    pub(crate) tls: Option<Reloadable>,
    /// Every worker's inbox, by worker index.
    pub(crate) inboxes: Arc<Vec<Inbox>>,
    /// Where the hub's batches go, by outbox destination: the workers'
    /// inboxes, then the fleet router in cluster mode.
    pub(crate) routes: Arc<Vec<Route>>,
    /// The fleet thread, in cluster mode: registry calls go there.
    pub(crate) fleet: Option<crate::fleet::FleetHandle>,
    /// Stop accepting above this many sessions (0: no limit); resume below
    /// `max_connections * resume_ratio`.
    pub(crate) max_connections: usize,
    /// See `max_connections`.
    pub(crate) resume_ratio: f64,
    /// New connections per client IP: per second and burst, for the node
    /// (each worker enforces its share).
    pub(crate) connections_per_ip: (u32, u32),
    /// The store and push services.
    pub(crate) backend: Backend,
}

/// Where a worker listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listen {
    /// Plain WebSocket (ws://).
    pub(crate) ws: SocketAddr,
    /// WebSocket over TLS (wss://), if configured.
    pub(crate) wss: Option<SocketAddr>,
    /// listen(2) backlog of each.
    pub(crate) backlog: i32,
    /// Connections a worker takes from each listener per loop turn.
    pub(crate) accepts_per_turn: usize,
}

/// The workers' IO driver for this node: `configured`, unless it is
/// io_uring and the host cannot run it; then epoll, with one log line that
/// says why, or (with `required`) an error.
pub(crate) fn choose(configured: Driver, required: bool) -> anyhow::Result<Driver> {
    if configured == Driver::Epoll {
        return Ok(Driver::Epoll);
    }
    match gateway_uring::probe() {
        Ok(()) => Ok(Driver::IoUring),
        Err(why) if required => {
            Err(anyhow::anyhow!("node.driver = \"io_uring\" is required, and this host cannot run it: {why}"))
        }
        Err(why) => {
            tracing::warn!(%why, "io_uring cannot run on this host: the workers run on epoll");
            Ok(Driver::Epoll)
        }
    }
}

/// A worker on the driver the node chose, before its thread starts.
#[derive(Debug)]
pub(crate) enum Worker {
    Epoll(epoll::Worker),
    Uring(uring::Worker),
}

impl Worker {
    /// The address the ws listener is bound to (its port, when 0 was asked).
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Epoll(worker) => worker.local_addr(),
            Self::Uring(worker) => worker.local_addr(),
        }
    }

    /// The address the wss listener is bound to, if there is one.
    pub(crate) fn wss_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        match self {
            Self::Epoll(worker) => worker.wss_addr(),
            Self::Uring(worker) => worker.wss_addr(),
        }
    }

    /// Runs the loop until the worker is stopped or has drained.
    pub(crate) fn run(self) -> std::io::Result<()> {
        match self {
            Self::Epoll(worker) => worker.run(),
            Self::Uring(worker) => worker.run(),
        }
    }
}

/// A listener with `SO_REUSEPORT`: every worker binds the same address and the
/// kernel spreads new connections across their accept queues.
fn reuseport_listener(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The layer of a new connection: with TLS (the configuration current now;
/// a reload applies to later connections) when it came from the wss
/// listener. `None` when its TLS state could not be made (logged).
fn tls_layer(shared: &Shared, from_wss: bool) -> Option<stream::Layer> {
    let tls = match (from_wss, &shared.tls) {
        (true, Some(config)) => match gateway_tls::TlsConn::new(config.current()) {
            Ok(tls) => Some(tls),
            Err(err) => {
                tracing::warn!(%err, "TLS connection");
                return None;
            }
        },
        _ => None,
    };
    Some(stream::Layer::new(tls))
}
