//! One accepted connection as the io_uring driver holds it, the tags its
//! operations carry, and the buffers a write owns while it is in flight.

use std::net::TcpStream;
use std::os::fd::{AsRawFd as _, RawFd};

use gateway_core::OwnedChunk;

use crate::driver::stream::Layer;
use crate::driver::worker::DriverConn;

/// Tag of the eventfd read.
pub(super) const WAKE: u64 = u64::MAX;
/// Tags of the ws and wss listeners' accepts: (multishot, single).
pub(super) const ACCEPT_WS: (u64, u64) = (u64::MAX - 1, u64::MAX - 2);
pub(super) const ACCEPT_WSS: (u64, u64) = (u64::MAX - 3, u64::MAX - 4);

/// The tag of connection `key`'s operations: its slot and its generation,
/// so that a completion for a closed connection is never taken for the one
/// that has its slot now.
pub(super) fn tag(key: usize, generation: u16) -> u64 {
    (u64::from(generation) << 32) | (key as u64 & 0xffff_ffff)
}

/// The slot and generation in a connection's tag.
pub(super) fn untag(tag: u64) -> (usize, u16) {
    ((tag & 0xffff_ffff) as usize, (tag >> 32) as u16)
}

const DIRTY: u8 = 1;
/// A multishot receive is armed.
const RECEIVING: u8 = 2;
/// A write is in flight.
const SENDING: u8 = 4;

/// The driver's part of a connection (it rides in the session's slot in the
/// hub): 32 bytes, as the epoll driver's.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Non-blocking; for the last write at close, and closed on drop.
    pub(super) socket: TcpStream,
    scheduled: Option<u32>,
    pub(super) generation: u16,
    flags: u8,
    pub(super) layer: Layer,
}

impl DriverConn for Conn {
    fn scheduled(&mut self) -> &mut Option<u32> {
        &mut self.scheduled
    }

    fn dirty(&self) -> bool {
        self.flags & DIRTY != 0
    }

    fn set_dirty(&mut self, dirty: bool) {
        self.set(DIRTY, dirty);
    }

    fn layer(&mut self) -> &mut Layer {
        &mut self.layer
    }
}

impl Conn {
    pub(super) fn new(socket: TcpStream, generation: u16, layer: Layer) -> Self {
        Self { socket, scheduled: None, generation, flags: 0, layer }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub(super) fn receiving(&self) -> bool {
        self.flags & RECEIVING != 0
    }

    pub(super) fn set_receiving(&mut self, on: bool) {
        self.set(RECEIVING, on);
    }

    pub(super) fn sending(&self) -> bool {
        self.flags & SENDING != 0
    }

    pub(super) fn set_sending(&mut self, on: bool) {
        self.set(SENDING, on);
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// A piece of one write, owned until the write completes: a piece of the
/// front of a session's output (reference-counted, no copy), or TLS
/// records.
#[derive(Debug)]
pub(crate) enum Piece {
    Chunk(OwnedChunk),
    Records(Vec<u8>),
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Chunk(chunk) => chunk,
            Self::Records(records) => records,
        }
    }
}

/// The pieces of one write.
pub(crate) type Out = Vec<Piece>;

/// The bytes in `out`.
pub(super) fn out_len(out: &Out) -> usize {
    out.iter().map(|piece| piece.as_ref().len()).sum()
}

/// Write buffers kept for the next writes: no allocation per write once
/// the worker is warm.
#[derive(Debug, Default)]
pub(super) struct Spare {
    pieces: Vec<Out>,
    records: Vec<Vec<u8>>,
}

/// Most spare buffers of each kind kept.
const SPARE_KEPT: usize = 256;
/// A TLS buffer larger than this (a large write) is not kept.
const SPARE_TLS_BYTES: usize = 128 * 1024;

impl Spare {
    pub(super) fn pieces(&mut self) -> Out {
        self.pieces.pop().unwrap_or_default()
    }

    pub(super) fn records(&mut self) -> Vec<u8> {
        self.records.pop().unwrap_or_default()
    }

    /// Keeps `out`'s buffers (emptied: chunks dropped now, not when reused).
    pub(super) fn keep(&mut self, mut out: Out) {
        for piece in out.drain(..) {
            if let Piece::Records(mut records) = piece {
                if self.records.len() < SPARE_KEPT && records.capacity() <= SPARE_TLS_BYTES {
                    records.clear();
                    self.records.push(records);
                }
            }
        }
        if self.pieces.len() < SPARE_KEPT {
            self.pieces.push(out);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The io_uring driver's slot costs no more than the epoll driver's
    /// (`epoll::conn::tests::session_slot_stays_small`).
    #[test]
    fn session_slot_is_the_size_of_the_epoll_drivers() {
        let uring = gateway_hub::Hub::<super::Conn>::slot_size();
        let epoll = gateway_hub::Hub::<crate::driver::epoll::Conn>::slot_size();
        assert!(uring <= epoll, "io_uring slot {uring} bytes, epoll {epoll}");
    }

    #[test]
    fn tags_keep_slot_and_generation_apart() {
        let tag = super::tag(123_456, 65_535);
        assert_eq!(super::untag(tag), (123_456, 65_535));
        assert!(tag < super::ACCEPT_WSS.1, "a connection's tag is never a listener's or the waker's");
    }
}
