#!/usr/bin/env bash
# DHCP leases per second: perfdhcp (kea-admin) against slipway's DHCP server and, as the
# baseline in the same run, against dnsmasq's, each serving one namespace "client" link.
#
#   bench/e2e/dhcp.sh [REPS] [SECONDS]     (root; defaults 3 repetitions of 5 s)
#
# perfdhcp speaks DHCPv4 as a relay agent on the client link (giaddr = its own address), which
# both servers serve. It runs DISCOVER/OFFER/REQUEST/ACK exchanges for 240 simulated clients at
# a requested 20,000/s. On two cores perfdhcp itself saturates first (it busy-polls, and loses
# offers both servers did send: slipway's counters show every DISCOVER answered), so leases/s
# says more about perfdhcp than about the servers; the second row, each server's CPU time per
# lease granted (user + system, from /proc/PID/stat), is the servers' own figure. Everything runs
# inside `unshare --net --mount`: nothing touches the machine's network. Prints a markdown table
# of medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${1:-3}
SECS=${2:-5}
SLIPWAYD=${SLIPWAYD:-$ROOT/build/release/bin/slipwayd}

BENCH_ARGS=("$@")
. bench/e2e/lib.sh
bench_sandbox dhcp perfdhcp dnsmasq "$SLIPWAYD"

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# perfdhcp_run NS IFACE SERVER_PID: "LEASES_PER_S CPU_US_PER_LEASE" over one SECS run: completed
# 4-way exchanges per second, and the server process's CPU time (user + system, so the kernel
# work of its own system calls included) per lease granted.
perfdhcp_run() {
    local out c0 c1 leases
    c0=$(cpu_ticks "$3")
    out=$(ip netns exec "$1" timeout $((SECS + 20)) perfdhcp -4 -l "$2" -r 20000 -R 240 \
        -p "$SECS" 2>&1) || true
    c1=$(cpu_ticks "$3")
    # The REQUEST-ACK block's received packets: each is one lease granted.
    leases=$(awk '/Statistics for: REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}' <<<"$out")
    awk -v l="${leases:-0}" -v s="$SECS" -v c=$((c1 - c0)) -v t="$TICK_US" \
        'BEGIN {printf "%.0f %.1f\n", l / s, (l > 0 ? c * t / l : 0)}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

ip netns add hs
ip netns add cs
ip netns add hd
ip netns add cd
for n in hs cs hd cd; do ip -n "$n" link set lo up; done

# slipway: the client namespace is attached as a TAP, as a guest is.
ip netns exec hs "$SLIPWAYD" --log-level warn --attach netns:/run/netns/cs,ifname=slw0 \
    >"$TMP/slipwayd.log" 2>&1 &
SLW_PID=$!
PIDS+=($!)
for _ in $(seq 50); do ip -n cs link show slw0 >/dev/null 2>&1 && break; sleep 0.1; done
ip -n cs link set slw0 up
ip -n cs addr add 192.168.127.250/24 dev slw0

# dnsmasq: the same subnet and pool on a veth pair; DHCP only (--port=0), leases in memory.
# --no-ping: by default dnsmasq probes every address with an ICMP echo (and waits for it) before
# offering it, which measures its probe timer instead of its server; slipway does no such probe.
ip link add slwb0 netns hd type veth peer name slwb1 netns cd
ip -n hd addr add 192.168.127.1/24 dev slwb0
ip -n hd link set slwb0 up
ip -n cd addr add 192.168.127.250/24 dev slwb1
ip -n cd link set slwb1 up
ip netns exec hd dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=0 --no-ping \
    --interface=slwb0 --bind-interfaces --dhcp-range=192.168.127.2,192.168.127.253,1h \
    --dhcp-authoritative --leasefile-ro --pid-file="$TMP/dnsmasq.pid" --log-facility=- \
    --quiet-dhcp >"$TMP/dnsmasq.log" 2>&1 &
DNQ_PID=$!
PIDS+=($!)
sleep 1

slw=() dnq=() slw_cpu=() dnq_cpu=()
for _ in $(seq "$REPS"); do
    read -r r c < <(perfdhcp_run cs slw0 "$SLW_PID")
    slw+=("$r") slw_cpu+=("$c")
    read -r r c < <(perfdhcp_run cd slwb1 "$DNQ_PID")
    dnq+=("$r") dnq_cpu+=("$c")
done
s=$(printf '%s\n' "${slw[@]}" | median)
d=$(printf '%s\n' "${dnq[@]}" | median)
sc=$(printf '%s\n' "${slw_cpu[@]}" | median)
dc=$(printf '%s\n' "${dnq_cpu[@]}" | median)
echo "| benchmark | slipway | baseline | baseline figure | ratio |"
echo "|---|---|---|---|---|"
awk -v s="$s" -v d="$d" 'BEGIN {
    printf "| DHCP leases/s (perfdhcp, 240 clients, median of '"$REPS"' x '"$SECS"' s) | %d | dnsmasq 2.90 | %d | %.2fx |\n",
        s, d, (d > 0 ? s / d : 0) }'
# perfdhcp saturates a core of the two before either server does, so leases/s mostly measures
# perfdhcp; CPU per lease measures the servers (lower is better: ratio = dnsmasq / slipway).
awk -v s="$sc" -v d="$dc" 'BEGIN {
    printf "| DHCP server CPU per lease (user+system, same runs) | %.1f us | dnsmasq 2.90 | %.1f us | %.2fx |\n",
        s, d, (s > 0 ? d / s : 0) }'
echo "(runs: slipway ${slw[*]} leases/s, ${slw_cpu[*]} us/lease; dnsmasq ${dnq[*]} leases/s, ${dnq_cpu[*]} us/lease)"
