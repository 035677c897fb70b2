//! Media tickets end to end (SPEC §6.8) against a real S3-compatible server,
//! `s3s-fs` (crates.io), started on loopback with its own credentials: the
//! store checks every presigned URL's signature and expiry itself.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{ClientError, Event, MediaRef};
use protocol::{Capabilities, Conversation, ErrorCode, MediaClass, MediaId, Payload, UserId};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::support::{media_section, temp_dir, ObjectStore, Pki};
use super::{client_config, connect, deliveries, wait_for, within, Cluster, Mode};

/// A TLS front for the store (rustls, `pki`'s certificate for `localhost`),
/// as an https object store looks to the node and the client; its port.
async fn tls_front(pki: &Pki, store_port: u16) -> u16 {
    let certs =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", store_port)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// One HTTP/1.1 request with `std`: the status and the body.
fn http(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |at| at + 4);
    (status, answer[split..].to_vec())
}

/// The upload ticket for a blob of `size` bytes, or the ERROR refusing it.
async fn upload_ticket(
    client: &mut client::Client,
    size: u64,
) -> Result<protocol::MediaUploadTicket, protocol::Error> {
    let request = client.media_upload(9, size, MediaClass::Image).await.unwrap();
    wait_for(client, |event| match event {
        Event::MediaUploadTicket(ticket) if ticket.request == request => Some(Ok(ticket.clone())),
        Event::Error(error) if error.reference == request => Some(Err(error.clone())),
        _ => None,
    })
    .await
}

fn refused_code(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, u32) {
    match result {
        Err(ClientError::Refused { code, retry_after_ms, .. }) => (code, retry_after_ms),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

super::in_modes!(an_uploaded_blob_reaches_the_recipient_through_a_message: embedded Embedded);
async fn an_uploaded_blob_reaches_the_recipient_through_a_message(mode: Mode) {
    let store = ObjectStore::start();
    let cluster = Cluster::start(mode, &store.config(""));
    let mut alice = connect(&cluster, 1, 1).await;
    let mut bob = connect(&cluster, 2, 1).await;
    let blob: Bytes = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>().into();
    let media = within(alice.upload(blob.clone(), MediaClass::Image)).await.unwrap();
    assert_eq!(media.size, 300_000);
    // The message carries the reference (a real client adds the key and
    // encrypts the payload).
    alice
        .send(Conversation::Direct(UserId(2)), Payload::new(media.media_id.bytes().clone()).unwrap())
        .await
        .unwrap();
    let delivered = deliveries(&mut bob, 1).await;
    let media_id = MediaId::new(delivered[0].payload.bytes().clone()).unwrap();
    let fetched = within(bob.download(&MediaRef { media_id, size: 300_000 })).await.unwrap();
    assert!(fetched == blob, "the recipient fetched other bytes");
    // One object, under its class, named by the id's random part alone.
    let stored: Vec<_> = walk(&store.root.join("media/media/image"));
    assert_eq!(stored.len(), 1, "one object under media/image/: {stored:?}");
    let name = stored[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert!(cluster.gateway.metric("gateway_media_tickets_total{result=\"granted\"}") >= 2.0);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|entry| entry.path()).filter(|path| path.is_file()).collect()
}

super::in_modes!(the_store_refuses_expired_tampered_and_resized_uploads: embedded Embedded);
async fn the_store_refuses_expired_tampered_and_resized_uploads(mode: Mode) {
    let store = ObjectStore::start();
    let cluster = Cluster::start(mode, &store.config("ticket_lifetime_secs = 2\n"));
    let mut alice = connect(&cluster, 1, 1).await;
    let ticket = upload_ticket(&mut alice, 5).await.unwrap();
    let url = ticket.url.as_str().to_owned();
    assert!(url.contains("X-Amz-Signature="), "a presigned URL: {url}");
    let headers: Vec<(String, String)> =
        ticket.headers.iter().map(|h| (h.name.as_str().to_owned(), h.value.as_str().to_owned())).collect();
    assert_eq!(headers, vec![("content-length".to_owned(), "5".to_owned())]);
    // Another object name under the same signature.
    let tampered = url.replacen("/media/media/", "/media/other/", 1);
    assert_eq!(http("PUT", &tampered, &headers, b"12345").0, 403, "a tampered URL");
    // Another size than the one signed.
    let resized = [("content-length".to_owned(), "6".to_owned())];
    assert_eq!(http("PUT", &url, &resized, b"123456").0, 403, "a body of another size");
    // The same URL with the signed size goes through (the 403s above were
    // the tampering), and may be used again until it expires.
    assert_eq!(http("PUT", &url, &headers, b"12345").0, 200, "the untampered upload");
    // Past its lifetime the same URL is refused.
    let expires_at = ticket.expires_at.0;
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(expires_at.saturating_sub(now()) + 1_100)).await;
    assert_eq!(http("PUT", &url, &headers, b"54321").0, 403, "an expired ticket");
    // A fresh ticket works.
    let fresh = upload_ticket(&mut alice, 5).await.unwrap();
    assert_eq!(http("PUT", fresh.url.as_str(), &headers, b"12345").0, 200);
}

super::in_modes!(size_quota_and_unknown_media_are_refused_with_their_codes: embedded Embedded);
async fn size_quota_and_unknown_media_are_refused_with_their_codes(mode: Mode) {
    let store = ObjectStore::start();
    let cluster = Cluster::start(mode, &store.config("max_blob_bytes = 1000\nquota_bytes_per_day = 1500\n"));
    let mut alice = connect(&cluster, 1, 1).await;
    let refused = upload_ticket(&mut alice, 1001).await.unwrap_err();
    assert_eq!((refused.code, refused.retryable), (ErrorCode::MEDIA_TOO_LARGE, false));
    let first = within(alice.upload(Bytes::from(vec![1; 900]), MediaClass::Document)).await.unwrap();
    let (code, retry_after_ms) =
        refused_code(within(alice.upload(Bytes::from(vec![2; 900]), MediaClass::Document)).await);
    assert_eq!(code, ErrorCode::MEDIA_QUOTA_EXCEEDED);
    assert!(retry_after_ms > 0 && retry_after_ms <= 86_400_000, "until the UTC day ends: {retry_after_ms}");
    // The session goes on, and downloads take no quota.
    assert_eq!(within(alice.download(&first)).await.unwrap(), Bytes::from(vec![1; 900]));
    // An id the fleet never issued, and an issued one altered.
    let forged = MediaRef { media_id: MediaId::new(vec![1; 60]).unwrap(), size: 900 };
    assert_eq!(refused_code(within(alice.download(&forged)).await).0, ErrorCode::UNKNOWN_MEDIA);
    let mut bytes = first.media_id.bytes().to_vec();
    bytes[3] ^= 1;
    let altered = MediaRef { media_id: MediaId::new(bytes).unwrap(), size: 900 };
    assert_eq!(refused_code(within(alice.download(&altered)).await).0, ErrorCode::UNKNOWN_MEDIA);
    assert!(cluster.gateway.metric("gateway_media_tickets_total{result=\"unknown_media\"}") >= 2.0);
    // A size that disagrees with the id's is refused before any transfer.
    let resized = MediaRef { media_id: first.media_id.clone(), size: 901 };
    let mismatch = within(alice.download(&resized)).await.unwrap_err();
    assert!(matches!(mismatch, ClientError::ObjectStore { status: 0, .. }), "{mismatch:?}");
    // An issued id whose blob was never put: the store's 404, not resumable.
    let unused = upload_ticket(&mut alice, 10).await;
    let never = MediaRef { media_id: unused.unwrap().media_id, size: 10 };
    let missing = within(alice.download(&never)).await.unwrap_err();
    assert!(
        matches!(missing, ClientError::ObjectStore { status: 404, .. }) && !missing.is_resumable(),
        "{missing:?}"
    );
}

super::in_modes!(a_store_outage_gives_a_retryable_error_until_it_is_back: embedded Embedded);
async fn a_store_outage_gives_a_retryable_error_until_it_is_back(mode: Mode) {
    let mut store = ObjectStore::start();
    let cluster = Cluster::start(mode, &store.config("probe_interval_ms = 100\n"));
    let mut alice = connect(&cluster, 1, 1).await;
    within(alice.upload(Bytes::from_static(b"before"), MediaClass::Audio)).await.unwrap();
    store.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, retry_after_ms) = loop {
        match within(alice.upload(Bytes::from_static(b"during"), MediaClass::Audio)).await {
            Err(ClientError::Refused { code, retry_after_ms, .. }) => break (code, retry_after_ms),
            // Granted before the check saw the outage: the PUT itself fails.
            Err(_) => {}
            Ok(media) => panic!("uploaded {media:?} with the store down"),
        }
        assert!(Instant::now() < deadline, "no refusal while the store is down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, ErrorCode::BACKEND_UNAVAILABLE);
    assert_eq!(code.retry(), protocol::Retry::Retryable);
    assert!(retry_after_ms > 0);
    store.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while within(alice.upload(Bytes::from_static(b"after"), MediaClass::Audio)).await.is_err() {
        assert!(Instant::now() < deadline, "tickets still refused after the store came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of `config`, and the capabilities its AUTH_OK granted.
async fn connect_granted(config: client::ClientConfig) -> (client::Client, Capabilities) {
    let mut client = within(client::Client::connect(config)).await.unwrap();
    let granted = wait_for(&mut client, |event| match event {
        Event::Authenticated(ok) => Some(ok.capabilities),
        _ => None,
    })
    .await;
    (client, granted)
}

/// The session ends with 4001 UNEXPECTED_FRAME.
async fn assert_closed_4001(client: &mut client::Client) {
    let closed = loop {
        if let Err(err) = within(client.next_event()).await {
            break err;
        }
    };
    assert!(
        matches!(closed, ClientError::Closed { code, .. } if code == protocol::CloseCode::UNEXPECTED_FRAME),
        "{closed:?}"
    );
}

super::in_modes!(media_frames_without_the_capability_close_the_session: embedded Embedded);
async fn media_frames_without_the_capability_close_the_session(mode: Mode) {
    // A node without an object store grants no MEDIA capability.
    let cluster = Cluster::start(mode, "");
    let mut config = client_config(&cluster, 1, 1, 0);
    config.capabilities = Capabilities::ALL;
    let (mut alice, granted) = connect_granted(config).await;
    assert!(!granted.contains(Capabilities::MEDIA), "granted {granted:?} without [media]");
    // The client library refuses before sending anything...
    let refused = alice.upload(Bytes::from_static(b"x"), MediaClass::Image).await.unwrap_err();
    assert!(matches!(refused, ClientError::NotGranted(c) if c == Capabilities::MEDIA), "{refused:?}");
    // ...and a client that sends the frame anyway loses the session.
    let upload = protocol::MediaUpload { request: 1, client_blob: 1, size: 10, class: MediaClass::Image };
    alice.send_frames(&[protocol::Frame::MediaUpload(upload)]).await.unwrap();
    assert_closed_4001(&mut alice).await;
}

super::in_modes!(an_https_store_is_checked_and_used_only_through_a_trusted_certificate: embedded Embedded);
async fn an_https_store_is_checked_and_used_only_through_a_trusted_certificate(mode: Mode) {
    let store = ObjectStore::start();
    let pki = Pki::new("media store CA");
    let endpoint = format!("https://localhost:{}", tls_front(&pki, store.port).await);
    let ca = temp_dir().join("media-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let trusted = format!("ca_file = \"{}\"\nprobe_interval_ms = 100\n", ca.display());
    let cluster = Cluster::start(mode, &media_section(&endpoint, &trusted));
    let mut config = client_config(&cluster, 1, 1, 0);
    // The client's TLS settings serve its media transfers too.
    config.tls = Some(pki.client_tls());
    let mut alice = within(client::Client::connect(config)).await.unwrap();
    wait_for(&mut alice, |event| matches!(event, Event::Synced { .. }).then_some(())).await;
    // Several checks over TLS have passed: tickets are granted, and the
    // blob goes both ways through the TLS front.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let blob = Bytes::from_static(b"over https");
    let media = within(alice.upload(blob.clone(), MediaClass::Audio)).await.unwrap();
    assert_eq!(within(alice.download(&media)).await.unwrap(), blob);
    // A node that does not trust the store's CA finds it unreachable.
    let untrusting = Cluster::start(mode, &media_section(&endpoint, "probe_interval_ms = 100\n"));
    let mut bob = connect(&untrusting, 2, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match within(bob.upload(Bytes::from_static(b"x"), MediaClass::Audio)).await {
            Err(ClientError::Refused { code, .. }) => break assert_eq!(code, ErrorCode::BACKEND_UNAVAILABLE),
            // Granted before the first check ended: the client's own TLS
            // (public roots) refuses the store too.
            Err(_) => {}
            Ok(media) => panic!("uploaded {media:?} to a store with an untrusted certificate"),
        }
        assert!(Instant::now() < deadline, "tickets still granted for a store the node cannot verify");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

super::in_modes!(a_session_that_did_not_ask_for_media_may_not_use_it: embedded Embedded);
async fn a_session_that_did_not_ask_for_media_may_not_use_it(mode: Mode) {
    let store = ObjectStore::start();
    let cluster = Cluster::start(mode, &store.config(""));
    let mut config = client_config(&cluster, 1, 1, 0);
    config.capabilities = Capabilities(Capabilities::ALL.0 & !Capabilities::MEDIA.0);
    let (mut alice, granted) = connect_granted(config).await;
    assert!(!granted.contains(Capabilities::MEDIA), "granted {granted:?} though not asked");
    let download = protocol::MediaDownload { request: 1, media_id: MediaId::new(vec![2; 40]).unwrap() };
    alice.send_frames(&[protocol::Frame::MediaDownload(download)]).await.unwrap();
    assert_closed_4001(&mut alice).await;
}
