//! The store's two engines under one workload, in one run (issue 15's
//! benchmark; `scripts/bench-store-engines` starts the Redis Cluster and
//! runs this in release).
//!
//! Each engine, in turn, gets the same requests through `StoreApi`, from one
//! thread named `bench` (a single-threaded runtime with many tasks):
//! - 1:1: `PAIRS` senders, each sending `PAIR_SENDS` messages of `PAYLOAD`
//!   bytes to its peer one after the other, and acking the peer's entry;
//! - group: a group of `GROUP` members, `GROUP_SENDERS` members sending
//!   `GROUP_SENDS` messages each, every member acking each delivery;
//! - sync drain: `DRAIN` messages stored for one device (by 50 senders),
//!   then read in windows of 512 with an ack after each, as a gateway does.
//!
//! The engine's CPU is that of every thread of this process but `bench`
//! (the fjall engine runs here; the Redis engine's runtime too), plus, for
//! Redis, that of the redis-server processes (`REDIS_CLUSTER_DIR/*/redis.pid`).
//! "Per core" divides by that CPU time. For Redis it also reads the masters'
//! `used_memory` around the drain's fill (bytes per pending message) and
//! around `IDLE` devices connecting (bytes per idle device).
//!
//! Environment: REDIS_URLS (space- or comma-separated seeds) and
//! REDIS_CLUSTER_DIR (both printed by `scripts/redis-cluster start`),
//! PAIRS [100], PAIR_SENDS [200], GROUP [100], GROUP_SENDERS [10],
//! GROUP_SENDS [20], DRAIN [100000], IDLE [10000], PAYLOAD [256].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use backend_store::{
    Ack, Connect, GroupChange, GroupOp, InboxQuery, Request, Response, SendMessage, Store, StoreApi,
    StoreConfig,
};
use backend_store_redis::{RedisConfig, RedisStore};
use bytes::Bytes;
use protocol::{Conversation, DeviceId, GroupName, Seq, UserId};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One request, awaited.
async fn call(store: &Arc<dyn StoreApi>, request: Request) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.call(request, Box::new(move |result| drop(tx.send(result))));
    match rx.await.expect("answered") {
        Ok(response) => response,
        Err(err) => panic!("store error: {err}"),
    }
}

async fn connect(store: &Arc<dyn StoreApi>, user: u64) {
    call(store, Request::Connect(Connect { user: UserId(user), device: DeviceId(1) })).await;
}

async fn send(
    store: &Arc<dyn StoreApi>,
    user: u64,
    client_id: u64,
    to: Conversation,
    payload: &Bytes,
) -> Vec<(u64, u64)> {
    let req =
        SendMessage { user: UserId(user), device: DeviceId(1), client_id, to, payload: payload.clone() };
    match call(store, Request::Send(req)).await {
        Response::Sent(sent) => sent.deliveries.iter().map(|d| (d.user.0, d.seq.0)).collect(),
        other => panic!("{other:?}"),
    }
}

async fn ack(store: &Arc<dyn StoreApi>, user: u64, up_to: u64) {
    call(store, Request::Ack(Ack { user: UserId(user), device: DeviceId(1), up_to: Seq(up_to) })).await;
}

/// utime + stime of a `/proc/.../stat` line, in ticks.
fn ticks(stat: &str) -> f64 {
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    field(14) + field(15)
}

/// CPU seconds of `pids` (the redis-servers).
fn servers_cpu(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()))
        .sum::<f64>()
        / 100.0
}

/// CPU seconds of this process's threads but `bench`, and of `pids`.
fn engine_cpu(pids: &[u32]) -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != "bench" {
            total += ticks(&std::fs::read_to_string(path.join("stat")).unwrap_or_default());
        }
    }
    total / 100.0 + servers_cpu(pids)
}

/// The p-th percentile (0–100) of `samples` (µs), in ms.
fn percentile(samples: &mut [u32], p: f64) -> f64 {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    f64::from(samples.get(index).copied().unwrap_or(0)) / 1000.0
}

struct Figures {
    per_sec: f64,
    per_core: f64,
    p50: f64,
    p99: f64,
    /// The redis-servers' part of the engine's CPU.
    servers: f64,
}

async fn one_to_one(store: &Arc<dyn StoreApi>, pids: &[u32], base: u64, payload: &Bytes) -> Figures {
    let (pairs, sends) = (env("PAIRS", 100) as u64, env("PAIR_SENDS", 200) as u64);
    for user in base..base + 2 * pairs {
        connect(store, user).await;
    }
    let (cpu, servers, start) = (engine_cpu(pids), servers_cpu(pids), Instant::now());
    let mut tasks = tokio::task::JoinSet::new();
    for pair in 0..pairs {
        let (store, payload) = (store.clone(), payload.clone());
        let (a, b) = (base + 2 * pair, base + 2 * pair + 1);
        tasks.spawn_local(async move {
            let mut latencies = Vec::with_capacity(sends as usize);
            for i in 0..sends {
                let sent = Instant::now();
                let deliveries = send(&store, a, i + 1, Conversation::Direct(UserId(b)), &payload).await;
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                if let Some(&(_, seq)) = deliveries.iter().find(|(user, _)| *user == b) {
                    ack(&store, b, seq).await;
                }
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let (elapsed, cpu, servers) =
        (start.elapsed().as_secs_f64(), engine_cpu(pids) - cpu, servers_cpu(pids) - servers);
    let total = (pairs * sends) as f64;
    Figures {
        per_sec: total / elapsed,
        per_core: total / cpu,
        p50: percentile(&mut latencies, 50.0),
        p99: percentile(&mut latencies, 99.0),
        servers: servers / cpu,
    }
}

async fn group(store: &Arc<dyn StoreApi>, pids: &[u32], base: u64, payload: &Bytes) -> Figures {
    let (size, senders, sends) =
        (env("GROUP", 100) as u64, env("GROUP_SENDERS", 10) as u64, env("GROUP_SENDS", 20) as u64);
    for user in base..base + size {
        connect(store, user).await;
    }
    let members = (base + 1..base + size).map(UserId).collect();
    let create = GroupChange {
        user: UserId(base),
        device: DeviceId(1),
        op: GroupOp::Create { name: GroupName::new("bench").unwrap(), members },
    };
    let Response::GroupChanged(created) = call(store, Request::Group(create)).await else { panic!() };
    let to = Conversation::Group(created.info.group);
    let (cpu, servers, start) = (engine_cpu(pids), servers_cpu(pids), Instant::now());
    let mut tasks = tokio::task::JoinSet::new();
    for sender in base..base + senders {
        let (store, payload) = (store.clone(), payload.clone());
        tasks.spawn_local(async move {
            let (mut latencies, mut delivered) = (Vec::new(), 0usize);
            for i in 0..sends {
                let sent = Instant::now();
                let deliveries = send(&store, sender, i + 1, to, &payload).await;
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                delivered += deliveries.len();
                for (user, seq) in deliveries {
                    ack(&store, user, seq).await;
                }
            }
            (latencies, delivered)
        });
    }
    let (mut latencies, mut delivered) = (Vec::new(), 0usize);
    while let Some(done) = tasks.join_next().await {
        let (l, d) = done.unwrap();
        latencies.extend(l);
        delivered += d;
    }
    let (elapsed, cpu, servers) =
        (start.elapsed().as_secs_f64(), engine_cpu(pids) - cpu, servers_cpu(pids) - servers);
    Figures {
        per_sec: delivered as f64 / elapsed,
        per_core: delivered as f64 / cpu,
        p50: percentile(&mut latencies, 50.0),
        p99: percentile(&mut latencies, 99.0),
        servers: servers / cpu,
    }
}

/// Stores `count` messages for `user`'s device 1, from 50 senders.
async fn fill(store: &Arc<dyn StoreApi>, user: u64, count: u64, payload: &Bytes) {
    connect(store, user).await;
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..50u64 {
        let (store, payload) = (store.clone(), payload.clone());
        tasks.spawn_local(async move {
            connect(&store, user + 1 + sender).await;
            for i in 0..count / 50 {
                send(&store, user + 1 + sender, i + 1, Conversation::Direct(UserId(user)), &payload).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads the inbox in windows, acking each, as a gateway's sync: entries/s.
async fn drain(store: &Arc<dyn StoreApi>, pids: &[u32], user: u64) -> (f64, f64) {
    let (cpu, start) = (engine_cpu(pids), Instant::now());
    let (mut after, mut read) = (0u64, 0u64);
    loop {
        let query = InboxQuery {
            user: UserId(user),
            device: DeviceId(1),
            after: Seq(after),
            limit: 512,
            max_bytes: 1 << 20,
        };
        let Response::Inbox(page) = call(store, Request::Inbox(query)).await else { panic!() };
        let Some(last) = page.entries.last() else { break };
        after = last.seq.0;
        read += page.entries.len() as u64;
        ack(store, user, after).await;
    }
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), engine_cpu(pids) - cpu);
    (read as f64 / elapsed, read as f64 / cpu)
}

/// The masters' `used_memory`, summed.
fn redis_memory(urls: &[String]) -> i64 {
    urls.iter()
        .map(|url| {
            let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
            info.lines()
                .find_map(|line| line.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap()
        })
        .sum()
}

fn masters(urls: &[String]) -> Vec<String> {
    urls.iter()
        .filter(|url| {
            let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
            matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        })
        .cloned()
        .collect()
}

fn main() {
    let urls: Vec<String> = std::env::var("REDIS_URLS")
        .expect("REDIS_URLS (from scripts/redis-cluster start)")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let dir = std::env::var("REDIS_CLUSTER_DIR").expect("REDIS_CLUSTER_DIR");
    let redis_pids: Vec<u32> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|node| std::fs::read_to_string(node.path().join("redis.pid")).ok())
        .filter_map(|pid| pid.trim().parse().ok())
        .collect();
    let payload = Bytes::from(vec![b'x'; env("PAYLOAD", 256)]);
    let drain_count = env("DRAIN", 100_000) as u64;
    let data = std::env::temp_dir().join(format!("bench-engines-{}", std::process::id()));
    println!("| engine | 1:1 msgs/s | 1:1 msgs per engine CPU-s | SEND p50 / p99 ms | group deliveries/s | deliveries per engine CPU-s | group SEND p50 / p99 ms | drain entries/s | drain entries per engine CPU-s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let engines: [(&str, Opener<'_>, Vec<u32>); 2] = [
        ("fjall (process)", Box::new(|| Arc::new(Store::open(StoreConfig::new(&data)).unwrap())), Vec::new()),
        (
            "redis (3 masters, AOF everysec)",
            Box::new(|| Arc::new(RedisStore::connect(RedisConfig::new(urls.clone())).unwrap())),
            redis_pids.clone(),
        ),
    ];
    let mut memory = None;
    for (name, open, pids) in &engines {
        let thread = std::thread::Builder::new().name("bench".into());
        let (store, pids, payload) = (open(), pids.clone(), payload.clone());
        let urls = urls.clone();
        let redis = !pids.is_empty();
        let row = thread
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                runtime_row(&local, store, &pids, &payload, drain_count, redis.then_some(urls.as_slice()))
            })
            .unwrap()
            .join()
            .unwrap();
        let (one, group, drain, mem) = row;
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} / {:.2} | {:.0} | {:.0} | {:.2} / {:.2} | {:.0} | {:.0} |",
            one.per_sec,
            one.per_core,
            one.p50,
            one.p99,
            group.per_sec,
            group.per_core,
            group.p50,
            group.p99,
            drain.0,
            drain.1
        );
        if mem.is_some() {
            memory = mem;
            println!(
                "(redis-servers' share of the engine's CPU: 1:1 {:.0} %, group {:.0} %)",
                one.servers * 100.0,
                group.servers * 100.0
            );
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    if let Some((per_message, per_device)) = memory {
        println!();
        println!("Redis used_memory (masters): {per_message:.0} B per pending message ({} B payload), {per_device:.0} B per idle device", payload.len());
    }
}

/// Opens an engine.
type Opener<'a> = Box<dyn Fn() -> Arc<dyn StoreApi> + 'a>;

type Row = (Figures, Figures, (f64, f64), Option<(f64, f64)>);

fn runtime_row(
    local: &tokio::task::LocalSet,
    store: Arc<dyn StoreApi>,
    pids: &[u32],
    payload: &Bytes,
    drain_count: u64,
    redis: Option<&[String]>,
) -> Row {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let masters = redis.map(masters);
    local.block_on(&runtime, async {
        let one = one_to_one(&store, pids, 1_000_000, payload).await;
        let group = group(&store, pids, 2_000_000, payload).await;
        let before = masters.as_deref().map(redis_memory);
        fill(&store, 3_000_000, drain_count, payload).await;
        let after_fill = masters.as_deref().map(redis_memory);
        let drained = drain(&store, pids, 3_000_000).await;
        let idle = env("IDLE", 10_000) as u64;
        let before_idle = masters.as_deref().map(redis_memory);
        for user in 4_000_000..4_000_000 + idle {
            connect(&store, user).await;
        }
        let after_idle = masters.as_deref().map(redis_memory);
        let memory = match (before, after_fill, before_idle, after_idle) {
            (Some(a), Some(b), Some(c), Some(d)) => {
                Some(((b - a) as f64 / drain_count as f64, (d - c) as f64 / idle as f64))
            }
            _ => None,
        };
        (one, group, drained, memory)
    })
}
