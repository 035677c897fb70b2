//! Unsigned LEB128 varints, canonical only.
//!
//! Seven bits per byte, least significant group first, high bit set on every
//! byte but the last. At most 10 bytes hold a `u64`. The encoding must be
//! minimal: a multi-byte varint whose last byte is `0x00` is rejected, so every
//! value has exactly one encoding and decode → encode reproduces the input.

use crate::error::DecodeError;

/// Longest encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Bytes needed to encode `value`.
#[inline]
pub const fn varint_len(value: u64) -> usize {
    // 64 significant bits at most; 0 still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the varint encoding of `value` to `dst`.
#[inline]
pub fn put_varint<B: bytes::BufMut + ?Sized>(dst: &mut B, mut value: u64) {
    while value >= 0x80 {
        dst.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// Reads a varint from the start of `src`.
///
/// Returns `Ok(None)` when `src` ends before the varint does (more bytes may
/// complete it), `Ok(Some((value, len)))` otherwise. `field` names the field in
/// errors.
#[inline]
pub fn read_varint(src: &[u8], field: &'static str) -> Result<Option<(u64, usize)>, DecodeError> {
    // Most varints on the wire (lengths, small ids, enums) are one byte.
    if let Some(&byte) = src.first() {
        if byte < 0x80 {
            return Ok(Some((u64::from(byte), 1)));
        }
    }
    read_varint_slow(src, field)
}

fn read_varint_slow(src: &[u8], field: &'static str) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (i, &byte) in src.iter().enumerate().take(MAX_VARINT_LEN) {
        let group = u64::from(byte & 0x7f);
        // The 10th byte may only carry the single top bit of a u64.
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(DecodeError::VarintOverflow { field });
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError::NonCanonicalVarint { field });
            }
            return Ok(Some((value, i + 1)));
        }
    }
    // The tenth byte always ends the loop above (`> 1` is an overflow, `<= 1`
    // has no continuation bit), so only a short input gets here.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (u64::MAX, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encode {value}");
            assert_eq!(varint_len(value), bytes.len(), "len {value}");
            assert_eq!(read_varint(bytes, "v").unwrap(), Some((value, bytes.len())));
        }
    }

    #[test]
    fn rejects_overlong_and_overflow() {
        assert_eq!(read_varint(&[0x80, 0x00], "v"), Err(DecodeError::NonCanonicalVarint { field: "v" }));
        assert_eq!(
            read_varint(&[0xff, 0x80, 0x00], "v"),
            Err(DecodeError::NonCanonicalVarint { field: "v" })
        );
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_varint(&too_big, "v"), Err(DecodeError::VarintOverflow { field: "v" }));
        let too_long = [0x80; 11];
        assert_eq!(read_varint(&too_long, "v"), Err(DecodeError::VarintOverflow { field: "v" }));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(read_varint(&[], "v"), Ok(None));
        assert_eq!(read_varint(&[0x80], "v"), Ok(None));
        assert_eq!(read_varint(&[0xff; 9], "v"), Ok(None));
    }

    proptest! {
        #[test]
        fn round_trip(value: u64, tail: Vec<u8>) {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            prop_assert_eq!(buf.len(), varint_len(value));
            buf.extend_from_slice(&tail);
            prop_assert_eq!(read_varint(&buf, "v").unwrap(), Some((value, varint_len(value))));
        }

        #[test]
        fn any_bytes_never_panic(bytes: Vec<u8>) {
            let _ = read_varint(&bytes, "v");
        }
    }
}
