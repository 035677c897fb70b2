//! `wss://` with a CA and server certificate made in the test.

use client::{ClientError, Event};
use protocol::{ConvSeq, Conversation, Frame, MessageId, SendAck, Timestamp, UserId};

use crate::support::tls::Pki;
use crate::support::{config, connected_with, payload, within, Peer};

#[tokio::test]
async fn wss_with_a_private_ca() {
    let pki = Pki::new();
    let mut peer = Peer::bind_tls(pki.acceptor.clone()).await;
    let mut config = config(format!("wss://localhost:{}/ws", peer.addr().port()));
    config.tls = Some(pki.client_tls());
    let (mut client, mut conn) = connected_with(&mut peer, config, 60_000).await;

    let id = within(client.send(Conversation::Direct(UserId(7)), payload("over tls"))).await.unwrap();
    let Frame::SendMessage(send) = conn.recv().await else { panic!("expected SEND") };
    assert_eq!(send.payload.bytes().as_ref(), b"over tls");
    conn.send([Frame::SendAck(SendAck {
        client_id: send.client_id,
        message_id: MessageId(1),
        conv_seq: ConvSeq(1),
        server_time: Timestamp(1),
        duplicate: false,
    })])
    .await;
    let event = within(client.next_event()).await.unwrap();
    assert!(matches!(event, Event::Sent { client_id, .. } if client_id == id), "{event:?}");
}

#[tokio::test]
async fn wss_refuses_a_server_outside_the_trusted_roots() {
    let pki = Pki::new();
    let peer = Peer::bind_tls(pki.acceptor.clone()).await;
    // No `tls`: the webpki roots, which do not include the test CA.
    let config = config(format!("wss://localhost:{}/ws", peer.addr().port()));
    let err = within(client::Client::connect(config)).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(rustls::Error::InvalidCertificate(_))), "{err:?}");
    assert!(!err.is_resumable());
}
