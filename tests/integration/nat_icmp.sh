#!/usr/bin/env bash
# ICMP echo through the NAT engine, in each --icmp mode, from namespace guests to a host in the
# world namespace:
#   - auto picks raw when net.ipv4.ping_group_range (set only inside the test's host namespace)
#     excludes the daemon, ping when it includes it, and logs which; the status API agrees; the
#     mode's host socket really exists (a raw ICMP socket, or a ping socket per flow);
#   - raw and ping: pings get their replies, a 4,000-byte ping (fragmented both ways) too; the
#     host alias answers (the host's 127.0.0.1); a router's host unreachable reaches the guest's
#     ping (from the gateway); two guests pinging the world host at once with the SAME identifier
#     and sequence numbers each get exactly their own replies (a fixed-id raw pinger in each guest
#     checks every payload); with the world host gone (its address removed) no reply comes, none
#     is made up; echo replies forged from another source address (with the flow's identifier,
#     sequence and data, sent by a forger in world that sees the requests) are not relayed, while
#     the same forger's replies from the right source are;
#   - an explicit --icmp ping that the host namespace does not allow is a start-up error;
#   - gateway: the world host does not answer (icmp_unhandled), the gateway still does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

nat_world_up
netns_add g1
netns_add g2
# World as a router for 203.0.113.0/24, which it cannot reach (forwarding is switched on only
# around that check); its ICMP errors are not rate-limited.
ip -n world route add unreachable 203.0.113.0/24
in_ns world sysctl -qw net.ipv4.icmp_ratelimit=0

# icmp_start ARGS...: the daemon with both guests attached, both configured.
icmp_start() {
    start_daemon "$@" --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
    nat_guest_at g1 "$GUEST_IP"
    nat_guest_at g2 "$GUEST2_IP"
}
# mode_is MODE: the status API says the engine runs MODE.
mode_is() {
    local m
    m=$(ctl status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["icmp_mode"])')
    [ "$m" = "$1" ] || fail "the status API says icmp_mode '$m', expected '$1'"
}
# host_icmp_sockets KIND: the daemon's raw (KIND=raw) or ping (KIND=icmp) ICMP sockets, by inode.
host_icmp_sockets() {
    local inodes
    inodes=$(find /proc/"$SLW_DAEMON_PID"/fd -mindepth 1 -printf '%l\n' 2>/dev/null |
        sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | paste -sd ' ')
    awk -v want=" $inodes " 'NR > 1 && index(want, " " $10 " ")' /proc/"$SLW_DAEMON_PID"/net/"$1" | wc -l
}
ping_g() {
    local ns=$1
    shift
    in_ns "$ns" timeout 30 ping -n "$@"
}
# pings NS ARGS...: ping_g, quiet unless it fails.
pings() {
    local out
    out=$(ping_g "$@" 2>&1) || { echo "$out" >&2; return 1; }
}

# echo_checks MODE: what raw and ping modes must both do.
echo_checks() {
    local mode=$1 out r0 q0 e0 g1out g2out
    # Plain pings.
    q0=$(gw icmp_requests)
    r0=$(gw icmp_replies)
    out=$(ping_g g1 -c 3 -i 0.2 -W 2 "$WORLD_IP") || fail "$mode: g1 cannot ping $WORLD_IP: $out"
    grep -q " 0% packet loss" <<<"$out" || fail "$mode: ping lost replies: $out"
    [ "$(gw icmp_requests)" -ge $((q0 + 3)) ] || fail "$mode: icmp_requests $(gw icmp_requests), was $q0"
    [ "$(gw icmp_replies)" -ge $((r0 + 3)) ] || fail "$mode: icmp_replies $(gw icmp_replies), was $r0"
    log "ok: $mode: 3 pings of $WORLD_IP answered; icmp_requests=$(gw icmp_requests) icmp_replies=$(gw icmp_replies)"
    if [ "$mode" = ping ]; then
        [ "$(host_icmp_sockets icmp)" -ge 1 ] ||
            fail "ping mode, a live echo flow, but the daemon holds no ping socket (/proc/net/icmp)"
        log "ok: ping: the daemon holds $(host_icmp_sockets icmp) ping socket(s) for the live flow(s)"
    fi

    # The host alias means the host's 127.0.0.1 for ICMP too.
    out=$(ping_g g2 -c 2 -i 0.2 -W 2 "$HOST_ALIAS") || fail "$mode: g2 cannot ping the host alias $HOST_ALIAS: $out"
    grep -q "bytes from $HOST_ALIAS" <<<"$out" || fail "$mode: ping $HOST_ALIAS: $out"
    log "ok: $mode: g2 pings the host alias $HOST_ALIAS (the host's 127.0.0.1)"

    # A big ping: 4,008 bytes of ICMP, fragmented by the guest and again towards it.
    out=$(ping_g g1 -c 2 -i 0.2 -W 2 -s 4000 "$WORLD_IP") || fail "$mode: ping -s 4000 failed: $out"
    grep -q "4008 bytes from $WORLD_IP" <<<"$out" || fail "$mode: no 4008-byte reply: $out"
    log "ok: $mode: ping -s 4000 answered ($(grep -c "bytes from" <<<"$out") replies of 4008 bytes)"

    # Two guests, the same identifier and sequence numbers, at once: each must get exactly its own
    # 20 replies (payloads carry the guest's marker and are checked byte for byte).
    bg g1 timeout 30 "$PY" "$UDP_TOOL" ping "$WORLD_IP" --id 4242 --count 20 --marker g1 \
        --size 200 --timeout 1 >"$SLW_TMP/p1.out" 2>&1
    local p1=$LAST_PID
    bg g2 timeout 30 "$PY" "$UDP_TOOL" ping "$WORLD_IP" --id 4242 --count 20 --marker g2 \
        --size 200 --timeout 1 >"$SLW_TMP/p2.out" 2>&1
    local p2=$LAST_PID
    wait "$p1" || fail "$mode: g1's pinger failed: $(cat "$SLW_TMP/p1.out")"
    wait "$p2" || fail "$mode: g2's pinger failed: $(cat "$SLW_TMP/p2.out")"
    g1out=$(cat "$SLW_TMP/p1.out")
    g2out=$(cat "$SLW_TMP/p2.out")
    for o in "g1:$g1out" "g2:$g2out"; do
        [ "${o#*:}" = "sent 20 own 20 foreign 0 dup 0 bad 0 missing -" ] ||
            fail "$mode: two guests pinging with identifier 4242 at once: ${o%%:*} got '${o#*:}'"
    done
    log "ok: $mode: g1 and g2 pinged $WORLD_IP at once with identifier 4242: each got its own 20 replies, nothing else"

    # A router's error: world routes 203.0.113.0/24 to "unreachable" and answers host
    # unreachable for it; the pings get that error, from the gateway (host-side routers stay
    # hidden), never a reply. (The world kernel rate-limits these errors on its own — its
    # net.ipv4.route.error_cost exists only in the machine's namespace — and may skip some.)
    local n
    e0=$(gw icmp_errors_relayed)
    r0=$(gw icmp_replies)
    in_ns world sysctl -qw net.ipv4.ip_forward=1
    out=$(ping_g g1 -c 4 -i 0.4 -W 1 203.0.113.5) || true
    in_ns world sysctl -qw net.ipv4.ip_forward=0
    n=$(grep -c "^From $GW icmp_seq=[0-9]* Destination Host Unreachable" <<<"$out" || true)
    [ "$n" -ge 1 ] ||
        fail "$mode: ping of a destination the world router cannot reach: $out; expected 'From $GW ... Destination Host Unreachable'"
    grep -q " 0 received, +$n errors, 100% packet loss" <<<"$out" || fail "$mode: ping of an unreachable destination: $out"
    [ "$(gw icmp_errors_relayed)" -eq $((e0 + n)) ] ||
        fail "$mode: the guest got $n errors, icmp_errors_relayed rose by $(($(gw icmp_errors_relayed) - e0))"
    [ "$(gw icmp_replies)" -eq "$r0" ] || fail "$mode: echo replies relayed for an unreachable destination"
    log "ok: $mode: 4 pings of an unreachable destination: $n host unreachable errors from $GW, no reply"

    # The world host gone (its address removed; the host still has its MAC, so the requests go
    # out and vanish): no reply may come (none is made up), ping reports 100% loss. (Taking the
    # link down instead makes the host kernel queue the requests for ARP and send them when the
    # link comes back, and their real, late replies would be relayed.)
    r0=$(gw icmp_replies)
    e0=$(gw icmp_errors_relayed)
    ip -n world addr del "$WORLD_IP/24" dev slww0
    local rc=0
    out=$(ping_g g1 -c 3 -i 0.2 -W 1 "$WORLD_IP") || rc=$?
    sleep 0.5
    local relayed=$(($(gw icmp_replies) - r0))
    ip -n world addr add "$WORLD_IP/24" dev slww0
    [ "$rc" -ne 0 ] || fail "$mode: ping of a host that is gone succeeded: $out"
    grep -q " 100% packet loss" <<<"$out" || fail "$mode: the host is gone but ping says: $out"
    [ "$relayed" -eq 0 ] || fail "$mode: $relayed echo replies relayed while the world host was gone"
    log "ok: $mode: world host gone: 100% loss, no reply relayed (icmp_errors_relayed +$(($(gw icmp_errors_relayed) - e0)))"
    wait_until 15 in_ns g1 ping -c 1 -W 1 "$WORLD_IP" || fail "$mode: the world host does not answer again after its address came back"

    # Forged replies: the world host's kernel stays silent (icmp_echo_ignore_all, in world only)
    # and a forger there answers each request with the right identifier, sequence and data, but
    # from another address: nothing may reach the guest. The same forger with the right source
    # address is answered through, so its replies are well-formed.
    in_ns world sysctl -qw net.ipv4.icmp_echo_ignore_all=1
    forged_ping "$mode" 198.51.100.77 777 "sent 3 own 0 foreign 0 dup 0 bad 0 missing 1,2,3"
    [ "$(gw icmp_replies)" -eq "$r1" ] ||
        fail "$mode: $(($(gw icmp_replies) - r1)) echo replies from a forged source (198.51.100.77) relayed as replies of $WORLD_IP"
    log "ok: $mode: echo replies from a forged source with the flow's identifier are not relayed (icmp_unmatched=$(gw icmp_unmatched))"
    forged_ping "$mode" "$WORLD_IP" 778 "sent 3 own 3 foreign 0 dup 0 bad 0 missing -"
    log "ok: $mode: the forger's replies from the right source are relayed (so the forged ones were well-formed)"
    in_ns world sysctl -qw net.ipv4.icmp_echo_ignore_all=0
}
# forged_ping MODE SRC ID WANT: a forger in world answers 3 pings of g1's fixed-id pinger (ID) from
# SRC; the pinger's result must be WANT. Sets r1 to icmp_replies before.
forged_ping() {
    local mode=$1 src=$2 id=$3 want=$4 out
    : >"$SLW_TMP/forge.out"
    bg world timeout 20 "$PY" "$UDP_TOOL" forge --src "$src" --count 3 >"$SLW_TMP/forge.out" 2>&1
    local forger=$LAST_PID
    wait_until 10 grep -q listening "$SLW_TMP/forge.out" || fail "the forger did not start: $(cat "$SLW_TMP/forge.out")"
    r1=$(gw icmp_replies)
    out=$(in_ns g1 timeout 30 "$PY" "$UDP_TOOL" ping "$WORLD_IP" --id "$id" --count 3 --marker g1 \
        --interval 0.1 --timeout 1) || fail "$mode: the pinger failed: $out"
    wait "$forger" || fail "the forger failed: $(cat "$SLW_TMP/forge.out")"
    grep -q "^forged 3$" "$SLW_TMP/forge.out" || fail "$mode: the forger did not answer 3 requests: $(cat "$SLW_TMP/forge.out")"
    [ "$out" = "$want" ] || fail "$mode: replies forged from $src: g1's pinger got '$out', expected '$want'"
}

# --- auto, without ping_group_range: raw ---
log "host namespace: net.ipv4.ping_group_range = $(in_ns "$SLW_HOST" sysctl -n net.ipv4.ping_group_range)"
icmp_start --icmp auto
grep -q "icmp raw (--icmp auto)" "$DAEMON_LOG" || fail "auto without ping_group_range did not log 'icmp raw (--icmp auto)': $(grep -i icmp "$DAEMON_LOG" | head -n 3)"
mode_is raw
[ "$(host_icmp_sockets raw)" -eq 1 ] || fail "raw mode, but the daemon holds $(host_icmp_sockets raw) raw ICMP sockets, expected 1"
log "ok: auto chose raw: logged, in the status API, one raw ICMP socket"
echo_checks raw
stop_daemon

# --- an explicit mode the host does not allow is a start-up error ---
rc=0
timeout 10 ip netns exec "$SLW_HOST" "$SLIPWAYD" --icmp ping --no-dhcp --no-dns >"$SLW_TMP/ping-err.log" 2>&1 || rc=$?
# Exit 2 (a value this host cannot honour, one line naming it) or 1 (start-up failure); not the
# 124 of a daemon that started anyway, nor a crash.
[ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] ||
    fail "--icmp ping without ping_group_range: exit $rc, expected a start-up error: $(tail -n 3 "$SLW_TMP/ping-err.log")"
grep -q -- "--icmp ping.*ping_group_range" "$SLW_TMP/ping-err.log" ||
    fail "--icmp ping failed without naming the flag and ping_group_range: $(cat "$SLW_TMP/ping-err.log")"
! grep -q ready "$SLW_TMP/ping-err.log" || fail "--icmp ping without ping_group_range got as far as 'ready'"
log "ok: --icmp ping without ping_group_range: exit $rc, '$(grep -- "--icmp ping" "$SLW_TMP/ping-err.log" | tail -n 1 | cut -c1-160)'"

# --- ping sockets allowed (in the host namespace only) ---
in_ns "$SLW_HOST" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
icmp_start --icmp auto
grep -q "icmp ping (--icmp auto)" "$DAEMON_LOG" || fail "auto with ping_group_range did not log 'icmp ping (--icmp auto)': $(grep -i icmp "$DAEMON_LOG" | head -n 3)"
mode_is ping
expect "auto (ping): g1 pings $WORLD_IP" pings g1 -c 2 -i 0.2 -W 2 "$WORLD_IP"
stop_daemon

# --- explicit raw, even where ping sockets are allowed ---
icmp_start --icmp raw
grep -q "icmp raw" "$DAEMON_LOG" || fail "--icmp raw did not log 'icmp raw'"
mode_is raw
expect "raw: g2 pings $WORLD_IP" pings g2 -c 2 -i 0.2 -W 2 "$WORLD_IP"
stop_daemon

# --- gateway: only the gateway answers ---
icmp_start --icmp gateway
grep -q "icmp gateway" "$DAEMON_LOG" || fail "--icmp gateway did not log 'icmp gateway'"
mode_is gateway
[ "$(host_icmp_sockets raw)" -eq 0 ] || fail "gateway mode, but the daemon holds a raw socket"
rc=0
out=$(ping_g g1 -c 2 -i 0.3 -W 1 "$WORLD_IP") || rc=$?
[ "$rc" -ne 0 ] && grep -q " 100% packet loss" <<<"$out" || fail "gateway mode: the world host answered: $out"
[ "$(gw icmp_unhandled)" -ge 2 ] || fail "gateway mode: icmp_unhandled $(gw icmp_unhandled), expected >= 2"
[ "$(gw icmp_replies)" -eq 0 ] || fail "gateway mode: icmp_replies $(gw icmp_replies)"
log "ok: gateway: no reply from $WORLD_IP (100% loss), icmp_unhandled=$(gw icmp_unhandled)"
expect "gateway: g1 pings the gateway $GW" pings g1 -c 2 -i 0.2 -W 2 "$GW"
expect "gateway: g2 pings the gateway $GW" pings g2 -c 2 -i 0.2 -W 2 "$GW"
expect "the daemon is alive" daemon_alive
stop_daemon

# --- ping: everything raw mode does, on ping sockets ---
icmp_start --icmp ping
grep -q "icmp ping" "$DAEMON_LOG" || fail "--icmp ping did not log 'icmp ping'"
mode_is ping
[ "$(host_icmp_sockets raw)" -eq 0 ] || fail "ping mode, but the daemon holds a raw socket"
echo_checks ping
stop_daemon
