// SpscRing throughput between two pinned threads, beside boost::lockfree::spsc_queue and
// tbb::concurrent_bounded_queue measured in the same run.
#include <benchmark/benchmark.h>
#include <oneapi/tbb/concurrent_queue.h>
#include <pthread.h>
#include <sched.h>

#include <array>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <thread>

#include "slipway/core/spsc_ring.hpp"

namespace {

// The size of a PacketRef: what the data path actually moves through rings.
struct Item {
    std::uint64_t a;
    std::uint64_t b;
};
static_assert(sizeof(Item) == 16);

constexpr std::size_t kRingSize = 1024;
constexpr std::uint64_t kItemsPerIteration = 1 << 20;
constexpr std::size_t kBurst = 32;

void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cpu) % std::thread::hardware_concurrency(), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Runs `produce(n)` on a second pinned thread while `consume(n)` runs here (pinned to the other
// core); each moves kItemsPerIteration items per benchmark iteration. `sink` keeps the consumer's
// reads observable.
template <class Produce, class Consume>
void run_pair(benchmark::State& state, Produce produce, Consume consume) {
    pin(0);
    std::uint64_t sink = 0;
    for (auto _ : state) {
        std::thread producer([&] {
            pin(1);
            produce(kItemsPerIteration);
        });
        sink += consume(kItemsPerIteration);
        producer.join();
    }
    benchmark::DoNotOptimize(sink);
    const auto items =
        static_cast<double>(static_cast<std::uint64_t>(state.iterations()) * kItemsPerIteration);
    state.SetItemsProcessed(static_cast<std::int64_t>(items));
    state.counters["ns_per_item"] =
        benchmark::Counter(items, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_SlipwayRing_Single(benchmark::State& state) {
    slipway::SpscRing<Item> ring(kRingSize);
    run_pair(
        state,
        [&](std::uint64_t n) {
            for (std::uint64_t i = 0; i < n;)
                if (ring.try_push(Item{i, i})) ++i;
        },
        [&](std::uint64_t n) {
            std::uint64_t sum = 0;
            Item it{};
            for (std::uint64_t i = 0; i < n;)
                if (ring.try_pop(it)) {
                    sum += it.a;
                    ++i;
                }
            return sum;
        });
}

void BM_SlipwayRing_Burst32(benchmark::State& state) {
    slipway::SpscRing<Item> ring(kRingSize);
    run_pair(
        state,
        [&](std::uint64_t n) {
            std::array<Item, kBurst> batch{};
            for (std::uint64_t i = 0; i < n;) {
                const std::size_t want = n - i < kBurst ? static_cast<std::size_t>(n - i) : kBurst;
                for (std::size_t k = 0; k < want; ++k)
                    batch[k] = Item{i + k, i + k};
                i += ring.push_burst(std::span<Item>(batch.data(), want));
            }
        },
        [&](std::uint64_t n) {
            std::uint64_t sum = 0;
            std::array<Item, kBurst> out{};
            for (std::uint64_t i = 0; i < n;) {
                const std::size_t got = ring.pop_burst(out);
                for (std::size_t k = 0; k < got; ++k)
                    sum += out[k].a;
                i += got;
            }
            return sum;
        });
}

void BM_BoostSpsc_Single(benchmark::State& state) {
    boost::lockfree::spsc_queue<Item> q(kRingSize);
    run_pair(
        state,
        [&](std::uint64_t n) {
            for (std::uint64_t i = 0; i < n;)
                if (q.push(Item{i, i})) ++i;
        },
        [&](std::uint64_t n) {
            std::uint64_t sum = 0;
            Item it{};
            for (std::uint64_t i = 0; i < n;)
                if (q.pop(it)) {
                    sum += it.a;
                    ++i;
                }
            return sum;
        });
}

void BM_BoostSpsc_Burst32(benchmark::State& state) {
    boost::lockfree::spsc_queue<Item> q(kRingSize);
    run_pair(
        state,
        [&](std::uint64_t n) {
            std::array<Item, kBurst> batch{};
            for (std::uint64_t i = 0; i < n;) {
                const std::size_t want = n - i < kBurst ? static_cast<std::size_t>(n - i) : kBurst;
                for (std::size_t k = 0; k < want; ++k)
                    batch[k] = Item{i + k, i + k};
                i += q.push(batch.data(), want);
            }
        },
        [&](std::uint64_t n) {
            std::uint64_t sum = 0;
            std::array<Item, kBurst> out{};
            for (std::uint64_t i = 0; i < n;) {
                const std::size_t got = q.pop(out.data(), kBurst);
                for (std::size_t k = 0; k < got; ++k)
                    sum += out[k].a;
                i += got;
            }
            return sum;
        });
}

void BM_TbbBoundedQueue_Single(benchmark::State& state) {
    tbb::concurrent_bounded_queue<Item> q;
    q.set_capacity(kRingSize);
    run_pair(
        state,
        [&](std::uint64_t n) {
            for (std::uint64_t i = 0; i < n;)
                if (q.try_push(Item{i, i})) ++i;
        },
        [&](std::uint64_t n) {
            std::uint64_t sum = 0;
            Item it{};
            for (std::uint64_t i = 0; i < n;)
                if (q.try_pop(it)) {
                    sum += it.a;
                    ++i;
                }
            return sum;
        });
}

}  // namespace

BENCHMARK(BM_SlipwayRing_Single)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SlipwayRing_Burst32)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BoostSpsc_Single)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BoostSpsc_Burst32)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TbbBoundedQueue_Single)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
