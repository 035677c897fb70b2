//! [`MessageReader`]: client frames in, WebSocket messages and control frames
//! out, over the caller's read buffer.
//!
//! The caller appends what it reads to a `BytesMut` and calls
//! [`MessageReader::read`]. Every complete frame at the front is split off,
//! unmasked in place and turned into a [`WsEvent`]; a partial frame stays in the
//! buffer for the next call. The payload of a partial text frame that has
//! arrived is unmasked in place and checked as UTF-8 at once, so that invalid
//! text fails on its first bad byte, not at the frame's end. The reader itself
//! keeps only the state of a text frame or fragmented message in flight, boxed
//! and owning a buffer only while a fragmented message is in flight: an idle
//! reader is 16 bytes with no heap behind it.
//!
//! ```
//! use bytes::BytesMut;
//! use gateway_ws::{MessageReader, WsEvent};
//!
//! let mut reader = MessageReader::new(1 << 16);
//! // A masked binary frame "hi" (mask 0x01020304), arriving in two reads.
//! let mut buf = BytesMut::from(&[0x82, 0x82, 1, 2, 3][..]);
//! let mut events = Vec::new();
//! reader.read(&mut buf, |event| events.push(event)).unwrap();
//! assert!(events.is_empty());
//! buf.extend_from_slice(&[4, b'h' ^ 1, b'i' ^ 2]);
//! reader.read(&mut buf, |event| events.push(event)).unwrap();
//! assert_eq!(events, [WsEvent::Binary("hi".into())]);
//! assert!(buf.is_empty());
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::error::WsError;
use crate::frame::{is_valid_close_code, OpCode, MAX_CONTROL_PAYLOAD};

/// What a client sent: a whole message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A binary message (reassembled if it came in fragments).
    Binary(Bytes),
    /// A text message, validated as UTF-8 (SPEC §1: the server answers it with
    /// close 1003).
    Text(Bytes),
    /// A ping; RFC 6455 wants a pong with the same payload (at most 125 bytes).
    Ping(Bytes),
    /// A pong (unsolicited ones are allowed and mean nothing).
    Pong(Bytes),
    /// The client's close frame. `code` is `None` for an empty payload (observed
    /// as 1005); when present it is valid and `reason` is UTF-8. The reader
    /// consumes nothing after it (later bytes are discarded).
    Close {
        /// The status code, already checked with [`is_valid_close_code`].
        code: Option<u16>,
        /// The reason, validated as UTF-8 (at most 123 bytes).
        reason: Bytes,
    },
}

/// Reads client frames into [`WsEvent`]s; see the [module docs](self).
///
/// After [`read`](Self::read) returns an error the connection is failed: send a
/// close with [`WsError::close_code`] and stop reading. Calling `read` again is
/// safe but its events mean nothing.
#[derive(Debug)]
pub struct MessageReader {
    /// Largest message accepted, in bytes (saturated to `u32::MAX`).
    max_message: u32,
    /// A close frame was read: everything after it is discarded.
    closed: bool,
    /// The fragmented message, or the partly received text frame, in flight;
    /// boxed so that an idle reader stays small.
    partial: Option<Box<Partial>>,
}

/// A fragmented message being assembled, or a text frame partly received.
#[derive(Debug)]
struct Partial {
    /// The payload of the fragments so far (empty until the first fragment is
    /// complete).
    data: BytesMut,
    /// A fragment without FIN has been read: continuations follow.
    fragmented: bool,
    /// A text message: its UTF-8 is checked as its bytes arrive.
    text: bool,
    /// The UTF-8 state of the text so far (fragments and the front frame's
    /// bytes already seen).
    utf8: Utf8,
    /// Payload bytes of the text frame at the front of the caller's buffer
    /// already unmasked (in place) and checked.
    seen: usize,
}

/// Incremental UTF-8 validation: a code point cut by a read or a fragment
/// boundary (at most 3 bytes) is kept until its next bytes arrive; anything
/// that cannot start valid UTF-8 fails at once.
#[derive(Debug, Clone, Copy, Default)]
struct Utf8 {
    cut: [u8; 4],
    len: u8,
}

impl Utf8 {
    /// Checks `bytes`, which follow everything checked so far.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WsError> {
        while self.len > 0 {
            let Some((&byte, rest)) = bytes.split_first() else { return Ok(()) };
            bytes = rest;
            if let Some(slot) = self.cut.get_mut(usize::from(self.len)) {
                *slot = byte;
            }
            self.len += 1;
            // At most 3 bytes were held (a 4-byte code point completes or
            // fails at its 4th), so `len` is at most 4.
            debug_assert!(usize::from(self.len) <= self.cut.len(), "{} cut bytes", self.len);
            match core::str::from_utf8(self.cut.get(..usize::from(self.len)).unwrap_or_default()) {
                Ok(_) => self.len = 0,
                // Still a valid prefix of a code point (at most 3 bytes of 4).
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return Err(WsError::InvalidUtf8),
            }
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // `valid_up_to` is within what was checked.
                debug_assert!(e.valid_up_to() <= bytes.len());
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                if let Some(cut) = self.cut.get_mut(..tail.len()) {
                    cut.copy_from_slice(tail);
                }
                // A valid prefix of a code point: 1 to 3 bytes.
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(WsError::InvalidUtf8),
        }
    }

    /// At the end of a message: no code point may be left cut.
    fn finish(&self) -> Result<(), WsError> {
        match self.len {
            0 => Ok(()),
            _ => Err(WsError::InvalidUtf8),
        }
    }
}

/// A frame header, parsed once the length and mask are in the buffer.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Bytes of header, mask included (6 to 14).
    header_len: usize,
    /// Bytes of payload.
    len: usize,
}

impl MessageReader {
    /// A reader that accepts messages of up to `max_message` bytes (counted
    /// after reassembly; saturated to `u32::MAX`) and fails larger ones with
    /// [`WsError::MessageTooBig`] (1009).
    pub fn new(max_message: usize) -> Self {
        let max_message = u32::try_from(max_message).unwrap_or(u32::MAX);
        Self { max_message, closed: false, partial: None }
    }

    /// The message limit.
    pub fn max_message(&self) -> usize {
        self.max_message as usize
    }

    /// True when no fragmented message or partly received text frame is in
    /// flight (the reader owns no buffer).
    pub fn is_idle(&self) -> bool {
        self.partial.is_none()
    }

    /// True once a close frame has been read.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes of the fragmented message in flight (0 when idle), for memory
    /// accounting.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.data.len())
    }

    /// Consumes every complete frame at the front of `buf` (unmasking in place),
    /// calling `on_event` for each message and control frame. A partial frame is
    /// left in `buf`. A single-frame message's payload is split off `buf` without
    /// a copy (it shares `buf`'s allocation); a fragmented one is assembled in a
    /// buffer the reader owns until the last fragment.
    ///
    /// Faults are found as early as the bytes allow: header faults from the
    /// first two bytes, an oversized message as soon as its length is read (no
    /// payload is buffered for it), invalid UTF-8 at the first byte that shows
    /// it, even inside a frame not yet complete (its bytes so far are left in
    /// `buf` unmasked; pass them back unchanged, as for any partial frame).
    /// After a close frame, the rest of `buf` (and of any later call) is
    /// discarded.
    pub fn read(&mut self, buf: &mut BytesMut, mut on_event: impl FnMut(WsEvent)) -> Result<(), WsError> {
        loop {
            if self.closed {
                buf.clear();
                return Ok(());
            }
            let Some(header) = self.parse_header(buf)? else { return Ok(()) };
            let available = buf.len() - header.header_len;
            let seen = match self.is_text(header.opcode) {
                true => self.scan_text(buf, header, available)?,
                false => 0,
            };
            if available < header.len {
                return Ok(());
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.len);
            if let Some(rest) = payload.get_mut(seen..) {
                unmask(rest, rotate(header.mask, seen));
            }
            if let Some(event) = self.on_frame(header, payload)? {
                on_event(event);
            }
        }
    }

    /// The fragmented message in flight (not a text frame only partly read).
    fn message(&self) -> Option<&Partial> {
        self.partial.as_deref().filter(|partial| partial.fragmented)
    }

    /// Whether a frame with `opcode` carries text.
    fn is_text(&self, opcode: OpCode) -> bool {
        match opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.message().is_some_and(|message| message.text),
            _ => false,
        }
    }

    /// Unmasks and checks the payload bytes of the text frame at the front of
    /// `buf` that arrived since the last call (`available` of them are there
    /// now); returns how many of its payload bytes are unmasked. The UTF-8 state
    /// is kept only while the frame is partial or the message fragmented.
    fn scan_text(&mut self, buf: &mut [u8], header: Header, available: usize) -> Result<usize, WsError> {
        let (mut utf8, seen) = self.partial.as_deref().map_or((Utf8::default(), 0), |p| (p.utf8, p.seen));
        let end = available.min(header.len);
        if let Some(new) = buf.get_mut(header.header_len + seen..header.header_len + end) {
            unmask(new, rotate(header.mask, seen));
            utf8.feed(new)?;
        }
        if end < header.len || self.partial.is_some() {
            let partial = self.partial.get_or_insert_with(|| {
                Box::new(Partial {
                    data: BytesMut::new(),
                    fragmented: false,
                    text: true,
                    utf8: Utf8::default(),
                    seen: 0,
                })
            });
            partial.utf8 = utf8;
            partial.seen = end;
        } else if header.fin {
            // A whole single-frame text message: nothing to keep.
            utf8.finish()?;
        } else {
            // The first fragment, whole: its state goes with the message.
            self.partial = Some(Box::new(Partial {
                data: BytesMut::new(),
                fragmented: false,
                text: true,
                utf8,
                seen: end,
            }));
        }
        Ok(end)
    }

    /// Parses the header at the front of `buf`: `Ok(None)` while it is
    /// incomplete. Checks everything a header alone can show, each as soon as
    /// its bytes are there.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let &[b0, b1, ref rest @ ..] = buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits((b0 >> 4) & 0x7));
        }
        let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(WsError::ReservedOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let len7 = b1 & 0x7f;
        // Bytes of the message already assembled, for the size check.
        let mut assembled = 0;
        match (opcode, self.message()) {
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => {
                if !fin {
                    return Err(WsError::FragmentedControl);
                }
                if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                    return Err(WsError::ControlTooLong);
                }
            }
            (OpCode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(WsError::ExpectedContinuation),
            (OpCode::Continuation, Some(message)) => assembled = message.data.len() as u64,
            (OpCode::Text | OpCode::Binary, None) => {}
        }

        let (len, ext) = match len7 {
            126 => match array::<2>(rest, 0) {
                Some(bytes) => (u64::from(u16::from_be_bytes(bytes)), 2),
                None => return Ok(None),
            },
            127 => match array::<8>(rest, 0) {
                Some(bytes) => (u64::from_be_bytes(bytes), 8),
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        if len >> 63 != 0 {
            return Err(WsError::LengthOverflow);
        }
        // Data frames count against the message limit (control frames have
        // their own, checked above), before any of the payload is buffered.
        let limit = self.max_message();
        let too_big = WsError::MessageTooBig { len: assembled.saturating_add(len), limit };
        if !opcode.is_control() && assembled.saturating_add(len) > limit as u64 {
            return Err(too_big);
        }
        // At most the limit, which fits in u32, so this only fails on 16-bit targets.
        let len = usize::try_from(len).map_err(|_| too_big)?;
        let Some(mask) = array::<4>(rest, ext) else { return Ok(None) };
        Ok(Some(Header { fin, opcode, mask, header_len: 2 + ext + 4, len }))
    }

    /// Turns one unmasked frame into at most one event.
    fn on_frame(&mut self, header: Header, payload: BytesMut) -> Result<Option<WsEvent>, WsError> {
        let event = match header.opcode {
            OpCode::Ping => WsEvent::Ping(payload.freeze()),
            OpCode::Pong => WsEvent::Pong(payload.freeze()),
            OpCode::Close => {
                let event = parse_close(payload)?;
                self.closed = true;
                self.partial = None;
                event
            }
            OpCode::Text if header.fin => {
                // scan_text checked all of it; a state kept for a partial
                // frame ends here.
                if let Some(partial) = self.partial.take() {
                    partial.utf8.finish()?;
                }
                WsEvent::Text(payload.freeze())
            }
            OpCode::Binary if header.fin => WsEvent::Binary(payload.freeze()),
            OpCode::Text | OpCode::Binary => {
                // Copied out of the caller's buffer, so that the fragments do not
                // pin its allocation while the message is assembled. A text
                // fragment's state is already there (scan_text).
                let partial = self.partial.get_or_insert_with(|| {
                    Box::new(Partial {
                        data: BytesMut::new(),
                        fragmented: false,
                        text: false,
                        utf8: Utf8::default(),
                        seen: 0,
                    })
                });
                partial.data.extend_from_slice(&payload);
                partial.fragmented = true;
                partial.seen = 0;
                return Ok(None);
            }
            OpCode::Continuation => {
                // parse_header let a continuation through only with a message in flight.
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                partial.data.extend_from_slice(&payload);
                partial.seen = 0;
                if !header.fin {
                    return Ok(None);
                }
                let Some(partial) = self.partial.take() else { return Ok(None) };
                let Partial { data, text, utf8, .. } = *partial;
                if text {
                    utf8.finish()?;
                    WsEvent::Text(data.freeze())
                } else {
                    WsEvent::Binary(data.freeze())
                }
            }
        };
        Ok(Some(event))
    }
}

/// Parses a close payload: empty, or a valid code and a UTF-8 reason.
fn parse_close(mut payload: BytesMut) -> Result<WsEvent, WsError> {
    if payload.is_empty() {
        return Ok(WsEvent::Close { code: None, reason: Bytes::new() });
    }
    let Some(code) = array::<2>(&payload, 0).map(u16::from_be_bytes) else {
        return Err(WsError::CloseTooShort);
    };
    if !is_valid_close_code(code) {
        return Err(WsError::InvalidCloseCode(code));
    }
    payload.advance(2);
    if core::str::from_utf8(&payload).is_err() {
        return Err(WsError::InvalidCloseReason);
    }
    Ok(WsEvent::Close { code: Some(code), reason: payload.freeze() })
}

/// The `N` bytes of `buf` at `at`, if they are there.
fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The mask as it applies from payload byte `offset` on.
fn rotate(mut mask: [u8; 4], offset: usize) -> [u8; 4] {
    mask.rotate_left(offset % 4);
    mask
}

/// XORs `data` with the repeating 4-byte `mask` (RFC 6455 §5.3), 8 bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
        }
    }
    // Chunks are a multiple of 4 long, so the remainder starts at mask byte 0.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}
