//! A bounds-checked reader over one frame body.
//!
//! Every read returns `Err(DecodeError::Truncated)` instead of panicking when the
//! body is short; slices are zero-copy [`Bytes`] views of the frame.

use bytes::{Buf, Bytes};

use crate::error::DecodeError;
use crate::varint::read_varint;

/// Cursor over the body of one frame.
#[derive(Debug)]
pub struct Reader {
    body: Bytes,
}

impl Reader {
    /// Reads `body` from its start.
    pub fn new(body: Bytes) -> Self {
        Self { body }
    }

    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.body.len()
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> Bytes {
        self.body.clone()
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if self.body.is_empty() {
            return Err(DecodeError::Truncated { field });
        }
        Ok(self.body.get_u8())
    }

    /// A canonical varint.
    #[inline]
    pub fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        match read_varint(&self.body, field)? {
            Some((value, len)) => {
                self.body.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated { field }),
        }
    }

    /// `len` bytes, shared with the frame (no copy).
    #[inline]
    pub fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.body.len() < len {
            return Err(DecodeError::Truncated { field });
        }
        Ok(self.body.split_to(len))
    }

    /// A varint length (at most `max`) followed by that many bytes.
    #[inline]
    pub fn len_prefixed(&mut self, max: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.varint(field)?;
        if len > max as u64 {
            return Err(DecodeError::FieldTooLong { field, len, max });
        }
        // `len <= max`, and `max` is a usize.
        self.bytes(len as usize, field)
    }

    /// Fails with `TrailingBytes` unless the body was read to its end.
    pub fn finish(&self, kind: &'static str) -> Result<(), DecodeError> {
        match self.body.len() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { kind, extra }),
        }
    }
}
