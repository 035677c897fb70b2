//! Links between the gateway nodes of a fleet: the link protocol
//! (`routing::link`, contract in `routing/LINKS.md`) over TCP, on the node's
//! fleet runtime (tokio, one thread), never on a worker.
//!
//! - [`Peer`]: the sending side of the link to one node. Frames are queued
//!   without waiting ([`Peer::send`]) in a queue bounded in bytes that sheds
//!   ephemeral frames first, then the oldest live ones ([`queue`]); a task
//!   dials, proves the cluster secret, and writes what the peer's credit
//!   allows, many frames per write. A dropped link reconnects with backoff,
//!   and hands the LIVE frames its peer did not take back to the node
//!   ([`Returned`]); a tagged frame is reported once the peer took it
//!   ([`Report::Taken`]).
//! - [`serve`]: the receiving side: accepts links, checks the dialer's
//!   proof, grants credit, and hands each data frame to the node's
//!   [`Sink`]; a sink that cannot take a frame withholds the credit, which
//!   stops the sender (backpressure end to end, never unbounded memory).
//!
//! A link carries one direction: a node dials the nodes it sends to, and a
//! pair that talks both ways holds two connections (`LINKS.md` says why).

mod accept;
mod handshake;
mod io;
mod peer;
pub mod queue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use accept::{serve, InboundStats, Sink};
pub use handshake::PeerId;
pub use peer::{Peer, PeerStats, Report, Returned};
pub use queue::{Lane, Tag};
use routing::link::{self, LinkError};

/// How this node's links behave.
#[derive(Debug)]
pub struct LinkConfig {
    /// This node's id.
    pub node: u32,
    /// This node's epoch (a fenced node re-joins with a new one).
    epoch: AtomicU64,
    /// The cluster secret both sides prove they know.
    pub secret: Vec<u8>,
    /// Bytes queued for one peer before frames are shed.
    pub queue_bytes: usize,
    /// Credit an acceptor grants (and keeps granted) per link, bytes.
    pub window: u64,
    /// Longest handshake (either side).
    pub handshake_timeout: Duration,
    /// A write that takes longer drops the link (the peer stopped reading
    /// below TCP: the credit would not have let it get this far).
    pub write_timeout: Duration,
    /// First and longest wait before redialing a peer.
    pub backoff: (Duration, Duration),
}

impl LinkConfig {
    /// Settings for node `node` at `epoch` with `secret`, the rest default.
    pub fn new(node: u32, epoch: u64, secret: Vec<u8>) -> Self {
        Self {
            node,
            epoch: AtomicU64::new(epoch),
            secret,
            queue_bytes: 8 << 20,
            window: 4 << 20,
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// This node's current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A new epoch (after fencing): links dialed from now on announce it.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// The smallest window that lets the largest frame through.
    pub fn min_window() -> u64 {
        link::wire_len(link::MAX_BODY) as u64
    }
}

/// Why a link failed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkFailure {
    /// The socket failed.
    #[error("link io: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a malformed frame.
    #[error("{0}")]
    Protocol(#[from] LinkError),
    /// The peer refused the link.
    #[error("refused by the peer (code {code}): {reason}")]
    Refused {
        /// `RefuseCode` as sent.
        code: u8,
        /// The peer's reason.
        reason: String,
    },
    /// The peer's proof does not match the cluster secret.
    #[error("the peer's proof does not match the cluster secret")]
    BadProof,
    /// No version in common.
    #[error("link version {0} is not spoken here")]
    Version(u8),
    /// The address answered as another node.
    #[error("dialed node {expected}, node {found} answered")]
    WrongNode {
        /// The node dialed.
        expected: u32,
        /// The node that answered.
        found: u32,
    },
    /// A frame that has no place at this point of the link.
    #[error("unexpected link frame kind 0x{0:02x}")]
    Unexpected(u8),
    /// The peer sent more than its credit.
    #[error("the peer sent {sent} bytes beyond its credit")]
    OverCredit {
        /// Bytes over.
        sent: u64,
    },
    /// The peer closed the link.
    #[error("closed by the peer")]
    Closed,
    /// The handshake or a write took too long.
    #[error("timed out")]
    Timeout,
    /// The system's random source failed.
    #[error("no randomness for the handshake nonce")]
    Random,
}
