//! Presence across nodes. A node that has sessions watching a user is
//! recorded in the registry (`watch:{u:<user>}`); where the user is, each
//! change of its presence goes to those nodes as WATCHERS (one frame per
//! node, delivered there to every watcher of the user). A subscription to a
//! user held by another node is answered by that node (PRESENCE_QUERY), or
//! with "offline" when it is nowhere. Privacy holds as on one node: only
//! what the user's own node lets watchers see is ever sent.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use gateway_core::Class;
use gateway_hub::{FleetItem, Remote};
use protocol::{Frame, PresenceStatus, Timestamp, UserId};
use routing::link::LinkFrame;
use routing::Link as _;
use routing_links::Lane;
use routing_registry::{ConnectionLike, NodeId};

use super::router::Router;
use super::PerWorker;

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Router<C> {
    /// A presence item of a worker's batch.
    pub(super) async fn presence(&mut self, item: FleetItem) {
        match item {
            FleetItem::Watch { user, answer } => {
                let started = Instant::now();
                let watched = self.registry.watch(user, self.node).await;
                self.metrics.call(started, watched.is_ok());
                let Some(to) = answer else { return };
                let holder = self.holders(user).await.into_iter().next();
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
            FleetItem::Unwatch(user) => {
                let started = Instant::now();
                let unwatched = self.registry.unwatch(user, self.node).await;
                self.metrics.call(started, unwatched.is_ok());
            }
            FleetItem::Presence { user, frame, offline } => {
                if offline {
                    if !self.holders(user).await.is_empty() {
                        // Still online on another node: nobody hears "offline".
                        self.metrics.presence_suppressed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    self.tell_local_watchers(user, &frame);
                }
                let Ok(bytes) = frame.to_bytes() else { return };
                let started = Instant::now();
                let watching = self.registry.watching(user).await;
                self.metrics.call(started, watching.is_ok());
                for node in watching.unwrap_or_default() {
                    if node != self.node {
                        self.answer_watchers(node, user, bytes.clone()).await;
                    }
                }
            }
            FleetItem::Live { .. } | FleetItem::ToUser { .. } => {}
        }
    }

    /// Sends `frame` (a PRESENCE of `user`) to the watchers on `node`.
    pub(super) async fn answer_watchers(&mut self, node: NodeId, user: UserId, frame: Bytes) {
        if let Some(peer) = self.peer(node).await {
            peer.send(Lane::Ephemeral, &LinkFrame::Watchers { frame, users: vec![user] });
        }
    }

    /// The other nodes that hold a device of `user` now (looked up afresh).
    async fn holders(&mut self, user: UserId) -> Vec<NodeId> {
        self.cache.remove(&user);
        // A failed lookup leaves the user uncached: no node is asked.
        self.resolve(&[user]).await;
        let mut nodes: Vec<NodeId> = Vec::new();
        for (_, placement) in self.cached(user).unwrap_or_default() {
            if placement.node != self.node && !nodes.contains(&placement.node) {
                nodes.push(placement.node);
            }
        }
        nodes
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
