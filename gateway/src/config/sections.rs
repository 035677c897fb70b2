//! What the node reads from each section: typed values (durations,
//! addresses, limits derived from other keys) and each section's checks,
//! called by [`Config::validate`](super::Config::validate).

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

impl StoreConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let max = protocol::limits::MAX_DEVICES_PER_USER as u32;
        if self.max_devices == 0 || self.max_devices > max {
            return Err(invalid("store.max_devices", format!("must be 1 to {max}")));
        }
        if self.retention_days == 0 {
            return Err(invalid("store.retention_days", "must be at least 1"));
        }
        if self.fsync_interval_ms == 0 || self.fsync_interval_ms > 1_000 {
            return Err(invalid("store.fsync_interval_ms", "must be 1 to 1000"));
        }
        if self.max_inflight == 0 {
            return Err(invalid("store.max_inflight", "must be at least 1"));
        }
        if self.writers > backend_store::MAX_WRITERS {
            let max = backend_store::MAX_WRITERS;
            return Err(invalid("store.writers", format!("must be 0 to {max}")));
        }
        if self.mode == BackendMode::Remote && !self.endpoint.starts_with("http://") {
            return Err(invalid("store.endpoint", "must be an http:// URL"));
        }
        Ok(())
    }
}

impl PushConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.provider != "log" && !self.provider.starts_with("http://") {
            return Err(invalid("push.provider", "must be \"log\" or an http:// webhook URL"));
        }
        if self.max_tries == 0 {
            return Err(invalid("push.max_tries", "must be at least 1"));
        }
        if self.mode == BackendMode::Remote && !self.endpoint.starts_with("http://") {
            return Err(invalid("push.endpoint", "must be an http:// URL"));
        }
        Ok(())
    }
}

impl MessagingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let max = protocol::limits::MAX_SYNC_BATCH as u32;
        if self.sync_window == 0 || self.sync_window > max {
            return Err(invalid("messaging.sync_window", format!("must be 1 to {max}")));
        }
        Ok(())
    }
}

impl MediaConfig {
    /// Whether media tickets are on.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = &self.endpoint else { return Ok(()) };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(invalid("media.endpoint", format!("{endpoint:?} is not an http:// or https:// URL")));
        }
        if self.bucket.is_empty() || self.region.is_empty() {
            return Err(invalid("media.bucket", "bucket and region must not be empty"));
        }
        // SigV4 presigned URLs live at most 7 days.
        if !(1..=604_800).contains(&self.ticket_lifetime_secs) {
            return Err(invalid("media.ticket_lifetime_secs", "must be 1 to 604800 (7 days)"));
        }
        // S3 takes at most 5 GiB in one PUT (larger needs a multipart upload).
        if self.max_blob_bytes > 5 << 30 {
            return Err(invalid("media.max_blob_bytes", "must be at most 5 GiB (one PUT)"));
        }
        // A blob over the day's quota could never be granted: it would be
        // refused as retryable forever.
        if self.max_blob_bytes > self.quota_bytes_per_day {
            return Err(invalid("media.max_blob_bytes", "must be at most media.quota_bytes_per_day"));
        }
        let positive = [
            ("media.max_blob_bytes", self.max_blob_bytes),
            ("media.quota_bytes_per_day", self.quota_bytes_per_day),
            ("media.tickets_per_min", u64::from(self.tickets_per_min)),
            ("media.retention_days", u64::from(self.retention_days)),
            ("media.probe_interval_ms", self.probe_interval_ms),
        ];
        match positive.into_iter().find(|&(_, value)| value == 0) {
            Some((key, _)) => Err(invalid(key, "must be greater than 0")),
            None => Ok(()),
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a fleet.
    pub fn enabled(&self) -> bool {
        !self.registry.is_empty()
    }

    /// `link_listen` as a socket address.
    pub fn link_listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("cluster.link_listen", &self.link_listen)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if let Some(url) = self.registry.iter().find(|url| !url.starts_with("redis://")) {
            return Err(invalid("cluster.registry", format!("{url:?} is not a redis:// URL")));
        }
        if self.registry.len() > 1 && !self.registry_cluster {
            return Err(invalid("cluster.registry", "several URLs need registry_cluster = true"));
        }
        if self.secret_file.is_none() {
            return Err(invalid(
                "cluster.secret_file",
                "required with cluster.registry: links must authenticate",
            ));
        }
        if self.registry_timeout_ms == 0 || self.registry_timeout_ms * 3 > self.lease_ms {
            return Err(invalid("cluster.registry_timeout_ms", "must be 1 to a third of cluster.lease_ms"));
        }
        if self.ack_wait_ms > self.lease_ms {
            return Err(invalid("cluster.ack_wait_ms", "must be at most cluster.lease_ms"));
        }
        if self.link_window_bytes < (1 << 20) + 4 {
            return Err(invalid(
                "cluster.link_window_bytes",
                "must be at least 1 MiB + 4 (the largest link frame)",
            ));
        }
        if self.link_queue_bytes < (1 << 20) + 4 {
            return Err(invalid(
                "cluster.link_queue_bytes",
                "must be at least 1 MiB + 4 (the largest link frame)",
            ));
        }
        self.link_listen_addr()?;
        if let Some(advertise) = &self.link_advertise {
            parse_addr("cluster.link_advertise", advertise)?;
        }
        Ok(())
    }
}

impl NodeConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        if self.workers > MAX_WORKERS {
            return Err(invalid(
                "node.workers",
                format!("{} is over the maximum of {MAX_WORKERS}", self.workers),
            ));
        }
        if !self.uring_buffers.is_power_of_two() || self.uring_buffers > 32_768 {
            return Err(invalid("node.uring_buffers", "must be a power of two from 1 to 32768"));
        }
        if !(512..=1 << 20).contains(&self.uring_buffer_size) {
            return Err(invalid("node.uring_buffer_size", "must be from 512 to 1048576 bytes"));
        }
        if !(1..=32_768).contains(&self.uring_entries) {
            return Err(invalid("node.uring_entries", "must be from 1 to 32768"));
        }
        Ok(())
    }
}

fn parse_addr(key: &'static str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.parse().map_err(|e| {
        invalid(key, format!("{addr:?} is not an ip:port address ({e}); host names are not resolved"))
    })
}

impl ListenConfig {
    /// `ws` as a socket address.
    pub fn ws_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("listen.ws", &self.ws)
    }

    /// `wss` as a socket address, if set.
    pub fn wss_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.wss.as_deref().map(|wss| parse_addr("listen.wss", wss)).transpose()
    }

    /// `admin` as a socket address.
    pub fn admin_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("listen.admin", &self.admin)
    }

    /// With a connection limit: accepting stops when `max_connections` are
    /// open and resumes once fewer than this many are, `max_connections ×
    /// accept_resume_ratio` rounded up (so at least 1, at most the limit).
    /// `None` without a limit.
    pub fn accept_resume_below(&self) -> Option<usize> {
        (self.max_connections > 0).then(|| {
            let resume = (self.max_connections as f64 * self.accept_resume_ratio).ceil() as usize;
            resume.clamp(1, self.max_connections)
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ws = self.ws_addr()?;
        let wss = self.wss_addr()?;
        let admin = self.admin_addr()?;
        let clash = |a: SocketAddr, b: SocketAddr| {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        if clash(ws, admin) {
            return Err(invalid("listen.admin", format!("{admin} overlaps listen.ws {ws}")));
        }
        if let Some(wss) = wss {
            if clash(ws, wss) {
                return Err(invalid("listen.wss", format!("{wss} overlaps listen.ws {ws}")));
            }
            if clash(wss, admin) {
                return Err(invalid("listen.admin", format!("{admin} overlaps listen.wss {wss}")));
            }
        }
        if self.backlog == 0 || self.backlog > i32::MAX as u32 {
            return Err(invalid("listen.backlog", format!("{} is not in 1..={}", self.backlog, i32::MAX)));
        }
        if self.accepts_per_turn == 0 {
            return Err(invalid("listen.accepts_per_turn", "0 would never accept a connection"));
        }
        let ratio = self.accept_resume_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(invalid("listen.accept_resume_ratio", format!("{ratio} is not in (0, 1]")));
        }
        Ok(())
    }
}

/// Milliseconds as a [`Duration`].
fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

impl SessionConfig {
    /// `handshake_timeout_ms`.
    pub fn handshake_timeout(&self) -> Duration {
        ms(self.handshake_timeout_ms)
    }

    /// `auth_timeout_ms`.
    pub fn auth_timeout(&self) -> Duration {
        ms(self.auth_timeout_ms)
    }

    /// `heartbeat_ms`.
    pub fn heartbeat(&self) -> Duration {
        ms(self.heartbeat_ms)
    }

    /// Silence after which a client is closed: `heartbeat_ms × heartbeat_misses`.
    pub fn heartbeat_timeout(&self) -> Duration {
        ms(self.heartbeat_ms.saturating_mul(u64::from(self.heartbeat_misses)))
    }

    /// `write_stall_ms`.
    pub fn write_stall(&self) -> Duration {
        ms(self.write_stall_ms)
    }

    /// `linger_ms`.
    pub fn linger(&self) -> Duration {
        ms(self.linger_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("session.handshake_timeout_ms", self.handshake_timeout_ms),
            ("session.auth_timeout_ms", self.auth_timeout_ms),
            ("session.heartbeat_ms", self.heartbeat_ms),
            ("session.heartbeat_misses", u64::from(self.heartbeat_misses)),
            ("session.write_stall_ms", self.write_stall_ms),
            ("session.linger_ms", self.linger_ms),
        ];
        if let Some((key, _)) = positive.into_iter().find(|&(_, value)| value == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        let max_message = protocol::limits::MAX_CLIENT_MESSAGE_LEN;
        if self.max_message == 0 || self.max_message > max_message {
            return Err(invalid(
                "session.max_message",
                format!("{} is not in 1..={max_message} (protocol MAX_CLIENT_MESSAGE_LEN)", self.max_message),
            ));
        }
        let max_payload = protocol::limits::MAX_PAYLOAD;
        if self.max_payload == 0 || self.max_payload > max_payload {
            return Err(invalid(
                "session.max_payload",
                format!("{} is not in 1..={max_payload} (protocol MAX_PAYLOAD)", self.max_payload),
            ));
        }
        if self.max_payload >= self.max_message {
            return Err(invalid(
                "session.max_payload",
                format!("{} must be below session.max_message ({})", self.max_payload, self.max_message),
            ));
        }
        if self.outbound_pause_bytes == 0 || self.outbound_pause_bytes >= self.outbound_queue_bytes {
            return Err(invalid(
                "session.outbound_pause_bytes",
                format!(
                    "{} must be above 0 and below session.outbound_queue_bytes ({})",
                    self.outbound_pause_bytes, self.outbound_queue_bytes
                ),
            ));
        }
        if self.outbound_preauth_bytes == 0 || self.outbound_preauth_bytes > self.outbound_queue_bytes {
            return Err(invalid(
                "session.outbound_preauth_bytes",
                format!(
                    "{} must be above 0 and at most session.outbound_queue_bytes ({})",
                    self.outbound_preauth_bytes, self.outbound_queue_bytes
                ),
            ));
        }
        if self.echo_max_message == 0 || self.echo_max_message > ECHO_MAX_MESSAGE_LIMIT {
            return Err(invalid(
                "session.echo_max_message",
                format!("{} is not in 1..={ECHO_MAX_MESSAGE_LIMIT}", self.echo_max_message),
            ));
        }
        Ok(())
    }
}

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.connections_per_ip_per_sec", u64::from(self.connections_per_ip_per_sec)),
            ("limits.connections_per_ip_burst", u64::from(self.connections_per_ip_burst)),
            ("limits.frames_per_sec", u64::from(self.frames_per_sec)),
            ("limits.frames_burst", u64::from(self.frames_burst)),
            ("limits.worker_inbox", u64::try_from(self.worker_inbox).unwrap_or(u64::MAX)),
            ("limits.logins_in_flight", u64::try_from(self.logins_in_flight).unwrap_or(u64::MAX)),
        ];
        match positive.into_iter().find(|&(_, value)| value == 0) {
            Some((key, _)) => Err(invalid(key, "must be greater than 0")),
            None => Ok(()),
        }
    }
}

impl DrainConfig {
    /// `window_ms`.
    pub fn window(&self) -> Duration {
        ms(self.window_ms)
    }

    /// `deadline_ms`.
    pub fn deadline(&self) -> Duration {
        ms(self.deadline_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.deadline_ms == 0 {
            return Err(invalid("drain.deadline_ms", "must be greater than 0"));
        }
        if self.window_ms > self.deadline_ms {
            return Err(invalid(
                "drain.window_ms",
                format!("{} must not exceed drain.deadline_ms ({})", self.window_ms, self.deadline_ms),
            ));
        }
        Ok(())
    }
}
