//! The hub's settings (from the node's `[store]` and `[messaging]`).

use std::sync::Arc;
use std::time::Duration;

use protocol::Capabilities;

/// Messaging settings of a worker's hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Store requests outstanding at most, per worker.
    pub max_inflight: usize,
    /// Logins (HELLO to the store's answer to the device's Connect) running
    /// at most, per worker
    /// (see `logins`).
    pub max_logins: usize,
    /// HELLOs waiting for a login slot at most, per worker; beyond (or
    /// beyond half the auth deadline of expected wait) they are refused
    /// OVERLOADED with a retry hint.
    pub login_queue: usize,
    /// Presence grace period: a user whose last device left is announced
    /// offline this long after, unless it returns.
    pub grace: Duration,
    /// TYPING throttle per conversation.
    pub typing_interval: Duration,
    /// PREKEY_FETCH budget per user and minute.
    pub prekey_fetches_per_min: u32,
    /// PREKEY_LOW mark.
    pub prekey_low: u32,
    /// AUTH_OK.max_payload.
    pub max_payload: u32,
    /// Items one worker may hold for another before shedding the oldest.
    pub max_batch: usize,
    /// Cluster mode: devices not on this node are looked for in the fleet
    /// (items for them go to the fleet router, the outbox's destination
    /// after the workers), and sessions are placed in the fleet's registry
    /// before their sync starts.
    pub fleet: bool,
    /// Cluster mode: a SEND_ACK for a message with recipients on other
    /// nodes waits until those nodes took its entries, at most this long
    /// (zero: it never waits). See `held`.
    pub ack_wait: Duration,
    /// Media tickets, when the node has an object store (`[media]`): the
    /// MEDIA capability is granted only then.
    pub media: Option<Arc<gateway_media::Media>>,
}

impl HubConfig {
    /// Items a worker holds for another by default: enough for a full
    /// 1024-member group fanout to every device of a busy worker many times
    /// over, bounded so a stuck worker cannot grow its peers without limit.
    pub const MAX_BATCH: usize = 1 << 16;

    /// The capabilities this node grants (those asked, of these).
    pub(crate) fn capabilities(&self) -> Capabilities {
        match self.media {
            Some(_) => Capabilities::ALL,
            None => Capabilities(Capabilities::ALL.0 & !Capabilities::MEDIA.0),
        }
    }

    /// The grace period in ms (presence times are wall-clock ms).
    pub(crate) fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }
}
