//! Echo over `wss://` with an rcgen self-signed certificate, TLS 1.3 and 1.2.

// A panic in a test is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::Server;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed `localhost` certificate written to a fresh directory.
struct Cert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(name: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("baseline-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        Self { dir, der: certified.cert.der().clone() }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn echo_over_tls(name: &str, version: &'static SupportedProtocolVersion) {
    let cert = Cert::new(name);
    let (cert_path, key_path) = (cert.path("cert.pem"), cert.path("key.pem"));
    let server =
        Server::start(&["--tls-listen", "127.0.0.1:0", "--cert", &cert_path, "--key", &key_path], true);

    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.tls_addr.unwrap()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/echo", tls).await.unwrap();

    for i in 0..5u8 {
        ws.send(Message::binary(vec![i; 4096])).await.unwrap();
    }
    for i in 0..5u8 {
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![i; 4096]));
    }
    ws.close(None).await.unwrap();

    // The plain listener serves the same routes alongside.
    let mut plain = common::connect(server.addr, "/echo").await.unwrap();
    plain.send(Message::text("plain")).await.unwrap();
    assert_eq!(plain.next().await.unwrap().unwrap(), Message::text("plain"));
}

#[tokio::test]
async fn echo_over_tls13() {
    echo_over_tls("tls13", &rustls::version::TLS13).await;
}

#[tokio::test]
async fn echo_over_tls12() {
    echo_over_tls("tls12", &rustls::version::TLS12).await;
}
