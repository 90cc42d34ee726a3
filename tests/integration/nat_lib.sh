# shellcheck shell=bash disable=SC2034
# Shared set-up for the NAT tests (nat_*.sh). Source it right after lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/nat_lib.sh"
#
# The world: slipwayd in the host namespace ($SLW_HOST); guest namespace g1 behind slw0 at
# 192.168.127.2 with its default route via the gateway; a "world" namespace joined to the host one
# by a veth pair (slwh0 198.51.100.1/24 in the host namespace, slww0 198.51.100.2/24 in world), the
# host namespace's default route through it, so the daemon's host sockets leave that way. Servers
# "on the internet" listen on 198.51.100.2 in world; "host loopback" is 127.0.0.1 in the host
# namespace, which guests reach as the host alias 192.168.127.254.

GW=192.168.127.1
HOST_ALIAS=192.168.127.254
GUEST_IP=192.168.127.2
HOST_WORLD_IP=198.51.100.1
WORLD_IP=198.51.100.2
NAT_TOOL="$TOOLS/nat_tcp.py"

# nat_world_up: the host and world namespaces and the veth between them (before start_daemon).
nat_world_up() {
    netns_add "$SLW_HOST"
    netns_add world
    ip -n "$SLW_HOST" link add slwh0 type veth peer name slww0 netns world
    ip -n "$SLW_HOST" addr add "$HOST_WORLD_IP/24" dev slwh0
    ip -n world addr add "$WORLD_IP/24" dev slww0
    ip -n "$SLW_HOST" link set slwh0 up
    ip -n world link set slww0 up
    ip -n "$SLW_HOST" route add default via "$WORLD_IP"
    wait_until 5 in_ns "$SLW_HOST" ping -c 1 -W 1 "$WORLD_IP" || fail "the world veth does not work"
}

# nat_guest_up [NS]: configure the guest (after start_daemon --attach "$(guest_spec NS)") and wait
# until it reaches the gateway.
nat_guest_up() {
    local ns=${1:-g1}
    guest_up "$ns" "$GUEST_IP/24"
    ip -n "$ns" route add default via "$GW"
    wait_until 10 in_ns "$ns" ping -c 1 -W 1 "$GW" || fail "$ns does not reach the gateway"
}

# nat_restart ARGS...: stop the daemon, start it again with ARGS and configure g1 again (its TAP
# went away with the old daemon).
nat_restart() {
    stop_daemon
    start_daemon "$@"
    nat_guest_up g1
}

# wait_listen NS PORT: a TCP listener on PORT in NS within 10 s.
wait_listen() {
    wait_until 10 bash -c "ip netns exec $1 ss -Hltn 'sport = :$2' | grep -q ." ||
        fail "nothing listens on port $2 in $1"
}

# nat_serve NS ADDR PORT MODE ARGS...: a nat_tcp.py server in the background; it appends one line
# per finished connection to $SLW_TMP/srv-PORT.out. Waits until it listens.
nat_serve() {
    local ns=$1 addr=$2 port=$3
    shift 3
    bg "$ns" "$PY" "$NAT_TOOL" serve "$addr" "$port" "$@" --out "$SLW_TMP/srv-$port.out" \
        2>>"$SLW_TMP/srv-$port.err"
    wait_listen "$ns" "$port"
}

# srv_lines PORT: the lines the server on PORT wrote so far.
srv_lines() { cat "$SLW_TMP/srv-$1.out" 2>/dev/null || true; }
srv_count() { srv_lines "$1" | wc -l; }
srv_done() { [ "$(srv_count "$1")" -ge "$2" ]; }
# srv_wait PORT N: the server on PORT has finished N connections within 30 s; prints the N-th line.
srv_wait() {
    local port=$1 n=$2
    wait_until 30 srv_done "$port" "$n" ||
        fail "server on port $port finished $(srv_count "$port") connections, expected $n: $(cat "$SLW_TMP/srv-$port.err" 2>/dev/null)"
    srv_lines "$port" | sed -n "${n}p"
}

# nat_transfer_world SIZE SEED: the world namespace and g1 (before start_daemon), a sink on
# $WORLD_IP:5001 and a source of SIZE bytes made from SEED+1 on $WORLD_IP:5002; sets WANT_UP (SIZE
# bytes from SEED) and WANT_DOWN for nat_both_ways.
nat_transfer_world() {
    local size=$1 seed=$2
    nat_world_up
    netns_add g1
    nat_serve world "$WORLD_IP" 5001 sink
    nat_serve world "$WORLD_IP" 5002 source --bytes "$size" --seed $((seed + 1))
    WANT_DOWN=$("$PY" "$NAT_TOOL" sha $((seed + 1)) "$size")
    WANT_UP=$("$PY" "$NAT_TOOL" sha "$seed" "$size")
}

# nat_both_ways LABEL SIZE SEED WANT_UP WANT_DOWN: one upload and one download between g1 and the
# servers in world, checked at both ends. The guest sends SIZE bytes made from SEED to the sink on
# $WORLD_IP:5001, which must have got WANT_UP ("SHA256 BYTES", as `nat_tcp.py sha` prints it); then
# it reads to EOF from the source on $WORLD_IP:5002 and must have got WANT_DOWN, which the source
# must say it sent. Both connections must end with EOF at the server. Logs the rate of each
# direction. The two servers serve only these transfers (the N-th call waits for their N-th line).
nat_both_ways() {
    local label=$1 size=$2 seed=$3 want_up=$4 want_down=$5 out line sha n st secs nth
    nth=$(($(srv_count 5001) + 1))
    out=$(in_ns g1 timeout 120 "$PY" "$NAT_TOOL" send "$WORLD_IP" 5001 "$size" --seed "$seed") ||
        fail "$label: upload failed: $out"
    line=$(srv_wait 5001 "$nth")
    read -r _ sha n st <<<"$line"
    [ "$sha $n" = "$want_up" ] || fail "$label: the server got '$sha $n', the guest sent '$want_up'"
    [ "$st" = eof ] || fail "$label: the upload ended with $st at the server"
    secs=$(awk '{print $NF}' <<<"$out")
    log "ok: $label: $((size >> 20)) MiB guest->world intact in ${secs} s: $(rate "$size" "$secs")"

    nth=$(($(srv_count 5002) + 1))
    out=$(in_ns g1 timeout 120 "$PY" "$NAT_TOOL" recv "$WORLD_IP" 5002) ||
        fail "$label: download failed: $out"
    read -r _ sha n secs <<<"$out"
    [ "$sha $n" = "$want_down" ] || fail "$label: the guest got '$sha $n', the server sent '$want_down'"
    line=$(srv_wait 5002 "$nth")
    [ "$(awk '{print $2" "$3}' <<<"$line")" = "$want_down" ] || fail "$label: the server's line '$line'"
    [ "${line##* }" = eof ] || fail "$label: the download ended with ${line##* } at the server"
    log "ok: $label: $((size >> 20)) MiB world->guest intact in ${secs} s: $(rate "$size" "$secs")"
}

gw() { counter gateway "$1"; }
# counter_ge NAME MIN: the gateway counter NAME is at least MIN (for wait_until).
counter_ge() { [ "$(gw "$1")" -ge "$2" ]; }

# ms_now: milliseconds of the wall clock.
ms_now() { echo $(($(date +%s%N) / 1000000)); }

# The DNS forwarder keeps a pool of UDP sockets to its upstream (up to 8, opened as queries come):
# a test with an upstream sets NAT_DNS_UPSTREAM=ADDR:PORT and those sockets are not counted.
NAT_DNS_UPSTREAM=""

# sock_list: "FD INODE" of each socket the daemon holds (but the DNS upstream pool's).
sock_list() {
    local skip=" " a b c d port
    if [ -n "$NAT_DNS_UPSTREAM" ]; then
        IFS=.: read -r a b c d port <<<"$NAT_DNS_UPSTREAM"
        skip+=$(awk -v peer="$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$port")" \
            '$3 == peer { printf "%s ", $10 }' /proc/"$SLW_DAEMON_PID"/net/udp)
    fi
    find /proc/"$SLW_DAEMON_PID"/fd -mindepth 1 -printf '%f %l\n' 2>/dev/null |
        while read -r f l; do
            case $l in socket:*) l=${l#socket:[} ;; *) continue ;; esac
            l=${l%]}
            [[ "$skip" == *" $l "* ]] || echo "$f $l"
        done
}
# sock_fds: the number of sockets the daemon holds (as sock_list counts them).
sock_fds() { sock_list | wc -l; }

# sock_new: the sockets the daemon holds now and did not at nat_baseline, each with the lines of
# the daemon's /proc/net tables that name its inode (what it is, where it points).
sock_new() {
    local fd ino t
    while read -r fd ino; do
        grep -qx "$fd $ino" "$SLW_TMP/sockets.base" && continue
        echo "fd $fd (socket inode $ino):"
        for t in tcp tcp6 udp udp6 unix raw netlink packet; do
            awk -v ino="$ino" -v t="$t" '$0 ~ ("[ ]" ino "([ ]|$)") { print "  " t ": " $0 }' \
                /proc/"$SLW_DAEMON_PID"/net/"$t" 2>/dev/null
        done
    done < <(sock_list)
}

# nat_baseline: remember the daemon's sockets before traffic (for nat_leak_check).
nat_baseline() {
    [ "$(gw tcp_flows)" -eq 0 ] || fail "tcp_flows is $(gw tcp_flows) before any traffic"
    NAT_FD0=$(sock_fds)
    sock_list >"$SLW_TMP/sockets.base"
    log "baseline: the daemon holds $NAT_FD0 sockets, no TCP flow"
}

# nat_leak_check [SECONDS]: after the traffic, within SECONDS (default 30), the daemon has no TCP
# flow left (in any state) and holds exactly the sockets it held at nat_baseline.
nat_leak_check() {
    local secs=${1:-30} end flows fds g
    end=$((SECONDS + secs))
    while :; do
        flows=$(gw tcp_flows)
        fds=$(sock_fds)
        [ "$flows" -eq 0 ] && [ "$fds" -eq "$NAT_FD0" ] && break
        if [ $SECONDS -ge $end ]; then
            in_ns "$SLW_HOST" ss -tanp >&2 || true
            echo "sockets the daemon holds that it did not before the traffic:" >&2
            sock_new >&2
            fail "leak: ${secs} s after the traffic tcp_flows=$flows (connecting $(gw tcp_flows_connecting), established $(gw tcp_flows_established), closing $(gw tcp_flows_closing)), the daemon holds $fds sockets (baseline $NAT_FD0)"
        fi
        sleep 0.2
    done
    for g in tcp_flows_connecting tcp_flows_established tcp_flows_closing; do
        [ "$(gw "$g")" -eq 0 ] || fail "leak: tcp_flows is 0 but $g is $(gw "$g")"
    done
    log "ok: no leak: tcp_flows=0, $fds sockets as before the traffic"
}

# nat_counters: one log line with the TCP counters that tell what happened.
nat_counters() {
    local line="" c
    for c in tcp_syn_received tcp_established tcp_closed tcp_connect_refused \
        tcp_connect_unreachable tcp_connect_timeout tcp_reset_by_guest tcp_reset_by_host \
        tcp_retransmits tcp_fast_retransmits tcp_out_of_order tcp_bytes_to_host \
        tcp_bytes_to_guest tcp_flows; do
        line+=" ${c#tcp_}=$(gw "$c")"
    done
    log "counters:$line"
}

# raise_nofile: as many open files as allowed, up to 65536 (for many connections).
raise_nofile() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    log "open files limit: $(ulimit -n)"
}

# rate BYTES SECONDS: "N MiB/s (M Mbit/s)".
rate() {
    awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.001;
        printf "%.1f MiB/s (%.0f Mbit/s)", b / s / 1048576, b * 8 / s / 1e6 }'
}

# ---- datagram tests (nat_udp, nat_icmp, nat_policy, nat_limits) ----

UDP_TOOL="$TOOLS/nat_udp.py"
GUEST2_IP=192.168.127.3

# nat_guest_at NS ADDR: like nat_guest_up, for a guest at ADDR (e.g. g2 at $GUEST2_IP).
nat_guest_at() {
    local ns=$1 addr=$2
    guest_up "$ns" "$addr/24"
    ip -n "$ns" route add default via "$GW"
    wait_until 10 in_ns "$ns" ping -c 1 -W 1 "$GW" || fail "$ns does not reach the gateway"
}

# udp_serve NS ADDR PORT: a nat_udp.py echo server in the background; it appends one line per
# datagram ("SRCADDR:SRCPORT LEN TAG") to $SLW_TMP/udp-ADDR-PORT.out. Waits until it is bound.
udp_serve() {
    local ns=$1 addr=$2 port=$3
    bg "$ns" "$PY" "$UDP_TOOL" serve "$addr" "$port" --out "$SLW_TMP/udp-$addr-$port.out" \
        2>>"$SLW_TMP/udp-$addr-$port.err"
    wait_until 10 bash -c "ip netns exec $ns ss -Hlun 'src $addr:$port' | grep -q ." ||
        fail "no UDP server on $addr:$port in $ns"
}
# udp_lines ADDR PORT: the lines the UDP server on ADDR:PORT wrote so far.
udp_lines() { cat "$SLW_TMP/udp-$1-$2.out" 2>/dev/null || true; }
# udp_sources ADDR PORT TAG: the distinct source addresses:ports the server saw datagrams of TAG
# from, one per line.
udp_sources() { udp_lines "$1" "$2" | awk -v t="$3" '$3 == t { print $1 }' | sort -u; }

# udp_g NS ARGS...: nat_udp.py in guest NS (60 s at most).
udp_g() {
    local ns=$1
    shift
    in_ns "$ns" timeout 60 "$PY" "$UDP_TOOL" "$@"
}

# nat_flows_gone [SECONDS]: within SECONDS (default 30) the daemon has no TCP, UDP or ICMP flow
# left and holds exactly the sockets it held at nat_baseline (no leak of any kind).
nat_flows_gone() {
    local secs=${1:-30} end t u i fds
    end=$((SECONDS + secs))
    while :; do
        t=$(gw tcp_flows)
        u=$(gw udp_flows)
        i=$(gw icmp_flows)
        fds=$(sock_fds)
        [ "$t" -eq 0 ] && [ "$u" -eq 0 ] && [ "$i" -eq 0 ] && [ "$fds" -eq "$NAT_FD0" ] && break
        if [ $SECONDS -ge $end ]; then
            echo "sockets the daemon holds that it did not at the baseline:" >&2
            sock_new >&2
            fail "leak: ${secs} s after the traffic tcp_flows=$t udp_flows=$u icmp_flows=$i, the daemon holds $fds sockets (baseline $NAT_FD0)"
        fi
        sleep 0.2
    done
    [ "$(gw flows)" -eq 0 ] || fail "leak: no TCP/UDP/ICMP flow, but the flow table holds $(gw flows)"
    log "ok: no leak: no flow left, $fds sockets as at the baseline"
}
