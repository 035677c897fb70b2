//! One accepted connection as the epoll driver holds it: the socket, its
//! write interest and deadline slot, and its [`Layer`] (partial frame, TLS).

use std::io::{self, IoSlice, Read, Write};

use bytes::BytesMut;
use gateway_core::Outbound;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::driver::stream::{retrying, Absorbed, Layer, MAX_IOV};
use crate::driver::worker::DriverConn;

/// The driver's part of a connection (it rides in the session's slot in the
/// hub).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    scheduled: Option<u32>,
    dirty: bool,
    writable_interest: bool,
    layer: Layer,
}

impl DriverConn for Conn {
    fn scheduled(&mut self) -> &mut Option<u32> {
        &mut self.scheduled
    }

    fn dirty(&self) -> bool {
        self.dirty
    }

    fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }

    fn layer(&mut self) -> &mut Layer {
        &mut self.layer
    }
}

/// Result of draining a socket's input.
pub(crate) struct ReadOutcome {
    /// Bytes read from the socket (ciphertext, under TLS).
    pub(crate) bytes: usize,
    /// End of stream, a socket error or a TLS error: the connection is over.
    pub(crate) closed: bool,
    /// The TLS handshake failed (the connection is closed).
    pub(crate) tls_failed: bool,
    /// The per-turn budget ran out before the socket was drained: read again
    /// next turn (the edge-triggered poll will not say so).
    pub(crate) more: bool,
}

impl ReadOutcome {
    fn closed(bytes: usize) -> Self {
        Self { bytes, closed: true, tls_failed: false, more: false }
    }

    /// The socket has nothing more to read now.
    fn drained(bytes: usize) -> Self {
        Self { bytes, closed: false, tls_failed: false, more: false }
    }
}

/// Result of one write.
pub(crate) struct WriteOutcome {
    /// Bytes of the session's output written (or, under TLS, encrypted).
    pub(crate) bytes: usize,
    /// Bytes the socket took (ciphertext, under TLS).
    pub(crate) wire: usize,
    /// The socket failed: the connection is over.
    pub(crate) failed: bool,
    /// The socket's buffer is full: wait for a writable event.
    pub(crate) blocked: bool,
}

impl WriteOutcome {
    const NOTHING: Self = Self { bytes: 0, wire: 0, failed: false, blocked: false };
    const FAILED: Self = Self { bytes: 0, wire: 0, failed: true, blocked: false };
    const BLOCKED: Self = Self { bytes: 0, wire: 0, failed: false, blocked: true };
}

impl Conn {
    /// `layer` with TLS for a connection from the wss listener.
    pub(crate) fn new(stream: TcpStream, layer: Layer) -> Self {
        Self { stream, scheduled: None, dirty: false, writable_interest: false, layer }
    }

    /// Whether there is output the socket could take now.
    pub(crate) fn wants_write(&self, outbound: &Outbound) -> bool {
        self.layer.wants_write(outbound)
    }

    /// Reads what the socket has, up to `budget` bytes, into `input` (the
    /// worker's buffer) after this connection's partial frame, through the
    /// worker's `scratch`; under TLS, each read is decrypted from `scratch`
    /// into `input`. The budget keeps one flooding client from growing the
    /// worker's buffer or starving the other sessions of the turn.
    ///
    /// With `stop_short`, a read that does not fill `scratch` ends the call:
    /// it emptied the TCP receive queue, and the edge-triggered poll reports
    /// the next segment that arrives, so the `EAGAIN` read that would confirm
    /// it is skipped (about a quarter of the node's syscalls under echo load,
    /// `benches/RESULTS.md`).
    /// The caller clears it when the event also reported the peer's FIN or an
    /// error, which only a read to the end (0 or `Err`) surfaces.
    pub(crate) fn read_into(
        &mut self,
        scratch: &mut [u8],
        input: &mut BytesMut,
        budget: usize,
        stop_short: bool,
    ) -> ReadOutcome {
        self.layer.begin_input(input);
        let mut bytes = 0;
        loop {
            if bytes >= budget {
                return ReadOutcome { bytes, closed: false, tls_failed: false, more: true };
            }
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::closed(bytes),
                Ok(n) => {
                    bytes += n;
                    // read(2) never returns more than it was given room for.
                    let Some(read) = scratch.get_mut(..n) else {
                        debug_assert!(false, "read {n} bytes into {}", scratch.len());
                        return ReadOutcome::closed(bytes);
                    };
                    match self.layer.absorb(read, input) {
                        Absorbed::Input => {}
                        Absorbed::PeerClosed => return ReadOutcome::closed(bytes),
                        Absorbed::Failed { handshaking } => {
                            return ReadOutcome { tls_failed: handshaking, ..ReadOutcome::closed(bytes) }
                        }
                    }
                    if stop_short && n < scratch.len() {
                        return ReadOutcome::drained(bytes);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::drained(bytes),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::closed(bytes),
            }
        }
    }

    /// One write: a vectored write of the session's `outbound` (at most
    /// `MAX_IOV` chunks); under TLS, the records left from last time, or else
    /// a batch of output encrypted into `out` (the worker's buffer). The
    /// worker reports `bytes` to the hub and calls again while the socket
    /// takes everything it is given and [`Conn::wants_write`].
    pub(crate) fn write_once(&mut self, outbound: &Outbound, out: &mut Vec<u8>) -> WriteOutcome {
        if self.layer.is_tls() {
            return self.write_tls(outbound, out);
        }
        if outbound.is_empty() {
            return WriteOutcome::NOTHING;
        }
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let filled = outbound.io_slices(&mut slices);
        debug_assert!(filled <= MAX_IOV, "io_slices fills at most the slices it is given");
        let (slices, _) = slices.split_at(filled.min(MAX_IOV));
        match write(retrying(|| self.stream.write_vectored(slices))) {
            Ok(n) => WriteOutcome { bytes: n, wire: n, failed: false, blocked: false },
            Err(outcome) => outcome,
        }
    }

    fn write_tls(&mut self, outbound: &Outbound, out: &mut Vec<u8>) -> WriteOutcome {
        let Ok(bytes) = self.layer.next_records(outbound, out) else {
            return WriteOutcome::FAILED;
        };
        if out.is_empty() {
            return WriteOutcome { bytes, ..WriteOutcome::NOTHING };
        }
        let (wire, outcome) = match write(retrying(|| self.stream.write(out))) {
            Ok(n) => (n, WriteOutcome { bytes, wire: n, failed: false, blocked: false }),
            Err(outcome) => (0, WriteOutcome { bytes, ..outcome }),
        };
        // What the socket did not take goes first next time.
        // write(2) never takes more than it was given.
        debug_assert!(wire <= out.len());
        self.layer.keep_unsent(out.split_at(wire.min(out.len())).1);
        outcome
    }

    /// The last write before the socket is closed, best effort.
    pub(crate) fn write_last(&mut self, outbound: &Outbound, out: &mut Vec<u8>) {
        self.layer.write_last(&mut self.stream, outbound, 0, &[], out);
    }

    /// Asks for writable events only while output is waiting
    /// ([`Conn::wants_write`]).
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

/// A write's result: the bytes taken, or the outcome that ends this round
/// (blocked or failed).
fn write(result: io::Result<usize>) -> Result<usize, WriteOutcome> {
    match result {
        Ok(0) => Err(WriteOutcome::FAILED),
        Ok(n) => Ok(n),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(WriteOutcome::BLOCKED),
        Err(_) => Err(WriteOutcome::FAILED),
    }
}

#[cfg(test)]
mod tests {
    /// Every session's slot in the hub's slab (session, messaging state and
    /// this driver's `Conn`) has this size (and the slab keeps spare
    /// capacity), so it is most of a plain idle session's cost
    /// (`benches/RESULTS.md`, idle sessions). This catches a field that
    /// quietly grows it. (336 → 344 for the ACK relay, which lets one store
    /// Ack carry a burst of a device's ACKs; 344 → 360 for the token's
    /// fingerprint, which lets a reconnect skip the signature check.)
    #[test]
    fn session_slot_stays_small() {
        let size = gateway_hub::Hub::<super::Conn>::slot_size();
        eprintln!("slot {size} bytes");
        assert!(size <= 360, "the session slot grew to {size} bytes");
    }
}
