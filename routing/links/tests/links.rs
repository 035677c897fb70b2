//! Links over real loopback TCP: frames arrive in order, a dialer without
//! the cluster secret is refused, a peer that stops taking frames bounds the
//! sender's memory (shedding, counted), a link redials a peer that comes
//! back, a link that fails hands back exactly the LIVE frames its peer did
//! not take, and a tagged frame is reported once its peer took it.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::{DeviceId, Seq, UserId};
use routing::link::{LinkFrame, Recipient};
use routing_links::{serve, InboundStats, Lane, LinkConfig, Peer, PeerId, Report, Returned, Sink, Tag};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Default)]
struct Collect {
    frames: Mutex<Vec<(u32, LinkFrame)>>,
    /// While set, every frame is given back (a node whose workers are full).
    stalled: AtomicBool,
    /// Offers, taken or not.
    offers: AtomicUsize,
}

impl Sink for Collect {
    fn offer(&self, from: PeerId, frame: LinkFrame) -> Result<(), LinkFrame> {
        self.offers.fetch_add(1, Ordering::Relaxed);
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

/// A peer link from node 1 to node 2, and where it reports.
fn peer(secret: &[u8], queue_bytes: usize, address: String) -> (Peer, mpsc::UnboundedReceiver<Report>) {
    let (reports, back) = mpsc::unbounded_channel();
    (Peer::start(dialer(1, secret, queue_bytes), 2, address, reports), back)
}

/// The next hand-back, and the tags reported taken before it.
async fn next_returned(back: &mut mpsc::UnboundedReceiver<Report>) -> (Returned, Vec<Tag>) {
    let mut taken = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), back.recv()).await.unwrap().unwrap() {
            Report::Taken(tags) => taken.extend(tags),
            Report::Shed(tags) => panic!("nothing is shed here: {tags:?}"),
            Report::Returned(returned) => return (returned, taken),
        }
    }
}

/// The seqs of LIVE frames (encoded or not), in order.
fn seqs<'a>(frames: impl Iterator<Item = &'a LinkFrame>) -> Vec<u64> {
    frames
        .filter_map(|frame| match frame {
            LinkFrame::Live { recipients, .. } => recipients.first().map(|r| r.seq.0),
            _ => None,
        })
        .collect()
}

fn decoded(returned: &Returned) -> Vec<LinkFrame> {
    returned
        .frames
        .iter()
        .map(|(bytes, _)| LinkFrame::decode(&mut bytes::BytesMut::from(&bytes[..])).unwrap().unwrap())
        .collect()
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
    let (peer, mut back) = peer(b"cluster secret of this test", 8 << 20, address);
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
    assert!(back.try_recv().is_err(), "nothing handed back from a healthy link");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dialer_without_the_secret_is_refused_and_delivers_nothing() {
    let (address, sink, stats) = acceptor(2, b"the real secret", 0).await;
    let (forger, _back) = peer(b"a guessed secret", 8 << 20, address.clone());
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
    let (peer, _back) = peer(b"s3cret-s3cret", bound, address);
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
    let seqs = seqs(sink.frames.lock().unwrap().iter().map(|(_, frame)| frame));
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    assert_eq!(seqs.len() as u64 + shed, 20_000, "every frame either arrived or was counted as shed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_link_redials_a_peer_that_comes_back_and_hands_back_what_waited() {
    // Reserve an address, then free it: the peer is down at first.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let (peer, mut back) = peer(b"s3cret-s3cret", 1 << 20, address.to_string());
    peer.send(Lane::Live, &live(1, 10));
    peer.send(Lane::Ephemeral, &LinkFrame::PresenceQuery { users: vec![UserId(9)] });
    // The failed dial hands the LIVE frame back to the node at once (its
    // device may be elsewhere by now); the ephemeral one waits.
    let (returned, _) = next_returned(&mut back).await;
    assert_eq!(returned.node, 2);
    assert_eq!(decoded(&returned), [live(1, 10)]);
    until("failed dials", || peer.stats().failures.load(Ordering::Relaxed) >= 2).await;
    assert!(back.try_recv().is_err(), "each frame is handed back once");
    let listener = TcpListener::bind(address).await.unwrap();
    let sink = Arc::new(Collect::default());
    let config = Arc::new(LinkConfig::new(2, 1, b"s3cret-s3cret".to_vec()));
    tokio::spawn(serve(listener, config, sink.clone(), Arc::new(InboundStats::default())));
    until("the queued presence query", || sink.frames.lock().unwrap().len() == 1).await;
    peer.send(Lane::Live, &live(2, 10));
    until("a LIVE sent once the link is up", || sink.frames.lock().unwrap().len() == 2).await;
    assert_eq!(peer.stats().connects.load(Ordering::Relaxed), 1);
    assert_eq!(peer.stats().returned.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_link_whose_peer_dies_hands_back_exactly_the_frames_it_did_not_take() {
    // The peer node runs on its own runtime and thread: dropping that
    // runtime closes its sockets as the death of its process would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let sink = Arc::new(Collect::default());
    let serving = sink.clone();
    let (die, dead) = tokio::sync::oneshot::channel::<()>();
    let node = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let config = Arc::new(LinkConfig::new(2, 1, b"s3cret-s3cret".to_vec()));
            tokio::select! {
                () = serve(listener, config, serving, Arc::new(InboundStats::default())) => {}
                _ = dead => {}
            }
        });
    });
    let (peer, mut back) = peer(b"s3cret-s3cret", 8 << 20, address);
    // Each frame tagged with its seq.
    for seq in 1..=50 {
        peer.send_tagged(Lane::Live, &live(seq, 1_000), Some(seq));
    }
    until("50 frames taken", || sink.frames.lock().unwrap().len() == 50).await;
    // The node stops taking frames (its workers are full): 51 to 100 are
    // written (the credit allows them) but not taken.
    sink.stalled.store(true, Ordering::Relaxed);
    for seq in 51..=100 {
        peer.send_tagged(Lane::Live, &live(seq, 1_000), Some(seq));
    }
    until("frame 51 offered", || sink.offers.load(Ordering::Relaxed) > 50).await;
    until("51 to 100 written", || peer.stats().frames.load(Ordering::Relaxed) == 100).await;
    die.send(()).unwrap();
    node.join().unwrap();
    let (returned, taken) = next_returned(&mut back).await;
    let frames = decoded(&returned);
    assert_eq!(seqs(frames.iter()), (51..=100).collect::<Vec<u64>>(), "what was taken is not handed back");
    // Exactly the taken frames were reported taken, the others come back
    // with their tags.
    assert_eq!(taken, (1..=50).collect::<Vec<Tag>>());
    let tags: Vec<Option<Tag>> = returned.frames.iter().map(|(_, tag)| *tag).collect();
    assert_eq!(tags, (51..=100).map(Some).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread")]
async fn a_tagged_frame_is_reported_once_its_peer_took_it_and_not_before() {
    let (address, sink, _) = acceptor(2, b"s3cret-s3cret", 0).await;
    let (peer, mut back) = peer(b"s3cret-s3cret", 8 << 20, address);
    until("the link", || peer.stats().connects.load(Ordering::Relaxed) == 1).await;
    sink.stalled.store(true, Ordering::Relaxed);
    peer.send(Lane::Live, &live(1, 100));
    peer.send_tagged(Lane::Live, &live(2, 100), Some(7));
    until("both offered", || sink.offers.load(Ordering::Relaxed) >= 2).await;
    until("both written", || peer.stats().frames.load(Ordering::Relaxed) == 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(back.try_recv().is_err(), "nothing reported while the peer does not take the frames");
    sink.stalled.store(false, Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(5), back.recv()).await.unwrap().unwrap();
    assert!(matches!(report, Report::Taken(ref tags) if tags == &[7]), "{report:?}");
    assert_eq!(seqs(sink.frames.lock().unwrap().iter().map(|(_, frame)| frame)), [1, 2]);
}
