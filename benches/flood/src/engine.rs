//! One worker thread: its own mio `Poll`, many connections, a timer heap.
//!
//! Thread `t` of `T` owns the sessions `t, t + T, t + 2T, ...` of its process
//! and opens session `i` at `start + i / rate`, so the threads together follow
//! the process's schedule. It follows the [`Phase`] the main thread sets:
//! opening on schedule (ramp and hold alike), creating the groups in the
//! setup phase, starting the traffic when the hold begins, dropping and
//! reconnecting the storm's sessions when the driver starts the storm, then
//! closing everything. It merges its latency histograms into the process's
//! once a second, for the progress lines.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway_auth::Signer;
use mio::{Poll, Registry, Token as MioToken};
use rustls::pki_types::ServerName;

use crate::conn::{Conn, End, CLOSE_TIMEOUT};
use crate::stats::{Phase, Shared};
use crate::traffic::{Flow, Latencies, Mode, Spec};
use crate::worker::{self, Driven, Endpoints, Worker, MAX_OPENS_PER_TURN};

/// What every thread of a process shares.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) threads: u64,
    /// Sessions of this process.
    pub(crate) sessions: u64,
    /// Connections per second of this process.
    pub(crate) rate: f64,
    /// User id of session 0.
    pub(crate) first_user: u64,
    pub(crate) endpoints: Endpoints,
    pub(crate) signer: Signer,
    /// When session 0 is due.
    pub(crate) start: Instant,
    /// Chat or sync traffic of every session (`None`: connect, idle).
    pub(crate) traffic: Option<Spec>,
    /// Empty latency histograms, cloned by each thread.
    pub(crate) latencies: Latencies,
}

impl Plan {
    /// When session `i` is due.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }
}

impl Driven for Conn {
    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn register(&mut self, registry: &Registry, token: MioToken) -> Result<(), String> {
        Conn::register(self, registry, token)
    }

    /// A storm reconnect that fails goes down again for a retry, and so
    /// does a first connection refused with a retry hint; in a fleet, so
    /// does a live session that loses its node.
    fn retry(&mut self, end: &End, shared: &Shared, now: Instant) -> bool {
        let End::Error(kind) = end else { return false };
        if shared.phase() == Phase::Close {
            return false;
        }
        if self.retry_reconnect(shared, now) {
            shared.error(&format!("reconnect_retry_{kind}"));
            return true;
        }
        if self.retry_first_connect(shared, now) {
            shared.error(&format!("connect_retry_{kind}"));
            return true;
        }
        if self.lost_in_fleet(shared, now) {
            shared.error(&format!("lost_live_{kind}"));
            return true;
        }
        false
    }

    fn finish(&self, end: &End, shared: &Shared) {
        shared.traffic.replays_dropped.fetch_add(self.replays_dropped(), Relaxed);
        self.record_mix(end, shared);
        worker::count_end(end, self.authenticated, shared);
    }
}

/// Starts the plan's worker threads.
pub(crate) fn spawn(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<io::Result<()>>>, String> {
    let (plan, shared) = (Arc::clone(plan), Arc::clone(shared));
    crate::driver::spawn(plan.threads, move |thread| run(&plan, thread, &shared))
}

/// Runs thread `thread` of the plan until the close phase is over.
pub(crate) fn run(plan: &Plan, thread: u64, shared: &Shared) -> io::Result<()> {
    let mut w: Worker<Conn> = Worker::new(thread, &plan.latencies)?;
    let server_names = plan.endpoints.server_names();
    let mut next = thread;
    let mut close_deadline: Option<Instant> = None;
    let mut traffic_started = plan.traffic.is_none();
    let mut setup_done = plan.traffic.is_none_or(|spec| !matches!(spec.mode, Mode::Group | Mode::Mix));
    let mut final_sync_done = plan.traffic.is_none_or(|spec| spec.mode != Mode::Mix);
    let mut storm_done = plan.traffic.is_none_or(|spec| spec.mode != Mode::Storm);
    loop {
        let now = Instant::now();
        w.merge_if_due(shared, now);
        // Group setup: the creators send GROUP_CREATE.
        if !setup_done && shared.phase() == Phase::Setup {
            setup_done = true;
            w.each(shared, now, Conn::setup);
        }
        // The storm: drop the chosen live sessions, each with its reconnect time.
        if !storm_done {
            if let (Some(spec), Some(at)) = (plan.traffic, storm_start(plan, shared)) {
                storm_done = true;
                w.each(shared, now, |conn, ctx| {
                    if let Some(rank) = spec.storm_rank(conn.index) {
                        let reconnect_at = at + Duration::from_secs_f64(rank as f64 / spec.reconnect_rate);
                        conn.storm_drop(ctx.shared, reconnect_at);
                    }
                    Ok(())
                });
            }
        }
        // Mix: the traffic settled; every live session syncs once more.
        if !final_sync_done && shared.phase() == Phase::Sync {
            final_sync_done = true;
            w.each(shared, now, Conn::schedule_final_sync);
        }
        // The hold began: start every live session's traffic (sessions that
        // authenticate later start at AUTH_OK).
        if !traffic_started && shared.phase() == Phase::Hold {
            traffic_started = true;
            w.each(shared, now, Conn::start_traffic);
        }
        // Open what is due.
        if close_deadline.is_none() {
            let mut opened = 0;
            while next < plan.sessions && plan.due(next) <= now && opened < MAX_OPENS_PER_TURN {
                open(plan, next, now, &server_names, shared, &mut w);
                next += plan.threads;
                opened += 1;
            }
        }
        // Close once the hold is over.
        if close_deadline.is_none() && shared.phase() == Phase::Close {
            close_deadline = Some(now + CLOSE_TIMEOUT + Duration::from_secs(1));
            w.each(shared, now, Conn::start_close);
        }
        if let Some(deadline) = close_deadline {
            if w.conns.is_empty() || now >= deadline {
                w.finish_all(shared);
                return Ok(());
            }
        }

        let due = (close_deadline.is_none() && next < plan.sessions).then(|| plan.due(next));
        if !w.wait(due, now)? {
            continue;
        }
        w.dispatch(shared, Conn::on_ready, |key, conn, ctx, poll| {
            if conn.is_down() {
                reconnect(plan, conn, key, ctx.now, &server_names, poll)
            } else {
                conn.on_timer(ctx)
            }
        });
    }
}

/// When the driver started the storm, if it did.
fn storm_start(plan: &Plan, shared: &Shared) -> Option<Instant> {
    let at = shared.traffic.storm_at_ns.load(Relaxed);
    (at != u64::MAX).then(|| plan.start + Duration::from_nanos(at))
}

/// Storm: reconnects session `conn` (down, its time come) and registers the
/// new socket under its old key.
fn reconnect(
    plan: &Plan,
    conn: &mut Conn,
    key: usize,
    now: Instant,
    server_names: &[ServerName<'static>],
    poll: &Poll,
) -> Result<(), End> {
    if plan.traffic.is_none() {
        return Err(End::error("reconnect_without_traffic"));
    }
    let params = plan
        .endpoints
        .params_after_hops(conn.index, conn.hops, server_names)
        .ok_or_else(|| End::error("reconnect_no_target"))?;
    conn.reconnect(&params, now).map_err(End::Error)?;
    conn.register(poll.registry(), MioToken(key)).map_err(End::Error)
}

/// Opens session `i`: mints its token, creates and registers the socket.
fn open(
    plan: &Plan,
    i: u64,
    now: Instant,
    server_names: &[ServerName<'static>],
    shared: &Shared,
    w: &mut Worker<Conn>,
) {
    shared.attempted.fetch_add(1, Relaxed);
    let Some(params) = plan.endpoints.params_for(i, server_names) else {
        return worker::fail(shared, "no_target");
    };
    let Some(token) = worker::mint(&plan.signer, plan.first_user + i) else {
        return worker::fail(shared, "token");
    };
    // Chat pairs user 2k with 2k + 1 (the first user is even); groups are
    // consecutive users.
    let flow = plan.traffic.map(|spec| Flow::for_session(spec, i, plan.first_user));
    match Conn::open(&params, token, flow, i, now) {
        Ok(conn) => w.insert(shared, conn),
        Err(kind) => worker::fail(shared, &kind),
    }
}
