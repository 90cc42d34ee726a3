#!/usr/bin/env bash
# UDP through the NAT, end to end: datagrams per second guest->host and host->guest (64- and
# 1400-byte payloads, one flow) and DNS queries per second to a server reached through the NAT,
# for a namespace guest behind slipway and, in the same run, behind pasta (passt), slirp4netns,
# and a plain veth pair (the kernel's own path, the upper bound), at MTU 1500.
#
#   bench/e2e/udp.sh [REPS] [SECONDS] [INFLIGHT]
#       (root; defaults 3 repetitions, 5 s per blast and per DNS run, 128 DNS queries in flight)
#   STACKS="veth pasta slirp4netns slipway"   the stacks to measure (default: all four)
#   TESTS="blast dns"                         the rows: "blast" the UDP blasts, "dns" the DNS
#                                             row (default both; TESTS=dns runs only DNS)
#   CLIENTS=4                                 dnsperf's client sockets (-c) in the DNS row
#   MTUS="1500"                               the guest MTUs (default 1500)
#   SIZES="64 1400"                           UDP payload sizes of the blasts (default both)
#   RATE=0                                    the blasts' sending rate in datagrams/s per run,
#                                             0 (the default) for unpaced; see below
#
# slipway is measured only once its UDP NAT exists, which the script takes to be when
# `slipwayd --help` lists --udp-timeout (the UDP engine's flag); until then its column is "-"
# and a note row says why. Medians of REPS; the repetitions of the stacks are interleaved (rep 1
# of every stack, then rep 2, ...) so that drift on the machine hits them alike.
#
# Layout (everything inside `unshare --net --mount`: nothing touches the machine's network), as
# in tcp.sh:
#   hs  the "host" namespace: lo up; the blast ends on the host side and the DNS responder bind
#       0.0.0.0, so the NAT stacks reach them on hs's 127.0.0.1
#       ("host loopback") and the kernel path on hs's end of the veth pair. pasta, slirp4netns
#       and slipwayd run here, each serving its own guest namespace.
#   ws  a "world" namespace joined to hs by a veth pair (slww0/slww1); hs's default route goes
#       through it, because pasta refuses to start without a routable host interface. No
#       benchmark traffic goes there.
#   gv  veth guest: slw0, one end of a veth pair whose other end (slwv0, 10.99.0.1) is in hs; no
#       NAT, the kernel routes. The upper bound.
#   gp  pasta guest: slw0, the TAP pasta creates (--config-net), 192.168.127.2/24, gateway .1;
#       pasta maps UDP to its gateway address onto the host's loopback, like TCP (its default;
#       --no-map-gw turns it off), and rewrites the replies' source back to the gateway. Port
#       forwarding (-t/-u/-T/-U) is off: every datagram crosses the TAP, as it would for a VM.
#   gl  slirp4netns guest: slw0, configured by slirp4netns (--configure): 10.0.2.100/24, gateway
#       10.0.2.2, which is the host's loopback for UDP too (libslirp translates 10.0.2.2 to
#       127.0.0.1 unless --disable-host-loopback).
#   gs  slipway guest: slw0, the TAP slipwayd creates (--attach netns:...), 192.168.127.2/24,
#       default route via 192.168.127.1; the server is 192.168.127.254, slipway's host-loopback
#       alias (UDP to it goes to hs's 127.0.0.1, same port).
# So every stack reaches the same servers on hs's loopback, and every host->guest datagram is a
# reply on a flow the guest opened: no port forwarding anywhere, the path a VM's traffic takes.
#
# Measurements, per stack, MTU and repetition (udp_blast is compiled from
# bench/e2e/tools/udp_blast.c with `cc -O2` into the run's temporary directory):
#   UDP blast guest->host ("up") and host->guest ("down"), each payload size in SIZES: one flow
#     (one 5-tuple), a sender (udp_blast send: sendmmsg(2), batches of 64, bounded by SECONDS and by
#     5 million datagrams per second of SECONDS) and a receiver (udp_blast recv: recvmmsg(2), SO_RCVBUF
#     8 MiB) counting what arrives. "up": the receiver binds hs's 0.0.0.0:5301 and the guest
#     sends to the server address. "down": the sender binds hs's 0.0.0.0:5302; the guest's
#     receiver sends a hello there through the stack every 100 ms until data comes, and the
#     sender, on the first hello, connects to the hello's source (the NAT's socket) and blasts.
#     The figure is the datagrams *received* per second (from the receiver's first batch to its
#     last; it stops after 0.5 s of silence); beside it the loss, 1 - received/sent, where "sent"
#     counts what the sender's kernel accepted. "stack CPU us/datagram" is the user + system time
#     of the stack's process (pasta, slirp4netns, slipwayd; /proc/PID/stat, all threads) during
#     the run divided by the datagrams received; n/a for the kernel path.
#   Why unpaced (RATE=0): the question is how many datagrams a stack can carry, and an unpaced
#     sender offers more than any of them can; what arrives per second is then the stack's
#     capacity, as with `iperf3 -u -b` far above the link rate, which is how passt's own
#     performance tests measure pasta's UDP (test/perf/pasta_udp: -b 8G..30G, the receiver's
#     rate). The loss that comes with it is on the sending side's queues (the guest's TAP queue
#     up, the NAT socket's receive buffer down; the raw runs show the kernels' drop counters for
#     both, and in the runs so far they account for all of it): datagrams the stack never
#     touched, so they cost it nothing and do not bend the figure; the loss column shows how
#     much more was offered than carried. A paced sender would instead measure whether a stack keeps up with
#     a chosen rate, and every rate favours some stack; RATE=N runs that variant (the same rows,
#     now at N offered datagrams per second: compare the loss column) when a question needs it.
#     Caveat of an unpaced sender on a 2-CPU machine: sender, stack and receiver are three busy
#     processes on two CPUs, so each stack's figure includes its share of that contention (the
#     kernel path has no stack process, which helps make it the upper bound).
#   DNS over NAT: dns_answer in hs (compiled like udp_blast from bench/e2e/tools/dns_answer.c;
#     bound to 0.0.0.0:5300, so 127.0.0.1:5300 and 10.99.0.1:5300; a minimal authoritative
#     responder: recvmmsg/sendmmsg batches of 64, every standard query for an A record answered
#     with 192.0.2.1, TTL 60, made from the query alone) queried from the guest through the
#     stack's UDP NAT, not through any DNS forwarder of the stack's own (slipway's is at
#     192.168.127.1:53, pasta's and slirp4netns's are off or at other addresses). dnsperf,
#     CLIENTS client sockets (CLIENTS flows through the NAT), INFLIGHT queries outstanding in
#     all, for SECONDS, 2 s timeout: answers per second ("Queries per second", which counts only
#     answers whose ID matches a query outstanding on that socket; dnsperf numbers its queries
#     from a pool of free IDs rather than at random), beside it the share lost. Before the runs,
#     one dig in hs checks the responder's answer (NOERROR, one A record, no warning from dig).
#   Why dns_answer and not dnsmasq (which this row used until then, with 1 client socket and 32
#     in flight): dnsmasq is single-threaded and does much more per query; it answered about
#     30k/s even on the kernel path, so every stack's figure was the server's (slipway 24.7k,
#     pasta 24.3k, slirp4netns 21.3k, all near that ceiling) and said little about the NATs.
#     dns_answer costs a few syscalls per batch and a copy per query; with it the kernel path
#     answers about 100k/s, twice what the fastest stack carries, so the stacks' columns are
#     theirs (all four stacks gained: the old figures were capped by dnsmasq).
#   Why 4 client sockets and 128 in flight (-c 4 -q 128), measured with dns_answer (answers/s,
#     medians, 5 s runs, 0% lost in every run):
#       kernel path, a bare veth pair (3 runs each): -c 1 -q 32 76k, -c 1 -q 128 122k, -c 2 -q 64
#         109k, -c 2 -q 128 112k, -c 4 -q 128 108k, -c 4 -q 256 86k, -c 8 -q 256 117k, -c 4 -q 512
#         106k, -c 8 -q 1024 105k (dnsmasq there: -c 1 -q 32 41k, -c 4 -q 128 43k);
#       this script (TESTS=dns), veth / pasta / slirp4netns / slipway: -c 1 -q 32 (3 runs) 95k /
#         39k / 24k / 49k; -c 1 -q 128 (3 runs) 101k / 43k / 25k / 53k; -c 4 -q 128 (5 runs)
#         98k / 46k / 27k / 55k.
#     Runs of one setting spread by about +-15%. The kernel path plateaus near 100k from 128 in
#     flight on (dnsperf's send and receive threads, the responder and the kernel then fill the
#     two CPUs; more in flight only queues), and stays about twice the fastest stack, so the
#     client is not the stacks' limit. The stacks' longer round trips need the deeper window:
#     -c 4 -q 128 rather than -c 1 -q 32 raised each stack by 12-18% (-c 1 -q 128 lies between,
#     within the spread of both). 4 sockets rather than 1 cost nothing measurable; they make the
#     load 4 flows, so no stack is measured on one flow's path alone.
# Ratios are slipway / peer for rates, peer / slipway for CPU per datagram (above 1: slipway
# better).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-5}
INFLIGHT=${3:-128}
CLIENTS=${CLIENTS:-4}
TESTS=${TESTS:-blast dns}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}
STACKS=${STACKS:-veth pasta slirp4netns slipway}
MTUS=${MTUS:-1500}
SIZES=${SIZES:-64 1400}
RATE=${RATE:-0}
ALL_STACKS=(veth pasta slirp4netns slipway)

# Which stacks run: those asked for, except slipway while its UDP NAT is missing.
SLW_NOTE=""
want=()
for s in $STACKS; do
    case "$s" in
    veth | pasta | slirp4netns) want+=("$s") ;;
    slipway)
        if [ ! -x "$SLIPWAYD" ]; then
            SLW_NOTE="slipway: $SLIPWAYD not built (cmake --build --preset release)"
        # (--help read whole first: `--help | grep -q` under pipefail fails whenever grep's early
        # exit makes slipwayd die of SIGPIPE mid-output, which dropped slipway at random.)
        elif ! grep -q -- '--udp-timeout' <<<"$("$SLIPWAYD" --help 2>/dev/null || true)"; then
            SLW_NOTE="slipway: UDP NAT not yet available (slipwayd --help lists no --udp-timeout)"
        else
            want+=(slipway)
        fi
        ;;
    *) echo "bench: unknown stack '$s' in STACKS (veth pasta slirp4netns slipway)" >&2; exit 2 ;;
    esac
done
for z in $SIZES; do
    if ! [[ "$z" =~ ^[0-9]+$ ]] || [ "$z" -lt 16 ] || [ "$z" -gt 65507 ]; then
        echo "bench: SIZES: '$z' is not a payload size in 16..65507" >&2
        exit 2
    fi
done
[[ "$RATE" =~ ^[0-9]+$ ]] || { echo "bench: RATE: '$RATE' is not a number" >&2; exit 2; }
for v in CLIENTS INFLIGHT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v: '${!v}' is not a count" >&2; exit 2; }
done
DO_BLAST="" DO_DNS=""
for t in $TESTS; do
    case "$t" in
    blast) DO_BLAST=1 ;;
    dns) DO_DNS=1 ;;
    *) echo "bench: unknown test '$t' in TESTS (blast dns)" >&2; exit 2 ;;
    esac
done
[ -n "$DO_BLAST$DO_DNS" ] || { echo "bench: TESTS names no test (blast dns)" >&2; exit 2; }
tools=(cc dnsperf dig ip ss)
for s in "${want[@]}"; do
    case "$s" in
    pasta | slirp4netns) tools+=("$s") ;;
    slipway) tools+=("$SLIPWAYD") ;;
    esac
done

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
bench_sandbox udp "${tools[@]}"
trap 'exit 143' TERM # so that lib.sh's EXIT trap stops everything on a signal too
trap 'exit 130' INT

TCK=$(getconf CLK_TCK)
DNS_PORT=5300 UP_PORT=5301 DOWN_PORT=5302
MAXN=$((SECS * 5000000)) # the senders' count bound
BLAST=$TMP/udp_blast ANSWER=$TMP/dns_answer
cc -O2 -Wall -o "$BLAST" bench/e2e/tools/udp_blast.c
cc -O2 -Wall -o "$ANSWER" bench/e2e/tools/dns_answer.c

# --- processes: started with lib.sh's start_bg (recorded in PIDS), stopped by PID with stop_pid.
# bound PORT: a UDP socket is bound to PORT in hs.
bound() { ip netns exec hs ss -Hlun "sport = :$1" | grep -q .; }

# --- the fixed part of the world: hs with the DNS responder, and ws behind hs's default route.
bench_world
# The DNS responder binds the wildcard address (and replies from the address each query was
# sent to), so 10.99.0.1 may appear later (up_veth). Its lifetime bound is one the whole run stays
# within: per stack, MTU and repetition, the blasts and the DNS run (each at most SECONDS + 30 s
# by their timeouts) plus a minute for bringing the stack up; it is stopped before the table.
nblast=0
[ -z "$DO_BLAST" ] || nblast=$((2 * $(wc -w <<<"$SIZES")))
ANSWER_SECS=$((300 + ${#want[@]} * $(wc -w <<<"$MTUS") * (60 + REPS * (nblast + 1) * (SECS + 30))))
start_bg hs "$ANSWER" ":$DNS_PORT" "$ANSWER_SECS" >"$TMP/dns_answer.out" 2>"$TMP/dns_answer.err"
RESPONDER=$LAST
wait_for 5 bound "$DNS_PORT" ||
    { echo "bench: dns_answer did not start:" >&2; cat "$TMP/dns_answer.err" >&2; exit 1; }
# Its answer as dig sees it: NOERROR, one A record 192.0.2.1, and nothing dig warns about.
dig_out=$(ip netns exec hs dig @127.0.0.1 -p "$DNS_PORT" +tries=1 +time=2 bench.test A 2>&1) || true
if ! grep -q 'status: NOERROR' <<<"$dig_out" || ! grep -q 'ANSWER: 1,' <<<"$dig_out" ||
    ! grep -Eq '^bench\.test\.[[:space:]]+60[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.1$' <<<"$dig_out" ||
    grep -Eqi 'warning|malformed|bad packet' <<<"$dig_out"; then
    echo "bench: dns_answer's answer is not what dig expects:" >&2
    echo "$dig_out" >&2
    exit 1
fi
echo "bench.test A" >"$TMP/dns.q"

# --- the stacks. up_STACK MTU: a guest namespace behind STACK at MTU, ready to talk to the
# servers; sets GUEST[STACK], SERVER[STACK] and PROC[STACK] (the stack's process, "" for none).
# Returns non-zero (with the reason on stderr) if the stack did not come up.
declare -A GUEST SERVER PROC
# guest_ns NAME: a fresh guest namespace with lo up.
guest_ns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
}
has_addr() { ip -n "$1" -4 addr show dev slw0 2>/dev/null | grep -q "inet $2/"; }

up_veth() {
    guest_ns gv
    ip link add slwv0 netns hs mtu "$1" type veth peer name slw0 netns gv mtu "$1"
    ip -n hs addr add 10.99.0.1/24 dev slwv0
    ip -n hs link set slwv0 up
    ip -n gv addr add 10.99.0.2/24 dev slw0
    ip -n gv link set slw0 up
    GUEST[veth]=gv SERVER[veth]=10.99.0.1 PROC[veth]=""
}

# pasta: --runas 0:0 because, started as root, it would otherwise become nobody before joining
# the guest namespace and fail ("Couldn't switch to pasta namespaces"). -4: IPv4 only, like
# the others.
up_pasta() {
    guest_ns gp
    start_bg hs pasta --runas 0:0 -f -4 --config-net -I slw0 -a 192.168.127.2 -n 24 \
        -g 192.168.127.1 -m "$1" -t none -u none -T none -U none --netns /run/netns/gp \
        >"$TMP/pasta-$1.log" 2>&1
    PROC[pasta]=$LAST GUEST[pasta]=gp SERVER[pasta]=192.168.127.1
    wait_for 10 has_addr gp 192.168.127.2 || { echo "bench: pasta did not configure gp" >&2; return 1; }
    ip -n gp link set slw0 mtu "$1"
}

up_slirp4netns() {
    guest_ns gl
    start_bg hs slirp4netns --configure --mtu="$1" --netns-type=path /run/netns/gl slw0 \
        >"$TMP/slirp4netns-$1.log" 2>&1
    PROC[slirp4netns]=$LAST GUEST[slirp4netns]=gl SERVER[slirp4netns]=10.0.2.2
    wait_for 10 has_addr gl 10.0.2.100 || { echo "bench: slirp4netns did not configure gl" >&2; return 1; }
}

# slipway, written ahead of its UDP NAT. It assumes: slipwayd in hs with the guest attached by
# TAP (--attach netns:...,ifname=slw0), --mtu N accepted; UDP from the guest to the
# host-loopback alias 192.168.127.254 reaches hs's 127.0.0.1 on the same port, and the replies
# come back from 192.168.127.254 (one flow per guest 5-tuple, the flow table and every other
# flag at their defaults); the guest is configured statically (no DHCP wait); the engine runs
# inside the slipwayd process, so /proc/PID/stat holds all its CPU time.
up_slipway() {
    guest_ns gs
    start_bg hs "$SLIPWAYD" --log-level warn --mtu "$1" --attach netns:/run/netns/gs,ifname=slw0 \
        >"$TMP/slipway-$1.log" 2>&1
    PROC[slipway]=$LAST GUEST[slipway]=gs SERVER[slipway]=192.168.127.254
    wait_for 10 ip -n gs link show slw0 || { echo "bench: slipwayd created no slw0 in gs" >&2; return 1; }
    ip -n gs link set slw0 mtu "$1"
    ip -n gs link set slw0 up
    ip -n gs addr add 192.168.127.2/24 dev slw0
    ip -n gs route add default via 192.168.127.1
}

# down STACK: stop its process and delete its guest namespace (and with it the guest's links).
down() {
    [ -z "${PROC[$1]:-}" ] || stop_pid "${PROC[$1]}"
    [ -z "${GUEST[$1]:-}" ] || ip netns del "${GUEST[$1]}" 2>/dev/null || true
    PROC[$1]="" GUEST[$1]=""
}

# dns_ok STACK: one query from the guest through the stack gets the responder's answer.
dns_ok() {
    ip netns exec "${GUEST[$1]}" dig @"${SERVER[$1]}" -p "$DNS_PORT" +tries=1 +time=1 +short \
        bench.test A 2>/dev/null | grep -qx 192.0.2.1
}
# reachable STACK: UDP from the guest reaches hs's responder and its answer comes back (bounded).
reachable() {
    wait_for 10 dns_ok "$1" ||
        { echo "bench: $1's guest gets no DNS answer from ${SERVER[$1]}:$DNS_PORT" >&2; return 1; }
}

# counters NS: "RCVBUF TXDROP" for NS: its UDP sockets' receive-buffer drops (/proc/net/snmp
# RcvbufErrors) and the datagrams its slw0 dropped on the way out (/proc/net/dev; 0 without one).
counters() {
    # shellcheck disable=SC2016 # awk's own $fields
    ip netns exec "$1" awk '
        FILENAME ~ /snmp/ && $1 == "Udp:" {
            if (!c) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i }
            else r = $c
        }
        FILENAME ~ /dev/ && $1 ~ /^slw0:/ { sub(/^[^:]*:/, ""); t = $12 }
        END { print r + 0, t + 0 }' /proc/net/snmp /proc/net/dev
}

# --- one measurement each. Results are appended to R[STACK|MTU|METRIC] (space-separated runs).
declare -A R
# kv KEY LINE: the value of KEY in a key=value line (empty if absent).
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1; }

# blast STACK MTU DIR SIZE: DIR "up" (guest->host) or "down" (host->guest). Records
# R[..|DIR_SIZE] as "PPS:LOSS%", R[..|DIR_SIZE_cpu] and R[..|DIR_SIZE_raw].
blast() {
    local st=$1 mtu=$2 dir=$3 size=$4 ns=${GUEST[$1]} pid=${PROC[$1]} key="$1|$2|$3_$4"
    local p0 p1 bg so ro sent recv pps loss to=$((SECS + 30)) h0 h1 g0 g1
    p0=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    h0=$(counters hs) g0=$(counters "$ns")
    if [ "$dir" = up ]; then
        start_bg hs timeout "$to" "$BLAST" recv ":$UP_PORT" "$size" $((SECS + 10)) \
            >"$TMP/recv.out" 2>"$TMP/recv.err"
        bg=$LAST
        wait_for 5 bound "$UP_PORT" || echo "bench: $st: the receiver did not bind" >&2
        so=$(ip netns exec "$ns" timeout "$to" "$BLAST" send "${SERVER[$st]}:$UP_PORT" "$size" \
            "$SECS" "$MAXN" "$RATE" 2>"$TMP/send.err") || true
        reap "$bg"
        ro=$(cat "$TMP/recv.out")
    else
        start_bg hs timeout "$to" "$BLAST" send ":$DOWN_PORT" "$size" "$SECS" "$MAXN" "$RATE" \
            >"$TMP/send.out" 2>"$TMP/send.err"
        bg=$LAST
        wait_for 5 bound "$DOWN_PORT" || echo "bench: $st: the sender did not bind" >&2
        ro=$(ip netns exec "$ns" timeout "$to" "$BLAST" recv "${SERVER[$st]}:$DOWN_PORT" "$size" \
            $((SECS + 10)) 2>"$TMP/recv.err") || true
        reap "$bg"
        so=$(cat "$TMP/send.out")
    fi
    p1=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    h1=$(counters hs) g1=$(counters "$ns")
    sent=$(kv sent "$so") recv=$(kv recv "$ro") pps=$(kv pps "$ro")
    if [ -z "$sent" ] || [ -z "$recv" ] || [ "${recv:-0}" -eq 0 ]; then
        echo "bench: $st MTU $mtu $dir ${size} B: no result (sender: ${so:-$(tail -n 1 "$TMP/send.err")};" \
            "receiver: ${ro:-$(tail -n 1 "$TMP/recv.err")})" >&2
        sent=${sent:-0} recv=0 pps=0
    fi
    loss=$(awk -v s="$sent" -v r="$recv" 'BEGIN {printf "%.1f", (s > 0 ? 100 * (s - r) / s : 0)}')
    add "$key" "$pps:$loss"
    if [ -n "$pid" ]; then
        add "${key}_cpu" "$(awk -v t=$((p1 - p0)) -v k="$TCK" -v n="$recv" \
            'BEGIN {printf (n > 0 ? "%.2f" : "0"), (n > 0 ? 1e6 * t / k / n : 0)}')"
    else
        add "${key}_cpu" n/a
    fi
    # Where datagrams were dropped, by the kernels' counters: the guest's slw0 on the way out,
    # a receive buffer in hs (the receiver's, or the NAT socket's), one in the guest. ("_" for
    # spaces: R's runs are separated by spaces.)
    add "${key}_raw" "$pps/$(kv pps "$so")/$loss%_$(awk -v h0="$h0" -v h1="$h1" -v g0="$g0" -v g1="$g1" 'BEGIN {
        split(h0, a); split(h1, b); split(g0, c); split(g1, d)
        printf "[drops:_slw0-tx_%d_hs-rcvbuf_%d_guest-rcvbuf_%d]", d[2] - c[2], b[1] - a[1], d[1] - c[1] }')"
}

# dns STACK MTU: dnsperf from the guest through the stack; records "QPS:LOST%".
dns() {
    local st=$1 mtu=$2 out qps lost
    out=$(ip netns exec "${GUEST[$st]}" timeout $((SECS + 30)) dnsperf -s "${SERVER[$st]}" \
        -p "$DNS_PORT" -d "$TMP/dns.q" -l "$SECS" -c "$CLIENTS" -q "$INFLIGHT" -t 2 2>&1) || true
    qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' <<<"$out")
    lost=$(sed -n 's/.*Queries lost:.*(\([0-9.]*\)%).*/\1/p' <<<"$out")
    if [ -z "$qps" ]; then
        echo "bench: $st MTU $mtu dnsperf failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')" >&2
        qps=0 lost=100
    fi
    add "$st|$mtu|dns" "$qps:${lost:-0}"
}

# --- the runs: for each MTU, bring every stack up, interleave the repetitions, take them down.
declare -A BROKEN RAN
running=()
for mtu in $MTUS; do
    running=()
    for st in "${want[@]}"; do
        if "up_$st" "$mtu" && reachable "$st"; then
            running+=("$st")
        else
            echo "bench: $st at MTU $mtu did not come up; its log:" >&2
            tail -n 20 "$TMP/$st-$mtu.log" 2>/dev/null | grep -v 'to syslog' >&2 || true
            BROKEN[$st|$mtu]=1
        fi
    done
    for r in $(seq "$REPS"); do
        for st in "${running[@]}"; do
            echo "MTU $mtu rep $r: $st" >&2
            RAN[$st|$mtu]=1
            if [ -n "$DO_BLAST" ]; then
                for size in $SIZES; do
                    blast "$st" "$mtu" up "$size"
                    blast "$st" "$mtu" down "$size"
                done
            fi
            [ -z "$DO_DNS" ] || dns "$st" "$mtu"
        done
    done
    for st in "${want[@]}"; do down "$st"; done
done
if alive "$RESPONDER"; then
    stop_pid "$RESPONDER"
    echo "dns_answer: $(cat "$TMP/dns_answer.out")" >&2
else
    echo "bench: dns_answer ended during the run: $(tail -n 3 "$TMP/dns_answer.err")" >&2
fi

# --- the table.
# median: of numbers, or of "VALUE:EXTRA" pairs by VALUE (the pair of the median run).
median() {
    tr ' ' '\n' | grep -v '^$' | sort -t: -k1,1g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'
}
# cell STACK MTU METRIC: the median ("PPS (LOSS% lost)" for pairs), "n/a", "fail" or "-".
cell() {
    local v=${R[$1|$2|$3]:-} m
    if [ -n "${BROKEN[$1|$2]:-}" ]; then echo fail
    elif [ -z "$v" ]; then echo -
    elif [ "${v%% *}" = n/a ]; then echo n/a
    else
        m=$(median <<<"$v")
        case "$m" in *:*) echo "${m%%:*} (${m#*:}% lost)" ;; *) echo "$m" ;; esac
    fi
}
# ratio A B INVERT: A/B (B/A when INVERT=1, for lower-is-better figures), "-" when either is
# not a number or zero. Only the first word of a cell counts (not its loss).
ratio() {
    awk -v a="${1%% *}" -v b="${2%% *}" -v i="$3" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || a + 0 == 0 || b + 0 == 0) { print "-"; exit }
        printf "%.2fx\n", (i ? b / a : a / b) }'
}
peers=(veth pasta slirp4netns)
names=("veth (kernel)" pasta slirp4netns slipway)
hdr="| test | MTU |"
sep="|---|---|"
for n in "${names[@]}"; do hdr+=" $n |" sep+="---|"; done
for p in "${peers[@]}"; do hdr+=" slipway/$p |" sep+="---|"; done
echo "$hdr"
echo "$sep"
# row TITLE MTU METRIC INVERT
row() {
    local line="| $1 | $2 |" s p
    for s in "${ALL_STACKS[@]}"; do line+=" $(cell "$s" "$2" "$3") |"; done
    s=$(cell slipway "$2" "$3")
    for p in "${peers[@]}"; do line+=" $(ratio "$s" "$(cell "$p" "$2" "$3")" "$4") |"; done
    echo "$line"
}
if [ "$RATE" -eq 0 ]; then offer="unpaced"; else offer="$RATE/s offered"; fi
for mtu in $MTUS; do
    if [ -n "$DO_BLAST" ]; then
        for size in $SIZES; do
            row "UDP guest->host ${size} B ($offer), received datagrams/s" "$mtu" "up_$size" 0
            row "UDP guest->host ${size} B, stack CPU us/datagram" "$mtu" "up_${size}_cpu" 1
            row "UDP host->guest ${size} B ($offer), received datagrams/s" "$mtu" "down_$size" 0
            row "UDP host->guest ${size} B, stack CPU us/datagram" "$mtu" "down_${size}_cpu" 1
        done
    fi
    title="DNS through the NAT (dnsperf, $CLIENTS sockets, $INFLIGHT in flight), answers/s"
    [ -z "$DO_DNS" ] || row "$title" "$mtu" dns 0
done
if [ -n "$SLW_NOTE" ]; then
    line="| $SLW_NOTE | - |"
    for _ in "${ALL_STACKS[@]}" "${peers[@]}"; do line+=" - |"; done
    echo "$line"
fi
echo
notes=()
[ -z "$DO_BLAST" ] || notes+=("blasts: one flow, ${SECS} s, sendmmsg batches of 64, $offer;" \
    "figure: datagrams received per second, loss = 1 - received/sent; CPU: the stack process's" \
    "user+system time per datagram received, CPU ratios are peer/slipway, above 1: slipway" \
    "spends less;")
[ -z "$DO_DNS" ] || notes+=("DNS: dns_answer (fixed A record) on host loopback, dnsperf with" \
    "$CLIENTS sockets and $INFLIGHT queries in flight, ${SECS} s, lost = unanswered within 2 s;")
echo "(medians of $REPS; ${notes[*]})"
echo "(passt $(ver passt), slirp4netns $(ver slirp4netns) with libslirp $(ver libslirp0)," \
    "dnsperf $(ver dnsperf), $(cc --version | head -n 1)," \
    "kernel $(uname -r), $(nproc) CPUs)"
echo
echo "raw runs, in order (blasts: received/sent datagrams per s/loss, then where the kernels counted" \
    "drops: the guest's slw0 on the way out, receive buffers in hs (the receiver's or the NAT" \
    "socket's), receive buffers in the guest; DNS: answers per s:lost %):"
for mtu in $MTUS; do
    for st in "${ALL_STACKS[@]}"; do
        [ -n "${RAN[$st|$mtu]:-}${BROKEN[$st|$mtu]:-}" ] || continue
        if [ -n "${BROKEN[$st|$mtu]:-}" ]; then echo "  MTU $mtu $st: did not come up"; continue; fi
        for size in $SIZES; do
            [ -n "$DO_BLAST" ] || break
            for dir in up down; do
                v=${R[$st|$mtu|${dir}_${size}_raw]// /; } # runs apart; "_" stands for a space in one
                echo "  MTU $mtu $st $dir $size B: ${v//_/ }; stack CPU us/datagram" \
                    "${R[$st|$mtu|${dir}_${size}_cpu]}"
            done
        done
        [ -z "$DO_DNS" ] || echo "  MTU $mtu $st dns: ${R[$st|$mtu|dns]}"
    done
done
