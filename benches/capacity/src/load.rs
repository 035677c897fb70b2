//! The load as event rates: what a target (or a measured run) asks of the
//! fleet per second, before any per-unit cost is applied.

use serde::Serialize;

use crate::target::Target;

/// Receipt notes a READ sends: to the senders it covers (one, mostly) and
/// to the reader's own other devices (backend/store/src/cursors.rs
/// `advance`).
pub const NOTES_PER_READ: f64 = 2.0;

/// Events per second across the whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Concurrent sessions.
    pub sessions: f64,
    /// Share of sessions over TLS.
    pub tls_share: f64,
    /// Heartbeat PING/PONGs.
    pub heartbeats: f64,
    /// New sessions (and as many closes).
    pub connects: f64,
    /// 1:1 messages sent.
    pub direct_msgs: f64,
    /// 1:1 messages whose recipient is connected (a live delivery).
    pub direct_online: f64,
    /// 1:1 messages whose recipient is not (an inbox entry, a sync later).
    pub direct_offline: f64,
    /// Group messages sent.
    pub group_msgs: f64,
    /// Group deliveries to connected members.
    pub group_online: f64,
    /// Group deliveries to members not connected.
    pub group_offline: f64,
    /// READ cursors in.
    pub reads: f64,
    /// Receipts out to senders (delivered and read).
    pub receipts_out: f64,
    /// Of those, the delivered receipts of live group deliveries: a group
    /// message's connected members ack its DELIVER as it arrives, so the
    /// receipts to its sender leave each node holding members together.
    pub group_live_receipts: f64,
    /// TYPING frames in.
    pub typing_in: f64,
    /// TYPING frames in for groups (each reads the members from the store).
    pub group_typing_in: f64,
    /// TYPING frames out to connected recipients.
    pub typing_online: f64,
    /// TYPING frames meant for recipients not connected (looked up, dropped).
    pub typing_offline: f64,
    /// Presence watches started or ended.
    pub watch_events: f64,
    /// Presence notices out (online / offline to watchers).
    pub presence_out: f64,
    /// Users some session watches (each a presence watch set in the
    /// registry).
    pub watched_users: f64,
    /// Distinct senders a user receives from (placement cache reuse).
    pub senders_per_recipient: f64,
    /// Users whose placements the nodes cache, summed over the nodes, when
    /// a run measured it; `None`: long-running nodes, whose caches are full
    /// (`gateway.cache_users_max` each, or every user if fewer).
    pub cached_users: Option<f64>,
}

impl Rates {
    /// The target's rates at peak.
    pub fn from_target(target: &Target) -> Self {
        let l = &target.load;
        let recipients = target.mean_group_recipients();
        let direct_msgs = l.peak_msgs_per_sec * l.direct_share;
        let group_msgs = l.peak_msgs_per_sec - direct_msgs;
        let group_deliveries = group_msgs * recipients;
        let connects = l.sessions / (l.session_minutes * 60.0);
        let typing_in = l.peak_msgs_per_sec * l.typing_per_message;
        let reads = direct_msgs * l.direct_reads_per_message + group_deliveries * l.group_reads_per_delivery;
        // A TYPING goes where its conversation's messages go.
        let typing_targets_online = l.direct_share * l.direct_online_share
            + (1.0 - l.direct_share) * recipients * l.group_online_share;
        let typing_targets_offline = l.direct_share * (1.0 - l.direct_online_share)
            + (1.0 - l.direct_share) * recipients * (1.0 - l.group_online_share);
        Self {
            sessions: l.sessions,
            tls_share: l.tls_share,
            heartbeats: l.sessions / l.heartbeat_secs,
            connects,
            direct_msgs,
            direct_online: direct_msgs * l.direct_online_share,
            direct_offline: direct_msgs * (1.0 - l.direct_online_share),
            group_msgs,
            group_online: group_deliveries * l.group_online_share,
            group_offline: group_deliveries * (1.0 - l.group_online_share),
            reads,
            receipts_out: (direct_msgs + group_deliveries) * l.delivered_receipts_per_delivery
                + reads * NOTES_PER_READ,
            group_live_receipts: group_deliveries * l.group_online_share * l.delivered_receipts_per_delivery,
            typing_in,
            group_typing_in: typing_in * (1.0 - l.direct_share),
            typing_online: typing_in * typing_targets_online,
            typing_offline: typing_in * typing_targets_offline,
            watch_events: l.sessions * l.presence_watches_per_session_hour / 3600.0 * 2.0,
            // A session coming and going tells its watchers twice.
            presence_out: connects * 2.0 * l.watchers_per_session,
            // A session watches one user at a time (the chat in view).
            watched_users: l.sessions * l.watchers_per_session.min(1.0),
            senders_per_recipient: l.senders_per_recipient,
            cached_users: None,
        }
    }

    /// Frames delivered live to connected devices (each may cross a link).
    /// Receipts go to senders, taken as connected.
    pub fn live_deliveries(&self) -> f64 {
        self.direct_online + self.group_online + self.user_frames()
    }

    /// Frames a node posts to a user rather than to a known device
    /// (receipts, typing, presence): in a fleet each also goes to the
    /// router, whatever the node holds, so each is looked up like a remote
    /// delivery.
    pub fn user_frames(&self) -> f64 {
        self.receipts_out + self.typing_online + self.presence_out
    }

    /// Items for devices connected nowhere: each costs the sender's node a
    /// registry lookup (the router never caches "nowhere").
    pub fn offline_targets(&self) -> f64 {
        self.direct_offline + self.group_offline + self.typing_offline
    }

    /// Inbox entries that wait for their device and are synced later.
    pub fn offline_entries(&self) -> f64 {
        self.direct_offline + self.group_offline
    }

    /// All group deliveries, live or not (each is an inbox entry).
    pub fn group_deliveries(&self) -> f64 {
        self.group_online + self.group_offline
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn seeds() -> Target {
        Target::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target-seeds.toml")).unwrap()
    }

    #[test]
    fn the_seeds_rates_add_up() {
        let target = seeds();
        let r = Rates::from_target(&target);
        assert!((r.direct_msgs + r.group_msgs - 2_300_000.0).abs() < 1.0);
        assert!((r.heartbeats - 100e6 / 30.0).abs() < 1.0);
        let deliveries = r.group_msgs * target.mean_group_recipients();
        assert!((r.group_deliveries() - deliveries).abs() < 1.0);
        assert!((r.direct_online + r.direct_offline - r.direct_msgs).abs() < 1.0);
    }

    #[test]
    fn doubling_sessions_doubles_the_per_session_rates_only() {
        let mut target = seeds();
        let one = Rates::from_target(&target);
        target.load.sessions *= 2.0;
        let two = Rates::from_target(&target);
        assert!((two.heartbeats - 2.0 * one.heartbeats).abs() < 1e-6);
        assert!((two.connects - 2.0 * one.connects).abs() < 1e-6);
        assert!((two.direct_msgs - one.direct_msgs).abs() < 1e-6);
    }
}
