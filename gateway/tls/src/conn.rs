//! [`TlsConn`]: one server connection's TLS over caller buffers, on rustls'
//! unbuffered API (`process_tls_records` and its `ConnectionState`s).
//!
//! Ciphertext comes in as the caller's slice (decrypted in place where
//! rustls can) and plaintext goes out into the caller's `BytesMut`; outgoing
//! records are appended to the caller's `Vec`. The connection keeps bytes of
//! its own only while they cannot be handed over: the front of a record (or
//! of a handshake message spanning records) that has not fully arrived, and
//! ciphertext the socket has not taken. Both buffers are released as soon as
//! they empty, so an idle connection holds rustls' own state and nothing else.

use std::mem;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus};
use rustls::{ProtocolVersion, ServerConfig};

use crate::TlsError;

/// Largest plaintext of one record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// Upper bound of one record's framing around its plaintext: 5-byte header,
/// 16-byte AEAD tag, plus TLS 1.3's content-type byte or TLS 1.2 GCM's 8-byte
/// explicit nonce. Sizes the output before encrypting; rustls reports the
/// exact size if it were ever short.
const RECORD_OVERHEAD: usize = 5 + 16 + 8;

/// What one [`TlsConn::handle_read`] call found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Received {
    /// Plaintext bytes appended to the caller's buffer.
    pub plaintext: usize,
    /// The peer sent `close_notify`: it will send nothing more.
    pub peer_closed: bool,
}

/// One server connection's TLS state, without its socket.
///
/// # Call order
///
/// 1. [`TlsConn::new`] with the listener's current configuration when the
///    connection is accepted.
/// 2. [`TlsConn::handle_read`] with each run of bytes read from the socket:
///    decrypted application data is appended to the caller's buffer for the
///    protocol above. Handshake answers, session tickets and alerts are
///    queued in [`TlsConn::unsent`].
/// 3. To write: first [`TlsConn::unsent`], reporting what the socket took with
///    [`TlsConn::consume_unsent`]. Once it is empty, [`TlsConn::encrypt`]
///    application data into the caller's buffer (it takes nothing before the
///    handshake has completed), write that, and hand what the socket did not
///    take to [`TlsConn::keep_unsent`]; it goes out first next time.
/// 4. On an error from either call the connection is over: write what
///    [`TlsConn::unsent`] holds (the alert for the peer) if the socket takes
///    it, and close. To end a healthy connection, [`TlsConn::close_notify`]
///    after the last data.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    /// Received bytes rustls has not consumed: the start of a record, or
    /// records of a handshake message still incomplete. Empty and
    /// unallocated between records.
    partial: Vec<u8>,
    /// Ciphertext to send before anything else. Empty and unallocated once
    /// sent.
    unsent: Vec<u8>,
    /// Bytes at the front of `unsent` already sent.
    unsent_sent: usize,
    /// A call has failed: rustls must not be driven again (it would raise a
    /// second fatal alert); only `unsent` (the alert) is left to send.
    failed: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.is_handshaking())
            .field("version", &self.conn.protocol_version())
            .field("partial", &self.partial.len())
            .field("unsent", &self.unsent().len())
            .finish_non_exhaustive()
    }
}

/// What a call to [`drive`] is for.
enum Job<'a> {
    /// Decrypt: application data goes to this buffer.
    Read(&'a mut BytesMut),
    /// Encrypt these bytes (if the handshake allows it).
    Encrypt(&'a [u8]),
    /// Queue `close_notify` (if the handshake has completed).
    CloseNotify,
}

/// How far a call to [`drive`] got.
#[derive(Default)]
struct Progress {
    /// Bytes to drop from the front of the input buffer.
    discard: usize,
    /// Plaintext decrypted (read) or encrypted (write).
    plaintext: usize,
    peer_closed: bool,
}

impl TlsConn {
    /// A connection that has seen nothing yet.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            unsent: Vec::new(),
            unsent_sent: 0,
            failed: false,
        })
    }

    /// Whether the handshake has yet to complete (no application data flows).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The negotiated ALPN protocol, if the client offered one we speak.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Takes in `incoming`, bytes read from the socket (they may be
    /// decrypted in place). Application data is appended to `plain`. An
    /// incomplete record at the end is kept for the next call.
    ///
    /// An error ends the connection; the alert for the peer, if any, is in
    /// [`TlsConn::unsent`].
    pub fn handle_read(&mut self, incoming: &mut [u8], plain: &mut BytesMut) -> Result<Received, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        let mut job = Job::Read(plain);
        let progress = if self.partial.is_empty() {
            // The common case: records start at the front of what was read;
            // only an incomplete tail is copied.
            let (progress, result) = drive(&mut self.conn, incoming, &mut self.unsent, &mut job);
            if let Err(err) = result {
                self.fail(undiscarded(incoming, progress.discard));
                return Err(err);
            }
            if let Some(rest) = incoming.get(progress.discard..).filter(|rest| !rest.is_empty()) {
                self.partial.extend_from_slice(rest);
            }
            progress
        } else {
            let mut buf = mem::take(&mut self.partial);
            buf.extend_from_slice(incoming);
            let (progress, result) = drive(&mut self.conn, &mut buf, &mut self.unsent, &mut job);
            if let Err(err) = result {
                self.fail(undiscarded(&mut buf, progress.discard));
                return Err(err);
            }
            self.keep_partial(buf, progress.discard);
            progress
        };
        Ok(Received { plaintext: progress.plaintext, peer_closed: progress.peer_closed })
    }

    /// Ciphertext to write before anything else (handshake messages,
    /// session tickets, alerts, what a write left over).
    pub fn unsent(&self) -> &[u8] {
        // `consume_unsent` empties the buffer once all of it is sent.
        debug_assert!(self.unsent_sent <= self.unsent.len(), "{} of {}", self.unsent_sent, self.unsent.len());
        self.unsent.get(self.unsent_sent..).unwrap_or_default()
    }

    /// Reports `written` bytes of [`TlsConn::unsent`] as sent; the buffer is
    /// released once all of it is.
    pub fn consume_unsent(&mut self, written: usize) {
        self.unsent_sent = self.unsent_sent.saturating_add(written);
        if self.unsent_sent >= self.unsent.len() {
            self.unsent = Vec::new();
            self.unsent_sent = 0;
        }
    }

    /// Keeps `rest`, ciphertext from [`TlsConn::encrypt`] the socket did not
    /// take, to be sent first next time (in [`TlsConn::unsent`]).
    pub fn keep_unsent(&mut self, rest: &[u8]) {
        self.unsent.extend_from_slice(rest);
    }

    /// Keeps `rest` in front of [`TlsConn::unsent`]: the end of a write that
    /// was still in flight while more records were queued (an alert, a key
    /// update's answer), which must follow it on the wire. A driver whose
    /// writes complete later (io_uring) needs it.
    pub fn keep_unsent_front(&mut self, rest: &[u8]) {
        let at = self.unsent_sent.min(self.unsent.len());
        self.unsent.splice(at..at, rest.iter().copied());
    }

    /// Encrypts `plain` into records appended to `out`, and returns how much
    /// of it was taken: all of it, or nothing while the handshake is not
    /// complete or while [`TlsConn::unsent`] is not empty (it must go first).
    /// Records rustls had queued (a key update) are put in front.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<usize, TlsError> {
        if !self.unsent().is_empty() || plain.is_empty() {
            return Ok(0);
        }
        self.run(Job::Encrypt(plain), out)
    }

    /// Appends a `close_notify` alert to `out`, once the handshake has
    /// completed (before, or after an error, nothing: the connection is just
    /// dropped).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed {
            return Ok(());
        }
        self.run(Job::CloseNotify, out).map(|_| ())
    }

    /// Bytes this connection holds in its own buffers (not counting rustls'
    /// state): zero between records once everything is sent.
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.unsent.capacity()
    }

    /// A write-side job, run against the partial record (no complete record
    /// is ever left in it, so nothing is read).
    fn run(&mut self, mut job: Job<'_>, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        let mut buf = mem::take(&mut self.partial);
        let (progress, result) = drive(&mut self.conn, &mut buf, out, &mut job);
        match result {
            Ok(()) => {
                self.keep_partial(buf, progress.discard);
                Ok(progress.plaintext)
            }
            Err(err) => {
                self.fail(undiscarded(&mut buf, progress.discard));
                Err(err)
            }
        }
    }

    fn keep_partial(&mut self, mut buf: Vec<u8>, discard: usize) {
        if discard >= buf.len() {
            return;
        }
        buf.drain(..discard);
        self.partial = buf;
    }

    /// After an error: moves the alert rustls queued for the peer into
    /// `unsent`, so the caller can send it before closing, and drops what
    /// was received.
    ///
    /// rustls is driven once more, over `rest` (the failed call's input after
    /// what rustls discarded): it may still count the front of `rest` as part
    /// of a handshake message, and given less it indexes past the end (a
    /// panic). Once only: the alert is queued last, behind nothing (every
    /// earlier record was taken before rustls read more), and a second call
    /// would parse `rest` again and raise a second fatal alert.
    fn fail(&mut self, rest: &mut [u8]) {
        self.failed = true;
        self.partial = Vec::new();
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = self.conn.process_tls_records(rest).state {
            // A record too large to encode is not sent; the socket closes anyway.
            let _ = encode_into(&mut encode, &mut self.unsent);
        }
    }
}

/// Runs rustls' state machine over `buf` until it needs more input (or, for
/// a write job, has done it). Records for the peer are appended to `out`.
/// Returns how much of `buf` was consumed even on error.
fn drive(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    job: &mut Job<'_>,
) -> (Progress, Result<(), TlsError>) {
    let mut progress = Progress::default();
    loop {
        let window = undiscarded(buf, progress.discard);
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(window);
        let state = match state {
            Ok(state) => state,
            Err(err) => {
                progress.discard += discard;
                return (progress, Err(err.into()));
            }
        };
        let mut done = false;
        let step: Result<(), TlsError> = match state {
            ConnectionState::ReadTraffic(mut traffic) => match job {
                Job::Read(plain) => loop {
                    match traffic.next_record() {
                        Some(Ok(record)) => {
                            discard += record.discard;
                            plain.extend_from_slice(record.payload);
                            progress.plaintext += record.payload.len();
                        }
                        Some(Err(err)) => break Err(err.into()),
                        None => break Ok(()),
                    }
                },
                // Reads consume every complete record, so a write never
                // meets one.
                Job::Encrypt(_) | Job::CloseNotify => Err(TlsError::Unsupported("unread records")),
            },
            ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut encode, out),
            // What was encoded is in `out`, which the caller sends before
            // anything encrypted later: done as far as rustls is concerned.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Ok(())
            }
            ConnectionState::PeerClosed => {
                progress.peer_closed = true;
                Ok(())
            }
            ConnectionState::WriteTraffic(mut traffic) => {
                done = true;
                match job {
                    Job::Read(_) => Ok(()),
                    Job::Encrypt(plain) => {
                        let records = plain.len().div_ceil(MAX_FRAGMENT).max(1);
                        let estimate = plain.len() + records * RECORD_OVERHEAD;
                        let result = write_sized(out, estimate, |room| match traffic.encrypt(plain, room) {
                            Ok(n) => Ok(n),
                            Err(EncryptError::InsufficientSize(short)) => Err(Some(short.required_size)),
                            Err(_) => Err(None),
                        });
                        match result {
                            Ok(()) => {
                                progress.plaintext = plain.len();
                                Ok(())
                            }
                            Err(()) => Err(TlsError::Unsupported("encrypter exhausted")),
                        }
                    }
                    Job::CloseNotify => write_sized(out, 64, |room| match traffic.queue_close_notify(room) {
                        Ok(n) => Ok(n),
                        Err(EncryptError::InsufficientSize(short)) => Err(Some(short.required_size)),
                        Err(_) => Err(None),
                    })
                    .map_err(|()| TlsError::Unsupported("close_notify")),
                }
            }
            ConnectionState::BlockedHandshake | ConnectionState::Closed => {
                done = true;
                Ok(())
            }
            // Early data is never enabled (max_early_data_size = 0).
            ConnectionState::ReadEarlyData(_) => Err(TlsError::Unsupported("early data")),
            _ => Err(TlsError::Unsupported("unknown connection state")),
        };
        progress.discard += discard;
        if let Err(err) = step {
            return (progress, Err(err));
        }
        if done {
            return (progress, Ok(()));
        }
    }
}

/// `buf` after the `discard` bytes rustls is done with (it never discards
/// more than it was given).
fn undiscarded(buf: &mut [u8], discard: usize) -> &mut [u8] {
    debug_assert!(discard <= buf.len(), "rustls discarded {discard} of {} bytes", buf.len());
    buf.get_mut(discard..).unwrap_or_default()
}

/// Appends what `write` puts into a slice of `estimate` bytes to `out`; when
/// `write` reports the size it needs instead, retries once with that.
fn write_sized(
    out: &mut Vec<u8>,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), ()> {
    let start = out.len();
    let mut size = estimate;
    for _ in 0..2 {
        out.resize(start + size, 0);
        debug_assert!(start <= out.len(), "just resized past it");
        let room = out.get_mut(start..).unwrap_or_default();
        match write(room) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(Some(required)) => size = required,
            Err(None) => break,
        }
    }
    out.truncate(start);
    Err(())
}

/// Appends one queued handshake record (or alert) to `out`.
fn encode_into(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    // Asking with no room returns the exact size needed.
    let required = match encode.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(short)) => short.required_size,
        Err(EncodeError::AlreadyEncoded) => return Ok(()),
    };
    write_sized(out, required, |room| match encode.encode(room) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(short)) => Err(Some(short.required_size)),
        Err(EncodeError::AlreadyEncoded) => Err(None),
    })
    .map_err(|()| TlsError::Unsupported("handshake record"))
}
