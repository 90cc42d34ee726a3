// libFuzzer target: dns::MessageView, names, TTL aging and reply building on arbitrary bytes.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/dns/message.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;
using namespace slipway::dns;

// Every form of a name that validated: bounded, and the forms agree with each other.
void touch_name(const NameRef& n, ByteView msg) {
    check(n.wire_len() >= 1 && n.wire_len() <= kMaxNameLen && n.offset() < msg.size());
    std::array<std::byte, kMaxNameLen> w{}, l{}, d{};
    auto wl = n.read(w, NameForm::wire);
    auto ll = n.read(l, NameForm::wire_lower);
    check(wl && ll && *wl == n.wire_len() && *ll == *wl);
    auto dl = n.read(d, NameForm::dotted_lower);
    check(dl || dl.error() == Errc::unsupported);
    if (dl) check(*dl <= kMaxNameLen && (*dl == 1 || *dl == n.wire_len() - 2));
    check(n.equals(n));
    std::array<std::byte, 4> small{};
    if (n.wire_len() > small.size()) check(n.read(small).error() == Errc::too_large);
    // The decompressed form holds no pointer: scanned on its own, it is the same name.
    auto again = scan_name(ByteView(l).first(*ll), 0);
    check(again && again->wire_len == *ll && again->end == *ll);
    std::array<std::byte, kMaxKeyLen> lower_dotted{};
    if (dl) {
        // Dotted text encodes back to the lowercase wire form.
        auto e = encode_name(std::string_view(reinterpret_cast<const char*>(d.data()), *dl),
                             lower_dotted);
        check(e && *e == *ll && std::memcmp(lower_dotted.data(), l.data(), *e) == 0);
        check(n.equals(std::string_view(reinterpret_cast<const char*>(d.data()), *dl)));
    }
}

void touch_header(const Header& h) {
    sink(h.id + static_cast<unsigned>(h.opcode) + static_cast<unsigned>(h.rcode) + h.qdcount +
         h.ancount + h.nscount + h.arcount + h.qr + h.aa + h.tc + h.rd + h.ra + h.ad + h.cd);
}

// A reply built from a parsed query parses again, with the query's ID and question.
void check_reply(const MessageView& q, Rcode rc, std::uint8_t variant) {
    auto r = ResponseRepr::reply_to(q, rc);
    const auto question = q.question();
    if (question && (variant & 1) != 0) r.with_a(variant, Ipv4Addr{0x0a000002u});
    if (question && (variant & 2) != 0) r.with_aaaa(variant, Ipv6Addr{});
    std::array<std::byte, 1024> out{};
    auto n = r.emit(out);
    if (!n) {
        check(n.error() == Errc::invalid_argument && static_cast<unsigned>(rc) > 15 &&
              !q.has_opt());
        return;
    }
    check(*n == r.buffer_len() && *n <= out.size());
    check(r.emit(MutByteView(out).first(*n - 1)).error() == Errc::too_large);
    auto m = MessageView::parse(ByteView(out).first(*n));
    check(m.has_value());
    check(m->size() == *n && m->id() == q.id() && m->rcode() == rc);
    check(m->has_opt() == q.has_opt());
    if (q.has_opt()) check(m->dnssec_ok() == q.dnssec_ok());
    const auto echoed = m->question();
    check(echoed.has_value() == question.has_value());
    if (question) {
        check(echoed->equals(*question));
        std::array<std::byte, kMaxKeyLen> k1{}, k2{};
        auto n1 = q.question_key(k1);
        auto n2 = m->question_key(k2);
        check(n1 && n2 && *n1 == *n2 && std::memcmp(k1.data(), k2.data(), *n1) == 0);
        if (r.answer_type != 0) {
            check(m->min_answer_ttl() == r.answer_ttl);
            for (const Rr& rr : m->rrs())
                if (rr.section == Section::answer) check(rr.name.equals(question->name));
        }
    }
}

void touch(const MessageView& m, ByteView in) {
    check(inside(m.bytes(), in) && m.bytes().data() == in.data() && m.size() >= kHeaderLen);
    const Header h = m.header();
    touch_header(h);
    check(h.id == m.id());
    sink(static_cast<unsigned>(m.rcode()));

    const auto q = m.question();
    check(q.has_value() == (h.qdcount == 1));
    std::array<std::byte, kMaxKeyLen> key{};
    auto k = m.question_key(key);
    if (q) {
        touch_name(q->name, m.bytes());
        check(q->equals(*q) && k && *k == q->name.wire_len() + 4);
    } else {
        check(!k && k.error() == Errc::invalid_argument);
    }

    std::size_t count = 0;
    std::uint32_t min_an = 0xffffffffu, min_all = 0xffffffffu;
    bool any_an = false, any_all = false;
    for (const Rr& rr : m.rrs()) {
        ++count;
        touch_name(rr.name, m.bytes());
        check(inside(rr.rdata, m.bytes()) && rr.ttl_offset + 4 <= m.size());
        check(load_be32(m.bytes(), rr.ttl_offset) == rr.ttl);
        const auto t = effective_ttl(rr.ttl);
        if (!rr.is_opt()) {
            any_all = true;
            min_all = std::min(min_all, t);
        }
        if (rr.section == Section::answer) {
            any_an = true;
            min_an = std::min(min_an, t);
        }
        sink(rr.type + rr.rclass + static_cast<unsigned>(rr.section));
    }
    check(count == std::size_t{h.ancount} + h.nscount + h.arcount);
    check(m.min_answer_ttl().has_value() == any_an);
    if (any_an) check(*m.min_answer_ttl() == min_an);
    check(m.min_ttl().has_value() == any_all);
    if (any_all) check(*m.min_ttl() == min_all);

    if (auto soa = m.negative_soa()) {
        check(m.is_negative() && soa->type == rrtype::soa && soa->section == Section::authority);
        check(inside(soa->rdata, m.bytes()) && soa->rdata.size() >= 22);
        auto nt = m.negative_ttl();
        auto mn = m.negative_soa_minimum();
        check(nt && mn && *nt <= effective_ttl(soa->ttl) && *nt <= effective_ttl(*mn));
    } else {
        check(!m.negative_ttl() && !m.negative_soa_minimum());
    }

    check(m.has_opt() == m.edns().has_value());
    if (auto e = m.edns()) {
        check(inside(e->options, m.bytes()));
        check(m.opt_udp_size() == std::max<std::uint16_t>(512, e->udp_size));
        check(m.dnssec_ok() == e->dnssec_ok);
    } else {
        check(m.opt_udp_size() == 512 && !m.dnssec_ok());
    }

    // What the cache stores is bytes(): it must stand alone.
    auto alone = MessageView::parse(m.bytes());
    check(alone && alone->size() == m.size());

    // Aging a copy keeps it valid, rewrites the ID and never raises a TTL.
    std::vector<std::byte> copy(in.begin(), in.end());
    const auto age = static_cast<std::uint32_t>(in.size() * 977u);
    check(rewrite_id_and_age(copy, static_cast<std::uint16_t>(~h.id), age).has_value());
    auto aged = MessageView::parse(copy);
    check(aged && aged->size() == m.size() && aged->id() == static_cast<std::uint16_t>(~h.id));
    auto a = aged->rrs().begin();
    for (const Rr& rr : m.rrs()) {
        check(a->type == rr.type && a->ttl_offset == rr.ttl_offset);
        if (rr.is_opt())
            check(a->ttl == rr.ttl);
        else
            check(a->ttl <= effective_ttl(rr.ttl) && a->ttl + age >= effective_ttl(rr.ttl));
        ++a;
    }
    check(a == aged->rrs().end());

    const std::uint8_t variant = in.size() > 13 ? static_cast<std::uint8_t>(in[13]) : 0;
    for (Rcode rc : {Rcode::noerror, Rcode::nxdomain, Rcode::servfail, Rcode::refused,
                     Rcode::formerr, Rcode::badvers})
        check_reply(m, rc, variant);
}

// The decompressor straight on the input, from an offset the input picks.
void touch_raw_name(ByteView in) {
    if (in.empty()) return;
    const std::size_t off = static_cast<std::uint8_t>(in[0]) % in.size();
    std::array<std::byte, kMaxNameLen> out{};
    for (auto form : {NameForm::wire, NameForm::wire_lower, NameForm::dotted_lower}) {
        auto r = read_name(in, off, out, form);
        if (!r) continue;
        check(r->wire_len >= 1 && r->wire_len <= kMaxNameLen && r->out_len <= out.size());
        check(r->end > off && r->end <= in.size());
        if (form != NameForm::dotted_lower) check(r->out_len == r->wire_len);
        auto s = scan_name(in, off);
        check(s && s->end == r->end && s->wire_len == r->wire_len);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Copy so out-of-bounds reads past `size` land in ASan's redzone, not in libFuzzer's buffer.
    std::vector<std::byte> buf(size);
    if (size != 0) std::memcpy(buf.data(), data, size);
    const ByteView in(buf);

    touch_raw_name(in);
    auto m = MessageView::parse(in);
    if (m) {
        touch(*m, in);
        return 0;
    }
    // What the forwarder does with a query it cannot parse: FORMERR from the header alone.
    auto h = Header::parse(in);
    check(h.has_value() == (size >= kHeaderLen));
    if (!h) return 0;
    touch_header(*h);
    std::array<std::byte, kHeaderLen> out{};
    auto n = ResponseRepr::reply_to(*h, Rcode::formerr).emit(out);
    check(n && *n == kHeaderLen);
    auto back = MessageView::parse(out);
    check(back && back->id() == h->id && back->rcode() == Rcode::formerr && !back->question());
    return 0;
}
