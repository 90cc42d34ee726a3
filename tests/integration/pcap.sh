#!/usr/bin/env bash
# --pcap FILE records every frame that crosses the switch; tshark reads the file and shows the ICMP
# echo exchange between a guest and the gateway.
. "$(dirname "$0")/lib.sh"

P="$SLW_TMP/run.pcap"
netns_add g1
start_daemon --pcap "$P" --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24
expect "guest pings the gateway" in_ns g1 ping -c 3 -i 0.2 -W 2 192.168.127.1
# The capture is flushed every second: a reader sees the exchange while slipwayd still runs.
live_echoes() { [ "$(tcpdump -r "$P" -n icmp 2>/dev/null | grep -c 'ICMP echo')" -ge 6 ]; }
wait_until 5 live_echoes || fail "the running capture does not show the echoes within 5 s"
log "ok: the capture is readable while slipwayd runs"
stop_daemon
command -v tshark >/dev/null || fail "tshark is not installed (scripts/deps installs it)"
out=$(tshark -r "$P" -n -Y icmp 2>&1) || fail "tshark cannot read the capture: $out"
echo "$out" >&2
req=$(grep -c "Echo (ping) request" <<<"$out" || true)
rep=$(grep -c "Echo (ping) reply" <<<"$out" || true)
[ "$req" -ge 3 ] && [ "$rep" -ge 3 ] || fail "expected >= 3 requests and replies, got $req/$rep"
arp=$(tshark -r "$P" -n -Y arp 2>/dev/null | wc -l)
[ "$arp" -ge 2 ] || fail "expected the ARP exchange in the capture, got $arp lines"
tcpdump_out=$(tcpdump -r "$P" -n icmp 2>/dev/null) || fail "tcpdump -r cannot read the capture"
[ "$(grep -c "ICMP echo" <<<"$tcpdump_out")" -ge 6 ] || fail "tcpdump shows too few echoes: $tcpdump_out"
log "ok: capture shows $req echo requests, $rep replies, $arp ARP frames"
