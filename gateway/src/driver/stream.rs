//! What both drivers do with a connection's bytes, whichever way they reach
//! the socket: the bytes of a partial frame (kept only while one is
//! pending: an idle connection holds no read buffer) and, for a connection
//! from the wss listener, its TLS layer.
//!
//! TLS sits between the socket and the session: bytes read are decrypted
//! ([`TlsConn::handle_read`]) into the worker's input buffer before the
//! session sees them, and the session's output is encrypted into a write
//! buffer ([`TlsConn::encrypt`]) at flush. The TLS layer keeps bytes of its
//! own only while a record is incomplete or the socket has not taken a
//! whole write, so an idle TLS session costs rustls' state and nothing more.

use std::io::{self, IoSlice, Write};

use bytes::BytesMut;
use gateway_core::Outbound;
use gateway_tls::TlsConn;

/// Most slices handed to one vectored write.
pub(crate) const MAX_IOV: usize = 64;
/// Most plaintext one TLS write encrypts. Ciphertext the socket does not take
/// stays with the connection (up to this much plus record overhead) and is
/// written first next time; the rest of the output stays in the session's
/// queue, under its slow-reader policy.
pub(crate) const TLS_WRITE_BATCH: usize = 64 * 1024;

/// A partial frame larger than this moves between the connection and the
/// worker's input buffer instead of being copied each way: a large message
/// arriving over many reads (io_uring: one per 16 KiB buffer) is not copied
/// again at each one.
const MOVE_ABOVE: usize = 16 * 1024;

/// A connection's bytes between the socket and its session.
#[derive(Debug)]
pub(crate) struct Layer {
    /// A partial frame left from the last read: boxed, since most
    /// connections never hold one and the slab pays for every slot's size.
    partial: Option<Box<BytesMut>>,
    /// The TLS layer of a wss connection (boxed: plain connections do not
    /// pay for its size in the slab).
    tls: Option<Box<TlsConn>>,
}

/// What bytes read from the socket came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Absorbed {
    /// Added to the input (decrypted, under TLS).
    Input,
    /// The peer sent TLS `close_notify`: nothing more will come.
    PeerClosed,
    /// A TLS error: the connection is over; `handshaking`: during the
    /// handshake (a handshake failure for the metrics).
    Failed { handshaking: bool },
}

impl Layer {
    /// `tls` for a connection from the wss listener.
    pub(crate) fn new(tls: Option<TlsConn>) -> Self {
        Self { partial: None, tls: tls.map(Box::new) }
    }

    /// Whether this is a wss connection.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Starts the worker's `input` for a read: this connection's partial
    /// frame, if any.
    pub(crate) fn begin_input(&mut self, input: &mut BytesMut) {
        input.clear();
        if let Some(partial) = &mut self.partial {
            if partial.len() > MOVE_ABOVE {
                std::mem::swap(input, partial);
            } else {
                input.extend_from_slice(partial);
            }
        }
    }

    /// Adds bytes read from the socket to `input` (under TLS, decrypted from
    /// `read`, in place).
    pub(crate) fn absorb(&mut self, read: &mut [u8], input: &mut BytesMut) -> Absorbed {
        let Some(tls) = &mut self.tls else {
            input.extend_from_slice(read);
            return Absorbed::Input;
        };
        let handshaking = tls.is_handshaking();
        match tls.handle_read(read, input) {
            Ok(received) if received.peer_closed => Absorbed::PeerClosed,
            Ok(_) => Absorbed::Input,
            Err(err) => {
                tracing::debug!(%err, handshaking, "TLS");
                Absorbed::Failed { handshaking }
            }
        }
    }

    /// Keeps what the session left in `input` (a partial frame) for the next
    /// read, and releases the buffer when nothing is left.
    pub(crate) fn keep_partial(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            self.partial = None;
            return;
        }
        let partial = self.partial.get_or_insert_with(Box::default);
        if input.len() > MOVE_ABOVE {
            std::mem::swap(&mut **partial, input);
            input.clear();
        } else {
            partial.clear();
            partial.extend_from_slice(input);
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

    /// Under TLS, the next ciphertext to write into `out` (cleared first):
    /// the records the socket did not take last time, or else up to
    /// `TLS_WRITE_BATCH` bytes of `outbound` encrypted. Returns the
    /// plaintext bytes it encrypted (they are the session's to consume), or
    /// `Err` when TLS failed (the connection is over).
    pub(crate) fn next_records(&mut self, outbound: &Outbound, out: &mut Vec<u8>) -> Result<usize, ()> {
        out.clear();
        let Some(tls) = &mut self.tls else { return Ok(0) };
        let unsent = tls.unsent();
        if !unsent.is_empty() {
            out.extend_from_slice(unsent);
            tls.consume_unsent(out.len());
            return Ok(0);
        }
        encrypt_batch(tls, outbound, out)
    }

    /// Keeps `rest`, ciphertext the socket did not take, to go first next
    /// time.
    pub(crate) fn keep_unsent(&mut self, rest: &[u8]) {
        if let Some(tls) = &mut self.tls {
            tls.keep_unsent(rest);
        }
    }

    /// Keeps `rest`, the end of a write that was in flight, before any
    /// records made meanwhile (an alert, a key update's answer).
    pub(crate) fn keep_unsent_front(&mut self, rest: &[u8]) {
        if let Some(tls) = &mut self.tls {
            tls.keep_unsent_front(rest);
        }
    }

    /// The last write before the socket is closed, best effort, on a
    /// non-blocking socket: what the session has left in `outbound` past
    /// its first `skip` bytes (a write in flight took those) and, under TLS,
    /// `records` (ciphertext a write in flight did not take), what the TLS
    /// layer holds (an alert) and a `close_notify`; `out` is scratch.
    pub(crate) fn write_last(
        &mut self,
        socket: &mut impl Write,
        outbound: &Outbound,
        skip: usize,
        records: &[u8],
        out: &mut Vec<u8>,
    ) {
        let Some(tls) = &mut self.tls else {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let filled = slices_after(outbound, skip, &mut slices);
            if let Some(slices) = slices.get(..filled) {
                let _ = retrying(|| socket.write_vectored(slices));
            }
            return;
        };
        // Everything in order in one buffer, written once.
        out.clear();
        out.extend_from_slice(records);
        out.extend_from_slice(tls.unsent());
        tls.consume_unsent(tls.unsent().len());
        if encrypt_batch(tls, outbound, out).is_ok() {
            let _ = tls.close_notify(out);
        }
        if !out.is_empty() {
            let _ = retrying(|| socket.write(out));
        }
    }
}

/// Fills `out` with the unsent bytes of `outbound` after its first `skip`;
/// returns how many slices it filled.
fn slices_after<'a>(outbound: &'a Outbound, mut skip: usize, out: &mut [IoSlice<'a>]) -> usize {
    let mut filled = 0;
    for chunk in outbound.chunks() {
        if skip >= chunk.len() {
            skip -= chunk.len();
            continue;
        }
        let Some(slot) = out.get_mut(filled) else { break };
        *slot = IoSlice::new(chunk.get(skip..).unwrap_or_default());
        skip = 0;
        filled += 1;
    }
    filled
}

/// One write call, retried on `Interrupted`.
pub(crate) fn retrying(mut call: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
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
