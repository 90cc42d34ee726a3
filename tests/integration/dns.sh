#!/usr/bin/env bash
# The DNS forwarder at the gateway, against real resolvers: dnsmasq upstreams on the host
# namespace's loopback, dig and busybox nslookup in a guest namespace. A, AAAA, TXT and NXDOMAIN
# pass through; a large answer truncated by the upstream over UDP is fetched again over TCP and
# reaches the guest whole over UDP; local names (built-in, --dns-record, DHCP host names under
# --domain) are answered without the upstream; a repeated query comes from the cache; a silent or
# dead upstream gives SERVFAIL within 2 s; malformed datagrams are counted and survived; in
# resolv.conf mode a rewrite of the file moves the forwarder to the new nameserver; an IPv6
# upstream with a port works; --no-dns turns the service off.
. "$(dirname "$0")/lib.sh"

GW=192.168.127.1
UP1=127.0.0.53 # upstream 1 (all runs but the last two)
UP2=127.0.0.54 # upstream 2 (also on [::1]:53): different records
netns_add "$SLW_HOST"
netns_add g1
netns_add g2

# Upstream 1's records. big.test: ten TXT records of 90 bytes each, 1057 bytes as one message:
# dnsmasq (--edns-packet-max=512) truncates it over UDP and serves it whole over TCP; it fits a
# 1232-byte EDNS buffer and a 1500-byte MTU. nx.test: NXDOMAIN (with --no-resolv dnsmasq answers
# REFUSED for names it has no configuration for). TTLs are 300 s (--local-ttl), so answers cache.
big_args=()
for i in $(seq 1 10); do
    big_args+=("--txt-record=big.test,$(printf 'record%02d-%s' "$i" "$(printf 'y%.0s' $(seq 80))")")
done
up1_args=(--address=/a.test/10.1.2.3 --host-record=h.test,10.1.2.4,fd00::4
    --txt-record=t.test,"hello world" --address=/nx.test/ --address=/r.test/10.7.0.1
    "${big_args[@]}")
up2_args=(--address=/a.test/10.4.5.6 --address=/r.test/10.7.0.2 --address=/only2.test/10.7.7.7)

# upstream NAME ARGS...: dnsmasq in the host namespace, in the foreground, its queries logged to
# $SLW_TMP/NAME.log; UPSTREAM_PID[NAME] is its PID. Waits (bounded) until it answers.
declare -A UPSTREAM_PID
upstream() {
    local name=$1 addr
    shift
    bg "$SLW_HOST" dnsmasq --keep-in-foreground --no-resolv --no-hosts -C /dev/null \
        --pid-file="$SLW_TMP/$name.pid" --bind-interfaces --port=53 --edns-packet-max=512 \
        --local-ttl=300 --log-queries --log-facility="$SLW_TMP/$name.log" "$@"
    UPSTREAM_PID[$name]=$LAST_PID
    addr=$(printf '%s\n' "$@" | sed -n 's/^--listen-address=//p' | head -n 1)
    for _ in $(seq 50); do
        in_ns "$SLW_HOST" dig @"$addr" +tries=1 +time=1 +short ready.a.test A 2>/dev/null |
            grep -q . && return 0
        kill -0 "$LAST_PID" 2>/dev/null || fail "dnsmasq $name exited: $(cat "$SLW_TMP/$name.log")"
        sleep 0.1
    done
    fail "dnsmasq $name does not answer on $addr"
}
# upstream_stop NAME: SIGTERM (and SIGCONT, should it be stopped); waits until it has exited.
upstream_stop() {
    local pid=${UPSTREAM_PID[$1]}
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "dnsmasq $1 did not exit"
    wait "$pid" 2>/dev/null || true
}

# dg ARGS...: dig from guest g1 to the gateway, one try.
dg() { in_ns g1 dig @"$GW" +tries=1 +time=3 "$@"; }
# ans NAME [TYPE]: the answer's records (dig +short), sorted, on one line.
ans() { dg +short "$@" | sort | paste -sd ' ' -; }
# rcode NAME [TYPE]: the response code.
rcode() { dg "$@" | sed -n 's/.*status: \([A-Z]*\),.*/\1/p'; }
# ancount NAME [TYPE]: the number of answer records in the header.
ancount() { dg "$@" | sed -n 's/.*ANSWER: \([0-9]*\),.*/\1/p'; }
# check_ans DESCRIPTION EXPECTED NAME [TYPE]
check_ans() {
    local what=$1 want=$2 got
    shift 2
    got=$(ans "$@") || true
    [ "$got" = "$want" ] || fail "$what: $* answered '$got', expected '$want'"
    log "ok: $what ($* -> $got)"
}
check_rcode() {
    local what=$1 want=$2 got
    shift 2
    got=$(rcode "$@") || true
    [ "$got" = "$want" ] || fail "$what: $* gave status '$got', expected $want"
    log "ok: $what ($* -> $got)"
}
# nsl ARGS...: busybox nslookup from g1 to the gateway.
nsl() { in_ns g1 timeout 15 busybox nslookup "$@" "$GW" 2>&1; }
gw() { counter gateway "$1"; }
# wait_counter NAME MIN: the gateway counter reaches MIN within 5 s.
wait_counter() {
    local v
    for _ in $(seq 50); do
        v=$(gw "$1")
        [ "$v" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "gateway counter $1 is $v, expected >= $2"
}
# ms_now: milliseconds, for timing one query.
ms_now() { echo $(($(date +%s%N) / 1000000)); }

upstream up1 --listen-address=$UP1 "${up1_args[@]}"
expect "dnsmasq truncates big.test over UDP (512 bytes)" \
    bash -c "ip netns exec $SLW_HOST dig @$UP1 +bufsize=1232 +ignore big.test TXT | grep -q 'flags:.* tc'"

log "run 1: --dns-upstream $UP1, local records, DHCP host names under slipway.test"
start_daemon --dns-upstream "$UP1" --dns-record db.example=10.20.30.40 \
    --dns-record Mixed.Case.Example=10.20.30.41 --domain slipway.test \
    --dhcp-range 192.168.127.10-192.168.127.20 \
    --attach "$(guest_spec g1)" --attach "$(guest_spec g2)"
guest_up g1 192.168.127.2/24
wait_until 10 in_ns g1 dig @"$GW" +tries=1 +time=1 gateway.slipway.internal A ||
    fail "the gateway does not answer DNS from g1"

# Pass-through.
q0=$(gw dns_queries)
check_ans "A passes through" 10.1.2.3 a.test A
check_ans "A under a wildcard passes through" 10.1.2.3 www.a.test A
check_ans "AAAA passes through" fd00::4 h.test AAAA
check_ans "A of a host-record" 10.1.2.4 h.test A
check_ans "TXT passes through" '"hello world"' t.test TXT
check_rcode "NXDOMAIN passes through" NXDOMAIN foo.nx.test A
out=$(nsl -type=A a.test) || fail "nslookup a.test: $out"
grep -q 'Address: 10.1.2.3' <<<"$out" || fail "nslookup a.test: $out"
out=$(nsl h.test) || fail "nslookup h.test: $out"
grep -q 'Address: 10.1.2.4' <<<"$out" && grep -q 'Address: fd00::4' <<<"$out" ||
    fail "nslookup h.test (A and AAAA): $out"
out=$(nsl -type=TXT t.test) || fail "nslookup TXT t.test: $out"
grep -q 'text = "hello world"' <<<"$out" || fail "nslookup TXT t.test: $out"
out=$(nsl -type=A bar.nx.test) && fail "nslookup bar.nx.test succeeded: $out"
grep -q NXDOMAIN <<<"$out" || fail "nslookup bar.nx.test: $out"
log "ok: busybox nslookup: A, A+AAAA, TXT, NXDOMAIN"
[ "$(gw dns_queries)" -ge $((q0 + 11)) ] || fail "dns_queries $(gw dns_queries), was $q0"
[ "$(gw dns_upstream_answers)" -ge 7 ] || fail "dns_upstream_answers $(gw dns_upstream_answers)"
[ "$(gw dns_upstream_queries)" -ge "$(gw dns_upstream_answers)" ] ||
    fail "dns_upstream_queries $(gw dns_upstream_queries) < answers $(gw dns_upstream_answers)"
log "ok: counters: dns_queries=$(gw dns_queries) upstream_queries=$(gw dns_upstream_queries) upstream_answers=$(gw dns_upstream_answers)"

# A large answer: the upstream truncates it over UDP, slipway asks again over TCP and the guest
# (EDNS 1232, dig +ignore: no TCP fallback of its own) gets all ten records over UDP.
tcp0=$(gw dns_tcp_retries)
out=$(dg +bufsize=1232 +ignore big.test TXT) || fail "big.test: dig failed: $out"
grep -q 'flags:.* tc' <<<"$out" && fail "big.test reached the guest truncated: $out"
[ "$(grep -c '^big\.test\..*TXT' <<<"$out")" -eq 10 ] || fail "big.test: not 10 records: $out"
for i in $(seq -w 1 10); do
    grep -q "\"record$i-y\{80\}\"" <<<"$out" || fail "big.test: record $i missing or cut: $out"
done
size=$(sed -n 's/.*MSG SIZE *rcvd: \([0-9]*\).*/\1/p' <<<"$out")
[ "$size" -gt 1000 ] && [ "$size" -le 1232 ] || fail "big.test: message size $size"
[ "$(gw dns_tcp_retries)" -ge $((tcp0 + 1)) ] || fail "dns_tcp_retries $(gw dns_tcp_retries), was $tcp0"
grep -q "query\[TXT\] big.test" "$SLW_TMP/up1.log" || fail "upstream never saw big.test"
log "ok: big.test: 10 TXT records, $size bytes over UDP, no TC; dns_tcp_retries=$(gw dns_tcp_retries)"
out=$(dg +noedns +ignore big.test TXT) || fail "big.test without EDNS: dig failed: $out"
grep -q 'flags:.* tc' <<<"$out" || fail "big.test to a 512-byte client came without TC: $out"
size=$(sed -n 's/.*MSG SIZE *rcvd: \([0-9]*\).*/\1/p' <<<"$out")
[ "$size" -le 512 ] || fail "big.test to a 512-byte client: $size bytes"
log "ok: without EDNS the same answer comes with TC in $size bytes"

# Local names: answered by slipway, never asked upstream.
l0=$(gw dns_local_answers)
check_ans "host.containers.internal is the host alias" 192.168.127.254 host.containers.internal A
check_ans "host.docker.internal is the host alias" 192.168.127.254 host.docker.internal A
check_ans "host.slipway.internal is the host alias" 192.168.127.254 host.slipway.internal A
check_ans "gateway.slipway.internal is the gateway" 192.168.127.1 gateway.slipway.internal A
check_ans "gateway.containers.internal is the gateway" 192.168.127.1 gateway.containers.internal A
check_ans "names are case-insensitive" 192.168.127.254 HOST.Containers.INTERNAL A
check_ans "a --dns-record name" 10.20.30.40 db.example A
check_ans "a --dns-record name given in mixed case" 10.20.30.41 mixed.case.example A
check_rcode "an unknown name under slipway.internal is NXDOMAIN" NXDOMAIN x.slipway.internal A
check_rcode "AAAA of a local name is NOERROR" NOERROR host.containers.internal AAAA
[ "$(ancount host.containers.internal AAAA)" = 0 ] || fail "AAAA of a local name has answers"
log "ok: AAAA of a local name: no answer"
out=$(nsl -type=A host.containers.internal) || fail "nslookup host.containers.internal: $out"
grep -q 'Address: 192.168.127.254' <<<"$out" || fail "nslookup host.containers.internal: $out"
[ "$(gw dns_local_answers)" -ge $((l0 + 11)) ] ||
    fail "dns_local_answers $(gw dns_local_answers), was $l0"
if grep -Eiq 'query\[[A-Z]+\] (host|gateway|db|mixed|x)\.' "$SLW_TMP/up1.log"; then
    fail "local names went upstream: $(grep -Ei 'query\[[A-Z]+\] (host|gateway|db|mixed|x)\.' "$SLW_TMP/up1.log")"
fi
log "ok: local names: dns_local_answers=$(gw dns_local_answers), none of them reached the upstream"

# A guest's DHCP host name under --domain.
SLW_LEASE_OUT="$SLW_TMP/g2.lease" SLW_RESOLV="$SLW_TMP/g2.resolv" \
    timeout 20 ip netns exec g2 busybox udhcpc -i slw0 -n -q -t 4 -T 1 \
    -s "$TOOLS/udhcpc_script.sh" -x hostname:g2 >"$SLW_TMP/g2.udhcpc" 2>&1 ||
    fail "g2: no DHCP lease: $(cat "$SLW_TMP/g2.udhcpc")"
g2ip=$(sed -n 's/^ip=//p' "$SLW_TMP/g2.lease")
log "g2 leased $g2ip"
check_ans "g2's DHCP host name resolves under --domain" "$g2ip" g2.slipway.test A

# The cache: the second query for a name is a cache hit and does not go upstream.
h0=$(gw dns_cache_hits)
check_ans "first query of cached.a.test" 10.1.2.3 cached.a.test A
u0=$(gw dns_upstream_queries)
check_ans "second query of cached.a.test" 10.1.2.3 cached.a.test A
check_ans "third query of cached.a.test" 10.1.2.3 cached.a.test A
[ "$(gw dns_cache_hits)" -ge $((h0 + 2)) ] || fail "dns_cache_hits $(gw dns_cache_hits), was $h0"
[ "$(gw dns_upstream_queries)" -eq "$u0" ] ||
    fail "cached queries went upstream: dns_upstream_queries $u0 -> $(gw dns_upstream_queries)"
[ "$(grep -c 'query\[A\] cached.a.test' "$SLW_TMP/up1.log")" -eq 1 ] ||
    fail "upstream saw cached.a.test more than once: $(grep 'cached.a.test' "$SLW_TMP/up1.log")"
ttl=$(dg +noall +answer cached.a.test A | awk '{print $2}')
[ -n "$ttl" ] && [ "$ttl" -le 300 ] || fail "cached answer's TTL '$ttl'"
[ "$(gw dns_cache_entries)" -ge 1 ] || fail "dns_cache_entries $(gw dns_cache_entries)"
log "ok: cache: dns_cache_hits=$(gw dns_cache_hits) dns_cache_entries=$(gw dns_cache_entries), TTL $ttl"

# Malformed datagrams from the guest: truncated headers, compression-pointer loops, a question
# cut in mid-label, random bytes. The forwarder drops (or FORMERRs) them and keeps serving.
m0=$(gw dns_drop_malformed)
f0=$(counter gateway dns_formerr 2>/dev/null || echo 0)
in_ns g1 "$PY" - <<'PY' >"$SLW_TMP/malformed.out"
import os, random, socket, struct
gw = ("192.168.127.1", 53)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
hdr = struct.pack("!HHHHHH", 0x5157, 0x0100, 1, 0, 0, 0)   # a query with one question
for n in range(1, 12):                                       # 11 truncated headers
    s.sendto(hdr[:n], gw)
q = b"\x00\x01\x00\x01"
s.sendto(hdr + b"\xc0\x0c" + q, gw)                 # the name points at itself
s.sendto(hdr + b"\xc0\x0e\xc0\x0c" + q, gw)         # two pointers pointing at each other
s.sendto(hdr + b"\x01a\xc0\x0c" + q, gw)            # a label, then a pointer back to it
s.sendto(hdr + b"\x3fabc", gw)                      # a label running past the end
rnd = random.Random(53)
for _ in range(40):                                 # random bytes
    s.sendto(bytes(rnd.randrange(256) for _ in range(rnd.randrange(12, 600))), gw)
rcodes = []
try:
    while True:
        data, _ = s.recvfrom(4096)
        rcodes.append(data[3] & 0x0F if len(data) >= 4 else -1)
except socket.timeout:
    pass
print("replies", len(rcodes), "rcodes", sorted(set(rcodes)))
PY
log "malformed datagrams sent; $(cat "$SLW_TMP/malformed.out")"
expect "the daemon survives malformed DNS" daemon_alive
# All 15 structured ones count as malformed (those with a readable header also get FORMERR,
# counted in dns_formerr too); random bytes are counted as whatever they parse as.
wait_counter dns_drop_malformed $((m0 + 15))
log "ok: dns_drop_malformed +$(($(gw dns_drop_malformed) - m0)), dns_formerr +$(($(counter gateway dns_formerr 2>/dev/null || echo 0) - f0))"
check_ans "the forwarder still answers (upstream)" 10.1.2.3 after-garbage.a.test A
check_ans "the forwarder still answers (local)" 192.168.127.1 gateway.slipway.internal A

# Upstream failures: SERVFAIL within 2 s, first with a silent upstream (SIGSTOP: no answer, no
# ICMP error), then with a dead one (port unreachable).
s0=$(gw dns_servfail)
t0=$(gw dns_upstream_timeouts)
# servfail_within WHAT NAME: the query gets SERVFAIL, which dig hears (its "Query time", from
# send to answer, not counting its own start-up) in under 2 s; the wall clock around dig must
# agree within a second.
servfail_within() {
    local what=$1 name=$2 out start took qt
    start=$(ms_now)
    out=$(dg +time=6 "$name" A) || fail "$what: no answer: $out"
    took=$(($(ms_now) - start))
    grep -q 'status: SERVFAIL' <<<"$out" || fail "$what: no SERVFAIL: $out"
    qt=$(sed -n 's/^;; Query time: \([0-9]*\) msec.*/\1/p' <<<"$out")
    [ -n "$qt" ] && [ "$qt" -lt 2000 ] && [ "$took" -lt 3000 ] ||
        fail "$what: SERVFAIL after $qt ms (dig's query time), $took ms wall clock"
    log "ok: $what: SERVFAIL in $qt ms ($took ms wall clock)"
}
kill -STOP "${UPSTREAM_PID[up1]}"
servfail_within "silent upstream" silent.a.test
[ "$(gw dns_servfail)" -ge $((s0 + 1)) ] || fail "dns_servfail $(gw dns_servfail), was $s0"
[ "$(gw dns_upstream_timeouts)" -ge $((t0 + 1)) ] ||
    fail "dns_upstream_timeouts $(gw dns_upstream_timeouts), was $t0"
log "ok: dns_servfail=$(gw dns_servfail) dns_upstream_timeouts=$(gw dns_upstream_timeouts)"
check_ans "a cached name still answers while the upstream is silent" 10.1.2.3 cached.a.test A
upstream_stop up1
servfail_within "dead upstream" dead.a.test
log "ok: dns_servfail=$(gw dns_servfail) dns_upstream_errors=$(gw dns_upstream_errors)"
expect "the daemon is alive" daemon_alive
stop_daemon

log "run 2: --resolv-conf; the file is rewritten to name another nameserver"
upstream up1b --listen-address=$UP1 "${up1_args[@]}"
upstream up2 --listen-address=$UP2 --listen-address=::1 "${up2_args[@]}"
RESOLV="$SLW_TMP/resolv.conf"
printf '# written by the test\nsearch example.org\nnameserver %s\n' "$UP1" >"$RESOLV"
start_daemon --resolv-conf "$RESOLV" --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24
wait_until 10 in_ns g1 dig @"$GW" +tries=1 +time=1 gateway.slipway.internal A ||
    fail "the gateway does not answer DNS from g1"
check_ans "the nameserver of resolv.conf answers" 10.7.0.1 n0.r.test A
# follow WANT: poll with never-asked names (no cache can answer) until the answer is WANT.
follow() {
    local want=$1 start n=0 got=""
    start=$(ms_now)
    while [ $(($(ms_now) - start)) -lt 6000 ]; do
        n=$((n + 1))
        got=$(in_ns g1 dig @"$GW" +tries=1 +time=1 +short "p$n.$want.r.test" A 2>/dev/null) || true
        [ "$got" = "$want" ] && break
        sleep 0.2
    done
    [ "$got" = "$want" ] || fail "answers did not follow resolv.conf within 6 s (last: '$got')"
    log "ok: answers follow the rewritten resolv.conf after $(($(ms_now) - start)) ms"
}
printf '# rewritten in place\nnameserver %s\n' "$UP2" >"$RESOLV"
follow 10.7.0.2
check_ans "a name only the new nameserver knows" 10.7.7.7 only2.test A
printf 'nameserver %s\noptions edns0\n' "$UP1" >"$RESOLV.new"
mv "$RESOLV.new" "$RESOLV"
follow 10.7.0.1
stop_daemon

log "run 3: two upstreams: a dead one first, then [::1]:53"
start_daemon --dns-upstream 127.0.0.9:5353 --dns-upstream "[::1]:53" --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24
wait_until 10 in_ns g1 dig @"$GW" +tries=1 +time=1 gateway.slipway.internal A ||
    fail "the gateway does not answer DNS from g1"
start=$(ms_now)
check_ans "the IPv6 upstream answers when the first is dead" 10.7.7.7 only2.test A
log "ok: answered in $(($(ms_now) - start)) ms"
stop_daemon

log "run 4: --no-dns"
start_daemon --no-dns --attach "$(guest_spec g1)"
guest_up g1 192.168.127.2/24
expect "the gateway is reachable" in_ns g1 ping -c 1 -W 2 "$GW"
d0=$(gw drop_unhandled)
expect_fail "no DNS answer with --no-dns" in_ns g1 dig @"$GW" +tries=1 +time=1 a.test A
wait_counter drop_unhandled $((d0 + 1))
log "ok: drop_unhandled=$(gw drop_unhandled)"
stop_daemon
