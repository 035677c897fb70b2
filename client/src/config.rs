//! [`ClientConfig`]: where to connect, as which device, and the deadlines.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Capabilities, DeviceId, Seq};

/// How a [`Client`](crate::Client) connects.
#[derive(Clone)]
pub struct ClientConfig {
    /// `ws://host:port/path` or `wss://host:port/path`, e.g.
    /// `ws://127.0.0.1:7700/ws`. The port defaults to 80 or 443.
    pub url: String,
    /// Other nodes of the fleet (URLs of the same form): when a connect
    /// fails in a way a reconnect may fix (refused, reset, timed out, a
    /// resumable close), the next one is tried, each once per connect, the
    /// one that answers kept. Empty: `url` only.
    pub fallback_urls: Vec<String>,
    /// The signed token of HELLO (at most `MAX_TOKEN` bytes).
    pub token: Bytes,
    /// This device; must match the token.
    pub device: DeviceId,
    /// Optional traffic asked for (receipts, presence, typing).
    pub capabilities: Capabilities,
    /// Last seq this device acknowledged in an earlier run (`Seq(0)`: none).
    pub resume_after: Seq,
    /// First client id of this run's sends (0 is read as 1). Ids must stay
    /// unique per device across runs: persist
    /// [`Session::next_client_id`](crate::Session::next_client_id).
    pub first_client_id: u64,
    /// TLS settings for `wss://` and for https media transfers; `None`
    /// trusts the webpki roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Deadline for TCP connect, TLS and the WebSocket upgrade together.
    pub connect_timeout: Duration,
    /// Deadline from HELLO to AUTH_OK, and for a media ticket's answer.
    pub auth_timeout: Duration,
    /// Deadline for one media transfer (the HTTP PUT or GET of
    /// [`Client::upload`](crate::Client::upload) and
    /// [`Client::download`](crate::Client::download)), its connect
    /// included.
    pub media_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with every capability, no resume cursor, client ids
    /// from 1, webpki roots, 10 s deadlines (10 min for a media transfer).
    pub fn new(url: impl Into<String>, token: impl Into<Bytes>, device: DeviceId) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            token: token.into(),
            device,
            capabilities: Capabilities::ALL,
            resume_after: Seq(0),
            first_client_id: 1,
            tls: None,
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(600),
        }
    }
}

/// Prints everything but the token.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("fallback_urls", &self.fallback_urls)
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("device", &self.device)
            .field("capabilities", &self.capabilities)
            .field("resume_after", &self.resume_after)
            .field("first_client_id", &self.first_client_id)
            .field("tls", &self.tls.as_ref().map(|_| "custom"))
            .field("connect_timeout", &self.connect_timeout)
            .field("auth_timeout", &self.auth_timeout)
            .field("media_timeout", &self.media_timeout)
            .finish()
    }
}
