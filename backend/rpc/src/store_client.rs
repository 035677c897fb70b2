//! [`RemoteStore`]: a [`StoreApi`] that forwards every request to a separate
//! `store` process over gRPC, in call order.
//!
//! `call` never blocks: it takes an in-flight permit (none left: `Overloaded`
//! at once) and queues the request for the client's driver task, which writes
//! the requests, in the order they were queued, onto one long-lived
//! `Pipeline` stream and matches the replies to their `Done`s by id. The
//! server hands them to the store in stream order, so the store applies them
//! in call order, as the embedded store does.
//!
//! When the stream or its connection fails, every request waiting for a reply
//! answers `Unavailable` (once), and the driver reopens the stream after a
//! backoff, by itself (so that [`StoreApi::writable`], behind the gateway's
//! `/readyz`, turns true again without traffic); while it waits, requests
//! answer `Unavailable` at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend_store::{Done, Request, Response, StoreApi, StoreError, UnavailableError};
use prost::Message as _;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use crate::convert::pipeline::reply_from_proto;
use crate::convert::request::{self, Kind};
use crate::pb::store as pb;
use crate::pb::store::store_client::StoreClient;
use crate::runtime::RuntimeThread;
use crate::RpcError;

/// The wait before the first reopening of a failed stream; it doubles with
/// each failed attempt up to [`MAX_BACKOFF`] and is back to this once a
/// stream opens.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two attempts to open the stream.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How a [`RemoteStore`] reaches the store process. Build with
/// [`RemoteStoreConfig::new`] and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStoreConfig {
    /// The store's gRPC address: `http://host:port` (`host:port` alone means
    /// `http://`). No default.
    pub endpoint: String,
    /// Longest wait for a TCP connection to the store. Default 1 s.
    pub connect_timeout: Duration,
    /// Longest wait for one request's answer, and for the stream to open;
    /// past it the request answers [`StoreError::Unavailable`] and a late
    /// reply is dropped. Default 5 s.
    pub request_timeout: Duration,
    /// Most requests in flight at once; beyond it `call` answers
    /// [`StoreError::Overloaded`] without sending. Default 4096.
    pub max_in_flight: usize,
    /// Worker threads of the client's runtime. Default 2.
    pub worker_threads: usize,
    /// Largest message sent or received (an inbox page of large payloads is
    /// several MiB). Default 16 MiB.
    pub max_message_bytes: usize,
    /// HTTP/2 ping interval, so that a store host that vanished without
    /// closing the connection is noticed. Default 10 s.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    /// Default 5 s.
    pub keepalive_timeout: Duration,
}

impl RemoteStoreConfig {
    /// The defaults, for the store at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_in_flight: 4096,
            worker_threads: 2,
            max_message_bytes: 16 << 20,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
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
        if self.max_in_flight == 0 {
            return zero("max_in_flight");
        }
        if self.worker_threads == 0 {
            return zero("worker_threads");
        }
        if self.max_message_bytes == 0 {
            return zero("max_message_bytes");
        }
        if self.keepalive_interval.is_zero() || self.keepalive_timeout.is_zero() {
            return zero("keepalive_interval and keepalive_timeout");
        }
        Ok(())
    }
}

/// Counters of a [`RemoteStore`], for the gateway's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStoreStats {
    /// Requests answered by the store (a fault included).
    pub answered: u64,
    /// Requests refused at once because `max_in_flight` were in flight.
    pub overloaded: u64,
    /// Requests that failed as calls (transport, timeout, stream down, bad
    /// reply): answered [`StoreError::Unavailable`].
    pub unavailable: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Times the pipeline stream failed (or the store ended it) while open
    /// or opening.
    pub stream_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    answered: AtomicU64,
    overloaded: AtomicU64,
    unavailable: AtomicU64,
    stream_failures: AtomicU64,
    /// From a stream failure until a stream opens again.
    down: AtomicBool,
}

impl Counters {
    /// Counts an outcome and hands it to its `done`.
    fn answer(&self, done: OnceDone, outcome: Result<Response, StoreError>) {
        let counter = match &outcome {
            Err(StoreError::Unavailable(_)) => &self.unavailable,
            _ => &self.answered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        done.answer(outcome);
    }
}

/// A store in a separate process, reached over gRPC. Cheap to clone (clones
/// share the stream and keep one call order); the runtime stops when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// To the driver, in call order. Unbounded: the permits bound it.
    jobs: mpsc::UnboundedSender<Job>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    max_message_bytes: usize,
    counters: Arc<Counters>,
    // Last: dropped after `jobs`, whose closing tells the driver to answer
    // what it holds and stop.
    _runtime: RuntimeThread,
}

impl RemoteStore {
    /// Starts the client's runtime, its driver task and a lazy channel to
    /// `config.endpoint`. The driver opens the stream at once and keeps
    /// trying with backoff: the store may start later (until then, calls
    /// answer `Unavailable` and [`StoreApi::writable`] is false).
    pub fn start(config: RemoteStoreConfig) -> Result<Self, RpcError> {
        config.validate()?;
        let runtime = RuntimeThread::start("store-client", config.worker_threads)?;
        let endpoint = endpoint(&config.endpoint)?
            .connect_timeout(config.connect_timeout)
            .http2_keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout)
            .tcp_nodelay(true);
        // The channel spawns its connection task onto the current runtime.
        let channel = {
            let _entered = runtime.handle().enter();
            endpoint.connect_lazy()
        };
        let client = StoreClient::new(channel)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        let counters = Arc::<Counters>::default();
        let (jobs, queue) = mpsc::unbounded_channel();
        let driver = Driver {
            client,
            queue,
            request_timeout: config.request_timeout,
            counters: Arc::clone(&counters),
            link: Link::Down { retry_at: Instant::now(), why: String::new() },
            waiting: BTreeMap::new(),
            next_id: 0,
            backoff: FIRST_BACKOFF,
            healthy: true,
        };
        let _detached = runtime.handle().spawn(driver.run());
        Ok(Self {
            shared: Arc::new(Shared {
                jobs,
                permits: Arc::new(Semaphore::new(config.max_in_flight)),
                max_in_flight: config.max_in_flight,
                max_message_bytes: config.max_message_bytes,
                counters,
                _runtime: runtime,
            }),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> RemoteStoreStats {
        let counters = &self.shared.counters;
        let free = self.shared.permits.available_permits();
        RemoteStoreStats {
            answered: counters.answered.load(Ordering::Relaxed),
            overloaded: counters.overloaded.load(Ordering::Relaxed),
            unavailable: counters.unavailable.load(Ordering::Relaxed),
            in_flight: self.shared.max_in_flight.saturating_sub(free) as u64,
            stream_failures: counters.stream_failures.load(Ordering::Relaxed),
        }
    }
}

/// `host:port` or a full URI as a tonic endpoint.
pub(crate) fn endpoint(address: &str) -> Result<Endpoint, RpcError> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Endpoint::from_shared(uri).map_err(|source| RpcError::Endpoint { endpoint: address.to_owned(), source })
}

impl StoreApi for RemoteStore {
    fn writable(&self) -> bool {
        !self.shared.counters.down.load(Ordering::Relaxed)
    }

    fn call(&self, request: Request, done: Done) {
        let shared = &self.shared;
        let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
            shared.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            done(Err(StoreError::Overloaded));
            return;
        };
        let done = OnceDone::new(done);
        let call = request::to_proto(request);
        let kind = Kind::of(&call);
        // The driver sets the id; the largest one sizes the check.
        let envelope = pb::Envelope { id: u64::MAX, request: Some(call) };
        let len = envelope.encoded_len();
        if len > shared.max_message_bytes {
            drop(permit);
            let why = UnavailableError::RequestTooLarge { len, max: shared.max_message_bytes };
            shared.counters.answer(done, Err(why.into()));
            return;
        }
        let job = Job { envelope, kind, done, permit };
        if let Err(mpsc::error::SendError(job)) = shared.jobs.send(job) {
            // The driver is gone (the runtime is stopping).
            drop(job.permit);
            shared.counters.answer(job.done, Err(UnavailableError::ShuttingDown.into()));
        }
    }
}

/// One call on its way to the driver.
struct Job {
    envelope: pb::Envelope,
    kind: Kind,
    done: OnceDone,
    permit: OwnedSemaphorePermit,
}

/// A request on the stream, waiting for its reply.
struct Waiting {
    kind: Kind,
    deadline: Instant,
    done: OnceDone,
    /// Held until answered: the in-flight bound.
    permit: OwnedSemaphorePermit,
}

impl Waiting {
    /// Frees the in-flight slot, then answers: a caller that calls again from
    /// its `done` finds the slot free.
    fn answer(self, counters: &Counters, outcome: Result<Response, StoreError>) {
        drop(self.permit);
        counters.answer(self.done, outcome);
    }
}

type Opening =
    Pin<Box<dyn Future<Output = Result<tonic::Response<Streaming<pb::EnvelopeReply>>, Status>> + Send>>;

/// The state of the pipeline stream.
enum Link {
    /// No stream: requests answer `Unavailable` at once until `retry_at`;
    /// the first request after it opens a stream.
    Down { retry_at: Instant, why: String },
    /// Requests already go out on `out`; the server's response headers have
    /// not arrived yet (at the latest by `deadline`).
    Opening { out: mpsc::UnboundedSender<pb::Envelope>, open: Opening, deadline: Instant },
    /// Open: requests go out on `out`, replies come in on `replies`.
    Up { out: mpsc::UnboundedSender<pb::Envelope>, replies: Streaming<pb::EnvelopeReply> },
}

/// What woke the driver.
enum Event {
    /// A call (`None`: every `RemoteStore` is gone).
    Job(Option<Job>),
    /// The stream opened, or failed to.
    Opened(Result<Streaming<pb::EnvelopeReply>, Status>),
    /// A reply, the end of the stream (`Ok(None)`), or its failure.
    Reply(Result<Option<pb::EnvelopeReply>, Status>),
    /// The oldest waiting request's deadline passed.
    Deadline,
    /// The backoff after a failure passed: open a stream again.
    Retry,
}

impl Link {
    /// The next thing the stream has to say; while down, the end of the
    /// backoff.
    async fn event(&mut self) -> Event {
        match self {
            Self::Down { retry_at, .. } => {
                tokio::time::sleep_until(*retry_at).await;
                Event::Retry
            }
            Self::Opening { open, deadline, .. } => {
                let opened = match tokio::time::timeout_at(*deadline, open.as_mut()).await {
                    Ok(opened) => opened.map(tonic::Response::into_inner),
                    Err(_) => Err(Status::deadline_exceeded("the store did not open the stream in time")),
                };
                Event::Opened(opened)
            }
            Self::Up { replies, .. } => Event::Reply(replies.message().await),
        }
    }
}

/// The task that owns the stream: sends requests in queue order, matches
/// replies, enforces deadlines, reopens after failures. It holds no
/// `Shared`: it must never drop the runtime it runs on.
struct Driver {
    client: StoreClient<Channel>,
    queue: mpsc::UnboundedReceiver<Job>,
    request_timeout: Duration,
    counters: Arc<Counters>,
    link: Link,
    /// By id: ids and deadlines both increase in queue order, so the first
    /// entry is the next to expire.
    waiting: BTreeMap<u64, Waiting>,
    next_id: u64,
    /// The wait after the next failure.
    backoff: Duration,
    /// False from a failure until a stream opens again: one warning per
    /// outage.
    healthy: bool,
}

impl Driver {
    async fn run(mut self) {
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let next = self.waiting.first_key_value().map(|(_, waiting)| waiting.deadline);
            if let Some(deadline) = next {
                if armed != Some(deadline) {
                    timer.as_mut().reset(deadline);
                    armed = Some(deadline);
                }
            }
            let event = tokio::select! {
                job = self.queue.recv() => Event::Job(job),
                event = self.link.event() => event,
                () = &mut timer, if next.is_some() => Event::Deadline,
            };
            match event {
                Event::Job(Some(job)) => self.send(job),
                Event::Job(None) => {
                    self.fail_waiting(&UnavailableError::ShuttingDown);
                    return;
                }
                Event::Opened(Ok(replies)) => self.opened(replies),
                Event::Opened(Err(status)) => {
                    self.failed(format!("opening the stream: {:?}: {}", status.code(), status.message()));
                }
                Event::Reply(Ok(Some(reply))) => self.reply(reply),
                Event::Reply(Ok(None)) => self.failed("the store ended the stream".to_owned()),
                Event::Reply(Err(status)) => {
                    self.failed(format!("{:?}: {}", status.code(), status.message()));
                }
                Event::Deadline => {
                    armed = None;
                    self.expire();
                }
                Event::Retry => self.open(Instant::now()),
            }
        }
    }

    /// Puts one request on the stream (opening it if it is down and the
    /// backoff has passed), or answers `Unavailable` while it is down.
    fn send(&mut self, job: Job) {
        let now = Instant::now();
        if let Link::Down { retry_at, .. } = &self.link {
            if now >= *retry_at {
                self.open(now);
            }
        }
        let out = match &self.link {
            Link::Down { retry_at, why } => {
                let retry_in_ms = u64::try_from(retry_at.saturating_duration_since(now).as_millis());
                let why = UnavailableError::Unreachable {
                    why: why.clone(),
                    retry_in_ms: retry_in_ms.unwrap_or(u64::MAX),
                };
                drop(job.permit);
                self.counters.answer(job.done, Err(why.into()));
                return;
            }
            Link::Opening { out, .. } | Link::Up { out, .. } => out,
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let Job { mut envelope, kind, done, permit } = job;
        envelope.id = id;
        if out.send(envelope).is_err() {
            // The request stream was dropped: the stream is broken.
            let closed = UnavailableError::StreamClosed;
            drop(permit);
            let why = closed.to_string();
            self.counters.answer(done, Err(closed.into()));
            self.failed(why);
            return;
        }
        let deadline = now + self.request_timeout;
        self.waiting.insert(id, Waiting { kind, deadline, done, permit });
    }

    /// Starts opening a stream; requests go out on it at once.
    fn open(&mut self, now: Instant) {
        let (out, requests) = mpsc::unbounded_channel();
        let mut client = self.client.clone();
        let open: Opening =
            Box::pin(async move { client.pipeline(UnboundedReceiverStream::new(requests)).await });
        self.link = Link::Opening { out, open, deadline: now + self.request_timeout };
    }

    fn opened(&mut self, replies: Streaming<pb::EnvelopeReply>) {
        let old =
            std::mem::replace(&mut self.link, Link::Down { retry_at: Instant::now(), why: String::new() });
        let Link::Opening { out, .. } = old else {
            // Only an opening link reports `Opened`.
            self.link = old;
            return;
        };
        self.link = Link::Up { out, replies };
        self.backoff = FIRST_BACKOFF;
        self.counters.down.store(false, Ordering::Relaxed);
        if !self.healthy {
            tracing::info!("the store's pipeline stream is open again");
            self.healthy = true;
        }
    }

    /// One reply: to its waiting request, or dropped if that one already
    /// timed out.
    fn reply(&mut self, reply: pb::EnvelopeReply) {
        let Some(waiting) = self.waiting.remove(&reply.id) else {
            tracing::debug!(id = reply.id, "late reply dropped (the request timed out)");
            return;
        };
        let outcome = reply_from_proto(waiting.kind, reply.reply);
        waiting.answer(&self.counters, outcome);
    }

    /// Answers every request whose deadline passed.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let timeout_ms = u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX);
            entry.remove().answer(&self.counters, Err(UnavailableError::Timeout { timeout_ms }.into()));
        }
    }

    /// The stream failed (or never opened): every waiting request answers
    /// `Unavailable`, and the next opening waits out the backoff.
    fn failed(&mut self, why: String) {
        self.counters.stream_failures.fetch_add(1, Ordering::Relaxed);
        self.counters.down.store(true, Ordering::Relaxed);
        if self.healthy {
            tracing::warn!(why = %why, "the store's pipeline stream failed; reopening with backoff");
            self.healthy = false;
        } else {
            tracing::debug!(why = %why, "the store's pipeline stream is still down");
        }
        // Dropping the old link drops its request sender (ending the request
        // stream) and its response stream (resetting it).
        self.link = Link::Down { retry_at: Instant::now() + self.backoff, why: why.clone() };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.fail_waiting(&UnavailableError::StreamFailed { why });
    }

    /// Answers every request waiting for a reply with `cause`.
    fn fail_waiting(&mut self, cause: &UnavailableError) {
        for (_, waiting) in std::mem::take(&mut self.waiting) {
            waiting.answer(&self.counters, Err(cause.clone().into()));
        }
    }
}

/// A `Done` that is called exactly once: by [`OnceDone::answer`], or when
/// dropped unanswered (driver stopped with the runtime) with `Unavailable`.
struct OnceDone(Option<Done>);

impl OnceDone {
    fn new(done: Done) -> Self {
        Self(Some(done))
    }

    fn answer(mut self, result: Result<Response, StoreError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for OnceDone {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(UnavailableError::ShuttingDown.into()));
        }
    }
}
