//! Writer throughput for the gateway's real message mix: pipelined Sends with
//! a window of outstanding requests (so group commits form, as behind a busy
//! gateway), each delivery later acked by its recipient device. The driver
//! thread plays the gateway: it drains the completions that arrived, issues
//! one cumulative Ack per recipient device that got something new (a
//! receiver acks once per WebSocket message), and tops the window up.
//!
//! - `direct/process`, `direct/fsync_2ms`: 1000 pairs (2000 users, one
//!   device each), every user sending to its peer in turn, 1024 Sends in
//!   flight.
//! - `group100/process`: one group of 100 members (one device each), members
//!   sending in turn, 64 Sends in flight; each message makes 99 inbox entries.
//!
//! - `connect/resume`: 20,000 known devices (one per user) reconnect, 1024
//!   Connects in flight: the store's part of a reconnect storm's logins.
//!
//! Throughput is messages per second (stored and acked), or Connects per
//! second. The store persists
//! across iterations (memtables fill and flush, ack tombstones pile up), like
//! a node that has been running for a while.
//!
//! After each case the bench also prints the CPU time per message of the
//! `store-writer` thread and its committer, `store-commit` (from
//! `/proc/self/task/*/schedstat`, Linux only; together they are what one
//! writer thread did before the commit was pipelined): the writer is the
//! node's bottleneck, and on a shared, noisy machine its CPU time per
//! message is steadier than wall-clock throughput. Beside it, the CPU of all
//! the store's threads (the writer, the readers, and fjall's flush and
//! compaction workers): what the store costs the node, since a change can
//! move work off the writer onto fjall's threads.
//!
//! Run: `cargo bench -p backend-store --bench writer`; with several writers
//! (`SHARDS.md`), `WRITER_BENCH_WRITERS=4 cargo bench …` (the writer and
//! committer CPU is then every shard's).

// Bench setup on fixed, valid inputs: a failure here is a bug in the bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backend_store::{
    Ack, Connect, Durability, GroupChange, GroupOp, Request, Response, SendMessage, Store, StoreApi,
    StoreConfig, StoreError,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use crossbeam_channel::{bounded, Receiver, Sender};
use protocol::{Conversation, DeviceId, GroupId, GroupName, Seq, UserId};

/// Messages per criterion iteration.
const CHUNK: u64 = 5_000;
/// Messages per iteration of the group case (99 entries each).
const GROUP_CHUNK: u64 = 500;
/// Payload size (flood's chat scenario sends 64 bytes).
const PAYLOAD: usize = 64;

enum Event {
    Sent(Result<Response, StoreError>),
    Acked(Result<Response, StoreError>),
}

/// A store plus the traffic it is driven with.
struct Rig {
    store: Store,
    _dir: tempfile::TempDir,
    events: (Sender<Event>, Receiver<Event>),
    /// Senders, taken in turn, and where each sends.
    senders: Vec<(UserId, Conversation)>,
    next_sender: usize,
    /// Next client id of each sender.
    client_ids: Vec<u64>,
    window: usize,
    payload: Bytes,
    /// The writer's and its committer's schedstat files, if readable.
    writer_stat: Vec<std::path::PathBuf>,
    /// Messages run and writer CPU spent on them (for the summary line).
    messages: u64,
    writer_ns: u64,
    /// CPU of all the store's threads (writer, readers, fjall's workers).
    store_ns: u64,
}

/// The `store-writer` and `store-commit` threads of this process (the one
/// live store).
fn writer_stat() -> Vec<std::path::PathBuf> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .map(|task| task.path())
        .filter(|path| {
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            // With several writers: `store-writer-<shard>`, `store-commit-<shard>`.
            comm.starts_with("store-writer") || comm.starts_with("store-commit")
        })
        .map(|path| path.join("schedstat"))
        .collect()
}

/// CPU time every thread of this process but the calling (driver) one has
/// run, in ns: the store's writer, readers and fjall's flush and compaction
/// workers. A thread that ends between two readings is missing from the
/// second, so the difference undercounts (fjall's workers live as long as
/// the store).
fn store_threads_ns() -> u64 {
    let me = std::fs::read_link("/proc/thread-self").ok();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter(|task| me.as_ref().is_none_or(|me| !me.ends_with(task.file_name())))
        .map(|task| cpu_ns(&[task.path().join("schedstat")]))
        .sum()
}

/// CPU time the threads have run, in ns (first field of each schedstat).
fn cpu_ns(paths: &[std::path::PathBuf]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn call(store: &Store, request: Request) -> Response {
    let (tx, rx) = crossbeam_channel::bounded(1);
    store.call(request, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap()
}

fn open(durability: Durability) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.durability = durability;
    if let Some(writers) = std::env::var("WRITER_BENCH_WRITERS").ok().and_then(|w| w.parse().ok()) {
        config.writers = writers;
    }
    (Store::open(config).unwrap(), dir)
}

impl Rig {
    fn direct(durability: Durability, pairs: u64, window: usize) -> Self {
        let (store, dir) = open(durability);
        let mut senders = Vec::new();
        for pair in 0..pairs {
            let (a, b) = (UserId(2 * pair + 1), UserId(2 * pair + 2));
            senders.push((a, Conversation::Direct(b)));
            senders.push((b, Conversation::Direct(a)));
        }
        for (user, _) in &senders {
            call(&store, Request::Connect(Connect { user: *user, device: DeviceId(1) }));
        }
        Self::new(store, dir, senders, window)
    }

    fn group(durability: Durability, members: u64, window: usize) -> Self {
        let (store, dir) = open(durability);
        let users: Vec<UserId> = (1..=members).map(UserId).collect();
        for user in &users {
            call(&store, Request::Connect(Connect { user: *user, device: DeviceId(1) }));
        }
        let op = GroupOp::Create {
            name: GroupName::new("bench").unwrap(),
            members: users.iter().skip(1).copied().collect(),
        };
        let group =
            match call(&store, Request::Group(GroupChange { user: users[0], device: DeviceId(1), op })) {
                Response::GroupChanged(changed) => changed.info.group,
                other => panic!("group create: {other:?}"),
            };
        let senders = users.iter().map(|u| (*u, Conversation::Group(GroupId(group.0)))).collect();
        let rig = Self::new(store, dir, senders, window);
        // Ack the creation entries so that every inbox starts empty.
        let mut pending = HashMap::new();
        for user in users {
            pending.insert((user, DeviceId(1)), Seq(u64::MAX));
        }
        rig.ack(&mut pending);
        let mut acks = rig.senders.len();
        while acks > 0 {
            if let Event::Acked(r) = rig.events.1.recv().unwrap() {
                r.unwrap();
                acks -= 1;
            }
        }
        rig
    }

    fn new(
        store: Store,
        dir: tempfile::TempDir,
        senders: Vec<(UserId, Conversation)>,
        window: usize,
    ) -> Self {
        let client_ids = vec![0; senders.len()];
        let senders_len = senders.len();
        Self {
            store,
            _dir: dir,
            // Preallocated: at most `window` Sends and one Ack per device in flight.
            events: bounded(window + 2 * senders_len + 16),
            senders,
            next_sender: 0,
            client_ids,
            window,
            payload: Bytes::from(vec![0x5a; PAYLOAD]),
            writer_stat: writer_stat(),
            messages: 0,
            writer_ns: 0,
            store_ns: 0,
        }
    }

    fn send_next(&mut self) {
        let i = self.next_sender;
        self.next_sender = (i + 1) % self.senders.len();
        let (user, to) = self.senders[i];
        let client_id = self.client_ids[i];
        self.client_ids[i] += 1;
        let request = SendMessage { user, device: DeviceId(1), client_id, to, payload: self.payload.clone() };
        let events = self.events.0.clone();
        self.store.call(Request::Send(request), Box::new(move |r| events.send(Event::Sent(r)).unwrap()));
    }

    fn ack(&self, pending: &mut HashMap<(UserId, DeviceId), Seq>) {
        for ((user, device), up_to) in pending.drain() {
            let events = self.events.0.clone();
            self.store.call(
                Request::Ack(Ack { user, device, up_to }),
                Box::new(move |r| events.send(Event::Acked(r)).unwrap()),
            );
        }
    }

    /// Sends `n` messages with the window full and acks every delivery;
    /// returns when the last ack is answered.
    fn run(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        let cpu_start = cpu_ns(&self.writer_stat);
        let all_start = store_threads_ns();
        let (mut issued, mut stored, mut acks) = (0u64, 0u64, 0usize);
        let mut pending: HashMap<(UserId, DeviceId), Seq> = HashMap::new();
        while issued < n && (issued as usize) < self.window {
            self.send_next();
            issued += 1;
        }
        while stored < n || acks > 0 {
            let mut event = Some(self.events.1.recv().unwrap());
            while let Some(e) = event {
                match e {
                    Event::Sent(r) => {
                        stored += 1;
                        let Ok(Response::Sent(sent)) = r else { panic!("send: {r:?}") };
                        for d in sent.deliveries {
                            let seq = pending.entry((d.user, d.device)).or_insert(d.seq);
                            *seq = (*seq).max(d.seq);
                        }
                    }
                    Event::Acked(r) => {
                        acks -= 1;
                        let Ok(Response::Receipts(_)) = r else { panic!("ack: {r:?}") };
                    }
                }
                event = self.events.1.try_recv().ok();
            }
            acks += pending.len();
            self.ack(&mut pending);
            while issued < n && issued - stored < self.window as u64 {
                self.send_next();
                issued += 1;
            }
        }
        let elapsed = start.elapsed();
        self.writer_ns += cpu_ns(&self.writer_stat).saturating_sub(cpu_start);
        self.store_ns += store_threads_ns().saturating_sub(all_start);
        self.messages += n;
        elapsed
    }

    /// Prints the writer's CPU per message over every run so far.
    fn summary(&self, name: &str) {
        print_writer_cpu(name, "message", self.writer_ns, self.store_ns, self.messages);
    }
}

/// The writer's CPU per `unit` over `count` of them.
fn print_writer_cpu(name: &str, unit: &str, writer_ns: u64, store_ns: u64, count: u64) {
    if writer_ns == 0 || count == 0 {
        return;
    }
    let per = writer_ns as f64 / count as f64;
    let all = store_ns as f64 / count as f64;
    println!(
        "{name}: store-writer+commit CPU {:.2} µs/{unit} = {:.0} {unit}s per writer core-second; \
         all store threads {:.2} µs/{unit} ({count} {unit}s)",
        per / 1000.0,
        1e9 / per,
        all / 1000.0,
    );
}

/// Known devices reconnecting, as in a reconnect storm.
struct Reconnects {
    store: Store,
    _dir: tempfile::TempDir,
    users: u64,
    window: u64,
    writer_stat: Vec<std::path::PathBuf>,
    connects: u64,
    writer_ns: u64,
    /// CPU of all the store's threads (writer, readers, fjall's workers).
    store_ns: u64,
}

impl Reconnects {
    /// `users` devices, registered once.
    fn new(users: u64, window: u64) -> Self {
        let (store, dir) = open(Durability::Process);
        for user in 1..=users {
            call(&store, Request::Connect(Connect { user: UserId(user), device: DeviceId(1) }));
        }
        Self {
            store,
            _dir: dir,
            users,
            window,
            writer_stat: writer_stat(),
            connects: 0,
            writer_ns: 0,
            store_ns: 0,
        }
    }

    /// Every device connects again, `window` Connects in flight.
    fn run(&mut self) -> Duration {
        let (tx, rx) = bounded::<bool>(self.window as usize);
        let start = Instant::now();
        let cpu_start = cpu_ns(&self.writer_stat);
        let all_start = store_threads_ns();
        let (mut issued, mut done) = (0, 0);
        while done < self.users {
            while issued < self.users && issued - done < self.window {
                issued += 1;
                let tx = tx.clone();
                let request = Request::Connect(Connect { user: UserId(issued), device: DeviceId(1) });
                self.store.call(
                    request,
                    Box::new(move |r| tx.send(matches!(r, Ok(Response::Connected(_)))).unwrap()),
                );
            }
            assert!(rx.recv().unwrap(), "a Connect failed");
            done += 1;
        }
        let elapsed = start.elapsed();
        self.writer_ns += cpu_ns(&self.writer_stat).saturating_sub(cpu_start);
        self.store_ns += store_threads_ns().saturating_sub(all_start);
        self.connects += self.users;
        elapsed
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("writer");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(8));

    g.throughput(Throughput::Elements(CHUNK));
    let mut rig = Rig::direct(Durability::Process, 1000, 1024);
    g.bench_function("direct/process", |b| b.iter_custom(|iters| (0..iters).map(|_| rig.run(CHUNK)).sum()));
    rig.summary("direct/process");
    drop(rig);

    let mut rig = Rig::direct(Durability::Fsync { interval: Duration::from_millis(2) }, 1000, 1024);
    g.bench_function("direct/fsync_2ms", |b| b.iter_custom(|iters| (0..iters).map(|_| rig.run(CHUNK)).sum()));
    rig.summary("direct/fsync_2ms");
    drop(rig);

    g.throughput(Throughput::Elements(GROUP_CHUNK));
    let mut rig = Rig::group(Durability::Process, 100, 64);
    g.bench_function("group100/process", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rig.run(GROUP_CHUNK)).sum())
    });
    rig.summary("group100/process");
    drop(rig);

    let mut storm = Reconnects::new(20_000, 1024);
    g.throughput(Throughput::Elements(storm.users));
    g.bench_function("connect/resume", |b| b.iter_custom(|iters| (0..iters).map(|_| storm.run()).sum()));
    print_writer_cpu("connect/resume", "connect", storm.writer_ns, storm.store_ns, storm.connects);
    drop(storm);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
