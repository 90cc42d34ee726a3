// nat::Reassembler and nat::fragment_ipv4: round trips at several MTUs, orders and with VLAN tags;
// duplicates, overlaps, bad lengths, conflicting last fragments, oversize, timeouts, eviction,
// pool exhaustion, interleaved datagrams, no allocation on the hot path and no buffer leaked.
#include "slipway/nat/fragment.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "slipway/core/checksum.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "support/alloc_guard.hpp"

namespace slipway::nat {
namespace {

using wire::EthernetView;
using wire::Ipv4View;
using wire::VlanTag;

const MacAddr kGuestMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const MacAddr kGatewayMac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};
constexpr Ipv4Addr kGuest = Ipv4Addr::from_octets(192, 168, 127, 2);
constexpr Ipv4Addr kRemote = Ipv4Addr::from_octets(203, 0, 113, 9);
constexpr VlanTag kVlan{EtherType::vlan, 0x6064};  // PCP 3, VID 100

// Byte `i` of datagram `seed`: distinct across offsets and datagrams, so a byte in the wrong place
// or from the wrong datagram shows.
std::byte pattern(std::size_t i, std::uint32_t seed) {
    return static_cast<std::byte>((i * 131u + (i >> 8) * 17u + seed * 59u + 1u) & 0xffu);
}
std::vector<std::byte> pattern_bytes(std::size_t off, std::size_t len, std::uint32_t seed) {
    std::vector<std::byte> v(len);
    for (std::size_t i = 0; i < len; ++i)
        v[i] = pattern(off + i, seed);
    return v;
}

// A hand-made fragment.
struct Frag {
    FragmentKey key{kGuest, kRemote, IpProto::udp, 0x1234};
    std::size_t off = 0;  // bytes
    std::vector<std::byte> payload;
    bool mf = true;
    std::optional<VlanTag> vlan;
    std::uint16_t in_port = 3;
    std::uint8_t ttl = 61;
    std::uint8_t tos = 0x10;
    std::uint8_t options_len = 0;
};

Frag frag(std::uint16_t ident, std::size_t off, std::size_t len, bool mf, std::uint32_t seed = 0) {
    Frag f;
    f.key.ident = ident;
    f.off = off;
    f.payload = pattern_bytes(off, len, seed);
    f.mf = mf;
    return f;
}

PacketRef build(PacketPool& pool, const Frag& f) {
    const wire::EthernetRepr eth{kGatewayMac, kGuestMac, f.vlan, EtherType::ipv4};
    wire::Ipv4Repr ip;
    ip.src = f.key.src;
    ip.dst = f.key.dst;
    ip.protocol = f.key.proto;
    ip.ident = f.key.ident;
    ip.ttl = f.ttl;
    ip.tos = f.tos;
    ip.more_fragments = f.mf;
    ip.frag_offset = static_cast<std::uint16_t>(f.off / 8);
    ip.payload_len = static_cast<std::uint16_t>(f.payload.size());
    ip.options_len = f.options_len;
    for (std::size_t i = 0; i < f.options_len; ++i)
        ip.options[i] = std::byte{0x01};  // NOP
    const std::size_t len = eth.header_len() + ip.header_len() + f.payload.size();
    auto r = pool.try_alloc(len);
    EXPECT_TRUE(r.has_value());
    if (!r) return {};
    PacketRef p = std::move(*r);
    const MutByteView d = p.data();
    EXPECT_TRUE(eth.emit(d).has_value());
    EXPECT_TRUE(ip.emit(d.subspan(eth.header_len())).has_value());
    if (!f.payload.empty())
        std::memcpy(d.data() + eth.header_len() + ip.header_len(), f.payload.data(),
                    f.payload.size());
    p.meta().in_port = f.in_port;
    p.meta().vnet.flags = 1;  // must not leak into the reassembled frame
    p.meta().vnet.csum_start = 34;
    return p;
}

// Parses `frame` as the engine would and hands it to the reassembler.
std::optional<PacketRef> feed(Reassembler& re, const PacketRef& frame, std::uint64_t now) {
    const auto eth = EthernetView::parse(frame.data());
    EXPECT_TRUE(eth.has_value());
    if (!eth) return std::nullopt;
    const auto ip = Ipv4View::parse(eth->payload());
    EXPECT_TRUE(ip.has_value());
    if (!ip) return std::nullopt;
    EXPECT_TRUE(ip->header_checksum_ok());
    return re.process(frame, *ip, now);
}

std::optional<PacketRef> feed(PacketPool& pool, Reassembler& re, const Frag& f,
                              std::uint64_t now = 0) {
    const PacketRef p = build(pool, f);
    return feed(re, p, now);
}

// Checks a reassembled (or unfragmented) frame: headers as promised, payload byte-exact.
void expect_datagram(const PacketRef& out, const FragmentKey& key, std::optional<VlanTag> vlan,
                     ByteView payload, std::uint8_t ttl, std::uint8_t tos, MacAddr dst_mac,
                     MacAddr src_mac) {
    const auto eth = EthernetView::parse(out.data());
    ASSERT_TRUE(eth.has_value());
    EXPECT_EQ(eth->dst(), dst_mac);
    EXPECT_EQ(eth->src(), src_mac);
    EXPECT_EQ(eth->vlan(), vlan);
    EXPECT_EQ(eth->ethertype(), EtherType::ipv4);
    const auto ip = Ipv4View::parse(eth->payload());
    ASSERT_TRUE(ip.has_value());
    EXPECT_EQ(out.len(), eth->header_len() + ip->total_len());
    EXPECT_TRUE(ip->header_checksum_ok());
    EXPECT_EQ(ip->header_len(), wire::kIpv4MinHeaderLen);
    EXPECT_EQ(ip->total_len(), wire::kIpv4MinHeaderLen + payload.size());
    EXPECT_FALSE(ip->is_fragment());
    EXPECT_FALSE(ip->dont_fragment());
    EXPECT_FALSE(ip->reserved_flag());
    EXPECT_EQ(ip->src(), key.src);
    EXPECT_EQ(ip->dst(), key.dst);
    EXPECT_EQ(ip->protocol(), key.proto);
    EXPECT_EQ(ip->ident(), key.ident);
    EXPECT_EQ(ip->ttl(), ttl);
    EXPECT_EQ(ip->tos(), tos);
    ASSERT_EQ(ip->payload().size(), payload.size());
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), ip->payload().begin()));
}

class FragmentTest : public ::testing::Test {
  protected:
    // Every buffer home: no frame, slot or fragment leaked.
    void TearDown() override {
        pool.flush_thread_cache();
        EXPECT_EQ(pool.global_free_approx(SizeClass::small), pool.capacity(SizeClass::small));
        EXPECT_EQ(pool.global_free_approx(SizeClass::large), pool.capacity(SizeClass::large));
    }
    PacketPool pool{PoolConfig{.small_buffers = 4096, .large_buffers = 48}};
};

// ---- fragment_ipv4 -> Reassembler round trips -------------------------------------------------

struct RoundTrip {
    std::uint32_t mtu;
    std::size_t udp_payload;  // L4 bytes = 8 + this
    bool vlan;
    int order;  // 0 in order, 1 reversed, 2 shuffled
};

void round_trip(PacketPool& pool, Reassembler& re, const RoundTrip& t, std::uint16_t ident,
                std::mt19937& rng, std::vector<PacketRef>& frames) {
    SCOPED_TRACE("mtu " + std::to_string(t.mtu) + " size " + std::to_string(t.udp_payload) +
                 " vlan " + std::to_string(t.vlan) + " order " + std::to_string(t.order));
    const std::size_t l4 = 8 + t.udp_payload;
    const std::vector<std::byte> bytes = pattern_bytes(0, l4, ident);
    // A UDP header, then the payload in two buffers cut at a random point.
    const std::size_t cut = 8 + (t.udp_payload == 0 ? 0 : rng() % (t.udp_payload + 1));
    const ByteView all(bytes);
    const std::array<ByteView, 3> pieces{all.first(8), all.subspan(8, cut - 8), all.subspan(cut)};

    FragmentSpec spec;
    spec.dst_mac = kGuestMac;
    spec.src_mac = kGatewayMac;
    if (t.vlan) spec.vlan = kVlan;
    spec.src = kRemote;
    spec.dst = kGuest;
    spec.proto = IpProto::udp;
    spec.ident = ident;
    spec.ttl = 63;
    spec.tos = 0x28;
    spec.mtu = t.mtu;
    const auto n = fragment_ipv4(pool, spec, pieces, frames);
    ASSERT_TRUE(n.has_value());
    const std::size_t per = (t.mtu - 20) / 8 * 8;
    const bool whole = 20 + l4 <= t.mtu;
    ASSERT_EQ(*n, whole ? 1 : (l4 + per - 1) / per);
    const FragmentKey key{kRemote, kGuest, IpProto::udp, ident};

    // Every frame parses, respects the MTU and follows RFC 791's fragment rules.
    std::size_t next_off = 0;
    for (std::size_t i = 0; i < *n; ++i) {
        const PacketRef& f = frames[i];
        EXPECT_EQ(f.meta().vnet.flags, 0);
        EXPECT_EQ(f.meta().vnet.gso_type, virtio::kGsoNone);
        const auto eth = EthernetView::parse(f.data());
        ASSERT_TRUE(eth.has_value());
        EXPECT_EQ(eth->vlan(), spec.vlan);
        EXPECT_EQ(eth->dst(), kGuestMac);
        EXPECT_EQ(eth->src(), kGatewayMac);
        const auto ip = Ipv4View::parse(eth->payload());
        ASSERT_TRUE(ip.has_value());
        EXPECT_EQ(f.len(), eth->header_len() + ip->total_len());
        EXPECT_TRUE(ip->header_checksum_ok());
        EXPECT_LE(ip->total_len(), t.mtu);
        EXPECT_EQ(ip->header_len(), 20u);
        EXPECT_EQ(ip->ident(), ident);
        EXPECT_EQ(ip->ttl(), 63);
        EXPECT_EQ(ip->tos(), 0x28);
        EXPECT_EQ(ip->src(), kRemote);
        EXPECT_EQ(ip->dst(), kGuest);
        EXPECT_FALSE(ip->dont_fragment());
        EXPECT_EQ(ip->more_fragments(), i + 1 < *n);
        EXPECT_EQ(ip->frag_offset_bytes(), next_off);
        if (i + 1 < *n) {
            EXPECT_EQ(ip->payload().size() % 8, 0u);
        }
        EXPECT_TRUE(std::equal(ip->payload().begin(), ip->payload().end(),
                               bytes.begin() + static_cast<std::ptrdiff_t>(next_off)));
        next_off += ip->payload().size();
    }
    EXPECT_EQ(next_off, l4);
    if (whole) {
        expect_datagram(frames[0], key, spec.vlan, bytes, 63, 0x28, kGuestMac, kGatewayMac);
        frames[0].reset();
        return;
    }

    std::vector<std::size_t> order(*n);
    for (std::size_t i = 0; i < *n; ++i)
        order[i] = i;
    if (t.order == 1) std::reverse(order.begin(), order.end());
    if (t.order == 2) std::shuffle(order.begin(), order.end(), rng);
    const std::uint64_t before = re.counters().reassembled.get();
    std::optional<PacketRef> out;
    for (std::size_t k = 0; k < *n; ++k) {
        auto r = feed(re, frames[order[k]], 1000 + k);
        if (k + 1 < *n) {
            EXPECT_FALSE(r.has_value());
            EXPECT_EQ(re.in_progress(), 1u);
        } else {
            out = std::move(r);
        }
    }
    for (std::size_t i = 0; i < *n; ++i)
        frames[i].reset();
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(re.counters().reassembled.get(), before + 1);
    EXPECT_EQ(re.in_progress(), 0u);
    expect_datagram(*out, key, spec.vlan, bytes, 63, 0x28, kGuestMac, kGatewayMac);
    EXPECT_EQ(out->meta().vnet.flags, 0);
}

TEST_F(FragmentTest, RoundTripsAtEveryMtuInEveryOrder) {
    Reassembler re(pool, ReassemblyConfig{});
    std::vector<PacketRef> frames(2048);
    std::mt19937 rng(1);
    std::uint16_t ident = 1;
    for (const std::uint32_t mtu : {68u, 576u, 1500u, 9000u}) {
        const std::size_t per = (mtu - 20) / 8 * 8;
        // Edges: empty, tiny, fits exactly, one byte over, multiples of the fragment size and
        // either side of them, the largest UDP payload; then random sizes.
        std::vector<std::size_t> sizes{0,     1,     7,        8,        9,       39,
                                       40,    41,    1472,     1473,     8972,    8973,
                                       65506, 65507, mtu - 28, mtu - 27, per - 8, per - 7};
        for (std::size_t k = 2; k <= 4; ++k) {
            sizes.push_back(k * per - 8);
            sizes.push_back(k * per - 9);
            sizes.push_back(k * per - 7);
        }
        for (int i = 0; i < 6; ++i)
            sizes.push_back(rng() % 65508);
        for (const std::size_t size : sizes)
            for (const bool vlan : {false, true})
                for (int order = 0; order < 3; ++order)
                    round_trip(pool, re, RoundTrip{mtu, size, vlan, order}, ident++, rng, frames);
    }
    const auto& c = re.counters();
    EXPECT_EQ(c.overlaps.get() + c.duplicates.get() + c.malformed.get() + c.too_big.get() +
                  c.no_buffer.get() + c.evicted.get() + c.timeouts.get(),
              0u);
}

TEST_F(FragmentTest, EverySizeAtTheSmallestMtu) {
    // Every UDP payload size over the first few fragment sizes at MTU 68 (48 bytes a fragment),
    // shuffled: every remainder of the last fragment, every fragment count up to six.
    Reassembler re(pool, ReassemblyConfig{});
    std::vector<PacketRef> frames(2048);
    std::mt19937 rng(2);
    std::uint64_t fragmented = 0;
    for (std::size_t size = 0; size <= 6 * 48; ++size) {
        round_trip(pool, re, RoundTrip{68, size, size % 2 == 1, 2},
                   static_cast<std::uint16_t>(size), rng, frames);
        if (20 + 8 + size > 68) ++fragmented;
    }
    EXPECT_EQ(re.counters().reassembled.get(), fragmented);
}

// ---- fragment_ipv4 errors ---------------------------------------------------------------------

std::optional<Errc> error_of(const Result<std::size_t>& r) {
    return r ? std::nullopt : std::optional<Errc>(r.error());
}
std::optional<std::size_t> count_of(const Result<std::size_t>& r) {
    return r ? std::optional<std::size_t>(*r) : std::nullopt;
}

FragmentSpec udp_spec(std::uint32_t mtu) {
    FragmentSpec s;
    s.dst_mac = kGuestMac;
    s.src_mac = kGatewayMac;
    s.src = kRemote;
    s.dst = kGuest;
    s.ident = 77;
    s.mtu = mtu;
    return s;
}

TEST_F(FragmentTest, FragmentRejectsWhatCannotBeSent) {
    std::vector<std::byte> big(65515);
    std::vector<PacketRef> frames(2048);
    const std::array<ByteView, 1> fits{ByteView(big)};
    // RFC 791 minimum MTU.
    EXPECT_EQ(error_of(fragment_ipv4(pool, udp_spec(67), fits, frames)), Errc::too_large);
    EXPECT_TRUE(fragment_ipv4(pool, udp_spec(68), fits, frames).has_value());
    for (auto& f : frames)
        f.reset();
    // One byte over the largest datagram, split over pieces.
    const std::array<ByteView, 2> over{ByteView(big), ByteView(big).first(1)};
    EXPECT_EQ(error_of(fragment_ipv4(pool, udp_spec(1500), over, frames)), Errc::too_large);
    // More fragments than out has room for: nothing touched.
    std::array<PacketRef, 3> few;
    few[0] = std::move(*pool.try_alloc(64));
    const std::uint32_t held_id = few[0].id();
    const std::array<ByteView, 1> four_frags{ByteView(big).first(4 * 1480)};
    EXPECT_EQ(error_of(fragment_ipv4(pool, udp_spec(1500), four_frags, few)), Errc::too_large);
    EXPECT_TRUE(few[0]);
    EXPECT_EQ(few[0].id(), held_id);
    const std::array<ByteView, 1> three_frags{ByteView(big).first(3 * 1480)};
    EXPECT_EQ(count_of(fragment_ipv4(pool, udp_spec(1500), three_frags, few)), 3u);
    // An MTU above the IP maximum is the IP maximum: one unfragmented 65,535-byte packet.
    EXPECT_EQ(count_of(fragment_ipv4(pool, udp_spec(100000), fits, few)), 1u);
    EXPECT_EQ(few[0].len(), 14u + 65535u);
    // A VLAN tag with a TPID that is no tag.
    FragmentSpec bad = udp_spec(1500);
    bad.vlan = VlanTag{EtherType::ipv4, 5};
    EXPECT_EQ(error_of(fragment_ipv4(pool, bad, three_frags, few)), Errc::invalid_argument);
}

TEST(FragmentPool, ExhaustionReturnsNoFrame) {
    PacketPool small_pool(PoolConfig{.small_buffers = 5, .large_buffers = 1});
    std::vector<std::byte> data(2 * 8976);
    const std::array<ByteView, 1> pieces{ByteView(data)};
    std::vector<PacketRef> frames(16);
    const auto r = fragment_ipv4(small_pool, udp_spec(1500), pieces, frames);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::pool_exhausted);
    for (const auto& f : frames)
        EXPECT_FALSE(f);
    // Every buffer went home: five small ones can be taken again.
    std::vector<PacketRef> all(5);
    EXPECT_EQ(small_pool.try_alloc_burst(SizeClass::small, all), 5u);
    all.clear();
    // Jumbo fragments come from the large class: one buffer, two frames needed.
    const std::array<ByteView, 1> two_jumbo{ByteView(data)};
    EXPECT_EQ(error_of(fragment_ipv4(small_pool, udp_spec(9000), two_jumbo, frames)),
              Errc::pool_exhausted);
    EXPECT_FALSE(frames[0]);
    const std::array<ByteView, 1> three{ByteView(data).first(3 * 1480)};
    EXPECT_EQ(count_of(fragment_ipv4(small_pool, udp_spec(1500), three, frames)), 3u);
}

// ---- reassembly rules --------------------------------------------------------------------------

TEST_F(FragmentTest, DuplicatesAreIgnoredAndTheFirstCopyWins) {
    Reassembler re(pool, ReassemblyConfig{});
    EXPECT_FALSE(feed(pool, re, frag(1, 0, 16, true)));
    EXPECT_FALSE(feed(pool, re, frag(1, 0, 16, true, 99)));  // exact duplicate, other bytes
    EXPECT_FALSE(feed(pool, re, frag(1, 8, 8, true, 99)));   // a piece of a held range
    EXPECT_FALSE(feed(pool, re, frag(1, 16, 16, true)));
    EXPECT_FALSE(feed(pool, re, frag(1, 8, 16, true, 99)));  // spans two held fragments
    EXPECT_EQ(re.counters().duplicates.get(), 3u);
    auto out = feed(pool, re, frag(1, 32, 5, false));
    ASSERT_TRUE(out);
    const Frag f = frag(1, 0, 37, false);
    expect_datagram(*out, f.key, std::nullopt, f.payload, f.ttl, f.tos, kGatewayMac, kGuestMac);
    // A duplicate of a completed datagram's fragment starts a new one (it cannot be told apart).
    EXPECT_FALSE(feed(pool, re, frag(1, 32, 5, false)));
    EXPECT_EQ(re.in_progress(), 1u);
    EXPECT_EQ(re.counters().overlaps.get(), 0u);
}

TEST_F(FragmentTest, LastFragmentInsideHeldBytesStillEndsTheDatagram) {
    Reassembler re(pool, ReassemblyConfig{});
    EXPECT_FALSE(feed(pool, re, frag(2, 0, 16, true)));
    EXPECT_FALSE(feed(pool, re, frag(2, 16, 16, true)));
    auto out = feed(pool, re, frag(2, 24, 8, false));  // every byte held; says "ends at 32"
    ASSERT_TRUE(out);
    const Frag f = frag(2, 0, 32, false);
    expect_datagram(*out, f.key, std::nullopt, f.payload, f.ttl, f.tos, kGatewayMac, kGuestMac);
    EXPECT_EQ(re.counters().duplicates.get(), 1u);  // its bytes were
}

TEST_F(FragmentTest, OverlapDropsTheDatagram) {
    Reassembler re(pool, ReassemblyConfig{});
    const FragmentKey k{kGuest, kRemote, IpProto::udp, 3};
    // New bytes after held ones.
    EXPECT_FALSE(feed(pool, re, frag(3, 0, 16, true)));
    EXPECT_FALSE(feed(pool, re, frag(3, 8, 16, true)));
    EXPECT_EQ(re.counters().overlaps.get(), 1u);
    EXPECT_FALSE(re.holds(k));
    EXPECT_EQ(re.in_progress(), 0u);
    // New bytes before held ones, with the last fragment first.
    EXPECT_FALSE(feed(pool, re, frag(3, 16, 10, false)));
    EXPECT_FALSE(feed(pool, re, frag(3, 8, 16, true)));
    EXPECT_EQ(re.counters().overlaps.get(), 2u);
    EXPECT_FALSE(re.holds(k));
    // A fragment that covers a held one and more on both sides.
    EXPECT_FALSE(feed(pool, re, frag(3, 8, 8, true)));
    EXPECT_FALSE(feed(pool, re, frag(3, 0, 24, true)));
    EXPECT_EQ(re.counters().overlaps.get(), 3u);
    // What came before the overlap is gone: the rest alone does not complete anything.
    EXPECT_FALSE(feed(pool, re, frag(3, 24, 8, false)));
    EXPECT_TRUE(re.holds(k));
    EXPECT_EQ(re.counters().reassembled.get(), 0u);
}

TEST_F(FragmentTest, BadLengthsAreMalformed) {
    Reassembler re(pool, ReassemblyConfig{});
    const FragmentKey k{kGuest, kRemote, IpProto::udp, 4};
    // RFC 791: not the last, so a multiple of 8. It takes the held datagram with it.
    EXPECT_FALSE(feed(pool, re, frag(4, 0, 16, true)));
    EXPECT_FALSE(feed(pool, re, frag(4, 16, 12, true)));
    EXPECT_EQ(re.counters().malformed.get(), 1u);
    EXPECT_FALSE(re.holds(k));
    // Empty fragments, first or last.
    EXPECT_FALSE(feed(pool, re, frag(4, 0, 0, true)));
    EXPECT_FALSE(feed(pool, re, frag(4, 64, 0, false)));
    EXPECT_EQ(re.counters().malformed.get(), 3u);
    EXPECT_EQ(re.in_progress(), 0u);
}

TEST_F(FragmentTest, ConflictingLastFragmentsAreMalformed) {
    Reassembler re(pool, ReassemblyConfig{});
    const FragmentKey k{kGuest, kRemote, IpProto::udp, 5};
    // Two different ends.
    EXPECT_FALSE(feed(pool, re, frag(5, 16, 8, false)));
    EXPECT_FALSE(feed(pool, re, frag(5, 24, 8, false)));
    EXPECT_EQ(re.counters().malformed.get(), 1u);
    EXPECT_FALSE(re.holds(k));
    // A later fragment past the end.
    EXPECT_FALSE(feed(pool, re, frag(5, 16, 8, false)));
    EXPECT_FALSE(feed(pool, re, frag(5, 24, 8, true)));
    EXPECT_EQ(re.counters().malformed.get(), 2u);
    EXPECT_FALSE(re.holds(k));
    // A last fragment short of bytes already held.
    EXPECT_FALSE(feed(pool, re, frag(5, 32, 8, true)));
    EXPECT_FALSE(feed(pool, re, frag(5, 8, 8, false)));
    EXPECT_EQ(re.counters().malformed.get(), 3u);
    EXPECT_FALSE(re.holds(k));
    // The same last fragment twice is a duplicate, not a conflict.
    EXPECT_FALSE(feed(pool, re, frag(5, 16, 3, false)));
    EXPECT_FALSE(feed(pool, re, frag(5, 16, 3, false)));
    EXPECT_EQ(re.counters().malformed.get(), 3u);
    EXPECT_EQ(re.counters().duplicates.get(), 1u);
    auto out = feed(pool, re, frag(5, 0, 16, true));
    ASSERT_TRUE(out);
    EXPECT_EQ(out->len(), 14u + 20u + 19u);
}

TEST_F(FragmentTest, TooBigDropsTheDatagram) {
    Reassembler re(pool, ReassemblyConfig{});
    const FragmentKey k{kGuest, kRemote, IpProto::udp, 6};
    EXPECT_FALSE(feed(pool, re, frag(6, 0, 64, true)));
    // 65,512 + 8 = 65,520 bytes of payload: more than 65,535 - 20.
    EXPECT_FALSE(feed(pool, re, frag(6, 65512, 8, true)));
    EXPECT_EQ(re.counters().too_big.get(), 1u);
    EXPECT_FALSE(re.holds(k));
    // A last fragment ending at exactly 65,515 is fine, and so is the datagram it completes.
    EXPECT_FALSE(feed(pool, re, frag(6, 65504, 11, false)));
    EXPECT_TRUE(re.holds(k));
    EXPECT_FALSE(feed(pool, re, frag(6, 65504, 12, false)));  // one over, and a conflict
    EXPECT_EQ(re.counters().too_big.get(), 2u);
    EXPECT_FALSE(re.holds(k));
    EXPECT_FALSE(feed(pool, re, frag(6, 65504, 11, false)));
    auto out = feed(pool, re, frag(6, 0, 65504, true));  // a first fragment in a large buffer
    ASSERT_TRUE(out);
    const Frag whole = frag(6, 0, 65515, false);
    expect_datagram(*out, whole.key, std::nullopt, whole.payload, whole.ttl, whole.tos, kGatewayMac,
                    kGuestMac);
    EXPECT_EQ(out->len(), 14u + 65535u);
}

TEST_F(FragmentTest, TimeoutsExpireDatagrams) {
    Reassembler re(pool, ReassemblyConfig{.slots = 4, .timeout = std::chrono::milliseconds(500)});
    const FragmentKey k{kGuest, kRemote, IpProto::udp, 7};
    EXPECT_FALSE(feed(pool, re, frag(7, 0, 16, true), 1000));
    EXPECT_FALSE(feed(pool, re, frag(8, 0, 16, true), 1200));
    re.expire(1499);
    EXPECT_EQ(re.in_progress(), 2u);
    re.expire(1500);  // the first is 500 ms old
    EXPECT_EQ(re.in_progress(), 1u);
    EXPECT_FALSE(re.holds(k));
    EXPECT_EQ(re.counters().timeouts.get(), 1u);
    // Without expire(): a fragment of a datagram whose time ran out starts a new one.
    EXPECT_FALSE(feed(pool, re, frag(8, 16, 8, false), 1700));
    EXPECT_EQ(re.counters().timeouts.get(), 2u);
    EXPECT_EQ(re.in_progress(), 1u);
    EXPECT_FALSE(feed(pool, re, frag(8, 24, 8, true), 1800));  // past the new end: malformed
    EXPECT_EQ(re.counters().malformed.get(), 1u);
    EXPECT_FALSE(feed(pool, re, frag(8, 16, 8, false), 1800));
    auto out = feed(pool, re, frag(8, 0, 16, true), 1900);
    ASSERT_TRUE(out);
    EXPECT_EQ(out->len(), 14u + 20u + 24u);
    re.expire(100000);
    EXPECT_EQ(re.in_progress(), 0u);
}

TEST_F(FragmentTest, FullSlotsEvictTheOldest) {
    Reassembler re(pool, ReassemblyConfig{.slots = 2, .timeout = std::chrono::milliseconds(1000)});
    EXPECT_FALSE(feed(pool, re, frag(10, 0, 8, true, 10), 0));
    EXPECT_FALSE(feed(pool, re, frag(11, 0, 8, true, 11), 10));
    EXPECT_FALSE(feed(pool, re, frag(12, 0, 8, true, 12), 20));
    EXPECT_EQ(re.counters().evicted.get(), 1u);
    EXPECT_EQ(re.in_progress(), 2u);
    EXPECT_FALSE(re.holds({kGuest, kRemote, IpProto::udp, 10}));
    EXPECT_TRUE(re.holds({kGuest, kRemote, IpProto::udp, 11}));
    auto a = feed(pool, re, frag(11, 8, 3, false, 11), 30);
    auto b = feed(pool, re, frag(12, 8, 3, false, 12), 30);
    ASSERT_TRUE(a && b);
    const Frag fa = frag(11, 0, 11, false, 11);
    const Frag fb = frag(12, 0, 11, false, 12);
    expect_datagram(*a, fa.key, std::nullopt, fa.payload, fa.ttl, fa.tos, kGatewayMac, kGuestMac);
    expect_datagram(*b, fb.key, std::nullopt, fb.payload, fb.ttl, fb.tos, kGatewayMac, kGuestMac);
    // An evicted datagram whose time had run out counts as a timeout.
    EXPECT_FALSE(feed(pool, re, frag(13, 0, 8, true), 100));
    EXPECT_FALSE(feed(pool, re, frag(14, 0, 8, true), 1050));
    EXPECT_FALSE(feed(pool, re, frag(15, 0, 8, true), 1100));
    EXPECT_EQ(re.counters().timeouts.get(), 1u);
    EXPECT_EQ(re.counters().evicted.get(), 1u);
    // Zero slots asked for: one.
    Reassembler one(pool, ReassemblyConfig{.slots = 0});
    EXPECT_EQ(one.slots(), 1u);
}

TEST(FragmentPool, NoLargeBufferDropsTheFragment) {
    PacketPool pool(PoolConfig{.small_buffers = 64, .large_buffers = 1});
    {
        Reassembler re(pool, ReassemblyConfig{});
        EXPECT_FALSE(feed(pool, re, frag(20, 0, 8, true)));
        EXPECT_FALSE(feed(pool, re, frag(21, 0, 8, true)));
        EXPECT_EQ(re.counters().no_buffer.get(), 1u);
        EXPECT_EQ(re.in_progress(), 1u);
        auto out = feed(pool, re, frag(20, 8, 8, false));
        ASSERT_TRUE(out);
        // The only large buffer is the frame now.
        EXPECT_FALSE(feed(pool, re, frag(21, 8, 8, false)));
        EXPECT_EQ(re.counters().no_buffer.get(), 2u);
        out->reset();
        EXPECT_FALSE(feed(pool, re, frag(21, 8, 8, false)));
        EXPECT_EQ(re.in_progress(), 1u);
    }
    // The reassembler's destructor returned its slot's buffer.
    pool.flush_thread_cache();
    EXPECT_EQ(pool.global_free_approx(SizeClass::large), 1u);
    EXPECT_EQ(pool.global_free_approx(SizeClass::small), 64u);
}

TEST_F(FragmentTest, InterleavedDatagramsComeApartCleanly) {
    Reassembler re(pool, ReassemblyConfig{});
    std::mt19937 rng(5);
    // Same ident from different sources, different idents from the same source, other protocol.
    struct Dgram {
        FragmentKey key;
        std::size_t len;
        std::uint32_t seed;
        std::optional<VlanTag> vlan;
    };
    std::vector<Dgram> dgrams;
    for (std::uint32_t i = 0; i < 12; ++i) {
        FragmentKey k{Ipv4Addr::from_octets(192, 168, 127, static_cast<std::uint8_t>(2 + i % 3)),
                      kRemote, i % 4 == 3 ? IpProto::icmp : IpProto::udp,
                      static_cast<std::uint16_t>(100 + i / 3)};
        dgrams.push_back(
            {k, 600 + rng() % 5000, i + 1, i % 2 ? std::optional<VlanTag>(kVlan) : std::nullopt});
    }
    std::vector<std::pair<std::size_t, Frag>> all;
    for (std::size_t d = 0; d < dgrams.size(); ++d) {
        for (std::size_t off = 0; off < dgrams[d].len; off += 552) {
            const std::size_t len = std::min<std::size_t>(552, dgrams[d].len - off);
            Frag f = frag(0, off, len, off + len < dgrams[d].len, dgrams[d].seed);
            f.key = dgrams[d].key;
            f.vlan = dgrams[d].vlan;
            f.in_port = static_cast<std::uint16_t>(d);
            f.ttl = static_cast<std::uint8_t>(30 + d);
            all.emplace_back(d, std::move(f));
        }
    }
    std::shuffle(all.begin(), all.end(), rng);
    std::size_t done = 0;
    for (const auto& [d, f] : all) {
        auto out = feed(pool, re, f);
        if (!out) continue;
        ++done;
        const std::vector<std::byte> want = pattern_bytes(0, dgrams[d].len, dgrams[d].seed);
        expect_datagram(*out, dgrams[d].key, dgrams[d].vlan, want,
                        static_cast<std::uint8_t>(30 + d), 0x10, kGatewayMac, kGuestMac);
        EXPECT_EQ(out->meta().in_port, d);
        EXPECT_EQ(out->meta().vnet.flags, 0);
        EXPECT_EQ(out->meta().vnet.csum_start, 0);
    }
    EXPECT_EQ(done, dgrams.size());
    EXPECT_EQ(re.in_progress(), 0u);
}

TEST_F(FragmentTest, FirstFragmentSetsTheHeaderAndOptionsAreDropped) {
    Reassembler re(pool, ReassemblyConfig{});
    Frag later = frag(30, 16, 5, false);
    later.vlan = VlanTag{EtherType::qinq, 7};  // the first fragment's Ethernet header wins
    later.ttl = 1;
    later.tos = 0;
    later.in_port = 9;
    EXPECT_FALSE(feed(pool, re, later));
    Frag first = frag(30, 0, 16, true);
    first.vlan = kVlan;
    first.options_len = 8;
    first.ttl = 200;
    first.tos = 0xb8;
    first.in_port = 4;
    auto out = feed(pool, re, first);
    ASSERT_TRUE(out);
    const Frag whole = frag(30, 0, 21, false);
    expect_datagram(*out, whole.key, kVlan, whole.payload, 200, 0xb8, kGatewayMac, kGuestMac);
    EXPECT_EQ(out->meta().in_port, 4);
}

TEST_F(FragmentTest, BrokenCallerPromisesAreMalformed) {
    Reassembler re(pool, ReassemblyConfig{});
    // Not a fragment.
    const PacketRef whole = build(pool, frag(40, 0, 16, false));
    EXPECT_FALSE(feed(re, whole, 0));
    // `ip` not the frame's IPv4 payload: a view of another buffer.
    const PacketRef a = build(pool, frag(41, 0, 16, true));
    const PacketRef b = build(pool, frag(41, 16, 16, false));
    const auto ip_b = Ipv4View::parse(EthernetView::parse(b.data())->payload());
    EXPECT_FALSE(re.process(a, *ip_b, 0));
    EXPECT_FALSE(re.process(PacketRef{}, *ip_b, 0));
    EXPECT_EQ(re.counters().malformed.get(), 3u);
    EXPECT_EQ(re.in_progress(), 0u);
}

TEST_F(FragmentTest, CounterNames) {
    Reassembler re(pool, ReassemblyConfig{});
    std::vector<std::string> names;
    re.counters().for_each([&](std::string_view n, const Counter&) { names.emplace_back(n); });
    EXPECT_EQ(names,
              (std::vector<std::string>{"frag_in", "frag_reassembled", "frag_timeouts",
                                        "frag_overlaps", "frag_duplicates", "frag_evicted",
                                        "frag_too_big", "frag_no_buffer", "frag_malformed"}));
}

TEST_F(FragmentTest, NoAllocationOnTheHotPath) {
    Reassembler re(pool, ReassemblyConfig{.slots = 4});
    std::vector<std::byte> data(20000);
    const std::array<ByteView, 2> pieces{ByteView(data).first(8), ByteView(data).subspan(8)};
    std::vector<PacketRef> frames(64);
    {
        // Warm-up outside the guard: the first use of the pool's per-thread cache registers a
        // thread-exit hook, which may allocate inside the C runtime.
        auto warm = pool.try_alloc(SizeClass::small);
        ASSERT_TRUE(warm);
    }
    std::size_t allocations = 0;
    std::size_t done = 0;
    {
        test::AllocGuard guard;
        for (std::uint16_t ident = 0; ident < 20; ++ident) {
            FragmentSpec spec = udp_spec(1500);
            spec.ident = ident;
            const auto n = fragment_ipv4(pool, spec, pieces, frames);
            if (!n) break;
            for (std::size_t i = *n; i-- > 0;) {
                const auto eth = EthernetView::parse(frames[i].data());
                const auto ip = Ipv4View::parse(eth->payload());
                if (auto out = re.process(frames[i], *ip, ident)) ++done;
                frames[i].reset();
            }
            re.expire(ident);
        }
        allocations = guard.count();
    }
    EXPECT_EQ(allocations, 0u);
    EXPECT_EQ(done, 20u);
}

}  // namespace
}  // namespace slipway::nat
