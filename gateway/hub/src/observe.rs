//! Maps the session core's observations onto the worker's metrics.

use std::sync::Arc;

use gateway_admin::{AuthFailure, DropReason, HandshakeFailure, WorkerMetrics};
use gateway_core::Observer;
use protocol::{CloseCode, FrameKind};

/// The worker's metrics as a session observer.
#[derive(Debug)]
pub(crate) struct MetricsObserver(pub(crate) Arc<WorkerMetrics>);

impl Observer for MetricsObserver {
    fn handshake_failed(&mut self, reason: &'static str) {
        if let Some(label) = HandshakeFailure::ALL.iter().find(|l| l.name() == reason) {
            self.0.handshake_failures.inc(*label);
        }
    }

    fn auth_failed(&mut self, reason: &'static str) {
        if let Some(label) = AuthFailure::ALL.iter().find(|l| l.name() == reason) {
            self.0.auth_failures.inc(*label);
        }
    }

    fn frame_in(&mut self, kind: FrameKind) {
        self.0.frames_in.inc(kind);
    }

    fn frame_out(&mut self, kind: FrameKind) {
        self.0.frames_out.inc(kind);
    }

    fn dropped(&mut self, reason: &'static str) {
        if let Some(label) = DropReason::ALL.iter().find(|l| l.name() == reason) {
            self.0.drops.inc(*label);
        }
    }

    fn closed(&mut self, code: u16) {
        self.0.closes.inc(CloseCode(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_ws::RejectReason;

    /// Every reason the ws, auth and core crates report has a metric label:
    /// an unmapped reason would be counted nowhere.
    #[test]
    fn every_emitted_reason_has_a_label() {
        let upgrade = [
            RejectReason::Malformed,
            RejectReason::Method,
            RejectReason::HttpVersion,
            RejectReason::Path,
            RejectReason::Host,
            RejectReason::Body,
            RejectReason::Upgrade,
            RejectReason::WsVersion,
            RejectReason::Key,
            RejectReason::TooManyHeaders,
            RejectReason::TooLarge,
        ];
        for reason in upgrade.iter().map(|r| r.as_str()).chain(["timeout"]) {
            assert!(HandshakeFailure::ALL.iter().any(|l| l.name() == reason), "handshake reason {reason}");
        }
        let auth =
            ["malformed", "bad_signature", "unknown_key", "expired", "not_yet_valid", "device_mismatch"];
        for reason in auth.into_iter().chain(["timeout", "version"]) {
            assert!(AuthFailure::ALL.iter().any(|l| l.name() == reason), "auth reason {reason}");
        }
        for reason in ["typing", "presence", "ephemeral", "live_paused", "overflow", "write_stall"] {
            assert!(DropReason::ALL.iter().any(|l| l.name() == reason), "drop reason {reason}");
        }
    }
}
