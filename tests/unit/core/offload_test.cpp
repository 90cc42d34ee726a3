// Offload fix-up: GSO segmentation (TSO v4/v6, UDP_L4) and checksum completion, on headers cut
// from real captures.
#include "slipway/core/offload.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/wire/frame.hpp"

namespace slipway {
namespace {

using namespace slipway::wire;
namespace cap = slipway::test_captures;

constexpr std::uint16_t kMss = 1448;

// Every buffer of both classes can be taken again: nothing leaked.
bool all_returned(PacketPool& pool) {
    for (SizeClass c : {SizeClass::small, SizeClass::large}) {
        std::vector<PacketRef> v(pool.capacity(c));
        if (pool.try_alloc_burst(c, v) != v.size()) return false;
    }
    return true;
}

std::uint32_t pseudo_sum(const ParsedFrame& pf, IpProto proto, std::size_t l4_len) {
    if (pf.ipv4)
        return pseudo_header_sum_v4(pf.ipv4->src(), pf.ipv4->dst(), proto,
                                    static_cast<std::uint16_t>(l4_len));
    return pseudo_header_sum_v6(pf.ipv6->src(), pf.ipv6->dst(), proto,
                                static_cast<std::uint32_t>(l4_len));
}

// The transport checksum of a parsed frame verifies (RFC 1071: sum including the field is 0xffff).
bool l4_checksum_ok(const ParsedFrame& pf) {
    if (pf.tcp) {
        const ByteView seg = pf.tcp->segment();
        return csum_fold(csum_partial(seg, pseudo_sum(pf, IpProto::tcp, seg.size()))) == 0xffff;
    }
    if (pf.udp) {
        const ByteView dg = pf.udp->datagram();
        return csum_fold(csum_partial(dg, pseudo_sum(pf, IpProto::udp, dg.size()))) == 0xffff;
    }
    return false;
}

// A GSO super-frame as a Linux guest hands it to virtio-net: the headers of `capture` (a real
// frame), `payload_len` bytes of payload, IP and L4 lengths covering all of it, the transport
// checksum field seeded with the folded pseudo-header sum, NEEDS_CSUM with csum_start/offset,
// gso_type and gso_size (virtio 1.2 §5.1.6.2).
PacketRef make_gso(PacketPool& pool, ByteView capture, std::size_t payload_len,
                   std::uint8_t gso_type, std::uint16_t gso_size, std::uint8_t tcp_flags = 0) {
    auto pf = parse_frame(capture);
    EXPECT_TRUE(pf);
    const std::size_t l3 = pf->eth.header_len();
    const std::size_t iph = pf->ipv4 ? pf->ipv4->header_len() : kIpv6HeaderLen;
    const std::size_t l4 = l3 + iph;
    const std::size_t l4h = pf->tcp ? pf->tcp->header_len() : kUdpHeaderLen;
    const std::size_t hdrs = l4 + l4h;
    auto r = pool.try_alloc(hdrs + payload_len);
    EXPECT_TRUE(r);
    PacketRef f = std::move(*r);
    std::byte* p = f.data().data();
    std::memcpy(p, capture.data(), hdrs);
    for (std::size_t i = 0; i < payload_len; ++i)
        p[hdrs + i] = static_cast<std::byte>((i * 7 + i / 251) & 0xff);
    const std::size_t l4_len = l4h + payload_len;
    if (pf->ipv4) {
        store_be16(p + l3 + 2, static_cast<std::uint16_t>(iph + l4_len));
        store_be16(p + l3 + 10, 0);
        store_be16(p + l3 + 10, csum_finish(csum_partial(ByteView{p + l3, iph})));
    } else {
        store_be16(p + l3 + 4, static_cast<std::uint16_t>(l4_len));
    }
    std::size_t csum_off;
    IpProto proto;
    if (pf->tcp) {
        csum_off = 16;
        proto = IpProto::tcp;
        store_u8(p + l4 + 13, tcp_flags);
    } else {
        csum_off = 6;
        proto = IpProto::udp;
        store_be16(p + l4 + 4, static_cast<std::uint16_t>(l4_len));
    }
    std::uint32_t ps;
    if (pf->ipv4)
        ps = pseudo_header_sum_v4(pf->ipv4->src(), pf->ipv4->dst(), proto,
                                  static_cast<std::uint16_t>(l4_len));
    else
        ps = pseudo_header_sum_v6(pf->ipv6->src(), pf->ipv6->dst(), proto,
                                  static_cast<std::uint32_t>(l4_len));
    store_be16(p + l4 + csum_off, csum_fold(ps));  // Linux: ~csum_tcpudp_magic(..., 0)
    auto& v = f.meta().vnet;
    v.flags = virtio::kNetHdrFNeedsCsum;
    v.gso_type = gso_type;
    v.gso_size = gso_size;
    v.hdr_len = static_cast<std::uint16_t>(hdrs);
    v.csum_start = static_cast<std::uint16_t>(l4);
    v.csum_offset = static_cast<std::uint16_t>(csum_off);
    f.meta().in_port = 7;
    return f;
}

struct SegCheck {
    bool v6;
    bool tcp;
};

// The checks every segmentation result must pass, against the original super-frame.
void check_segments(const PacketRef& orig, std::span<PacketRef> segs, std::size_t n, SegCheck k) {
    auto opf = parse_frame(ByteView{orig.data()});
    ASSERT_TRUE(opf);
    const std::size_t gso = orig.meta().vnet.gso_size;
    const ByteView opayload = k.tcp ? opf->tcp->payload() : opf->udp->payload();
    const std::size_t hdrs = static_cast<std::size_t>(opayload.data() - orig.data().data());
    ASSERT_EQ(n, std::max<std::size_t>(1, (opayload.size() + gso - 1) / gso));
    std::vector<std::byte> joined;
    for (std::size_t i = 0; i < n; ++i) {
        SCOPED_TRACE(i);
        const PacketRef& s = segs[i];
        ASSERT_TRUE(s);
        EXPECT_LE(s.len(), hdrs + gso);
        EXPECT_FALSE(s.meta().vnet.is_gso());
        EXPECT_FALSE(s.meta().vnet.needs_csum());
        EXPECT_EQ(s.meta().in_port, orig.meta().in_port);
        auto pf = parse_frame(ByteView{s.data()});
        ASSERT_TRUE(pf);
        EXPECT_EQ(pf->eth.header_len(), opf->eth.header_len());
        EXPECT_EQ(pf->eth.vlan(), opf->eth.vlan());
        if (k.v6) {
            ASSERT_TRUE(pf->ipv6);
            EXPECT_EQ(std::size_t{pf->ipv6->payload_len()} + 40 + pf->eth.header_len(), s.len());
        } else {
            ASSERT_TRUE(pf->ipv4);
            EXPECT_TRUE(pf->ipv4->header_checksum_ok());
            EXPECT_EQ(std::size_t{pf->ipv4->total_len()} + pf->eth.header_len(), s.len());
            EXPECT_EQ(pf->ipv4->ident(), static_cast<std::uint16_t>(opf->ipv4->ident() + i));
            EXPECT_EQ(pf->ipv4->options().size(), opf->ipv4->options().size());
        }
        EXPECT_TRUE(l4_checksum_ok(*pf));
        ByteView payload;
        if (k.tcp) {
            ASSERT_TRUE(pf->tcp);
            payload = pf->tcp->payload();
            EXPECT_EQ(pf->tcp->seq(), opf->tcp->seq() + static_cast<std::uint32_t>(i * gso));
            EXPECT_EQ(pf->tcp->ack(), opf->tcp->ack());
            EXPECT_TRUE(std::equal(pf->tcp->options().begin(), pf->tcp->options().end(),
                                   opf->tcp->options().begin(), opf->tcp->options().end()));
            const std::uint8_t of = opf->tcp->flags();
            std::uint8_t want = of;
            // RFC 9293 §3.1 (FIN, PSH on the last), RFC 3168 §6.1.2 (CWR on the first).
            if (i + 1 != n)
                want = static_cast<std::uint8_t>(want & ~(tcp_flag::fin | tcp_flag::psh));
            if (i != 0) want = static_cast<std::uint8_t>(want & ~tcp_flag::cwr);
            EXPECT_EQ(pf->tcp->flags(), want);
        } else {
            ASSERT_TRUE(pf->udp);
            payload = pf->udp->payload();
            EXPECT_EQ(pf->udp->length(), payload.size() + 8);
            EXPECT_NE(pf->udp->checksum(), 0);
        }
        if (i + 1 != n) {
            EXPECT_EQ(payload.size(), gso);
        }
        joined.insert(joined.end(), payload.begin(), payload.end());
    }
    ASSERT_EQ(joined.size(), opayload.size());
    EXPECT_TRUE(std::equal(joined.begin(), joined.end(), opayload.begin()));
}

class Offload : public ::testing::Test {
  protected:
    PacketPool pool{PoolConfig{.small_buffers = 512, .large_buffers = 8}};
    std::vector<PacketRef> out = std::vector<PacketRef>(256);

    void TearDown() override {
        out.clear();
        EXPECT_TRUE(all_returned(pool));
    }
};

TEST_F(Offload, TsoV4FromCapturedHeaders) {
    // kTcpData4 carries the nop,nop,TS option: 32-byte TCP header, the largest payload that fits
    // a 65,535-byte IP packet is 65,483 bytes (what Linux's tcp_tso_autosize allows).
    const std::uint8_t flags = tcp_flag::ack | tcp_flag::psh | tcp_flag::fin | tcp_flag::cwr;
    PacketRef f = make_gso(pool, cap::kTcpData4, 65483, virtio::kGsoTcpV4, kMss, flags);
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, (65483u + kMss - 1) / kMss);
    check_segments(f, out, *n, {false, true});
    for (std::size_t i = 0; i < *n; ++i)
        EXPECT_LE(out[i].len(), 14u + 20 + 32 + kMss);
}

TEST_F(Offload, TsoV4SequenceWrapsAround) {
    PacketRef f = make_gso(pool, cap::kTcpData4, 10000, virtio::kGsoTcpV4, kMss, tcp_flag::ack);
    store_be32(f.data().data() + 34 + 4, 0xffffff00u);  // seq just below 2^32 (checksum unused)
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n);
    check_segments(f, out, *n, {false, true});
    auto last = parse_frame(ByteView{out[*n - 1].data()});
    ASSERT_TRUE(last);
    EXPECT_EQ(last->tcp->seq().v, 0xffffff00u + static_cast<std::uint32_t>((*n - 1) * kMss));
}

TEST_F(Offload, TsoV6FromCapturedHeaders) {
    const std::uint8_t flags = tcp_flag::ack | tcp_flag::psh;
    PacketRef f = make_gso(pool, cap::kTcpData6, 60000, virtio::kGsoTcpV6, 1428, flags);
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, (60000u + 1428 - 1) / 1428);
    check_segments(f, out, *n, {true, true});
    for (std::size_t i = 0; i < *n; ++i)
        EXPECT_LE(out[i].len(), 14u + 40 + 32 + 1428);
}

TEST_F(Offload, TsoWithVlanTag) {
    // Insert an 802.1Q tag (VID 10) into the captured headers.
    std::vector<std::byte> tagged(cap::kTcpData4.begin(), cap::kTcpData4.end());
    const auto tag = make_bytes(0x81, 0x00, 0x00, 0x0a);
    tagged.insert(tagged.begin() + 12, tag.begin(), tag.end());
    PacketRef f = make_gso(pool, tagged, 5000, virtio::kGsoTcpV4, kMss, tcp_flag::ack);
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n) << to_string(n.error());
    check_segments(f, out, *n, {false, true});
}

TEST_F(Offload, UdpL4V4AndV6) {
    {
        PacketRef f = make_gso(pool, cap::kUdp4, 30000, virtio::kGsoUdpL4, 1472);
        auto n = segment_gso(f, pool, out);
        ASSERT_TRUE(n) << to_string(n.error());
        EXPECT_EQ(*n, (30000u + 1471) / 1472);
        check_segments(f, out, *n, {false, false});
        for (std::size_t i = 0; i < *n; ++i)
            out[i].reset();
    }
    {
        PacketRef f = make_gso(pool, cap::kUdp6, 30000, virtio::kGsoUdpL4, 1452);
        auto n = segment_gso(f, pool, out);
        ASSERT_TRUE(n) << to_string(n.error());
        check_segments(f, out, *n, {true, false});
    }
}

TEST_F(Offload, UdpL4WithIpv4Options) {
    PacketRef f = make_gso(pool, cap::kUdpWithIpOptions, 4000, virtio::kGsoUdpL4, 1000);
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, 4u);
    check_segments(f, out, *n, {false, false});
}

TEST_F(Offload, PayloadWithinGsoSizeYieldsOneSegment) {
    PacketRef f = make_gso(pool, cap::kTcpData4, 1000, virtio::kGsoTcpV4, kMss,
                           tcp_flag::ack | tcp_flag::psh | tcp_flag::cwr);
    auto n = segment_gso(f, pool, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    check_segments(f, out, *n, {false, true});
    // Exactly one gso_size of payload: still one segment.
    PacketRef g = make_gso(pool, cap::kTcpData4, kMss, virtio::kGsoTcpV4, kMss, tcp_flag::ack);
    out[0].reset();
    n = segment_gso(g, pool, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
}

TEST_F(Offload, CompleteChecksumOnCapturedPartialFrames) {
    // These frames were captured on a veth, which hands frames on with CHECKSUM_PARTIAL: their
    // transport checksum field holds exactly the pseudo-header seed a virtio-net guest leaves for
    // NEEDS_CSUM. Completing them must give a valid checksum and touch nothing else.
    struct Case {
        ByteView frame;
        std::size_t l4;
        std::size_t off;
        bool tcp;
    };
    const Case cases[] = {{cap::kTcpData4, 34, 16, true},
                          {cap::kTcpData6, 54, 16, true},
                          {cap::kUdp4, 34, 6, false},
                          {cap::kUdp6, 54, 6, false}};
    for (const Case& c : cases) {
        SCOPED_TRACE(c.frame.size());
        auto pf = parse_frame(c.frame);
        ASSERT_TRUE(pf);
        const std::size_t l4_len = c.frame.size() - c.l4;
        const IpProto proto = c.tcp ? IpProto::tcp : IpProto::udp;
        // The kernel's seed is the folded, uninverted pseudo-header sum.
        EXPECT_EQ(load_be16(c.frame.data() + c.l4 + c.off),
                  csum_fold(pseudo_sum(*pf, proto, l4_len)));
        EXPECT_FALSE(l4_checksum_ok(*pf));

        auto r = pool.try_alloc(c.frame.size());
        ASSERT_TRUE(r);
        std::memcpy(r->data().data(), c.frame.data(), c.frame.size());
        auto& v = r->meta().vnet;
        v.flags = virtio::kNetHdrFNeedsCsum;
        v.csum_start = static_cast<std::uint16_t>(c.l4);
        v.csum_offset = static_cast<std::uint16_t>(c.off);
        ASSERT_TRUE(complete_checksum(*r));
        EXPECT_FALSE(r->meta().vnet.needs_csum());
        auto done = parse_frame(ByteView{r->data()});
        ASSERT_TRUE(done);
        EXPECT_TRUE(l4_checksum_ok(*done));
        for (std::size_t i = 0; i < c.frame.size(); ++i)
            if (i != c.l4 + c.off && i != c.l4 + c.off + 1) {
                EXPECT_EQ(r->data()[i], c.frame[i]) << i;
            }
        // Nothing to do the second time.
        const auto sum = load_be16(r->data().data() + c.l4 + c.off);
        EXPECT_TRUE(complete_checksum(*r));
        EXPECT_EQ(load_be16(r->data().data() + c.l4 + c.off), sum);
    }
}

TEST_F(Offload, CompleteChecksumRejectsOffsetsOutsideTheFrame) {
    auto r = pool.try_alloc(cap::kUdp4.size());
    ASSERT_TRUE(r);
    std::memcpy(r->data().data(), cap::kUdp4.data(), cap::kUdp4.size());
    auto& v = r->meta().vnet;
    v.flags = virtio::kNetHdrFNeedsCsum;
    v.csum_start = 200;
    v.csum_offset = 6;
    auto res = complete_checksum(*r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), Errc::bad_length);
    v.csum_start = 34;
    v.csum_offset = static_cast<std::uint16_t>(cap::kUdp4.size() - 34 - 1);  // field runs past end
    res = complete_checksum(*r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), Errc::bad_length);
    EXPECT_TRUE(r->meta().vnet.needs_csum());
}

TEST_F(Offload, HostileInputsAreErrors) {
    auto expect_err = [&](const PacketRef& f, Errc e) {
        auto n = segment_gso(f, pool, out);
        ASSERT_FALSE(n);
        EXPECT_EQ(n.error(), e) << to_string(n.error());
        for (const PacketRef& s : out)
            EXPECT_FALSE(s);
    };
    // gso_size 0: rejected by the header parser already, and here too.
    {
        std::array<std::byte, 12> h{};
        h[1] = std::byte{virtio::kGsoTcpV4};
        auto p = virtio::NetHdr::parse(h);
        ASSERT_FALSE(p);
        PacketRef f = make_gso(pool, cap::kTcpData4, 3000, virtio::kGsoTcpV4, kMss);
        f.meta().vnet.gso_size = 0;
        expect_err(f, Errc::bad_length);
    }
    // csum_start beyond the frame / not at the transport header.
    {
        PacketRef f = make_gso(pool, cap::kTcpData4, 3000, virtio::kGsoTcpV4, kMss);
        f.meta().vnet.csum_start = 60000;
        expect_err(f, Errc::bad_length);
        f.meta().vnet.csum_start = 34;
        f.meta().vnet.csum_offset = 6;
        expect_err(f, Errc::bad_length);
    }
    // Truncated TCP header: the IP packet ends 10 bytes into it.
    {
        PacketRef f = make_gso(pool, cap::kTcpData4, 3000, virtio::kGsoTcpV4, kMss);
        store_be16(f.data().data() + 14 + 2, 30);
        ASSERT_TRUE(f.set_len(14 + 30));
        expect_err(f, Errc::truncated);
    }
    // IP total length larger than the frame.
    {
        PacketRef f = make_gso(pool, cap::kTcpData4, 3000, virtio::kGsoTcpV4, kMss);
        ASSERT_TRUE(f.set_len(f.len() - 100));
        expect_err(f, Errc::truncated);
    }
    // UDP length disagreeing with the IP length.
    {
        PacketRef f = make_gso(pool, cap::kUdp4, 3000, virtio::kGsoUdpL4, 1000);
        store_be16(f.data().data() + 34 + 4, 1000);
        expect_err(f, Errc::bad_length);
    }
    // GSO type against the IP version, UFO, and a non-GSO frame.
    {
        PacketRef f = make_gso(pool, cap::kTcpData4, 3000, virtio::kGsoTcpV6, kMss);
        expect_err(f, Errc::bad_version);
        f.meta().vnet.gso_type = virtio::kGsoUdp;
        expect_err(f, Errc::unsupported);
        f.meta().vnet.gso_type = virtio::kGsoUdpL4;  // but the packet is TCP
        expect_err(f, Errc::unsupported);
        f.meta().vnet.gso_type = virtio::kGsoNone;
        expect_err(f, Errc::invalid_argument);
    }
    // IPv6 with an extension header.
    {
        auto r = pool.try_alloc(cap::kUdp6DstOpts.size());
        ASSERT_TRUE(r);
        std::memcpy(r->data().data(), cap::kUdp6DstOpts.data(), cap::kUdp6DstOpts.size());
        r->meta().vnet.gso_type = virtio::kGsoUdpL4;
        r->meta().vnet.gso_size = 8;
        expect_err(*r, Errc::unsupported);
    }
    // Not IP at all.
    {
        auto r = pool.try_alloc(cap::kArpRequest.size());
        ASSERT_TRUE(r);
        std::memcpy(r->data().data(), cap::kArpRequest.data(), cap::kArpRequest.size());
        r->meta().vnet.gso_type = virtio::kGsoTcpV4;
        r->meta().vnet.gso_size = 100;
        expect_err(*r, Errc::unsupported);
    }
}

TEST_F(Offload, OutTooSmallIsTooLarge) {
    PacketRef f = make_gso(pool, cap::kTcpData4, 10000, virtio::kGsoTcpV4, kMss);
    auto n = segment_gso(f, pool, std::span<PacketRef>(out).first(3));
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), Errc::too_large);
}

TEST(OffloadPool, ExhaustionReturnsEverything) {
    PacketPool pool(PoolConfig{.small_buffers = 20, .large_buffers = 2});
    std::vector<PacketRef> out(64);
    {
        PacketRef f = make_gso(pool, cap::kTcpData4, 40000, virtio::kGsoTcpV4, kMss);
        auto n = segment_gso(f, pool, out);  // needs 28 small buffers, has 20
        ASSERT_FALSE(n);
        EXPECT_EQ(n.error(), Errc::pool_exhausted);
        for (const PacketRef& s : out)
            EXPECT_FALSE(s);
    }
    EXPECT_TRUE(all_returned(pool));
}

}  // namespace
}  // namespace slipway
