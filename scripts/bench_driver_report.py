#!/usr/bin/env python3
"""The tables of scripts/bench-driver from its results directory."""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
PERF_SECS = float(os.environ.get("PERF_SECS", "4"))
SERVERS = ("epoll", "io_uring", "baseline")


def load(name):
    try:
        with open(f"{out}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def runs():
    return sorted({int(m.group(1)) for p in glob.glob(f"{out}/*-run*.json")
                   for m in [re.search(r"-run(\d+)\.json$", p)] if m})


def server_cpu(s):
    v = sum((p.get("cpu_secs") or 0.0) for p in s["pids"])
    return v if v > 0 else float("nan")


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def cell(xs, f="{:,.0f}"):
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    m = f.format(med(xs))
    return m if len(xs) == 1 else f"{m} ({f.format(min(xs))}–{f.format(max(xs))})"


def syscalls(tag):
    counts = {}
    try:
        with open(f"{out}/{tag}.syscalls") as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
                    event = parts[2]
                    name = "all" if event == "raw_syscalls:sys_enter" else event.split(":")[-1].replace("sys_enter_", "")
                    counts[name] = float(parts[0])
    except OSError:
        pass
    return counts


def ratio_rows(name, per_run, unit):
    """per_run: {run: {server: value}}; prints io_uring / epoll (and / baseline)."""
    ue = [r["io_uring"] / r["epoll"] for r in per_run.values() if "io_uring" in r and "epoll" in r]
    ub = [r["io_uring"] / r["baseline"] for r in per_run.values() if "io_uring" in r and "baseline" in r]
    eb = [r["epoll"] / r["baseline"] for r in per_run.values() if "epoll" in r and "baseline" in r]
    print(f"| {name} | {unit} | **{cell(ue, '{:.2f}')}** | {cell(ub, '{:.2f}')} | {cell(eb, '{:.2f}')} |")


all_runs = runs()
print(f"Results in {out}; runs {all_runs}\n")

# --- echo at a fixed offered rate ---
sizes = sorted({int(m.group(1)) for p in glob.glob(f"{out}/echo-*-run*.json")
                for m in [re.search(r"echo-(\d+)-", p)] if m})
ratios = []
if sizes:
    print("## Echo at a fixed offered rate (1,000 connections, window 16)\n")
    print("| size | server | msgs/s | server cores | **msgs per server CPU-s** | RTT p50 / p99 ms | flood cores | syscalls per echo | io_uring_enter / writev / write / recvfrom / read / epoll_wait / futex per echo | bad / failed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        per_run = {}
        per_run_sys = {}
        for server in SERVERS:
            rows = {k: [] for k in ("rate", "cores", "per", "p50", "p99", "flood", "sys", "bad", "failed")}
            named = {}
            for run in all_runs:
                tag = f"echo-{size}-{server}-run{run}"
                s = load(tag)
                if not s:
                    continue
                c = server_cpu(s)
                per = s["echoed_in_window"] / c
                per_run.setdefault(run, {})[server] = per
                rows["rate"].append(s["msgs_per_sec"])
                rows["cores"].append(c / s["window_secs"])
                rows["per"].append(per)
                rows["p50"].append(s["rtt"]["p50_us"] / 1000)
                rows["p99"].append(s["rtt"]["p99_us"] / 1000)
                rows["flood"].append(s["flood_cpu"]["secs"] / s["window_secs"])
                rows["bad"].append(s["bad"])
                rows["failed"].append(s["failed"])
                counts = syscalls(tag)
                messages = s["msgs_per_sec"] * PERF_SECS
                if counts and messages > 0:
                    total = counts.get("all", float("nan")) / messages
                    rows["sys"].append(total)
                    per_run_sys.setdefault(run, {})[server] = total
                    for name in ("io_uring_enter", "writev", "write", "recvfrom", "read", "epoll_wait", "futex"):
                        named.setdefault(name, []).append(counts.get(name, 0.0) / messages)
            if not rows["per"]:
                continue
            breakdown = " / ".join(f"{med(named.get(n, [])):.3f}" for n in
                                   ("io_uring_enter", "writev", "write", "recvfrom", "read", "epoll_wait", "futex"))
            print(f"| {size} B | {server} | {cell(rows['rate'])} | {med(rows['cores']):.2f} | **{cell(rows['per'])}** "
                  f"| {med(rows['p50']):.2f} / {med(rows['p99']):.2f} | {med(rows['flood']):.2f} | {cell(rows['sys'], '{:.3f}')} "
                  f"| {breakdown} | {int(sum(rows['bad']))} / {int(sum(rows['failed']))} |")
        ratios.append((f"echo {size} B", per_run, "msgs per server CPU-s"))
        ratios.append((f"echo {size} B", {r: {k: 1 / v for k, v in d.items()} for r, d in per_run_sys.items()},
                       "1 / syscalls per echo"))
    print()

def scenario(title, prefix, servers, unit, work, rate, latency):
    """One table of a closed-loop scenario: per server, its rate, cores,
    `work` per server CPU-second, latency and flood's cores."""
    if not glob.glob(f"{out}/{prefix}-*-run*.json"):
        return
    print(f"## {title}\n")
    print(f"| server | {unit}/s | server cores | **{unit} per server CPU-s** | latency p50 / p99 ms | flood cores | failed / lost / duplicates |")
    print("|---|---|---|---|---|---|---|")
    per_run = {}
    for server in servers:
        rows = {k: [] for k in ("rate", "cores", "per", "p50", "p99", "flood", "bad")}
        for run in all_runs:
            s = load(f"{prefix}-{server}-run{run}")
            if not s:
                continue
            c = server_cpu(s)
            per_run.setdefault(run, {})[server] = s[work] / c
            rows["rate"].append(s[rate])
            rows["cores"].append(c / s["window_secs"])
            rows["per"].append(s[work] / c)
            rows["p50"].append(s[latency]["p50_us"] / 1000)
            rows["p99"].append(s[latency]["p99_us"] / 1000)
            rows["flood"].append(s["flood_cpu"]["secs"] / s["window_secs"])
            rows["bad"].append(f"{s.get('failed', 0)} / {s.get('lost', 0)} / {s.get('duplicates', 0)}")
        if rows["per"]:
            print(f"| {server} | {cell(rows['rate'])} | {med(rows['cores']):.2f} | **{cell(rows['per'])}** "
                  f"| {med(rows['p50']):.2f} / {med(rows['p99']):.2f} | {med(rows['flood']):.2f} | {'; '.join(rows['bad'])} |")
    ratios.append((title.split(" (")[0], per_run, f"{unit} per server CPU-s"))
    print()


scenario("Group fanout 1 x 1024 (one sender, window 8, as fast as SEND_ACKs allow)", "fanout",
         ("epoll", "io_uring"), "deliveries", "delivered_in_window", "deliveries_per_sec", "deliver_latency")
scenario("Handshakes (upgrade only, concurrency 200)", "handshake",
         SERVERS, "handshakes", "handshakes", "handshakes_per_sec", "latency")

if ratios:
    print("## Ratios (median of the per-run ratios, spread)\n")
    print("| measure | of | **io_uring / epoll** | io_uring / baseline | epoll / baseline |")
    print("|---|---|---|---|---|")
    for name, per_run, unit in ratios:
        ratio_rows(name, per_run, unit)
    print()

# --- profiles ---
for server in ("io_uring", "epoll"):
    path = f"{out}/profile-{server}.dso.txt"
    if not os.path.exists(path):
        continue
    shares = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
            if m:
                shares.append((float(m.group(1)), m.group(2)))
    print(f"## Where the {server} node's time goes (64 B echo at the fixed rate, perf record, by object)\n")
    print("| share of samples | object |")
    print("|---|---|")
    for share, dso in shares[:6]:
        print(f"| {share:.1f} % | {dso} |")
    print()
