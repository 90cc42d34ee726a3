// IPv4 and IPv6 views against captured frames (see captures/wire_captures.hpp for provenance).
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/ipv6.hpp"

namespace slipway::wire {
namespace {

using namespace slipway::test_captures;

constexpr Ipv4Addr kIpA = Ipv4Addr::from_octets(10, 99, 0, 1);
constexpr Ipv4Addr kIpB = Ipv4Addr::from_octets(10, 99, 0, 2);

template <class A>
std::vector<std::byte> l3(const A& frame) {
    return {frame.begin() + 14, frame.end()};
}

bool same(ByteView a, ByteView b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

Ipv6Addr v6(const char* text) {
    auto a = Ipv6Addr::parse(text);
    EXPECT_TRUE(a);
    return a ? *a : Ipv6Addr{};
}

// ---------------------------------------------------------------------------------------- IPv4

TEST(WireIpv4, DeconstructsEchoRequest) {
    const auto pkt = l3(kIcmpEchoRequest);
    auto ip = Ipv4View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->header_len(), 20u);
    EXPECT_EQ(ip->total_len(), 84);
    EXPECT_EQ(ip->tos(), 0);
    EXPECT_EQ(ip->ident(), 17644);
    EXPECT_TRUE(ip->dont_fragment());
    EXPECT_FALSE(ip->more_fragments());
    EXPECT_FALSE(ip->is_fragment());
    EXPECT_EQ(ip->ttl(), 64);
    EXPECT_EQ(ip->protocol(), IpProto::icmp);
    EXPECT_TRUE(ip->header_checksum_ok());
    EXPECT_EQ(ip->src(), kIpA);
    EXPECT_EQ(ip->dst(), kIpB);
    EXPECT_TRUE(ip->options().empty());
    EXPECT_EQ(ip->payload().size(), 64u);
    EXPECT_EQ(ip->payload().data(), pkt.data() + 20);
}

TEST(WireIpv4, DeconstructsTosAndOptions) {
    // The kernel's port unreachable carries tos 0xc0 (CS6); the probe carried NOP + record route.
    auto unreach = Ipv4View::parse(ByteView(kIcmpPortUnreachable).subspan(14));
    ASSERT_TRUE(unreach);
    EXPECT_EQ(unreach->dscp(), 48);
    EXPECT_EQ(unreach->ecn(), 0);

    const auto pkt = l3(kUdpWithIpOptions);
    auto ip = Ipv4View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->header_len(), 32u);
    EXPECT_TRUE(ip->header_checksum_ok());
    ASSERT_EQ(ip->options().size(), 12u);
    EXPECT_EQ(ip->options()[0], std::byte{1});  // NOP
    EXPECT_EQ(ip->options()[1], std::byte{7});  // RR
    EXPECT_EQ(ip->protocol(), IpProto::udp);
    EXPECT_EQ(ip->payload().size(), 11u);
    EXPECT_EQ(ip->payload().data(), pkt.data() + 32);
}

TEST(WireIpv4, DeconstructsFragments) {
    auto first = Ipv4View::parse(ByteView(kIpv4FirstFragment).subspan(14));
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->more_fragments());
    EXPECT_EQ(first->frag_offset(), 0);
    EXPECT_TRUE(first->is_fragment());
    EXPECT_TRUE(first->is_first_fragment());
    EXPECT_EQ(first->payload().size(), 1480u);

    auto last = Ipv4View::parse(ByteView(kIpv4LastFragment).subspan(14));
    ASSERT_TRUE(last);
    EXPECT_FALSE(last->more_fragments());
    EXPECT_EQ(last->frag_offset_bytes(), 2960u);
    EXPECT_TRUE(last->is_fragment());
    EXPECT_FALSE(last->is_first_fragment());
    EXPECT_EQ(last->ident(), first->ident());
}

TEST(WireIpv4, ConstructsIdenticalBytes) {
    const auto pkt = l3(kIcmpEchoRequest);
    Ipv4Repr r;
    r.src = kIpA;
    r.dst = kIpB;
    r.protocol = IpProto::icmp;
    r.ttl = 64;
    r.ident = 17644;
    r.dont_fragment = true;
    r.payload_len = 64;
    std::array<std::byte, kIpv4MaxHeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 20u);
    EXPECT_TRUE(same(ByteView(out).first(20), ByteView(pkt).first(20)));  // checksum included

    for (const auto* cap : {&kUdpWithIpOptions}) {
        const auto opt = l3(*cap);
        auto v = Ipv4View::parse(opt);
        ASSERT_TRUE(v);
        auto m = Ipv4Repr::from(*v).emit(out);
        ASSERT_TRUE(m);
        EXPECT_EQ(*m, 32u);
        EXPECT_TRUE(same(ByteView(out).first(32), v->header()));
    }
    for (auto frame : {ByteView(kIpv4FirstFragment), ByteView(kIpv4LastFragment),
                       ByteView(kIcmpPortUnreachable)}) {
        auto v = Ipv4View::parse(frame.subspan(14));
        ASSERT_TRUE(v);
        auto m = Ipv4Repr::from(*v).emit(out);
        ASSERT_TRUE(m);
        EXPECT_TRUE(same(ByteView(out).first(*m), v->header()));
    }
}

TEST(WireIpv4, EmitRejectsBadArguments) {
    std::array<std::byte, 60> out{};
    Ipv4Repr r;
    EXPECT_EQ(r.emit(std::span(out).first(19)).error(), Errc::too_large);
    r.options_len = 3;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
    r.options_len = 44;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
    r.options_len = 0;
    r.payload_len = 65535 - 19;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
    r.payload_len = 0;
    r.frag_offset = 0x2000;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
}

TEST(WireIpv4, TruncatedAtEveryLength) {
    const auto pkt = l3(kIcmpEchoRequest);
    for (std::size_t n = 0; n < pkt.size(); ++n) {
        auto ip = Ipv4View::parse(ByteView(pkt).first(n));
        ASSERT_FALSE(ip) << n;
        EXPECT_EQ(ip.error(), Errc::truncated) << n;
    }
    const auto opt = l3(kUdpWithIpOptions);
    for (std::size_t n = 20; n < 32; ++n) {  // IHL says 32 bytes of header
        auto ip = Ipv4View::parse(ByteView(opt).first(n));
        ASSERT_FALSE(ip) << n;
        EXPECT_EQ(ip.error(), Errc::truncated) << n;
    }
}

TEST(WireIpv4, TrailingPaddingIsNotPayload) {
    auto pkt = l3(kUdp4);  // 39-byte packet: a real NIC pads this frame to 60 bytes
    const std::size_t total = pkt.size();
    pkt.resize(46, std::byte{0});
    auto ip = Ipv4View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->packet().size(), total);
    EXPECT_EQ(ip->payload().size(), total - 20);
}

TEST(WireIpv4, RejectsBadLengthFieldsAndVersion) {
    const auto pkt = l3(kIcmpEchoRequest);
    auto with = [&](std::size_t i, std::uint8_t v) {
        auto p = pkt;
        p[i] = std::byte{v};
        return p;
    };
    EXPECT_EQ(Ipv4View::parse(with(0, 0x44)).error(), Errc::bad_length);  // IHL 4 < 5 (§3.1)
    EXPECT_EQ(Ipv4View::parse(with(0, 0x40)).error(), Errc::bad_length);
    EXPECT_EQ(Ipv4View::parse(with(0, 0x65)).error(), Errc::bad_version);
    EXPECT_EQ(Ipv4View::parse(with(3, 19)).error(), Errc::bad_length);  // total length < header
    EXPECT_EQ(Ipv4View::parse(with(3, 85)).error(), Errc::truncated);   // beyond the buffer
    const auto header_only = with(3, 20);  // a header-only packet is fine
    auto shortened = Ipv4View::parse(header_only);
    ASSERT_TRUE(shortened);
    EXPECT_TRUE(shortened->payload().empty());
    EXPECT_FALSE(shortened->header_checksum_ok());
    // IHL 15 (60 bytes) within an 84-byte buffer parses; within a 40-byte one it does not.
    const auto long_ihl = with(0, 0x4f);
    EXPECT_TRUE(Ipv4View::parse(long_ihl));
    EXPECT_EQ(Ipv4View::parse(ByteView(long_ihl).first(40)).error(), Errc::truncated);
}

TEST(WireIpv4, DetectsBadHeaderChecksum) {
    auto pkt = l3(kIcmpEchoRequest);
    pkt[8] = std::byte{63};  // TTL decremented without updating the checksum
    auto ip = Ipv4View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_FALSE(ip->header_checksum_ok());
}

// ---------------------------------------------------------------------------------------- IPv6

TEST(WireIpv6, DeconstructsEchoRequest) {
    const auto pkt = l3(kIcmpv6EchoRequest);
    auto ip = Ipv6View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->traffic_class(), 0);
    EXPECT_EQ(ip->flow_label(), 0xeaf5fu);
    EXPECT_EQ(ip->payload_len(), 64);
    EXPECT_EQ(ip->next_header(), IpProto::icmpv6);
    EXPECT_EQ(ip->hop_limit(), 64);
    EXPECT_EQ(ip->src(), v6("fd00:99::1"));
    EXPECT_EQ(ip->dst(), v6("fd00:99::2"));
    EXPECT_EQ(ip->upper_protocol(), IpProto::icmpv6);
    EXPECT_EQ(ip->upper_offset(), 40u);
    EXPECT_EQ(ip->ext_header_count(), 0);
    EXPECT_FALSE(ip->fragment());
    EXPECT_EQ(ip->upper_payload().size(), 64u);
    EXPECT_TRUE(ip->ext_headers().empty());
}

TEST(WireIpv6, WalksHopByHop) {
    // MLDv2 report: HBH (router alert + PadN, 8 bytes) then ICMPv6 (RFC 3810 §5).
    auto ip = Ipv6View::parse(ByteView(kMldv2ReportHbh).subspan(14));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->next_header(), IpProto::hop_by_hop);
    EXPECT_EQ(ip->hop_limit(), 1);
    EXPECT_TRUE(ip->src().is_unspecified());
    EXPECT_EQ(ip->upper_protocol(), IpProto::icmpv6);
    EXPECT_EQ(ip->upper_offset(), 48u);
    EXPECT_EQ(ip->ext_header_count(), 1);
    EXPECT_EQ(ip->ext_headers().size(), 8u);
    EXPECT_EQ(ip->upper_payload().size(), 48u);
}

TEST(WireIpv6, WalksDestinationOptions) {
    auto ip = Ipv6View::parse(ByteView(kUdp6DstOpts).subspan(14));
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->next_header(), IpProto::ipv6_opts);
    EXPECT_EQ(ip->upper_protocol(), IpProto::udp);
    EXPECT_EQ(ip->upper_offset(), 48u);
    EXPECT_EQ(ip->upper_payload().size(), 11u);
}

TEST(WireIpv6, DeconstructsFragments) {
    auto first = Ipv6View::parse(ByteView(kIpv6FirstFragment).subspan(14));
    ASSERT_TRUE(first);
    ASSERT_TRUE(first->fragment());
    EXPECT_EQ(first->fragment()->offset, 0);
    EXPECT_TRUE(first->fragment()->more);
    EXPECT_EQ(first->fragment()->ident, 0xf076078bu);
    EXPECT_EQ(first->upper_protocol(), IpProto::icmpv6);
    EXPECT_EQ(first->upper_offset(), 48u);

    auto last = Ipv6View::parse(ByteView(kIpv6LastFragment).subspan(14));
    ASSERT_TRUE(last);
    ASSERT_TRUE(last->fragment());
    EXPECT_EQ(last->fragment()->offset_bytes(), 2896u);
    EXPECT_FALSE(last->fragment()->more);
    EXPECT_FALSE(last->fragment()->is_first());
    EXPECT_EQ(last->fragment()->ident, 0xf076078bu);
    EXPECT_EQ(last->upper_protocol(), IpProto::icmpv6);  // the fragment header's Next Header
    EXPECT_EQ(last->upper_payload().size(), 112u);
}

TEST(WireIpv6, HopByHopOnlyFirst) {
    // RFC 8200 §4.1: the destination options header of the capture now claims HBH follows it.
    auto pkt = l3(kUdp6DstOpts);
    pkt[40] = std::byte{0};
    EXPECT_EQ(Ipv6View::parse(pkt).error(), Errc::unsupported);
}

TEST(WireIpv6, RejectsJumbogram) {
    auto pkt = l3(kMldv2ReportHbh);
    pkt[4] = pkt[5] = std::byte{0};
    EXPECT_EQ(Ipv6View::parse(pkt).error(), Errc::unsupported);
}

// Synthetic chains: the capture's fixed header followed by `n` 8-byte destination options headers
// and an 8-byte UDP header (no capture has long chains; real stacks do not send them).
std::vector<std::byte> dstopts_chain(std::size_t n) {
    auto pkt = l3(kUdp6DstOpts);
    pkt.resize(40);
    const std::size_t plen = n * 8 + 8;
    pkt[4] = std::byte{static_cast<unsigned char>(plen >> 8)};
    pkt[5] = std::byte{static_cast<unsigned char>(plen & 0xff)};
    pkt[6] = static_cast<std::byte>(n == 0 ? 17 : 60);
    for (std::size_t i = 0; i < n; ++i) {
        const std::array<std::byte, 8> h{static_cast<std::byte>(i + 1 == n ? 17 : 60), std::byte{0},
                                         std::byte{1}, std::byte{4}};
        pkt.insert(pkt.end(), h.begin(), h.end());
    }
    const std::array<std::byte, 8> udp{std::byte{0}, std::byte{1}, std::byte{0},
                                       std::byte{2}, std::byte{0}, std::byte{8}};
    pkt.insert(pkt.end(), udp.begin(), udp.end());
    return pkt;
}

TEST(WireIpv6, BoundsTheExtensionHeaderWalk) {
    for (std::size_t n = 0; n <= kIpv6MaxExtHeaders; ++n) {
        const auto pkt = dstopts_chain(n);
        auto ip = Ipv6View::parse(pkt);
        ASSERT_TRUE(ip) << n;
        EXPECT_EQ(ip->upper_protocol(), IpProto::udp);
        EXPECT_EQ(ip->upper_offset(), 40 + 8 * n);
        EXPECT_EQ(ip->ext_header_count(), n);
    }
    EXPECT_EQ(Ipv6View::parse(dstopts_chain(kIpv6MaxExtHeaders + 1)).error(), Errc::unsupported);
}

TEST(WireIpv6, WalksAuthenticationHeader) {
    // Synthetic (no IPsec on the test kernel): AH with Payload Len 4 is (4 + 2) * 4 = 24 bytes
    // (RFC 4302 §2.2), then UDP.
    auto pkt = dstopts_chain(0);
    pkt[5] = std::byte{32};
    pkt[6] = std::byte{51};
    std::array<std::byte, 24> ah{std::byte{17}, std::byte{4}};
    pkt.insert(pkt.begin() + 40, ah.begin(), ah.end());
    auto ip = Ipv6View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->upper_protocol(), IpProto::udp);
    EXPECT_EQ(ip->upper_offset(), 64u);
}

TEST(WireIpv6, StopsAtEspAndNoNextHeader) {
    for (std::uint8_t nh : {std::uint8_t{50}, std::uint8_t{59}}) {
        auto pkt = l3(kUdp6DstOpts);
        pkt[40] = std::byte{nh};
        auto ip = Ipv6View::parse(pkt);
        ASSERT_TRUE(ip);
        EXPECT_EQ(static_cast<std::uint8_t>(ip->upper_protocol()), nh);
        EXPECT_EQ(ip->upper_offset(), 48u);
    }
}

TEST(WireIpv6, ExtensionHeaderOverrunIsTruncated) {
    auto pkt = l3(kUdp6DstOpts);
    pkt[41] = std::byte{2};  // 24 bytes of options, but only 19 bytes of payload
    EXPECT_EQ(Ipv6View::parse(pkt).error(), Errc::truncated);
    auto frag = dstopts_chain(0);
    frag[6] = std::byte{44};  // fragment header needs 8 bytes: exactly the 8 present
    frag[40] = std::byte{59};
    EXPECT_TRUE(Ipv6View::parse(frag));
    frag[5] = std::byte{7};
    frag.resize(47);
    EXPECT_EQ(Ipv6View::parse(frag).error(), Errc::truncated);
}

TEST(WireIpv6, TruncatedAtEveryLength) {
    const auto pkt = l3(kIcmpv6EchoRequest);
    for (std::size_t n = 0; n < pkt.size(); ++n) {
        auto ip = Ipv6View::parse(ByteView(pkt).first(n));
        ASSERT_FALSE(ip) << n;
        EXPECT_EQ(ip.error(), Errc::truncated) << n;
    }
    const auto hbh = l3(kMldv2ReportHbh);
    auto cut = hbh;
    cut[4] = std::byte{0};
    for (std::uint8_t plen = 1; plen < 8; ++plen) {  // HBH header itself cut short
        cut[5] = std::byte{plen};
        EXPECT_EQ(Ipv6View::parse(cut).error(), Errc::truncated) << int{plen};
    }
}

TEST(WireIpv6, TrailingPaddingAndVersion) {
    auto pkt = l3(kUdp6);
    const std::size_t total = pkt.size();
    pkt.resize(total + 6, std::byte{0});
    auto ip = Ipv6View::parse(pkt);
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->packet().size(), total);
    EXPECT_EQ(ip->upper_payload().size(), total - 40);
    pkt[0] = std::byte{0x45};
    EXPECT_EQ(Ipv6View::parse(pkt).error(), Errc::bad_version);
}

TEST(WireIpv6, ConstructsIdenticalBytes) {
    const auto pkt = l3(kIcmpv6EchoRequest);
    Ipv6Repr r{v6("fd00:99::1"), v6("fd00:99::2"), IpProto::icmpv6, 64, 0, 0xeaf5f, 64};
    std::array<std::byte, kIpv6HeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 40u);
    EXPECT_TRUE(same(out, ByteView(pkt).first(40)));
    for (auto frame : {ByteView(kMldv2ReportHbh), ByteView(kIpv6FirstFragment),
                       ByteView(kUdp6DstOpts), ByteView(kTcpSyn6)}) {
        auto v = Ipv6View::parse(frame.subspan(14));
        ASSERT_TRUE(v);
        ASSERT_TRUE(Ipv6Repr::from(*v).emit(out));
        EXPECT_TRUE(same(out, v->header()));
    }
    EXPECT_EQ(r.emit(std::span(out).first(39)).error(), Errc::too_large);
    r.flow_label = 0x100000;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
}

}  // namespace
}  // namespace slipway::wire
