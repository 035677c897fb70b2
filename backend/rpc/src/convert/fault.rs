//! [`StoreError`] as a [`pb::Fault`] and back. An engine failure or an
//! outage travels as its text (what a store process that predates typed
//! causes sends and reads) and as its typed [`pb::Cause`]; a fault without a
//! cause reads back as the text alone (`Reported`).

use std::io;

use backend_store::{EngineError, GrpcCode, StoreError, UnavailableError};
use protocol::{GroupId, UserId};

use super::{required, Bad};
use crate::pb::store as pb;
use crate::pb::store::cause::Kind as CauseKind;

pub(crate) fn fault_to_proto(error: StoreError) -> pb::Fault {
    use pb::fault::Kind;
    let (kind, cause) = match error {
        StoreError::UnknownRecipient(user) => (Kind::UnknownRecipient(user.0), None),
        StoreError::NotAMember(group) => (Kind::NotAMember(group.0), None),
        StoreError::UnknownGroup(group) => (Kind::UnknownGroup(group.0), None),
        StoreError::GroupFull(group) => (Kind::GroupFull(group.0), None),
        StoreError::NotAdmin(group) => (Kind::NotAdmin(group.0), None),
        StoreError::UnknownDevice(user) => (Kind::UnknownDevice(user.0), None),
        StoreError::TooManyDevices(user) => (Kind::TooManyDevices(user.0), None),
        StoreError::Overloaded => (Kind::Overloaded(pb::Empty {}), None),
        StoreError::Unavailable(cause) => {
            (Kind::Unavailable(cause.to_string()), Some(unavailable_cause(cause)))
        }
        StoreError::Engine(cause) => (Kind::Engine(cause.to_string()), Some(engine_cause(cause))),
        StoreError::Recovering { retry_after_ms } => (Kind::Recovering(retry_after_ms), None),
        // A variant this side does not know yet: a failure of the store.
        other => (Kind::Engine(other.to_string()), Some(CauseKind::Reported(pb::Empty {}))),
    };
    pb::Fault { kind: Some(kind), cause: cause.map(|kind| pb::Cause { kind: Some(kind) }) }
}

pub(crate) fn fault_from_proto(fault: pb::Fault) -> Result<StoreError, Bad> {
    use pb::fault::Kind;
    let cause = fault.cause.and_then(|cause| cause.kind);
    Ok(match required(fault.kind, "Fault.kind")? {
        Kind::UnknownRecipient(user) => StoreError::UnknownRecipient(UserId(user)),
        Kind::NotAMember(group) => StoreError::NotAMember(GroupId(group)),
        Kind::UnknownGroup(group) => StoreError::UnknownGroup(GroupId(group)),
        Kind::GroupFull(group) => StoreError::GroupFull(GroupId(group)),
        Kind::NotAdmin(group) => StoreError::NotAdmin(GroupId(group)),
        Kind::UnknownDevice(user) => StoreError::UnknownDevice(UserId(user)),
        Kind::TooManyDevices(user) => StoreError::TooManyDevices(UserId(user)),
        Kind::Overloaded(pb::Empty {}) => StoreError::Overloaded,
        Kind::Unavailable(text) => StoreError::Unavailable(unavailable_from_proto(cause, text)?),
        Kind::Engine(text) => StoreError::Engine(engine_from_proto(cause, text)?),
        Kind::Recovering(retry_after_ms) => StoreError::Recovering { retry_after_ms },
    })
}

fn engine_cause(cause: EngineError) -> CauseKind {
    let empty = pb::Empty {};
    match cause {
        EngineError::Io { kind, message } => {
            CauseKind::Io(pb::IoCause { kind: format!("{kind:?}"), message })
        }
        EngineError::Database { message } => CauseKind::Database(message),
        EngineError::Corrupt { what } => CauseKind::Corrupt(what),
        EngineError::PayloadTooLarge => CauseKind::PayloadTooLarge(empty),
        EngineError::StoredPayloadTooLarge => CauseKind::StoredPayloadTooLarge(empty),
        EngineError::Encode { message } => CauseKind::Encode(message),
        EngineError::WriteOnReader => CauseKind::WriteOnReader(empty),
        EngineError::ReadOnWriter => CauseKind::ReadOnWriter(empty),
        EngineError::Closed => CauseKind::Closed(empty),
        EngineError::ThreadStopped => CauseKind::ThreadStopped(empty),
        EngineError::Config { what } => CauseKind::Config(what),
        EngineError::UnexpectedResponse { answer } => CauseKind::UnexpectedResponse(answer),
        // `Reported`, and a variant this side does not know yet: the text
        // (sent beside the cause) is all there is.
        _ => CauseKind::Reported(empty),
    }
}

fn engine_from_proto(cause: Option<CauseKind>, text: String) -> Result<EngineError, Bad> {
    Ok(match cause {
        Some(CauseKind::Io(io)) => EngineError::Io { kind: io_kind_from_name(&io.kind), message: io.message },
        Some(CauseKind::Database(message)) => EngineError::Database { message },
        Some(CauseKind::Corrupt(what)) => EngineError::Corrupt { what },
        Some(CauseKind::PayloadTooLarge(_)) => EngineError::PayloadTooLarge,
        Some(CauseKind::StoredPayloadTooLarge(_)) => EngineError::StoredPayloadTooLarge,
        Some(CauseKind::Encode(message)) => EngineError::Encode { message },
        Some(CauseKind::WriteOnReader(_)) => EngineError::WriteOnReader,
        Some(CauseKind::ReadOnWriter(_)) => EngineError::ReadOnWriter,
        Some(CauseKind::Closed(_)) => EngineError::Closed,
        Some(CauseKind::ThreadStopped(_)) => EngineError::ThreadStopped,
        Some(CauseKind::Config(what)) => EngineError::Config { what },
        Some(CauseKind::UnexpectedResponse(answer)) => EngineError::UnexpectedResponse { answer },
        Some(CauseKind::Reported(_)) | None => EngineError::Reported { message: text },
        Some(
            CauseKind::Status(_)
            | CauseKind::TimeoutMs(_)
            | CauseKind::Unreachable(_)
            | CauseKind::StreamFailed(_)
            | CauseKind::StreamClosed(_)
            | CauseKind::RequestTooLarge(_)
            | CauseKind::BadReply(_)
            | CauseKind::ShuttingDown(_),
        ) => return Err(Bad::new("Fault.cause", "an outage's cause on an engine fault")),
    })
}

fn unavailable_cause(cause: UnavailableError) -> CauseKind {
    let empty = pb::Empty {};
    match cause {
        UnavailableError::Status { code, message } => {
            CauseKind::Status(pb::StatusCause { code: code as i32, message })
        }
        UnavailableError::Timeout { timeout_ms } => CauseKind::TimeoutMs(timeout_ms),
        UnavailableError::Unreachable { why, retry_in_ms } => {
            CauseKind::Unreachable(pb::UnreachableCause { why, retry_in_ms })
        }
        UnavailableError::StreamFailed { why } => CauseKind::StreamFailed(why),
        UnavailableError::StreamClosed => CauseKind::StreamClosed(empty),
        UnavailableError::RequestTooLarge { len, max } => {
            let (len, max) = (len as u64, max as u64);
            CauseKind::RequestTooLarge(pb::TooLargeCause { len, max })
        }
        UnavailableError::BadReply { why } => CauseKind::BadReply(why),
        UnavailableError::ShuttingDown => CauseKind::ShuttingDown(empty),
        // `Reported`, and a variant this side does not know yet.
        _ => CauseKind::Reported(empty),
    }
}

fn unavailable_from_proto(cause: Option<CauseKind>, text: String) -> Result<UnavailableError, Bad> {
    let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    Ok(match cause {
        Some(CauseKind::Status(status)) => {
            UnavailableError::Status { code: GrpcCode::from_number(status.code), message: status.message }
        }
        Some(CauseKind::TimeoutMs(timeout_ms)) => UnavailableError::Timeout { timeout_ms },
        Some(CauseKind::Unreachable(down)) => {
            UnavailableError::Unreachable { why: down.why, retry_in_ms: down.retry_in_ms }
        }
        Some(CauseKind::StreamFailed(why)) => UnavailableError::StreamFailed { why },
        Some(CauseKind::StreamClosed(_)) => UnavailableError::StreamClosed,
        Some(CauseKind::RequestTooLarge(big)) => {
            UnavailableError::RequestTooLarge { len: size(big.len), max: size(big.max) }
        }
        Some(CauseKind::BadReply(why)) => UnavailableError::BadReply { why },
        Some(CauseKind::ShuttingDown(_)) => UnavailableError::ShuttingDown,
        Some(CauseKind::Reported(_)) | None => UnavailableError::Reported { message: text },
        Some(
            CauseKind::Io(_)
            | CauseKind::Database(_)
            | CauseKind::Corrupt(_)
            | CauseKind::PayloadTooLarge(_)
            | CauseKind::StoredPayloadTooLarge(_)
            | CauseKind::Encode(_)
            | CauseKind::WriteOnReader(_)
            | CauseKind::ReadOnWriter(_)
            | CauseKind::Closed(_)
            | CauseKind::ThreadStopped(_)
            | CauseKind::Config(_)
            | CauseKind::UnexpectedResponse(_),
        ) => return Err(Bad::new("Fault.cause", "an engine cause on an outage fault")),
    })
}

/// The I/O error kinds a cause names, by their `Debug` name (what
/// `IoCause.kind` holds): the stable kinds a store's I/O can fail with.
pub(crate) const IO_KINDS: [io::ErrorKind; 37] = {
    use io::ErrorKind::*;
    [
        NotFound,
        PermissionDenied,
        ConnectionRefused,
        ConnectionReset,
        HostUnreachable,
        NetworkUnreachable,
        ConnectionAborted,
        NotConnected,
        AddrInUse,
        AddrNotAvailable,
        NetworkDown,
        BrokenPipe,
        AlreadyExists,
        WouldBlock,
        NotADirectory,
        IsADirectory,
        DirectoryNotEmpty,
        ReadOnlyFilesystem,
        StaleNetworkFileHandle,
        InvalidInput,
        InvalidData,
        TimedOut,
        WriteZero,
        StorageFull,
        NotSeekable,
        FileTooLarge,
        ResourceBusy,
        ExecutableFileBusy,
        Deadlock,
        CrossesDevices,
        TooManyLinks,
        ArgumentListTooLong,
        Interrupted,
        Unsupported,
        UnexpectedEof,
        OutOfMemory,
        Other,
    ]
};

/// The kind named `name` (its `Debug` name); a kind this side does not
/// know is `Other`.
fn io_kind_from_name(name: &str) -> io::ErrorKind {
    IO_KINDS.into_iter().find(|kind| format!("{kind:?}") == name).unwrap_or(io::ErrorKind::Other)
}
