//! Presence (the grace period before "offline") and the TYPING throttle.

use std::time::Duration;

use protocol::{Conversation, Frame, Presence, PresenceStatus, PresenceSubscribe, Typing, UserId};

use super::harness::{hub_config, TestNode};

fn presences(frames: &[Frame]) -> Vec<(PresenceStatus, u64)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Presence(Presence { status, last_seen, .. }) => Some((*status, last_seen.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_user_is_announced_offline_only_after_the_grace_period() {
    let mut node = TestNode::new(2);
    let watcher = node.connect(0, 1, 1, 0);
    node.output(watcher);
    node.send(watcher, &[Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(2) })]);
    assert_eq!(presences(&node.frames(watcher)), [(PresenceStatus::Offline, 0)]);
    let user = node.connect(1, 2, 1, 0);
    let online_at = node.now.unix_ms;
    assert_eq!(presences(&node.frames(watcher)), [(PresenceStatus::Online, online_at)]);
    node.advance(Duration::from_secs(1));
    node.disconnect(user);
    let left_at = node.now.unix_ms;
    node.advance(hub_config().grace - Duration::from_millis(10));
    node.run_timers();
    assert!(presences(&node.frames(watcher)).is_empty(), "still within the grace period");
    node.advance(Duration::from_millis(10));
    node.run_timers();
    assert_eq!(presences(&node.frames(watcher)), [(PresenceStatus::Offline, left_at)]);
}

#[test]
fn typing_is_forwarded_at_most_once_per_interval_but_a_stop_always_goes() {
    let mut node = TestNode::new(1);
    let alice = node.connect(0, 1, 1, 0);
    let bob = node.connect(0, 2, 1, 0);
    node.output(bob);
    let typing = |active| Frame::Typing(Typing { conversation: Conversation::Direct(UserId(2)), active });
    let notified = |node: &mut TestNode| -> Vec<bool> {
        node.frames(bob)
            .into_iter()
            .filter_map(|f| match f {
                Frame::TypingNotify(n) => Some(n.active),
                _ => None,
            })
            .collect()
    };
    node.send(alice, &[typing(true)]);
    node.advance(Duration::from_secs(1));
    node.send(alice, &[typing(true)]);
    assert_eq!(notified(&mut node), [true], "the second within the interval is dropped");
    assert_eq!(node.metrics[0].drops.get(gateway_admin::DropReason::Typing), 1);
    node.send(alice, &[typing(false)]);
    assert_eq!(notified(&mut node), [false]);
    node.advance(hub_config().typing_interval);
    node.send(alice, &[typing(true)]);
    assert_eq!(notified(&mut node), [true], "after the interval it goes again");
}
