//! A session's unsent output, bounded, with the graded slow-reader policy.
//!
//! Frames queued during one loop turn are encoded back to back into one
//! WebSocket binary message; [`Outbound::flush`] seals it once per turn, so a
//! busy session costs one message and, with the driver's vectored write, one
//! syscall per turn. A DELIVER encoded once for many sessions joins that
//! message too: its per-recipient head is copied into the batch and its shared
//! tail is referenced, not copied ([`Outbound::push_shared_tail`]), so a burst
//! of live entries is one message (and one cumulative ACK from the client).
//! A message encoded once for many sessions (echo) is queued as its own message
//! whose payload `Bytes` is shared.
//!
//! Policy when the client reads too slowly (SPEC §7), by queued bytes:
//! 1. at or above `pause_bytes`: ephemeral frames (typing, presence) are dropped;
//! 2. at or above `pause_bytes`: live delivery pauses (the entries stay in the
//!    store; the session resyncs when it has drained below half of it);
//! 3. above `max_bytes`: live output still only pauses (sync windows, which
//!    are control output, may have taken the queue there), and a reply does
//!    not fit: the session closes with 4008. A client that reads nothing is
//!    closed by the write stall.
//!
//! Replies to client input (PONG, WebSocket pongs, the answers to refused
//! frames) are never dropped, but they count toward `max_bytes`: a
//! client that makes the server answer and does not read is closed there,
//! like any slow consumer. Server control output (AUTH_*, GOAWAY, SYNC_*, the
//! close) is bounded by the protocol itself and always queued. One frame
//! larger than `max_bytes` is queued alone when the queue is empty.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use gateway_ws::frame::server_header;
use gateway_ws::OpCode;
use protocol::Frame;

/// How a frame may be treated under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Session control the server starts (AUTH_*, GOAWAY, sync): always queued.
    Control,
    /// An answer to client input (PONG, a WebSocket pong, an ERROR for a
    /// refused frame): never dropped, closed on overflow.
    Reply,
    /// Messages, acks, receipts: paused under pressure, never dropped.
    Live,
    /// Typing and presence: dropped first.
    Ephemeral,
}

/// What happened to a queued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Queued {
    /// It will be sent.
    Accepted,
    /// Dropped (ephemeral frame under pressure).
    Dropped,
    /// Not queued: live delivery is paused for this session.
    Paused,
    /// Not queued: the queue is full; the session must close with 4008.
    Overflow,
}

/// Byte bounds of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Above this, ephemeral frames drop and live delivery pauses.
    pub pause_bytes: usize,
    /// Above this, the session is closed.
    pub max_bytes: usize,
}

/// Room reserved in front of a batch for its WebSocket header (2, 4 or 10 bytes).
const HEADER_ROOM: usize = 10;
/// Longest per-recipient frame head [`Outbound::push_shared_tail`] takes: a tag,
/// a body length and one varint field.
pub const MAX_FRAME_HEAD: usize = 20;
/// Shared tails up to this size are copied into the batch instead of being
/// referenced: cutting the batch and queuing two more chunks costs more than
/// copying a small payload (`cargo bench -p gateway-core --bench session`:
/// at 256 B copying is ~1.3× cheaper, at 4 KiB sharing ~2.8× cheaper).
const COPY_TAIL_MAX: usize = 1024;
/// Largest message this queue builds (the protocol's server message limit).
const MAX_MESSAGE: usize = protocol::limits::MAX_SERVER_MESSAGE_LEN;

/// One queued piece of output. Cloning it copies no payload: a `Bytes` clone
/// shares the bytes, a header is at most ten bytes inline.
#[derive(Debug, Clone)]
enum Chunk {
    /// Bytes owned or shared (a sealed batch, a fanout payload, raw HTTP).
    Bytes(Bytes),
    /// A WebSocket header kept inline, so queuing a shared payload for one
    /// more recipient allocates nothing; `start..end` is what is left to send.
    Header { bytes: [u8; HEADER_ROOM], start: u8, end: u8 },
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Header { bytes, start, end } => {
                // `start..end` is within the header: built that way, and
                // `advance` takes less than what is left.
                debug_assert!(start <= end && usize::from(*end) <= HEADER_ROOM, "header {start}..{end}");
                bytes.get(usize::from(*start)..usize::from(*end)).unwrap_or_default()
            }
        }
    }

    /// Drops `n` (at most the chunk's length) bytes from the front.
    fn advance(&mut self, n: usize) {
        match self {
            Self::Bytes(bytes) => bytes.advance(n),
            // `n` is below the remaining header length, itself at most 10.
            Self::Header { start, .. } => *start = start.saturating_add(u8::try_from(n).unwrap_or(u8::MAX)),
        }
    }
}

/// One piece of the front of an [`Outbound`] queue, owned: it stays valid
/// and unchanged after the call that made it returns, whatever is queued or
/// consumed later, so a completion-based driver (io_uring) can hand it to the
/// kernel and keep it alive until the write completes.
///
/// Taking one copies no payload: a shared or sealed piece is a `Bytes` clone
/// (a reference count; the `bytes` crate allocates its small shared header
/// once when a vector-backed `Bytes` is first cloned), a WebSocket header is
/// its at most ten bytes copied inline. Those inline bytes live inside the
/// `OwnedChunk` itself: while the kernel reads them, do not move it (e.g. do
/// not grow the `Vec` that holds it).
#[derive(Debug, Clone)]
pub struct OwnedChunk(Chunk);

impl std::ops::Deref for OwnedChunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl AsRef<[u8]> for OwnedChunk {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Unsent output of one session.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Sealed WebSocket messages (and raw HTTP during the handshake), in order.
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`.
    queued: usize,
    /// The message being built this turn: `HEADER_ROOM` bytes, then frames.
    batch: BytesMut,
    live_paused: bool,
    /// When this turn's message holds a shared tail: the index in `chunks` of
    /// its header, a placeholder until the message is sealed (nothing is
    /// written between a push and the seal that ends the turn, so the index
    /// stays valid). The owned segments and tails after it are already queued.
    open_message: Option<u32>,
    /// Payload bytes of the open message already in `chunks` (a message is at
    /// most 1 MiB; u32 keeps the session small).
    open_len: u32,
    /// Free the buffers once everything queued is written
    /// ([`Outbound::release_when_drained`]).
    release: bool,
}

impl Outbound {
    /// Bytes waiting, sealed or not.
    pub fn len(&self) -> usize {
        self.queued + self.batch_payload()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether live delivery is paused.
    pub fn live_paused(&self) -> bool {
        self.live_paused
    }

    /// Queues one protocol frame into this turn's message, applying the policy.
    pub fn push_frame(&mut self, frame: &Frame, class: Class, limits: Limits) -> Queued {
        let size = frame.encoded_len();
        if let Some(refused) = self.admit(size, class, limits) {
            return refused;
        }
        self.make_room(size);
        match frame.encode(&mut self.batch) {
            Ok(_) => Queued::Accepted,
            // Frames built by the gateway fit; if one ever does not, it is not
            // sent rather than sent broken.
            Err(_) => Queued::Dropped,
        }
    }

    /// Queues an already-encoded message payload (frames encoded once for many
    /// sessions), sealing this turn's batch first to keep the order.
    pub fn push_shared(&mut self, payload: Bytes, class: Class, limits: Limits) -> Queued {
        self.push_data(OpCode::Binary, payload, class, limits)
    }

    /// Queues one WebSocket frame of `opcode` (a message, or a pong) whose
    /// payload is referenced, not copied, after this turn's batch.
    pub fn push_data(&mut self, opcode: OpCode, payload: Bytes, class: Class, limits: Limits) -> Queued {
        if let Some(refused) = self.admit(payload.len(), class, limits) {
            return refused;
        }
        self.flush();
        self.push_message(opcode, payload);
        Queued::Accepted
    }

    /// Queues one frame made of a per-recipient `head` (at most
    /// [`MAX_FRAME_HEAD`] bytes: tag, length, first field) and a `tail` encoded
    /// once for many sessions, into this turn's message: the head is copied,
    /// the tail referenced (or copied when it is small). This is how a
    /// DELIVER reaches many devices with one encoding: only the seq differs.
    pub fn push_shared_tail(&mut self, head: &[u8], tail: Bytes, class: Class, limits: Limits) -> Queued {
        if head.len() > MAX_FRAME_HEAD {
            return Queued::Dropped;
        }
        let size = head.len() + tail.len();
        if let Some(refused) = self.admit(size, class, limits) {
            return refused;
        }
        self.make_room(size);
        self.batch.extend_from_slice(head);
        if tail.len() <= COPY_TAIL_MAX {
            self.batch.extend_from_slice(&tail);
            return Queued::Accepted;
        }
        let mut segment = self.batch.split().freeze();
        if self.open_message.is_none() {
            // The message's header goes in front of everything: a placeholder
            // now, the real one at the seal. The batch's reserved room is
            // not needed any more.
            self.open_message = u32::try_from(self.chunks.len()).ok();
            self.chunks.push_back(Chunk::Header { bytes: [0; HEADER_ROOM], start: 0, end: 0 });
            segment.advance(HEADER_ROOM.min(segment.len()));
        }
        let added = segment.len() + tail.len();
        self.open_len = self.open_len.saturating_add(u32::try_from(added).unwrap_or(u32::MAX));
        self.queued += added;
        if !segment.is_empty() {
            self.chunks.push_back(Chunk::Bytes(segment));
        }
        self.chunks.push_back(Chunk::Bytes(tail));
        Queued::Accepted
    }

    /// Starts this turn's message if there is none, or seals it first if
    /// `size` more bytes would take it past the server message limit.
    fn make_room(&mut self, size: usize) {
        if self.message_len() > 0 && self.message_len() + size > MAX_MESSAGE {
            self.seal();
        }
        if self.open_message.is_none() && self.batch.is_empty() {
            self.batch.resize(HEADER_ROOM, 0);
        }
    }

    /// Payload bytes in `batch` (without its reserved header room).
    fn batch_payload(&self) -> usize {
        match self.open_message {
            Some(_) => self.batch.len(),
            None => self.batch.len().saturating_sub(HEADER_ROOM),
        }
    }

    /// Payload bytes of this turn's message so far.
    fn message_len(&self) -> usize {
        self.open_len as usize + self.batch_payload()
    }

    /// Queues a WebSocket frame of `shared` with an inline header.
    fn push_message(&mut self, opcode: OpCode, shared: Bytes) {
        let (header, header_len) = server_header(opcode, shared.len());
        self.queued += header_len + shared.len();
        // `header_len` is 2, 4 or 10.
        let end = u8::try_from(header_len).unwrap_or(10);
        self.chunks.push_back(Chunk::Header { bytes: header, start: 0, end });
        // An empty payload (an empty pong or echo) is the header alone.
        if !shared.is_empty() {
            self.chunks.push_back(Chunk::Bytes(shared));
        }
    }

    /// Queues bytes exactly as given (the HTTP upgrade answer, the close
    /// frame), after this turn's batch, outside the policy.
    pub fn push_raw(&mut self, bytes: Bytes) {
        self.seal();
        self.queued += bytes.len();
        self.chunks.push_back(Chunk::Bytes(bytes));
    }

    /// Seals this turn's batch into one WebSocket binary message. Call once per
    /// loop turn, before writing.
    pub fn flush(&mut self) {
        self.seal();
    }

    /// Fills `out` (the caller's array, e.g. on the stack) with the unsent
    /// bytes for one vectored write; returns how many slices it filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, chunk) in out.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk.as_slice());
            filled += 1;
        }
        filled
    }

    /// Appends to `out` up to `max` pieces from the front of the queue, owned
    /// (see [`OwnedChunk`]), for one write that stays in flight after this
    /// call returns; returns how many it appended.
    ///
    /// The contract with the driver: the pieces are the queue's front, in
    /// order, and nothing queued later changes them (a message still being
    /// built this turn is not returned: its header is only written when it
    /// is sealed, so call [`Outbound::flush`] first, as before any write).
    /// Once the write completes, report it with [`Outbound::consume`]`(n)`
    /// for the `n` bytes written; until then take no other pieces for a
    /// second write, which would start at the same front.
    pub fn owned_chunks(&self, out: &mut impl Extend<OwnedChunk>, max: usize) -> usize {
        // Everything from the open message's placeholder header on is still
        // being built.
        let sealed = self.open_message.map_or(self.chunks.len(), |index| index as usize);
        let taken = sealed.min(max).min(self.chunks.len());
        out.extend(self.chunks.iter().take(taken).cloned().map(OwnedChunk));
        taken
    }

    /// The unsent bytes, in order, as the chunks they are queued in.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().map(Chunk::as_slice)
    }

    /// Drops `written` bytes from the front after a write, and lifts the live
    /// pause once the queue has drained below half the pause mark.
    /// Returns true when live delivery resumed.
    pub fn consume(&mut self, mut written: usize, limits: Limits) -> bool {
        self.queued = self.queued.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            let len = front.as_slice().len();
            if written >= len {
                written -= len;
                self.chunks.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
        if self.release && self.is_empty() && self.chunks.is_empty() {
            self.release = false;
            self.chunks = VecDeque::new();
            self.batch = BytesMut::new();
        }
        if self.live_paused && self.len() < limits.pause_bytes / 2 {
            self.live_paused = false;
            return true;
        }
        false
    }

    /// Frees the queue's buffers (the chunk list, and what is left of the
    /// buffer frames are encoded into) once everything queued now and later
    /// is written. A busy session keeps them from turn to turn, so that its
    /// output allocates nothing; the session calls this at the end of its
    /// first sync and when its client's heartbeat arrives, so that an idle
    /// one holds none (about 180 bytes), and the next sessions to log in
    /// reuse that memory.
    pub fn release_when_drained(&mut self) {
        self.release = true;
    }

    /// Whether the queue holds buffers (for tests of when they go).
    #[cfg(test)]
    pub(crate) fn holds_buffers(&self) -> bool {
        self.chunks.capacity() > 0 || self.batch.capacity() > 0
    }

    /// Applies the policy to `size` more bytes of `class`; `None` admits them.
    ///
    /// Only a reply past `max_bytes` overflows (the session closes): live
    /// output that does not fit pauses and ephemeral output drops, as below
    /// the bound. Control output (sync windows, at most two unacknowledged)
    /// may take the queue past the bound on its own, and a receipt arriving
    /// then must not close a client that reads: it comes again by sync and
    /// `Cursors`. A client that reads nothing is closed by the write stall.
    fn admit(&mut self, size: usize, class: Class, limits: Limits) -> Option<Queued> {
        let queued = self.len();
        // One frame larger than the bound goes out alone: on an empty queue
        // there is nothing whose draining would resume a pause.
        let over = queued > 0 && queued + size > limits.max_bytes;
        match class {
            Class::Control => None,
            Class::Reply if over => Some(Queued::Overflow),
            Class::Ephemeral if over || queued >= limits.pause_bytes || self.live_paused => {
                Some(Queued::Dropped)
            }
            Class::Live if over || self.live_paused || queued >= limits.pause_bytes => {
                self.live_paused = true;
                Some(Queued::Paused)
            }
            _ => None,
        }
    }

    /// Turns the batch into a sealed message: the header is written right-aligned
    /// into the reserved room and the unused front is cut off, so the message is
    /// one contiguous `Bytes` with no copy.
    fn seal(&mut self) {
        let payload = self.message_len();
        let (header, header_len) = server_header(OpCode::Binary, payload);
        if let Some(index) = self.open_message.take() {
            // A message with shared tails: its parts are queued; patch the
            // placeholder header and queue what the batch still holds.
            let end = u8::try_from(header_len).unwrap_or(10);
            if let Some(slot) = self.chunks.get_mut(index as usize) {
                *slot = Chunk::Header { bytes: header, start: 0, end };
            }
            self.queued += header_len;
            self.open_len = 0;
            if !self.batch.is_empty() {
                let rest = self.batch.split().freeze();
                self.queued += rest.len();
                self.chunks.push_back(Chunk::Bytes(rest));
            }
            return;
        }
        if payload == 0 {
            self.batch.clear();
            return;
        }
        let start = HEADER_ROOM - header_len;
        if let (Some(room), Some(header)) = (self.batch.get_mut(start..HEADER_ROOM), header.get(..header_len))
        {
            room.copy_from_slice(header);
        }
        let mut message = self.batch.split();
        message.advance(start);
        self.queued += message.len();
        self.chunks.push_back(Chunk::Bytes(message.freeze()));
    }
}

#[cfg(test)]
mod tests {
    use protocol::Ping;

    use super::*;

    const LIMITS: Limits = Limits { pause_bytes: 1 << 20, max_bytes: 2 << 20 };

    fn concat<T: AsRef<[u8]>>(pieces: impl IntoIterator<Item = T>) -> Vec<u8> {
        pieces.into_iter().flat_map(|piece| piece.as_ref().to_vec()).collect()
    }

    /// Raw bytes, a batch with a referenced shared tail in it, and a shared
    /// message: every kind of chunk, sealed.
    fn mixed() -> Outbound {
        let mut out = Outbound::default();
        out.push_raw(Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"));
        assert_eq!(out.push_frame(&Frame::Ping(Ping { nonce: 1 }), Class::Control, LIMITS), Queued::Accepted);
        let tail = Bytes::from(vec![7u8; COPY_TAIL_MAX + 500]);
        assert_eq!(out.push_shared_tail(&[1, 2, 3], tail, Class::Live, LIMITS), Queued::Accepted);
        assert_eq!(out.push_frame(&Frame::Ping(Ping { nonce: 2 }), Class::Control, LIMITS), Queued::Accepted);
        out.flush();
        assert_eq!(out.push_shared(Bytes::from_static(b"shared"), Class::Live, LIMITS), Queued::Accepted);
        out
    }

    #[test]
    fn owned_chunks_are_the_queued_bytes() {
        let out = mixed();
        let mut owned = Vec::new();
        let taken = out.owned_chunks(&mut owned, usize::MAX);
        assert_eq!(taken, out.chunks().count());
        assert!(taken >= 6, "raw, header, batch, tail, batch rest, header + shared: {taken}");
        assert_eq!(concat(&owned), concat(out.chunks()));
        assert_eq!(owned.iter().map(|chunk| chunk.len()).sum::<usize>(), out.len());
    }

    #[test]
    fn owned_chunks_outlive_later_output_and_the_write() {
        let mut out = mixed();
        let mut owned = Vec::new();
        out.owned_chunks(&mut owned, usize::MAX);
        let before = concat(&owned);
        // More output of every kind, sealed, then the write completes.
        assert_eq!(out.push_frame(&Frame::Ping(Ping { nonce: 3 }), Class::Control, LIMITS), Queued::Accepted);
        let tail = Bytes::from(vec![9u8; COPY_TAIL_MAX + 1]);
        assert_eq!(out.push_shared_tail(&[4], tail, Class::Live, LIMITS), Queued::Accepted);
        out.flush();
        out.push_raw(Bytes::from_static(b"close"));
        assert_eq!(concat(&owned), before);
        let _ = out.consume(before.len(), LIMITS);
        assert_eq!(concat(&owned), before);
        // What is left is exactly what was queued after them.
        let mut rest = Vec::new();
        out.owned_chunks(&mut rest, usize::MAX);
        assert_eq!(concat(&rest), concat(out.chunks()));
        assert!(concat(&rest).ends_with(b"close"));
    }

    /// An idle session holds no output buffer once its heartbeat's answer
    /// is out; a partial write keeps them, and output afterwards works.
    #[test]
    fn buffers_are_released_once_drained_after_a_heartbeat() {
        let mut out = mixed();
        let held = Outbound::holds_buffers;
        let _ = out.consume(out.len(), LIMITS);
        assert!(held(&out), "a busy session keeps its buffers");

        let pong = Frame::Pong(protocol::Pong { nonce: 5 });
        assert_eq!(out.push_frame(&pong, Class::Reply, LIMITS), Queued::Accepted);
        out.release_when_drained();
        out.flush();
        let total = out.len();
        let _ = out.consume(total - 1, LIMITS);
        assert!(held(&out), "not drained yet");
        let _ = out.consume(1, LIMITS);
        assert!(out.is_empty() && !held(&out), "drained: released");

        assert_eq!(out.push_frame(&Frame::Ping(Ping { nonce: 6 }), Class::Control, LIMITS), Queued::Accepted);
        out.flush();
        let mut expected = Outbound::default();
        assert_eq!(
            expected.push_frame(&Frame::Ping(Ping { nonce: 6 }), Class::Control, LIMITS),
            Queued::Accepted
        );
        expected.flush();
        assert_eq!(concat(out.chunks()), concat(expected.chunks()));
        let _ = out.consume(out.len(), LIMITS);
        assert!(held(&out), "released once, not at every write");
    }

    #[test]
    fn owned_chunks_take_at_most_max_and_append() {
        let out = mixed();
        let mut owned = Vec::new();
        assert_eq!(out.owned_chunks(&mut owned, 2), 2);
        assert_eq!(concat(&owned), concat(out.chunks().take(2)));
        assert_eq!(out.owned_chunks(&mut owned, 0), 0);
        assert_eq!(out.owned_chunks(&mut owned, 1), 1);
        assert_eq!(owned.len(), 3, "appended, not replaced");
    }

    #[test]
    fn owned_chunks_stop_before_a_message_still_being_built() {
        let mut out = Outbound::default();
        out.push_raw(Bytes::from_static(b"raw"));
        let tail = Bytes::from(vec![5u8; COPY_TAIL_MAX + 1]);
        assert_eq!(out.push_shared_tail(&[1], tail, Class::Live, LIMITS), Queued::Accepted);
        let mut owned = Vec::new();
        assert_eq!(out.owned_chunks(&mut owned, usize::MAX), 1, "the unsealed message waits");
        assert_eq!(concat(&owned), b"raw");
        out.flush();
        owned.clear();
        out.owned_chunks(&mut owned, usize::MAX);
        assert_eq!(concat(&owned), concat(out.chunks()));
    }
}
