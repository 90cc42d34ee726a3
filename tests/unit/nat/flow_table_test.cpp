// nat::FlowTable against a std::unordered_map model: random inserts, erases and lookups (single
// and burst) at high load, probe-run shifting on erase, the direct-mapped cache after id reuse,
// the fd map, a full table, and no allocation after construction.
#include "slipway/nat/flow_table.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

#include "support/alloc_guard.hpp"

namespace slipway::nat {
namespace {

FlowKey random_key(std::mt19937_64& rng) {
    FlowKey k;
    k.guest_ip = Ipv4Addr::from_octets(192, 168, 127, static_cast<std::uint8_t>(2 + rng() % 250));
    k.remote_ip = Ipv4Addr{static_cast<std::uint32_t>(rng())};
    k.guest_port = static_cast<std::uint16_t>(rng());
    k.remote_port = static_cast<std::uint16_t>(rng() % 4 == 0 ? 443 : rng());
    k.proto = rng() % 3 == 0 ? IpProto::udp : IpProto::tcp;
    return k;
}

struct KeyHash {
    std::size_t operator()(const FlowKey& k) const noexcept { return k.hash(); }
};

TEST(FlowTable, MatchesAModelUnderRandomChurn) {
    // A small index so probe runs are long and erasure shifts a lot: capacity 512 -> 1024 slots,
    // run at up to full capacity (load 1/2).
    FlowTable t(FlowTableConfig{.capacity = 512, .max_fd = 64, .cache_slots = 16});
    std::unordered_map<FlowKey, FlowId, KeyHash> model;
    std::vector<FlowKey> live;
    std::mt19937_64 rng(7);
    for (int step = 0; step < 200000; ++step) {
        const unsigned op = static_cast<unsigned>(rng() % 10);
        if (op < 4 && live.size() < 512) {
            const FlowKey k = random_key(rng);
            if (model.count(k) != 0) continue;
            const auto id = t.insert(k);
            ASSERT_TRUE(id.has_value()) << step;
            ASSERT_LT(*id, 512u);
            ASSERT_TRUE(t.in_use(*id));
            model[k] = *id;
            live.push_back(k);
        } else if (op < 7 && !live.empty()) {
            const std::size_t i = rng() % live.size();
            const FlowKey k = live[i];
            t.erase(model[k]);
            ASSERT_FALSE(t.in_use(model[k]));
            model.erase(k);
            live[i] = live.back();
            live.pop_back();
            ASSERT_EQ(t.find(k), kNoFlow) << step;
        } else if (!live.empty()) {
            const FlowKey& k = live[rng() % live.size()];
            ASSERT_EQ(t.find(k), model[k]) << step;
            ASSERT_EQ(t.key(model[k]), k);
            ASSERT_EQ(t.find(random_key(rng)), kNoFlow);
        }
        ASSERT_EQ(t.size(), model.size());
    }
    // Every survivor is still found, singly and in bursts (including a ragged last chunk).
    std::vector<FlowKey> keys(live);
    for (int i = 0; i < 40; ++i)
        keys.push_back(random_key(rng));  // misses mixed in
    std::vector<FlowId> out(keys.size(), 12345);
    t.find_burst(keys, out);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const auto it = model.find(keys[i]);
        EXPECT_EQ(out[i], it == model.end() ? kNoFlow : it->second) << i;
        EXPECT_EQ(t.find(keys[i]), out[i]);
    }
    EXPECT_EQ(t.counters().inserts.get(), t.counters().erases.get() + t.size());
}

TEST(FlowTable, DuplicateAndFull) {
    FlowTable t(FlowTableConfig{.capacity = 3, .max_fd = 8, .cache_slots = 4});
    std::mt19937_64 rng(1);
    const FlowKey a = random_key(rng), b = random_key(rng), c = random_key(rng);
    ASSERT_TRUE(t.insert(a));
    EXPECT_EQ(t.insert(a).error(), Errc::invalid_argument);
    ASSERT_TRUE(t.insert(b));
    ASSERT_TRUE(t.insert(c));
    EXPECT_EQ(t.insert(random_key(rng)).error(), Errc::too_large);
    EXPECT_EQ(t.counters().full.get(), 1u);
    // Freeing one makes room again, and lowest ids are handed out first.
    const FlowId ib = t.find(b);
    EXPECT_EQ(t.find(a), 0u);
    EXPECT_EQ(ib, 1u);
    t.erase(ib);
    t.erase(ib);  // twice: ignored
    EXPECT_EQ(t.size(), 2u);
    const auto d = t.insert(random_key(rng));
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, ib);
    t.erase(kNoFlow);  // ignored
    t.erase(99);       // ignored
    EXPECT_EQ(t.size(), 3u);
}

TEST(FlowTable, CacheNeverAnswersForAReusedId) {
    FlowTable t(FlowTableConfig{.capacity = 4, .max_fd = 8, .cache_slots = 1});
    std::mt19937_64 rng(3);
    const FlowKey a = random_key(rng), b = random_key(rng);
    const FlowId ia = *t.insert(a);
    EXPECT_EQ(t.find(a), ia);  // now cached
    t.erase(ia);
    EXPECT_EQ(t.find(a), kNoFlow);
    const FlowId ib = *t.insert(b);
    EXPECT_EQ(ib, ia);  // the same id, another flow
    EXPECT_EQ(t.find(a), kNoFlow);
    EXPECT_EQ(t.find(b), ib);
}

TEST(FlowTable, MapsHostSockets) {
    FlowTable t(FlowTableConfig{.capacity = 8, .max_fd = 16, .cache_slots = 4});
    std::mt19937_64 rng(5);
    const FlowId a = *t.insert(random_key(rng));
    const FlowId b = *t.insert(random_key(rng));
    EXPECT_TRUE(t.bind_fd(a, 5));
    EXPECT_TRUE(t.bind_fd(b, 15));
    EXPECT_FALSE(t.bind_fd(b, 16));  // outside max_fd
    EXPECT_FALSE(t.bind_fd(b, -1));
    EXPECT_FALSE(t.bind_fd(7, 3));  // not in use
    EXPECT_EQ(t.by_fd(5), a);
    EXPECT_EQ(t.by_fd(15), b);
    EXPECT_EQ(t.by_fd(3), kNoFlow);
    EXPECT_EQ(t.by_fd(-1), kNoFlow);
    EXPECT_EQ(t.by_fd(1000), kNoFlow);
    EXPECT_TRUE(t.bind_fd(a, 6));  // rebinding moves the mapping
    EXPECT_EQ(t.by_fd(5), kNoFlow);
    EXPECT_EQ(t.by_fd(6), a);
    t.erase(a);
    EXPECT_EQ(t.by_fd(6), kNoFlow);
    EXPECT_EQ(t.by_fd(15), b);
}

TEST(FlowTable, NoAllocationAfterConstruction) {
    FlowTable t(FlowTableConfig{.capacity = 1024, .max_fd = 64, .cache_slots = 64});
    std::mt19937_64 rng(11);
    std::vector<FlowKey> keys;
    for (int i = 0; i < 1024; ++i)
        keys.push_back(random_key(rng));
    std::vector<FlowId> out(keys.size());
    std::size_t allocations = 0;
    {
        test::AllocGuard guard;
        for (int round = 0; round < 3; ++round) {
            for (const FlowKey& k : keys)
                (void)t.insert(k);
            t.find_burst(keys, out);
            for (const FlowKey& k : keys)
                (void)t.find(k);
            for (FlowId id : out)
                t.erase(id);
        }
        allocations = guard.count();
    }
    EXPECT_EQ(allocations, 0u);
    EXPECT_EQ(t.size(), 0u);
}

}  // namespace
}  // namespace slipway::nat
