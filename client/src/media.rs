//! Media transfers (SPEC §6.8): the encrypted blob goes straight to the
//! object store and back over HTTP(S), with the presigned URL of a ticket the
//! gateway issued. Encryption is the application's: it encrypts before
//! [`Client::upload`](crate::Client::upload), puts the [`MediaRef`] and its
//! key in the payload of an ordinary message, and decrypts after
//! [`Client::download`](crate::Client::download).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use protocol::{HttpMethod, MediaDownloadTicket, MediaId, MediaUploadTicket};

use crate::error::ClientError;
use crate::transport;

/// What a message carries to name a blob (beside the application's key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The id the gateway issued.
    pub media_id: MediaId,
    /// The blob's size, bytes.
    pub size: u64,
}

/// Longest error answer read from the object store, and the part of it kept.
const ERROR_READ: usize = 64 * 1024;
const ERROR_TEXT: usize = 512;

/// PUTs `blob` with `ticket` (its method, URL and headers), within `limit`.
pub(crate) async fn put(
    ticket: &MediaUploadTicket,
    blob: Bytes,
    tls: Option<&Arc<rustls::ClientConfig>>,
    limit: Duration,
) -> Result<(), ClientError> {
    let method = match ticket.method {
        HttpMethod::Put => Method::PUT,
        HttpMethod::Get => Method::GET,
    };
    let headers: Vec<(String, String)> = ticket
        .headers
        .iter()
        .map(|header| (header.name.as_str().to_owned(), header.value.as_str().to_owned()))
        .collect();
    let request = exchange(method, ticket.url.as_str(), headers, blob, ERROR_READ, tls);
    within(limit, request).await.map(drop)
}

/// GETs the blob of `ticket`, which must be `expected` bytes (the size the
/// sender announced in its message; the ticket's must agree).
pub(crate) async fn get(
    ticket: &MediaDownloadTicket,
    expected: u64,
    tls: Option<&Arc<rustls::ClientConfig>>,
    limit: Duration,
) -> Result<Bytes, ClientError> {
    if ticket.size != expected {
        let text = format!("the ticket announces {} bytes, the message {expected}", ticket.size);
        return Err(ClientError::ObjectStore { status: 0, text });
    }
    let most = usize::try_from(expected).unwrap_or(usize::MAX);
    let request = exchange(Method::GET, ticket.url.as_str(), Vec::new(), Bytes::new(), most, tls);
    let blob = within(limit, request).await?;
    if blob.len() as u64 != expected {
        let text = format!("{} bytes where {expected} were announced", blob.len());
        return Err(ClientError::ObjectStore { status: 200, text });
    }
    Ok(blob)
}

/// `request` within `limit`.
async fn within<T>(
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, request).await.unwrap_or_else(|_| {
        Err(ClientError::ObjectStore { status: 0, text: format!("no answer within {limit:?}") })
    })
}

/// One HTTP/1.1 request on its own connection; the answer's body (at most
/// `limit` bytes) if the status is 2xx. Every failure is `ObjectStore`
/// (status 0 when there was no answer): the session is not at fault.
async fn exchange(
    method: Method,
    url: &str,
    headers: Vec<(String, String)>,
    body: Bytes,
    limit: usize,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Bytes, ClientError> {
    let invalid = |why: &str| ClientError::InvalidUrl(format!("media URL {url:?}: {why}"));
    let failed = |what: &str, err: &dyn std::fmt::Display| ClientError::ObjectStore {
        status: 0,
        text: format!("{what}: {err}"),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(invalid("scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
    // An https store is trusted by the client's TLS settings (a private CA
    // serves the gateway and the store), else by the webpki roots.
    let stream = match (secure, tls) {
        (false, _) => transport::connect(host, port, None).await,
        (true, Some(tls)) => transport::connect(host, port, Some(Some(tls))).await,
        (true, None) => transport::connect(host, port, Some(Some(&transport::default_tls_config()?))).await,
    }
    .map_err(|err| failed("connecting to the object store", &err))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| failed("HTTP", &err))?;
    let driver = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let mut request = Request::builder().method(method).uri(path).header(HOST, authority.as_str());
    for (name, value) in headers {
        let name = HeaderName::try_from(name).map_err(|_| invalid("bad header name"))?;
        let value = HeaderValue::try_from(value).map_err(|_| invalid("bad header value"))?;
        request = request.header(name, value);
    }
    let request = request.body(Full::new(body)).map_err(|err| invalid(&err.to_string()))?;
    let response = sender.send_request(request).await.map_err(|err| failed("HTTP", &err))?;
    let status = response.status();
    let most = if status.is_success() { limit } else { ERROR_READ };
    let collected = Limited::new(response.into_body(), most).collect().await;
    driver.abort();
    let body = collected.map(|collected| collected.to_bytes());
    if !status.is_success() {
        // The store's reason (S3: an XML error document), cut to its start.
        let body = body.unwrap_or_default();
        let text =
            String::from_utf8_lossy(body.get(..ERROR_TEXT.min(body.len())).unwrap_or_default()).into_owned();
        return Err(ClientError::ObjectStore { status: status.as_u16(), text });
    }
    body.map_err(|err| ClientError::ObjectStore {
        status: status.as_u16(),
        text: format!("reading the answer (at most {most} bytes): {err}"),
    })
}
