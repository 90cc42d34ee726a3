#!/usr/bin/env bash
# Real VMs (issue 9): Linux guests under QEMU (tests/vm: Debian's cloud kernel, its virtio-net
# driver, busybox) on one slipwayd, one attached over vhost-user (A) and one over QEMU's
# `-netdev stream` (B). Each guest: the driver comes up, udhcpc gets its static lease, nslookup
# resolves a local record and an upstream's name through slipway's DNS, wget fetches a 64 MiB
# file from a host-loopback HTTP server through the host alias (md5 in the guest), and a forwarded
# host port reaches the guest's httpd (a 4 MiB file, md5 at the host). The guests ping each other
# through the switch. Then each QEMU is killed (SIGKILL, mid-download) and booted again on the
# same socket: slipwayd (same process) serves the new guest, which gets its lease, fetches again,
# serves again and pings the other; the dead guest's NAT flow ends on the host side too. Last,
# slipwayd itself restarts under guest A, whose QEMU reconnects. Four boots in all, every boot
# and every guest command bounded in time.
. "$(dirname "$0")/lib.sh"

: "${VM_IMAGE:?VM_IMAGE must name the guest image directory (the vm_image fixture builds it)}"
VMPY="$(cd "$(dirname "$0")/../vm" && pwd)/vm.py"
VU="$SLW_TMP/vu.sock"
QS="$SLW_TMP/qs.sock"
GW=192.168.127.1
ALIAS=192.168.127.254
MAC_A=52:54:00:5e:00:0a IP_A=192.168.127.10 FWD_A=18080
MAC_B=52:54:00:5e:00:0b IP_B=192.168.127.11 FWD_B=18081
BLOB_BYTES=$((64 << 20))

netns_add "$SLW_HOST"

# The host loopback's servers: HTTP with the 64 MiB file, and a dnsmasq upstream for slipway's
# DNS forwarder that knows one name (its A record; the AAAA query busybox nslookup also sends
# comes back REFUSED from dnsmasq, which has no upstream of its own, and slipway passes that on).
mkdir -p "$SLW_TMP/www"
head -c "$BLOB_BYTES" /dev/urandom >"$SLW_TMP/www/blob"
BLOB_MD5=$(md5sum "$SLW_TMP/www/blob" | awk '{print $1}')
bg "$SLW_HOST" "$PY" -m http.server 8000 --bind 127.0.0.1 --directory "$SLW_TMP/www"
bg "$SLW_HOST" dnsmasq --keep-in-foreground --no-resolv --no-hosts -C /dev/null \
    --pid-file="$SLW_TMP/dnsmasq.pid" --bind-interfaces --listen-address=127.0.0.53 --port=53 \
    --address=/upstream.vm.test/198.51.100.77 --log-facility="$SLW_TMP/dnsmasq.log"
wait_until 10 in_ns "$SLW_HOST" curl -sf -o /dev/null -r 0-0 http://127.0.0.1:8000/blob ||
    fail "the host-loopback HTTP server does not answer"
wait_until 10 bash -c "ip netns exec $SLW_HOST dig @127.0.0.53 +short +tries=1 +time=1 \
    upstream.vm.test | grep -q 198.51.100.77" || fail "the dnsmasq upstream does not answer"

DAEMON_ARGS=(--attach "vhost-user:$VU" --attach "qemu:$QS" --dns-upstream 127.0.0.53
    --dns-record local.vm.test=198.51.100.88
    --dhcp-static "$MAC_A=$IP_A" --dhcp-static "$MAC_B=$IP_B"
    --forward "tcp:$FWD_A=$IP_A:80" --forward "tcp:$FWD_B=$IP_B:80")
start_daemon "${DAEMON_ARGS[@]}"
DAEMON=$SLW_DAEMON_PID

# boot NAME NET MAC: a guest under QEMU in the host namespace; its pid joins the cleanup list.
boot() {
    local name=$1 net=$2 mac=$3 pid
    pid=$(in_ns "$SLW_HOST" "$PY" "$VMPY" boot --image "$VM_IMAGE" --dir "$SLW_TMP/$name" \
        --net "$net" --mac "$mac" --name "$name" --timeout 120) || fail "guest $name did not boot"
    SLW_PIDS+=("$pid")
    log "ok: guest $name booted on $net (qemu pid $pid)"
}

# vm NAME TIMEOUT SCRIPT: run SCRIPT in guest NAME; its output goes to $SLW_TMP/NAME.out (and,
# indented, to the log).
vm() {
    local name=$1 secs=$2 rc=0
    "$PY" "$VMPY" run --dir "$SLW_TMP/$name" --timeout "$secs" "$3" >"$SLW_TMP/$name.out" 2>&1 ||
        rc=$?
    sed 's/^/    | /' "$SLW_TMP/$name.out" >&2
    return $rc
}
# vm_expect NAME TIMEOUT WHAT SCRIPT: SCRIPT must exit 0 in guest NAME.
vm_expect() {
    local name=$1 secs=$2 what=$3
    vm "$name" "$secs" "$4" || fail "guest $name: $what"
    daemon_alive || fail "slipwayd died during: guest $name: $what"
    log "ok: guest $name: $what"
}

# lease NAME IP: DHCP on slw0 gives the guest its static lease, gateway and DNS server.
lease() {
    local name=$1 ip=$2 line
    vm_expect "$name" 60 "udhcpc gets a lease from slipway" net_up
    line=$(grep '^SLW-LEASE' "$SLW_TMP/$name.out" | tail -n 1)
    for want in "ip=$ip" "mask=24" "router=$GW" "dns=$GW"; do
        grep -qw -- "$want" <<<"$line" || fail "guest $name: the lease '$line' lacks $want"
    done
    log "ok: guest $name: lease $ip/24 via $GW, DNS $GW"
}

# fetch NAME: wget of the 64 MiB file through the host alias, md5 checked in the guest.
fetch() {
    local name=$1 got
    vm_expect "$name" 240 "wget fetches 64 MiB from host loopback via $ALIAS" \
        "fetch_md5 http://$ALIAS:8000/blob"
    got=$(sed -n 's/^SLW-MD5 //p' "$SLW_TMP/$name.out")
    [ "$got" = "$BLOB_MD5" ] || fail "guest $name: md5 $got, the file's is $BLOB_MD5"
    log "ok: guest $name: 64 MiB byte-exact (md5 $got)"
}

# serve NAME PORT: the guest's httpd serves 4 MiB of its own random bytes; the host fetches them
# through the forwarded port and compares the md5 the guest computed.
serve() {
    local name=$1 port=$2 want got
    vm_expect "$name" 60 "httpd serves 4 MiB" "mkdir -p /www && killall httpd 2>/dev/null;
        dd if=/dev/urandom of=/www/file bs=64k count=64 2>/dev/null &&
        echo SLW-SERVED \$(md5sum </www/file) && httpd -p 80 -h /www"
    want=$(sed -n 's/^SLW-SERVED \([0-9a-f]*\).*/\1/p' "$SLW_TMP/$name.out")
    [ -n "$want" ] || fail "guest $name printed no md5 for its file"
    got=$(in_ns "$SLW_HOST" curl -sf --max-time 120 "http://127.0.0.1:$port/file" | md5sum |
        awk '{print $1}')
    [ "$got" = "$want" ] || fail "guest $name via forward $port: md5 $got, the guest's is $want"
    log "ok: host port $port reaches guest $name's httpd (4 MiB, md5 $got)"
}

# full NAME IP PORT: every check of one guest.
full() {
    local name=$1 ip=$2 port=$3
    lease "$name" "$ip"
    vm_expect "$name" 30 "nslookup resolves a local record through slipway" \
        "resolves local.vm.test 198.51.100.88"
    vm_expect "$name" 30 "nslookup resolves an upstream's name through slipway" \
        "resolves upstream.vm.test 198.51.100.77"
    fetch "$name"
    serve "$name" "$port"
}

# pings FROM TO_IP: guest FROM pings TO_IP through slipway's switch.
pings() {
    vm_expect "$1" 30 "pings $2 through the switch" "ping -c 3 -W 5 $2"
}

vhost_counter() { counter "vhost-user:$VU" "$1"; }

boot A "vhost-user:$VU" "$MAC_A"
boot B "stream:$QS" "$MAC_B"
full A "$IP_A" "$FWD_A"
full B "$IP_B" "$FWD_B"
pings A "$IP_B"
pings B "$IP_A"

# The Linux driver negotiated offloads: slipway handed the vhost-user guest GSO frames (average
# frame above one MSS), the stream guest only MTU-sized ones, and no queue broke.
avg_vu=$(($(vhost_counter tx_bytes) / $(vhost_counter tx_frames)))
avg_qs=$(($(counter "qemu:$QS" tx_bytes) / $(counter "qemu:$QS" tx_frames)))
[ "$avg_vu" -gt 1514 ] || fail "the vhost-user guest got frames of $avg_vu bytes on average: no GSO"
[ "$avg_qs" -le 1514 ] || fail "the stream guest got frames of $avg_qs bytes on average"
for c in virtio_queue_broken virtio_tx_bad_hdr virtio_tx_bad_len; do
    [ "$(vhost_counter $c)" -eq 0 ] || fail "the vhost-user port counted $c=$(vhost_counter $c)"
done
[ "$(vhost_counter virtio_kicks)" -gt 0 ] || fail "the vhost-user port counted no kicks"
log "ok: offloads in use: $avg_vu bytes a frame to the vhost-user guest, $avg_qs to the stream guest"

# restart NAME NET MAC IP PORT OTHER_IP: SIGKILL the guest's QEMU, boot it again on the same
# socket; the same slipwayd serves it: lease, a fetch, the forward, a ping to the other guest.
# The kill comes in the middle of a download, so the guest's queues are busy when QEMU goes; the
# NAT flow left behind must end once the new guest (same address) answers its retransmissions
# with a RST, and nothing of it may linger on the host side.
downloads() { in_ns "$SLW_HOST" ss -Htn state established '( sport = :8000 )' | grep -c . || true; }
downloading() { [ "$(downloads)" -gt 0 ]; }
no_downloads() { [ "$(downloads)" -eq 0 ]; }
restart() {
    local name=$1 net=$2 mac=$3 ip=$4 port=$5 other=$6 pid dl
    pid=$(cat "$SLW_TMP/$name/qemu.pid")
    "$PY" "$VMPY" run --dir "$SLW_TMP/$name" --timeout 120 \
        "wget -q -O /dev/null http://$ALIAS:8000/blob" >/dev/null 2>&1 &
    dl=$!
    wait_until 30 downloading || fail "guest $name's download did not start"
    sleep 0.5
    "$PY" "$VMPY" kill --dir "$SLW_TMP/$name" || fail "QEMU of guest $name did not die"
    wait "$dl" || true  # its console went with QEMU
    log "ok: killed guest $name's QEMU (pid $pid) in the middle of a download"
    daemon_alive || fail "slipwayd died with guest $name's QEMU"
    boot "$name" "$net" "$mac"
    lease "$name" "$ip"
    wait_until 90 no_downloads ||
        fail "the dead guest's download still holds a host connection: $(downloads)"
    log "ok: the dead guest's download ended on the host side too"
    fetch "$name"
    serve "$name" "$port"
    pings "$name" "$other"
}

rx_before=$(vhost_counter rx_frames)
restart A "vhost-user:$VU" "$MAC_A" "$IP_A" "$FWD_A" "$IP_B"
[ "$(vhost_counter rx_frames)" -gt "$rx_before" ] || fail "the vhost-user port's counters stopped"
# Killed mid-download, the peer may first show as a failed read or write rather than an orderly
# hang-up: either way slipwayd logs that it waits for the next one.
grep -q "waiting for the next front end" "$DAEMON_LOG" ||
    fail "slipwayd logged no vhost-user disconnect"
restart B "stream:$QS" "$MAC_B" "$IP_B" "$FWD_B" "$IP_A"
grep -q "waiting for the next guest" "$DAEMON_LOG" || fail "slipwayd logged no stream disconnect"
pings A "$IP_B"
[ "$SLW_DAEMON_PID" = "$DAEMON" ] && daemon_alive || fail "slipwayd is not the process it was"
log "ok: one slipwayd (pid $DAEMON) served four boots"

# The other way round: slipwayd restarts under a running VM. QEMU's vhost-user chardev has
# reconnect=1 (as in the README), so it connects to the new slipwayd, which serves guest A
# where the old one left off. (QEMU 7.2's -netdev stream has no reconnect: B stays cut off.)
stop_daemon
start_daemon "${DAEMON_ARGS[@]}"
wait_until 30 grep -q "queues up" "$DAEMON_LOG" || fail "QEMU did not reconnect to the new slipwayd"
log "ok: guest A's QEMU reconnected to the restarted slipwayd"
lease A "$IP_A"
fetch A
stop_daemon
