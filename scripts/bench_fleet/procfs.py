"""What the fleet benchmark reads of processes (/proc) and of HTTP
metrics endpoints."""

import os
import re
import sys
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpu_secs(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def status_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pss_bytes(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children_of(pid):
    """Direct children of `pid` (flood's processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def metric_sums(text, names):
    """Sums of the samples of each metric in `names` (all label sets), and
    per `kind` label for the frames-by-kind metrics."""
    sums = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        match = re.match(r"([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if not match or match.group(1) not in names:
            continue
        value = float(match.group(3))
        sums[match.group(1)] = sums.get(match.group(1), 0.0) + value
        kind = re.search(r'kind="([A-Za-z_]+)"', match.group(2) or "")
        if kind:
            key = f"{match.group(1)}:{kind.group(1)}"
            sums[key] = sums.get(key, 0.0) + value
    return sums


def wakeups(pid):
    """Context switches of every thread of `pid` so far (each is a wake-up)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            total += status_field(f"{pid}/task/{task}", "voluntary_ctxt_switches")
    except OSError:
        pass
    return total


def run_queue(pid):
    """(ns waited on a run queue, times run) summed over the threads of
    `pid` so far (/proc/PID/task/TID/schedstat)."""
    waited = runs = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    _, wait, slices = f.read().split()[:3]
                waited += int(wait)
                runs += int(slices)
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return waited, runs
