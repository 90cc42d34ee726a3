#!/usr/bin/env bash
# DNS queries per second: dnsperf against slipway's DNS forwarder and, as the baseline in the same
# run, against dnsmasq configured as a caching forwarder, both forwarding to an identical upstream.
#
#   bench/e2e/dns.sh [REPS] [SECONDS] [UNCACHED_NAMES]
#       (root; defaults 3 repetitions of 5 s cached load and 50000 distinct names uncached)
#   BASELINE_ONLY=1 bench/e2e/dns.sh ...   measures only the dnsmasq side (no slipwayd needed)
#
# Layout (everything inside `unshare --net --mount`: nothing touches the machine's network):
#   hs  "host" namespace: slipwayd, and upstream dnsmasq U on its loopback 127.0.0.53:53;
#   cs  the guest: slw0, a TAP slipwayd creates; dnsperf in it queries 192.168.127.1 (slipway).
#   hd  a second "host" namespace: forwarder dnsmasq F on 192.168.127.1:53 (one end of a veth
#       pair) forwarding to its own upstream dnsmasq U' on 127.0.0.53:53 (U's exact twin);
#   cd  the baseline's guest: the veth pair's other end; dnsperf in it queries 192.168.127.1 (F).
# The baseline sits behind a veth pair rather than on host loopback so that its queries, like a
# guest's to slipway, come from another namespace and cross a link into the host namespace; the
# veth is the kernel's cheapest such link, so the comparison favours dnsmasq, if anything.
# Upstreams answer from configuration (fixed records; a wildcard --address=/u.test/ for the
# uncached names), so they never become a slow third party.
#
# Cached: a query file of 20 names (A and AAAA) repeated by dnsperf for SECONDS after one warm-up
# pass, so every query is answered from the forwarder's cache. Uncached: every query is a name
# never asked before (unique per run, repetition and server), asked once; the forwarder must go
# upstream for each (both with their default caches, slipway 4096 answers, dnsmasq 150; and, as
# a second baseline, dnsmasq without a cache: see below). dnsperf: 4 clients, 200 queries outstanding,
# 2 s timeout. Medians of REPS; ratio = slipway / dnsmasq.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-5}
NUNC=${3:-50000}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}
BASELINE_ONLY=${BASELINE_ONLY:-}

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
tools=(dnsperf dnsmasq)
[ -n "$BASELINE_ONLY" ] || tools+=("$SLIPWAYD")
bench_sandbox dns "${tools[@]}"

for n in hs cs hd cd; do
    ip netns add "$n"
    ip -n "$n" link set lo up
done

# Upstream records: 20 fixed names (c00.c.test .. c19.c.test, A and AAAA) and a wildcard.
NFIX=20
up_args=(--keep-in-foreground --no-resolv --no-hosts -C /dev/null --listen-address=127.0.0.53
    --bind-interfaces --port=53 --local-ttl=3600 --address=/u.test/10.9.9.9 --log-facility=-)
for i in $(seq 0 $((NFIX - 1))); do
    up_args+=("--host-record=$(printf 'c%02d.c.test' "$i"),10.8.0.$((i + 1)),fd00::8:$((i + 1))")
done
for n in hs hd; do
    ip netns exec "$n" dnsmasq "${up_args[@]}" --pid-file="$TMP/up-$n.pid" \
        >"$TMP/up-$n.log" 2>&1 &
    PIDS+=($!)
done

# Baseline: dnsmasq as a caching forwarder on a veth pair hd:slwb0 <-> cd:slwb1.
ip link add slwb0 netns hd type veth peer name slwb1 netns cd
ip -n hd addr add 192.168.127.1/24 dev slwb0
ip -n hd link set slwb0 up
ip -n cd addr add 192.168.127.2/24 dev slwb1
ip -n cd link set slwb1 up
ip netns exec hd dnsmasq --keep-in-foreground --no-resolv --no-hosts -C /dev/null \
    --server=127.0.0.53 --dns-forward-max=1000 \
    --listen-address=192.168.127.1 --bind-interfaces --port=53 --pid-file="$TMP/fwd.pid" \
    --log-facility=- >"$TMP/fwd.log" 2>&1 &
PIDS+=($!)
# A second baseline forwarder, on port 5300 of the same address, without a cache: dnsmasq slows
# down several times once a large cache is full of unexpired entries (every insertion then has to
# evict one), which the uncached run with more names than --cache-size provokes. This one shows
# dnsmasq's plain forwarding speed, so the comparison does not rest on that effect alone.
ip netns exec hd dnsmasq --keep-in-foreground --no-resolv --no-hosts -C /dev/null \
    --server=127.0.0.53 --cache-size=0 --dns-forward-max=1000 \
    --listen-address=192.168.127.1 --bind-interfaces --port=5300 --pid-file="$TMP/fwd0.pid" \
    --log-facility=- >"$TMP/fwd0.log" 2>&1 &
PIDS+=($!)

# slipway: the guest namespace is attached as a TAP, as a guest is (lib.sh's guest_spec).
if [ -z "$BASELINE_ONLY" ]; then
    ip netns exec hs "$SLIPWAYD" --log-level warn --dns-upstream 127.0.0.53 \
        --attach netns:/run/netns/cs,ifname=slw0 >"$TMP/slipwayd.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do ip -n cs link show slw0 >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n cs link set slw0 up
    ip -n cs addr add 192.168.127.2/24 dev slw0
fi

# Wait (bounded) until each server answers from its guest namespace.
ready() {
    local ns=$1 port=${2:-53}
    for _ in $(seq 50); do
        ip netns exec "$ns" dig @192.168.127.1 -p "$port" +tries=1 +time=1 +short c00.c.test A 2>/dev/null |
            grep -qx 10.8.0.1 && return 0
        sleep 0.1
    done
    echo "bench: the server seen from $ns does not answer" >&2
    exit 1
}
ready cd
ready cd 5300
[ -n "$BASELINE_ONLY" ] || ready cs

# Query files.
for i in $(seq 0 $((NFIX - 1))); do
    printf 'c%02d.c.test A\nc%02d.c.test AAAA\n' "$i" "$i"
done >"$TMP/cached.q"
# uncached_file TAG: NUNC names never asked before (TAG = server and repetition).
uncached_file() {
    awk -v n="$NUNC" -v t="$1" 'BEGIN { for (i = 0; i < n; i++) printf "q%d.%s.u.test A\n", i, t }' \
        >"$TMP/uncached-$1.q"
}

# dnsperf_qps NS ARGS...: the "Queries per second" figure of one dnsperf run in NS (also logs
# the completed/lost lines to stderr, so a lossy run is visible).
DNSPERF_OPTS=(-s 192.168.127.1 -c 4 -q 200 -t 2)
dnsperf_qps() {
    local ns=$1 out
    shift
    out=$(ip netns exec "$ns" timeout 120 dnsperf "${DNSPERF_OPTS[@]}" "$@" 2>&1) || true
    grep -E 'Queries (completed|lost)|Run time|Average Latency' <<<"$out" | tr -s ' ' | sed "s/^/  $ns: /" >&2
    awk '/Queries per second:/ {printf "%.0f\n", $4; f=1} END {if (!f) print 0}' <<<"$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

# Warm-up: one pass of the cached names through each forwarder fills its cache.
dnsperf_qps cd -d "$TMP/cached.q" -n 1 >/dev/null
[ -n "$BASELINE_ONLY" ] || dnsperf_qps cs -d "$TMP/cached.q" -n 1 >/dev/null

sc=() dc=() su=() du=() d0=()
for r in $(seq "$REPS"); do
    echo "rep $r: cached" >&2
    [ -n "$BASELINE_ONLY" ] || sc+=("$(dnsperf_qps cs -d "$TMP/cached.q" -l "$SECS")")
    dc+=("$(dnsperf_qps cd -d "$TMP/cached.q" -l "$SECS")")
    echo "rep $r: uncached" >&2
    if [ -z "$BASELINE_ONLY" ]; then
        uncached_file "s$r"
        su+=("$(dnsperf_qps cs -d "$TMP/uncached-s$r.q" -n 1)")
    fi
    uncached_file "d$r"
    du+=("$(dnsperf_qps cd -d "$TMP/uncached-d$r.q" -n 1)")
    uncached_file "z$r"
    d0+=("$(dnsperf_qps cd -p 5300 -d "$TMP/uncached-z$r.q" -n 1)")
    rm -f "$TMP"/uncached-*.q
done
[ -n "$BASELINE_ONLY" ] && sc=(-) su=(-)
s1=$(printf '%s\n' "${sc[@]}" | median)
d1=$(printf '%s\n' "${dc[@]}" | median)
s2=$(printf '%s\n' "${su[@]}" | median)
d2=$(printf '%s\n' "${du[@]}" | median)
d3=$(printf '%s\n' "${d0[@]}" | median)
ver=$(dnsmasq --version | awk 'NR == 1 {print $3}')
# row TITLE SLIPWAY DNSMASQ [BASELINE_NOTE]
row() {
    awk -v t="$1" -v s="$2" -v d="$3" -v v="$ver" -v n="${4:-}" 'BEGIN {
        r = (s == "-" || d + 0 == 0) ? "-" : sprintf("%.2fx", s / d)
        printf "| %s | %s | dnsmasq %s forwarder%s | %s | %s |\n", t, s, v, n, d, r }'
}
echo "| benchmark | slipway | baseline | baseline figure | ratio |"
echo "|---|---|---|---|---|"
row "DNS cached qps (dnsperf, $((NFIX * 2)) queries repeated, median of $REPS x $SECS s)" "$s1" "$d1"
row "DNS uncached qps (dnsperf, $NUNC distinct names once, median of $REPS)" "$s2" "$d2" \
    ", default cache (150)"
row "DNS uncached qps (as above; baseline without a cache)" "$s2" "$d3" ", --cache-size=0"
echo "(runs: cached slipway ${sc[*]}; dnsmasq ${dc[*]}; uncached slipway ${su[*]};" \
    "dnsmasq ${du[*]}; dnsmasq without cache ${d0[*]})"
