//! Messaging end to end: real gateway processes, the store and push services
//! embedded (the default) or as their own `store` and `push` processes over
//! gRPC (on fjall, or on a Redis Cluster with the store's Redis engine), and
//! the client library. Every test runs in every mode (`all_modes!`), so the
//! deployments pass the same suite.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

mod cluster;
mod delivery;
mod faults;
mod fleet;
mod groups;
mod media;
mod observability;
mod social;
mod spec;
mod visibility;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use client::{Client, ClientConfig, Event};
use protocol::{Capabilities, Deliver, DeviceId, Seq, UserId};

pub(crate) use cluster::{Backing, Cluster, Mode};

/// Runs `$name(mode)` once per deployment mode, as three tests.
macro_rules! all_modes {
    ($($name:ident),+ $(,)?) => {
        $( $crate::in_modes!($name: embedded Embedded, remote Remote, redis Redis); )+
    };
}
pub(crate) use all_modes;

/// `mod $name` with one test per (test name, mode).
macro_rules! in_modes {
    ($name:ident: $($test:ident $mode:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$name($crate::Mode::$mode).await;
                }
            )+
        }
    };
}
pub(crate) use in_modes;

pub(crate) async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future).await.expect("timed out")
}

/// A token for (user, device) signed with the node's development key.
pub(crate) fn token(cluster: &Cluster, user: u64, device: u32) -> String {
    let signer = gateway_auth::keys::load_or_create_dev_signer(&cluster.gateway.data_dir()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    signer.mint(UserId(user), DeviceId(device), now, 3_600)
}

/// A client of (user, device) with every capability, resuming after `resume`.
pub(crate) fn client_config(cluster: &Cluster, user: u64, device: u32, resume: u64) -> ClientConfig {
    let mut config =
        ClientConfig::new(cluster.gateway.url(), token(cluster, user, device).into_bytes(), DeviceId(device));
    config.capabilities = Capabilities::ALL;
    config.resume_after = Seq(resume);
    config
}

pub(crate) async fn connect(cluster: &Cluster, user: u64, device: u32) -> Client {
    connect_after(cluster, user, device, 0).await
}

pub(crate) async fn connect_after(cluster: &Cluster, user: u64, device: u32, resume: u64) -> Client {
    let mut client = within(Client::connect(client_config(cluster, user, device, resume))).await.unwrap();
    // The first sync is over before the test goes on.
    wait_for(&mut client, |event| matches!(event, Event::Synced { .. }).then_some(())).await;
    client
}

/// Events until `pick` accepts one; acks deliveries and sync batches on the
/// way (as an application would once it stored them).
pub(crate) async fn wait_for<T>(client: &mut Client, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let event = within(client.next_event()).await.unwrap();
        match &event {
            Event::Delivered(deliver) => client.ack(deliver.seq).await.unwrap(),
            Event::SyncProgress { up_to, .. } if up_to.0 > 0 => client.ack(*up_to).await.unwrap(),
            _ => {}
        }
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

/// The next `count` deliveries (acked).
pub(crate) async fn deliveries(client: &mut Client, count: usize) -> Vec<Deliver> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let deliver = wait_for(client, |event| match event {
            Event::Delivered(deliver) => Some(deliver.clone()),
            _ => None,
        })
        .await;
        out.push(deliver);
    }
    out
}

/// No delivery arrives within `quiet` (events that are not deliveries are
/// skipped).
pub(crate) async fn no_delivery(client: &mut Client, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return,
            Ok(Ok(Event::Delivered(deliver))) => panic!("unexpected delivery {deliver:?}"),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("client error {err}"),
        }
    }
}
