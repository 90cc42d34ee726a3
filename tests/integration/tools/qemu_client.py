#!/usr/bin/env python3
"""A QEMU `-netdev stream` client for tests: 4-byte big-endian length, then the frame.

qemu_client.py SOCKET MODE
  arp        send an ARP request for the gateway, expect the ARP reply (3 s)
  oversize   send a 70000-byte length header; expect slipway to close the connection (3 s)
  undersize  send a 10-byte length header; expect the connection to close (3 s)
  garbage    send 200 random frames (14..1514 bytes), then an ARP request: expect its reply
Exit status 0 on the expected outcome, 1 otherwise (with a message).
"""
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import frames  # noqa: E402

path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(3)
s.connect(path)
MY_MAC = frames.mac("02:00:00:00:00:10")


def send_frame(f):
    s.sendall(struct.pack("!I", len(f)) + f)


def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def expect_arp_reply():
    deadline = time.time() + 3
    while time.time() < deadline:
        n = struct.unpack("!I", recv_exact(4))[0]
        f = recv_exact(n)
        r = frames.parse_arp_reply(f)
        if r and r[1] == "192.168.127.1" and f[0:6] == MY_MAC:
            if r[0] != frames.GATEWAY_MAC:
                sys.exit(f"ARP reply from unexpected MAC {r[0].hex()}")
            return
    sys.exit("no ARP reply within 3 s")


def expect_close():
    try:
        while True:
            if not s.recv(65536):
                return
    except socket.timeout:
        sys.exit("connection still open 3 s after a bad length")
    except ConnectionResetError:
        return


if mode == "arp":
    send_frame(frames.arp_request(MY_MAC, "192.168.127.10", "192.168.127.1"))
    expect_arp_reply()
elif mode == "oversize":
    s.sendall(struct.pack("!I", 70000) + b"\x00" * 64)
    expect_close()
elif mode == "undersize":
    s.sendall(struct.pack("!I", 10) + b"\x00" * 10)
    expect_close()
elif mode == "garbage":
    # Hostile but well-framed: our own source MAC (so the port lock is not what stops them),
    # addressed to the gateway or broadcast, with IPv4/IPv6/ARP/random EtherTypes and random
    # headers behind them. The gateway must count and drop them, then still answer ARP.
    rnd = random.Random(7)
    for i in range(200):
        dst = frames.GATEWAY_MAC if i % 2 else b"\xff" * 6
        etype = rnd.choice([b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00",
                            bytes([rnd.getrandbits(8), rnd.getrandbits(8)])])
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 1500)))
        send_frame(dst + MY_MAC + etype + body)
    send_frame(frames.arp_request(MY_MAC, "192.168.127.10", "192.168.127.1"))
    expect_arp_reply()
else:
    sys.exit(f"unknown mode {mode}")
print("ok")
