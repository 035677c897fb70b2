//! Token minting and verification: round trip, validity window, tampering,
//! unknown keys, rotation, malformed input, and the TOKEN.md test vector.

// Test helpers may unwrap and index: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use gateway_auth::keys::{parse_public_key_hex, public_key_to_hex};
use gateway_auth::{AuthError, Claims, Signer, Verifier, DEFAULT_LEEWAY_SECS, SIGNED_LEN, TOKEN_LEN};
use protocol::{DeviceId, ErrorCode, UserId};

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;
const TOKEN_MD: &str = include_str!("../TOKEN.md");
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value of `label:` in TOKEN.md's test vector block.
fn vector(label: &str) -> &'static str {
    let prefix = format!("{label}:");
    TOKEN_MD
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("TOKEN.md has no `{label}:` line"))
        .trim()
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The RFC 8032 TEST 1 key of TOKEN.md, as key id 7.
fn vector_signer() -> Signer {
    Signer::from_pkcs8(7, &hex(vector("pkcs8-v1"))).unwrap()
}

fn signer(key_id: u32) -> Signer {
    Signer::generate(key_id).unwrap().0
}

fn claims(key_id: u32, user: u64, device: u32, issued_at: u64, expires_at: u64) -> Claims {
    Claims { user: UserId(user), device: DeviceId(device), key_id, issued_at, expires_at }
}

/// `token` with the byte at `at` replaced by `with`.
fn replaced(token: &str, at: usize, with: u8) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = with;
    bytes
}

/// Another base64url character than `c`, whose value differs in its top bits
/// (so it changes the decoded bytes even in the last, partial character).
fn other_b64(c: u8) -> u8 {
    let index = B64URL.iter().position(|&x| x == c).unwrap();
    B64URL[(index + 32) % 64]
}

#[test]
fn mint_then_verify_round_trips() {
    let signer = signer(1);
    let token = signer.mint(UserId(123_456_789), DeviceId(2), T0, DAY);
    assert_eq!(token.len(), TOKEN_LEN);
    assert!(token.starts_with("v1."));
    assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token}");
    let got = signer.verifier().verify(token.as_bytes(), T0 + 10).unwrap();
    assert_eq!(got, claims(1, 123_456_789, 2, T0, T0 + DAY));
}

#[test]
fn minting_is_deterministic_and_distinct_per_claim() {
    let signer = signer(1);
    let a = signer.mint(UserId(1), DeviceId(1), T0, DAY);
    assert_eq!(a, signer.mint(UserId(1), DeviceId(1), T0, DAY));
    assert_ne!(a, signer.mint(UserId(2), DeviceId(1), T0, DAY));
    assert_ne!(a, signer.mint(UserId(1), DeviceId(2), T0, DAY));
    assert_ne!(a, signer.mint(UserId(1), DeviceId(1), T0 + 1, DAY));
    assert_ne!(a, signer.mint(UserId(1), DeviceId(1), T0, DAY + 1));
}

#[test]
fn token_md_vector_is_what_the_code_produces() {
    let signer = vector_signer();
    assert_eq!(public_key_to_hex(&signer.public_key()), vector("public-key"));
    let token = signer.mint(UserId(42), DeviceId(3), 1_700_000_000, 86_400);
    assert_eq!(token, vector("token"));
    let expected = claims(7, 42, 3, 1_700_000_000, 1_700_086_400);
    assert_eq!(hex(vector("payload")), expected.to_payload());
    assert_eq!(Claims::from_payload(&expected.to_payload()), expected);
    assert_eq!(vector("claims"), "key_id=7 user=42 device=3 issued_at=1700000000 expires_at=1700086400");
}

#[test]
fn token_md_vector_verifies_with_the_public_key_alone_within_its_stated_window() {
    let mut verifier = Verifier::new();
    verifier.add_key(7, parse_public_key_hex(vector("public-key")).unwrap());
    let token = vector("token").as_bytes();
    // TOKEN.md: valid from issued_at - leeway to expires_at + leeway - 1.
    assert_eq!(verifier.verify(token, 1_699_999_940).unwrap().user, UserId(42));
    assert_eq!(verifier.verify(token, 1_700_086_459).unwrap().device, DeviceId(3));
    assert_eq!(verifier.verify(token, 1_699_999_939).unwrap_err().reason(), "not_yet_valid");
    assert_eq!(verifier.verify(token, 1_700_086_460).unwrap_err().reason(), "expired");
}

#[test]
fn expiry_boundary_is_exact_with_default_leeway() {
    let signer = signer(1);
    let verifier = signer.verifier();
    assert_eq!(verifier.leeway(), DEFAULT_LEEWAY_SECS);
    let token = signer.mint(UserId(5), DeviceId(1), T0, 3_600);
    let expires_at = T0 + 3_600;
    assert!(verifier.verify(token.as_bytes(), expires_at).is_ok());
    assert!(verifier.verify(token.as_bytes(), expires_at + DEFAULT_LEEWAY_SECS - 1).is_ok());
    let err = verifier.verify(token.as_bytes(), expires_at + DEFAULT_LEEWAY_SECS).unwrap_err();
    assert_eq!(err, AuthError::Expired { expired_at: expires_at, now: expires_at + DEFAULT_LEEWAY_SECS });
    assert_eq!(err.error_code(), ErrorCode::AUTH_EXPIRED);
    assert_eq!(err.reason(), "expired");
}

#[test]
fn expiry_boundary_is_exact_without_leeway() {
    let signer = signer(1);
    let verifier = signer.verifier().with_leeway(0);
    let token = signer.mint(UserId(5), DeviceId(1), T0, 3_600);
    assert!(verifier.verify(token.as_bytes(), T0).is_ok());
    assert!(verifier.verify(token.as_bytes(), T0 + 3_599).is_ok());
    assert_eq!(
        verifier.verify(token.as_bytes(), T0 + 3_600),
        Err(AuthError::Expired { expired_at: T0 + 3_600, now: T0 + 3_600 })
    );
    assert_eq!(
        verifier.verify(token.as_bytes(), T0 - 1),
        Err(AuthError::NotYetValid { issued_at: T0, now: T0 - 1 })
    );
}

#[test]
fn set_leeway_changes_the_window() {
    let signer = signer(1);
    let mut verifier = signer.verifier();
    let token = signer.mint(UserId(5), DeviceId(1), T0, 100);
    assert!(verifier.verify(token.as_bytes(), T0 + 150).is_ok());
    verifier.set_leeway(10);
    assert_eq!(verifier.leeway(), 10);
    assert_eq!(verifier.verify(token.as_bytes(), T0 + 150).unwrap_err().reason(), "expired");
}

#[test]
fn token_from_the_future_is_not_yet_valid_beyond_leeway() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let token = signer.mint(UserId(5), DeviceId(1), T0, DAY);
    assert!(verifier.verify(token.as_bytes(), T0 - DEFAULT_LEEWAY_SECS).is_ok());
    let err = verifier.verify(token.as_bytes(), T0 - DEFAULT_LEEWAY_SECS - 1).unwrap_err();
    assert_eq!(err, AuthError::NotYetValid { issued_at: T0, now: T0 - DEFAULT_LEEWAY_SECS - 1 });
    assert_eq!(err.error_code(), ErrorCode::AUTH_INVALID);
    assert_eq!(err.reason(), "not_yet_valid");
}

#[test]
fn extreme_times_do_not_overflow() {
    let signer = signer(1);
    let verifier = signer.verifier().with_leeway(u64::MAX);
    // ttl saturates at u64::MAX instead of wrapping to the past.
    let token = signer.mint(UserId(1), DeviceId(1), u64::MAX - 10, 1_000);
    assert_eq!(verifier.verify(token.as_bytes(), 0).unwrap().expires_at, u64::MAX);
    assert!(verifier.verify(token.as_bytes(), u64::MAX - 1).is_ok());
    let strict = signer.verifier().with_leeway(0);
    assert_eq!(strict.verify(token.as_bytes(), u64::MAX).unwrap_err().reason(), "expired");
}

#[test]
fn tampered_payload_never_verifies() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let token = signer.mint(UserId(77), DeviceId(4), T0, DAY);
    // Each payload character changed, one at a time.
    for at in 3..SIGNED_LEN {
        let bad = replaced(&token, at, other_b64(token.as_bytes()[at]));
        let err = verifier.verify(&bad, T0).unwrap_err();
        // Characters 3..9 carry key_id: changing them names a key not held.
        let expected = if at < 9 { "unknown_key" } else { "bad_signature" };
        assert_eq!(err.reason(), expected, "payload char {at}: {err}");
    }
}

#[test]
fn tampered_payload_claim_with_known_key_is_bad_signature() {
    // A valid token for user 77, with its user field rewritten to 78 and the
    // payload re-encoded: the key id is intact, so only the signature catches it.
    let signer = signer(1);
    let token = signer.mint(UserId(77), DeviceId(4), T0, DAY);
    let (head, signature) = token.split_at(SIGNED_LEN);
    let mut forged_claims = claims(1, 78, 4, T0, T0 + DAY);
    let forged = {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims.to_payload());
        format!("v1.{payload}{signature}")
    };
    assert_ne!(&forged[..SIGNED_LEN], head);
    assert_eq!(signer.verifier().verify(forged.as_bytes(), T0), Err(AuthError::BadSignature));
    forged_claims.user = UserId(77);
    assert_eq!(signer.verifier().verify(token.as_bytes(), T0), Ok(forged_claims));
}

#[test]
fn tampered_signature_never_verifies() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let token = signer.mint(UserId(77), DeviceId(4), T0, DAY);
    for at in SIGNED_LEN + 1..TOKEN_LEN {
        let bad = replaced(&token, at, other_b64(token.as_bytes()[at]));
        let err = verifier.verify(&bad, T0).unwrap_err();
        assert_eq!(err, AuthError::BadSignature, "signature char {at}");
        assert_eq!(err.error_code(), ErrorCode::AUTH_INVALID);
    }
}

#[test]
fn signature_trailing_bits_must_be_zero() {
    // 86 characters carry 516 bits for 512: the last character's low 4 bits
    // are unused. Setting one decodes to the same signature; it must still be
    // refused, or one token would have 16 spellings.
    let signer = signer(1);
    let token = signer.mint(UserId(77), DeviceId(4), T0, DAY);
    let last = TOKEN_LEN - 1;
    let index = B64URL.iter().position(|&c| c == token.as_bytes()[last]).unwrap();
    assert_eq!(index & 0x0f, 0, "canonical encoding has zero trailing bits");
    let bad = replaced(&token, last, B64URL[index | 1]);
    assert_eq!(signer.verifier().verify(&bad, T0).unwrap_err().reason(), "malformed");
}

#[test]
fn payload_trailing_bits_must_be_zero() {
    let signer = signer(1);
    let token = signer.mint(UserId(77), DeviceId(4), T0, DAY);
    let last = SIGNED_LEN - 1;
    let index = B64URL.iter().position(|&c| c == token.as_bytes()[last]).unwrap();
    assert_eq!(index & 0x03, 0);
    let bad = replaced(&token, last, B64URL[index | 1]);
    assert_eq!(signer.verifier().verify(&bad, T0).unwrap_err().reason(), "malformed");
}

#[test]
fn same_key_id_other_key_is_bad_signature() {
    let real = signer(1);
    let impostor = signer(1);
    let token = impostor.mint(UserId(1), DeviceId(1), T0, DAY);
    assert_eq!(real.verifier().verify(token.as_bytes(), T0), Err(AuthError::BadSignature));
}

#[test]
fn unknown_key_id_is_reported_with_its_id() {
    let known = signer(1);
    let other = signer(2);
    let token = other.mint(UserId(1), DeviceId(1), T0, DAY);
    let err = known.verifier().verify(token.as_bytes(), T0).unwrap_err();
    assert_eq!(err, AuthError::UnknownKey(2));
    assert_eq!(err.error_code(), ErrorCode::AUTH_UNKNOWN_KEY);
    assert_eq!(err.reason(), "unknown_key");
    assert_eq!(Verifier::new().verify(token.as_bytes(), T0), Err(AuthError::UnknownKey(2)));
}

#[test]
fn rotation_accepts_two_keys_then_retires_one() {
    let old = signer(1);
    let new = signer(2);
    let mut verifier = Verifier::new();
    verifier.add_key(1, old.public_key());
    verifier.add_key(2, new.public_key());
    assert_eq!(verifier.len(), 2);
    assert_eq!(verifier.key_ids().collect::<Vec<_>>(), [1, 2]);
    let old_token = old.mint(UserId(10), DeviceId(1), T0, DAY);
    let new_token = new.mint(UserId(20), DeviceId(2), T0, DAY);
    assert_eq!(verifier.verify(old_token.as_bytes(), T0).unwrap().user, UserId(10));
    assert_eq!(verifier.verify(new_token.as_bytes(), T0).unwrap().user, UserId(20));

    assert!(verifier.remove_key(1));
    assert!(!verifier.remove_key(1));
    assert_eq!(verifier.len(), 1);
    assert!(!verifier.contains_key(1) && verifier.contains_key(2));
    assert_eq!(verifier.verify(old_token.as_bytes(), T0), Err(AuthError::UnknownKey(1)));
    assert_eq!(verifier.verify(new_token.as_bytes(), T0).unwrap().key_id, 2);
}

#[test]
fn add_key_replaces_the_key_under_the_same_id() {
    let first = signer(1);
    let second = signer(1);
    let mut verifier = first.verifier();
    verifier.add_key(1, second.public_key());
    assert_eq!(verifier.len(), 1);
    assert_eq!(verifier.public_key(1), Some(second.public_key()));
    assert!(verifier.verify(second.mint(UserId(1), DeviceId(1), T0, DAY).as_bytes(), T0).is_ok());
    let stale = first.mint(UserId(1), DeviceId(1), T0, DAY);
    assert_eq!(verifier.verify(stale.as_bytes(), T0), Err(AuthError::BadSignature));
}

#[test]
fn empty_verifier_reports_itself_empty() {
    let verifier = Verifier::default();
    assert!(verifier.is_empty());
    assert_eq!(verifier.len(), 0);
    assert_eq!(verifier.public_key(1), None);
}

#[test]
fn malformed_inputs_are_refused_as_auth_invalid() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let token = signer.mint(UserId(1), DeviceId(1), T0, DAY);
    let (head, sig) = token.split_at(SIGNED_LEN);
    let junk_1k: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("prefix only", b"v1.".to_vec()),
        ("1 KiB of junk", junk_1k),
        ("1 KiB of a valid-looking character", vec![b'A'; 1024]),
        ("one byte short", token.as_bytes()[..TOKEN_LEN - 1].to_vec()),
        ("one byte long", format!("{token}A").into_bytes()),
        ("trailing newline", format!("{token}\n").into_bytes()),
        ("leading space", format!(" {}", &token[..TOKEN_LEN - 1]).into_bytes()),
        ("version 2", replaced(&token, 1, b'2')),
        ("upper-case V", replaced(&token, 0, b'V')),
        ("no dot after version", replaced(&token, 2, b'A')),
        ("no dot before signature", replaced(&token, SIGNED_LEN, b'A')),
        ("standard base64 '+'", replaced(&token, 10, b'+')),
        ("standard base64 '/'", replaced(&token, SIGNED_LEN + 5, b'/')),
        ("padding in payload", replaced(&token, SIGNED_LEN - 1, b'=')),
        ("NUL byte", replaced(&token, 20, 0)),
        ("non-ASCII byte", replaced(&token, 20, 0xc3)),
        (
            "dot moved",
            format!("{}.{}{}", &head[..SIGNED_LEN - 1], &head[SIGNED_LEN - 1..], &sig[1..]).into_bytes(),
        ),
        ("two tokens", format!("{token}{token}").into_bytes()),
    ];
    for (name, input) in cases {
        let err = verifier.verify(&input, T0).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{name}: {err:?}");
        assert_eq!(err.error_code(), ErrorCode::AUTH_INVALID, "{name}");
        assert_eq!(err.reason(), "malformed", "{name}");
    }
}

#[test]
fn signed_but_impossible_claims_are_malformed() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let device_zero = signer.mint(UserId(1), DeviceId(0), T0, DAY);
    assert_eq!(
        verifier.verify(device_zero.as_bytes(), T0),
        Err(AuthError::Malformed("device 0 is not a device"))
    );
    let no_lifetime = signer.mint(UserId(1), DeviceId(1), T0, 0);
    let err = verifier.verify(no_lifetime.as_bytes(), T0).unwrap_err();
    assert_eq!(err, AuthError::Malformed("expires_at is not after issued_at"));
    assert_eq!(err.error_code(), ErrorCode::AUTH_INVALID);
}

#[test]
fn device_must_match_hello() {
    let signer = signer(1);
    let verifier = signer.verifier();
    let token = signer.mint(UserId(9), DeviceId(3), T0, DAY);
    assert_eq!(verifier.verify_for_device(token.as_bytes(), DeviceId(3), T0).unwrap().user, UserId(9));
    let err = verifier.verify_for_device(token.as_bytes(), DeviceId(4), T0).unwrap_err();
    assert_eq!(err, AuthError::DeviceMismatch { token: DeviceId(3), hello: DeviceId(4) });
    assert_eq!(err.error_code(), ErrorCode::AUTH_DEVICE_MISMATCH);
    assert_eq!(err.reason(), "device_mismatch");
    // Verification errors win over the device check.
    assert_eq!(verifier.verify_for_device(b"", DeviceId(4), T0).unwrap_err().reason(), "malformed");
}

#[test]
fn error_codes_and_reasons_match_the_spec_table() {
    let cases = [
        (AuthError::Malformed("x"), 110, "AUTH_INVALID", "malformed"),
        (AuthError::BadSignature, 110, "AUTH_INVALID", "bad_signature"),
        (AuthError::NotYetValid { issued_at: 2, now: 1 }, 110, "AUTH_INVALID", "not_yet_valid"),
        (AuthError::UnknownKey(9), 112, "AUTH_UNKNOWN_KEY", "unknown_key"),
        (AuthError::Expired { expired_at: 1, now: 2 }, 111, "AUTH_EXPIRED", "expired"),
        (
            AuthError::DeviceMismatch { token: DeviceId(1), hello: DeviceId(2) },
            113,
            "AUTH_DEVICE_MISMATCH",
            "device_mismatch",
        ),
    ];
    for (err, code, name, reason) in cases {
        assert_eq!(err.error_code(), ErrorCode(code), "{err:?}");
        assert_eq!(err.error_code().name(), Some(name), "{err:?}");
        assert_eq!(err.reason(), reason);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn error_display_is_informative() {
    assert_eq!(AuthError::UnknownKey(9).to_string(), "token signed with unknown key id 9");
    assert_eq!(
        AuthError::Expired { expired_at: 100, now: 160 }.to_string(),
        "token expired at 100 (now 160)"
    );
    assert_eq!(AuthError::Malformed("wrong token length").to_string(), "malformed token: wrong token length");
}

#[test]
fn signer_loads_its_own_pkcs8_and_rejects_garbage() {
    let (signer, pkcs8) = Signer::generate(5).unwrap();
    let again = Signer::from_pkcs8(5, &pkcs8).unwrap();
    assert_eq!(again.public_key(), signer.public_key());
    assert_eq!(again.key_id(), 5);
    let token = again.mint(UserId(1), DeviceId(1), T0, DAY);
    assert_eq!(token, signer.mint(UserId(1), DeviceId(1), T0, DAY));

    assert!(Signer::from_pkcs8(5, b"").is_err());
    assert!(Signer::from_pkcs8(5, &pkcs8[..pkcs8.len() - 1]).is_err());
    // A v2 document whose embedded public key does not match the private key.
    let mut inconsistent = pkcs8.clone();
    let last = inconsistent.len() - 1;
    inconsistent[last] ^= 1;
    let err = Signer::from_pkcs8(5, &inconsistent).unwrap_err();
    assert!(err.to_string().starts_with("not an Ed25519 PKCS#8 private key"), "{err}");
}

#[test]
fn signer_debug_shows_no_private_key() {
    let signer = vector_signer();
    let debug = format!("{signer:?}");
    assert!(debug.contains(vector("public-key")), "{debug}");
    assert!(debug.contains("key_id: 7"), "{debug}");
    assert!(!debug.contains(vector("seed")), "{debug}");
    assert!(!debug.contains(&vector("seed")[..16]), "{debug}");
}

#[test]
fn claims_payload_layout_is_big_endian_in_field_order() {
    let c = claims(0x0102_0304, 0x1112_1314_1516_1718, 0x2122_2324, 0x3132_3334_3536_3738, u64::MAX);
    let expected: Vec<u8> = [
        &[1, 2, 3, 4][..],
        &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18],
        &[0x21, 0x22, 0x23, 0x24],
        &[0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38],
        &[0xff; 8],
    ]
    .concat();
    assert_eq!(c.to_payload().to_vec(), expected);
    assert_eq!(Claims::from_payload(&c.to_payload()), c);
}

#[test]
fn every_user_id_is_valid_including_0_and_the_largest() {
    // TOKEN.md: `user` is any u64 (SPEC's user ids reserve no value); only
    // device 0 is refused.
    let signer = signer(3);
    for user in [0, 1, u64::MAX] {
        let token = signer.mint(UserId(user), DeviceId(1), T0, DAY);
        assert_eq!(signer.verifier().verify(token.as_bytes(), T0).unwrap().user, UserId(user));
    }
}

#[test]
fn token_md_dev_key_id_is_what_the_code_derives() {
    let public_key: [u8; 32] = hex(vector("public-key")).try_into().unwrap();
    let stated: u32 = TOKEN_MD
        .split("`dev-key-id: ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("TOKEN.md states the test key's dev key id")
        .parse()
        .unwrap();
    assert_eq!(gateway_auth::keys::dev_key_id(&public_key), stated);
}
