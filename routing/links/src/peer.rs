//! The sending side of the link to one node.
//!
//! LIVE frames are never dropped on a failure: those queued, and those
//! written that the peer's credit does not cover yet (it may not have
//! taken them), go back to the node ([`Report::Returned`]), which looks
//! their devices up again. Dropped silently, an entry whose device moved to
//! another node meanwhile would wait in the store for that device's next
//! gap or sync, however long that is.
//!
//! A LIVE frame sent with a [`Tag`] is reported back once the peer took it
//! ([`Report::Taken`]): the node holds a message's SEND_ACK until then, so
//! that an acknowledged message never depends on this node living on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use routing::link::LinkFrame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::handshake::dial;
use crate::io::next_frame;
use crate::queue::{Lane, Pushed, SendQueue, Tag};
use crate::{LinkConfig, LinkFailure};

/// Most bytes one write takes from the queue.
const WRITE_BATCH: usize = 256 << 10;

/// What a peer link has done (relaxed counters for the metrics).
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Bytes queued now.
    pub queued_bytes: AtomicU64,
    /// Frames written.
    pub frames: AtomicU64,
    /// Writes (each carries one or more frames).
    pub writes: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Live frames shed (a full queue).
    pub shed_live: AtomicU64,
    /// Ephemeral frames shed.
    pub shed_ephemeral: AtomicU64,
    /// Links established.
    pub connects: AtomicU64,
    /// Dials or links that failed.
    pub failures: AtomicU64,
    /// LIVE-lane frames handed back to the node (the link failed before
    /// the peer took them).
    pub returned: AtomicU64,
}

/// What a peer link tells its node.
#[derive(Debug)]
pub enum Report {
    /// The peer took these tagged frames (a grant covers them), oldest
    /// first.
    Taken(Vec<Tag>),
    /// A full queue shed these tagged frames: nobody takes them (their
    /// entries wait in the store for their devices' next gap or sync).
    Shed(Vec<Tag>),
    /// A failed link hands back the LIVE frames its peer did not take.
    Returned(Returned),
}

/// LIVE-lane frames (encoded, with their tags) a failed link hands back to
/// its node.
#[derive(Debug)]
pub struct Returned {
    /// The node the link was to.
    pub node: u32,
    /// The frames, oldest first.
    pub frames: Vec<(Bytes, Option<Tag>)>,
}

#[derive(Debug)]
struct State {
    queue: SendQueue,
    credit: u64,
    address: String,
    closed: bool,
    /// The current connection's accounts, for the hand-back.
    sent: Sent,
}

/// What the current connection has written and the peer has taken.
#[derive(Debug, Default)]
struct Sent {
    /// Bytes written.
    written: u64,
    /// Bytes the peer granted again after its first grant: it has taken
    /// that many (it grants only what its node took).
    taken: u64,
    /// The first grant (the window) has arrived.
    window_granted: bool,
    /// LIVE-lane frames written and not yet taken, with the connection's
    /// byte count at their end.
    untaken: VecDeque<(u64, Bytes, Option<Tag>)>,
}

impl Sent {
    /// A grant of `bytes` arrived: adds the tags of the frames it covers to
    /// `taken`.
    fn granted(&mut self, bytes: u64, taken: &mut Vec<Tag>) {
        if !self.window_granted {
            self.window_granted = true;
            return;
        }
        self.taken += bytes;
        while self.untaken.front().is_some_and(|(end, _, _)| *end <= self.taken) {
            if let Some((_, _, tag)) = self.untaken.pop_front() {
                taken.extend(tag);
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    node: u32,
    config: Arc<LinkConfig>,
    state: Mutex<State>,
    wake: Notify,
    stats: Arc<PeerStats>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, pushed: Pushed) {
        self.stats.shed_live.fetch_add(u64::from(pushed.shed_live), Ordering::Relaxed);
        self.stats.shed_ephemeral.fetch_add(u64::from(pushed.shed_ephemeral), Ordering::Relaxed);
    }

    /// The connection is over (or never was): the LIVE frames the peer
    /// has not taken, written then queued, go back to the node, and the
    /// next connection starts its accounts (and credit) afresh.
    fn hand_back(&self, state: &mut State) {
        let sent = std::mem::take(&mut state.sent);
        state.credit = 0;
        let mut frames: Vec<(Bytes, Option<Tag>)> =
            sent.untaken.into_iter().map(|(_, frame, tag)| (frame, tag)).collect();
        frames.extend(state.queue.take_live());
        self.stats.queued_bytes.store(state.queue.bytes() as u64, Ordering::Relaxed);
        if !frames.is_empty() {
            self.stats.returned.fetch_add(frames.len() as u64, Ordering::Relaxed);
            let _ = self.reports.send(Report::Returned(Returned { node: self.node, frames }));
        }
    }
}

/// The link to one node, as the router sees it. Dropping it stops the
/// link's task.
#[derive(Debug)]
pub struct Peer {
    shared: Arc<Shared>,
}

impl Peer {
    /// Starts the link to `node` at `address` (on the current tokio
    /// runtime); frames may be sent at once, they wait for the link. Tagged
    /// frames taken, and LIVE frames the link fails to deliver, are
    /// reported on `reports`.
    pub fn start(
        config: Arc<LinkConfig>,
        node: u32,
        address: String,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let state = State {
            queue: SendQueue::new(config.queue_bytes),
            credit: 0,
            address,
            closed: false,
            sent: Sent::default(),
        };
        let shared = Arc::new(Shared {
            node,
            config,
            state: Mutex::new(state),
            wake: Notify::new(),
            stats: Arc::default(),
            reports,
        });
        tokio::spawn(run(shared.clone()));
        Self { shared }
    }

    /// The node at the other end.
    pub fn node(&self) -> u32 {
        self.shared.node
    }

    /// Queues `frame` without waiting (shedding by lane when full).
    pub fn send(&self, lane: Lane, frame: &LinkFrame) {
        self.send_tagged(lane, frame, None);
    }

    /// [`Peer::send`]; a LIVE-lane frame's `tag` is reported once: taken
    /// by the peer ([`Report::Taken`]), shed from a full queue
    /// ([`Report::Shed`]), or back with the frame ([`Report::Returned`]).
    pub fn send_tagged(&self, lane: Lane, frame: &LinkFrame, tag: Option<Tag>) {
        let mut bytes = BytesMut::new();
        frame.encode(&mut bytes);
        let (pushed, shed) = {
            let mut state = self.shared.state();
            let pushed = state.queue.push_tagged(lane, bytes.freeze(), tag);
            self.shared.stats.queued_bytes.store(state.queue.bytes() as u64, Ordering::Relaxed);
            (pushed, state.queue.take_shed_tags())
        };
        self.shared.count(pushed);
        if !shed.is_empty() {
            let _ = self.shared.reports.send(Report::Shed(shed));
        }
        self.shared.wake.notify_one();
    }

    /// The node re-joined at another address: dial that from now on.
    pub fn set_address(&self, address: String) {
        self.shared.state().address = address;
    }

    /// What the link has done.
    pub fn stats(&self) -> &PeerStats {
        &self.shared.stats
    }

    /// The same counters, shared (the node's metrics read them).
    pub fn stats_handle(&self) -> Arc<PeerStats> {
        self.shared.stats.clone()
    }
}

impl Drop for Peer {
    /// The node gave the peer up (its lease is gone): its LIVE frames go
    /// back, the rest is shed.
    fn drop(&mut self) {
        let shed = {
            let mut state = self.shared.state();
            state.closed = true;
            self.shared.hand_back(&mut state);
            state.queue.clear()
        };
        self.shared.count(shed);
        self.shared.stats.queued_bytes.store(0, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

/// Dials, serves the link until it fails, waits, dials again; ends when the
/// [`Peer`] is dropped.
async fn run(shared: Arc<Shared>) {
    let (first, longest) = shared.config.backoff;
    let mut backoff = first;
    loop {
        let address = {
            let state = shared.state();
            if state.closed {
                return;
            }
            state.address.clone()
        };
        match connect(&shared, &address).await {
            Ok((stream, input)) => {
                backoff = first;
                shared.stats.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = shared.node, %address, "link up");
                let err = serve(&shared, stream, input).await;
                if shared.state().closed {
                    return;
                }
                shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = shared.node, %address, %err, "link down; redialing");
            }
            Err(err) => {
                shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = shared.node, %address, %err, retry_ms = backoff.as_millis() as u64, "link dial failed");
            }
        }
        // Credit belongs to a connection: a new one starts from what its
        // acceptor grants.
        shared.hand_back(&mut shared.state());
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(longest);
    }
}

async fn connect(shared: &Shared, address: &str) -> Result<(TcpStream, BytesMut), LinkFailure> {
    let config = &shared.config;
    let attempt = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut input = BytesMut::new();
        dial(&mut stream, &mut input, config, shared.node).await?;
        Ok((stream, input))
    };
    tokio::time::timeout(config.handshake_timeout, attempt).await.map_err(|_| LinkFailure::Timeout)?
}

/// Writes queued frames as credit allows while reading the peer's credit;
/// returns why the link ended.
async fn serve(shared: &Shared, stream: TcpStream, mut input: BytesMut) -> LinkFailure {
    let (reader, mut writer) = stream.into_split();
    let credits = async {
        loop {
            match next_frame(&reader, &mut input).await.map(|next| next.map(|(frame, _)| frame)) {
                Ok(None) => return LinkFailure::Closed,
                Ok(Some(LinkFrame::Credit { bytes })) => {
                    let mut taken = Vec::new();
                    let mut state = shared.state();
                    state.credit = state.credit.saturating_add(bytes);
                    state.sent.granted(bytes, &mut taken);
                    drop(state);
                    shared.wake.notify_one();
                    if !taken.is_empty() {
                        let _ = shared.reports.send(Report::Taken(taken));
                    }
                }
                Ok(Some(LinkFrame::Refuse { code, reason })) => return LinkFailure::Refused { code, reason },
                Ok(Some(other)) => return LinkFailure::Unexpected(other.kind()),
                Err(err) => return err,
            }
        }
    };
    let writes = async {
        loop {
            // Taken per write and dropped after it: an idle link holds none.
            let mut batch = BytesMut::new();
            let frames = take_batch(shared, &mut batch);
            if frames == 0 {
                if shared.state().closed {
                    return LinkFailure::Closed;
                }
                shared.wake.notified().await;
                continue;
            }
            match tokio::time::timeout(shared.config.write_timeout, writer.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return LinkFailure::Io(err),
                Err(_) => return LinkFailure::Timeout,
            }
            let stats = &shared.stats;
            stats.writes.fetch_add(1, Ordering::Relaxed);
            stats.frames.fetch_add(frames, Ordering::Relaxed);
            stats.bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    };
    tokio::select! {
        err = credits => err,
        err = writes => err,
    }
}

/// Moves frames the credit allows (up to one write's worth) into `batch`;
/// returns how many.
fn take_batch(shared: &Shared, batch: &mut BytesMut) -> u64 {
    let mut state = shared.state();
    let mut frames = 0;
    while batch.len() < WRITE_BATCH {
        let credit = state.credit;
        let Some((lane, frame, tag)) = state.queue.pop(credit) else { break };
        state.credit -= frame.len() as u64;
        batch.extend_from_slice(&frame);
        state.sent.written += frame.len() as u64;
        if lane == Lane::Live {
            let end = state.sent.written;
            state.sent.untaken.push_back((end, frame, tag));
        }
        frames += 1;
    }
    shared.stats.queued_bytes.store(state.queue.bytes() as u64, Ordering::Relaxed);
    frames
}

/// `base` ± 25 %, so that the links of a restarted node do not all redial
/// in step.
fn jitter(base: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let spread = base / 2;
    base - base / 4 + spread.mul_f64(f64::from(nanos % 1_000) / 1_000.0)
}
