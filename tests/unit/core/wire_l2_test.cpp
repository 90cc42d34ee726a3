// Ethernet and ARP views against captured frames (see captures/wire_captures.hpp for provenance).
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/wire/arp.hpp"
#include "slipway/core/wire/ethernet.hpp"

namespace slipway::wire {
namespace {

using namespace slipway::test_captures;

constexpr MacAddr kMacA{{0x02, 0x00, 0x00, 0x00, 0xaa, 0x01}};
constexpr MacAddr kMacB{{0x02, 0x00, 0x00, 0x00, 0xbb, 0x02}};
constexpr Ipv4Addr kIpA = Ipv4Addr::from_octets(10, 99, 0, 1);
constexpr Ipv4Addr kIpB = Ipv4Addr::from_octets(10, 99, 0, 2);

template <class A>
std::vector<std::byte> vec(const A& a) {
    return {a.begin(), a.end()};
}

bool same(ByteView a, ByteView b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

TEST(WireEthernet, DeconstructsUntagged) {
    auto e = EthernetView::parse(kArpRequest);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->dst().is_broadcast());
    EXPECT_EQ(e->src(), kMacA);
    EXPECT_FALSE(e->vlan());
    EXPECT_EQ(e->ethertype(), EtherType::arp);
    EXPECT_EQ(e->header_len(), kEthernetHeaderLen);
    EXPECT_EQ(e->payload().size(), kArpRequest.size() - 14);
    EXPECT_EQ(e->payload().data(), kArpRequest.data() + 14);
}

TEST(WireEthernet, Deconstructs8021QTag) {
    auto e = EthernetView::parse(kVlanArpRequest);
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->vlan());
    EXPECT_EQ(e->vlan()->tpid, EtherType::vlan);
    EXPECT_EQ(e->vlan()->vid(), 10);
    EXPECT_EQ(e->vlan()->pcp(), 0);
    EXPECT_EQ(e->ethertype(), EtherType::arp);
    EXPECT_EQ(e->header_len(), 18u);
    EXPECT_TRUE(same(e->payload(), ByteView(kArpRequest).subspan(14)));
}

TEST(WireEthernet, RejectsStackedTags) {
    // One tag level only: the QinQ capture's inner 802.1Q tag is Errc::unsupported.
    auto e = EthernetView::parse(kQinQArpRequest);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error(), Errc::unsupported);
}

TEST(WireEthernet, AcceptsSingle8021adTag) {
    // The QinQ capture with its inner tag removed: a lone 0x88a8 S-tag.
    auto f = vec(kQinQArpRequest);
    f.erase(f.begin() + 16, f.begin() + 20);
    auto e = EthernetView::parse(f);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->vlan()->tpid, EtherType::qinq);
    EXPECT_EQ(e->vlan()->vid(), 100);
    EXPECT_EQ(e->ethertype(), EtherType::arp);
}

TEST(WireEthernet, Rejects8023LengthField) {
    auto f = vec(kArpRequest);
    f[12] = std::byte{0x00};
    f[13] = std::byte{0x2e};
    auto e = EthernetView::parse(f);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error(), Errc::unsupported);
}

TEST(WireEthernet, TruncatedAtEveryLength) {
    for (std::size_t n = 0; n < kEthernetHeaderLen; ++n) {
        auto e = EthernetView::parse(ByteView(kArpRequest).first(n));
        ASSERT_FALSE(e) << n;
        EXPECT_EQ(e.error(), Errc::truncated) << n;
    }
    for (std::size_t n = 0; n < kEthernetMaxHeaderLen; ++n) {
        auto e = EthernetView::parse(ByteView(kVlanArpRequest).first(n));
        ASSERT_FALSE(e) << n;
        EXPECT_EQ(e.error(), Errc::truncated) << n;
    }
    // A header with nothing after it is a valid (if useless) frame.
    EXPECT_TRUE(EthernetView::parse(ByteView(kArpRequest).first(14)));
}

TEST(WireEthernet, ConstructsIdenticalBytes) {
    std::array<std::byte, 18> out{};
    EthernetRepr r{MacAddr::broadcast(), kMacA, std::nullopt, EtherType::arp};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 14u);
    EXPECT_TRUE(same(ByteView(out).first(14), ByteView(kArpRequest).first(14)));

    r.vlan = VlanTag{EtherType::vlan, 10};
    n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 18u);
    EXPECT_TRUE(same(out, ByteView(kVlanArpRequest).first(18)));

    auto v = EthernetView::parse(kIcmpEchoReply);
    ASSERT_TRUE(v);
    EXPECT_EQ(EthernetRepr::from(*v), (EthernetRepr{kMacA, kMacB, std::nullopt, EtherType::ipv4}));
}

TEST(WireEthernet, EmitChecksBuffer) {
    std::array<std::byte, 17> out{};
    EthernetRepr r{kMacA, kMacB, VlanTag{EtherType::vlan, 1}, EtherType::ipv6};
    auto n = r.emit(out);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), Errc::too_large);
    r.vlan = VlanTag{EtherType::ipv4, 1};  // not a tag protocol
    n = r.emit(std::span(out).first(14));
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), Errc::invalid_argument);
}

TEST(WireArp, DeconstructsRequestAndReply) {
    auto req = ArpView::parse(ByteView(kArpRequest).subspan(14));
    ASSERT_TRUE(req);
    EXPECT_EQ(req->op(), ArpOp::request);
    EXPECT_EQ(req->sha(), kMacA);
    EXPECT_EQ(req->spa(), kIpA);
    EXPECT_TRUE(req->tha().is_zero());
    EXPECT_EQ(req->tpa(), kIpB);

    auto rep = ArpView::parse(ByteView(kArpReply).subspan(14));
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->op(), ArpOp::reply);
    EXPECT_EQ(rep->sha(), kMacB);
    EXPECT_EQ(rep->spa(), kIpB);
    EXPECT_EQ(rep->tha(), kMacA);
    EXPECT_EQ(rep->tpa(), kIpA);
}

TEST(WireArp, ConstructsTheKernelsReply) {
    // What slipway would answer to the captured request is exactly what Linux answered.
    auto req = ArpView::parse(ByteView(kArpRequest).subspan(14));
    ASSERT_TRUE(req);
    ArpRepr r{ArpOp::reply, kMacB, req->tpa(), req->sha(), req->spa()};
    std::array<std::byte, kArpEthIpv4Len> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kArpEthIpv4Len);
    EXPECT_TRUE(same(out, ByteView(kArpReply).subspan(14)));

    auto back = ArpRepr::from(*req).emit(out);
    ASSERT_TRUE(back);
    EXPECT_TRUE(same(out, ByteView(kArpRequest).subspan(14)));
    EXPECT_EQ(r.emit(std::span(out).first(27)).error(), Errc::too_large);
}

TEST(WireArp, TruncatedAndPadded) {
    const ByteView arp = ByteView(kArpRequest).subspan(14);
    for (std::size_t n = 0; n < kArpEthIpv4Len; ++n) {
        auto a = ArpView::parse(arp.first(n));
        ASSERT_FALSE(a) << n;
        EXPECT_EQ(a.error(), Errc::truncated);
    }
    // Minimum-size Ethernet padding after the 28 bytes is not part of the packet.
    auto padded = vec(kArpRequest);
    padded.resize(60);
    auto a = ArpView::parse(ByteView(padded).subspan(14));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->bytes().size(), kArpEthIpv4Len);
}

TEST(WireArp, RejectsOtherHardwareOrProtocol) {
    for (std::size_t i : {1u, 2u, 4u, 5u}) {  // htype low byte, ptype high byte, hlen, plen
        auto f = vec(kArpRequest);
        f[14 + i] = std::byte{static_cast<unsigned char>(static_cast<unsigned>(f[14 + i]) ^ 0x40u)};
        auto a = ArpView::parse(ByteView(f).subspan(14));
        ASSERT_FALSE(a) << i;
        EXPECT_EQ(a.error(), Errc::unsupported) << i;
    }
}

}  // namespace
}  // namespace slipway::wire
