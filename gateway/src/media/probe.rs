//! The background check of the object store: a presigned `HEAD` of the
//! bucket every interval, on its own thread, so that no ticket waits for the
//! network. While checks fail, tickets are refused as retryable
//! (`BACKEND_UNAVAILABLE`), and one log line says when that starts and ends.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
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
        let failure = match check(&url, &tls) {
            Ok(status) if (200..300).contains(&status) => None,
            // 403: wrong credentials, or a policy without s3:ListBucket
            // (HEAD of a bucket needs it); 301 or 400: often the region.
            Ok(status) => Some(format!("the store answered HTTP {status} to a HEAD of the bucket")),
            Err(err) => Some(err.to_string()),
        };
        media.set_store_up(failure.as_deref(), interval);
        drop(media);
        std::thread::sleep(interval);
    })
}

/// The HTTP status of a `HEAD` of `url`.
fn check(url: &Url, tls: &Arc<rustls::ClientConfig>) -> io::Result<u16> {
    let address = url
        .socket_addrs(|| None)?
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::other("the endpoint's host has no address"))?;
    let tcp = TcpStream::connect_timeout(&address, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let path = &url[url::Position::BeforePath..];
    // Host as the signature has it (IPv6 in brackets, the port if not the
    // scheme's default).
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    match url.scheme() {
        "https" => {
            let name = match url.host() {
                Some(url::Host::Domain(name)) => {
                    ServerName::try_from(name.to_owned()).map_err(io::Error::other)?
                }
                Some(url::Host::Ipv4(ip)) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                Some(url::Host::Ipv6(ip)) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                None => return Err(io::Error::other("endpoint without a host")),
            };
            let connection =
                rustls::ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
            exchange(rustls::StreamOwned::new(connection, tcp), &request)
        }
        _ => exchange(tcp, &request),
    }
}

/// Sends `request` and reads the answer's status line (`HTTP/1.1 200 OK`).
fn exchange(mut stream: impl io::Read + io::Write, request: &str) -> io::Result<u16> {
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() > 4096 {
            return Err(io::Error::other("no status line in the first 4 KiB"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before an answer"));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split(' ');
    match (words.next(), words.next().and_then(|code| code.trim().parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => Ok(code),
        _ => Err(io::Error::other(format!(
            "not an HTTP answer: {:?}",
            line.lines().next().unwrap_or_default()
        ))),
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
