#!/usr/bin/env bash
# A namespace guest (the Linux stack) with a static address resolves the gateway with busybox
# arping, pings it, and resolves the host alias; slipwayctl shows the gateway's counters.
. "$(dirname "$0")/lib.sh"

netns_add g1
start_daemon --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24

expect "arping resolves the gateway" in_ns g1 busybox arping -c 2 -w 5 -I slw0 192.168.127.1
expect "guest pings the gateway" in_ns g1 ping -c 3 -i 0.2 -W 2 192.168.127.1
expect "arping resolves the host alias" in_ns g1 busybox arping -c 1 -w 3 -I slw0 192.168.127.254
expect "the neighbour entry is the gateway MAC" \
    bash -c "ip -n g1 neigh show 192.168.127.1 | grep -q 5a:94:ef:e4:0c:dd"
expect_fail "an address nobody owns does not answer ARP" \
    in_ns g1 busybox arping -c 1 -w 1 -I slw0 192.168.127.77

replies=$(counter gateway icmp_echo_replies)
arp=$(counter gateway arp_replies)
[ "$replies" -ge 3 ] || fail "icmp_echo_replies=$replies, expected >= 3"
[ "$arp" -ge 2 ] || fail "arp_replies=$arp, expected >= 2"
log "ok: counters icmp_echo_replies=$replies arp_replies=$arp"
expect "slipwayctl status lists the attachment" bash -c "\"$SLIPWAYCTL\" --api '$API' status | grep -q 'netns:/run/netns/g1'"
stop_daemon
