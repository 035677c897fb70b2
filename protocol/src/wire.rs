//! How one field is written and read: the [`Wire`] trait and its primitive impls.
//!
//! Every field type of every frame implements [`Wire`], so a frame is just its
//! fields in order (see `frames.rs`), and nested records and lists reuse the
//! same code. Primitive encodings:
//!
//! | Rust type | wire |
//! |-----------|------|
//! | `u8`      | one byte |
//! | `bool`    | one byte, `0x00` or `0x01` |
//! | `u32`, `u64` | canonical varint (a `u32` above `u32::MAX` is `InvalidValue`) |
//! | `Option<T>` | one byte `0x00` (absent) or `0x01` followed by `T` |

use bytes::BufMut;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::varint::{put_varint, varint_len};

/// A field type with exactly one wire encoding.
///
/// Implemented by the crate for every field type, and sealed: the codec relies
/// on every encoding being canonical and at least one byte long (so a list
/// count bounds the work of decoding it). `get(put(x)) == x` holds for every
/// value, and `put` writes exactly `wire_len` bytes.
pub trait Wire: sealed::Sealed + Sized {
    /// Bytes `put` writes.
    fn wire_len(&self) -> usize;
    /// Appends the encoding to `dst`.
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B);
    /// Reads one value; `field` names it in errors.
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError>;
}

pub(crate) mod sealed {
    /// Keeps [`Wire`](super::Wire) implementable only inside this crate.
    pub trait Sealed {}
}

impl sealed::Sealed for u8 {}
impl sealed::Sealed for bool {}
impl sealed::Sealed for u32 {}
impl sealed::Sealed for u64 {}
impl<T: Wire> sealed::Sealed for Option<T> {}

impl Wire for u8 {
    fn wire_len(&self) -> usize {
        1
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        dst.put_u8(*self);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        r.u8(field)
    }
}

impl Wire for bool {
    fn wire_len(&self) -> usize {
        1
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        dst.put_u8(u8::from(*self));
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        match r.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidValue { field, value: other.into() }),
        }
    }
}

impl Wire for u64 {
    fn wire_len(&self) -> usize {
        varint_len(*self)
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        put_varint(dst, *self);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        r.varint(field)
    }
}

impl Wire for u32 {
    fn wire_len(&self) -> usize {
        varint_len((*self).into())
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        put_varint(dst, (*self).into());
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        let value = r.varint(field)?;
        u32::try_from(value).map_err(|_| DecodeError::InvalidValue { field, value })
    }
}

impl<T: Wire> Wire for Option<T> {
    fn wire_len(&self) -> usize {
        1 + self.as_ref().map_or(0, Wire::wire_len)
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        match self {
            None => dst.put_u8(0),
            Some(value) => {
                dst.put_u8(1);
                value.put(dst);
            }
        }
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        match r.u8(field)? {
            0 => Ok(None),
            1 => T::get(r, field).map(Some),
            other => Err(DecodeError::InvalidValue { field, value: other.into() }),
        }
    }
}
