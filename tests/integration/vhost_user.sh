#!/usr/bin/env bash
# vhost-user attachment (issue 8): a test front end (vhost_user_peer: a VMM and a guest virtio-net
# driver written from the specs, tests/support) attaches to `slipwayd --attach vhost-user:PATH`
# again and again while the daemon stays up: ARP, ping and DHCP with the gateway; a 60 KiB TSO
# frame into a TCP connection to the host alias and GSO frames back on a 256 KiB download, checked
# byte for byte at the servers; the same without offloads (nor EVENT_IDX, indirect descriptors or
# mergeable buffers); reconnects with fresh guest memory, with and without GET_VRING_BASE; hostile
# descriptors and hostile vhost-user messages, each followed by a session that must still work.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

: "${VHOST_USER_PEER:?VHOST_USER_PEER must name the vhost_user_peer test tool}"
VU="$SLW_TMP/vu.sock"
SPEC="vhost-user:$VU"
DOWN_BYTES=$((256 << 10))

# Servers on the host namespace's loopback, which the guest reaches as the host alias .254:
# a sink that answers "SHA256 BYTES" of what it read, and a source of DOWN_BYTES bytes.
netns_add "$SLW_HOST"
nat_serve "$SLW_HOST" 127.0.0.1 5101 sink
nat_serve "$SLW_HOST" 127.0.0.1 5102 source --bytes "$DOWN_BYTES" --seed 8
WANT_DOWN=$("$PY" "$NAT_TOOL" sha 8 "$DOWN_BYTES")

start_daemon --attach "$SPEC"
expect "the vhost-user socket is mode 0600" bash -c "[ \"\$(stat -c %a '$VU')\" = 600 ]"

# peer WHAT ARGS...: one run of the test front end (every wait inside is bounded; 60 s at most in
# all); its PASS/FAIL lines go to the log, and any FAIL fails the test.
peer() {
    local what=$1 rc=0
    shift
    in_ns "$SLW_HOST" timeout 60 "$VHOST_USER_PEER" "$VU" "$@" >"$SLW_TMP/peer.out" 2>&1 || rc=$?
    sed 's/^/    /' "$SLW_TMP/peer.out" >&2
    [ $rc -eq 0 ] || fail "$what (vhost_user_peer $*: exit $rc)"
    daemon_alive || fail "slipwayd died during: $what"
    log "ok: $what"
}

# tcp_in LABEL NTH ARGS...: an upload to the sink; it must have read exactly the bytes sent.
tcp_in() {
    local label=$1 nth=$2 line sha n st want
    shift 2
    peer "$label" tcp-in --port 5101 --out "$SLW_TMP/up.bin" "$@"
    line=$(srv_wait 5101 "$nth")
    read -r _ sha n st <<<"$line"
    want="$(sha256sum "$SLW_TMP/up.bin" | awk '{print $1}') $(stat -c %s "$SLW_TMP/up.bin")"
    [ "$sha $n" = "$want" ] || fail "$label: the server read '$sha $n', the guest sent '$want'"
    [ "$st" = eof ] || fail "$label: the upload ended with $st at the server"
    log "ok: $label: the server got every byte ($n, sha256 ${sha:0:16}...)"
}

# tcp_out LABEL NTH ARGS...: a download from the source; the guest must have got every byte.
tcp_out() {
    local label=$1 nth=$2 line got
    shift 2
    peer "$label" tcp-out --port 5102 --out "$SLW_TMP/down.bin" "$@"
    got="$(sha256sum "$SLW_TMP/down.bin" | awk '{print $1}') $(stat -c %s "$SLW_TMP/down.bin")"
    [ "$got" = "$WANT_DOWN" ] || fail "$label: the guest got '$got', the server sent '$WANT_DOWN'"
    line=$(srv_wait 5102 "$nth")
    [ "$(awk '{print $2" "$3}' <<<"$line")" = "$WANT_DOWN" ] || fail "$label: the server's line '$line'"
    [ "${line##* }" = eof ] || fail "$label: the download ended with ${line##* } at the server"
    log "ok: $label: the guest got every byte ($DOWN_BYTES)"
}

NO_OFFLOADS=(--no-offloads --no-event-idx --no-indirect --no-mrg)

peer "ARP, ping and DHCP with the gateway" basic
tcp_in "a 60 KiB TSO frame in" 1
tcp_out "GSO frames out" 1
tcp_in "MSS segments in, no offloads" 2 "${NO_OFFLOADS[@]}"
tcp_out "MTU-sized frames out, no offloads" 2 "${NO_OFFLOADS[@]}"
peer "reconnects with fresh guest memory" reconnect
peer "ARP and ping without offloads or EVENT_IDX" basic "${NO_OFFLOADS[@]}"

from_guest=$(counter "$SPEC" rx_frames)
to_guest=$(counter "$SPEC" tx_frames)
# The upload without offloads alone is 43 MSS segments from the guest, its download 180 frames.
[ "$from_guest" -ge 60 ] || fail "the vhost-user port counted $from_guest frames from the guest"
[ "$to_guest" -ge 200 ] || fail "the vhost-user port counted $to_guest frames to the guest"
log "ok: the port's counters survive reconnects: rx_frames=$from_guest tx_frames=$to_guest"

peer "hostile descriptors are survived" hostile-desc
peer "hostile vhost-user messages are survived" hostile-msg
peer "a well-behaved guest after all that" basic
expect "the daemon is still running" daemon_alive
[ "$(counter "$SPEC" rx_frames)" -gt "$from_guest" ] || fail "no frame counted after the hostile sessions"
grep -q "TX queue broken" "$DAEMON_LOG" || fail "the daemon did not log a broken TX queue"
log "ok: broken queues were logged: $(grep -c 'queue broken' "$DAEMON_LOG") times"

stop_daemon
expect "the vhost-user socket is removed on exit" bash -c "[ ! -e '$VU' ]"
