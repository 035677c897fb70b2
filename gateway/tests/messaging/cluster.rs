//! A gateway node with its backend pair: embedded (the node's default
//! configuration), remote (the real `store` and `push` binaries on loopback,
//! which the node reaches over gRPC), or remote with the store's Redis
//! engine on a 3-master Redis Cluster the test starts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::support::{temp_dir, Gateway};

/// Where the store and push services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Inside the gateway process.
    Embedded,
    /// `store` and `push` processes.
    Remote,
    /// `store` (on a Redis Cluster: `--engine redis`) and `push` processes.
    Redis,
    /// As `Redis`, on a cluster with a replica per master, and the store
    /// acknowledging a send once a replica has it (`--replicas 1`).
    RedisReplicas,
}

/// One backend process: its binary, arguments and address.
pub(crate) struct Service {
    child: Child,
    bin: PathBuf,
    args: Vec<String>,
    pub(crate) addr: SocketAddr,
}

impl Service {
    /// Starts `name` (a binary of `backend-rpc`) with `args` and waits for its
    /// `listening on ADDR` line.
    pub(crate) fn start(name: &str, args: Vec<String>) -> Self {
        let bin = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name(name);
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p backend-rpc` (the test suite does)",
            bin.display()
        );
        let (child, addr) = spawn(&bin, &args, "127.0.0.1:0");
        Self { child, bin, args, addr }
    }

    /// `kill -9`, then the same binary again on the same address.
    pub(crate) fn kill9_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// `kill -9` (the service stays down until [`Service::restart`]).
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the binary again on its address.
    pub(crate) fn restart(&mut self) {
        let (child, addr) = spawn(&self.bin, &self.args, &self.addr.to_string());
        assert_eq!(addr, self.addr);
        self.child = child;
    }
}

fn spawn(bin: &Path, args: &[String], listen: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(bin)
        .args(args)
        .args(["--listen", listen])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("start {}: {err}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", bin.display()))
        .parse()
        .unwrap();
    (child, addr)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node and, in remote mode, its store and push processes.
pub(crate) struct Cluster {
    pub(crate) gateway: Gateway,
    pub(crate) store: Option<Service>,
    pub(crate) push: Option<Service>,
    /// The Redis Cluster behind the store (Redis mode), held until the end.
    /// The Redis Cluster of the Redis modes (a test may fail its nodes).
    pub(crate) redis: Option<routing_registry::testing::RedisCluster>,
}

/// What holds the store's data, for a test to fill before it starts.
pub(crate) enum Backing<'a> {
    /// The fjall engine's directory.
    Dir(&'a Path),
    /// The Redis engine's cluster (its seed URLs).
    Redis(Vec<String>),
}

/// Push settings a test may ask for.
#[derive(Debug, Clone, Default)]
pub(crate) struct PushSettings {
    /// Webhook URL (else the log provider).
    pub(crate) webhook: Option<String>,
    /// Coalescing window, ms.
    pub(crate) window_ms: Option<u64>,
}

impl Cluster {
    /// A cluster in `mode` with `config` (TOML) for the node.
    pub(crate) fn start(mode: Mode, config: &str) -> Self {
        Self::start_with(mode, config, &PushSettings::default(), |_| {})
    }

    /// As [`Cluster::start`]; `prepare` gets the store's backing before
    /// the store starts (to fill it).
    pub(crate) fn start_with(
        mode: Mode,
        config: &str,
        push: &PushSettings,
        prepare: impl FnOnce(Backing<'_>),
    ) -> Self {
        let dir = temp_dir();
        let store_dir = match mode {
            Mode::Embedded => dir.join("data").join("store"),
            Mode::Remote | Mode::Redis | Mode::RedisReplicas => dir.join("store"),
        };
        std::fs::create_dir_all(&store_dir).unwrap();
        let redis = match mode {
            Mode::Redis => Some(routing_registry::testing::RedisCluster::start()),
            Mode::RedisReplicas => Some(routing_registry::testing::RedisCluster::start_with_replicas(1)),
            Mode::Embedded | Mode::Remote => None,
        };
        match &redis {
            Some(cluster) => prepare(Backing::Redis(cluster.urls())),
            None => prepare(Backing::Dir(&store_dir)),
        }
        let mut push_section = String::new();
        if let Some(url) = &push.webhook {
            push_section.push_str(&format!("provider = \"{url}\"\n"));
        }
        if let Some(window) = push.window_ms {
            push_section.push_str(&format!("window_ms = {window}\n"));
        }
        match mode {
            Mode::Embedded => {
                let config = format!("{config}\n[push]\n{push_section}");
                let gateway = Gateway::start_in(dir, &config);
                Self { gateway, store: None, push: None, redis: None }
            }
            Mode::Remote | Mode::Redis | Mode::RedisReplicas => {
                let mut engine = match &redis {
                    Some(cluster) => {
                        vec!["--engine".into(), "redis".into(), "--redis".into(), cluster.urls().join(",")]
                    }
                    None => vec!["--data-dir".into(), store_dir.to_str().unwrap().into()],
                };
                if mode == Mode::RedisReplicas {
                    engine.extend(["--replicas".into(), "1".into()]);
                }
                let store = Service::start(
                    "store",
                    engine.into_iter().chain(["--max-devices".into(), "5".into()]).collect(),
                );
                let mut push_args = Vec::new();
                if let Some(url) = &push.webhook {
                    push_args.extend([
                        "--provider".into(),
                        "webhook".into(),
                        "--webhook-url".into(),
                        url.clone(),
                    ]);
                }
                if let Some(window) = push.window_ms {
                    push_args.extend(["--window-ms".into(), window.to_string()]);
                }
                let push = Service::start("push", push_args);
                let config = format!(
                    "{config}\n[store]\nmode = \"remote\"\nendpoint = \"http://{}\"\n\
                     [push]\nmode = \"remote\"\nendpoint = \"http://{}\"\n",
                    store.addr, push.addr
                );
                let gateway = Gateway::start_in(dir, &config);
                Self { gateway, store: Some(store), push: Some(push), redis }
            }
        }
    }
}
