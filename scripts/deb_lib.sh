# Sourced by scripts/deb-test and scripts/bench-deb, not run: the package
# under test, and a scratch node of the installed /usr/bin/gateway run as the
# `gateway` user. The callers set -euo pipefail, check the host
# (deb_require_root, deb_refuse_installed), then call deb_setup.
# The globals below are also read by the callers, which shellcheck does not
# see from this file:
# shellcheck shell=bash disable=SC2034

deb_tmp=
node_pid=
node_dir=
node_admin=
node_launched=

deb_require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $(basename "$0") installs and purges the gateway package: run it as root" >&2
    exit 1
  fi
}

# dpkg's two-letter state of the package ("ii" installed, "rc" removed with
# its config kept), empty when dpkg does not know it.
deb_state() {
  dpkg-query -W -f='${db:Status-Abbrev}' gateway 2>/dev/null | tr -d ' ' || true
}

# Whether any of the package is on this host (installed, half installed,
# removed with its config kept, ...).
deb_present() {
  case "$(deb_state)" in
  "" | un | pn) return 1 ;;
  esac
}

# The purge at the end removes /etc/gateway and /var/lib/gateway: never run
# over an installation that is not ours.
deb_refuse_installed() {
  if deb_present; then
    echo "error: a gateway package is already on this host (dpkg state $(deb_state)); $(basename "$0") would purge it with its config and data. Remove it first: dpkg -P gateway" >&2
    exit 1
  fi
}

deb_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# A scratch directory for the run, and the traps that clean up after it.
deb_setup() {
  deb_tmp=$(mktemp -d /tmp/gateway-deb.XXXXXX)
  # The gateway user reads the node's config and enters its data dir in it.
  chmod 0755 "$deb_tmp"
  trap deb_cleanup EXIT
  trap 'echo "error: interrupted" >&2; exit 130' INT TERM
}

# Starts the installed binary as the gateway user on loopback ports that are
# free now, with a data dir of its own; node_launched is the time of the
# launch in ms (deb_now_ms).
deb_start_node() {
  local ws
  node_dir=$deb_tmp/node
  rm -rf "$node_dir"
  mkdir -m 0755 "$node_dir"
  install -d -o gateway -g gateway -m 0700 "$node_dir/data"
  read -r ws node_admin < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  cat >"$node_dir/gateway.toml" <<TOML
[node]
data_dir = "$node_dir/data"
[listen]
ws = "127.0.0.1:$ws"
admin = "127.0.0.1:$node_admin"
TOML
  node_launched=$(deb_now_ms)
  setpriv --reuid=gateway --regid=gateway --init-groups -- \
    /usr/bin/gateway --config "$node_dir/gateway.toml" >"$node_dir/node.log" 2>&1 &
  node_pid=$!
}

# Waits up to $1 seconds for GET /healthz on the node's admin port to answer
# 200; fails at once if the node exits.
deb_wait_ready() {
  local deadline=$((SECONDS + $1))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$node_admin/healthz")" = 200 ]; do
    kill -0 "$node_pid" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.02
  done
}

# SIGTERM (a drain; no sessions, so it is quick), then waits up to $1 seconds
# for the exit; succeeds if the node exited with status 0.
deb_stop_node() {
  local deadline=$((SECONDS + $1)) pid=$node_pid status=0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
  node_pid=
  wait "$pid" || status=$?
  return "$status"
}

# On any exit: no node left running, no package left installed (or half
# removed), no scratch directory left behind.
deb_cleanup() {
  local status=$?
  trap - EXIT
  if [ -n "$node_pid" ]; then
    kill -KILL "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    if [ "$status" != 0 ]; then
      echo "--- the node's log:" >&2
      tail -n 20 "$node_dir/node.log" >&2 || true
    fi
  fi
  if deb_present; then
    timeout 180 dpkg --purge gateway >/dev/null || echo "error: could not purge the gateway package" >&2
  fi
  [ -z "$deb_tmp" ] || rm -rf "$deb_tmp"
  exit "$status"
}
