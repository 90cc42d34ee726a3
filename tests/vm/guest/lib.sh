#!/bin/sh
# Helpers every command the host sends to the test guest may use (sourced by the agent).
set -o pipefail

# net_up: DHCP on slw0 with the guest's own event script (at most 4 DISCOVERs 2 s apart).
net_up() {
    ip link set slw0 up
    udhcpc -i slw0 -s /etc/slw-udhcpc -n -q -t 4 -T 2 -A 1
}

# fetch_md5 URL: prints "SLW-MD5 <md5 of the body>"; fails when wget fails.
fetch_md5() {
    local sum
    sum=$(wget -q -O - "$1" | md5sum) || return 1
    echo "SLW-MD5 ${sum%% *}"
}

# resolves NAME ADDR: nslookup (the resolver of /etc/resolv.conf) answers NAME with ADDR.
resolves() {
    local out
    out=$(nslookup "$1" 2>&1)
    echo "$out"
    echo "$out" | grep -A1 "^Name:.*$1" | grep -q "Address:.* $2\$"
}
