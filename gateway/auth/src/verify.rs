//! Token verification with one or more Ed25519 public keys.

use std::collections::BTreeMap;
use std::fmt;

use protocol::{DeviceId, ErrorCode};
use ring::signature::{UnparsedPublicKey, ED25519};

use crate::token::{split_token, Claims};

/// Clock skew tolerated by default on both ends of a token's validity window,
/// in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Why a token was refused.
///
/// [`error_code`](Self::error_code) is what goes into AUTH_ERROR,
/// [`reason`](Self::reason) is a stable label for metrics and logs. The
/// `Display` text is for logs only; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a well-formed v1 token (length, prefix, separator, base64url), or a
    /// validly signed token whose claims are impossible (device 0, expiry not
    /// after issue).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Well formed, from a known key, but the signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// Signed for a key id this verifier does not hold (never issued, or
    /// retired by rotation).
    #[error("token signed with unknown key id {0}")]
    UnknownKey(u32),
    /// The token's validity ended (`now >= expired_at + leeway`).
    #[error("token expired at {expired_at} (now {now})")]
    Expired {
        /// The token's `expires_at`, Unix seconds.
        expired_at: u64,
        /// The time it was checked at, Unix seconds.
        now: u64,
    },
    /// The token was issued in the future (`issued_at > now + leeway`): a clock
    /// far off on the issuer or on this node.
    #[error("token not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// The token's `issued_at`, Unix seconds.
        issued_at: u64,
        /// The time it was checked at, Unix seconds.
        now: u64,
    },
    /// The token is valid but bound to another device than the one HELLO
    /// names (only from [`Verifier::verify_for_device`]).
    #[error("token is for device {token}, HELLO names device {hello}")]
    DeviceMismatch {
        /// The device in the token.
        token: DeviceId,
        /// The device in HELLO.
        hello: DeviceId,
    },
}

impl AuthError {
    /// The SPEC §10 code for AUTH_ERROR.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) | Self::BadSignature | Self::NotYetValid { .. } => ErrorCode::AUTH_INVALID,
            Self::UnknownKey(_) => ErrorCode::AUTH_UNKNOWN_KEY,
            Self::Expired { .. } => ErrorCode::AUTH_EXPIRED,
            Self::DeviceMismatch { .. } => ErrorCode::AUTH_DEVICE_MISMATCH,
        }
    }

    /// A stable lowercase label for metrics: `malformed`, `bad_signature`,
    /// `unknown_key`, `expired`, `not_yet_valid` or `device_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey(_) => "unknown_key",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::DeviceMismatch { .. } => "device_mismatch",
        }
    }
}

/// Verifies tokens against a set of Ed25519 public keys, by key id.
///
/// Holding several keys at once is how keys rotate: add the new key to every
/// node, switch the issuer to it, and remove the old key once the tokens it
/// signed have expired. A verifier holds no secret, is `Send + Sync`, and
/// [`verify`](Self::verify) does not allocate.
#[derive(Clone)]
pub struct Verifier {
    keys: BTreeMap<u32, UnparsedPublicKey<[u8; 32]>>,
    leeway: u64,
}

impl Verifier {
    /// A verifier with no keys (every token fails with `UnknownKey`) and
    /// [`DEFAULT_LEEWAY_SECS`] of leeway.
    pub fn new() -> Self {
        Self { keys: BTreeMap::new(), leeway: DEFAULT_LEEWAY_SECS }
    }

    /// This verifier with `secs` of leeway instead.
    #[must_use]
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Sets the clock skew tolerated on `issued_at` and `expires_at`, seconds.
    pub fn set_leeway(&mut self, secs: u64) {
        self.leeway = secs;
    }

    /// The clock skew tolerated, seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Accepts tokens signed for `key_id` with the key whose public half is
    /// `public_key`. Replaces the key already held under that id, if any.
    pub fn add_key(&mut self, key_id: u32, public_key: [u8; 32]) {
        self.keys.insert(key_id, UnparsedPublicKey::new(&ED25519, public_key));
    }

    /// Stops accepting tokens signed for `key_id`; false if it was not held.
    pub fn remove_key(&mut self, key_id: u32) -> bool {
        self.keys.remove(&key_id).is_some()
    }

    /// Whether tokens for `key_id` are accepted.
    pub fn contains_key(&self, key_id: u32) -> bool {
        self.keys.contains_key(&key_id)
    }

    /// The public key held for `key_id`.
    pub fn public_key(&self, key_id: u32) -> Option<[u8; 32]> {
        self.keys.get(&key_id).and_then(|key| key.as_ref().try_into().ok())
    }

    /// The key ids held, ascending.
    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held (nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a token and returns its claims.
    ///
    /// `now` is the current time in Unix seconds, passed in (sans-IO: this
    /// reads no clock). [`leeway`](Self::leeway) seconds of clock skew are
    /// allowed at both ends: the token is valid while
    /// `issued_at <= now + leeway` and `now < expires_at + leeway`.
    ///
    /// Checks run in this order, and the first that fails is the error: the
    /// layout (`Malformed`), the key id (`UnknownKey`), the signature
    /// (`BadSignature`), the claims (`Malformed`: device 0, or `expires_at`
    /// not after `issued_at`), then the time (`NotYetValid`, `Expired`).
    /// Nothing in the payload is trusted before the signature verifies, except
    /// the key id that picks the key. Never panics, whatever `token` holds.
    pub fn verify(&self, token: &[u8], now: u64) -> Result<Claims, AuthError> {
        self.verify_unless_known(token, now, |_| false)
    }

    /// [`verify`](Self::verify), except that the signature is not checked
    /// when `known(public_key)` says this exact token's signature already
    /// verified with `public_key`, the key its key id names now
    /// ([`crate::RecentTokens`]). `known` is asked only once the layout and
    /// the key id passed; every other check runs.
    pub(crate) fn verify_unless_known(
        &self,
        token: &[u8],
        now: u64,
        known: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Claims, AuthError> {
        let parts = split_token(token).map_err(AuthError::Malformed)?;
        let claims = Claims::from_payload(&parts.payload);
        let key = self.keys.get(&claims.key_id).ok_or(AuthError::UnknownKey(claims.key_id))?;
        if !known(key.as_ref()) {
            key.verify(parts.signed, &parts.signature).map_err(|_| AuthError::BadSignature)?;
        }
        if claims.device.0 == 0 {
            return Err(AuthError::Malformed("device 0 is not a device"));
        }
        if claims.expires_at <= claims.issued_at {
            return Err(AuthError::Malformed("expires_at is not after issued_at"));
        }
        if claims.issued_at > now.saturating_add(self.leeway) {
            return Err(AuthError::NotYetValid { issued_at: claims.issued_at, now });
        }
        if now >= claims.expires_at.saturating_add(self.leeway) {
            return Err(AuthError::Expired { expired_at: claims.expires_at, now });
        }
        Ok(claims)
    }

    /// [`verify`](Self::verify), then checks that the token is bound to
    /// `device`, the device HELLO names (SPEC §4: `DeviceMismatch`, code
    /// AUTH_DEVICE_MISMATCH, otherwise).
    pub fn verify_for_device(&self, token: &[u8], device: DeviceId, now: u64) -> Result<Claims, AuthError> {
        bound_to(self.verify(token, now)?, device)
    }
}

/// `claims` if they are bound to `device`, else `DeviceMismatch`.
pub(crate) fn bound_to(claims: Claims, device: DeviceId) -> Result<Claims, AuthError> {
    if claims.device != device {
        return Err(AuthError::DeviceMismatch { token: claims.device, hello: device });
    }
    Ok(claims)
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("leeway", &self.leeway)
            .finish()
    }
}
