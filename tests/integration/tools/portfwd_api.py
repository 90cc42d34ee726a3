#!/usr/bin/env python3
"""HTTP API helpers for portfwd_api.sh: a bounded load client and a Prometheus text checker.

portfwd_api.py load SOCKET --guest ADDR:PORT [--min N] [--max N] [--while-exists FILE]
                          [--timeout S] [--per-conn N] [--base-port P]
    API calls over the unix socket SOCKET, in rounds of four: GET /v1/stats, GET /v1/forwards,
    POST /v1/forwards (a forward tcp:PORT=ADDR:PORT, PORT from --base-port on) and DELETE of that
    forward. Each answer must come within --timeout seconds with the right status (200, 200,
    201, 200) and a JSON body. --per-conn calls share one keep-alive connection, then the
    client opens a new one. Runs at least --min calls, then goes on while FILE exists, and
    stops after --max calls in any case. Prints "ok CALLS calls CONNS connections max_ms MS
    total_s S"; exit 1 on the first failure (with what failed).
portfwd_api.py metrics FILE
    FILE must be Prometheus text format 0.0.4: every line a comment ("# HELP name text",
    "# TYPE name counter|gauge|histogram|summary|untyped", other "#" lines) or a sample
    "name[{label="value",...}] value [timestamp]" with a float value; names match
    [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*; HELP and TYPE at most once per
    metric and before its first sample; the samples of one metric together. Prints
    "ok SAMPLES samples METRICS metrics", or every problem found and exit 1.
"""
import argparse
import http.client
import json
import math
import os
import re
import socket
import sys
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def cmd_load(a):
    guest_addr, guest_port = a.guest.rsplit(":", 1)
    conn = None
    conns = 0
    calls = 0
    max_ms = 0.0
    t0 = time.monotonic()
    pending_id = None
    used = 0

    def call(method, path, body, want):
        nonlocal conn, conns, used, max_ms
        if conn is None or used >= a.per_conn:
            if conn is not None:
                conn.close()
            conn = UnixHTTPConnection(a.socket, a.timeout)
            conns += 1
            used = 0
        used += 1
        start = time.monotonic()
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException) as e:
            sys.exit(f"load: call {calls + 1} {method} {path}: {type(e).__name__}: {e} "
                     f"after {time.monotonic() - start:.3f} s")
        ms = (time.monotonic() - start) * 1000
        max_ms = max(max_ms, ms)
        if r.status != want:
            sys.exit(f"load: call {calls + 1} {method} {path}: HTTP {r.status} {raw[:200]!r}, "
                     f"expected {want}")
        try:
            doc = json.loads(raw)
        except ValueError:
            sys.exit(f"load: call {calls + 1} {method} {path}: not JSON: {raw[:200]!r}")
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
        return doc

    while calls < a.max:
        if calls >= a.min and not (a.while_exists and os.path.exists(a.while_exists)):
            break
        step = calls % 4
        if step == 0:
            call("GET", "/v1/stats", None, 200)
        elif step == 1:
            call("GET", "/v1/forwards", None, 200)
        elif step == 2:
            port = a.base_port + (calls // 4) % 1000
            doc = call("POST", "/v1/forwards",
                       {"spec": f"tcp:{port}={guest_addr}:{guest_port}"}, 201)
            pending_id = doc.get("id")
            if not isinstance(pending_id, int):
                sys.exit(f"load: POST /v1/forwards answered {doc}, no id")
        else:
            doc = call("DELETE", f"/v1/forwards/{pending_id}", None, 200)
            if doc.get("deleted") != pending_id:
                sys.exit(f"load: DELETE /v1/forwards/{pending_id} answered {doc}")
            pending_id = None
        calls += 1
    if pending_id is not None:  # never leave a forward behind
        call("DELETE", f"/v1/forwards/{pending_id}", None, 200)
        calls += 1
    if conn is not None:
        conn.close()
    print(f"ok {calls} calls {conns} connections max_ms {max_ms:.1f} "
          f"total_s {time.monotonic() - t0:.3f}", flush=True)


NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = ("_bucket", "_count", "_sum")


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    v = float(text)  # ValueError for anything else
    if math.isnan(v) and text != "NaN":
        raise ValueError(text)
    return v


def cmd_metrics(a):
    problems = []
    help_seen, type_seen, types = set(), set(), {}
    sampled = set()  # metric families with samples so far
    closed = set()  # families whose block of samples ended
    current = None
    samples = 0

    def family(name):
        if name not in types:
            for s in SUFFIXES:
                if name.endswith(s) and types.get(name[: -len(s)]) in ("histogram", "summary"):
                    return name[: -len(s)]
        return name

    with open(a.file, encoding="utf-8") as f:
        text = f.read()
    if not text.endswith("\n"):
        problems.append("the text does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}: {line[:120]!r}"
        if not line.strip():
            problems.append(f"{where}: empty line")
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                kind, name = parts[1], parts[2]
                if not NAME.fullmatch(name):
                    problems.append(f"{where}: bad metric name")
                seen = help_seen if kind == "HELP" else type_seen
                if name in seen:
                    problems.append(f"{where}: second {kind} for {name}")
                seen.add(name)
                if name in sampled:
                    problems.append(f"{where}: {kind} after samples of {name}")
                if kind == "TYPE":
                    t = parts[3].strip() if len(parts) > 3 else ""
                    if t not in TYPES:
                        problems.append(f"{where}: unknown type {t!r}")
                    types[name] = t
            continue
        m = NAME.match(line)
        if not m:
            problems.append(f"{where}: no metric name")
            continue
        name = m.group(0)
        rest = line[m.end():]
        if rest.startswith("{"):
            end = rest.find("}")
            if end < 0:
                problems.append(f"{where}: unterminated labels")
                continue
            body = rest[1:end]
            pos, names = 0, set()
            while pos < len(body):
                lm = LABEL.match(body, pos)
                if not lm:
                    problems.append(f"{where}: bad label at {body[pos:pos + 30]!r}")
                    break
                if lm.group(1) in names:
                    problems.append(f"{where}: label {lm.group(1)} twice")
                names.add(lm.group(1))
                pos = lm.end()
                if pos < len(body):
                    if body[pos] != ",":
                        problems.append(f"{where}: labels not separated by commas")
                        break
                    pos += 1
            rest = rest[end + 1:]
        if not rest.startswith(" "):
            problems.append(f"{where}: no space before the value")
            continue
        fields = rest.split()
        if len(fields) not in (1, 2):
            problems.append(f"{where}: expected a value and at most a timestamp")
            continue
        try:
            parse_value(fields[0])
        except ValueError:
            problems.append(f"{where}: value {fields[0]!r} is not a float")
        if len(fields) == 2 and not re.fullmatch(r"-?[0-9]+", fields[1]):
            problems.append(f"{where}: bad timestamp")
        fam = family(name)
        if fam != current:
            if fam in closed:
                problems.append(f"{where}: samples of {fam} are not together")
            if current is not None:
                closed.add(current)
            current = fam
        sampled.add(fam)
        samples += 1
    if samples == 0:
        problems.append("no samples")
    for p in problems[:30]:
        print(p)
    if problems:
        print(f"{len(problems)} problems")
        sys.exit(1)
    print(f"ok {samples} samples {len(sampled)} metrics")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("load")
    q.add_argument("socket")
    q.add_argument("--guest", required=True)
    q.add_argument("--min", type=int, default=1000)
    q.add_argument("--max", type=int, default=20000)
    q.add_argument("--while-exists")
    q.add_argument("--timeout", type=float, default=5)
    q.add_argument("--per-conn", type=int, default=50)
    q.add_argument("--base-port", type=int, default=20000)
    q = sub.add_parser("metrics")
    q.add_argument("file")
    a = p.parse_args()
    {"load": cmd_load, "metrics": cmd_metrics}[a.cmd](a)


if __name__ == "__main__":
    main()
