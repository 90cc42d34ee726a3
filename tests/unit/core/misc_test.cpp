// Strong types, the virtio-net header codec, log level parsing and the rate limiter.
#include <gtest/gtest.h>

#include <array>

#include "slipway/core/log.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/virtio/net_hdr.hpp"

namespace slipway {
namespace {

TEST(TcpSeq, ComparesAcrossWraparound) {
    const TcpSeq a{0xfffffff0u};
    const TcpSeq b = a + 0x20;  // wrapped past zero
    EXPECT_EQ(b.v, 0x10u);
    EXPECT_TRUE(a < b);
    EXPECT_TRUE(b > a);
    EXPECT_TRUE(a <= a);
    EXPECT_EQ(b - a, 0x20u);
    EXPECT_FALSE(TcpSeq{0} < TcpSeq{0x80000001u} && TcpSeq{0x80000001u} < TcpSeq{0});
}

TEST(Addresses, ParseAndPrint) {
    auto m = MacAddr::parse("52:54:00:ab:CD:ef");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->to_string(), "52:54:00:ab:cd:ef");
    EXPECT_FALSE(MacAddr::parse("52:54:00:ab:cd"));
    EXPECT_FALSE(MacAddr::parse("52:54:00:ab:cd:eg"));
    EXPECT_TRUE(MacAddr::broadcast().is_broadcast());
    EXPECT_TRUE(MacAddr::broadcast().is_multicast());

    auto v4 = Ipv4Addr::parse("192.168.127.254");
    ASSERT_TRUE(v4);
    EXPECT_EQ(*v4, Ipv4Addr::from_octets(192, 168, 127, 254));
    EXPECT_EQ(v4->to_string(), "192.168.127.254");
    EXPECT_FALSE(Ipv4Addr::parse("192.168.127"));
    EXPECT_FALSE(Ipv4Addr::parse("192.168.127.256"));
    EXPECT_FALSE(Ipv4Addr::parse(std::string(64, '1')));

    auto v6 = Ipv6Addr::parse("fe80::1");
    ASSERT_TRUE(v6);
    EXPECT_TRUE(v6->is_link_local());
    EXPECT_EQ(v6->to_string(), "fe80::1");
    EXPECT_FALSE(Ipv6Addr::parse("fe80::1::2"));

    std::array<std::byte, 4> buf{};
    v4->store(buf.data());
    EXPECT_EQ(buf[0], std::byte{192});
    EXPECT_EQ(Ipv4Addr::load(buf.data()), *v4);
}

TEST(Addresses, PrefixMaskAndMembership) {
    EXPECT_EQ(Ipv4Addr::prefix_mask(0), 0u);
    EXPECT_EQ(Ipv4Addr::prefix_mask(1), 0x80000000u);
    EXPECT_EQ(Ipv4Addr::prefix_mask(24), 0xffffff00u);
    EXPECT_EQ(Ipv4Addr::prefix_mask(32), 0xffffffffu);
    const Ipv4Addr net = Ipv4Addr::from_octets(192, 168, 127, 0);
    EXPECT_TRUE(Ipv4Addr::from_octets(192, 168, 127, 254).in_prefix(net, 24));
    EXPECT_FALSE(Ipv4Addr::from_octets(192, 168, 128, 1).in_prefix(net, 24));
    EXPECT_TRUE(Ipv4Addr::from_octets(192, 168, 128, 1).in_prefix(net, 16));
    EXPECT_TRUE(Ipv4Addr::from_octets(8, 8, 8, 8).in_prefix(net, 0));
    EXPECT_FALSE(Ipv4Addr::from_octets(192, 168, 127, 1).in_prefix(net, 32));
}

TEST(VirtioNetHdr, RoundTripV1AndLegacy) {
    // A TSO frame as a Linux guest sends it: NEEDS_CSUM, GSO_TCPV4, hdr_len 66, gso_size 1448,
    // csum_start 34 (Ethernet + IPv4), csum_offset 16 (TCP checksum field), num_buffers 1.
    const auto wire =
        make_bytes(0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x01, 0x00);
    auto h = virtio::NetHdr::parse(wire);
    ASSERT_TRUE(h);
    EXPECT_TRUE(h->needs_csum());
    EXPECT_TRUE(h->is_gso());
    EXPECT_EQ(h->gso_kind(), virtio::kGsoTcpV4);
    EXPECT_EQ(h->hdr_len, 66);
    EXPECT_EQ(h->gso_size, 1448);
    EXPECT_EQ(h->csum_start, 34);
    EXPECT_EQ(h->csum_offset, 16);
    EXPECT_EQ(h->num_buffers, 1);
    std::array<std::byte, 12> out{};
    ASSERT_EQ(h->emit(out).value_or(0), 12u);
    EXPECT_EQ(out, wire);

    auto legacy = virtio::NetHdr::parse(std::span(wire).first(10), virtio::kNetHdrLegacyLen);
    ASSERT_TRUE(legacy);
    EXPECT_EQ(legacy->num_buffers, 0);
    std::array<std::byte, 10> out10{};
    ASSERT_EQ(legacy->emit(out10, virtio::kNetHdrLegacyLen).value_or(0), 10u);
    EXPECT_TRUE(std::equal(out10.begin(), out10.end(), wire.begin()));
}

TEST(VirtioNetHdr, RejectsBadInput) {
    auto ok = make_bytes(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_TRUE(virtio::NetHdr::parse(ok));
    for (std::size_t n = 0; n < 12; ++n)
        EXPECT_EQ(virtio::NetHdr::parse(std::span(ok).first(n)).error(), Errc::truncated) << n;
    EXPECT_EQ(virtio::NetHdr::parse(ok, 11).error(), Errc::invalid_argument);

    auto bad_flag = ok;
    bad_flag[0] = std::byte{0x08};
    EXPECT_EQ(virtio::NetHdr::parse(bad_flag).error(), Errc::unsupported);
    auto bad_gso = ok;
    bad_gso[1] = std::byte{2};  // no such type
    EXPECT_EQ(virtio::NetHdr::parse(bad_gso).error(), Errc::unsupported);
    auto ecn_alone = ok;
    ecn_alone[1] = std::byte{0x80};
    EXPECT_EQ(virtio::NetHdr::parse(ecn_alone).error(), Errc::unsupported);
    auto gso_no_size = ok;
    gso_no_size[1] = std::byte{virtio::kGsoTcpV6};
    EXPECT_EQ(virtio::NetHdr::parse(gso_no_size).error(), Errc::bad_length);

    virtio::NetHdr h;
    h.flags = virtio::kNetHdrFNeedsCsum;
    h.csum_start = 34;
    h.csum_offset = 16;
    EXPECT_TRUE(h.validate_for_frame(52));
    EXPECT_FALSE(h.validate_for_frame(51));
    std::array<std::byte, 4> small{};
    EXPECT_EQ(h.emit(small).error(), Errc::too_large);
}

TEST(Log, ParsesLevels) {
    EXPECT_EQ(log::parse_level("debug").value_or(spdlog::level::off), spdlog::level::debug);
    EXPECT_EQ(log::parse_level("warning").value_or(spdlog::level::off), spdlog::level::warn);
    EXPECT_FALSE(log::parse_level("loud"));
}

TEST(Log, RateLimiterLetsABurstThroughThenCounts) {
    log::RateLimiter rl(3, std::chrono::milliseconds(60'000));
    std::uint64_t suppressed = 0;
    int allowed = 0;
    for (int i = 0; i < 10; ++i)
        allowed += rl.allow(&suppressed) ? 1 : 0;
    EXPECT_EQ(allowed, 3);
    log::RateLimiter fast(1, std::chrono::milliseconds(1));
    EXPECT_TRUE(fast.allow(&suppressed));
    EXPECT_FALSE(fast.allow(&suppressed));
    EXPECT_FALSE(fast.allow(&suppressed));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(fast.allow(&suppressed));
    EXPECT_EQ(suppressed, 2u);
    log::init(spdlog::level::warn);
    for (int i = 0; i < 50; ++i)
        SLW_WARN_RATELIMITED("flood {}", i);  // must not flood or crash
}

TEST(Counter, SingleWriterCounts) {
    Counter c;
    c.inc();
    c.add(41);
    CounterSet set;
    set.add("drops.bad_length", c);
    EXPECT_EQ(set.value("drops.bad_length"), 42u);
    EXPECT_EQ(set.value("nope"), 0u);
}

}  // namespace
}  // namespace slipway
