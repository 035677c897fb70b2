//! The wss listener end to end: the real binary with a CA and certificate
//! made by rcgen in the test, the client library over `wss://` trusting only
//! that CA, a raw TLS client for large messages, and SIGHUP reloading the
//! certificate under open sessions.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, ClientError, Event};
use protocol::{CloseCode, DeviceId};
use rustls::pki_types::ServerName;
use support::{client_frame, free_port, temp_dir, upgrade_request, Gateway, Pki, Raw};

/// TLS settings trusting only `pki`'s CA, limited to `version`.
fn client_tls_version(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    Arc::new(config)
}

/// A node with a wss listener presenting `pki`'s certificate (`extra`: more
/// TOML, sections other than `[listen]` and `[tls]`).
struct Wss {
    gateway: Gateway,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Wss {
    fn start(pki: &Pki, extra: &str) -> Self {
        let dir = temp_dir();
        pki.write(&dir);
        let addr = free_port();
        let config = format!(
            "[listen]\nwss = \"{addr}\"\n[tls]\ncert = {:?}\nkey = {:?}\n{extra}",
            dir.join("cert.pem").to_str().unwrap(),
            dir.join("key.pem").to_str().unwrap(),
        );
        Self { gateway: Gateway::start_in(dir.clone(), &config), addr, dir }
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}/ws", self.addr.port())
    }

    /// Connects and authenticates (user, device) with the given TLS settings.
    async fn connect(
        &self,
        tls: Arc<rustls::ClientConfig>,
        user: u64,
        device: u32,
    ) -> Result<Client, ClientError> {
        let token = self.gateway.token(user, device);
        let mut config = ClientConfig::new(self.url(), token.into_bytes(), DeviceId(device));
        config.tls = Some(tls);
        within(Client::connect(config)).await
    }

    /// Waits until `series` reaches `at_least` (the node counts after the
    /// client has seen the outcome).
    fn wait_metric(&self, series: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.gateway.metric(series) < at_least {
            assert!(Instant::now() < deadline, "{series} stayed below {at_least}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("timed out")
}

/// PING → PONG on an authenticated client.
async fn ping_pong(client: &mut Client) {
    let nonce = client.ping().await.unwrap();
    loop {
        match within(client.next_event()).await.unwrap() {
            Event::Pong { nonce: got } => {
                assert_eq!(got, nonce);
                return;
            }
            Event::Authenticated(_) | Event::Synced { .. } | Event::SyncProgress { .. } => {}
            other => panic!("expected PONG, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn wss_authenticates_and_answers_ping_beside_ws() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "");
    let mut client = wss.connect(pki.client_tls(), 42, 1).await.unwrap();
    assert_eq!(client.user(), Some(protocol::UserId(42)));
    ping_pong(&mut client).await;

    // TLS 1.2 too.
    let mut tls12 = wss.connect(client_tls_version(&pki, &rustls::version::TLS12), 42, 2).await.unwrap();
    ping_pong(&mut tls12).await;
    let mut tls13 = wss.connect(client_tls_version(&pki, &rustls::version::TLS13), 42, 3).await.unwrap();
    ping_pong(&mut tls13).await;

    // The plain listener still serves.
    let token = wss.gateway.token(43, 1);
    let mut plain =
        within(Client::connect(ClientConfig::new(wss.gateway.url(), token.into_bytes(), DeviceId(1))))
            .await
            .unwrap();
    ping_pong(&mut plain).await;
    assert_eq!(wss.gateway.metric("gateway_sessions_open"), 4.0);
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_with_a_tls_error() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "");
    let other = Pki::new("some other CA");
    let err = wss.connect(other.client_tls(), 42, 1).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(rustls::Error::InvalidCertificate(_))), "{err:?}");
    // The client's alert ends the handshake on the node's side too.
    wss.wait_metric(r#"gateway_handshake_failures_total{reason="tls"}"#, 1.0);
    wss.wait_metric("gateway_sessions_open", 0.0);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_while_sessions_stay_up() {
    let one = Pki::new("CA one");
    let wss = Wss::start(&one, "");
    let mut a = wss.connect(one.client_tls(), 7, 1).await.unwrap();
    ping_pong(&mut a).await;

    // New files from another CA, then SIGHUP.
    let two = Pki::new("CA two");
    two.write(&wss.dir);
    wss.gateway.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = loop {
        match wss.connect(two.client_tls(), 7, 2).await {
            Ok(client) => break client,
            Err(ClientError::Tls(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the new certificate was never served: {err:?}"),
        }
    };
    ping_pong(&mut b).await;
    // The session opened under the old certificate is still up.
    ping_pong(&mut a).await;
    // New connections no longer get the old certificate.
    let err = wss.connect(one.client_tls(), 7, 3).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(rustls::Error::InvalidCertificate(_))), "{err:?}");

    // A reload that fails (a broken key) keeps the certificate in use.
    std::fs::write(wss.dir.join("key.pem"), "not a key").unwrap();
    wss.gateway.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = wss.connect(two.client_tls(), 7, 4).await.unwrap();
    ping_pong(&mut c).await;
    ping_pong(&mut a).await;
}

#[tokio::test]
async fn a_second_connection_replaces_the_first_with_a_clean_close_over_tls() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "");
    let mut first = wss.connect(pki.client_tls(), 9, 1).await.unwrap();
    let _second = wss.connect(pki.client_tls(), 9, 1).await.unwrap();
    let err = loop {
        match within(first.next_event()).await {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, ClientError::Closed { code: CloseCode::REPLACED, .. }), "{err:?}");
}

/// A blocking TLS client over std's TcpStream, trusting `pki`.
fn tls_stream(pki: &Pki, addr: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_tls(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn large_messages_cross_tls_intact() {
    // /echo sends each message back: 200 KB in is many records in, and out
    // more than one TLS write batch.
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "[session]\necho_route = true\n");
    let mut raw = Raw(tls_stream(&pki, wss.addr));
    raw.upgrade_over("/echo");
    for size in [1usize, 20_000, 200_000] {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        raw.send(&client_frame(0x2, &message));
        let (opcode, echoed) = raw.read_frame().expect("an echo");
        assert_eq!(opcode, 0x2);
        assert!(echoed == message, "echo of {size} bytes differs");
    }
    raw.send(&client_frame(0x8, &1000u16.to_be_bytes()));
    assert_eq!(raw.close_code(), Some(1000));
}

#[test]
fn the_handshake_deadline_covers_tls() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "[session]\nhandshake_timeout_ms = 300\n");
    // TCP only: no ClientHello ever comes.
    let started = Instant::now();
    let mut silent = TcpStream::connect(wss.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).unwrap_or(0), 0, "the node hangs up");
    assert!(started.elapsed() < Duration::from_secs(3), "cut after {:?}", started.elapsed());

    // TLS done, but no upgrade request: the same deadline.
    let mut raw = Raw(tls_stream(&pki, wss.addr));
    let started = Instant::now();
    assert_eq!(raw.0.read(&mut byte).unwrap_or(0), 0, "the node hangs up");
    assert!(started.elapsed() < Duration::from_secs(3), "cut after {:?}", started.elapsed());
    wss.wait_metric(r#"gateway_handshake_failures_total{reason="timeout"}"#, 2.0);
}

#[test]
fn plain_http_on_the_wss_port_gets_an_alert() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "");
    let mut raw = Raw::connect(wss.addr);
    raw.send(&upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "13"));
    let mut answer = Vec::new();
    let _ = raw.0.read_to_end(&mut answer);
    // One TLS alert record (content type 21), then the connection ends.
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
    wss.wait_metric(r#"gateway_handshake_failures_total{reason="tls"}"#, 1.0);
}

/// Found by the `tls_conn` fuzz target: a record holding the start of a
/// handshake message, then a record that does not parse, made the TLS layer
/// panic while collecting the alert (in a release build, with panic =
/// "abort", the whole node). The client gets the alert, and the one worker
/// serves the next client.
#[test]
fn a_bad_record_after_part_of_a_handshake_message_gets_an_alert_and_the_node_lives() {
    let pki = Pki::new("gateway test CA");
    let wss = Wss::start(&pki, "[node]\nworkers = 1\n");
    let mut raw = Raw::connect(wss.addr);
    raw.send(&[0x16, 0x03, 0x03, 0x00, 0x01, 0x01, 0x00]);
    let mut answer = Vec::new();
    let _ = raw.0.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&21), "an alert record: {answer:?}");
    wss.wait_metric(r#"gateway_handshake_failures_total{reason="tls"}"#, 1.0);
    let mut next = Raw(tls_stream(&pki, wss.addr));
    next.send(&upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "13"));
    let head = next.read_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}
