//! The crate's error: what can fail when a client or server is set up.
//! (Failures of individual calls are `StoreError`s; push drops are counted.)

/// Why a [`RemoteStore`](crate::RemoteStore) or [`RemotePush`](crate::RemotePush)
/// could not start.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    Config(String),
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What tonic said.
        source: tonic::transport::Error,
    },
    /// The client's runtime thread could not start.
    #[error("cannot start the client runtime: {0}")]
    Runtime(#[from] std::io::Error),
}
