//! The background check of the object store: a presigned `HEAD` of the
//! bucket every interval, on its own thread, so that no ticket waits for the
//! network. While checks fail, tickets are refused as retryable
//! (`BACKEND_UNAVAILABLE`), and one log line says when that starts and ends.

use std::io;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use url::Url;

use gateway_media::Media;

/// Longest wait for the store's answer to one check.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Starts checking `media`'s store every `interval` (the first check at
/// once); the thread ends when `media` is dropped. An https endpoint is
/// trusted by the public roots and the certificates of `ca_file`.
pub(super) fn spawn(
    media: &Arc<Media>,
    interval: Duration,
    ca_file: Option<&Path>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let media: Weak<Media> = Arc::downgrade(media);
    let tls = Arc::new(tls_config(ca_file)?);
    std::thread::Builder::new().name("media-probe".into()).spawn(move || loop {
        let Some(media) = media.upgrade() else { return };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let url = media.head_bucket_url(now_ms);
        let up = match check(&url, &tls) {
            Ok(status) if (200..300).contains(&status) => true,
            Ok(status) => {
                tracing::debug!(status, "object store check answered");
                false
            }
            Err(err) => {
                tracing::debug!(%err, "object store check failed");
                false
            }
        };
        media.set_store_up(up, interval);
        drop(media);
        std::thread::sleep(interval);
    })
}

/// The HTTP status of a `HEAD` of `url`.
fn check(url: &Url, tls: &Arc<rustls::ClientConfig>) -> io::Result<u16> {
    let host = url.host_str().ok_or_else(|| io::Error::other("endpoint without a host"))?;
    let port = url.port_or_known_default().ok_or_else(|| io::Error::other("endpoint without a port"))?;
    let address =
        (host, port).to_socket_addrs()?.next().ok_or_else(|| io::Error::other("host has no address"))?;
    let tcp = TcpStream::connect_timeout(&address, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let path = &url[url::Position::BeforePath..];
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    match url.scheme() {
        "https" => {
            let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(io::Error::other)?;
            let connection =
                rustls::ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
            exchange(rustls::StreamOwned::new(connection, tcp), &request)
        }
        _ => exchange(tcp, &request),
    }
}

/// Sends `request` and reads the answer's status line.
fn exchange(mut stream: impl io::Read + io::Write, request: &str) -> io::Result<u16> {
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before an answer"));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(_) if response.code.is_some() => return Ok(response.code.unwrap_or_default()),
            Ok(_) if head.len() < 16 * 1024 => {}
            Ok(_) => return Err(io::Error::other("answer head over 16 KiB")),
            Err(err) => return Err(io::Error::other(err)),
        }
    }
}

/// The public roots and `ca_file`'s certificates, for an `https` endpoint.
fn tls_config(ca_file: Option<&Path>) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(file) = ca_file {
        let named = |err: &dyn std::fmt::Display| {
            io::Error::other(format!("media.ca_file {}: {err}", file.display()))
        };
        for cert in CertificateDer::pem_file_iter(file).map_err(|err| named(&err))? {
            roots.add(cert.map_err(|err| named(&err))?).map_err(|err| named(&err))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}
