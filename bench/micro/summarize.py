#!/usr/bin/env python3
"""Summarises Google Benchmark JSON files (medians of repetitions) into README's table.

Usage: summarize.py OUT_DIR  (reads OUT_DIR/*.json written by scripts/bench-micro)
Prints a Markdown table: each of our figures beside the baseline measured in the same run, the
ratio, and the target from the foundation issue where there is one.
"""
import glob
import json
import os
import re
import sys

# A benchmark's MinTime() shows in its name; rows are matched without it.
MIN_TIME = re.compile(r"/min_time:[0-9.]+s?")


def load(out_dir):
    med = {}
    context = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        context = data.get("context", context)
        for b in data["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            med[MIN_TIME.sub("", b["run_name"])] = b
    return med, context


def items_per_s(b):
    return b.get("items_per_second")


def ns_per_iter(b):
    t = b["real_time"]
    unit = b.get("time_unit", "ns")
    return t * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


def fmt_rate(v):
    if v is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.1f} {suffix}/s"
    return f"{v:.0f} /s"


def main():
    out_dir = sys.argv[1]
    med, ctx = load(out_dir)
    rows = []

    def row(what, ours, base_name, base, ratio, target=""):
        rows.append((what, ours, base_name, base, ratio, target))

    def rate_row(what, ours_key, base_key, base_label, target=""):
        o, b = med.get(ours_key), med.get(base_key)
        if not o or not b:
            return
        ro, rb = items_per_s(o), items_per_s(b)
        row(what, fmt_rate(ro), base_label, fmt_rate(rb), f"{ro / rb:.2f}x", target)

    # Ring: items/s between two pinned threads.
    rate_row("ring burst 32", "BM_SlipwayRing_Burst32/real_time",
             "BM_BoostSpsc_Single/real_time", "boost spsc_queue single", ">= 2x")
    rate_row("ring single item", "BM_SlipwayRing_Single/real_time",
             "BM_BoostSpsc_Single/real_time", "boost spsc_queue single")
    rate_row("ring burst 32", "BM_SlipwayRing_Burst32/real_time",
             "BM_BoostSpsc_Burst32/real_time", "boost spsc_queue bulk 32")
    rate_row("ring single item", "BM_SlipwayRing_Single/real_time",
             "BM_TbbBoundedQueue_Single/real_time", "tbb concurrent_bounded_queue")

    # Pool: alloc+free pairs per second.
    for size, label in (("2048", "2 KiB"), ("69632", "68 KiB")):
        for kind in ("Single", "Burst32"):
            k = "single" if kind == "Single" else "burst 32"
            rate_row(f"pool alloc+free {label} {k}", f"BM_Pool_{kind}/{size}",
                     f"BM_Malloc_{kind}/{size}", "malloc/free", ">= 3x")
            rate_row(f"pool alloc+free {label} {k}", f"BM_Pool_{kind}/{size}",
                     f"BM_TbbScalable_{kind}/{size}", "tbb scalable_malloc")

    # Flow table: lookups (a burst is one find_burst() for us, 32 find() calls for the baselines)
    # and inserts into an empty table with room for all, per second.
    for n, label in (("65536", "64 Ki"), ("1048576", "1 Mi")):
        for op, what in (("FindHit_Burst32", "hit burst 32"), ("FindMiss_Burst32", "miss burst 32"),
                         ("FindHit_Single", "hit single"), ("FindMiss_Single", "miss single"),
                         ("Insert", "insert")):
            burst = op.endswith("Burst32")
            finds = " (32 finds)" if burst else ""
            rate_row(f"flow table {what}, {label} flows", f"BM_FlowTable_{op}/{n}",
                     f"BM_FlatMap_{op}/{n}", f"boost unordered_flat_map{finds}",
                     ">= 1.5x" if burst else "")
            rate_row(f"flow table {what}, {label} flows", f"BM_FlowTable_{op}/{n}",
                     f"BM_TbbHashMap_{op}/{n}", f"tbb concurrent_hash_map{finds}")

    # Checksum: bytes per TSC tick.
    for size in ("40", "64", "1500", "9000", "65535"):
        a, s, n = (med.get(f"BM_csum_{v}/{size}") for v in ("avx2", "scalar", "naive"))
        if not (a and s and n):
            continue
        ba, bs, bn = (x["bytes_per_tsc"] for x in (a, s, n))
        gbs = a["bytes_per_second"] / 1e9
        target = ">= 20 B/tick" if size == "1500" else ""
        row(f"checksum {size} B (avx2)", f"{ba:.1f} B/tick ({gbs:.1f} GB/s)", "scalar",
            f"{bs:.1f} B/tick", f"{ba / bs:.2f}x", target)
        row(f"checksum {size} B (avx2)", f"{ba:.1f} B/tick", "naive", f"{bn:.2f} B/tick",
            f"{ba / bn:.1f}x")

    inc, full = med.get("BM_nat_rewrite_incremental"), med.get("BM_nat_rewrite_full")
    if inc and full:
        ni, nf = ns_per_iter(inc), ns_per_iter(full)
        row("RFC 1624 update addr+port", f"{ni:.1f} ns/pkt", "full recompute (1500 B)",
            f"{nf:.1f} ns/pkt", f"{nf / ni:.1f}x")

    # Virtqueue path (issue 8): guest A's TX queue -> switch -> guest B's RX queue, in-process,
    # beside the same frames over two QEMU-stream unix sockets. Copies per frame on slipway's
    # thread: 2 (virtio) against 4 (stream, counting the kernel's socket copies).
    vq64, st64 = med.get("BM_Virtqueue/gso:0/real_time"), med.get("BM_QemuStream/frame:64/real_time")
    if vq64 and st64:
        ro, rb = items_per_s(vq64), items_per_s(st64)
        row("virtqueue 64 B frames (2 copies)", fmt_rate(ro), "QEMU stream socket (4 copies)",
            fmt_rate(rb), f"{ro / rb:.2f}x")
    vqg, st1514 = med.get("BM_Virtqueue/gso:1/real_time"), med.get(
        "BM_QemuStream/frame:1514/real_time")
    if vqg and st1514:
        bo, bb = vqg["bytes_per_second"], st1514["bytes_per_second"]
        row("virtqueue 64 KiB TCP GSO frames", f"{bo / 1e9:.2f} GB/s ({fmt_rate(items_per_s(vqg))})",
            "QEMU stream, 1514 B frames", f"{bb / 1e9:.3f} GB/s", f"{bo / bb:.1f}x")

    host = ctx.get("host_name", "?")
    cpus = ctx.get("num_cpus", "?")
    mhz = ctx.get("mhz_per_cpu", "?")
    print(f"Medians of {ctx.get('repetitions', 5) or 5} repetitions; {cpus} CPUs at {mhz} MHz "
          f"({ctx.get('date', '')}).")
    print()
    print("| benchmark | slipway | baseline | baseline figure | ratio | target |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    missing = [r for r in rows if r[4] == "n/a"]
    return 1 if not rows or missing else 0


if __name__ == "__main__":
    sys.exit(main())
