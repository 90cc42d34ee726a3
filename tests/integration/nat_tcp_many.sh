#!/usr/bin/env bash
# Many TCP flows at once through the NAT engine: 1,000 concurrent connections from the guest to an
# echo server in the world namespace, all open together (the daemon holds 1,000 flows and
# sockets), then each echoes 64 KiB of its own, checked byte for byte by the client; none may be
# lost. Afterwards every flow and socket is gone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

N=1000
SIZE=$((64 << 10))
raise_nofile
nat_world_up
netns_add g1
nat_serve world "$WORLD_IP" 7000 echo

start_daemon --attach "$(guest_spec g1)"
nat_guest_up g1
nat_baseline
syn0=$(gw tcp_syn_received)
est0=$(gw tcp_established)
closed0=$(gw tcp_closed)

# The client connects all N, creates the hold file and waits until the test removed it.
HOLD="$SLW_TMP/hold"
start=$(ms_now)
bg g1 bash -c "exec timeout 150 '$PY' '$NAT_TOOL' many '$WORLD_IP' 7000 $N $SIZE --hold '$HOLD' --timeout 140 \
    >'$SLW_TMP/many.out' 2>'$SLW_TMP/many.err'"
CLIENT=$LAST_PID
held() { [ -e "$HOLD" ] || ! kill -0 "$CLIENT" 2>/dev/null; }
wait_until 90 held || true
[ -e "$HOLD" ] ||
    fail "the client did not connect its $N connections within 90 s: $(cat "$SLW_TMP/many.err"); tcp_flows=$(gw tcp_flows)"
log "all $N connected after $(($(ms_now) - start)) ms ($(cat "$SLW_TMP/many.err"))"
flows=$(gw tcp_flows)
est=$(gw tcp_flows_established)
fds=$(sock_fds)
[ "$flows" -ge "$N" ] || fail "$N connections open, but tcp_flows is $flows: $(cat "$SLW_TMP/many.err")"
[ "$est" -ge "$N" ] || fail "$N connections open, but tcp_flows_established is $est"
[ "$fds" -ge $((NAT_FD0 + N)) ] || fail "$N connections open, but the daemon holds only $fds sockets (baseline $NAT_FD0)"
log "ok: $N flows at once: tcp_flows=$flows established=$est, the daemon holds $fds sockets"
rm -f "$HOLD"

rc=0
wait "$CLIENT" || rc=$?
out=$(cat "$SLW_TMP/many.out")
[ "$rc" -eq 0 ] || fail "the client failed (exit $rc): $out $(head -n 20 "$SLW_TMP/many.err")"
read -r _ ok _ failed secs <<<"$out"
if [ "$ok" -ne "$N" ] || [ "$failed" -ne 0 ]; then fail "client: $out"; fi
log "ok: $N connections echoed 64 KiB each intact; client done in ${secs} s ($(tail -n 1 "$SLW_TMP/many.err"))"
srv_done 7000 "$N" || wait_until 30 srv_done 7000 "$N" ||
    fail "the echo server finished $(srv_count 7000) connections, expected $N"
bad=$(srv_lines 7000 | grep -vc "^echo $SIZE eof$" || true)
[ "$bad" -eq 0 ] || fail "$bad connections ended badly at the echo server: $(srv_lines 7000 | grep -v "^echo $SIZE eof$" | head -n 5)"
log "ok: the echo server saw $N connections of $SIZE bytes, each ending with EOF"

[ "$(gw tcp_syn_received)" -ge $((syn0 + N)) ] || fail "tcp_syn_received rose by $(($(gw tcp_syn_received) - syn0))"
[ "$(gw tcp_established)" -ge $((est0 + N)) ] || fail "tcp_established rose by $(($(gw tcp_established) - est0))"
wait_until 30 counter_ge tcp_closed $((closed0 + N)) ||
    fail "tcp_closed rose by $(($(gw tcp_closed) - closed0)), expected $N orderly closes"
nat_counters
# Under load (e.g. ASan on two busy cores) guest frames can be dropped before slipway reads them
# (the TAP's queue) and frames to guests can wait for pool buffers: both cost retransmissions.
log "load: guest slw0 tx dropped $(ip -n g1 -s -j link show slw0 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])'), tcp_drop_no_buffer=$(gw tcp_drop_no_buffer), tcp_drop_link_full=$(gw tcp_drop_link_full), pool exhausted $(counter pool exhausted)"
nat_leak_check 30
expect "the daemon is alive" daemon_alive
stop_daemon
