#!/usr/bin/env bash
# Large TSO frames from a namespace guest (TAP with virtio-net header and offloads) reach a
# qemu-stream port segmented to the MTU, checksums completed: a kernel TCP receiver behind a plain
# TAP (a relay playing QEMU) gets every byte intact.
. "$(dirname "$0")/lib.sh"

Q="$SLW_TMP/q.sock"
netns_add g1
netns_add g2
start_daemon --attach "$(guest_spec g1)" --attach "qemu:$Q"
guest_up g1 192.168.127.2/24
bg g2 "$PY" "$TOOLS/qemu_tap_relay.py" "$Q" slw0 "$SLW_TMP/relay.stats" 2>"$SLW_TMP/relay.log"
RELAY=$LAST_PID
wait_until 10 ip -n g2 link show slw0 ||
    fail "relay TAP did not appear: $(cat "$SLW_TMP/relay.log"; kill -0 "$RELAY" 2>/dev/null && echo '(relay running)')"
ip -n g2 link set slw0 up
ip -n g2 addr add 192.168.127.3/24 dev slw0
expect "g1 reaches g2 through the qemu port" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.3

bg g2 "$PY" "$TOOLS/tcp_blast.py" recv 5001 "$SLW_TMP/recv.out"
RECV=$LAST_PID
wait_until 5 bash -c "ip netns exec g2 ss -ltn | grep -q ':5001'" || fail "receiver not listening"
sent=$(in_ns g1 timeout 60 "$PY" "$TOOLS/tcp_blast.py" send 192.168.127.3 5001 32) ||
    fail "sender failed"
for _ in $(seq 100); do kill -0 "$RECV" 2>/dev/null || break; sleep 0.1; done
got=$(cat "$SLW_TMP/recv.out")
[ "$sent" = "$got" ] || fail "data differs: sent '$sent' got '$got'"
log "ok: 32 MiB arrived intact ($got)"

segmented=$(counter "qemu:$Q" segmented)
[ "$segmented" -ge 1 ] || fail "no GSO frame was segmented for the qemu port (segmented=$segmented)"
kill -TERM "$RELAY"
for _ in $(seq 50); do kill -0 "$RELAY" 2>/dev/null || break; sleep 0.1; done
read -r frames max <"$SLW_TMP/relay.stats"
# 32 MiB in segments of at most 1460 bytes is at least 22,983 frames towards the receiver.
[ "$frames" -ge 22983 ] || fail "only $frames frames reached the relay for 32 MiB"
[ "$max" -le 1514 ] || fail "the qemu port received a $max-byte frame (MTU 1500 allows 1514)"
too_big=$(counter "qemu:$Q" drop_too_big)
log "ok: segmented=$segmented GSO frames; $frames frames to the relay, largest $max bytes; drop_too_big=$too_big"
stop_daemon
