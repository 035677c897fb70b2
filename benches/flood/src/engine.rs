//! One worker thread: its own mio `Poll`, many connections, a timer heap.
//!
//! Thread `t` of `T` owns the sessions `t, t + T, t + 2T, ...` of its process
//! and opens session `i` at `start + i / rate`, so the threads together follow
//! the process's schedule. It follows the [`Phase`] the main thread sets:
//! opening on schedule (ramp and hold alike), starting the chat traffic when
//! the hold begins, then closing everything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_auth::Signer;
use mio::{Events, Interest, Poll, Token as MioToken};
use protocol::{DeviceId, Token, UserId};
use rustls::pki_types::ServerName;
use slab::Slab;

use crate::conn::{Conn, Ctx, End, OpenParams, Rng, CLOSE_TIMEOUT};
use crate::stats::{Phase, Shared};
use crate::traffic::{Flow, Latencies, Spec};

/// Token lifetime: a day, as the brief's tokens.
const TOKEN_TTL_SECS: u64 = 86_400;
/// Most connections one loop turn opens, so events keep being served when
/// the schedule is behind.
const MAX_OPENS_PER_TURN: u64 = 256;
/// Longest poll wait: how fast a thread sees a phase change.
const MAX_WAIT: Duration = Duration::from_millis(50);

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
    loop {
        let now = Instant::now();
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
                settle(key, result, &mut conns, &mut timers, shared);
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
                settle(key, result, &mut conns, &mut timers, shared);
            }
        }
        if let Some(deadline) = close_deadline {
            if conns.is_empty() || now >= deadline {
                for conn in conns.drain() {
                    finish(&conn, &End::Closed { clean: false }, shared);
                }
                shared.traffic.merge(&latencies);
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
            settle(key, result, &mut conns, &mut timers, shared);
        }
        while let Some(&Reverse((when, key))) = timers.peek() {
            if when > now {
                break;
            }
            timers.pop();
            // A timer whose connection moved its deadline (or is gone) is stale.
            let result = conns
                .get_mut(key)
                .filter(|conn| conn.deadline == when)
                .map(|conn| (when, conn.on_timer(&mut ctx)));
            settle(key, result, &mut conns, &mut timers, shared);
        }
    }
}

/// After a connection handled something (`result`: its deadline before and
/// the outcome): push its timer if the deadline moved, or remove and count
/// it if it ended. Old heap entries stay and are skipped when they pop.
fn settle(
    key: usize,
    result: Option<(Instant, Result<(), End>)>,
    conns: &mut Slab<Conn>,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    shared: &Shared,
) {
    match result {
        None => {}
        Some((before, Ok(()))) => {
            if let Some(conn) = conns.get(key).filter(|conn| conn.deadline != before) {
                timers.push(Reverse((conn.deadline, key)));
            }
        }
        Some((_, Err(end))) => {
            if let Some(conn) = conns.try_remove(key) {
                finish(&conn, &end, shared);
            }
        }
    }
}

/// Counts how a connection ended.
fn finish(conn: &Conn, end: &End, shared: &Shared) {
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
    let pick = |n: usize| usize::try_from(i).unwrap_or(0) % n.max(1);
    let target_index = pick(plan.targets.len());
    let Some(&target) = plan.targets.get(target_index) else { return };
    let source = plan.sources.get(pick(plan.sources.len())).copied();
    let tls = plan.tls.as_ref().and_then(|(config, _)| {
        server_names.get(target_index).map(|name| (Arc::clone(config), name.clone()))
    });
    let params =
        OpenParams { target, source, tls, path: &plan.path, handshake_timeout: plan.handshake_timeout };
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let user = plan.first_user + i;
    let minted = plan.signer.mint(UserId(user), DeviceId(1), issued_at, TOKEN_TTL_SECS);
    let token = match Token::new(Bytes::from(minted.into_bytes())) {
        Ok(token) => token,
        Err(_) => return fail(shared, "token"),
    };
    let entry = conns.vacant_entry();
    let key = entry.key();
    // Chat pairs user 2k with 2k + 1 (the first user is even).
    let flow = plan.traffic.map(|spec| Flow::new(spec, UserId(user ^ 1)));
    let mut conn = match Conn::open(&params, token, flow, now) {
        Ok(conn) => conn,
        Err(kind) => return fail(shared, &kind),
    };
    if let Err(e) =
        poll.registry().register(&mut conn.stream, MioToken(key), Interest::READABLE | Interest::WRITABLE)
    {
        return fail(shared, &crate::conn::io_kind("register", &e));
    }
    timers.push(Reverse((conn.deadline, key)));
    entry.insert(conn);
}

fn fail(shared: &Shared, kind: &str) {
    shared.failed.fetch_add(1, Relaxed);
    shared.error(kind);
}
