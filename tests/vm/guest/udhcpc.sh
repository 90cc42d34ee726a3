#!/bin/sh
# busybox udhcpc event script of the test guest: applies the lease to the interface, writes the
# guest's resolv.conf and prints the lease on the console as one `SLW-LEASE key=value ...` line.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; done
    : >/etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    echo "SLW-LEASE ip=$ip mask=$mask router=$router dns=$(echo $dns | tr ' ' ,) lease=$lease mtu=$mtu"
    ;;
esac
exit 0
