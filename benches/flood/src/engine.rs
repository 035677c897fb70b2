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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_auth::Signer;
use mio::{Events, Poll, Token as MioToken};
use protocol::{DeviceId, Token, UserId};
use rustls::pki_types::ServerName;
use slab::Slab;

use crate::conn::{Conn, Ctx, End, OpenParams, Rng, CLOSE_TIMEOUT};
use crate::stats::{Phase, Shared};
use crate::traffic::{Flow, Latencies, Mode, Spec};

/// Token lifetime: a day, as the brief's tokens.
const TOKEN_TTL_SECS: u64 = 86_400;
/// Most connections one loop turn opens, so events keep being served when
/// the schedule is behind.
const MAX_OPENS_PER_TURN: u64 = 256;
/// Longest poll wait: how fast a thread sees a phase change.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often a thread merges its latency histograms into the process's.
const MERGE_EVERY: Duration = Duration::from_secs(1);

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
    pub(crate) targets: Vec<SocketAddr>,
    pub(crate) sources: Vec<IpAddr>,
    /// For wss: the client settings, and the name to verify (`None`: the
    /// target's IP address).
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, Option<ServerName<'static>>)>,
    pub(crate) path: String,
    pub(crate) handshake_timeout: Duration,
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

/// Runs thread `thread` of the plan until the close phase is over.
pub(crate) fn run(plan: &Plan, thread: u64, shared: &Shared) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut rng = Rng::new(seed ^ (thread.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let accept = crate::ws::accept_for(crate::ws::UPGRADE_KEY);
    let server_names: Vec<ServerName<'static>> = plan
        .targets
        .iter()
        .map(|t| match &plan.tls {
            Some((_, Some(name))) => name.clone(),
            _ => ServerName::IpAddress(t.ip().into()),
        })
        .collect();

    let mut latencies = plan.latencies.clone();
    let mut next = thread;
    let mut close_deadline: Option<Instant> = None;
    let mut traffic_started = plan.traffic.is_none();
    let mut setup_done = plan.traffic.is_none_or(|spec| spec.mode != Mode::Group);
    let mut storm_done = plan.traffic.is_none_or(|spec| spec.mode != Mode::Storm);
    let mut next_merge = Instant::now() + MERGE_EVERY;
    loop {
        let now = Instant::now();
        if now >= next_merge {
            next_merge = now + MERGE_EVERY;
            shared.traffic.merge(&latencies);
            latencies.reset();
        }
        // Group setup: the creators send GROUP_CREATE.
        if !setup_done && shared.phase() == Phase::Setup {
            setup_done = true;
            let mut ctx = Ctx {
                shared,
                scratch: &mut scratch,
                out: &mut out,
                rng: &mut rng,
                now,
                accept: &accept,
                latencies: &mut latencies,
            };
            let keys: Vec<usize> = conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.setup(&mut ctx)));
                settle(key, result, &mut conns, &mut timers, shared, now);
            }
        }
        // The storm: drop the chosen live sessions, each with its reconnect time.
        if !storm_done {
            if let (Some(spec), Some(at)) = (plan.traffic, storm_start(plan, shared)) {
                storm_done = true;
                for (key, conn) in conns.iter_mut() {
                    let Some(rank) = spec.storm_rank(conn.index) else { continue };
                    let reconnect_at = at + Duration::from_secs_f64(rank as f64 / spec.reconnect_rate);
                    if conn.storm_drop(shared, reconnect_at) {
                        timers.push(Reverse((conn.deadline, key)));
                    }
                }
            }
        }
        // The hold began: start every live session's traffic (sessions that
        // authenticate later start at AUTH_OK).
        if !traffic_started && shared.phase() == Phase::Hold {
            traffic_started = true;
            let mut ctx = Ctx {
                shared,
                scratch: &mut scratch,
                out: &mut out,
                rng: &mut rng,
                now,
                accept: &accept,
                latencies: &mut latencies,
            };
            let keys: Vec<usize> = conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.start_traffic(&mut ctx)));
                settle(key, result, &mut conns, &mut timers, shared, now);
            }
        }
        // Open what is due.
        if close_deadline.is_none() {
            let mut opened = 0;
            while next < plan.sessions && plan.due(next) <= now && opened < MAX_OPENS_PER_TURN {
                open(plan, next, now, &server_names, shared, &mut poll, &mut conns, &mut timers);
                next += plan.threads;
                opened += 1;
            }
        }
        // Close once the hold is over.
        if close_deadline.is_none() && shared.phase() == Phase::Close {
            close_deadline = Some(now + CLOSE_TIMEOUT + Duration::from_secs(1));
            let mut ctx = Ctx {
                shared,
                scratch: &mut scratch,
                out: &mut out,
                rng: &mut rng,
                now,
                accept: &accept,
                latencies: &mut latencies,
            };
            let keys: Vec<usize> = conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.start_close(&mut ctx)));
                settle(key, result, &mut conns, &mut timers, shared, now);
            }
        }
        if let Some(deadline) = close_deadline {
            if conns.is_empty() || now >= deadline {
                for conn in conns.drain() {
                    finish(&conn, &End::Closed { clean: false }, shared);
                }
                shared.traffic.merge(&latencies);
                latencies.reset();
                return Ok(());
            }
        }

        let mut wait = MAX_WAIT;
        if close_deadline.is_none() && next < plan.sessions {
            wait = wait.min(plan.due(next).saturating_duration_since(now));
        }
        if let Some(Reverse((when, _))) = timers.peek() {
            wait = wait.min(when.saturating_duration_since(now));
        }
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }

        let now = Instant::now();
        let mut ctx = Ctx {
            shared,
            scratch: &mut scratch,
            out: &mut out,
            rng: &mut rng,
            now,
            accept: &accept,
            latencies: &mut latencies,
        };
        for event in events.iter() {
            let key = event.token().0;
            let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.on_ready(&mut ctx)));
            settle(key, result, &mut conns, &mut timers, shared, now);
        }
        while let Some(&Reverse((when, key))) = timers.peek() {
            if when > now {
                break;
            }
            timers.pop();
            // A timer whose connection moved its deadline (or is gone) is stale.
            let result = conns.get_mut(key).filter(|conn| conn.deadline == when).map(|conn| {
                if conn.is_down() {
                    (when, reconnect(plan, conn, key, now, &server_names, &poll))
                } else {
                    (when, conn.on_timer(&mut ctx))
                }
            });
            settle(key, result, &mut conns, &mut timers, shared, now);
        }
    }
}

/// After a connection handled something (`result`: its deadline before and
/// the outcome): push its timer if the deadline moved, or remove and count
/// it if it ended. Old heap entries stay and are skipped when they pop.
/// A storm reconnect that fails goes down again for a retry instead.
fn settle(
    key: usize,
    result: Option<(Instant, Result<(), End>)>,
    conns: &mut Slab<Conn>,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    shared: &Shared,
    now: Instant,
) {
    match result {
        None => {}
        Some((before, Ok(()))) => {
            if let Some(conn) = conns.get(key).filter(|conn| conn.deadline != before) {
                timers.push(Reverse((conn.deadline, key)));
            }
        }
        Some((_, Err(end))) => {
            if let (Some(conn), End::Error(kind)) = (conns.get_mut(key), &end) {
                if shared.phase() != Phase::Close && conn.retry_reconnect(shared, now) {
                    shared.error(&format!("reconnect_retry_{kind}"));
                    timers.push(Reverse((conn.deadline, key)));
                    return;
                }
            }
            if let Some(conn) = conns.try_remove(key) {
                finish(&conn, &end, shared);
            }
        }
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
    let params =
        params_for(plan, conn.index, server_names).ok_or_else(|| End::error("reconnect_no_target"))?;
    conn.reconnect(&params, now).map_err(End::Error)?;
    conn.register(poll.registry(), MioToken(key)).map_err(End::Error)
}

/// Where session `i` connects: its target and source, round-robin.
fn params_for<'a>(plan: &'a Plan, i: u64, server_names: &[ServerName<'static>]) -> Option<OpenParams<'a>> {
    let pick = |n: usize| usize::try_from(i).unwrap_or(0) % n.max(1);
    let target_index = pick(plan.targets.len());
    let target = *plan.targets.get(target_index)?;
    let source = plan.sources.get(pick(plan.sources.len())).copied();
    let tls = plan.tls.as_ref().and_then(|(config, _)| {
        server_names.get(target_index).map(|name| (Arc::clone(config), name.clone()))
    });
    Some(OpenParams { target, source, tls, path: &plan.path, handshake_timeout: plan.handshake_timeout })
}

/// Counts how a connection ended.
fn finish(conn: &Conn, end: &End, shared: &Shared) {
    shared.traffic.replays_dropped.fetch_add(conn.replays_dropped(), Relaxed);
    if conn.authenticated {
        shared.live.fetch_sub(1, Relaxed);
    }
    match end {
        End::Closed { clean: true } => {
            shared.closed_clean.fetch_add(1, Relaxed);
        }
        End::Closed { clean: false } => {
            shared.closed_unclean.fetch_add(1, Relaxed);
        }
        End::Error(kind) if conn.authenticated => {
            shared.dropped.fetch_add(1, Relaxed);
            shared.error(&format!("dropped_{kind}"));
        }
        End::Error(kind) => {
            shared.failed.fetch_add(1, Relaxed);
            shared.error(kind);
        }
    }
}

/// Opens session `i`: mints its token, creates and registers the socket.
#[allow(clippy::too_many_arguments)]
fn open(
    plan: &Plan,
    i: u64,
    now: Instant,
    server_names: &[ServerName<'static>],
    shared: &Shared,
    poll: &mut Poll,
    conns: &mut Slab<Conn>,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
) {
    shared.attempted.fetch_add(1, Relaxed);
    let Some(params) = params_for(plan, i, server_names) else { return fail(shared, "no_target") };
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let user = plan.first_user + i;
    let minted = plan.signer.mint(UserId(user), DeviceId(1), issued_at, TOKEN_TTL_SECS);
    let token = match Token::new(Bytes::from(minted.into_bytes())) {
        Ok(token) => token,
        Err(_) => return fail(shared, "token"),
    };
    let entry = conns.vacant_entry();
    let key = entry.key();
    // Chat pairs user 2k with 2k + 1 (the first user is even); groups are
    // consecutive users.
    let flow = plan.traffic.map(|spec| Flow::for_session(spec, i, plan.first_user));
    let mut conn = match Conn::open(&params, token, flow, i, now) {
        Ok(conn) => conn,
        Err(kind) => return fail(shared, &kind),
    };
    if let Err(kind) = conn.register(poll.registry(), MioToken(key)) {
        return fail(shared, &kind);
    }
    timers.push(Reverse((conn.deadline, key)));
    entry.insert(conn);
}

fn fail(shared: &Shared, kind: &str) {
    shared.failed.fetch_add(1, Relaxed);
    shared.error(kind);
}
