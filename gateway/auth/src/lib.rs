//! Signed session tokens: Ed25519 signing for development and verification with several keys (rotation) (being written).
