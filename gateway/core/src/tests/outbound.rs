//! The graded slow-reader policy of SPEC §7, through the session.

use protocol::{Conversation, Frame, TypingNotify, UserId};

use super::harness::{live, Out};
use crate::{Action, Class, Queued};

fn typing() -> Frame {
    Frame::TypingNotify(TypingNotify {
        conversation: Conversation::Direct(UserId(1)),
        user: UserId(1),
        active: true,
    })
}

fn big_live() -> Frame {
    // A 1 KiB ERROR-free live frame: a PONG is too small, so use a DELIVER-sized
    // payload through a SEND_ERROR text (any Live-class frame works).
    Frame::SendError(protocol::SendError {
        client_id: 1,
        code: protocol::ErrorCode::OVERLOADED,
        retry_after_ms: 0,
        text: protocol::Note::truncated(&"x".repeat(250)),
    })
}

#[test]
fn slow_reader_walks_the_graded_policy() {
    let mut h = live();
    let limits = h.config.outbound;
    // Fill to the pause mark with live frames (nothing is written out).
    while h.session.outbound().len() < limits.pause_bytes {
        assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live)), Queued::Accepted);
    }
    // 1. Ephemeral frames drop first.
    assert_eq!(h.with(|s, ctx| s.send(ctx, &typing(), Class::Ephemeral)), Queued::Dropped);
    assert!(h.observed("dropped:typing"));
    // 2. Live delivery pauses, reported once.
    assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live)), Queued::Paused);
    assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live)), Queued::Paused);
    let actions = h.take_actions();
    assert_eq!(actions.iter().filter(|a| matches!(a, Action::LivePaused)).count(), 1, "{actions:?}");
    // Control output still goes through.
    while h.session.outbound().len() <= limits.max_bytes {
        let _ = h.with(|s, ctx| s.send(ctx, &big_live(), Class::Control));
    }
    // 3. Beyond the hard limit live output still only pauses (the sync
    // windows took the queue there), but a reply does not fit: the session
    // closes with 4008.
    assert_eq!(h.with(|s, ctx| s.send_shared(ctx, vec![0; 64].into(), Class::Live)), Queued::Paused);
    assert!(!h.observed("dropped:overflow"));
    assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Reply)), Queued::Overflow);
    assert!(h.observed("dropped:overflow"));
    assert!(h.output().contains(&Out::Close(protocol::CloseCode::SLOW_CONSUMER.0)));
}

#[test]
fn live_delivery_resumes_once_the_queue_drains() {
    let mut h = live();
    let limits = h.config.outbound;
    while h.session.outbound().len() < limits.pause_bytes {
        let _ = h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live));
    }
    assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live)), Queued::Paused);
    h.take_actions();
    h.output(); // the client reads everything
    assert!(h.take_actions().iter().any(|a| matches!(a, Action::LiveResumed)));
    assert_eq!(h.with(|s, ctx| s.send(ctx, &big_live(), Class::Live)), Queued::Accepted);
}

#[test]
fn one_message_per_turn_and_shared_payloads_keep_order() {
    let mut h = live();
    let _ = h.with(|s, ctx| s.send(ctx, &typing(), Class::Ephemeral));
    let _ = h.with(|s, ctx| s.send(ctx, &typing(), Class::Ephemeral));
    let shared = Frame::from(protocol::Ping { nonce: 3 }).to_bytes().unwrap();
    let _ = h.with(|s, ctx| s.send_shared(ctx, shared, Class::Live));
    h.session.flush();
    // Two typing frames sealed into one message, then the shared message as
    // header + payload: three slices for one vectored write.
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    assert_eq!(h.session.outbound().io_slices(&mut slices), 3);
    assert_eq!(h.session.outbound().chunks().count(), 3);
    let out = h.output();
    assert_eq!(out.len(), 3);
    assert_eq!(out[2], Out::Frame(Frame::Ping(protocol::Ping { nonce: 3 })));
}

#[test]
fn output_that_makes_no_progress_is_cut_at_the_write_stall_deadline() {
    let mut h = live();
    let stall = h.config.write_stall;
    let _ = h.with(|s, ctx| s.send_shared(ctx, vec![1; 100].into(), Class::Live));
    h.session.flush();
    // The socket takes nothing.
    h.with(|s, ctx| s.handle_written(ctx, 0));
    assert!(h.session.poll_timeout().is_some_and(|at| at <= h.now + stall));
    h.advance(stall + std::time::Duration::from_millis(1));
    assert!(matches!(h.take_actions().as_slice(), [Action::Close]));
    assert!(h.observed("dropped:write_stall"));
    assert!(h.observed("closed:4008"));
}

#[test]
fn a_write_that_stops_inside_a_shared_header_resumes_there() {
    let mut h = live();
    // A 200-byte payload: a 4-byte header (126 form) then the payload.
    let payload = Frame::from(protocol::SendError {
        client_id: 9,
        code: protocol::ErrorCode::OVERLOADED,
        retry_after_ms: 0,
        text: protocol::Note::truncated(&"y".repeat(190)),
    })
    .to_bytes()
    .unwrap();
    assert!(payload.len() > 125);
    let _ = h.with(|s, ctx| s.send_shared(ctx, payload.clone(), Class::Live));
    h.session.flush();
    let all: Vec<u8> = h.session.outbound().chunks().flatten().copied().collect();
    assert_eq!(&all[..4], &[0x82, 126, 0, payload.len() as u8]);
    // The socket takes 3 bytes, then the rest.
    h.with(|s, ctx| s.handle_written(ctx, 3));
    let rest: Vec<u8> = h.session.outbound().chunks().flatten().copied().collect();
    assert_eq!(rest, all[3..]);
    let len = h.session.outbound().len();
    h.with(|s, ctx| s.handle_written(ctx, len));
    assert!(h.session.outbound().is_empty());
}

/// The WebSocket messages in `chunks` (concatenated), each as its payload.
fn messages(out: &crate::Outbound) -> Vec<Vec<u8>> {
    let mut bytes: Vec<u8> = out.chunks().flatten().copied().collect();
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        messages.push(bytes[header..header + len].to_vec());
        bytes.drain(..header + len);
    }
    messages
}

#[test]
fn shared_deliveries_join_the_turns_message_large_tails_referenced_small_ones_copied() {
    for (size, referenced) in [(3000, 2), (300, 0)] {
        shared_deliveries_in_one_message(size, referenced);
    }
}

fn shared_deliveries_in_one_message(size: usize, referenced: usize) {
    use crate::{Limits, Outbound, SharedDeliver};
    use protocol::{ConvSeq, Deliver, DeviceId, MessageId, Payload, Seq, Timestamp};
    let limits = Limits { pause_bytes: 1 << 20, max_bytes: 2 << 20 };
    let deliver = |seq| Deliver {
        seq: Seq(seq),
        message_id: MessageId(9),
        conversation: Conversation::Direct(UserId(3)),
        conv_seq: ConvSeq(4),
        sender: UserId(3),
        sender_device: DeviceId(1),
        server_time: Timestamp(5),
        payload: Payload::new(vec![7u8; size]).unwrap(),
    };
    let shared = SharedDeliver::new(&deliver(0));
    let mut out = Outbound::default();
    assert_eq!(out.push_frame(&typing(), Class::Live, limits), Queued::Accepted);
    for seq in [1, 2] {
        let (head, used) = shared.head(Seq(seq));
        assert_eq!(
            out.push_shared_tail(&head[..used], shared.tail().clone(), Class::Live, limits),
            Queued::Accepted
        );
    }
    assert_eq!(out.push_frame(&typing(), Class::Live, limits), Queued::Accepted);
    let before = out.len();
    out.flush();
    assert_eq!(out.len(), before + 4, "sealed with a 4-byte header (126 and a 16-bit length)");
    // A large tail is referenced (a chunk points into its buffer), a small
    // one copied into the batch.
    let tail = shared.tail().as_ptr();
    assert_eq!(out.chunks().filter(|c| c.as_ptr() == tail).count(), referenced, "{size} B");
    let messages = messages(&out);
    assert_eq!(messages.len(), 1, "one WebSocket message for the turn");
    let frames: Vec<Frame> = protocol::Decoder::for_server_messages()
        .message(messages[0].clone().into())
        .map(Result::unwrap)
        .collect();
    assert_eq!(frames, vec![typing(), Frame::Deliver(deliver(1)), Frame::Deliver(deliver(2)), typing()]);
}

#[test]
fn a_turn_past_the_server_message_limit_is_split_into_several_messages() {
    use crate::{Limits, Outbound, SharedDeliver};
    use protocol::{ConvSeq, Deliver, DeviceId, MessageId, Payload, Seq, Timestamp};
    let limits = Limits { pause_bytes: 8 << 20, max_bytes: 16 << 20 };
    let shared = SharedDeliver::new(&Deliver {
        seq: Seq(0),
        message_id: MessageId(1),
        conversation: Conversation::Direct(UserId(3)),
        conv_seq: ConvSeq(1),
        sender: UserId(3),
        sender_device: DeviceId(1),
        server_time: Timestamp(1),
        payload: Payload::new(vec![1u8; 60_000]).unwrap(),
    });
    let mut out = Outbound::default();
    for seq in 1..=40 {
        let (head, used) = shared.head(Seq(seq));
        assert_eq!(
            out.push_shared_tail(&head[..used], shared.tail().clone(), Class::Live, limits),
            Queued::Accepted
        );
    }
    out.flush();
    let messages = messages(&out);
    assert!(messages.len() >= 3, "{} messages", messages.len());
    let mut seqs = Vec::new();
    for message in messages {
        assert!(message.len() <= protocol::limits::MAX_SERVER_MESSAGE_LEN);
        for frame in protocol::Decoder::for_server_messages().message(message.into()) {
            let Frame::Deliver(d) = frame.unwrap() else { panic!("not a DELIVER") };
            seqs.push(d.seq.0);
        }
    }
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}
