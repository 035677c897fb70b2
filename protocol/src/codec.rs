//! Frame encoding into caller buffers, and decoding from a byte stream or from
//! one WebSocket message.
//!
//! Call order for a stream: append received bytes to a `BytesMut`, then call
//! [`Decoder::decode`] until it returns `Ok(None)` (needs more bytes). For a
//! complete WebSocket message, iterate [`Decoder::message`]. Any `Err` is final
//! for the connection: the peer is broken or hostile, and the caller closes with
//! `CloseCode::BAD_FRAME`; the decoder never skips ahead to resynchronise.
//!
//! Decoding splits the frame off the input as one [`Bytes`] (a reference count,
//! no copy), and every byte, text and list field is a slice of it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frames::{Frame, FrameKind};
use crate::limits::{MAX_FRAMES_PER_MESSAGE, MAX_FRAME_LEN, VERSION_MAX, VERSION_MIN};
use crate::reader::Reader;
use crate::varint::{put_varint, read_varint, varint_len};

impl Frame {
    /// Bytes [`Frame::encode`] writes: tag, length varint and body.
    pub fn encoded_len(&self) -> usize {
        framed_len(self.body_len())
    }

    /// Appends the frame to `dst` and returns the number of bytes written.
    ///
    /// Fails, writing nothing, if the body exceeds [`MAX_FRAME_LEN`] or `dst`
    /// has no room for the whole frame (a fixed-size buffer). Bounded fields
    /// were checked when they were built.
    pub fn encode<B: BufMut + ?Sized>(&self, dst: &mut B) -> Result<usize, EncodeError> {
        let body = self.body_len();
        if body > MAX_FRAME_LEN {
            return Err(EncodeError::FrameTooLarge { len: body, max: MAX_FRAME_LEN });
        }
        let total = framed_len(body);
        if dst.remaining_mut() < total {
            return Err(EncodeError::BufferTooSmall { needed: total, available: dst.remaining_mut() });
        }
        dst.put_u8(self.kind().tag());
        put_varint(dst, body as u64);
        self.put_body(dst);
        Ok(total)
    }

    /// The frame in a buffer of its own (allocates; for tests and tools).
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Length of a frame whose body is `body` bytes.
fn framed_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// Decodes frames, enforcing a frame-length limit.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_frame_len: usize,
    max_frames_per_message: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the protocol maxima, for messages a client sent (as a
    /// server uses it).
    pub const fn new() -> Self {
        Self { max_frame_len: MAX_FRAME_LEN, max_frames_per_message: MAX_FRAMES_PER_MESSAGE }
    }

    /// A decoder for messages a server sent, as a client uses it: no
    /// frames-per-message limit (a server message is bounded by
    /// `MAX_SERVER_MESSAGE_LEN`, which the WebSocket layer enforces).
    pub const fn for_server_messages() -> Self {
        Self::new().with_max_frames_per_message(usize::MAX)
    }

    /// Lowers the frame-length limit (never above [`MAX_FRAME_LEN`]).
    #[must_use]
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = if max < MAX_FRAME_LEN { max } else { MAX_FRAME_LEN };
        self
    }

    /// Sets how many frames one message may carry (a server uses
    /// [`MAX_FRAMES_PER_MESSAGE`]; a client reading server messages may allow more).
    #[must_use]
    pub const fn with_max_frames_per_message(mut self, max: usize) -> Self {
        self.max_frames_per_message = max;
        self
    }

    /// Takes one frame off the front of `src`.
    ///
    /// `Ok(None)`: `src` holds only part of a frame (nothing is consumed).
    /// `Ok(Some(frame))`: the frame's bytes were split off `src`.
    /// A wrong tag or an oversized length fails as soon as the header is read,
    /// before the body arrives. The decoder reserves nothing on the strength of
    /// a header: a peer that announces 256 KiB must send it to make us hold it.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.header(src)? {
            Some((kind, header, body)) if src.len() - header >= body => {
                Self::body(kind, header, src.split_to(header + body).freeze()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The frames of one complete WebSocket message. The message's own size
    /// limit (`MAX_CLIENT_MESSAGE_LEN`) is the WebSocket layer's to enforce,
    /// before the message is assembled.
    pub fn message(&self, message: Bytes) -> MessageFrames {
        MessageFrames { decoder: *self, rest: message, decoded: 0, done: false }
    }

    /// Parses a header: `Ok(None)` if incomplete, else kind, header and body lengths.
    fn header(&self, src: &[u8]) -> Result<Option<(FrameKind, usize, usize)>, DecodeError> {
        let Some((&tag, after_tag)) = src.split_first() else {
            return Ok(None);
        };
        let kind = FrameKind::from_tag(tag).ok_or(DecodeError::UnknownKind(tag))?;
        let Some((len, len_bytes)) = read_varint(after_tag, "length")? else {
            return Ok(None);
        };
        if len > self.max_frame_len as u64 {
            return Err(DecodeError::FrameTooLarge { len, max: self.max_frame_len });
        }
        // `len <= max_frame_len`, a usize.
        Ok(Some((kind, 1 + len_bytes, len as usize)))
    }

    /// Decodes the body of a complete frame (`frame` still holds its header).
    fn body(kind: FrameKind, header: usize, mut frame: Bytes) -> Result<Frame, DecodeError> {
        frame.advance(header);
        if kind == FrameKind::Hello {
            check_hello_versions(&frame)?;
        }
        Frame::get_body(kind, &mut Reader::new(frame))
    }
}

/// HELLO's first two body bytes are its version range in every version of the
/// protocol (SPEC §3), so a range this crate cannot speak is reported as such
/// rather than as whatever the rest of a future HELLO fails on.
fn check_hello_versions(body: &[u8]) -> Result<(), DecodeError> {
    if let [min, max, ..] = *body {
        if max < VERSION_MIN || min > VERSION_MAX || min > max {
            return Err(DecodeError::UnsupportedVersion { min, max });
        }
    }
    Ok(())
}

/// Iterator over the frames of one WebSocket message; see [`Decoder::message`].
///
/// Yields each frame, or one error and then nothing: an empty message is
/// `EmptyMessage`, a message that ends inside a frame is `PartialFrame`, more
/// frames than the limit is `TooManyFrames`.
#[derive(Debug)]
pub struct MessageFrames {
    decoder: Decoder,
    rest: Bytes,
    decoded: usize,
    done: bool,
}

impl MessageFrames {
    fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.rest.is_empty() {
            return match self.decoded {
                0 => Err(DecodeError::EmptyMessage),
                _ => Ok(None),
            };
        }
        if self.decoded == self.decoder.max_frames_per_message {
            return Err(DecodeError::TooManyFrames { max: self.decoder.max_frames_per_message });
        }
        match self.decoder.header(&self.rest)? {
            Some((kind, header, body)) if self.rest.len() - header >= body => {
                self.decoded += 1;
                Decoder::body(kind, header, self.rest.split_to(header + body)).map(Some)
            }
            _ => Err(DecodeError::PartialFrame),
        }
    }
}

impl Iterator for MessageFrames {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_frame().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
