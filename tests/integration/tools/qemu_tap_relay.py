#!/usr/bin/env python3
"""Plays QEMU for tests: bridges a plain TAP device (no virtio-net header, no offloads) in the
current network namespace to slipway's qemu-stream socket, so the Linux stack behind the TAP is a
guest on a port that takes only MTU-sized, fully checksummed frames.

qemu_tap_relay.py SOCKET TAPNAME STATSFILE
STATSFILE gets "frames_to_guest max_frame_to_guest" whenever the maximum grows, and at exit.
"""
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

path, tapname, statsfile = sys.argv[1], sys.argv[2], sys.argv[3]
tap = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", tapname.encode(), IFF_TAP | IFF_NO_PI))
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
frames_to_guest = 0
max_frame = 0


def dump():
    with open(statsfile + ".tmp", "w") as f:
        f.write(f"{frames_to_guest} {max_frame}\n")
    os.replace(statsfile + ".tmp", statsfile)


def stop(*_):
    dump()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
dump()
buf = b""
while True:
    r, _, _ = select.select([tap, sock], [], [])
    if tap in r:
        f = os.read(tap, 65536)
        sock.sendall(struct.pack("!I", len(f)) + f)
    if sock in r:
        chunk = sock.recv(262144)
        if not chunk:
            stop()
        buf += chunk
        while len(buf) >= 4:
            n = struct.unpack("!I", buf[:4])[0]
            if len(buf) < 4 + n:
                break
            frame, buf = buf[4:4 + n], buf[4 + n:]
            frames_to_guest += 1
            if n > max_frame:
                max_frame = n
                dump()
            try:
                os.write(tap, frame)
            except OSError as e:
                # EIO: the TAP is not up yet (the test brings it up after the relay starts);
                # a NIC without link drops the frame too.
                if e.errno != errno.EIO:
                    raise
