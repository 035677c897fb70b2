//! A node under resource exhaustion, end to end (real processes, sockets and
//! file systems; needs root for `mount` and `prlimit`): a full disk under the
//! store (`disk`), a descriptor limit exhausted by idle connections
//! (`descriptors`), and the data dir's privacy at umask 000 (`private`).
//! Each must be survived, and recovered from by the node itself, with no
//! acknowledged message lost.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

mod descriptors;
mod disk;
mod private;

use std::collections::HashSet;
use std::time::Duration;

use client::{Client, ClientConfig, Event};
use protocol::{Conversation, DeviceId, ErrorCode, Payload, UserId};

use support::Gateway;

/// Limits out of the way: one test client sends fast, and floods come from
/// one IP.
pub(crate) const OPEN_LIMITS: &str = "[limits]\nconnections_per_ip_per_sec = 100000\n\
    connections_per_ip_burst = 100000\nframes_per_sec = 100000\nframes_burst = 100000\n";

pub(crate) async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future).await.expect("timed out")
}

pub(crate) fn config(gateway: &Gateway, user: u64) -> ClientConfig {
    ClientConfig::new(gateway.url(), gateway.token(user, 1).into_bytes(), DeviceId(1))
}

/// A connected client of (user, device 1), its first sync over.
pub(crate) async fn connect(gateway: &Gateway, user: u64) -> Client {
    let mut client = within(Client::connect(config(gateway, user))).await.unwrap();
    loop {
        if let Event::Synced { .. } = within(client.next_event()).await.unwrap() {
            return client;
        }
    }
}

/// How the node answered one SEND.
#[derive(Debug)]
pub(crate) enum Outcome {
    Sent,
    Refused { code: ErrorCode, retryable: bool, retry_after_ms: u32, text: String },
}

/// The answer to send `client_id` (other events are skipped).
pub(crate) async fn outcome(client: &mut Client, client_id: u64) -> Outcome {
    loop {
        match within(client.next_event()).await.unwrap() {
            Event::Sent { client_id: id, .. } if id == client_id => return Outcome::Sent,
            Event::SendFailed { client_id: id, code, retryable, retry_after_ms, text } if id == client_id => {
                let text = text.as_str().to_owned();
                return Outcome::Refused { code, retryable, retry_after_ms, text };
            }
            _ => {}
        }
    }
}

/// Sends `text` to user 2 and waits for the node's answer.
pub(crate) async fn send(client: &mut Client, text: &str) -> (u64, Outcome) {
    let payload = Payload::new(text.as_bytes().to_vec()).unwrap();
    let id = client.send(Conversation::Direct(UserId(2)), payload).await.unwrap();
    (id, outcome(client, id).await)
}

/// Resends `client_id` until it is acknowledged (retryable refusals wait
/// their `retry_after_ms`).
pub(crate) async fn resend_until_sent(client: &mut Client, client_id: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(client.resend(client_id).await.unwrap(), "send {client_id} is no longer pending");
        match outcome(client, client_id).await {
            Outcome::Sent => return,
            Outcome::Refused { retryable: true, retry_after_ms, .. } => {
                assert!(tokio::time::Instant::now() < deadline, "send {client_id} still refused after 30 s");
                tokio::time::sleep(Duration::from_millis(u64::from(retry_after_ms).clamp(10, 1_000))).await;
            }
            refused => panic!("send {client_id}: {refused:?}"),
        }
    }
}

/// User 2 connects and reads its whole inbox: it must hold exactly
/// `expected` (every acknowledged message, once).
pub(crate) async fn receive_exactly(gateway: &Gateway, expected: &HashSet<String>) {
    let mut b = within(Client::connect(config(gateway, 2))).await.unwrap();
    let mut seen = HashSet::new();
    loop {
        match within(b.next_event()).await.unwrap() {
            Event::Delivered(d) => {
                let text = String::from_utf8(d.payload.bytes().to_vec()).unwrap();
                assert!(seen.insert(text.clone()), "{text} delivered twice");
            }
            Event::SyncProgress { up_to, .. } if up_to.0 > 0 => b.ack(up_to).await.unwrap(),
            Event::Synced { .. } => break,
            _ => {}
        }
    }
    let lost: Vec<_> = expected.difference(&seen).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {lost:?}",
        expected.difference(&seen).count()
    );
    assert_eq!(&seen, expected, "only acknowledged messages (and all of them) are delivered");
}
