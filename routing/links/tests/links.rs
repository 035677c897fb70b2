//! Links over real loopback TCP: frames arrive in order, a dialer without
//! the cluster secret is refused, a peer that stops taking frames bounds the
//! sender's memory (shedding, counted), and a link redials a peer that
//! comes back.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::{DeviceId, Seq, UserId};
use routing::link::{LinkFrame, Recipient};
use routing_links::{serve, InboundStats, Lane, LinkConfig, Peer, PeerId, Sink};
use tokio::net::TcpListener;

#[derive(Default)]
struct Collect {
    frames: Mutex<Vec<(u32, LinkFrame)>>,
    /// While set, every frame is given back (a node whose workers are full).
    stalled: AtomicBool,
}

impl Sink for Collect {
    fn offer(&self, from: PeerId, frame: LinkFrame) -> Result<(), LinkFrame> {
        if self.stalled.load(Ordering::Relaxed) {
            return Err(frame);
        }
        self.frames.lock().unwrap().push((from.node, frame));
        Ok(())
    }
}

fn live(seq: u64, payload: usize) -> LinkFrame {
    LinkFrame::Live {
        forwarded: false,
        tail: Bytes::from(vec![7u8; payload]),
        recipients: vec![Recipient { user: UserId(1), device: DeviceId(1), seq: Seq(seq) }],
    }
}

async fn acceptor(node: u32, secret: &[u8], window: u64) -> (String, Arc<Collect>, Arc<InboundStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut config = LinkConfig::new(node, 1, secret.to_vec());
    config.window = window;
    let sink = Arc::new(Collect::default());
    let stats = Arc::new(InboundStats::default());
    tokio::spawn(serve(listener, Arc::new(config), sink.clone(), stats.clone()));
    (address, sink, stats)
}

fn dialer(node: u32, secret: &[u8], queue_bytes: usize) -> Arc<LinkConfig> {
    let mut config = LinkConfig::new(node, 5, secret.to_vec());
    config.queue_bytes = queue_bytes;
    config.backoff = (Duration::from_millis(20), Duration::from_millis(100));
    Arc::new(config)
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "current_thread")]
async fn frames_arrive_in_order_from_a_proved_peer() {
    let (address, sink, stats) = acceptor(2, b"cluster secret of this test", 0).await;
    let peer = Peer::start(dialer(1, b"cluster secret of this test", 8 << 20), 2, address);
    for seq in 1..=1_000 {
        peer.send(Lane::Live, &live(seq, 100));
    }
    until("1000 frames", || sink.frames.lock().unwrap().len() == 1_000).await;
    let frames = sink.frames.lock().unwrap();
    for (i, (from, frame)) in frames.iter().enumerate() {
        assert_eq!(*from, 1);
        assert_eq!(*frame, live(i as u64 + 1, 100));
    }
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    // Many frames per write: batched.
    let writes = peer.stats().writes.load(Ordering::Relaxed);
    assert!(writes < 1_000, "{writes} writes for 1000 frames");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dialer_without_the_secret_is_refused_and_delivers_nothing() {
    let (address, sink, stats) = acceptor(2, b"the real secret", 0).await;
    let forger = Peer::start(dialer(1, b"a guessed secret", 8 << 20), 2, address.clone());
    forger.send(Lane::Live, &live(1, 10));
    until("a refusal", || stats.refused.load(Ordering::Relaxed) >= 1).await;
    until("the forger's dial failure", || forger.stats().failures.load(Ordering::Relaxed) >= 1).await;
    assert!(sink.frames.lock().unwrap().is_empty());
    assert_eq!(forger.stats().connects.load(Ordering::Relaxed), 0);
    // A raw stranger (not even the link protocol) is refused too.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&address).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest).await;
    until("the stranger's refusal", || stats.refused.load(Ordering::Relaxed) >= 2).await;
    assert!(sink.frames.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_peer_bounds_the_senders_memory_and_sheds_are_counted() {
    let window = LinkConfig::min_window();
    let (address, sink, _) = acceptor(2, b"s3cret-s3cret", window).await;
    sink.stalled.store(true, Ordering::Relaxed);
    let bound = 256 << 10;
    let peer = Peer::start(dialer(1, b"s3cret-s3cret", bound), 2, address);
    until("the link", || peer.stats().connects.load(Ordering::Relaxed) == 1).await;
    for seq in 1..=20_000 {
        peer.send(Lane::Live, &live(seq, 1_000));
        assert!(peer.stats().queued_bytes.load(Ordering::Relaxed) <= bound as u64);
        if seq % 1_000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let shed = peer.stats().shed_live.load(Ordering::Relaxed);
    let written = peer.stats().bytes.load(Ordering::Relaxed);
    assert!(written <= window, "the credit stops the writer: {written} bytes written");
    assert!(shed > 15_000, "what neither the credit nor the queue holds is shed: {shed}");
    // The peer takes frames again: the queue drains, the newest frames were
    // kept, and what arrives is in order.
    sink.stalled.store(false, Ordering::Relaxed);
    let newest = live(20_000, 1_000);
    until("the newest frame", || sink.frames.lock().unwrap().last().map(|(_, frame)| frame) == Some(&newest))
        .await;
    assert_eq!(peer.stats().queued_bytes.load(Ordering::Relaxed), 0);
    let seqs: Vec<u64> = sink
        .frames
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, frame)| match frame {
            LinkFrame::Live { recipients, .. } => recipients.first().map(|r| r.seq.0),
            _ => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    assert_eq!(seqs.len() as u64 + shed, 20_000, "every frame either arrived or was counted as shed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_link_redials_a_peer_that_comes_back() {
    // Reserve an address, then free it: the peer is down at first.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let peer = Peer::start(dialer(1, b"s3cret-s3cret", 1 << 20), 2, address.to_string());
    peer.send(Lane::Live, &live(1, 10));
    until("failed dials", || peer.stats().failures.load(Ordering::Relaxed) >= 2).await;
    let listener = TcpListener::bind(address).await.unwrap();
    let sink = Arc::new(Collect::default());
    let config = Arc::new(LinkConfig::new(2, 1, b"s3cret-s3cret".to_vec()));
    tokio::spawn(serve(listener, config, sink.clone(), Arc::new(InboundStats::default())));
    until("the queued frame", || sink.frames.lock().unwrap().len() == 1).await;
    assert_eq!(peer.stats().connects.load(Ordering::Relaxed), 1);
}
