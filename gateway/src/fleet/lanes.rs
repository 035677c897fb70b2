//! Registry calls of the node's sessions (place, remove) in lanes: in
//! order for one device (a close never overtakes its own registration),
//! concurrently across devices. A call that fails is owed (`Repairs`) and
//! made again by the lease loop.

use std::sync::Arc;
use std::time::Instant;

use gateway_hub::{FleetCall, Ticket};
use protocol::{DeviceId, UserId};
use routing_registry::{ConnectionLike, Placement, Registry};
use tokio::sync::mpsc;

use super::lease::{lock, Repairs};
use super::router::{Replaced, Setup};
use crate::backend::ReplySink;

/// Registry calls run in this many lanes.
const CALL_LANES: usize = 16;

/// The lanes' inputs, one per lane.
pub(super) struct Lanes(Vec<mpsc::UnboundedSender<(FleetCall, ReplySink<Ticket>)>>);

impl Lanes {
    /// Queues `call` on its device's lane.
    pub(super) fn call(&self, call: FleetCall, reply: ReplySink<Ticket>) {
        let (user, device) = match &call {
            FleetCall::Register { user, device, .. } | FleetCall::Unregister { user, device, .. } => {
                (*user, *device)
            }
        };
        if let Some(lane) = self.0.get(lane_of(user, device)) {
            let _ = lane.send((call, reply));
        }
    }
}

fn lane_of(user: UserId, device: DeviceId) -> usize {
    // Any stable spread will do: user ids are not chosen by clients.
    (user.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(device.0)) as usize % CALL_LANES
}

/// Starts the call lanes; each runs its calls one after the other.
pub(super) fn start<C: ConnectionLike + Clone + Send + Sync + 'static>(
    setup: &Setup,
    registry: &Registry<C>,
    replaces: &mpsc::UnboundedSender<Replaced>,
    repairs: &Arc<std::sync::Mutex<Repairs>>,
) -> Lanes {
    let lanes = (0..CALL_LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(FleetCall, ReplySink<Ticket>)>();
            let (registry, links, metrics, node, replaces, repairs) = (
                registry.clone(),
                setup.links.clone(),
                setup.metrics.clone(),
                setup.node,
                replaces.clone(),
                repairs.clone(),
            );
            tokio::spawn(async move {
                while let Some((call, reply)) = rx.recv().await {
                    let epoch = routing_registry::Epoch(links.epoch());
                    match call {
                        FleetCall::Register { user, device, session, ticket } => {
                            let placement = Placement { node, epoch, session };
                            let started = Instant::now();
                            let result = registry.register(user, device, placement).await;
                            metrics.call(started, result.is_ok());
                            match result {
                                Ok(replaced) => {
                                    reply.registered(ticket);
                                    if let Some(old) = replaced.filter(|old| old.node != node) {
                                        let _ = replaces.send(Replaced { user, device, old });
                                    }
                                }
                                Err(err) => {
                                    tracing::warn!(%err, user = user.0, device = device.0, "fleet: a session could not be placed");
                                    lock(&repairs).unplaced.insert((user, device), session);
                                    reply.registered(ticket);
                                }
                            }
                        }
                        FleetCall::Unregister { user, device, session } => {
                            lock(&repairs).closed(user, device, session);
                            let started = Instant::now();
                            let result = registry.unregister(user, device, Placement { node, epoch, session }).await;
                            metrics.call(started, result.is_ok());
                            if result.is_err() {
                                lock(&repairs).stale.insert((user, device), session);
                            }
                        }
                    }
                }
            });
            tx
        })
        .collect();
    Lanes(lanes)
}
