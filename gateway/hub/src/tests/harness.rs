//! A node of hubs with no sockets: every hub shares one directory and one
//! verifier as a node's workers do, time is virtual, batches between hubs go
//! over in-memory links, and a scripted store answers what the test says
//! (with a small inbox model for sync windows).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use backend_store::{Connected, Request, Response, StoreError};
use bytes::BytesMut;
use gateway_admin::WorkerMetrics;
use gateway_auth::Signer;
use gateway_core::testing::{message, parse_server_output, upgrade, Out};
use protocol::{Capabilities, Deliver, DeviceId, Frame, Hello, Seq, Timestamp, Token, UserId, Visibility};
use routing::{Directory, Link};

use crate::{Hub, HubConfig, Now, PushWork, Remote, Setup, StoreCall};

/// Settings of the hubs under test (small enough to reach every bound).
pub(crate) fn hub_config() -> HubConfig {
    HubConfig {
        max_inflight: 64,
        max_logins: 64,
        login_queue: 256,
        grace: Duration::from_secs(5),
        typing_interval: Duration::from_secs(3),
        prekey_fetches_per_min: 10,
        prekey_low: 5,
        max_payload: 65_536,
        max_batch: 1_024,
        fleet: false,
        ack_wait: Duration::ZERO,
        media: None,
    }
}

/// A worker's inbox as a test link: it takes batches while `open`.
#[derive(Default)]
pub(crate) struct TestLink {
    pub(crate) open: Cell<bool>,
    pub(crate) batches: RefCell<Vec<Vec<Remote>>>,
}

impl Link<Remote> for TestLink {
    fn offer(&self, batch: Vec<Remote>) -> Result<(), Vec<Remote>> {
        if !self.open.get() {
            return Err(batch);
        }
        self.batches.borrow_mut().push(batch);
        Ok(())
    }
}

/// One connected client: where its session lives and who it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub(crate) worker: usize,
    pub(crate) key: usize,
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
}

pub(crate) struct TestNode {
    pub(crate) hubs: Vec<Hub<()>>,
    pub(crate) metrics: Vec<Arc<WorkerMetrics>>,
    pub(crate) links: Vec<TestLink>,
    pub(crate) now: Now,
    signer: Signer,
    /// Store calls not answered yet, with the worker that made them.
    pub(crate) calls: VecDeque<(usize, StoreCall)>,
    pub(crate) pushes: Vec<PushWork>,
    /// Server bytes not parsed yet, per (worker, key).
    pending: HashMap<(usize, usize), BytesMut>,
    /// The inboxes the scripted store serves sync windows from.
    pub(crate) inboxes: HashMap<(UserId, DeviceId), Vec<Deliver>>,
    /// Every batch a worker handed another: its destination, its items and
    /// how many distinct DELIVER encodings its live entries share.
    pub(crate) batches: Vec<Batch>,
    /// Items the hubs gave the fleet router (cluster mode).
    pub(crate) fleet_items: Vec<Remote>,
    /// Registry calls the hubs made (cluster mode), with their worker.
    pub(crate) fleet_calls: VecDeque<(usize, crate::FleetCall)>,
}

/// A batch seen crossing between workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) to: usize,
    pub(crate) items: usize,
    pub(crate) encodings: usize,
}

impl TestNode {
    pub(crate) fn new(workers: usize) -> Self {
        Self::with_config(workers, hub_config())
    }

    pub(crate) fn with_config(workers: usize, config: HubConfig) -> Self {
        let (signer, _) = Signer::generate(7).unwrap();
        let setup = Setup {
            config,
            session: gateway_core::testing::config(),
            verifier: Arc::new(RwLock::new(Arc::new(signer.verifier()))),
            recent_tokens: Arc::new(gateway_auth::RecentTokens::new(
                gateway_auth::FingerprintKey::from_bytes(&[7; 32]),
                1_024,
                600,
            )),
            directory: Arc::new(Directory::default()),
        };
        let metrics: Vec<_> = (0..workers).map(|w| Arc::new(WorkerMetrics::new(w))).collect();
        let hubs = (0..workers).map(|w| Hub::new(w, workers, setup.clone(), metrics[w].clone())).collect();
        // In a fleet, the destination after the workers is the fleet router.
        let destinations = workers + usize::from(setup.config.fleet);
        let links =
            (0..destinations).map(|_| TestLink { open: Cell::new(true), ..TestLink::default() }).collect();
        Self {
            hubs,
            metrics,
            links,
            now: Now { at: Instant::now(), unix_ms: 1_800_000_000_000 },
            signer,
            calls: VecDeque::new(),
            pushes: Vec::new(),
            pending: HashMap::new(),
            inboxes: HashMap::new(),
            batches: Vec::new(),
            fleet_items: Vec::new(),
            fleet_calls: VecDeque::new(),
        }
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now.at += by;
        self.now.unix_ms += by.as_millis() as u64;
    }

    /// The end of a loop turn on every worker, as the drivers run it: own
    /// batches applied, others' handed over (and taken by their worker at
    /// once), store and push work collected.
    pub(crate) fn turn(&mut self) {
        let now = self.now;
        for hub in &mut self.hubs {
            hub.end_turn(now);
            hub.flush_batches(&self.links);
        }
        for (worker, link) in self.links.iter().enumerate() {
            if worker == self.hubs.len() {
                self.fleet_items.extend(link.batches.borrow_mut().drain(..).flatten());
                continue;
            }
            for batch in link.batches.borrow_mut().drain(..) {
                let mut tails: Vec<*const u8> = batch
                    .iter()
                    .filter_map(|item| match item {
                        Remote::Live { deliver, .. } => Some(deliver.tail().as_ptr()),
                        _ => None,
                    })
                    .collect();
                tails.sort();
                tails.dedup();
                self.batches.push(Batch { to: worker, items: batch.len(), encodings: tails.len() });
                self.hubs[worker].handle_batch(now, batch);
            }
        }
        for (worker, hub) in self.hubs.iter_mut().enumerate() {
            hub.end_turn(now);
            while hub.poll_touched().is_some() {}
            while let Some(call) = hub.poll_store() {
                self.calls.push_back((worker, call));
            }
            while let Some(work) = hub.poll_push() {
                self.pushes.push(work);
            }
            while let Some(call) = hub.poll_fleet() {
                self.fleet_calls.push_back((worker, call));
            }
            while hub.poll_closed().is_some() {}
        }
    }

    /// A client of `user` with `device` on `worker`, authenticated (the store
    /// answers its login with `inbox_head`, the registry places it in a
    /// fleet) and synced as far as its inbox in [`TestNode::inboxes`] allows.
    pub(crate) fn connect(&mut self, worker: usize, user: u64, device: u32, inbox_head: u64) -> Client {
        let client = self.login(worker, user, device, inbox_head);
        let register =
            self.fleet_calls.iter().position(|(_, c)| matches!(c, crate::FleetCall::Register { .. }));
        if let Some((worker, crate::FleetCall::Register { ticket, .. })) =
            register.and_then(|at| self.fleet_calls.remove(at))
        {
            self.hubs[worker].handle_registered(self.now, ticket);
            self.turn();
        }
        let user = client.user;
        let visibility = self.take_call(|r| matches!(r, Request::GetVisibility { user: u } if *u == user));
        self.answer(visibility, Ok(Response::Visibility(Visibility::Everyone)));
        if inbox_head == 0 {
            // The sync reads the store once even when the head says there is
            // nothing: an empty inbox answers it.
            self.serve_inbox_reads();
        }
        client
    }

    /// A client of `user` with `device` on `worker` up to the store's answer
    /// to its login (`inbox_head`): not yet placed in a fleet.
    pub(crate) fn login(&mut self, worker: usize, user: u64, device: u32, inbox_head: u64) -> Client {
        let client = self.hello(worker, user, device);
        self.answer_connect(client, inbox_head);
        client
    }

    /// A client of `user` with `device` on `worker` that sent its HELLO with
    /// a valid token, nothing more.
    pub(crate) fn hello(&mut self, worker: usize, user: u64, device: u32) -> Client {
        let token = self.token(user, device);
        self.hello_with_token(worker, user, device, token)
    }

    /// A valid token for `user` and `device`, issued now, for an hour.
    pub(crate) fn token(&self, user: u64, device: u32) -> Vec<u8> {
        self.signer.mint(UserId(user), DeviceId(device), self.now.unix_ms / 1_000, 3_600).into_bytes()
    }

    /// [`TestNode::hello`] with `token` in the HELLO.
    pub(crate) fn hello_with_token(
        &mut self,
        worker: usize,
        user: u64,
        device: u32,
        token: Vec<u8>,
    ) -> Client {
        let (user, device) = (UserId(user), DeviceId(device));
        let key = self.hubs[worker].insert(self.now, ());
        let client = Client { worker, key, user, device };
        self.read(client, &upgrade("/ws"));
        let hello = Frame::Hello(Hello {
            min_version: 1,
            max_version: 1,
            device,
            resume_after: Seq(0),
            capabilities: Capabilities::ALL,
            token: Token::new(token).unwrap(),
        });
        self.send(client, &[hello]);
        client
    }

    /// Answers `client`'s Connect (it must be waiting) with `inbox_head`.
    pub(crate) fn answer_connect(&mut self, client: Client, inbox_head: u64) {
        let (user, device) = (client.user, client.device);
        let login =
            self.take_call(|r| matches!(r, Request::Connect(c) if (c.user, c.device) == (user, device)));
        let connected = Connected {
            inbox_head: Seq(inbox_head),
            acked: Seq(0),
            prekey_stock: None,
            previous_connect: Timestamp(0),
        };
        self.answer(login, Ok(Response::Connected(connected)));
    }

    /// Bytes from `client`.
    pub(crate) fn read(&mut self, client: Client, bytes: &[u8]) {
        let mut input = BytesMut::from(bytes);
        self.hubs[client.worker].handle_read(self.now, client.key, &mut input);
        assert!(input.is_empty(), "a whole message was left unread");
        self.turn();
    }

    /// Frames from `client`, in one WebSocket message.
    pub(crate) fn send(&mut self, client: Client, frames: &[Frame]) {
        self.read(client, &message(frames));
    }

    /// The first store call `matching` asks for (it must be there).
    pub(crate) fn take_call(&mut self, matching: impl Fn(&Request) -> bool) -> (usize, StoreCall) {
        let at = self.calls.iter().position(|(_, call)| matching(&call.request));
        let at = at.unwrap_or_else(|| panic!("no such store call in {:?}", self.calls));
        self.calls.remove(at).unwrap()
    }

    /// Whether a store call `matching` is waiting.
    pub(crate) fn has_call(&self, matching: impl Fn(&Request) -> bool) -> bool {
        self.calls.iter().any(|(_, call)| matching(&call.request))
    }

    /// Answers a store call, then runs a turn.
    pub(crate) fn answer(&mut self, call: (usize, StoreCall), result: Result<Response, StoreError>) {
        self.answer_in_turn(call, result);
        self.turn();
    }

    /// Answers a store call; the turn goes on (see [`TestNode::turn`]).
    pub(crate) fn answer_in_turn(
        &mut self,
        (worker, call): (usize, StoreCall),
        result: Result<Response, StoreError>,
    ) {
        self.hubs[worker].handle_answer(self.now, call.ticket, result);
    }

    /// Where `client`'s session lives, as the directory says.
    pub(crate) fn session_ref(&self, client: Client) -> routing::SessionRef {
        self.hubs[0].directory.session(client.user, client.device).expect("connected")
    }

    /// Hands `client`'s hub a live entry for it, as a batch from another
    /// worker.
    pub(crate) fn deliver_live(&mut self, client: Client, entry: &Deliver) {
        let to = self.session_ref(client);
        let deliver = gateway_core::SharedDeliver::new(entry);
        self.hubs[client.worker].handle_batch(self.now, vec![Remote::Live { to, seq: entry.seq, deliver }]);
        self.turn();
    }

    /// Answers every inbox read waiting from the scripted inboxes.
    pub(crate) fn serve_inbox_reads(&mut self) {
        while self.has_call(|r| matches!(r, Request::Inbox(_))) {
            let call = self.take_call(|r| matches!(r, Request::Inbox(_)));
            let Request::Inbox(query) = &call.1.request else { unreachable!() };
            let inbox = self.inboxes.get(&(query.user, query.device)).cloned().unwrap_or_default();
            let after: Vec<Deliver> = inbox.into_iter().filter(|d| d.seq > query.after).collect();
            let entries: Vec<Deliver> = after.iter().take(query.limit as usize).cloned().collect();
            let remaining = (after.len() - entries.len()) as u64;
            let head = after.last().map_or(query.after, |d| d.seq);
            let page = backend_store::InboxPage { entries, remaining, head };
            self.answer(call, Ok(Response::Inbox(page)));
        }
    }

    /// What `client` received since last asked (as if its socket took it
    /// all), parsed. The bytes are taken as owned pieces, the way a
    /// completion-based driver (io_uring) takes them for a write in flight.
    pub(crate) fn output(&mut self, client: Client) -> Vec<Out> {
        let hub = &mut self.hubs[client.worker];
        hub.seal(client.key);
        let Some((_, outbound)) = hub.output(client.key) else { return Vec::new() };
        let mut pieces = Vec::new();
        outbound.owned_chunks(&mut pieces, usize::MAX);
        let pending = self.pending.entry((client.worker, client.key)).or_default();
        let mut written = 0;
        for piece in &pieces {
            pending.extend_from_slice(piece);
            written += piece.len();
        }
        hub.handle_written(self.now, client.key, written);
        let out = parse_server_output(pending);
        self.turn();
        out
    }

    /// The protocol frames `client` received since last asked.
    pub(crate) fn frames(&mut self, client: Client) -> Vec<Frame> {
        self.output(client)
            .into_iter()
            .filter_map(|out| match out {
                Out::Frame(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }

    /// Serves `client`'s sync windows from the scripted inbox, acknowledging
    /// each, until none is asked for; returns the seqs the client received
    /// (in sync batches and live), in order.
    pub(crate) fn sync_all(&mut self, client: Client) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..64 {
            self.serve_inbox_reads();
            for frame in self.frames(client) {
                match frame {
                    Frame::SyncBatch(batch) => {
                        let entries: Vec<Deliver> = batch.entries.iter().collect();
                        seqs.extend(entries.iter().map(|d| d.seq.0));
                        if let Some(last) = entries.last() {
                            self.send(client, &[Frame::Ack(protocol::Ack { up_to: last.seq })]);
                        }
                    }
                    Frame::Deliver(d) => seqs.push(d.seq.0),
                    _ => {}
                }
            }
            if !self.has_call(|r| matches!(r, Request::Inbox(_))) {
                return seqs;
            }
        }
        panic!("the sync did not end: {seqs:?}");
    }

    /// A client's connection ends.
    pub(crate) fn disconnect(&mut self, client: Client) {
        self.hubs[client.worker].handle_peer_gone(self.now, client.key);
        self.turn();
    }

    /// Runs every hub's own deadline that has passed.
    pub(crate) fn run_timers(&mut self) {
        for hub in &mut self.hubs {
            if hub.poll_timeout().is_some_and(|at| at <= self.now.at) {
                hub.handle_timeout(self.now);
            }
        }
        self.turn();
    }
}
