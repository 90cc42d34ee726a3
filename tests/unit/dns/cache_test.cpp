// dns::Cache: what is cached and for how long (RFC 2308 §5, RFC 2181 §8), aging on a hit, FIFO
// eviction by entries and bytes (checked against a reference model), and no allocation per packet.
#include "slipway/dns/cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <list>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "dns_test_util.hpp"
#include "support/alloc_guard.hpp"

namespace slipway::dns {
namespace {

using namespace testutil;

static_assert(noexcept(std::declval<Cache&>().store(ByteView{}, std::declval<const MessageView&>(),
                                                    0)));
static_assert(noexcept(std::declval<Cache&>().lookup(ByteView{}, 0, 0, MutByteView{})));

Bytes key(std::string_view s) {
    Bytes b;
    for (char c : s)
        b.push_back(static_cast<std::byte>(c));
    return b;
}

// Builds an answer the way resolvers lay one out (RFC 1035 §4.1): header, one question, then the
// answer, authority and additional records, every owner a pointer to the question name (@12).
class Answer {
  public:
    explicit Answer(std::string_view qname = "example.com", std::uint16_t qtype = rrtype::a)
        : qname_(qname), qtype_(qtype) {}

    Answer& id(std::uint16_t v) {
        id_ = v;
        return *this;
    }
    Answer& flags(std::uint16_t v) {  // the raw second header word; 0x8180 is QR RD RA
        flags_ = v;
        return *this;
    }
    Answer& rcode(Rcode r) {
        flags_ = static_cast<std::uint16_t>((flags_ & 0xfff0u) | (static_cast<unsigned>(r) & 0xfu));
        return *this;
    }
    Answer& tc() {
        flags_ = static_cast<std::uint16_t>(flags_ | 0x0200u);
        return *this;
    }
    Answer& a(std::uint32_t ttl, std::uint8_t last_octet = 1) {
        an_.push_back({rrtype::a, kClassIn, ttl, {192, 0, 2, last_octet}, false});
        return *this;
    }
    Answer& cname(std::uint32_t ttl) {  // to the question name itself: enough for the parser
        an_.push_back({rrtype::cname, kClassIn, ttl, {0xc0, 0x0c}, false});
        return *this;
    }
    // A TXT record whose RDATA is exactly `rdata_len` (>= 1) bytes of strings filled with `fill`.
    Answer& txt(std::uint32_t ttl, std::size_t rdata_len, std::uint8_t fill = 'x') {
        std::vector<std::uint8_t> rd;
        while (rd.size() < rdata_len) {
            const std::size_t n = std::min<std::size_t>(rdata_len - rd.size() - 1, 255);
            rd.push_back(static_cast<std::uint8_t>(n));
            for (std::size_t i = 0; i < n; ++i)
                rd.push_back(static_cast<std::uint8_t>(fill + i));
        }
        an_.push_back({rrtype::txt, kClassIn, ttl, std::move(rd), false});
        return *this;
    }
    // Authority SOA: MNAME and RNAME point at the question name; MINIMUM last (RFC 1035 §3.3.13).
    Answer& soa(std::uint32_t ttl, std::uint32_t minimum) {
        std::vector<std::uint8_t> rd = {0xc0, 0x0c, 0xc0, 0x0c};
        for (std::uint32_t v : {2024010101u, 7200u, 900u, 1209600u, minimum})
            for (int s = 24; s >= 0; s -= 8)
                rd.push_back(static_cast<std::uint8_t>(v >> s));
        ns_.push_back({rrtype::soa, kClassIn, ttl, std::move(rd), false});
        return *this;
    }
    Answer& opt(std::uint8_t ext_rcode = 0) {  // size 1232, no options (RFC 6891 §6.1.2)
        ar_.push_back({rrtype::opt, kEdnsUdpSize, std::uint32_t{ext_rcode} << 24, {}, true});
        return *this;
    }

    // Bytes that a message with one TXT answer has besides its RDATA.
    [[nodiscard]] std::size_t txt_overhead() const { return build().size() + 2 + kRrFixedLen; }

    [[nodiscard]] Bytes build() const {
        Bytes b;
        put16(b, id_);
        put16(b, flags_);
        put16(b, 1);
        put16(b, static_cast<std::uint16_t>(an_.size()));
        put16(b, static_cast<std::uint16_t>(ns_.size()));
        put16(b, static_cast<std::uint16_t>(ar_.size()));
        std::array<std::byte, kMaxNameLen> name{};
        const auto n = encode_name(qname_, name);
        EXPECT_TRUE(n);
        if (n) b.insert(b.end(), name.begin(), name.begin() + static_cast<std::ptrdiff_t>(*n));
        put16(b, qtype_);
        put16(b, kClassIn);
        for (const auto* sec : {&an_, &ns_, &ar_}) {
            for (const RrSpec& rr : *sec) {
                if (rr.opt) {
                    b.push_back(std::byte{0});
                } else {
                    put16(b, 0xc00c);
                }
                put16(b, rr.type);
                put16(b, rr.rclass);
                put32(b, rr.ttl);
                put16(b, static_cast<std::uint16_t>(rr.rdata.size()));
                for (std::uint8_t v : rr.rdata)
                    b.push_back(static_cast<std::byte>(v));
            }
        }
        return b;
    }

  private:
    struct RrSpec {
        std::uint16_t type;
        std::uint16_t rclass;
        std::uint32_t ttl;
        std::vector<std::uint8_t> rdata;
        bool opt;
    };
    std::string qname_;
    std::uint16_t qtype_;
    std::uint16_t id_ = 0x1234;
    std::uint16_t flags_ = 0x8180;
    std::vector<RrSpec> an_, ns_, ar_;
};

// A message of exactly `total` bytes: one TXT answer padded to size.
Bytes sized(std::size_t total, std::uint32_t ttl, std::uint8_t fill = 'a') {
    Answer a("example.com", rrtype::txt);
    const std::size_t over = a.txt_overhead();
    return a.txt(ttl, total > over ? total - over : 1, fill).build();
}

bool store(Cache& c, ByteView k, const Bytes& msg, std::int64_t now_ms) {
    auto m = MessageView::parse(msg);
    EXPECT_TRUE(m) << "test message does not parse";
    return m && c.store(k, *m, now_ms);
}

// TTLs of every record but OPT, in wire order.
std::vector<std::uint32_t> ttls(ByteView msg) {
    std::vector<std::uint32_t> v;
    auto m = MessageView::parse(msg);
    EXPECT_TRUE(m);
    if (!m) return v;
    for (const Rr& rr : m->rrs())
        if (!rr.is_opt()) v.push_back(rr.ttl);
    return v;
}

// Looks `k` up into a 64 KiB buffer; the served bytes, or nullopt.
std::optional<Bytes> get(Cache& c, ByteView k, std::int64_t now_ms, std::uint16_t id = 0xbeef) {
    Bytes out(65535);
    auto n = c.lookup(k, id, now_ms, out);
    if (!n) return std::nullopt;
    out.resize(*n);
    return out;
}

// ---------------------------------------------------------------------------- real layouts
// From message_test.cpp: laid out byte for byte as BIND/Unbound answer.

// header: id 0x3c4d, QR RD RA, QD 1, AN 2, AR 1; www.example.com A IN; @12 CNAME ttl 300 -> @16;
// @16 A ttl 120 93.184.215.14; OPT size 1232
const Bytes kAnswerCnameA =
    hex("3c4d81800001000200000001"
        "03777777076578616d706c6503636f6d0000010001"
        "c00c000500010000012c0002c010"
        "c010000100010000007800045db8d70e"
        "00002904d0000000000000");

// header: id 0x0004, QR RD RA, NXDOMAIN, QD 1, NS 1, AR 1; nonexistent.example.com A IN;
// @24 SOA ttl 3600 ns.icann.org noc.dns.icann.org ..., MINIMUM 300; OPT size 1232
const Bytes kAnswerNxdomain = hex(
    "000481830001000000010001"
    "0b6e6f6e6578697374656e74076578616d706c6503636f6d0000010001"
    "c0180006000100000e10002c026e73056963616e6e036f726700036e6f6303646e73c03878a507f800001c2000000e"
    "10001275000000012c"
    "00002904d0000000000000");

TEST(DnsCache, HitRewritesIdAndAgesTtls) {
    Cache c(CacheConfig{});
    const Bytes k = key("www.example.com/A");
    ASSERT_TRUE(store(c, k, kAnswerCnameA, 1'000));
    EXPECT_EQ(c.entries(), 1u);
    EXPECT_EQ(c.bytes(), kAnswerCnameA.size());

    auto got = get(c, k, 1'000 + 42'999, 0xbeef);  // 42 whole seconds
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), kAnswerCnameA.size());
    EXPECT_EQ(load_be16(*got, 0), 0xbeef);
    EXPECT_EQ(ttls(*got), (std::vector<std::uint32_t>{258, 78}));
    // Everything else is the stored answer, OPT included.
    Bytes expect = kAnswerCnameA;
    store_be16(expect.data(), 0xbeef);
    store_be32(expect.data() + 39, 258);
    store_be32(expect.data() + 53, 78);
    EXPECT_TRUE(same(*got, expect));

    // The stored copy is not aged in place: a second hit ages from the original again.
    got = get(c, k, 1'000, 7);
    ASSERT_TRUE(got);
    EXPECT_EQ(load_be16(*got, 0), 7);
    EXPECT_EQ(ttls(*got), (std::vector<std::uint32_t>{300, 120}));
    EXPECT_EQ(c.counters().hits.get(), 2u);
    EXPECT_EQ(c.counters().inserts.get(), 1u);
    EXPECT_EQ(c.counters().misses.get(), 0u);
}

TEST(DnsCache, ExpiresAtExactlyTheTtl) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    ASSERT_TRUE(store(c, k, Answer().a(120).build(), 5'000));  // the least TTL (the A's)
    auto got = get(c, k, 5'000 + 119'999);
    ASSERT_TRUE(got);
    EXPECT_EQ(ttls(*got), std::vector<std::uint32_t>{1});
    EXPECT_FALSE(get(c, k, 5'000 + 120'000));
    EXPECT_EQ(c.counters().expired.get(), 1u);
    EXPECT_EQ(c.counters().misses.get(), 1u);
    EXPECT_EQ(c.entries(), 0u);
    EXPECT_EQ(c.bytes(), 0u);
    // Removed: later lookups are plain misses, even with an earlier clock.
    EXPECT_FALSE(get(c, k, 5'000));
    EXPECT_EQ(c.counters().expired.get(), 1u);
    EXPECT_EQ(c.counters().misses.get(), 2u);
}

TEST(DnsCache, LeastTtlOfTheMessageCounts) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    ASSERT_TRUE(store(c, k, kAnswerCnameA, 0));  // CNAME 300, A 120
    EXPECT_TRUE(get(c, k, 119'999));
    EXPECT_FALSE(get(c, k, 120'000));
}

TEST(DnsCache, ClockSteppingBackAgesNothing) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    ASSERT_TRUE(store(c, k, Answer().a(60).build(), 10'000));
    auto got = get(c, k, 3'000);
    ASSERT_TRUE(got);
    EXPECT_EQ(ttls(*got), std::vector<std::uint32_t>{60});
}

TEST(DnsCache, PositiveTtlIsCappedAtMaxTtl) {
    Cache c(CacheConfig{.max_ttl = 100});
    const Bytes k = key("k");
    ASSERT_TRUE(store(c, k, Answer().a(604800).build(), 0));
    auto got = get(c, k, 99'999);
    ASSERT_TRUE(got);
    EXPECT_EQ(ttls(*got), std::vector<std::uint32_t>{604800 - 99});  // records keep their own TTL
    EXPECT_FALSE(get(c, k, 100'000));
}

// ---------------------------------------------------------------------------- negative answers

TEST(DnsCache, NxdomainWithSoaLivesMinOfSoaTtlAndMinimum) {
    Cache c(CacheConfig{});
    const Bytes k = key("nx");
    ASSERT_TRUE(store(c, k, kAnswerNxdomain, 0));  // RFC 2308 §5: min(3600, 300)
    auto got = get(c, k, 299'999, 0x0101);
    ASSERT_TRUE(got);
    EXPECT_EQ(load_be16(*got, 0), 0x0101);
    EXPECT_EQ(ttls(*got), std::vector<std::uint32_t>{3600 - 299});
    EXPECT_FALSE(get(c, k, 300'000));

    // SOA TTL below MINIMUM: the SOA TTL wins.
    ASSERT_TRUE(store(c, k, Answer().rcode(Rcode::nxdomain).soa(60, 86400).build(), 0));
    EXPECT_TRUE(get(c, k, 59'999));
    EXPECT_FALSE(get(c, k, 60'000));
}

TEST(DnsCache, NegativeTtlIsCappedAtMaxNegativeTtl) {
    Cache c(CacheConfig{.max_negative_ttl = 900});
    const Bytes k = key("nx");
    ASSERT_TRUE(store(c, k, Answer().rcode(Rcode::nxdomain).soa(7200, 7200).build(), 0));
    EXPECT_TRUE(get(c, k, 899'999));
    EXPECT_FALSE(get(c, k, 900'000));

    // The positive cap does not apply to negatives, nor the negative cap to positives.
    Cache big(CacheConfig{.max_ttl = 10, .max_negative_ttl = 1000});
    ASSERT_TRUE(store(big, k, Answer().rcode(Rcode::nxdomain).soa(7200, 7200).build(), 0));
    EXPECT_TRUE(get(big, k, 999'999));
    ASSERT_TRUE(store(big, key("pos"), Answer().a(7200).build(), 0));
    EXPECT_FALSE(get(big, key("pos"), 10'000));
}

TEST(DnsCache, NodataWithSoaIsCached) {
    Cache c(CacheConfig{});
    const Bytes k = key("nodata");
    // NOERROR, no A answer (RFC 2308 §2.2).
    ASSERT_TRUE(store(c, k, Answer().soa(3600, 120).build(), 0));
    EXPECT_TRUE(get(c, k, 119'999));
    EXPECT_FALSE(get(c, k, 120'000));
    // A CNAME before the NODATA bounds it too: nothing is served past a record's own TTL.
    ASSERT_TRUE(store(c, k, Answer().cname(30).soa(3600, 120).build(), 0));
    EXPECT_TRUE(get(c, k, 29'999));
    EXPECT_FALSE(get(c, k, 30'000));
}

TEST(DnsCache, NegativeWithoutSoaIsNotCached) {
    Cache c(CacheConfig{});
    const Bytes k = key("nx");
    // RFC 2308 §5, last paragraph.
    EXPECT_FALSE(store(c, k, Answer().rcode(Rcode::nxdomain).build(), 0));
    EXPECT_FALSE(store(c, k, Answer().rcode(Rcode::nxdomain).opt().build(), 0));
    EXPECT_FALSE(store(c, k, Answer().cname(300).build(), 0));  // NODATA after a CNAME
    EXPECT_EQ(c.counters().uncacheable.get(), 3u);
    EXPECT_EQ(c.entries(), 0u);
    EXPECT_FALSE(get(c, k, 0));
}

// ----------------------------------------------------------------------------- not cached

TEST(DnsCache, ErrorsTruncationAndZeroTtlsAreNotCached) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    const std::vector<std::pair<const char*, Bytes>> refused = {
        {"SERVFAIL", Answer().rcode(Rcode::servfail).build()},
        {"SERVFAIL with SOA", Answer().rcode(Rcode::servfail).soa(300, 300).build()},
        {"REFUSED", Answer().rcode(Rcode::refused).build()},
        {"FORMERR", Answer().rcode(Rcode::formerr).build()},
        {"BADVERS (extended rcode)", Answer().soa(300, 300).opt(1).build()},
        {"TC", Answer().tc().a(300).build()},
        {"TC negative", Answer().tc().rcode(Rcode::nxdomain).soa(300, 300).build()},
        {"TTL 0", Answer().a(0).build()},
        {"one TTL 0", Answer().a(300).a(0, 2).build()},
        {"top-bit TTL (RFC 2181 §8)", Answer().a(0x80000100u).build()},
        {"SOA TTL 0", Answer().rcode(Rcode::nxdomain).soa(0, 300).build()},
        {"MINIMUM 0", Answer().rcode(Rcode::nxdomain).soa(300, 0).build()},
        {"query, not a response", Answer().flags(0x0100).a(300).build()},
        {"opcode STATUS", Answer().flags(0x9180).a(300).build()},
    };
    std::uint64_t n = 0;
    for (const auto& [what, msg] : refused) {
        EXPECT_FALSE(store(c, k, msg, 0)) << what;
        EXPECT_EQ(c.counters().uncacheable.get(), ++n) << what;
    }
    EXPECT_EQ(c.entries(), 0u);
    EXPECT_EQ(c.counters().inserts.get(), 0u);
    EXPECT_FALSE(get(c, k, 0));

    // Sanity: the same builder's good answers are cached.
    EXPECT_TRUE(store(c, k, Answer().a(300).build(), 0));
    EXPECT_TRUE(store(c, k, Answer().rcode(Rcode::nxdomain).soa(300, 300).opt().build(), 0));
}

TEST(DnsCache, AnswerWithoutQuestionIsNotCached) {
    Cache c(CacheConfig{});
    const Bytes noerror = hex("000181800000000000000000");  // NOERROR, QDCOUNT 0
    EXPECT_FALSE(store(c, key("k"), noerror, 0));
    EXPECT_EQ(c.counters().uncacheable.get(), 1u);
}

TEST(DnsCache, AnswerLargerThanTheArenaIsNotCached) {
    Cache c(CacheConfig{.max_bytes = 600});
    EXPECT_FALSE(store(c, key("big"), sized(601, 300), 0));
    EXPECT_EQ(c.counters().uncacheable.get(), 1u);
    EXPECT_TRUE(store(c, key("fits"), sized(600, 300), 0));  // exactly the arena
    EXPECT_EQ(c.bytes(), 600u);
    EXPECT_TRUE(get(c, key("fits"), 0));
}

// ----------------------------------------------------------------------------------- keys

TEST(DnsCache, ReplacingAKeyServesTheNewAnswer) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    const Bytes first = Answer().a(300, 1).build();
    const Bytes second = Answer().a(600, 2).a(600, 3).build();
    ASSERT_TRUE(store(c, k, first, 0));
    ASSERT_TRUE(store(c, k, second, 1'000));
    EXPECT_EQ(c.entries(), 1u);
    EXPECT_EQ(c.bytes(), second.size());
    auto got = get(c, k, 1'000, 0x1234);
    ASSERT_TRUE(got);
    EXPECT_TRUE(same(*got, second));
    EXPECT_TRUE(get(c, k, 600'999));  // the new TTL, from the new store time
    EXPECT_EQ(c.counters().inserts.get(), 2u);

    // An uncacheable answer leaves the cached one alone: it is still true for its TTL.
    EXPECT_FALSE(store(c, k, Answer().rcode(Rcode::servfail).build(), 2'000));
    got = get(c, k, 1'999, 0x1234);  // still within the first second: nothing aged
    ASSERT_TRUE(got);
    EXPECT_TRUE(same(*got, second));
}

TEST(DnsCache, KeysDifferingInOneByteAreSeparate) {
    Cache c(CacheConfig{});
    Bytes k0 =
        key("\x07"
            "example\x03"
            "com");
    k0.insert(k0.end(), {std::byte{0}, std::byte{0}, std::byte{1}, std::byte{0}, std::byte{1}});
    Bytes k1 = k0;
    k1.back() = std::byte{0};  // another flags byte
    Bytes k2 = k0;
    k2[1] = std::byte{'E'};
    const Bytes prefix(k0.begin(), k0.end() - 1);  // a prefix is another key too
    const Bytes empty;

    const std::vector<const Bytes*> keys = {&k0, &k1, &k2, &prefix, &empty};
    for (std::size_t i = 0; i < keys.size(); ++i)
        ASSERT_TRUE(store(c, *keys[i], Answer().a(300, static_cast<std::uint8_t>(i)).build(), 0));
    EXPECT_EQ(c.entries(), keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
        auto got = get(c, *keys[i], 0, 0x1234);
        ASSERT_TRUE(got) << i;
        EXPECT_TRUE(same(*got, Answer().a(300, static_cast<std::uint8_t>(i)).build())) << i;
    }
    EXPECT_FALSE(get(c,
                     key("\x07"
                         "example"),
                     0));
}

TEST(DnsCache, KeyLengthLimit) {
    Cache c(CacheConfig{});
    const Bytes longest(kMaxCacheKeyLen, std::byte{0x41});
    const Bytes too_long(kMaxCacheKeyLen + 1, std::byte{0x41});
    const Bytes msg = Answer().a(300).build();
    EXPECT_TRUE(store(c, longest, msg, 0));
    EXPECT_FALSE(store(c, too_long, msg, 0));
    EXPECT_EQ(c.counters().uncacheable.get(), 1u);
    EXPECT_TRUE(get(c, longest, 0));
    EXPECT_FALSE(get(c, too_long, 0));
}

TEST(DnsCache, ForwarderKeyFromQuestionKey) {
    // The forwarder's key: question_key() (case-folded, RFC 4343) plus a flags byte.
    Cache c(CacheConfig{});
    const Bytes upper = Answer("WWW.Example.COM").a(300).build();
    auto m = MessageView::parse(upper);
    ASSERT_TRUE(m);
    std::array<std::byte, kMaxCacheKeyLen> kb{};
    auto n = m->question_key(kb);
    ASSERT_TRUE(n);
    kb[*n] = std::byte{0};
    const ByteView k = ByteView(kb).first(*n + 1);
    ASSERT_TRUE(c.store(k, *m, 0));

    const Bytes query_like = Answer("www.example.com").build();
    auto lower = MessageView::parse(query_like);
    ASSERT_TRUE(lower);
    std::array<std::byte, kMaxCacheKeyLen> kl{};
    auto nl = lower->question_key(kl);
    ASSERT_TRUE(nl);
    kl[*nl] = std::byte{0};
    auto got = get(c, ByteView(kl).first(*nl + 1), 0, 0x1234);
    ASSERT_TRUE(got);
    EXPECT_TRUE(same(*got, upper));  // served as stored, case kept
}

// ---------------------------------------------------------------------------------- buffers

TEST(DnsCache, OutBufferTooSmallIsAMissAndKeepsTheEntry) {
    Cache c(CacheConfig{});
    const Bytes k = key("k");
    ASSERT_TRUE(store(c, k, kAnswerCnameA, 0));
    Bytes out(kAnswerCnameA.size() - 1, std::byte{0x55});
    EXPECT_FALSE(c.lookup(k, 1, 0, out));
    EXPECT_TRUE(
        std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0x55}; }));
    EXPECT_EQ(c.counters().misses.get(), 1u);
    EXPECT_EQ(c.counters().hits.get(), 0u);
    EXPECT_EQ(c.entries(), 1u);

    out.resize(kAnswerCnameA.size());
    EXPECT_EQ(c.lookup(k, 1, 0, out), kAnswerCnameA.size());
    out.resize(kAnswerCnameA.size() + 10, std::byte{0x66});
    EXPECT_EQ(c.lookup(k, 1, 0, out), kAnswerCnameA.size());
    EXPECT_EQ(out.back(), std::byte{0x66});  // nothing written past the message
}

TEST(DnsCache, TrailingBytesAreNotStored) {
    Cache c(CacheConfig{});
    Bytes msg = kAnswerCnameA;
    msg.push_back(std::byte{0xee});  // RFC 1035 does not forbid them; parse() leaves them out
    ASSERT_TRUE(store(c, key("k"), msg, 0));
    EXPECT_EQ(c.bytes(), kAnswerCnameA.size());
    auto got = get(c, key("k"), 0, 0x3c4d);
    ASSERT_TRUE(got);
    EXPECT_TRUE(same(*got, kAnswerCnameA));
}

// --------------------------------------------------------------------------------- eviction

TEST(DnsCache, EvictsTheOldestWhenSlotsRunOut) {
    Cache c(CacheConfig{.max_entries = 3});
    const Bytes msg = Answer().a(300).build();
    for (const char* k : {"k1", "k2", "k3", "k4"})
        ASSERT_TRUE(store(c, key(k), msg, 0));
    EXPECT_EQ(c.entries(), 3u);
    EXPECT_EQ(c.counters().evicted.get(), 1u);
    EXPECT_FALSE(get(c, key("k1"), 0));
    for (const char* k : {"k2", "k3", "k4"})
        EXPECT_TRUE(get(c, key(k), 0)) << k;  // hits do not reorder (FIFO, not LRU)

    // Replacing k3 leaves its old slot dead until the FIFO reaches it: the ring is k2 k3 k4, so
    // k2 goes now; then k3 (dead) is reclaimed without counting as an eviction.
    ASSERT_TRUE(store(c, key("k3"), msg, 0));
    EXPECT_FALSE(get(c, key("k2"), 0));
    EXPECT_EQ(c.entries(), 2u);
    EXPECT_EQ(c.counters().evicted.get(), 2u);
    ASSERT_TRUE(store(c, key("k5"), msg, 0));
    EXPECT_EQ(c.counters().evicted.get(), 2u);
    EXPECT_EQ(c.entries(), 3u);
    for (const char* k : {"k3", "k4", "k5"})
        EXPECT_TRUE(get(c, key(k), 0)) << k;
}

TEST(DnsCache, EvictingAnExpiredEntryCountsAsExpired) {
    Cache c(CacheConfig{.max_entries = 1});
    ASSERT_TRUE(store(c, key("a"), Answer().a(10).build(), 0));
    ASSERT_TRUE(store(c, key("b"), Answer().a(10).build(), 10'000));
    EXPECT_EQ(c.counters().expired.get(), 1u);
    EXPECT_EQ(c.counters().evicted.get(), 0u);
    ASSERT_TRUE(store(c, key("c"), Answer().a(10).build(), 10'000));
    EXPECT_EQ(c.counters().evicted.get(), 1u);
}

TEST(DnsCache, EvictsByBytesAndWrapsAround) {
    Cache c(CacheConfig{.max_bytes = 512});
    ASSERT_TRUE(store(c, key("a"), sized(200, 300, 'a'), 0));  // [0, 200)
    ASSERT_TRUE(store(c, key("b"), sized(200, 300, 'b'), 0));  // [200, 400)
    EXPECT_EQ(c.bytes(), 400u);
    // 112 bytes left at the tail: too short. [0, 200) is a's, so a goes and c wraps to 0.
    ASSERT_TRUE(store(c, key("c"), sized(200, 300, 'c'), 0));
    EXPECT_FALSE(get(c, key("a"), 0));
    EXPECT_TRUE(get(c, key("b"), 0));
    EXPECT_TRUE(get(c, key("c"), 0));
    EXPECT_EQ(c.bytes(), 400u);
    EXPECT_EQ(c.counters().evicted.get(), 1u);
    // Wrapped: free is [200, 200). b goes, which unwraps; d fits after c at [200, 350).
    ASSERT_TRUE(store(c, key("d"), sized(150, 300, 'd'), 0));
    EXPECT_FALSE(get(c, key("b"), 0));
    EXPECT_EQ(c.bytes(), 350u);
    // [350, 512) holds e; then f (100) fits neither the tail (0 left) nor before c: c goes.
    ASSERT_TRUE(store(c, key("e"), sized(162, 300, 'e'), 0));
    EXPECT_EQ(c.bytes(), 512u);
    ASSERT_TRUE(store(c, key("f"), sized(100, 300, 'f'), 0));
    EXPECT_FALSE(get(c, key("c"), 0));
    EXPECT_EQ(c.counters().evicted.get(), 3u);
    // Wrapped with [100, 200) free: g (100) fits exactly.
    ASSERT_TRUE(store(c, key("g"), sized(100, 300, 'g'), 0));
    EXPECT_EQ(c.counters().evicted.get(), 3u);
    EXPECT_EQ(c.bytes(), 512u);
    for (auto [k, fill, len] : {std::tuple{"d", 'd', 150}, std::tuple{"e", 'e', 162},
                                std::tuple{"f", 'f', 100}, std::tuple{"g", 'g', 100}}) {
        auto got = get(c, key(k), 0, 0x1234);
        ASSERT_TRUE(got) << k;
        EXPECT_TRUE(
            same(*got, sized(static_cast<std::size_t>(len), 300, static_cast<std::uint8_t>(fill))))
            << k;
    }
    // Everything must go for the whole arena.
    ASSERT_TRUE(store(c, key("h"), sized(512, 300, 'h'), 0));
    EXPECT_EQ(c.entries(), 1u);
    EXPECT_EQ(c.counters().evicted.get(), 7u);
    EXPECT_TRUE(get(c, key("h"), 0));
}

TEST(DnsCache, ClearDropsEverythingButCounters) {
    Cache c(CacheConfig{.max_entries = 4, .max_bytes = 1024});
    for (const char* k : {"a", "b", "c"})
        ASSERT_TRUE(store(c, key(k), sized(300, 60), 0));
    c.clear();
    EXPECT_EQ(c.entries(), 0u);
    EXPECT_EQ(c.bytes(), 0u);
    for (const char* k : {"a", "b", "c"})
        EXPECT_FALSE(get(c, key(k), 0));
    EXPECT_EQ(c.counters().inserts.get(), 3u);
    // The whole arena and every slot are usable again.
    ASSERT_TRUE(store(c, key("z"), sized(1024, 60), 0));
    EXPECT_TRUE(get(c, key("z"), 0));
    EXPECT_EQ(c.counters().evicted.get(), 0u);
}

TEST(DnsCache, ConfigIsRaisedToItsMinimums) {
    Cache c(CacheConfig{.max_entries = 0, .max_bytes = 0});
    EXPECT_EQ(c.config().max_entries, 1u);
    EXPECT_EQ(c.config().max_bytes, 512u);
    ASSERT_TRUE(store(c, key("a"), sized(512, 60), 0));
    ASSERT_TRUE(store(c, key("b"), sized(40, 60), 0));
    EXPECT_FALSE(get(c, key("a"), 0));
    EXPECT_TRUE(get(c, key("b"), 0));
}

TEST(DnsCache, CountersHaveNames) {
    Cache c(CacheConfig{});
    std::vector<std::string> names;
    c.counters().for_each([&](std::string_view n, const Counter&) { names.emplace_back(n); });
    EXPECT_EQ(names, (std::vector<std::string>{"inserts", "hits", "misses", "expired", "evicted",
                                               "uncacheable"}));
}

// --------------------------------------------------------------------------- reference model
// The policy written the slow and obvious way: a list of entries in insertion order with their
// arena ranges; to insert, the candidate offset is just past the newest entry (0 when the tail is
// too short or nothing is stored), and the oldest entry goes while the slots are full or any
// entry overlaps the candidate range.

struct ModelEntry {
    Bytes key, msg;
    std::size_t off = 0;
    bool live = true;
    std::int64_t stored = 0, expires = 0;
    std::uint32_t rr_ttl = 0;
    std::size_t ttl_off = 0;
};

struct Model {
    std::size_t max_entries = 0, cap = 0;
    std::size_t wraps = 0;  // inserts at offset 0 while older entries remain
    std::list<ModelEntry> fifo;
    std::map<Bytes, std::list<ModelEntry>::iterator> live;
    std::uint64_t inserts = 0, hits = 0, misses = 0, expired = 0, evicted = 0, uncacheable = 0;

    [[nodiscard]] std::size_t live_bytes() const {
        std::size_t n = 0;
        for (const auto& [k, it] : live)
            n += it->msg.size();
        return n;
    }

    void evict_front(std::int64_t now) {
        ModelEntry& e = fifo.front();
        if (e.live) {
            ++(now >= e.expires ? expired : evicted);
            live.erase(e.key);
        }
        fifo.pop_front();
    }

    [[nodiscard]] bool overlaps(std::size_t off, std::size_t len) const {
        return std::any_of(fifo.begin(), fifo.end(), [&](const ModelEntry& e) {
            return off < e.off + e.msg.size() && e.off < off + len;
        });
    }

    // `cache_ttl` is what the cache should compute (0: uncacheable).
    bool store(const Bytes& k, const Bytes& msg, std::uint32_t cache_ttl, std::uint32_t rr_ttl,
               std::size_t ttl_off, std::int64_t now) {
        const std::size_t len = msg.size();
        if (cache_ttl == 0 || len > cap) {
            ++uncacheable;
            return false;
        }
        if (auto it = live.find(k); it != live.end()) {
            it->second->live = false;
            live.erase(it);
        }
        std::size_t off = 0;
        for (;;) {
            if (fifo.size() == max_entries) {
                evict_front(now);
                continue;
            }
            off = 0;
            if (!fifo.empty()) {
                const std::size_t end = fifo.back().off + fifo.back().msg.size();
                off = end + len <= cap ? end : 0;
            }
            if (!overlaps(off, len)) break;
            evict_front(now);
        }
        if (off == 0 && !fifo.empty()) ++wraps;
        fifo.push_back(ModelEntry{k, msg, off, true, now, now + std::int64_t{cache_ttl} * 1000,
                                  rr_ttl, ttl_off});
        live[k] = std::prev(fifo.end());
        ++inserts;
        return true;
    }

    std::optional<Bytes> lookup(const Bytes& k, std::uint16_t id, std::int64_t now,
                                std::size_t out_len) {
        auto it = live.find(k);
        if (it == live.end()) {
            ++misses;
            return std::nullopt;
        }
        ModelEntry& e = *it->second;
        if (now >= e.expires) {
            e.live = false;
            live.erase(it);
            ++expired;
            ++misses;
            return std::nullopt;
        }
        if (out_len < e.msg.size()) {
            ++misses;
            return std::nullopt;
        }
        Bytes out = e.msg;
        store_be16(out.data(), id);
        const auto age = static_cast<std::uint32_t>((now - e.stored) / 1000);
        store_be32(out.data() + e.ttl_off, e.rr_ttl - age);
        ++hits;
        return out;
    }

    void clear() {
        fifo.clear();
        live.clear();
    }
};

struct RandomCase {
    std::size_t max_entries, max_bytes, max_msg;
    std::uint32_t max_ttl;
    unsigned seed;
};

void PrintTo(const RandomCase& c, std::ostream* os) {
    *os << c.max_entries << " entries, " << c.max_bytes << " bytes, messages up to " << c.max_msg
        << ", max_ttl " << c.max_ttl << ", seed " << c.seed;
}

class DnsCacheRandom : public ::testing::TestWithParam<RandomCase> {};

TEST_P(DnsCacheRandom, MatchesTheReferenceModel) {
    const RandomCase rc = GetParam();
    Cache c(CacheConfig{
        .max_entries = rc.max_entries, .max_bytes = rc.max_bytes, .max_ttl = rc.max_ttl});
    Model m;
    m.max_entries = rc.max_entries;
    m.cap = rc.max_bytes;
    std::mt19937 rng(rc.seed);
    auto pick = [&](std::size_t lo, std::size_t hi) {  // inclusive
        return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
    };
    const std::size_t min_msg = Answer("example.com", rrtype::txt).txt_overhead() + 1;
    std::vector<Bytes> keys;
    for (int i = 0; i < 48; ++i)
        keys.push_back(key("key-" + std::to_string(i * 7919)));

    std::int64_t now = 1'000'000;
    std::size_t stored = 0, hit = 0;
    for (int step = 0; step < 20000; ++step) {
        now += static_cast<std::int64_t>(pick(0, 1500));
        const Bytes& k = keys[pick(0, keys.size() - 1)];
        const std::size_t op = pick(0, 999);
        if (op < 550) {
            std::size_t len = pick(min_msg, std::min(rc.max_msg, rc.max_bytes));
            if (op < 10) len = rc.max_bytes + pick(1, 64);  // too large
            if (op >= 10 && op < 15) len = rc.max_bytes;    // the whole arena
            const auto rr_ttl = static_cast<std::uint32_t>(pick(0, 40));
            const Bytes msg = sized(len, rr_ttl, static_cast<std::uint8_t>(pick(0, 255)));
            ASSERT_EQ(msg.size(), len);
            const std::size_t ttl_off = min_msg - 1 - 2 - 4;  // before RDLENGTH and 1 RDATA byte
            ASSERT_EQ(load_be32(msg, ttl_off), rr_ttl);
            const bool want = m.store(k, msg, std::min(rr_ttl, rc.max_ttl), rr_ttl, ttl_off, now);
            ASSERT_EQ(store(c, k, msg, now), want) << "step " << step;
            stored += want ? 1 : 0;
        } else if (op < 998) {
            const auto id = static_cast<std::uint16_t>(pick(0, 0xffff));
            const std::size_t out_len = op < 560 ? pick(0, rc.max_msg) : 65535;
            Bytes out(out_len);
            const auto got = c.lookup(k, id, now, out);
            const auto want = m.lookup(k, id, now, out_len);
            ASSERT_EQ(got.has_value(), want.has_value()) << "step " << step;
            if (got) {
                ASSERT_TRUE(same(ByteView(out).first(*got), *want)) << "step " << step;
                ++hit;
            }
        } else {
            c.clear();
            m.clear();
        }
        ASSERT_LE(c.entries(), rc.max_entries);
        ASSERT_LE(c.bytes(), rc.max_bytes);
        ASSERT_EQ(c.entries(), m.live.size()) << "step " << step;
        ASSERT_EQ(c.bytes(), m.live_bytes()) << "step " << step;
        const CacheCounters& n = c.counters();
        ASSERT_EQ(n.inserts.get(), m.inserts);
        ASSERT_EQ(n.hits.get(), m.hits);
        ASSERT_EQ(n.misses.get(), m.misses);
        ASSERT_EQ(n.expired.get(), m.expired) << "step " << step;
        ASSERT_EQ(n.evicted.get(), m.evicted) << "step " << step;
        ASSERT_EQ(n.uncacheable.get(), m.uncacheable);
    }
    // The run exercised what it is meant to: many inserts, hits, both kinds of eviction.
    EXPECT_GT(stored, 5000u);
    EXPECT_GT(hit, 100u);
    if (rc.max_entries > 1) {
        EXPECT_GT(m.wraps, 50u);
    }
    EXPECT_GT(m.evicted, 100u);
    EXPECT_GT(m.expired, 100u);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, DnsCacheRandom,
    ::testing::Values(RandomCase{1, 512, 512, 86400, 1},      // one slot, smallest arena
                      RandomCase{3, 512, 300, 86400, 2},      // slots and bytes both bind
                      RandomCase{8, 2048, 700, 86400, 3},     // mostly bytes
                      RandomCase{64, 4096, 400, 20, 4},       // bytes; max_ttl caps some TTLs
                      RandomCase{40, 60000, 1500, 86400, 5},  // mostly slots
                      RandomCase{48, 8192, 200, 86400, 6}));  // more slots than keys: expiry

// ----------------------------------------------------------------------------------- hot path

TEST(DnsCache, StoreAndLookupDoNotAllocate) {
    Cache c(CacheConfig{.max_entries = 16, .max_bytes = 2048});
    std::vector<Bytes> msgs;
    std::vector<MessageView> views;
    std::vector<Bytes> keys;
    for (std::size_t i = 0; i < 64; ++i) {
        msgs.push_back(sized(60 + (i * 37) % 500, static_cast<std::uint32_t>(i % 5 == 0 ? 0 : 30)));
        keys.push_back(key("key" + std::to_string(i % 24)));
    }
    for (const Bytes& b : msgs) {
        auto v = MessageView::parse(b);
        ASSERT_TRUE(v);
        views.push_back(*v);
    }
    std::array<std::byte, 1024> out{};
    std::size_t hits = 0;

    test::AllocGuard guard;
    std::int64_t now = 0;
    for (int round = 0; round < 50; ++round) {
        for (std::size_t i = 0; i < msgs.size(); ++i) {
            now += 500;
            (void)c.store(keys[i], views[i], now);
            hits += c.lookup(keys[(i * 5) % keys.size()], 1, now, out) ? 1u : 0u;
        }
        if (round == 25) c.clear();
    }
    EXPECT_EQ(guard.count(), 0u);
    EXPECT_GT(hits, 0u);
    EXPECT_GT(c.counters().evicted.get() + c.counters().expired.get(), 0u);
}

}  // namespace
}  // namespace slipway::dns
