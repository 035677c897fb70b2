//! The node's standing in the registry: joining (retried while Redis is
//! down, serving sessions unplaced meanwhile), the lease renewal, fencing
//! (a new epoch and every local session placed again), and the registry
//! writes owed (sessions placed late, then resynced; placements of closed
//! sessions removed late).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_push::PushNote;
use gateway_hub::{FleetCall, FleetItem, Remote};
use protocol::{DeviceId, UserId};
use routing::Link as _;
use routing_registry::{ConnectionLike, NodeId, Placement, Registry, Renewal};
use tokio::sync::mpsc;

use super::confirms::post_confirms;
use super::router::{Calls, Router, Setup};
use super::set_health;

/// What the fleet thread takes in, and the registry writes it owes.
pub(super) struct Waiting {
    pub(super) batches: mpsc::Receiver<Vec<Remote>>,
    pub(super) calls: Calls,
    pub(super) repairs: Arc<std::sync::Mutex<Repairs>>,
}

impl Waiting {
    /// Until the registry is joined (for `wait`): sessions are served
    /// unplaced (placed once it answers), and fleet items go to push notes,
    /// so that nothing waits on a registry that does not answer. True when
    /// the node is leaving meanwhile (the thread ends: a node that never
    /// joined has no lease to give up).
    pub(super) async fn serve_unjoined(&mut self, setup: &Setup, wait: Duration) -> bool {
        let push = setup.parts.push.as_ref();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return false,
                () = setup.leaving.notified() => return true,
                Some((call, reply)) = self.calls.recv() => match call {
                    FleetCall::Register { user, device, session, ticket } => {
                        lock(&self.repairs).unplaced.insert((user, device), session);
                        reply.registered(ticket);
                    }
                    FleetCall::Unregister { user, device, session } => lock(&self.repairs).closed(user, device, session),
                },
                Some(batch) = self.batches.recv() => {
                    let mut confirms = Vec::new();
                    for item in batch {
                        if let Remote::Fleet(FleetItem::Live { user, device, seq, conversation, sender, confirm, .. }) = item {
                            push.notify(PushNote { user, device, seq, conversation, sender });
                            // Nothing more will happen to it here: its
                            // SEND_ACK need not wait (a message's items are
                            // consecutive; a repeat would be ignored anyway).
                            confirms.extend(confirm.filter(|c| confirms.last() != Some(c)));
                        }
                    }
                    post_confirms(confirms.into_iter(), &setup.parts.inboxes);
                }
            }
        }
    }
}

/// Registry writes owed: sessions served unplaced (the registry did not
/// answer when they connected, or the node was fenced) and placements of
/// closed sessions that could not be removed. Retried at each lease renewal
/// while the registry answers.
#[derive(Debug, Default)]
pub(super) struct Repairs {
    pub(super) unplaced: HashMap<(UserId, DeviceId), u64>,
    pub(super) stale: HashMap<(UserId, DeviceId), u64>,
}

impl Repairs {
    /// Session `session` of the device closed (or was placed).
    pub(super) fn closed(&mut self, user: UserId, device: DeviceId, session: u64) {
        if self.unplaced.get(&(user, device)) == Some(&session) {
            self.unplaced.remove(&(user, device));
        }
    }
}

pub(super) fn lock(repairs: &std::sync::Mutex<Repairs>) -> std::sync::MutexGuard<'_, Repairs> {
    repairs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The registry, connected (retrying every second while it cannot be);
/// `None` if the node leaves first.
pub(super) async fn connect_retrying<C, F, Fut>(
    setup: &Setup,
    waiting: &mut Waiting,
    connect: F,
) -> Option<Registry<C>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Registry<C>, routing_registry::RegistryError>>,
{
    loop {
        match connect().await {
            Ok(registry) => return Some(registry),
            Err(err) => {
                set_health(&setup.metrics.healthy, false);
                tracing::warn!(%err, "fleet: cannot reach the registry; retrying");
                if waiting.serve_unjoined(setup, Duration::from_secs(1)).await {
                    return None;
                }
            }
        }
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Router<C> {
    /// Renews the lease; a fenced node joins again with a new epoch and
    /// places its sessions again. Links to nodes that no longer hold a
    /// lease are dropped (their queues with them).
    pub(super) async fn renew(&mut self) {
        let epoch = routing_registry::Epoch(self.links.epoch());
        let started = Instant::now();
        let renewal = self.registry.renew(self.node, epoch).await;
        self.metrics.call(started, renewal.is_ok());
        self.metrics.reconnects.store(self.registry.reconnects(), Ordering::Relaxed);
        match renewal {
            Ok(Renewal::Renewed) => self.repair().await,
            Ok(Renewal::Fenced) => self.rejoin().await,
            Err(err) => tracing::warn!(%err, "fleet: lease renewal failed"),
        }
        let down: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.stats().queued_bytes.load(Ordering::Relaxed) > 0)
            .map(|(node, _)| *node)
            .collect();
        for node in down {
            if let Ok(None) = self.registry.lease(node).await {
                tracing::info!(node = node.0, "fleet: peer holds no lease; its link is dropped");
                self.peers.remove(&node);
                self.metrics.link_dropped(node.0);
            }
        }
    }

    /// Fenced (the lease expired while this node was paused or cut off):
    /// a new epoch, and every local session placed again under it.
    async fn rejoin(&mut self) {
        self.metrics.fenced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = self.node.0, "fleet: lease lost while alive (fenced); joining again");
        let Ok(epoch) = self.registry.join(self.node, &self.advertise).await else {
            return;
        };
        self.links.set_epoch(epoch.0);
        self.cache.clear();
        let mut sessions = Vec::new();
        self.directory.sessions(&mut sessions);
        let count = sessions.len();
        for (user, device, session) in sessions {
            lock(&self.repairs).unplaced.insert((user, device), session.placement_id());
        }
        tracing::info!(
            node = self.node.0,
            epoch = epoch.0,
            sessions = count,
            "fleet: joined again; placing the sessions again"
        );
        self.repair().await;
    }

    /// Places the sessions served unplaced, unless their device connected on
    /// another live node meanwhile, and removes the placements closed
    /// sessions left.
    async fn repair(&mut self) {
        let (unplaced, stale) = {
            let repairs = lock(&self.repairs);
            if repairs.unplaced.is_empty() && repairs.stale.is_empty() {
                return;
            }
            (repairs.unplaced.clone(), repairs.stale.clone())
        };
        let epoch = routing_registry::Epoch(self.links.epoch());
        for ((user, device), session) in stale {
            let placement = Placement { node: self.node, epoch, session };
            if self.registry.unregister(user, device, placement).await.is_ok() {
                lock(&self.repairs).stale.remove(&(user, device));
            }
        }
        let mut devices = Vec::new();
        for ((user, device), session) in unplaced {
            self.directory.devices(user, &mut devices);
            let here =
                devices.iter().find(|(d, s)| *d == device && s.placement_id() == session).map(|(_, s)| *s);
            let Some(to) = here else {
                // Closed meanwhile.
                lock(&self.repairs).closed(user, device, session);
                continue;
            };
            let started = Instant::now();
            let placed =
                self.registry.reclaim(user, device, Placement { node: self.node, epoch, session }).await;
            self.metrics.call(started, placed.is_ok());
            let Ok(taken) = placed else { return };
            // Either this session is placed now (it reads its inbox again:
            // what was stored meanwhile reached no live delivery), or the
            // device connected again on a live node meanwhile: this one is
            // the older session, closed with 4007 as any replaced one.
            let post = if taken.is_some() { Remote::Replace(to) } else { Remote::Resync(to) };
            let posted = self.inboxes.get(to.worker).is_some_and(|inbox| inbox.offer(vec![post]).is_ok());
            if posted {
                lock(&self.repairs).closed(user, device, session);
                match taken {
                    None => self.metrics.placed_late.fetch_add(1, Ordering::Relaxed),
                    Some(other) => {
                        tracing::info!(
                            user = user.0,
                            device = device.0,
                            node = other.node.0,
                            "fleet: the device connected on another node while this one could not place it; \
                             closing the older session here"
                        );
                        self.metrics.replaced.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    }
}
