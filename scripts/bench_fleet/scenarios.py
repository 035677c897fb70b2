"""The scenarios: steady state, the faults injected mid-hold, and the
idle nodes; each returns its result for the table and the JSON."""

import os
import signal
import subprocess
import time

from .fleet import CLIENT_PORT, DRAIN_WINDOW_MS, LEASE_MS, SESSIONS_PER_FLOOD, node_ip, window
from .flood import Flood, mix_figures
from .procfs import cpu_secs, log, pss_bytes, status_field, wakeups


def kill_node(fleet, k):
    fleet.procs[f"n{k}"].kill()
    fleet.procs[f"n{k}"].wait()
    log(f"fault: node {k} killed (kill -9)")


def restart_node(fleet, k):
    fleet.start_node(k)
    fleet.wait_ready([k])
    log(f"fault: node {k} started again")


def fault_kill_node(fleet, flood):
    k = fleet.n // 2 + 1
    kill_node(fleet, k)
    return lambda: restart_node(fleet, k)


def fault_stop_node(fleet, flood):
    k = fleet.n // 2 + 1
    proc = fleet.procs[f"n{k}"]
    proc.send_signal(signal.SIGSTOP)
    log(f"fault: node {k} stopped (SIGSTOP) for {LEASE_MS / 1000 + 5:.0f} s, past its {LEASE_MS / 1000:.0f} s lease")
    time.sleep(LEASE_MS / 1000 + 5)
    proc.send_signal(signal.SIGCONT)
    log(f"fault: node {k} continued (SIGCONT)")
    return None


def fault_kill_redis(fleet, flood):
    master = fleet.masters()[0]
    pid = fleet.redis_pids()[master]
    os.kill(pid, signal.SIGKILL)
    log(f"fault: Redis master :{master} killed (kill -9)" + (" (registry and store)" if fleet.args.store == "redis" else " (registry)"))

    def restart():
        d = os.path.join(fleet.redis_dir, str(master))
        subprocess.run(["redis-server", "--port", str(master), "--bind", "127.0.0.1", "--dir", d, "--daemonize", "yes",
                        "--pidfile", os.path.join(d, "redis.pid"), "--logfile", os.path.join(d, "redis.log"),
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000", "--appendonly", "yes", "--appendfsync", "everysec",
                        "--save", ""], check=False, stdout=subprocess.DEVNULL)
        log(f"fault: Redis :{master} started again (it rejoins as a replica)")
    return restart


def fault_slow_peer(fleet, flood):
    k = fleet.n // 2 + 1
    proc = fleet.procs[f"n{k}"]
    log(f"fault: node {k} runs 1/4 of the time for 20 s")
    end = time.time() + 20
    while time.time() < end:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.15)
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    return None


def fault_drain(fleet, flood):
    count = max(1, -(-fleet.n // 10))
    wave = max(1, fleet.n // 40)
    ks = [1 + (i * fleet.n) // count for i in range(count)]
    log(f"fault: rolling restart of {count} nodes, {wave} at a time (SIGTERM, drain, start again)")
    for at in range(0, count, wave):
        batch = ks[at:at + wave]
        for k in batch:
            fleet.procs[f"n{k}"].send_signal(signal.SIGTERM)
        for k in batch:
            fleet.procs[f"n{k}"].wait(timeout=DRAIN_WINDOW_MS * 3 / 1000)
        for k in batch:
            fleet.start_node(k)
        fleet.wait_ready(batch)
    return None


FAULTS = {"kill-node": fault_kill_node, "stop-node": fault_stop_node, "kill-redis": fault_kill_redis,
          "slow-peer": fault_slow_peer, "drain": fault_drain}


# -- scenarios ---------------------------------------------------------------

def run_steady(fleet, args, first_user):
    flood = Flood(fleet, args, first_user, args.duration)
    flood.wait_hold(timeout=args.sessions / args.connect_rate * 3 + 300)
    warm = min(30.0, args.duration / 5)
    time.sleep(warm)
    a = fleet.snapshot(flood.proc.pid)
    time.sleep(max(5.0, args.duration - 2 * warm))
    b = fleet.snapshot(flood.proc.pid)
    summary, rc = flood.finish(timeout=600)
    result = {"scenario": "steady", "flood": mix_figures(summary), "window": window(a, b), "passed": rc == 0}
    return result


def run_fault(fleet, args, first_user, name):
    flood = Flood(fleet, args, first_user, args.fault_duration)
    flood.wait_hold(timeout=args.sessions / args.connect_rate * 3 + 300)
    time.sleep(min(20.0, args.fault_duration / 3))
    at = time.time()
    after = FAULTS[name](fleet, flood)
    ended = time.time()
    summary, rc = flood.finish(timeout=900)
    recovered = flood.recovered_after(at)
    if after:
        after()
    return {"scenario": name, "flood": mix_figures(summary), "fault_secs": ended - at,
            "recovery_secs": recovered, "passed": rc == 0}


def run_idle(fleet, args):
    def measure(label, secs=30.0):
        pids = fleet.node_pids()
        cpu0 = sum(cpu_secs(p) for p in pids)
        wake0 = sum(wakeups(p) for p in pids)
        time.sleep(secs)
        cpu1 = sum(cpu_secs(p) for p in pids)
        wake1 = sum(wakeups(p) for p in pids)
        pss = [pss_bytes(p) for p in pids]
        threads = [status_field(p, "Threads") for p in pids]
        return {"label": label, "nodes": len(pids), "pss_bytes_per_node": sum(pss) / len(pids),
                "pss_bytes_total": sum(pss), "threads_per_node": sum(threads) / len(threads),
                "cpu_cores_total": (cpu1 - cpu0) / secs, "wakeups_per_sec_per_node": (wake1 - wake0) / secs / len(pids)}
    time.sleep(5)
    empty = measure("0 sessions")
    sessions = 250 * fleet.n
    processes = max(1, -(-sessions // SESSIONS_PER_FLOOD))
    argv = [os.path.join(fleet.bin, "flood"), "connect", "--sessions", str(sessions), "--rate", f"{args.connect_rate}/s",
            "--hold", "120", "--processes", str(processes), "--source", "127.0.0.2-127.0.0.250",
            "--signing-key", fleet.key, "--json"]
    for k in range(1, fleet.n + 1):
        argv += ["--target", f"{node_ip(k)}:{CLIENT_PORT}"]
    flood = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(sessions / args.connect_rate + 20)
    held = measure("250 sessions per node")
    flood.kill()
    flood.wait()
    return {"scenario": "idle", "empty": empty, "held": held, "passed": True}
