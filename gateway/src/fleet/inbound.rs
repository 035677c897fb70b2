//! Frames from other nodes' links, handed to this node's sessions: each
//! recipient is found in the node directory and its item posted to the
//! worker that holds it, one batch per worker per frame.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use gateway_core::{Class, SharedDeliver};
use gateway_hub::Remote;
use protocol::{Conversation, Decoder, DeviceId, Seq, UserId};
use routing::link::{FrameClass, LinkFrame};
use routing::Directory;
use routing_links::{LinkConfig, PeerId, Sink};
use tokio::sync::mpsc;

use super::router::Setup;
use super::{FleetMetrics, PerWorker};
use crate::driver::Inbox;

/// A live entry for a device this node does not hold (it moved or left):
/// the router looks it up again.
#[derive(Debug)]
pub(super) struct Misrouted {
    pub(super) user: UserId,
    pub(super) device: DeviceId,
    pub(super) seq: Seq,
    pub(super) deliver: SharedDeliver,
    pub(super) conversation: Conversation,
    pub(super) sender: UserId,
    /// Already forwarded once: not again (a push note instead).
    pub(super) forwarded: bool,
    /// The held SEND_ACK it counts for (an entry this node's own link
    /// handed back), if any.
    pub(super) tag: Option<routing_links::Tag>,
}

/// What the inbound links hand the router.
#[derive(Debug)]
pub(super) enum FromLinks {
    /// A live entry for a device no longer here.
    Misrouted(Misrouted),
    /// A PRESENCE_QUERY's answer, for the node that asked.
    Answer {
        /// The node that asked.
        node: u32,
        /// The user.
        user: UserId,
        /// The PRESENCE frame, encoded.
        frame: bytes::Bytes,
    },
}

/// The node's [`Sink`] for its inbound links.
pub(super) struct Inbound {
    directory: Arc<Directory>,
    inboxes: Arc<Vec<Inbox>>,
    links: Arc<LinkConfig>,
    to_router: mpsc::UnboundedSender<FromLinks>,
    metrics: Arc<FleetMetrics>,
    /// The presence grace period (`messaging.presence_grace_ms`).
    grace_ms: u64,
}

impl Inbound {
    pub(super) fn new(setup: &Setup, to_router: mpsc::UnboundedSender<FromLinks>) -> Self {
        Self {
            directory: setup.parts.directory.clone(),
            inboxes: setup.parts.inboxes.clone(),
            links: setup.links.clone(),
            to_router,
            metrics: setup.metrics.clone(),
            grace_ms: setup.parts.grace_ms,
        }
    }

    /// A frame a peer should never have sent (it passed the link codec but
    /// its content is not what a gateway encodes): dropped, logged, counted.
    fn bad(&self, from: PeerId, what: &str) {
        self.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = from.node, what, "fleet: a link frame with bad content was dropped");
    }

    fn live(
        &self,
        from: PeerId,
        forwarded: bool,
        tail: bytes::Bytes,
        recipients: &[routing::link::Recipient],
        out: &mut PerWorker,
    ) {
        let Ok((deliver, decoded)) = SharedDeliver::from_tail(tail) else {
            return self.bad(from, "a LIVE whose DELIVER does not decode");
        };
        let mut devices = Vec::new();
        let mut current = None;
        for r in recipients {
            if current != Some(r.user) {
                self.directory.devices(r.user, &mut devices);
                current = Some(r.user);
            }
            let here = devices.iter().find(|(device, _)| *device == r.device).map(|(_, session)| *session);
            match here {
                Some(to) if out.push(to, Remote::Live { to, seq: r.seq, deliver: deliver.clone() }) => {}
                _ => {
                    let _ = self.to_router.send(FromLinks::Misrouted(Misrouted {
                        user: r.user,
                        device: r.device,
                        seq: r.seq,
                        deliver: deliver.clone(),
                        conversation: decoded.conversation,
                        sender: decoded.sender,
                        forwarded,
                        tag: None,
                    }));
                }
            }
        }
    }
}

impl Inbound {
    /// WATCHERS: the PRESENCE frame for this node's watchers of `users`.
    fn watchers(&self, from: PeerId, frame: &[u8], users: &[UserId], out: &mut PerWorker) {
        let mut input = BytesMut::from(frame);
        let presence = match Decoder::for_server_messages().decode(&mut input) {
            Ok(Some(presence @ protocol::Frame::Presence(_))) if input.is_empty() => presence,
            _ => return self.bad(from, "a WATCHERS frame that is not one PRESENCE"),
        };
        let mut watchers = Vec::new();
        for &user in users {
            self.directory.watchers(user, &mut watchers);
            for &to in &watchers {
                out.push(to, Remote::Frame { to, frame: presence.clone(), class: Class::Ephemeral });
            }
        }
    }

    /// PRESENCE_QUERY: what watchers may see of each user held here, for
    /// the node that asked (the router sends it back).
    fn presence_query(&self, from: PeerId, users: &[UserId]) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        for &user in users {
            let Some(view) = self.directory.presence(user, now_ms, self.grace_ms) else { continue };
            let presence = protocol::Presence { user, status: view.status, last_seen: view.last_seen };
            if let Ok(frame) = protocol::Frame::Presence(presence).to_bytes() {
                let _ = self.to_router.send(FromLinks::Answer { node: from.node, user, frame });
            }
        }
    }
}

impl Sink for Inbound {
    fn offer(&self, from: PeerId, frame: LinkFrame) -> Result<(), LinkFrame> {
        // Nothing is posted unless every worker has room: a frame is posted
        // whole or offered again (the link withholds credit meanwhile).
        if self.inboxes.iter().any(|inbox| inbox.sender.is_full()) {
            self.metrics.inbound_waits.fetch_add(1, Ordering::Relaxed);
            return Err(frame);
        }
        let mut out = PerWorker::new(&self.inboxes);
        match frame {
            LinkFrame::Live { forwarded, tail, recipients } => {
                self.live(from, forwarded, tail, &recipients, &mut out)
            }
            LinkFrame::Frame { class, frame, users } => {
                let mut input = BytesMut::from(&frame[..]);
                let decoded = match Decoder::for_server_messages().decode(&mut input) {
                    Ok(Some(decoded)) if input.is_empty() => decoded,
                    _ => {
                        self.bad(from, "a FRAME that is not one server frame");
                        return Ok(());
                    }
                };
                let class = match class {
                    FrameClass::Ephemeral => Class::Ephemeral,
                    FrameClass::Live => Class::Live,
                };
                let mut devices = Vec::new();
                for target in users {
                    self.directory.devices(target.user, &mut devices);
                    for &(device, to) in &devices {
                        if Some(device) != target.except {
                            out.push(to, Remote::Frame { to, frame: decoded.clone(), class });
                        }
                    }
                }
            }
            LinkFrame::Replace { user, device, epoch, session } => {
                let mut devices = Vec::new();
                self.directory.devices(user, &mut devices);
                let old = devices.iter().find(|(d, to)| *d == device && to.placement_id() == session);
                match old {
                    Some(&(_, to)) if epoch == self.links.epoch() => {
                        out.push(to, Remote::Replace(to));
                    }
                    // Gone already, or placed by an earlier epoch of this
                    // node (whose sessions were placed again since).
                    _ => {}
                }
            }
            LinkFrame::Watchers { frame, users } => self.watchers(from, &frame, &users, &mut out),
            LinkFrame::PresenceQuery { users } => self.presence_query(from, &users),
            other => {
                self.bad(from, if other.is_data() { "an unknown data frame" } else { "a handshake frame" })
            }
        }
        // An inbox filled between the check and now by the node's own
        // workers: shed (a live entry stays in the store).
        self.metrics.inbound_shed.fetch_add(out.post(&self.inboxes), Ordering::Relaxed);
        Ok(())
    }
}
