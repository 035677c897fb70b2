//! The push service's contract. The embedded service ([`crate::Push`]) and the
//! gRPC client of a separate push process (crate `backend-rpc`) both
//! implement [`PushApi`]; the gateway holds one `Arc<dyn PushApi>`.

use protocol::{Conversation, DeviceId, Seq, UserId};

/// A push service, embedded or remote. Best effort by design: the inbox is
/// the truth, a push only wakes a device up so that it connects and syncs.
pub trait PushApi: Send + Sync + std::fmt::Debug + 'static {
    /// An inbox entry was stored for a device that has no live session.
    /// Never blocks; a full queue drops the note and counts it.
    fn notify(&self, note: PushNote);
    /// The device connected: its pending (not yet sent) push is cancelled.
    fn connected(&self, user: UserId, device: DeviceId);
}

/// One inbox entry an offline device should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushNote {
    /// Recipient user.
    pub user: UserId,
    /// Recipient device.
    pub device: DeviceId,
    /// The entry's seq in that device's inbox.
    pub seq: Seq,
    /// The conversation as the device sees it.
    pub conversation: Conversation,
    /// Author (0 for a system entry).
    pub sender: protocol::UserId,
}
