//! [`TlsConn`] against a rustls client in memory (no sockets), and the
//! configuration loading and reloading from PEM files.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use crate::{load_server_config, Reloadable, Settings, TlsConn, TlsError};

/// A CA and a server certificate for `localhost` it signed, as PEM.
struct Pki {
    ca: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self { ca: ca.der().clone(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Writes the PEM files into a fresh directory.
    fn write(&self, dir: &Path) -> Settings {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        Settings { cert, key, session_tickets: true }
    }
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-tls-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn server_config(pki: &Pki, test: &str) -> Arc<ServerConfig> {
    load_server_config(&pki.write(&temp_dir(test))).unwrap()
}

const V13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const V12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A client and a server connected by memory. `chunk` cuts what the client
/// sends into pieces of at most that many bytes.
struct Pair {
    client: ClientConnection,
    server: TlsConn,
    /// Plaintext the server received.
    plain: BytesMut,
    /// Plaintext the client received.
    client_plain: Vec<u8>,
    chunk: usize,
}

impl Pair {
    fn new(config: Arc<ServerConfig>, client: Arc<ClientConfig>, chunk: usize) -> Self {
        let name = ServerName::try_from("localhost").unwrap();
        Self {
            client: ClientConnection::new(client, name).unwrap(),
            server: TlsConn::new(config).unwrap(),
            plain: BytesMut::new(),
            client_plain: Vec::new(),
            chunk,
        }
    }

    /// Moves the client's pending records to the server.
    fn client_to_server(&mut self) -> Result<bool, TlsError> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        for piece in wire.chunks_mut(self.chunk) {
            let received = self.server.handle_read(piece, &mut self.plain)?;
            assert!(!received.peer_closed);
        }
        Ok(!wire.is_empty())
    }

    /// Moves the server's unsent records to the client.
    fn server_to_client(&mut self) -> Result<bool, rustls::Error> {
        let unsent = self.server.unsent().to_vec();
        self.server.consume_unsent(unsent.len());
        self.deliver(&unsent)?;
        Ok(!unsent.is_empty())
    }

    fn deliver(&mut self, mut wire: &[u8]) -> Result<(), rustls::Error> {
        while !wire.is_empty() {
            self.client.read_tls(&mut wire).unwrap();
            self.client.process_new_packets()?;
            let _ = self.client.reader().read_to_end(&mut self.client_plain);
        }
        Ok(())
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            let moved = self.client_to_server().unwrap() | self.server_to_client().unwrap();
            if !moved && !self.client.is_handshaking() && !self.server.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not complete");
    }

    /// Server → client application data, through `encrypt`.
    fn send(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(self.server.encrypt(data, &mut out).unwrap(), data.len());
        self.deliver(&out).unwrap();
        std::mem::take(&mut self.client_plain)
    }
}

fn exchange(pair: &mut Pair) {
    pair.handshake();
    assert_eq!(pair.server.alpn_protocol(), Some(&b"http/1.1"[..]));
    pair.client.writer().write_all(b"GET /ws HTTP/1.1\r\n\r\n").unwrap();
    pair.client_to_server().unwrap();
    assert_eq!(&pair.plain[..], b"GET /ws HTTP/1.1\r\n\r\n");
    assert_eq!(
        pair.send(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    );
    // Idle: nothing held beyond rustls' own state.
    assert_eq!(pair.server.buffered(), 0);
    assert!(pair.server.unsent().is_empty());
}

#[test]
fn tls13_handshake_and_data_both_ways() {
    let pki = Pki::new("tls13 CA");
    let mut pair = Pair::new(server_config(&pki, "tls13"), pki.client(V13), usize::MAX);
    exchange(&mut pair);
    assert_eq!(pair.server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn tls12_handshake_and_data_both_ways() {
    let pki = Pki::new("tls12 CA");
    let mut pair = Pair::new(server_config(&pki, "tls12"), pki.client(V12), usize::MAX);
    exchange(&mut pair);
    assert_eq!(pair.server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
}

#[test]
fn input_one_byte_at_a_time() {
    let pki = Pki::new("bytewise CA");
    for versions in [V13, V12] {
        let mut pair = Pair::new(server_config(&pki, "bytewise"), pki.client(versions), 1);
        exchange(&mut pair);
    }
}

#[test]
fn large_data_both_ways() {
    let pki = Pki::new("large CA");
    let mut pair = Pair::new(server_config(&pki, "large"), pki.client(V13), 7_000);
    pair.handshake();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    pair.client.set_buffer_limit(None);
    pair.client.writer().write_all(&data).unwrap();
    pair.client_to_server().unwrap();
    assert_eq!(&pair.plain[..], &data[..]);
    assert_eq!(pair.server.buffered(), 0, "no partial record is kept once all arrived");
    assert_eq!(pair.send(&data), data);
}

#[test]
fn nothing_is_encrypted_before_the_handshake_completes() {
    let pki = Pki::new("early CA");
    let mut server = TlsConn::new(server_config(&pki, "early")).unwrap();
    let mut out = Vec::new();
    assert_eq!(server.encrypt(b"too early", &mut out).unwrap(), 0);
    assert!(out.is_empty());
    server.close_notify(&mut out).unwrap();
    assert!(out.is_empty(), "no close_notify before the handshake");
}

#[test]
fn unsent_goes_first_and_is_released() {
    let pki = Pki::new("unsent CA");
    let mut pair = Pair::new(server_config(&pki, "unsent"), pki.client(V13), usize::MAX);
    pair.handshake();
    let mut out = Vec::new();
    pair.server.encrypt(b"first", &mut out).unwrap();
    // The socket took 3 bytes.
    pair.server.keep_unsent(&out[3..]);
    let mut more = Vec::new();
    assert_eq!(pair.server.encrypt(b"second", &mut more).unwrap(), 0, "unsent must go first");
    pair.deliver(&out[..3]).unwrap();
    pair.server_to_client().unwrap();
    assert_eq!(pair.server.buffered(), 0);
    assert_eq!(pair.send(b"second"), b"firstsecond");
}

/// The end of a write still in flight goes before records queued
/// meanwhile (io_uring: the write completes after the next read queued an
/// alert or a key update's answer).
#[test]
fn the_rest_of_a_write_in_flight_goes_before_records_queued_meanwhile() {
    let pki = Pki::new("front CA");
    let mut pair = Pair::new(server_config(&pki, "front"), pki.client(V13), usize::MAX);
    pair.handshake();
    let (mut in_flight, mut meanwhile) = (Vec::new(), Vec::new());
    pair.server.encrypt(b"first", &mut in_flight).unwrap();
    pair.server.encrypt(b"second", &mut meanwhile).unwrap();
    pair.server.keep_unsent(&meanwhile);
    // The write in flight took 3 bytes.
    pair.server.keep_unsent_front(&in_flight[3..]);
    pair.deliver(&in_flight[..3]).unwrap();
    pair.server_to_client().unwrap();
    assert_eq!(pair.send(b""), b"firstsecond");
}

#[test]
fn close_notify_ends_cleanly() {
    let pki = Pki::new("close CA");
    let mut pair = Pair::new(server_config(&pki, "close"), pki.client(V13), usize::MAX);
    pair.handshake();
    let mut out = Vec::new();
    pair.server.close_notify(&mut out).unwrap();
    pair.client.read_tls(&mut &out[..]).unwrap();
    pair.client.process_new_packets().unwrap();
    let mut buf = [0; 8];
    assert_eq!(pair.client.reader().read(&mut buf).unwrap(), 0, "clean EOF");

    // And the other way: the client's close_notify is reported.
    let mut pair = Pair::new(server_config(&pki, "close2"), pki.client(V13), usize::MAX);
    pair.handshake();
    pair.client.send_close_notify();
    let mut wire = Vec::new();
    pair.client.write_tls(&mut wire).unwrap();
    let received = pair.server.handle_read(&mut wire, &mut pair.plain).unwrap();
    assert!(received.peer_closed);
}

#[test]
fn a_client_trusting_another_ca_fails_the_handshake_on_both_sides() {
    let pki = Pki::new("server CA");
    let other = Pki::new("other CA");
    let mut pair = Pair::new(server_config(&pki, "untrusted"), other.client(V13), usize::MAX);
    pair.client_to_server().unwrap();
    let err = pair.server_to_client().unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err:?}");
    // The client's alert reaches the server.
    let err = pair.client_to_server().unwrap_err();
    assert!(matches!(err, TlsError::Connection(rustls::Error::AlertReceived(_))), "{err:?}");
    assert!(pair.server.is_handshaking());
}

#[test]
fn plaintext_http_on_the_tls_port_is_an_error_with_an_alert() {
    let pki = Pki::new("garbage CA");
    let mut server = TlsConn::new(server_config(&pki, "garbage")).unwrap();
    let mut request = b"GET /ws HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec();
    let err = server.handle_read(&mut request, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(err, TlsError::Connection(rustls::Error::InvalidMessage(_))), "{err:?}");
    assert!(!server.unsent().is_empty(), "an alert for the peer");
    assert!(server.buffered() < 64, "the alert only: the rest of the input is dropped");
    // The connection is over: rustls is not driven again (it would raise a
    // second fatal alert), and closing adds nothing.
    let mut more = b"more".to_vec();
    assert!(matches!(server.handle_read(&mut more, &mut BytesMut::new()), Err(TlsError::Failed)));
    let mut out = Vec::new();
    server.close_notify(&mut out).unwrap();
    assert!(out.is_empty());
    server.consume_unsent(server.unsent().len());
    assert!(matches!(server.encrypt(b"data", &mut out), Err(TlsError::Failed)));
}

/// Found by the `tls_conn` fuzz target: a record holding the start of a
/// handshake message, then a record that does not parse. rustls had taken
/// the first record into its handshake buffer; asking it for the alert with
/// an empty buffer made it index past the end (a panic, which aborts the
/// node). In one read and byte by byte.
#[test]
fn a_bad_record_after_part_of_a_handshake_message_is_an_error_not_a_panic() {
    let pki = Pki::new("partial CA");
    let config = server_config(&pki, "partial");
    let input = [0x16, 0x03, 0x03, 0x00, 0x01, 0x01, 0x00];
    for step in [input.len(), 1] {
        let mut server = TlsConn::new(Arc::clone(&config)).unwrap();
        let mut result = Ok(Default::default());
        for chunk in input.chunks(step) {
            result = server.handle_read(&mut chunk.to_vec(), &mut BytesMut::new());
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert!(matches!(err, TlsError::Connection(rustls::Error::InvalidMessage(_))), "{err:?}");
        assert!(!server.unsent().is_empty(), "an alert for the peer");
        let mut more = b"more".to_vec();
        assert!(matches!(server.handle_read(&mut more, &mut BytesMut::new()), Err(TlsError::Failed)));
    }
}

#[test]
fn tickets_resume_across_a_reload() {
    let pki = Pki::new("resume CA");
    let dir = temp_dir("resume");
    let tls = Reloadable::load(pki.write(&dir)).unwrap();
    let client = pki.client(V13);
    let mut first = Pair::new(tls.current(), client.clone(), usize::MAX);
    exchange(&mut first);
    // Same files again: a new configuration, the same ticket key.
    tls.reload().unwrap();
    let mut second = Pair::new(tls.current(), client, usize::MAX);
    exchange(&mut second);
    assert_eq!(second.client.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
}

#[test]
fn reload_swaps_the_certificate_and_a_failed_reload_keeps_the_old_one() {
    let old = Pki::new("old CA");
    let new = Pki::new("new CA");
    let dir = temp_dir("reload");
    let settings = old.write(&dir);
    let tls = Reloadable::load(settings.clone()).unwrap();
    let before = tls.current();

    // A broken key file: the reload fails, naming the file, and the old
    // configuration stays.
    std::fs::write(&settings.key, "not a key").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(&err, TlsError::PrivateKey { path, .. } if path == &settings.key), "{err:?}");
    assert!(err.to_string().contains("key.pem"), "{err}");
    assert!(Arc::ptr_eq(&before, &tls.current()));

    // A key that does not match the certificate.
    std::fs::write(&settings.key, &new.key_pem).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::Refused { .. }), "{err:?}");
    assert!(Arc::ptr_eq(&before, &tls.current()));

    // The new pair: new connections present it.
    new.write(&dir);
    tls.reload().unwrap();
    let mut pair = Pair::new(tls.current(), new.client(V13), usize::MAX);
    exchange(&mut pair);
    // A connection made with the old configuration is unaffected.
    let mut pair = Pair::new(before, old.client(V13), usize::MAX);
    exchange(&mut pair);
}

#[test]
fn load_errors_name_the_file() {
    let dir = temp_dir("errors");
    let pki = Pki::new("errors CA");
    let settings = pki.write(&dir);

    let missing = Settings { cert: dir.join("nope.pem"), ..settings.clone() };
    let err = load_server_config(&missing).unwrap_err();
    assert!(matches!(&err, TlsError::Certificate { path, .. } if path.ends_with("nope.pem")), "{err:?}");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let empty = Settings { cert: dir.join("empty.pem"), ..settings.clone() };
    let err = load_server_config(&empty).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");

    // The certificate where the key should be: no key section.
    let swapped = Settings { key: settings.cert.clone(), ..settings.clone() };
    let err = load_server_config(&swapped).unwrap_err();
    assert!(matches!(&err, TlsError::PrivateKey { path, .. } if path == &settings.cert), "{err:?}");

    let no_tickets = Settings { session_tickets: false, ..settings };
    let config = load_server_config(&no_tickets).unwrap();
    assert!(!config.ticketer.enabled());
    assert_eq!(config.send_tls13_tickets, 0);
}
