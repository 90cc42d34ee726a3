#!/usr/bin/env python3
"""TCP peers for the NAT tests: deterministic data, sha256 at both ends, bounded in time.

The data of a stream is a function of its seed: MiB i is a random MiB (from the seed) rotated by
i * 7919 bytes with i in its first 8 bytes, so no two MiB are alike and any lost, doubled or
reordered byte changes the sha256. Results are "SHA256 BYTES" pairs.

nat_tcp.py sha SEED BYTES
    print the stream's "SHA BYTES".
nat_tcp.py serve ADDR PORT MODE [--out FILE] [--bytes N] [--seed S] [--reply-bytes N]
                 [--sleep S] [--rcvbuf N] [--lifetime S]
    a server, one thread per connection, appending one line per finished connection to FILE:
    sink    read to EOF (after --sleep S), then reply "SHA BYTES\\n" of what came and --reply-bytes
            of stream --seed, close.             line: "sink GOT_SHA GOT_BYTES STATUS"
    source  send --bytes of stream --seed, shut the write side, then read to EOF and close.
                                                 line: "source SENT_SHA SENT GOT_SHA GOT STATUS"
            With --reset: after the bytes, close with SO_LINGER {1, 0} (a reset) instead.
    echo    (asyncio) echo to EOF, shut the write side.   line: "echo BYTES STATUS"
    STATUS is "eof" or "error:ERRNONAME". --rcvbuf sets SO_RCVBUF on the listener.
nat_tcp.py send ADDR PORT BYTES [--seed S] [--reply-bytes N] [--reply-seed S]
    send BYTES of stream S, shut the write side, read the sink's reply to EOF; exit 1 unless the
    reply names the same sha256 and count (and the --reply-bytes after it are stream
    --reply-seed). Prints "sent SHA BYTES reply SHA BYTES SECONDS".
nat_tcp.py recv ADDR PORT [--sleep S] [--rcvbuf N] [--then-send N] [--seed S]
    read to EOF (after sleeping S seconds), print "got SHA BYTES SECONDS"; with --then-send, send
    N bytes of stream S after the EOF (half-close: the peer shut first) and print "sent SHA N".
    A socket error instead of EOF prints "error:ERRNONAME BYTES" and exits 2.
nat_tcp.py connect ADDR PORT
    one connect (60 s at most); prints "connected" or "error:ERRNONAME" and the milliseconds taken.
nat_tcp.py reset ADDR PORT read|write BYTES
    read (or send) BYTES, then close with SO_LINGER {1, 0}: a reset while data flows.
nat_tcp.py many ADDR PORT N SIZE [--hold FILE] [--timeout S]
    N concurrent connections; once all are connected (and FILE, when given, was created and then
    removed by the test), each sends SIZE bytes of its own and checks the echo byte for byte.
    Prints "ok N failed M SECONDS"; exit 1 on any failure.
"""
import argparse
import asyncio
import errno
import hashlib
import os
import random
import resource
import socket
import struct
import sys
import threading
import time

MIB = 1 << 20
IO_TIMEOUT = 60  # seconds without progress before a socket operation fails


class Stream:
    """The deterministic byte stream of a seed, produced in pieces."""

    def __init__(self, seed):
        self.block = random.Random(seed).randbytes(MIB)

    def mib(self, i):
        rot = (i * 7919) % MIB
        b = self.block[rot:] + self.block[:rot]
        return i.to_bytes(8, "big") + b[8:]

    def pieces(self, nbytes):
        i = 0
        while nbytes > 0:
            m = self.mib(i)
            if nbytes < MIB:
                m = m[:nbytes]
            yield m
            nbytes -= len(m)
            i += 1

    def sha(self, nbytes):
        h = hashlib.sha256()
        for p in self.pieces(nbytes):
            h.update(p)
        return h.hexdigest()


def err_name(e):
    if isinstance(e, OSError) and e.errno:
        return "error:" + errno.errorcode.get(e.errno, str(e.errno))
    return "error:" + type(e).__name__


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_to_eof(s, h=None):
    """Reads until EOF; returns (sha, count)."""
    h = h or hashlib.sha256()
    buf = bytearray(MIB)
    mv = memoryview(buf)
    total = 0
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        h.update(mv[:n])
        total += n
    return h.hexdigest(), total


def send_stream(s, seed, nbytes):
    h = hashlib.sha256()
    for p in Stream(seed).pieces(nbytes):
        s.sendall(p)
        h.update(p)
    return h.hexdigest(), nbytes


# ---- servers ----

class Out:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def line(self, text):
        with self.lock:
            if self.path:
                with open(self.path, "a") as f:
                    f.write(text + "\n")
            else:
                print(text, flush=True)


def serve_threaded(args, out):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.rcvbuf:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ls.bind((args.addr, args.port))
    ls.listen(1024)

    def conn(c):
        c.settimeout(IO_TIMEOUT)
        status = "eof"
        try:
            if args.mode == "sink":
                got = ("-", 0)
                try:
                    if args.sleep:
                        time.sleep(args.sleep)
                    got = read_to_eof(c)
                    c.sendall(f"{got[0]} {got[1]}\n".encode())
                    if args.reply_bytes:
                        send_stream(c, args.seed, args.reply_bytes)
                except OSError as e:
                    status = err_name(e)
                out.line(f"sink {got[0]} {got[1]} {status}")
            else:  # source
                sent, got = ("-", 0), ("-", 0)
                try:
                    sent = send_stream(c, args.seed, args.bytes)
                    if args.reset:
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        status = "reset"
                    else:
                        c.shutdown(socket.SHUT_WR)
                        got = read_to_eof(c)
                except OSError as e:
                    status = err_name(e)
                out.line(f"source {sent[0]} {sent[1]} {got[0]} {got[1]} {status}")
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()


async def serve_echo(args, out):
    async def handle(r, w):
        total, status = 0, "eof"
        try:
            while True:
                d = await asyncio.wait_for(r.read(65536), IO_TIMEOUT)
                if not d:
                    break
                total += len(d)
                w.write(d)
                await asyncio.wait_for(w.drain(), IO_TIMEOUT)
            w.write_eof()
            await asyncio.wait_for(w.drain(), IO_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            status = err_name(e)
        finally:
            w.close()
        out.line(f"echo {total} {status}")

    srv = await asyncio.start_server(handle, args.addr, args.port, backlog=4096,
                                     reuse_address=True)
    async with srv:
        await srv.serve_forever()


def cmd_serve(args):
    raise_nofile()
    out = Out(args.out)
    if args.lifetime:
        threading.Timer(args.lifetime, lambda: os._exit(3)).start()
    if args.mode == "echo":
        asyncio.run(serve_echo(args, out))
    else:
        serve_threaded(args, out)


# ---- clients ----

def connect(addr, port, rcvbuf=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(IO_TIMEOUT)
    s.connect((addr, port))
    return s


def cmd_send(args):
    t0 = time.monotonic()
    s = connect(args.addr, args.port)
    sent = send_stream(s, args.seed, args.bytes)
    s.shutdown(socket.SHUT_WR)
    reply = bytearray()
    while True:
        b = s.recv(MIB)
        if not b:
            break
        reply += b
    secs = time.monotonic() - t0
    s.close()
    nl = reply.find(b"\n")
    if nl < 0:
        sys.exit(f"send: no reply line (got {len(reply)} bytes)")
    line = reply[:nl].decode(errors="replace")
    data = bytes(reply[nl + 1:])
    print(f"sent {sent[0]} {sent[1]} reply {line} {secs:.3f}")
    if line != f"{sent[0]} {sent[1]}":
        sys.exit(f"send: the sink got '{line}', sent '{sent[0]} {sent[1]}'")
    if args.reply_bytes or data:
        want = Stream(args.reply_seed).sha(args.reply_bytes)
        got = hashlib.sha256(data).hexdigest()
        print(f"reply-data {got} {len(data)}")
        if (got, len(data)) != (want, args.reply_bytes):
            sys.exit(f"send: reply data {got} {len(data)}, expected {want} {args.reply_bytes}")


def cmd_recv(args):
    t0 = time.monotonic()
    s = connect(args.addr, args.port, args.rcvbuf)
    if args.sleep:
        time.sleep(args.sleep)
    h = hashlib.sha256()
    counted = [0]

    class Counting:
        def update(self, b):
            counted[0] += len(b)
            h.update(b)

        def hexdigest(self):
            return h.hexdigest()

    try:
        got = read_to_eof(s, Counting())
    except OSError as e:
        print(f"{err_name(e)} {counted[0]}", flush=True)
        sys.exit(2)
    secs = time.monotonic() - t0
    print(f"got {got[0]} {got[1]} {secs:.3f}", flush=True)
    if args.then_send:
        sent = send_stream(s, args.seed, args.then_send)
        s.shutdown(socket.SHUT_WR)
        print(f"sent {sent[0]} {sent[1]}", flush=True)
    s.close()


def cmd_connect(args):
    t0 = time.monotonic()
    try:
        connect(args.addr, args.port).close()
        res = "connected"
    except OSError as e:
        res = err_name(e)
    print(f"{res} {int((time.monotonic() - t0) * 1000)}")


def cmd_reset(args):
    s = connect(args.addr, args.port)
    done = 0
    if args.direction == "read":
        while done < args.bytes:
            b = s.recv(MIB)
            if not b:
                sys.exit(f"reset: EOF after {done} bytes")
            done += len(b)
    else:
        for p in Stream(7).pieces(args.bytes):
            s.sendall(p)
            done += len(p)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print(f"reset after {done} bytes {args.direction}")


def cmd_many(args):
    raise_nofile()
    block = Stream(99).block
    n, size = args.n, args.size
    state = {"done": 0}
    all_connected = asyncio.Event()
    results = []

    def payload(i):
        off = (i * 4099) % (MIB - size)
        return i.to_bytes(8, "big") + block[off + 8:off + size]

    async def hold():
        if not args.hold:
            return
        open(args.hold, "w").close()
        for _ in range(int(args.timeout * 10)):
            if not os.path.exists(args.hold):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("hold file never removed")

    async def one(i):
        w = None
        try:
            try:
                r, w = await asyncio.open_connection(args.addr, args.port)
            finally:
                state["done"] += 1
                if state["done"] == n:
                    all_connected.set()
            await all_connected.wait()
            await released
            data = payload(i)
            w.write(data)
            got = await r.readexactly(size)
            w.write_eof()
            rest = await r.read()
            if got != data:
                bad = next(k for k in range(size) if got[k] != data[k])
                return f"conn {i}: echo differs at byte {bad}"
            if rest:
                return f"conn {i}: {len(rest)} bytes beyond the echo"
            return None
        except Exception as e:  # noqa: BLE001 -- every failure is reported
            return f"conn {i}: {type(e).__name__}: {e}"
        finally:
            if w is not None:
                w.close()

    async def main():
        nonlocal released
        loop = asyncio.get_running_loop()
        released = loop.create_future()

        async def release():
            await all_connected.wait()
            connected = sum(1 for t in tasks if not t.done())
            print(f"connected: {connected} of {n} open after {time.monotonic() - t0:.3f} s",
                  file=sys.stderr, flush=True)
            await hold()
            t_rel = time.monotonic()
            released.set_result(None)
            await asyncio.gather(*tasks, return_exceptions=True)
            print(f"echoed after {time.monotonic() - t_rel:.3f} s more", file=sys.stderr, flush=True)

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        rel = asyncio.create_task(release())
        res = await asyncio.wait_for(asyncio.gather(*tasks), args.timeout)
        await rel
        results.extend(res)

    released = None
    t0 = time.monotonic()
    try:
        asyncio.run(main())
    except asyncio.TimeoutError:
        sys.exit(f"many: not done within {args.timeout} s")
    secs = time.monotonic() - t0
    failures = [r for r in results if r]
    for f in failures[:10]:
        print(f, file=sys.stderr)
    print(f"ok {n - len(failures)} failed {len(failures)} {secs:.3f}")
    if failures:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("sha")
    q.add_argument("seed", type=int)
    q.add_argument("bytes", type=int)

    q = sub.add_parser("serve")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("mode", choices=["sink", "source", "echo"])
    q.add_argument("--out")
    q.add_argument("--bytes", type=int, default=0)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--reply-bytes", type=int, default=0)
    q.add_argument("--sleep", type=float, default=0)
    q.add_argument("--rcvbuf", type=int, default=0)
    q.add_argument("--lifetime", type=float, default=600)
    q.add_argument("--reset", action="store_true")

    q = sub.add_parser("send")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("bytes", type=int)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--reply-bytes", type=int, default=0)
    q.add_argument("--reply-seed", type=int, default=1)

    q = sub.add_parser("recv")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--sleep", type=float, default=0)
    q.add_argument("--rcvbuf", type=int, default=0)
    q.add_argument("--then-send", type=int, default=0)
    q.add_argument("--seed", type=int, default=1)

    q = sub.add_parser("connect")
    q.add_argument("addr")
    q.add_argument("port", type=int)

    q = sub.add_parser("reset")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("direction", choices=["read", "write"])
    q.add_argument("bytes", type=int)

    q = sub.add_parser("many")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("n", type=int)
    q.add_argument("size", type=int)
    q.add_argument("--hold")
    q.add_argument("--timeout", type=float, default=120)

    args = p.parse_args()
    if args.cmd == "sha":
        print(f"{Stream(args.seed).sha(args.bytes)} {args.bytes}")
    elif args.cmd == "serve":
        cmd_serve(args)
    elif args.cmd == "send":
        cmd_send(args)
    elif args.cmd == "recv":
        cmd_recv(args)
    elif args.cmd == "connect":
        cmd_connect(args)
    elif args.cmd == "reset":
        cmd_reset(args)
    else:
        cmd_many(args)


if __name__ == "__main__":
    main()
