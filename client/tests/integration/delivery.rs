//! Sends and their acks, sync and live delivery, acks, PING/PONG, heartbeat,
//! malformed input.

use std::time::Duration;

use bytes::Bytes;
use client::{ClientError, Event};
use protocol::{
    Ack, CloseCode, ConvSeq, Conversation, DecodeError, Deliver, Frame, MessageId, Ping, Pong, SendAck,
    SendMessage, Seq, SyncDone, Timestamp, UserId,
};

use crate::support::{batch, connected, deliver, payload, within, Peer};

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(Event::seq).map(|seq| seq.0).collect()
}

#[tokio::test]
async fn send_is_acked_and_leaves_pending() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    let to = Conversation::Direct(UserId(7));
    let id = within(client.send(to, payload("hi"))).await.unwrap();
    assert!(client.session().is_pending(id));

    let Frame::SendMessage(SendMessage { client_id, to: got_to, payload: got }) = conn.recv().await else {
        panic!("expected SEND");
    };
    assert_eq!((client_id, got_to), (id, to));
    assert_eq!(got.bytes().as_ref(), b"hi");
    conn.send([Frame::SendAck(SendAck {
        client_id,
        message_id: MessageId(900),
        conv_seq: ConvSeq(4),
        server_time: Timestamp(5),
        duplicate: false,
    })])
    .await;
    let event = within(client.next_event()).await.unwrap();
    assert_eq!(
        event,
        Event::Sent {
            client_id: id,
            message_id: MessageId(900),
            conv_seq: ConvSeq(4),
            server_time: Timestamp(5),
            duplicate: false
        }
    );
    assert_eq!(client.session().pending().len(), 0);
}

/// Reads events until the server's PING `nonce` (a sentinel: everything sent
/// before it has been surfaced or dropped).
async fn events_until_ping(client: &mut client::Client, nonce: u64) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match within(client.next_event()).await.unwrap() {
            Event::Ping { nonce: got } if got == nonce => return events,
            event => events.push(event),
        }
    }
}

#[tokio::test]
async fn sync_then_live_race_surfaces_each_seq_once_in_order() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    // A live delivery of 3 races the sync that also carries 3.
    conn.send([batch(&[1, 2, 3], 1), Frame::Deliver(deliver(3)), batch(&[4], 0)]).await;
    conn.send([Frame::SyncDone(SyncDone { head: Seq(4) })]).await;
    conn.send([Frame::Deliver(deliver(2)), Frame::Deliver(deliver(5))]).await;
    conn.send([Frame::Ping(Ping { nonce: 99 })]).await;

    let events = events_until_ping(&mut client, 99).await;
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
    let markers: Vec<&Event> = events.iter().filter(|e| e.seq().is_none()).collect();
    assert_eq!(
        markers,
        [
            &Event::SyncProgress { remaining: 1, up_to: Seq(3) },
            &Event::SyncProgress { remaining: 0, up_to: Seq(4) },
            &Event::Synced { head: Seq(4) }
        ]
    );
    let Event::Delivered(Deliver { payload, .. }) = &events[0] else { panic!("not a delivery") };
    assert_eq!(payload.bytes(), &Bytes::from_static(b"message 1"));
    assert_eq!(client.session().duplicates_dropped(), 2);
    assert!(client.session().is_synced());
    // The server's PING was answered.
    assert_eq!(conn.recv().await, Frame::Pong(Pong { nonce: 99 }));
}

#[tokio::test]
async fn acks_are_cumulative_on_the_wire() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    conn.send([batch(&[1, 2, 3], 0), Frame::Ping(Ping { nonce: 1 })]).await;
    assert_eq!(seqs(&events_until_ping(&mut client, 1).await), [1, 2, 3]);
    assert_eq!(conn.recv().await, Frame::Pong(Pong { nonce: 1 }));

    within(client.ack(Seq(2))).await.unwrap();
    within(client.ack(Seq(2))).await.unwrap(); // no frame: cursor unchanged
    within(client.ack(Seq(1))).await.unwrap(); // no frame: backwards
    within(client.ack(Seq(50))).await.unwrap(); // clamped to 3
    let nonce = within(client.ping()).await.unwrap();

    assert_eq!(conn.recv().await, Frame::Ack(Ack { up_to: Seq(2) }));
    assert_eq!(conn.recv().await, Frame::Ack(Ack { up_to: Seq(3) }));
    assert_eq!(conn.recv().await, Frame::Ping(Ping { nonce }));
    assert_eq!(client.session().acked(), Seq(3));
}

#[tokio::test]
async fn heartbeat_pings_and_pongs_surface() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 50).await;
    // The heartbeat runs inside next_event; the peer sees its PING.
    let frame = tokio::select! {
        event = within(client.next_event()) => panic!("unexpected event {event:?}"),
        frame = conn.recv() => frame,
    };
    let Frame::Ping(Ping { nonce }) = frame else { panic!("expected PING, got {frame:?}") };
    conn.send([Frame::Pong(Pong { nonce })]).await;
    assert_eq!(within(client.next_event()).await.unwrap(), Event::Pong { nonce });
}

#[tokio::test]
async fn silent_server_fails_the_heartbeat() {
    let mut peer = Peer::bind().await;
    let (mut client, _conn) = connected(&mut peer, 40).await;
    let started = tokio::time::Instant::now();
    let err = within(client.next_event()).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout("heartbeat")), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(80), "too early: {:?}", started.elapsed());
    assert!(!client.is_connected());
    assert!(matches!(within(client.next_event()).await, Err(ClientError::NotConnected)));
}

#[tokio::test]
async fn malformed_frame_closes_with_bad_frame() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    conn.send_raw(Bytes::from_static(&[0xff, 0x00])).await;
    let err = within(client.next_event()).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(DecodeError::UnknownKind(0xff))), "{err:?}");
    assert_eq!(conn.recv_close().await, Some(CloseCode::BAD_FRAME.0));
}

#[tokio::test]
async fn frame_before_its_time_is_a_protocol_error() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    // A second AUTH_OK on a live session.
    let hello = client.session().hello();
    let Frame::Hello(hello) = hello else { unreachable!() };
    conn.send([crate::support::auth_ok(&hello, 1)]).await;
    let err = within(client.next_event()).await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    assert_eq!(conn.recv_close().await, Some(CloseCode::UNEXPECTED_FRAME.0));
}
