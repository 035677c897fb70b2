//! The v1 token layout: constants, the claims record and its encoding.
//!
//! Everything here is fixed-size, so parsing works on stack arrays and never
//! allocates. See the crate docs or `TOKEN.md` for the format itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use protocol::{DeviceId, UserId};

/// Version prefix every v1 token starts with (part of the signed bytes).
pub const PREFIX: &[u8; 3] = b"v1.";
/// Length of the binary payload: key_id (4) + user (8) + device (4) +
/// issued_at (8) + expires_at (8), all big-endian.
pub const PAYLOAD_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the payload in unpadded base64url (`ceil(32 * 4 / 3)`).
pub const PAYLOAD_B64_LEN: usize = 43;
/// Length of the signature in unpadded base64url (`ceil(64 * 4 / 3)`).
pub const SIGNATURE_B64_LEN: usize = 86;
/// Length of the signed part, `v1.` + base64url(payload).
pub const SIGNED_LEN: usize = PREFIX.len() + PAYLOAD_B64_LEN;
/// Length of every v1 token, in bytes (ASCII characters): 133.
pub const TOKEN_LEN: usize = SIGNED_LEN + 1 + SIGNATURE_B64_LEN;

/// What a verified token says: who the session is, and for how long the token
/// was issued.
///
/// Only [`Verifier::verify`](crate::Verifier::verify) hands these out, after
/// the signature and the validity window have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claims {
    /// The authenticated user.
    pub user: UserId,
    /// The device the token is bound to; HELLO must name the same one.
    pub device: DeviceId,
    /// The verification key the token was signed for.
    pub key_id: u32,
    /// When the token was issued, Unix seconds.
    pub issued_at: u64,
    /// First second at which the token is no longer valid, Unix seconds
    /// (before leeway).
    pub expires_at: u64,
}

impl Claims {
    /// The 32-byte binary payload of these claims.
    pub fn to_payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0u8; PAYLOAD_LEN];
        let fields = self
            .key_id
            .to_be_bytes()
            .into_iter()
            .chain(self.user.0.to_be_bytes())
            .chain(self.device.0.to_be_bytes())
            .chain(self.issued_at.to_be_bytes())
            .chain(self.expires_at.to_be_bytes());
        for (dst, src) in out.iter_mut().zip(fields) {
            *dst = src;
        }
        out
    }

    /// Parses a 32-byte binary payload. Every byte string of that length is a
    /// record; whether its values make sense is checked after the signature.
    pub fn from_payload(payload: &[u8; PAYLOAD_LEN]) -> Self {
        let (key_id, rest) = split::<4>(payload);
        let (user, rest) = split::<8>(rest);
        let (device, rest) = split::<4>(rest);
        let (issued_at, rest) = split::<8>(rest);
        let (expires_at, _) = split::<8>(rest);
        Self {
            user: UserId(u64::from_be_bytes(user)),
            device: DeviceId(u32::from_be_bytes(device)),
            key_id: u32::from_be_bytes(key_id),
            issued_at: u64::from_be_bytes(issued_at),
            expires_at: u64::from_be_bytes(expires_at),
        }
    }
}

/// The first `N` bytes and the rest. The callers' lengths add up to
/// `PAYLOAD_LEN`, so the zero fallback is never taken.
fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    match bytes.split_first_chunk::<N>() {
        Some((head, rest)) => (*head, rest),
        None => ([0; N], &[]),
    }
}

/// A token cut into its parts, still unverified.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    /// `v1.` + base64url(payload): the bytes the signature covers.
    pub(crate) signed: &'a [u8],
    pub(crate) payload: [u8; PAYLOAD_LEN],
    pub(crate) signature: [u8; SIGNATURE_LEN],
}

/// Splits and decodes a token without allocating. The error is the reason
/// for [`AuthError::Malformed`](crate::AuthError::Malformed).
pub(crate) fn split_token(token: &[u8]) -> Result<Parts<'_>, &'static str> {
    if token.len() != TOKEN_LEN {
        return Err(if token.is_empty() { "empty token" } else { "wrong token length" });
    }
    let (signed, rest) = token.split_at_checked(SIGNED_LEN).ok_or("wrong token length")?;
    let (prefix, payload_b64) = signed.split_first_chunk::<3>().ok_or("wrong token length")?;
    if prefix != PREFIX {
        return Err("not a v1 token");
    }
    let (dot, signature_b64) = rest.split_first().ok_or("wrong token length")?;
    if *dot != b'.' {
        return Err("missing '.' before the signature");
    }
    let mut payload = [0u8; PAYLOAD_LEN];
    match URL_SAFE_NO_PAD.decode_slice(payload_b64, &mut payload) {
        Ok(PAYLOAD_LEN) => {}
        _ => return Err("payload is not canonical base64url"),
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) {
        Ok(SIGNATURE_LEN) => {}
        _ => return Err("signature is not canonical base64url"),
    }
    Ok(Parts { signed, payload, signature })
}

/// Builds a token from claims and a signing function over the signed part.
pub(crate) fn assemble(claims: &Claims, sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN]) -> String {
    let mut token = String::with_capacity(TOKEN_LEN);
    token.push_str("v1.");
    URL_SAFE_NO_PAD.encode_string(claims.to_payload(), &mut token);
    let signature = sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}
