//! The fleet thread's main loop (joined to the registry: see `lease` for
//! before), registry calls in per-device order, and the router that sends
//! items for other nodes over their links.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_push::PushNote;
use bytes::Bytes;
use gateway_core::{Class, SharedDeliver};
use gateway_hub::{FleetCall, FleetItem, Remote, Ticket};
use protocol::{DeviceId, UserId};
use routing::link::{FrameClass, LinkFrame, Recipient, UserTarget};
use routing_links::{Lane, LinkConfig, Peer, Report, Returned, Tag};
use routing_registry::{Config as RegistryConfig, ConnectionLike, NodeId, Placement, Registry};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::confirms::Confirms;
use super::inbound::{FromLinks, Inbound, Misrouted};
use super::lanes;
use super::lease::{connect_retrying, Repairs, Waiting};
use super::lookups::{self, Lookups, Purpose};
use super::parked::{self, Failed, Parked};
use super::presence::{self, PresenceLanes};
use super::{set_health, FleetMetrics, Parts, PerWorker};
use crate::backend::ReplySink;

/// Users whose placements one node caches at most (then it starts over).
const CACHE_USERS: usize = 1 << 20;

pub(super) struct Setup {
    pub(super) node: NodeId,
    pub(super) advertise: String,
    pub(super) urls: Vec<String>,
    pub(super) cluster: bool,
    pub(super) registry: RegistryConfig,
    pub(super) links: Arc<LinkConfig>,
    pub(super) cache: Duration,
    pub(super) parts: Parts,
    pub(super) metrics: Arc<FleetMetrics>,
    pub(super) leaving: Arc<tokio::sync::Notify>,
}

pub(super) type Calls = mpsc::UnboundedReceiver<(FleetCall, ReplySink<Ticket>)>;

/// A lookup of a user's placements made on its own task: the user, when it
/// was asked, and the answer.
pub(super) type Lookup =
    (UserId, Instant, Result<Vec<(DeviceId, Placement)>, routing_registry::RegistryError>);

/// The fleet thread: connects to the registry (retrying while it is down),
/// then serves until the node leaves.
pub(super) async fn run(
    setup: Setup,
    listener: TcpListener,
    batches: mpsc::Receiver<Vec<Remote>>,
    calls: Calls,
) {
    let urls: Vec<&str> = setup.urls.iter().map(String::as_str).collect();
    let mut waiting = Waiting { batches, calls, repairs: Arc::default() };
    if setup.cluster {
        let connect = || routing_registry::Registry::cluster(&urls, setup.registry.clone());
        if let Some(registry) = connect_retrying(&setup, &mut waiting, connect).await {
            serve(setup, registry, listener, waiting).await;
        }
    } else {
        let url = urls.first().copied().unwrap_or_default().to_owned();
        let connect = || routing_registry::Registry::single(&url, setup.registry.clone());
        if let Some(registry) = connect_retrying(&setup, &mut waiting, connect).await {
            serve(setup, registry, listener, waiting).await;
        }
    }
}

/// Joins (a new epoch), then runs the lease, the call lanes, the link
/// listener and the router until the node leaves.
async fn serve<C: ConnectionLike + Clone + Send + Sync + 'static>(
    setup: Setup,
    registry: Registry<C>,
    listener: TcpListener,
    mut waiting: Waiting,
) {
    let metrics = setup.metrics.clone();
    let epoch = loop {
        match registry.join(setup.node, &setup.advertise).await {
            Ok(epoch) => break epoch,
            Err(err) => {
                set_health(&metrics.healthy, false);
                tracing::warn!(%err, "fleet: cannot join the registry; retrying");
                if waiting.serve_unjoined(&setup, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    set_health(&metrics.healthy, true);
    setup.links.set_epoch(epoch.0);
    tracing::info!(node = setup.node.0, epoch = epoch.0, advertise = %setup.advertise, "fleet: joined");
    let (from_links_tx, mut from_links) = mpsc::unbounded_channel();
    let inbound = Arc::new(Inbound::new(&setup, from_links_tx));
    tokio::spawn(routing_links::serve(listener, setup.links.clone(), inbound, metrics.inbound.clone()));
    let Waiting { mut batches, mut calls, repairs } = waiting;
    let (lookups_tx, mut lookups) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let answers = Answers { lookups: lookups_tx, reports: reports_tx };
    let (found_tx, mut found) = mpsc::unbounded_channel();
    let presence = presence::start(setup.node, &registry, &setup.metrics, &found_tx);
    let mut router = Router::new(&setup, registry.clone(), repairs.clone(), answers, presence);
    let (replaces_tx, mut replaces) = mpsc::unbounded_channel();
    let lanes = lanes::start(&setup, &registry, &replaces_tx, &repairs);
    let renew_every = setup.registry.lease / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    // After a pause (SIGSTOP, a stall) one renewal, not a burst of them.
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let next_due = router.next_due();
        tokio::select! {
            Some(batch) = batches.recv() => router.route(batch).await,
            Some(work) = from_links.recv() => match work {
                FromLinks::Misrouted(misrouted) => router.misrouted(misrouted).await,
                FromLinks::Answer { node, user, frame } => router.answer_watchers(NodeId(node), user, frame).await,
            },
            Some(replaced) = replaces.recv() => router.replace(replaced).await,
            Some((purpose, answer)) = lookups.recv() => match purpose {
                Purpose::Parked => router.looked_up(answer).await,
                Purpose::Refresh => router.refreshed(answer),
            },
            () = until(next_due) => router.due(),
            Some(found) = found.recv() => router.found(found).await,
            Some(report) = reports.recv() => router.report(report).await,
            Some((call, reply)) = calls.recv() => lanes.call(call, reply),
            _ = renew.tick() => router.renew().await,
            () = setup.leaving.notified() => {
                if let Err(err) = registry.leave(setup.node, routing_registry::Epoch(setup.links.epoch())).await {
                    tracing::warn!(%err, "fleet: could not give up the lease (it expires by itself)");
                }
                return;
            }
        }
    }
}

/// A placement a registration replaced on another node.
#[derive(Debug)]
pub(super) struct Replaced {
    pub(super) user: UserId,
    pub(super) device: DeviceId,
    pub(super) old: Placement,
}

/// Items for other nodes: where the devices are (a cache over the
/// registry), and the links to those nodes.
pub(super) struct Router<C> {
    pub(super) node: NodeId,
    /// Where this node's link listener is dialed (re-advertised on re-join).
    pub(super) advertise: String,
    pub(super) registry: Registry<C>,
    pub(super) links: Arc<LinkConfig>,
    pub(super) ttl: Duration,
    /// user → (looked up at, live placements).
    pub(super) cache: HashMap<UserId, (Instant, Vec<(DeviceId, Placement)>)>,
    pub(super) peers: HashMap<NodeId, Peer>,
    pub(super) parts_push: Arc<dyn backend_push::PushApi>,
    pub(super) directory: Arc<routing::Directory>,
    pub(super) inboxes: Arc<Vec<crate::driver::Inbox>>,
    pub(super) repairs: Arc<std::sync::Mutex<Repairs>>,
    pub(super) metrics: Arc<FleetMetrics>,
    /// Users whose placements are being re-read in the background.
    refreshing: std::collections::HashSet<UserId>,
    /// Items waiting for their user's lookup.
    parked: Parked<(FleetItem, Option<Tag>)>,
    /// Lookups out, and those waiting for a slot.
    pub(super) lookups: Lookups,
    /// Where the router's tasks and its links answer.
    pub(super) answers: Answers,
    /// Where presence items go for their registry calls.
    presence: PresenceLanes,
    /// The held SEND_ACKs whose frames are out.
    confirms: Confirms,
}

/// Where the router's own tasks and its links answer the main loop.
pub(super) struct Answers {
    /// Lookups, by what they are for.
    pub(super) lookups: mpsc::UnboundedSender<(Purpose, Lookup)>,
    /// Tagged frames taken or shed, and a failed link's LIVE frames.
    pub(super) reports: mpsc::UnboundedSender<Report>,
}

/// Returns at `at`, or never.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// One node's share of a routed batch.
#[derive(Default)]
struct NodeBatch {
    /// LIVE frames: one per DELIVER (shared tail), with its recipients and
    /// its message's tag if a SEND_ACK waits for it.
    lives: Vec<(SharedDeliver, Vec<Recipient>, Option<Tag>)>,
    /// FRAMEs: one per distinct encoded frame, with its users.
    frames: Vec<(Bytes, FrameClass, Vec<UserTarget>)>,
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Router<C> {
    fn new(
        setup: &Setup,
        registry: Registry<C>,
        repairs: Arc<std::sync::Mutex<Repairs>>,
        answers: Answers,
        presence: PresenceLanes,
    ) -> Self {
        Self {
            node: setup.node,
            advertise: setup.advertise.clone(),
            registry,
            links: setup.links.clone(),
            ttl: setup.cache,
            cache: HashMap::new(),
            peers: HashMap::new(),
            parts_push: setup.parts.push.clone(),
            directory: setup.parts.directory.clone(),
            inboxes: setup.parts.inboxes.clone(),
            repairs,
            metrics: setup.metrics.clone(),
            refreshing: std::collections::HashSet::new(),
            parked: Parked::default(),
            lookups: Lookups::default(),
            answers,
            presence,
            confirms: Confirms::default(),
        }
    }

    /// Routes a batch of a worker's fleet items: one LIVE per DELIVER and
    /// one FRAME per distinct frame to each node that holds recipients.
    ///
    /// Routing never waits for the registry: an item whose device the cache
    /// does not know is parked behind a lookup of its user (`parked`), and
    /// [`Router::looked_up`] routes it when the answer comes. Only where a
    /// device *is* is cached: a device found nowhere is looked up again for
    /// its next entry, so that one that connected a moment ago is never
    /// missed. A known placement older than `cluster.cache_ms` is still
    /// used, and re-read in the background (a device that moved meanwhile
    /// costs one more hop: the old node sends it on or, if that node is
    /// dead, its link hands the entry back and [`Router::returned`] does).
    async fn route(&mut self, batch: Vec<Remote>) {
        let now = Instant::now();
        // A set: a 1,024-member group's batch names a thousand users.
        let mut stale: std::collections::HashSet<UserId> = std::collections::HashSet::new();
        let mut ready = Vec::with_capacity(batch.len());
        // The tag of each message whose SEND_ACK waits, by (worker, token).
        let mut tags: HashMap<(usize, u64), Tag> = HashMap::new();
        for item in batch {
            let Remote::Fleet(item) = item else { continue };
            let tag = match &item {
                FleetItem::Live { confirm: Some(confirm), .. } => Some(
                    *tags
                        .entry((confirm.to.worker, confirm.token))
                        .or_insert_with(|| self.confirms.open(*confirm)),
                ),
                _ => None,
            };
            let (user, known) = match &item {
                FleetItem::Live { user, device, .. } => (
                    *user,
                    self.cached(*user).is_some_and(|devices| devices.iter().any(|(d, _)| d == device)),
                ),
                FleetItem::ToUser { user, .. } => (*user, self.cached(*user).is_some()),
                _ => {
                    ready.push((item, tag));
                    continue;
                }
            };
            if known && !self.parked.holds(user) {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                if self.is_stale(user, now) {
                    stale.insert(user);
                }
                ready.push((item, tag));
                continue;
            }
            if let Some(item) = self.park(user, item, tag, Duration::ZERO) {
                ready.push(item);
            }
        }
        self.gauges();
        self.refresh(stale);
        self.dispatch(ready).await;
        // Routing is over: a message whose frames are all taken already, or
        // that had none (push notes only), is confirmed now.
        for tag in tags.into_values() {
            self.confirms.done(tag);
        }
        self.post_confirms();
    }

    /// Parks `item` behind a lookup of `user`, started after `after` if
    /// none is out; hands it back when too many are parked (the registry
    /// is down: it goes without a placement).
    fn park(
        &mut self,
        user: UserId,
        item: FleetItem,
        tag: Option<Tag>,
        after: Duration,
    ) -> Option<(FleetItem, Option<Tag>)> {
        match self.parked.park(user, (item, tag)) {
            Ok(first) => {
                // Open until the parked item is routed.
                tag.into_iter().for_each(|tag| self.confirms.sent(tag));
                if first {
                    self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
                    if after.is_zero() {
                        self.look_up(user, Purpose::Parked);
                    } else {
                        self.look_up_later(user, after);
                    }
                }
                None
            }
            Err(item) => Some(item),
        }
    }

    /// A lookup of a user with parked items answered: they are routed now;
    /// if it failed, it is made again later, or at last the items go
    /// without a placement.
    async fn looked_up(&mut self, (user, started, result): Lookup) {
        self.lookup_finished();
        self.metrics.call(started, result.is_ok());
        let items = match result {
            Ok(devices) => {
                self.remember(user, started, devices);
                self.parked.answered(user)
            }
            Err(err) => match self.parked.failed(user) {
                Failed::Retry(after) => {
                    tracing::debug!(%err, user = user.0, ?after, "fleet: lookup failed; trying again");
                    self.metrics.lookup_retries.fetch_add(1, Ordering::Relaxed);
                    self.look_up_later(user, after);
                    return;
                }
                Failed::GaveUp(items) => {
                    tracing::debug!(%err, user = user.0, "fleet: lookup failed every retry; push notes");
                    self.metrics.lookups_given_up.fetch_add(1, Ordering::Relaxed);
                    items
                }
            },
        };
        self.gauges();
        let tags: Vec<Tag> = items.iter().filter_map(|(_, tag)| *tag).collect();
        self.dispatch(items).await;
        for tag in tags {
            self.confirms.done(tag);
        }
        self.post_confirms();
    }

    /// Sends routable items where the cache places their devices (a LIVE
    /// to no placement, or to this node, becomes a push note), and the
    /// presence items to their lanes (`presence`).
    async fn dispatch(&mut self, items: Vec<(FleetItem, Option<Tag>)>) {
        let mut nodes: HashMap<NodeId, NodeBatch> = HashMap::new();
        let mut presence = Vec::new();
        for (item, tag) in items {
            match item {
                item @ (FleetItem::Watch { .. } | FleetItem::Unwatch(_) | FleetItem::Presence { .. }) => {
                    presence.push(item);
                }
                FleetItem::Live { user, device, seq, deliver, conversation, sender, .. } => {
                    let at = self
                        .cached(user)
                        .and_then(|devices| devices.iter().find(|(d, _)| *d == device).map(|(_, p)| p.node));
                    match at.filter(|node| *node != self.node) {
                        Some(node) => {
                            let batch = nodes.entry(node).or_default();
                            let recipient = Recipient { user, device, seq };
                            match batch.lives.iter_mut().find(|(d, _, _)| same_tail(d, &deliver)) {
                                Some((_, recipients, _)) => recipients.push(recipient),
                                None => batch.lives.push((deliver, vec![recipient], tag)),
                            }
                        }
                        None => self.parts_push.notify(PushNote { user, device, seq, conversation, sender }),
                    }
                }
                FleetItem::ToUser { user, except, frame, class } => {
                    let Ok(bytes) = frame.to_bytes() else { continue };
                    let class = match class {
                        Class::Ephemeral => FrameClass::Ephemeral,
                        _ => FrameClass::Live,
                    };
                    let mut targets: Vec<NodeId> = Vec::new();
                    for &(device, placement) in self.cached(user).unwrap_or_default() {
                        if Some(device) != except
                            && placement.node != self.node
                            && !targets.contains(&placement.node)
                        {
                            targets.push(placement.node);
                        }
                    }
                    for node in targets {
                        let batch = nodes.entry(node).or_default();
                        let target = UserTarget { user, except };
                        match batch.frames.iter_mut().find(|(b, c, _)| *b == bytes && *c == class) {
                            Some((_, _, users)) => users.push(target),
                            None => batch.frames.push((bytes.clone(), class, vec![target])),
                        }
                    }
                }
            }
        }
        for (node, batch) in nodes {
            self.send(node, batch).await;
        }
        for item in presence {
            self.presence.push(item);
        }
    }

    /// The router's gauges: items parked, users cached.
    fn gauges(&self) {
        self.metrics.parked.store(self.parked.len() as u64, Ordering::Relaxed);
        self.metrics.cache_users.store(self.cache.len() as u64, Ordering::Relaxed);
    }

    /// The cached placements of `user`, however old.
    pub(super) fn cached(&self, user: UserId) -> Option<&[(DeviceId, Placement)]> {
        self.cache.get(&user).map(|(_, devices)| devices.as_slice())
    }

    /// Whether `user`'s cached placements are older than the cache's TTL.
    fn is_stale(&self, user: UserId, now: Instant) -> bool {
        self.cache.get(&user).is_some_and(|(at, _)| now.duration_since(*at) >= self.ttl)
    }

    /// Re-reads `users`' placements in the background (each once at a
    /// time); [`Router::refreshed`] takes the answers.
    fn refresh(&mut self, users: std::collections::HashSet<UserId>) {
        for user in users {
            if self.refreshing.insert(user) {
                self.look_up(user, Purpose::Refresh);
            }
        }
    }

    /// A background re-read answered.
    fn refreshed(&mut self, (user, started, result): Lookup) {
        self.lookup_finished();
        self.refreshing.remove(&user);
        self.metrics.call(started, result.is_ok());
        if let Ok(devices) = result {
            self.remember(user, started, devices);
        }
    }

    /// Caches `user`'s placements as looked up at `started`, unless a
    /// lookup made since (a miss, a misroute) cached fresher ones.
    pub(super) fn remember(&mut self, user: UserId, started: Instant, devices: Vec<(DeviceId, Placement)>) {
        if self.cache.get(&user).is_some_and(|(at, _)| *at > started) {
            return;
        }
        if self.cache.len() >= CACHE_USERS {
            self.cache.clear();
        }
        self.cache.insert(user, (started, devices));
    }

    /// Looks `users` up in the registry, [`lookups::IN_FLIGHT`] at a time,
    /// and caches what it finds; returns the users whose lookup answered (a
    /// failed one leaves its user uncached). Once a lookup fails no more
    /// are started: the router waits here, and a failing registry would
    /// hold it for a timeout per round of lookups, past its own lease; the
    /// callers park what did not answer, for the bounded lookups.
    pub(super) async fn resolve(&mut self, users: &[UserId]) -> std::collections::HashSet<UserId> {
        let mut answered = std::collections::HashSet::new();
        let mut out = tokio::task::JoinSet::new();
        let mut users = users.iter().copied();
        let mut failed = false;
        loop {
            while !failed && out.len() < lookups::IN_FLIGHT {
                let Some(user) = users.next() else { break };
                let registry = self.registry.clone();
                out.spawn(async move { (user, Instant::now(), registry.lookup(user).await) });
            }
            let Some(done) = out.join_next().await else { break };
            let Ok((user, started, result)) = done else { continue };
            self.metrics.call(started, result.is_ok());
            match result {
                Ok(devices) => {
                    answered.insert(user);
                    self.remember(user, started, devices);
                }
                Err(err) => {
                    failed = true;
                    tracing::debug!(%err, user = user.0, "fleet: lookup failed");
                }
            }
        }
        answered
    }

    /// Sends one node's share of a batch over its link.
    async fn send(&mut self, node: NodeId, batch: NodeBatch) {
        if self.peer(node).await.is_none() {
            return;
        }
        let Some(peer) = self.peers.get(&node) else { return };
        for (deliver, recipients, tag) in batch.lives {
            for chunk in recipients.chunks(routing::link::MAX_RECIPIENTS) {
                let frame = LinkFrame::Live {
                    forwarded: false,
                    tail: deliver.tail().clone(),
                    recipients: chunk.to_vec(),
                };
                if let Some(tag) = tag {
                    self.confirms.sent(tag);
                }
                peer.send_tagged(Lane::Live, &frame, tag);
            }
        }
        for (frame, class, users) in batch.frames {
            let lane = if class == FrameClass::Ephemeral { Lane::Ephemeral } else { Lane::Live };
            for chunk in users.chunks(routing::link::MAX_RECIPIENTS) {
                peer.send(lane, &LinkFrame::Frame { class, frame: frame.clone(), users: chunk.to_vec() });
            }
        }
    }

    /// The link to `node`, dialed on first use at the address it
    /// advertised.
    pub(super) async fn peer(&mut self, node: NodeId) -> Option<&Peer> {
        if !self.peers.contains_key(&node) {
            let started = Instant::now();
            let address = self.registry.link_address(node).await;
            self.metrics.call(started, address.is_ok());
            let Ok(Some(address)) = address else {
                tracing::warn!(node = node.0, "fleet: no link address for a node the registry names");
                return None;
            };
            let peer = Peer::start(self.links.clone(), node.0, address, self.answers.reports.clone());
            self.metrics.link_started(node.0, peer.stats_handle());
            self.peers.insert(node, peer);
        }
        self.peers.get(&node)
    }

    /// A live entry another node sent here for a device no longer here:
    /// sent on once to where the device is now, or its push note sent.
    async fn misrouted(&mut self, misrouted: Misrouted) {
        self.metrics.misroutes.fetch_add(1, Ordering::Relaxed);
        if misrouted.forwarded {
            let Misrouted { user, device, seq, conversation, sender, .. } = misrouted;
            self.parts_push.notify(PushNote { user, device, seq, conversation, sender });
            return;
        }
        self.relocate(vec![misrouted]).await;
    }

    /// What a link reports: tagged frames over (their held SEND_ACKs may
    /// go), or LIVE frames handed back.
    async fn report(&mut self, report: Report) {
        match report {
            Report::Taken(tags) | Report::Shed(tags) => {
                tags.into_iter().for_each(|tag| self.confirms.done(tag))
            }
            Report::Returned(returned) => self.returned(returned).await,
        }
        self.post_confirms();
    }

    /// Tells the workers of the held SEND_ACKs whose frames are all over.
    fn post_confirms(&mut self) {
        self.metrics.confirms_refused.fetch_add(self.confirms.post(&self.inboxes), Ordering::Relaxed);
        self.metrics.acks_waiting.store(self.confirms.waiting() as u64, Ordering::Relaxed);
    }

    /// LIVE frames a failed link handed back before its peer took them
    /// (the peer may be dead, its devices reconnected elsewhere): each
    /// entry goes to where its device is now; a held SEND_ACK it counted
    /// for then waits for where it went instead.
    async fn returned(&mut self, Returned { node, frames }: Returned) {
        let mut entries = Vec::new();
        let mut tags = Vec::new();
        for (bytes, tag) in frames {
            tags.extend(tag);
            let decoded = LinkFrame::decode(&mut bytes::BytesMut::from(&bytes[..]));
            // Only LIVE frames carry inbox entries; a FRAME of class live
            // (a receipt, a prekey note) is re-read at the next sync too.
            let Ok(Some(LinkFrame::Live { tail, recipients, .. })) = decoded else { continue };
            let Ok((deliver, head)) = SharedDeliver::from_tail(tail) else { continue };
            entries.extend(recipients.into_iter().map(|r| Misrouted {
                user: r.user,
                device: r.device,
                seq: r.seq,
                deliver: deliver.clone(),
                conversation: head.conversation,
                sender: head.sender,
                forwarded: false,
                tag,
            }));
        }
        tracing::debug!(peer = node, entries = entries.len(), "fleet: a failed link handed entries back");
        // Its node may be gone: its placements are not trusted on the
        // strength of an earlier read of its lease.
        self.registry.forget_lease(NodeId(node));
        self.relocate(entries).await;
        for tag in tags {
            self.confirms.done(tag);
        }
    }

    /// Sends each live entry where the registry (not the cache) says its
    /// device is now: another node (`forwarded`, so that it goes no
    /// further), a session of this node, or nowhere: then its push note,
    /// and the device reads the entry at its next sync, which reads the
    /// store after this lookup (a session is placed before it syncs). An
    /// entry whose lookup failed is parked and looked up again, as in
    /// [`Router::route`] (a dead node and a failing-over registry at once).
    async fn relocate(&mut self, entries: Vec<Misrouted>) {
        let mut users: Vec<UserId> = entries.iter().map(|entry| entry.user).collect();
        users.sort_unstable_by_key(|user| user.0);
        users.dedup();
        for user in &users {
            self.cache.remove(user);
        }
        let answered = self.resolve(&users).await;
        let mut here = PerWorker::new(&self.inboxes);
        let mut devices = Vec::new();
        let mut overflow = Vec::new();
        for Misrouted { user, device, seq, deliver, conversation, sender, tag, .. } in entries {
            let at = self
                .cached(user)
                .and_then(|placed| placed.iter().find(|(d, _)| *d == device))
                .map(|(_, placement)| placement.node);
            if let Some(node) = at.filter(|node| *node != self.node) {
                if self.peer(node).await.is_some() {
                    if let Some(peer) = self.peers.get(&node) {
                        let recipients = vec![Recipient { user, device, seq }];
                        if let Some(tag) = tag {
                            self.confirms.sent(tag);
                        }
                        let frame =
                            LinkFrame::Live { forwarded: true, tail: deliver.tail().clone(), recipients };
                        peer.send_tagged(Lane::Live, &frame, tag);
                    }
                }
                continue;
            }
            self.directory.devices(user, &mut devices);
            let session = devices.iter().find(|(d, _)| *d == device).map(|(_, to)| *to);
            match session {
                Some(to) if here.push(to, Remote::Live { to, seq, deliver: deliver.clone() }) => {}
                // The lookup failed: wait for the registry as `route` does.
                None if !answered.contains(&user) => {
                    let item =
                        FleetItem::Live { user, device, seq, deliver, conversation, sender, confirm: None };
                    overflow.extend(self.park(user, item, tag, parked::RETRY_AFTER[0]));
                }
                _ => self.parts_push.notify(PushNote { user, device, seq, conversation, sender }),
            }
        }
        // Not parked (too many are): their push notes.
        self.dispatch(overflow).await;
        self.gauges();
        // A full worker: its session finds the gap at its next entry, as
        // with any shed one.
        self.metrics.inbound_shed.fetch_add(here.post(&self.inboxes), Ordering::Relaxed);
    }

    /// Closes the session a newer connection replaced on another node, if
    /// that node is alive in the epoch that placed it.
    pub(super) async fn replace(&mut self, Replaced { user, device, old }: Replaced) {
        let started = Instant::now();
        let lease = self.registry.lease(old.node).await;
        self.metrics.call(started, lease.is_ok());
        if lease.ok().flatten() != Some(old.epoch) {
            return;
        }
        self.cache.remove(&user);
        if let Some(peer) = self.peer(old.node).await {
            peer.send(
                Lane::Control,
                &LinkFrame::Replace { user, device, epoch: old.epoch.0, session: old.session },
            );
            self.metrics.replaced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn same_tail(a: &SharedDeliver, b: &SharedDeliver) -> bool {
    a.tail().as_ptr() == b.tail().as_ptr() && a.tail().len() == b.tail().len()
}
