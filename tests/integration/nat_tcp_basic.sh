#!/usr/bin/env bash
# TCP through the NAT engine from a namespace guest, against real peers: curl fetches files from
# busybox httpd on the host's loopback (through the host alias) and in the world namespace; a
# closed port fails fast with a reset, an unreachable route at once with ICMP, a silent
# destination after --connect-timeout; half-close works both ways; DNS over TCP reaches the
# forwarder; a guest that stops reading (zero window) and a server that stops reading (no send
# space) lose no byte; a reset mid-transfer by the guest reaches the server and one by the server
# reaches the guest; nothing leaks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

UP=127.0.0.53 # dnsmasq, DNS upstream of the forwarder
NAT_DNS_UPSTREAM=$UP:53 # its pool of UDP sockets is not a leak
nat_world_up
netns_add g1

# Servers: httpd on the host's loopback and in world, each with a 3 MiB random file.
mkdir -p "$SLW_TMP/www"
head -c $((3 << 20)) /dev/urandom >"$SLW_TMP/www/blob"
echo "hello from slipway" >"$SLW_TMP/www/index.html"
bg "$SLW_HOST" busybox httpd -f -p 127.0.0.1:8080 -h "$SLW_TMP/www"
bg world busybox httpd -f -p "$WORLD_IP:80" -h "$SLW_TMP/www"
wait_listen "$SLW_HOST" 8080
wait_listen world 80
bg "$SLW_HOST" dnsmasq --keep-in-foreground --no-resolv --no-hosts -C /dev/null \
    --pid-file="$SLW_TMP/dnsmasq.pid" --bind-interfaces --listen-address="$UP" --port=53 \
    --address=/nat.test/10.9.8.7 --address=/two.nat.test/10.9.8.8 --log-facility="$SLW_TMP/dnsmasq.log"
wait_until 10 in_ns "$SLW_HOST" dig @"$UP" +tries=1 +time=1 +short nat.test A ||
    fail "dnsmasq does not answer"
# A destination that never answers: world drops everything to port 9999.
in_ns world nft -f - <<'NFT'
table inet slwsilent {
    chain in {
        type filter hook input priority 0; policy accept;
        tcp dport 9999 drop
    }
}
NFT
# A destination behind an unreachable route.
ip -n "$SLW_HOST" route add unreachable 203.0.113.0/24

start_daemon --dns-upstream "$UP" --connect-timeout 2 --attach "$(guest_spec g1)"
nat_guest_up g1
nat_baseline

curl_g1() { in_ns g1 curl -q -sS --noproxy '*' --max-time 30 "$@"; }

# --- HTTP through the host alias and to the world ---
syn0=$(gw tcp_syn_received)
est0=$(gw tcp_established)
closed0=$(gw tcp_closed)
curl_g1 -o "$SLW_TMP/alias.blob" "http://$HOST_ALIAS:8080/blob" || fail "curl via the host alias failed"
cmp -s "$SLW_TMP/alias.blob" "$SLW_TMP/www/blob" || fail "the file fetched via the host alias differs"
log "ok: 3 MiB over http://$HOST_ALIAS:8080 (host loopback) arrived intact"
curl_g1 -o "$SLW_TMP/world.blob" "http://$WORLD_IP/blob" || fail "curl to the world failed"
cmp -s "$SLW_TMP/world.blob" "$SLW_TMP/www/blob" || fail "the file fetched from the world differs"
out=$(curl_g1 "http://$WORLD_IP/index.html") || fail "curl index.html failed"
[ "$out" = "hello from slipway" ] || fail "index.html: '$out'"
log "ok: 3 MiB and a small page over http://$WORLD_IP arrived intact"
[ "$(gw tcp_syn_received)" -ge $((syn0 + 3)) ] || fail "tcp_syn_received $(gw tcp_syn_received), was $syn0"
[ "$(gw tcp_established)" -ge $((est0 + 3)) ] || fail "tcp_established $(gw tcp_established), was $est0"
wait_until 10 counter_ge tcp_closed $((closed0 + 3)) ||
    fail "tcp_closed $(gw tcp_closed), was $closed0: the three fetches did not close in order"
[ "$(gw tcp_bytes_to_guest)" -ge $((6 << 20)) ] || fail "tcp_bytes_to_guest $(gw tcp_bytes_to_guest)"
log "ok: syn_received=$(gw tcp_syn_received) established=$(gw tcp_established) closed=$(gw tcp_closed)"

# --- connection failures ---
# timed_curl WANT_EXIT URL: curl from g1 must exit WANT_EXIT; sets TOOK (ms).
timed_curl() {
    local want=$1 url=$2 start rc=0
    start=$(ms_now)
    curl_g1 --max-time 15 -o /dev/null "$url" 2>"$SLW_TMP/curl.err" || rc=$?
    TOOK=$(($(ms_now) - start))
    [ "$rc" -eq "$want" ] || fail "curl $url exited $rc after $TOOK ms, expected $want: $(cat "$SLW_TMP/curl.err")"
}
# connect_errno ADDR PORT: the error a plain connect() from g1 ends with (e.g. error:ECONNREFUSED).
connect_errno() { in_ns g1 timeout 30 "$PY" "$NAT_TOOL" connect "$1" "$2" | awk '{print $1}'; }

# A closed port: the world answers RST, slipway resets the guest at once.
c0=$(gw tcp_connect_refused)
timed_curl 7 "http://$WORLD_IP:9/"
[ "$TOOK" -lt 2000 ] || fail "a refused connection took $TOOK ms to fail"
[ "$(gw tcp_connect_refused)" -ge $((c0 + 1)) ] || fail "tcp_connect_refused $(gw tcp_connect_refused), was $c0"
e=$(connect_errno "$WORLD_IP" 9)
[ "$e" = error:ECONNREFUSED ] || fail "connect to a closed port ended with $e"
log "ok: closed port: curl exit 7 after $TOOK ms, connect() $e; tcp_connect_refused=$(gw tcp_connect_refused)"

# An unreachable route in the host namespace: ICMP unreachable to the guest, at once.
c0=$(gw tcp_connect_unreachable)
timed_curl 7 "http://203.0.113.5/"
[ "$TOOK" -lt 2000 ] || fail "an unreachable destination took $TOOK ms to fail"
[ "$(gw tcp_connect_unreachable)" -ge $((c0 + 1)) ] ||
    fail "tcp_connect_unreachable $(gw tcp_connect_unreachable), was $c0"
e=$(connect_errno 203.0.113.5 80)
[ "$e" = error:EHOSTUNREACH ] || [ "$e" = error:ENETUNREACH ] ||
    fail "connect to an unreachable destination ended with $e, expected EHOSTUNREACH (ICMP)"
log "ok: unreachable route: curl exit 7 after $TOOK ms, connect() $e; tcp_connect_unreachable=$(gw tcp_connect_unreachable)"

# A silent destination: no answer at all; slipway gives up after --connect-timeout 2 and resets
# the guest. The guest's retransmitted SYN (at 1 s) must not start a second flow.
c0=$(gw tcp_connect_timeout)
syn0=$(gw tcp_syn_received)
# curl's exit is 7 when the RST arrives, 28 when its own --max-time (15 s) ran out first.
timed_curl 7 "http://$WORLD_IP:9999/"
if [ "$TOOK" -lt 1500 ] || [ "$TOOK" -gt 6000 ]; then
    fail "a silent destination failed after $TOOK ms, expected about 2 s (--connect-timeout 2)"
fi
[ "$(gw tcp_connect_timeout)" -ge $((c0 + 1)) ] || fail "tcp_connect_timeout $(gw tcp_connect_timeout), was $c0"
[ "$(gw tcp_syn_received)" -eq $((syn0 + 1)) ] ||
    fail "one silent connect counted $(($(gw tcp_syn_received) - syn0)) flows (tcp_syn_received), expected 1"
log "ok: silent destination: curl exit 7 after $TOOK ms, one flow; tcp_connect_timeout=$(gw tcp_connect_timeout)"

# --- half-close ---
# The guest shuts its write side first; the server reads to EOF, then replies (its sha256 line
# and 1 MiB) and the guest still receives all of it.
nat_serve world "$WORLD_IP" 5001 sink --reply-bytes $((1 << 20)) --seed 11
out=$(in_ns g1 timeout 60 "$PY" "$NAT_TOOL" send "$WORLD_IP" 5001 $((2 << 20)) --seed 3 \
    --reply-bytes $((1 << 20)) --reply-seed 11) || fail "half-close (guest first): $out"
line=$(srv_wait 5001 1)
read -r _ sha n st <<<"$line"
want=$(in_ns g1 "$PY" "$NAT_TOOL" sha 3 $((2 << 20)))
[ "$sha $n" = "$want" ] || fail "half-close (guest first): server got '$line', sent '$want'"
[ "$st" = eof ] || fail "half-close (guest first): server ended with $st"
log "ok: guest shut first, the server got 2 MiB and the guest its 1 MiB reply after ($(sed -n 's/^reply-data //p' <<<"$out"))"

# The server shuts its write side first (after 1 MiB); the guest reads to EOF, then sends 1 MiB
# and the server receives it.
nat_serve world "$WORLD_IP" 5002 source --bytes $((1 << 20)) --seed 12
out=$(in_ns g1 timeout 60 "$PY" "$NAT_TOOL" recv "$WORLD_IP" 5002 --then-send $((1 << 20)) --seed 13) ||
    fail "half-close (server first): $out"
line=$(srv_wait 5002 1)
read -r _ ssha sn gsha gn st <<<"$line"
got=$(sed -n 's/^got \([0-9a-f]* [0-9]*\).*/\1/p' <<<"$out")
sent=$(sed -n 's/^sent //p' <<<"$out")
[ "$got" = "$ssha $sn" ] || fail "half-close (server first): guest got '$got', server sent '$ssha $sn'"
[ "$gsha $gn" = "$sent" ] || fail "half-close (server first): server got '$gsha $gn', guest sent '$sent'"
[ "$st" = eof ] || fail "half-close (server first): server ended with $st"
log "ok: server shut first, the guest got its 1 MiB, then sent 1 MiB that arrived"

# --- DNS over TCP to the gateway ---
out=$(in_ns g1 dig +tcp +tries=1 +time=5 +short @"$GW" nat.test A) || fail "dig +tcp failed: $out"
[ "$out" = 10.9.8.7 ] || fail "dig +tcp nat.test: '$out'"
out=$(in_ns g1 dig +tcp +keepopen +tries=1 +time=5 +short @"$GW" nat.test A two.nat.test A) ||
    fail "dig +tcp +keepopen failed: $out"
[ "$(paste -sd ' ' - <<<"$out")" = "10.9.8.7 10.9.8.8" ] ||
    fail "two queries on one TCP connection: '$out'"
log "ok: DNS over TCP: one query, and two on one connection"

# --- flow control ---
# A guest that stops reading: a 64 KiB receive buffer, 3 s asleep while 8 MiB come; its window
# goes to 0. Every byte must arrive once it reads again.
nat_serve world "$WORLD_IP" 5003 source --bytes $((8 << 20)) --seed 21
p0=$(gw tcp_window_probes)
out=$(in_ns g1 timeout 60 "$PY" "$NAT_TOOL" recv "$WORLD_IP" 5003 --sleep 3 --rcvbuf 65536) ||
    fail "slow guest reader: $out"
want=$(in_ns g1 "$PY" "$NAT_TOOL" sha 21 $((8 << 20)))
got=$(sed -n 's/^got \([0-9a-f]* [0-9]*\).*/\1/p' <<<"$out")
[ "$got" = "$want" ] || fail "slow guest reader got '$got', expected '$want'"
srv_wait 5003 1 >/dev/null
log "ok: a guest asleep 3 s with a full window got all 8 MiB ($got); window_probes +$(($(gw tcp_window_probes) - p0))"
# A server that stops reading: slipway's socket runs out of send space, the guest's window
# closes and opens again.
nat_serve world "$WORLD_IP" 5004 sink --sleep 3 --rcvbuf 65536
out=$(in_ns g1 timeout 60 "$PY" "$NAT_TOOL" send "$WORLD_IP" 5004 $((8 << 20)) --seed 22) ||
    fail "slow server reader: $out"
line=$(srv_wait 5004 1)
log "ok: a server asleep 3 s got all 8 MiB from the guest (${line#sink }); window_updates=$(gw tcp_window_updates)"

# --- guest resets mid-transfer ---
r0=$(gw tcp_reset_by_guest)
nat_serve world "$WORLD_IP" 5005 source --bytes $((64 << 20)) --seed 31
out=$(in_ns g1 timeout 30 "$PY" "$NAT_TOOL" reset "$WORLD_IP" 5005 read $((1 << 20))) ||
    fail "reset client (reading): $out"
line=$(srv_wait 5005 1)
[[ "$line" == *error:E* ]] || fail "the server kept sending after the guest's reset: '$line'"
nat_serve world "$WORLD_IP" 5006 sink
out=$(in_ns g1 timeout 30 "$PY" "$NAT_TOOL" reset "$WORLD_IP" 5006 write $((2 << 20))) ||
    fail "reset client (writing): $out"
line2=$(srv_wait 5006 1)
[[ "$line2" == *error:E* ]] || fail "the server saw an orderly end after the guest's reset: '$line2'"
[ "$(gw tcp_reset_by_guest)" -ge $((r0 + 2)) ] ||
    fail "tcp_reset_by_guest $(gw tcp_reset_by_guest), was $r0"
log "ok: guest resets mid-transfer reach the peer ('${line##* }', '${line2##* }'); tcp_reset_by_guest=$(gw tcp_reset_by_guest)"

# --- the server resets mid-transfer ---
r0=$(gw tcp_reset_by_host)
nat_serve world "$WORLD_IP" 5007 source --bytes $((4 << 20)) --seed 32 --reset
rc=0
out=$(in_ns g1 timeout 30 "$PY" "$NAT_TOOL" recv "$WORLD_IP" 5007 --sleep 1) || rc=$?
if [ "$rc" -ne 2 ] || [[ "$out" != error:ECONNRESET* ]]; then
    fail "the guest did not see the server's reset: exit $rc, '$out'"
fi
srv_wait 5007 1 >/dev/null
wait_until 5 counter_ge tcp_reset_by_host $((r0 + 1)) ||
    fail "tcp_reset_by_host $(gw tcp_reset_by_host), was $r0"
log "ok: a server reset mid-transfer reaches the guest ($out); tcp_reset_by_host=$(gw tcp_reset_by_host)"

nat_counters
nat_leak_check 30
expect "the daemon is alive" daemon_alive
stop_daemon
