#!/usr/bin/env python3
"""Bulk TCP for tests, bounded in size and time.

tcp_blast.py recv PORT OUTFILE      accept one connection, write sha256 and byte count to OUTFILE
tcp_blast.py send HOST PORT MIB     send MIB MiB of pseudo-random data, print its sha256
"""
import hashlib
import random
import socket
import sys

mode = sys.argv[1]
if mode == "recv":
    port, out = int(sys.argv[2]), sys.argv[3]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    ls.settimeout(30)
    c, _ = ls.accept()
    c.settimeout(30)
    h = hashlib.sha256()
    total = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        total += len(b)
    with open(out, "w") as f:
        f.write(f"{h.hexdigest()} {total}\n")
elif mode == "send":
    host, port, mib = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(1234)
    block = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
    s = socket.create_connection((host, port), timeout=30)
    h = hashlib.sha256()
    for i in range(mib):
        chunk = block[i % 7:] + block[: i % 7]  # vary the data per MiB
        s.sendall(chunk)
        h.update(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print(f"{h.hexdigest()} {mib << 20}")
else:
    sys.exit("usage: tcp_blast.py recv PORT OUTFILE | send HOST PORT MIB")
