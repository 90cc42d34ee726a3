// ICMPv4, ICMPv6, TCP and UDP views against captured frames (captures/wire_captures.hpp).
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <string_view>
#include <vector>

#include "captures/wire_captures.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/icmpv6.hpp"
#include "slipway/core/wire/tcp.hpp"
#include "slipway/core/wire/udp.hpp"

namespace slipway::wire {
namespace {

using namespace slipway::test_captures;

constexpr std::size_t kV4 = 14 + 20;  // Ethernet + option-less IPv4
constexpr std::size_t kV6 = 14 + 40;  // Ethernet + IPv6 without extension headers

template <class A>
std::vector<std::byte> from(const A& frame, std::size_t off) {
    return {frame.begin() + static_cast<std::ptrdiff_t>(off), frame.end()};
}

bool same(ByteView a, ByteView b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

std::string_view text(ByteView b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};  // test-only: view bytes as chars
}

// -------------------------------------------------------------------------------------- ICMPv4

TEST(WireIcmpv4, DeconstructsEcho) {
    const auto msg = from(kIcmpEchoRequest, kV4);
    auto icmp = Icmpv4View::parse(msg);
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), Icmpv4Type::echo_request);
    EXPECT_EQ(icmp->code(), 0);
    EXPECT_EQ(icmp->echo_id(), 3828);
    EXPECT_EQ(icmp->echo_seq(), 0);
    EXPECT_TRUE(icmp->checksum_ok());
    EXPECT_EQ(icmp->payload().size(), 56u);
}

TEST(WireIcmpv4, DeconstructsPortUnreachable) {
    const auto msg = from(kIcmpPortUnreachable, kV4);
    auto icmp = Icmpv4View::parse(msg);
    ASSERT_TRUE(icmp);
    EXPECT_EQ(icmp->type(), Icmpv4Type::dest_unreachable);
    EXPECT_EQ(icmp->code(), 3);
    EXPECT_EQ(icmp->rest_of_header(), 0u);
    EXPECT_TRUE(icmp->checksum_ok());
    // The invoking datagram: its IPv4 header and UDP header + payload as sent.
    EXPECT_TRUE(same(icmp->payload(), ByteView(kUdp4).subspan(14)));
}

TEST(WireIcmpv4, ConstructsTheKernelsEchoReply) {
    const auto req = from(kIcmpEchoRequest, kV4);
    const auto rep = from(kIcmpEchoReply, kV4);
    auto v = Icmpv4View::parse(req);
    ASSERT_TRUE(v);
    Icmpv4Repr r{Icmpv4Type::echo_reply, 0, Icmpv4Repr::echo_rest(v->echo_id(), v->echo_seq()),
                 v->payload()};
    std::vector<std::byte> out(r.buffer_len());
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, rep.size());
    EXPECT_TRUE(same(out, rep));  // checksum computed over the whole message

    for (const auto& m : {req, from(kIcmpPortUnreachable, kV4)}) {
        auto w = Icmpv4View::parse(m);
        ASSERT_TRUE(w);
        std::vector<std::byte> o(m.size());
        ASSERT_TRUE(Icmpv4Repr::from(*w).emit(o));
        EXPECT_TRUE(same(o, m));
    }
    std::vector<std::byte> small(rep.size() - 1);
    EXPECT_EQ(r.emit(small).error(), Errc::too_large);
}

TEST(WireIcmpv4, TruncatedAndBadChecksum) {
    auto msg = from(kIcmpEchoRequest, kV4);
    for (std::size_t n = 0; n < kIcmpv4HeaderLen; ++n)
        EXPECT_EQ(Icmpv4View::parse(ByteView(msg).first(n)).error(), Errc::truncated) << n;
    auto hdr = Icmpv4View::parse(ByteView(msg).first(8));
    ASSERT_TRUE(hdr);
    EXPECT_TRUE(hdr->payload().empty());
    msg[10] ^= std::byte{1};
    EXPECT_FALSE(Icmpv4View::parse(msg)->checksum_ok());
}

// -------------------------------------------------------------------------------------- ICMPv6

TEST(WireIcmpv6, DeconstructsNdpAndEcho) {
    auto ns = Icmpv6View::parse(ByteView(kNdpNeighborSolicit).subspan(kV6));
    ASSERT_TRUE(ns);
    EXPECT_EQ(ns->type(), Icmpv6Type::neighbor_solicitation);
    EXPECT_EQ(ns->code(), 0);
    EXPECT_EQ(ns->body().size(), 28u);
    EXPECT_EQ(ns->payload().size(), 24u);  // target address + source link-layer address option
    EXPECT_EQ(ns->payload()[0], std::byte{0xfd});

    auto na = Icmpv6View::parse(ByteView(kNdpNeighborAdvert).subspan(kV6));
    ASSERT_TRUE(na);
    EXPECT_EQ(na->type(), Icmpv6Type::neighbor_advertisement);
    EXPECT_EQ(na->rest_of_header() >> 29, 0x3u);  // RFC 4861 §4.4: S and O flags

    const auto echo = from(kIcmpv6EchoRequest, kV6);
    auto e = Icmpv6View::parse(echo);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type(), Icmpv6Type::echo_request);
    EXPECT_EQ(e->echo_id(), 3829);
    EXPECT_EQ(e->echo_seq(), 0);
    EXPECT_EQ(e->checksum(), load_be16(echo.data() + 2));
    EXPECT_EQ(e->payload().size(), 56u);
}

TEST(WireIcmpv6, ConstructsIdenticalBytes) {
    for (auto frame : {ByteView(kNdpNeighborSolicit), ByteView(kNdpNeighborAdvert),
                       ByteView(kIcmpv6EchoRequest)}) {
        const ByteView msg = frame.subspan(kV6);
        auto v = Icmpv6View::parse(msg);
        ASSERT_TRUE(v);
        std::vector<std::byte> out(msg.size());
        auto n = Icmpv6Repr::from(*v).emit(out);
        ASSERT_TRUE(n);
        EXPECT_EQ(*n, msg.size());
        EXPECT_TRUE(same(out, msg));
    }
    // From fields: the caller-supplied checksum is written verbatim.
    const auto echo = from(kIcmpv6EchoRequest, kV6);
    Icmpv6Repr r{Icmpv6Type::echo_request, 0, load_be16(echo.data() + 2),
                 ByteView(echo).subspan(4)};
    std::vector<std::byte> out(echo.size());
    ASSERT_TRUE(r.emit(out));
    EXPECT_TRUE(same(out, echo));
    EXPECT_EQ(r.emit(std::span(out).first(echo.size() - 1)).error(), Errc::too_large);
    r.body = ByteView(echo).subspan(4, 3);
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
}

TEST(WireIcmpv6, Truncated) {
    const auto msg = from(kIcmpv6EchoRequest, kV6);
    for (std::size_t n = 0; n < kIcmpv6MinMessageLen; ++n)
        EXPECT_EQ(Icmpv6View::parse(ByteView(msg).first(n)).error(), Errc::truncated) << n;
}

// ----------------------------------------------------------------------------------------- TCP
// The captured TCP checksums are partial (veth offload: pseudo-header sum only); the views do
// not verify them, and the Reprs write back whatever the caller supplies.

TEST(WireTcp, DeconstructsSyn) {
    const auto seg = from(kTcpSyn4, kV4);
    auto t = TcpView::parse(seg);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->src_port(), L4Port{36146});
    EXPECT_EQ(t->dst_port(), L4Port{5555});
    EXPECT_EQ(t->seq(), TcpSeq{1961045746});
    EXPECT_EQ(t->ack(), TcpSeq{0});
    EXPECT_EQ(t->header_len(), 40u);
    EXPECT_EQ(t->flags(), tcp_flag::syn);
    EXPECT_TRUE(t->is_syn());
    EXPECT_FALSE(t->is_ack() || t->is_fin() || t->is_rst() || t->is_psh() || t->is_urg() ||
                 t->is_ece() || t->is_cwr());
    EXPECT_EQ(t->window(), 64240);
    EXPECT_EQ(t->checksum(), 0x14f7);
    EXPECT_EQ(t->urgent_ptr(), 0);
    EXPECT_TRUE(t->payload().empty());

    const TcpOptions o = t->parse_options();
    EXPECT_FALSE(o.malformed);
    EXPECT_EQ(o.mss, 1460);
    EXPECT_TRUE(o.sack_permitted);
    ASSERT_TRUE(o.timestamps);
    EXPECT_EQ(o.timestamps->val, 1442349175u);
    EXPECT_EQ(o.timestamps->ecr, 0u);
    EXPECT_EQ(o.window_scale, 10);
    EXPECT_EQ(o.sack_block_count, 0);

    // The raw iterator sees the Linux layout: MSS, SACK-permitted, TS, NOP, WS.
    TcpOptionIter it = t->option_iter();
    std::vector<std::uint8_t> kinds;
    while (auto opt = it.next())
        kinds.push_back(opt->kind);
    EXPECT_EQ(kinds, (std::vector<std::uint8_t>{2, 4, 8, 1, 3}));
    EXPECT_FALSE(it.malformed());
}

TEST(WireTcp, DeconstructsSynAckAndData) {
    auto sa = TcpView::parse(ByteView(kTcpSynAck4).subspan(kV4));
    ASSERT_TRUE(sa);
    EXPECT_TRUE(sa->has_flags(tcp_flag::syn | tcp_flag::ack));
    EXPECT_EQ(sa->ack(), TcpSeq{1961045747});
    EXPECT_EQ(sa->parse_options().timestamps->ecr, 1442349175u);

    const auto seg = from(kTcpData4, kV4);
    auto d = TcpView::parse(seg);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->flags(), tcp_flag::psh | tcp_flag::ack);
    EXPECT_EQ(d->header_len(), 32u);
    EXPECT_EQ(d->seq(), TcpSeq{1961045747});
    EXPECT_EQ(d->window(), 63);
    EXPECT_EQ(text(d->payload()), "hello slipway\n");
    const TcpOptions o = d->parse_options();
    EXPECT_FALSE(o.mss || o.window_scale || o.sack_permitted || o.malformed);
    EXPECT_EQ(o.timestamps, (TcpTimestamps{1442349175u, 700885714u}));

    auto d6 = TcpView::parse(ByteView(kTcpData6).subspan(kV6));
    ASSERT_TRUE(d6);
    EXPECT_EQ(text(d6->payload()), "hello v6\n");
}

TEST(WireTcp, ConstructsIdenticalBytes) {
    // From fields: the captured IPv4 SYN.
    TcpRepr r;
    r.src_port = L4Port{36146};
    r.dst_port = L4Port{5555};
    r.seq = TcpSeq{1961045746};
    r.flags = tcp_flag::syn;
    r.window = 64240;
    r.checksum = 0x14f7;
    r.options.mss = 1460;
    r.options.sack_permitted = true;
    r.options.timestamps = TcpTimestamps{1442349175u, 0};
    r.options.window_scale = 10;
    EXPECT_EQ(r.header_len(), 40u);
    std::array<std::byte, kTcpMaxHeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 40u);
    EXPECT_TRUE(same(ByteView(out).first(40), ByteView(kTcpSyn4).subspan(kV4)));

    // From views: every captured segment's header comes back byte for byte.
    for (auto seg : {ByteView(kTcpSyn4).subspan(kV4), ByteView(kTcpSynAck4).subspan(kV4),
                     ByteView(kTcpData4).subspan(kV4), ByteView(kTcpSyn6).subspan(kV6),
                     ByteView(kTcpData6).subspan(kV6)}) {
        auto v = TcpView::parse(seg);
        ASSERT_TRUE(v);
        auto m = TcpRepr::from(*v).emit(out);
        ASSERT_TRUE(m);
        EXPECT_TRUE(same(ByteView(out).first(*m), v->header()));
    }
}

TEST(WireTcp, EmitsOtherOptionLayouts) {
    TcpRepr r;
    r.options.sack_permitted = true;  // NOP NOP SACK-permitted
    r.options.sack_block_count = 2;   // NOP NOP SACK(2 blocks)
    r.options.sack_blocks[0] = {TcpSeq{1}, TcpSeq{2}};
    r.options.sack_blocks[1] = {TcpSeq{0xfffffff0u}, TcpSeq{5}};
    std::array<std::byte, kTcpMaxHeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 20u + 4 + 4 + 16);
    auto v = TcpView::parse(ByteView(out).first(*n));
    ASSERT_TRUE(v);
    const TcpOptions o = v->parse_options();
    EXPECT_FALSE(o.malformed);
    EXPECT_TRUE(o.sack_permitted);
    EXPECT_EQ(o.sack_block_count, 2);
    EXPECT_EQ(o.sack_blocks[1], r.options.sack_blocks[1]);

    // MSS + TS + WS + 4 SACK blocks = 4 + 12 + 4 + 36 > 40 bytes of options.
    r.options.mss = 1460;
    r.options.timestamps = TcpTimestamps{1, 2};
    r.options.window_scale = 7;
    r.options.sack_block_count = 4;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
    r.options.sack_block_count = 2;
    EXPECT_EQ(r.emit(std::span(out).first(r.header_len() - 1)).error(), Errc::too_large);
}

// Option bytes placed after a bare 20-byte header cut from the captured SYN.
std::vector<std::byte> with_options(const std::vector<std::uint8_t>& opts) {
    auto seg = from(kTcpSyn4, kV4);
    seg.resize(20);
    for (auto b : opts)
        seg.push_back(std::byte{b});
    while (seg.size() % 4 != 0)
        seg.push_back(std::byte{0});
    seg[12] = static_cast<std::byte>((seg.size() / 4) << 4);
    return seg;
}

TEST(WireTcp, MalformedOptionsStopWithoutOverrun) {
    struct Case {
        std::vector<std::uint8_t> opts;
        bool malformed;
    };
    // Each case: MSS first so we see that what came before the damage is kept.
    const std::vector<Case> cases{
        Case{{2, 4, 5, 0xb4, 30, 0}, true},             // length 0
        Case{{2, 4, 5, 0xb4, 30, 1}, true},             // length 1
        Case{{2, 4, 5, 0xb4, 30, 9, 1, 1}, true},       // runs past the header
        Case{{2, 4, 5, 0xb4, 3, 4, 7, 1}, true},        // window scale with length 4
        Case{{2, 4, 5, 0xb4, 5, 6, 0, 0, 0, 0}, true},  // SACK not a multiple of 8
        Case{{2, 4, 5, 0xb4, 1, 1, 1, 1}, false},       // NOPs
        Case{{2, 4, 5, 0xb4, 0, 99, 99, 99}, false},    // EOL hides the garbage after it
        Case{{2, 4, 5, 0xb4, 30, 4, 9, 9}, false},      // unknown kind skipped by length
    };
    for (const auto& c : cases) {
        const auto seg = with_options(c.opts);
        auto t = TcpView::parse(seg);
        ASSERT_TRUE(t);
        const TcpOptions o = t->parse_options();
        EXPECT_EQ(o.malformed, c.malformed) << t->header_len();
        EXPECT_EQ(o.mss, 1460);
        EXPECT_FALSE(o.window_scale);
    }
    // An option whose length byte is the last byte of the header.
    const auto seg = with_options({1, 1, 1, 8});
    EXPECT_TRUE(TcpView::parse(seg)->parse_options().malformed);
}

TEST(WireTcp, CapsWindowScale) {
    // RFC 7323 §2.3: a shift count above 14 is used as 14.
    const auto seg = with_options({1, 3, 3, 15});
    EXPECT_EQ(TcpView::parse(seg)->parse_options().window_scale, kTcpMaxWindowScale);
}

TEST(WireTcp, BadDataOffsetAndTruncation) {
    auto seg = from(kTcpSyn4, kV4);
    for (std::size_t n = 0; n < kTcpMinHeaderLen; ++n)
        EXPECT_EQ(TcpView::parse(ByteView(seg).first(n)).error(), Errc::truncated) << n;
    for (std::size_t n = kTcpMinHeaderLen; n < 40; ++n)  // data offset says 40
        EXPECT_EQ(TcpView::parse(ByteView(seg).first(n)).error(), Errc::truncated) << n;
    seg[12] = std::byte{0x40};  // RFC 9293 §3.1: data offset 4 < 5
    EXPECT_EQ(TcpView::parse(seg).error(), Errc::bad_length);
    seg[12] = std::byte{0xf0};  // 60 bytes of header in a 40-byte segment
    EXPECT_EQ(TcpView::parse(seg).error(), Errc::truncated);
}

// ----------------------------------------------------------------------------------------- UDP

TEST(WireUdp, Deconstructs) {
    auto u = UdpView::parse(ByteView(kUdp4).subspan(kV4));
    ASSERT_TRUE(u);
    EXPECT_EQ(u->src_port(), L4Port{48753});
    EXPECT_EQ(u->dst_port(), L4Port{5557});
    EXPECT_EQ(u->length(), 19);
    EXPECT_EQ(text(u->payload()), "udp payload");

    auto u6 = UdpView::parse(ByteView(kUdp6).subspan(kV6));
    ASSERT_TRUE(u6);
    EXPECT_EQ(u6->dst_port(), L4Port{5558});
    EXPECT_EQ(u6->checksum(), 0xfb5b);
    EXPECT_EQ(text(u6->payload()), "udp6 payload");
}

TEST(WireUdp, ConstructsIdenticalBytes) {
    const auto dgram = from(kUdp4, kV4);
    UdpRepr r{L4Port{48753}, L4Port{5557}, 11, load_be16(dgram.data() + 6)};
    std::array<std::byte, kUdpHeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 8u);
    EXPECT_TRUE(same(out, ByteView(dgram).first(8)));
    auto v = UdpView::parse(ByteView(kUdp6).subspan(kV6));
    ASSERT_TRUE(v);
    ASSERT_TRUE(UdpRepr::from(*v).emit(out));
    EXPECT_TRUE(same(out, v->header()));
    EXPECT_EQ(r.emit(std::span(out).first(7)).error(), Errc::too_large);
    r.payload_len = 65535 - 7;
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
}

TEST(WireUdp, LengthFieldRules) {
    auto dgram = from(kUdp4, kV4);
    for (std::size_t n = 0; n < kUdpHeaderLen; ++n)
        EXPECT_EQ(UdpView::parse(ByteView(dgram).first(n)).error(), Errc::truncated) << n;
    for (std::size_t n = kUdpHeaderLen; n < dgram.size(); ++n)  // length field says 19
        EXPECT_EQ(UdpView::parse(ByteView(dgram).first(n)).error(), Errc::bad_length) << n;
    dgram.resize(dgram.size() + 5, std::byte{0xee});  // excess beyond the length is ignored
    auto u = UdpView::parse(dgram);
    ASSERT_TRUE(u);
    EXPECT_EQ(text(u->payload()), "udp payload");
    dgram[5] = std::byte{7};  // RFC 768: length covers the 8-byte header
    EXPECT_EQ(UdpView::parse(dgram).error(), Errc::bad_length);
    dgram[5] = std::byte{8};
    EXPECT_TRUE(UdpView::parse(dgram)->payload().empty());
}

}  // namespace
}  // namespace slipway::wire

namespace slipway::wire {
namespace {

// Regression (found by fuzz_frame_parse): a second SACK option with fewer blocks must replace the
// first whole, so parse -> emit -> parse means the same thing.
TEST(TcpOptionsRegression, RepeatedSackReplacesEarlierBlocks) {
    std::array<std::byte, 20 + 40> seg{};
    seg[12] = std::byte{(60 / 4) << 4};  // data offset 15 words: 40 bytes of options
    std::size_t o = 20;
    seg[o++] = std::byte{5};  // SACK, 3 blocks
    seg[o++] = std::byte{26};
    for (int i = 0; i < 24; ++i)
        seg[o++] = std::byte{0x11};
    seg[o++] = std::byte{5};  // SACK, 1 block
    seg[o++] = std::byte{10};
    for (int i = 0; i < 8; ++i)
        seg[o++] = std::byte{0x22};
    while (o < seg.size())
        seg[o++] = std::byte{1};  // NOP padding
    auto v = TcpView::parse(seg);
    ASSERT_TRUE(v);
    const TcpOptions opts = v->parse_options();
    ASSERT_FALSE(opts.malformed);
    ASSERT_EQ(opts.sack_block_count, 1);
    EXPECT_EQ(opts.sack_blocks[0].left, TcpSeq{0x22222222u});
    EXPECT_EQ(opts.sack_blocks[1].left, TcpSeq{0});  // nothing stale behind the count

    std::array<std::byte, 60> out{};
    auto n = TcpRepr::from(*v).emit(out);
    ASSERT_TRUE(n);
    auto back = TcpView::parse(ByteView(out).first(*n));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->parse_options(), opts);
}

}  // namespace
}  // namespace slipway::wire
