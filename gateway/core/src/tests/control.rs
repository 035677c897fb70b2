//! WebSocket control frames and other replies to client input under the
//! session's bounds (issue 12, defect 2): a client that pings and never reads
//! is closed once its replies fill the outbound bound (1008 before
//! authentication, 4008 after), and control frames spend frame-rate tokens.

use protocol::{CloseCode, ErrorCode, Frame, Ping};

use super::harness::{client_frame, config, live, message, upgrade, Harness, Out};
use crate::{Config, State};

/// The harness settings without a frame-rate limit, so that only the
/// outbound bound can stop a flood.
fn unlimited() -> Config {
    Config { rate: None, ..config() }
}

/// Sends WebSocket pings with full 125-byte payloads, never writing anything
/// out, until the session stops being open; returns how many it sent.
fn ping_until_closed(h: &mut Harness, most: usize) -> usize {
    let ping = client_frame(0x9, &[7; 125]);
    for sent in 1..=most {
        h.read(&ping);
        if h.session.state() == State::Closing {
            return sent;
        }
    }
    panic!("still open after {most} pings, {} bytes queued", h.session.outbound().len());
}

#[test]
fn pings_without_reading_before_authentication_close_with_1008() {
    let mut h = Harness::with_config(unlimited());
    h.read(&upgrade("/ws"));
    // The 1 KiB bound before authentication holds the 101 answer and a few pongs.
    let sent = ping_until_closed(&mut h, 100);
    assert!(sent < 10, "closed after {sent} pings");
    assert!(h.observed("dropped:overflow") && h.observed("closed:1008"));
    // Bounded: the pre-authentication bound plus the close frame.
    assert!(h.session.outbound().len() <= h.config.outbound_preauth + 125);
    // Later pings are not answered.
    let queued = h.session.outbound().len();
    h.read(&client_frame(0x9, b"more"));
    assert_eq!(h.session.outbound().len(), queued);
    let out = h.output();
    assert_eq!(out.last(), Some(&Out::Close(CloseCode::POLICY_VIOLATION.0)), "{out:?}");
}

#[test]
fn pings_without_reading_after_authentication_close_with_4008() {
    let mut h = live();
    h.config.rate = None;
    let sent = ping_until_closed(&mut h, 1_000);
    // 16 KiB of 127-byte pongs.
    assert!((100..200).contains(&sent), "closed after {sent} pings");
    assert!(h.observed("closed:4008"));
    assert!(h.session.outbound().len() <= h.config.outbound.max_bytes + 125);
}

#[test]
fn protocol_pings_without_reading_close_with_4008() {
    let mut h = live();
    h.config.rate = None;
    let pings: Vec<Frame> = (0..200).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    for _ in 0..100 {
        h.read(&message(&pings));
        if h.session.state() == State::Closing {
            break;
        }
    }
    assert_eq!(h.session.state(), State::Closing);
    assert!(h.observed("closed:4008"));
    assert!(h.session.outbound().len() <= h.config.outbound.max_bytes + 125);
}

#[test]
fn pings_are_answered_while_the_client_reads() {
    let mut h = Harness::with_config(unlimited());
    h.read(&upgrade("/ws"));
    h.output();
    for _ in 0..1_000 {
        h.read(&client_frame(0x9, &[7; 125]));
        assert_eq!(h.output(), vec![Out::Pong]);
    }
    assert_eq!(h.session.state(), State::AwaitHello);
}

#[test]
fn control_frames_spend_frame_rate_tokens_before_authentication() {
    // The harness allows a burst of 20 frames at 100/s.
    let mut h = Harness::new();
    h.read(&upgrade("/ws"));
    h.output();
    for _ in 0..10 {
        h.read(&client_frame(0x9, b"p"));
        h.read(&client_frame(0xA, b"unsolicited"));
    }
    let out = h.output();
    assert!(out.len() == 10 && out.iter().all(|o| *o == Out::Pong), "{out:?}");
    // The bucket is empty: a ping is refused without a pong (and without a
    // protocol ERROR before authentication)...
    h.read(&client_frame(0x9, b"p"));
    assert_eq!(h.output(), vec![]);
    assert!(h.observed("dropped:rate_limited"));
    // ...and a client that keeps going through another burst is closed, 1008.
    for _ in 0..20 {
        h.read(&client_frame(0x9, b"p"));
    }
    assert_eq!(h.output(), vec![Out::Close(CloseCode::POLICY_VIOLATION.0)]);
}

#[test]
fn control_frames_and_protocol_frames_share_one_bucket_after_authentication() {
    let mut h = live();
    let pings: Vec<Frame> = (0..10).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    h.read(&message(&pings));
    for _ in 0..10 {
        h.read(&client_frame(0x9, b"p"));
    }
    assert_eq!(h.output().len(), 20, "the burst of 20 passes");
    // The next control ping is refused: ERROR RATE_LIMITED instead of a pong.
    h.read(&client_frame(0x9, b"p"));
    let out = h.output();
    assert!(
        matches!(out.as_slice(), [Out::Frame(Frame::Error(e))] if e.code == ErrorCode::RATE_LIMITED),
        "{out:?}"
    );
    for _ in 0..20 {
        h.read(&client_frame(0xA, b""));
    }
    assert_eq!(h.output(), vec![Out::Close(CloseCode::RATE_LIMITED.0)]);
}

#[test]
fn echo_takes_messages_up_to_its_own_limit_and_queues_one_whole() {
    let mut h = Harness::with_config(unlimited());
    h.read(&upgrade("/echo"));
    h.output();
    // Over the protocol's message limit, within the echo route's (1 MiB here).
    let big = vec![b'a'; protocol::limits::MAX_CLIENT_MESSAGE_LEN * 3];
    h.read(&client_frame(0x1, &big));
    assert_eq!(h.session.state(), State::Echo);
    assert_eq!(h.output(), vec![Out::Text(String::from_utf8(big).unwrap())]);
    // A second whole message while the first is unread is queued; a third
    // would pass the bound: it is refused as paused live output (the write
    // stall closes a client that never reads), not queued.
    let most = vec![0; h.config.echo_max_message];
    h.read(&client_frame(0x2, &most));
    assert_eq!(h.session.state(), State::Echo);
    let queued = h.session.outbound().len();
    h.read(&client_frame(0x2, &most));
    assert_eq!(h.session.state(), State::Echo);
    assert!(h.observed("dropped:live_paused"));
    assert_eq!(h.session.outbound().len(), queued, "the third echo is not queued");
    // Beyond the echo limit: 1009 from the header alone.
    let mut h = Harness::with_config(unlimited());
    h.read(&upgrade("/echo"));
    h.output();
    let header = &client_frame(0x2, &vec![0; h.config.echo_max_message + 1])[..14];
    h.read(header);
    assert!(h.output().contains(&Out::Close(1009)));
}
