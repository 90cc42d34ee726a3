// parse_frame() over every captured frame, and the no-allocation guarantee of the parse path.
#include <gtest/gtest.h>

#include <type_traits>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/wire/frame.hpp"
#include "support/alloc_guard.hpp"

namespace slipway::wire {
namespace {

using namespace slipway::test_captures;

static_assert(noexcept(parse_frame(ByteView{})));
static_assert(noexcept(EthernetView::parse(ByteView{})));
static_assert(noexcept(ArpView::parse(ByteView{})));
static_assert(noexcept(Ipv4View::parse(ByteView{})));
static_assert(noexcept(Ipv6View::parse(ByteView{})));
static_assert(noexcept(Icmpv4View::parse(ByteView{})));
static_assert(noexcept(Icmpv6View::parse(ByteView{})));
static_assert(noexcept(TcpView::parse(ByteView{})));
static_assert(noexcept(UdpView::parse(ByteView{})));
static_assert(std::is_trivially_copyable_v<TcpView> && std::is_trivially_copyable_v<Ipv6View>);

enum class L4 { none, tcp, udp, icmpv4, icmpv6 };

struct Expect {
    const char* name;
    ByteView frame;
    EtherType l3;
    L4 l4;
    bool fragment;
};

L4 l4_of(const ParsedFrame& f) {
    if (f.tcp) return L4::tcp;
    if (f.udp) return L4::udp;
    if (f.icmpv4) return L4::icmpv4;
    if (f.icmpv6) return L4::icmpv6;
    return L4::none;
}

const std::vector<Expect>& all_captures() {
    static const std::vector<Expect> v{
        {"arp request", kArpRequest, EtherType::arp, L4::none, false},
        {"arp reply", kArpReply, EtherType::arp, L4::none, false},
        {"vlan arp", kVlanArpRequest, EtherType::arp, L4::none, false},
        {"echo request", kIcmpEchoRequest, EtherType::ipv4, L4::icmpv4, false},
        {"echo reply", kIcmpEchoReply, EtherType::ipv4, L4::icmpv4, false},
        {"port unreachable", kIcmpPortUnreachable, EtherType::ipv4, L4::icmpv4, false},
        // First fragment: the ICMP header is there, so it is parsed (its checksum is not whole).
        {"v4 first fragment", kIpv4FirstFragment, EtherType::ipv4, L4::icmpv4, true},
        {"v4 last fragment", kIpv4LastFragment, EtherType::ipv4, L4::none, true},
        {"udp with ip options", kUdpWithIpOptions, EtherType::ipv4, L4::udp, false},
        {"udp4", kUdp4, EtherType::ipv4, L4::udp, false},
        {"udp6", kUdp6, EtherType::ipv6, L4::udp, false},
        {"tcp syn4", kTcpSyn4, EtherType::ipv4, L4::tcp, false},
        {"tcp synack4", kTcpSynAck4, EtherType::ipv4, L4::tcp, false},
        {"tcp data4", kTcpData4, EtherType::ipv4, L4::tcp, false},
        {"tcp syn6", kTcpSyn6, EtherType::ipv6, L4::tcp, false},
        {"tcp data6", kTcpData6, EtherType::ipv6, L4::tcp, false},
        {"ndp ns", kNdpNeighborSolicit, EtherType::ipv6, L4::icmpv6, false},
        {"ndp na", kNdpNeighborAdvert, EtherType::ipv6, L4::icmpv6, false},
        {"echo6 request", kIcmpv6EchoRequest, EtherType::ipv6, L4::icmpv6, false},
        {"mld hbh", kMldv2ReportHbh, EtherType::ipv6, L4::icmpv6, false},
        {"udp6 dstopts", kUdp6DstOpts, EtherType::ipv6, L4::udp, false},
        {"v6 first fragment", kIpv6FirstFragment, EtherType::ipv6, L4::icmpv6, true},
        {"v6 last fragment", kIpv6LastFragment, EtherType::ipv6, L4::none, true},
    };
    return v;
}

TEST(WireFrame, ParsesEveryCapture) {
    for (const auto& e : all_captures()) {
        auto f = parse_frame(e.frame);
        ASSERT_TRUE(f) << e.name;
        EXPECT_EQ(f->eth.ethertype(), e.l3) << e.name;
        EXPECT_EQ(f->arp.has_value(), e.l3 == EtherType::arp) << e.name;
        EXPECT_EQ(f->ipv4.has_value(), e.l3 == EtherType::ipv4) << e.name;
        EXPECT_EQ(f->ipv6.has_value(), e.l3 == EtherType::ipv6) << e.name;
        EXPECT_EQ(l4_of(*f), e.l4) << e.name;
        EXPECT_EQ(f->has_l4(), e.l4 != L4::none) << e.name;
        EXPECT_EQ(f->ip_fragment, e.fragment) << e.name;
    }
}

TEST(WireFrame, LayersPointIntoTheFrame) {
    auto f = parse_frame(kTcpData6);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->ipv6->packet().data(), kTcpData6.data() + 14);
    EXPECT_EQ(f->tcp->segment().data(), kTcpData6.data() + 54);
    EXPECT_EQ(f->tcp->payload().data() + f->tcp->payload().size(),
              kTcpData6.data() + kTcpData6.size());
}

TEST(WireFrame, FirstFragmentWithUnparsableL4IsNotAnError) {
    // A UDP first fragment whose length field covers all fragments: synthesised from the udp4
    // capture by setting MF and shrinking nothing but the claim (UDP length 1000).
    std::vector<std::byte> f(kUdp4.begin(), kUdp4.end());
    f[14 + 6] |= std::byte{0x20};
    f[14 + 20 + 4] = std::byte{0x03};
    auto p = parse_frame(f);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->ip_fragment);
    EXPECT_FALSE(p->udp);
    // Without MF the same bytes are a broken datagram.
    f[14 + 6] &= ~std::byte{0x20};
    EXPECT_EQ(parse_frame(f).error(), Errc::bad_length);
}

TEST(WireFrame, ErrorsComeFromTheFailingLayer) {
    EXPECT_EQ(parse_frame(kQinQArpRequest).error(), Errc::unsupported);
    EXPECT_EQ(parse_frame(ByteView(kTcpSyn4).first(14 + 20 + 19)).error(), Errc::truncated);
    EXPECT_EQ(parse_frame(ByteView(kArpRequest).first(20)).error(), Errc::truncated);
    std::vector<std::byte> v(kIcmpEchoRequest.begin(), kIcmpEchoRequest.end());
    v[14] = std::byte{0x55};
    EXPECT_EQ(parse_frame(v).error(), Errc::bad_version);
}

TEST(WireFrame, UnknownProtocolsStopQuietly) {
    std::vector<std::byte> lldp(kArpRequest.begin(), kArpRequest.end());
    lldp[12] = std::byte{0x88};
    lldp[13] = std::byte{0xcc};
    auto f = parse_frame(lldp);
    ASSERT_TRUE(f);
    EXPECT_FALSE(f->arp || f->ipv4 || f->ipv6);

    std::vector<std::byte> gre(kUdp4.begin(), kUdp4.end());
    gre[14 + 9] = std::byte{47};
    auto g = parse_frame(gre);
    ASSERT_TRUE(g);
    EXPECT_TRUE(g->ipv4);
    EXPECT_FALSE(g->has_l4());
}

TEST(WireFrame, ParsePathDoesNotAllocate) {
    const auto& caps = all_captures();  // built before counting
    std::size_t layers = 0;
    test::AllocGuard guard;
    for (const auto& e : caps) {
        for (std::size_t n = 0; n <= e.frame.size(); ++n) {
            auto f = parse_frame(e.frame.first(n));
            if (!f) continue;
            ++layers;
            if (f->tcp) {
                const TcpOptions o = f->tcp->parse_options();
                if (!o.malformed) ++layers;
                auto it = f->tcp->option_iter();
                while (it.next())
                    ++layers;
            }
            if (f->ipv4 && f->ipv4->header_checksum_ok()) ++layers;
            if (f->icmpv4 && f->icmpv4->checksum_ok()) ++layers;
        }
    }
    EXPECT_EQ(guard.count(), 0u);
    EXPECT_GT(layers, caps.size());
}

}  // namespace
}  // namespace slipway::wire
