//! Minting tokens with an Ed25519 private key (development, tests, and any
//! Rust auth service).

use std::fmt;

use protocol::{DeviceId, UserId};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::keys::public_key_to_hex;
use crate::token::{assemble, Claims, SIGNATURE_LEN};
use crate::Verifier;

/// Why a signing key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The system random number generator failed.
    #[error("could not generate an Ed25519 key: the system random generator failed")]
    Random,
    /// The bytes are not an unencrypted Ed25519 PKCS#8 (v1 or v2) private key,
    /// or a v2 key whose public half does not match its private half.
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    Rejected(ring::error::KeyRejected),
}

/// An Ed25519 private key with its key id: mints tokens.
///
/// Production nodes only verify; a signer belongs to the auth service, to
/// development setups (`gateway token`) and to tests. `Debug` shows the key
/// id and public key, never the private key.
pub struct Signer {
    key_id: u32,
    key_pair: Ed25519KeyPair,
    public_key: [u8; 32],
}

impl Signer {
    /// A new random key pair for `key_id`, and its PKCS#8 v2 document (DER) to
    /// store it.
    pub fn generate(key_id: u32) -> Result<(Self, Vec<u8>), SignerError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SignerError::Random)?;
        let signer = Self::from_pkcs8(key_id, pkcs8.as_ref())?;
        Ok((signer, pkcs8.as_ref().to_vec()))
    }

    /// Loads a key from an unencrypted PKCS#8 document (DER). Accepts v2
    /// (public key included and checked against the private key, as
    /// [`generate`](Self::generate) writes) and v1 (as
    /// `openssl genpkey -algorithm ed25519 -outform DER` writes).
    pub fn from_pkcs8(key_id: u32, pkcs8: &[u8]) -> Result<Self, SignerError> {
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(SignerError::Rejected)?;
        let mut public_key = [0u8; 32];
        copy_into(&mut public_key, key_pair.public_key().as_ref());
        Ok(Self { key_id, key_pair, public_key })
    }

    /// The key id written into every token this signer mints.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key that verifies this signer's tokens.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// A verifier that accepts this signer's tokens (and no others).
    pub fn verifier(&self) -> Verifier {
        let mut verifier = Verifier::new();
        verifier.add_key(self.key_id, self.public_key);
        verifier
    }

    /// A token for `device` of `user`, issued at `issued_at` (Unix seconds)
    /// and valid for `ttl_secs` (`expires_at = issued_at + ttl_secs`, capped at
    /// `u64::MAX`).
    ///
    /// Minting is deterministic (Ed25519): the same key and claims always give
    /// the same token. Verifiers refuse device 0 and a `ttl_secs` of 0, so the
    /// caller should reject those before minting.
    pub fn mint(&self, user: UserId, device: DeviceId, issued_at: u64, ttl_secs: u64) -> String {
        let claims = Claims {
            user,
            device,
            key_id: self.key_id,
            issued_at,
            expires_at: issued_at.saturating_add(ttl_secs),
        };
        assemble(&claims, |signed| {
            let mut signature = [0u8; SIGNATURE_LEN];
            copy_into(&mut signature, self.key_pair.sign(signed).as_ref());
            signature
        })
    }
}

/// Copies a ring output of known length (32-byte Ed25519 public keys, 64-byte
/// signatures) into its array without a panicking path.
fn copy_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("public_key", &public_key_to_hex(&self.public_key))
            .finish_non_exhaustive()
    }
}
