//! Token fuzz target: the parse and verify path of `Verifier`, with a fixed
//! verifier holding key 7 (the RFC 8032 §7.1 TEST 1 key, whose private half
//! is public, as in TOKEN.md) and key 8 (another key). The first input byte
//! picks the mode:
//!
//! 0. **bytes**: `now` (8 bytes, big-endian), then the token. Whatever it
//!    holds, `verify` does not panic, and a token it accepts is exactly the
//!    token the key mints for the claims it returned (claims round-trip).
//! 1. **claims**: a 32-byte payload, `now`, a leeway byte and a HELLO device,
//!    signed here with key 7 whatever key id it names: the verdict must be
//!    the one TOKEN.md describes, checks in the documented order (key id,
//!    signature, claims, time, device).
//! 2. **edits**: the same signed token, then (position, byte) edits: if the
//!    edited token still verifies it is byte for byte the original (every
//!    token has exactly one spelling; no malleable signature or base64).
//! 3. **key file**: `parse_public_key_hex` on the rest; what it accepts
//!    prints back as the same hex, lowercased.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gateway_auth::keys::{parse_public_key_hex, public_key_to_hex};
use gateway_auth::{AuthError, Claims, Signer, Verifier, PAYLOAD_LEN, TOKEN_LEN};
use libfuzzer_sys::fuzz_target;
use protocol::DeviceId;
use ring::signature::Ed25519KeyPair;

/// Key id of the signing key.
const KEY: u32 = 7;
/// A key id the verifier holds with another public key.
const OTHER_KEY: u32 = 8;

/// RFC 8032 §7.1 TEST 1 private key as PKCS#8 v1: the fixed DER prefix for
/// Ed25519, then the 32-byte seed.
const PKCS8: [u8; 48] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, 0x9d,
    0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49,
    0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
/// RFC 8032 §7.1 TEST 2 public key.
const OTHER_PUBLIC: [u8; 32] = [
    0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0xe6, 0x1a, 0x92, 0xea, 0x9a, 0x5d, 0x2f, 0x30, 0x2b, 0x50, 0x2e,
    0xd5, 0x2c, 0x7b, 0x1a, 0x92, 0x32, 0xa0, 0x0b, 0x7e, 0x4f, 0x56, 0x24, 0x63, 0xd0, 0x8f,
];

struct Keys {
    signer: Signer,
    key_pair: Ed25519KeyPair,
    verifier: Verifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = Signer::from_pkcs8(KEY, &PKCS8).expect("the RFC 8032 key loads");
        let mut verifier = signer.verifier();
        verifier.add_key(OTHER_KEY, OTHER_PUBLIC);
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&PKCS8).expect("the RFC 8032 key loads");
        Keys { signer, key_pair, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut input = Input(rest);
    match mode % 4 {
        0 => {
            let now = input.u64();
            check_bytes(&keys().verifier, input.0, now);
        }
        1 => {
            let (claims, now, leeway, hello) = (input.claims(), input.u64(), input.u8(), input.u32());
            let token = sign(&claims);
            let verifier = keys().verifier.clone().with_leeway(u64::from(leeway));
            let verdict = verifier.verify_for_device(token.as_bytes(), DeviceId(hello), now);
            assert_eq!(verdict, expected(&claims, now, u64::from(leeway), DeviceId(hello)), "{claims:?}");
        }
        2 => {
            let (claims, now) = (input.claims(), input.u64());
            let original = sign(&claims);
            let mut edited = original.clone().into_bytes();
            while let (Some(&at), Some(&byte)) = (input.0.first(), input.0.get(1)) {
                if let Some(slot) = edited.get_mut(usize::from(at) % TOKEN_LEN) {
                    *slot = byte;
                }
                input.0 = input.0.get(2..).unwrap_or_default();
            }
            if keys().verifier.verify(&edited, now).is_ok() {
                assert_eq!(edited, original.as_bytes(), "a second spelling of a token verifies");
            }
            check_bytes(&keys().verifier, &edited, now);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(input.0) {
                if let Some(key) = parse_public_key_hex(text) {
                    assert_eq!(public_key_to_hex(&key), text.to_ascii_lowercase());
                }
            }
        }
    }
});

/// `verify` on any bytes: no panic, and acceptance round-trips.
fn check_bytes(verifier: &Verifier, token: &[u8], now: u64) {
    let Ok(claims) = verifier.verify(token, now) else { return };
    assert_eq!(token.len(), TOKEN_LEN);
    assert_eq!(claims.key_id, KEY, "only key 7's private half is known");
    assert_eq!(Claims::from_payload(&claims.to_payload()), claims);
    let ttl = claims.expires_at - claims.issued_at;
    let minted = keys().signer.mint(claims.user, claims.device, claims.issued_at, ttl);
    assert_eq!(minted.as_bytes(), token, "an accepted token is not what its claims mint");
}

/// A token for `claims` signed with key 7, whatever key id the claims name.
fn sign(claims: &Claims) -> String {
    let mut token = String::from("v1.");
    URL_SAFE_NO_PAD.encode_string(claims.to_payload(), &mut token);
    let signature = keys().key_pair.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    token
}

/// TOKEN.md's verdict, written from its text.
fn expected(claims: &Claims, now: u64, leeway: u64, hello: DeviceId) -> Result<Claims, AuthError> {
    match claims.key_id {
        KEY => {}
        OTHER_KEY => return Err(AuthError::BadSignature),
        other => return Err(AuthError::UnknownKey(other)),
    }
    if claims.device.0 == 0 {
        return Err(AuthError::Malformed("device 0 is not a device"));
    }
    if claims.expires_at <= claims.issued_at {
        return Err(AuthError::Malformed("expires_at is not after issued_at"));
    }
    // Sums saturate: at `now = u64::MAX` every token has expired.
    if claims.issued_at > now.saturating_add(leeway) {
        return Err(AuthError::NotYetValid { issued_at: claims.issued_at, now });
    }
    if now >= claims.expires_at.saturating_add(leeway) {
        return Err(AuthError::Expired { expired_at: claims.expires_at, now });
    }
    if claims.device != hello {
        return Err(AuthError::DeviceMismatch { token: claims.device, hello });
    }
    Ok(*claims)
}

/// Reads fields off the front of the input, zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn claims(&mut self) -> Claims {
        Claims::from_payload(&self.take::<PAYLOAD_LEN>())
    }
}
