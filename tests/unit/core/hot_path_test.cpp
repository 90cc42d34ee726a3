// Hot-path guard: ring, pool, frame parsing and checksum operations must not allocate. A replaced
// operator new (support/alloc_guard.cpp) counts every allocation this thread makes while armed.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "slipway/core/checksum.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/spsc_ring.hpp"
#include "slipway/core/wire/frame.hpp"
#include "support/alloc_guard.hpp"

namespace slipway {
namespace {

// A minimal ICMP echo request 10.0.0.1 -> 10.0.0.2, built by hand with valid checksums (the wire
// tests use real captures; here parse_frame only has to accept it).
constexpr auto kEchoFrame = make_bytes(
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,  // eth
    0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x14, 0xab, 0x0a, 0x00, 0x00, 0x01,
    0x0a, 0x00, 0x00, 0x02,                           // ipv4
    0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00);  // icmp

TEST(HotPath, GuardCountsAllocations) {
    // The guard itself must be able to fail: an allocation inside it is counted.
    test::AllocGuard g;
    auto* p = new int(1);
    delete p;
    EXPECT_EQ(g.count(), 1u);
}

TEST(HotPath, RingPoolParseAndChecksumDoNotAllocate) {
    PacketPool pool(PoolConfig{.small_buffers = 256, .large_buffers = 4});
    SpscRing<PacketRef> ring(128);
    std::array<PacketRef, 32> burst;
    std::array<PacketRef, 32> out;
    {
        // Warm-up outside the guard: the first use of the per-thread cache registers its
        // thread-exit hook once, which may allocate inside the C runtime.
        auto warm = pool.try_alloc(SizeClass::small);
        ASSERT_TRUE(warm);
    }

    test::AllocGuard guard;
    std::uint64_t sink = 0;
    for (int round = 0; round < 100; ++round) {
        const std::size_t n = pool.try_alloc_burst(SizeClass::small, burst);
        ASSERT_EQ(n, burst.size());
        for (auto& p : burst) {
            std::memcpy(p.room().data(), kEchoFrame.data(), kEchoFrame.size());
            ASSERT_TRUE(p.set_len(kEchoFrame.size()));
            auto f = wire::parse_frame(p.data());
            ASSERT_TRUE(f);
            sink += csum_partial(p.data());
        }
        ASSERT_EQ(ring.push_burst(burst), burst.size());
        ASSERT_EQ(ring.pop_burst(out), out.size());
        for (auto& p : out)
            p.reset();
        auto single = pool.try_alloc(std::size_t{60});
        ASSERT_TRUE(single);
        ASSERT_TRUE(ring.try_push(std::move(*single)));
        PacketRef back;
        ASSERT_TRUE(ring.try_pop(back));
    }
    EXPECT_EQ(guard.count(), 0u) << "hot-path operations allocated";
    EXPECT_NE(sink, 0u);
}

}  // namespace
}  // namespace slipway
