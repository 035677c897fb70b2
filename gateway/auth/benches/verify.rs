//! Cost of token verification on the HELLO path, and of the parts around it.
//!
//! - `verify/valid`: a good token, the full check (layout, base64url into stack
//!   arrays, key lookup among 3 keys, Ed25519 verify, claims, time);
//! - `verify/bad_signature`: the same work, failing at the signature (what a
//!   forger costs us);
//! - `verify/malformed_length` and `verify/unknown_key`: the cheap refusals,
//!   before any curve arithmetic (what junk costs us);
//! - `verify/recent`: a good token a closed session left in
//!   [`RecentTokens`] (a reconnect): its fingerprint instead of the
//!   signature check, then the same claims checks;
//! - `mint`: Ed25519 signing plus encoding (the dev CLI and auth service side).
//!
//! Run: `cargo bench -p gateway-auth --bench verify`.

// Bench setup on fixed, valid inputs: a failure here is a bug in the bench.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

use gateway_auth::{FingerprintKey, RecentTokens, Signer, Verifier, SIGNED_LEN};
use protocol::{DeviceId, UserId};

const NOW: u64 = 1_767_225_600;

fn bench_verify(c: &mut Criterion) {
    let signer = Signer::generate(2).unwrap().0;
    let mut verifier = Verifier::new();
    verifier.add_key(1, Signer::generate(1).unwrap().0.public_key());
    verifier.add_key(2, signer.public_key());
    verifier.add_key(3, Signer::generate(3).unwrap().0.public_key());

    let token = signer.mint(UserId(123_456_789), DeviceId(2), NOW - 60, 86_400).into_bytes();
    assert!(verifier.verify(&token, NOW).is_ok());
    let mut bad_signature = token.clone();
    // A character of R (the first half of the signature): the verifier does
    // all the curve work before the comparison fails. (Changing S instead may
    // be refused early as a non-canonical scalar.)
    let at = SIGNED_LEN + 11;
    bad_signature[at] = if bad_signature[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(verifier.verify(&bad_signature, NOW).unwrap_err().reason(), "bad_signature");
    let unknown_key = Signer::generate(9).unwrap().0.mint(UserId(1), DeviceId(1), NOW, 60).into_bytes();
    assert_eq!(verifier.verify(&unknown_key, NOW).unwrap_err().reason(), "unknown_key");
    let junk = vec![0x5a_u8; 1024];

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("valid", |b| b.iter(|| verifier.verify(black_box(&token), black_box(NOW))));
    let shared = Arc::new(verifier.clone());
    let recent = RecentTokens::new(FingerprintKey::from_bytes(&[7; 32]), 1024, 600);
    let (_, fingerprint, _) = recent.verify(&shared, &token, DeviceId(2), NOW).unwrap();
    group.bench_function("recent", |b| {
        b.iter(|| {
            // Each use takes the entry: put it back, as the session's close does.
            recent.remember(fingerprint, NOW);
            let (claims, _, skipped) = recent.verify(&shared, black_box(&token), DeviceId(2), NOW).unwrap();
            assert!(skipped);
            claims
        })
    });
    group.bench_function("bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&bad_signature), black_box(NOW)))
    });
    group.bench_function("unknown_key", |b| {
        b.iter(|| verifier.verify(black_box(&unknown_key), black_box(NOW)))
    });
    group
        .bench_function("malformed_length", |b| b.iter(|| verifier.verify(black_box(&junk), black_box(NOW))));
    group.finish();

    let mut group = c.benchmark_group("mint");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mint", |b| {
        b.iter(|| signer.mint(black_box(UserId(123_456_789)), DeviceId(2), black_box(NOW), 86_400))
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
