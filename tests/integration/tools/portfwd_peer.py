#!/usr/bin/env python3
"""Peers for the port-forwarding tests: servers that tell the client who they saw, clients that
report what they got, all bounded in time.

portfwd_peer.py tcp-serve ADDR PORT
    a TCP server (one thread per connection): writes "PEERADDR:PEERPORT\\n" (the client as the
    server sees it), then echoes everything to EOF and closes.
portfwd_peer.py tcp-peer ADDR PORT [--timeout S]
    connect, read the server's first line, close. Prints "seen PEER local LOCALADDR:LOCALPORT MS"
    (MS: milliseconds from the connect to the line), or "error:ERRNONAME MS" / "eof MS" when the
    connection fails, is reset or closes before a line. Exit 0 either way.
portfwd_peer.py hold ADDR PORT --hold FILE --after send|wait [--bytes N] [--timeout S]
    connect to a tcp-serve server, read its line, check one echo; then create FILE and wait (at
    most --timeout s) until the test removed it. Then with "send": send N bytes (default 1 MiB),
    shut the write side and check that the echo comes back byte-exact up to EOF; prints
    "ok echoed N" or the error. With "wait": send nothing, wait at most 5 s for the socket to
    become readable, and print what a read gives: "eof", "data N", "error:ERRNONAME" or
    "timeout".
portfwd_peer.py udp-serve ADDR PORT --out FILE
    a UDP server: answers each datagram with "PEERADDR:PEERPORT " + the datagram, and appends
    "PEERADDR:PEERPORT LEN" to FILE.
portfwd_peer.py udp-client ADDR PORT [--count N] [--tag T] [--timeout S]
    one unconnected UDP socket sends N datagrams ("T:I") to ADDR:PORT, one after another, each
    answered before the next (resent up to 3 times). Checks every answer came from ADDR:PORT and
    echoes its datagram. Prints "ok LOCALPORT PEER1 PEER2 ..." (the peers the server named);
    exit 1 on a timeout or a wrong answer.
"""
import argparse
import errno
import os
import select
import socket
import sys
import threading
import time


def err_name(e):
    if isinstance(e, OSError) and e.errno:
        return "error:" + errno.errorcode.get(e.errno, str(e.errno))
    return "error:" + type(e).__name__


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def hostport(sa):
    host = sa[0]
    return f"[{host}]:{sa[1]}" if ":" in host else f"{host}:{sa[1]}"


def lifetime(seconds):
    threading.Timer(seconds, lambda: os._exit(3)).start()


def cmd_tcp_serve(a):
    lifetime(a.lifetime)
    ls = socket.socket(family(a.addr), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.addr, a.port))
    ls.listen(256)

    def conn(c, peer):
        c.settimeout(60)
        try:
            c.sendall(f"{hostport(peer)}\n".encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = ls.accept()
        threading.Thread(target=conn, args=(c, peer), daemon=True).start()


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            return None
        buf += d
    return buf[:-1].decode()


def cmd_tcp_peer(a):
    t0 = time.monotonic()

    def ms():
        return int((time.monotonic() - t0) * 1000)

    s = socket.socket(family(a.addr), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.connect((a.addr, a.port))
        local = hostport(s.getsockname())
        line = read_line(s)
    except OSError as e:
        print(f"{err_name(e)} {ms()}", flush=True)
        return
    finally:
        s.close()
    if line is None:
        print(f"eof {ms()}", flush=True)
    else:
        print(f"seen {line} local {local} {ms()}", flush=True)


def cmd_hold(a):
    s = socket.socket(family(a.addr), socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((a.addr, a.port))
    line = read_line(s)
    if line is None:
        sys.exit("hold: EOF before the server's line")
    s.sendall(b"hello\n")
    got = b""
    while len(got) < 6:
        d = s.recv(6 - len(got))
        if not d:
            sys.exit("hold: EOF before the first echo")
        got += d
    if got != b"hello\n":
        sys.exit(f"hold: first echo {got!r}")
    print(f"connected {line}", flush=True)
    open(a.hold, "w").close()
    end = time.monotonic() + a.timeout
    while os.path.exists(a.hold):
        if time.monotonic() > end:
            sys.exit("hold: the hold file was never removed")
        time.sleep(0.05)
    if a.after == "wait":
        if not select.select([s], [], [], 5)[0]:
            print("timeout", flush=True)
            return
        try:
            d = s.recv(65536)
        except OSError as e:
            print(err_name(e), flush=True)
            return
        print("eof" if not d else f"data {len(d)}", flush=True)
        return
    data = os.urandom(a.bytes)
    back = bytearray()
    s.setblocking(False)
    sent = 0
    shut = False
    end = time.monotonic() + 30
    try:
        while True:
            if time.monotonic() > end:
                print(f"timeout sent {sent} echoed {len(back)}", flush=True)
                sys.exit(1)
            want_w = [s] if not shut else []
            r, w, _ = select.select([s], want_w, [], 1)
            if w:
                if sent < len(data):
                    try:
                        sent += s.send(data[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                if sent == len(data):
                    s.shutdown(socket.SHUT_WR)
                    shut = True
            if r:
                d = s.recv(1 << 20)
                if not d:
                    break
                back += d
    except OSError as e:
        print(f"{err_name(e)} sent {sent} echoed {len(back)}", flush=True)
        sys.exit(1)
    if bytes(back) != data:
        print(f"bad echo: sent {len(data)} got {len(back)}", flush=True)
        sys.exit(1)
    print(f"ok echoed {len(back)}", flush=True)


def cmd_udp_serve(a):
    lifetime(a.lifetime)
    s = socket.socket(family(a.addr), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.addr, a.port))
    with open(a.out, "a", buffering=1) as out:
        while True:
            data, src = s.recvfrom(65536)
            try:
                s.sendto(f"{hostport(src)} ".encode() + data, src)
            except OSError as e:
                print(f"udp-serve: sendto {src}: {err_name(e)}", file=sys.stderr, flush=True)
            out.write(f"{hostport(src)} {len(data)}\n")


def cmd_udp_client(a):
    s = socket.socket(family(a.addr), socket.SOCK_DGRAM)
    s.bind(("::" if family(a.addr) == socket.AF_INET6 else "0.0.0.0", 0))
    want_src = (a.addr, a.port)
    peers = []
    for i in range(a.count):
        data = f"{a.tag}:{i}".encode()
        got = None
        for _ in range(3):
            s.sendto(data, want_src)
            end = time.monotonic() + a.timeout
            while got is None:
                left = end - time.monotonic()
                if left <= 0 or not select.select([s], [], [], left)[0]:
                    break
                r, src = s.recvfrom(65536)
                if src[:2] != want_src:
                    sys.exit(f"udp-client: an answer from {hostport(src)}, expected {hostport(want_src)}")
                peer, _, body = r.partition(b" ")
                if body == data:
                    got = peer.decode()
                # else: a late answer to an earlier try; skip it
            if got is not None:
                break
        if got is None:
            print(f"timeout at datagram {i}", flush=True)
            sys.exit(1)
        peers.append(got)
    print(f"ok {s.getsockname()[1]} {' '.join(peers)}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("tcp-serve")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--lifetime", type=float, default=600)
    q = sub.add_parser("tcp-peer")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--timeout", type=float, default=10)
    q = sub.add_parser("hold")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--hold", required=True)
    q.add_argument("--after", choices=["send", "wait"], required=True)
    q.add_argument("--bytes", type=int, default=1 << 20)
    q.add_argument("--timeout", type=float, default=60)
    q = sub.add_parser("udp-serve")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--out", required=True)
    q.add_argument("--lifetime", type=float, default=600)
    q = sub.add_parser("udp-client")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--count", type=int, default=2)
    q.add_argument("--tag", default="u")
    q.add_argument("--timeout", type=float, default=1.0)
    a = p.parse_args()
    {"tcp-serve": cmd_tcp_serve, "tcp-peer": cmd_tcp_peer, "hold": cmd_hold,
     "udp-serve": cmd_udp_serve, "udp-client": cmd_udp_client}[a.cmd](a)


if __name__ == "__main__":
    main()
