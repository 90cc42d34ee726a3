#!/usr/bin/env python3
"""A vfkit/krunkit-style unixgram client for tests: one Ethernet frame per datagram.

vfkit_client.py SOCKET MY_SOCKET [--magic] [--short]
Sends the `VFKT` magic first with --magic, a 5-byte datagram first with --short, then an ARP
request for the gateway, and expects the ARP reply (3 s). Exit 0 on success.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import frames  # noqa: E402

server, me = sys.argv[1], sys.argv[2]
flags = sys.argv[3:]
try:
    os.unlink(me)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(me)
s.settimeout(3)
MY_MAC = frames.mac("02:00:00:00:00:20")
if "--magic" in flags:
    s.sendto(b"VFKT", server)
if "--short" in flags:
    s.sendto(b"\x01\x02\x03\x04\x05", server)
s.sendto(frames.arp_request(MY_MAC, "192.168.127.20", "192.168.127.1"), server)
deadline = time.time() + 3
while time.time() < deadline:
    try:
        f = s.recv(70000)
    except socket.timeout:
        break
    r = frames.parse_arp_reply(f)
    if r and r[1] == "192.168.127.1" and f[0:6] == MY_MAC:
        print("ok")
        sys.exit(0)
sys.exit("no ARP reply within 3 s")
