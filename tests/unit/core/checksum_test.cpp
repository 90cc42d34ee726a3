// Unit tests for the Internet checksum: every implementation against the naive reference.
#include "slipway/core/checksum.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace slipway {
namespace {

using Impl = std::uint32_t (*)(ByteView, std::uint32_t) noexcept;

// mt19937 with a 32-bit result type, so -Wconversion stays quiet at every call.
struct Rng {
    std::mt19937 gen;
    explicit Rng(std::uint32_t seed) : gen(seed) {}
    std::uint32_t operator()() { return static_cast<std::uint32_t>(gen()); }
};

std::vector<std::byte> random_bytes(std::size_t n, std::uint32_t seed) {
    Rng rng(seed);
    std::vector<std::byte> v(n);
    for (auto& b : v)
        b = static_cast<std::byte>(rng() & 0xffu);
    return v;
}

// Every length 0..2048 at every start alignment 0..63 against csum_naive; random bytes catch
// word-order mistakes, all-0xff bytes drive every lane to its carry limits.
void check_all_lengths_and_alignments(Impl impl, const char* name) {
    constexpr std::size_t kMaxLen = 2048;
    constexpr std::size_t kMaxAlign = 64;
    // Over-allocate so that data()+align is 64-byte aligned plus `align`, whatever the allocator
    // returned.
    for (const bool ones : {false, true}) {
        std::vector<std::byte> buf = random_bytes(kMaxLen + 2 * kMaxAlign, 12345);
        if (ones)
            for (auto& b : buf)
                b = std::byte{0xff};
        const auto base_addr = reinterpret_cast<std::uintptr_t>(buf.data());
        const std::size_t to_64 = (kMaxAlign - base_addr % kMaxAlign) % kMaxAlign;
        for (std::size_t align = 0; align < kMaxAlign; ++align) {
            const std::byte* start = buf.data() + to_64 + align;
            for (std::size_t len = 0; len <= kMaxLen; ++len) {
                const ByteView view(start, len);
                const std::uint16_t want = csum_fold(csum_naive(view));
                const std::uint16_t got = csum_fold(impl(view, 0));
                if (want != got) {
                    ADD_FAILURE() << name << " len=" << len << " align=" << align
                                  << " ones=" << ones << " want=" << want << " got=" << got;
                    return;
                }
            }
        }
    }
}

TEST(Checksum, ScalarEqualsNaiveAtEveryLengthAndAlignment) {
    check_all_lengths_and_alignments(&csum_scalar, "scalar");
}

TEST(Checksum, Avx2EqualsNaiveAtEveryLengthAndAlignment) {
    if (!csum_avx2_supported()) GTEST_SKIP() << "CPU lacks AVX2";
    check_all_lengths_and_alignments(&csum_avx2, "avx2");
}

TEST(Checksum, DispatchedEqualsNaive) {
    const auto data = random_bytes(4099, 7);
    for (std::size_t len = 0; len < data.size(); len += 37) {
        const ByteView view(data.data(), len);
        EXPECT_EQ(csum_fold(csum_partial(view)), csum_fold(csum_naive(view))) << len;
    }
    EXPECT_STREQ(csum_impl_name(), csum_avx2_supported() ? "avx2" : "scalar");
}

TEST(Checksum, LargeInputsEqualNaive) {
    for (const std::size_t len : {std::size_t{65535}, std::size_t{65536}, std::size_t{1} << 20,
                                  (std::size_t{1} << 20) + 3}) {
        for (const bool ones : {false, true}) {
            std::vector<std::byte> data = random_bytes(len, static_cast<std::uint32_t>(len));
            if (ones)
                for (auto& b : data)
                    b = std::byte{0xff};
            const std::uint16_t want = csum_fold(csum_naive(data));
            EXPECT_EQ(csum_fold(csum_scalar(data)), want) << len << " ones=" << ones;
            EXPECT_EQ(csum_fold(csum_partial(data)), want) << len << " ones=" << ones;
            if (csum_avx2_supported()) {
                EXPECT_EQ(csum_fold(csum_avx2(data)), want) << len << " ones=" << ones;
            }
            if (ones) {
                // All-ones words sum to negative zero; an odd tail adds the padded word ff00.
                EXPECT_EQ(want, len % 2 == 0 ? 0xffff : 0xff00);
            }
        }
    }
}

TEST(Checksum, InitialValueIsAddedByEveryImpl) {
    const auto data = random_bytes(1501, 99);
    for (const std::uint32_t init : {0u, 1u, 0xffffu, 0x12345678u, 0xffffffffu}) {
        const std::uint16_t want = csum_fold(csum_naive(data, init));
        EXPECT_EQ(csum_fold(csum_scalar(data, init)), want) << init;
        EXPECT_EQ(csum_fold(csum_partial(data, init)), want) << init;
        if (csum_avx2_supported()) {
            EXPECT_EQ(csum_fold(csum_avx2(data, init)), want) << init;
        }
    }
}

TEST(Checksum, EmptyAndZeroData) {
    EXPECT_EQ(csum_naive({}), 0u);
    EXPECT_EQ(csum_fold(csum_scalar({})), 0u);
    EXPECT_EQ(csum_fold(csum_partial({})), 0u);
    EXPECT_EQ(csum_finish(0), 0xffff);
    const std::vector<std::byte> zeros(300);
    EXPECT_EQ(csum_fold(csum_partial(zeros)), 0u);  // zero stays +0, never becomes 0xffff
}

// RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (with carries 2 folded in).
TEST(Checksum, Rfc1071Example) {
    constexpr auto bytes = make_bytes(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
    EXPECT_EQ(csum_fold(csum_naive(bytes)), 0xddf2);
    EXPECT_EQ(csum_fold(csum_scalar(bytes)), 0xddf2);
    EXPECT_EQ(csum_fold(csum_partial(bytes)), 0xddf2);
    EXPECT_EQ(csum_finish(csum_partial(bytes)), 0x220d);
}

// An IPv4 header (UDP, 192.168.0.1 -> 192.168.0.199) with its checksum b861 in place.
constexpr auto kIpv4Header = make_bytes(0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                        0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7);

TEST(Checksum, RealIpv4HeaderVerifiesAndRecomputes) {
    EXPECT_EQ(csum_fold(csum_partial(kIpv4Header)), 0xffff);
    auto copy = kIpv4Header;
    store_be16(copy.data() + 10, 0);
    EXPECT_EQ(csum_finish(csum_partial(copy)), 0xb861);
    EXPECT_EQ(csum_finish(csum_naive(copy)), 0xb861);
}

TEST(Checksum, OddChunksComposeWithCombine) {
    const auto data = random_bytes(777, 3);
    const std::uint16_t whole = csum_fold(csum_naive(data));
    Rng rng(5);
    for (int iter = 0; iter < 2000; ++iter) {
        // Three chunks at random cut points, each summed on its own and combined by offset.
        std::size_t a = rng() % (data.size() + 1);
        std::size_t b = rng() % (data.size() + 1);
        if (a > b) std::swap(a, b);
        const ByteView v(data);
        std::uint32_t sum = csum_partial(v.subspan(0, a));
        sum = csum_combine(sum, csum_partial(v.subspan(a, b - a)), a);
        sum = csum_combine(sum, csum_partial(v.subspan(b)), b);
        ASSERT_EQ(csum_fold(sum), whole) << a << " " << b;
    }
    // Even-length leading chunks may chain through `initial`.
    const ByteView v(data);
    EXPECT_EQ(csum_fold(csum_partial(v.subspan(100), csum_partial(v.subspan(0, 100)))), whole);
}

// ---- RFC 1624 incremental updates ------------------------------------------------------------

TEST(Checksum, Rfc1624Section4Example) {
    // Sum of the other header words 0xcd7a, m = 0x5555 -> HC = 0xdd2f; m' = 0x3285 gives 0x0000
    // by eqn. 3 (eqn. 2 would give the wrong 0xffff).
    EXPECT_EQ(csum_update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    // The same on materialised bytes: the words cd7a, m, and the checksum field.
    auto pkt = make_bytes(0xcd, 0x7a, 0x55, 0x55, 0x00, 0x00);
    EXPECT_EQ(csum_finish(csum_naive(pkt)), 0xdd2f);
    store_be16(pkt.data() + 2, 0x3285);
    EXPECT_EQ(csum_finish(csum_naive(pkt)), 0x0000);
    // And back: from a 0x0000 checksum to the original.
    EXPECT_EQ(csum_update16(0x0000, 0x3285, 0x5555), 0xdd2f);
    static_assert(csum_update16(0xdd2f, 0x5555, 0x3285) == 0x0000);
}

// Rewrites a field of a random packet (checksum field at offset 0), checks the updated checksum
// against a recomputation. The packet always keeps a non-zero word, as real headers do.
template <class Field, class Update>
void check_updates(std::size_t field_size, Update update, std::uint32_t seed) {
    Rng rng(seed);
    const std::array<std::uint32_t, 6> corners = {0x0000'0000u, 0xffff'ffffu, 0x0000'ffffu,
                                                  0xffff'0000u, 0x0000'0001u, 0xfffe'ffffu};
    for (int iter = 0; iter < 5000; ++iter) {
        const std::size_t words = 2 + rng() % 40;
        auto pkt = random_bytes(words * 2 + field_size, rng());
        // Some packets made mostly of ones or zeros, to steer sums onto 0x0000/0xffff.
        if (iter % 4 == 1)
            for (auto& b : pkt)
                b = std::byte{0xff};
        if (iter % 4 == 2)
            for (auto& b : pkt)
                b = std::byte{0};
        store_be16(pkt.data() + 2, 0x0001);  // the non-zero word
        store_be16(pkt.data(), 0);
        const std::size_t field_off = 2 * (2 + rng() % (words - 1));  // even, after both
        auto pick = [&]() -> Field {
            const std::uint32_t r = rng();
            return static_cast<Field>((r & 3u) == 0 ? corners[r % corners.size()] : rng());
        };
        const Field old_val = pick();
        const Field new_val = pick();
        auto put = [&](Field v) {
            if (field_size == 2)
                store_be16(pkt.data() + field_off, static_cast<std::uint16_t>(v));
            else
                store_be32(pkt.data() + field_off, static_cast<std::uint32_t>(v));
        };
        put(old_val);
        const std::uint16_t old_csum = csum_finish(csum_naive(pkt));
        store_be16(pkt.data(), old_csum);
        ASSERT_EQ(csum_fold(csum_naive(pkt)), 0xffff);
        put(new_val);
        store_be16(pkt.data(), 0);
        const std::uint16_t want = csum_finish(csum_naive(pkt));
        const std::uint16_t got = update(old_csum, old_val, new_val);
        ASSERT_EQ(got, want) << "iter=" << iter << " old_csum=" << old_csum << " old=" << old_val
                             << " new=" << new_val;
    }
}

TEST(Checksum, Update16EqualsRecomputation) {
    check_updates<std::uint16_t>(2, &csum_update16, 11);
}

TEST(Checksum, Update32EqualsRecomputation) {
    check_updates<std::uint32_t>(4, &csum_update32, 13);
}

TEST(Checksum, UpdateCornerValues) {
    // HC' must be the recomputed value across the whole corner grid of RFC 1624 §3: fields and
    // sums of 0x0000 and 0xffff. Packet: [csum][0x0001 + other][m].
    const std::array<std::uint16_t, 5> vals = {0x0000, 0xffff, 0x0001, 0xfffe, 0x8000};
    for (const std::uint16_t other : vals) {
        for (const std::uint16_t m : vals) {
            for (const std::uint16_t m2 : vals) {
                std::array<std::byte, 8> pkt{};
                store_be16(pkt.data() + 2, 0x0001);
                store_be16(pkt.data() + 4, other);
                store_be16(pkt.data() + 6, m);
                const std::uint16_t hc = csum_finish(csum_naive(pkt));
                store_be16(pkt.data() + 6, m2);
                EXPECT_EQ(csum_update16(hc, m, m2), csum_finish(csum_naive(pkt)))
                    << other << " " << m << " " << m2;
            }
        }
    }
}

TEST(Checksum, UpdateIpv6AddressEqualsRecomputation) {
    Rng rng(17);
    for (int iter = 0; iter < 2000; ++iter) {
        auto pkt = random_bytes(60, rng());
        store_be16(pkt.data(), 0);
        const std::size_t off = 2 * (1 + rng() % 20);  // even, inside 2..42
        const Ipv6Addr old_addr = Ipv6Addr::load(pkt.data() + off);
        Ipv6Addr new_addr;
        for (auto& b : new_addr.b)
            b = static_cast<std::uint8_t>(iter % 3 == 0 ? 0xff : rng());
        const std::uint16_t hc = csum_finish(csum_naive(pkt));
        new_addr.store(pkt.data() + off);
        ASSERT_EQ(csum_update_ipv6(hc, old_addr, new_addr), csum_finish(csum_naive(pkt))) << iter;
    }
}

TEST(Checksum, Ipv4HeaderAddressRewrite) {
    // NAT-style: change the destination of the real header and update incrementally.
    auto hdr = kIpv4Header;
    const std::uint32_t old_dst = load_be32(hdr.data() + 16);
    const std::uint32_t new_dst = Ipv4Addr::from_octets(10, 0, 2, 15).v;
    store_be32(hdr.data() + 16, new_dst);
    store_be16(hdr.data() + 10, csum_update32(0xb861, old_dst, new_dst));
    EXPECT_EQ(csum_fold(csum_partial(hdr)), 0xffff);
}

// ---- pseudo-headers --------------------------------------------------------------------------

TEST(Checksum, PseudoHeaderV4EqualsMaterialised) {
    Rng rng(23);
    for (int iter = 0; iter < 1000; ++iter) {
        const Ipv4Addr src{static_cast<std::uint32_t>(rng())};
        const Ipv4Addr dst{iter % 2 ? 0xffffffffu : static_cast<std::uint32_t>(rng())};
        const IpProto proto = iter % 2 ? IpProto::tcp : IpProto::udp;
        const auto len = static_cast<std::uint16_t>(iter % 3 ? rng() : 0xffffu);
        // RFC 768 / RFC 9293 §3.1: src, dst, zero, protocol, length.
        std::array<std::byte, 12> ph{};
        src.store(ph.data());
        dst.store(ph.data() + 4);
        ph[9] = static_cast<std::byte>(proto);
        store_be16(ph.data() + 10, len);
        ASSERT_EQ(csum_fold(pseudo_header_sum_v4(src, dst, proto, len)), csum_fold(csum_naive(ph)));
    }
}

TEST(Checksum, PseudoHeaderV6EqualsMaterialised) {
    Rng rng(29);
    for (int iter = 0; iter < 1000; ++iter) {
        Ipv6Addr src, dst;
        for (auto& b : src.b)
            b = static_cast<std::uint8_t>(rng());
        for (auto& b : dst.b)
            b = static_cast<std::uint8_t>(iter % 2 ? 0xff : rng());
        const IpProto proto = iter % 2 ? IpProto::tcp : IpProto::icmpv6;
        const std::uint32_t len = iter % 3 ? static_cast<std::uint32_t>(rng()) : 0xffffffffu;
        // RFC 8200 §8.1: src, dst, 32-bit length, three zero bytes, next header.
        std::array<std::byte, 40> ph{};
        src.store(ph.data());
        dst.store(ph.data() + 16);
        store_be32(ph.data() + 32, len);
        ph[39] = static_cast<std::byte>(proto);
        ASSERT_EQ(csum_fold(pseudo_header_sum_v6(src, dst, proto, len)), csum_fold(csum_naive(ph)));
    }
}

TEST(Checksum, UdpOverIpv4EndToEnd) {
    // The UDP datagram carried by kIpv4Header's addresses: pseudo-header, then header + payload;
    // a receiver's sum over pseudo-header + datagram is 0xffff.
    auto udp = random_bytes(95, 31);
    store_be16(udp.data() + 4, static_cast<std::uint16_t>(udp.size()));
    store_be16(udp.data() + 6, 0);
    const Ipv4Addr src = Ipv4Addr::from_octets(192, 168, 0, 1);
    const Ipv4Addr dst = Ipv4Addr::from_octets(192, 168, 0, 199);
    const std::uint32_t ph =
        pseudo_header_sum_v4(src, dst, IpProto::udp, static_cast<std::uint16_t>(udp.size()));
    std::uint16_t c = csum_finish(csum_partial(udp, ph));
    if (c == 0) c = 0xffff;  // RFC 768: 0 means "no checksum"
    store_be16(udp.data() + 6, c);
    EXPECT_EQ(csum_fold(csum_partial(udp, ph)), 0xffff);
}

}  // namespace
}  // namespace slipway
