//! Fanout: live entries batched per destination worker, encoded once per
//! conversation view, push notes for devices not connected, and shedding
//! when a destination does not keep up.

use backend_store::{Delivery, Message, Request, Response, Sent};
use bytes::Bytes;
use protocol::{
    Blob, ConvSeq, Conversation, DeviceId, Frame, GroupId, MessageId, SendMessage, Seq, Timestamp, UserId,
};

use super::harness::{hub_config, Batch, Client, TestNode};
use crate::PushWork;

fn send(client_id: u64, to: Conversation) -> Frame {
    Frame::SendMessage(SendMessage {
        client_id,
        to,
        payload: Blob::new(Bytes::from_static(b"ciphertext")).unwrap(),
    })
}

/// The store's answer to a SEND from `sender` with these inbox entries.
fn stored(id: u64, sender: Client, deliveries: Vec<Delivery>) -> Response {
    let message = Message {
        id: MessageId(id),
        conv_seq: ConvSeq(id),
        sender: sender.user,
        sender_device: sender.device,
        server_time: Timestamp(1_000 + id),
        payload: Bytes::from_static(b"ciphertext"),
    };
    Response::Sent(Sent { message, duplicate: false, deliveries, receipts: Vec::new() })
}

fn entry(user: u64, device: u32, seq: u64, conversation: Conversation) -> Delivery {
    Delivery { user: UserId(user), device: DeviceId(device), seq: Seq(seq), conversation }
}

fn delivered_seqs(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Deliver(deliver) => Some(deliver.seq.0),
            _ => None,
        })
        .collect()
}

#[test]
fn direct_messages_cross_to_another_worker_as_one_batch_per_turn() {
    let mut node = TestNode::new(2);
    let alice = node.connect(0, 1, 1, 0);
    let bob_here = node.connect(0, 2, 1, 0);
    let bob_there = node.connect(1, 2, 2, 0);
    for client in [alice, bob_here, bob_there] {
        node.output(client);
    }
    node.send(alice, &[send(1, Conversation::Direct(UserId(2))), send(2, Conversation::Direct(UserId(2)))]);
    let first = node.take_call(|r| matches!(r, Request::Send(s) if s.client_id == 1));
    let second = node.take_call(|r| matches!(r, Request::Send(s) if s.client_id == 2));
    node.batches.clear();
    // Both answers come back in one turn; bob's third device is offline.
    let view = Conversation::Direct(UserId(1));
    for (call, seq) in [(first, 1), (second, 2)] {
        let deliveries = vec![entry(2, 1, seq, view), entry(2, 2, seq, view), entry(2, 3, seq, view)];
        node.answer_in_turn(call, Ok(stored(seq, alice, deliveries)));
    }
    node.turn();
    assert_eq!(node.batches, [Batch { to: 1, items: 2, encodings: 2 }], "one batch for worker 1 per turn");
    assert_eq!(delivered_seqs(&node.frames(bob_there)), [1, 2]);
    assert_eq!(delivered_seqs(&node.frames(bob_here)), [1, 2]);
    let acks = node.frames(alice).into_iter().filter(|f| matches!(f, Frame::SendAck(_))).count();
    assert_eq!(acks, 2);
    let notes: Vec<_> = node
        .pushes
        .iter()
        .filter_map(|work| match work {
            PushWork::Notify(note) => Some((note.device, note.seq)),
            PushWork::Connected(..) => None,
        })
        .collect();
    assert_eq!(
        notes,
        [(DeviceId(3), Seq(1)), (DeviceId(3), Seq(2))],
        "push notes for the offline device only"
    );
}

#[test]
fn a_group_message_is_encoded_once_for_every_member_device() {
    let mut node = TestNode::new(2);
    let alice = node.connect(0, 1, 1, 0);
    let here = node.connect(0, 13, 1, 0);
    let there: Vec<Client> = (10..13).map(|user| node.connect(1, user, 1, 0)).collect();
    // Their sync is written: live delivery starts after it.
    for client in there.iter().copied().chain([here]) {
        node.output(client);
    }
    node.send(alice, &[send(1, Conversation::Group(GroupId(5)))]);
    let call = node.take_call(|r| matches!(r, Request::Send(_)));
    node.batches.clear();
    let group = Conversation::Group(GroupId(5));
    let deliveries = (10..14).map(|user| entry(user, 1, 1, group)).collect();
    node.answer(call, Ok(stored(1, alice, deliveries)));
    assert_eq!(node.batches, [Batch { to: 1, items: 3, encodings: 1 }], "three devices, one encoding");
    for client in there.into_iter().chain([here]) {
        let frames = node.frames(client);
        let deliver = frames.iter().find_map(|f| match f {
            Frame::Deliver(d) => Some(d),
            _ => None,
        });
        let deliver = deliver.unwrap_or_else(|| panic!("no DELIVER for {client:?}: {frames:?}"));
        assert_eq!((deliver.seq, deliver.conversation, deliver.sender), (Seq(1), group, UserId(1)));
    }
}

#[test]
fn a_full_destination_sheds_its_oldest_entries_and_nothing_is_lost() {
    let mut node = TestNode::with_config(2, crate::HubConfig { max_batch: 4, ..hub_config() });
    let alice = node.connect(0, 1, 1, 0);
    let bob = node.connect(1, 2, 1, 0);
    node.output(bob);
    // Worker 1's inbox is full: every turn's batch is refused and kept.
    node.links[1].open.set(false);
    let view = Conversation::Direct(UserId(1));
    for seq in 1..=6 {
        node.send(alice, &[send(seq, Conversation::Direct(UserId(2)))]);
        let call = node.take_call(|r| matches!(r, Request::Send(_)));
        let stored = stored(seq, alice, vec![entry(2, 1, seq, view)]);
        if let Response::Sent(sent) = &stored {
            // What the store keeps for bob's next sync.
            let deliver = sent.deliveries[0].deliver(&sent.message);
            node.inboxes.entry((UserId(2), DeviceId(1))).or_default().push(deliver);
        }
        node.answer(call, Ok(stored));
    }
    assert!(node.batches.iter().all(|b| b.to != 1), "nothing crossed a full inbox");
    let shed = node.metrics[0].drops.get(gateway_admin::DropReason::InboxFull);
    assert_eq!(shed, 2, "two entries over the bound of four");
    node.links[1].open.set(true);
    node.turn();
    assert_eq!(
        node.batches,
        [Batch { to: 1, items: 4, encodings: 4 }],
        "the newest four, kept for one batch"
    );
    // Bob's session sees the gap (its first live entry is 3) and reads the
    // store: every entry arrives once, in order, shed or not.
    assert_eq!(node.sync_all(bob), [1, 2, 3, 4, 5, 6]);
}
