//! The SPEC rules a third-party client hit (issue 12, defects 5 and 6), each
//! against the real node: refusals that leave the session alive, what
//! `inbox_head` and SYNC_DONE say, the sender and conv_seq of system entries,
//! prekey stock and PREKEY_LOW, visibility per user and stored.

use std::time::Duration;

use client::{Client, Event};
use protocol::limits::{MAX_PAYLOAD, MAX_PRESENCE_SUBSCRIPTIONS};
use protocol::{
    ConvSeq, Conversation, DeviceId, ErrorCode, Frame, GroupId, Key, OneTimePrekey, Payload, PresenceStatus,
    PresenceSubscribe, SendMessage, SendPayload, Seq, Signature, SignedPrekey, Timestamp, UserId, Visibility,
};

use super::{all_modes, client_config, connect, deliveries, wait_for, within, Cluster, Mode};

all_modes!(
    payloads_over_max_payload_get_send_error_and_the_session_lives,
    refusals_without_a_request_id_get_error_0_and_the_session_lives,
    inbox_head_is_the_highest_seq_assigned_and_a_resume_below_the_acked_cursor_starts_there,
    system_entries_name_the_actor_and_take_the_next_conv_seq,
    prekey_uploads_add_to_the_stock_and_prekey_low_follows_auth_ok,
    visibility_is_per_user_and_stored,
);

/// The next ERROR (other events are skipped, deliveries acked).
async fn next_error(client: &mut Client) -> protocol::Error {
    wait_for(client, |event| match event {
        Event::Error(error) => Some(error.clone()),
        _ => None,
    })
    .await
}

/// The session still answers: a PING round trip.
async fn alive(client: &mut Client) {
    let nonce = client.ping().await.unwrap();
    wait_for(client, |event| matches!(event, Event::Pong { nonce: n } if *n == nonce).then_some(())).await;
}

/// SEND_ACK or SEND_ERROR for `client_id`: `Ok(conv_seq)` or `Err(code)`.
async fn outcome(client: &mut Client, id: u64) -> Result<ConvSeq, ErrorCode> {
    wait_for(client, |event| match event {
        Event::Sent { client_id, conv_seq, .. } if *client_id == id => Some(Ok(*conv_seq)),
        Event::SendFailed { client_id, code, .. } if *client_id == id => Some(Err(*code)),
        _ => None,
    })
    .await
}

async fn payloads_over_max_payload_get_send_error_and_the_session_lives(mode: Mode) {
    // A node that lowers the limit: AUTH_OK says so and SEND is held to it.
    let cluster = Cluster::start(mode, "[session]\nmax_payload = 1000\n");
    drop(connect(&cluster, 2, 1).await);
    let mut a = within(Client::connect(client_config(&cluster, 1, 1, 0))).await.unwrap();
    let auth = wait_for(&mut a, |event| match event {
        Event::Authenticated(ok) => Some(ok.clone()),
        _ => None,
    })
    .await;
    assert_eq!(auth.max_payload, 1000);
    let to = Conversation::Direct(UserId(2));

    // One byte over the node's limit, within the protocol's.
    let id = a.send(to, Payload::new(vec![1u8; 1001]).unwrap()).await.unwrap();
    assert_eq!(outcome(&mut a, id).await, Err(ErrorCode::PAYLOAD_TOO_LARGE));
    // Over MAX_PAYLOAD itself, within MAX_FRAME_LEN: refused the same way.
    let big =
        SendMessage { client_id: 9_001, to, payload: SendPayload::new(vec![2u8; MAX_PAYLOAD + 1]).unwrap() };
    a.send_frames(&[Frame::SendMessage(big)]).await.unwrap();
    assert_eq!(outcome(&mut a, 9_001).await, Err(ErrorCode::PAYLOAD_TOO_LARGE));
    // At the limit: stored, on the same session.
    let id = a.send(to, Payload::new(vec![3u8; 1000]).unwrap()).await.unwrap();
    assert!(outcome(&mut a, id).await.is_ok());
    alive(&mut a).await;
}

async fn refusals_without_a_request_id_get_error_0_and_the_session_lives(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b = connect(&cluster, 2, 1).await;

    // READ and TYPING in a group that does not exist.
    let nowhere = Conversation::Group(GroupId(987_654));
    a.typing(nowhere, true).await.unwrap();
    let error = next_error(&mut a).await;
    assert_eq!((error.code, error.retryable, error.reference), (ErrorCode::UNKNOWN_GROUP, false, 0));
    a.read(nowhere, ConvSeq(1)).await.unwrap();
    assert_eq!(next_error(&mut a).await.code, ErrorCode::UNKNOWN_GROUP);
    alive(&mut a).await;

    // ...and in one the user is not a member of.
    let request = b.group_create("closed", &[]).await.unwrap();
    let group = wait_for(&mut b, |event| match event {
        Event::GroupOk(ok) if ok.request == request => Some(ok.group),
        _ => None,
    })
    .await;
    a.typing(Conversation::Group(group), true).await.unwrap();
    let error = next_error(&mut a).await;
    assert_eq!((error.code, error.reference), (ErrorCode::NOT_A_MEMBER, 0));
    a.read(Conversation::Group(group), ConvSeq(1)).await.unwrap();
    assert_eq!(next_error(&mut a).await.code, ErrorCode::NOT_A_MEMBER);
    alive(&mut a).await;

    // PRESENCE_SUBSCRIBE beyond the cap: its own code, not retryable (a cap
    // is not a rate), and the session goes on.
    for user in 0..MAX_PRESENCE_SUBSCRIPTIONS as u64 {
        a.presence_subscribe(UserId(10_000 + user)).await.unwrap();
    }
    // The client library refuses a 257th itself: send the frame by hand.
    let one_more = Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(20_000) });
    a.send_frames(&[one_more]).await.unwrap();
    let error = next_error(&mut a).await;
    assert_eq!(
        (error.code, error.retryable, error.retry_after_ms, error.reference),
        (ErrorCode::TOO_MANY_SUBSCRIPTIONS, false, 0, 0)
    );
    // Unsubscribing one makes room again.
    a.presence_unsubscribe(UserId(10_000)).await.unwrap();
    a.presence_subscribe(UserId(20_000)).await.unwrap();
    wait_for(&mut a, |event| match event {
        Event::Presence(p) if p.user == UserId(20_000) => Some(()),
        Event::Error(e) => panic!("refused again: {e:?}"),
        _ => None,
    })
    .await;
    alive(&mut a).await;
}

async fn inbox_head_is_the_highest_seq_assigned_and_a_resume_below_the_acked_cursor_starts_there(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    drop(connect(&cluster, 2, 1).await);
    let mut a = connect(&cluster, 1, 1).await;
    for n in 0..3u8 {
        let id = a.send(Conversation::Direct(UserId(2)), Payload::new(vec![n]).unwrap()).await.unwrap();
        outcome(&mut a, id).await.unwrap();
    }
    // The device takes and acks all three (in its first sync), then goes.
    let mut b = connect(&cluster, 2, 1).await;
    b.close().await.unwrap();

    // Back with a cursor it did not persist (0): nothing is replayed, and
    // SYNC_DONE says where the server's cursor is. The ACK reaches the store
    // at the latest when the connection ends; until then the entries come again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut b = within(Client::connect(client_config(&cluster, 2, 1, 0))).await.unwrap();
        let mut replayed = 0;
        let mut inbox_head = None;
        let head = wait_for(&mut b, |event| match event {
            Event::Authenticated(ok) => {
                inbox_head = Some(ok.inbox_head);
                None
            }
            Event::Delivered(_) => {
                replayed += 1;
                None
            }
            Event::Synced { head } => Some(*head),
            _ => None,
        })
        .await;
        // All acked: still the highest seq ever assigned.
        assert_eq!(inbox_head, Some(Seq(3)));
        if replayed == 0 {
            assert_eq!(head, Seq(3), "the sync starts at the acked cursor, not at resume_after");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ACK never reached the store");
        b.close().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn system_entries_name_the_actor_and_take_the_next_conv_seq(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut b = connect(&cluster, 2, 1).await;
    let mut c = connect(&cluster, 3, 1).await;
    let mut a = connect(&cluster, 1, 1).await;
    let request = a.group_create("team", &[UserId(2)]).await.unwrap();
    let group = wait_for(&mut a, |event| match event {
        Event::GroupOk(ok) if ok.request == request => Some(ok.group),
        _ => None,
    })
    .await;
    let id = a.send(Conversation::Group(group), Payload::new(&b"hello"[..]).unwrap()).await.unwrap();
    outcome(&mut a, id).await.unwrap();
    a.group_add(group, &[UserId(3)]).await.unwrap();

    // B sees: the creation (by A), the message, the addition (by A), at
    // conv_seqs 1, 2, 3; system entries come from device 0.
    let got = deliveries(&mut b, 3).await;
    let seen: Vec<(u64, u64, u32)> =
        got.iter().map(|d| (d.conv_seq.0, d.sender.0, d.sender_device.0)).collect();
    assert_eq!(seen, vec![(1, 1, 0), (2, 1, 1), (3, 1, 0)]);
    // C, who joined at 3, sees only its joining.
    let got = deliveries(&mut c, 1).await;
    assert_eq!((got[0].conv_seq, got[0].sender, got[0].sender_device), (ConvSeq(3), UserId(1), DeviceId(0)));
}

fn upload(ids: std::ops::RangeInclusive<u32>) -> (Key, SignedPrekey, Vec<OneTimePrekey>) {
    let key = |byte: u8| Key::new(vec![byte; 32]).unwrap();
    let signed = SignedPrekey { id: 1, key: key(2), signature: Signature::new(vec![3u8; 64]).unwrap() };
    (key(1), signed, ids.map(|id| OneTimePrekey { id, key: key(4) }).collect())
}

/// PREKEY_OK's stock after uploading one-time keys `ids`.
async fn stock_after(client: &mut Client, ids: std::ops::RangeInclusive<u32>) -> u32 {
    let (identity, signed, one_time) = upload(ids);
    let request = client.prekey_upload(identity, signed, &one_time).await.unwrap();
    wait_for(client, |event| match event {
        Event::PrekeyOk(ok) if ok.request == request => Some(ok.stock),
        Event::PrekeyLow { .. } => panic!("an upload caused PREKEY_LOW"),
        _ => None,
    })
    .await
}

async fn prekey_uploads_add_to_the_stock_and_prekey_low_follows_auth_ok(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    assert_eq!(stock_after(&mut a, 1..=5).await, 5);
    // Ids 4 and 5 are in stock already: they replace, 6..=8 add.
    assert_eq!(stock_after(&mut a, 4..=8).await, 8);
    a.close().await.unwrap();
    // 8 is at or below the low mark (10): PREKEY_LOW right after AUTH_OK.
    let mut a = within(Client::connect(client_config(&cluster, 1, 1, 0))).await.unwrap();
    let mut authenticated = false;
    let stock = wait_for(&mut a, |event| match event {
        Event::Authenticated(_) => {
            authenticated = true;
            None
        }
        Event::PrekeyLow { stock } => {
            assert!(authenticated, "PREKEY_LOW before AUTH_OK");
            Some(*stock)
        }
        _ => None,
    })
    .await;
    assert_eq!(stock, 8);
}

async fn visibility_is_per_user_and_stored(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\npresence_grace_ms = 200\n");
    let mut watcher = connect(&cluster, 9, 1).await;
    let mut phone = connect(&cluster, 5, 1).await;
    watcher.presence_subscribe(UserId(5)).await.unwrap();
    phone.presence_set(Visibility::Nobody).await.unwrap();
    wait_for(&mut watcher, |event| match event {
        Event::Presence(p) if p.user == UserId(5) && p.status == PresenceStatus::Offline => Some(()),
        _ => None,
    })
    .await;
    phone.close().await.unwrap();
    // Let the watcher hear the (hidden) offline after the grace period, so
    // nothing of the first session is still in flight.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Another device of the same user, in a new session: still hidden. The
    // node reads the setting from the store when the device connects, so a
    // fresh subscriber may briefly see the default; it must settle on hidden.
    let _laptop = connect(&cluster, 5, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut fresh = connect(&cluster, 8, 1).await;
        fresh.presence_subscribe(UserId(5)).await.unwrap();
        let seen = wait_for(&mut fresh, |event| match event {
            Event::Presence(p) if p.user == UserId(5) => Some((p.status, p.last_seen)),
            _ => None,
        })
        .await;
        if seen == (PresenceStatus::Offline, Timestamp(0)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "user 5 shows as {seen:?} with visibility nobody");
        fresh.close().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
