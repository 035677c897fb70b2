use bytes::Bytes;
use protocol::{
    AuthError, AuthOk, Capabilities, ConvSeq, Conversation, Deliver, DeviceId, ErrorCode, Frame, GoAway,
    GoAwayReason, Hello, List, MessageId, Note, Payload, Ping, Pong, Receipt, ReceiptKind, SendAck,
    SendError, SendMessage, Seq, SyncBatch, SyncDone, Timestamp, Token, UserId,
};

use crate::{Event, Session};

const DEVICE: DeviceId = DeviceId(3);
const PEER: Conversation = Conversation::Direct(UserId(9));

fn session(resume_after: u64) -> Session {
    let token = Token::new(Bytes::from_static(b"tok")).unwrap();
    Session::new(DEVICE, token, Capabilities::ALL, Seq(resume_after))
}

fn auth_ok() -> Frame {
    Frame::AuthOk(AuthOk {
        version: 1,
        user: UserId(42),
        device: DEVICE,
        session: 77,
        server_time: Timestamp(1_000),
        heartbeat_ms: 30_000,
        inbox_head: Seq(10),
        max_payload: 65_536,
        capabilities: Capabilities::ALL,
    })
}

fn live(resume_after: u64) -> Session {
    let mut s = session(resume_after);
    s.handle_frame(auth_ok()).unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Authenticated(ok)) if ok.user == UserId(42)));
    s
}

fn deliver(seq: u64) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(1000 + seq),
        conversation: PEER,
        conv_seq: ConvSeq(seq),
        sender: UserId(9),
        sender_device: DeviceId(1),
        server_time: Timestamp(seq),
        payload: Payload::new(Bytes::from(format!("m{seq}"))).unwrap(),
    }
}

fn batch(seqs: &[u64], remaining: u64) -> Frame {
    let entries: Vec<Deliver> = seqs.iter().map(|&seq| deliver(seq)).collect();
    Frame::SyncBatch(SyncBatch { remaining, entries: List::from_items(&entries).unwrap() })
}

fn drain(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn delivered(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(Event::seq).map(|seq| seq.0).collect()
}

fn payload(text: &'static str) -> Payload {
    Payload::new(Bytes::from_static(text.as_bytes())).unwrap()
}

#[test]
fn hello_carries_device_token_and_cursor() {
    let s = session(5);
    let Frame::Hello(Hello { min_version, max_version, device, resume_after, capabilities, token }) =
        s.hello()
    else {
        panic!("not a HELLO");
    };
    assert_eq!((min_version, max_version), (1, 1));
    assert_eq!(device, DEVICE);
    assert_eq!(resume_after, Seq(5));
    assert_eq!(capabilities, Capabilities::ALL);
    assert_eq!(token.bytes().as_ref(), b"tok");
}

#[test]
fn dedup_across_sync_and_live_race_keeps_order() {
    let mut s = live(2);
    // Seq 2 was acked in an earlier run; 4 arrives live before the sync
    // reaches it, and again inside the sync.
    s.handle_frame(batch(&[2, 3], 2)).unwrap();
    s.handle_frame(Frame::Deliver(deliver(4))).unwrap();
    s.handle_frame(batch(&[4, 5], 0)).unwrap();
    s.handle_frame(Frame::SyncDone(SyncDone { head: Seq(5) })).unwrap();
    s.handle_frame(Frame::Deliver(deliver(5))).unwrap();
    s.handle_frame(Frame::Deliver(deliver(6))).unwrap();
    let events = drain(&mut s);
    assert_eq!(delivered(&events), vec![3, 4, 5, 6]);
    assert_eq!(s.duplicates_dropped(), 3);
    assert_eq!(s.surfaced(), Seq(6));
    assert!(s.is_synced());
    // Progress and done are in place between the deliveries.
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Delivered(d) => format!("d{}", d.seq),
            Event::SyncProgress { remaining, up_to } => format!("p{remaining}@{up_to}"),
            Event::Synced { head } => format!("s{head}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["d3", "p2@3", "d4", "d5", "p0@5", "s5", "d6"]);
}

#[test]
fn dedup_decision_is_made_when_polled() {
    let mut s = live(0);
    s.handle_frame(Frame::Deliver(deliver(1))).unwrap();
    // Nothing polled yet: nothing surfaced, so nothing can be acked.
    assert_eq!(s.surfaced(), Seq(0));
    assert_eq!(s.ack(Seq(1)), None);
    assert_eq!(s.poll_event().and_then(|e| e.seq()), Some(Seq(1)));
    assert_eq!(s.ack(Seq(1)), Some(Frame::Ack(protocol::Ack { up_to: Seq(1) })));
}

#[test]
fn ack_is_cumulative_and_clamped() {
    let mut s = live(0);
    s.handle_frame(batch(&[1, 2, 3, 4], 0)).unwrap();
    drain(&mut s);
    assert_eq!(s.ack(Seq(2)), Some(Frame::Ack(protocol::Ack { up_to: Seq(2) })));
    assert_eq!(s.ack(Seq(2)), None, "same cursor");
    assert_eq!(s.ack(Seq(1)), None, "backwards");
    // Past what was surfaced: clamped to 4.
    assert_eq!(s.ack(Seq(99)), Some(Frame::Ack(protocol::Ack { up_to: Seq(4) })));
    assert_eq!(s.acked(), Seq(4));
    assert_eq!(s.ack_surfaced(), None);
}

#[test]
fn resume_cursor_in_hello_after_disconnect() {
    let mut s = live(0);
    s.handle_frame(batch(&[1, 2, 3], 0)).unwrap();
    drain(&mut s);
    s.ack(Seq(3)).unwrap();
    s.on_disconnect();
    assert!(!s.is_live());
    assert_eq!(s.user(), None);
    let Frame::Hello(hello) = s.hello() else { panic!("not a HELLO") };
    assert_eq!(hello.resume_after, Seq(3));
    // The next connection's sync replays 3 (racing the ack): not surfaced again.
    s.handle_frame(auth_ok()).unwrap();
    s.handle_frame(batch(&[3, 4], 0)).unwrap();
    assert_eq!(delivered(&drain(&mut s)), vec![4]);
}

#[test]
fn pending_sends_resend_with_same_ids_in_order() {
    let mut s = live(0).with_first_client_id(100);
    let (a, frame_a) = s.send(PEER, payload("a"));
    let (b, _) = s.send(PEER, payload("b"));
    let (c, _) = s.send(Conversation::Group(protocol::GroupId(5)), payload("c"));
    assert_eq!((a, b, c), (100, 101, 102));
    assert!(matches!(&frame_a, Frame::SendMessage(SendMessage { client_id: 100, to, .. }) if *to == PEER));
    s.handle_frame(Frame::SendAck(SendAck {
        client_id: b,
        message_id: MessageId(1),
        conv_seq: ConvSeq(1),
        server_time: Timestamp(5),
        duplicate: false,
    }))
    .unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Sent { client_id: 101, duplicate: false, .. })));
    s.on_disconnect();
    let resent: Vec<(u64, Bytes)> = s
        .resend_pending()
        .map(|frame| match frame {
            Frame::SendMessage(send) => (send.client_id, send.payload.into_bytes()),
            other => panic!("not a SEND: {other:?}"),
        })
        .collect();
    assert_eq!(resent, [(100, Bytes::from_static(b"a")), (102, Bytes::from_static(b"c"))]);
    assert_eq!(s.next_client_id(), 103);
}

fn send_error(client_id: u64, code: ErrorCode) -> Frame {
    Frame::SendError(SendError { client_id, code, retry_after_ms: 250, text: Note::truncated("no") })
}

#[test]
fn terminal_send_error_drops_pending_retryable_keeps_it() {
    let mut s = live(0);
    let (terminal, _) = s.send(PEER, payload("x"));
    let (retryable, _) = s.send(PEER, payload("y"));
    s.handle_frame(send_error(terminal, ErrorCode::UNKNOWN_RECIPIENT)).unwrap();
    s.handle_frame(send_error(retryable, ErrorCode::OVERLOADED)).unwrap();
    let events = drain(&mut s);
    assert!(matches!(
        events[0],
        Event::SendFailed { client_id, code: ErrorCode::UNKNOWN_RECIPIENT, retryable: false, .. }
            if client_id == terminal
    ));
    assert!(matches!(
        events[1],
        Event::SendFailed { client_id, retryable: true, retry_after_ms: 250, .. } if client_id == retryable
    ));
    assert!(!s.is_pending(terminal));
    assert!(s.is_pending(retryable));
    assert!(s.resend(terminal).is_none());
    assert!(matches!(s.resend(retryable), Some(Frame::SendMessage(send)) if send.client_id == retryable));
    // An unknown code is terminal.
    let (unknown, _) = s.send(PEER, payload("z"));
    s.handle_frame(send_error(unknown, ErrorCode(999))).unwrap();
    assert!(!s.is_pending(unknown));
}

#[test]
fn server_ping_queues_pong_and_event() {
    let mut s = live(0);
    s.handle_frame(Frame::Ping(Ping { nonce: 0xfeed })).unwrap();
    assert_eq!(s.poll_transmit(), Some(Frame::Pong(Pong { nonce: 0xfeed })));
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(s.poll_event(), Some(Event::Ping { nonce: 0xfeed }));
    // Client pings count nonces up; the answer is an event.
    let (nonce, frame) = s.ping();
    assert_eq!(frame, Frame::Ping(Ping { nonce }));
    s.handle_frame(Frame::Pong(Pong { nonce })).unwrap();
    assert_eq!(s.poll_event(), Some(Event::Pong { nonce }));
}

#[test]
fn disconnect_drops_unsent_pongs_keeps_events() {
    let mut s = live(0);
    s.handle_frame(Frame::Deliver(deliver(1))).unwrap();
    s.handle_frame(Frame::Ping(Ping { nonce: 1 })).unwrap();
    s.on_disconnect();
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(delivered(&drain(&mut s)), vec![1]);
}

#[test]
fn auth_error_is_an_event_and_session_stays_offline() {
    let mut s = session(0);
    s.handle_frame(Frame::AuthError(AuthError {
        code: ErrorCode::AUTH_EXPIRED,
        retry_after_ms: 10,
        text: Note::truncated("expired"),
    }))
    .unwrap();
    assert!(!s.is_live());
    assert!(matches!(
        s.poll_event(),
        Some(Event::AuthRejected { code: ErrorCode::AUTH_EXPIRED, retry_after_ms: 10, .. })
    ));
}

#[test]
fn unexpected_frames_are_refused() {
    let mut s = session(0);
    let err = s.handle_frame(Frame::Deliver(deliver(1))).unwrap_err();
    assert_eq!(err.kind, protocol::FrameKind::Deliver);
    assert!(s.poll_event().is_none(), "nothing queued");
    assert!(s.handle_frame(s.hello()).is_err(), "client-to-server kind");
    let mut other_device = auth_ok();
    if let Frame::AuthOk(ok) = &mut other_device {
        ok.device = DeviceId(99);
    }
    assert!(s.handle_frame(other_device).is_err());
    let mut s = live(0);
    assert!(s.handle_frame(auth_ok()).is_err(), "second AUTH_OK");
}

#[test]
fn goaway_and_other_frames_become_events() {
    let mut s = live(0);
    let goaway = GoAway {
        reason: GoAwayReason::Drain,
        reconnect_after_ms: 500,
        resume_after: Seq(0),
        redirect: Note::truncated("10.0.0.2:7700"),
    };
    s.handle_frame(Frame::GoAway(goaway.clone())).unwrap();
    let receipt = Frame::Receipt(Receipt {
        conversation: PEER,
        user: UserId(9),
        kind: ReceiptKind::Read,
        up_to: ConvSeq(3),
        at: Timestamp(9),
    });
    s.handle_frame(receipt.clone()).unwrap();
    assert_eq!(s.poll_event(), Some(Event::GoAway(goaway)));
    let Frame::Receipt(receipt) = receipt else { unreachable!() };
    assert_eq!(s.poll_event(), Some(Event::Receipt(receipt)));
}

#[test]
fn sync_request_below_cursor_replays() {
    let mut s = live(0);
    s.handle_frame(batch(&[1, 2, 3], 0)).unwrap();
    drain(&mut s);
    let frame = s.sync_request(Seq(1), 0);
    assert_eq!(frame, Frame::SyncRequest(protocol::SyncRequest { after: Seq(1), window: 0 }));
    s.handle_frame(batch(&[2, 3], 0)).unwrap();
    assert_eq!(delivered(&drain(&mut s)), vec![2, 3]);
}

#[test]
fn goaway_resume_after_raises_the_cursor_never_lowers_it() {
    let mut s = live(4);
    let goaway = |resume_after| {
        Frame::GoAway(GoAway {
            reason: GoAwayReason::Rebalance,
            reconnect_after_ms: 0,
            resume_after: Seq(resume_after),
            redirect: Note::default(),
        })
    };
    s.handle_frame(goaway(2)).unwrap();
    assert_eq!((s.acked(), s.surfaced()), (Seq(4), Seq(4)));
    s.handle_frame(goaway(9)).unwrap();
    assert_eq!((s.acked(), s.surfaced()), (Seq(9), Seq(9)));
    s.on_disconnect();
    let Frame::Hello(hello) = s.hello() else { panic!("not a HELLO") };
    assert_eq!(hello.resume_after, Seq(9));
}

#[test]
fn only_auth_answers_before_auth_ok() {
    // SPEC §4: before AUTH_OK the server sends only AUTH_OK, AUTH_ERROR, ERROR.
    let mut s = session(0);
    assert!(s.handle_frame(Frame::Ping(Ping { nonce: 1 })).is_err());
    assert_eq!(s.poll_transmit(), None, "no PONG for a refused PING");
    assert!(s.handle_frame(Frame::SyncDone(SyncDone { head: Seq(1) })).is_err());
    let error = protocol::Error {
        code: ErrorCode::RATE_LIMITED,
        retryable: true,
        retry_after_ms: 500,
        reference: 0,
        text: Note::default(),
    };
    s.handle_frame(Frame::Error(error.clone())).unwrap();
    assert_eq!(s.poll_event(), Some(Event::Error(error)));
}

#[test]
fn empty_sync_batch_reports_progress_with_no_seq() {
    let mut s = live(3);
    s.handle_frame(batch(&[], 0)).unwrap();
    assert_eq!(s.poll_event(), Some(Event::SyncProgress { remaining: 0, up_to: Seq(0) }));
    assert_eq!(s.ack(Seq(0)), None);
}

#[test]
fn server_started_sync_is_accepted_any_time_after_auth_ok() {
    // SPEC §6.3: after skipping live entries the server syncs again on its
    // own, from the last seq it sent, with no SYNC_REQUEST from the client.
    let mut s = live(0);
    s.handle_frame(batch(&[1], 0)).unwrap();
    s.handle_frame(Frame::SyncDone(SyncDone { head: Seq(1) })).unwrap();
    s.handle_frame(Frame::Deliver(deliver(2))).unwrap();
    assert!(s.is_synced());
    // Live entry 3 was skipped; the server replays 3 and 4 (2 again is
    // harmless), then goes live again.
    s.handle_frame(batch(&[2, 3], 1)).unwrap();
    assert!(!s.is_synced(), "a sync runs again");
    s.handle_frame(batch(&[4], 0)).unwrap();
    s.handle_frame(Frame::SyncDone(SyncDone { head: Seq(4) })).unwrap();
    assert!(s.is_synced());
    s.handle_frame(Frame::Deliver(deliver(5))).unwrap();
    let events = drain(&mut s);
    assert_eq!(delivered(&events), vec![1, 2, 3, 4, 5]);
    assert_eq!(s.duplicates_dropped(), 1);
    let progress: Vec<(u64, Seq)> = events
        .iter()
        .filter_map(|e| match e {
            Event::SyncProgress { remaining, up_to } => Some((*remaining, *up_to)),
            _ => None,
        })
        .collect();
    // Each batch is acked by its last seq, duplicates included.
    assert_eq!(progress, [(0, Seq(1)), (1, Seq(3)), (0, Seq(4))]);
    assert_eq!(s.ack(Seq(4)), Some(Frame::Ack(protocol::Ack { up_to: Seq(4) })));
}
