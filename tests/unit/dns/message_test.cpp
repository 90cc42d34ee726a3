// dns::MessageView and friends against messages laid out as resolvers send them (RFC 1035 §4):
// compressed answers, negative answers with SOA, EDNS, name rules, TTL aging and reply building.
#include "slipway/dns/message.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dns_test_util.hpp"

namespace slipway::dns {
namespace {

using namespace testutil;

static_assert(noexcept(MessageView::parse(ByteView{})));
static_assert(noexcept(Header::parse(ByteView{})));
static_assert(noexcept(read_name(ByteView{}, 0, MutByteView{})));
static_assert(std::is_trivially_copyable_v<MessageView> && std::is_trivially_copyable_v<Rr>);

std::string text(ByteView b) {
    std::string s;
    for (auto c : b)
        s.push_back(static_cast<char>(c));
    return s;
}

// Dotted lowercase form of the name at `off`, or "<error>".
std::string dotted(ByteView msg, std::size_t off) {
    std::array<std::byte, kMaxNameLen> buf{};
    auto r = read_name(msg, off, buf, NameForm::dotted_lower);
    return r ? text(ByteView(buf).first(r->out_len)) : "<error>";
}

std::string dotted(const NameRef& n) {
    std::array<std::byte, kMaxNameLen> buf{};
    auto r = n.read(buf, NameForm::dotted_lower);
    return r ? text(ByteView(buf).first(*r)) : "<error>";
}

std::vector<Rr> all_rrs(const MessageView& m) {
    std::vector<Rr> v;
    for (const Rr& rr : m.rrs())
        v.push_back(rr);
    return v;
}

std::size_t offset_in(const MessageView& m, ByteView sub) {
    return static_cast<std::size_t>(sub.data() - m.bytes().data());
}

Bytes patched(Bytes b, std::size_t off, std::string_view bytes) {
    const auto h = hex(bytes);
    std::copy(h.begin(), h.end(), b.begin() + static_cast<std::ptrdiff_t>(off));
    return b;
}

Bytes cut(const Bytes& b, std::size_t n) {
    return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
}

Bytes appended(Bytes b, std::string_view bytes) {
    const auto h = hex(bytes);
    b.insert(b.end(), h.begin(), h.end());
    return b;
}

// ------------------------------------------------------------------------------------ vectors
// Laid out byte for byte as BIND/Unbound answer and dig/nslookup ask (RFC 1035 §4.1), names
// compressed the way those servers compress them; "@N" is the offset a pointer refers to.

// 52 bytes
const Bytes kQueryA = hex(
    // header: id 0x3c4d, RD AD, QD 1, AR 1
    "3c4d01200001000000000001"
    // question: example.com A IN
    "076578616d706c6503636f6d0000010001"
    // OPT: size 1232, COOKIE option (10) with an 8-byte client cookie
    "00002904d000000000000c000a0008d5a7e3c1f3e0a2b4");

// 39 bytes
const Bytes kQueryAaaaMixedCase = hex(
    // header: id 0x1234, RD, QD 1
    "123401000001000000000000"
    // question: HoSt.SlipWay.INTERNAL AAAA IN
    "04486f537407536c697057617908494e5445524e414c00001c0001");

// 39 bytes
const Bytes kQueryAaaaLower = hex(
    // header: id 0x9999, RD, QD 1
    "999901000001000000000000"
    // question: host.slipway.internal AAAA IN
    "04686f737407736c697077617908696e7465726e616c00001c0001");

// 50 bytes
const Bytes kQueryDo = hex(
    // header: id 0x0a0b, RD CD, QD 1, AR 1
    "0a0b01100001000000000001"
    // question: host.slipway.internal A IN
    "04686f737407736c697077617908696e7465726e616c0000010001"
    // OPT: size 400 (below 512), DO
    "0000290190000080000000");

// 74 bytes
const Bytes kAnswerCnameA = hex(
    // header: id 0x3c4d, QR RD RA, QD 1, AN 2, AR 1
    "3c4d81800001000200000001"
    // question @12: www.example.com A IN
    "03777777076578616d706c6503636f6d0000010001"
    // answer: @12 CNAME ttl 300 -> @16 (example.com)
    "c00c000500010000012c0002c010"
    // answer: @16 A ttl 120 93.184.215.14
    "c010000100010000007800045db8d70e"
    // OPT: size 1232
    "00002904d0000000000000");

// 57 bytes
const Bytes kAnswerAaaa = hex(
    // header: id 0x4242, QR RD RA, QD 1, AN 1
    "424281800001000100000000"
    // question @12: example.com AAAA IN
    "076578616d706c6503636f6d00001c0001"
    // answer: @12 AAAA ttl 3600 2606:2800:21f:cb07:6820:80da:af6b:8b2c
    "c00c001c000100000e10001026062800021fcb07682080daaf6b8b2c");

// 77 bytes
const Bytes kAnswerTxt = hex(
    // header: id 0x0001, QR RD RA, QD 1, AN 2
    "000181800001000200000000"
    // question @12: example.com TXT IN
    "076578616d706c6503636f6d0000100001"
    // answer: @12 TXT ttl 86400 "v=spf1 -all"
    "c00c0010000100015180000c0b763d73706631202d616c6c"
    // answer: @12 TXT ttl 3000 "hello" "world"
    "c00c0010000100000bb8000c0568656c6c6f05776f726c64");

// 66 bytes
const Bytes kAnswerMx = hex(
    // header: id 0x0002, QR RD RA, QD 1, AN 1, AR 1
    "000281800001000100000001"
    // question @12: example.com MX IN
    "076578616d706c6503636f6d00000f0001"
    // answer: @12 MX ttl 1800 10 mail.@12 (exchange @43)
    "c00c000f0001000007080009000a046d61696cc00c"
    // additional: @43 (mail.example.com) A ttl 600 192.0.2.25
    "c02b00010001000002580004c0000219");

// 66 bytes
const Bytes kAnswerSrv = hex(
    // header: id 0x0003, QR RD RA, QD 1, AN 1
    "000381800001000100000000"
    // question @12: _sip._tcp.example.com SRV IN
    "045f736970045f746370076578616d706c6503636f6d0000210001"
    // answer: @12 SRV ttl 86400 10 60 5060 bigbox.@22
    "c00c0021000100015180000f000a003c13c406626967626f78c016");

// 108 bytes
const Bytes kAnswerNxdomain = hex(
    // header: id 0x0004, QR RD RA, NXDOMAIN, QD 1, NS 1, AR 1
    "000481830001000000010001"
    // question @12: nonexistent.example.com A IN
    "0b6e6f6e6578697374656e74076578616d706c6503636f6d0000010001"
    // authority: @24 (example.com) SOA ttl 3600 ns.icann.org noc.dns.@56 serial refresh retry
    // expire, MINIMUM 300
    "c0180006000100000e10002c026e73056963616e6e036f726700036e6f6303646e73c03878a507f800001c2000000e"
    "10001275000000012c"
    // OPT: size 1232
    "00002904d0000000000000");

// 85 bytes
const Bytes kAnswerNodata = hex(
    // header: id 0x0005, QR RD RA, NOERROR, QD 1, NS 1
    "000581800001000000010000"
    // question @12: example.com MX IN
    "076578616d706c6503636f6d00000f0001"
    // authority: @12 SOA ttl 60 ns.icann.org noc.dns.@44 ..., MINIMUM 86400
    "c00c000600010000003c002c026e73056963616e6e036f726700036e6f6303646e73c02c78a507f800001c2000000e"
    "100012750000015180");

// ------------------------------------------------------------------------------------- header

TEST(DnsHeader, ReadsEveryField) {
    auto h = Header::parse(kQueryA);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->id, 0x3c4d);
    EXPECT_FALSE(h->qr);
    EXPECT_EQ(h->opcode, Opcode::query);
    EXPECT_TRUE(h->rd);
    EXPECT_TRUE(h->ad);
    EXPECT_FALSE(h->aa || h->tc || h->ra || h->cd);
    EXPECT_EQ(h->rcode, Rcode::noerror);
    EXPECT_EQ(h->qdcount, 1);
    EXPECT_EQ(h->arcount, 1);

    auto a = Header::parse(kAnswerNxdomain);
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->qr && a->rd && a->ra);
    EXPECT_EQ(a->rcode, Rcode::nxdomain);
    EXPECT_EQ(a->nscount, 1);
}

TEST(DnsHeader, StoreRoundTripsAndDropsZ) {
    for (const Bytes* m : {&kQueryA, &kQueryDo, &kAnswerCnameA, &kAnswerNxdomain}) {
        auto h = Header::parse(*m);
        ASSERT_TRUE(h);
        std::array<std::byte, kHeaderLen> out{};
        h->store(out.data());
        EXPECT_TRUE(same(out, ByteView(*m).first(kHeaderLen)));
    }
    Bytes z = kQueryA;
    z[3] |= std::byte{0x40};  // Z: must be zero (RFC 1035 §4.1.1); read as zero
    auto h = Header::parse(z);
    ASSERT_TRUE(h);
    std::array<std::byte, kHeaderLen> out{};
    h->store(out.data());
    EXPECT_TRUE(same(out, ByteView(kQueryA).first(kHeaderLen)));
}

TEST(DnsHeader, RejectsTruncatedHeader) {
    EXPECT_EQ(Header::parse(ByteView(kQueryA).first(11)).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(ByteView(kQueryA).first(11)).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(ByteView{}).error(), Errc::truncated);
}

// ------------------------------------------------------------------------------------ queries

TEST(DnsQuery, ReadsQuestionAndEdns) {
    auto m = MessageView::parse(kQueryA);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id(), 0x3c4d);
    auto q = m->question();
    ASSERT_TRUE(q);
    EXPECT_EQ(q->qtype, rrtype::a);
    EXPECT_EQ(q->qclass, kClassIn);
    EXPECT_EQ(q->name.offset(), kHeaderLen);
    EXPECT_EQ(q->name.wire_len(), 13u);
    EXPECT_EQ(dotted(q->name), "example.com");
    EXPECT_TRUE(q->name.equals("example.com"));
    EXPECT_TRUE(q->name.equals("example.com."));
    EXPECT_FALSE(q->name.equals("example.co"));
    EXPECT_FALSE(q->name.equals("www.example.com"));

    EXPECT_TRUE(m->has_opt());
    EXPECT_EQ(m->opt_udp_size(), 1232);
    EXPECT_FALSE(m->dnssec_ok());
    auto e = m->edns();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->udp_size, 1232);
    EXPECT_EQ(e->version, 0);
    EXPECT_EQ(e->ext_rcode, 0);
    EXPECT_EQ(e->options.size(), 12u);  // COOKIE: code 10, length 8, client cookie
    EXPECT_EQ(load_be16(e->options, 0), 10);

    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 1u);
    EXPECT_TRUE(rrs[0].is_opt());
    EXPECT_EQ(rrs[0].section, Section::additional);
    EXPECT_EQ(m->min_answer_ttl(), std::nullopt);
    EXPECT_EQ(m->min_ttl(), std::nullopt);  // OPT carries no TTL
    EXPECT_EQ(m->size(), kQueryA.size());
}

TEST(DnsQuery, SmallEdnsSizeCountsAs512AndDoIsRead) {
    auto m = MessageView::parse(kQueryDo);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->edns()->udp_size, 400);
    EXPECT_EQ(m->opt_udp_size(), kMinUdpSize);  // RFC 6891 §6.2.5
    EXPECT_TRUE(m->dnssec_ok());
    EXPECT_TRUE(m->header().cd);
}

TEST(DnsQuery, WithoutOpt) {
    auto m = MessageView::parse(kQueryAaaaMixedCase);
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->has_opt());
    EXPECT_EQ(m->edns(), std::nullopt);
    EXPECT_EQ(m->opt_udp_size(), 512);
    EXPECT_FALSE(m->dnssec_ok());
    EXPECT_TRUE(all_rrs(*m).empty());
    EXPECT_FALSE(m->is_negative());  // a query is NOERROR without answers, but has no SOA
    EXPECT_EQ(m->negative_ttl(), std::nullopt);
}

TEST(DnsQuery, QuestionsCompareCaseInsensitively) {
    auto mixed = MessageView::parse(kQueryAaaaMixedCase);
    auto lower = MessageView::parse(kQueryAaaaLower);
    auto type_a = MessageView::parse(kQueryDo);  // same name, QTYPE A
    ASSERT_TRUE(mixed && lower && type_a);
    EXPECT_TRUE(mixed->question()->equals(*lower->question()));
    EXPECT_TRUE(mixed->question()->name.equals(type_a->question()->name));
    EXPECT_FALSE(mixed->question()->equals(*type_a->question()));
    EXPECT_TRUE(mixed->question()->name.equals("HOST.slipway.internal"));
    EXPECT_EQ(dotted(mixed->question()->name), "host.slipway.internal");

    std::array<std::byte, kMaxKeyLen> k1{}, k2{};
    auto n1 = mixed->question_key(k1);
    auto n2 = lower->question_key(k2);
    ASSERT_TRUE(n1 && n2);
    EXPECT_TRUE(same(ByteView(k1).first(*n1), ByteView(k2).first(*n2)));
    EXPECT_TRUE(same(ByteView(k1).first(*n1),
                     hex("04686f737407736c697077617908696e7465726e616c00001c0001")));
    std::array<std::byte, kMaxKeyLen> k3{};
    auto n3 = type_a->question_key(k3);
    ASSERT_TRUE(n3);
    EXPECT_FALSE(same(ByteView(k1).first(*n1), ByteView(k3).first(*n3)));

    // The wire form keeps the case the guest sent (RFC 4343 §4.1).
    std::array<std::byte, kMaxNameLen> w{};
    auto n = mixed->question()->name.read(w, NameForm::wire);
    ASSERT_TRUE(n);
    EXPECT_TRUE(same(ByteView(w).first(*n), ByteView(kQueryAaaaMixedCase).subspan(12, 23)));

    std::array<std::byte, 26> short_key{};
    EXPECT_EQ(mixed->question_key(short_key).error(), Errc::too_large);
}

TEST(DnsQuery, FoldingIsAsciiOnly) {
    // 0xc1 and 0xe1 differ by 0x20 like 'A'/'a' but are not letters (RFC 4343 §3).
    auto a =
        hex("000001000001000000000000"
            "01c10000010001");
    auto b =
        hex("000001000001000000000000"
            "01e10000010001");
    auto ma = MessageView::parse(a);
    auto mb = MessageView::parse(b);
    ASSERT_TRUE(ma && mb);
    EXPECT_FALSE(ma->question()->equals(*mb->question()));
}

TEST(DnsQuery, NoQuestionIsAccepted) {
    const Bytes b = hex("abcd81810000000000000000");  // a FORMERR answer
    const auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->question(), std::nullopt);
    std::array<std::byte, kMaxKeyLen> k{};
    EXPECT_EQ(m->question_key(k).error(), Errc::invalid_argument);
    EXPECT_FALSE(m->is_negative());
    EXPECT_EQ(m->rcode(), Rcode::formerr);
}

// ------------------------------------------------------------------------------------ answers

TEST(DnsAnswer, CnameAndAWithCompression) {
    auto m = MessageView::parse(kAnswerCnameA);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 3u);
    EXPECT_EQ(rrs[0].type, rrtype::cname);
    EXPECT_EQ(rrs[0].section, Section::answer);
    EXPECT_TRUE(rrs[0].name.equals(m->question()->name));
    EXPECT_EQ(rrs[0].ttl, 300u);
    EXPECT_EQ(dotted(m->bytes(), offset_in(*m, rrs[0].rdata)), "example.com");
    EXPECT_EQ(rrs[1].type, rrtype::a);
    EXPECT_EQ(dotted(rrs[1].name), "example.com");
    EXPECT_EQ(rrs[1].name.wire_len(), 13u);
    EXPECT_TRUE(same(rrs[1].rdata, hex("5db8d70e")));
    EXPECT_EQ(rrs[1].ttl_offset, 53u);
    EXPECT_TRUE(rrs[2].is_opt());

    EXPECT_EQ(m->min_answer_ttl(), 120u);
    EXPECT_EQ(m->min_ttl(), 120u);
    EXPECT_FALSE(m->is_negative());
    EXPECT_EQ(m->negative_soa(), std::nullopt);
    EXPECT_EQ(m->negative_ttl(), std::nullopt);
    EXPECT_EQ(m->rcode(), Rcode::noerror);

    int n = 0;
    m->for_each_rr([&](const Rr& rr) { n += rr.type; });
    EXPECT_EQ(n, rrtype::cname + rrtype::a + rrtype::opt);
}

TEST(DnsAnswer, Aaaa) {
    auto m = MessageView::parse(kAnswerAaaa);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 1u);
    EXPECT_EQ(rrs[0].type, rrtype::aaaa);
    auto want = Ipv6Addr::parse("2606:2800:21f:cb07:6820:80da:af6b:8b2c");
    ASSERT_TRUE(want);
    EXPECT_EQ(Ipv6Addr::load(rrs[0].rdata.data()), *want);
    EXPECT_EQ(m->min_answer_ttl(), 3600u);
}

TEST(DnsAnswer, TxtRecords) {
    auto m = MessageView::parse(kAnswerTxt);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 2u);
    EXPECT_EQ(text(rrs[0].rdata), "\x0bv=spf1 -all");
    EXPECT_EQ(text(rrs[1].rdata), "\x05hello\x05world");
    EXPECT_EQ(m->min_answer_ttl(), 3000u);
}

TEST(DnsAnswer, MxWithAdditionalPointingIntoRdata) {
    auto m = MessageView::parse(kAnswerMx);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 2u);
    EXPECT_EQ(load_be16(rrs[0].rdata, 0), 10);
    EXPECT_EQ(dotted(m->bytes(), offset_in(*m, rrs[0].rdata) + 2), "mail.example.com");
    EXPECT_EQ(rrs[1].section, Section::additional);
    EXPECT_TRUE(rrs[1].name.equals("mail.example.com"));
    EXPECT_EQ(m->min_answer_ttl(), 1800u);  // the additional A (600) is not an answer
    EXPECT_EQ(m->min_ttl(), 600u);
}

TEST(DnsAnswer, Srv) {
    auto m = MessageView::parse(kAnswerSrv);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 1u);
    EXPECT_EQ(dotted(rrs[0].name), "_sip._tcp.example.com");
    EXPECT_EQ(load_be16(rrs[0].rdata, 4), 5060);
    EXPECT_EQ(dotted(m->bytes(), offset_in(*m, rrs[0].rdata) + 6), "bigbox.example.com");
    EXPECT_EQ(m->min_answer_ttl(), 86400u);
}

TEST(DnsAnswer, NxdomainWithSoa) {
    auto m = MessageView::parse(kAnswerNxdomain);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->rcode(), Rcode::nxdomain);
    EXPECT_TRUE(m->is_negative());
    EXPECT_EQ(m->min_answer_ttl(), std::nullopt);
    auto soa = m->negative_soa();
    ASSERT_TRUE(soa);
    EXPECT_EQ(soa->section, Section::authority);
    EXPECT_EQ(dotted(soa->name), "example.com");
    EXPECT_EQ(soa->ttl, 3600u);
    const std::size_t rd = offset_in(*m, soa->rdata);
    EXPECT_EQ(dotted(m->bytes(), rd), "ns.icann.org");
    EXPECT_EQ(dotted(m->bytes(), rd + 14), "noc.dns.icann.org");
    EXPECT_EQ(m->negative_soa_minimum(), 300u);
    EXPECT_EQ(m->negative_ttl(), 300u);  // RFC 2308 §5: min(3600, 300)
}

TEST(DnsAnswer, NodataWithSoa) {
    auto m = MessageView::parse(kAnswerNodata);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->rcode(), Rcode::noerror);
    EXPECT_TRUE(m->is_negative());
    EXPECT_EQ(m->negative_soa_minimum(), 86400u);
    EXPECT_EQ(m->negative_ttl(), 60u);  // min(SOA TTL 60, MINIMUM 86400)
    EXPECT_EQ(m->min_ttl(), 60u);
}

TEST(DnsAnswer, CnameWithoutTargetDataIsNodata) {
    Bytes b = kAnswerCnameA;
    store_be16(b.data() + 6, 1);              // ANCOUNT 1
    b.erase(b.begin() + 47, b.begin() + 63);  // drop the A record
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->is_negative());
    EXPECT_EQ(m->negative_ttl(), std::nullopt);  // no SOA: not cached (RFC 2308 §5)
    EXPECT_EQ(m->min_answer_ttl(), 300u);
}

TEST(DnsAnswer, NegativeDependsOnRcodeAndQtype) {
    Bytes b = kAnswerNxdomain;
    b[3] = std::byte{0x80};  // NOERROR, question A: still NODATA (no A answer)
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->is_negative());
    store_be16(b.data() + 12 + 25, rrtype::soa);  // QTYPE SOA: still no SOA in the answer section
    m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->is_negative());
    b[3] = std::byte{0x82};  // SERVFAIL: neither NXDOMAIN nor NODATA
    m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->is_negative());
    EXPECT_EQ(m->negative_soa(), std::nullopt);
    EXPECT_EQ(m->negative_ttl(), std::nullopt);
}

TEST(DnsAnswer, TopBitTtlCountsAsZero) {
    Bytes b = kAnswerCnameA;
    store_be32(b.data() + 53, 0x80000001u);  // RFC 2181 §8
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->min_answer_ttl(), 0u);
    EXPECT_EQ(effective_ttl(0x7fffffffu), 0x7fffffffu);
}

TEST(DnsAnswer, TrailingBytesAreIgnored) {
    Bytes b = kAnswerAaaa;
    for (char c : std::string_view("garbage"))
        b.push_back(static_cast<std::byte>(c));
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->size(), kAnswerAaaa.size());
    EXPECT_TRUE(same(m->bytes(), kAnswerAaaa));
    EXPECT_EQ(m->min_answer_ttl(), 3600u);
}

TEST(DnsAnswer, NameReachingIntoTrailingBytesIsRejected) {
    // RR 1 (TXT) has RDATA "3f": a 63-byte label length. RR 2's owner points at it, so the label
    // would run over RR 2 into the bytes after the last RR.
    Bytes b =
        hex("000081800001000200000000"
            "01610000100001"  // header, question a. TXT
            "c00c00100001000000000001"
            "3f"                          // RR 1 @19, RDATA @31
            "c01f00100001000000000000");  // RR 2 @32: owner @31
    const std::size_t end = b.size();
    b.resize(end + 51, std::byte{'x'});
    b.push_back(std::byte{0});
    // The pointer lands in TXT RDATA, which is no label start of an earlier name.
    EXPECT_EQ(MessageView::parse(ByteView(b).first(end)).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_length);
    EXPECT_TRUE(scan_name(b, 32));  // the raw decompressor alone would follow it
}

// ---------------------------------------------------------------------------- cache serving

TEST(DnsAge, RewritesIdAndAgesEveryTtlButOpt) {
    Bytes b = kAnswerNxdomain;
    store_be32(b.data() + b.size() - 6, 0x00008000u);  // OPT TTL field: DO flag
    Bytes garbage = b;
    garbage.push_back(std::byte{0xee});
    ASSERT_TRUE(rewrite_id_and_age(b, 0xbeef, 100));
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id(), 0xbeef);
    EXPECT_EQ(m->negative_soa()->ttl, 3500u);
    EXPECT_EQ(m->negative_ttl(), 300u);  // MINIMUM is RDATA, not a TTL: untouched
    EXPECT_TRUE(m->dnssec_ok());

    ASSERT_TRUE(rewrite_id_and_age(garbage, 0xbeef, 100));
    EXPECT_TRUE(same(ByteView(garbage).first(b.size()), b));
    EXPECT_EQ(garbage.back(), std::byte{0xee});
}

TEST(DnsAge, AgingSaturatesAtZero) {
    Bytes b = kAnswerCnameA;
    ASSERT_TRUE(rewrite_id_and_age(b, 7, 200));
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    auto rrs = all_rrs(*m);
    EXPECT_EQ(rrs[0].ttl, 100u);
    EXPECT_EQ(rrs[1].ttl, 0u);
    EXPECT_EQ(rrs[2].ttl, 0u);  // OPT: flags, left as they were
    EXPECT_EQ(m->id(), 7);

    Bytes top = kAnswerCnameA;
    store_be32(top.data() + 53, 0x80000100u);
    ASSERT_TRUE(rewrite_id_and_age(top, 7, 0));
    EXPECT_EQ(load_be32(top.data() + 53), 0u);  // RFC 2181 §8
    EXPECT_EQ(load_be32(top.data() + 39), 300u);
}

TEST(DnsAge, LeavesInvalidMessagesAlone) {
    Bytes b = kAnswerCnameA;
    store_be16(b.data() + 6, 9);  // ANCOUNT beyond the records
    const Bytes before = b;
    auto r = rewrite_id_and_age(b, 1, 1);
    ASSERT_FALSE(r);
    EXPECT_TRUE(same(b, before));
}

// ---------------------------------------------------------------------------------- builders

TEST(DnsBuild, LocalARecordExactBytes) {
    auto q = MessageView::parse(kQueryDo);
    ASSERT_TRUE(q);
    auto r = ResponseRepr::reply_to(*q, Rcode::noerror)
                 .with_a(10, Ipv4Addr::from_octets(192, 168, 127, 254));
    r.header.aa = true;
    Bytes out(r.buffer_len());
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, out.size());
    EXPECT_TRUE(same(out, hex("0a0b85900001000100000001"  // QR AA RD, RA CD
                              "04686f737407736c697077617908696e7465726e616c0000010001"
                              "c00c00010001"
                              "0000000a"
                              "0004c0a87ffe"
                              "00002904d0"
                              "00008000"
                              "0000")));  // DO echoed
    auto m = MessageView::parse(out);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id(), q->id());
    EXPECT_TRUE(m->question()->equals(*q->question()));
    EXPECT_EQ(m->min_answer_ttl(), 10u);
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 2u);
    EXPECT_TRUE(rrs[0].name.equals("host.slipway.internal"));
    EXPECT_EQ(Ipv4Addr::load(rrs[0].rdata.data()), Ipv4Addr::from_octets(192, 168, 127, 254));
    EXPECT_TRUE(m->dnssec_ok());
    EXPECT_EQ(m->opt_udp_size(), kEdnsUdpSize);

    EXPECT_EQ(r.emit(MutByteView(out).first(out.size() - 1)).error(), Errc::too_large);
}

TEST(DnsBuild, LocalAaaaKeepsTheGuestsCase) {
    auto q = MessageView::parse(kQueryAaaaMixedCase);
    ASSERT_TRUE(q);
    auto addr = Ipv6Addr::parse("fd00::1");
    ASSERT_TRUE(addr);
    auto r = ResponseRepr::reply_to(*q, Rcode::noerror).with_aaaa(5, *addr);
    std::array<std::byte, 512> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kQueryAaaaMixedCase.size() + 2 + 10 + 16);
    auto m = MessageView::parse(ByteView(out).first(*n));
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->has_opt());  // none asked for
    EXPECT_TRUE(same(ByteView(out).subspan(12, 27), ByteView(kQueryAaaaMixedCase).subspan(12)));
    auto rrs = all_rrs(*m);
    ASSERT_EQ(rrs.size(), 1u);
    EXPECT_EQ(rrs[0].type, rrtype::aaaa);
    EXPECT_EQ(Ipv6Addr::load(rrs[0].rdata.data()), *addr);
    EXPECT_TRUE(m->header().rd && m->header().ra && m->header().qr);
}

TEST(DnsBuild, ErrorRepliesEchoQuestionAndOpt) {
    auto q = MessageView::parse(kQueryA);
    ASSERT_TRUE(q);
    for (Rcode rc : {Rcode::nxdomain, Rcode::noerror, Rcode::servfail, Rcode::refused,
                     Rcode::formerr, Rcode::notimp}) {
        auto r = ResponseRepr::reply_to(*q, rc);
        std::array<std::byte, 512> out{};
        auto n = r.emit(out);
        ASSERT_TRUE(n);
        EXPECT_EQ(*n, 12u + 17u + 11u);
        auto m = MessageView::parse(ByteView(out).first(*n));
        ASSERT_TRUE(m);
        EXPECT_EQ(m->id(), 0x3c4d);
        EXPECT_EQ(m->rcode(), rc);
        EXPECT_TRUE(m->question()->equals(*q->question()));
        EXPECT_TRUE(all_rrs(*m).size() == 1 && m->has_opt());
        EXPECT_EQ(m->header().ancount + m->header().nscount, 0);
        EXPECT_EQ(m->is_negative(), rc == Rcode::nxdomain || rc == Rcode::noerror);
        EXPECT_EQ(m->negative_ttl(), std::nullopt);
    }
}

TEST(DnsBuild, FormerrFromHeaderOnly) {
    Bytes bad = kQueryA;
    store_be16(bad.data() + 4, 2);  // QDCOUNT 2: refused by parse()
    ASSERT_EQ(MessageView::parse(bad).error(), Errc::unsupported);
    auto h = Header::parse(bad);
    ASSERT_TRUE(h);
    auto r = ResponseRepr::reply_to(*h, Rcode::formerr);
    std::array<std::byte, kHeaderLen> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_TRUE(same(out, hex("3c4d81810000000000000000")));  // QR RD, RA, FORMERR
}

TEST(DnsBuild, ExtendedRcodeNeedsOpt) {
    auto q = MessageView::parse(kQueryA);
    ASSERT_TRUE(q);
    auto r = ResponseRepr::reply_to(*q, Rcode::badvers);  // RFC 6891 §7
    std::array<std::byte, 512> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    auto m = MessageView::parse(ByteView(out).first(*n));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->header().rcode, Rcode::noerror);
    EXPECT_EQ(m->edns()->ext_rcode, 1);
    EXPECT_EQ(m->rcode(), Rcode::badvers);

    r.edns.reset();
    EXPECT_EQ(r.emit(out).error(), Errc::invalid_argument);
    auto noq = ResponseRepr::reply_to(q->header(), Rcode::noerror)
                   .with_a(1, Ipv4Addr::from_octets(1, 2, 3, 4));
    EXPECT_EQ(noq.emit(out).error(), Errc::invalid_argument);  // nothing for the pointer
}

// ------------------------------------------------------------------------------------- names

TEST(DnsName, ReadForms) {
    const Bytes& b = kQueryAaaaMixedCase;
    std::array<std::byte, kMaxNameLen> out{};
    auto w = read_name(b, 12, out, NameForm::wire);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->end, 35u);
    EXPECT_EQ(w->wire_len, 23u);
    EXPECT_EQ(w->out_len, 23u);
    EXPECT_EQ(text(ByteView(out).first(w->out_len)), text(ByteView(b).subspan(12, 23)));
    auto l = read_name(b, 12, out, NameForm::wire_lower);
    ASSERT_TRUE(l);
    EXPECT_TRUE(same(ByteView(out).first(l->out_len), ByteView(kQueryAaaaLower).subspan(12, 23)));
    auto d = read_name(b, 12, out, NameForm::dotted_lower);
    ASSERT_TRUE(d);
    EXPECT_EQ(text(ByteView(out).first(d->out_len)), "host.slipway.internal");

    // A name through a pointer: `end` stops after the pointer, wire_len counts the whole name.
    auto p = read_name(kAnswerCnameA, 47, out, NameForm::wire);  // the A owner, @16
    ASSERT_TRUE(p);
    EXPECT_EQ(p->end, 49u);
    EXPECT_EQ(p->wire_len, 13u);

    std::array<std::byte, 22> small{};
    EXPECT_EQ(read_name(b, 12, small).error(), Errc::too_large);
    EXPECT_EQ(read_name(b, 12, MutByteView{}).error(), Errc::too_large);
    auto s = scan_name(b, 12);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->out_len, 0u);
    EXPECT_EQ(s->wire_len, 23u);
}

TEST(DnsName, Root) {
    auto b =
        hex("000000000001000000000000"
            "0000020001");  // . NS IN
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->question()->name.wire_len(), 1u);
    EXPECT_EQ(dotted(m->question()->name), ".");
    EXPECT_TRUE(m->question()->name.equals("."));
    EXPECT_TRUE(m->question()->name.equals(""));
    EXPECT_FALSE(m->question()->name.equals("com"));
}

TEST(DnsName, DotInsideALabelHasNoDottedForm) {
    auto b =
        hex("000000000001000000000000"
            "03612e62000001"
            "0001");  // label "a.b"
    auto m = MessageView::parse(b);
    ASSERT_TRUE(m);
    std::array<std::byte, kMaxNameLen> out{};
    EXPECT_EQ(m->question()->name.read(out, NameForm::dotted_lower).error(), Errc::unsupported);
    EXPECT_FALSE(m->question()->name.equals("a.b"));  // two labels, not one
    EXPECT_TRUE(m->question()->name.read(out, NameForm::wire));
}

TEST(DnsName, Encode) {
    std::array<std::byte, kMaxNameLen> out{};
    auto n = encode_name("Host.Slipway.Internal.", out);
    ASSERT_TRUE(n);
    EXPECT_TRUE(same(ByteView(out).first(*n), hex("04486f737407536c6970776179"
                                                  "08496e7465726e616c00")));
    n = encode_name(".", out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(encode_name(std::string(63, 'a') + ".com", out).value_or(0), 69u);
    EXPECT_EQ(encode_name(std::string(64, 'a') + ".com", out).error(), Errc::invalid_argument);
    EXPECT_EQ(encode_name("a..b", out).error(), Errc::invalid_argument);
    EXPECT_EQ(encode_name(".a", out).error(), Errc::invalid_argument);
    const std::string l63(63, 'x');
    const std::string max = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'x');  // 255
    EXPECT_EQ(encode_name(max, out).value_or(0), 255u);
    EXPECT_EQ(encode_name(max + "x", out).error(), Errc::invalid_argument);
    std::array<std::byte, 4> small{};
    EXPECT_EQ(encode_name("abcd", small).error(), Errc::too_large);
}

// Message with header (QD 1) then `name` as the question, A IN.
Bytes query_with_name(const Bytes& name) {
    Bytes b = hex("000001000001000000000000");
    b.insert(b.end(), name.begin(), name.end());
    const auto tail = hex("00010001");
    b.insert(b.end(), tail.begin(), tail.end());
    return b;
}

Bytes labels_of(std::size_t count, std::size_t len) {
    Bytes b;
    for (std::size_t i = 0; i < count; ++i) {
        b.push_back(static_cast<std::byte>(len));
        b.insert(b.end(), len, std::byte{'a'});
    }
    return b;
}

TEST(DnsName, LengthLimits) {
    Bytes ok = labels_of(3, 63);
    const Bytes last = labels_of(1, 61);
    ok.insert(ok.end(), last.begin(), last.end());
    ok.push_back(std::byte{0});  // 3 * 64 + 62 + 1 = 255
    const Bytes okq = query_with_name(ok);
    auto m = MessageView::parse(okq);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->question()->name.wire_len(), 255u);

    Bytes too_long = labels_of(4, 63);  // 257
    too_long.push_back(std::byte{0});
    EXPECT_EQ(MessageView::parse(query_with_name(too_long)).error(), Errc::bad_length);

    // Too long only once decompressed: 64 bytes of label, then a pointer to a 193-byte name.
    Bytes q193 = labels_of(3, 63);
    q193.push_back(std::byte{0});
    Bytes b = query_with_name(q193);
    store_be16(b.data() + 6, 1);
    const Bytes owner = labels_of(1, 63);
    b.insert(b.end(), owner.begin(), owner.end());
    const auto rest =
        hex("c00c"
            "00010001"
            "00000000"
            "0000");
    b.insert(b.end(), rest.begin(), rest.end());
    EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_length);
    store_be16(b.data() + 6, 0);  // without that RR it is fine
    EXPECT_TRUE(MessageView::parse(b));
}

TEST(DnsName, PointerHopLimit) {
    // "a." at 12, then a chain of pointers, each to the one before it.
    auto chain = [](std::size_t hops) {
        Bytes b(12, std::byte{0});
        const auto a = hex("016100");
        b.insert(b.end(), a.begin(), a.end());
        std::size_t prev = 12;
        for (std::size_t i = 0; i < hops; ++i) {
            const std::size_t at = b.size();
            b.push_back(static_cast<std::byte>(0xc0 | (prev >> 8)));
            b.push_back(static_cast<std::byte>(prev & 0xff));
            prev = at;
        }
        return std::pair{b, prev};
    };
    auto [ok, ok_at] = chain(kMaxPointerHops);
    auto r = scan_name(ok, ok_at);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->wire_len, 3u);
    EXPECT_EQ(r->end, ok_at + 2);
    auto [bad, bad_at] = chain(kMaxPointerHops + 1);
    EXPECT_EQ(scan_name(bad, bad_at).error(), Errc::bad_length);
}

TEST(DnsName, PointerLoopsAndWrongPointers) {
    // Question "a." A IN occupies 12..18; bytes from 19 on are the answer's owner name.
    const Bytes q =
        hex("000081800001000100000000"
            "0161000001"
            "0001");
    auto with = [&](std::string_view owner) {
        Bytes b = q;
        const auto o = hex(owner);
        b.insert(b.end(), o.begin(), o.end());
        const auto rest =
            hex("00010001"
                "00000000"
                "0000");
        b.insert(b.end(), rest.begin(), rest.end());
        return b;
    };
    EXPECT_TRUE(MessageView::parse(with("c00c")));
    EXPECT_TRUE(MessageView::parse(with("0162c00c")));  // "b" then the question name

    const Bytes self = with("c013");  // @19 points to 19
    EXPECT_EQ(MessageView::parse(self).error(), Errc::bad_length);
    const Bytes forward = with(
        "c015"
        "c013");  // @19 -> @21 -> @19: each other
    EXPECT_EQ(MessageView::parse(forward).error(), Errc::bad_length);
    EXPECT_EQ(scan_name(forward, 21).error(), Errc::bad_length);  // backwards first, then loop
    EXPECT_EQ(MessageView::parse(with("0162c013")).error(), Errc::bad_length);  // own label run
    EXPECT_EQ(MessageView::parse(with("0162c015")).error(), Errc::bad_length);  // into own run
    EXPECT_EQ(MessageView::parse(with("c000")).error(), Errc::bad_length);      // into header
    EXPECT_EQ(MessageView::parse(with("c00b")).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(query_with_name(hex("c00c"))).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(query_with_name(hex("0161c010"))).error(), Errc::bad_length);
    // Pointers to a label start of an earlier name, including a name in MX RDATA (@43).
    EXPECT_TRUE(MessageView::parse(with("c00e")));  // the root byte of the question name
    EXPECT_TRUE(MessageView::parse(kAnswerMx));
    // Anywhere else is refused inside a message: the middle of a label, a TTL field.
    EXPECT_EQ(MessageView::parse(with("c00d")).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(patched(kAnswerCnameA, 47, "c011")).error(), Errc::bad_length);
    Bytes ttl0 = patched(kAnswerCnameA, 39, "00000000");  // CNAME TTL 0 reads as a root name
    EXPECT_EQ(MessageView::parse(patched(ttl0, 47, "c027")).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(patched(kAnswerTxt, 53, "c020")).error(), Errc::bad_length);
    // The raw decompressor only needs backwards pointers; what they land on must be a name.
    EXPECT_EQ(scan_name(hex("000000000000000000000000"
                            "0361616100c00d"),
                        17)
                  .error(),
              Errc::unsupported);  // ...but what they land on must still be a name
    EXPECT_TRUE(scan_name(hex("000000000000000000000000"
                              "0300000000c00d"),
                          17));
}

struct Reject {
    const char* what;
    Bytes msg;
    Errc err;
};

class DnsReject : public ::testing::TestWithParam<Reject> {};

TEST_P(DnsReject, Rejects) {
    const auto& p = GetParam();
    auto m = MessageView::parse(p.msg);
    ASSERT_FALSE(m) << p.what;
    EXPECT_EQ(m.error(), p.err) << p.what << ": " << to_string(m.error());
    Bytes copy = p.msg;
    EXPECT_FALSE(rewrite_id_and_age(copy, 1, 1)) << p.what;
    EXPECT_TRUE(same(copy, p.msg)) << p.what;
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, DnsReject,
    ::testing::Values(
        Reject{"truncated header", cut(kQueryA, 11), Errc::truncated},
        Reject{"ANCOUNT larger than the message", patched(kAnswerAaaa, 6, "ffff"),
               Errc::bad_length},
        Reject{"ARCOUNT larger than the message", patched(kQueryA, 10, "0010"), Errc::bad_length},
        Reject{"QDCOUNT 2", patched(kQueryA, 4, "0002"), Errc::unsupported},
        Reject{"question cut inside QTYPE", cut(kQueryAaaaLower, 36), Errc::truncated},
        Reject{"label past the end", cut(kQueryAaaaLower, 20), Errc::truncated},
        Reject{"pointer cut in half", cut(kAnswerAaaa, 30), Errc::truncated},
        Reject{"RDATA past the end", cut(kAnswerAaaa, kAnswerAaaa.size() - 1), Errc::truncated},
        Reject{"third RR missing", patched(kAnswerTxt, 6, "0003"), Errc::truncated},
        Reject{"RR fixed part past the end", cut(kAnswerTxt, 60), Errc::truncated},
        Reject{"label type 0b01 (a 64-byte label)", patched(kQueryAaaaLower, 12, "40"),
               Errc::unsupported},
        Reject{"label type 0b10", patched(kQueryAaaaLower, 17, "80"), Errc::unsupported},
        Reject{"label type 0b01 in an RR owner", patched(kAnswerAaaa, 29, "7f"), Errc::unsupported},
        Reject{"self pointer in the question", patched(kQueryAaaaLower, 12, "c00c"),
               Errc::bad_length},
        Reject{"self pointer in an answer", patched(kAnswerCnameA, 47, "c02f"), Errc::bad_length},
        Reject{"forward pointer in an answer", patched(kAnswerCnameA, 47, "c031"),
               Errc::bad_length},
        Reject{"pointer into the header", patched(kAnswerCnameA, 47, "c002"), Errc::bad_length},
        Reject{"two OPT RRs", appended(patched(kQueryA, 10, "0002"), "00002904d0000000000000"),
               Errc::unsupported},
        Reject{"OPT in the answer section", patched(kQueryA, 6, "000100000000"), Errc::unsupported},
        Reject{"OPT owned by a name",
               appended(patched(kAnswerAaaa, 10, "0001"), "c00c002904d0000000000000"),
               Errc::unsupported},
        Reject{"OPT owned by a pointer to the root",
               appended(patched(kAnswerAaaa, 10, "0001"), "c018002904d0000000000000"),
               Errc::unsupported},
        Reject{"SOA RDATA one byte short", patched(kAnswerNodata, 39, "002b"), Errc::bad_length},
        Reject{"SOA RDATA one byte long", appended(patched(kAnswerNodata, 39, "002d"), "00"),
               Errc::bad_length},
        Reject{"SOA names run past the RDATA", patched(kAnswerNodata, 39, "0003"),
               Errc::bad_length},
        Reject{"CNAME RDATA longer than its name", patched(kAnswerCnameA, 43, "0003"),
               Errc::bad_length},
        Reject{"MX RDATA without a name", patched(kAnswerMx, 39, "0002"), Errc::bad_length},
        Reject{"SRV target pointing into itself", patched(kAnswerSrv, 64, "c03b"),
               Errc::bad_length},
        Reject{"pointer into a TTL field", patched(kAnswerMx, 50, "c023"), Errc::bad_length}));

}  // namespace
}  // namespace slipway::dns
