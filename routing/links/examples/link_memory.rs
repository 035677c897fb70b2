//! Memory per idle link, both ends in one process: `N` dialers (`Peer`)
//! and one acceptor (`serve`) on loopback, every link handshaken and one
//! small frame through each, then the process's PSS
//! (`/proc/self/smaps_rollup`) before and after, divided by `N`.
//!
//! `cargo run --release -p routing-links --example link_memory -- 399`
//! (a node of a 400-node fleet dials at most 399 peers and accepts as many).

// A measurement tool: any failure ends it, saying where.
#![allow(clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{DeviceId, Seq, UserId};
use routing::link::{LinkFrame, Recipient};
use routing_links::{serve, InboundStats, Lane, LinkConfig, Peer, PeerId, Sink};

mod common;
use common::pss_kib;

struct Count(std::sync::atomic::AtomicU64);

impl Sink for Count {
    fn offer(&self, _: PeerId, _: LinkFrame) -> Result<(), LinkFrame> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn main() {
    let links: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(399);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let secret = b"a cluster secret for the memory measurement".to_vec();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let sink = Arc::new(Count(Default::default()));
        let stats = Arc::new(InboundStats::default());
        tokio::spawn(serve(
            listener,
            Arc::new(LinkConfig::new(0, 1, secret.clone())),
            sink.clone(),
            stats.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = pss_kib();
        let config = Arc::new(LinkConfig::new(1, 1, secret));
        // Nothing is handed back on healthy links; the receiver just stays.
        let (returned, _back) = tokio::sync::mpsc::unbounded_channel();
        let mut peers = Vec::new();
        for node in 0..links {
            // Each peer is "another node" to the acceptor (ids only label).
            let peer = Peer::start(config.clone(), 0, address.clone(), returned.clone());
            let frame = LinkFrame::Live {
                forwarded: false,
                tail: Bytes::from_static(b"tail"),
                recipients: vec![Recipient { user: UserId(node), device: DeviceId(1), seq: Seq(1) }],
            };
            peer.send(Lane::Live, &frame);
            peers.push(peer);
        }
        while sink.0.load(Ordering::Relaxed) < links {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = pss_kib();
        let open = stats.open.load(Ordering::Relaxed);
        println!(
            "{links} links up ({open} accepted), one frame through each: PSS {before} KiB -> {after} KiB, \
             {:.1} KiB per link (both ends, user space)",
            (after.saturating_sub(before)) as f64 / links as f64
        );
        drop(peers);
    });
}
