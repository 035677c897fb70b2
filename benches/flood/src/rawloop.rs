//! One worker thread of the raw scenarios (`echo`, `group --hub`,
//! `handshake`): its own mio `Poll`, many [`RawConn`]s, a timer heap.
//!
//! Thread `t` of `T` owns connections `t, t + T, ...`. Echo and hub open
//! connection `i` at `start + i / rate` and follow the [`Phase`] the driver
//! sets (send while it holds, stop in the drain, close at the end).
//! Handshakes keep at most `concurrency / T` connections in progress and
//! end the thread when all are done.

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

use crate::conn::{Ctx, End, OpenParams, Rng, CLOSE_TIMEOUT};
use crate::raw::{EchoState, HubState, RawConn, Role};
use crate::stats::{Phase, Shared};
use crate::traffic::Latencies;

const TOKEN_TTL_SECS: u64 = 86_400;
const MAX_OPENS_PER_TURN: u64 = 256;
const MAX_WAIT: Duration = Duration::from_millis(50);
const MERGE_EVERY: Duration = Duration::from_secs(1);

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
    Echo {
        window: u32,
        size: usize,
    },
    /// Rooms of `group_size`: members `0..senders` send every `interval`.
    Hub {
        group_size: u64,
        senders: u64,
        interval: Duration,
        size: usize,
    },
    /// With a signer: HELLO and AUTH_OK as user `first_user + i mod users`.
    Handshake {
        signer: Option<Signer>,
        users: u64,
    },
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
    pub(crate) targets: Vec<SocketAddr>,
    pub(crate) sources: Vec<IpAddr>,
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, Option<ServerName<'static>>)>,
    /// WebSocket path (hub: the rooms' prefix, `/hub`).
    pub(crate) path: String,
    pub(crate) handshake_timeout: Duration,
    pub(crate) start: Instant,
    pub(crate) latencies: Latencies,
}

/// Runs thread `thread` until the close phase is over (handshakes: until
/// every connection is done).
pub(crate) fn run(plan: &RawPlan, thread: u64, shared: &Shared) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<RawConn> = Slab::new();
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
    let mut sending = false;
    let mut close_deadline: Option<Instant> = None;
    let mut next_merge = Instant::now() + MERGE_EVERY;
    loop {
        let now = Instant::now();
        if now >= next_merge {
            next_merge = now + MERGE_EVERY;
            shared.traffic.merge(&latencies);
            latencies.reset();
        }
        let phase = shared.phase();
        let mut ctx = Ctx {
            shared,
            scratch: &mut scratch,
            out: &mut out,
            rng: &mut rng,
            now,
            accept: &accept,
            latencies: &mut latencies,
        };
        if (phase == Phase::Hold) != sending {
            sending = phase == Phase::Hold;
            let keys: Vec<usize> = conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let result =
                    conns.get_mut(key).map(|conn| (conn.deadline, conn.start_traffic(&mut ctx, sending)));
                settle(key, result, &mut conns, &mut timers, shared);
            }
        }
        if close_deadline.is_none() && phase != Phase::Close {
            let mut opened = 0;
            while next < plan.total && opened < MAX_OPENS_PER_TURN {
                let due = match plan.opening {
                    Opening::Rate(rate) => plan.start + Duration::from_secs_f64(next as f64 / rate) <= now,
                    Opening::Concurrency(bound) => (conns.len() as u64) < bound.div_ceil(plan.threads).max(1),
                };
                if !due {
                    break;
                }
                open(plan, next, now, &server_names, shared, &poll, &mut conns, &mut timers);
                next += plan.threads;
                opened += 1;
            }
        }
        if close_deadline.is_none() && phase == Phase::Close {
            close_deadline = Some(now + CLOSE_TIMEOUT + Duration::from_secs(1));
            let keys: Vec<usize> = conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.start_close(&mut ctx)));
                settle(key, result, &mut conns, &mut timers, shared);
            }
        }
        let handshakes_done =
            matches!(plan.opening, Opening::Concurrency(_)) && next >= plan.total && conns.is_empty();
        if handshakes_done || close_deadline.is_some_and(|d| conns.is_empty() || now >= d) {
            for conn in conns.drain() {
                finish(&conn, &End::Closed { clean: false }, shared);
            }
            shared.traffic.merge(&latencies);
            return Ok(());
        }

        let mut wait = MAX_WAIT;
        if let (Opening::Rate(rate), true) = (plan.opening, next < plan.total && close_deadline.is_none()) {
            let due = plan.start + Duration::from_secs_f64(next as f64 / rate);
            wait = wait.min(due.saturating_duration_since(now));
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
            let result = conns.get_mut(key).map(|conn| (conn.deadline, conn.on_ready(&mut ctx, sending)));
            settle(key, result, &mut conns, &mut timers, shared);
        }
        while let Some(&Reverse((when, key))) = timers.peek() {
            if when > now {
                break;
            }
            timers.pop();
            let result = conns
                .get_mut(key)
                .filter(|conn| conn.deadline == when)
                .map(|conn| (when, conn.on_timer(&mut ctx, sending)));
            settle(key, result, &mut conns, &mut timers, shared);
        }
    }
}

/// Pushes a moved deadline, or removes and counts an ended connection.
fn settle(
    key: usize,
    result: Option<(Instant, Result<(), End>)>,
    conns: &mut Slab<RawConn>,
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

/// Counts how a connection ended (echo: what it had in flight is lost).
fn finish(conn: &RawConn, end: &End, shared: &Shared) {
    let lost = conn.inflight() as u64;
    if lost > 0 {
        shared.traffic.send_errors.fetch_add(lost, Relaxed);
        shared.error("echo_lost_in_flight");
    }
    if conn.open {
        shared.live.fetch_sub(1, Relaxed);
    }
    match end {
        End::Closed { clean: true } => {
            shared.closed_clean.fetch_add(1, Relaxed);
        }
        End::Closed { clean: false } => {
            shared.closed_unclean.fetch_add(1, Relaxed);
        }
        End::Error(kind) if conn.open => {
            shared.dropped.fetch_add(1, Relaxed);
            shared.error(&format!("dropped_{kind}"));
        }
        End::Error(kind) => {
            shared.failed.fetch_add(1, Relaxed);
            shared.error(kind);
        }
    }
}

/// Opens connection `i`.
#[allow(clippy::too_many_arguments)]
fn open(
    plan: &RawPlan,
    i: u64,
    now: Instant,
    server_names: &[ServerName<'static>],
    shared: &Shared,
    poll: &Poll,
    conns: &mut Slab<RawConn>,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
) {
    shared.attempted.fetch_add(1, Relaxed);
    let pick = |n: usize| usize::try_from(i).unwrap_or(0) % n.max(1);
    let target_index = pick(plan.targets.len());
    let Some(&target) = plan.targets.get(target_index) else { return fail(shared, "no_target") };
    let source = plan.sources.get(pick(plan.sources.len())).copied();
    let tls = plan.tls.as_ref().and_then(|(config, _)| {
        server_names.get(target_index).map(|name| (Arc::clone(config), name.clone()))
    });
    let mut path = plan.path.clone();
    let role = match &plan.kind {
        Kind::Echo { window, size } => Role::Echo(EchoState::new(*window, *size)),
        Kind::Hub { group_size, senders, interval, size } => {
            let size_g = (*group_size).max(1);
            let (group, member) = (i / size_g, i % size_g);
            path = format!("{}/{}", plan.path.trim_end_matches('/'), plan.first_user + group * size_g);
            let (room, member32) =
                (u32::try_from(group).unwrap_or(u32::MAX), u32::try_from(member).unwrap_or(0));
            Role::Hub(Box::new(HubState::new(room, member32, member < *senders, *interval, *size)))
        }
        Kind::Handshake { signer, users } => {
            let hello = match signer {
                None => None,
                Some(signer) => {
                    let issued = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                    let user = plan.first_user + i % (*users).max(1);
                    let minted = signer.mint(UserId(user), DeviceId(1), issued, TOKEN_TTL_SECS);
                    match Token::new(Bytes::from(minted.into_bytes())) {
                        Ok(token) => Some(token),
                        Err(_) => return fail(shared, "token"),
                    }
                }
            };
            Role::Handshake { hello }
        }
    };
    let params = OpenParams { target, source, tls, path: &path, handshake_timeout: plan.handshake_timeout };
    let entry = conns.vacant_entry();
    let key = entry.key();
    let mut conn = match RawConn::open(&params, role, now) {
        Ok(conn) => conn,
        Err(kind) => return fail(shared, &kind),
    };
    if let Err(kind) = conn.transport().register(poll.registry(), MioToken(key)) {
        return fail(shared, &kind);
    }
    timers.push(Reverse((conn.deadline, key)));
    entry.insert(conn);
}

fn fail(shared: &Shared, kind: &str) {
    shared.failed.fetch_add(1, Relaxed);
    shared.error(kind);
}
