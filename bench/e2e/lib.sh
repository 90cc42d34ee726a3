# Shared by the bench/e2e scripts: `bench_sandbox NAME TOOL...` re-executes the calling script
# (as root, once every TOOL is present) inside `unshare --net --mount`, then, inside, gives it a
# private /run/netns, a temporary directory $TMP, and a PIDS array whose processes are killed on
# exit. Nothing a benchmark does touches the machine's own network.
# shellcheck shell=bash
bench_sandbox() {
    local name=$1 t
    shift
    if [ -z "${SLW_BENCH_SANDBOXED:-}" ]; then
        [ "$(id -u)" -eq 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
        for t in "$@"; do
            command -v "$t" >/dev/null ||
                { echo "bench: $t missing (scripts/deps; cmake --build --preset release)" >&2; exit 1; }
        done
        SLW_BENCH_SANDBOXED=1 exec unshare --net --mount -- bash "$0" "${BENCH_ARGS[@]}"
    fi
    mount --make-rprivate /
    mkdir -p /run/netns
    mount -t tmpfs slw-bench /run/netns
    TMP=$(mktemp -d "/tmp/slw-bench-$name.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}

# --- processes: every one a benchmark starts is recorded in PIDS (bench_cleanup kills what is
# left on exit) and stopped by that PID.
# start_bg NS CMD...: CMD in NS, in the background; its PID (ip netns exec execs CMD) in LAST.
start_bg() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@" &
    LAST=$!
    PIDS+=("$LAST")
}
# alive PID: the process exists and is not a zombie.
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}
# forget PID: drop it from PIDS.
forget() {
    local q keep=()
    for q in "${PIDS[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}
# stop_pid PID: SIGTERM, SIGKILL after 5 s, reap, and forget the PID.
stop_pid() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null || true
    forget "$p"
}
# reap PID: wait for a process that ends by itself (every tool here is bounded in time), forget it.
reap() {
    wait "$1" 2>/dev/null || true
    forget "$1"
}
# cpu_ticks PID: user + system time of a process (all its threads) so far, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# wait_for SECONDS CMD...: poll CMD until it succeeds, for at most about SECONDS (plus one try).
wait_for() {
    local end=$((SECONDS + $1))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# --- results: R[KEY] holds a benchmark's runs, space-separated; `add KEY VALUE` appends one.
add() { R[$1]="${R[$1]:-}${R[$1]:+ }$2"; }
# ver PACKAGE: its Debian version, for the table's footnote.
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
# ratio A B INVERT: A/B (B/A when INVERT=1, for lower-is-better figures), "-" when either is
# not a number or zero.
ratio() {
    awk -v a="$1" -v b="$2" -v i="$3" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || a + 0 == 0 || b + 0 == 0) { print "-"; exit }
        printf "%.2fx\n", (i ? b / a : a / b) }'
}

# --- the world: bench_world [HOST_IP] makes the "host" namespace hs and a "world" namespace ws
# joined by a veth pair (slww0 HOST_IP/24 in hs, default 10.98.0.1; slww1 10.98.0.2/24 in ws),
# with hs's default route through ws: pasta and passt refuse to start without a routable host
# interface. No benchmark traffic goes to ws unless a script puts its clients there.
bench_world() {
    local n
    for n in hs ws; do
        ip netns add "$n"
        ip -n "$n" link set lo up
    done
    ip link add slww0 netns hs type veth peer name slww1 netns ws
    ip -n hs addr add "${1:-10.98.0.1}/24" dev slww0
    ip -n hs link set slww0 up
    ip -n ws addr add 10.98.0.2/24 dev slww1
    ip -n ws link set slww1 up
    ip -n hs route add default via 10.98.0.2
}
