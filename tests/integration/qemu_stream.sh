#!/usr/bin/env bash
# QEMU `-netdev stream` attachment: a client gets an ARP reply, disconnects, reconnects and gets
# another; oversized and undersized lengths close only that connection (counted); hostile but
# well-framed garbage is counted and dropped; the daemon and a second attachment carry on.
. "$(dirname "$0")/lib.sh"

Q="$SLW_TMP/q.sock"
V="$SLW_TMP/v.sock"
start_daemon --attach "qemu:$Q" --attach "vfkit:$V"
expect "attachment and API sockets are mode 0600" \
    bash -c "[ \"\$(stat -c %a '$Q' '$V' '$API' | sort -u)\" = 600 ]"
expect "first client gets an ARP reply" "$PY" "$TOOLS/qemu_client.py" "$Q" arp
expect "a reconnecting client gets another" "$PY" "$TOOLS/qemu_client.py" "$Q" arp
expect "an oversized length closes that connection" "$PY" "$TOOLS/qemu_client.py" "$Q" oversize
expect "an undersized length closes that connection" "$PY" "$TOOLS/qemu_client.py" "$Q" undersize
expect "the daemon is still running" daemon_alive
expect "a new client works after the bad ones" "$PY" "$TOOLS/qemu_client.py" "$Q" arp
expect "the vfkit attachment is unaffected" "$PY" "$TOOLS/vfkit_client.py" "$V" "$SLW_TMP/c.sock" --magic
wire=$(counter "qemu:$Q" drop_wire)
[ "$wire" -ge 2 ] || fail "drop_wire on the qemu port is $wire, expected >= 2"
log "ok: drop_wire=$wire"

expect "garbage frames are survived, ARP still answered" "$PY" "$TOOLS/qemu_client.py" "$Q" garbage
malformed=$(counter gateway drop_malformed)
unhandled=$(counter gateway drop_unhandled)
ignored=$(counter gateway ignored)
[ $((malformed + unhandled + ignored)) -ge 150 ] ||
    fail "garbage not accounted for: malformed=$malformed unhandled=$unhandled ignored=$ignored"
log "ok: garbage counted: malformed=$malformed unhandled=$unhandled ignored=$ignored"
expect "the daemon is still running" daemon_alive
stop_daemon
expect "socket files are removed on exit" bash -c "[ ! -e '$Q' ] && [ ! -e '$API' ]"
