//! Signed session tokens for the gateway: Ed25519 signing (for development
//! and tests) and verification with several keys at once (for rotation).
//!
//! A client proves who it is with the `token` of its first frame, HELLO
//! (SPEC §4). The token binds a user id and a device id, with an issue time,
//! an expiry and the id of the key that signed it. Gateway nodes hold only
//! public keys ([`Verifier`]); the private key stays with the auth service
//! ([`Signer`] is its Rust implementation, and what `gateway token` uses with
//! the development key of [`keys::load_or_create_dev_signer`]).
//!
//! # Token format, v1
//!
//! `TOKEN.md` next to this crate's `Cargo.toml` is the same specification
//! for client teams and auth services, with a test vector.
//!
//! A token is exactly **133 printable ASCII bytes** (safe in JSON strings,
//! HTTP headers and URLs, no escaping):
//!
//! ```text
//! token   = "v1." payload-b64 "." signature-b64
//! payload-b64   = base64url, no padding, of the 32-byte payload   (43 chars)
//! signature-b64 = base64url, no padding, of the 64-byte signature (86 chars)
//! ```
//!
//! base64url is RFC 4648 §5 (alphabet `A–Z a–z 0–9 - _`), without `=`
//! padding. Decoding is strict: any other character, padding, or non-zero
//! unused bits in the last character make the token malformed, so every
//! token has exactly one spelling.
//!
//! The payload is a fixed 32-byte record, all integers unsigned big-endian:
//!
//! | Offset | Size | Field        | Meaning |
//! |--------|------|--------------|---------|
//! | 0      | 4    | `key_id`     | Which verification key signed it |
//! | 4      | 8    | `user`       | User id ([`protocol::UserId`]), any value, 0 included |
//! | 12     | 4    | `device`     | Device id ([`protocol::DeviceId`]), never 0 |
//! | 16     | 8    | `issued_at`  | Unix seconds when issued |
//! | 24     | 8    | `expires_at` | Unix seconds from which it is invalid; `> issued_at` |
//!
//! The signature is Ed25519 (RFC 8032, pure, no pre-hash, no context) over
//! the **ASCII bytes `v1.` + payload-b64**, the first 46 bytes of the token
//! exactly as sent (as in JWS): the verifier checks the bytes it received,
//! never a re-encoding, and the version prefix is signed too.
//!
//! A token is valid at time `now` (Unix seconds) when it is well formed, its
//! `key_id` is held by the verifier, the signature verifies with that key,
//! `device != 0`, `expires_at > issued_at`, and, with `leeway` seconds of
//! tolerated clock skew ([`DEFAULT_LEEWAY_SECS`]):
//! `issued_at <= now + leeway` and `now < expires_at + leeway`.
//!
//! # Errors and SPEC codes
//!
//! | [`AuthError`] | [`reason`](AuthError::reason) | [`error_code`](AuthError::error_code) |
//! |---|---|---|
//! | `Malformed` | `malformed` | AUTH_INVALID (110) |
//! | `BadSignature` | `bad_signature` | AUTH_INVALID (110) |
//! | `NotYetValid` | `not_yet_valid` | AUTH_INVALID (110) |
//! | `UnknownKey` | `unknown_key` | AUTH_UNKNOWN_KEY (112) |
//! | `Expired` | `expired` | AUTH_EXPIRED (111) |
//! | `DeviceMismatch` | `device_mismatch` | AUTH_DEVICE_MISMATCH (113) |
//!
//! # Example
//!
//! The test vector of `TOKEN.md`, signed with the RFC 8032 §7.1 TEST 1 key
//! (its private half is public: never install this key anywhere):
//!
//! ```
//! use gateway_auth::{Claims, Verifier};
//! use protocol::{DeviceId, UserId};
//!
//! let public_key = [
//!     0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
//!     0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
//! ];
//! let mut verifier = Verifier::new();
//! verifier.add_key(7, public_key);
//!
//! let token = concat!(
//!     "v1.AAAABwAAAAAAAAAqAAAAAwAAAABlU_EAAAAAAGVVQoA.",
//!     "eZhCc3NobHl7rva8BB0Q6iR2FJHNaou2KJmBlzNGtPEeJVU0RPeLWIu2g0rBdYhw_G5C-OZjDzFk8rPPIC0yBw",
//! );
//! let claims = verifier.verify(token.as_bytes(), 1_700_000_100)?;
//! assert_eq!(
//!     claims,
//!     Claims {
//!         user: UserId(42),
//!         device: DeviceId(3),
//!         key_id: 7,
//!         issued_at: 1_700_000_000,
//!         expires_at: 1_700_086_400,
//!     }
//! );
//! // A day and a minute of leeway later, it has expired.
//! let err = verifier.verify(token.as_bytes(), 1_700_086_460).unwrap_err();
//! assert_eq!(err.reason(), "expired");
//! # Ok::<(), gateway_auth::AuthError>(())
//! ```

pub mod keys;
mod recent;
mod sign;
mod token;
mod verify;

pub use recent::{Fingerprint, FingerprintKey, RecentTokens};
pub use sign::{Signer, SignerError};
pub use token::{
    Claims, PAYLOAD_B64_LEN, PAYLOAD_LEN, PREFIX, SIGNATURE_B64_LEN, SIGNATURE_LEN, SIGNED_LEN, TOKEN_LEN,
};
pub use verify::{AuthError, Verifier, DEFAULT_LEEWAY_SECS};
