//! [`RemotePush`]: a [`PushApi`] that forwards notes to a separate `push`
//! process over gRPC, best effort.
//!
//! `notify` and `connected` only queue (bounded; full: the event is dropped and
//! counted). One task drains the queue: whatever queued while an rpc was in
//! flight goes out as the next batch, one rpc per run of notes or of connects,
//! in order. When the push process is down a failed batch is dropped and
//! counted, with one warning per outage: the inbox is the truth, a push only
//! wakes a device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend_push::{PushApi, PushNote};
use protocol::{DeviceId, UserId};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::convert::push::{device_to_proto, note_to_proto};
use crate::pb::push as pb;
use crate::pb::push::push_client::PushClient;
use crate::runtime::RuntimeThread;
use crate::store_client::endpoint;
use crate::RpcError;

/// How a [`RemotePush`] reaches the push process. Build with
/// [`RemotePushConfig::new`] and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePushConfig {
    /// The push service's gRPC address: `http://host:port` (`host:port` alone
    /// means `http://`). No default.
    pub endpoint: String,
    /// Longest wait for a TCP connection to the push process. Default 1 s.
    pub connect_timeout: Duration,
    /// Longest wait for one batch's answer. Default 2 s.
    pub request_timeout: Duration,
    /// Events (notes and connects) waiting to be sent; beyond it they are
    /// dropped and counted. Default 8192.
    pub queue: usize,
    /// Most events in one rpc. Default 512.
    pub max_batch: usize,
    /// Largest message sent. Default 4 MiB (512 notes take about 20 KiB).
    pub max_message_bytes: usize,
}

impl RemotePushConfig {
    /// The defaults, for the push service at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            queue: 8192,
            max_batch: 512,
            max_message_bytes: 4 << 20,
        }
    }

    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), RpcError> {
        let zero = |what: &str| Err(RpcError::Config(format!("{what} must be above zero")));
        if self.connect_timeout.is_zero() {
            return zero("connect_timeout");
        }
        if self.request_timeout.is_zero() {
            return zero("request_timeout");
        }
        if self.queue == 0 {
            return zero("queue");
        }
        if self.max_batch == 0 {
            return zero("max_batch");
        }
        if self.max_message_bytes == 0 {
            return zero("max_message_bytes");
        }
        Ok(())
    }
}

/// Counters of a [`RemotePush`], for the gateway's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemotePushStats {
    /// Notes the push process accepted.
    pub notes_sent: u64,
    /// Connects the push process accepted.
    pub connects_sent: u64,
    /// Rpcs that succeeded (one per batch run).
    pub batches: u64,
    /// Events dropped because the queue was full.
    pub dropped_full: u64,
    /// Events dropped because their rpc failed (push process down or slow).
    pub dropped_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    notes_sent: AtomicU64,
    connects_sent: AtomicU64,
    batches: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
}

/// What the gateway asked for, in order.
#[derive(Debug, Clone, Copy)]
enum Event {
    Note(PushNote),
    Connected(UserId, DeviceId),
}

/// A push service in a separate process, reached over gRPC.
#[derive(Debug)]
pub struct RemotePush {
    /// `None` once dropping: closing it lets the pump flush and stop.
    queue: Option<mpsc::Sender<Event>>,
    pump: Option<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
    runtime: RuntimeThread,
}

impl RemotePush {
    /// Starts the client's runtime (on one thread of its own), a lazy channel to
    /// `config.endpoint` and the task that sends batches.
    pub fn start(config: RemotePushConfig) -> Result<Self, RpcError> {
        config.validate()?;
        let runtime = RuntimeThread::start("push-client", 1)?;
        let endpoint = endpoint(&config.endpoint)?.connect_timeout(config.connect_timeout).tcp_nodelay(true);
        let channel = {
            // The channel spawns its connection task onto the current runtime.
            let _entered = runtime.handle().enter();
            endpoint.connect_lazy()
        };
        let client = PushClient::new(channel).max_encoding_message_size(config.max_message_bytes);
        let (queue, events) = mpsc::channel(config.queue);
        let counters = Arc::new(Counters::default());
        let pump = Pump {
            client,
            timeout: config.request_timeout,
            max_batch: config.max_batch,
            counters: Arc::clone(&counters),
            down: false,
        };
        let pump = runtime.handle().spawn(pump.run(events));
        Ok(Self { queue: Some(queue), pump: Some(pump), counters, runtime })
    }

    /// The counters so far.
    pub fn stats(&self) -> RemotePushStats {
        let c = &self.counters;
        RemotePushStats {
            notes_sent: c.notes_sent.load(Ordering::Relaxed),
            connects_sent: c.connects_sent.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            dropped_failed: c.dropped_failed.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(event).is_err() {
            let dropped = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at 1, 2, 4, 8, ... drops: visible without flooding the log.
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "push queue full: dropping push events");
            }
        }
    }
}

impl PushApi for RemotePush {
    fn notify(&self, note: PushNote) {
        self.enqueue(Event::Note(note));
    }

    fn connected(&self, user: UserId, device: DeviceId) {
        self.enqueue(Event::Connected(user, device));
    }
}

impl Drop for RemotePush {
    fn drop(&mut self) {
        // Close the queue; the runtime then waits (a short grace) for the pump
        // to send what is left before it stops.
        self.queue = None;
        if let Some(pump) = self.pump.take() {
            self.runtime.stop_after(pump);
        }
    }
}

/// The task that drains the queue into rpcs.
struct Pump {
    client: PushClient<Channel>,
    timeout: Duration,
    max_batch: usize,
    counters: Arc<Counters>,
    /// The last rpc failed: the outage was logged once already.
    down: bool,
}

impl Pump {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // Waits for one event, then takes what else queued meanwhile.
        while events.recv_many(&mut batch, self.max_batch).await > 0 {
            let mut rest = batch.as_slice();
            while let Some(first) = rest.first() {
                let run = match first {
                    Event::Note(_) => rest.iter().take_while(|e| matches!(e, Event::Note(_))).count(),
                    Event::Connected(..) => {
                        rest.iter().take_while(|e| matches!(e, Event::Connected(..))).count()
                    }
                };
                let (now, later) = rest.split_at(run.min(rest.len()));
                self.send(now).await;
                rest = later;
            }
            batch.clear();
        }
    }

    /// Sends a run of events of one kind as one rpc.
    async fn send(&mut self, run: &[Event]) {
        let mut client = self.client.clone();
        let len = run.len() as u64;
        let (result, sent) = match run.first() {
            Some(Event::Note(_)) => {
                let notes = run
                    .iter()
                    .filter_map(|e| match e {
                        Event::Note(note) => Some(note_to_proto(*note)),
                        Event::Connected(..) => None,
                    })
                    .collect();
                let call = client.notify(request(pb::NoteBatch { notes }, self.timeout));
                (tokio::time::timeout(self.timeout, call).await, &self.counters.notes_sent)
            }
            Some(Event::Connected(..)) => {
                let devices = run
                    .iter()
                    .filter_map(|e| match e {
                        Event::Connected(user, device) => Some(device_to_proto(*user, *device)),
                        Event::Note(_) => None,
                    })
                    .collect();
                let call = client.connected(request(pb::DeviceBatch { devices }, self.timeout));
                (tokio::time::timeout(self.timeout, call).await, &self.counters.connects_sent)
            }
            None => return,
        };
        let failure = match result {
            Ok(Ok(_)) => None,
            Ok(Err(status)) => Some(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Some(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        match failure {
            None => {
                sent.fetch_add(len, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                if self.down {
                    self.down = false;
                    let dropped = self.counters.dropped_failed.load(Ordering::Relaxed);
                    tracing::info!(dropped_total = dropped, "push process reachable again");
                }
            }
            Some(why) => {
                self.counters.dropped_failed.fetch_add(len, Ordering::Relaxed);
                if !self.down {
                    self.down = true;
                    tracing::warn!(%why, "push process unreachable: dropping push events until it is back");
                }
            }
        }
    }
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}
