# Test bed for slipway's integration tests (DESIGN §7). Source it first thing in a test script:
#
#   . "$(dirname "$0")/lib.sh"
#
# It re-executes the script inside `unshare --net --mount`, so nothing the test does can touch the
# machine's own network: the namespaces it creates live under a private tmpfs on /run/netns, the
# daemon runs inside a "host" namespace the test made, guest interfaces are named slw0, traffic
# goes only to addresses of these namespaces, and everything is torn down on exit, failure or not.
# Needs root. Environment: SLIPWAYD and SLIPWAYCTL (set by CMake to this build's binaries).

set -euo pipefail

if [ -z "${SLW_SANDBOXED:-}" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "SKIP-FAIL: integration tests need root" >&2; exit 1; }
    export SLW_SANDBOXED=1
    exec unshare --net --mount -- bash "$0" "$@"
fi

: "${SLIPWAYD:?SLIPWAYD must name the slipwayd binary under test}"
: "${SLIPWAYCTL:?SLIPWAYCTL must name the slipwayctl binary under test}"
PY=/usr/bin/python3
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/tools" && pwd)
TEST_NAME=$(basename "$0" .sh)

# Private mounts: nothing below leaks into the machine's mount table.
mount --make-rprivate /
mkdir -p /run/netns
mount -t tmpfs -o mode=0755 slw-netns /run/netns
ip link set lo up

SLW_TMP=$(mktemp -d "/tmp/slw-${TEST_NAME}.XXXXXX")
SLW_NETNS=()
SLW_PIDS=()
SLW_DAEMON_PID=""
SLW_HOST=slwhost
API="$SLW_TMP/api.sock"
DAEMON_LOG="$SLW_TMP/slipwayd.log"

log() { printf '[%s] %s\n' "$TEST_NAME" "$*" >&2; }

slw_cleanup() {
    local rc=$?
    set +e
    for pid in "${SLW_PIDS[@]}" $SLW_DAEMON_PID; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${SLW_PIDS[@]}" $SLW_DAEMON_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if [ $rc -ne 0 ] && [ -f "$DAEMON_LOG" ]; then
        echo "---- slipwayd log ($DAEMON_LOG) ----" >&2
        tail -n 60 "$DAEMON_LOG" >&2
    fi
    for ns in "${SLW_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$SLW_TMP"
    if [ $rc -eq 0 ]; then log "PASS"; else log "FAIL (exit $rc)"; fi
    exit $rc
}
trap slw_cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    log "FAIL: $*"
    exit 1
}

# expect DESCRIPTION CMD...: CMD must succeed.
expect() {
    local what=$1
    shift
    if ! "$@"; then fail "$what (command: $*)"; fi
    log "ok: $what"
}

# expect_fail DESCRIPTION CMD...: CMD must fail.
expect_fail() {
    local what=$1
    shift
    if "$@"; then fail "$what (command unexpectedly succeeded: $*)"; fi
    log "ok: $what"
}

netns_add() {
    ip netns add "$1"
    SLW_NETNS+=("$1")
    ip -n "$1" link set lo up
}

# in_ns NS CMD...: run CMD inside namespace NS.
in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# bg NS CMD...: start CMD in the background inside NS; its PID is recorded for cleanup.
bg() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@" &
    SLW_PIDS+=($!)
    LAST_PID=$!
}

# start_daemon ARGS...: slipwayd in the host namespace with an API socket; waits for "ready".
start_daemon() {
    [ -n "$(ip netns list | grep -w "$SLW_HOST" || true)" ] || netns_add "$SLW_HOST"
    : >"$DAEMON_LOG"
    ip netns exec "$SLW_HOST" "$SLIPWAYD" --api "$API" --log-level debug "$@" >>"$DAEMON_LOG" 2>&1 &
    SLW_DAEMON_PID=$!
    for _ in $(seq 100); do
        if grep -q "ready" "$DAEMON_LOG"; then return 0; fi
        kill -0 "$SLW_DAEMON_PID" 2>/dev/null || fail "slipwayd exited during start-up"
        sleep 0.1
    done
    fail "slipwayd did not log 'ready' within 10 s"
}

# stop_daemon: SIGTERM, and slipwayd must exit 0 within 10 s.
stop_daemon() {
    local pid=$SLW_DAEMON_PID rc=0
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "slipwayd still running 10 s after SIGTERM"
    wait "$pid" || rc=$?
    SLW_DAEMON_PID=""
    [ $rc -eq 0 ] || fail "slipwayd exited with status $rc after SIGTERM"
    log "ok: slipwayd stopped cleanly on SIGTERM"
}

# daemon_alive: the daemon process still runs.
daemon_alive() { kill -0 "$SLW_DAEMON_PID" 2>/dev/null; }

ctl() { "$SLIPWAYCTL" --api "$API" "$@"; }

# counter SCOPE NAME: a value from `slipwayctl stats --json`. SCOPE is "switch", "gateway", "pool"
# or a port's spec/name (e.g. "netns:/run/netns/g1,ifname=slw0" or "gateway").
counter() {
    ctl stats --json | "$PY" "$TOOLS/counter.py" "$1" "$2"
}

# guest NAME ADDR/PREFIX [SPEC_EXTRA]: a namespace guest whose slw0 TAP slipway creates; the
# daemon must be started with --attach "$(guest_spec NAME)". guest_up configures it.
guest_spec() { echo "netns:/run/netns/$1,ifname=slw0"; }
guest_up() {
    local ns=$1 addr=$2
    for _ in $(seq 50); do ip -n "$ns" link show slw0 >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$ns" link set slw0 up
    ip -n "$ns" addr add "$addr" dev slw0
}

# wait_until SECONDS CMD...: poll CMD until it succeeds (bounded).
wait_until() {
    local secs=$1
    shift
    local end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}
