//! [`TlsError`]: the crate's one error type. Loading errors name the file at
//! fault; connection errors keep rustls' own typed error, which already tells
//! malformed input (`InvalidMessage`) from peer misbehaviour
//! (`PeerMisbehaved`) and alerts.

use std::path::PathBuf;

use rustls::pki_types::pem;

/// Why a TLS configuration could not be loaded, or a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain file could not be read or is not PEM.
    #[error("cannot read the certificate chain {}: {source}", path.display())]
    Certificate {
        /// The `tls.cert` file.
        path: PathBuf,
        /// The IO or PEM error.
        source: pem::Error,
    },
    /// The certificate chain file holds no `CERTIFICATE` section.
    #[error("no certificate (PEM \"CERTIFICATE\" section) in {}", path.display())]
    NoCertificate {
        /// The `tls.cert` file.
        path: PathBuf,
    },
    /// The private key file could not be read, is not PEM, or holds no key
    /// (PKCS#8, PKCS#1 or SEC1).
    #[error("cannot read the private key {}: {source}", path.display())]
    PrivateKey {
        /// The `tls.key` file.
        path: PathBuf,
        /// The IO or PEM error (`no items found`: no key section).
        source: pem::Error,
    },
    /// rustls refused the pair: a key type the ring provider does not
    /// support, or a key that does not match the certificate.
    #[error("certificate {} and key {} refused: {source}", cert.display(), key.display())]
    Refused {
        /// The `tls.cert` file.
        cert: PathBuf,
        /// The `tls.key` file.
        key: PathBuf,
        /// The rustls error (e.g. `InconsistentKeys`).
        source: rustls::Error,
    },
    /// The session ticket key could not be generated (no randomness).
    #[error("cannot create the session ticket key: {0}")]
    Ticketer(rustls::Error),
    /// The connection failed: a handshake that did not complete, a record
    /// that did not decrypt, an alert from the peer. Fatal to the connection;
    /// any alert for the peer is in [`TlsConn::unsent`](crate::TlsConn::unsent).
    #[error("TLS: {0}")]
    Connection(#[from] rustls::Error),
    /// A call after the connection had already failed.
    #[error("TLS: the connection has already failed")]
    Failed,
    /// rustls asked for something this layer does not do (early data is
    /// never enabled) or an encrypter ran out of sequence numbers. Fatal to
    /// the connection.
    #[error("TLS: {0}")]
    Unsupported(&'static str),
}
