#!/usr/bin/env bash
# slipwayd's HTTP API for port forwarding and friends (issue 7), over its unix socket: the socket
# is mode 0600; every error class answers with its status and a JSON {"error"} naming the cause
# (400 bad JSON / missing field / bad spec, 404 unknown path / forward / DNS name, 405 wrong
# method with Allow, 409 overlapping forward, 413 body over the limit, 500 a host port another
# process holds, with the kernel's reason); gvproxy's paths answer as gvproxy does ("post only"
# 400, "proxy already running" / "proxy not found" / bind failures 500, 404 for an unknown path);
# slipwayctl fails with the server's message; /v1/version, /v1/status, /v1/ports, /v1/leases
# (a guest's DHCP lease), /v1/flows (an inbound flow while it is open), /v1/dns and gvproxy's
# dns/add and dns/all (and the guest resolves what they add); GET /metrics is valid Prometheus
# text; 1000+ API calls (stats, forward list, add and remove) while 64 MiB cross a forward: all
# answered in time, the transfer intact, the daemon's descriptors back to where they were.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

PEER="$TOOLS/portfwd_peer.py"
APITOOL="$TOOLS/portfwd_api.py"
XFER=$((64 << 20))
nat_world_up
netns_add g1
netns_add g2
nat_serve g1 0.0.0.0 5001 sink
bg g1 "$PY" "$PEER" tcp-serve 0.0.0.0 7100 2>>"$SLW_TMP/peer.err"
wait_listen g1 7100
# A host process holding 127.0.0.1:8300 (and nothing else): forwards there cannot bind.
bg "$SLW_HOST" "$PY" -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 8300)); s.listen(1); time.sleep(600)'
wait_listen "$SLW_HOST" 8300

start_daemon --guest-api --dhcp-range 192.168.127.100-192.168.127.200 --attach "$(guest_spec g1)" \
    --attach "$(guest_spec g2)" --forward "tcp:5001=$GUEST_IP:5001" --forward "tcp:7100=$GUEST_IP:7100"
nat_guest_up g1

# api METHOD PATH [CURL ARGS...]: one request; sets CODE, BODY (the reply body) and HDRS (its
# headers, in $SLW_TMP/api.hdrs).
api() {
    local method=$1 path=$2
    shift 2
    CODE=$(curl -sS --max-time 10 --unix-socket "$API" -X "$method" -D "$SLW_TMP/api.hdrs" \
        -o "$SLW_TMP/api.body" -w '%{http_code}' "$@" "http://slipway$path") ||
        fail "$method $path: curl failed (exit $?)"
    BODY=$(cat "$SLW_TMP/api.body")
}
# json_get EXPR: EXPR (Python, on the parsed reply `d`) printed; fails on a reply that is not JSON.
json_get() {
    "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$SLW_TMP/api.body" "$1" ||
        fail "reply is not what was expected ($1): $BODY"
}
# want STATUS DESCRIPTION METHOD PATH [CURL ARGS...]: the request must answer STATUS; a /v1 error
# must be exactly one JSON object {"error": "non-empty one line"} and a newline. Sets MSG.
want() {
    local status=$1 what=$2 method=$3 path=$4
    shift 4
    api "$method" "$path" "$@"
    [ "$CODE" = "$status" ] || fail "$what: $method $path answered $CODE '$BODY', expected $status"
    MSG=""
    if [ "$status" -ge 400 ] && [[ "$path" == /v1/* ]]; then
        [ "$(tail -c 1 "$SLW_TMP/api.body" | od -An -c | tr -d ' ')" = '\n' ] ||
            fail "$what: the error body does not end with a newline"
        "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
assert list(d) == ["error"] and isinstance(d["error"], str) and d["error"] and "\n" not in d["error"], d' \
            "$SLW_TMP/api.body" 2>/dev/null || fail "$what: the error body is not {\"error\": \"...\"}: '$BODY'"
        MSG=$(json_get 'd["error"]')
    fi
    log "ok: $what: $CODE${MSG:+ ($MSG)}"
}
post_json() { want "$1" "$2" POST "$3" -H 'Content-Type: application/json' --data-binary "$4"; }
header() { tr -d '\r' <"$SLW_TMP/api.hdrs" | awk -v h="$1" 'tolower($1) == tolower(h) ":" { $1 = ""; sub(/^ /, ""); print }'; }
fwd_count() { api GET /v1/forwards && json_get 'len(d["forwards"])'; }

# --- the socket ---
mode=$(stat -c %a "$API")
[ "$mode" = 600 ] || fail "the API socket has mode $mode, expected 600"
log "ok: the API socket is mode 0600"

# --- reads ---
want 200 "GET /v1/version" GET /v1/version
[ "$(json_get 'd["api"]')" = 1 ] || fail "/v1/version: $BODY"
ver=$("$SLIPWAYD" --version | awk '{print $2}')
[ "$(json_get 'd["version"]')" = "$ver" ] || fail "/v1/version says $(json_get 'd["version"]'), slipwayd --version $ver"
[[ "$(header Content-Type)" == application/json* ]] || fail "/v1/version Content-Type: $(header Content-Type)"
want 200 "GET /v1/status" GET /v1/status
[ "$(json_get 'd["forwards"]')" = 2 ] || fail "/v1/status counts $(json_get 'd.get("forwards")') forwards, 2 were given"
want 200 "GET /v1/ports" GET /v1/ports
n=$(json_get 'sum(1 for p in d["ports"] if set(p) >= {"name","kind","spec","state"} and p["spec"] in ("netns:/run/netns/g1,ifname=slw0", "netns:/run/netns/g2,ifname=slw0"))')
[ "$n" = 2 ] || fail "/v1/ports does not list both guests with name, kind, spec and state: $BODY"
want 200 "GET /v1/forwards" GET /v1/forwards
json_get '[f for f in d["forwards"] if f["host"] == "127.0.0.1:5001"][0]' >"$SLW_TMP/f.json"
"$PY" - "$SLW_TMP/f.json" <<'EOF' || fail "GET /v1/forwards, the forward on 127.0.0.1:5001: $(cat "$SLW_TMP/f.json")"
import json, sys
f = json.load(open(sys.argv[1]))
want = {"proto": "tcp", "host": "127.0.0.1:5001", "guest": "192.168.127.2:5001",
        "spec": "tcp:127.0.0.1:5001=192.168.127.2:5001", "accepted": 0, "refused": 0, "active": 0}
assert isinstance(f["id"], int) and all(f[k] == v for k, v in want.items()), f
EOF
log "ok: GET /v1/forwards describes the --forward rules"

# --- error classes of /v1 ---
post_json 400 "bad JSON" /v1/forwards '{"spec": "tcp:8095=192.168.127.2:80"'
post_json 400 "a missing field (guest)" /v1/forwards '{"proto":"tcp","host":"8095"}'
grep -qi guest <<<"$MSG" || fail "the 400 for a missing guest does not name the field: $MSG"
post_json 400 "a bad spec (port 70000)" /v1/forwards '{"spec":"tcp:70000=192.168.127.2:80"}'
post_json 400 "a bad protocol" /v1/forwards '{"spec":"sctp:8095=192.168.127.2:80"}'
post_json 400 "a JSON array for a body" /v1/forwards '["tcp:8095=192.168.127.2:80"]'
want 404 "an unknown path" GET /v1/nope
want 404 "an unknown top-level path" GET /nope
want 404 "an unknown forward id" DELETE /v1/forwards/999
want 404 "an unknown DNS name" DELETE /v1/dns/no-such-name.example
want 405 "POST to /v1/version" POST /v1/version -d '{}'
allow=$(header Allow)
[[ "$allow" == *GET* ]] || fail "405 without an Allow header naming GET: '$allow'"
want 405 "DELETE on /v1/forwards" DELETE /v1/forwards
allow=$(header Allow)
[[ "$allow" == *GET* && "$allow" == *POST* ]] || fail "405 on /v1/forwards: Allow '$allow'"
want 405 "PUT on /v1/stats" PUT /v1/stats -d '{}'
post_json 409 "a forward overlapping 127.0.0.1:5001" /v1/forwards '{"spec":"tcp:5001=192.168.127.2:9"}'
post_json 409 "a range overlapping 127.0.0.1:7100" /v1/forwards '{"spec":"tcp:7095-7105=192.168.127.2:7095-7105"}'
head -c $((100 << 10)) /dev/zero | tr '\0' 'x' | sed 's/^/{"spec":"/; s/$/"}/' >"$SLW_TMP/big.json"
want 413 "a 100 KiB body" POST /v1/forwards -H 'Content-Type: application/json' --data-binary "@$SLW_TMP/big.json"
post_json 500 "a host port another process holds" /v1/forwards '{"spec":"tcp:8300=192.168.127.2:80"}'
grep -qi "in use" <<<"$MSG" || fail "the 500 for a taken port does not give the kernel's reason: $MSG"
grep -q 8300 <<<"$MSG" || fail "the 500 for a taken port does not name it: $MSG"
[ "$(fwd_count)" = 2 ] || fail "failed requests left forwards behind: $BODY"
daemon_alive || fail "slipwayd died on the bad requests"
log "ok: after the failed requests still 2 forwards, the daemon alive"

# Field form of POST /v1/forwards (proto default tcp, host just a port).
post_json 201 "POST /v1/forwards with fields" /v1/forwards '{"host":"8310","guest":"192.168.127.2:7100"}'
[ "$(json_get 'd["spec"]')" = "tcp:127.0.0.1:8310=192.168.127.2:7100" ] || fail "POST /v1/forwards replied $BODY"
id=$(json_get 'd["id"]')
out=$(in_ns "$SLW_HOST" timeout 20 "$PY" "$PEER" tcp-peer 127.0.0.1 8310)
[[ "$out" == "seen $HOST_ALIAS:"* ]] || fail "the forward added by fields does not work: $out"
want 200 "DELETE /v1/forwards/$id" DELETE "/v1/forwards/$id"
[ "$(json_get 'd')" = "{\"deleted\": $id, \"killed\": false}" ] || fail "DELETE /v1/forwards/$id replied '$BODY'"
post_json 201 "POST /v1/forwards with a spec" /v1/forwards '{"spec":"udp:[::1]:8311=192.168.127.2:7100"}'
[ "$(json_get 'd["proto"] + " " + d["host"]')" = "udp [::1]:8311" ] || fail "POST /v1/forwards replied $BODY"
id=$(json_get 'd["id"]')
want 200 "DELETE /v1/forwards/$id?kill=1" DELETE "/v1/forwards/$id?kill=1"
[ "$(json_get 'd["killed"]')" = true ] || fail "DELETE ?kill=1 replied '$BODY'"

# --- gvproxy's paths ---
GV=/services/forwarder
want 400 "GET on gvproxy's expose" GET $GV/expose
[ "$BODY" = "post only" ] && [ "$(tail -c 1 "$SLW_TMP/api.body" | od -An -c | tr -d ' ')" = '\n' ] ||
    fail "GET $GV/expose answered '$BODY', expected 'post only' and a newline"
want 400 "GET on gvproxy's unexpose" GET $GV/unexpose
[ "$BODY" = "post only" ] || fail "GET $GV/unexpose answered '$BODY'"
want 400 "gvproxy's expose with bad JSON" POST $GV/expose -d '{"local":'
want 400 "gvproxy's expose with an empty body" POST $GV/expose
[ "$BODY" = EOF ] || fail "an empty expose body answered '$BODY', gvproxy says 'EOF'"
want 200 "gvproxy's expose of 127.0.0.1:8320" POST $GV/expose -d '{"local":"127.0.0.1:8320","remote":"192.168.127.2:7100","protocol":"tcp"}'
[ -z "$BODY" ] || fail "expose answered '$BODY', gvproxy answers nothing"
want 500 "gvproxy's expose of the same local again" POST $GV/expose -d '{"local":"127.0.0.1:8320","remote":"192.168.127.2:7100"}'
[ "$BODY" = "proxy already running for tcp on 127.0.0.1:8320" ] || fail "a second expose answered '$BODY'"
want 500 "gvproxy's expose of a taken port" POST $GV/expose -d '{"local":"127.0.0.1:8300","remote":"192.168.127.2:7100"}'
grep -qi "in use" <<<"$BODY" || fail "expose of a taken port answered '$BODY', expected the kernel's reason"
want 500 "gvproxy's expose with protocol sctp" POST $GV/expose -d '{"local":"127.0.0.1:8321","remote":"192.168.127.2:7100","protocol":"sctp"}'
[ "$BODY" = "unknown protocol sctp" ] || fail "protocol sctp answered '$BODY'"
want 500 "gvproxy's unexpose of nothing" POST $GV/unexpose -d '{"local":"127.0.0.1:8399"}'
[ "$BODY" = "proxy not found" ] || fail "unexpose of nothing answered '$BODY'"
want 404 "gvproxy's /all with a trailing slash" GET $GV/all/
want 200 "gvproxy's unexpose of 127.0.0.1:8320" POST $GV/unexpose -d '{"local":"127.0.0.1:8320"}'
[ "$(fwd_count)" = 2 ] || fail "gvproxy requests left forwards behind: $BODY"

# --- --guest-api: the forwarder paths, and only they, at the gateway's port 80 inside the guest
# network, as gvproxy serves them; a remote without an address means the calling guest ---
g1_api() { in_ns g1 curl -q -sS --noproxy '*' --max-time 10 -o "$SLW_TMP/g1.body" -w '%{http_code}' "$@"; }
code=$(g1_api "http://$GW/services/forwarder/all") || fail "the guest's GET /services/forwarder/all failed"
[ "$code" = 200 ] || fail "the guest's GET /services/forwarder/all answered $code"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d, list) and len(d) == 2, d' \
    "$SLW_TMP/g1.body" || fail "the guest's forwarder/all: $(cat "$SLW_TMP/g1.body")"
code=$(g1_api -X POST -d '{"local":"127.0.0.1:8330","remote":":7100"}' "http://$GW/services/forwarder/expose") ||
    fail "the guest's expose failed"
[ "$code" = 200 ] || fail "the guest's expose answered $code: $(cat "$SLW_TMP/g1.body")"
out=$(in_ns "$SLW_HOST" timeout 30 "$PY" "$PEER" tcp-peer 127.0.0.1 8330)
[[ "$out" == seen\ "$HOST_ALIAS":* ]] || fail "the forward the guest exposed (remote :7100) does not reach it: '$out'"
code=$(g1_api "http://$GW/v1/status") || true
[ "$code" = 404 ] || fail "the guest reached /v1/status through --guest-api (HTTP $code)"
code=$(g1_api -X POST -d '{"local":"127.0.0.1:8330"}' "http://$GW/services/forwarder/unexpose") || true
[ "$code" = 200 ] || fail "the guest's unexpose answered $code"
[ "$(fwd_count)" = 2 ] || fail "the guest's expose/unexpose left forwards behind: $BODY"
log "ok: --guest-api: the guest lists, exposes (remote ':7100' = itself) and unexposes at http://$GW/; /v1 is not served there"

# --- slipwayctl fails with the server's message ---
# ctl_fails WANT_CODE ARGS...: slipwayctl ARGS must exit 1 and print "slipwayctl: ... HTTP
# WANT_CODE: MESSAGE" with the message the API gave for the same request ($MSG).
ctl_fails() {
    local code=$1 rc=0 err
    shift
    err=$(ctl "$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" -eq 1 ] || fail "slipwayctl $* exited $rc, expected 1 ($err)"
    [[ "$err" == "slipwayctl: "*": HTTP $code: $MSG" ]] ||
        fail "slipwayctl $* printed '$err', expected '...: HTTP $code: $MSG'"
    log "ok: slipwayctl $* exits 1: $err"
}
api DELETE /v1/forwards/999 && MSG=$(json_get 'd["error"]')
ctl_fails 404 forward rm 999
api POST /v1/forwards -d '{"spec":"tcp:5001=192.168.127.2:9"}' && MSG=$(json_get 'd["error"]')
ctl_fails 409 forward add tcp:5001=192.168.127.2:9
api POST /v1/forwards -d '{"spec":"tcp:8300=192.168.127.2:80"}' && MSG=$(json_get 'd["error"]')
ctl_fails 500 forward add tcp:8300=192.168.127.2:80
api DELETE /v1/dns/no-such-name.example && MSG=$(json_get 'd["error"]')
ctl_fails 404 dns rm no-such-name.example
rc=0
ctl forward frobnicate >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "slipwayctl forward frobnicate exited $rc, expected 2 (usage)"
log "ok: a slipwayctl usage error exits 2"

# --- leases: g2 gets an address by DHCP ---
ip -n g2 link set slw0 up
in_ns g2 env SLW_LEASE_OUT="$SLW_TMP/g2.lease" SLW_RESOLV="$SLW_TMP/g2.resolv" \
    timeout 20 busybox udhcpc -i slw0 -n -q -t 4 -T 1 -s "$TOOLS/udhcpc_script.sh" -x hostname:g2 \
    >"$SLW_TMP/g2.udhcpc" 2>&1 || fail "udhcpc in g2 failed: $(cat "$SLW_TMP/g2.udhcpc")"
g2ip=$(sed -n 's/^ip=//p' "$SLW_TMP/g2.lease")
[[ "$g2ip" == 192.168.127.1[0-9][0-9] ]] || fail "g2 got '$g2ip' by DHCP, expected an address of --dhcp-range: $(cat "$SLW_TMP/g2.udhcpc")"
g2mac=$(ip -n g2 -j link show slw0 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
want 200 "GET /v1/leases" GET /v1/leases
lease=$(json_get "[l for l in d['leases'] if l['ip'] == '$g2ip']")
"$PY" - "$lease" "$g2mac" "$(date +%s)" <<'EOF' || fail "GET /v1/leases for $g2ip ($g2mac): $BODY"
import json, sys
ls, mac, now = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
assert len(ls) == 1, ls
l = ls[0]
assert set(l) >= {"mac", "ip", "hostname", "expires_unix", "static", "bound"}, l
assert l["mac"].lower() == mac and l["hostname"] == "g2" and l["bound"] is True and l["static"] is False, l
assert now < l["expires_unix"] <= now + 3700, l
EOF
ctl leases | grep -qE "^$g2ip +$g2mac +g2 " || fail "slipwayctl leases does not list $g2ip: $(ctl leases)"
want 200 "gvproxy's /leases" GET /leases
[ "$(json_get "d.get('$g2ip')")" = "$g2mac" ] || fail "gvproxy's /leases: $BODY"
log "ok: g2's DHCP lease ($g2ip, $g2mac, host name g2) in /v1/leases, slipwayctl leases and /leases"

# --- flows: an inbound flow while it is open ---
id7100=$(api GET /v1/forwards && json_get '[f["id"] for f in d["forwards"] if f["host"] == "127.0.0.1:7100"][0]')
rm -f "$SLW_TMP/hold"
bg "$SLW_HOST" timeout 60 "$PY" "$PEER" hold 127.0.0.1 7100 --hold "$SLW_TMP/hold" --after send >"$SLW_TMP/hold.out" 2>&1
HOLD_PID=$LAST_PID
held() { [ -e "$SLW_TMP/hold" ] || ! kill -0 "$HOLD_PID" 2>/dev/null; }
wait_until 20 held || true
[ -e "$SLW_TMP/hold" ] || fail "the hold client did not connect: $(cat "$SLW_TMP/hold.out")"
want 200 "GET /v1/flows?proto=tcp (one inbound flow open)" GET "/v1/flows?proto=tcp"
n=$(json_get "len([f for f in d['flows'] if f['proto'] == 'tcp' and f['direction'] == 'in' and f['guest'] == '$GUEST_IP:7100' and f['remote'].startswith('$HOST_ALIAS:') and f['forward_id'] == $id7100])")
[ "$n" = 1 ] || fail "/v1/flows?proto=tcp does not show the inbound flow of forward $id7100: $BODY"
[ "$(json_get 'd["truncated"]')" = false ] || fail "/v1/flows: $BODY"
want 200 "GET /v1/flows?proto=udp" GET "/v1/flows?proto=udp"
[ "$(json_get "len([f for f in d['flows'] if f['proto'] != 'udp'])")" = 0 ] || fail "/v1/flows?proto=udp lists other flows: $BODY"
want 200 "GET /v1/flows?guest=$GUEST_IP&limit=1" GET "/v1/flows?guest=$GUEST_IP&limit=1"
[ "$(json_get 'len(d["flows"])')" = 1 ] || fail "/v1/flows?limit=1: $BODY"
want 400 "GET /v1/flows?limit=0" GET "/v1/flows?limit=0"
want 400 "GET /v1/flows?bogus=1" GET "/v1/flows?bogus=1"
ctl flows --proto tcp | grep -qE "^tcp +in +$GUEST_IP:7100 +$HOST_ALIAS:[0-9]+ .* $id7100\$" ||
    fail "slipwayctl flows --proto tcp: $(ctl flows --proto tcp)"
rm -f "$SLW_TMP/hold"
wait "$HOLD_PID" || fail "the hold client: $(cat "$SLW_TMP/hold.out")"
gone() { [ "$(gw tcp_flows)" -eq 0 ]; }
wait_until 10 gone || fail "tcp_flows is $(gw tcp_flows) after the connection closed"
api GET "/v1/flows?proto=tcp"
[ "$(json_get 'len(d["flows"])')" = 0 ] || fail "/v1/flows?proto=tcp after the close: $BODY"
log "ok: the inbound flow (direction in, forward $id7100) was listed while open and is gone after"

# --- DNS records ---
post_json 201 "POST /v1/dns" /v1/dns '{"name":"db.example","ip":"192.168.127.9"}'
[ "$(json_get 'd["name"] + " " + d["ip"]')" = "db.example 192.168.127.9" ] || fail "POST /v1/dns replied $BODY"
post_json 400 "POST /v1/dns with a bad address" /v1/dns '{"name":"bad.example","ip":"192.168.127.300"}'
post_json 400 "POST /v1/dns without a name" /v1/dns '{"ip":"192.168.127.9"}'
out=$(ctl dns add web.example 192.168.127.10) || fail "slipwayctl dns add: $out"
want 200 "GET /v1/dns" GET /v1/dns
for r in "db.example 192.168.127.9" "web.example 192.168.127.10"; do
    [ "$(json_get "len([r for r in d['records'] if r['name'] + ' ' + r['ip'] == '$r'])")" = 1 ] ||
        fail "GET /v1/dns does not list $r: $BODY"
done
ctl dns ls | grep -qE '^web\.example +192\.168\.127\.10$' || fail "slipwayctl dns ls: $(ctl dns ls)"
resolve() { in_ns g1 dig +short +tries=1 +time=2 @"$GW" "$1" A 2>/dev/null | tail -n 1; }
[ "$(resolve db.example)" = 192.168.127.9 ] || fail "g1 resolves db.example to '$(resolve db.example)'"
[ "$(resolve web.example)" = 192.168.127.10 ] || fail "g1 resolves web.example to '$(resolve web.example)'"
log "ok: records added by POST /v1/dns and slipwayctl dns add are listed and answered to the guest"
out=$(ctl dns rm web.example) || fail "slipwayctl dns rm web.example: $out"
want 200 "DELETE /v1/dns/db.example" DELETE /v1/dns/db.example
[ "$(json_get 'd')" = '{"deleted": "db.example"}' ] || fail "DELETE /v1/dns/db.example replied '$BODY'"
api GET /v1/dns
[ "$(json_get "len([r for r in d['records'] if r['name'] in ('db.example', 'web.example')])")" = 0 ] ||
    fail "removed records still listed: $BODY"
[ "$(resolve db.example)" != 192.168.127.9 ] || fail "g1 still resolves db.example after its removal"
log "ok: removed records are gone from the list and from the answers"
want 400 "GET on gvproxy's dns/add" GET /services/dns/add
[ "$BODY" = "post only" ] || fail "GET /services/dns/add answered '$BODY'"
want 200 "gvproxy's dns/add" POST /services/dns/add -d '{"Name":"dynamic.internal.","Records":[{"Name":"test","IP":"192.168.127.11"}]}'
[ -z "$BODY" ] || fail "dns/add answered '$BODY'"
want 200 "gvproxy's dns/all" GET /services/dns/all
n=$(json_get "len([z for z in d if z['Name'] == 'dynamic.internal.' and {'Name': 'test', 'IP': '192.168.127.11'} in z['Records']])")
[ "$n" = 1 ] || fail "gvproxy's dns/all does not hold zone dynamic.internal. with test: $BODY"
[ "$(resolve test.dynamic.internal)" = 192.168.127.11 ] || fail "g1 resolves test.dynamic.internal to '$(resolve test.dynamic.internal)'"
ctl dns ls | grep -qE '^test\.dynamic\.internal +192\.168\.127\.11$' || fail "slipwayctl dns ls: $(ctl dns ls)"
log "ok: gvproxy's dns/add record is in dns/all, /v1/dns and answered to the guest"

# --- metrics ---
want 200 "GET /metrics" GET /metrics
[[ "$(header Content-Type)" == "text/plain; version=0.0.4"* ]] || fail "/metrics Content-Type: $(header Content-Type)"
out=$("$PY" "$APITOOL" metrics "$SLW_TMP/api.body") || fail "/metrics is not valid Prometheus text: $out"
grep -qE '^slipway_forwards 2$' "$SLW_TMP/api.body" || fail "/metrics has no 'slipway_forwards 2': $(grep forwards "$SLW_TMP/api.body")"
log "ok: /metrics is Prometheus text ($out)"

# --- 1000+ API calls while 64 MiB cross a forward ---
want_up=$("$PY" "$NAT_TOOL" sha 5 "$XFER")
fds() { find /proc/"$SLW_DAEMON_PID"/fd -mindepth 1 -maxdepth 1 | wc -l; }
fd0=$(fds)
f0=$(fwd_count)
XFER_FILE="$SLW_TMP/xfer-running"
: >"$XFER_FILE"
bg "$SLW_HOST" bash -c "timeout 100 '$PY' '$NAT_TOOL' send 127.0.0.1 5001 $XFER --seed 5 >'$SLW_TMP/xfer.out' 2>&1; echo \$? >'$SLW_TMP/xfer.rc'; rm -f '$XFER_FILE'"
XFER_PID=$LAST_PID
out=$(timeout 100 "$PY" "$APITOOL" load "$API" --guest "$GUEST_IP:7100" --min 1000 --max 20000 \
    --while-exists "$XFER_FILE" --timeout 5) || fail "API calls during the transfer: $out"
wait "$XFER_PID" || true
[ "$(cat "$SLW_TMP/xfer.rc")" = 0 ] || fail "the transfer during the API calls failed: $(cat "$SLW_TMP/xfer.out")"
read -r _ calls _ conns _ _ max_ms _ total <<<"$out"
[ "$calls" -ge 1000 ] || fail "only $calls API calls: $out"
line=$(srv_wait 5001 1)
read -r _ sha n st <<<"$line"
[ "$sha $n" = "$want_up" ] && [ "$st" = eof ] || fail "the guest's sink got '$line', the host sent '$want_up'"
log "ok: $calls API calls over $conns connections in $total s (slowest $max_ms ms) while 64 MiB crossed the forward intact ($(awk '{print $NF}' "$SLW_TMP/xfer.out") s)"
[ "$(fwd_count)" = "$f0" ] || fail "after the load $(fwd_count) forwards, before $f0"
fds_back() { [ "$(fds)" -eq "$fd0" ]; }
wait_until 15 fds_back || fail "the daemon holds $(fds) descriptors after the load, $fd0 before: $(ls -l /proc/"$SLW_DAEMON_PID"/fd)"
log "ok: the daemon holds $fd0 descriptors again, $f0 forwards"

expect "the daemon is alive" daemon_alive
stop_daemon
