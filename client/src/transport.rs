//! Opening the byte stream under the WebSocket: URL parsing, TCP, TLS (rustls
//! with the ring provider) and the WebSocket upgrade.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use protocol::limits::MAX_SERVER_MESSAGE_LEN;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::error::ClientError;

/// A rustls client configuration with the ring provider, safe default
/// protocol versions and `roots` as trust anchors (no client certificate).
/// Use it to trust a private CA: pass the result as
/// [`ClientConfig::tls`](crate::ClientConfig::tls).
pub fn tls_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`tls_config`] trusting the Mozilla roots of `webpki-roots`.
pub fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    tls_config(roots)
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    /// Host without IPv6 brackets (for DNS and SNI).
    host: String,
    port: u16,
    tls: bool,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |why: &str| ClientError::InvalidUrl(format!("{url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(invalid("scheme must be ws or wss")),
        };
        let host = uri.host().filter(|host| !host.is_empty()).ok_or_else(|| invalid("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { uri, host, port, tls })
    }

    /// The same scheme and path on another `host:port` (a GOAWAY redirect).
    pub(crate) fn redirect(&self, authority: &str) -> Result<Self, ClientError> {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = self.uri.path_and_query().map_or("/", |path| path.as_str());
        Self::parse(&format!("{scheme}://{authority}{path}"))
    }

    /// The URL, for logs.
    pub(crate) fn url(&self) -> String {
        self.uri.to_string()
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    #[cfg(test)]
    pub(crate) fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    #[cfg(test)]
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects, runs TLS when `endpoint` is `wss`, and upgrades to WebSocket.
/// Messages from the server are limited to `MAX_SERVER_MESSAGE_LEN`.
pub(crate) async fn open(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<WebSocketStream<Transport>, ClientError> {
    let transport = connect(&endpoint.host, endpoint.port, endpoint.tls.then_some(tls)).await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SERVER_MESSAGE_LEN))
        .max_frame_size(Some(MAX_SERVER_MESSAGE_LEN));
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(&endpoint.uri, transport, Some(config)).await?;
    Ok(ws)
}

/// TCP to `host:port`, then TLS when `tls` is `Some` (with its config, which
/// must be there).
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<Option<&Arc<rustls::ClientConfig>>>,
) -> Result<Transport, ClientError> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Transport::Plain(tcp)),
        Some(None) => Err(ClientError::InvalidUrl(format!("TLS to {host} without a TLS config"))),
        Some(Some(config)) => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| ClientError::InvalidUrl(format!("{host:?} is no TLS name")))?;
            let stream =
                TlsConnector::from(Arc::clone(config)).connect(name, tcp).await.map_err(tls_error)?;
            Ok(Transport::Tls(Box::new(stream)))
        }
    }
}

/// tokio-rustls reports handshake failures as I/O errors wrapping a
/// `rustls::Error`; unwrap those.
fn tls_error(err: io::Error) -> ClientError {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => ClientError::Tls(tls.clone()),
        None => ClientError::Io(err),
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
