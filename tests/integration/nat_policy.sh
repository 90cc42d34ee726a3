#!/usr/bin/env bash
# The NAT engine's egress policy, from a namespace guest against servers in the world namespace
# (198.51.100.2 and .3) and on the host's 127.0.0.1:
#   - --deny of a world address and port refuses TCP at once with a reset (curl exit 7,
#     tcp_denied_policy), UDP with ICMP "communication administratively prohibited" (type 3 code
#     13) from the gateway (EHOSTUNREACH on the guest's connected socket, udp_denied_policy), and
#     an /icmp rule refuses ping the same way (icmp_denied_policy) — while other ports and
#     protocols of the same host still work, and the servers are reachable from the host
#     namespace itself (the refusal is slipway's);
#   - first match wins: an --allow before a broader --deny opens its port; an --allow after a
#     --deny that matched first changes nothing;
#   - the cloud metadata address 169.254.169.254 (routed to the world, which answers on it) is
#     denied by default for TCP, UDP and ICMP, and reachable with --allow 169.254.169.254;
#   - --host-alias-ports 8080: the host alias reaches 127.0.0.1:8080 (TCP and UDP) but not 8081.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

WORLD2_IP=198.51.100.3
META=169.254.169.254
nat_world_up
netns_add g1
ip -n world addr add "$WORLD2_IP/24" dev slww0
ip -n world addr add "$META/32" dev lo
ip -n "$SLW_HOST" route add "$META/32" via "$WORLD_IP" dev slwh0

# Servers: httpd on every world address (ports 80, 8081, 9000, 9001) and on the host's loopback
# (8080, 8081), UDP echo servers next to them.
mkdir -p "$SLW_TMP/www"
echo "policy test page" >"$SLW_TMP/www/index.html"
for p in 80 8081 9000 9001; do
    bg world busybox httpd -f -p "$p" -h "$SLW_TMP/www"
    wait_listen world "$p"
done
for p in 8080 8081; do
    bg "$SLW_HOST" busybox httpd -f -p "127.0.0.1:$p" -h "$SLW_TMP/www"
    wait_listen "$SLW_HOST" "$p"
    udp_serve "$SLW_HOST" 127.0.0.1 "$p"
done
udp_serve world "$WORLD_IP" 7000
udp_serve world "$WORLD_IP" 7001
udp_serve world "$META" 7000
# The servers answer the host namespace directly, so every refusal below is slipway's.
for u in "$WORLD_IP:8081" "$WORLD_IP:9001" "$WORLD2_IP" "$META"; do
    in_ns "$SLW_HOST" curl -q -sS --noproxy '*' --max-time 5 -o /dev/null "http://$u/" ||
        fail "the host namespace itself cannot fetch http://$u/"
done
in_ns "$SLW_HOST" ping -c 1 -W 2 "$WORLD2_IP" >/dev/null || fail "the host namespace cannot ping $WORLD2_IP"

start_daemon \
    --allow "$WORLD_IP:9000/tcp" \
    --deny 198.51.100.0/24:9000-9001/tcp \
    --deny "$WORLD2_IP:80/tcp" \
    --allow "$WORLD2_IP:80/tcp" \
    --deny "$WORLD_IP/32:8081/tcp" \
    --deny "$WORLD_IP/32:7001/udp" \
    --deny "$WORLD2_IP/32/icmp" \
    --host-alias-ports 8080 \
    --attach "$(guest_spec g1)"
nat_guest_up g1
log "egress rules: $(ctl status --json | "$PY" -c 'import json,sys; print(" | ".join(json.load(sys.stdin)["egress_rules"]))')"

# fetch URL: curl from g1 must get the page.
fetch() {
    local out
    out=$(in_ns g1 curl -q -sS --noproxy '*' --max-time 10 "$1" 2>&1) || fail "curl $1 failed: $out"
    [ "$out" = "policy test page" ] || fail "curl $1: '$out'"
    log "ok: $1 allowed"
}
# refused_tcp URL: curl from g1 must fail at once with exit 7 (a reset), tcp_denied_policy +1.
refused_tcp() {
    local url=$1 d0 start took rc=0
    d0=$(gw tcp_denied_policy)
    start=$(ms_now)
    in_ns g1 curl -q -sS --noproxy '*' --max-time 10 -o /dev/null "$url" 2>"$SLW_TMP/curl.err" || rc=$?
    took=$(($(ms_now) - start))
    [ "$rc" -eq 7 ] || fail "curl $url exited $rc after $took ms, expected 7 (refused): $(cat "$SLW_TMP/curl.err")"
    [ "$took" -lt 2000 ] || fail "curl $url took $took ms to be refused (a reset comes at once)"
    [ "$(gw tcp_denied_policy)" -eq $((d0 + 1)) ] ||
        fail "curl $url: tcp_denied_policy $(gw tcp_denied_policy), was $d0"
    log "ok: $url refused: curl exit 7 after $took ms, tcp_denied_policy=$(gw tcp_denied_policy)"
}
# refused_udp ADDR PORT: a datagram from g1 gets "administratively prohibited" from the gateway.
refused_udp() {
    local d0 out res ms icmp
    d0=$(gw udp_denied_policy)
    out=$(udp_g g1 refused "$1" "$2" --recverr)
    read -r res ms icmp <<<"$out"
    [ "$res $icmp" = "error:EHOSTUNREACH icmp 3 13 $GW" ] ||
        fail "UDP to $1:$2: '$out', expected error:EHOSTUNREACH after icmp 3 13 from $GW"
    [ "$(gw udp_denied_policy)" -ge $((d0 + 1)) ] || fail "UDP to $1:$2: udp_denied_policy $(gw udp_denied_policy), was $d0"
    log "ok: UDP to $1:$2 refused: $res after $ms ms ($icmp), udp_denied_policy=$(gw udp_denied_policy)"
}
# udp_echo ADDR PORT TAG: UDP round trips from g1 work.
udp_echo() {
    local out
    out=$(udp_g g1 echo "$1" "$2" --count 3 --tag "$3") || fail "UDP echo via $1:$2: $out"
    log "ok: UDP to $1:$2 allowed (3 round trips)"
}
# refused_ping ADDR: ping from g1 fails with "communication prohibited", icmp_denied_policy +1.
refused_ping() {
    local d0 out rc=0
    d0=$(gw icmp_denied_policy)
    out=$(in_ns g1 timeout 20 ping -n -c 2 -i 0.3 -W 1 "$1" 2>&1) || rc=$?
    [ "$rc" -ne 0 ] && grep -q " 100% packet loss" <<<"$out" || fail "ping $1 was not refused: $out"
    grep -qiE "packet filtered|communication prohibited" <<<"$out" ||
        fail "ping $1: no 'Packet filtered' (ICMP 3/13) in: $out"
    [ "$(gw icmp_denied_policy)" -ge $((d0 + 1)) ] || fail "ping $1: icmp_denied_policy $(gw icmp_denied_policy), was $d0"
    log "ok: ping $1 refused ($(grep -ioE "packet filtered|communication prohibited" <<<"$out" | head -n 1)), icmp_denied_policy=$(gw icmp_denied_policy)"
}

# --- deny a port for TCP; other ports of the same host work ---
fetch "http://$WORLD_IP/"
refused_tcp "http://$WORLD_IP:8081/"
e=$(in_ns g1 timeout 20 "$PY" "$NAT_TOOL" connect "$WORLD_IP" 8081)
[ "${e%% *}" = error:ECONNREFUSED ] || fail "connect() to a denied port ended with '$e', expected a reset (ECONNREFUSED)"
log "ok: connect() to the denied $WORLD_IP:8081: $e ms"

# --- first match wins ---
fetch "http://$WORLD_IP:9000/"             # --allow .2:9000/tcp before the /24 deny
refused_tcp "http://$WORLD_IP:9001/"       # the /24 deny
refused_tcp "http://$WORLD2_IP:9000/"      # the /24 deny covers .3 as well
refused_tcp "http://$WORLD2_IP/"           # --deny .3:80 first, the --allow after it is moot
fetch "http://$WORLD2_IP:8081/"            # the /icmp rule for .3 leaves TCP alone

# --- UDP ---
udp_echo "$WORLD_IP" 7000 u
refused_udp "$WORLD_IP" 7001
[ "$(udp_lines "$WORLD_IP" 7001 | wc -l)" -eq 0 ] || fail "a datagram to the denied $WORLD_IP:7001 reached the server"

# --- ICMP ---
expect "ping $WORLD_IP allowed" bash -c "ip netns exec g1 ping -n -c 2 -i 0.2 -W 2 $WORLD_IP >/dev/null"
refused_ping "$WORLD2_IP"

# --- the metadata address: denied by default ---
refused_tcp "http://$META/"
refused_udp "$META" 7000
refused_ping "$META"
[ "$(udp_lines "$META" 7000 | wc -l)" -eq 0 ] || fail "a datagram reached the metadata address"

# --- --host-alias-ports 8080 ---
fetch "http://$HOST_ALIAS:8080/"
refused_tcp "http://$HOST_ALIAS:8081/"
udp_echo "$HOST_ALIAS" 8080 a
refused_udp "$HOST_ALIAS" 8081
[ "$(udp_lines 127.0.0.1 8081 | wc -l)" -eq 0 ] || fail "a datagram reached 127.0.0.1:8081 through the alias"
expect "the daemon is alive" daemon_alive
stop_daemon

# --- --allow 169.254.169.254 opens the metadata address ---
start_daemon --allow "$META" --attach "$(guest_spec g1)"
nat_guest_up g1
fetch "http://$META/"
udp_echo "$META" 7000 m
expect "ping $META allowed" bash -c "ip netns exec g1 ping -n -c 2 -i 0.2 -W 2 $META >/dev/null"
fetch "http://$HOST_ALIAS:8081/"  # without --host-alias-ports every port is exposed
[ "$(gw tcp_denied_policy)" -eq 0 ] && [ "$(gw udp_denied_policy)" -eq 0 ] && [ "$(gw icmp_denied_policy)" -eq 0 ] ||
    fail "--allow $META: denied_policy counters tcp $(gw tcp_denied_policy) udp $(gw udp_denied_policy) icmp $(gw icmp_denied_policy)"
expect "the daemon is alive" daemon_alive
stop_daemon
