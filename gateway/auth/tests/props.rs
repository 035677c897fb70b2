//! Property tests: whatever bytes arrive, verification returns an error (and
//! never panics); every single-byte change of a valid token is refused; every
//! valid claim set round-trips.

// Test helpers may unwrap and index: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;

use gateway_auth::{AuthError, Claims, Signer, Verifier, SIGNED_LEN, TOKEN_LEN};
use proptest::prelude::*;
use protocol::{DeviceId, UserId};

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One key pair for the whole run (key id 1), with a verifier holding it and
/// key id 2 (a random key), so that well-formed junk can reach every check.
fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = Signer::generate(1).unwrap().0;
        let mut verifier = signer.verifier();
        verifier.add_key(2, Signer::generate(2).unwrap().0.public_key());
        (signer, verifier)
    })
}

/// 133 bytes shaped like a token: `v1.`, 43 base64url characters, `.`, 86
/// base64url characters (trailing bits not necessarily zero).
fn token_shaped() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(B64URL), TOKEN_LEN - 4).prop_map(|chars| {
        let mut token = b"v1.".to_vec();
        token.extend_from_slice(&chars[..SIGNED_LEN - 3]);
        token.push(b'.');
        token.extend_from_slice(&chars[SIGNED_LEN - 3..]);
        token
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(
        input in proptest::collection::vec(any::<u8>(), 0..2048),
        now in any::<u64>(),
    ) {
        let err = keys().1.verify(&input, now).unwrap_err();
        prop_assert_eq!(err.reason(), "malformed");
    }

    #[test]
    fn arbitrary_token_shaped_input_is_refused_without_panic(input in token_shaped(), now in any::<u64>()) {
        prop_assert_eq!(input.len(), TOKEN_LEN);
        let err = keys().1.verify(&input, now).unwrap_err();
        prop_assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::UnknownKey(_) | AuthError::BadSignature),
            "{:?}", err
        );
    }

    #[test]
    fn forged_payload_for_a_held_key_is_bad_signature(input in token_shaped(), key_id in 1u32..=2) {
        // Force the key id to one the verifier holds: the signature is all
        // that stands between junk and a session.
        let mut input = input;
        let mut payload = [0u8; 32];
        payload[..4].copy_from_slice(&key_id.to_be_bytes());
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
        };
        input[3..9].copy_from_slice(&encoded.as_bytes()[..6]);
        let result = keys().1.verify(&input, 0);
        prop_assert!(
            matches!(result, Err(AuthError::BadSignature | AuthError::Malformed(_))),
            "{:?}", result
        );
    }

    #[test]
    fn every_single_byte_change_is_refused(at in 0..TOKEN_LEN, with in any::<u8>()) {
        let (signer, verifier) = keys();
        let token = signer.mint(UserId(42), DeviceId(7), 1_700_000_000, 3_600);
        let mut bad = token.clone().into_bytes();
        prop_assume!(bad[at] != with);
        bad[at] = with;
        prop_assert!(verifier.verify(&bad, 1_700_000_000).is_err());
    }

    #[test]
    fn valid_claims_round_trip(
        user in any::<u64>(),
        device in 1u32..,
        issued_at in any::<u64>(),
        ttl in 1u64..=u64::MAX,
    ) {
        let (signer, verifier) = keys();
        prop_assume!(issued_at.checked_add(ttl).is_some());
        let token = signer.mint(UserId(user), DeviceId(device), issued_at, ttl);
        prop_assert_eq!(token.len(), TOKEN_LEN);
        let claims = verifier.verify(token.as_bytes(), issued_at).unwrap();
        prop_assert_eq!(
            claims,
            Claims { user: UserId(user), device: DeviceId(device), key_id: 1, issued_at, expires_at: issued_at + ttl }
        );
    }

    #[test]
    fn payload_encoding_round_trips(payload in any::<[u8; 32]>()) {
        prop_assert_eq!(Claims::from_payload(&payload).to_payload(), payload);
    }
}
