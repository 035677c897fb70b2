//! Tokens whose signatures verified for sessions that have closed since,
//! so that a client coming back with the same token skips the Ed25519
//! check: in a reconnect storm every session of a node comes back at once,
//! and the check was about 35 % of the node's workers (benches/RESULTS.md).
//!
//! Why it is safe:
//! - An entry is the fingerprint of a whole token whose signature verified
//!   and of the public key it verified with: HMAC-SHA256, under a key drawn
//!   at start and never sent, of that public key and the token, truncated
//!   to 128 bits. Another token matches only if the same keyed hash comes
//!   out; without the key, each try succeeds with probability 2^-128 times
//!   the entries held.
//! - The public key is in the hash, so a key removed from the verifier
//!   (UnknownKey is checked first) or replaced under the same id (a new
//!   key, another fingerprint) vouches for nothing, whenever the session
//!   closed relative to the reload.
//! - Only the signature check is skipped. The layout, that the key id is
//!   still held, the device and the times are checked again on every use.
//! - An entry is used once (the session it lets in leaves a new one when it
//!   closes) and lives at most `ttl`.
//!
//! Sans IO: the caller passes the time, and draws the key
//! ([`FingerprintKey::generate`]) at its edge.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use protocol::DeviceId;
use ring::hmac;

use crate::verify::bound_to;
use crate::{AuthError, Claims, Verifier};

/// The secret key fingerprints are made with. `Debug` shows no key bytes.
#[derive(Clone, Debug)]
pub struct FingerprintKey(hmac::Key);

impl FingerprintKey {
    /// A key from the system's random source; `None` if it failed.
    pub fn generate() -> Option<Self> {
        let rng = ring::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok().map(Self)
    }

    /// A key from fixed bytes (tests).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }
}

/// What a verified token is remembered by (see the module doc). The
/// default (all zero) stands for no token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Fingerprint([u8; 16]);

/// Shards of the set: a reconnect lands on any worker of the node (the
/// listeners are `SO_REUSEPORT`), so the set is the node's, and HELLOs on
/// different workers rarely meet on one lock.
const SHARDS: usize = 16;

/// The fingerprints of recently closed sessions' tokens, node-wide; see the
/// module doc. Every method takes `&self`: share it in an `Arc`.
#[derive(Debug)]
pub struct RecentTokens {
    key: FingerprintKey,
    ttl_secs: u64,
    /// Capacity 0: nothing is remembered, nor looked up.
    off: bool,
    shards: Box<[Mutex<Shard>]>,
}

/// One shard: the fingerprints whose first byte picks it.
#[derive(Debug, Default)]
struct Shard {
    /// Fingerprint → when it was remembered (Unix seconds).
    entries: HashMap<Fingerprint, u64>,
    /// (remembered at, fingerprint), oldest first; at most `capacity`. An
    /// item whose entry was used, or remembered again later, is skipped
    /// when it leaves.
    order: VecDeque<(u64, Fingerprint)>,
    capacity: usize,
}

impl RecentTokens {
    /// An empty set holding at most about `capacity` fingerprints (0: none,
    /// every token is checked in full), each for at most `ttl_secs`.
    pub fn new(key: FingerprintKey, capacity: usize, ttl_secs: u64) -> Self {
        Self::with_shards(key, capacity, ttl_secs, SHARDS)
    }

    fn with_shards(key: FingerprintKey, capacity: usize, ttl_secs: u64, shards: usize) -> Self {
        let per_shard = capacity.div_ceil(shards);
        let shards =
            (0..shards).map(|_| Mutex::new(Shard { capacity: per_shard, ..Shard::default() })).collect();
        Self { key, ttl_secs, off: capacity == 0, shards }
    }

    /// Fingerprints held.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.shard_at(i).entries.len()).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Verifier::verify_for_device`] at `now` (Unix seconds), without the
    /// signature check if this token is remembered with the public key its
    /// key id names now (the entry is used up). Also returns the token's
    /// fingerprint, for [`remember`](Self::remember) when its session
    /// closes, and whether the signature check was skipped.
    pub fn verify(
        &self,
        verifier: &Verifier,
        token: &[u8],
        device: DeviceId,
        now: u64,
    ) -> Result<(Claims, Fingerprint, bool), AuthError> {
        if self.off {
            return Ok((verifier.verify_for_device(token, device, now)?, Fingerprint::default(), false));
        }
        let mut fingerprint = Fingerprint::default();
        let mut known = false;
        let claims = verifier.verify_unless_known(token, now, |public_key| {
            fingerprint = self.fingerprint(public_key, token);
            let mut shard = self.shard(fingerprint);
            shard.expire(now, self.ttl_secs);
            known = shard.entries.remove(&fingerprint).is_some();
            known
        })?;
        Ok((bound_to(claims, device)?, fingerprint, known))
    }

    /// Remembers a token whose session closed at `now` (its fingerprint from
    /// [`verify`](Self::verify)); the oldest of its shard goes if that is
    /// full.
    pub fn remember(&self, fingerprint: Fingerprint, now: u64) {
        if self.off {
            return;
        }
        let mut shard = self.shard(fingerprint);
        shard.expire(now, self.ttl_secs);
        while shard.order.len() >= shard.capacity {
            shard.drop_oldest();
        }
        shard.entries.insert(fingerprint, now);
        shard.order.push_back((now, fingerprint));
    }

    fn fingerprint(&self, public_key: &[u8], token: &[u8]) -> Fingerprint {
        let mut context = hmac::Context::with_key(&self.key.0);
        context.update(public_key);
        context.update(token);
        let tag = context.sign();
        let mut out = [0u8; 16];
        out.iter_mut().zip(tag.as_ref()).for_each(|(o, t)| *o = *t);
        Fingerprint(out)
    }

    fn shard(&self, fingerprint: Fingerprint) -> MutexGuard<'_, Shard> {
        self.shard_at(usize::from(fingerprint.0[0]) % self.shards.len())
    }

    fn shard_at(&self, index: usize) -> MutexGuard<'_, Shard> {
        // `index < shards.len()` (at least one: `with_shards` is given
        // SHARDS or 1). A panic while a shard was held leaves it consistent
        // enough: at worst an entry too many or too few.
        #[allow(clippy::indexing_slicing)]
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shard {
    /// Drops what was remembered `ttl_secs` ago or more, and gives back the
    /// memory of a shard that emptied after a storm.
    fn expire(&mut self, now: u64, ttl_secs: u64) {
        while self.order.front().is_some_and(|(at, _)| now.saturating_sub(*at) >= ttl_secs) {
            self.drop_oldest();
        }
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            self.entries.shrink_to(2 * self.entries.len());
            self.order.shrink_to(2 * self.order.len());
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((at, fingerprint)) = self.order.pop_front() {
            if self.entries.get(&fingerprint) == Some(&at) {
                self.entries.remove(&fingerprint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests unwrap: a panic there is a failed assertion.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use protocol::UserId;

    use super::*;
    use crate::{Signer, SIGNED_LEN};

    const NOW: u64 = 1_767_225_600;

    fn setup() -> (Signer, Verifier, RecentTokens) {
        let signer = Signer::generate(1).unwrap().0;
        let mut verifier = Verifier::new();
        verifier.add_key(1, signer.public_key());
        // One shard, so that capacity and age order are exact.
        let recent = RecentTokens::with_shards(FingerprintKey::from_bytes(&[7; 32]), 4, 600, 1);
        (signer, verifier, recent)
    }

    fn token(signer: &Signer, user: u64, ttl: u64) -> Vec<u8> {
        signer.mint(UserId(user), DeviceId(1), NOW - 10, ttl).into_bytes()
    }

    /// The same token with a byte of its signature's R changed: it can
    /// only pass if its signature is not checked.
    fn forged(token: &[u8]) -> Vec<u8> {
        let mut forged = token.to_vec();
        let at = SIGNED_LEN + 11;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        forged
    }

    /// A session logs in with `token` (checked in full) and closes at `at`:
    /// its fingerprint is remembered, and returned.
    fn closed_session(recent: &RecentTokens, verifier: &Verifier, token: &[u8], at: u64) -> Fingerprint {
        let (_, fingerprint, skipped) = recent.verify(verifier, token, DeviceId(1), NOW).unwrap();
        assert!(!skipped);
        recent.remember(fingerprint, at);
        fingerprint
    }

    /// The fingerprint `recent` gives `token` with `signer`'s public key.
    fn print_of(recent: &RecentTokens, signer: &Signer, token: &[u8]) -> Fingerprint {
        recent.fingerprint(&signer.public_key(), token)
    }

    #[test]
    fn a_remembered_token_skips_the_signature_check_once() {
        let (signer, verifier, recent) = setup();
        let bad = forged(&token(&signer, 5, 3600));
        assert_eq!(recent.verify(&verifier, &bad, DeviceId(1), NOW).unwrap_err(), AuthError::BadSignature);
        // Only a fingerprint can be remembered, never a verdict: to show the
        // skip, remember the forged token's own fingerprint.
        let fingerprint = print_of(&recent, &signer, &bad);
        recent.remember(fingerprint, NOW);
        let (claims, again, skipped) = recent.verify(&verifier, &bad, DeviceId(1), NOW).unwrap();
        assert_eq!((claims.user, again, skipped), (UserId(5), fingerprint, true));
        assert!(recent.is_empty(), "used up");
        assert_eq!(recent.verify(&verifier, &bad, DeviceId(1), NOW).unwrap_err(), AuthError::BadSignature);
    }

    #[test]
    fn a_genuine_token_comes_back_without_its_check_and_is_told_apart() {
        let (signer, verifier, recent) = setup();
        let good = token(&signer, 5, 3600);
        let (_, fingerprint, skipped) = recent.verify(&verifier, &good, DeviceId(1), NOW).unwrap();
        assert!(!skipped);
        assert_eq!(fingerprint, print_of(&recent, &signer, &good));
        recent.remember(fingerprint, NOW);
        let other = token(&signer, 6, 3600);
        let (claims, _, skipped) = recent.verify(&verifier, &other, DeviceId(1), NOW).unwrap();
        assert_eq!((claims.user, skipped), (UserId(6), false), "another token is checked in full");
        assert_eq!(recent.len(), 1);
        let (claims, _, skipped) = recent.verify(&verifier, &good, DeviceId(1), NOW + 1).unwrap();
        assert_eq!((claims.user, skipped), (UserId(5), true));
    }

    #[test]
    fn everything_but_the_signature_is_checked_again() {
        let (signer, verifier, recent) = setup();
        let short = token(&signer, 5, 100);
        let fingerprint = closed_session(&recent, &verifier, &short, NOW);
        let err = recent.verify(&verifier, &short, DeviceId(2), NOW).unwrap_err();
        assert_eq!(err.reason(), "device_mismatch");
        recent.remember(fingerprint, NOW);
        let late = NOW + 100 + crate::DEFAULT_LEEWAY_SECS;
        assert_eq!(recent.verify(&verifier, &short, DeviceId(1), late).unwrap_err().reason(), "expired");
        // A key id no longer held is refused before the set is asked.
        recent.remember(fingerprint, NOW);
        let mut rotated = verifier.clone();
        rotated.remove_key(1);
        assert_eq!(recent.verify(&rotated, &short, DeviceId(1), NOW).unwrap_err(), AuthError::UnknownKey(1));
        assert_eq!(recent.len(), 1, "not asked");
    }

    /// A key replaced under the same id (a SIGHUP with new key files) does
    /// not vouch for a token remembered with the old one, whenever its
    /// session closed; the same key reloaded still does.
    #[test]
    fn a_replaced_key_vouches_for_nothing_the_old_one_verified() {
        let (signer, verifier, recent) = setup();
        let good = token(&signer, 5, 3600);
        closed_session(&recent, &verifier, &good, NOW);
        let mut replaced = Verifier::new();
        replaced.add_key(1, Signer::generate(1).unwrap().0.public_key());
        assert_eq!(recent.verify(&replaced, &good, DeviceId(1), NOW).unwrap_err(), AuthError::BadSignature);
        assert_eq!(recent.len(), 1, "its fingerprint is another one");
        let reloaded = verifier.clone();
        assert!(recent.verify(&reloaded, &good, DeviceId(1), NOW).unwrap().2);
    }

    #[test]
    fn entries_leave_after_the_ttl_and_the_oldest_leaves_a_full_set() {
        let (signer, verifier, recent) = setup();
        let tokens: Vec<_> = (0..5).map(|user| token(&signer, user, 3600)).collect();
        for (i, t) in tokens.iter().enumerate() {
            closed_session(&recent, &verifier, t, NOW + i as u64);
        }
        assert_eq!(recent.len(), 4, "capacity 4: the first went");
        let skips = |i: usize, now: u64| recent.verify(&verifier, &tokens[i], DeviceId(1), now).unwrap().2;
        assert!(!skips(0, NOW + 5));
        assert!(skips(1, NOW + 5));
        // Remembered at NOW + 2, kept 600 s: there at NOW + 601.
        assert!(skips(2, NOW + 601));
        assert!(!skips(3, NOW + 603), "remembered at NOW + 3: gone at NOW + 603");
        assert!(!skips(4, NOW + 604));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let (signer, verifier, _) = setup();
        let off = RecentTokens::new(FingerprintKey::from_bytes(&[7; 32]), 0, 600);
        let good = token(&signer, 5, 3600);
        let (_, fingerprint, _) = off.verify(&verifier, &good, DeviceId(1), NOW).unwrap();
        off.remember(fingerprint, NOW);
        assert!(off.is_empty());
        assert!(!off.verify(&verifier, &good, DeviceId(1), NOW).unwrap().2);
    }

    #[test]
    fn a_sharded_set_finds_each_token_once() {
        let (signer, verifier, _) = setup();
        let recent = RecentTokens::new(FingerprintKey::from_bytes(&[9; 32]), 1024, 600);
        let tokens: Vec<_> = (0..64).map(|user| token(&signer, user, 3600)).collect();
        for t in &tokens {
            closed_session(&recent, &verifier, t, NOW);
        }
        assert_eq!(recent.len(), 64);
        for t in &tokens {
            assert!(recent.verify(&verifier, t, DeviceId(1), NOW).unwrap().2);
            assert!(!recent.verify(&verifier, t, DeviceId(1), NOW).unwrap().2);
        }
        assert!(recent.is_empty());
    }

    #[test]
    fn the_key_makes_the_fingerprint() {
        let (signer, _, recent) = setup();
        let other = RecentTokens::new(FingerprintKey::from_bytes(&[8; 32]), 4, 600);
        let good = token(&signer, 5, 3600);
        assert_ne!(print_of(&recent, &signer, &good), print_of(&other, &signer, &good));
        assert_eq!(print_of(&recent, &signer, &good), print_of(&recent, &signer, &good));
    }
}
