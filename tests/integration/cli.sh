#!/usr/bin/env bash
# slipwayd's command line: bad flags and values are one line on stderr and exit status 2; a config
# file works and the command line wins over it; --version and --help work.
. "$(dirname "$0")/lib.sh"

netns_add "$SLW_HOST"
# bad_arg DESCRIPTION ARGS...: slipwayd must exit 2 with exactly one line on stderr.
bad_arg() {
    local what=$1 rc=0 err
    shift
    err=$(in_ns "$SLW_HOST" timeout 10 "$SLIPWAYD" "$@" 2>&1 >/dev/null) || rc=$?
    [ $rc -eq 2 ] || fail "$what: exit status $rc, expected 2 (stderr: $err)"
    [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] || fail "$what: expected one line, got: $err"
    log "ok: $what -> $err"
}
bad_arg "unknown flag" --no-such-flag
bad_arg "bad subnet" --subnet 10.0.0.0/99
bad_arg "subnet with host bits" --subnet 10.0.0.5/24
bad_arg "gateway outside the subnet" --gateway 10.9.9.9
bad_arg "MTU too small" --mtu 100
bad_arg "bad log level" --log-level loud
bad_arg "unknown attachment scheme" --attach foo:/x
bad_arg "missing config file" --config "$SLW_TMP/none.toml"
printf 'subnet = "10.1.2.0/24"\nbogus-key = 1\n' >"$SLW_TMP/bad.toml"
bad_arg "unknown config key" --config "$SLW_TMP/bad.toml"

expect "--version" bash -c "\"$SLIPWAYD\" --version | grep -q '[0-9]\.[0-9]'"
expect "--help lists --attach" bash -c "\"$SLIPWAYD\" --help | grep -q -- '--attach'"

printf 'subnet = "10.1.2.0/24"\nmtu = 9000\n' >"$SLW_TMP/good.toml"
start_daemon --config "$SLW_TMP/good.toml" --mtu 4000
status=$(ctl status --json)
echo "$status" | grep -q '"10.1.2.1"' || fail "config subnet not applied: $status"
echo "$status" | grep -q '"mtu": *4000' || fail "command line did not win over the file: $status"
log "ok: config file applied, command line wins"
stop_daemon
