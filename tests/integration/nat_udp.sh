#!/usr/bin/env bash
# UDP through the NAT engine from a namespace guest, against an echo server in the world namespace
# (tools/nat_udp.py, which records each datagram's source): round trips come back byte-exact; the
# server sees one stable source port (the host's world address) per guest flow, and another guest
# socket is another stable port; 8 KiB, 60 KiB and maximum-size (65,507-byte) datagrams pass both
# ways (fragmented by the guest and reassembled, fragmented again towards the guest); an ICMP port
# unreachable reaches the guest's connected socket (ECONNREFUSED), a router's host unreachable
# too (EHOSTUNREACH, from the gateway); the host alias reaches a server on the host's 127.0.0.1; a
# datagram to an unused port of the gateway, or of the host alias, gets ECONNREFUSED; flows
# survive idle gaps shorter than --udp-timeout, expire after it (and after the shorter
# --udp-dns-timeout on port 123), and then no flow and no socket is left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

UDP_TIMEOUT=4
nat_world_up
netns_add g1
# World routes 203.0.113.0/24 to "unreachable" and, forwarding, answers host unreachable for it.
ip -n world route add unreachable 203.0.113.0/24
in_ns world sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0
udp_serve world "$WORLD_IP" 7000
udp_serve world "$WORLD_IP" 123
udp_serve "$SLW_HOST" 127.0.0.1 7002

start_daemon --udp-timeout "$UDP_TIMEOUT" --udp-dns-timeout 1 --attach "$(guest_spec g1)"
nat_guest_up g1
nat_baseline

# delta NAME BEFORE: how much gateway counter NAME rose since BEFORE.
delta() { echo $(($(gw "$1") - $2)); }

# --- one flow: 50 round trips, one stable source port ---
op0=$(gw udp_flows_opened)
th0=$(gw udp_datagrams_to_host)
tg0=$(gw udp_datagrams_to_guest)
out=$(udp_g g1 echo "$WORLD_IP" 7000 --count 50 --size 200 --tag a) || fail "echo of 50 datagrams: $out"
read -r _ n gport retries secs <<<"$out"
src=$(udp_sources "$WORLD_IP" 7000 a0)
[ "$(wc -l <<<"$src")" -eq 1 ] || fail "50 datagrams of one guest socket came from $(paste -sd ' ' <<<"$src")"
[ "${src%:*}" = "$HOST_WORLD_IP" ] || fail "the server saw source $src, expected $HOST_WORLD_IP:PORT"
[ "$(delta udp_flows_opened "$op0")" -eq 1 ] || fail "one guest flow opened $(delta udp_flows_opened "$op0") NAT flows"
[ "$(delta udp_datagrams_to_host "$th0")" -ge 50 ] || fail "udp_datagrams_to_host rose by $(delta udp_datagrams_to_host "$th0")"
[ "$(delta udp_datagrams_to_guest "$tg0")" -ge 50 ] || fail "udp_datagrams_to_guest rose by $(delta udp_datagrams_to_guest "$tg0")"
log "ok: 50 round trips from guest port $gport in ${secs} s ($retries resent), all from $src at the server"

# --- two sockets at once, interleaved: two flows, each its own stable port ---
out=$(udp_g g1 echo "$WORLD_IP" 7000 --count 25 --size 300 --tag b --flows 2) || fail "two interleaved flows: $out"
b0=$(udp_sources "$WORLD_IP" 7000 b0)
b1=$(udp_sources "$WORLD_IP" 7000 b1)
[ "$(wc -l <<<"$b0")" -eq 1 ] && [ "$(wc -l <<<"$b1")" -eq 1 ] ||
    fail "two interleaved guest sockets came from '$(paste -sd ' ' <<<"$b0")' and '$(paste -sd ' ' <<<"$b1")'"
[ "$b0" != "$b1" ] || fail "two guest flows share the source $b0 at the server"
[ "$b0" != "$src" ] && [ "$b1" != "$src" ] || fail "a new flow reuses the live flow's source $src"
[ "$(gw udp_flows)" -ge 2 ] || fail "udp_flows is $(gw udp_flows) right after two flows"
log "ok: two interleaved guest sockets (ports $(awk '{print $3}' <<<"$out")): $b0 and $b1 at the server, 25 each"

# --- big datagrams both ways, byte-exact (the tool compares every echo) ---
fr0=$(gw frag_reassembled)
ft0=$(gw udp_fragments_to_guest)
for size in 8192 60000 65507; do
    out=$(udp_g g1 echo "$WORLD_IP" 7000 --count 3 --size "$size" --tag "s$size") ||
        fail "3 datagrams of $size bytes: $out"
    n=$(udp_lines "$WORLD_IP" 7000 | awk -v t="s${size}0" -v s="$size" '$3 == t && $2 == s' | wc -l)
    [ "$n" -ge 3 ] || fail "the server got $n datagrams of $size bytes, expected 3"
    log "ok: 3 datagrams of $size bytes each way, byte-exact ($(awk '{print $4}' <<<"$out") resent)"
done
# 1,480 payload bytes per fragment at MTU 1500: 6 + 41 + 45 fragments per datagram size.
[ "$(delta frag_reassembled "$fr0")" -ge 9 ] || fail "frag_reassembled rose by $(delta frag_reassembled "$fr0"), expected >= 9"
[ "$(delta udp_fragments_to_guest "$ft0")" -ge $((3 * (6 + 41 + 45))) ] ||
    fail "udp_fragments_to_guest rose by $(delta udp_fragments_to_guest "$ft0"), expected >= $((3 * 92))"
log "ok: frag_reassembled +$(delta frag_reassembled "$fr0"), udp_fragments_to_guest +$(delta udp_fragments_to_guest "$ft0")"

# --- errors: port unreachable from the world, relayed to the guest's connected socket ---
ir0=$(gw udp_icmp_relayed)
out=$(udp_g g1 refused "$WORLD_IP" 7001 --recverr)
read -r res ms icmp <<<"$out"
[ "$res" = error:ECONNREFUSED ] || fail "a datagram to a closed world port: $out, expected error:ECONNREFUSED"
[ "$ms" -lt 1000 ] || fail "ECONNREFUSED took $ms ms (the first datagram's ICMP error was not relayed)"
[ "$icmp" = "icmp 3 3 $WORLD_IP" ] || fail "closed world port: the guest got '$icmp', expected port unreachable (icmp 3 3) from $WORLD_IP"
wait_until 3 counter_ge udp_icmp_relayed $((ir0 + 1)) || fail "udp_icmp_relayed $(gw udp_icmp_relayed), was $ir0"
log "ok: closed world port: $res after $ms ms ($icmp); udp_icmp_relayed=$(gw udp_icmp_relayed)"

# A router's error: world cannot reach 203.0.113.0/24 and says host unreachable; the guest gets
# it from the gateway (host-side routers stay hidden). (The world kernel's own rate limit on these
# errors may skip the first datagram; the tool sends again after 1 s.)
out=$(udp_g g1 refused 203.0.113.5 9 --recverr)
read -r res ms icmp <<<"$out"
[ "$res $icmp" = "error:EHOSTUNREACH icmp 3 1 $GW" ] ||
    fail "a datagram to a destination the world router cannot reach: '$out', expected error:EHOSTUNREACH after icmp 3 1 from $GW"
[ "$(gw udp_icmp_relayed)" -ge $((ir0 + 2)) ] || fail "udp_icmp_relayed $(gw udp_icmp_relayed), was $ir0"
log "ok: unreachable beyond the world router: $res after $ms ms ($icmp)"

# --- the host alias reaches the host's 127.0.0.1 ---
out=$(udp_g g1 echo "$HOST_ALIAS" 7002 --count 5 --size 500 --tag h) || fail "echo via the host alias: $out"
hsrc=$(udp_sources 127.0.0.1 7002 h0)
[ "$(wc -l <<<"$hsrc")" -eq 1 ] && [ "${hsrc%:*}" = 127.0.0.1 ] ||
    fail "the host-loopback server saw '$(paste -sd ' ' <<<"$hsrc")', expected one 127.0.0.1:PORT"
log "ok: 5 round trips to $HOST_ALIAS:7002 reached 127.0.0.1:7002 in the host namespace from $hsrc"
out=$(udp_g g1 refused "$HOST_ALIAS" 7003 --recverr)
read -r res ms icmp <<<"$out"
[ "$res $icmp" = "error:ECONNREFUSED icmp 3 3 $HOST_ALIAS" ] ||
    fail "a closed host-loopback port via the alias: '$out', expected error:ECONNREFUSED after icmp 3 3 from $HOST_ALIAS"
log "ok: closed host-loopback port via the alias: $res after $ms ms ($icmp)"

# --- an unused port of the gateway: port unreachable from the gateway itself ---
pu0=$(gw udp_port_unreachable)
out=$(udp_g g1 refused "$GW" 9 --recverr)
read -r res ms icmp <<<"$out"
[ "$res $icmp" = "error:ECONNREFUSED icmp 3 3 $GW" ] ||
    fail "a datagram to $GW:9: '$out', expected error:ECONNREFUSED after icmp 3 3 from $GW"
[ "$(gw udp_port_unreachable)" -ge $((pu0 + 1)) ] || fail "udp_port_unreachable $(gw udp_port_unreachable), was $pu0"
log "ok: $GW:9: $res after $ms ms ($icmp); udp_port_unreachable=$(gw udp_port_unreachable)"

# --- timeouts ---
# Idle 2 s (< --udp-timeout $UDP_TIMEOUT) between datagrams: the flow lives on, one source port.
# Idle 2.5 s on port 123 (> --udp-dns-timeout 1): every datagram is a new flow, a new port.
ex0=$(gw udp_flows_expired)
bg g1 timeout 60 "$PY" "$UDP_TOOL" echo "$WORLD_IP" 7000 --count 3 --tag t --pause-every 1 --pause 2 \
    >"$SLW_TMP/t.out" 2>&1
tpid=$LAST_PID
out=$(udp_g g1 echo "$WORLD_IP" 123 --count 2 --tag n --pause-every 1 --pause 2.5) || fail "echo to port 123: $out"
wait "$tpid" || fail "echo with 2 s gaps: $(cat "$SLW_TMP/t.out")"
t=$(udp_sources "$WORLD_IP" 7000 t0)
[ "$(wc -l <<<"$t")" -eq 1 ] || fail "a flow idle 2 s at a time (--udp-timeout $UDP_TIMEOUT) came from $(paste -sd ' ' <<<"$t")"
nn=$(udp_sources "$WORLD_IP" 123 n0)
[ "$(wc -l <<<"$nn")" -eq 2 ] || fail "two datagrams to port 123 2.5 s apart (--udp-dns-timeout 1) came from '$(paste -sd ' ' <<<"$nn")', expected two ports"
[ "$(gw udp_flows_expired)" -ge $((ex0 + 1)) ] || fail "udp_flows_expired $(gw udp_flows_expired), was $ex0"
log "ok: 3 datagrams 2 s apart kept $t; 2 datagrams to port 123 2.5 s apart came from $(paste -sd ' ' <<<"$nn")"

# Every flow expires within --udp-timeout (+ the 1 s tick) after the last datagram, not sooner.
start=$(ms_now)
[ "$(gw udp_flows)" -ge 1 ] || fail "udp_flows is 0 right after the last datagram"
udp_gone() { [ "$(gw udp_flows)" -eq 0 ]; }
wait_until $((UDP_TIMEOUT + 6)) udp_gone || fail "udp_flows is $(gw udp_flows) $((UDP_TIMEOUT + 6)) s after the traffic"
took=$(($(ms_now) - start))
[ "$took" -ge $((UDP_TIMEOUT * 1000 - 2600)) ] || fail "the flows expired $took ms after the traffic, --udp-timeout is $UDP_TIMEOUT s"
opened=$(gw udp_flows_opened)
expired=$(gw udp_flows_expired)
[ "$expired" -eq "$opened" ] || fail "udp_flows_opened=$opened but udp_flows_expired=$expired (evicted $(gw udp_flows_evicted))"
log "ok: all $opened flows expired ($took ms after the last datagram); udp_flows=0"

nat_flows_gone 10
expect "the daemon is alive" daemon_alive
stop_daemon
