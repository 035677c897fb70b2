//! Every metric family the gateway exports, in one place (sozu's
//! `metrics/names.rs`, spelled Prometheus-style).
//!
//! Each constant is the family name; its doc line is the `# HELP` text, and
//! [`ALL`] lists the families in exposition order with their type, label and
//! [`Scope`]. The renderer ([`crate::Registry::render`]) writes exactly these
//! families, and the crate's tests check the rendered output against this list.
//!
//! # Per worker or summed
//!
//! Counters and most gauges are summed over the worker threads: a node-level
//! rate is what dashboards and alerts want, and one series per core would
//! multiply the series count by the core count. Two families are exported per
//! worker, with a `worker="N"` label, because a single hot or stuck core is the
//! signal: [`INBOX_DEPTH`] and [`LOOP_TURN_SECONDS`].

/// Prometheus type of a family (`# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Monotonic count since start (`_total` names).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative `_bucket{le}` series plus `_sum` and `_count`.
    Histogram,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Where a family's samples come from and how workers are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Summed over every worker's [`crate::WorkerMetrics`]; no `worker` label.
    Summed,
    /// One series per worker, labelled `worker="N"`.
    PerWorker,
    /// A property of the whole process, read when rendering.
    Process,
}

/// One metric family: what `# HELP` and `# TYPE` say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Family name (the constant's value).
    pub name: &'static str,
    /// `# HELP` text: the constant's doc line.
    pub help: &'static str,
    /// `# TYPE`.
    pub kind: Kind,
    /// The family's own label, if any (`reason`, `kind`, `code`, `state`);
    /// `worker` (per-worker scope) and `le` (histograms) come on top.
    pub label: Option<&'static str>,
    /// Summed over workers, per worker, or process-wide.
    pub scope: Scope,
}

/// Defines one constant per family (its doc line doubles as the help text)
/// and [`ALL`] from the same list, so names and help cannot drift apart.
macro_rules! families {
    (@label) => { None };
    (@label $label:ident) => { Some(stringify!($label)) };
    ($(#[doc = $help:literal] $konst:ident = $name:literal $({$label:ident})?, $kind:ident, $scope:ident;)+) => {
        $(#[doc = $help] pub const $konst: &str = $name;)+

        /// Every family, in the order [`crate::Registry::render`] writes them.
        pub const ALL: &[Family] = &[$(Family {
            name: $name,
            help: $help.trim_ascii(),
            kind: Kind::$kind,
            label: families!(@label $($label)?),
            scope: Scope::$scope,
        }),+];
    };
}

families! {
    /// Client connections held open by this node, from accept to close, in any state.
    SESSIONS_OPEN = "gateway_sessions_open", Gauge, Summed;
    /// Open client connections by session state (handshake, auth, live, draining).
    SESSIONS = "gateway_sessions" {state}, Gauge, Summed;
    /// Client TCP connections accepted.
    ACCEPTS_TOTAL = "gateway_accepts_total", Counter, Summed;
    /// 1 while a worker has stopped accepting (its share of listen.max_connections is reached; it resumes below listen.accept_resume_ratio of it), else 0.
    ACCEPT_PAUSED = "gateway_accept_paused", Gauge, PerWorker;
    /// Times a worker stopped accepting at its share of listen.max_connections.
    ACCEPT_PAUSES_TOTAL = "gateway_accept_pauses_total", Counter, Summed;
    /// WebSocket upgrades that failed before a session existed, by reason.
    HANDSHAKE_FAILURES_TOTAL = "gateway_handshake_failures_total" {reason}, Counter, Summed;
    /// HELLOs refused (token, protocol version, or too many logins at once), by reason.
    AUTH_FAILURES_TOTAL = "gateway_auth_failures_total" {reason}, Counter, Summed;
    /// Logins (HELLO to the store's answer to the device's registration) running now; at most limits.logins_in_flight.
    LOGINS_IN_FLIGHT = "gateway_logins_in_flight", Gauge, Summed;
    /// HELLOs waiting for a login slot; a HELLO beyond limits.login_queue, or once the oldest has waited half the auth deadline, is refused OVERLOADED (auth failure reason "overloaded").
    LOGINS_QUEUED = "gateway_logins_queued", Gauge, Summed;
    /// Tokens accepted without their signature check: the same token verified for a session of this node that closed within the last 10 minutes (limits.recent_tokens); a reconnect storm's logins.
    RECENT_TOKENS_TOTAL = "gateway_recent_tokens_total", Counter, Summed;
    /// Protocol frames received from clients, by frame kind (SPEC name).
    FRAMES_IN_TOTAL = "gateway_frames_in_total" {kind}, Counter, Summed;
    /// Protocol frames sent to clients, by frame kind (SPEC name).
    FRAMES_OUT_TOTAL = "gateway_frames_out_total" {kind}, Counter, Summed;
    /// Bytes read from client sockets.
    BYTES_IN_TOTAL = "gateway_bytes_in_total", Counter, Summed;
    /// Bytes written to client sockets.
    BYTES_OUT_TOTAL = "gateway_bytes_out_total", Counter, Summed;
    /// Bytes queued for clients and not yet written to their sockets.
    OUTBOUND_QUEUE_BYTES = "gateway_outbound_queue_bytes", Gauge, Summed;
    /// SEND_ACKs held until the nodes of the message's recipients on other nodes took its entries (cluster mode).
    SEND_ACKS_HELD_TOTAL = "gateway_send_acks_held_total", Counter, Summed;
    /// Held SEND_ACKs sent at cluster.ack_wait_ms without that confirmation (a slow or stopped peer node, a shed link frame).
    SEND_ACKS_UNCONFIRMED_TOTAL = "gateway_send_acks_unconfirmed_total", Counter, Summed;
    /// Batches waiting in a worker's inbox from other workers and nodes.
    INBOX_DEPTH = "gateway_inbox_depth", Gauge, PerWorker;
    /// Frames or events shed instead of delivered, by reason.
    DROPS_TOTAL = "gateway_drops_total" {reason}, Counter, Summed;
    /// Media ticket requests (MEDIA_UPLOAD, MEDIA_DOWNLOAD), by result.
    MEDIA_TICKETS_TOTAL = "gateway_media_tickets_total" {result}, Counter, Summed;
    /// Sessions closed, by WebSocket close code ("other" for codes outside the protocol table).
    CLOSES_TOTAL = "gateway_closes_total" {code}, Counter, Summed;
    /// Receives that found every io_uring receive buffer of their worker in use (node.uring_buffers): the connection waited a loop turn, nothing was lost.
    URING_BUFFERS_DRY_TOTAL = "gateway_uring_buffers_dry_total", Counter, Summed;
    /// Duration of one worker event-loop turn (poll return to the next poll).
    LOOP_TURN_SECONDS = "gateway_loop_turn_seconds", Histogram, PerWorker;
    /// Time from a worker's store request to the store's answer (embedded: the writer's queue and commit; remote: the gRPC round trip too).
    STORE_REQUEST_SECONDS = "gateway_store_request_seconds", Histogram, PerWorker;
    /// Resident set size of the gateway process (VmRSS).
    PROCESS_RESIDENT_MEMORY_BYTES = "gateway_process_resident_memory_bytes", Gauge, Process;
    /// 1 while the store accepts writes (embedded: its database is open; remote: the stream is up), else 0; /readyz is 503 while 0.
    STORE_WRITABLE = "gateway_store_writable", Gauge, Process;
}

/// The family called `name`, if it is one of [`ALL`].
pub fn family(name: &str) -> Option<&'static Family> {
    ALL.iter().find(|family| family.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_style_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for family in ALL {
            assert!(family.name.starts_with("gateway_"), "{}", family.name);
            assert!(family.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(family.kind == Kind::Counter, family.name.ends_with("_total"), "{}", family.name);
            assert!(!family.help.is_empty() && !family.help.contains('\n'), "{}", family.name);
            assert!(seen.insert(family.name), "duplicate {}", family.name);
        }
        assert_eq!(family(CLOSES_TOTAL).map(|f| f.label), Some(Some("code")));
        assert_eq!(family(SESSIONS_OPEN).map(|f| f.label), Some(None));
    }
}
