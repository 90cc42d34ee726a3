// nat::FlowLimits: the per-guest flow cap, the TCP half-open cap with its connected()/closed()
// bookkeeping, the new-flow token bucket (refill over time, burst depth, refusals that cost
// nothing), insert() into a full table with an evictor that succeeds, fails or is missing, the
// per-guest table running out of slots, and the counters of every refusal.
#include "slipway/nat/limits.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "slipway/nat/flow_table.hpp"

namespace slipway::nat {
namespace {

constexpr Ipv4Addr kG1 = Ipv4Addr::from_octets(192, 168, 127, 2);
constexpr Ipv4Addr kG2 = Ipv4Addr::from_octets(192, 168, 127, 3);
constexpr Ipv4Addr kRemote = Ipv4Addr::from_octets(203, 0, 113, 5);
constexpr std::uint64_t kT0 = 5'000'000;

FlowKey key(std::uint16_t port, IpProto p = IpProto::udp) {
    return FlowKey{kG1, kRemote, port, 53, p};
}

TEST(FlowLimits, NoLimitsAdmitEverything) {
    FlowLimits l(LimitsConfig{});
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(l.admit(kG1, (i & 1) != 0, kT0), Admit::ok);
        l.opened(kG1, (i & 1) != 0);
    }
    EXPECT_EQ(l.flows_of(kG1), 1000u);
    EXPECT_EQ(l.half_open_of(kG1), 500u);
    const LimitCounters& c = l.counters();
    EXPECT_EQ(c.guest_cap.get() + c.half_open.get() + c.rate.get() + c.table_full.get(), 0u);
}

TEST(FlowLimits, GuestCapCountsLiveFlowsPerGuest) {
    FlowLimits l(LimitsConfig{.max_flows_per_guest = 2});
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok);
    l.opened(kG1, false);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::ok);
    l.opened(kG1, true);
    EXPECT_EQ(l.flows_of(kG1), 2u);
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::guest_cap);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::guest_cap);
    EXPECT_EQ(l.counters().guest_cap.get(), 2u);
    // Admission alone does not count a flow: refusals leave the count where it was.
    EXPECT_EQ(l.flows_of(kG1), 2u);
    // Another guest has its own count.
    EXPECT_EQ(l.admit(kG2, false, kT0), Admit::ok);
    EXPECT_EQ(l.flows_of(kG2), 0u);
    // The limit recovers the moment a flow closes.
    l.closed(kG1, false);
    EXPECT_EQ(l.flows_of(kG1), 1u);
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok);
}

TEST(FlowLimits, HalfOpenCapAppliesToConnectingTcpOnly) {
    FlowLimits l(LimitsConfig{.max_half_open = 2});
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(l.admit(kG1, true, kT0), Admit::ok);
        l.opened(kG1, true);
    }
    EXPECT_EQ(l.half_open_of(kG1), 2u);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::half_open);
    EXPECT_EQ(l.counters().half_open.get(), 1u);
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok) << "datagram flows do not connect";
    EXPECT_EQ(l.admit(kG2, true, kT0), Admit::ok) << "another guest";
    // One connects: room for another SYN, and the flow still counts as a flow.
    l.connected(kG1);
    EXPECT_EQ(l.half_open_of(kG1), 1u);
    EXPECT_EQ(l.flows_of(kG1), 2u);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::ok);
    l.opened(kG1, true);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::half_open);
    // One gives up while connecting: both counts drop.
    l.closed(kG1, true);
    EXPECT_EQ(l.half_open_of(kG1), 1u);
    EXPECT_EQ(l.flows_of(kG1), 2u);
    // The connected one closes: only the flow count drops.
    l.closed(kG1, false);
    EXPECT_EQ(l.half_open_of(kG1), 1u);
    EXPECT_EQ(l.flows_of(kG1), 1u);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::ok);
}

TEST(FlowLimits, BookkeepingNeverGoesBelowZero) {
    FlowLimits l(LimitsConfig{.max_flows_per_guest = 1, .max_half_open = 1});
    l.closed(kG1, true);
    l.connected(kG1);
    l.closed(kG2, false);
    EXPECT_EQ(l.flows_of(kG1), 0u);
    EXPECT_EQ(l.half_open_of(kG1), 0u);
    l.opened(kG1, false);
    l.connected(kG1);  // not half-open: nothing to take away
    EXPECT_EQ(l.half_open_of(kG1), 0u);
    l.closed(kG1, true);
    l.closed(kG1, true);
    EXPECT_EQ(l.flows_of(kG1), 0u);
    EXPECT_EQ(l.admit(kG1, true, kT0), Admit::ok);
}

TEST(FlowLimits, TokenBucketBurstsThenRefillsAtTheRate) {
    FlowLimits l(LimitsConfig{.new_flows_per_sec = 10, .new_flows_burst = 3});
    // A full bucket: three at once, then refused.
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok) << i;
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::rate);
    EXPECT_EQ(l.counters().rate.get(), 1u);
    // 10 per second: a token every 100 ms, half a token is not one.
    EXPECT_EQ(l.admit(kG1, false, kT0 + 50), Admit::rate);
    EXPECT_EQ(l.admit(kG1, false, kT0 + 100), Admit::ok) << "refusals cost no tokens";
    EXPECT_EQ(l.admit(kG1, false, kT0 + 100), Admit::rate);
    EXPECT_EQ(l.admit(kG1, false, kT0 + 199), Admit::rate);
    EXPECT_EQ(l.admit(kG1, false, kT0 + 200), Admit::ok);
    // A long pause fills the bucket to its depth, no further.
    const std::uint64_t later = kT0 + 60'000;
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(l.admit(kG1, false, later), Admit::ok) << i;
    EXPECT_EQ(l.admit(kG1, false, later), Admit::rate);
    // Each guest has its own bucket.
    EXPECT_EQ(l.admit(kG2, false, later), Admit::ok);
    EXPECT_EQ(l.counters().rate.get(), 5u);
}

TEST(FlowLimits, BucketDepthDefaultsToOneSecondOfRate) {
    FlowLimits l(LimitsConfig{.new_flows_per_sec = 4});
    EXPECT_EQ(l.config().new_flows_burst, 4u);
    for (int i = 0; i < 4; ++i)
        EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok) << i;
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::rate);
    EXPECT_EQ(l.admit(kG1, false, kT0 + 250), Admit::ok);
}

TEST(FlowLimits, ClockGoingBackwardsAddsNoTokens) {
    FlowLimits l(LimitsConfig{.new_flows_per_sec = 1, .new_flows_burst = 1});
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok);
    EXPECT_EQ(l.admit(kG1, false, kT0 - 5000), Admit::rate) << "no refill from a step back";
}

TEST(FlowLimits, CapIsCheckedBeforeTheRateAndCostsNoToken) {
    FlowLimits l(
        LimitsConfig{.max_flows_per_guest = 1, .new_flows_per_sec = 1, .new_flows_burst = 2});
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok);
    l.opened(kG1, false);
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::guest_cap);
    l.closed(kG1, false);
    EXPECT_EQ(l.admit(kG1, false, kT0), Admit::ok) << "the refusal took no token";
    EXPECT_EQ(l.counters().rate.get(), 0u);
}

TEST(FlowLimits, InsertUsesTheTableUntilItIsFull) {
    FlowTable t(FlowTableConfig{.capacity = 2, .max_fd = 64, .cache_slots = 4});
    FlowLimits l(LimitsConfig{});
    int evictions = 0;
    l.set_evictor([&](std::uint64_t) {
        ++evictions;
        return false;
    });
    auto a = l.insert(t, key(1), kT0);
    auto b = l.insert(t, key(2), kT0);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(evictions, 0) << "no eviction while there is room";
    EXPECT_EQ(t.find(key(1)), *a);
    // A key already in the table is an error of the caller, not a full table.
    auto dup = l.insert(t, key(1), kT0);
    ASSERT_FALSE(dup.has_value());
    EXPECT_EQ(dup.error(), Errc::invalid_argument);
    EXPECT_EQ(evictions, 0);
    EXPECT_EQ(l.counters().table_full.get(), 0u);
}

TEST(FlowLimits, FullTableEvictsOnceAndRetries) {
    FlowTable t(FlowTableConfig{.capacity = 2, .max_fd = 64, .cache_slots = 4});
    FlowLimits l(LimitsConfig{});
    ASSERT_TRUE(l.insert(t, key(1), kT0).has_value());
    const auto victim = l.insert(t, key(2), kT0);
    ASSERT_TRUE(victim.has_value());
    std::vector<std::uint64_t> calls;
    l.set_evictor([&](std::uint64_t now) {
        calls.push_back(now);
        t.erase(*victim);
        return true;
    });
    const auto r = l.insert(t, key(3), kT0 + 7);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(calls, std::vector<std::uint64_t>{kT0 + 7}) << "once, with the caller's clock";
    EXPECT_EQ(t.find(key(3)), *r);
    EXPECT_EQ(t.find(key(2)), kNoFlow);
    EXPECT_EQ(l.counters().evicted.get(), 1u);
    EXPECT_EQ(l.counters().table_full.get(), 0u);
}

TEST(FlowLimits, FullTableWithNothingToEvictIsRefused) {
    FlowTable t(FlowTableConfig{.capacity = 1, .max_fd = 64, .cache_slots = 4});
    FlowLimits l(LimitsConfig{});
    ASSERT_TRUE(l.insert(t, key(1), kT0).has_value());
    // No evictor installed.
    auto r = l.insert(t, key(2), kT0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::too_large);
    EXPECT_EQ(l.counters().table_full.get(), 1u);
    // An evictor that finds nothing idle.
    int calls = 0;
    l.set_evictor([&](std::uint64_t) {
        ++calls;
        return false;
    });
    r = l.insert(t, key(2), kT0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::too_large);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(l.counters().table_full.get(), 2u);
    EXPECT_EQ(l.counters().evicted.get(), 0u);
    // An evictor that says it freed something but did not: one retry only, then refused.
    l.set_evictor([&](std::uint64_t) {
        ++calls;
        return true;
    });
    r = l.insert(t, key(2), kT0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(l.counters().table_full.get(), 3u);
    EXPECT_EQ(t.size(), 1u);
}

TEST(FlowLimits, GuestsBeyondTheSlotTableGoUncapped) {
    FlowLimits l(LimitsConfig{.max_flows_per_guest = 1, .guest_slots = 16});
    for (std::uint8_t i = 1; i <= 16; ++i) {
        const Ipv4Addr g = Ipv4Addr::from_octets(10, 0, 0, i);
        ASSERT_EQ(l.admit(g, false, kT0), Admit::ok);
        l.opened(g, false);
        EXPECT_EQ(l.admit(g, false, kT0), Admit::guest_cap);
    }
    // Every slot taken: a newcomer is admitted without a cap (and logged once).
    const Ipv4Addr late = Ipv4Addr::from_octets(10, 0, 1, 1);
    l.opened(late, false);
    EXPECT_EQ(l.admit(late, false, kT0), Admit::ok);
    EXPECT_EQ(l.flows_of(late), 0u);
    // The guests that have slots keep their caps.
    EXPECT_EQ(l.admit(Ipv4Addr::from_octets(10, 0, 0, 5), false, kT0), Admit::guest_cap);
}

TEST(FlowLimits, CountersNameEveryRefusal) {
    FlowLimits l(LimitsConfig{.max_flows_per_guest = 1, .max_half_open = 1});
    std::vector<std::string> names;
    l.counters().for_each([&](const char* n, const Counter&) { names.emplace_back(n); });
    EXPECT_EQ(names, (std::vector<std::string>{"limit_guest_flows", "limit_half_open", "limit_rate",
                                               "limit_table_full", "flows_evicted"}));
}

}  // namespace
}  // namespace slipway::nat
