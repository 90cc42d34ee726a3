#!/usr/bin/env bash
# A guest port is locked to the first source MAC it used: frames from another MAC are dropped and
# counted (visible in slipwayctl stats); --no-mac-lock lets them through. No guest can claim the
# gateway's MAC, with or without the lock, and the other guests keep reaching the real gateway.
. "$(dirname "$0")/lib.sh"

netns_add g1
start_daemon --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24
expect "guest pings the gateway (locks its MAC)" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.1
ip -n g1 link set slw0 address 02:00:00:00:0b:ad
ip -n g1 neigh flush dev slw0
expect_fail "a foreign source MAC gets nothing through" in_ns g1 ping -c 2 -i 0.2 -W 1 192.168.127.1
dropped=$(counter "$(guest_spec g1)" drop_src_mac)
[ "$dropped" -ge 1 ] || fail "drop_src_mac=$dropped, expected >= 1"
# The table form shows the same counter (it only grows: the guest keeps retrying meanwhile).
shown=$(ctl stats | awk '$1 == "port" && $2 ~ /netns:.*g1/ && $3 == "drop_src_mac" {print $4}')
[ -n "$shown" ] && [ "$shown" -ge "$dropped" ] ||
    fail "slipwayctl stats shows drop_src_mac='$shown', expected >= $dropped"
log "ok: drop_src_mac=$dropped"
stop_daemon

start_daemon --no-mac-lock --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24 2>/dev/null || true
expect "first MAC works" in_ns g1 ping -c 1 -W 2 192.168.127.1
ip -n g1 link set slw0 address 02:00:00:00:0b:ae
ip -n g1 neigh flush dev slw0
expect "with --no-mac-lock a changed MAC still works" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.1
stop_daemon

log "a guest that claims the gateway's MAC"
netns_add g2
start_daemon --no-mac-lock --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
guest_up g1 192.168.127.2/24 2>/dev/null || true
for _ in $(seq 50); do ip -n g2 link show slw0 >/dev/null 2>&1 && break; sleep 0.1; done
ip -n g2 link set slw0 address 5a:94:ef:e4:0c:dd
guest_up g2 192.168.127.3/24
expect_fail "the impostor gets nothing through" in_ns g2 ping -c 2 -i 0.2 -W 1 192.168.127.1
expect "g1 still reaches the real gateway" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.1
spoofed=$(counter "$(guest_spec g2)" drop_src_mac)
[ "$spoofed" -ge 1 ] || fail "drop_src_mac on the impostor's port is $spoofed, expected >= 1"
log "ok: impostor frames dropped: drop_src_mac=$spoofed"
stop_daemon
