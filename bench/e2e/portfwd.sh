#!/usr/bin/env bash
# TCP port forwarding, end to end: iperf3 single-stream throughput host->guest and guest->host,
# and connections per second, through a forwarded host port into a namespace guest behind
# slipway (--forward) and, in the same run, behind pasta (-t) and slirp4netns (its API's
# add_hostfwd), at MTU 1500 and 65520.
#
#   bench/e2e/portfwd.sh [REPS] [SECONDS] [CONNECTIONS] [CRR_SECONDS]
#       (root; defaults 3 repetitions, 5 s iperf3 runs, 2000 connections per CRR run, at most
#       10 s per CRR run)
#   STACKS="pasta slirp4netns slipway"   the stacks to measure (default: all three)
#   MTUS="1500 65520"                    the guest MTUs (default: both)
#   CLIENT=host                          where the clients run: "host" (default), in the host
#                                        namespace itself, or "world", in ws, one veth hop away
#                                        (a remote client); either way they connect to 10.98.0.1
#
# A slipwayd without --forward (an old build given as SLIPWAYD) gets "n/a" and a note row.
# Medians of REPS; the repetitions of the stacks are interleaved (rep 1 of every stack, then rep
# 2, ...) so that drift on the machine hits them alike.
#
# Layout (everything inside `unshare --net --mount`: nothing touches the machine's network):
#   hs  the "host" namespace: lo up, and 10.98.0.1/24 on slww0, one end of a veth pair whose
#       other end (slww1, 10.98.0.2) is in ws; hs's default route goes through ws (pasta refuses
#       to start without a routable host interface). pasta, slirp4netns and slipwayd run here,
#       each forwarding two ports of hs's 0.0.0.0 (iperf3's and the CRR server's) to its guest.
#       The clients (iperf3 -c, portfwd_crr client) run here too (CLIENT=host, the default) and
#       connect to 10.98.0.1, hs's non-loopback address, never to 127.0.0.1: pasta takes its
#       splice(2) shortcut between namespaces only for connections from a loopback source, so
#       with a 10.98.0.1 source every forwarded byte crosses pasta's TAP, as it would for a VM.
#       (The CRR server records the source address its first connection came from; the raw runs
#       show it, and the script warns if pasta's is a loopback address.)
#   ws  the "world" namespace behind hs's default route; with CLIENT=world the clients run here
#       instead (a remote client, one veth hop away, source 10.98.0.2), still connecting to
#       10.98.0.1. Otherwise no benchmark traffic goes to ws.
#   gp  pasta guest: slw0, the TAP pasta creates (--config-net), 192.168.127.2/24, gateway .1;
#       ports 5211 (iperf3) and 5212 (CRR) forwarded with -t 5211,5212; every other forwarding
#       off (-u/-T/-U none). --runas 0:0: started as root, pasta would otherwise become nobody
#       before joining the namespace and fail. -4: IPv4 only, like the others.
#   gl  slirp4netns guest: slw0, configured by slirp4netns (--configure): 10.0.2.100/24, gateway
#       10.0.2.2; ports 5221 and 5222 forwarded by two add_hostfwd requests (host_addr 0.0.0.0,
#       guest_port the same; the guest address is slirp4netns's default, 10.0.2.100) on its
#       --api-socket, sent with python3.
#   gs  slipway guest: slw0, the TAP slipwayd creates (--attach netns:...), 192.168.127.2/24 set
#       with `ip addr`, default route via 192.168.127.1; ports 5231 and 5232 forwarded with
#       --forward tcp:0.0.0.0:5231-5232=192.168.127.2:5231-5232.
# Each stack forwards its own host ports (they all listen in hs at once). In each guest, iperf3
# -s and portfwd_crr server listen on 0.0.0.0 (both bounded in time by their lifetime, and
# stopped with their guest). Each guest's MTU is set on its slw0 and passed to the stack (pasta
# -m, slirp4netns --mtu, slipwayd --mtu); the host side is hs's local path (lo, MTU 65536) for
# CLIENT=host, the veth pair (MTU 1500) for CLIENT=world.
#
# A caveat on pasta's guest->host row: this Debian pasta (0.0~git20230309) stalls on guest->host
# data over a forwarded connection, a burst and then seconds of nothing with retransmissions
# backing off (`iperf3 -R -i 0.5` shows it), with the client in hs or in ws alike; single 5 s
# runs at MTU 65520 spread from 0.02 to 2.5 Gbit/s, at 1500 most sit at a few tens of Mbit/s.
# Its median is the figure to quote, with that spread beside it (the raw runs), and more REPS
# steady it.
#
# Measurements, per stack, MTU and repetition:
#   iperf3 host->guest: the client (in hs or ws) sends to 10.98.0.1:PORT, the server in the guest
#     receives; guest->host: the same connection with -R (the guest's server sends). One stream
#     for SECONDS; the figure is the receiver's rate (end.sum_received). "stack CPU s/GiB" is the
#     user + system time of the stack's process (pasta, slirp4netns, slipwayd; /proc/PID/stat,
#     all threads) during the run divided by the GiB received.
#   TCP CRR through the forward: portfwd_crr (compiled from bench/e2e/tools/portfwd_crr.c with
#     `cc -O2` into the run's temporary directory), CONNECTIONS sequential connections from the
#     client to 10.98.0.1:PORT or as many as fit in CRR_SECONDS: each connect, a 1-byte request, a
#     1-byte answer from the guest's server, the server's close, then the client's (netperf's
#     TCP_CRR, C on both ends): connections per second, timed by the client, and the stack's
#     CPU time per connection (us). A connection rate guest->host has no meaning for a forward
#     (the forwarded port is the host's; the guest only answers), so there is one CRR row.
# Ratios are slipway / peer for rates, peer / slipway for CPU figures (above 1: slipway better).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-5}
NCONN=${3:-2000}
CRR_SECS=${4:-10}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}
STACKS=${STACKS:-pasta slirp4netns slipway}
MTUS=${MTUS:-1500 65520}
CLIENT=${CLIENT:-host}
ALL_STACKS=(pasta slirp4netns slipway)

for v in REPS SECS NCONN CRR_SECS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v: '${!v}' is not a positive count" >&2; exit 2; }
done
for m in $MTUS; do
    if ! [[ "$m" =~ ^[0-9]+$ ]] || [ "$m" -lt 576 ] || [ "$m" -gt 65520 ]; then
        echo "bench: MTUS: '$m' is not an MTU in 576..65520" >&2
        exit 2
    fi
done

case "$CLIENT" in
host) CLI_NS=hs ;;
world) CLI_NS=ws ;;
*) echo "bench: CLIENT: '$CLIENT' is neither host nor world" >&2; exit 2 ;;
esac

# Which stacks run: those asked for, except slipway while its port forwarding is missing.
SLW_NOTE=""
want=()
for s in $STACKS; do
    case "$s" in
    pasta | slirp4netns) want+=("$s") ;;
    slipway)
        if [ ! -x "$SLIPWAYD" ]; then
            SLW_NOTE="slipway: $SLIPWAYD not built (cmake --build --preset release)"
        # (--help read whole first: `--help | grep -q` under pipefail fails whenever grep's early
        # exit makes slipwayd die of SIGPIPE mid-output.)
        elif ! grep -Eq -- '--forward([ ,=]|$)' <<<"$("$SLIPWAYD" --help 2>/dev/null || true)"; then
            SLW_NOTE="slipway: port forwarding not yet available (slipwayd --help lists no --forward)"
        else
            want+=(slipway)
        fi
        ;;
    *) echo "bench: unknown stack '$s' in STACKS (pasta slirp4netns slipway)" >&2; exit 2 ;;
    esac
done
tools=(iperf3 python3 ip ss cc)
for s in "${want[@]}"; do
    case "$s" in
    pasta | slirp4netns) tools+=("$s") ;;
    slipway) tools+=("$SLIPWAYD") ;;
    esac
done

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
bench_sandbox portfwd "${tools[@]}"
trap 'exit 143' TERM # so that lib.sh's EXIT trap stops everything on a signal too
trap 'exit 130' INT

TCK=$(getconf CLK_TCK)
HOST_IP=10.98.0.1
CRR=$TMP/portfwd_crr
cc -O2 -Wall -o "$CRR" bench/e2e/tools/portfwd_crr.c
# The forwarded ports, per stack: iperf3's and the CRR server's (the same on both sides).
declare -A IPORT CPORT
IPORT[pasta]=5211 CPORT[pasta]=5212
IPORT[slirp4netns]=5221 CPORT[slirp4netns]=5222
IPORT[slipway]=5231 CPORT[slipway]=5232
# The guest servers' lifetime: the whole of one MTU's runs, with every step at its timeout.
LIFE=$((300 + ${#want[@]} * (60 + REPS * (2 * (SECS + 30) + CRR_SECS + 30))))

# --- processes: started with lib.sh's start_bg (recorded in PIDS), stopped by PID with stop_pid.
# listening NS PORT: a TCP socket listens on PORT in NS.
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }

# --- the fixed part of the world: hs with its non-loopback address, ws behind its default route.
bench_world "$HOST_IP"

# --- the stacks. up_STACK MTU: a guest namespace behind STACK at MTU, its servers listening and
# its two ports forwarded from hs; sets GUEST[STACK], PROC[STACK] (the stack's process) and
# SRV[STACK] (the guest servers' PIDs). Returns non-zero (with the reason on stderr) if the stack
# did not come up.
declare -A GUEST PROC SRV
# guest_ns NAME STACK: a fresh guest namespace with lo up, and STACK's iperf3 and CRR servers in it.
guest_ns() {
    local ns=$1 st=$2
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    GUEST[$st]=$ns
    start_bg "$ns" timeout "$LIFE" iperf3 -s -p "${IPORT[$st]}" >"$TMP/iperf3-server-$st.log" 2>&1
    SRV[$st]=$LAST
    start_bg "$ns" "$CRR" server "${CPORT[$st]}" "$LIFE" >"$TMP/crr-server-$st.out" 2>&1
    SRV[$st]+=" $LAST"
    if ! wait_for 5 listening "$ns" "${IPORT[$st]}" || ! wait_for 5 listening "$ns" "${CPORT[$st]}"; then
        echo "bench: $st: the guest's servers do not listen" >&2
        return 1
    fi
}
has_addr() { ip -n "$1" -4 addr show dev slw0 2>/dev/null | grep -q "inet $2/"; }

up_pasta() {
    guest_ns gp pasta || return 1
    start_bg hs pasta --runas 0:0 -f -4 --config-net -I slw0 -a 192.168.127.2 -n 24 \
        -g 192.168.127.1 -m "$1" -t "${IPORT[pasta]},${CPORT[pasta]}" -u none -T none -U none \
        --netns /run/netns/gp >"$TMP/pasta-$1.log" 2>&1
    PROC[pasta]=$LAST
    wait_for 10 has_addr gp 192.168.127.2 || { echo "bench: pasta did not configure gp" >&2; return 1; }
    ip -n gp link set slw0 mtu "$1"
}

# slirp_api SOCKET JSON: one request on slirp4netns's API socket; fails unless it answers "return".
slirp_api() {
    python3 - "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
r = json.loads(data or b"{}")
if "return" not in r:
    sys.exit("slirp4netns API: %s" % (data.decode(errors="replace") or "no answer"))
EOF
}
up_slirp4netns() {
    local sock=$TMP/slirp4netns-$1.sock p
    guest_ns gl slirp4netns || return 1
    start_bg hs slirp4netns --configure --mtu="$1" --api-socket "$sock" --netns-type=path \
        /run/netns/gl slw0 >"$TMP/slirp4netns-$1.log" 2>&1
    PROC[slirp4netns]=$LAST
    wait_for 10 has_addr gl 10.0.2.100 || { echo "bench: slirp4netns did not configure gl" >&2; return 1; }
    wait_for 5 test -S "$sock" || { echo "bench: slirp4netns made no API socket" >&2; return 1; }
    for p in "${IPORT[slirp4netns]}" "${CPORT[slirp4netns]}"; do
        slirp_api "$sock" '{"execute": "add_hostfwd", "arguments": {"proto": "tcp",
            "host_addr": "0.0.0.0", "host_port": '"$p"', "guest_port": '"$p"'}}' ||
            { echo "bench: slirp4netns refused the forward of port $p" >&2; return 1; }
    done
}

# slipway, written ahead of its port forwarding. It assumes: slipwayd in hs with the guest
# attached by TAP (--attach netns:...,ifname=slw0), --mtu N accepted for both MTUs, and
# --forward tcp:[HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END] listening on hs's HOSTADDR
# from start-up and connecting each accepted connection to the guest address; the guest is
# configured statically (no DHCP wait); the engine runs inside the slipwayd process, so
# /proc/PID/stat holds all its CPU time.
up_slipway() {
    local i=${IPORT[slipway]} c=${CPORT[slipway]}
    guest_ns gs slipway || return 1
    # The two ports as one range (the syntax needs no repeated flag); they must be adjacent.
    [ "$c" -eq $((i + 1)) ] || { echo "bench: slipway's ports are not adjacent" >&2; return 1; }
    start_bg hs "$SLIPWAYD" --log-level warn --mtu "$1" --attach netns:/run/netns/gs,ifname=slw0 \
        --forward "tcp:0.0.0.0:$i-$c=192.168.127.2:$i-$c" >"$TMP/slipway-$1.log" 2>&1
    PROC[slipway]=$LAST
    wait_for 10 ip -n gs link show slw0 || { echo "bench: slipwayd created no slw0 in gs" >&2; return 1; }
    ip -n gs link set slw0 mtu "$1"
    ip -n gs link set slw0 up
    ip -n gs addr add 192.168.127.2/24 dev slw0
    ip -n gs route add default via 192.168.127.1
}

# down STACK: stop its process and the guest's servers, delete the guest namespace (and with it
# the guest's links).
down() {
    local p
    [ -z "${PROC[$1]:-}" ] || stop_pid "${PROC[$1]}"
    for p in ${SRV[$1]:-}; do stop_pid "$p"; done
    [ -z "${GUEST[$1]:-}" ] || ip netns del "${GUEST[$1]}" 2>/dev/null || true
    PROC[$1]="" GUEST[$1]="" SRV[$1]=""
}

# reachable STACK: one CRR exchange from hs through STACK's forward completes (bounded).
reachable() {
    wait_for 15 ip netns exec "$CLI_NS" timeout 8 "$CRR" client "$HOST_IP:${CPORT[$1]}" 1 5 ||
        { echo "bench: $HOST_IP:${CPORT[$1]} from $CLI_NS does not reach $1's guest" >&2; return 1; }
}

# --- one measurement each. Results are appended to R[STACK|MTU|METRIC] (space-separated runs).
declare -A R
# kv KEY LINE: the value of KEY in a key=value line (empty if absent).
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1; }

# iperf STACK MTU DIR: DIR "h2g" (host->guest: the client in hs sends) or "g2h" (-R).
iperf() {
    local st=$1 mtu=$2 dir=$3 pid=${PROC[$1]} out p0 p1 vals bps bytes sbps rtx
    local flag=()
    [ "$dir" = g2h ] && flag=(-R)
    p0=$(cpu_ticks "$pid" 2>/dev/null || echo 0)
    out=$(ip netns exec "$CLI_NS" timeout $((SECS + 30)) iperf3 -c "$HOST_IP" -p "${IPORT[$st]}" \
        -t "$SECS" -J "${flag[@]}" 2>&1) || true
    p1=$(cpu_ticks "$pid" 2>/dev/null || echo "$p0")
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
    add "$st|$mtu|${dir}_cpu" "$(awk -v t=$((p1 - p0)) -v k="$TCK" -v y="$bytes" \
        'BEGIN {printf (y > 0 ? "%.3f" : "0"), (y > 0 ? t / k / (y / 1073741824) : 0)}')"
    add "$st|$mtu|${dir}_raw" "$(awk -v r="$bps" -v s="$sbps" -v x="$rtx" \
        'BEGIN {printf "%.3f/%.3f/%s", r / 1e9, s / 1e9, x}')"
}

# crr STACK MTU: portfwd_crr client from hs through the forward; 0 if it failed.
crr() {
    local st=$1 mtu=$2 pid=${PROC[$1]} out p0 p1 n rate
    p0=$(cpu_ticks "$pid" 2>/dev/null || echo 0)
    out=$(ip netns exec "$CLI_NS" timeout $((CRR_SECS + 30)) "$CRR" client "$HOST_IP:${CPORT[$st]}" \
        "$NCONN" "$CRR_SECS" 2>"$TMP/crr.err") || {
        echo "bench: $st MTU $mtu CRR failed: $(tail -n 1 "$TMP/crr.err")" >&2
        out=""
    }
    p1=$(cpu_ticks "$pid" 2>/dev/null || echo "$p0")
    n=$(kv conns "$out") rate=$(kv rate "$out")
    add "$st|$mtu|crr" "${rate:-0}"
    add "$st|$mtu|crr_cpu" "$(awk -v t=$((p1 - p0)) -v k="$TCK" -v n="${n:-0}" \
        'BEGIN {printf (n > 0 ? "%.1f" : "0"), (n > 0 ? 1e6 * t / k / n : 0)}')"
    add "$st|$mtu|crr_raw" "${rate:-0}/${n:-0}"
}

# --- the runs: for each MTU, bring every stack up, interleave the repetitions, take them down.
declare -A BROKEN RAN PEER
running=()
for mtu in $MTUS; do
    running=()
    for st in "${want[@]}"; do
        if "up_$st" "$mtu" && reachable "$st"; then
            running+=("$st")
            # The source address the guest saw (the reachability probe was its first connection).
            PEER[$st|$mtu]=$(sed -n 's/^peer=//p' "$TMP/crr-server-$st.out" | head -n 1)
            case "${PEER[$st|$mtu]}" in
            127.* | "") [ "$st" != pasta ] ||
                echo "bench: pasta's guest saw a connection from '${PEER[$st|$mtu]}':" \
                    "its loopback splice path, not the TAP" >&2 ;;
            esac
        else
            echo "bench: $st at MTU $mtu did not come up; its log:" >&2
            tail -n 20 "$TMP/$st-$mtu.log" 2>/dev/null | grep -v 'to syslog' >&2 || true
            BROKEN[$st|$mtu]=1
            down "$st"
        fi
    done
    for r in $(seq "$REPS"); do
        for st in "${running[@]}"; do
            echo "MTU $mtu rep $r: $st" >&2
            RAN[$st|$mtu]=1
            iperf "$st" "$mtu" h2g
            iperf "$st" "$mtu" g2h
            crr "$st" "$mtu"
        done
    done
    for st in "${want[@]}"; do down "$st"; done
done

# --- the table.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
# cell STACK MTU METRIC: the median, "n/a" (slipway without --forward), "fail" or "-" (not
# measured).
cell() {
    local v=${R[$1|$2|$3]:-}
    if [ -n "${BROKEN[$1|$2]:-}" ]; then echo fail
    elif [ "$1" = slipway ] && [ -n "$SLW_NOTE" ]; then echo n/a
    elif [ -z "$v" ]; then echo -
    else median <<<"$v"; fi
}
peers=(pasta slirp4netns)
hdr="| test | MTU |"
sep="|---|---|"
for n in "${ALL_STACKS[@]}"; do hdr+=" $n |" sep+="---|"; done
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
    row "iperf3 host->guest, Gbit/s" "$mtu" h2g 0
    row "iperf3 host->guest, stack CPU s/GiB" "$mtu" h2g_cpu 1
    row "iperf3 guest->host, Gbit/s" "$mtu" g2h 0
    row "iperf3 guest->host, stack CPU s/GiB" "$mtu" g2h_cpu 1
    row "TCP CRR host->guest (up to $NCONN sequential), conn/s" "$mtu" crr 0
    row "TCP CRR host->guest, stack CPU us/conn" "$mtu" crr_cpu 1
done
if [ -n "$SLW_NOTE" ]; then
    line="| $SLW_NOTE | - |"
    for _ in "${ALL_STACKS[@]}" "${peers[@]}"; do line+=" - |"; done
    echo "$line"
fi
echo
echo "(medians of $REPS; clients in the $CLIENT namespace ($CLI_NS) connect to the host's" \
    "non-loopback address $HOST_IP, forwarded to the guest; iperf3 ${SECS} s single stream, receiver's rate; CRR:" \
    "$NCONN connections or ${CRR_SECS} s, whichever ends first; CPU: the stack process's" \
    "user+system time, CPU ratios are peer/slipway, above 1: slipway spends less)"
echo "(passt $(ver passt), slirp4netns $(ver slirp4netns) with libslirp $(ver libslirp0)," \
    "iperf3 $(ver iperf3), $(cc --version | head -n 1), kernel $(uname -r), $(nproc) CPUs)"
echo
echo "raw runs, in order (iperf3 as received/sent Gbit/s/retransmits; CRR as conn/s/connections;" \
    "peer: the source address the guest's CRR server saw):"
for mtu in $MTUS; do
    for st in "${ALL_STACKS[@]}"; do
        [ -n "${RAN[$st|$mtu]:-}${BROKEN[$st|$mtu]:-}" ] || continue
        if [ -n "${BROKEN[$st|$mtu]:-}" ]; then echo "  MTU $mtu $st: did not come up"; continue; fi
        echo "  MTU $mtu $st (peer ${PEER[$st|$mtu]:-?}): h2g ${R[$st|$mtu|h2g_raw]};" \
            "g2h ${R[$st|$mtu|g2h_raw]}; crr ${R[$st|$mtu|crr_raw]};" \
            "stack CPU s/GiB h2g ${R[$st|$mtu|h2g_cpu]}, g2h ${R[$st|$mtu|g2h_cpu]};" \
            "us/conn ${R[$st|$mtu|crr_cpu]}"
    done
done
