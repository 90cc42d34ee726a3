#!/usr/bin/env python3
"""The QEMU test guest: builds its image, boots it, and runs commands in it (issue 9, DESIGN §5, §7).

Theory of operation
-------------------
The guest is a Debian cloud kernel and a small initramfs, built once per test run into the build
tree by `vm.py image DIR`:

* The kernel comes from the package `linux-image-cloud-amd64` depends on, fetched with
  `apt-get download` and unpacked with `dpkg-deb -x` into DIR; nothing is installed on the machine.
* The initramfs (a newc cpio written here, so no device node is ever created on the machine) holds
  busybox-static, the virtio_pci and virtio_net modules with every module they depend on (read
  from each module's .modinfo `depends=`, loaded in dependency order), iperf3 with the libraries
  ldd lists, and the guest side of this tool: `guest/init` (PID 1), `guest/agent.sh` (the command
  loop), `guest/lib.sh` (helpers) and `guest/udhcpc.sh` (the guest's DHCP event script).
* DIR/stamp records a hash of every input: a second `image` run with the same inputs does nothing.

`vm.py boot` starts `qemu-system-x86_64 -nodefaults` daemonized with one virtio-net-pci NIC on the
requested back end (vhost-user with memfd guest RAM, a `-netdev stream` unix socket, or QEMU's own
`-netdev user`) and the serial console on a unix socket whose every byte QEMU also appends to
RUNDIR/console.log. It returns once the guest printed SLW-READY (bounded) and leaves QEMU's pid
in RUNDIR/qemu.pid. `vm.py run` connects to that console and sends a shell script to the guest's
agent, base64 in chunks, prints what the script prints and exits with the script's status (or 124
when the guest did not finish in time). `vm.py kill` stops QEMU by its recorded pid.

The accelerator is TCG unless `--accel kvm`, or `--accel auto` and a probe boot under KVM reached
SLW-READY (nested KVM does not boot guests on the CI machines; DESIGN §7). The probe's verdict is
kept in DIR/accel, so a run probes at most once.
"""
import argparse
import base64
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.join(HERE, "guest")
KERNEL_META = "linux-image-cloud-amd64"
# The NIC's driver; vm.py adds every module these depend on.
WANTED_MODULES = ["virtio_pci", "virtio_net"]
# Host programs copied into the guest with the libraries ldd lists (busybox-static needs none).
GUEST_PROGRAMS = ["/usr/bin/iperf3"]
BUSYBOX = "/bin/busybox"
CHUNK = 1024  # base64 bytes per console line: well under a tty line's 4095


def die(msg):
    print(f"vm.py: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# image


def kernel_package():
    """The versioned kernel package the cloud metapackage depends on (never hard-coded)."""
    out = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True)
    m = re.search(r"Depends:\s+(linux-image-\S+)", out.stdout)
    if not m:
        die(f"apt-cache knows no dependency of {KERNEL_META}: {out.stderr.strip()}")
    return m.group(1)


def fetch_kernel(pkg, dl):
    """apt-get download PKG into DL (once); refreshes the package lists when the mirror moved on."""
    os.makedirs(dl, exist_ok=True)
    debs = [f for f in os.listdir(dl) if f.startswith(pkg + "_") and f.endswith(".deb")]
    if debs:
        return os.path.join(dl, sorted(debs)[-1])
    for attempt in range(2):
        r = subprocess.run(["apt-get", "download", "-q", pkg], cwd=dl, capture_output=True, text=True)
        debs = [f for f in os.listdir(dl) if f.startswith(pkg + "_") and f.endswith(".deb")]
        if r.returncode == 0 and debs:
            return os.path.join(dl, debs[0])
        if attempt == 0:
            print(f"vm.py: apt-get download {pkg} failed, refreshing package lists", file=sys.stderr)
            subprocess.run(["apt-get", "update", "-qq"], check=False)
    die(f"apt-get download {pkg} failed: {r.stderr.strip()}")


def modinfo_depends(data):
    m = re.search(rb"(?:^|\x00)depends=([A-Za-z0-9_,-]*)\x00", data)
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return data


def resolve_modules(moddir):
    """Every module WANTED_MODULES need, dependencies first, as (name, uncompressed bytes)."""
    index = {}
    for root, _, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            m = re.match(r"(.+)\.ko(\.xz|\.zst)?$", f)
            if m:
                index[m.group(1).replace("-", "_")] = os.path.join(root, f)
    builtin = set()
    with open(os.path.join(moddir, "modules.builtin")) as f:
        for line in f:
            builtin.add(os.path.basename(line.strip()).split(".ko")[0].replace("-", "_"))
    order, seen = [], set()

    def visit(name, chain):
        if name in seen or name in builtin:
            return
        if name in chain:
            die(f"module dependency loop: {' -> '.join(chain + [name])}")
        if name not in index:
            die(f"module {name} is neither in the kernel package nor built in")
        data = read_module(index[name])
        for dep in modinfo_depends(data):
            visit(dep, chain + [name])
        seen.add(name)
        order.append((name, data))

    for w in WANTED_MODULES:
        visit(w, [])
    return order


def ldd_libs(prog):
    out = subprocess.run(["ldd", prog], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


class Cpio:
    """A newc ("070701") archive, the format the kernel unpacks as initramfs."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_b = name.encode() + b"\x00"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % v for v in fields) + name_b
        self.out += b"\x00" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\x00" * (-len(self.out) % 4)

    def dir(self, path):
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        self.dir(os.path.dirname(path))
        self.dirs.add(path)
        self._entry(path, 0o040755)

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self._entry(path, 0o100000 | mode, data)

    def chardev(self, path, major, minor):
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self._entry(path, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def image_inputs(pkg):
    """What the image is made of, hashed into the stamp."""
    h = hashlib.sha256()
    h.update(pkg.encode())
    for f in sorted(os.listdir(GUEST)):
        with open(os.path.join(GUEST, f), "rb") as fh:
            h.update(f.encode() + fh.read())
    with open(os.path.abspath(__file__), "rb") as fh:
        h.update(fh.read())
    for p in [BUSYBOX] + GUEST_PROGRAMS:
        st = os.stat(p)
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cmd_image(args):
    out = os.path.abspath(args.dir)
    os.makedirs(out, exist_ok=True)
    for tool in ["apt-get", "apt-cache", "dpkg-deb", "ldd", BUSYBOX] + GUEST_PROGRAMS:
        if not shutil.which(tool):
            die(f"{tool} is missing (scripts/deps installs busybox-static and iperf3)")
    pkg = kernel_package()
    stamp = os.path.join(out, "stamp")
    want = image_inputs(pkg)
    if os.path.exists(stamp) and open(stamp).read().strip() == want and not args.force:
        print(f"vm.py: guest image in {out} is up to date ({pkg})")
        return
    t0 = time.monotonic()
    deb = fetch_kernel(pkg, os.path.join(out, "dl"))
    root = os.path.join(out, "kernel")
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    vmlinuz = [f for f in os.listdir(os.path.join(root, "boot")) if f.startswith("vmlinuz-")]
    if len(vmlinuz) != 1:
        die(f"{deb} holds {len(vmlinuz)} kernels in /boot")
    version = vmlinuz[0][len("vmlinuz-"):]
    moddir = os.path.join(root, "lib", "modules", version)
    modules = resolve_modules(moddir)

    cpio = Cpio()
    for d in ["proc", "sys", "dev", "tmp", "bin", "sbin", "etc", "var", "usr/bin", "lib/modules"]:
        cpio.dir(d)
    # The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    cpio.chardev("dev/console", 5, 1)
    with open(BUSYBOX, "rb") as f:
        cpio.file("bin/busybox", f.read(), 0o755)
    for src, dst, mode in [("init", "init", 0o755), ("agent.sh", "etc/slw-agent", 0o755),
                           ("lib.sh", "etc/slw-lib", 0o644), ("udhcpc.sh", "etc/slw-udhcpc", 0o755)]:
        with open(os.path.join(GUEST, src), "rb") as f:
            cpio.file(dst, f.read(), mode)
    for name, data in modules:
        cpio.file(f"lib/modules/{name}.ko", data)
    cpio.file("etc/slw-modules", "".join(n + "\n" for n, _ in modules).encode())
    copied = set()
    for prog in GUEST_PROGRAMS:
        for p in [prog] + ldd_libs(prog):
            if p in copied:
                continue
            copied.add(p)
            with open(os.path.realpath(p), "rb") as f:
                cpio.file(p, f.read(), 0o755)
    blob = gzip.compress(cpio.finish(), compresslevel=6)
    with open(os.path.join(out, "initramfs.gz.tmp"), "wb") as f:
        f.write(blob)
    os.replace(os.path.join(out, "initramfs.gz.tmp"), os.path.join(out, "initramfs.gz"))
    shutil.copyfile(os.path.join(root, "boot", vmlinuz[0]), os.path.join(out, "vmlinuz"))
    info = {"package": pkg, "deb": os.path.basename(deb), "kernel": version,
            "modules": [n for n, _ in modules], "programs": sorted(copied),
            "initramfs_bytes": len(blob)}
    with open(os.path.join(out, "image.json"), "w") as f:
        json.dump(info, f, indent=1)
    # The unpacked package (~100 MB of modules) is not needed once the image is made.
    shutil.rmtree(root, ignore_errors=True)
    with open(stamp, "w") as f:
        f.write(want + "\n")
    print(f"vm.py: guest image in {out}: kernel {version}, modules {' '.join(info['modules'])}, "
          f"initramfs {len(blob) >> 10} KiB, {time.monotonic() - t0:.1f} s")


# ---------------------------------------------------------------------------------------------
# boot, run, kill


def netdev_args(spec, mac, offloads, accel):
    """QEMU arguments for one virtio-net-pci NIC on back end SPEC."""
    kind, _, rest = spec.partition(":")
    dev = f"virtio-net-pci,netdev=n0,mac={mac},romfile="
    if not offloads:
        # What the guest may not use: checksum offload and TSO both ways, and mergeable buffers.
        dev += ",csum=off,guest_csum=off,host_tso4=off,host_tso6=off,guest_tso4=off," \
               "guest_tso6=off,host_ufo=off,guest_ufo=off,mrg_rxbuf=off"
    if kind == "vhost-user":
        if accel == "tcg":
            # QEMU 7.2 under TCG crashes when the driver of a vhost-user NIC enables MSI-X:
            # SIGSEGV under vhost_net_start -> msix_set_vector_notifiers, in a KVM irqfd helper
            # reading address 0x18 (gdb on Debian's 7.2+dfsg-7 binary; by its disassembly the
            # per-vector irqfd array, NULL without KVM). INTx has no vector notifiers: the
            # driver runs with one legacy interrupt.
            dev += ",vectors=0"
        # reconnect=1: should slipwayd restart, QEMU connects again within a second and the
        # guest carries on (vhost-user ring state comes back from the used rings).
        return ["-chardev", f"socket,id=vu0,path={rest},reconnect=1",
                "-netdev", "vhost-user,id=n0,chardev=vu0", "-device", dev], True
    if kind == "stream":
        return ["-netdev", f"stream,id=n0,server=off,addr.type=unix,addr.path={rest}",
                "-device", dev], False
    if kind == "user":
        opts = f",{rest}" if rest else ""
        return ["-netdev", f"user,id=n0{opts}", "-device", dev], False
    die(f"unknown back end '{spec}' (vhost-user:PATH, stream:PATH or user[:OPTIONS])")


def qemu_pid(rundir):
    try:
        with open(os.path.join(rundir, "qemu.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def console_tail(rundir, n=40):
    try:
        with open(os.path.join(rundir, "console.log"), "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no console log)"
    return "\n".join("    " + line for line in lines[-n:])


def boot_once(args, accel):
    rundir = os.path.abspath(args.dir)
    os.makedirs(rundir, exist_ok=True)
    for f in ["console.log", "console.sock", "qemu.pid"]:
        try:
            os.unlink(os.path.join(rundir, f))
        except FileNotFoundError:
            pass
    image = os.path.abspath(args.image)
    net, shared_mem = netdev_args(args.net, args.mac, not args.no_offloads, accel)
    cmd = [args.qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
           "-smp", str(args.cpus), "-m", f"{args.mem}M",
           "-kernel", os.path.join(image, "vmlinuz"), "-initrd", os.path.join(image, "initramfs.gz"),
           "-append", "console=ttyS0 panic=-1 quiet " + args.append,
           "-chardev", f"socket,id=con,path={rundir}/console.sock,server=on,wait=off,"
                       f"logfile={rundir}/console.log",
           "-serial", "chardev:con",
           "-daemonize", "-pidfile", f"{rundir}/qemu.pid", "-name", args.name]
    if shared_mem:
        # vhost-user: slipwayd maps the guest's RAM, so it must be a shareable memfd.
        cmd += ["-object", f"memory-backend-memfd,id=mem0,size={args.mem}M,share=on",
                "-machine", "memory-backend=mem0"]
    cmd += net
    with open(os.path.join(rundir, "qemu.cmd"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None, f"QEMU did not start (exit {r.returncode}): {r.stderr.strip()}"
    pid = qemu_pid(rundir)
    if pid is None:
        return None, "QEMU started but wrote no pid file"
    log = os.path.join(rundir, "console.log")
    while time.monotonic() - t0 < args.timeout:
        try:
            with open(log, "rb") as f:
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            text = ""
        m = re.search(r"SLW-READY.*", text)
        if m:
            errors = re.findall(r"SLW-ERROR.*", text)
            if errors:
                kill(pid)
                return None, "the guest booted with errors: " + "; ".join(errors)
            return pid, f"{m.group(0).strip()} host={time.monotonic() - t0:.1f}s accel={accel}"
        if not alive(pid):
            return None, "QEMU exited during boot"
        time.sleep(0.1)
    kill(pid)
    return None, f"no SLW-READY within {args.timeout} s"


def pick_accel(args):
    if args.accel != "auto":
        return args.accel
    cache = os.path.join(args.image, "accel")
    if os.path.exists(cache):
        return open(cache).read().strip()
    verdict = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        probe = argparse.Namespace(**vars(args))
        probe.dir = os.path.join(args.image, "probe")
        probe.net, probe.timeout = "user", min(args.timeout, 30)
        pid, msg = boot_once(probe, "kvm")
        if pid is not None:
            kill(pid)
            verdict = "kvm"
        print(f"vm.py: KVM probe boot: {msg if pid is None else 'booted'}; using {verdict}",
              file=sys.stderr)
    with open(cache, "w") as f:
        f.write(verdict + "\n")
    return verdict


def cmd_boot(args):
    if not os.path.exists(os.path.join(args.image, "stamp")):
        die(f"no guest image in {args.image} (vm.py image {args.image})")
    pid, msg = boot_once(args, pick_accel(args))
    if pid is None:
        print(console_tail(args.dir), file=sys.stderr)
        die(f"{args.name}: {msg}")
    print(f"vm.py: {args.name} up, qemu pid {pid}: {msg}", file=sys.stderr)
    print(pid)


def kill(pid, sig=signal.SIGKILL, wait=10.0):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if not alive(pid):
            return True
        # Our own child (a failed daemonize) must be reaped to disappear.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def cmd_kill(args):
    pid = qemu_pid(args.dir)
    if pid is None:
        return
    if not kill(pid, signal.SIGTERM if args.term else signal.SIGKILL):
        die(f"qemu {pid} still runs 10 s after the signal")


def cmd_run(args):
    script = sys.stdin.read() if args.script == "-" else args.script
    ident = f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
    payload = base64.b64encode(script.encode()).decode()
    lines = [f"SLWPART {ident} {payload[i:i + CHUNK]}\n" for i in range(0, len(payload), CHUNK)]
    lines.append(f"SLWRUN {ident}\n")
    end = time.monotonic() + args.timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(os.path.join(args.dir, "console.sock"))
    except OSError as e:
        die(f"cannot reach the guest console: {e}")
    for line in lines:
        sock.sendall(line.encode())
    marker = re.compile(r"@@SLW-END (\S+) (\d+)@@")
    buf = b""
    out = sys.stdout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            print(f"vm.py: the guest did not finish the command within {args.timeout} s",
                  file=sys.stderr)
            sys.exit(124)
        sock.settimeout(min(left, 1.0))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            die("the guest console closed (QEMU exited?)")
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace").rstrip("\r")
            m = marker.search(line)
            if m and m.group(1) == ident:
                out.flush()
                sys.exit(int(m.group(2)))
            if m or line.startswith(("SLWPART ", "SLWRUN ")):
                continue  # an older command's end, or our own input echoed before stty -echo
            out.write(line + "\n")
            out.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("image", help="build the guest image into DIR (once per set of inputs)")
    s.add_argument("dir")
    s.add_argument("--force", action="store_true")
    s = sub.add_parser("boot", help="boot a guest; prints QEMU's pid once the guest is ready")
    s.add_argument("--image", required=True)
    s.add_argument("--dir", required=True, help="run directory: console socket and log, pid file")
    s.add_argument("--net", required=True, help="vhost-user:PATH | stream:PATH | user[:OPTIONS]")
    s.add_argument("--mac", default="52:54:00:12:34:56")
    s.add_argument("--name", default="slw-guest")
    s.add_argument("--no-offloads", action="store_true", help="no checksum/TSO offloads, no MRG_RXBUF")
    s.add_argument("--mem", type=int, default=512, help="guest RAM in MiB")
    s.add_argument("--cpus", type=int, default=1)
    s.add_argument("--accel", choices=["auto", "tcg", "kvm"], default="auto")
    s.add_argument("--append", default="", help="more kernel command line")
    s.add_argument("--timeout", type=float, default=90, help="seconds the boot may take")
    s.add_argument("--qemu", default="qemu-system-x86_64")
    s = sub.add_parser("run", help="run a shell script in the guest; exits with its status")
    s.add_argument("--dir", required=True)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("script", help="the script, or - for stdin")
    s = sub.add_parser("kill", help="stop the guest's QEMU (SIGKILL, or SIGTERM with --term)")
    s.add_argument("--dir", required=True)
    s.add_argument("--term", action="store_true")
    args = p.parse_args()
    {"image": cmd_image, "boot": cmd_boot, "run": cmd_run, "kill": cmd_kill}[args.cmd](args)


if __name__ == "__main__":
    main()
