#!/usr/bin/env bash
# TCP through the NAT engine under 2 % random loss both ways at the guest (nftables in the guest
# namespace only: this kernel has no netem): 32 MiB guest->world and 32 MiB world->guest arrive
# byte-exact, with both peek paths. Loss on the guest's input makes slipway retransmit (timer or
# fast retransmit); loss on its output leaves gaps (when more than one segment is in flight) that
# slipway answers with duplicate ACKs, or makes the guest retransmit on its timer.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nat_lib.sh"

SIZE=$((32 << 20))
nat_transfer_world "$SIZE" 51

# loss_on: 2 % of the guest's IP packets dropped on input and on output (ARP is not affected).
loss_on() {
    in_ns g1 nft -f - <<'NFT'
table inet slwloss {
    chain in {
        type filter hook input priority 0; policy accept;
        numgen random mod 50 == 0 counter drop
    }
    chain out {
        type filter hook output priority 0; policy accept;
        numgen random mod 50 == 0 counter drop
    }
}
NFT
}
loss_off() { in_ns g1 nft delete table inet slwloss; }
# dropped: packets the guest's loss rules dropped so far (both chains).
dropped() {
    in_ns g1 nft list table inet slwloss |
        awk '/drop/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }'
}

# loss_run LABEL: one upload and one download under loss, checked at both ends; slipway must
# have retransmitted.
loss_run() {
    local label=$1 rtx0 ooo0 rtx ooo
    rtx0=$(($(gw tcp_retransmits) + $(gw tcp_fast_retransmits)))
    ooo0=$(gw tcp_out_of_order)
    nat_both_ways "$label" "$SIZE" 51 "$WANT_UP" "$WANT_DOWN"

    rtx=$(($(gw tcp_retransmits) + $(gw tcp_fast_retransmits) - rtx0))
    ooo=$(($(gw tcp_out_of_order) - ooo0))
    [ "$rtx" -gt 0 ] || fail "$label: slipway never retransmitted although the guest dropped $(dropped) packets"
    log "ok: $label: the guest dropped $(dropped) packets so far; slipway retransmitted $rtx times (timer $(gw tcp_retransmits), fast $(gw tcp_fast_retransmits) in all), saw $ooo out-of-order segments"
    nat_counters
    nat_leak_check 60
}

start_daemon --attach "$(guest_spec g1)"
nat_guest_up g1
nat_baseline
loss_on
loss_run "default peek"
loss_off

nat_restart --no-peek-off --attach "$(guest_spec g1)"
nat_baseline
loss_on
loss_run "--no-peek-off"
loss_off
expect "the daemon is alive" daemon_alive
stop_daemon
