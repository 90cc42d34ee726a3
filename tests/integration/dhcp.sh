#!/usr/bin/env bash
# DHCP with real clients: busybox udhcpc (own script, own resolv.conf file) gets its address,
# router, DNS, MTU, domain and search list and configures the guest; dhcpcd (own script, private
# /run and /var/lib) gets the same; two guests get different
# addresses; a static lease is honoured; a restart with the same --lease-file gives every guest its
# old address back; a one-address pool gives the next client no offer and a logged reason;
# malformed DHCP datagrams are counted and survived.
. "$(dirname "$0")/lib.sh"

LEASES="$SLW_TMP/leases"
SCRIPT="$TOOLS/udhcpc_script.sh"
for g in g1 g2 g3 g4; do netns_add "$g"; done
daemon_args=(--lease-file "$LEASES" --domain slipway.test --search slipway.test,example.org
    --dhcp-static "52:54:00:00:00:50=192.168.127.50,db"
    --attach "$(guest_spec g1)" --attach "$(guest_spec g2)" --attach "$(guest_spec g3)"
    --attach "$(guest_spec g4)")
start_daemon "${daemon_args[@]}"

# A VM keeps its MAC across restarts, but slipway makes a new TAP (new random MAC) each time it
# starts: give every guest a fixed MAC, as its VMM would. g2's is the static lease's.
guest_mac() {
    case $1 in g2) echo 52:54:00:00:00:50 ;; *) echo "52:54:00:00:00:0${1#g}" ;; esac
}
guest_link_up() {
    for _ in $(seq 50); do ip -n "$1" link show slw0 >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$1" link set slw0 down
    ip -n "$1" link set slw0 address "$(guest_mac "$1")"
    ip -n "$1" link set slw0 up
}

# dhcp NS N: run udhcpc in NS; lease values land in $SLW_TMP/NS.lease, resolv.conf in NS.resolv.
dhcp() {
    local ns=$1
    guest_link_up "$ns"
    SLW_LEASE_OUT="$SLW_TMP/$ns.lease" SLW_RESOLV="$SLW_TMP/$ns.resolv" \
        ip netns exec "$ns" timeout 20 busybox udhcpc -i slw0 -n -q -t 4 -T 1 -s "$SCRIPT" \
        -O mtu -O search -O staticroutes -x hostname:"$ns" >"$SLW_TMP/$ns.udhcpc" 2>&1
}
lease_val() { sed -n "s/^$2=//p" "$SLW_TMP/$1.lease"; }

# dhcpcd NS: dhcpcd from dhcpcd-base, oneshot, in a private mount namespace whose /run and /var/lib
# are tmpfs (its pid file, control socket and lease database never touch the machine's), with a
# script of the test instead of its hooks (so no resolv.conf but the test's own file is written).
dhcpcd_run() {
    local ns=$1 out="$SLW_TMP/$1.lease" script="$SLW_TMP/$1.dhcpcd-script"
    cat >"$script" <<SCRIPT
#!/bin/sh
case "\$reason" in BOUND|RENEW|REBIND|REBOOT)
{ echo "ip=\$new_ip_address"; echo "cidr=\$new_subnet_cidr"; echo "router=\$new_routers"
  echo "dns=\$new_domain_name_servers"; echo "mtu=\$new_interface_mtu"
  echo "domain=\$new_domain_name"; echo "search=\$new_domain_search"; } >"$out" ;;
esac
SCRIPT
    chmod +x "$script"
    guest_link_up "$ns"
    ip netns exec "$ns" unshare --mount -- sh -c "mount --make-rprivate / &&
        mount -t tmpfs slw-run /run && mount -t tmpfs slw-lib /var/lib &&
        mkdir -p /run/dhcpcd /var/lib/dhcpcd &&
        exec timeout 30 dhcpcd -f /dev/null -c '$script' -B -1 -4 -t 15 --noipv4ll \
            -o domain_name_servers -o domain_name -o domain_search -o interface_mtu slw0" \
        >"$SLW_TMP/$ns.dhcpcd" 2>&1
}

expect "g1 gets a lease with udhcpc" dhcp g1
[ "$(lease_val g1 ip)" = 192.168.127.2 ] || fail "g1 got $(lease_val g1 ip), expected .2"
[ "$(lease_val g1 router)" = 192.168.127.1 ] || fail "router: $(lease_val g1 router)"
[ "$(lease_val g1 dns)" = 192.168.127.1 ] || fail "dns: $(lease_val g1 dns)"
[ "$(lease_val g1 subnet)" = 255.255.255.0 ] || fail "subnet: $(lease_val g1 subnet)"
[ "$(lease_val g1 mtu)" = 1500 ] || fail "mtu: $(lease_val g1 mtu)"
[ "$(lease_val g1 domain)" = slipway.test ] || fail "domain: $(lease_val g1 domain)"
[ "$(lease_val g1 search)" = "slipway.test example.org" ] || fail "search: $(lease_val g1 search)"
[ "$(lease_val g1 lease)" = 3600 ] || fail "lease: $(lease_val g1 lease)"
[ "$(lease_val g1 serverid)" = 192.168.127.1 ] || fail "serverid: $(lease_val g1 serverid)"
log "ok: lease values: $(tr '\n' ' ' <"$SLW_TMP/g1.lease")"
expect "g1's address is configured" bash -c "ip -n g1 -4 addr show slw0 | grep -q 'inet 192.168.127.2/24'"
expect "g1's default route is the gateway" \
    bash -c "ip -n g1 route show default | grep -q 'via 192.168.127.1 dev slw0'"
expect "g1's resolv.conf names the gateway and the search list" \
    bash -c "grep -qx 'nameserver 192.168.127.1' '$SLW_TMP/g1.resolv' && grep -qx 'search slipway.test example.org' '$SLW_TMP/g1.resolv'"
expect "g1 pings the gateway with its DHCP address" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.1

expect "g2 gets its static lease" dhcp g2
[ "$(lease_val g2 ip)" = 192.168.127.50 ] || fail "g2 got $(lease_val g2 ip), expected the static .50"
expect "g3 gets a lease" dhcp g3
g3ip=$(lease_val g3 ip)
[ "$g3ip" = 192.168.127.3 ] || fail "g3 got $g3ip, expected .3"
expect "g1 and g3 reach each other" in_ns g1 ping -c 2 -i 0.2 -W 2 "$g3ip"
dhcpcd_run g4 || fail "dhcpcd failed: $(cat "$SLW_TMP/g4.dhcpcd")"
[ "$(lease_val g4 ip)" = 192.168.127.4 ] || fail "dhcpcd got '$(lease_val g4 ip)', expected .4"
[ "$(lease_val g4 cidr)" = 24 ] && [ "$(lease_val g4 router)" = 192.168.127.1 ] &&
    [ "$(lease_val g4 dns)" = 192.168.127.1 ] && [ "$(lease_val g4 mtu)" = 1500 ] &&
    [ "$(lease_val g4 domain)" = slipway.test ] &&
    [ "$(lease_val g4 search)" = "slipway.test example.org" ] ||
    fail "dhcpcd's lease differs: $(tr '\n' ' ' <"$SLW_TMP/g4.lease")"
log "ok: dhcpcd lease values: $(tr '\n' ' ' <"$SLW_TMP/g4.lease")"
expect "dhcpcd configured g4" bash -c "ip -n g4 -4 addr show slw0 | grep -q 'inet 192.168.127.4/24'"
expect "g4 pings the gateway" in_ns g4 ping -c 2 -i 0.2 -W 2 192.168.127.1
[ "$(counter gateway dhcp_acks)" -ge 4 ] || fail "dhcp_acks < 4"
expect "the lease file lists the guests" bash -c "grep -c '^lease ' '$LEASES' | grep -qx 4"

log "garbage to port 67 from a configured guest"
in_ns g1 "$PY" - <<'PY'
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for i in range(50):
    s.sendto(os.urandom(i * 7 % 400), ("192.168.127.1", 67))
s.sendto(b"\x01\x01\x06" + b"\x00" * 233 + b"\x63\x82\x53\x63" + b"\x35\x09\x01", ("255.255.255.255", 67))
PY
expect "the daemon survives" daemon_alive
wait_until 5 bash -c "[ \"\$(\"$SLIPWAYCTL\" --api '$API' stats --json | \"$PY\" '$TOOLS/counter.py' gateway dhcp_drop_malformed)\" -ge 51 ]" ||
    fail "dhcp_drop_malformed is $(counter gateway dhcp_drop_malformed), expected >= 51"
log "ok: dhcp_drop_malformed=$(counter gateway dhcp_drop_malformed)"
stop_daemon

log "restart with the same lease file: every guest gets its address back, in any order"
start_daemon "${daemon_args[@]}"
for g in g3 g1; do ip -n "$g" addr flush dev slw0; done
expect "g3 renews first" dhcp g3
expect "then g1" dhcp g1
[ "$(lease_val g3 ip)" = "$g3ip" ] || fail "g3 got $(lease_val g3 ip) after restart, had $g3ip"
[ "$(lease_val g1 ip)" = 192.168.127.2 ] || fail "g1 got $(lease_val g1 ip) after restart"
log "ok: same addresses after restart"
stop_daemon

log "a one-address pool"
rm -f "$LEASES"
start_daemon --dhcp-range 192.168.127.10-192.168.127.10 \
    --attach "$(guest_spec g1)" --attach "$(guest_spec g3)"
for g in g1 g3; do ip -n "$g" addr flush dev slw0; done
expect "g1 takes the only address" dhcp g1
[ "$(lease_val g1 ip)" = 192.168.127.10 ] || fail "g1 got $(lease_val g1 ip)"
rm -f "$SLW_TMP/g3.lease"
expect_fail "g3 gets no offer" dhcp g3
grep -q "no address to offer" "$DAEMON_LOG" || fail "no logged reason for the refused client"
[ "$(counter gateway dhcp_no_address)" -ge 1 ] || fail "dhcp_no_address not counted"
log "ok: exhausted pool logged and counted"
stop_daemon
