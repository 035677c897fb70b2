//! The log provider and the queue bound, through the public API only.

// Tests fail by panicking: unwrap and indexing are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use backend_push::{Notification, Provider, Push, PushApi, PushConfig, PushNote, SendFuture};
use protocol::{Conversation, DeviceId, Seq, UserId};

fn note(device: u32, seq: u64) -> PushNote {
    PushNote {
        user: UserId(1),
        device: DeviceId(device),
        seq: Seq(seq),
        conversation: Conversation::Direct(UserId(2)),
        sender: UserId(2),
    }
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn log_provider_counts_sent() {
    let push =
        Push::start(PushConfig { window: Duration::from_millis(50), ..PushConfig::default() }).unwrap();
    push.notify(note(1, 1));
    push.notify(note(1, 2));
    push.notify(note(2, 1));
    assert!(wait_until(|| push.metrics().snapshot().sent == 2));
    std::thread::sleep(Duration::from_millis(100));
    let m = push.metrics().snapshot();
    assert_eq!((m.notes, m.coalesced, m.sent, m.dead_lettered), (3, 1, 2, 0));
}

/// Stalls the push thread inside `send` (synchronously, on purpose) until
/// released, so the queue in front of it fills deterministically.
#[derive(Debug)]
struct Stall {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Provider for Stall {
    fn send<'a>(&'a self, _: &'a Notification) -> SendFuture<'a> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        Box::pin(std::future::ready(Ok(())))
    }
}

#[test]
fn full_queue_drops_notes_and_counts_them() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let stall = Arc::new(Stall { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let push = Push::start_with_provider(
        PushConfig { window: Duration::from_millis(10), queue: 4, ..PushConfig::default() },
        stall,
    )
    .unwrap();
    push.notify(note(1, 1));
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    // The push thread is stuck: 4 notes fit in the queue, 6 do not.
    for seq in 2..12 {
        push.notify(note(1, seq));
    }
    push.connected(UserId(9), DeviceId(9));
    let m = push.metrics().snapshot();
    assert_eq!((m.notes, m.dropped, m.connect_dropped), (11, 6, 1));
    release.send(()).unwrap();
    release.send(()).unwrap();
    // The 4 queued notes coalesce into a second notification.
    assert!(wait_until(|| push.metrics().snapshot().sent == 2));
    assert_eq!(push.metrics().snapshot().coalesced, 3);
    let mut text = String::new();
    push.metrics().render(&mut text);
    assert!(text.lines().any(|l| l == "push_dropped_total 6"), "{text}");
}
