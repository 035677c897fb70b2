"""One `flood mix` run over every node of the fleet, its progress
followed (when its hold began, how many sessions were live when), and the
figures of its summary the benchmark keeps."""

import json
import os
import re
import subprocess
import threading
import time

from .fleet import CLIENT_PORT, SESSIONS_PER_FLOOD, node_ip
from .procfs import log


class Flood:
    """One `flood mix` run over every node, its progress followed."""

    def __init__(self, fleet, args, first_user, duration):
        self.sessions = args.sessions
        self.verbose = args.verbose
        processes = max(1, -(-args.sessions // SESSIONS_PER_FLOOD))
        argv = [os.path.join(fleet.bin, "flood"), "mix", "--json", "--fleet", "--processes", str(processes),
                "--sessions", str(args.sessions), "--rate", str(args.rate), "--duration", str(duration),
                "--connect-rate", str(args.connect_rate), "--source", "127.0.0.2-127.0.0.250",
                "--signing-key", fleet.key, "--first-user", str(first_user), "--handshake-timeout-ms", "60000",
                "--setup-timeout", "120", "--drain-timeout", "60", "--sync-timeout", "120"]
        for k in range(1, fleet.n + 1):
            argv += ["--target", f"{node_ip(k)}:{CLIENT_PORT}"]
        self.log = open(os.path.join(fleet.dir, f"flood-{first_user}.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.hold_at = None
        self.live = 0
        self.live_at = []  # (time, live)
        self.out = []
        self.readers = [threading.Thread(target=self.follow, daemon=True),
                        threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()), daemon=True)]
        for reader in self.readers:
            reader.start()

    def follow(self):
        for line in self.proc.stderr:
            self.log.write(line)
            self.log.flush()
            live = re.search(r"live (\d+)/", line)
            if live:
                self.live = int(live.group(1))
                self.live_at.append((time.time(), self.live))
            sent = re.search(r"sent/s (\d+)", line)
            if self.hold_at is None and sent and int(sent.group(1)) > 0:
                self.hold_at = time.time()
                log(f"flood: hold began ({self.live} live)")
            if self.verbose:
                log(line.rstrip())

    def wait_hold(self, timeout):
        deadline = time.time() + timeout
        while self.hold_at is None and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.2)
        if self.hold_at is None:
            raise RuntimeError(f"flood never began its hold (see {self.log.name})")

    def finish(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        try:
            return json.loads("".join(self.out)), self.proc.returncode
        except json.JSONDecodeError:
            return {"failures": [f"flood printed no summary (rc {self.proc.returncode}, see {self.log.name})"]}, 1

    def recovered_after(self, since):
        """Seconds from `since` until as many sessions were live as just
        before it, after the fault's dip (0 if no session lost its
        connection; None if they were not all back before flood closed
        them)."""
        before = [live for at, live in self.live_at if at < since]
        target = before[-1] if before else self.sessions
        samples = [(at, live) for at, live in self.live_at if at >= since]
        dip = next((i for i, (_, live) in enumerate(samples) if live < target), None)
        if dip is None:
            return 0.0
        back = next((at for at, live in samples[dip:] if live >= target), None)
        return None if back is None else back - since


def mix_figures(summary):
    keys = ("sessions", "msgs_per_sec", "deliveries_per_sec", "acked_direct", "acked_group", "expected",
            "checked", "lost", "unverifiable", "duplicates", "order_broken", "out_of_order", "connections_lost",
            "resynced", "final_synced", "reads_sent", "typing_sent", "receipts_seen", "presence_seen",
            "typing_seen", "groups", "largest_group", "mean_group_size", "window_secs", "failures")
    figures = {key: summary.get(key) for key in keys}
    figures["sessions"] = summary.get("authenticated")
    for name in ("ack_latency", "direct_latency", "group_latency", "reconnect_latency"):
        lat = summary.get(name) or {}
        figures[name] = {q: lat.get(f"{q}_us", 0) / 1000 for q in ("p50", "p99", "p999", "max")}
    return figures
