"""The fleet's processes: a Redis Cluster for the registry, the store,
push and N gateway nodes, started and stopped together, and what they
cost between two snapshots."""

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .procfs import children_of, cpu_secs, http_get, log, metric_sums, pss_bytes, run_queue

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT_PORT, ADMIN_PORT, LINK_PORT = 7700, 7701, 7702
REDIS_PORT, STORE_PORT, STORE_METRICS_PORT, PUSH_PORT = 17400, 17480, 17481, 17482
LEASE_MS = 10_000
# A drain spreads its GOAWAYs over 5 s here (30 s by default): the rolling
# restart of 10 % of a 400-node fleet has to fit in one run.
DRAIN_WINDOW_MS = 5_000
SESSIONS_PER_FLOOD = 12_500
# Sessions one node holds at most here: 20,000 open files per process.
SESSIONS_PER_NODE = 18_000


def node_ip(k):
    """Node k (from 1) on its own loopback address."""
    return f"127.1.{(k - 1) // 200}.{(k - 1) % 200 + 1}"


class Fleet:
    """Every process of the fleet, started and stopped together."""

    def __init__(self, args, nodes):
        self.args = args
        self.n = nodes
        self.bin = os.path.join(ROOT, "target", os.environ.get("PROFILE", "release"))
        self.dir = tempfile.mkdtemp(prefix="bench-fleet.")
        self.procs = {}  # name -> Popen
        self.redis_dir = os.path.join(self.dir, "redis")
        self.redis_up = False

    # -- processes ---------------------------------------------------------

    def spawn(self, name, argv):
        out = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.procs[name]

    def stop(self, keep_logs=None):
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                except OSError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if keep_logs:
            shutil.rmtree(keep_logs, ignore_errors=True)
            os.makedirs(keep_logs)
            for name in os.listdir(self.dir):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.dir, name), keep_logs)
            for port in os.listdir(self.redis_dir) if os.path.isdir(self.redis_dir) else []:
                path = os.path.join(self.redis_dir, port, "redis.log")
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(keep_logs, f"redis-{port}.log"))
        if self.redis_up:
            subprocess.run([os.path.join(ROOT, "scripts", "redis-cluster"), "stop", self.redis_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- start -------------------------------------------------------------

    def start(self):
        for tool in ("gateway", "flood", "store", "push"):
            if not os.access(os.path.join(self.bin, tool), os.X_OK):
                sys.exit(f"error: {self.bin}/{tool} missing: cargo build --release -p gateway -p flood -p backend-rpc")
        env = dict(os.environ, PORT=str(REDIS_PORT), MASTERS="3", REPLICAS="1")
        out = subprocess.run([os.path.join(ROOT, "scripts", "redis-cluster"), "start", self.redis_dir],
                             env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"error: the Redis Cluster did not start:\n{out.stderr}")
        self.redis_up = True
        self.redis_urls = re.search(r"REDIS_URLS='([^']*)'", out.stdout).group(1).split()
        store = [os.path.join(self.bin, "store"), "--listen", f"127.0.0.1:{STORE_PORT}",
                 "--metrics-listen", f"127.0.0.1:{STORE_METRICS_PORT}"]
        if self.args.store == "redis":
            store += ["--engine", "redis", "--redis", ",".join(self.redis_urls)]
        else:
            store += ["--data-dir", os.path.join(self.dir, "store")]
        self.spawn("store", store)
        self.spawn("push", [os.path.join(self.bin, "push"), "--listen", f"127.0.0.1:{PUSH_PORT}"])
        with open(os.path.join(self.dir, "secret"), "w") as f:
            f.write(os.urandom(48).hex())
        os.chmod(os.path.join(self.dir, "secret"), 0o600)
        self.start_node(1)
        self.wait_ready([1])
        self.key = os.path.join(self.dir, "n1", "data", "keys", "dev-signing.pk8")
        rest = list(range(2, self.n + 1))
        for k in rest:
            shutil.copytree(os.path.join(self.dir, "n1", "data", "keys"), os.path.join(self.dir, f"n{k}", "data", "keys"))
            self.start_node(k)
        self.wait_ready(rest)
        log(f"fleet: {self.n} nodes ready ({self.args.store} store, registry on a 3-master Redis Cluster)")

    def node_config(self, k):
        d = os.path.join(self.dir, f"n{k}")
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        registry = ", ".join(f'"{u}"' for u in self.redis_urls)
        cache = f"cache_ms = {self.args.cache_ms}\n" if self.args.cache_ms else ""
        path = os.path.join(d, "g.toml")
        with open(path, "w") as f:
            f.write(f"""[node]
id = {k}
pin_workers = false
[limits]
connections_per_ip_per_sec = 1000000
connections_per_ip_burst = 1000000
[drain]
window_ms = {DRAIN_WINDOW_MS}
deadline_ms = {DRAIN_WINDOW_MS * 2}
[store]
mode = "remote"
endpoint = "http://127.0.0.1:{STORE_PORT}"
[push]
mode = "remote"
endpoint = "http://127.0.0.1:{PUSH_PORT}"
[cluster]
registry = [{registry}]
registry_cluster = true
lease_ms = {LEASE_MS}
{cache}link_listen = "{node_ip(k)}:{LINK_PORT}"
secret_file = "{os.path.join(self.dir, 'secret')}"
""")
        return path, os.path.join(d, "data")

    def start_node(self, k):
        config, data = self.node_config(k)
        ip = node_ip(k)
        self.spawn(f"n{k}", [os.path.join(self.bin, "gateway"), "--config", config, "--data-dir", data,
                             "--listen", f"{ip}:{CLIENT_PORT}", "--admin", f"{ip}:{ADMIN_PORT}",
                             "--workers", "1", "--log", "warn"])

    def wait_ready(self, ks, timeout=120):
        deadline = time.time() + timeout
        waiting = set(ks)
        while waiting and time.time() < deadline:
            for k in list(waiting):
                if self.procs[f"n{k}"].poll() is not None:
                    sys.exit(f"error: node {k} exited at start (see {self.dir}/n{k}.log)")
                try:
                    http_get(f"http://{node_ip(k)}:{ADMIN_PORT}/readyz", timeout=1)
                    waiting.discard(k)
                except OSError:
                    pass
            time.sleep(0.2)
        if waiting:
            sys.exit(f"error: nodes {sorted(waiting)[:10]} not ready in {timeout} s")

    def node_pids(self):
        return [self.procs[f"n{k}"].pid for k in range(1, self.n + 1)]

    def redis_pids(self):
        pids = {}
        for entry in os.listdir(self.redis_dir):
            try:
                with open(os.path.join(self.redis_dir, entry, "redis.pid")) as f:
                    pids[int(entry)] = int(f.read())
            except (OSError, ValueError):
                pass
        return pids

    def redis_info(self, port):
        out = subprocess.run(["redis-cli", "-p", str(port), "info"], capture_output=True, text=True, check=False)
        info = {}
        for line in out.stdout.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                info[key] = value.strip()
        return info

    def masters(self):
        return [p for p in self.redis_pids() if self.redis_info(p).get("role") == "master"]

    # -- measuring ---------------------------------------------------------

    def snapshot(self, flood_pid=None):
        """CPU seconds per component, PSS, Redis commands and memory, store
        and node metrics, now."""
        t = time.time()
        nodes = self.node_pids()
        snap = {"t": t, "cpu": {}, "pss": {}}
        snap["cpu"]["gateways"] = sum(cpu_secs(p) for p in nodes)
        snap["pss"]["gateways"] = sum(pss_bytes(p) for p in nodes)
        queued = [run_queue(p) for p in nodes]
        snap["run_queue"] = (sum(w for w, _ in queued), sum(r for _, r in queued))
        redis = self.redis_pids()
        snap["cpu"]["redis"] = sum(cpu_secs(p) for p in redis.values())
        snap["pss"]["redis"] = sum(pss_bytes(p) for p in redis.values())
        for name in ("store", "push"):
            snap["cpu"][name] = cpu_secs(self.procs[name].pid)
            snap["pss"][name] = pss_bytes(self.procs[name].pid)
        if flood_pid:
            floods = [flood_pid] + children_of(flood_pid)
            snap["cpu"]["flood"] = sum(cpu_secs(p) for p in floods)
            snap["pss"]["flood"] = sum(pss_bytes(p) for p in floods)
        masters = [info for info in map(self.redis_info, self.redis_pids()) if info.get("role") == "master"]
        snap["redis_commands"] = sum(int(info.get("total_commands_processed", 0)) for info in masters)
        snap["redis_memory"] = sum(int(info.get("used_memory", 0)) for info in masters)
        try:
            snap["store"] = metric_sums(http_get(f"http://127.0.0.1:{STORE_METRICS_PORT}/metrics"),
                                        {"store_requests_total"})
        except OSError:
            snap["store"] = {}
        names = {"gateway_fleet_link_frames_total", "gateway_fleet_link_bytes_total",
                 "gateway_fleet_registry_calls_total", "gateway_fleet_inbound_frames_total",
                 "gateway_sessions_open", "gateway_fleet_cache_hits_total", "gateway_fleet_cache_misses_total",
                 "gateway_fleet_misroutes_total", "gateway_fleet_registry_reconnects_total",
                 "gateway_fleet_cache_users"}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            texts = list(pool.map(self.node_metrics, range(1, self.n + 1)))
        total = {}
        for text in texts:
            for key, value in metric_sums(text, names).items():
                total[key] = total.get(key, 0.0) + value
        snap["nodes"] = total
        return snap

    def settle(self, timeout=300):
        """Waits until the nodes hold no session and make no registry calls
        but their lease renewals (a run's 100K closes each unregister a
        device), so that the next run's logins do not queue behind them."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            snap = self.snapshot()["nodes"]
            calls = snap.get("gateway_fleet_registry_calls_total", 0.0)
            # Lease renewals go on: one per node every third of the lease.
            renewals = 5 * self.n / (LEASE_MS / 3000) + 10
            if snap.get("gateway_sessions_open", 0) == 0 and last is not None and calls - last <= renewals:
                return
            last = calls
            time.sleep(5)
        log(f"fleet: still busy after {timeout} s; going on")

    def node_metrics(self, k):
        try:
            return http_get(f"http://{node_ip(k)}:{ADMIN_PORT}/metrics", timeout=5)
        except OSError:
            return ""


def window(a, b):
    """Rates and costs between two snapshots."""
    dt = b["t"] - a["t"]
    cores = {name: (b["cpu"].get(name, 0) - a["cpu"].get(name, 0)) / dt for name in b["cpu"]}
    delta = lambda key, x, y: y.get(key, 0.0) - x.get(key, 0.0)  # noqa: E731
    return {
        "secs": dt,
        "cpu_cores": cores,
        "cpu_cores_total": sum(cores.values()),
        "pss_bytes": b["pss"],
        "pss_bytes_total": sum(b["pss"].values()),
        "redis_ops_per_sec": (b["redis_commands"] - a["redis_commands"]) / dt,
        "redis_memory_bytes": b["redis_memory"],
        "store_requests_per_sec": delta("store_requests_total", a["store"], b["store"]) / dt,
        "registry_calls_per_sec": delta("gateway_fleet_registry_calls_total", a["nodes"], b["nodes"]) / dt,
        "link_frames_per_sec": delta("gateway_fleet_link_frames_total", a["nodes"], b["nodes"]) / dt,
        "link_bytes_per_sec": delta("gateway_fleet_link_bytes_total", a["nodes"], b["nodes"]) / dt,
        "inbound_by_kind_per_sec": {
            key.split(":", 1)[1]: delta(key, a["nodes"], b["nodes"]) / dt
            for key in b["nodes"] if key.startswith("gateway_fleet_inbound_frames_total:")
        },
        "sessions_open": b["nodes"].get("gateway_sessions_open", 0),
        "cached_users": b["nodes"].get("gateway_fleet_cache_users", 0),
        "cache_hits_per_sec": delta("gateway_fleet_cache_hits_total", a["nodes"], b["nodes"]) / dt,
        "cache_misses_per_sec": delta("gateway_fleet_cache_misses_total", a["nodes"], b["nodes"]) / dt,
        "misroutes_per_sec": delta("gateway_fleet_misroutes_total", a["nodes"], b["nodes"]) / dt,
        # How long a gateway thread that became runnable waited for a core,
        # on average: the share of latency this shared box adds at each hop.
        "gateway_run_queue_wait_us": (b["run_queue"][0] - a["run_queue"][0]) / 1000
        / max(1, b["run_queue"][1] - a["run_queue"][1]),
    }


