#!/usr/bin/env bash
# QEMU guests, end to end: iperf3 single-stream throughput and CPU per GiB between a Linux guest
# under QEMU (tests/vm: Debian's cloud kernel, virtio-net, busybox, iperf3) and a host-loopback
# iperf3 server, both ways, and from the host into the guest through a forwarded host port, on
# five network back ends measured in the same run:
#   slipway-vu        slipwayd --attach vhost-user:SOCK; the guest's NIC with its offloads
#                     (checksum, TSO both ways, mergeable RX buffers), vm.py's default
#   slipway-vu-nooff  the same with the NIC's offloads off (vm.py boot --no-offloads)
#   slipway-stream    slipwayd --attach qemu:SOCK, QEMU `-netdev stream` on that unix socket
#   user              QEMU's own `-netdev user` (libslirp, inside the QEMU process)
#   passt             passt (Debian's) on a unix socket, QEMU `-netdev stream` to it
#
#   bench/e2e/qemu.sh [REPS] [SECONDS]
#       (root; defaults 3 repetitions, 5 s iperf3 runs: about 6 minutes under TCG on 2 cores)
#   BACKENDS="slipway-vu passt"   the back ends to measure (default: all five)
#   MTU=1500                      the MTU slipwayd (--mtu) and passt (-m) give the guest by DHCP
#                                 (default 1500). `user` is always 1500: QEMU 7.2's -netdev user
#                                 has no MTU option and libslirp's default is 1500.
#   VM_IMAGE=build/vm             the guest image (built here with `vm.py image` if missing or
#                                 stale, before entering the sandbox: it needs apt-get download)
#   ACCEL=auto                    vm.py boot --accel: auto (KVM if a probe boot works, else TCG;
#                                 vm.py caches the verdict in VM_IMAGE/accel), tcg or kvm
#
# One boot per back end, one guest at a time (boot, measure, kill) to keep the machine quiet, so
# the back ends are not interleaved; within a boot the three directions are (rep 1 of each, then
# rep 2, ...). Before the measured runs each direction gets one unrecorded 1 s run (it also proves
# the path works and warms TCG's translation cache). Medians of REPS.
#
# Layout (everything inside `unshare --net --mount`: nothing touches the machine's network):
#   hs  the "host" namespace: lo up; iperf3 -s on 0.0.0.0:5201, so on hs's 127.0.0.1 ("host
#       loopback"). slipwayd, passt and QEMU (vm.py boot runs under `ip netns exec hs`, so
#       QEMU's libslirp sees hs's loopback too) run here, as do the forward's iperf3 clients.
#   ws  a "world" namespace joined to hs by a veth pair (slww0 10.98.0.1 / slww1 10.98.0.2);
#       hs's default route goes through it because passt refuses to start without a routable
#       host interface. No benchmark traffic goes there.
#   The guest, per back end (its NIC is slw0, configured by the guest's udhcpc as vm.py's
#   `net_up` does, plus `-O mtu`: busybox udhcpc does not ask for the MTU option by default;
#   slipway and passt send it unasked when it is not 1500, libslirp not at all, so asking makes
#   every back end's guest take what it is offered; the MTU each guest ended up with is printed
#   with its lease):
#     slipway-*  static lease 192.168.127.10 (--dhcp-static for its MAC); the server is
#                192.168.127.254, slipway's host-loopback alias; forward
#                --forward tcp:HPORT=192.168.127.10:5201 (127.0.0.1:HPORT of hs).
#     user       10.0.2.15 from libslirp's DHCP; the server is 10.0.2.2 (libslirp's gateway,
#                which is the host's loopback); forward hostfwd=tcp:127.0.0.1:HPORT-:5201.
#     passt      hs's own address, 10.98.0.1, from passt's DHCP (its default); the server is the
#                gateway 10.98.0.2, which passt maps to the host's loopback (its default; no
#                --no-map-gw); forward -t HPORT:5201 (passt binds it on every hs address).
#   Each back end forwards its own host port (HPORT 15211, 15212, ...), so no TIME_WAIT of one
#   back end's listener is in the next one's way.
#
# Measurements, per back end, direction and repetition (iperf3 3.12 at both ends, one stream,
# SECONDS long, the figure is the receiver's rate: end.sum_received):
#   guest->host      the guest runs `iperf3 -c SERVER -t SECONDS -J`
#   host->guest      the same with -R (hs's server sends)
#   fwd host->guest  the guest's own `iperf3 -s -D`; hs runs `iperf3 -c 127.0.0.1 -p HPORT`
#   CPU s/GiB: user + system time (/proc/PID/stat, all threads) over the run divided by the GiB
#   received, for the network process (slipwayd, passt) and for QEMU (its vCPU thread emulates
#   the guest under TCG, its main loop moves frames for -netdev stream/user) and their sum.
#   `user` has no network process: libslirp runs inside QEMU, so its "net" column is "-" and
#   its QEMU column holds the NAT's work too. Under TCG the guest's CPU is the bottleneck, so
#   throughput mostly says how many guest instructions a byte costs; CPU per GiB is the figure
#   that says what the back end costs. For the guest-side runs the window is the `vm.py run`
#   that runs iperf3 (the guest writes its JSON to a file, fetched afterwards outside the window);
#   for the forward it is the host's iperf3 client.
# After a slipway back end's runs the script reads slipwayd's counters (--api socket, /v1/stats)
# and lists, under the raw runs, those that show loss: the guest port's drops (drop_ring_full:
# frames for the guest that found its queue full) and the TCP engine's retransmissions.
# Ratios are slipway-vu / peer for throughput, peer / slipway-vu for CPU per GiB (above 1:
# slipway-vu better).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-5}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}
ALL_BACKENDS=(slipway-vu slipway-vu-nooff slipway-stream user passt)
BACKENDS=${BACKENDS:-${ALL_BACKENDS[*]}}
MTU=${MTU:-1500}
IMAGE=$(realpath -m "${VM_IMAGE:-$ROOT/build/vm}")
ACCEL=${ACCEL:-auto}
VMPY=$ROOT/tests/vm/vm.py

want=()
tools=(iperf3 python3 ip qemu-system-x86_64 timeout)
for b in $BACKENDS; do
    case "$b" in
    slipway-vu | slipway-vu-nooff | slipway-stream) want+=("$b"); tools+=("$SLIPWAYD") ;;
    user) want+=("$b") ;;
    passt) want+=("$b"); tools+=(passt) ;;
    *) echo "bench: unknown back end '$b' in BACKENDS (${ALL_BACKENDS[*]})" >&2; exit 2 ;;
    esac
done
[ "${#want[@]}" -gt 0 ] || { echo "bench: BACKENDS is empty" >&2; exit 2; }

# The guest image: outside the sandbox, because a first build fetches the kernel package.
if [ -z "${SLW_BENCH_SANDBOXED:-}" ]; then
    python3 "$VMPY" image "$IMAGE" >&2 || { echo "bench: no guest image in $IMAGE" >&2; exit 1; }
fi

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
bench_sandbox qemu "${tools[@]}"
trap 'exit 143' TERM # so that lib.sh's EXIT trap stops everything on a signal too
trap 'exit 130' INT

TCK=$(getconf CLK_TCK)
IPERF_PORT=5201
GUEST_MAC=52:54:00:00:00:0a
SLW_GUEST=192.168.127.10

# --- the fixed part of the world: hs with the iperf3 server, and ws behind hs's default route.
bench_world
start_bg hs iperf3 -s -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1
wait_for 5 ip netns exec hs python3 -c \
    "import socket; socket.create_connection(('127.0.0.1', $IPERF_PORT), 1).close()" ||
    { echo "bench: no iperf3 server on hs port $IPERF_PORT" >&2; exit 1; }

# --- the back ends. up_BACKEND DIR HPORT: start its network process (if any) in hs; set NET
# (vm.py's --net), BOOT_FLAGS, SERVER (where the guest finds the host's loopback) and PROC (the
# network process, "" for none). Non-zero (reason on stderr) if it did not come up.
NET="" SERVER="" PROC="" BOOT_FLAGS=()
up_slipway() { # DIR HPORT ATTACH
    start_bg hs "$SLIPWAYD" --log-level warn --mtu "$MTU" --resolv-conf /dev/null \
        --api "$1/api.sock" --attach "$3" --dhcp-static "$GUEST_MAC=$SLW_GUEST" \
        --forward "tcp:$2=$SLW_GUEST:$IPERF_PORT" >"$1/net.log" 2>&1
    PROC=$LAST SERVER=192.168.127.254
}
up_slipway-vu() {
    up_slipway "$1" "$2" "vhost-user:$1/vu.sock"
    NET=vhost-user:$1/vu.sock BOOT_FLAGS=()
    wait_for 10 test -S "$1/vu.sock" || { echo "bench: slipwayd made no $1/vu.sock" >&2; return 1; }
}
up_slipway-vu-nooff() {
    up_slipway-vu "$@"
    BOOT_FLAGS=(--no-offloads)
}
up_slipway-stream() {
    up_slipway "$1" "$2" "qemu:$1/qs.sock"
    NET=stream:$1/qs.sock BOOT_FLAGS=()
    wait_for 10 test -S "$1/qs.sock" || { echo "bench: slipwayd made no $1/qs.sock" >&2; return 1; }
}
up_user() {
    NET="user:hostfwd=tcp:127.0.0.1:$2-:$IPERF_PORT" BOOT_FLAGS=() PROC="" SERVER=10.0.2.2
}
# passt (0.0~git20230309): -f foreground (its PID stays the one recorded), -e log to stderr too
# (it has no syslog here), -4 IPv4 only like the others, -m the MTU its DHCP offers, -s the
# socket QEMU connects to, -t the forward (hs port HPORT to the guest's 5201), -u none. Address,
# gateway and the gateway-to-loopback mapping are its defaults (hs's 10.98.0.1 via 10.98.0.2).
# Started as root, it becomes nobody before it binds its socket (its default, kept: it is how
# passt runs), so the socket's directory must be one nobody can reach and write: $TMP (0700)
# gets search permission for others and the socket a 1777 directory of its own. (In a
# directory nobody cannot write, this passt still logs "UNIX domain socket bound at PATH", but no
# socket appears.)
up_passt() {
    chmod 711 "$TMP" "$1"
    mkdir -m 1777 "$1/sock"
    start_bg hs passt -f -e -4 -m "$MTU" -s "$1/sock/passt.sock" -t "$2:$IPERF_PORT" -u none \
        >"$1/net.log" 2>&1
    PROC=$LAST SERVER=10.98.0.2 NET=stream:$1/sock/passt.sock BOOT_FLAGS=()
    wait_for 10 test -S "$1/sock/passt.sock" ||
        { echo "bench: passt made no $1/sock/passt.sock" >&2; return 1; }
}

# slw_counters DIR: slipwayd's loss-related counters that are not zero, from its API (/v1/stats,
# read once the runs are over, so they cover the whole boot, warm-up runs included): the guest
# port's drops and the TCP engine's retransmissions.
slw_counters() {
    timeout 10 python3 - "$1/api.sock" <<'EOF' || echo "(no counters: the API did not answer)"
import json, re, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"GET /v1/stats HTTP/1.1\r\nHost: slipway\r\nConnection: close\r\n\r\n")
buf, want = b"", None
while want is None or len(buf) < want:
    b = s.recv(65536)
    if not b:
        break
    buf += b
    head, sep, _ = buf.partition(b"\r\n\r\n")
    if sep and want is None:
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        want = len(head) + 4 + int(m.group(1)) if m else None
j = json.loads(buf.split(b"\r\n\r\n", 1)[1])
out = []
for p in j.get("ports", []):
    if p.get("name") != "gateway":
        out += ["port %s=%d" % (k, v) for k, v in sorted(p.get("counters", {}).items())
                if v and (k.startswith("drop") or k == "virtio_rx_no_buffers")]
g = j.get("gateway", {})
out += ["engine %s=%d" % (k, g[k]) for k in ("tcp_retransmits", "tcp_fast_retransmits",
        "tcp_drop_link_full", "tcp_drop_no_buffer", "drop_ring_full", "drop_no_buffer") if g.get(k)]
print(", ".join(out) if out else "no drops, no retransmissions")
EOF
}

# vm DIR TIMEOUT SCRIPT: SCRIPT in the guest of DIR, its output in DIR/vm.out; vm.py's status.
vm() {
    local rc=0
    timeout $(($2 + 30)) python3 "$VMPY" run --dir "$1/vm" --timeout "$2" "$3" >"$1/vm.out" 2>&1 || rc=$?
    return $rc
}

# --- one measurement. Results are appended to R[BACKEND|DIR|METRIC] (space-separated runs,
# lib.sh's add).
declare -A R BROKEN LEASE COUNTERS
# parse_iperf WHAT: iperf3 -J output on stdin -> "bits/s bytes sender_bits/s retransmits", or
# "0 0 0 -" with the reason on stderr. Takes the outermost {...} (vm.py may add lines around).
parse_iperf() {
    python3 -c '
import json, sys
t = sys.stdin.read()
a, b = t.find("{"), t.rfind("}")
try:
    j = json.loads(t[a:b + 1]) if a >= 0 < b else {"error": "no JSON output: %r" % t[-200:]}
except ValueError:
    j = {"error": "bad JSON output: %r" % t[-200:]}
e = j.get("end", {})
r, s = e.get("sum_received"), e.get("sum_sent")
if "error" in j or not r or not s:
    print("bench: %s: iperf3 failed: %s" % (sys.argv[1], j.get("error", "no summary")), file=sys.stderr)
    print("0 0 0 -")
else:
    print(r["bits_per_second"], r["bytes"], s["bits_per_second"], s.get("retransmits", "-"))
' "$1" || echo "0 0 0 -"
}
# iperf BACKEND DIR TAG T RECORD: one run of T seconds in direction TAG (up: guest->host, down:
# host->guest, fwd: host->guest through the forward); RECORD=1 records it. Status 0 if it moved
# data.
iperf() {
    local b=$1 d=$2 tag=$3 t=$4 rec=$5 out n0 n1 q0 q1 vals bps bytes sbps rtx flag=""
    [ "$tag" = down ] && flag=-R
    n0=$([ -n "$PROC" ] && cpu_ticks "$PROC" || echo 0)
    q0=$(cpu_ticks "$QEMU")
    if [ "$tag" = fwd ]; then
        out=$(ip netns exec hs timeout $((t + 30)) iperf3 -c 127.0.0.1 -p "$HPORT" -t "$t" -J \
            --connect-timeout 10000 2>&1) || true
        n1=$([ -n "$PROC" ] && cpu_ticks "$PROC" || echo 0)
        q1=$(cpu_ticks "$QEMU")
    else
        vm "$d" $((t + 60)) "rm -f /tmp/ij; timeout $((t + 40)) iperf3 -c $SERVER -p $IPERF_PORT \
            -t $t -J --connect-timeout 10000 $flag >/tmp/ij 2>&1; true" || true
        n1=$([ -n "$PROC" ] && cpu_ticks "$PROC" || echo 0)
        q1=$(cpu_ticks "$QEMU")
        vm "$d" 60 "cat /tmp/ij" || true
        out=$(cat "$d/vm.out")
    fi
    vals=$(parse_iperf "$b $tag" <<<"$out")
    read -r bps bytes sbps rtx <<<"$vals"
    [ "$rec" = 1 ] || { [ "$bytes" != 0 ]; return; }
    add "$b|$tag" "$(awk -v x="$bps" 'BEGIN {printf "%.3f", x / 1e9}')"
    add "$b|${tag}_raw" "$(awk -v r="$bps" -v s="$sbps" -v x="$rtx" \
        'BEGIN {printf "%.3f/%.3f/%s", r / 1e9, s / 1e9, x}')"
    [ "$bytes" != 0 ] || return 1
    # s/GiB = ticks / TCK / (bytes / 2^30)
    perg() { awk -v t="$1" -v k="$TCK" -v y="$bytes" 'BEGIN {printf "%.3f", t / k / (y / 1073741824)}'; }
    if [ -n "$PROC" ]; then add "$b|${tag}_net" "$(perg $((n1 - n0)))"; fi
    add "$b|${tag}_qemu" "$(perg $((q1 - q0)))"
    add "$b|${tag}_tot" "$(perg $((n1 - n0 + q1 - q0)))"
}

# --- the runs: one back end at a time.
DIRS=(up down fwd)
hport=15210
for b in "${want[@]}"; do
    hport=$((hport + 1))
    HPORT=$hport
    d=$TMP/$b
    mkdir -p "$d"
    echo "== $b: starting" >&2
    if ! "up_$b" "$d" "$HPORT"; then
        BROKEN[$b]="did not start"
    elif ! QEMU=$(ip netns exec hs timeout 300 python3 "$VMPY" boot --image "$IMAGE" --dir "$d/vm" \
        --net "$NET" --mac "$GUEST_MAC" --name "bench-$b" --accel "$ACCEL" --timeout 240 \
        "${BOOT_FLAGS[@]}" 2>"$d/boot.err") || [ -z "$QEMU" ]; then
        BROKEN[$b]="guest did not boot"
        cat "$d/boot.err" >&2
    else
        PIDS+=("$QEMU")
        grep -h 'up, qemu pid' "$d/boot.err" >&2 || true
        # shellcheck disable=SC2016 # expanded by the guest's shell
        if ! vm "$d" 60 'ip link set slw0 up && udhcpc -i slw0 -s /etc/slw-udhcpc -n -q -t 4 -T 2 -A 1 \
            -O mtu && echo "SLW-MTU $(cat /sys/class/net/slw0/mtu)" && iperf3 -s -D -p 5201'; then
            BROKEN[$b]="no DHCP lease"
            cat "$d/vm.out" >&2
        else
            LEASE[$b]="$(sed -n 's/^SLW-LEASE \(ip=[^ ]*\) mask=\([^ ]*\) \(router=[^ ]*\).*/\1\/\2 \3/p' \
                "$d/vm.out" | tail -n 1), slw0 mtu $(sed -n 's/^SLW-MTU //p' "$d/vm.out" | tail -n 1)"
            echo "$b: ${LEASE[$b]}" >&2
            for tag in "${DIRS[@]}"; do
                iperf "$b" "$d" "$tag" 1 0 || echo "bench: $b: warm-up $tag moved no data" >&2
            done
            for r in $(seq "$REPS"); do
                for tag in "${DIRS[@]}"; do
                    echo "$b rep $r: $tag" >&2
                    iperf "$b" "$d" "$tag" "$SECS" 1 || true
                done
            done
        fi
        if [ -n "$PROC" ] && ! alive "$PROC"; then
            BROKEN[$b]="${BROKEN[$b]:-}${BROKEN[$b]:+; }network process died"
        elif [ "${b#slipway}" != "$b" ]; then
            COUNTERS[$b]=$(slw_counters "$d")
        fi
        timeout 30 python3 "$VMPY" kill --dir "$d/vm" --term || true
        stop_pid "$QEMU"
    fi
    if [ -n "$PROC" ]; then stop_pid "$PROC"; fi
    if [ -n "${BROKEN[$b]:-}" ]; then
        echo "bench: $b: ${BROKEN[$b]}; its log:" >&2
        grep -v 'to syslog' "$d/net.log" 2>/dev/null | tail -n 20 >&2 || true
        tail -n 20 "$d/vm/console.log" 2>/dev/null >&2 || true
    fi
    PROC=""
done

# --- the table.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
# cell BACKEND METRIC: the median, "fail" or "-" (not measured / not applicable).
cell() {
    local v=${R[$1|$2]:-}
    if [ -n "${BROKEN[$1]:-}" ] && [ -z "$v" ]; then echo fail
    elif [ -z "$v" ]; then echo -
    else median <<<"$v"; fi
}
declare -A DNAME=([up]="guest->host" [down]="host->guest" [fwd]="fwd host->guest")
accel=$(cat "$IMAGE/accel" 2>/dev/null || echo "$ACCEL")
echo
echo "QEMU guest ($accel, 1 vCPU), MTU $MTU (user: 1500), iperf3 ${SECS} s single stream," \
    "medians of $REPS"
echo
echo "| back end | direction | Gbit/s | net CPU s/GiB | QEMU CPU s/GiB | total CPU s/GiB |"
echo "|---|---|---|---|---|---|"
for b in "${want[@]}"; do
    for tag in "${DIRS[@]}"; do
        echo "| $b | ${DNAME[$tag]} | $(cell "$b" "$tag") | $(cell "$b" "${tag}_net") |" \
            "$(cell "$b" "${tag}_qemu") | $(cell "$b" "${tag}_tot") |"
    done
done
echo
have() { local x; for x in "${want[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
if have slipway-vu; then
    for tag in "${DIRS[@]}"; do
        if have passt; then
            echo "slipway-vu vs passt, ${DNAME[$tag]}: throughput" \
                "$(ratio "$(cell slipway-vu "$tag")" "$(cell passt "$tag")" 0)," \
                "total CPU/GiB $(ratio "$(cell slipway-vu "${tag}_tot")" "$(cell passt "${tag}_tot")" 1)" \
                "(passt/slipway-vu: above 1, slipway spends less)"
        fi
        if have user; then
            echo "slipway-vu vs user, ${DNAME[$tag]}: throughput" \
                "$(ratio "$(cell slipway-vu "$tag")" "$(cell user "$tag")" 0)," \
                "total CPU/GiB $(ratio "$(cell slipway-vu "${tag}_tot")" "$(cell user "${tag}_tot")" 1)"
        fi
    done
    echo
fi
echo "(net CPU: slipwayd's or passt's user+system time per GiB received; user has no network" \
    "process: libslirp runs inside QEMU, so its QEMU column includes the NAT. QEMU CPU: all its" \
    "threads, the guest's emulation included. Gbit/s: the receiver's rate.)"
echo "(accelerator $accel; qemu $(ver qemu-system-x86), passt $(ver passt), iperf3 $(ver iperf3)," \
    "guest kernel $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel"])' \
    "$IMAGE/image.json" 2>/dev/null || echo "?"), host kernel $(uname -r), $(nproc) CPUs)"
echo
echo "guest leases and raw runs (iperf3 as received/sent Gbit/s/retransmits):"
for b in "${want[@]}"; do
    if [ -n "${BROKEN[$b]:-}" ]; then echo "  $b: ${BROKEN[$b]}"; fi
    [ -n "${LEASE[$b]:-}" ] || continue
    echo "  $b: ${LEASE[$b]}"
    [ -z "${COUNTERS[$b]:-}" ] || echo "    slipwayd counters over the boot: ${COUNTERS[$b]}"
    for tag in "${DIRS[@]}"; do
        echo "    ${DNAME[$tag]}: ${R[$b|${tag}_raw]:-none}; net CPU s/GiB ${R[$b|${tag}_net]:--};" \
            "QEMU CPU s/GiB ${R[$b|${tag}_qemu]:--}"
    done
done
