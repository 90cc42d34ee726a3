#!/usr/bin/env python3
"""Datagram peers for the NAT tests (nat_udp, nat_icmp, nat_policy, nat_limits); every command is
bounded in time.

A UDP payload is "slw:TAG:SEQ:" followed by filler made from (TAG, SEQ, SIZE), so an echo can be
checked byte for byte and the server can tell which guest socket a datagram came from. Socket
errors print as "error:ERRNONAME" (e.g. error:ECONNREFUSED after an ICMP port unreachable,
error:EHOSTUNREACH after "communication administratively prohibited").

nat_udp.py serve ADDR PORT --out FILE [--lifetime S]
    UDP echo server: sends every datagram back to its sender and appends one line per datagram
    to FILE: "SRCADDR:SRCPORT LEN TAG" (TAG "-" when the payload has none).
nat_udp.py echo ADDR PORT [--count N] [--size N] [--tag T] [--flows K] [--pause-every M]
                [--pause S] [--timeout S] [--tries N]
    K connected sockets (K source ports, tags T0..T(K-1)) send N datagrams of SIZE bytes each,
    round-robin, one at a time, and check each echo byte for byte; a datagram not echoed within
    --timeout is sent again, --tries times in all. After every M datagrams sent, sleep S seconds.
    Prints "ok SENT PORTS RETRIES SECONDS" (PORTS: the sockets' local ports, comma-separated).
    A socket error prints "error:ERRNONAME ..." and exits 2; anything else wrong exits 1.
nat_udp.py refused ADDR PORT [--timeout S] [--tries N] [--recverr]
    One connected socket sends a datagram (again every --timeout s, --tries times in all) and
    prints what recv() ends with: "error:ERRNONAME", "reply" or "timeout", and the milliseconds.
    With --recverr (IP_RECVERR) also the ICMP error that caused it: "icmp TYPE CODE FROM" (FROM:
    the address that sent the ICMP message), or "icmp - - -" when none was queued.
nat_udp.py flood ADDR PORT N [--duration S] [--interval S] [--wait S] [--tag T] [--while-exists F]
    N sockets (N source ports) each send one datagram (tag T<i>) every --interval seconds for
    --duration seconds (one round when 0; with --while-exists, only as long as file F exists,
    --duration at most), then replies are read for --wait seconds more.
    Prints "socks N answered A sent S replies R errors E" (A: sockets that got at least one
    correct echo; E: socket errors).
nat_udp.py ping ADDR --id ID --count N --marker M [--interval S] [--size N] [--timeout S]
    ICMP echo requests from a raw socket with the fixed identifier ID and sequence numbers
    1..N, payload "M:SEQ:" plus filler; every echo reply that comes back is classified. Prints
    "sent N own K foreign F dup D bad B missing SEQ,SEQ..." (own: identifier ID, our marker and
    payload intact; foreign: another marker; bad: identifier or payload wrong; "-" for none).
nat_udp.py forge --src ADDR [--count N] [--timeout S]
    (In the world namespace, with its kernel's own echo replies off.) For each of the next N echo
    requests it receives, send an echo reply with the same identifier, sequence and data, but
    from the forged source ADDR (IP_HDRINCL). Prints "listening" once its socket is open, then
    "forged N".
nat_udp.py tcp-hold ADDR PORT N --hold FILE [--no-wait] [--timeout S]
    N TCP connections, opened one after another (5 s each at most) and kept open; prints
    "connected C refused R other O" (other: the error names, or "-"), then creates FILE and waits
    (--timeout at most) until the test removes it, then closes them all. With --no-wait the
    connects are only started (non-blocking SYNs) and the line says "started N".
"""
import argparse
import errno
import os
import random
import select
import socket
import struct
import sys
import time


def err_name(e):
    if isinstance(e, OSError) and e.errno:
        return "error:" + errno.errorcode.get(e.errno, str(e.errno))
    return "error:" + type(e).__name__


def payload(tag, seq, size):
    head = f"slw:{tag}:{seq}:".encode()
    if size < len(head):
        raise SystemExit(f"size {size} is too small for the header {head!r}")
    return head + random.Random(f"{tag}/{seq}/{size}").randbytes(size - len(head))


def tag_of(data):
    if data.startswith(b"slw:"):
        parts = data.split(b":", 3)
        if len(parts) >= 3:
            return parts[1].decode(errors="replace") or "-"
    return "-"


def connected(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((addr, port))
    return s


def cmd_serve(a):
    if a.lifetime:
        import threading
        threading.Timer(a.lifetime, lambda: os._exit(3)).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((a.addr, a.port))
    with open(a.out, "a", buffering=1) as out:
        while True:
            data, src = s.recvfrom(65536)
            try:
                s.sendto(data, src)
            except OSError as e:
                print(f"serve: sendto {src}: {err_name(e)}", file=sys.stderr, flush=True)
            out.write(f"{src[0]}:{src[1]} {len(data)} {tag_of(data)}\n")


def cmd_echo(a):
    t0 = time.monotonic()
    socks = [connected(a.addr, a.port) for _ in range(a.flows)]
    ports = ",".join(str(s.getsockname()[1]) for s in socks)
    sent = retries = 0
    try:
        for seq in range(a.count):
            for i, s in enumerate(socks):
                data = payload(f"{a.tag}{i}", seq, a.size)
                for attempt in range(a.tries):
                    s.send(data)
                    if attempt:
                        retries += 1
                    deadline = time.monotonic() + a.timeout
                    got = None
                    while True:
                        left = deadline - time.monotonic()
                        if left <= 0 or not select.select([s], [], [], left)[0]:
                            break
                        r = s.recv(65536)
                        if r == data:
                            got = r
                            break
                        # an echo of an earlier try of an earlier datagram: skip it
                        if tag_of(r) != f"{a.tag}{i}":
                            sys.exit(f"echo: socket {i} got a datagram of tag {tag_of(r)!r}")
                    if got is not None:
                        break
                else:
                    print(f"timeout seq {seq} socket {i} ports {ports}", flush=True)
                    sys.exit(1)
                sent += 1
                if a.pause_every and sent % a.pause_every == 0 and sent < a.count * a.flows:
                    time.sleep(a.pause)
    except OSError as e:
        print(f"{err_name(e)} sent {sent} ports {ports}", flush=True)
        sys.exit(2)
    print(f"ok {sent} {ports} {retries} {time.monotonic() - t0:.3f}", flush=True)


IP_RECVERR = 11
SO_EE_ORIGIN_ICMP = 2


def icmp_error(s):
    """The ICMP error queued on s (IP_RECVERR): "icmp TYPE CODE FROM", or None."""
    try:
        _, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    for level, kind, data in anc:
        if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(data) >= 32:
            _, origin, typ, code = struct.unpack("=IBBB", data[:7])
            if origin != SO_EE_ORIGIN_ICMP:
                return f"origin{origin} {typ} {code} -"
            return f"icmp {typ} {code} {socket.inet_ntoa(data[20:24])}"
    return None


def cmd_refused(a):
    t0 = time.monotonic()
    s = connected(a.addr, a.port)
    if a.recverr:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    res, icmp = "timeout", None
    try:
        for _ in range(a.tries):
            s.send(payload("refused", 0, 64))
            if select.select([s], [], [], a.timeout)[0]:
                s.recv(65536, socket.MSG_DONTWAIT)
                res = "reply"
                break
    except OSError as e:
        res = err_name(e)
        if a.recverr:  # recv() took the error; the ICMP message that caused it is still queued
            icmp = icmp_error(s)
    line = f"{res} {int((time.monotonic() - t0) * 1000)}"
    if a.recverr:
        line += " " + (icmp or "icmp - - -")
    print(line, flush=True)


def cmd_flood(a):
    socks = []
    for _ in range(a.n):
        socks.append(connected(a.addr, a.port))
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    answered = set()
    sent = replies = errors = 0
    rnd = 0

    def drain(until):
        nonlocal replies, errors
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            for fd, _ in ep.poll(left):
                i = by_fd[fd]
                while True:
                    try:
                        r = socks[i].recv(65536, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    except OSError:
                        errors += 1
                        continue
                    if tag_of(r) == f"{a.tag}{i}":
                        seq = int(r.split(b":", 3)[2])
                        if r == payload(f"{a.tag}{i}", seq, a.size):
                            replies += 1
                            answered.add(i)

    end = time.monotonic() + a.duration
    while True:
        for i, s in enumerate(socks):
            try:
                s.send(payload(f"{a.tag}{i}", rnd, a.size))
                sent += 1
            except OSError:
                errors += 1
        rnd += 1
        if time.monotonic() + a.interval >= end:
            break
        if a.while_exists and not os.path.exists(a.while_exists):
            break
        drain(time.monotonic() + a.interval)
    drain(time.monotonic() + a.wait)
    print(f"socks {a.n} answered {len(answered)} sent {sent} replies {replies} errors {errors}",
          flush=True)


def icmp_csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def cmd_ping(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    dst = socket.inet_aton(socket.gethostbyname(a.addr))

    def body(seq):
        head = f"{a.marker}:{seq}:".encode()
        return head + random.Random(f"{a.marker}/{seq}").randbytes(max(0, a.size - len(head)))

    own, foreign, bad = set(), 0, 0
    dup = 0

    def take(until):
        nonlocal foreign, bad, dup
        while True:
            left = until - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                return
            pkt, _ = s.recvfrom(65536)
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[12:16] != dst:
                continue
            icmp = pkt[ihl:]
            if len(icmp) < 8 or icmp[0] != 0:  # echo replies only
                continue
            ident, seq = struct.unpack("!HH", icmp[4:8])
            data = icmp[8:]
            if not data.startswith(f"{a.marker}:".encode()):
                foreign += 1
                continue
            if ident != a.id or data != body(seq) or not 1 <= seq <= a.count:
                bad += 1
                continue
            if seq in own:
                dup += 1
            own.add(seq)

    for seq in range(1, a.count + 1):
        d = body(seq)
        hdr = struct.pack("!BBHHH", 8, 0, 0, a.id, seq)
        c = icmp_csum(hdr + d)
        s.sendto(struct.pack("!BBHHH", 8, 0, c, a.id, seq) + d, (a.addr, 0))
        take(time.monotonic() + a.interval)
    take(time.monotonic() + a.timeout)
    missing = ",".join(str(q) for q in range(1, a.count + 1) if q not in own) or "-"
    print(f"sent {a.count} own {len(own)} foreign {foreign} dup {dup} bad {bad} missing {missing}",
          flush=True)


def cmd_forge(a):
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    forged = 0
    end = time.monotonic() + a.timeout
    print("listening", flush=True)
    while forged < a.count:
        left = end - time.monotonic()
        if left <= 0 or not select.select([rx], [], [], left)[0]:
            break
        pkt, _ = rx.recvfrom(65536)
        ihl = (pkt[0] & 0x0F) * 4
        icmp = pkt[ihl:]
        if len(icmp) < 8 or icmp[0] != 8:  # echo requests only
            continue
        src = pkt[12:16]
        body = b"\0\0\0\0" + icmp[4:]  # type 0 code 0, checksum, same id, seq and data
        c = icmp_csum(body)
        body = body[:2] + struct.pack("!H", c) + body[4:]
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 1, 0,
                          socket.inet_aton(a.src), src)
        hdr = hdr[:10] + struct.pack("!H", icmp_csum(hdr)) + hdr[12:]
        tx.sendto(hdr + body, (socket.inet_ntoa(src), 0))
        forged += 1
    print(f"forged {forged}", flush=True)


def cmd_tcp_hold(a):
    conns = []
    ok = refused = 0
    other = []
    for _ in range(a.n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conns.append(c)
        if a.no_wait:
            c.setblocking(False)
            try:
                c.connect((a.addr, a.port))
            except BlockingIOError:
                pass
            continue
        c.settimeout(5)
        try:
            c.connect((a.addr, a.port))
            ok += 1
        except ConnectionRefusedError:
            refused += 1
        except OSError as e:
            other.append(err_name(e))
    if a.no_wait:
        print(f"started {a.n}", flush=True)
    else:
        print(f"connected {ok} refused {refused} other {','.join(other) or '-'}", flush=True)
    open(a.hold, "w").close()
    end = time.monotonic() + a.timeout
    while os.path.exists(a.hold) and time.monotonic() < end:
        time.sleep(0.05)
    for c in conns:
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("serve")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--out", required=True)
    q.add_argument("--lifetime", type=float, default=600)

    q = sub.add_parser("echo")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--size", type=int, default=100)
    q.add_argument("--tag", default="e")
    q.add_argument("--flows", type=int, default=1)
    q.add_argument("--pause-every", type=int, default=0)
    q.add_argument("--pause", type=float, default=0)
    q.add_argument("--timeout", type=float, default=1.0)
    q.add_argument("--tries", type=int, default=3)

    q = sub.add_parser("refused")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--recverr", action="store_true")
    q.add_argument("--timeout", type=float, default=1.0)
    q.add_argument("--tries", type=int, default=3)

    q = sub.add_parser("flood")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("n", type=int)
    q.add_argument("--duration", type=float, default=0)
    q.add_argument("--interval", type=float, default=0.2)
    q.add_argument("--wait", type=float, default=1.0)
    q.add_argument("--tag", default="f")
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--while-exists")

    q = sub.add_parser("ping")
    q.add_argument("addr")
    q.add_argument("--id", type=int, required=True)
    q.add_argument("--count", type=int, default=10)
    q.add_argument("--marker", required=True)
    q.add_argument("--interval", type=float, default=0.05)
    q.add_argument("--size", type=int, default=56)
    q.add_argument("--timeout", type=float, default=2.0)

    q = sub.add_parser("forge")
    q.add_argument("--src", required=True)
    q.add_argument("--count", type=int, default=3)
    q.add_argument("--timeout", type=float, default=10)

    q = sub.add_parser("tcp-hold")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("n", type=int)
    q.add_argument("--hold", required=True)
    q.add_argument("--no-wait", action="store_true")
    q.add_argument("--timeout", type=float, default=60)

    a = p.parse_args()
    {"serve": cmd_serve, "echo": cmd_echo, "refused": cmd_refused, "flood": cmd_flood,
     "ping": cmd_ping, "forge": cmd_forge, "tcp-hold": cmd_tcp_hold}[a.cmd](a)


if __name__ == "__main__":
    main()
