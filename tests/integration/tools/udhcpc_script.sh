#!/bin/sh
# busybox udhcpc event script for tests (never the system's /etc/udhcpc/default.script): applies
# the lease to the interface inside the guest namespace, writes the guest's resolv.conf to
# $SLW_RESOLV (a file of the test, never /etc/resolv.conf) and records every value udhcpc passed
# to $SLW_LEASE_OUT as KEY=VALUE lines.
set -e
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    {
        echo "ip=$ip"
        echo "subnet=$subnet"
        echo "router=$router"
        echo "dns=$dns"
        echo "mtu=$mtu"
        echo "domain=$domain"
        echo "search=$search"
        echo "lease=$lease"
        echo "serverid=$serverid"
        echo "hostname=$hostname"
        echo "staticroutes=$staticroutes"
    } >"$SLW_LEASE_OUT"
    ip addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; done
    {
        [ -n "$domain" ] && echo "domain $domain"
        [ -n "$search" ] && echo "search $search"
        for d in $dns; do echo "nameserver $d"; done
    } >"$SLW_RESOLV"
    ;;
esac
exit 0
