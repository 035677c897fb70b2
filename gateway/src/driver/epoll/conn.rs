//! One accepted connection as the driver holds it: the socket, the bytes of a partial
//! frame (only while one is pending: an idle connection holds no read
//! buffer) and, for a connection from the wss listener, its TLS layer.
//!
//! TLS sits between the socket and the session: bytes read are decrypted
//! ([`TlsConn::handle_read`]) into the worker's input buffer before the
//! session sees them, and the session's output is encrypted into the worker's
//! write buffer ([`TlsConn::encrypt`]) at flush. The TLS layer keeps bytes of
//! its own only while a record is incomplete or the socket has not taken a
//! whole write, so an idle TLS session costs rustls' state and nothing more.

use std::io::{self, IoSlice, Read, Write};

use bytes::BytesMut;
use gateway_core::Outbound;
use gateway_tls::TlsConn;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Most slices handed to one `writev`.
const MAX_IOV: usize = 64;
/// Most plaintext one TLS write encrypts. Ciphertext the socket does not take
/// stays with the connection (up to this much plus record overhead) and is
/// written first next time; the rest of the output stays in the session's
/// queue, under its slow-reader policy.
const TLS_WRITE_BATCH: usize = 64 * 1024;

/// The driver's part of a connection (it rides in the session's slot in the
/// hub).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Deadline slot this connection has in the worker's heap.
    pub(crate) scheduled: Option<u32>,
    /// Queued for this turn's writes.
    pub(crate) dirty: bool,
    writable_interest: bool,
    /// A partial frame left from the last read: boxed, since most
    /// connections never hold one and the slab pays for every slot's size.
    partial: Option<Box<BytesMut>>,
    /// The TLS layer of a wss connection (boxed: plain connections do not
    /// pay for its size in the slab).
    tls: Option<Box<TlsConn>>,
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
    /// `tls` for a connection from the wss listener.
    pub(crate) fn new(stream: TcpStream, tls: Option<TlsConn>) -> Self {
        Self {
            stream,
            scheduled: None,
            dirty: false,
            writable_interest: false,
            partial: None,
            tls: tls.map(Box::new),
        }
    }

    /// Whether there is output the socket could take now: the session's
    /// `outbound` (under TLS, once the handshake has completed) or TLS
    /// records.
    pub(crate) fn wants_write(&self, outbound: &Outbound) -> bool {
        match &self.tls {
            None => !outbound.is_empty(),
            Some(tls) => !tls.unsent().is_empty() || (!tls.is_handshaking() && !outbound.is_empty()),
        }
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
        input.clear();
        if let Some(partial) = &self.partial {
            input.extend_from_slice(partial);
        }
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
                    if let Some(tls) = &mut self.tls {
                        let handshaking = tls.is_handshaking();
                        match tls.handle_read(read, input) {
                            // close_notify: nothing more will come.
                            Ok(received) if received.peer_closed => return ReadOutcome::closed(bytes),
                            Ok(_) => {}
                            Err(err) => {
                                tracing::debug!(%err, handshaking, "TLS");
                                return ReadOutcome { tls_failed: handshaking, ..ReadOutcome::closed(bytes) };
                            }
                        }
                    } else {
                        input.extend_from_slice(read);
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

    /// Keeps what the session left in `input` (a partial frame) for the next
    /// read, and releases the buffer when nothing is left.
    pub(crate) fn keep_partial(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            self.partial = None;
        } else {
            let partial = self.partial.get_or_insert_with(Box::default);
            partial.clear();
            partial.extend_from_slice(input);
        }
    }

    /// One write: a vectored write of the session's `outbound` (at most
    /// `MAX_IOV` chunks); under TLS, the records left from last time, or else
    /// up to `TLS_WRITE_BATCH` bytes of output encrypted into `out` (the
    /// worker's buffer). The worker reports `bytes` to the hub and calls
    /// again while the socket takes everything it is given and
    /// [`Conn::wants_write`].
    pub(crate) fn write_once(&mut self, outbound: &Outbound, out: &mut Vec<u8>) -> WriteOutcome {
        if self.tls.is_some() {
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
        match write(&mut self.stream, |stream| stream.write_vectored(slices)) {
            Ok(n) => WriteOutcome { bytes: n, wire: n, failed: false, blocked: false },
            Err(outcome) => outcome,
        }
    }

    fn write_tls(&mut self, outbound: &Outbound, out: &mut Vec<u8>) -> WriteOutcome {
        let Some(tls) = &mut self.tls else { return WriteOutcome::NOTHING };
        let unsent = tls.unsent();
        if !unsent.is_empty() {
            return match write(&mut self.stream, |stream| stream.write(unsent)) {
                Ok(n) => {
                    tls.consume_unsent(n);
                    WriteOutcome { bytes: 0, wire: n, failed: false, blocked: false }
                }
                Err(outcome) => outcome,
            };
        }
        out.clear();
        let Ok(bytes) = encrypt_batch(tls, outbound, out) else {
            return WriteOutcome::FAILED;
        };
        if out.is_empty() {
            return WriteOutcome { bytes, ..WriteOutcome::NOTHING };
        }
        let (wire, outcome) = match write(&mut self.stream, |stream| stream.write(out)) {
            Ok(n) => (n, WriteOutcome { bytes, wire: n, failed: false, blocked: false }),
            Err(outcome) => (0, WriteOutcome { bytes, ..outcome }),
        };
        // What the socket did not take goes first next time.
        // write(2) never takes more than it was given.
        debug_assert!(wire <= out.len());
        tls.keep_unsent(out.split_at(wire.min(out.len())).1);
        outcome
    }

    /// The last write before the socket is closed, best effort: what the
    /// session has left (a close frame, an HTTP answer) and, under TLS, what
    /// the TLS layer holds (an alert) and a `close_notify`.
    pub(crate) fn write_last(&mut self, outbound: &Outbound, out: &mut Vec<u8>) {
        let Some(tls) = &mut self.tls else {
            let _ = self.write_once(outbound, out);
            return;
        };
        // Everything in order in one buffer, written once.
        out.clear();
        out.extend_from_slice(tls.unsent());
        tls.consume_unsent(out.len());
        if encrypt_batch(tls, outbound, out).is_ok() {
            let _ = tls.close_notify(out);
        }
        if !out.is_empty() {
            let _ = write(&mut self.stream, |stream| stream.write(out));
        }
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

/// One write call, retried on `Interrupted`: the bytes taken, or the outcome
/// that ends this round (blocked or failed).
fn write(
    stream: &mut TcpStream,
    mut call: impl FnMut(&mut TcpStream) -> io::Result<usize>,
) -> Result<usize, WriteOutcome> {
    loop {
        return match call(stream) {
            Ok(0) => Err(WriteOutcome::FAILED),
            Ok(n) => Ok(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(WriteOutcome::BLOCKED),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Err(WriteOutcome::FAILED),
        };
    }
}

/// Encrypts up to `TLS_WRITE_BATCH` bytes from the front of `outbound` into
/// `out`; returns how many (none while the handshake is incomplete).
fn encrypt_batch(tls: &mut TlsConn, outbound: &Outbound, out: &mut Vec<u8>) -> Result<usize, ()> {
    let mut taken = 0;
    for slice in outbound.chunks().take(MAX_IOV) {
        let room = TLS_WRITE_BATCH.saturating_sub(taken);
        if room == 0 {
            break;
        }
        let (chunk, _) = slice.split_at(room.min(slice.len()));
        match tls.encrypt(chunk, out) {
            Ok(0) => break,
            Ok(n) => taken += n,
            Err(err) => {
                tracing::debug!(%err, "TLS encrypt");
                return Err(());
            }
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    /// Every session's slot in the hub's slab (session, messaging state and
    /// this driver's `Conn`) has this size (and the slab keeps spare
    /// capacity), so it is most of a plain idle session's cost
    /// (`benches/RESULTS.md`, idle sessions). This catches a field that
    /// quietly grows it. (336 → 344 for the ACK relay, which lets one store
    /// Ack carry a burst of a device's ACKs.)
    #[test]
    fn session_slot_stays_small() {
        let size = gateway_hub::Hub::<super::Conn>::slot_size();
        eprintln!("slot {size} bytes");
        assert!(size <= 344, "the session slot grew to {size} bytes");
    }
}
