// SpscRing: ordering, fullness, bursts, and element lifetimes (single-threaded behaviour).
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <vector>

#include "slipway/core/spsc_ring.hpp"

namespace slipway {
namespace {

TEST(SpscRing, CapacityRoundsUpToPowerOfTwo) {
    EXPECT_EQ(SpscRing<int>(0).capacity(), 2u);
    EXPECT_EQ(SpscRing<int>(3).capacity(), 4u);
    EXPECT_EQ(SpscRing<int>(1024).capacity(), 1024u);
    EXPECT_EQ(SpscRing<int>(1025).capacity(), 2048u);
}

TEST(SpscRing, FifoUntilFullThenRefuses) {
    SpscRing<int> r(8);
    for (int i = 0; i < 8; ++i)
        ASSERT_TRUE(r.try_push(int{i}));
    int extra = 99;
    EXPECT_FALSE(r.try_push(std::move(extra)));
    EXPECT_EQ(extra, 99);  // untouched on failure
    EXPECT_EQ(r.size_approx(), 8u);
    for (int i = 0; i < 8; ++i) {
        auto v = r.try_pop();
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(*v, i);
    }
    EXPECT_FALSE(r.try_pop().has_value());
    EXPECT_TRUE(r.empty_approx());
}

TEST(SpscRing, BurstsArePartialWhenRoomIsShort) {
    SpscRing<int> r(8);
    std::vector<int> in(12);
    for (int i = 0; i < 12; ++i)
        in[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(r.push_burst(in), 8u);
    std::vector<int> out(5);
    EXPECT_EQ(r.pop_burst(out), 5u);
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(out[static_cast<std::size_t>(i)], i);
    // Indices wrap around the slot array.
    EXPECT_EQ(r.push_burst(std::span<int>(in).subspan(8)), 4u);
    std::vector<int> rest(16);
    EXPECT_EQ(r.pop_burst(rest), 7u);
    for (int i = 0; i < 7; ++i)
        EXPECT_EQ(rest[static_cast<std::size_t>(i)], i + 5);
    EXPECT_EQ(r.pop_burst(rest), 0u);
}

TEST(SpscRing, MoveOnlyElements) {
    SpscRing<std::unique_ptr<int>> r(4);
    ASSERT_TRUE(r.try_push(std::make_unique<int>(7)));
    std::unique_ptr<int> out;
    ASSERT_TRUE(r.try_pop(out));
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(*out, 7);
}

// Element that tracks its own lifetime: counts live objects and detects double destruction or
// use of a destroyed object through a magic field.
struct Tracked {
    static inline int live = 0;
    static inline int errors = 0;
    static constexpr std::uint32_t kAlive = 0xa11fe, kDead = 0xdead;
    std::uint32_t magic = kAlive;
    int value = 0;

    Tracked() noexcept { ++live; }
    explicit Tracked(int v) noexcept : value(v) { ++live; }
    Tracked(Tracked&& o) noexcept : value(o.value) {
        if (o.magic != kAlive) ++errors;
        ++live;
    }
    Tracked& operator=(Tracked&& o) noexcept {
        if (o.magic != kAlive || magic != kAlive) ++errors;
        value = o.value;
        return *this;
    }
    ~Tracked() {
        if (magic != kAlive) ++errors;
        magic = kDead;
        --live;
    }
};

TEST(SpscRing, ElementLifetimesBalance) {
    Tracked::live = 0;
    Tracked::errors = 0;
    {
        SpscRing<Tracked> r(16);
        std::mt19937 rng(42);
        std::deque<int> model;
        int next = 0;
        for (int step = 0; step < 20000; ++step) {
            switch (rng() % 4) {
                case 0:
                    if (r.try_push(Tracked(next))) model.push_back(next++);
                    break;
                case 1: {
                    std::vector<Tracked> batch(rng() % 9);
                    for (auto& t : batch)
                        t.value = next++;
                    const std::size_t n = r.push_burst(batch);
                    for (std::size_t i = 0; i < n; ++i)
                        model.push_back(batch[i].value);
                    next -= static_cast<int>(batch.size() - n);  // unpushed values are reused
                    break;
                }
                case 2: {
                    Tracked t;
                    if (r.try_pop(t)) {
                        ASSERT_FALSE(model.empty());
                        EXPECT_EQ(t.value, model.front());
                        model.pop_front();
                    }
                    break;
                }
                default: {
                    std::vector<Tracked> out(rng() % 9);
                    const std::size_t n = r.pop_burst(out);
                    for (std::size_t i = 0; i < n; ++i) {
                        ASSERT_FALSE(model.empty());
                        EXPECT_EQ(out[i].value, model.front());
                        model.pop_front();
                    }
                }
            }
            ASSERT_EQ(r.size_approx(), model.size());
        }
        // The ring is destroyed with elements inside: they must be destroyed exactly once.
        EXPECT_GT(Tracked::live, 0);
    }
    EXPECT_EQ(Tracked::live, 0);
    EXPECT_EQ(Tracked::errors, 0);
}

}  // namespace
}  // namespace slipway
