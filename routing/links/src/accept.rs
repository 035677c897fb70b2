//! The receiving side: links other nodes dial to this one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use routing::link::{self, LinkFrame};
use tokio::net::{TcpListener, TcpStream};

use crate::handshake::{accept, write_frame, PeerId};
use crate::io::next_frame;
use crate::{LinkConfig, LinkFailure};

/// While the node cannot take a frame, it is offered again after this long
/// (and the sender's credit is withheld meanwhile).
const RETRY: Duration = Duration::from_millis(1);

/// Where the data frames of every inbound link go: the node's side.
pub trait Sink: Send + Sync + 'static {
    /// Takes a data frame (LIVE, FRAME, REPLACE) from `from`, or gives it
    /// back when it cannot now (a full worker inbox): it is offered again
    /// shortly, and the link reads nothing more meanwhile.
    fn offer(&self, from: PeerId, frame: LinkFrame) -> Result<(), LinkFrame>;
}

/// What the inbound links have done (relaxed counters for the metrics).
#[derive(Debug, Default)]
pub struct InboundStats {
    /// Links open now.
    pub open: AtomicU64,
    /// Data frames received.
    pub frames: AtomicU64,
    /// Of those, LIVE frames (one per message and destination node).
    pub lives: AtomicU64,
    /// Bytes of data frames received.
    pub bytes: AtomicU64,
    /// Connections refused at the handshake (no or a wrong secret, a
    /// stranger, a version not spoken).
    pub refused: AtomicU64,
    /// Links closed for breaking the protocol after the handshake.
    pub violations: AtomicU64,
}

/// Accepts links on `listener` until the runtime stops.
pub async fn serve(
    listener: TcpListener,
    config: Arc<LinkConfig>,
    sink: Arc<dyn Sink>,
    stats: Arc<InboundStats>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(%err, "link accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (config, sink, stats) = (config.clone(), sink.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(err) = link(stream, &config, sink.as_ref(), &stats).await {
                tracing::warn!(%from, %err, "inbound link closed");
            }
        });
    }
}

async fn link(
    mut stream: TcpStream,
    config: &LinkConfig,
    sink: &dyn Sink,
    stats: &InboundStats,
) -> Result<(), LinkFailure> {
    stream.set_nodelay(true)?;
    let mut input = BytesMut::new();
    let handshake =
        tokio::time::timeout(config.handshake_timeout, accept(&mut stream, &mut input, config)).await;
    let peer = match handshake {
        Ok(Ok(peer)) => peer,
        Ok(Err(err)) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
        Err(_) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(LinkFailure::Timeout);
        }
    };
    tracing::info!(peer = peer.node, epoch = peer.epoch, "inbound link up");
    stats.open.fetch_add(1, Ordering::Relaxed);
    let result = receive(&mut stream, input, config, peer, sink, stats).await;
    stats.open.fetch_sub(1, Ordering::Relaxed);
    if matches!(
        result,
        Err(LinkFailure::Protocol(_) | LinkFailure::OverCredit { .. } | LinkFailure::Unexpected(_))
    ) {
        stats.violations.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// Grants the window, then reads data frames and hands them to `sink`,
/// granting again what the node has taken (a grant says "taken").
async fn receive(
    stream: &mut TcpStream,
    mut input: BytesMut,
    config: &LinkConfig,
    peer: PeerId,
    sink: &dyn Sink,
    stats: &InboundStats,
) -> Result<(), LinkFailure> {
    let window = config.window.max(LinkConfig::min_window());
    write_frame(stream, &LinkFrame::Credit { bytes: window }).await?;
    // Bytes the peer may still send, and bytes taken but not granted again.
    let (mut allowed, mut taken) = (window, 0u64);
    loop {
        let Some((frame, size)) = next_frame(stream, &mut input).await? else { return Ok(()) };
        let size = size as u64;
        if !frame.is_data() {
            return Err(LinkFailure::Unexpected(frame.kind()));
        }
        allowed =
            allowed.checked_sub(size).ok_or_else(|| LinkFailure::OverCredit { sent: size - allowed })?;
        stats.frames.fetch_add(1, Ordering::Relaxed);
        if matches!(frame, LinkFrame::Live { .. }) {
            stats.lives.fetch_add(1, Ordering::Relaxed);
        }
        stats.bytes.fetch_add(size, Ordering::Relaxed);
        let mut frame = frame;
        while let Err(back) = sink.offer(peer, frame) {
            frame = back;
            tokio::time::sleep(RETRY).await;
        }
        taken += size;
        // Granted again in quarters of the window (few CREDIT frames, and
        // the sender never waits while the node keeps up), and whenever
        // every whole frame read so far is taken (before waiting on the
        // socket again): the sender keeps each LIVE frame until a grant
        // covers it, and holds the SEND_ACK of a tagged one until then.
        if taken >= window / 4 || !link::starts_with_whole_frame(&input) {
            write_frame(stream, &LinkFrame::Credit { bytes: taken }).await?;
            allowed += taken;
            taken = 0;
        }
    }
}
