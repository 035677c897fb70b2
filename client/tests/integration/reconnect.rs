//! Server closes, GOAWAY, reconnect with resume and resend, redirect, client
//! close.

use client::{ClientError, Event};
use protocol::{
    CloseCode, ConvSeq, Conversation, Frame, GoAway, GoAwayReason, MessageId, Note, Ping, Resume, SendAck,
    SendMessage, Seq, Timestamp, UserId,
};

use crate::support::{batch, connected, payload, within, Peer};

fn send_ack(client_id: u64, duplicate: bool) -> Frame {
    Frame::SendAck(SendAck {
        client_id,
        message_id: MessageId(client_id + 1000),
        conv_seq: ConvSeq(client_id),
        server_time: Timestamp(1),
        duplicate,
    })
}

fn sent_ids(frames: &[Frame]) -> Vec<(u64, Vec<u8>)> {
    frames
        .iter()
        .map(|frame| match frame {
            Frame::SendMessage(SendMessage { client_id, payload, .. }) => {
                (*client_id, payload.bytes().to_vec())
            }
            other => panic!("expected SEND, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn reconnect_resumes_after_last_ack_and_resends_pending_with_same_ids() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    let to = Conversation::Direct(UserId(7));

    // Deliveries 1..3 surfaced and acked.
    conn.send([batch(&[1, 2, 3], 0)]).await;
    for expected in 1..=3 {
        let event = within(client.next_event()).await.unwrap();
        assert_eq!(event.seq(), Some(Seq(expected)));
    }
    assert_eq!(
        within(client.next_event()).await.unwrap(),
        Event::SyncProgress { remaining: 0, up_to: Seq(3) }
    );
    within(client.ack(Seq(3))).await.unwrap();
    assert_eq!(conn.recv().await, Frame::Ack(protocol::Ack { up_to: Seq(3) }));

    // Three sends; only the second is acked before the node drains.
    let a = within(client.send(to, payload("a"))).await.unwrap();
    let b = within(client.send(to, payload("b"))).await.unwrap();
    let c = within(client.send(to, payload("c"))).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(conn.recv().await, Frame::SendMessage(_)));
    }
    let goaway = GoAway {
        reason: GoAwayReason::Drain,
        reconnect_after_ms: 0,
        resume_after: Seq(3),
        redirect: Note::default(),
    };
    conn.send([send_ack(b, false), Frame::GoAway(goaway.clone())]).await;
    conn.close(CloseCode::GOING_AWAY, "draining").await;

    assert!(
        matches!(within(client.next_event()).await.unwrap(), Event::Sent { client_id, .. } if client_id == b)
    );
    assert_eq!(within(client.next_event()).await.unwrap(), Event::GoAway(goaway));
    let err = within(client.next_event()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Closed { code: CloseCode::GOING_AWAY, reason } if reason == "draining"),
        "{err:?}"
    );
    assert!(err.is_resumable());
    assert!(!client.is_connected());

    // Offline: the send is recorded and goes out on reconnect.
    let d = within(client.send(to, payload("d"))).await.unwrap();
    assert_eq!(client.session().pending().len(), 3);

    let (reconnected, (hello, resent, mut conn)) = within(async {
        tokio::join!(client.reconnect(), async {
            let mut conn = peer.accept().await;
            let hello = conn.accept_hello(60_000).await;
            let resent = conn.recv_message().await;
            (hello, resent, conn)
        })
    })
    .await;
    reconnected.unwrap();
    assert_eq!(hello.resume_after, Seq(3));
    // Pending sends, oldest first, same ids, one batched message.
    assert_eq!(sent_ids(&resent), [(a, b"a".to_vec()), (c, b"c".to_vec()), (d, b"d".to_vec())]);

    // The store already had `a`; the resync repeats acked seq 3.
    conn.send([send_ack(a, true), batch(&[3, 4], 0), Frame::Ping(Ping { nonce: 5 })]).await;
    assert!(matches!(within(client.next_event()).await.unwrap(), Event::Authenticated(_)));
    assert!(matches!(
        within(client.next_event()).await.unwrap(),
        Event::Sent { client_id, duplicate: true, .. } if client_id == a
    ));
    assert_eq!(within(client.next_event()).await.unwrap().seq(), Some(Seq(4)));
    assert_eq!(
        within(client.next_event()).await.unwrap(),
        Event::SyncProgress { remaining: 0, up_to: Seq(4) }
    );
    assert_eq!(within(client.next_event()).await.unwrap(), Event::Ping { nonce: 5 });
    let pending: Vec<u64> = client.session().pending().map(|p| p.client_id).collect();
    assert_eq!(pending, [c, d]);
}

#[tokio::test]
async fn replaced_close_is_terminal() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    conn.close(CloseCode::REPLACED, "replaced").await;
    let err = within(client.next_event()).await.unwrap_err();
    let ClientError::Closed { code, reason } = &err else { panic!("expected Closed, got {err:?}") };
    assert_eq!(*code, CloseCode::REPLACED);
    assert_eq!(code.resume(), Resume::Terminal);
    assert_eq!(reason, "replaced");
    assert!(!err.is_resumable());
    assert!(matches!(within(client.next_event()).await, Err(ClientError::NotConnected)));
}

#[tokio::test]
async fn close_without_a_code_is_resumable() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    conn.close_without_code().await;
    let err = within(client.next_event()).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed { code: protocol::CloseCode::NO_STATUS, .. }), "{err:?}");
    assert!(err.is_resumable(), "SPEC §11: a close without a code is resumable");
}

#[tokio::test]
async fn reconnect_to_follows_a_redirect() {
    let mut first = Peer::bind().await;
    let mut second = Peer::bind().await;
    let (mut client, _conn) = connected(&mut first, 60_000).await;
    let redirect = second.addr().to_string();
    let (reconnected, hello) = within(async {
        tokio::join!(client.reconnect_to(&redirect), async {
            let mut conn = second.accept().await;
            conn.accept_hello(60_000).await
        })
    })
    .await;
    reconnected.unwrap();
    assert_eq!(hello.device, protocol::DeviceId(3));
    assert!(client.is_connected());
}

#[tokio::test]
async fn client_close_sends_normal_close() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    let (closed, code) = within(async { tokio::join!(client.close(), conn.recv_close()) }).await;
    closed.unwrap();
    assert_eq!(code, Some(CloseCode::NORMAL.0));
    assert!(!client.is_connected());
    assert!(matches!(within(client.next_event()).await, Err(ClientError::NotConnected)));
}

#[tokio::test]
async fn an_unreachable_node_is_skipped_for_the_next_fallback_url() {
    // A port nobody listens on: the first node is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut second = Peer::bind().await;
    let mut third = Peer::bind().await;
    let mut config = crate::support::config(format!("ws://{down}/ws"));
    config.fallback_urls = vec![second.url(), third.url()];
    let (mut client, mut conn) = crate::support::connected_with(&mut second, config, 60_000).await;
    // The second node dies without a close frame: the reconnect skips the
    // first (still down) and the second (gone) and lands on the third,
    // resuming there.
    drop(conn);
    drop(second);
    let (reconnected, hello) = within(async {
        tokio::join!(client.reconnect(), async {
            let mut conn = third.accept().await;
            let hello = conn.accept_hello(60_000).await;
            (conn, hello)
        })
    })
    .await;
    reconnected.unwrap();
    (conn, _) = hello;
    assert!(client.is_connected());
    let first = within(client.next_event()).await.unwrap();
    assert!(matches!(first, Event::Authenticated(_)), "{first:?}");
    conn.send([batch(&[1], 0)]).await;
    assert_eq!(within(client.next_event()).await.unwrap().seq(), Some(Seq(1)));
    // A URL of another scheme is refused up front.
    let mut mixed = crate::support::config(third.url());
    mixed.fallback_urls = vec!["wss://127.0.0.1:1/ws".into()];
    assert!(matches!(client::Client::connect(mixed).await, Err(ClientError::InvalidUrl(_))));
}
