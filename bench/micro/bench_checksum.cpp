// Checksum micro-benchmarks: avx2 vs scalar vs naive, and RFC 1624 update vs recomputation.
#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "slipway/core/checksum.hpp"

namespace {

using namespace slipway;

using Impl = std::uint32_t (*)(ByteView, std::uint32_t) noexcept;

// A 64-byte-aligned buffer of pseudo-random bytes, plus `offset` so unaligned starts can be
// measured too (a frame's L4 payload sits at 14 + 20 + 20 bytes into a pool buffer).
struct Buffer {
    std::vector<std::byte> storage;
    std::byte* data;
    Buffer(std::size_t n, std::size_t offset) : storage(n + 64 + offset) {
        std::uint32_t x = 0x9e3779b9u;
        for (auto& b : storage) {
            x = x * 1664525u + 1013904223u;
            b = static_cast<std::byte>(x >> 24);
        }
        const auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
        data = storage.data() + (64 - addr % 64) % 64 + offset;
    }
};

// Publishes bytes per TSC tick: the VMs expose no cycle counter, and the TSC runs at a fixed
// rate, so this is comparable across runs on the same machine.
void run_csum(benchmark::State& state, Impl impl, std::size_t offset) {
    if (impl == &csum_avx2 && !csum_avx2_supported()) {
        state.SkipWithError("CPU lacks AVX2");
        return;
    }
    const auto n = static_cast<std::size_t>(state.range(0));
    const Buffer buf(n, offset);
    const ByteView view(buf.data, n);
    const std::uint64_t t0 = __rdtsc();
    for (auto _ : state) {
        std::uint32_t s = impl(view, 0);
        benchmark::DoNotOptimize(s);
        benchmark::ClobberMemory();
    }
    const std::uint64_t ticks = __rdtsc() - t0;
    const auto bytes = static_cast<std::int64_t>(state.iterations()) * state.range(0);
    state.SetBytesProcessed(bytes);
    state.counters["bytes_per_tsc"] =
        static_cast<double>(bytes) / static_cast<double>(ticks == 0 ? 1 : ticks);
}

void BM_csum_avx2(benchmark::State& s) {
    run_csum(s, &csum_avx2, 0);
}
void BM_csum_scalar(benchmark::State& s) {
    run_csum(s, &csum_scalar, 0);
}
void BM_csum_naive(benchmark::State& s) {
    run_csum(s, &csum_naive, 0);
}
void BM_csum_dispatched(benchmark::State& s) {
    run_csum(s, &csum_partial, 0);  // the indirect call every caller pays
}
void BM_csum_avx2_off54(benchmark::State& s) {
    run_csum(s, &csum_avx2, 54);
}
void BM_csum_scalar_off54(benchmark::State& s) {
    run_csum(s, &csum_scalar, 54);
}

#define SLIPWAY_CSUM_SIZES Arg(40)->Arg(64)->Arg(1500)->Arg(9000)->Arg(65535)
BENCHMARK(BM_csum_avx2)->SLIPWAY_CSUM_SIZES;
BENCHMARK(BM_csum_scalar)->SLIPWAY_CSUM_SIZES;
BENCHMARK(BM_csum_naive)->SLIPWAY_CSUM_SIZES;
BENCHMARK(BM_csum_dispatched)->Arg(40)->Arg(1500);
BENCHMARK(BM_csum_avx2_off54)->Arg(1500);
BENCHMARK(BM_csum_scalar_off54)->Arg(1500);

// ---- NAT rewrite of destination address + port on a 1500-byte IPv4/TCP packet ----------------

constexpr std::size_t kIpLen = 1500;
constexpr std::size_t kIpHdr = 20;

struct TcpPacket {
    Buffer buf{kIpLen, 0};
    std::byte* ip = buf.data;
    std::byte* tcp = buf.data + kIpHdr;

    TcpPacket() {
        store_be16(ip, 0x4500);
        store_be16(ip + 2, static_cast<std::uint16_t>(kIpLen));
        store_be16(ip + 6, 0x4000);
        store_be16(ip + 8, 0x4006);  // TTL 64, protocol TCP
        Ipv4Addr::from_octets(192, 168, 127, 2).store(ip + 12);
        Ipv4Addr::from_octets(93, 184, 216, 34).store(ip + 16);
        store_be16(tcp, 40000);
        store_be16(tcp + 2, 443);
        store_be16(tcp + 12, 0x5010);  // data offset 5, ACK
        recompute();
    }
    void recompute() noexcept {
        store_be16(ip + 10, 0);
        store_be16(ip + 10, csum_finish(csum_partial({ip, kIpHdr})));
        const auto l4_len = static_cast<std::uint16_t>(kIpLen - kIpHdr);
        const std::uint32_t ph = pseudo_header_sum_v4(
            Ipv4Addr::load(ip + 12), Ipv4Addr::load(ip + 16), IpProto::tcp, l4_len);
        store_be16(tcp + 16, 0);
        store_be16(tcp + 16, csum_finish(csum_partial({tcp, l4_len}, ph)));
    }
};

// Alternating between two destinations each packet keeps the rewrite real (values change).
constexpr std::uint32_t kDst[2] = {0x5db8d822u, 0x0a00020fu};
constexpr std::uint16_t kPort[2] = {443, 8443};

void BM_nat_rewrite_incremental(benchmark::State& state) {
    TcpPacket pkt;
    unsigned i = 0;
    for (auto _ : state) {
        i ^= 1u;
        const std::uint32_t old_dst = load_be32(pkt.ip + 16);
        const std::uint16_t old_port = load_be16(pkt.tcp + 2);
        store_be32(pkt.ip + 16, kDst[i]);
        store_be16(pkt.tcp + 2, kPort[i]);
        // The address is in the IP header and in the TCP pseudo-header; the port only in TCP.
        store_be16(pkt.ip + 10, csum_update32(load_be16(pkt.ip + 10), old_dst, kDst[i]));
        const std::uint16_t t = csum_update32(load_be16(pkt.tcp + 16), old_dst, kDst[i]);
        store_be16(pkt.tcp + 16, csum_update16(t, old_port, kPort[i]));
        benchmark::ClobberMemory();
    }
    // Proof the fast path kept the packet valid: both checksums verify.
    if (csum_fold(csum_partial({pkt.ip, kIpHdr})) != 0xffff) state.SkipWithError("bad IP csum");
}

void BM_nat_rewrite_full(benchmark::State& state) {
    TcpPacket pkt;
    unsigned i = 0;
    for (auto _ : state) {
        i ^= 1u;
        store_be32(pkt.ip + 16, kDst[i]);
        store_be16(pkt.tcp + 2, kPort[i]);
        pkt.recompute();
        benchmark::ClobberMemory();
    }
}

BENCHMARK(BM_nat_rewrite_incremental);
BENCHMARK(BM_nat_rewrite_full);

}  // namespace

BENCHMARK_MAIN();
