#!/usr/bin/env bash
# Bulk TCP through the NAT engine: 256 MiB from the guest to a server in the world namespace and
# 256 MiB back, byte-exact (sha256 at both ends), once with the default peek path (SO_PEEK_OFF
# where the kernel has it) and once with --no-peek-off (the discard-iovec path). Logs the
# throughput of each direction; nothing leaks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

SIZE=$((256 << 20))
nat_transfer_world "$SIZE" 41

# bulk_run LABEL: one upload and one download, checked at both ends and by the byte counters.
bulk_run() {
    local label=$1 up0 down0
    up0=$(gw tcp_bytes_to_host)
    down0=$(gw tcp_bytes_to_guest)
    nat_both_ways "$label" "$SIZE" 41 "$WANT_UP" "$WANT_DOWN"
    [ "$(gw tcp_bytes_to_host)" -ge $((up0 + SIZE)) ] ||
        fail "$label: tcp_bytes_to_host rose by $(($(gw tcp_bytes_to_host) - up0)), less than $SIZE"
    [ "$(gw tcp_bytes_to_guest)" -ge $((down0 + SIZE)) ] ||
        fail "$label: tcp_bytes_to_guest rose by $(($(gw tcp_bytes_to_guest) - down0)), less than $SIZE"
    nat_counters
    nat_leak_check 30
}

start_daemon --attach "$(guest_spec g1)"
nat_guest_up g1
nat_baseline
bulk_run "default peek"

nat_restart --no-peek-off --attach "$(guest_spec g1)"
nat_baseline
bulk_run "--no-peek-off"
expect "the daemon is alive" daemon_alive
stop_daemon
