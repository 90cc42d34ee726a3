// PacketPool alloc+free, single and burst of 32, beside malloc/free and tbb::scalable_malloc
// measured in the same run, for the 2 KiB and 68 KiB classes.
#include <benchmark/benchmark.h>
#include <oneapi/tbb/scalable_allocator.h>

#include <array>
#include <cstdlib>

#include "slipway/core/packet_pool.hpp"

namespace {

constexpr std::size_t kBurst = 32;

std::size_t size_of(const benchmark::State& state) {
    return static_cast<std::size_t>(state.range(0));
}
slipway::SizeClass class_of(std::size_t size) {
    return size <= slipway::kSmallBufferSize ? slipway::SizeClass::small
                                             : slipway::SizeClass::large;
}

// Each variant touches the first byte of every buffer it gets, as a real user would; otherwise a
// malloc of fresh memory and a pool handing out a cold buffer are not comparable.
void BM_Pool_Single(benchmark::State& state) {
    slipway::PacketPool pool(slipway::PoolConfig{.small_buffers = 4096, .large_buffers = 256});
    const auto c = class_of(size_of(state));
    for (auto _ : state) {
        auto r = pool.try_alloc(c);
        r->data().data()[0] = std::byte{1};
        benchmark::DoNotOptimize(r->id());
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_Malloc_Single(benchmark::State& state) {
    const std::size_t n = size_of(state);
    for (auto _ : state) {
        auto* p = static_cast<char*>(std::malloc(n));
        p[0] = 1;
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_TbbScalable_Single(benchmark::State& state) {
    const std::size_t n = size_of(state);
    for (auto _ : state) {
        auto* p = static_cast<char*>(scalable_malloc(n));
        p[0] = 1;
        benchmark::DoNotOptimize(p);
        scalable_free(p);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_Pool_Burst32(benchmark::State& state) {
    slipway::PacketPool pool(slipway::PoolConfig{.small_buffers = 4096, .large_buffers = 256});
    const auto c = class_of(size_of(state));
    std::array<slipway::PacketRef, kBurst> refs;
    for (auto _ : state) {
        const std::size_t n = pool.try_alloc_burst(c, refs);
        for (std::size_t i = 0; i < n; ++i)
            refs[i].room().data()[0] = std::byte{1};
        for (auto& r : refs)
            r.reset();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBurst));
}

void BM_Malloc_Burst32(benchmark::State& state) {
    const std::size_t n = size_of(state);
    std::array<char*, kBurst> ps{};
    for (auto _ : state) {
        for (auto& p : ps) {
            p = static_cast<char*>(std::malloc(n));
            p[0] = 1;
        }
        benchmark::DoNotOptimize(ps.data());
        for (auto* p : ps)
            std::free(p);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBurst));
}

void BM_TbbScalable_Burst32(benchmark::State& state) {
    const std::size_t n = size_of(state);
    std::array<char*, kBurst> ps{};
    for (auto _ : state) {
        for (auto& p : ps) {
            p = static_cast<char*>(scalable_malloc(n));
            p[0] = 1;
        }
        benchmark::DoNotOptimize(ps.data());
        for (auto* p : ps)
            scalable_free(p);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBurst));
}

}  // namespace

// Sizes: a 2 KiB-class frame and a 68 KiB-class (largest) frame.
#define SLW_POOL_SIZES ->Arg(2048)->Arg(68 * 1024)
BENCHMARK(BM_Pool_Single) SLW_POOL_SIZES;
BENCHMARK(BM_Malloc_Single) SLW_POOL_SIZES;
BENCHMARK(BM_TbbScalable_Single) SLW_POOL_SIZES;
BENCHMARK(BM_Pool_Burst32) SLW_POOL_SIZES;
BENCHMARK(BM_Malloc_Burst32) SLW_POOL_SIZES;
BENCHMARK(BM_TbbScalable_Burst32) SLW_POOL_SIZES;
BENCHMARK_MAIN();
