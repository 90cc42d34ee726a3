#!/bin/sh
# The test guest's agent (tests/vm/vm.py is the other end): reads commands from the serial
# console and runs them, printing their output and then a line `@@SLW-END <id> <status>@@`.
# A command arrives as base64 in lines `SLWPART <id> <chunk>` (a tty line holds 4095 bytes at
# most, so long scripts come in several) followed by `SLWRUN <id>`. Scripts source /etc/slw-lib.
stty -echo 2>/dev/null
buf=
cur=
while IFS= read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    set -- $line
    case "$1" in
    SLWPART)
        # A new id starts a new script: a half-sent one from a host that gave up is dropped.
        [ "$2" = "$cur" ] || { buf=; cur=$2; }
        buf="$buf$3"
        ;;
    SLWRUN)
        if [ "$2" = "$cur" ] && printf '%s' "$buf" | base64 -d >/tmp/slw-cmd.sh 2>/dev/null; then
            (. /etc/slw-lib && . /tmp/slw-cmd.sh) </dev/null 2>&1
            rc=$?
        else
            echo "agent: script $2 arrived incomplete"
            rc=255
        fi
        echo "@@SLW-END $2 $rc@@"
        buf=
        cur=
        ;;
    esac
done
echo "agent: console closed"
