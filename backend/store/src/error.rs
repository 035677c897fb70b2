//! The typed causes behind [`StoreError::Engine`](crate::StoreError::Engine)
//! and [`StoreError::Unavailable`](crate::StoreError::Unavailable): what
//! failed, recorded as data (an I/O error's kind, what was corrupt, a gRPC
//! status code, a deadline), so that callers and the gRPC mapping can tell
//! causes apart without reading text. Each `Display` is the line a log
//! shows.

use std::io;

/// Why the store itself failed (the embedded engine, or the engine behind a
/// store process). A request that fails this way was not applied, or not
/// answered: the client gets `INTERNAL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// An operating-system call failed: opening or creating the database
    /// directory, starting a store thread, or the database's own I/O.
    #[error("{message}")]
    Io {
        /// The I/O error's kind (`StorageFull`, `PermissionDenied`, ...).
        kind: io::ErrorKind,
        /// What failed, with the error's text.
        message: String,
    },
    /// The database refused for a reason of its own (poisoned after a failed
    /// write, locked by another process, an unknown format version).
    #[error("{message}")]
    Database {
        /// The database's description of the refusal.
        message: String,
    },
    /// A stored key or value could not be decoded.
    #[error("corrupt {what}")]
    Corrupt {
        /// What could not be decoded (`short record`, `group name`, ...).
        what: String,
    },
    /// A Send's payload is over the protocol's `MAX_PAYLOAD` (the gateway
    /// refuses those before they reach the store).
    #[error("payload over MAX_PAYLOAD")]
    PayloadTooLarge,
    /// A stored payload is over the protocol's `MAX_PAYLOAD`: it cannot be
    /// delivered.
    #[error("stored payload over MAX_PAYLOAD")]
    StoredPayloadTooLarge,
    /// A frame the store builds (a group's system entry) could not be
    /// encoded.
    #[error("{message}")]
    Encode {
        /// The encoder's error.
        message: String,
    },
    /// A write request reached a reader thread (a routing bug).
    #[error("write request on a reader")]
    WriteOnReader,
    /// A read request reached the writer thread (a routing bug).
    #[error("read request on the writer")]
    ReadOnWriter,
    /// A request that spans shards reached a writer as one request, or a
    /// chain's step answered with the wrong kind (a routing bug).
    #[error("request spans shards")]
    CrossShard,
    /// The store was closed: it takes no more requests.
    #[error("store closed")]
    Closed,
    /// A store thread stopped while the store is open.
    #[error("store thread stopped")]
    ThreadStopped,
    /// The store's configuration is invalid ([`StoreConfig::validate`](crate::StoreConfig::validate)).
    #[error("invalid store config: {what}")]
    Config {
        /// What is wrong with it.
        what: String,
    },
    /// The store answered a request with a response of another kind (a store
    /// bug): see [`StoreError::unexpected_response`](crate::StoreError::unexpected_response).
    #[error("unexpected store answer {answer}")]
    UnexpectedResponse {
        /// The answer, as its `Debug` text.
        answer: String,
    },
    /// An engine failure reported, as text alone, by a store process that
    /// does not send its cause.
    #[error("{message}")]
    Reported {
        /// The store's text.
        message: String,
    },
}

impl EngineError {
    /// A failed I/O call: its kind, and `message` as the log line.
    pub fn io(err: &io::Error, message: impl Into<String>) -> Self {
        Self::Io { kind: err.kind(), message: message.into() }
    }

    /// Stored `what` could not be decoded.
    pub fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }
}

/// Why a remote store could not be used for a request (the separate-process
/// mode's client, or a store process relaying to another). The request may
/// or may not have been applied; the client gets `BACKEND_UNAVAILABLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnavailableError {
    /// The call failed with this gRPC status.
    #[error("{code:?}: {message}")]
    Status {
        /// The status code.
        code: GrpcCode,
        /// The status message.
        message: String,
    },
    /// No answer came within the request timeout.
    #[error("no answer from the store within {timeout_ms} ms")]
    Timeout {
        /// The request timeout, ms.
        timeout_ms: u64,
    },
    /// The stream to the store is down after a failure; the client opens it
    /// again after a backoff.
    #[error("the store is unreachable ({why}); next try in {retry_in_ms} ms")]
    Unreachable {
        /// Why the stream failed.
        why: String,
        /// When the client tries again, ms from now.
        retry_in_ms: u64,
    },
    /// The stream to the store failed while the request waited for its answer.
    #[error("the stream to the store failed: {why}")]
    StreamFailed {
        /// Why the stream failed.
        why: String,
    },
    /// The stream to the store was closed before the request went out.
    #[error("the stream to the store is closed")]
    StreamClosed,
    /// The request is larger than the largest gRPC message: not sent.
    #[error("the request is {len} bytes, more than the largest message ({max})")]
    RequestTooLarge {
        /// The encoded request's size, bytes.
        len: usize,
        /// The largest message, bytes.
        max: usize,
    },
    /// The store's reply could not be read as an answer to the request.
    #[error("bad reply from the store: {why}")]
    BadReply {
        /// What is wrong with it.
        why: String,
    },
    /// The store client is shutting down.
    #[error("the store client is shutting down")]
    ShuttingDown,
    /// An outage reported, as text alone, by a store process that does not
    /// send its cause.
    #[error("{message}")]
    Reported {
        /// The store's text.
        message: String,
    },
}

/// A gRPC status code (`google.rpc.Code`; the discriminant is its number),
/// so that the store's contract does not depend on a gRPC library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in number order.
    pub const ALL: [GrpcCode; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The code numbered `number`; gRPC reads an unknown number as `Unknown`.
    pub fn from_number(number: i32) -> Self {
        Self::ALL.into_iter().find(|code| *code as i32 == number).unwrap_or(Self::Unknown)
    }
}
