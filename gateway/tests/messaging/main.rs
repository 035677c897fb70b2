//! Messaging end to end: real gateway processes, the store and push services
//! embedded or as their own processes, and the client library.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

use std::time::Duration;

use client::{Client, ClientConfig, Event};
use protocol::{Conversation, DeviceId, Payload, UserId};
use support::Gateway;

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("timed out")
}

async fn connect(gateway: &Gateway, user: u64, device: u32) -> Client {
    let token = gateway.token(user, device);
    let config = ClientConfig::new(gateway.url(), token.into_bytes(), DeviceId(device));
    within(Client::connect(config)).await.unwrap()
}

#[tokio::test]
async fn smoke_one_to_one() {
    let gateway = Gateway::start("");
    let mut a = connect(&gateway, 1, 1).await;
    let mut b = connect(&gateway, 2, 1).await;
    let id = a.send(Conversation::Direct(UserId(2)), Payload::new(&b"hi"[..]).unwrap()).await.unwrap();
    loop {
        match within(a.next_event()).await.unwrap() {
            Event::Sent { client_id, .. } => {
                assert_eq!(client_id, id);
                break;
            }
            other => eprintln!("a: {other:?}"),
        }
    }
    loop {
        match within(b.next_event()).await.unwrap() {
            Event::Delivered(d) => {
                assert_eq!(d.payload.bytes().as_ref(), b"hi");
                break;
            }
            other => eprintln!("b: {other:?}"),
        }
    }
}
