//! Requests beyond SEND through the tokio client: group and presence frames
//! reach the server, answers come back as typed events, presence
//! subscriptions are repeated after a reconnect, requests need a connection.

use client::{ClientError, Event};
use protocol::{
    CloseCode, Frame, GroupCreate, GroupId, GroupOk, Presence, PresenceStatus, PresenceSubscribe, Timestamp,
    UserId,
};

use crate::support::{connected, within, Peer};

#[tokio::test]
async fn group_request_and_presence_round_trip() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    within(client.presence_subscribe(UserId(2))).await.unwrap();
    assert_eq!(conn.recv().await, Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(2) }));
    let request = within(client.group_create("friends", &[UserId(2), UserId(3)])).await.unwrap();
    let Frame::GroupCreate(GroupCreate { request: sent, name, members }) = conn.recv().await else {
        panic!("expected GROUP_CREATE");
    };
    assert_eq!((sent, name.as_str(), members.len()), (request, "friends", 2));
    assert_ne!(request, 0);

    let presence = Presence { user: UserId(2), status: PresenceStatus::Online, last_seen: Timestamp(0) };
    let ok = GroupOk { request, group: GroupId(11), version: 1 };
    conn.send([Frame::Presence(presence.clone()), Frame::GroupOk(ok.clone())]).await;
    assert_eq!(within(client.next_event()).await.unwrap(), Event::Presence(presence));
    assert_eq!(within(client.next_event()).await.unwrap(), Event::GroupOk(ok));
    assert_eq!(client.session().outstanding_requests().len(), 0);
}

#[tokio::test]
async fn presence_subscriptions_are_repeated_after_reconnect_requests_are_not() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = connected(&mut peer, 60_000).await;
    within(client.presence_subscribe(UserId(2))).await.unwrap();
    within(client.presence_subscribe(UserId(5))).await.unwrap();
    within(client.presence_unsubscribe(UserId(5))).await.unwrap();
    let request = within(client.group_get(GroupId(1))).await.unwrap();
    for _ in 0..4 {
        conn.recv().await;
    }
    assert!(client.session().outstanding_request(request).is_some());
    conn.close(CloseCode::GOING_AWAY, "drain").await;
    let err = within(client.next_event()).await.unwrap_err();
    assert!(err.is_resumable(), "{err:?}");

    // Offline: requests fail at once, a subscription waits for the connection.
    assert!(matches!(within(client.group_get(GroupId(1))).await, Err(ClientError::NotConnected)));
    let typing = within(client.typing(protocol::Conversation::Group(GroupId(1)), true)).await;
    assert!(matches!(typing, Err(ClientError::NotConnected)), "{typing:?}");
    within(client.presence_subscribe(UserId(7))).await.unwrap();
    assert_eq!(client.session().outstanding_requests().len(), 0, "the lost request is forgotten");

    let (result, mut conn) = within(async {
        tokio::join!(client.reconnect(), async {
            let mut conn = peer.accept().await;
            conn.accept_hello(60_000).await;
            conn
        })
    })
    .await;
    result.unwrap();
    let again = conn.recv_message().await;
    assert_eq!(
        again,
        [
            Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(2) }),
            Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(7) }),
        ]
    );
}
