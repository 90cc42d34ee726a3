#!/usr/bin/env bash
# Port forwarding (issue 7), from the host into namespace guest g1: a --forward rule carries
# curl on the host's 127.0.0.1 to busybox httpd in the guest; rules added at run time (slipwayctl
# forward add, gvproxy's /services/forwarder/expose) work, are listed, and once removed (forward
# rm, unexpose) their ports refuse; a client in the world namespace reaches the guest with its own
# address and port, a loopback client as the host alias; a guest port nobody listens on resets
# the client at once, a guest address nobody answers ARP for after a few seconds; UDP keeps one
# mapping per client, each its own source at the guest, replies from the forwarded port; 100 MiB
# each way byte-exact; 200 concurrent connections echo intact; removing a rule leaves an
# established connection working, removing it with kill resets it; nothing leaks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

PEER="$TOOLS/portfwd_peer.py"
BIG=$((100 << 20))
N=200
SIZE=$((64 << 10))
NO_GUEST=192.168.127.77 # nobody answers ARP for it
raise_nofile
nat_world_up
netns_add g1

# Guest services, bound to the wildcard (g1's slw0 does not exist yet): httpd on 80, the
# peer-naming TCP server on 7100 and UDP server on 7200, a sink (5001), a 100 MiB source (5002)
# and an echo server (7000).
mkdir -p "$SLW_TMP/www"
PAGE="slipway port forwarding $(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$PAGE" >"$SLW_TMP/www/index.html"
head -c $((2 << 20)) /dev/urandom >"$SLW_TMP/www/blob"
bg g1 busybox httpd -f -p 80 -h "$SLW_TMP/www"
wait_listen g1 80
bg g1 "$PY" "$PEER" tcp-serve 0.0.0.0 7100 2>>"$SLW_TMP/peer.err"
wait_listen g1 7100
bg g1 "$PY" "$PEER" udp-serve 0.0.0.0 7200 --out "$SLW_TMP/udp.out" 2>>"$SLW_TMP/udp.err"
wait_until 10 bash -c "ip netns exec g1 ss -Hlun 'sport = :7200' | grep -q ." || fail "no UDP server on port 7200 in g1"
nat_serve g1 0.0.0.0 5001 sink
nat_serve g1 0.0.0.0 5002 source --bytes "$BIG" --seed 8
nat_serve g1 0.0.0.0 7000 echo
WANT_UP=$("$PY" "$NAT_TOOL" sha 7 "$BIG")
WANT_DOWN=$("$PY" "$NAT_TOOL" sha 8 "$BIG")

start_daemon --udp-timeout 3 --attach "$(guest_spec g1)" \
    --forward "tcp:8080=$GUEST_IP:80" \
    --forward "tcp:[::1]:8088=$GUEST_IP:7100" \
    --forward "tcp:0.0.0.0:8090=$GUEST_IP:7100" \
    --forward "udp:0.0.0.0:5353=$GUEST_IP:7200" \
    --forward "tcp:8099=$GUEST_IP:9" \
    --forward "tcp:8098=$NO_GUEST:80" \
    --forward "tcp:5001=$GUEST_IP:5001" \
    --forward "tcp:5002=$GUEST_IP:5002" \
    --forward "tcp:7000=$GUEST_IP:7000"
nat_guest_up g1
nat_baseline

on_host() { in_ns "$SLW_HOST" "$@"; }
curl_h() { on_host curl -q -sS --noproxy '*' --max-time 20 "$@"; }
# curl_rc URL: curl's exit status for URL from the host namespace (0 on success).
curl_rc() {
    local rc=0
    curl_h -o /dev/null "$1" 2>/dev/null || rc=$?
    echo "$rc"
}
# peer NS ADDR PORT: portfwd_peer.py tcp-peer from NS (its line: "seen PEER local LOCAL MS" or
# "error:E MS" / "eof MS").
peer() { in_ns "$1" timeout 30 "$PY" "$PEER" tcp-peer "$2" "$3"; }
# fwd_json: GET /v1/forwards. fwd_field ID FIELD: a field of forward ID.
fwd_json() { ctl --json forward ls; }
fwd_field() {
    fwd_json | "$PY" -c 'import json,sys
f=[f for f in json.load(sys.stdin)["forwards"] if f["id"]==int(sys.argv[1])]
print(f[0][sys.argv[2]] if f else "none")' "$1" "$2"
}
fwd_id_of() { # fwd_id_of HOST (e.g. 127.0.0.1:8080): the id of the forward bound there
    fwd_json | "$PY" -c 'import json,sys
f=[f for f in json.load(sys.stdin)["forwards"] if f["host"]==sys.argv[1]]
print(f[0]["id"] if f else "none")' "$1"
}
delta() { echo $(($(gw "$1") - $2)); }

# --- a --forward rule: host curl reaches httpd in the guest ---
op0=$(gw tcp_inbound_opened)
es0=$(gw tcp_inbound_established)
acc0=$(gw fwd_accepted) || fail "slipwayctl stats --json has no gateway counter fwd_accepted (clients the forwards accepted)"
ID8080=$(fwd_id_of 127.0.0.1:8080)
[ "$ID8080" != none ] || fail "no forward on 127.0.0.1:8080 in GET /v1/forwards: $(fwd_json)"
out=$(curl_h "http://127.0.0.1:8080/") || fail "curl http://127.0.0.1:8080/ failed"
[ "$out" = "$PAGE" ] || fail "curl http://127.0.0.1:8080/ got '$out', the guest serves '$PAGE'"
curl_h -o "$SLW_TMP/got.blob" "http://127.0.0.1:8080/blob" || fail "curl of the 2 MiB blob failed"
cmp -s "$SLW_TMP/got.blob" "$SLW_TMP/www/blob" || fail "the 2 MiB blob through the forward differs"
[ "$(delta tcp_inbound_opened "$op0")" -ge 2 ] || fail "tcp_inbound_opened rose by $(delta tcp_inbound_opened "$op0"), expected 2"
[ "$(delta tcp_inbound_established "$es0")" -ge 2 ] || fail "tcp_inbound_established rose by $(delta tcp_inbound_established "$es0")"
[ "$(delta fwd_accepted "$acc0")" -ge 2 ] || fail "fwd_accepted rose by $(delta fwd_accepted "$acc0")"
[ "$(fwd_field "$ID8080" accepted)" -ge 2 ] || fail "forward $ID8080 counts $(fwd_field "$ID8080" accepted) accepted clients, expected 2"
log "ok: curl 127.0.0.1:8080 got the guest's page and a 2 MiB blob intact (forward $ID8080, tcp_inbound_established=$(gw tcp_inbound_established))"
rc=$(curl_rc http://127.0.0.1:8083/)
[ "$rc" -eq 7 ] || fail "curl to 127.0.0.1:8083 (no forward) exited $rc, expected 7"
log "ok: a port with no forward refuses (curl exit 7)"

# --- a client reusing its port while the guest still holds the last connection in TIME_WAIT
# (httpd closed first): each new connection must come up at once, not after a SYN
# retransmission (slipway's ISNs for a 4-tuple grow with the clock, RFC 6528) ---
out=$(on_host timeout 60 "$PY" - <<'PYEOF'
import socket, time
worst = 0.0
for i in range(8):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 40555))
    s.settimeout(10)
    t = time.monotonic()
    s.connect(("127.0.0.1", 8080))
    s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    worst = max(worst, time.monotonic() - t)
    s.close()
    assert b"200" in data.split(b"\r\n", 1)[0], data[:80]
    time.sleep(0.05)
print("%d" % (worst * 1000))
PYEOF
) || fail "connections from one reused client port: $out"
[ "$out" -lt 800 ] || fail "a connection from a reused client port took $out ms (the guest's TIME_WAIT answered our SYN?)"
log "ok: 8 connections from the same client port 40555 (guest in TIME_WAIT), the slowest $out ms"

# --- rules added at run time: slipwayctl, gvproxy's expose; listed; removed ---
out=$(ctl forward add "tcp:8081=$GUEST_IP:80") || fail "slipwayctl forward add tcp:8081=$GUEST_IP:80: $out"
[[ "$out" =~ ^forward\ ([0-9]+):\ tcp:127\.0\.0\.1:8081=192\.168\.127\.2:80$ ]] ||
    fail "slipwayctl forward add printed '$out', expected 'forward ID: tcp:127.0.0.1:8081=$GUEST_IP:80'"
ID8081=${BASH_REMATCH[1]}
out=$(curl_h "http://127.0.0.1:8081/") || fail "curl 127.0.0.1:8081 after forward add failed"
[ "$out" = "$PAGE" ] || fail "curl 127.0.0.1:8081 got '$out'"
log "ok: slipwayctl forward add tcp:8081=$GUEST_IP:80 (forward $ID8081) serves the guest's page"

GV="http://gvproxy/services/forwarder"
gvc() { curl -sS --max-time 10 --unix-socket "$API" -o "$SLW_TMP/gv.body" -w '%{http_code}' "$@"; }
code=$(gvc -X POST -d '{"local":"127.0.0.1:8082","remote":"192.168.127.2:80","protocol":"tcp"}' "$GV/expose") ||
    fail "expose request failed"
[ "$code" = 200 ] && [ ! -s "$SLW_TMP/gv.body" ] ||
    fail "gvproxy expose of 127.0.0.1:8082 answered $code '$(cat "$SLW_TMP/gv.body")', expected 200 with no body"
out=$(curl_h "http://127.0.0.1:8082/") || fail "curl 127.0.0.1:8082 after expose failed"
[ "$out" = "$PAGE" ] || fail "curl 127.0.0.1:8082 got '$out'"
log "ok: gvproxy expose of 127.0.0.1:8082 (200, empty body) serves the guest's page"

ls_out=$(ctl forward ls) || fail "slipwayctl forward ls failed"
for h in 127.0.0.1:8080 127.0.0.1:8081 127.0.0.1:8082 0.0.0.0:5353; do
    grep -qE "^[0-9]+ +(tcp|udp) +$h +" <<<"$ls_out" || fail "slipwayctl forward ls does not list $h: $ls_out"
done
all=$(gvc "$GV/all") || fail "GET /services/forwarder/all failed"
[ "$all" = 200 ] || fail "GET /services/forwarder/all answered $all"
"$PY" - "$SLW_TMP/gv.body" <<'EOF' || fail "GET /services/forwarder/all: $(cat "$SLW_TMP/gv.body")"
import json, sys
doc = json.load(open(sys.argv[1]))
want = [{"local": "127.0.0.1:8081", "remote": "192.168.127.2:80", "protocol": "tcp"},
        {"local": "127.0.0.1:8082", "remote": "192.168.127.2:80", "protocol": "tcp"},
        {"local": "0.0.0.0:5353", "remote": "192.168.127.2:7200", "protocol": "udp"}]
missing = [w for w in want if w not in doc]
if missing:
    sys.exit(f"missing {missing}")
EOF
log "ok: slipwayctl forward ls and GET /services/forwarder/all list the new forwards"

out=$(ctl forward rm "$ID8081") || fail "slipwayctl forward rm $ID8081: $out"
rc=$(curl_rc http://127.0.0.1:8081/)
[ "$rc" -eq 7 ] || fail "curl 127.0.0.1:8081 after forward rm exited $rc, expected 7 (refused)"
code=$(gvc -X POST -d '{"local":"127.0.0.1:8082","protocol":"tcp"}' "$GV/unexpose") || fail "unexpose request failed"
[ "$code" = 200 ] || fail "gvproxy unexpose of 127.0.0.1:8082 answered $code '$(cat "$SLW_TMP/gv.body")'"
rc=$(curl_rc http://127.0.0.1:8082/)
[ "$rc" -eq 7 ] || fail "curl 127.0.0.1:8082 after unexpose exited $rc, expected 7 (refused)"
ls_out=$(ctl forward ls)
! grep -qE ' 127\.0\.0\.1:808[12] ' <<<"$ls_out" || fail "removed forwards still listed: $ls_out"
gvc "$GV/all" >/dev/null
! grep -q '127.0.0.1:808[12]' "$SLW_TMP/gv.body" || fail "removed forwards still in /all: $(cat "$SLW_TMP/gv.body")"
log "ok: after forward rm $ID8081 and unexpose, ports 8081 and 8082 refuse (curl exit 7) and are no longer listed"

# --- who the guest sees: the world client itself, a loopback client as the host alias ---
out=$(peer world "$HOST_WORLD_IP" 8090)
read -r what seen _ local ms <<<"$out"
[ "$what" = seen ] || fail "world client to $HOST_WORLD_IP:8090: $out"
[ "${seen%:*}" = "$WORLD_IP" ] || fail "the guest saw the world client as $seen, expected $WORLD_IP:PORT"
[ "$seen" = "$local" ] || fail "the guest saw the world client as $seen, the client is $local"
log "ok: a world client ($local) to $HOST_WORLD_IP:8090 is seen by the guest as $seen"
out=$(peer "$SLW_HOST" 127.0.0.1 8090)
read -r what seen _ local ms <<<"$out"
[ "$what" = seen ] || fail "loopback client to 127.0.0.1:8090: $out"
[ "${seen%:*}" = "$HOST_ALIAS" ] || fail "the guest saw a loopback client as $seen, expected $HOST_ALIAS:PORT"
log "ok: a loopback client ($local) is seen by the guest as $seen (the host alias)"
out=$(peer "$SLW_HOST" ::1 8088)
read -r what seen _ local ms <<<"$out"
[ "$what" = seen ] || fail "IPv6 loopback client to [::1]:8088: $out"
[ "${seen%:*}" = "$HOST_ALIAS" ] || fail "the guest saw an IPv6 loopback client as $seen, expected $HOST_ALIAS:PORT"
log "ok: an IPv6 loopback client ($local) through tcp:[::1]:8088 is seen by the guest as $seen"

# --- without --guest-api, nothing serves the gateway's port 80 to the guest ---
rc=0
in_ns g1 curl -q -sS --noproxy '*' --max-time 5 -o /dev/null "http://$GW/services/forwarder/all" 2>/dev/null || rc=$?
[ "$rc" -eq 7 ] || fail "the guest's request to $GW:80 without --guest-api: curl exit $rc, expected 7 (refused)"
log "ok: without --guest-api the gateway's port 80 refuses the guest"

# --- refusal: nobody listens on the guest port ---
rf0=$(gw tcp_inbound_refused)
ref0=$(fwd_field "$(fwd_id_of 127.0.0.1:8099)" refused)
out=$(peer "$SLW_HOST" 127.0.0.1 8099)
read -r what ms <<<"$out"
[ "$what" = error:ECONNRESET ] || fail "a forward to a closed guest port: '$out', expected a reset (error:ECONNRESET)"
[ "$ms" -lt 2000 ] || fail "the reset for a closed guest port took $ms ms"
wait_until 3 counter_ge tcp_inbound_refused $((rf0 + 1)) || fail "tcp_inbound_refused is $(gw tcp_inbound_refused), was $rf0"
[ "$(fwd_field "$(fwd_id_of 127.0.0.1:8099)" refused)" -gt "$ref0" ] || fail "the forward's refused count did not rise"
rc=$(curl_rc http://127.0.0.1:8099/)
[ "$rc" -ne 0 ] || fail "curl through a forward to a closed guest port succeeded"
log "ok: closed guest port: the client is reset after $ms ms (curl exit $rc); tcp_inbound_refused=$(gw tcp_inbound_refused)"

# --- a lost SYN: the guest drops the first SYNs of a forwarded connection for 1.5 s; slipway's
# SYN goes again (1 s, then 2 s later) and the connection comes up ---
rtx0=$(gw tcp_retransmits)
in_ns g1 nft -f - <<'NFT'
table inet slwsyn {
    chain in {
        type filter hook input priority 0; policy accept;
        tcp dport 7100 tcp flags syn drop
    }
}
NFT
(sleep 1.5 && in_ns g1 nft delete table inet slwsyn) &
unblock=$!
out=$(peer "$SLW_HOST" 127.0.0.1 8090)
wait "$unblock"
read -r what seen _ local ms <<<"$out"
[ "$what" = seen ] || fail "a forwarded connection whose first SYN the guest dropped: '$out'"
[ "$ms" -ge 900 ] || fail "the connection came up after $ms ms although the guest dropped SYNs for 1.5 s"
[ "$(delta tcp_retransmits "$rtx0")" -ge 1 ] || fail "tcp_retransmits did not rise: the SYN was not sent again"
log "ok: the guest dropped the first SYN(s): slipway sent it again and the connection came up after $ms ms"

# --- a guest address nobody answers ARP for ---
nn0=$(gw fwd_no_neighbor)
ar0=$(gw arp_requests)
out=$(peer "$SLW_HOST" 127.0.0.1 8098)
read -r what ms <<<"$out"
[ "$what" = error:ECONNRESET ] || fail "a forward to $NO_GUEST (no such guest): '$out', expected a reset"
[ "$ms" -lt 6000 ] || fail "the reset for a silent guest address took $ms ms"
[ "$(delta fwd_no_neighbor "$nn0")" -ge 1 ] || fail "fwd_no_neighbor is $(gw fwd_no_neighbor), was $nn0"
[ "$(delta arp_requests "$ar0")" -ge 1 ] || fail "arp_requests did not rise: no ARP request for $NO_GUEST"
log "ok: no guest at $NO_GUEST: the client is reset after $ms ms; arp_requests +$(delta arp_requests "$ar0"), fwd_no_neighbor=$(gw fwd_no_neighbor)"

# --- UDP: one mapping per client, each its own source at the guest ---
um0=$(gw fwd_udp_mappings)
udp_c() { in_ns "$1" timeout 30 "$PY" "$PEER" udp-client "$2" 5353 --count 2 --tag "$3"; }
# guest_saw SOURCE: how many datagrams the guest's UDP server got from SOURCE.
guest_saw() { awk -v s="$1" '$1 == s' "$SLW_TMP/udp.out" | wc -l; }
out=$(udp_c "$SLW_HOST" 127.0.0.1 a) || fail "UDP client on the host: $out"
read -r _ lport_a a1 a2 <<<"$out"
[ "$a1" = "$a2" ] || fail "two datagrams of one host client reached the guest from $a1 and $a2"
[ "${a1%:*}" = "$HOST_ALIAS" ] || fail "the guest saw the host's UDP client as $a1, expected $HOST_ALIAS:PORT"
[ "$(guest_saw "$a1")" -eq 2 ] || fail "the guest's server logged $(guest_saw "$a1") datagrams from $a1, expected 2"
log "ok: UDP: 2 datagrams from 127.0.0.1:$lport_a reached the guest from $a1, both replies came back from 127.0.0.1:5353"
out=$(udp_c world "$HOST_WORLD_IP" w) || fail "UDP client in the world namespace: $out"
read -r _ lport_w w1 w2 <<<"$out"
[ "$w1" = "$w2" ] || fail "two datagrams of the world client reached the guest from $w1 and $w2"
[ "$w1" = "$WORLD_IP:$lport_w" ] || fail "the guest saw the world UDP client as $w1, expected $WORLD_IP:$lport_w"
[ "$(delta fwd_udp_mappings "$um0")" -eq 2 ] || fail "two UDP clients made $(delta fwd_udp_mappings "$um0") mappings, expected 2"
log "ok: UDP: the world client $WORLD_IP:$lport_w is seen as itself; fwd_udp_mappings +2"
out=$(udp_c "$SLW_HOST" 127.0.0.1 b) || fail "second UDP client on the host: $out"
read -r _ lport_b b1 b2 <<<"$out"
[ "$b1" = "$b2" ] && [ "${b1%:*}" = "$HOST_ALIAS" ] || fail "the second host client reached the guest as $b1 and $b2"
[ "$b1" != "$a1" ] || fail "two host clients (ports $lport_a, $lport_b) share the source $a1 at the guest"
[ "$(delta fwd_udp_mappings "$um0")" -eq 3 ] || fail "three UDP clients made $(delta fwd_udp_mappings "$um0") mappings, expected 3"
log "ok: UDP: a second host client (port $lport_b) is another source at the guest ($b1); fwd_udp_mappings +3"

# --- 100 MiB each way ---
out=$(on_host timeout 120 "$PY" "$NAT_TOOL" send 127.0.0.1 5001 "$BIG" --seed 7) || fail "upload through the forward: $out"
line=$(srv_wait 5001 1)
read -r _ sha n st <<<"$line"
[ "$sha $n" = "$WANT_UP" ] || fail "the guest's sink got '$sha $n', the host sent '$WANT_UP'"
[ "$st" = eof ] || fail "the upload ended with $st at the guest"
secs=$(awk '{print $NF}' <<<"$out")
log "ok: 100 MiB host->guest through the forward intact in $secs s: $(rate "$BIG" "$secs")"
out=$(on_host timeout 120 "$PY" "$NAT_TOOL" recv 127.0.0.1 5002) || fail "download through the forward: $out"
read -r _ sha n secs <<<"$out"
[ "$sha $n" = "$WANT_DOWN" ] || fail "the host got '$sha $n', the guest's source sent '$WANT_DOWN'"
line=$(srv_wait 5002 1)
[ "$(awk '{print $2" "$3}' <<<"$line")" = "$WANT_DOWN" ] || fail "the guest's source: '$line'"
[ "${line##* }" = eof ] || fail "the download ended with ${line##* } at the guest"
log "ok: 100 MiB guest->host through the forward intact in $secs s: $(rate "$BIG" "$secs")"

# --- 200 concurrent connections ---
es0=$(gw tcp_inbound_established)
HOLD="$SLW_TMP/hold-many"
bg "$SLW_HOST" bash -c "exec timeout 100 '$PY' '$NAT_TOOL' many 127.0.0.1 7000 $N $SIZE --hold '$HOLD' --timeout 90 \
    >'$SLW_TMP/many.out' 2>'$SLW_TMP/many.err'"
CLIENT=$LAST_PID
held() { [ -e "$HOLD" ] || ! kill -0 "$CLIENT" 2>/dev/null; }
wait_until 60 held || true
[ -e "$HOLD" ] || fail "the client did not connect its $N connections: $(cat "$SLW_TMP/many.err")"
flows=$(gw tcp_flows)
[ "$flows" -ge "$N" ] || fail "$N forwarded connections open, but tcp_flows is $flows"
rm -f "$HOLD"
rc=0
wait "$CLIENT" || rc=$?
out=$(cat "$SLW_TMP/many.out")
[ "$rc" -eq 0 ] || fail "the client failed (exit $rc): $out $(head -n 20 "$SLW_TMP/many.err")"
read -r _ ok _ failed secs <<<"$out"
[ "$ok" -eq "$N" ] && [ "$failed" -eq 0 ] || fail "client: $out"
wait_until 30 srv_done 7000 "$N" || fail "the guest's echo server finished $(srv_count 7000) connections, expected $N"
bad=$(srv_lines 7000 | grep -vc "^echo $SIZE eof$" || true)
[ "$bad" -eq 0 ] || fail "$bad connections ended badly at the guest: $(srv_lines 7000 | grep -v "^echo $SIZE eof$" | head -n 5)"
[ "$(delta tcp_inbound_established "$es0")" -ge "$N" ] || fail "tcp_inbound_established rose by $(delta tcp_inbound_established "$es0")"
log "ok: $N concurrent forwarded connections (tcp_flows=$flows at once) each echoed 64 KiB intact in $secs s"

# --- removal leaves an established connection alone; removal with kill resets it ---
# hold_client PORT AFTER: a hold client on the host through 127.0.0.1:PORT, connected and echoing
# once the hold file exists; sets HOLD_PID.
hold_client() {
    rm -f "$SLW_TMP/hold-$1"
    bg "$SLW_HOST" timeout 90 "$PY" "$PEER" hold 127.0.0.1 "$1" --hold "$SLW_TMP/hold-$1" --after "$2" \
        >"$SLW_TMP/hold-$1.out" 2>&1
    HOLD_PID=$LAST_PID
    held1() { [ -e "$SLW_TMP/hold-$1" ] || ! kill -0 "$HOLD_PID" 2>/dev/null; }
    wait_until 20 held1 "$1" || true
    [ -e "$SLW_TMP/hold-$1" ] || fail "the hold client on port $1 did not connect: $(cat "$SLW_TMP/hold-$1.out")"
}
out=$(ctl forward add "tcp:8091=$GUEST_IP:7100") || fail "forward add tcp:8091: $out"
id=${out#forward }
id=${id%%:*}
hold_client 8091 send
out=$(ctl forward rm "$id") || fail "forward rm $id: $out"
out=$(peer "$SLW_HOST" 127.0.0.1 8091)
[[ "$out" == error:ECONNREFUSED* ]] || fail "a new connection to 8091 after forward rm: '$out', expected refused"
rm -f "$SLW_TMP/hold-8091"
rc=0
wait "$HOLD_PID" || rc=$?
out=$(cat "$SLW_TMP/hold-8091.out")
[ "$rc" -eq 0 ] && [[ "$out" == *"ok echoed $((1 << 20))"* ]] ||
    fail "a connection open across forward rm (no kill) did not keep working: exit $rc, '$out'"
log "ok: forward rm $id without kill: new connections refused, the open one echoed 1 MiB after"

out=$(ctl forward add "tcp:8092=$GUEST_IP:7100") || fail "forward add tcp:8092: $out"
hold_client 8092 wait
out=$(ctl forward rm tcp:127.0.0.1:8092 --kill) || fail "forward rm tcp:127.0.0.1:8092 --kill: $out"
rm -f "$SLW_TMP/hold-8092"
rc=0
wait "$HOLD_PID" || rc=$?
out=$(cat "$SLW_TMP/hold-8092.out")
[ "$rc" -eq 0 ] && [ "$(tail -n 1 <<<"$out")" = error:ECONNRESET ] ||
    fail "a connection open across forward rm --kill: exit $rc, '$out', expected error:ECONNRESET"
out=$(peer "$SLW_HOST" 127.0.0.1 8092)
[[ "$out" == error:ECONNREFUSED* ]] || fail "a new connection to 8092 after forward rm --kill: '$out'"
log "ok: forward rm tcp:127.0.0.1:8092 --kill reset the open connection"

# --- nothing leaks ---
nat_flows_gone 30
expect "the daemon is alive" daemon_alive
stop_daemon
