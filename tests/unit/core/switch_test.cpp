// Switch: learning, flooding, ageing, source-MAC lock, isolation, drops, re-entrancy, fix-up.
#include "slipway/core/switch.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/pcap.hpp"
#include "slipway/core/wire/frame.hpp"

namespace slipway {
namespace {

namespace cap = slipway::test_captures;

const MacAddr kMacA{{0x02, 0, 0, 0, 0, 0x0a}};
const MacAddr kMacB{{0x02, 0, 0, 0, 0, 0x0b}};
const MacAddr kMacC{{0x02, 0, 0, 0, 0, 0x0c}};
const MacAddr kMacGw{{0x02, 0, 0, 0, 0, 0x01}};
const MacAddr kMacX{{0x02, 0, 0, 0, 0, 0x99}};

struct Received {
    std::vector<std::byte> bytes;
    virtio::NetHdr vnet;
    std::uint16_t in_port;
};

// A port whose far side records what the switch delivers. `drain` false leaves frames in the ring
// (a peer that stopped reading); `reply` lets the port answer synchronously from the callback.
class FakePort : public SwitchPort {
  public:
    FakePort(std::string name, PortKind kind, PortCaps caps = {},
             std::size_t ring = kDefaultRingSize)
        : SwitchPort(std::move(name), kind, caps, ring) {}

    void on_frames_from_switch() noexcept override {
        ++notified;
        ++depth;
        max_depth = std::max(max_depth, depth);
        if (drain) {
            PacketRef r;
            while (to_port().try_pop(r)) {
                got.push_back({std::vector<std::byte>(r.data().begin(), r.data().end()),
                               r.meta().vnet, r.meta().in_port});
                if (reply) reply(*this, r);
            }
        }
        --depth;
    }

    int notified = 0;
    bool drain = true;
    std::vector<Received> got;
    std::function<void(FakePort&, const PacketRef&)> reply;
    static inline int depth = 0;
    static inline int max_depth = 0;
};

std::vector<std::byte> eth_frame(const MacAddr& dst, const MacAddr& src, std::size_t len = 60,
                                 std::uint8_t fill = 0x5a) {
    std::vector<std::byte> f(len, std::byte{fill});
    if (len >= 6) dst.store(f.data());
    if (len >= 12) src.store(f.data() + 6);
    if (len >= 14) store_be16(f.data() + 12, 0x0800);
    return f;
}

PacketRef make_ref(PacketPool& pool, ByteView bytes, const virtio::NetHdr& vnet = {}) {
    auto r = pool.try_alloc(bytes.size());
    EXPECT_TRUE(r);
    if (!bytes.empty()) std::memcpy(r->data().data(), bytes.data(), bytes.size());
    r->meta().vnet = vnet;
    return std::move(*r);
}

// Queues a frame on `port` and tells the switch, as an attachment does.
void send(PacketPool& pool, FakePort& port, ByteView bytes, const virtio::NetHdr& vnet = {}) {
    ASSERT_TRUE(port.to_switch().try_push(make_ref(pool, bytes, vnet)));
    port.notify_switch();
}

bool all_returned(PacketPool& pool) {
    for (SizeClass c : {SizeClass::small, SizeClass::large}) {
        std::vector<PacketRef> v(pool.capacity(c));
        if (pool.try_alloc_burst(c, v) != v.size()) return false;
    }
    return true;
}

class SwitchTest : public ::testing::Test {
  protected:
    PacketPool pool{PoolConfig{.small_buffers = 2048, .large_buffers = 8}};

    void TearDown() override { EXPECT_TRUE(all_returned(pool)); }
};

TEST_F(SwitchTest, LearnsThenUnicasts) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), c("c", PortKind::guest);
    Switch sw(pool, {});
    EXPECT_EQ(sw.add_port(a), 0);
    EXPECT_EQ(sw.add_port(b), 1);
    EXPECT_EQ(sw.add_port(c), 2);

    send(pool, a, eth_frame(kMacB, kMacA));  // B unknown: flooded to b and c
    EXPECT_EQ(b.got.size(), 1u);
    EXPECT_EQ(c.got.size(), 1u);
    EXPECT_EQ(a.got.size(), 0u);
    EXPECT_EQ(sw.counters().flooded.get(), 1u);
    EXPECT_EQ(b.got[0].in_port, 0);

    send(pool, b, eth_frame(kMacA, kMacB));  // A learned: only a
    EXPECT_EQ(a.got.size(), 1u);
    EXPECT_EQ(c.got.size(), 1u);

    send(pool, a, eth_frame(kMacB, kMacA));  // B learned now: only b
    EXPECT_EQ(b.got.size(), 2u);
    EXPECT_EQ(c.got.size(), 1u);
    EXPECT_EQ(sw.counters().flooded.get(), 1u);
    EXPECT_EQ(sw.counters().frames.get(), 3u);
    EXPECT_EQ(a.counters().rx_frames.get(), 2u);
    EXPECT_EQ(a.counters().rx_bytes.get(), 120u);
    EXPECT_EQ(b.counters().tx_frames.get(), 2u);
    EXPECT_EQ(b.counters().tx_bytes.get(), 120u);
    EXPECT_EQ(b.notified, 2);
}

TEST_F(SwitchTest, BroadcastFloodsToAllButIngress) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), gw("gw", PortKind::gateway);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(gw);
    const auto f = eth_frame(MacAddr::broadcast(), kMacA, 80, 0x11);
    send(pool, a, f);
    EXPECT_TRUE(a.got.empty());
    ASSERT_EQ(b.got.size(), 1u);
    ASSERT_EQ(gw.got.size(), 1u);
    EXPECT_EQ(b.got[0].bytes, f);
    EXPECT_EQ(gw.got[0].bytes, f);
    // Multicast too.
    send(pool, gw, eth_frame(MacAddr{{0x33, 0x33, 0, 0, 0, 1}}, kMacGw));
    EXPECT_EQ(a.got.size(), 1u);
    EXPECT_EQ(b.got.size(), 2u);
    EXPECT_EQ(sw.counters().flooded.get(), 2u);
}

TEST_F(SwitchTest, LearnedEntriesAgeOut) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), c("c", PortKind::guest);
    Switch sw(pool, SwitchConfig{.mac_ageing = std::chrono::seconds(1)});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(c);
    send(pool, b, eth_frame(MacAddr::broadcast(), kMacB));
    send(pool, a, eth_frame(kMacB, kMacA));
    EXPECT_EQ(b.got.size(), 1u);
    EXPECT_EQ(c.got.size(), 1u);  // only the broadcast
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    send(pool, a, eth_frame(kMacB, kMacA));  // B aged out: flooded again
    EXPECT_EQ(b.got.size(), 2u);
    EXPECT_EQ(c.got.size(), 2u);
}

TEST_F(SwitchTest, SourceMacLockAndReset) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), gw("gw", PortKind::gateway);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(gw);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA));
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacX));  // spoofed
    EXPECT_EQ(a.counters().drop_src_mac.get(), 1u);
    EXPECT_EQ(b.got.size(), 1u);
    // The spoofed source was not learned: a unicast to X is flooded, a's lock unchanged.
    send(pool, b, eth_frame(kMacX, kMacB));
    EXPECT_EQ(a.got.size(), 1u);
    EXPECT_EQ(gw.got.size(), 2u);

    // Gateway ports are not locked.
    send(pool, gw, eth_frame(MacAddr::broadcast(), kMacGw));
    send(pool, gw, eth_frame(MacAddr::broadcast(), kMacC));
    EXPECT_EQ(gw.counters().drop_src_mac.get(), 0u);

    // A new guest on a: forgets the lock and the MACs learned there.
    sw.reset_port(a);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacX));
    EXPECT_EQ(a.counters().drop_src_mac.get(), 1u);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA));
    EXPECT_EQ(a.counters().drop_src_mac.get(), 2u);

    // Lock off: anything goes.
    FakePort d("d", PortKind::guest), e("e", PortKind::guest);
    Switch sw2(pool, SwitchConfig{.mac_lock = false});
    sw2.add_port(d);
    sw2.add_port(e);
    send(pool, d, eth_frame(MacAddr::broadcast(), kMacA));
    send(pool, d, eth_frame(MacAddr::broadcast(), kMacX));
    EXPECT_EQ(d.counters().drop_src_mac.get(), 0u);
    EXPECT_EQ(e.got.size(), 2u);
}

TEST_F(SwitchTest, PinnedGatewayMacCannotBeClaimedAndNeverFloods) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), gw("gw", PortKind::gateway);
    Switch sw(pool, SwitchConfig{.mac_ageing = std::chrono::seconds(1)});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(gw);
    ASSERT_TRUE(sw.pin_mac(gw, kMacGw));
    EXPECT_FALSE(sw.pin_mac(a, kMacGw));  // already someone else's
    EXPECT_FALSE(sw.pin_mac(a, MacAddr::broadcast()));

    // Before the gateway ever spoke, a frame to it goes to it alone, not to every guest.
    send(pool, b, eth_frame(kMacGw, kMacB));
    EXPECT_EQ(gw.got.size(), 1u);
    EXPECT_TRUE(a.got.empty());
    EXPECT_EQ(sw.counters().flooded.get(), 0u);

    // A guest whose first frame claims the gateway's MAC is dropped, and not locked to it.
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacGw));
    EXPECT_EQ(a.counters().drop_src_mac.get(), 1u);
    EXPECT_EQ(b.got.size(), 0u);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA));  // its real MAC still works
    EXPECT_EQ(a.counters().drop_src_mac.get(), 1u);
    EXPECT_EQ(b.got.size(), 1u);
    // b's traffic to the gateway still reaches the gateway only.
    send(pool, b, eth_frame(kMacGw, kMacB));
    EXPECT_EQ(gw.got.size(), 3u);  // a's broadcast and b's two unicasts
    EXPECT_TRUE(a.got.empty());

    // Pinned entries do not age, and reset_port() of a guest does not touch them.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    sw.reset_port(a);
    send(pool, b, eth_frame(kMacGw, kMacB));
    EXPECT_EQ(gw.got.size(), 4u);
    EXPECT_TRUE(a.got.empty());
}

TEST_F(SwitchTest, TaggedFullSizeFramesFitUntaggedOnesDoNot) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest, PortCaps{.max_frame = 1514});
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    auto tagged = eth_frame(MacAddr::broadcast(), kMacA, 1518);
    store_be16(tagged.data() + 12, 0x8100);  // TCI and the inner ethertype follow
    store_be16(tagged.data() + 14, 0x0005);
    store_be16(tagged.data() + 16, 0x0800);
    send(pool, a, tagged);
    EXPECT_EQ(b.got.size(), 1u);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA, 1518));  // untagged: 4 bytes too many
    EXPECT_EQ(b.got.size(), 1u);
    EXPECT_EQ(b.counters().drop_too_big.get(), 1u);
    auto too_big = eth_frame(MacAddr::broadcast(), kMacA, 1519);
    store_be16(too_big.data() + 12, 0x8100);
    send(pool, a, too_big);
    EXPECT_EQ(b.counters().drop_too_big.get(), 2u);
}

TEST_F(SwitchTest, IsolationKeepsGuestsApart) {
    FakePort g1("g1", PortKind::guest), g2("g2", PortKind::guest), gw("gw", PortKind::gateway);
    Switch sw(pool, SwitchConfig{.isolate_guests = true});
    sw.add_port(g1);
    sw.add_port(g2);
    sw.add_port(gw);
    send(pool, g1, eth_frame(MacAddr::broadcast(), kMacA));  // reaches only the gateway
    EXPECT_EQ(gw.got.size(), 1u);
    EXPECT_TRUE(g2.got.empty());
    send(pool, g2, eth_frame(MacAddr::broadcast(), kMacB));
    EXPECT_EQ(gw.got.size(), 2u);
    EXPECT_TRUE(g1.got.empty());

    send(pool, g1, eth_frame(kMacB, kMacA));  // known guest destination: dropped
    EXPECT_EQ(g1.counters().drop_isolated.get(), 1u);
    EXPECT_TRUE(g2.got.empty());
    send(pool, g1, eth_frame(kMacC, kMacA));  // unknown: flooded to the gateway only
    EXPECT_EQ(gw.got.size(), 3u);
    EXPECT_TRUE(g2.got.empty());

    send(pool, gw, eth_frame(MacAddr::broadcast(), kMacGw));  // gateway reaches everyone
    EXPECT_EQ(g1.got.size(), 1u);
    EXPECT_EQ(g2.got.size(), 1u);
    send(pool, gw, eth_frame(kMacA, kMacGw));
    EXPECT_EQ(g1.got.size(), 2u);
    EXPECT_EQ(g2.got.size(), 1u);
    send(pool, g1, eth_frame(kMacGw, kMacA));  // guest to gateway unicast
    EXPECT_EQ(gw.got.size(), 4u);
}

TEST_F(SwitchTest, RingFullDropsAndCounts) {
    FakePort a("a", PortKind::guest);
    FakePort b("b", PortKind::guest, {}, 2);
    b.drain = false;
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    for (int i = 0; i < 5; ++i)
        ASSERT_TRUE(a.to_switch().try_push(make_ref(pool, eth_frame(MacAddr::broadcast(), kMacA))));
    a.notify_switch();
    EXPECT_EQ(b.counters().tx_frames.get(), 2u);
    EXPECT_EQ(b.counters().drop_ring_full.get(), 3u);
    EXPECT_EQ(b.notified, 1);
    PacketRef r;
    while (b.to_port().try_pop(r))
        r.reset();
}

TEST_F(SwitchTest, SynchronousReplyIsQueuedNotNested) {
    FakePort a("a", PortKind::guest), gw("gw", PortKind::gateway);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(gw);
    // The gateway answers every frame at once, from inside on_frames_from_switch().
    gw.reply = [this](FakePort& self, const PacketRef& in) {
        const MacAddr src = MacAddr::load(in.data().data() + 6);
        auto reply = eth_frame(src, kMacGw, 64, 0x77);
        ASSERT_TRUE(self.to_switch().try_push(make_ref(pool, reply)));
        self.notify_switch();
    };
    FakePort::depth = 0;
    FakePort::max_depth = 0;
    for (int i = 0; i < 100; ++i)
        ASSERT_TRUE(a.to_switch().try_push(make_ref(pool, eth_frame(kMacGw, kMacA))));
    a.notify_switch();
    EXPECT_EQ(gw.got.size(), 100u);
    EXPECT_EQ(a.got.size(), 100u);
    EXPECT_EQ(FakePort::max_depth, 1);  // no callback ran inside another
    EXPECT_EQ(sw.counters().frames.get(), 200u);
    EXPECT_TRUE(gw.to_switch().empty_approx());
}

TEST_F(SwitchTest, MalformedFramesAreCounted) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    for (std::size_t len = 0; len < 14; ++len)
        send(pool, a, eth_frame(MacAddr::broadcast(), kMacA, len));
    EXPECT_EQ(a.counters().drop_bad_frame.get(), 14u);
    send(pool, a, eth_frame(MacAddr::broadcast(), MacAddr{{0x01, 0, 0x5e, 0, 0, 1}}));
    send(pool, a, eth_frame(MacAddr::broadcast(), MacAddr{}));
    EXPECT_EQ(a.counters().drop_bad_frame.get(), 16u);
    // A partial checksum pointing past the frame.
    virtio::NetHdr v;
    v.flags = virtio::kNetHdrFNeedsCsum;
    v.csum_start = 100;
    v.csum_offset = 6;
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA), v);
    EXPECT_EQ(a.counters().drop_bad_frame.get(), 17u);
    EXPECT_TRUE(b.got.empty());
    EXPECT_EQ(a.counters().rx_frames.get(), 17u);
    // The lock was not taken by any of them.
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacB));
    EXPECT_EQ(b.got.size(), 1u);
}

TEST_F(SwitchTest, NowhereToSend) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest);
    Switch sw(pool, {});
    sw.add_port(a);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA));
    EXPECT_EQ(sw.counters().drop_no_dest.get(), 1u);
    sw.add_port(b);
    // A unicast to a MAC learned on the ingress port itself is filtered.
    send(pool, a, eth_frame(kMacA, kMacA));
    EXPECT_EQ(sw.counters().drop_no_dest.get(), 2u);
    EXPECT_TRUE(b.got.empty());
}

TEST_F(SwitchTest, RemovePortForgetsItsMacs) {
    FakePort a("a", PortKind::guest), b("b", PortKind::guest), c("c", PortKind::guest);
    FakePort d("d", PortKind::guest);  // declared before the switch: ports outlive registration
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(c);
    send(pool, b, eth_frame(MacAddr::broadcast(), kMacB));
    sw.remove_port(b);
    EXPECT_EQ(b.id(), 0xffff);
    EXPECT_EQ(sw.ports()[1], nullptr);
    send(pool, a, eth_frame(kMacB, kMacA));  // flooded to c, b is gone
    EXPECT_EQ(c.got.size(), 2u);
    EXPECT_TRUE(b.got.empty());
    b.notify_switch();             // unbound: no effect
    EXPECT_EQ(sw.add_port(d), 1);  // the hole is reused
    send(pool, a, eth_frame(kMacB, kMacA));
    EXPECT_EQ(d.got.size(), 1u);
}

TEST_F(SwitchTest, FloodCopiesKeepVnetAndFixUpPerPort) {
    const PortCaps offload{.gso = true, .partial_csum = true, .max_frame = 65535};
    FakePort a("a", PortKind::guest, offload), b("b", PortKind::guest, offload);
    FakePort c("c", PortKind::guest);  // takes only complete checksums
    FakePort d("d", PortKind::gateway, offload);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    sw.add_port(c);
    sw.add_port(d);
    // The captured UDP frame with its checksum reset to the pseudo-header seed, as a guest sends.
    std::vector<std::byte> f(cap::kUdp4.begin(), cap::kUdp4.end());
    auto pf = wire::parse_frame(cap::kUdp4);
    ASSERT_TRUE(pf);
    const auto l4_len = static_cast<std::uint16_t>(f.size() - 34);
    store_be16(f.data() + 40, csum_fold(pseudo_header_sum_v4(pf->ipv4->src(), pf->ipv4->dst(),
                                                             IpProto::udp, l4_len)));
    kMacA.store(f.data() + 6);
    virtio::NetHdr v;
    v.flags = virtio::kNetHdrFNeedsCsum;
    v.csum_start = 34;
    v.csum_offset = 6;
    send(pool, a, f, v);  // destination unknown: flooded to b, c, d
    ASSERT_EQ(b.got.size(), 1u);
    ASSERT_EQ(c.got.size(), 1u);
    ASSERT_EQ(d.got.size(), 1u);
    EXPECT_EQ(b.got[0].vnet, v);
    EXPECT_EQ(d.got[0].vnet, v);
    EXPECT_EQ(b.got[0].bytes, f);
    EXPECT_EQ(d.got[0].bytes, f);
    EXPECT_FALSE(c.got[0].vnet.needs_csum());
    EXPECT_EQ(c.counters().csum_completed.get(), 1u);
    // c's copy carries a complete, valid checksum; the others still the seed.
    auto done = wire::parse_frame(c.got[0].bytes);
    ASSERT_TRUE(done && done->udp);
    const ByteView dg = done->udp->datagram();
    EXPECT_EQ(csum_fold(csum_partial(dg, pseudo_header_sum_v4(done->ipv4->src(), done->ipv4->dst(),
                                                              IpProto::udp, l4_len))),
              0xffff);
    EXPECT_NE(c.got[0].bytes, f);
}

TEST_F(SwitchTest, PoolExhaustionDuringFloodIsCounted) {
    PacketPool small(PoolConfig{.small_buffers = 8, .large_buffers = 1});
    {
        FakePort a("a", PortKind::guest), b("b", PortKind::guest), c("c", PortKind::guest),
            d("d", PortKind::guest), e("e", PortKind::guest);
        Switch sw(small, {});
        for (FakePort* p : {&a, &b, &c, &d, &e})
            sw.add_port(*p);
        ASSERT_TRUE(
            a.to_switch().try_push(make_ref(small, eth_frame(MacAddr::broadcast(), kMacA))));
        std::vector<PacketRef> hog;
        while (auto r = small.try_alloc(SizeClass::small))
            hog.push_back(std::move(*r));
        hog.pop_back();  // one buffer left for three copies
        a.notify_switch();
        std::uint64_t no_buf = 0, got = 0;
        for (FakePort* p : {&b, &c, &d, &e}) {
            no_buf += p->counters().drop_no_buffer.get();
            got += p->got.size();
        }
        EXPECT_EQ(no_buf, 2u);
        EXPECT_EQ(got, 2u);
    }
    EXPECT_TRUE(all_returned(small));
}

// A guest's TSO frame: whole to a GSO port, segmented for a plain one, too big for a small MTU.
TEST_F(SwitchTest, GsoFrameIsSegmentedForPortsWithoutGso) {
    const PortCaps offload{.gso = true, .partial_csum = true, .max_frame = 65535};
    FakePort a("a", PortKind::guest, offload), gso("gso", PortKind::gateway, offload);
    FakePort plain("plain", PortKind::guest);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(gso);
    sw.add_port(plain);

    // Headers of a captured TCP segment, 20,000 bytes of payload, as a Linux guest sends TSO.
    const ByteView hdr = ByteView{cap::kTcpData4}.first(14 + 20 + 32);
    const std::size_t payload = 20000;
    std::vector<std::byte> f(hdr.begin(), hdr.end());
    f.resize(hdr.size() + payload, std::byte{0x42});
    kMacA.store(f.data() + 6);
    store_be16(f.data() + 14 + 2, static_cast<std::uint16_t>(20 + 32 + payload));
    store_be16(f.data() + 14 + 10, 0);
    store_be16(f.data() + 14 + 10, csum_finish(csum_partial(ByteView{f}.subspan(14, 20))));
    auto pf = wire::parse_frame(f);
    ASSERT_TRUE(pf);
    store_be16(f.data() + 34 + 16,
               csum_fold(pseudo_header_sum_v4(pf->ipv4->src(), pf->ipv4->dst(), IpProto::tcp,
                                              static_cast<std::uint16_t>(32 + payload))));
    virtio::NetHdr v;
    v.flags = virtio::kNetHdrFNeedsCsum;
    v.gso_type = virtio::kGsoTcpV4;
    v.gso_size = 1448;
    v.hdr_len = 66;
    v.csum_start = 34;
    v.csum_offset = 16;
    send(pool, a, f, v);
    ASSERT_EQ(gso.got.size(), 1u);
    EXPECT_EQ(gso.got[0].vnet, v);
    EXPECT_EQ(gso.got[0].bytes, f);
    EXPECT_EQ(plain.got.size(), (payload + 1447) / 1448);
    EXPECT_EQ(plain.counters().segmented.get(), 1u);
    for (const Received& r : plain.got) {
        EXPECT_LE(r.bytes.size(), 1514u);
        EXPECT_FALSE(r.vnet.is_gso());
        EXPECT_EQ(r.in_port, 0);
    }
    // A plain port with a smaller MTU cannot take 1448-byte segments.
    plain.set_caps(PortCaps{.max_frame = 1000});
    send(pool, a, f, v);
    EXPECT_EQ(plain.counters().drop_too_big.get(), (payload + 1447) / 1448);
    // An ordinary frame above max_frame.
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA, 1200));
    EXPECT_EQ(plain.counters().drop_too_big.get(), (payload + 1447) / 1448 + 1);
}

TEST_F(SwitchTest, EveryFrameGoesToPcap) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("slipway-switch-" + std::to_string(::getpid()) + ".pcap");
    PcapWriter pcap;
    ASSERT_TRUE(pcap.open(path.string()));
    FakePort a("a", PortKind::guest), b("b", PortKind::guest);
    Switch sw(pool, {});
    sw.add_port(a);
    sw.add_port(b);
    sw.set_pcap(&pcap);
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA));
    send(pool, a, eth_frame(MacAddr::broadcast(), kMacA, 5));  // bad frames are captured too
    EXPECT_EQ(pcap.frames(), 2u);
    pcap.flush();
    EXPECT_EQ(std::filesystem::file_size(path), 24u + 16 + 60 + 16 + 5);
    std::filesystem::remove(path);
}

TEST_F(SwitchTest, DestructorUnbindsPorts) {
    FakePort a("a", PortKind::guest);
    {
        Switch sw(pool, {});
        sw.add_port(a);
        EXPECT_EQ(a.id(), 0);
    }
    EXPECT_EQ(a.id(), 0xffff);
    ASSERT_TRUE(a.to_switch().try_push(make_ref(pool, eth_frame(MacAddr::broadcast(), kMacA))));
    a.notify_switch();  // nothing happens: the frame stays in the ring
    EXPECT_EQ(a.to_switch().size_approx(), 1u);
    PacketRef r;
    while (a.to_switch().try_pop(r))
        r.reset();
}

}  // namespace
}  // namespace slipway
