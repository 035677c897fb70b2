//! One worker thread of the raw scenarios (`echo`, `group --hub`,
//! `handshake`): its own mio `Poll`, many [`RawConn`]s, a timer heap.
//!
//! Thread `t` of `T` owns connections `t, t + T, ...`. Echo and hub open
//! connection `i` at `start + i / rate` and follow the [`Phase`] the driver
//! sets (send while it holds, stop in the drain, close at the end).
//! Handshakes keep at most `concurrency / T` connections in progress and
//! end the thread when all are done.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use gateway_auth::Signer;
use mio::{Registry, Token as MioToken};
use rustls::pki_types::ServerName;

use crate::conn::{End, CLOSE_TIMEOUT};
use crate::raw::{EchoState, HubState, RawConn, Role};
use crate::stats::{Phase, Shared};
use crate::traffic::Latencies;
use crate::worker::{self, Driven, Endpoints, Worker, MAX_OPENS_PER_TURN};

/// How connections are opened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opening {
    /// Connection `i` at `start + i / rate` (per process).
    Rate(f64),
    /// At most this many in progress at once (per process).
    Concurrency(u64),
}

/// What the connections do.
#[derive(Debug)]
pub(crate) enum Kind {
    /// `interval`: each connection sends one message per interval (a
    /// fixed offered rate); `None`: whenever the window has room.
    Echo { window: u32, size: usize, interval: Option<Duration> },
    /// Rooms of `group_size`: members `0..senders` send every `interval`.
    Hub { group_size: u64, senders: u64, interval: Duration, size: usize },
    /// With a signer: HELLO and AUTH_OK as user `first_user + i mod users`.
    Handshake { signer: Option<Signer>, users: u64 },
}

/// What every thread of a process shares.
#[derive(Debug)]
pub(crate) struct RawPlan {
    pub(crate) threads: u64,
    /// Connections of this process.
    pub(crate) total: u64,
    pub(crate) opening: Opening,
    pub(crate) kind: Kind,
    /// First user (handshake) or first room id (hub: a room is named after
    /// its first member's number, `first_user + g·G`).
    pub(crate) first_user: u64,
    /// The path is the rooms' prefix (`/hub`) for the hub.
    pub(crate) endpoints: Endpoints,
    pub(crate) start: Instant,
    pub(crate) latencies: Latencies,
}

impl Driven for RawConn {
    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn register(&mut self, registry: &Registry, token: MioToken) -> Result<(), String> {
        self.transport().register(registry, token)
    }

    /// Counts how it ended (echo: what it had in flight is lost).
    fn finish(&self, end: &End, shared: &Shared) {
        let lost = self.inflight() as u64;
        if lost > 0 {
            shared.traffic.send_errors.fetch_add(lost, Relaxed);
            shared.error("echo_lost_in_flight");
        }
        worker::count_end(end, self.open, shared);
    }
}

/// Runs thread `thread` until the close phase is over (handshakes: until
/// every connection is done).
pub(crate) fn run(plan: &RawPlan, thread: u64, shared: &Shared) -> io::Result<()> {
    let mut w: Worker<RawConn> = Worker::new(thread, &plan.latencies)?;
    let server_names = plan.endpoints.server_names();
    let mut next = thread;
    let mut sending = false;
    let mut close_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        w.merge_if_due(shared, now);
        let phase = shared.phase();
        if (phase == Phase::Hold) != sending {
            sending = phase == Phase::Hold;
            w.each(shared, now, |conn, ctx| conn.start_traffic(ctx, sending));
        }
        if close_deadline.is_none() && phase != Phase::Close {
            let mut opened = 0;
            while next < plan.total && opened < MAX_OPENS_PER_TURN {
                let due = match plan.opening {
                    Opening::Rate(rate) => plan.start + Duration::from_secs_f64(next as f64 / rate) <= now,
                    Opening::Concurrency(bound) => {
                        (w.conns.len() as u64) < bound.div_ceil(plan.threads).max(1)
                    }
                };
                if !due {
                    break;
                }
                open(plan, next, now, &server_names, shared, &mut w);
                next += plan.threads;
                opened += 1;
            }
        }
        if close_deadline.is_none() && phase == Phase::Close {
            close_deadline = Some(now + CLOSE_TIMEOUT + Duration::from_secs(1));
            w.each(shared, now, RawConn::start_close);
        }
        let handshakes_done =
            matches!(plan.opening, Opening::Concurrency(_)) && next >= plan.total && w.conns.is_empty();
        if handshakes_done || close_deadline.is_some_and(|d| w.conns.is_empty() || now >= d) {
            w.finish_all(shared);
            return Ok(());
        }

        let due = match plan.opening {
            Opening::Rate(rate) if next < plan.total && close_deadline.is_none() => {
                Some(plan.start + Duration::from_secs_f64(next as f64 / rate))
            }
            _ => None,
        };
        if !w.wait(due, now)? {
            continue;
        }
        w.dispatch(
            shared,
            |conn, ctx| conn.on_ready(ctx, sending),
            |_, conn, ctx, _| conn.on_timer(ctx, sending),
        );
    }
}

/// Opens connection `i`.
fn open(
    plan: &RawPlan,
    i: u64,
    now: Instant,
    server_names: &[ServerName<'static>],
    shared: &Shared,
    w: &mut Worker<RawConn>,
) {
    shared.attempted.fetch_add(1, Relaxed);
    let Some(mut params) = plan.endpoints.params_for(i, server_names) else {
        return worker::fail(shared, "no_target");
    };
    let hub_path;
    let role = match &plan.kind {
        Kind::Echo { window, size, interval } => Role::Echo(EchoState::new(*window, *size, *interval)),
        Kind::Hub { group_size, senders, interval, size } => {
            let size_g = (*group_size).max(1);
            let (group, member) = (i / size_g, i % size_g);
            hub_path = format!("{}/{}", params.path.trim_end_matches('/'), plan.first_user + group * size_g);
            params.path = &hub_path;
            let (room, member32) =
                (u32::try_from(group).unwrap_or(u32::MAX), u32::try_from(member).unwrap_or(0));
            Role::Hub(Box::new(HubState::new(room, member32, member < *senders, *interval, *size)))
        }
        Kind::Handshake { signer, users } => {
            let hello = match signer {
                None => None,
                Some(signer) => match worker::mint(signer, plan.first_user + i % (*users).max(1)) {
                    Some(token) => Some(token),
                    None => return worker::fail(shared, "token"),
                },
            };
            Role::Handshake { hello }
        }
    };
    match RawConn::open(&params, role, now) {
        Ok(conn) => w.insert(shared, conn),
        Err(kind) => worker::fail(shared, &kind),
    }
}
