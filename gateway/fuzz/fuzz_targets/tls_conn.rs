//! `TlsConn` fuzz target: a server connection (the committed test certificate
//! in `certs/`, loaded as the node loads it) fed what a client sends. The
//! first input byte picks the mode and the read size:
//!
//! - **raw** (bit 0 clear): the rest is the client's bytes (a ClientHello,
//!   garbage), fed in one read and again in reads of `read_size` bytes. A
//!   fuzzer cannot finish a handshake, so this explores hello parsing,
//!   records, alerts and the partial-record buffer.
//! - **pair** (bit 0 set): a rustls client (TLS 1.3, or 1.2 with bit 1)
//!   completes the handshake, then the rest is a script: client data, server
//!   data, bytes corrupted or injected on the way in, key updates, and
//!   close_notify from either side (the server's ends the script: nothing
//!   is read after it). This reaches the record layer after the handshake.
//!
//! Beyond "never panics", it checks that:
//! - the outcome (plaintext, error or not) does not depend on how reads split;
//! - the server never hands up plaintext the client did not send (always a
//!   prefix of it, and all of it while nobody tampered with the bytes);
//! - errors are `Connection`/`Unsupported`, and after one every call says
//!   `Failed`, `encrypt` takes nothing and `close_notify` writes nothing;
//! - what the server writes before the handshake completes is bounded, and
//!   it writes nothing encrypted before it completes;
//! - an idle healthy connection holds no buffer.
#![no_main]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use gateway_tls::{load_server_config, Settings, TlsConn, TlsError};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

/// Most bytes the server writes while the handshake is incomplete: its
/// flight (a hello retry and a second ServerHello at worst, the certificate,
/// its signature) and one alert, with room to spare.
const HANDSHAKE_OUTPUT_BOUND: usize = 8 * 1024;

struct Setup {
    server: Arc<ServerConfig>,
    tls13: Arc<ClientConfig>,
    tls12: Arc<ClientConfig>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let certs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs");
        let settings =
            Settings { cert: certs.join("cert.pem"), key: certs.join("key.pem"), session_tickets: true };
        let server = load_server_config(&settings).expect("the committed test certificate loads");
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(certs.join("ca.pem")).expect("ca.pem")).expect("CA");
        let client = |version: &'static rustls::SupportedProtocolVersion| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .expect("version")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        };
        Setup { server, tls13: client(&rustls::version::TLS13), tls12: client(&rustls::version::TLS12) }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else { return };
    let read_size = 1 + usize::from(settings >> 2);
    if settings & 1 == 0 {
        raw(rest, read_size);
    } else {
        pair(settings & 2 != 0, rest, read_size);
    }
});

/// What feeding a server some bytes came to.
#[derive(Debug, PartialEq)]
struct Outcome {
    plaintext: Vec<u8>,
    failed: bool,
    peer_closed: bool,
}

fn raw(input: &[u8], read_size: usize) {
    let whole = feed(input, input.len().max(1));
    let split = feed(input, read_size);
    assert_eq!(whole, split, "the outcome depends on how reads split");
}

/// Feeds `input` to a new server `step` bytes at a time, sending everything
/// it writes, and checks the invariants of an unfinished handshake.
fn feed(input: &[u8], step: usize) -> Outcome {
    let mut conn = TlsConn::new(Arc::clone(&setup().server)).expect("a connection");
    let mut plain = BytesMut::new();
    let mut outcome = Outcome { plaintext: Vec::new(), failed: false, peer_closed: false };
    let mut written = 0;
    for chunk in input.chunks(step) {
        let mut chunk = chunk.to_vec();
        match conn.handle_read(&mut chunk, &mut plain) {
            Ok(received) => outcome.peer_closed |= received.peer_closed,
            Err(err) => {
                check_error(&err);
                outcome.failed = true;
            }
        }
        written += conn.unsent().len();
        conn.consume_unsent(usize::MAX);
        if outcome.failed {
            break;
        }
    }
    assert!(written <= HANDSHAKE_OUTPUT_BOUND, "{written} bytes written for {} in", input.len());
    assert!(conn.is_handshaking(), "a handshake completed without a client key");
    let mut out = Vec::new();
    if outcome.failed {
        check_failed(&mut conn);
    } else {
        assert_eq!(conn.encrypt(b"data", &mut out).expect("encrypt while handshaking"), 0);
        conn.close_notify(&mut out).expect("close_notify while handshaking");
        assert!(out.is_empty(), "output before the handshake completed");
    }
    outcome.plaintext = plain.to_vec();
    assert!(outcome.plaintext.is_empty(), "plaintext before the handshake completed");
    outcome
}

/// A connection error is rustls' or this layer's refusal, never a loading error.
fn check_error(err: &TlsError) {
    assert!(matches!(err, TlsError::Connection(_) | TlsError::Unsupported(_)), "unexpected error {err:?}");
}

/// After an error, every call refuses (and nothing more goes out once the
/// alert is sent).
fn check_failed(conn: &mut TlsConn) {
    conn.consume_unsent(usize::MAX);
    let mut plain = BytesMut::new();
    assert!(matches!(conn.handle_read(&mut [0x16, 3, 3, 0, 1, 0], &mut plain), Err(TlsError::Failed)));
    let mut out = Vec::new();
    assert!(matches!(conn.encrypt(b"data", &mut out), Err(TlsError::Failed)));
    conn.close_notify(&mut out).expect("close_notify after a failure is a no-op");
    assert!(out.is_empty() && conn.unsent().is_empty() && plain.is_empty());
    assert_eq!(conn.buffered(), 0);
}

/// A rustls client and the server under test, connected by memory.
struct Pair {
    client: ClientConnection,
    server: TlsConn,
    /// Plaintext the server handed up.
    plain: BytesMut,
    /// Plaintext the client sent.
    sent: Vec<u8>,
    read_size: usize,
    /// XOR applied to one byte of the next client flight (position, value).
    corrupt: Option<(usize, u8)>,
    /// Bytes reached the server that the client did not write.
    tampered: bool,
    /// The client sent close_notify: data after it may be ignored.
    client_closed: bool,
    /// The server failed, and why.
    failed: Option<String>,
    peer_closed: bool,
}

fn pair(tls12: bool, script: &[u8], read_size: usize) {
    let setup = setup();
    let config = Arc::clone(if tls12 { &setup.tls12 } else { &setup.tls13 });
    let name = ServerName::try_from("localhost").expect("name");
    let mut pair = Pair {
        client: ClientConnection::new(config, name).expect("client"),
        server: TlsConn::new(Arc::clone(&setup.server)).expect("server"),
        plain: BytesMut::new(),
        sent: Vec::new(),
        read_size,
        corrupt: None,
        tampered: false,
        client_closed: false,
        failed: None,
        peer_closed: false,
    };
    for _ in 0..10 {
        pair.client_to_server();
        pair.server_to_client();
        if !pair.client.is_handshaking() && !pair.server.is_handshaking() {
            break;
        }
    }
    assert!(!pair.server.is_handshaking(), "the handshake with a real client failed: {:?}", pair.failed);
    pair.check();

    let mut ops = script.iter().copied();
    let mut next = move || ops.next();
    while let Some(op) = next() {
        if pair.failed.is_some() {
            check_failed(&mut pair.server);
            return;
        }
        let arg = next().unwrap_or(0);
        match op % 8 {
            0 => {
                let data: Vec<u8> = (0..arg).map(|i| i.wrapping_mul(31) ^ op).collect();
                if pair.client.writer().write_all(&data).is_ok() && !pair.client_closed {
                    pair.sent.extend_from_slice(&data);
                }
                pair.client_to_server();
            }
            1 => pair.server_sends(usize::from(arg) * 67),
            2 => pair.corrupt = Some((usize::from(arg), next().unwrap_or(0) | 1)),
            3 => {
                let mut garbage: Vec<u8> = (0..arg).filter_map(|_| next()).collect();
                pair.tampered = true;
                pair.server_reads(&mut garbage);
            }
            4 => {
                pair.client.send_close_notify();
                pair.client_closed = true;
                pair.client_to_server();
            }
            5 => {
                // close_notify ends the connection (TlsConn's call order):
                // nothing is read after it.
                let mut out = Vec::new();
                match pair.server.close_notify(&mut out) {
                    Ok(()) => pair.to_client(&out),
                    Err(err) => check_error(&err),
                }
                pair.check();
                return;
            }
            6 => {
                // TLS 1.3 only; a 1.2 client refuses, which changes nothing.
                let _ = pair.client.refresh_traffic_keys();
                pair.client_to_server();
            }
            _ => pair.read_size = 1 + usize::from(arg),
        }
        pair.server_to_client();
        pair.check();
    }
}

impl Pair {
    /// Moves the client's pending records to the server, corrupting one
    /// byte if asked.
    fn client_to_server(&mut self) {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).expect("write to a Vec");
        }
        if let Some((at, xor)) = self.corrupt.take() {
            if let Some(byte) = wire.get_mut(at) {
                *byte ^= xor;
                self.tampered = true;
            }
        }
        for piece in wire.chunks_mut(self.read_size) {
            self.server_reads(piece);
        }
    }

    fn server_reads(&mut self, bytes: &mut [u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        let before = self.plain.len();
        match self.server.handle_read(bytes, &mut self.plain) {
            Ok(received) => {
                assert_eq!(received.plaintext, self.plain.len() - before);
                assert!(!self.peer_closed || received.plaintext == 0, "plaintext after close_notify");
                self.peer_closed |= received.peer_closed;
            }
            Err(err) => self.fail(&err),
        }
    }

    /// Sends what the server has queued (handshake, tickets, alerts).
    fn server_to_client(&mut self) {
        let unsent = self.server.unsent().to_vec();
        self.server.consume_unsent(unsent.len());
        self.to_client(&unsent);
    }

    fn server_sends(&mut self, len: usize) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        match self.server.encrypt(&data, &mut out) {
            Ok(taken) => {
                // `unsent` is always emptied after each step, so all is taken.
                assert_eq!(taken, data.len());
                let mut received = Vec::new();
                if self.deliver(&out, &mut received) {
                    assert_eq!(received, data, "the client read something else");
                }
            }
            Err(err) => self.fail(&err),
        }
    }

    fn to_client(&mut self, wire: &[u8]) {
        let mut ignored = Vec::new();
        self.deliver(wire, &mut ignored);
    }

    /// Gives `wire` to the client; false if the client refused it, which only
    /// tampering (an alert, a refused record) may cause.
    fn deliver(&mut self, mut wire: &[u8], plain: &mut Vec<u8>) -> bool {
        while !wire.is_empty() {
            let ok = self.client.read_tls(&mut wire).is_ok() && self.client.process_new_packets().is_ok();
            if !ok {
                assert!(self.tampered || self.failed.is_some(), "the client refused the server's records");
                return false;
            }
            let _ = self.client.reader().read_to_end(plain);
        }
        true
    }

    fn fail(&mut self, err: &TlsError) {
        check_error(err);
        self.failed = Some(err.to_string());
        // rustls bounds key updates between records of data: a client that
        // keeps asking misbehaves as much as one that tampers.
        let too_many = rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyKeyUpdateRequests);
        self.tampered |= matches!(err, TlsError::Connection(e) if *e == too_many);
    }

    fn check(&self) {
        assert!(self.sent.starts_with(&self.plain), "plaintext the client never sent");
        if !self.tampered {
            assert!(self.failed.is_none(), "failed without tampering: {:?}", self.failed);
            if !self.client_closed {
                assert_eq!(&self.plain[..], &self.sent[..], "sent data not handed up");
                assert_eq!(self.server.buffered(), 0, "a buffer held while idle");
            }
        }
    }
}
