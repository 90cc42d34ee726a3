// PacketPool / PacketRef: classes, bounds, exhaustion, cross-thread return, debug canaries.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/spsc_ring.hpp"

namespace slipway {
namespace {

TEST(PacketPool, ChoosesClassByFrameLength) {
    PacketPool pool(PoolConfig{.small_buffers = 4, .large_buffers = 2});
    auto a = pool.try_alloc(std::size_t{1514});
    ASSERT_TRUE(a);
    EXPECT_EQ(a->meta().size_class, SizeClass::small);
    EXPECT_EQ(a->len(), 1514u);
    EXPECT_EQ(a->meta().head, kDefaultHeadroom);
    EXPECT_GE(a->room().size(), 1514u);

    auto b = pool.try_alloc(kMaxFrameLen);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->meta().size_class, SizeClass::large);
    EXPECT_EQ(b->len(), kMaxFrameLen);

    auto c = pool.try_alloc(kLargeBufferSize);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), Errc::too_large);
}

TEST(PacketPool, BuffersAreDistinctAndDoNotOverlap) {
    PacketPool pool(PoolConfig{.small_buffers = 64, .large_buffers = 4});
    std::vector<PacketRef> refs;
    for (int i = 0; i < 64; ++i) {
        auto r = pool.try_alloc(SizeClass::small);
        ASSERT_TRUE(r);
        ASSERT_TRUE(r->set_len(r->room().size()));
        std::memset(r->data().data(), i, r->len());
        refs.push_back(std::move(*r));
    }
    std::set<std::uint32_t> ids;
    for (std::size_t i = 0; i < refs.size(); ++i) {
        ids.insert(refs[i].id());
        for (std::byte b : refs[i].data())
            ASSERT_EQ(b, static_cast<std::byte>(i));
    }
    EXPECT_EQ(ids.size(), 64u);
}

TEST(PacketPool, ExhaustionIsAResultNotACrash) {
    PacketPool pool(PoolConfig{.small_buffers = 8, .large_buffers = 1});
    std::vector<PacketRef> held;
    for (int i = 0; i < 8; ++i) {
        auto r = pool.try_alloc(SizeClass::small);
        ASSERT_TRUE(r) << i;
        held.push_back(std::move(*r));
    }
    auto r = pool.try_alloc(SizeClass::small);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Errc::pool_exhausted);
    EXPECT_EQ(pool.exhausted_count(), 1u);
    // The other class is independent.
    EXPECT_TRUE(pool.try_alloc(SizeClass::large));
    held.pop_back();  // returns one buffer
    EXPECT_TRUE(pool.try_alloc(SizeClass::small));
}

TEST(PacketPool, BurstAllocStopsAtCapacity) {
    PacketPool pool(PoolConfig{.small_buffers = 40, .large_buffers = 0});
    std::vector<PacketRef> out(64);
    EXPECT_EQ(pool.try_alloc_burst(SizeClass::small, out), 40u);
    EXPECT_GE(pool.exhausted_count(), 1u);
    out.clear();
    std::vector<PacketRef> again(40);
    EXPECT_EQ(pool.try_alloc_burst(SizeClass::small, again), 40u);
    std::vector<PacketRef> none(1);
    EXPECT_EQ(pool.try_alloc_burst(SizeClass::large, none), 0u);
}

TEST(PacketRef, HeadroomAndLengthBounds) {
    PacketPool pool(PoolConfig{.small_buffers = 2, .large_buffers = 0});
    auto r = pool.try_alloc(std::size_t{100});
    ASSERT_TRUE(r);
    auto hdr = r->push_head(virtio::kNetHdrV1Len);
    ASSERT_TRUE(hdr);
    EXPECT_EQ(hdr->size(), virtio::kNetHdrV1Len);
    EXPECT_EQ(r->len(), 112u);
    EXPECT_EQ(r->meta().head, kDefaultHeadroom - virtio::kNetHdrV1Len);
    EXPECT_TRUE(r->pull_head(12));
    EXPECT_EQ(r->len(), 100u);
    EXPECT_FALSE(r->pull_head(101));
    EXPECT_FALSE(r->push_head(kDefaultHeadroom + 1));
    EXPECT_FALSE(r->set_len(kSmallBufferSize));
    EXPECT_TRUE(r->set_len(kSmallBufferSize - kDefaultHeadroom));
}

TEST(PacketRef, MoveTransfersOwnershipAndResetFrees) {
    PacketPool pool(PoolConfig{.small_buffers = 1, .large_buffers = 0});
    auto r = pool.try_alloc(SizeClass::small);
    ASSERT_TRUE(r);
    PacketRef a = std::move(*r);
    EXPECT_FALSE(*r);
    EXPECT_TRUE(a);
    EXPECT_FALSE(pool.try_alloc(SizeClass::small));
    PacketRef b;
    b = std::move(a);
    EXPECT_FALSE(a);
    b.reset();
    EXPECT_TRUE(pool.try_alloc(SizeClass::small));
}

TEST(PacketRef, ReleaseAndAdopt) {
    PacketPool pool(PoolConfig{.small_buffers = 1, .large_buffers = 0});
    auto r = pool.try_alloc(std::size_t{42});
    ASSERT_TRUE(r);
    const std::uint32_t id = r->release_id();
    EXPECT_FALSE(*r);
    EXPECT_FALSE(pool.try_alloc(SizeClass::small));  // still owned, by the id
    PacketRef back = pool.adopt(id);
    EXPECT_EQ(back.len(), 42u);
}

TEST(PacketPool, CrossThreadReturnComesHome) {
    constexpr std::uint32_t kN = 300;  // more than one thread cache holds
    PacketPool pool(PoolConfig{.small_buffers = kN, .large_buffers = 0});
    SpscRing<PacketRef> ring(512);
    for (std::uint32_t i = 0; i < kN; ++i) {
        auto r = pool.try_alloc(SizeClass::small);
        ASSERT_TRUE(r);
        ASSERT_TRUE(ring.try_push(std::move(*r)));
    }
    EXPECT_FALSE(pool.try_alloc(SizeClass::small));
    std::thread other([&] {
        PacketRef r;
        while (ring.try_pop(r))
            r.reset();  // freed on the other thread
    });
    other.join();  // its cache is flushed when it exits
    std::vector<PacketRef> all(kN);
    EXPECT_EQ(pool.try_alloc_burst(SizeClass::small, all), kN);
}

TEST(PacketPool, ManyPoolsPerThreadStillWork) {
    // More pools than a thread has cache slots: the extra ones use the global stacks directly.
    std::vector<std::unique_ptr<PacketPool>> pools;
    for (int i = 0; i < 6; ++i)
        pools.push_back(
            std::make_unique<PacketPool>(PoolConfig{.small_buffers = 4, .large_buffers = 0}));
    for (auto& p : pools) {
        std::vector<PacketRef> refs(4);
        EXPECT_EQ(p->try_alloc_burst(SizeClass::small, refs), 4u);
        refs.clear();
        std::vector<PacketRef> again(4);
        EXPECT_EQ(p->try_alloc_burst(SizeClass::small, again), 4u);
    }
    // Destroy and recreate: stale cache slots of dead pools are reclaimed.
    pools.clear();
    PacketPool fresh(PoolConfig{.small_buffers = 2, .large_buffers = 0});
    std::vector<PacketRef> refs(2);
    EXPECT_EQ(fresh.try_alloc_burst(SizeClass::small, refs), 2u);
}

#if SLIPWAY_POOL_DEBUG
class PacketPoolDeathTest : public ::testing::Test {
  protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(PacketPoolDeathTest, DoubleFreeAborts) {
    EXPECT_DEATH(
        {
            PacketPool pool(PoolConfig{.small_buffers = 2, .large_buffers = 0});
            auto r = pool.try_alloc(SizeClass::small);
            const std::uint32_t id = r->release_id();
            pool.free_id(id);
            pool.free_id(id);
        },
        "double free");
}

TEST_F(PacketPoolDeathTest, WriteAfterFreeIsCaught) {
    // Under ASan the poisoned buffer is reported at the write; otherwise the poison check at the
    // next allocation of the buffer catches it.
    EXPECT_DEATH(
        {
            PacketPool pool(PoolConfig{.small_buffers = 1, .large_buffers = 0});
            auto r = pool.try_alloc(SizeClass::small);
            std::byte* stale = r->data().data();
            r->reset();
            stale[0] = std::byte{1};
            auto again = pool.try_alloc(SizeClass::small);
        },
        "written after it was freed|use-after-poison");
}

TEST_F(PacketPoolDeathTest, OverflowPastBufferEndIsCaught) {
    EXPECT_DEATH(
        {
            PacketPool pool(PoolConfig{.small_buffers = 1, .large_buffers = 0});
            auto r = pool.try_alloc(SizeClass::small);
            auto room = r->room();
            room.data()[room.size()] = std::byte{0};  // one past the end: into the guard zone
            r->reset();
        },
        "write past the end");
}
#endif

}  // namespace
}  // namespace slipway
