#!/usr/bin/env bash
# Per-guest NAT limits, with two namespace guests on one slipwayd (g1 the greedy one, g2 the
# bystander):
#   - --max-flows-per-guest 50: g1 keeps 500 UDP flows (500 source ports) knocking for seconds;
#     exactly 50 are admitted and answered, the rest dropped (limit_guest_flows, udp_drop_limit),
#     udp_flows stays at 50 for g1, whose new TCP connection gets a reset and whose pings are
#     dropped (icmp_drop_limit) — while g2 completes UDP round trips and an HTTP fetch;
#     once g1 stops and --udp-timeout passes, g1 gets all 50 flows again (recovery);
#   - the same cap for TCP: of 60 connections g1 holds open, 50 connect and 10 get a reset
#     (tcp_limit_guest) while g2 still fetches; after they close, 50 connect again;
#   - --max-half-open 5: 20 SYNs to a silent destination leave 5 flows connecting, the rest are
#     dropped (limit_half_open), g2 still connects; --connect-timeout clears them;
#   - --new-flow-rate 20: a burst of 100 new UDP flows from g1 is cut to about a second's worth
#     (limit_rate), while g2's own bucket is untouched;
#   - afterwards no flow and no socket is left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

CAP=50
nat_world_up
netns_add g1
netns_add g2
udp_serve world "$WORLD_IP" 7000
nat_serve world "$WORLD_IP" 7100 echo
mkdir -p "$SLW_TMP/www"
echo "limits test page" >"$SLW_TMP/www/index.html"
bg world busybox httpd -f -p "$WORLD_IP:80" -h "$SLW_TMP/www"
wait_listen world 80
# A destination that never answers: world drops everything to TCP port 9999.
in_ns world nft -f - <<'NFT'
table inet slwsilent {
    chain in {
        type filter hook input priority 0; policy accept;
        tcp dport 9999 drop
    }
}
NFT

# limits_start ARGS...: the daemon with g1 and g2 attached and configured; a socket baseline.
limits_start() {
    start_daemon "$@" --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
    nat_guest_at g1 "$GUEST_IP"
    nat_guest_at g2 "$GUEST2_IP"
    nat_baseline
}
# g2_works LABEL: g2 completes 10 UDP round trips and an HTTP fetch.
g2_works() {
    local out
    out=$(udp_g g2 echo "$WORLD_IP" 7000 --count 10 --tag "g2$1") || fail "$1: g2's UDP echo failed: $out"
    out=$(in_ns g2 curl -q -sS --noproxy '*' --max-time 10 "http://$WORLD_IP/" 2>&1) ||
        fail "$1: g2's curl failed: $out"
    [ "$out" = "limits test page" ] || fail "$1: g2's curl got '$out'"
    log "ok: $1: g2 unaffected: 10 UDP round trips and an HTTP fetch"
}
# hold_start NAME NS ARGS...: nat_udp.py tcp-hold ARGS in NS, in the background; once its
# connections are open (or started), sets HOLD_OUT to its result line.
hold_start() {
    local name=$1 ns=$2
    shift 2
    bg "$ns" timeout 90 "$PY" "$UDP_TOOL" tcp-hold "$@" --hold "$SLW_TMP/$name.hold" \
        >"$SLW_TMP/$name.out" 2>&1
    eval "HOLD_PID_$name=$LAST_PID"
    wait_until 60 test -e "$SLW_TMP/$name.hold" ||
        fail "tcp-hold $name did not get through its connects within 60 s: $(cat "$SLW_TMP/$name.out")"
    HOLD_OUT=$(cat "$SLW_TMP/$name.out")
}
# hold_end NAME: let that client close its connections and exit.
hold_end() {
    local pid
    eval "pid=\$HOLD_PID_$1"
    rm -f "$SLW_TMP/$1.hold"
    wait "$pid" || fail "tcp-hold $1 failed: $(cat "$SLW_TMP/$1.out")"
}
flows_zero() { [ "$(gw "$1")" -eq 0 ]; }

limits_start --max-flows-per-guest "$CAP" --max-half-open 5 --connect-timeout 3 --udp-timeout 3

# --- UDP: g1 floods, the cap holds, g2 is unaffected ---
# The flood goes on while $SLW_TMP/flooding exists (30 s at most): the test removes it once g2
# is done, so the two overlap however slow the machine is.
touch "$SLW_TMP/flooding"
bg g1 timeout 60 "$PY" "$UDP_TOOL" flood "$WORLD_IP" 7000 500 --duration 30 --interval 0.2 --wait 1 \
    --while-exists "$SLW_TMP/flooding" >"$SLW_TMP/flood.out" 2>&1
FLOOD=$LAST_PID
sleep 1.5
max=0
for _ in $(seq 8); do
    u=$(gw udp_flows)
    [ "$u" -gt "$max" ] && max=$u
    sleep 0.1
done
[ "$max" -eq "$CAP" ] || fail "while g1 knocks with 500 flows, udp_flows reached $max, expected exactly $CAP"
[ "$(gw limit_guest_flows)" -ge 450 ] || fail "limit_guest_flows $(gw limit_guest_flows) after a round of 500 flows, expected >= 450"
log "ok: g1 knocking with 500 UDP flows: udp_flows=$max, limit_guest_flows=$(gw limit_guest_flows)"
g2_works "during g1's UDP flood"
# g1 at its cap: a new TCP connection gets a reset at once, a ping is dropped.
tl0=$(gw tcp_limit_guest)
id0=$(gw icmp_drop_limit)
rc=0
in_ns g1 curl -q -sS --noproxy '*' --max-time 10 -o /dev/null "http://$WORLD_IP/" 2>/dev/null || rc=$?
[ "$rc" -eq 7 ] || fail "g1 at its cap of $CAP UDP flows: curl exited $rc, expected 7 (reset)"
[ "$(gw tcp_limit_guest)" -ge $((tl0 + 1)) ] || fail "tcp_limit_guest $(gw tcp_limit_guest), was $tl0"
rc=0
out=$(in_ns g1 timeout 10 ping -n -c 2 -i 0.3 -W 1 "$WORLD_IP" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && grep -q " 100% packet loss" <<<"$out" || fail "g1 at its cap pinged $WORLD_IP: $out"
[ "$(gw icmp_drop_limit)" -ge $((id0 + 2)) ] || fail "icmp_drop_limit $(gw icmp_drop_limit), was $id0"
log "ok: g1 at its cap: curl reset (tcp_limit_guest=$(gw tcp_limit_guest)), pings dropped (icmp_drop_limit=$(gw icmp_drop_limit))"
u=$(gw udp_flows)
[ "$u" -le $((CAP + 1)) ] || fail "udp_flows $u during the flood, expected at most $CAP for g1 and 1 for g2"
kill -0 "$FLOOD" 2>/dev/null || fail "g1's flood ended before g2 was done (the check did not overlap): $(cat "$SLW_TMP/flood.out")"
rm -f "$SLW_TMP/flooding"
rc=0
wait "$FLOOD" || rc=$?
out=$(cat "$SLW_TMP/flood.out")
[ "$rc" -eq 0 ] || fail "g1's flood failed (exit $rc): $out"
read -r _ _ _ answered _ sent _ replies _ _ <<<"$out"
[ "$answered" -eq "$CAP" ] || fail "of g1's 500 flows $answered were answered, expected exactly $CAP: $out"
seen=$(udp_lines "$WORLD_IP" 7000 | awk '$3 ~ /^f[0-9]+$/ { print $1 }' | sort -u | wc -l)
[ "$seen" -eq "$CAP" ] || fail "the server saw g1's flood from $seen source ports, expected $CAP"
[ "$(gw udp_drop_limit)" -ge $((sent - replies)) ] ||
    fail "udp_drop_limit $(gw udp_drop_limit), but $((sent - replies)) of g1's datagrams went unanswered"
log "ok: g1's flood: $out; the server saw $seen source ports; udp_drop_limit=$(gw udp_drop_limit) limit_guest_flows=$(gw limit_guest_flows)"

# --- recovery: after --udp-timeout g1 gets all its flows back ---
wait_until 10 flows_zero udp_flows || fail "udp_flows $(gw udp_flows) 10 s after the flood (--udp-timeout 3)"
lg0=$(gw limit_guest_flows)
out=$(udp_g g1 flood "$WORLD_IP" 7000 "$CAP" --tag r --wait 1.5) || fail "g1's flood after recovery: $out"
read -r _ _ _ answered _ <<<"$out"
[ "$answered" -eq "$CAP" ] || fail "after its flows expired g1 opened $answered of $CAP flows: $out"
[ "$(gw limit_guest_flows)" -eq "$lg0" ] || fail "limit_guest_flows rose by $(($(gw limit_guest_flows) - lg0)) with g1 at its cap, not beyond"
log "ok: recovery: after --udp-timeout g1 opened all $CAP flows again, none refused"
wait_until 10 flows_zero udp_flows || fail "udp_flows $(gw udp_flows) 10 s after the recovery flood"

# --- TCP: connections beyond the cap get a reset ---
tl0=$(gw tcp_limit_guest)
hold_start t1 g1 "$WORLD_IP" 7100 $((CAP + 10))
out=$HOLD_OUT
[ "$out" = "connected $CAP refused 10 other -" ] ||
    fail "g1 holding $((CAP + 10)) TCP connections: '$out', expected $CAP connected and 10 refused (reset)"
[ "$(gw tcp_limit_guest)" -ge $((tl0 + 10)) ] || fail "tcp_limit_guest $(gw tcp_limit_guest), was $tl0"
[ "$(gw tcp_flows_established)" -eq "$CAP" ] || fail "tcp_flows_established $(gw tcp_flows_established), expected $CAP"
log "ok: g1's $((CAP + 10)) TCP connections: $out; tcp_limit_guest=$(gw tcp_limit_guest)"
g2_works "g1 at its TCP cap"
hold_end t1
wait_until 15 flows_zero tcp_flows || fail "tcp_flows $(gw tcp_flows) 15 s after g1 closed its connections"
hold_start t2 g1 "$WORLD_IP" 7100 "$CAP"
out=$HOLD_OUT
[ "$out" = "connected $CAP refused 0 other -" ] || fail "after its connections closed, g1 got '$out', expected $CAP connected"
hold_end t2
log "ok: recovery: after they closed, g1 connected $CAP again"
wait_until 15 flows_zero tcp_flows || fail "tcp_flows $(gw tcp_flows) 15 s after g1 closed its connections"

# --- --max-half-open 5: SYNs to a silent destination beyond 5 are dropped ---
ho0=$(gw limit_half_open)
hold_start h1 g1 "$WORLD_IP" 9999 20 --no-wait
sleep 1.5
c=$(gw tcp_flows_connecting)
[ "$c" -eq 5 ] || fail "20 SYNs to a silent destination: tcp_flows_connecting $c, expected 5 (--max-half-open 5)"
[ "$(gw limit_half_open)" -ge $((ho0 + 15)) ] || fail "limit_half_open $(gw limit_half_open), was $ho0"
log "ok: 20 SYNs to a silent destination: 5 connecting, limit_half_open=$(gw limit_half_open)"
g2_works "g1 at its half-open cap"
hold_end h1
wait_until 10 flows_zero tcp_flows || fail "tcp_flows $(gw tcp_flows) 10 s after the silent connects (--connect-timeout 3)"
[ "$(gw tcp_connect_timeout)" -ge 5 ] || fail "tcp_connect_timeout $(gw tcp_connect_timeout), expected the 5 half-open flows to time out"
log "ok: the 5 half-open flows timed out (tcp_connect_timeout=$(gw tcp_connect_timeout))"
nat_flows_gone 10
expect "the daemon is alive" daemon_alive
stop_daemon

# --- --new-flow-rate 20: a burst of new flows is cut to the bucket ---
limits_start --new-flow-rate 20 --udp-timeout 2
bg g1 timeout 60 "$PY" "$UDP_TOOL" flood "$WORLD_IP" 7000 100 --tag q --wait 1.5 >"$SLW_TMP/rate1.out" 2>&1
p1=$LAST_PID
bg g2 timeout 60 "$PY" "$UDP_TOOL" flood "$WORLD_IP" 7000 10 --tag w --wait 1.5 >"$SLW_TMP/rate2.out" 2>&1
p2=$LAST_PID
wait "$p1" || fail "g1's burst failed: $(cat "$SLW_TMP/rate1.out")"
wait "$p2" || fail "g2's flows failed: $(cat "$SLW_TMP/rate2.out")"
read -r _ _ _ a1 _ <<<"$(cat "$SLW_TMP/rate1.out")"
read -r _ _ _ a2 _ <<<"$(cat "$SLW_TMP/rate2.out")"
if [ "$a1" -lt 10 ] || [ "$a1" -gt 40 ]; then
    fail "a burst of 100 new flows at --new-flow-rate 20: $a1 answered, expected about 20"
fi
[ "$(gw limit_rate)" -ge $((100 - a1)) ] || fail "limit_rate $(gw limit_rate), but $((100 - a1)) of g1's flows were dropped"
[ "$a2" -eq 10 ] || fail "g2's 10 new flows beside g1's burst: $a2 answered, expected 10 (its own bucket)"
log "ok: --new-flow-rate 20: g1's burst of 100 got $a1 flows, limit_rate=$(gw limit_rate); g2's 10 all got through"
nat_flows_gone 10
expect "the daemon is alive" daemon_alive
stop_daemon
