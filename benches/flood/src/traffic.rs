//! Message traffic of the protocol scenarios (`chat`, `sync`, `group`,
//! `storm`): what one connection does once live ([`Flow`]; in the tagged
//! modes it puts a [`Tag`] on each send and checks the ones it receives,
//! see `tag`), and the counters and latency histograms the threads of a
//! process share ([`Counters`], [`Latencies`]).
//!
//! Chat: sessions in pairs (user 2k ↔ 2k+1, device 1). Each sends SEND to
//! its peer, at most `window` unacknowledged at a time, either as fast as
//! SEND_ACKs come back or at a fixed rate. The payload starts with the send
//! time (nanoseconds since the run's start on flood's monotonic clock, 8
//! bytes little-endian): sender and receiver are threads of one process, so
//! the receiver computes the end-to-end latency (SEND written → DELIVER
//! read). The sender records SEND → SEND_ACK. Every session acks its inbox
//! cumulatively once per WebSocket message received.
//!
//! Ping: the same loop with PING instead of SEND (nonce = send time with the
//! top bit set, so the PONG carries it back), the round trip of a frame
//! through the gateway without the store: the baseline of `chat`.
//!
//! Sync: one device connects to a filled inbox and drains it (the server's
//! SYNC_BATCHes, acked once per WebSocket message) until SYNC_DONE.
//!
//! Group: sessions in groups of G (session `g·G + m` is member `m` of group
//! `g`); member 0 creates the group, members `0..K` send to it, everyone
//! counts what arrives. Storm: chat pairs whose payloads are tagged, so that
//! the receivers can prove every message arrived once across reconnects.
//! Mix: the fleet's traffic, chat pairs and groups of many sizes at once,
//! with presence, typing and read receipts (`mix`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use protocol::{Conversation, Frame, GroupId, Payload, Ping, UserId};
use serde::{Deserialize, Serialize};

use crate::tag::{Seen, StreamCheck, Tag};

/// Marks the PINGs of the ping mode (their nonce is a send time); heartbeat
/// PINGs count up from 1 and never have it.
pub(crate) const TIMED_PING: u64 = 1 << 63;
/// Bytes of the send time at the start of a chat payload.
pub(crate) const STAMP_LEN: usize = 8;
/// Largest latency the histograms hold, microseconds (larger ones saturate).
const MAX_LATENCY_US: u64 = 120_000_000;

/// What the live sessions of a run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// SEND to the peer (chat).
    Send,
    /// PING round trips (the chat baseline).
    Ping,
    /// Nothing sent: drain the inbox (sync).
    Sync,
    /// Tagged SENDs to a group, checked by every member.
    Group,
    /// Tagged SENDs to the peer, checked across drops and reconnects.
    Storm,
    /// Tagged SENDs to the peer and to the session's group, with presence,
    /// typing and READs; every delivery checked against every ack.
    Mix,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Send => "chat",
            Self::Ping => "ping",
            Self::Sync => "sync",
            Self::Group => "group",
            Self::Storm => "storm",
            Self::Mix => "mix",
        }
    }

    /// Whether payloads carry a [`Tag`] the receivers check.
    pub(crate) fn tagged(self) -> bool {
        matches!(self, Self::Group | Self::Storm | Self::Mix)
    }
}

/// The traffic settings every connection of a run shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) mode: Mode,
    /// Most sends (or PINGs) in flight per session.
    pub(crate) window: u32,
    /// Time between two sends of one session; `None`: as fast as the window
    /// allows.
    pub(crate) interval: Option<Duration>,
    /// SEND payload size, bytes (at least [`STAMP_LEN`];
    /// [`TAG_LEN`](crate::tag::TAG_LEN) when tagged).
    pub(crate) payload_len: usize,
    /// Zero of the send times.
    pub(crate) origin: Instant,
    /// Group mode: members per group.
    pub(crate) group_size: u32,
    /// Group mode: senders per group (members `0..senders`).
    pub(crate) senders: u32,
    /// Storm: share of the sessions dropped, percent.
    pub(crate) drop_percent: f64,
    /// Storm: reconnections per second (this process).
    pub(crate) reconnect_rate: f64,
    /// Storm and mix: the targets are one fleet (`--fleet`).
    pub(crate) fleet: bool,
    /// Mix: the process's traffic besides the pairs' (`interval`).
    pub(crate) mix: Option<crate::mix::MixSpec>,
}

impl Spec {
    /// Settings with no group or storm part.
    pub(crate) fn new(
        mode: Mode,
        window: u32,
        interval: Option<Duration>,
        payload_len: usize,
        origin: Instant,
    ) -> Self {
        Self {
            mode,
            window,
            interval,
            payload_len,
            origin,
            group_size: 0,
            senders: 0,
            drop_percent: 0.0,
            reconnect_rate: 1.0,
            fleet: false,
            mix: None,
        }
    }

    /// Nanoseconds from the origin to `now`.
    pub(crate) fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Storm: whether session `i` is one of the dropped, and its rank among
    /// them (the dropped are spread evenly over the indexes: `⌊(i+1)·p⌋ >
    /// ⌊i·p⌋`, rank `⌊i·p⌋`, with `p` the dropped share).
    pub(crate) fn storm_rank(&self, i: u64) -> Option<u64> {
        let p = (self.drop_percent / 100.0).clamp(0.0, 1.0);
        let below = (i as f64 * p).floor();
        ((i + 1) as f64 * p).floor().gt(&below).then_some(below as u64)
    }
}

/// A group session's part in its group.
#[derive(Debug, Clone)]
pub(crate) struct GroupRole {
    /// Group index in this process.
    pub(crate) index: u32,
    /// Creator only: the other members, named in GROUP_CREATE.
    pub(crate) members: Vec<UserId>,
    /// Creator only: the GROUP_CREATE request, once sent.
    pub(crate) request: Option<u64>,
    /// Creator only: when to send GROUP_CREATE again (it was refused for a
    /// passing reason: the store was overloaded by every group at once).
    pub(crate) retry_at: Option<Instant>,
}

/// A send in flight: its client id, send time, and (tagged modes) its seq
/// and whether it went to the session's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) client_id: u64,
    pub(crate) stamp: u64,
    pub(crate) seq: u64,
    pub(crate) group: bool,
}

/// One connection's traffic state.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) spec: Spec,
    /// Where this session's SENDs go (`None`: nowhere yet, such as a group
    /// before its GROUP_OK).
    pub(crate) to: Option<Conversation>,
    /// Whether this session sends (every chat and storm session; group
    /// members `0..senders`).
    pub(crate) sender: bool,
    /// Group mode.
    pub(crate) group: Option<GroupRole>,
    /// Whether sending began (at the start of the hold, or at AUTH_OK after it).
    pub(crate) started: bool,
    /// Sends (or timed PINGs) not answered yet.
    pub(crate) inflight: u32,
    /// Rate mode: when the next send is due.
    pub(crate) next_send: Option<Instant>,
    /// The sends in flight, oldest first.
    sends: VecDeque<Pending>,
    /// Tag of this session's sends: stream, sender, next seq.
    stream: u32,
    from: u32,
    next_seq: u64,
    /// Tagged modes: each sender's stream as received here.
    pub(crate) checks: BTreeMap<(u32, u32), StreamCheck>,
    /// Mix: the group, the other traffic and the checks beyond the pair's.
    pub(crate) mix: Option<Box<crate::mix::MixFlow>>,
}

impl Flow {
    /// Chat, ping and sync: sends (if any) go to `peer`.
    pub(crate) fn new(spec: Spec, peer: UserId) -> Self {
        Self {
            spec,
            to: Some(Conversation::Direct(peer)),
            sender: spec.mode != Mode::Sync,
            group: None,
            started: false,
            inflight: 0,
            next_send: None,
            sends: VecDeque::new(),
            stream: 0,
            from: 0,
            next_seq: 1,
            checks: BTreeMap::new(),
            mix: None,
        }
    }

    /// The traffic of session `i` of a process whose session 0 is user
    /// `first_user`: chat pairs (user 2k ↔ 2k+1), or member `i mod G` of
    /// group `i / G`.
    pub(crate) fn for_session(spec: Spec, i: u64, first_user: u64) -> Self {
        let user = first_user + i;
        let mut flow = Self::new(spec, UserId(user ^ 1));
        flow.from = u32::try_from(i).unwrap_or(u32::MAX);
        if spec.mode == Mode::Group {
            let size = u64::from(spec.group_size.max(1));
            let (index, member) = (i / size, i % size);
            let first = first_user + index * size;
            flow.to = None;
            flow.stream = u32::try_from(index).unwrap_or(u32::MAX);
            flow.from = u32::try_from(member).unwrap_or(u32::MAX);
            flow.sender = member < u64::from(spec.senders);
            let members =
                if member == 0 { (1..size).map(|m| UserId(first + m)).collect() } else { Vec::new() };
            flow.group = Some(GroupRole { index: flow.stream, members, request: None, retry_at: None });
        }
        if let Some(mix) = spec.mix {
            let (role, state) = crate::mix::MixFlow::for_session(&mix, i, first_user);
            flow.group = role;
            flow.mix = Some(Box::new(state));
        }
        flow
    }

    /// Whether another send fits the window.
    pub(crate) fn has_room(&self) -> bool {
        let can = match self.spec.mode {
            Mode::Sync => false,
            Mode::Ping => true,
            Mode::Send | Mode::Group | Mode::Storm | Mode::Mix => self.sender && self.to.is_some(),
        };
        can && self.inflight < self.spec.window
    }

    /// The payload of a send made at `stamp` (tagged modes: the next seq)
    /// and that seq.
    pub(crate) fn payload(&mut self, stamp: u64) -> Option<(Payload, u64)> {
        let seq = self.next_seq;
        let payload = if self.spec.mode.tagged() {
            self.next_seq += 1;
            tagged_payload(self.spec.payload_len, Tag { stamp, stream: self.stream, from: self.from, seq })?
        } else {
            let mut bytes = vec![0u8; self.spec.payload_len.max(STAMP_LEN)];
            bytes.get_mut(..STAMP_LEN)?.copy_from_slice(&stamp.to_le_bytes());
            Payload::new(Bytes::from(bytes)).ok()?
        };
        Some((payload, seq))
    }

    /// Records a SEND in flight.
    pub(crate) fn sent(&mut self, pending: Pending) {
        self.inflight += 1;
        self.sends.push_back(pending);
    }

    /// A timed PING at `stamp`.
    pub(crate) fn ping(&mut self, stamp: u64) -> Frame {
        self.inflight += 1;
        Frame::Ping(Ping { nonce: TIMED_PING | stamp })
    }

    /// SEND_ACK or SEND_ERROR for `client_id`: the send, if it was in
    /// flight.
    pub(crate) fn answered(&mut self, client_id: u64) -> Option<Pending> {
        let index = self.sends.iter().position(|p| p.client_id == client_id)?;
        let pending = self.sends.remove(index)?;
        self.inflight = self.inflight.saturating_sub(1);
        Some(pending)
    }

    /// A PONG: the send time of a timed PING, `None` for a heartbeat.
    pub(crate) fn pong(&mut self, nonce: u64) -> Option<u64> {
        if nonce & TIMED_PING == 0 {
            return None;
        }
        self.inflight = self.inflight.saturating_sub(1);
        Some(nonce & !TIMED_PING)
    }

    /// The sender index this session's tags carry.
    pub(crate) fn from(&self) -> u32 {
        self.from
    }

    /// A tagged message arrived here.
    pub(crate) fn see(&mut self, tag: &Tag) -> Seen {
        self.checks.entry((tag.stream, tag.from)).or_default().see(tag.seq)
    }
}

/// A payload of `len` bytes (at least the tag's) starting with `tag`.
pub(crate) fn tagged_payload(len: usize, tag: Tag) -> Option<Payload> {
    let mut bytes = vec![0u8; len.max(crate::tag::TAG_LEN)];
    tag.write(&mut bytes).then_some(())?;
    Payload::new(Bytes::from(bytes)).ok()
}

/// The send time a chat payload starts with.
pub(crate) fn payload_stamp(payload: &[u8]) -> Option<u64> {
    let stamp: [u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(stamp))
}

/// An empty latency histogram of 1 µs to 120 s, 3 significant figures.
pub(crate) fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| format!("latency histogram: {e}"))
}

/// Latency histograms, microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    /// SEND → SEND_ACK (ping mode: PING → PONG; echo: the round trip;
    /// handshake: connect → upgrade or AUTH_OK).
    pub(crate) ack: Histogram<u64>,
    /// SEND written → DELIVER read (hub: sent → received).
    pub(crate) e2e: Histogram<u64>,
    /// Storm: reconnect started → SYNC_DONE.
    pub(crate) reconnect: Histogram<u64>,
    /// Mix: SEND written → DELIVER read, group messages (`e2e`: the pairs').
    pub(crate) e2e_group: Histogram<u64>,
}

impl Latencies {
    /// Empty histograms.
    pub(crate) fn new() -> Result<Self, String> {
        Ok(Self { ack: histogram()?, e2e: histogram()?, reconnect: histogram()?, e2e_group: histogram()? })
    }

    /// Adds another thread's histograms.
    pub(crate) fn add(&mut self, other: &Self) {
        let _ = self.ack.add(&other.ack);
        let _ = self.e2e.add(&other.e2e);
        let _ = self.reconnect.add(&other.reconnect);
        let _ = self.e2e_group.add(&other.e2e_group);
    }

    /// Empties them (after they were merged into the process's).
    pub(crate) fn reset(&mut self) {
        self.ack.reset();
        self.e2e.reset();
        self.reconnect.reset();
        self.e2e_group.reset();
    }
}

/// Records `from_ns` → `to_ns` in `histogram`, in microseconds.
pub(crate) fn record(histogram: &mut Histogram<u64>, from_ns: u64, to_ns: u64) {
    let us = to_ns.saturating_sub(from_ns) / 1000;
    histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Traffic counters of one process (relaxed atomics, each read on its own).
#[derive(Debug)]
pub(crate) struct Counters {
    /// SENDs (ping mode: timed PINGs; echo and hub: messages) written.
    pub(crate) sent: AtomicU64,
    /// SEND_ACKs (ping mode: PONGs of timed PINGs; echo: echoes back intact).
    pub(crate) acked: AtomicU64,
    /// SEND_ERRORs.
    pub(crate) send_errors: AtomicU64,
    /// Entries delivered (live DELIVER and SYNC_BATCH entries alike; group:
    /// system entries not counted; hub: messages received).
    pub(crate) delivered: AtomicU64,
    /// ACK frames sent.
    pub(crate) acks_sent: AtomicU64,
    /// SYNC_DONEs received.
    pub(crate) synced: AtomicU64,
    /// Highest SYNC_DONE head seen.
    pub(crate) synced_head: AtomicU64,
    /// Earliest AUTH_OK, ns since the origin (`u64::MAX`: none).
    pub(crate) first_auth_ns: AtomicU64,
    /// Latest SYNC_DONE, ns since the origin.
    pub(crate) last_synced_ns: AtomicU64,
    /// Tagged messages received for the first time.
    pub(crate) unique: AtomicU64,
    /// Tagged messages received again (the application saw them twice).
    pub(crate) duplicates: AtomicU64,
    /// Tagged messages that arrived after a gap in their stream.
    pub(crate) out_of_order: AtomicU64,
    /// Group system entries (membership changes) received.
    pub(crate) system_entries: AtomicU64,
    /// Groups whose GROUP_OK arrived.
    pub(crate) groups_created: AtomicU64,
    /// Group index → group id, as the creators learn them.
    groups: Mutex<BTreeMap<u32, u64>>,
    /// Storm: when the drop starts, ns since the origin (`u64::MAX`: not yet).
    pub(crate) storm_at_ns: AtomicU64,
    /// Storm: sessions dropped (by the storm, or by losing their node).
    pub(crate) storm_dropped: AtomicU64,
    /// Storm with `--fleet`: of those, sessions whose connection was lost
    /// while live (their node died), not dropped by flood.
    pub(crate) connections_lost: AtomicU64,
    /// Storm: dropped sessions authenticated again.
    pub(crate) reconnected: AtomicU64,
    /// Storm: which acknowledged messages arrived, to name the lost ones.
    pub(crate) ledger: Mutex<Ledger>,
    /// Storm: dropped sessions authenticated again and synced.
    pub(crate) resynced: AtomicU64,
    /// Storm: reconnect attempts that failed and were retried.
    pub(crate) reconnect_retries: AtomicU64,
    /// Storm: latest resync, ns since the origin.
    pub(crate) last_resync_ns: AtomicU64,
    /// Entries the session core dropped as replays of what it had surfaced
    /// (SPEC §6.3: harmless, the application never sees them).
    pub(crate) replays_dropped: AtomicU64,
    /// Histograms merged by each thread once a second and as it ends.
    pub(crate) latencies: Mutex<Option<Latencies>>,
    /// Mix: the counters and the ledger of the pairs' and groups' traffic.
    pub(crate) mix: crate::mix::MixCounters,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            synced_head: AtomicU64::new(0),
            first_auth_ns: AtomicU64::new(u64::MAX),
            last_synced_ns: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            system_entries: AtomicU64::new(0),
            groups_created: AtomicU64::new(0),
            groups: Mutex::new(BTreeMap::new()),
            storm_at_ns: AtomicU64::new(u64::MAX),
            storm_dropped: AtomicU64::new(0),
            connections_lost: AtomicU64::new(0),
            ledger: Mutex::new(Ledger::default()),
            reconnected: AtomicU64::new(0),
            resynced: AtomicU64::new(0),
            reconnect_retries: AtomicU64::new(0),
            last_resync_ns: AtomicU64::new(0),
            replays_dropped: AtomicU64::new(0),
            latencies: Mutex::new(None),
            mix: crate::mix::MixCounters::default(),
        }
    }
}

impl Counters {
    /// Adds a thread's histograms.
    pub(crate) fn merge(&self, latencies: &Latencies) {
        if let Ok(mut total) = self.latencies.lock() {
            match total.as_mut() {
                Some(total) => total.add(latencies),
                None => *total = Some(latencies.clone()),
            }
        }
    }

    /// The merged histograms (`None` if no thread merged any).
    pub(crate) fn latencies(&self) -> Option<Latencies> {
        self.latencies.lock().ok().and_then(|l| l.clone())
    }

    /// Runs `f` on the merged histograms, if any (progress lines).
    pub(crate) fn with_latencies<T>(&self, f: impl FnOnce(&Latencies) -> T) -> Option<T> {
        self.latencies.lock().ok().and_then(|l| l.as_ref().map(f))
    }

    /// `(sent, acked, send_errors, delivered)` now.
    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Relaxed),
            self.acked.load(Relaxed),
            self.send_errors.load(Relaxed),
            self.delivered.load(Relaxed),
        )
    }

    /// A creator learned its group's id.
    pub(crate) fn group_created(&self, index: u32, id: GroupId) {
        if let Ok(mut groups) = self.groups.lock() {
            if groups.insert(index, id.0).is_none() {
                self.groups_created.fetch_add(1, Relaxed);
            }
        }
    }

    /// The id of group `index`, once created.
    pub(crate) fn group(&self, index: u32) -> Option<GroupId> {
        self.groups.lock().ok().and_then(|groups| groups.get(&index).copied()).map(GroupId)
    }

    /// Counts a tagged message as the receiver saw it.
    pub(crate) fn seen(&self, seen: Seen) {
        match seen {
            Seen::InOrder => {
                self.unique.fetch_add(1, Relaxed);
            }
            Seen::OutOfOrder => {
                self.unique.fetch_add(1, Relaxed);
                self.out_of_order.fetch_add(1, Relaxed);
            }
            Seen::Duplicate => {
                self.duplicates.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Storm: every acknowledged and every arrived message, by (sender index,
/// send stamp), so that a run that lost some can say which.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    acked: BTreeSet<(u32, u64)>,
    seen: BTreeSet<(u32, u64)>,
}

impl Ledger {
    /// A SEND_ACK for the message sender `from` sent at `stamp`.
    pub(crate) fn acked(&mut self, from: u32, stamp: u64) {
        self.acked.insert((from, stamp));
    }

    /// The message sender `from` sent at `stamp` arrived.
    pub(crate) fn seen(&mut self, from: u32, stamp: u64) {
        self.seen.insert((from, stamp));
    }

    /// Acknowledged messages that never arrived, oldest first: (sender
    /// index, send stamp).
    pub(crate) fn lost(&self) -> Vec<(u32, u64)> {
        let mut lost: Vec<(u32, u64)> = self.acked.difference(&self.seen).copied().collect();
        lost.sort_unstable_by_key(|&(_, stamp)| stamp);
        lost
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(mode: Mode) -> Spec {
        Spec::new(mode, 2, None, 16, Instant::now())
    }

    #[test]
    fn payload_carries_the_stamp() {
        let mut flow = Flow::new(spec(Mode::Send), UserId(3));
        let (payload, _) = flow.payload(123_456_789).unwrap();
        assert_eq!(payload.bytes().len(), 16);
        assert_eq!(payload_stamp(payload.bytes()), Some(123_456_789));
        assert_eq!(payload_stamp(&[1, 2, 3]), None);
    }

    #[test]
    fn window_and_answers() {
        let mut flow = Flow::new(spec(Mode::Send), UserId(3));
        assert!(flow.has_room());
        let pending = |client_id, stamp| Pending { client_id, stamp, seq: 0, group: false };
        flow.sent(pending(1, 10));
        flow.sent(pending(2, 20));
        assert!(!flow.has_room());
        assert_eq!(flow.answered(2), Some(pending(2, 20)));
        assert_eq!(flow.answered(2), None);
        assert_eq!(flow.answered(1).map(|p| p.stamp), Some(10));
        assert_eq!(flow.inflight, 0);

        let mut pings = Flow::new(spec(Mode::Ping), UserId(3));
        let Frame::Ping(Ping { nonce }) = pings.ping(77) else { panic!() };
        assert_eq!(pings.pong(5), None, "a heartbeat PONG");
        assert_eq!(pings.inflight, 1);
        assert_eq!(pings.pong(nonce), Some(77));
        assert_eq!(pings.inflight, 0);
        assert!(!Flow::new(spec(Mode::Sync), UserId(3)).has_room());
    }

    #[test]
    fn histograms_merge() {
        let mut a = Latencies::new().unwrap();
        let mut b = Latencies::new().unwrap();
        record(&mut a.ack, 0, 1_000_000);
        record(&mut b.ack, 0, 3_000_000);
        record(&mut b.e2e, 5, 0);
        a.add(&b);
        let p = crate::report::Percentiles::of(&a.ack);
        assert_eq!(p.count, 2);
        assert!((999..=1001).contains(&p.p50_us), "{p:?}");
        assert!((2990..=3010).contains(&p.max_us), "{p:?}");
        assert_eq!(crate::report::Percentiles::of(&a.e2e).max_us, 1, "negative spans clamp to 1 µs");
    }

    #[test]
    fn group_roles_and_storm_ranks() {
        let mut spec = spec(Mode::Group);
        spec.group_size = 5;
        spec.senders = 2;
        let creator = Flow::for_session(spec, 10, 100);
        let role = creator.group.as_ref().unwrap();
        assert_eq!((role.index, creator.sender), (2, true));
        assert_eq!(role.members, (111..115).map(UserId).collect::<Vec<_>>());
        let member = Flow::for_session(spec, 13, 100);
        assert!(!member.sender && member.group.as_ref().unwrap().members.is_empty());
        assert!(Flow::for_session(spec, 11, 100).sender);

        let mut storm = spec;
        storm.drop_percent = 50.0;
        let dropped: Vec<_> = (0..6).filter_map(|i| storm.storm_rank(i).map(|r| (i, r))).collect();
        assert_eq!(dropped, vec![(1, 0), (3, 1), (5, 2)]);
        storm.drop_percent = 100.0;
        assert_eq!((0..4).filter_map(|i| storm.storm_rank(i)).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        storm.drop_percent = 0.0;
        assert_eq!(storm.storm_rank(3), None);
    }
}
