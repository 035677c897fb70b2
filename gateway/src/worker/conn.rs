//! One accepted connection: the socket, its session, and the bytes of a
//! partial frame (only while one is pending: an idle connection holds no
//! read buffer).

use std::io::{self, Read, Write};

use bytes::BytesMut;
use gateway_core::Session;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use protocol::{DeviceId, UserId};

/// Most slices handed to one `writev`.
const MAX_IOV: usize = 64;

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) session: Session,
    /// Distinguishes this connection from earlier ones with the same slab key.
    pub(crate) generation: u64,
    /// Set once authenticated; cleared when replaced (the newer one owns the
    /// directory entry).
    pub(crate) identity: Option<(UserId, DeviceId)>,
    /// Deadline slot this connection has in the worker's heap.
    pub(crate) scheduled: Option<u64>,
    /// Queued for this turn's flush.
    pub(crate) dirty: bool,
    writable_interest: bool,
    partial: BytesMut,
}

/// Result of draining a socket's input.
pub(crate) struct ReadOutcome {
    pub(crate) bytes: usize,
    /// End of stream or a socket error: the connection is over.
    pub(crate) closed: bool,
    /// The per-turn budget ran out before the socket was drained: read again
    /// next turn (the edge-triggered poll will not say so).
    pub(crate) more: bool,
}

/// Result of one vectored write.
pub(crate) struct WriteOutcome {
    pub(crate) bytes: usize,
    /// The socket failed: the connection is over.
    pub(crate) failed: bool,
    /// The socket's buffer is full: wait for a writable event.
    pub(crate) blocked: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, session: Session, generation: u64) -> Self {
        Self {
            stream,
            session,
            generation,
            identity: None,
            scheduled: None,
            dirty: false,
            writable_interest: false,
            partial: BytesMut::new(),
        }
    }

    /// Reads what the socket has, up to `budget` bytes, into `input` (the
    /// worker's buffer) after this connection's partial frame, through the
    /// worker's `scratch`. The budget keeps one flooding client from growing
    /// the worker's buffer or starving the other sessions of the turn.
    pub(crate) fn read_into(
        &mut self,
        scratch: &mut [u8],
        input: &mut BytesMut,
        budget: usize,
    ) -> ReadOutcome {
        input.clear();
        input.extend_from_slice(&self.partial);
        let mut bytes = 0;
        loop {
            if bytes >= budget {
                return ReadOutcome { bytes, closed: false, more: true };
            }
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome { bytes, closed: true, more: false },
                Ok(n) => {
                    bytes += n;
                    input.extend_from_slice(scratch.get(..n).unwrap_or_default());
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return ReadOutcome { bytes, closed: false, more: false }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome { bytes, closed: true, more: false },
            }
        }
    }

    /// Keeps what the session left in `input` (a partial frame) for the next
    /// read, and releases the buffer when nothing is left.
    pub(crate) fn keep_partial(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            if self.partial.capacity() > 0 {
                self.partial = BytesMut::new();
            }
        } else {
            self.partial.clear();
            self.partial.extend_from_slice(input);
        }
    }

    /// One vectored write of the session's output (at most `MAX_IOV`
    /// chunks). The worker reports the bytes to the session and calls again
    /// while the socket takes everything it is given.
    pub(crate) fn write_once(&mut self) -> WriteOutcome {
        let outbound = self.session.outbound();
        if outbound.is_empty() {
            return WriteOutcome { bytes: 0, failed: false, blocked: false };
        }
        let mut slices = Vec::with_capacity(MAX_IOV.min(8));
        outbound.io_slices(&mut slices, MAX_IOV);
        loop {
            return match self.stream.write_vectored(&slices) {
                Ok(0) => WriteOutcome { bytes: 0, failed: true, blocked: false },
                Ok(n) => WriteOutcome { bytes: n, failed: false, blocked: false },
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    WriteOutcome { bytes: 0, failed: false, blocked: true }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => WriteOutcome { bytes: 0, failed: true, blocked: false },
            };
        }
    }

    /// Asks for writable events only while output is waiting.
    pub(crate) fn set_writable_interest(&mut self, registry: &Registry, token: Token, wanted: bool) {
        if wanted == self.writable_interest {
            return;
        }
        let interest = if wanted { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if registry.reregister(&mut self.stream, token, interest).is_ok() {
            self.writable_interest = wanted;
        }
    }
}
