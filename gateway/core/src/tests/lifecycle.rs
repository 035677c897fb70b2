//! Every state transition of LIFECYCLE.md, with the bytes the client sees.

use std::time::Duration;

use protocol::{
    Ack, CloseCode, ConvSeq, Conversation, ErrorCode, Frame, GoAway, GoAwayReason, Note, Ping, Pong, Read,
    Seq, UserId,
};

use super::harness::{client_frame, close_frame, hello, live, live_with, message, upgrade, Harness, Out};
use crate::{Action, State};

fn closed_with(h: &mut Harness, code: CloseCode) {
    let out = h.output();
    assert!(out.contains(&Out::Close(code.0)), "expected close {code}, got {out:?}");
    assert_eq!(h.session.state(), State::Closing);
}

#[test]
fn upgrade_then_hello_then_live() {
    let mut h = live();
    assert_eq!(h.session.state().label(), "live");
    // Liveness: PING is answered here, not handed to the worker.
    h.read(&message(&[Frame::Ping(Ping { nonce: 9 })]));
    assert_eq!(h.output(), vec![Out::Frame(Frame::Pong(Pong { nonce: 9 }))]);
    // Other client frames go to the worker (ACK is the session's own).
    let read = Frame::Read(Read { conversation: Conversation::Direct(UserId(3)), up_to: ConvSeq(4) });
    h.read(&message(&[read.clone(), Frame::Ack(Ack { up_to: Seq(4) })]));
    let actions = h.take_actions();
    assert!(matches!(actions.as_slice(), [Action::Frame(frame)] if *frame == read), "{actions:?}");
}

/// A session that logged in, synced and idles holds no output buffer (its
/// memory goes to the next sessions to log in); a heartbeat's answer leaves
/// none either, other output keeps them until the next.
#[test]
fn an_idle_session_holds_no_output_buffer_after_its_sync_and_its_heartbeats() {
    let mut h = live();
    assert!(!h.session.outbound().holds_buffers(), "released once SYNC_DONE was written");
    h.read(&client_frame(0x9, b"hi"));
    assert_eq!(h.output(), vec![Out::Pong]);
    assert!(h.session.outbound().holds_buffers(), "other output keeps them");
    h.read(&message(&[Frame::Ping(Ping { nonce: 3 })]));
    assert_eq!(h.output(), vec![Out::Frame(Frame::Pong(Pong { nonce: 3 }))]);
    assert!(!h.session.outbound().holds_buffers(), "released after the heartbeat's PONG");
}

#[test]
fn upgrade_response_is_101_with_the_accept_key() {
    let mut h = Harness::new();
    let left = h.read(&upgrade("/ws"));
    assert!(left.is_empty());
    let out = h.output();
    let [Out::Http(response)] = out.as_slice() else { panic!("{out:?}") };
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{response}");
    assert_eq!(h.session.state(), State::AwaitHello);
}

#[test]
fn bad_upgrade_gets_http_4xx_and_closes() {
    let mut h = Harness::new();
    h.read(&upgrade("/nope"));
    let out = h.output();
    let [Out::Http(response)] = out.as_slice() else { panic!("{out:?}") };
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
    assert!(h.observer.0.iter().any(|o| o.starts_with("handshake_failed:")), "{:?}", h.observer.0);
}

#[test]
fn slowloris_upgrade_is_cut_at_its_deadline() {
    let mut h = Harness::new();
    let request = upgrade("/ws");
    h.read(&request[..10]);
    h.advance(Duration::from_secs(4));
    assert!(h.take_actions().is_empty());
    h.advance(Duration::from_secs(2));
    assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
    assert!(h.observed("handshake_failed:timeout"));
    assert!(h.output().is_empty(), "no response to an incomplete request");
}

#[test]
fn frame_before_hello_is_unexpected() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.read(&message(&[Frame::Ping(Ping { nonce: 1 })]));
    let out = h.output();
    assert!(
        out.iter().any(|o| matches!(o, Out::Frame(Frame::Error(e)) if e.code == ErrorCode::UNEXPECTED_FRAME)),
        "{out:?}"
    );
    assert!(out.contains(&Out::Close(CloseCode::UNEXPECTED_FRAME.0)));
}

#[test]
fn frame_after_hello_before_auth_ok_is_unexpected() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    // HELLO and a PING in the same message (SPEC §4.2).
    h.read(&message(&[hello(1, 1), Frame::Ping(Ping { nonce: 1 })]));
    closed_with(&mut h, CloseCode::UNEXPECTED_FRAME);
}

#[test]
fn unsupported_version_gets_auth_error_and_4002() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.read(&message(&[hello(2, 3)]));
    let out = h.output();
    assert!(
        out.iter().any(
            |o| matches!(o, Out::Frame(Frame::AuthError(e)) if e.code == ErrorCode::UNSUPPORTED_VERSION)
        ),
        "{out:?}"
    );
    assert!(out.contains(&Out::Close(CloseCode::UNSUPPORTED_VERSION.0)));
    assert!(h.observed("auth_failed:version"));
}

#[test]
fn malformed_frame_gets_bad_frame_and_4000() {
    let mut h = live();
    // A PING whose nonce is not minimally encoded.
    h.read(&client_frame(0x2, &[0x04, 0x02, 0x81, 0x00]));
    let out = h.output();
    assert!(out.iter().any(|o| matches!(o, Out::Frame(Frame::Error(e)) if e.code == ErrorCode::BAD_FRAME)));
    assert!(out.contains(&Out::Close(CloseCode::BAD_FRAME.0)));
}

#[test]
fn text_message_closes_with_1003() {
    let mut h = live();
    h.read(&client_frame(0x1, b"hello"));
    closed_with(&mut h, CloseCode::UNSUPPORTED_DATA);
}

#[test]
fn auth_deadline_sends_auth_error_and_4005() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.advance(Duration::from_secs(11));
    let out = h.output();
    assert!(out
        .iter()
        .any(|o| matches!(o, Out::Frame(Frame::AuthError(e)) if e.code == ErrorCode::AUTH_TIMEOUT)));
    assert!(out.contains(&Out::Close(CloseCode::AUTH_TIMEOUT.0)));
    let counted = h.observer.0.iter().filter(|o| *o == "auth_failed:timeout").count();
    assert_eq!(counted, 1, "an auth timeout is one failure");
    // The linger deadline ends the session if the client never answers.
    h.advance(Duration::from_secs(3));
    assert_eq!(h.session.state(), State::Closed);
}

#[test]
fn rejected_token_gets_auth_error_and_the_given_close() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.read(&message(&[hello(1, 1)]));
    h.take_actions();
    h.with(|s, ctx| {
        s.reject(ctx, ErrorCode::AUTH_EXPIRED, CloseCode::AUTH_EXPIRED, "expired", "token expired")
    });
    let out = h.output();
    assert!(out
        .iter()
        .any(|o| matches!(o, Out::Frame(Frame::AuthError(e)) if e.code == ErrorCode::AUTH_EXPIRED)));
    assert!(out.contains(&Out::Close(CloseCode::AUTH_EXPIRED.0)));
    assert!(h.observed("auth_failed:expired"));
}

#[test]
fn silence_closes_with_4006_but_activity_keeps_the_session() {
    let mut h = live();
    h.advance(Duration::from_secs(80));
    h.read(&message(&[Frame::Ping(Ping { nonce: 1 })]));
    h.output();
    // 80 s + 80 s: more than 90 s since the start, but only 80 s of silence.
    h.advance(Duration::from_secs(80));
    assert!(matches!(h.session.state(), State::Live(_)));
    h.advance(Duration::from_secs(11));
    closed_with(&mut h, CloseCode::HEARTBEAT_TIMEOUT);
}

#[test]
fn client_close_is_answered_with_its_code() {
    let mut h = live();
    h.read(&close_frame(1000));
    assert_eq!(h.output(), vec![Out::Close(1000)]);
    assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
    assert_eq!(h.session.state(), State::Closed);
}

#[test]
fn our_close_waits_for_the_clients() {
    let mut h = live();
    h.read(&client_frame(0x1, b"text"));
    closed_with(&mut h, CloseCode::UNSUPPORTED_DATA);
    h.read(&close_frame(CloseCode::UNSUPPORTED_DATA.0));
    assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
}

#[test]
fn websocket_ping_gets_a_pong_in_any_open_state() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.output();
    h.read(&client_frame(0x9, b"hi"));
    assert_eq!(h.output(), vec![Out::Pong]);
}

#[test]
fn drain_sends_goaway_then_closes_with_1001() {
    let mut h = live();
    let goaway = GoAway {
        reason: GoAwayReason::Drain,
        reconnect_after_ms: 1_000,
        resume_after: Seq(0),
        redirect: Note::default(),
    };
    h.with(|s, ctx| s.drain(ctx, goaway.clone(), Duration::from_secs(5)));
    assert_eq!(h.output(), vec![Out::Frame(Frame::GoAway(goaway))]);
    assert_eq!(h.session.state().label(), "draining");
    h.advance(Duration::from_secs(5));
    assert!(matches!(h.session.state(), State::Draining(_)));
    h.advance(Duration::from_secs(2));
    closed_with(&mut h, CloseCode::GOING_AWAY);
}

#[test]
fn drain_closes_unauthenticated_sessions_at_once() {
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.output();
    let goaway = GoAway {
        reason: GoAwayReason::Drain,
        reconnect_after_ms: 0,
        resume_after: Seq(0),
        redirect: Note::default(),
    };
    h.with(|s, ctx| s.drain(ctx, goaway, Duration::from_secs(5)));
    // No GOAWAY before AUTH_OK (SPEC §4.7): just the close.
    assert_eq!(h.output(), vec![Out::Close(CloseCode::GOING_AWAY.0)]);
}

#[test]
fn echo_route_echoes_binary_and_text() {
    let mut h = Harness::new();
    h.read(&upgrade("/echo"));
    assert_eq!(h.session.state(), State::Echo);
    h.output();
    h.read(&client_frame(0x1, "héllo".as_bytes()));
    assert_eq!(h.output(), vec![Out::Text("héllo".into())]);
    h.read(&message(&[Frame::Ping(Ping { nonce: 5 })]));
    assert_eq!(h.output(), vec![Out::Frame(Frame::Ping(Ping { nonce: 5 }))]);
}

#[test]
fn partial_input_is_left_for_the_next_read() {
    let mut h = live();
    let read = Frame::Read(Read { conversation: Conversation::Direct(UserId(3)), up_to: ConvSeq(1) });
    let bytes = message(&[read]);
    let left = h.read(&bytes[..3]);
    assert_eq!(&left[..], &bytes[..3]);
    assert!(h.take_actions().is_empty());
    let mut whole = left.to_vec();
    whole.extend_from_slice(&bytes[3..]);
    h.read(&whole);
    assert!(matches!(h.take_actions().as_slice(), [Action::Frame(Frame::Read(_))]));
}

/// An idle session's state must stay small: the product holds 500K of them
/// per box with a budget of 1 KiB each for everything in user space (the slab
/// entry, this struct, the socket). The benchmark measures the real RSS; this
/// catches a field that quietly doubles it.
#[test]
fn idle_session_state_stays_small() {
    let size = std::mem::size_of::<crate::Session>();
    eprintln!("Session {size} bytes");
    assert!(size <= 256, "Session grew to {size} bytes");
}

#[test]
fn frame_flood_gets_rate_limited_then_closed_with_4009() {
    let mut h = live();
    // The harness allows a burst of 20 frames at 100/s.
    let pings: Vec<Frame> = (0..20).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    h.read(&message(&pings));
    assert_eq!(h.output().len(), 20, "the burst passes");
    h.read(&message(&[Frame::Ping(Ping { nonce: 99 })]));
    let out = h.output();
    assert!(
        matches!(out.as_slice(), [Out::Frame(Frame::Error(e))] if e.code == ErrorCode::RATE_LIMITED && e.retry_after_ms == 10),
        "{out:?}"
    );
    // 10 ms later one token is back.
    h.now += Duration::from_millis(10);
    h.read(&message(&[Frame::Ping(Ping { nonce: 100 })]));
    assert_eq!(h.output(), vec![Out::Frame(Frame::Pong(Pong { nonce: 100 }))]);
    // A client that floods through another burst of refusals is closed.
    let flood: Vec<Frame> = (0..40).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    h.read(&message(&flood));
    let out = h.output();
    assert!(out.contains(&Out::Close(CloseCode::RATE_LIMITED.0)), "{out:?}");
    assert!(h.observed("dropped:rate_limited"));
}

#[test]
fn rate_limited_sends_and_requests_get_their_own_answers() {
    let mut h = live();
    // Spend the burst of 20.
    let pings: Vec<Frame> = (0..20).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    h.read(&message(&pings));
    h.output();
    let send = Frame::SendMessage(protocol::SendMessage {
        client_id: 41,
        to: Conversation::Direct(UserId(3)),
        payload: protocol::SendPayload::new(&b"x"[..]).unwrap(),
    });
    let get = Frame::GroupGet(protocol::GroupGet { request: 9, group: protocol::GroupId(1) });
    let read = Frame::Read(Read { conversation: Conversation::Direct(UserId(3)), up_to: ConvSeq(1) });
    h.read(&message(&[send, get, read]));
    let out = h.output();
    // The burst's ERROR, then an answer naming each refused request; READ
    // has no answer of its own.
    assert!(
        matches!(&out[0], Out::Frame(Frame::Error(e)) if e.code == ErrorCode::RATE_LIMITED && e.reference == 0),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Out::Frame(Frame::SendError(e)) if e.client_id == 41 && e.code == ErrorCode::RATE_LIMITED && e.retry_after_ms > 0),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Out::Frame(Frame::Error(e)) if e.reference == 9 && e.code == ErrorCode::RATE_LIMITED),
        "{out:?}"
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(h.take_actions().is_empty(), "nothing refused reaches the worker");
}

#[test]
fn the_rate_limit_closes_at_the_refusal_after_a_burst_of_refusals_and_refused_pings_get_no_pong() {
    // SPEC §7, exactly: the harness allows a burst of 20 at 100/s, and the
    // clock stands still, so no token comes back.
    let mut h = live();
    let pings = |from: u64, n: u64| {
        message(&(from..from + n).map(|nonce| Frame::Ping(Ping { nonce })).collect::<Vec<_>>())
    };
    h.read(&pings(0, 20));
    assert_eq!(h.output().len(), 20, "the burst passes");
    // Refusal 1 of the run: ERROR, and no PONG.
    h.read(&pings(100, 1));
    let out = h.output();
    assert!(
        matches!(out.as_slice(), [Out::Frame(Frame::Error(e))] if e.code == ErrorCode::RATE_LIMITED && e.retryable && e.reference == 0),
        "{out:?}"
    );
    // Refusals 2..=20 (a burst's worth in a row): nothing at all, not closed.
    h.read(&pings(200, 19));
    assert_eq!(h.output(), vec![], "refused PINGs get no PONG and no more ERROR");
    assert!(matches!(h.session.state(), State::Live(_)));
    // Refusal 21 in a row: close 4009.
    h.read(&pings(300, 1));
    closed_with(&mut h, CloseCode::RATE_LIMITED);
}

#[test]
fn the_257th_frame_of_a_message_gets_bad_frame_and_4000_after_256_are_answered() {
    // SPEC §1 and §13: not 1009 (that is the byte limit, from the WebSocket
    // header), and the frames before it are acted on.
    let mut h = live_with(crate::Config { rate: None, ..super::harness::config() });
    let pings: Vec<Frame> = (0..257).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    h.read(&message(&pings));
    let out = h.output();
    let pongs = out.iter().take_while(|o| matches!(o, Out::Frame(Frame::Pong(_)))).count();
    assert_eq!(pongs, 256, "{out:?}");
    assert!(
        matches!(&out[256..], [Out::Frame(Frame::Error(e)), Out::Close(4000)] if e.code == ErrorCode::BAD_FRAME && e.reference == 0),
        "{:?}",
        &out[256..]
    );
    // A message ending inside a frame header: the same answer.
    let mut h = live();
    let mut bytes = Frame::Ping(Ping { nonce: 1 }).to_bytes().unwrap().to_vec();
    bytes.push(0x04);
    h.read(&client_frame(0x2, &bytes));
    let out = h.output();
    assert!(
        matches!(out.as_slice(), [Out::Frame(Frame::Pong(_)), Out::Frame(Frame::Error(e)), Out::Close(4000)] if e.code == ErrorCode::BAD_FRAME),
        "{out:?}"
    );
}

#[test]
fn a_websocket_fault_sends_its_close_and_ends_at_once() {
    // RFC 6455 §7.1.7: the close frame, then the TCP close, with no wait for
    // the client's close frame (Autobahn 3.x, 4.x, 5.x: the server closes TCP).
    for (bad, code) in [(vec![0xf2, 0x80, 0, 0, 0, 0], 1002), (client_frame(0x1, b"\xff"), 1007)] {
        let mut h = Harness::new();
        h.read(&upgrade("/echo"));
        h.output();
        h.read(&bad);
        assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
        assert_eq!(h.session.state(), State::Closed);
        assert_eq!(h.output(), vec![Out::Close(code)]);
        assert!(h.observed(&format!("closed:{code}")));
    }
}
