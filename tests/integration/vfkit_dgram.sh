#!/usr/bin/env bash
# vfkit/krunkit/libkrun unixgram attachment: clients with and without the VFKT magic get replies;
# a short datagram is counted and dropped.
. "$(dirname "$0")/lib.sh"

V="$SLW_TMP/v.sock"
start_daemon --attach "vfkit:$V"
expect "a client that sends the VFKT magic gets an ARP reply" \
    "$PY" "$TOOLS/vfkit_client.py" "$V" "$SLW_TMP/c1.sock" --magic
expect "a client without the magic gets an ARP reply" \
    "$PY" "$TOOLS/vfkit_client.py" "$V" "$SLW_TMP/c2.sock"
expect "a short datagram does not stop the next client" \
    "$PY" "$TOOLS/vfkit_client.py" "$V" "$SLW_TMP/c3.sock" --short
wire=$(counter "vfkit:$V" drop_wire)
[ "$wire" -ge 1 ] || fail "drop_wire on the vfkit port is $wire, expected >= 1"
log "ok: drop_wire=$wire"
expect "the daemon is still running" daemon_alive
stop_daemon
