// Two-thread stress tests of SpscRing and PacketPool; also run under ThreadSanitizer (tsan preset).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/spsc_ring.hpp"

namespace slipway {
namespace {

// Sanitizers slow every access by 5-20x; keep the run bounded there.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kItems = 400'000;
#else
constexpr std::uint64_t kItems = 4'000'000;
#endif

// Every element carries a sequence number; the consumer fails on any loss, duplicate or reorder.
TEST(RingStress, TwoThreadsNoLossDuplicateOrReorder) {
    struct Item {
        std::uint64_t seq;
        std::uint64_t check;  // seq * constant: a torn or stale element shows up as a mismatch
    };
    constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15ull;
    SpscRing<Item> ring(256);
    std::atomic<bool> producer_done{false};

    std::thread producer([&] {
        std::mt19937 rng(1);
        std::uint64_t seq = 0;
        std::vector<Item> batch(32);
        const auto stop = std::chrono::steady_clock::now() + std::chrono::seconds(100);
        while (seq < kItems && std::chrono::steady_clock::now() < stop) {
            if (rng() % 2 == 0) {
                if (ring.try_push(Item{seq, seq * kMul})) ++seq;
            } else {
                const std::size_t want = 1 + rng() % 32;
                std::size_t k = 0;
                for (; k < want && seq + k < kItems; ++k)
                    batch[k] = Item{seq + k, (seq + k) * kMul};
                seq += ring.push_burst(std::span<Item>(batch.data(), k));
            }
        }
        producer_done.store(true);
    });

    std::mt19937 rng(2);
    std::uint64_t expect = 0;
    std::uint64_t errors = 0;
    std::vector<Item> out(32);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(100);
    while (expect < kItems && std::chrono::steady_clock::now() < deadline) {
        std::size_t n;
        if (rng() % 2 == 0) {
            Item it{};
            n = ring.try_pop(it) ? 1 : 0;
            out[0] = it;
        } else {
            n = ring.pop_burst(std::span<Item>(out.data(), 1 + rng() % 32));
        }
        for (std::size_t i = 0; i < n; ++i) {
            if (out[i].seq != expect || out[i].check != expect * kMul) ++errors;
            expect = out[i].seq + 1;
        }
    }
    producer.join();
    EXPECT_EQ(errors, 0u);
    EXPECT_EQ(expect, kItems);
    EXPECT_TRUE(ring.empty_approx());
}

// Buffers cycle between two threads: A allocates, stamps and sends; B verifies and frees (so the
// buffers go home through B's cache and the global stack). The pool is small so every buffer is
// reused many times; a buffer handed out twice or returned wrongly shows up as a bad stamp or as
// exhaustion that never clears.
TEST(PoolStress, CrossThreadAllocAndReturn) {
    PacketPool pool(PoolConfig{.small_buffers = 512, .large_buffers = 16});
    SpscRing<PacketRef> ring(128);
    const std::uint64_t n_items = kItems / 4;
    std::atomic<std::uint64_t> bad{0};

    std::thread consumer([&] {
        std::uint64_t expect = 0;
        std::vector<PacketRef> out(32);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(100);
        while (expect < n_items && std::chrono::steady_clock::now() < deadline) {
            const std::size_t n = ring.pop_burst(out);
            for (std::size_t i = 0; i < n; ++i) {
                std::uint64_t stamp;
                std::memcpy(&stamp, out[i].data().data(), sizeof stamp);
                if (stamp != expect || out[i].len() != 64) bad.fetch_add(1);
                ++expect;
                out[i].reset();  // freed on this thread, allocated on the other
            }
        }
    });

    std::uint64_t seq = 0;
    std::uint64_t exhausted_spins = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(100);
    while (seq < n_items && std::chrono::steady_clock::now() < deadline) {
        auto p = pool.try_alloc(std::size_t{64});
        if (!p) {
            ASSERT_EQ(p.error(), Errc::pool_exhausted);
            ++exhausted_spins;
            std::this_thread::yield();
            continue;
        }
        std::memcpy(p->data().data(), &seq, sizeof seq);
        PacketRef r = std::move(*p);
        while (!ring.try_push(std::move(r)) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::yield();
        ++seq;
    }
    consumer.join();
    EXPECT_EQ(seq, n_items);
    EXPECT_EQ(bad.load(), 0u);
    // After both threads are done (the consumer's cache was flushed at its exit), every buffer is
    // allocatable again from this thread.
    std::vector<PacketRef> all(512);
    EXPECT_EQ(pool.try_alloc_burst(SizeClass::small, all), 512u);
}

}  // namespace
}  // namespace slipway
