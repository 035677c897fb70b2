//! Presence across nodes. A node that has sessions watching a user is
//! recorded in the registry (`watch:{u:<user>}`); where the user is, each
//! change of its presence goes to those nodes as WATCHERS (one frame per
//! node, delivered there to every watcher of the user). A subscription to a
//! user held by another node is answered by that node (PRESENCE_QUERY), or
//! with "offline" when it is nowhere. Privacy holds as on one node: only
//! what the user's own node lets watchers see is ever sent.
//!
//! The registry calls presence needs run in lanes, in order for one watched
//! user and concurrently across users, not on the router's loop (only a
//! first dial of a node reads its link address there): before,
//! the router made them inline, and a burst of subscriptions (a node's
//! sessions coming back, each watching a chat peer: two round trips each)
//! held every other node-bound item for as long as they took. What the
//! calls find comes back to the router ([`Found`]), which sends the link
//! frames. A lane holds at most [`LANE_ITEMS`] items: past that (the
//! registry down for minutes) an item is shed and counted
//! (`gateway_fleet_presence_shed_total`); a watch shed so is lost until its
//! session subscribes again (at its next connection).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use gateway_core::Class;
use gateway_hub::{FleetItem, Remote};
use protocol::{DeviceId, Frame, PresenceStatus, Timestamp, UserId};
use routing::link::LinkFrame;
use routing::{Link as _, SessionRef};
use routing_links::Lane;
use routing_registry::{ConnectionLike, NodeId, Placement, Registry, RegistryError};
use tokio::sync::mpsc;

use super::router::Router;
use super::{FleetMetrics, PerWorker};

/// Presence registry calls run in this many lanes.
const PRESENCE_LANES: usize = 8;

/// Items one lane holds at most.
const LANE_ITEMS: usize = 1 << 16;

/// What a presence item's registry calls found, for the router to act on.
#[derive(Debug)]
pub(super) enum Found {
    /// Subscriber `to` watches `user`, who is not on this node: where the
    /// user's devices are (looked up at `started`).
    Holders {
        user: UserId,
        to: SessionRef,
        started: Instant,
        placements: Result<Vec<(DeviceId, Placement)>, RegistryError>,
    },
    /// `user`'s presence changed here: `frame` goes to the watchers on
    /// `nodes`, and to this node's own watchers if `local` (an offline
    /// that no other node's devices contradict).
    Tell { user: UserId, frame: Frame, nodes: Vec<NodeId>, local: bool },
}

/// The presence lanes' inputs, one per lane, and the node's metrics.
pub(super) struct PresenceLanes(Vec<mpsc::Sender<FleetItem>>, Arc<FleetMetrics>);

impl PresenceLanes {
    /// Queues a presence item on its watched user's lane.
    pub(super) fn push(&self, item: FleetItem) {
        let user = match &item {
            FleetItem::Watch { user, .. } | FleetItem::Unwatch(user) | FleetItem::Presence { user, .. } => {
                *user
            }
            FleetItem::Live { .. } | FleetItem::ToUser { .. } => return,
        };
        // Any stable spread will do: user ids are not chosen by clients.
        let lane = (user.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize % PRESENCE_LANES;
        let Some(lane) = self.0.get(lane) else { return };
        match lane.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.1.presence_shed.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // Only a panic ends a lane: say so, once per item lost.
                self.1.presence_shed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(user = user.0, "fleet: a presence lane is gone; its items are lost");
            }
        }
    }
}

/// Starts the presence lanes of node `node`; what they find goes to `found`.
pub(super) fn start<C: ConnectionLike + Clone + Send + Sync + 'static>(
    node: NodeId,
    registry: &Registry<C>,
    metrics: &Arc<FleetMetrics>,
    found: &mpsc::UnboundedSender<Found>,
) -> PresenceLanes {
    let lanes = (0..PRESENCE_LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::channel::<FleetItem>(LANE_ITEMS);
            let (registry, metrics, found) = (registry.clone(), metrics.clone(), found.clone());
            tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    calls(node, &registry, &metrics, item, &found).await;
                }
            });
            tx
        })
        .collect();
    PresenceLanes(lanes, metrics.clone())
}

/// The registry calls of one presence item; what they find goes to
/// `found` (the router has exited if that fails: nothing is left to do).
async fn calls<C: ConnectionLike + Clone + Send + Sync + 'static>(
    node: NodeId,
    registry: &Registry<C>,
    metrics: &FleetMetrics,
    item: FleetItem,
    found: &mpsc::UnboundedSender<Found>,
) {
    match item {
        FleetItem::Watch { user, answer } => {
            let started = Instant::now();
            let watched = registry.watch(user, node).await;
            metrics.call(started, watched.is_ok());
            let Some(to) = answer else { return };
            let started = Instant::now();
            let placements = registry.lookup(user).await;
            metrics.call(started, placements.is_ok());
            let _ = found.send(Found::Holders { user, to, started, placements });
        }
        FleetItem::Unwatch(user) => {
            let started = Instant::now();
            let unwatched = registry.unwatch(user, node).await;
            metrics.call(started, unwatched.is_ok());
        }
        FleetItem::Presence { user, frame, offline } => {
            if offline {
                let started = Instant::now();
                let placements = registry.lookup(user).await;
                metrics.call(started, placements.is_ok());
                // A failed lookup counts as nowhere: the offline goes out.
                if placements.unwrap_or_default().iter().any(|(_, placement)| placement.node != node) {
                    // Still online on another node: nobody hears "offline".
                    metrics.presence_suppressed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // This node's watchers hear it now, not after the next call.
                let _ =
                    found.send(Found::Tell { user, frame: frame.clone(), nodes: Vec::new(), local: true });
            }
            let started = Instant::now();
            let watching = registry.watching(user).await;
            metrics.call(started, watching.is_ok());
            let nodes: Vec<NodeId> =
                watching.unwrap_or_default().into_iter().filter(|n| *n != node).collect();
            if !nodes.is_empty() {
                let _ = found.send(Found::Tell { user, frame, nodes, local: false });
            }
        }
        FleetItem::Live { .. } | FleetItem::ToUser { .. } => {}
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Router<C> {
    /// What a presence lane found: the link frames and local frames it
    /// calls for.
    pub(super) async fn found(&mut self, found: Found) {
        match found {
            Found::Holders { user, to, started, placements } => {
                // A failed lookup: no node is asked, the subscriber hears
                // "offline", and the user's cached placements go (they may
                // be why: the next item looks the user up afresh).
                let holder = match placements {
                    Ok(devices) => {
                        let holder =
                            devices.iter().map(|(_, placement)| placement.node).find(|n| *n != self.node);
                        // The subscriber's node is likely to message the
                        // user next: its placement is kept.
                        self.remember(user, started, devices);
                        holder
                    }
                    Err(_) => {
                        self.cache.remove(&user);
                        None
                    }
                };
                match holder {
                    Some(node) => {
                        if let Some(peer) = self.peer(node).await {
                            peer.send(Lane::Ephemeral, &LinkFrame::PresenceQuery { users: vec![user] });
                        }
                    }
                    None => {
                        // Nowhere in the fleet: offline, last seen unknown
                        // (no node holds it to say).
                        let offline = protocol::Presence {
                            user,
                            status: PresenceStatus::Offline,
                            last_seen: Timestamp(0),
                        };
                        let item =
                            Remote::Frame { to, frame: Frame::Presence(offline), class: Class::Ephemeral };
                        if let Some(inbox) = self.inboxes.get(to.worker) {
                            let _ = inbox.offer(vec![item]);
                        }
                    }
                }
            }
            Found::Tell { user, frame, nodes, local } => {
                if local {
                    self.tell_local_watchers(user, &frame);
                }
                let Ok(bytes) = frame.to_bytes() else { return };
                for node in nodes {
                    self.answer_watchers(node, user, bytes.clone()).await;
                }
            }
        }
    }

    /// Sends `frame` (a PRESENCE of `user`) to the watchers on `node`.
    pub(super) async fn answer_watchers(&mut self, node: NodeId, user: UserId, frame: bytes::Bytes) {
        if let Some(peer) = self.peer(node).await {
            peer.send(Lane::Ephemeral, &LinkFrame::Watchers { frame, users: vec![user] });
        }
    }

    /// This node's watchers of `user` get `frame`.
    fn tell_local_watchers(&self, user: UserId, frame: &Frame) {
        let mut watchers = Vec::new();
        self.directory.watchers(user, &mut watchers);
        let mut batches = PerWorker::new(&self.inboxes);
        for to in watchers {
            batches.push(to, Remote::Frame { to, frame: frame.clone(), class: Class::Ephemeral });
        }
        // Presence is ephemeral: what a full inbox refuses is not sent.
        let _ = batches.post(&self.inboxes);
    }
}
