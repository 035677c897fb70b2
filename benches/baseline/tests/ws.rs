//! Echo, hub, 404 and shutdown over plain `ws://`, against the real binary.

// A panic in a test is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{connect, Server};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Error, Message};

/// How long a client waits to conclude that nothing is coming.
const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn echo_returns_every_message_in_order() {
    let server = Server::start(&[], false);
    let mut ws = connect(server.addr, "/echo").await.unwrap();
    let sent: Vec<Message> = (0..20u8)
        .map(|i| {
            if i % 5 == 4 {
                Message::text(format!("text {i}"))
            } else {
                Message::binary(vec![i; 1 + i as usize * 100])
            }
        })
        .collect();
    for message in &sent {
        ws.send(message.clone()).await.unwrap();
    }
    for message in &sent {
        assert_eq!(&ws.next().await.unwrap().unwrap(), message);
    }
    ws.send(Message::Ping(b"are you there"[..].into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Pong(b"are you there"[..].into()));
    ws.close(None).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_))) | None));
}

#[tokio::test]
async fn hub_delivers_to_the_other_members_of_the_room_only() {
    let server = Server::start(&[], false);
    let mut a = connect(server.addr, "/hub/lobby").await.unwrap();
    let mut b = connect(server.addr, "/hub/lobby").await.unwrap();
    let mut c = connect(server.addr, "/hub/lobby").await.unwrap();
    let mut d = connect(server.addr, "/hub/elsewhere").await.unwrap();

    // Members join before their upgrade response, so nothing is missed here.
    let hello = Message::binary(&b"hello from a"[..]);
    a.send(hello.clone()).await.unwrap();
    assert_eq!(b.next().await.unwrap().unwrap(), hello);
    assert_eq!(c.next().await.unwrap().unwrap(), hello);

    // The sender does not get its own message back: the next one it sees is b's.
    let reply = Message::binary(&b"reply from b"[..]);
    b.send(reply.clone()).await.unwrap();
    assert_eq!(a.next().await.unwrap().unwrap(), reply);
    assert_eq!(c.next().await.unwrap().unwrap(), reply);

    // The other room heard nothing, and neither did b of its own.
    assert!(tokio::time::timeout(QUIET, d.next()).await.is_err(), "another room's message leaked");
    assert!(tokio::time::timeout(QUIET, b.next()).await.is_err(), "b got its own message back");
}

#[tokio::test]
async fn hub_keeps_relaying_after_a_member_leaves() {
    let server = Server::start(&[], false);
    let a = connect(server.addr, "/hub/r").await.unwrap();
    drop(a);
    let mut b = connect(server.addr, "/hub/r").await.unwrap();
    let mut c = connect(server.addr, "/hub/r").await.unwrap();
    b.send(Message::binary(&b"again"[..])).await.unwrap();
    assert_eq!(c.next().await.unwrap().unwrap(), Message::binary(&b"again"[..]));
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let server = Server::start(&[], false);
    for path in ["/", "/nope", "/hub/", "/echo/more"] {
        match connect(server.addr, path).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), 404, "{path}"),
            other => panic!("{path}: expected a 404, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sigterm_and_sigint_exit_zero() {
    for signal in ["TERM", "INT"] {
        let server = Server::start(&[], false);
        let _open = connect(server.addr, "/echo").await.unwrap();
        let status = tokio::task::spawn_blocking(move || server.signal(signal)).await.unwrap();
        assert!(status.success(), "SIG{signal}: {status}");
    }
}
