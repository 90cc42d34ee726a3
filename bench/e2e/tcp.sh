#!/usr/bin/env bash
# TCP through the NAT, end to end: iperf3 single-stream throughput both ways, connections per
# second and request/response rate for a namespace guest behind slipway and, in the same run,
# behind pasta (passt), slirp4netns, and a plain veth pair (the kernel's own path, the upper
# bound), at MTU 1500 and 65520.
#
#   bench/e2e/tcp.sh [REPS] [SECONDS] [CONNECTIONS] [TRANSACTIONS]
#       (root; defaults 3 repetitions, 10 s iperf3 runs, 2000 connections, 20000 transactions)
#   STACKS="veth pasta slirp4netns slipway"   the stacks to measure (default: all four)
#   MTUS="1500 65520"                         the guest MTUs (default: both)
#
# slipway is measured only once its NAT engine exists, which the script takes to be when
# `slipwayd --help` lists --max-flows (the engine's flag); until then its column is "-" and a
# note row says why. Medians of REPS; the repetitions of the stacks are interleaved (rep 1 of
# every stack, then rep 2, ...) so that drift on the machine hits them alike.
#
# Layout (everything inside `unshare --net --mount`: nothing touches the machine's network):
#   hs  the "host" namespace: lo up; the servers (iperf3 -s, and this script's Python CRR and
#       RR servers) listen on 0.0.0.0, so on hs's 127.0.0.1 ("host loopback") for the NAT
#       stacks and on hs's end of the veth pair for the kernel path. pasta, slirp4netns and
#       slipwayd run here, each serving its own guest namespace.
#   ws  a "world" namespace joined to hs by a veth pair (slww0/slww1); hs's default route goes
#       through it, because pasta refuses to start without a routable host interface. No
#       benchmark traffic goes there.
#   gv  veth guest: slw0, one end of a veth pair whose other end (slwv0, 10.99.0.1) is in hs; the
#       guest talks to 10.99.0.1 directly, routed by the kernel, no NAT. That is the upper bound:
#       the cheapest link between two namespaces; kernel NAT (a MASQUERADE rule) would only add
#       conntrack's cost to it.
#   gp  pasta guest: slw0, the TAP pasta creates (--config-net), 192.168.127.2/24, gateway .1;
#       pasta maps TCP to its gateway address onto the host's loopback (its default; --no-map-gw
#       would turn it off), so the server is 192.168.127.1. Port forwarding (-t/-u/-T/-U) is
#       off, so pasta's splice(2) shortcut between namespaces never applies: every byte crosses
#       the TAP, as it would for a VM.
#   gl  slirp4netns guest: slw0, configured by slirp4netns (--configure): 10.0.2.100/24, gateway
#       10.0.2.2, which is the host's loopback (no --disable-host-loopback).
#   gs  slipway guest: slw0, the TAP slipwayd creates (--attach netns:...), 192.168.127.2/24 set
#       with `ip addr`, default route via 192.168.127.1; the server is 192.168.127.254, slipway's
#       host-loopback alias.
# Each guest's MTU is set on its slw0 (and passed to the stack: pasta -m, slirp4netns --mtu,
# slipwayd --mtu); the host side is loopback (MTU 65536) for the NAT stacks, and the hs end of
# the veth pair for the kernel path.
#
# Measurements, per stack, MTU and repetition:
#   iperf3 guest->host and host->guest (-R): one stream for SECONDS; the figure is the
#     receiver's rate (end.sum_received). "stack CPU s/GiB" is the user + system time of the
#     stack's process (pasta, slirp4netns, slipwayd; /proc/PID/stat, all threads) during the run
#     divided by the GiB received; the kernel path has no such process (its work is spread over
#     the endpoints' system calls and softirqs), hence n/a. (A machine-wide figure from
#     /proc/stat would cover it, but counts whatever else runs on the machine too; on a shared
#     2-core machine that swamps it.)
#   TCP CRR: CONNECTIONS sequential connections, each connect, a 1-byte request, a 1-byte answer,
#     and the server's close (netperf's TCP_CRR), timed by the client: connections per second.
#   TCP RR: one connection (TCP_NODELAY both ends), TRANSACTIONS 1-byte ping-pongs: per second.
#   Both are Python (python3) on both ends, so on the kernel path they show Python's own limit.
# Ratios are slipway / peer for rates, peer / slipway for CPU per GiB (above 1: slipway better).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-10}
NCONN=${3:-2000}
NRR=${4:-20000}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}
STACKS=${STACKS:-veth pasta slirp4netns slipway}
MTUS=${MTUS:-1500 65520}
ALL_STACKS=(veth pasta slirp4netns slipway)

# Which stacks run: those asked for, except slipway while its NAT engine is missing.
SLW_NOTE=""
want=()
for s in $STACKS; do
    case "$s" in
    veth | pasta | slirp4netns) want+=("$s") ;;
    slipway)
        if [ ! -x "$SLIPWAYD" ]; then
            SLW_NOTE="slipway: $SLIPWAYD not built (cmake --build --preset release)"
        # Not `--help | grep -q`: with pipefail, grep leaving early can SIGPIPE slipwayd's
        # chunked help output and fail the pipeline (seen on a loaded machine).
        elif ! grep -q -- '--max-flows' <<<"$("$SLIPWAYD" --help 2>/dev/null)"; then
            SLW_NOTE="slipway: NAT engine not yet available (slipwayd --help lists no --max-flows)"
        else
            want+=(slipway)
        fi
        ;;
    *) echo "bench: unknown stack '$s' in STACKS (veth pasta slirp4netns slipway)" >&2; exit 2 ;;
    esac
done
tools=(iperf3 python3 ip)
for s in "${want[@]}"; do
    case "$s" in
    pasta | slirp4netns) tools+=("$s") ;;
    slipway) tools+=("$SLIPWAYD") ;;
    esac
done

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
bench_sandbox tcp "${tools[@]}"
trap 'exit 143' TERM # so that lib.sh's EXIT trap stops everything on a signal too
trap 'exit 130' INT

TCK=$(getconf CLK_TCK)
IPERF_PORT=5201 CRR_PORT=5202 RR_PORT=5203

# --- processes: started with lib.sh's start_bg (recorded in PIDS), stopped by PID with stop_pid.

# --- the CRR and RR peers (Python, both ends).
cat >"$TMP/peer.py" <<'EOF'
# TCP CRR / RR peers for bench/e2e/tcp.sh: `server crr|rr PORT`, `crr HOST PORT N`, `rr HOST PORT N`.
import socket, sys, time

def server(mode, port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    while True:
        c, _ = ls.accept()
        c.settimeout(10)
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if mode == "crr":
                if c.recv(1):
                    c.sendall(b"y")
            else:
                while True:
                    b = c.recv(1)
                    if not b:
                        break
                    c.sendall(b)
        except OSError:
            pass
        finally:
            c.close()  # crr: the server closes first, so TIME_WAIT stays on the host side

def crr(host, port, n):
    t0 = time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        if s.recv(1) != b"y" or s.recv(1) != b"":
            raise SystemExit("crr: bad answer")
        s.close()
    return n / (time.perf_counter() - t0)

def rr(host, port, n):
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    for _ in range(n):
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise SystemExit("rr: bad answer")
    t = time.perf_counter() - t0
    s.close()
    return n / t

if sys.argv[1] == "server":
    server(sys.argv[2], int(sys.argv[3]))
else:
    f = crr if sys.argv[1] == "crr" else rr
    print("%.0f" % f(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
EOF

# --- the fixed part of the world: hs with its servers, and ws behind hs's default route.
bench_world
start_bg hs iperf3 -s -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1
start_bg hs python3 "$TMP/peer.py" server crr "$CRR_PORT" >"$TMP/crr-server.log" 2>&1
start_bg hs python3 "$TMP/peer.py" server rr "$RR_PORT" >"$TMP/rr-server.log" 2>&1
for p in "$IPERF_PORT" "$CRR_PORT" "$RR_PORT"; do
    wait_for 5 ip netns exec hs python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 1).close()" ||
        { echo "bench: no server on hs port $p" >&2; exit 1; }
done

# --- the stacks. up_STACK MTU: a guest namespace behind STACK at MTU, ready to talk to the
# server; sets GUEST[STACK], SERVER[STACK] and PROC[STACK] (the stack's process, "" for none).
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

# slipway, written ahead of its NAT engine. It assumes: slipwayd in hs with the guest attached
# by TAP (--attach netns:...,ifname=slw0), --mtu N accepted for both MTUs and the TAP carrying
# frames that large; TCP from the guest to the host-loopback alias 192.168.127.254 reaches hs's
# 127.0.0.1 with the alias, the flow table and every other flag at their defaults (enough for
# CONNECTIONS sequential connections, the server closing first); the guest is configured
# statically (no DHCP wait); the engine runs inside the slipwayd process, so /proc/PID/stat
# holds all its CPU time.
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

# reachable STACK: the guest completes one CRR exchange with the host (bounded).
reachable() {
    wait_for 10 ip netns exec "${GUEST[$1]}" timeout 3 python3 "$TMP/peer.py" crr "${SERVER[$1]}" "$CRR_PORT" 1 ||
        { echo "bench: $1's guest cannot reach ${SERVER[$1]}:$CRR_PORT" >&2; return 1; }
}

# --- one measurement each. Results are appended to R[STACK|MTU|METRIC] (space-separated runs).
declare -A R

# iperf STACK MTU DIR: DIR "up" (guest->host) or "down" (host->guest, -R).
iperf() {
    local st=$1 mtu=$2 dir=$3 ns=${GUEST[$1]} pid=${PROC[$1]} out p0 p1 vals bps bytes sbps rtx
    local flag=()
    [ "$dir" = down ] && flag=(-R)
    p0=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    out=$(ip netns exec "$ns" timeout $((SECS + 30)) iperf3 -c "${SERVER[$st]}" -p "$IPERF_PORT" \
        -t "$SECS" -J "${flag[@]}" 2>&1) || true
    p1=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    vals=$(python3 -c '
import json, sys
try:
    j = json.loads(sys.stdin.read())
except ValueError:
    j = {"error": "no JSON output"}
e = j.get("end", {})
r, s = e.get("sum_received"), e.get("sum_sent")
if "error" in j or not r or not s:
    print("bench: %s: iperf3 failed: %s" % (sys.argv[1], j.get("error", "no summary")), file=sys.stderr)
    print("0 0 0 -")
else:
    print(r["bits_per_second"], r["bytes"], s["bits_per_second"], s.get("retransmits", "-"))
' "$st MTU $mtu $dir" <<<"$out") || vals="0 0 0 -"
    read -r bps bytes sbps rtx <<<"$vals"
    add "$st|$mtu|$dir" "$(awk -v b="$bps" 'BEGIN {printf "%.3f", b / 1e9}')"
    if [ -n "$pid" ]; then
        add "$st|$mtu|${dir}_cpu" "$(awk -v t=$((p1 - p0)) -v k="$TCK" -v y="$bytes" \
            'BEGIN {printf (y > 0 ? "%.3f" : "0"), (y > 0 ? t / k / (y / 1073741824) : 0)}')"
    else
        add "$st|$mtu|${dir}_cpu" n/a
    fi
    add "$st|$mtu|${dir}_raw" "$(awk -v r="$bps" -v s="$sbps" -v x="$rtx" \
        'BEGIN {printf "%.3f/%.3f/%s", r / 1e9, s / 1e9, x}')"
}

# peer_rate STACK MTU KIND: KIND crr (CONNECTIONS) or rr (TRANSACTIONS); 0 if it failed.
peer_rate() {
    local st=$1 mtu=$2 kind=$3 n port out
    if [ "$kind" = crr ]; then n=$NCONN port=$CRR_PORT; else n=$NRR port=$RR_PORT; fi
    out=$(ip netns exec "${GUEST[$st]}" timeout 300 python3 "$TMP/peer.py" "$kind" \
        "${SERVER[$st]}" "$port" "$n" 2>"$TMP/peer.err") || {
        echo "bench: $st MTU $mtu $kind failed: $(tail -n 1 "$TMP/peer.err")" >&2
        out=0
    }
    add "$st|$mtu|$kind" "$out"
}

# --- the runs: for each MTU, bring every stack up, interleave the repetitions, take them down.
declare -A BROKEN
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
            iperf "$st" "$mtu" up
            iperf "$st" "$mtu" down
            peer_rate "$st" "$mtu" crr
            peer_rate "$st" "$mtu" rr
        done
    done
    for st in "${want[@]}"; do down "$st"; done
done

# --- the table.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
# cell STACK MTU METRIC: the median, "n/a", "fail" or "-" (not measured).
cell() {
    local v=${R[$1|$2|$3]:-}
    if [ -n "${BROKEN[$1|$2]:-}" ]; then echo fail
    elif [ -z "$v" ]; then echo -
    elif [ "${v%% *}" = n/a ]; then echo n/a
    else median <<<"$v"; fi
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
for mtu in $MTUS; do
    row "iperf3 guest->host, Gbit/s" "$mtu" up 0
    row "iperf3 guest->host, stack CPU s/GiB" "$mtu" up_cpu 1
    row "iperf3 host->guest, Gbit/s" "$mtu" down 0
    row "iperf3 host->guest, stack CPU s/GiB" "$mtu" down_cpu 1
    row "TCP CRR ($NCONN sequential), conn/s" "$mtu" crr 0
    row "TCP RR (1 byte, $NRR), trans/s" "$mtu" rr 0
done
if [ -n "$SLW_NOTE" ]; then
    line="| $SLW_NOTE | - |"
    for _ in "${ALL_STACKS[@]}" "${peers[@]}"; do line+=" - |"; done
    echo "$line"
fi
echo
echo "(medians of $REPS; iperf3 ${SECS} s single stream, receiver's rate; CPU: the stack" \
    "process's user+system time per GiB received; CPU ratios are peer/slipway, above 1: slipway spends less)"
echo "(targets: >= 1.0x pasta on every row, >= 1.3x at MTU 1500; >= 2x slirp4netns at 65520," \
    ">= 5x at 1500; >= 0.5x veth)"
echo "(passt $(ver passt), slirp4netns $(ver slirp4netns) with libslirp $(ver libslirp0)," \
    "iperf3 $(ver iperf3), python3 $(ver python3), kernel $(uname -r), $(nproc) CPUs)"
echo
echo "raw runs (iperf3 as received/sent Gbit/s/retransmits):"
for mtu in $MTUS; do
    for st in "${ALL_STACKS[@]}"; do
        [ -n "${R[$st|$mtu|up_raw]:-}${BROKEN[$st|$mtu]:-}" ] || continue
        if [ -n "${BROKEN[$st|$mtu]:-}" ]; then echo "  MTU $mtu $st: did not come up"; continue; fi
        echo "  MTU $mtu $st: up ${R[$st|$mtu|up_raw]}; down ${R[$st|$mtu|down_raw]};" \
            "stack CPU s/GiB up ${R[$st|$mtu|up_cpu]}, down ${R[$st|$mtu|down_cpu]};" \
            "crr ${R[$st|$mtu|crr]}; rr ${R[$st|$mtu|rr]}"
    done
done
