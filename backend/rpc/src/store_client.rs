//! [`RemoteStore`]: a [`StoreApi`] that forwards every request to a separate
//! `store` process over gRPC.
//!
//! `call` never blocks: it takes an in-flight permit (none left: `Overloaded`
//! at once), spawns the rpc onto the client's own runtime and returns. The
//! channel connects lazily and reconnects by itself; while the store process
//! is down calls answer `Unavailable` after at most the connect timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend_store::{Done, Request, Response, StoreApi, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::convert::request::{self, Call};
use crate::convert::response::{outcome, Answer, Reply};
use crate::pb::store::store_client::StoreClient;
use crate::runtime::RuntimeThread;
use crate::RpcError;

/// How a [`RemoteStore`] reaches the store process. Build with
/// [`RemoteStoreConfig::new`] and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStoreConfig {
    /// The store's gRPC address: `http://host:port` (`host:port` alone means
    /// `http://`). No default.
    pub endpoint: String,
    /// Longest wait for a TCP connection to the store. Default 1 s.
    pub connect_timeout: Duration,
    /// Longest wait for one request's answer, also sent to the server as the
    /// gRPC deadline. Default 5 s.
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
    /// Requests that failed as calls (transport, timeout, bad reply):
    /// answered [`StoreError::Unavailable`].
    pub unavailable: u64,
    /// Requests in flight now.
    pub in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    answered: AtomicU64,
    overloaded: AtomicU64,
    unavailable: AtomicU64,
}

/// A store in a separate process, reached over gRPC. Cheap to clone (clones
/// share the connection); the runtime stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: StoreClient<Channel>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    request_timeout: Duration,
    counters: Arc<Counters>,
    // Last: dropped after the client, so the channel's tasks stop with it.
    runtime: RuntimeThread,
}

impl RemoteStore {
    /// Starts the client's runtime and a lazy channel to `config.endpoint`.
    /// Nothing is sent until the first call: the store may start later.
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
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                permits: Arc::new(Semaphore::new(config.max_in_flight)),
                max_in_flight: config.max_in_flight,
                request_timeout: config.request_timeout,
                counters: Arc::default(),
                runtime,
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
        }
    }
}

/// `host:port` or a full URI as a tonic endpoint.
pub(crate) fn endpoint(address: &str) -> Result<Endpoint, RpcError> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Endpoint::from_shared(uri).map_err(|source| RpcError::Endpoint { endpoint: address.to_owned(), source })
}

impl StoreApi for RemoteStore {
    fn call(&self, request: Request, done: Done) {
        let Ok(permit) = Arc::clone(&self.shared.permits).try_acquire_owned() else {
            self.shared.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            done(Err(StoreError::Overloaded));
            return;
        };
        let task = Task {
            client: self.shared.client.clone(),
            timeout: self.shared.request_timeout,
            counters: Arc::clone(&self.shared.counters),
            _permit: permit,
        };
        let done = OnceDone::new(done);
        // If the runtime is stopping the task is dropped unrun, and `OnceDone`
        // still answers (Unavailable).
        let _detached = self.shared.runtime.handle().spawn(task.run(request, done));
    }
}

/// What one spawned request needs. Deliberately not the `Shared`: a task that
/// held the last reference would drop the runtime from inside itself.
struct Task {
    client: StoreClient<Channel>,
    timeout: Duration,
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
}

impl Task {
    async fn run(self, request: Request, done: OnceDone) {
        let result = match tokio::time::timeout(self.timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the store within {} ms",
                self.timeout.as_millis()
            ))),
        };
        let counter = match &result {
            Err(StoreError::Unavailable(_)) => &self.counters.unavailable,
            _ => &self.counters.answered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        done.answer(result);
    }

    async fn send(&self, request: Request) -> Result<Response, StoreError> {
        let mut client = self.client.clone();
        let timeout = self.timeout;
        match request::to_proto(request) {
            Call::Connect(m) => settle(client.connect(grpc(m, timeout)).await, Answer::Connected),
            Call::Send(m) => settle(client.send(grpc(m, timeout)).await, Answer::Sent),
            Call::Ack(m) => settle(client.ack(grpc(m, timeout)).await, Answer::Receipts),
            Call::Read(m) => settle(client.read(grpc(m, timeout)).await, Answer::Receipts),
            Call::Group(m) => settle(client.group(grpc(m, timeout)).await, Answer::GroupChanged),
            Call::PrekeyUpload(m) => {
                settle(client.prekey_upload(grpc(m, timeout)).await, Answer::PrekeyStock)
            }
            Call::PrekeyFetch(m) => {
                settle(client.prekey_fetch(grpc(m, timeout)).await, Answer::PrekeyFetched)
            }
            Call::SetVisibility(m) => settle(client.set_visibility(grpc(m, timeout)).await, Answer::Done),
            Call::GetVisibility(m) => {
                settle(client.get_visibility(grpc(m, timeout)).await, Answer::Visibility)
            }
            Call::Inbox(m) => settle(client.inbox(grpc(m, timeout)).await, Answer::Inbox),
            Call::GroupGet(m) => settle(client.group_get(grpc(m, timeout)).await, Answer::Group),
            Call::Cursors(m) => settle(client.cursors(grpc(m, timeout)).await, Answer::Cursors),
        }
    }
}

/// A request carrying its deadline, so the server gives up when we do.
fn grpc<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// An rpc's result as the store's outcome.
fn settle<R: Reply>(
    result: Result<tonic::Response<R>, Status>,
    wrap: impl FnOnce(R::Ok) -> Answer,
) -> Result<Response, StoreError> {
    match result {
        Ok(reply) => outcome(reply.into_inner(), wrap),
        Err(status) => Err(status_to_error(&status)),
    }
}

/// A failed call: the store's own shedding stays `Overloaded` (retry later),
/// everything else means the store could not be used: `Unavailable`.
fn status_to_error(status: &Status) -> StoreError {
    match status.code() {
        Code::ResourceExhausted => StoreError::Overloaded,
        code => StoreError::Unavailable(format!("{code:?}: {}", status.message())),
    }
}

/// A `Done` that is called exactly once: by [`OnceDone::answer`], or when
/// dropped unanswered (task cancelled at shutdown) with `Unavailable`.
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
            done(Err(StoreError::Unavailable("the store client is shutting down".into())));
        }
    }
}
