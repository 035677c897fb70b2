//! [`RedisStore`]: the connection, the runtime its calls run on, and the
//! requests other than Send.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend_store::{
    Ack, Connect, Connected, Done, EngineError, InboxPage, InboxQuery, ReceiptNote, Request, Response,
    StoreApi, StoreError, UnavailableError,
};
use protocol::limits::MAX_SYNC_BATCH;
use protocol::{Deliver, Payload, Seq, Timestamp, Visibility, Wire};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use tokio::sync::mpsc;

use crate::durability::{self, Durability, REPLICA_TIMEOUT};
use crate::entry::Entry;
use crate::ids::{self, Ids};
use crate::keys;
use crate::scripts::Scripts;

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Seed URLs of the cluster (`redis://host:port`).
    pub urls: Vec<String>,
    /// Longest wait for one Redis call (connect, or a command's answer).
    pub timeout: Duration,
    /// Most devices per user.
    pub max_devices: u32,
    /// How long messages, inbox entries and dedup records live.
    pub retention: Duration,
    /// Requests in flight at most; more are answered `Overloaded`.
    pub inflight: usize,
    /// One-time prekey stock at or below which a device is told to upload
    /// more.
    pub prekey_low: u32,
    /// The AOF setting the masters must have (checked at start).
    pub durability: Durability,
    /// Replicas that must have a send's writes before it is acknowledged
    /// (`WAIT`); 0: none.
    pub replicas: u32,
    /// Longest `WAIT` for them.
    pub replica_timeout: Duration,
}

impl RedisConfig {
    /// Defaults (the fjall engine's), on the cluster seeded by `urls`.
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            timeout: Duration::from_secs(2),
            max_devices: 5,
            retention: Duration::from_secs(30 * 24 * 3600),
            inflight: 65_536,
            prekey_low: 10,
            durability: Durability::Process,
            replicas: 0,
            replica_timeout: REPLICA_TIMEOUT,
        }
    }
}

/// The store on a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: ClusterConnection,
    pub(crate) scripts: Scripts,
    pub(crate) config: RedisConfig,
    /// Held for its drop: the runtime the lanes run on.
    _runtime: Runtime,
    /// Message ids: this instance's leased number, and a counter.
    pub(crate) ids: Ids,
    inflight: AtomicUsize,
    writable: AtomicBool,
    /// Requests by device (see [`lane_of`]): each lane answers its requests
    /// one after the other.
    lanes: Vec<mpsc::UnboundedSender<(Request, Done)>>,
}

/// Lanes of requests. One device's requests take one lane, in the order
/// they came (a client pipelining SENDs gets them stored in that order, as
/// from the fjall engine's single writer); lanes run side by side.
const LANES: usize = 256;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("urls", &self.inner.config.urls).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the cluster (on a runtime of its own: callers need none)
    /// and takes an instance number.
    pub fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-redis")
            .enable_all()
            .build()
            .map_err(|err| StoreError::Engine(EngineError::io(&err, format!("store runtime: {err}"))))?;
        let client = ClusterClientBuilder::new(config.urls.iter().map(String::as_str))
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            .build()
            .map_err(unavailable)?;
        let (conn, ids) = runtime.block_on(async {
            let mut conn = client.get_async_connection().await.map_err(unavailable)?;
            durability::check(&mut conn, config.durability).await?;
            let ids = Ids::acquire(&mut conn).await.map_err(unavailable)?;
            Ok::<_, StoreError>((conn, ids))
        })?;
        let mut receivers = Vec::with_capacity(LANES);
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                receivers.push(rx);
                tx
            })
            .collect();
        let spawner = runtime.handle().clone();
        let inner = Arc::new(Inner {
            conn,
            scripts: Scripts::new(),
            config,
            _runtime: Runtime(Some(runtime)),
            ids,
            inflight: AtomicUsize::new(0),
            writable: AtomicBool::new(true),
            lanes,
        });
        for rx in receivers {
            spawner.spawn(lane(Arc::downgrade(&inner), rx));
        }
        spawner.spawn(renew_lease(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Answers `request` (what `StoreApi::call` runs on the runtime).
    pub(crate) async fn handle(&self, request: Request) -> Result<Response, StoreError> {
        match request {
            Request::Connect(connect) => self.connected(connect).await.map(Response::Connected),
            Request::Send(send) => self.send(send).await.map(Response::Sent),
            Request::Inbox(query) => self.inbox(query).await.map(Response::Inbox),
            Request::Ack(ack) => self.ack(ack).await.map(Response::Receipts),
            Request::Read(read) => self.read(read).await.map(Response::Receipts),
            Request::Cursors { user, since } => self.mailbox(user, since).await.map(Response::Cursors),
            Request::Group(change) => self.group_change(change).await.map(Response::GroupChanged),
            Request::GroupGet { user, group } => self.group_of_member(group, user).await.map(Response::Group),
            Request::PrekeyUpload(upload) => self.prekey_upload(upload).await.map(Response::PrekeyStock),
            Request::PrekeyFetch(fetch) => self.prekey_fetch(fetch).await.map(Response::PrekeyFetched),
            Request::SetVisibility { user, visibility } => {
                let mut set = redis::cmd("SET");
                set.arg(keys::visibility(user)).arg(visibility.name());
                self.query::<()>(&set).await.map(|()| Response::Done)
            }
            Request::GetVisibility { user } => {
                let mut get = redis::cmd("GET");
                get.arg(keys::visibility(user));
                let stored: Option<String> = self.query(&get).await?;
                let visibility = match stored {
                    None => Visibility::Everyone,
                    Some(name) => Visibility::from_name(&name).ok_or_else(|| corrupt("visibility"))?,
                };
                Ok(Response::Visibility(visibility))
            }
        }
    }

    async fn connected(&self, connect: Connect) -> Result<Connected, StoreError> {
        let mut call = self.inner.scripts.connect.prepare_invoke();
        call.key(keys::devices(connect.user))
            .key(keys::device(connect.user, connect.device))
            .key(keys::prekeys(connect.user, connect.device))
            .key(keys::one_time(connect.user, connect.device))
            .arg(connect.device.0)
            .arg(self.inner.config.max_devices)
            .arg(now_ms());
        let answer: Vec<i64> = self.invoke(call).await?;
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("connect answer"));
        // With replicas, the device's registration and state are on them
        // before the session goes live: lost in a failover, its seqs would
        // start again from 1, under what the device has already seen.
        if answer.first() == Some(&1) {
            self.durable_hashes(&[keys::device(connect.user, connect.device)]).await?;
        }
        match answer.as_slice() {
            [0] => Err(StoreError::TooManyDevices(connect.user)),
            &[1, head, acked, previous, stock] => Ok(Connected {
                inbox_head: Seq(count(head)?),
                acked: Seq(count(acked)?),
                prekey_stock: u32::try_from(stock).ok(),
                previous_connect: Timestamp(count(previous)?),
            }),
            _ => Err(corrupt("connect answer")),
        }
    }

    async fn inbox(&self, query: InboxQuery) -> Result<InboxPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_SYNC_BATCH as u32);
        let cutoff = now_ms().saturating_sub(millis(self.inner.config.retention));
        // A window with nothing to send (entries expired, or whose bodies
        // are gone) is read past, as the fjall engine does: an empty page
        // means the inbox has nothing more. Answering it as "nothing more"
        // would have the gateway's sync stop short of what follows.
        let mut after = query.after.0;
        let (head, entries) = loop {
            let (head, window) = self.window(query, after, limit).await?;
            let scanned = window.last().map(|entry| entry.seq.0);
            let listed: Vec<Entry> = window.into_iter().filter(|entry| entry.time.0 > cutoff).collect();
            let entries = self.deliverable(listed, query.max_bytes as usize).await?;
            match scanned {
                Some(last) if entries.is_empty() && last > after => after = last,
                _ => break (head, entries),
            }
        };
        let remaining = match entries.last() {
            Some(last) => head.saturating_sub(last.seq.0),
            None => 0,
        };
        Ok(InboxPage { entries, remaining, head: Seq(head) })
    }

    /// `listed` with their bodies, as DELIVER bodies: at most `max_bytes` on
    /// the wire (at least one entry), as the fjall engine. An entry whose
    /// body is gone, or is another message's (its conv_seq was handed out
    /// again after a master lost writes), is skipped. The bodies are stored
    /// once, in their conversations' slots: read several at a time, kept in
    /// seq order.
    async fn deliverable(&self, listed: Vec<Entry>, max_bytes: usize) -> Result<Vec<Deliver>, StoreError> {
        let mut bodies = vec![None; listed.len()];
        for (chunk, start) in listed.chunks(64).zip((0..).step_by(64)) {
            let mut reads = tokio::task::JoinSet::new();
            for (offset, entry) in chunk.iter().enumerate() {
                let (store, key) = (self.clone(), keys::message(&entry.conv, entry.conv_seq.0));
                let mut read = redis::cmd("HMGET");
                read.arg(key).arg("id").arg("p");
                reads.spawn(async move {
                    (start + offset, store.query::<(Option<u64>, Option<bytes::Bytes>)>(&read).await)
                });
            }
            while let Some(read) = reads.join_next().await {
                let (index, body) = read.map_err(|_| corrupt("inbox read task"))?;
                if let Some(slot) = bodies.get_mut(index) {
                    *slot = Some(body?);
                }
            }
        }
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for (entry, body) in listed.into_iter().zip(bodies) {
            let Some((Some(id), Some(body))) = body else { continue };
            if id != entry.id.0 {
                continue;
            }
            let payload =
                Payload::new(body).map_err(|_| StoreError::Engine(EngineError::StoredPayloadTooLarge))?;
            let deliver = Deliver {
                seq: entry.seq,
                message_id: entry.id,
                conversation: entry.view,
                conv_seq: entry.conv_seq,
                sender: entry.sender,
                sender_device: entry.sender_device,
                server_time: entry.time,
                payload,
            };
            let size = deliver.wire_len();
            if !entries.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            entries.push(deliver);
        }
        Ok(entries)
    }

    /// The READ script: the inbox head, and up to `limit` entries after
    /// `after`.
    async fn window(
        &self,
        query: InboxQuery,
        after: u64,
        limit: u32,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        let mut call = self.inner.scripts.read.prepare_invoke();
        call.key(keys::device(query.user, query.device))
            .key(keys::inbox(query.user, query.device))
            .arg(after)
            .arg(limit);
        let answer: Vec<redis::Value> = self.invoke(call).await?;
        let mut values = answer.into_iter();
        let head: u64 = values.next().map(value).transpose()?.unwrap_or(0);
        let mut entries = Vec::new();
        for item in values {
            let text: String = value(item)?;
            let entry = Entry::parse(&text).ok_or_else(|| corrupt("inbox entry"))?;
            if entry.seq.0 > after {
                entries.push(entry);
            }
        }
        Ok((head, entries))
    }

    /// Ack: the entries leave the inbox, and the delivered cursors they
    /// cover move (receipts to their senders).
    async fn ack(&self, ack: Ack) -> Result<Vec<ReceiptNote>, StoreError> {
        let mut call = self.inner.scripts.ack.prepare_invoke();
        call.key(keys::device(ack.user, ack.device)).key(keys::inbox(ack.user, ack.device)).arg(ack.up_to.0);
        let removed: Vec<String> = self.invoke(call).await?;
        self.delivered(ack.user, &removed).await
    }

    /// Runs a script, noting whether Redis answered.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.clone();
        let result = call.invoke_async(&mut conn).await;
        self.answered(result)
    }

    /// Runs a command, noting whether Redis answered.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.clone();
        let result = cmd.query_async(&mut conn).await;
        self.answered(result)
    }

    /// One field of a hash.
    pub(crate) async fn get_field<T: redis::FromRedisValue>(
        &self,
        key: &str,
        field: &str,
    ) -> Result<T, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(key).arg(field);
        self.query(&cmd).await
    }

    pub(crate) fn answered<T>(&self, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        let unreachable = result.as_ref().err().is_some_and(|err| {
            err.is_io_error()
                || err.is_timeout()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.kind() == redis::ErrorKind::ClusterConnectionNotFound
        });
        self.inner.writable.store(!unreachable, Ordering::Relaxed);
        result.map_err(|err| {
            // A master that is full, busy, loading, down or moving its slots
            // may take the retry; any other answer of Redis is an error of
            // the command or script itself, which a retry does not fix.
            let passing = matches!(
                err.code(),
                Some(
                    "OOM"
                        | "BUSY"
                        | "LOADING"
                        | "MASTERDOWN"
                        | "CLUSTERDOWN"
                        | "TRYAGAIN"
                        | "NOREPLICAS"
                        | "READONLY"
                        | "MOVED"
                        | "ASK"
                )
            );
            let answered = err.code().is_some()
                || matches!(
                    err.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                        | redis::ErrorKind::Extension
                );
            if unreachable || passing || !answered {
                unavailable(err)
            } else {
                StoreError::Engine(EngineError::Database { message: err.to_string() })
            }
        })
    }

    /// A new message id (REDIS.md, "Message ids").
    pub(crate) fn next_id(&self, now: u64) -> Result<u64, StoreError> {
        self.inner.ids.next(now)
    }
}

impl StoreApi for RedisStore {
    fn call(&self, request: Request, done: Done) {
        if self.inner.inflight.fetch_add(1, Ordering::Relaxed) >= self.inner.config.inflight {
            self.inner.inflight.fetch_sub(1, Ordering::Relaxed);
            return done(Err(StoreError::Overloaded));
        }
        let Some(lane) = self.inner.lanes.get(lane_of(&request) % LANES) else {
            self.inner.inflight.fetch_sub(1, Ordering::Relaxed);
            return done(Err(StoreError::Overloaded));
        };
        if let Err(mpsc::error::SendError((_, done))) = lane.send((request, done)) {
            self.inner.inflight.fetch_sub(1, Ordering::Relaxed);
            done(Err(StoreError::Overloaded));
        }
    }

    fn writable(&self) -> bool {
        self.inner.writable.load(Ordering::Relaxed)
    }
}

/// One lane: its requests, one after the other, while the store lives (it
/// holds the store weakly, so that dropping the last handle ends it).
async fn lane(store: std::sync::Weak<Inner>, mut requests: mpsc::UnboundedReceiver<(Request, Done)>) {
    while let Some((request, done)) = requests.recv().await {
        let Some(inner) = store.upgrade() else { return done(Err(StoreError::Overloaded)) };
        let store = RedisStore { inner };
        let result = store.handle(request).await;
        store.inner.inflight.fetch_sub(1, Ordering::Relaxed);
        done(result);
    }
}

/// Keeps the instance number's lease while the store lives. A renewal
/// Redis does not answer is tried again at the next turn; past the lease,
/// sends are refused (retryable) until one succeeds.
async fn renew_lease(store: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(ids::RENEW_EVERY).await;
        let Some(inner) = store.upgrade() else { return };
        let mut conn = inner.conn.clone();
        let _ = inner.ids.renew(&mut conn).await;
    }
}

/// The lane of a request: a hash of the device it is about (or the user).
fn lane_of(request: &Request) -> usize {
    let (user, device) = match request {
        Request::Connect(r) => (r.user, r.device),
        Request::Send(r) => (r.user, r.device),
        Request::Ack(r) => (r.user, r.device),
        Request::Read(r) => (r.user, r.device),
        Request::Group(r) => (r.user, r.device),
        Request::PrekeyUpload(r) => (r.user, r.device),
        Request::Inbox(r) => (r.user, r.device),
        Request::PrekeyFetch(r) => (r.user, r.device),
        Request::SetVisibility { user, .. }
        | Request::GetVisibility { user }
        | Request::GroupGet { user, .. }
        | Request::Cursors { user, .. } => (*user, protocol::DeviceId(0)),
    };
    let mixed =
        user.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(device.0).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    usize::try_from(mixed >> 32).unwrap_or(0)
}

/// The engine's runtime. The last clone of the store may be dropped on
/// the runtime itself (by a request's task): it then stops without
/// waiting, which a plain drop may not do there.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A Redis failure: retryable for the client (`BACKEND_UNAVAILABLE`).
pub(crate) fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(UnavailableError::Unreachable { why: err.to_string(), retry_in_ms: 1_000 })
}

/// A script's reply item as `T`.
pub(crate) fn value<T: redis::FromRedisValue>(item: redis::Value) -> Result<T, StoreError> {
    redis::from_redis_value(item).map_err(|_| corrupt("script reply"))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Engine(EngineError::corrupt(what))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
