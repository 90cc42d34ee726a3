#!/usr/bin/env bash
# Two namespace guests on one slipwayd ping each other through the switch; in isolation mode they
# cannot (the frames are dropped and counted) but both still reach the gateway.
. "$(dirname "$0")/lib.sh"

netns_add g1
netns_add g2
start_daemon --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
guest_up g1 192.168.127.2/24
guest_up g2 192.168.127.3/24
expect "g1 pings g2" in_ns g1 ping -c 3 -i 0.2 -W 2 192.168.127.3
expect "g2 pings g1" in_ns g2 ping -c 3 -i 0.2 -W 2 192.168.127.2
flooded=$(counter switch flooded)
[ "$flooded" -ge 1 ] || fail "expected flooded ARP broadcasts, switch flooded=$flooded"
stop_daemon

log "isolation mode"
start_daemon --isolate --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
guest_up g1 192.168.127.2/24 2>/dev/null || true
guest_up g2 192.168.127.3/24 2>/dev/null || true
expect "g1 still reaches the gateway" in_ns g1 ping -c 2 -i 0.2 -W 2 192.168.127.1
expect "g2 still reaches the gateway" in_ns g2 ping -c 2 -i 0.2 -W 2 192.168.127.1
# Teach g1 g2's MAC so it sends unicast frames that the switch must drop.
g2mac=$(ip -n g2 -br link show slw0 | awk '{print $3}')
ip -n g1 neigh replace 192.168.127.3 lladdr "$g2mac" dev slw0 nud permanent
expect_fail "g1 cannot ping g2 in isolation mode" in_ns g1 ping -c 2 -i 0.2 -W 1 192.168.127.3
dropped=$(counter "$(guest_spec g1)" drop_isolated)
[ "$dropped" -ge 1 ] || fail "drop_isolated on g1's port is $dropped, expected >= 1"
log "ok: drop_isolated=$dropped"
stop_daemon
