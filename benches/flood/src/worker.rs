//! What the two poll loops share (`engine` for protocol sessions, `rawloop`
//! for raw WebSocket connections): where a connection connects
//! ([`Endpoints`]), and one worker thread's `Poll`, connections, timer heap
//! and buffers ([`Worker`]) with the steps of a loop turn.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_auth::Signer;
use mio::{Events, Poll, Registry, Token as MioToken};
use protocol::{DeviceId, Token, UserId};
use rustls::pki_types::ServerName;
use slab::Slab;

use crate::conn::{Ctx, End, OpenParams, Rng};
use crate::stats::Shared;
use crate::traffic::Latencies;

/// Token lifetime: a day, as the brief's tokens.
const TOKEN_TTL_SECS: u64 = 86_400;
/// Most connections one loop turn opens, so events keep being served when
/// the schedule is behind.
pub(crate) const MAX_OPENS_PER_TURN: u64 = 256;
/// Longest poll wait: how fast a thread sees a phase change.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often a thread merges its latency histograms into the process's.
const MERGE_EVERY: Duration = Duration::from_secs(1);

/// TLS client settings, and the name to verify (`None`: the target's IP
/// address).
pub(crate) type TlsSettings = (Arc<rustls::ClientConfig>, Option<ServerName<'static>>);

/// Where the connections of a process connect.
#[derive(Debug)]
pub(crate) struct Endpoints {
    pub(crate) targets: Vec<SocketAddr>,
    pub(crate) sources: Vec<IpAddr>,
    /// For wss.
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) path: String,
    pub(crate) handshake_timeout: Duration,
}

impl Endpoints {
    /// The name each target's certificate must carry (for wss).
    pub(crate) fn server_names(&self) -> Vec<ServerName<'static>> {
        self.targets
            .iter()
            .map(|t| match &self.tls {
                Some((_, Some(name))) => name.clone(),
                _ => ServerName::IpAddress(t.ip().into()),
            })
            .collect()
    }

    /// Where connection `i` connects: its target and source, round-robin.
    pub(crate) fn params_for<'a>(
        &'a self,
        i: u64,
        server_names: &[ServerName<'static>],
    ) -> Option<OpenParams<'a>> {
        self.params_after_hops(i, 0, server_names)
    }

    /// As [`Endpoints::params_for`], after moving on from `hops` targets
    /// (`storm --fleet`): each hop adds a stride of 1 to T − 1 that differs
    /// between the sessions of one target, so that those of a dead node
    /// spread over all the others rather than all landing on the next.
    pub(crate) fn params_after_hops<'a>(
        &'a self,
        i: u64,
        hops: u32,
        server_names: &[ServerName<'static>],
    ) -> Option<OpenParams<'a>> {
        let pick = |n: usize| usize::try_from(i).unwrap_or(0) % n.max(1);
        let targets = self.targets.len();
        let stride =
            1 + (usize::try_from(i).unwrap_or(0) / targets.max(1)) % targets.saturating_sub(1).max(1);
        let target_index = (pick(targets) + stride * hops as usize) % targets.max(1);
        let target = *self.targets.get(target_index)?;
        let source = self.sources.get(pick(self.sources.len())).copied();
        let tls = self.tls.as_ref().and_then(|(config, _)| {
            server_names.get(target_index).map(|name| (Arc::clone(config), name.clone()))
        });
        Some(OpenParams { target, source, tls, path: &self.path, handshake_timeout: self.handshake_timeout })
    }
}

/// A token for `user` (device 1), minted now.
pub(crate) fn mint(signer: &Signer, user: u64) -> Option<Token> {
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let minted = signer.mint(UserId(user), DeviceId(1), issued_at, TOKEN_TTL_SECS);
    Token::new(Bytes::from(minted.into_bytes())).ok()
}

/// Counts a connection that could not be opened.
pub(crate) fn fail(shared: &Shared, kind: &str) {
    shared.failed.fetch_add(1, Relaxed);
    shared.error(kind);
}

/// Counts how a connection ended; `live`: it had completed its handshake.
pub(crate) fn count_end(end: &End, live: bool, shared: &Shared) {
    if live {
        shared.live.fetch_sub(1, Relaxed);
    }
    match end {
        End::Closed { clean: true } => {
            shared.closed_clean.fetch_add(1, Relaxed);
        }
        End::Closed { clean: false } => {
            shared.closed_unclean.fetch_add(1, Relaxed);
        }
        End::Error(kind) if live => {
            shared.dropped.fetch_add(1, Relaxed);
            shared.error(&format!("dropped_{kind}"));
        }
        End::Error(kind) => fail(shared, kind),
    }
}

/// A connection a [`Worker`] drives.
pub(crate) trait Driven {
    /// When its timer must run next.
    fn deadline(&self) -> Instant;
    /// Registers its socket with the thread's poll.
    fn register(&mut self, registry: &Registry, token: MioToken) -> Result<(), String>;
    /// It ended with `end`: whether it goes on instead (its new deadline
    /// is pushed). By default it does not.
    fn retry(&mut self, _end: &End, _shared: &Shared, _now: Instant) -> bool {
        false
    }
    /// Counts how it ended.
    fn finish(&self, end: &End, shared: &Shared);
}

/// What a connection's handler returns: its deadline before, and the outcome.
type Outcome = Option<(Instant, Result<(), End>)>;

/// One worker thread's poll, connections, timers and buffers.
pub(crate) struct Worker<C> {
    pub(crate) poll: Poll,
    events: Events,
    pub(crate) conns: Slab<C>,
    /// Deadlines by connection key. Old entries stay and are skipped when
    /// they pop (the connection moved its deadline, or is gone).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    bufs: Buffers,
    next_merge: Instant,
}

/// What a [`Ctx`] lends a connection.
struct Buffers {
    scratch: Vec<u8>,
    out: Vec<u8>,
    rng: Rng,
    accept: String,
    latencies: Latencies,
}

impl Buffers {
    fn ctx<'a>(&'a mut self, shared: &'a Shared, now: Instant) -> Ctx<'a> {
        Ctx {
            shared,
            scratch: &mut self.scratch,
            out: &mut self.out,
            rng: &mut self.rng,
            now,
            accept: &self.accept,
            latencies: &mut self.latencies,
        }
    }
}

impl<C: Driven> Worker<C> {
    /// Thread `thread`'s worker, with empty `latencies` of its own.
    pub(crate) fn new(thread: u64, latencies: &Latencies) -> io::Result<Self> {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            bufs: Buffers {
                scratch: vec![0u8; 64 * 1024],
                out: Vec::new(),
                rng: Rng::new(seed ^ (thread.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                accept: crate::ws::accept_for(crate::ws::UPGRADE_KEY),
                latencies: latencies.clone(),
            },
            next_merge: Instant::now() + MERGE_EVERY,
        })
    }

    /// Merges this thread's latencies into the process's once a second.
    pub(crate) fn merge_if_due(&mut self, shared: &Shared, now: Instant) {
        if now >= self.next_merge {
            self.next_merge = now + MERGE_EVERY;
            shared.traffic.merge(&self.bufs.latencies);
            self.bufs.latencies.reset();
        }
    }

    /// Runs `step` on every connection.
    pub(crate) fn each(
        &mut self,
        shared: &Shared,
        now: Instant,
        mut step: impl FnMut(&mut C, &mut Ctx<'_>) -> Result<(), End>,
    ) {
        let mut ctx = self.bufs.ctx(shared, now);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let result = self.conns.get_mut(key).map(|conn| (conn.deadline(), step(conn, &mut ctx)));
            settle(key, result, &mut self.conns, &mut self.timers, shared, now);
        }
    }

    /// Registers a new connection and its deadline (or counts why not).
    pub(crate) fn insert(&mut self, shared: &Shared, mut conn: C) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(kind) = conn.register(self.poll.registry(), MioToken(key)) {
            return fail(shared, &kind);
        }
        self.timers.push(Reverse((conn.deadline(), key)));
        entry.insert(conn);
    }

    /// Waits for events until the next timer, `due` (when something is to
    /// be opened) or at most [`MAX_WAIT`]. `false`: interrupted, nothing
    /// to handle.
    pub(crate) fn wait(&mut self, due: Option<Instant>, now: Instant) -> io::Result<bool> {
        let mut wait = MAX_WAIT;
        if let Some(due) = due {
            wait = wait.min(due.saturating_duration_since(now));
        }
        if let Some(Reverse((when, _))) = self.timers.peek() {
            wait = wait.min(when.saturating_duration_since(now));
        }
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hands the events of the last [`Worker::wait`] to `on_ready`, then
    /// the timers that are due to `on_timer` (with the connection's key and
    /// the poll).
    pub(crate) fn dispatch(
        &mut self,
        shared: &Shared,
        mut on_ready: impl FnMut(&mut C, &mut Ctx<'_>) -> Result<(), End>,
        mut on_timer: impl FnMut(usize, &mut C, &mut Ctx<'_>, &Poll) -> Result<(), End>,
    ) {
        let now = Instant::now();
        let mut ctx = self.bufs.ctx(shared, now);
        for event in self.events.iter() {
            let key = event.token().0;
            let result = self.conns.get_mut(key).map(|conn| (conn.deadline(), on_ready(conn, &mut ctx)));
            settle(key, result, &mut self.conns, &mut self.timers, shared, now);
        }
        while let Some(&Reverse((when, key))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            // A timer whose connection moved its deadline (or is gone) is stale.
            let poll = &self.poll;
            let result = self
                .conns
                .get_mut(key)
                .filter(|conn| conn.deadline() == when)
                .map(|conn| (when, on_timer(key, conn, &mut ctx, poll)));
            settle(key, result, &mut self.conns, &mut self.timers, shared, now);
        }
    }

    /// Ends the thread: what is still open counts as closed uncleanly, and
    /// the latencies are merged.
    pub(crate) fn finish_all(&mut self, shared: &Shared) {
        for conn in self.conns.drain() {
            conn.finish(&End::Closed { clean: false }, shared);
        }
        shared.traffic.merge(&self.bufs.latencies);
        self.bufs.latencies.reset();
    }
}

/// After a connection handled something (`result`: its deadline before and
/// the outcome): push its timer if the deadline moved, or remove and count
/// it if it ended (unless it goes on, [`Driven::retry`]).
fn settle<C: Driven>(
    key: usize,
    result: Outcome,
    conns: &mut Slab<C>,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    shared: &Shared,
    now: Instant,
) {
    match result {
        None => {}
        Some((before, Ok(()))) => {
            if let Some(conn) = conns.get(key).filter(|conn| conn.deadline() != before) {
                timers.push(Reverse((conn.deadline(), key)));
            }
        }
        Some((_, Err(end))) => {
            if let Some(conn) = conns.get_mut(key) {
                if conn.retry(&end, shared, now) {
                    timers.push(Reverse((conn.deadline(), key)));
                    return;
                }
            }
            if let Some(conn) = conns.try_remove(key) {
                conn.finish(&end, shared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_sessions_of_a_dead_target_spread_over_all_the_others() {
        let targets: Vec<SocketAddr> = (0..7).map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i))).collect();
        let endpoints = Endpoints {
            targets: targets.clone(),
            sources: Vec::new(),
            tls: None,
            path: "/ws".to_owned(),
            handshake_timeout: Duration::from_secs(1),
        };
        let mut moved: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for i in (0..7_000u64).filter(|i| i % 7 == 3) {
            assert_eq!(endpoints.params_for(i, &[]).unwrap().target, targets[3]);
            *moved.entry(endpoints.params_after_hops(i, 1, &[]).unwrap().target).or_default() += 1;
        }
        assert!(!moved.contains_key(&targets[3]), "one hop leaves the dead target: {moved:?}");
        assert_eq!(moved.len(), 6, "{moved:?}");
        assert!(moved.values().all(|&n| n.abs_diff(1_000 / 6) <= 1), "evenly: {moved:?}");
    }
}
