#!/usr/bin/env python3
"""Prints one counter from `slipwayctl stats --json` (stdin): counter.py SCOPE NAME.

SCOPE: "switch", "gateway" (the engine's own counters), "pool", or a port's name/spec, whose
switch-port counters are read ("gateway-port" names the gateway's switch port). Exits 1 when the
scope or counter does not exist, so a renamed counter fails the test instead of reading as 0.
"""
import json
import sys

scope, name = sys.argv[1], sys.argv[2]
data = json.load(sys.stdin)
if scope in ("switch", "gateway", "pool"):
    table = data[scope]
else:
    want = "gateway" if scope == "gateway-port" else scope
    ports = [p for p in data["ports"] if want in (p.get("name"), p.get("spec"))]
    if not ports:
        sys.exit(f"counter.py: no port {scope!r}")
    table = ports[0]["counters"]
if name not in table:
    sys.exit(f"counter.py: no counter {name!r} in {scope!r}")
print(table[name])
