// DNS message validation, name decompression, TTL aging and reply emission.
#include "slipway/dns/message.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace slipway::dns {

namespace {

[[nodiscard]] constexpr std::uint8_t fold(std::uint8_t c) noexcept {
    // RFC 4343 §3: only ASCII letters compare case-insensitively.
    return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + ('a' - 'A')) : c;
}

// Bounded writer into a caller buffer; a default Sink only validates.
struct Sink {
    std::byte* out = nullptr;
    std::size_t cap = 0;
    std::size_t len = 0;
    bool writes = false;

    [[nodiscard]] bool put(std::uint8_t c) noexcept {
        if (!writes) return true;
        if (len >= cap) return false;
        out[len++] = static_cast<std::byte>(c);
        return true;
    }
};

// Offsets where a name's own bytes hold a label, a pointer or the root, for the names a message
// walk has validated so far. Only these may be pointer targets. Pointers are 14 bits wide, so
// 16 Ki bits cover every reachable offset.
class LabelStarts {
  public:
    void mark_name(ByteView msg, std::size_t pos, std::size_t end) noexcept {
        // `pos`..`end` are the name's own bytes, already validated.
        while (pos < end) {
            if (pos < kPointerRange) bits_[pos / 64] |= std::uint64_t{1} << (pos % 64);
            const std::uint8_t b = load_u8(msg.data() + pos);
            if (b == 0 || (b & 0xc0u) != 0) return;
            pos += 1u + b;
        }
    }
    [[nodiscard]] bool has(std::size_t pos) const noexcept {
        return pos < kPointerRange && ((bits_[pos / 64] >> (pos % 64)) & 1u) != 0;
    }

  private:
    static constexpr std::size_t kPointerRange = 1u << 14;
    std::array<std::uint64_t, kPointerRange / 64> bits_{};
};

// The one decompressor: every name in a message is read (or validated) through here. With
// `starts`, a pointer must also land on a label start of a name validated before.
Result<NameRead> walk_name(ByteView msg, std::size_t offset, Sink& sink, NameForm form,
                           const LabelStarts* starts = nullptr) noexcept {
    NameRead r;
    std::size_t pos = offset;
    std::size_t seg = offset;  // start of the label run being read; pointers must go before it
    std::size_t hops = 0;
    std::size_t wire = 0;
    bool jumped = false;
    const bool lower = form != NameForm::wire;
    const bool dotted = form == NameForm::dotted_lower;
    for (;;) {
        if (pos >= msg.size()) return fail(Errc::truncated);
        const std::uint8_t b = load_u8(msg.data() + pos);
        const unsigned kind = b >> 6;
        if (kind == 3) {
            // RFC 1035 §4.1.4 compression pointer. Pointing strictly before the run it ends makes
            // every hop go backwards, so loops are impossible; the hop cap bounds chains of
            // pointers to pointers.
            if (pos + 1 >= msg.size()) return fail(Errc::truncated);
            const std::size_t target =
                (std::size_t{b & 0x3fu} << 8) | std::size_t{load_u8(msg.data() + pos + 1)};
            if (target < kHeaderLen || target >= seg) return fail(Errc::bad_length);
            if (starts != nullptr && !starts->has(target)) return fail(Errc::bad_length);
            if (++hops > kMaxPointerHops) return fail(Errc::bad_length);
            if (!jumped) {
                r.end = pos + 2;
                jumped = true;
            }
            pos = target;
            seg = target;
            continue;
        }
        // 0b01 is the extended label type (RFC 6891 §5 deprecates it), 0b10 is reserved
        // (RFC 1035 §4.1.4); a plain label's length fits in 6 bits, so it is always <= 63.
        if (kind != 0) return fail(Errc::unsupported);
        if (b == 0) {
            wire += 1;
            if (dotted) {
                if (sink.len == 0 && !sink.put('.')) return fail(Errc::too_large);
            } else if (!sink.put(0)) {
                return fail(Errc::too_large);
            }
            if (!jumped) r.end = pos + 1;
            r.wire_len = wire;
            r.out_len = sink.len;
            return r;
        }
        if (pos + 1 + b > msg.size()) return fail(Errc::truncated);
        wire += 1u + b;
        // RFC 1035 §3.1: at most 255 octets, counting the root byte still to come.
        if (wire + 1 > kMaxNameLen) return fail(Errc::bad_length);
        if (dotted) {
            if (sink.len != 0 && !sink.put('.')) return fail(Errc::too_large);
        } else if (!sink.put(b)) {
            return fail(Errc::too_large);
        }
        for (std::size_t i = 1; i <= b; ++i) {
            std::uint8_t c = load_u8(msg.data() + pos + i);
            if (dotted && c == '.') return fail(Errc::unsupported);
            if (lower) c = fold(c);
            if (!sink.put(c)) return fail(Errc::too_large);
        }
        pos += 1u + b;
    }
}

// Follows the labels of an already validated name; defensive bounds only (returns the root on
// anything unexpected, which validation has ruled out).
struct LabelCursor {
    ByteView msg;
    std::size_t pos = 0;
    std::size_t hops = 0;

    [[nodiscard]] ByteView next() noexcept {
        for (;;) {
            if (pos >= msg.size()) return {};
            const std::uint8_t b = load_u8(msg.data() + pos);
            if ((b & 0xc0u) == 0xc0u) {
                if (pos + 1 >= msg.size() || ++hops > kMaxPointerHops) return {};
                pos = (std::size_t{b & 0x3fu} << 8) | std::size_t{load_u8(msg.data() + pos + 1)};
                continue;
            }
            if (b == 0 || (b & 0xc0u) != 0 || pos + 1 + b > msg.size()) return {};
            const ByteView label = msg.subspan(pos + 1, b);
            pos += 1u + b;
            return label;
        }
    }
};

bool same_labels(LabelCursor a, LabelCursor b) noexcept {
    for (;;) {
        const ByteView la = a.next();
        const ByteView lb = b.next();
        if (la.size() != lb.size()) return false;
        if (la.empty()) return true;
        for (std::size_t i = 0; i < la.size(); ++i)
            if (fold(load_u8(la.data() + i)) != fold(load_u8(lb.data() + i))) return false;
    }
}

// Where the names sit in the RDATA of the types whose names may be compressed or pointed to
// (RFC 1035 §3.3, RFC 3597 §4; SRV per RFC 2782, DNAME per RFC 6672): `skip` fixed bytes, then
// `names` names, then `tail` fixed bytes ending the RDATA.
struct RdataNames {
    std::uint8_t skip = 0, names = 0, tail = 0;
};

constexpr RdataNames rdata_names(std::uint16_t type) noexcept {
    switch (type) {
        case rrtype::ns:
        case rrtype::cname:
        case rrtype::ptr:
        case rrtype::dname:
            return {0, 1, 0};
        case rrtype::mx:
            return {2, 1, 0};
        case rrtype::srv:
            return {6, 1, 0};
        case rrtype::soa:
            return {0, 2, 20};  // MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM
        default:
            return {};
    }
}

// Validates a name of the message being walked and records its label starts.
Result<NameRead> take_name(ByteView msg, std::size_t pos, LabelStarts& starts) noexcept {
    Sink none;
    auto n = walk_name(msg, pos, none, NameForm::wire, &starts);
    if (n) starts.mark_name(msg, pos, n->end);
    return n;
}

struct Walk {
    std::size_t end = 0, q_len = 0, rr_start = 0, opt_off = 0, soa_off = 0;
    std::uint32_t min_an = std::numeric_limits<std::uint32_t>::max();
    std::uint32_t min_all = std::numeric_limits<std::uint32_t>::max();
    bool qtype_answer = false;
};

Result<Walk> walk_message(ByteView msg) noexcept {
    if (msg.size() < kHeaderLen) return fail(Errc::truncated);
    const std::size_t qd = load_be16(msg.data() + 4);
    const std::size_t an = load_be16(msg.data() + 6);
    const std::size_t ns = load_be16(msg.data() + 8);
    const std::size_t ar = load_be16(msg.data() + 10);
    // A question takes at least 5 bytes and an RR 11 (a root name plus the fixed part), so counts
    // that cannot fit are refused before walking anything (RFC 1035 §4.1.2, §4.1.3).
    if (kHeaderLen + qd * (1 + kQuestionFixedLen) + (an + ns + ar) * (1 + kRrFixedLen) > msg.size())
        return fail(Errc::bad_length);
    if (qd > 1) return fail(Errc::unsupported);  // RFC 9619: QDCOUNT is one

    Walk w;
    LabelStarts starts;
    std::size_t pos = kHeaderLen;
    std::uint16_t qtype = 0;
    if (qd == 1) {
        auto n = take_name(msg, pos, starts);
        if (!n) return fail(n.error());
        pos = n->end;
        if (pos + kQuestionFixedLen > msg.size()) return fail(Errc::truncated);
        w.q_len = n->wire_len;
        qtype = load_be16(msg.data() + pos);
        pos += kQuestionFixedLen;
    }
    w.rr_start = pos;

    const std::size_t total = an + ns + ar;
    for (std::size_t i = 0; i < total; ++i) {
        const Section sec =
            i < an ? Section::answer : (i < an + ns ? Section::authority : Section::additional);
        const std::size_t rr_off = pos;
        auto n = take_name(msg, pos, starts);
        if (!n) return fail(n.error());
        pos = n->end;
        if (pos + kRrFixedLen > msg.size()) return fail(Errc::truncated);
        const std::uint16_t type = load_be16(msg.data() + pos);
        const std::uint32_t ttl = load_be32(msg.data() + pos + 4);
        const std::size_t rdlen = load_be16(msg.data() + pos + 8);
        const std::size_t rdata = pos + kRrFixedLen;
        if (rdata + rdlen > msg.size()) return fail(Errc::truncated);
        const std::size_t rdata_end = rdata + rdlen;

        if (type == rrtype::opt) {
            // RFC 6891 §6.1.1: one OPT, in the additional section; §6.1.2: its NAME is the single
            // zero byte of the root (not a pointer to a root elsewhere).
            if (sec != Section::additional || w.opt_off != 0 || n->end != rr_off + 1)
                return fail(Errc::unsupported);
            w.opt_off = rr_off;
        } else {
            const std::uint32_t t = effective_ttl(ttl);
            w.min_all = std::min(w.min_all, t);
            if (sec == Section::answer) {
                w.min_an = std::min(w.min_an, t);
                if (type == qtype || qtype == rrtype::any) w.qtype_answer = true;
            }
        }
        if (const RdataNames rn = rdata_names(type); rn.names != 0) {
            // These names are read by the forwarder (SOA MINIMUM) or are pointer targets of later
            // names, so they are validated and recorded like owner names.
            std::size_t at = rdata + rn.skip;
            for (unsigned k = 0; k < rn.names; ++k) {
                if (at >= rdata_end) return fail(Errc::bad_length);
                auto nm = take_name(msg, at, starts);
                if (!nm) return fail(nm.error());
                at = nm->end;
            }
            if (at + rn.tail != rdata_end) return fail(Errc::bad_length);
            if (type == rrtype::soa && sec == Section::authority && w.soa_off == 0)
                w.soa_off = rr_off;
        }
        pos = rdata_end;
    }
    w.end = pos;
    return w;
}

}  // namespace

// ------------------------------------------------------------------------------------- names

Result<NameRead> read_name(ByteView msg, std::size_t offset, MutByteView out,
                           NameForm form) noexcept {
    Sink s{out.data(), out.size(), 0, true};
    return walk_name(msg, offset, s, form);
}

Result<NameRead> scan_name(ByteView msg, std::size_t offset) noexcept {
    Sink none;
    return walk_name(msg, offset, none, NameForm::wire);
}

Result<std::size_t> encode_name(std::string_view dotted, MutByteView out) noexcept {
    if (!dotted.empty() && dotted.back() == '.') dotted.remove_suffix(1);
    // First pass validates, so a short buffer never hides an invalid name.
    std::size_t total = 1;  // the root byte
    if (!dotted.empty()) {
        std::size_t start = 0;
        for (;;) {
            const std::size_t dot = dotted.find('.', start);
            const std::size_t end = dot == std::string_view::npos ? dotted.size() : dot;
            const std::size_t len = end - start;
            if (len == 0 || len > kMaxLabelLen) return fail(Errc::invalid_argument);
            total += 1 + len;
            if (total > kMaxNameLen) return fail(Errc::invalid_argument);
            if (dot == std::string_view::npos) break;
            start = dot + 1;
        }
    }
    if (out.size() < total) return fail(Errc::too_large);
    std::size_t p = 0;
    std::size_t run = 0;  // bytes of the current label written so far
    std::size_t len_at = 0;
    if (!dotted.empty()) {
        len_at = p++;
        for (const char ch : dotted) {
            if (ch == '.') {
                out[len_at] = static_cast<std::byte>(run);
                run = 0;
                len_at = p++;
                continue;
            }
            out[p++] = static_cast<std::byte>(static_cast<unsigned char>(ch));
            ++run;
        }
        out[len_at] = static_cast<std::byte>(run);
    }
    out[p++] = std::byte{0};
    return p;
}

Result<std::size_t> NameRef::read(MutByteView out, NameForm form) const noexcept {
    auto r = read_name(msg_, off_, out, form);
    if (!r) return fail(r.error());
    return r->out_len;
}

bool NameRef::equals(const NameRef& o) const noexcept {
    return len_ == o.len_ && same_labels(LabelCursor{msg_, off_}, LabelCursor{o.msg_, o.off_});
}

bool NameRef::equals(std::string_view dotted) const noexcept {
    std::array<std::byte, kMaxNameLen> buf{};
    auto n = encode_name(dotted, buf);
    if (!n || *n != len_) return false;
    return same_labels(LabelCursor{msg_, off_}, LabelCursor{ByteView(buf).first(*n), 0});
}

// ------------------------------------------------------------------------------------ header

Result<Header> Header::parse(ByteView msg) noexcept {
    if (msg.size() < kHeaderLen) return fail(Errc::truncated);
    const std::byte* p = msg.data();
    const std::uint8_t f1 = load_u8(p + 2);
    const std::uint8_t f2 = load_u8(p + 3);
    Header h;
    h.id = load_be16(p);
    h.qr = (f1 & 0x80u) != 0;
    h.opcode = static_cast<Opcode>((f1 >> 3) & 0x0fu);
    h.aa = (f1 & 0x04u) != 0;
    h.tc = (f1 & 0x02u) != 0;
    h.rd = (f1 & 0x01u) != 0;
    h.ra = (f2 & 0x80u) != 0;
    h.ad = (f2 & 0x20u) != 0;
    h.cd = (f2 & 0x10u) != 0;
    h.rcode = static_cast<Rcode>(f2 & 0x0fu);
    h.qdcount = load_be16(p + 4);
    h.ancount = load_be16(p + 6);
    h.nscount = load_be16(p + 8);
    h.arcount = load_be16(p + 10);
    return h;
}

void Header::store(std::byte* p) const noexcept {
    const unsigned f1 = (qr ? 0x80u : 0u) | ((static_cast<unsigned>(opcode) & 0x0fu) << 3) |
                        (aa ? 0x04u : 0u) | (tc ? 0x02u : 0u) | (rd ? 0x01u : 0u);
    const unsigned f2 = (ra ? 0x80u : 0u) | (ad ? 0x20u : 0u) | (cd ? 0x10u : 0u) |
                        (static_cast<unsigned>(rcode) & 0x0fu);
    store_be16(p, id);
    store_u8(p + 2, static_cast<std::uint8_t>(f1));
    store_u8(p + 3, static_cast<std::uint8_t>(f2));
    store_be16(p + 4, qdcount);
    store_be16(p + 6, ancount);
    store_be16(p + 8, nscount);
    store_be16(p + 10, arcount);
}

// ------------------------------------------------------------------------------- RR iterator

RrIterator::RrIterator(ByteView msg, std::size_t pos, std::size_t index, std::size_t total,
                       std::size_t an, std::size_t ns) noexcept
    : msg_(msg), pos_(pos), index_(index), total_(total), an_(an), ns_(ns) {
    load();
}

void RrIterator::load() noexcept {
    if (index_ >= total_) return;
    auto n = scan_name(msg_, pos_);
    const std::size_t fixed = n ? n->end : msg_.size();
    if (!n || fixed + kRrFixedLen > msg_.size()) {  // unreachable after validation
        index_ = total_;
        return;
    }
    const std::size_t rdlen = load_be16(msg_.data() + fixed + 8);
    rr_ = Rr{NameRef{msg_, pos_, n->wire_len},
             load_be16(msg_.data() + fixed),
             load_be16(msg_.data() + fixed + 2),
             load_be32(msg_.data() + fixed + 4),
             msg_.subspan(fixed + kRrFixedLen, std::min(rdlen, msg_.size() - fixed - kRrFixedLen)),
             index_ < an_ ? Section::answer
                          : (index_ < an_ + ns_ ? Section::authority : Section::additional),
             fixed + 4};
}

RrIterator& RrIterator::operator++() noexcept {
    if (index_ >= total_) return *this;
    pos_ = static_cast<std::size_t>(rr_.rdata.data() - msg_.data()) + rr_.rdata.size();
    ++index_;
    load();
    return *this;
}

// ----------------------------------------------------------------------------------- message

Result<MessageView> MessageView::parse(ByteView msg) noexcept {
    auto w = walk_message(msg);
    if (!w) return fail(w.error());
    // Trailing bytes are ignored. Pointers land only on label starts of earlier names, whose own
    // bytes all lie before w->end, so the trimmed message decodes exactly as the whole one.
    MessageView v{msg.first(w->end)};
    v.q_len_ = w->q_len;
    v.rr_start_ = w->rr_start;
    v.opt_off_ = w->opt_off;
    v.soa_off_ = w->soa_off;
    v.min_an_ttl_ = w->min_an;
    v.min_ttl_ = w->min_all;
    v.has_qtype_answer_ = w->qtype_answer;
    return v;
}

Header MessageView::header() const noexcept {
    auto h = Header::parse(b_);
    return h ? *h : Header{};
}

Rcode MessageView::rcode() const noexcept {
    const unsigned low = load_u8(b_.data() + 3) & 0x0fu;
    const unsigned high = opt_off_ != 0 ? load_u8(b_.data() + opt_off_ + 5) : 0u;
    return static_cast<Rcode>((high << 4) | low);
}

std::optional<Question> MessageView::question() const noexcept {
    if (q_len_ == 0) return std::nullopt;
    // The question name at offset 12 holds no pointer (a pointer would have to go below 12), so
    // its own bytes are exactly its wire length.
    const std::size_t f = kHeaderLen + q_len_;
    return Question{NameRef{b_, kHeaderLen, q_len_}, load_be16(b_.data() + f),
                    load_be16(b_.data() + f + 2)};
}

Result<std::size_t> MessageView::question_key(MutByteView out) const noexcept {
    if (q_len_ == 0) return fail(Errc::invalid_argument);
    if (out.size() < q_len_ + kQuestionFixedLen) return fail(Errc::too_large);
    auto n = read_name(b_, kHeaderLen, out, NameForm::wire_lower);
    if (!n) return fail(n.error());
    std::copy_n(b_.data() + kHeaderLen + q_len_, kQuestionFixedLen, out.data() + n->out_len);
    return n->out_len + kQuestionFixedLen;
}

RrRange MessageView::rrs() const noexcept {
    const std::size_t an = load_be16(b_.data() + 6);
    const std::size_t ns = load_be16(b_.data() + 8);
    const std::size_t total = an + ns + load_be16(b_.data() + 10);
    return {RrIterator{b_, rr_start_, 0, total, an, ns},
            RrIterator{b_, b_.size(), total, total, an, ns}};
}

std::optional<std::uint32_t> MessageView::min_answer_ttl() const noexcept {
    if (load_be16(b_.data() + 6) == 0) return std::nullopt;
    return min_an_ttl_;
}

std::optional<std::uint32_t> MessageView::min_ttl() const noexcept {
    const std::size_t total = std::size_t{load_be16(b_.data() + 6)} + load_be16(b_.data() + 8) +
                              load_be16(b_.data() + 10);
    if (total - (opt_off_ != 0 ? 1u : 0u) == 0) return std::nullopt;
    return min_ttl_;
}

bool MessageView::is_negative() const noexcept {
    if (q_len_ == 0 || (load_u8(b_.data() + 2) & 0x80u) == 0) return false;  // answers only
    const unsigned rc = load_u8(b_.data() + 3) & 0x0fu;
    if (rc == static_cast<unsigned>(Rcode::nxdomain)) return true;             // RFC 2308 §2.1
    return rc == static_cast<unsigned>(Rcode::noerror) && !has_qtype_answer_;  // §2.2
}

std::optional<Rr> MessageView::negative_soa() const noexcept {
    if (soa_off_ == 0 || !is_negative()) return std::nullopt;
    const std::size_t an = load_be16(b_.data() + 6);
    const std::size_t ns = load_be16(b_.data() + 8);
    // Index `an` is the first authority RR: only the section computed from it matters here.
    const RrIterator it{b_, soa_off_, an, an + ns, an, ns};
    if (it == RrIterator{b_, b_.size(), an + ns, an + ns, an, ns}) return std::nullopt;
    return *it;
}

std::optional<std::uint32_t> MessageView::negative_soa_minimum() const noexcept {
    auto soa = negative_soa();
    if (!soa) return std::nullopt;
    // Validated in parse(): the RDATA ends with SERIAL REFRESH RETRY EXPIRE MINIMUM.
    return load_be32(soa->rdata.data() + soa->rdata.size() - 4);
}

std::optional<std::uint32_t> MessageView::negative_ttl() const noexcept {
    auto soa = negative_soa();
    if (!soa) return std::nullopt;
    const std::uint32_t minimum = load_be32(soa->rdata.data() + soa->rdata.size() - 4);
    // RFC 2308 §5: the lesser of the SOA's own TTL and its MINIMUM field.
    return std::min(effective_ttl(soa->ttl), effective_ttl(minimum));
}

std::optional<Edns> MessageView::edns() const noexcept {
    if (opt_off_ == 0) return std::nullopt;
    // Root owner (one byte), then TYPE CLASS TTL RDLENGTH RDATA (RFC 6891 §6.1.2).
    const std::byte* p = b_.data() + opt_off_ + 1;
    Edns e;
    e.udp_size = load_be16(p + 2);
    e.ext_rcode = load_u8(p + 4);
    e.version = load_u8(p + 5);
    e.dnssec_ok = (load_u8(p + 6) & 0x80u) != 0;  // RFC 3225 §3
    e.options = b_.subspan(opt_off_ + kOptRrLen, load_be16(p + 8));
    return e;
}

std::uint16_t MessageView::opt_udp_size() const noexcept {
    if (opt_off_ == 0) return kMinUdpSize;
    return std::max(kMinUdpSize, load_be16(b_.data() + opt_off_ + 3));
}

bool MessageView::dnssec_ok() const noexcept {
    return opt_off_ != 0 && (load_u8(b_.data() + opt_off_ + 7) & 0x80u) != 0;
}

Result<void> rewrite_id_and_age(MutByteView msg, std::uint16_t id, std::uint32_t age) noexcept {
    auto v = MessageView::parse(msg);
    if (!v) return fail(v.error());
    store_be16(msg.data(), id);
    for (const Rr& rr : v->rrs()) {
        if (rr.is_opt()) continue;
        const std::uint32_t ttl = effective_ttl(rr.ttl);
        store_be32(msg.data() + rr.ttl_offset, ttl > age ? ttl - age : 0);
    }
    return {};
}

// ---------------------------------------------------------------------------------- response

ResponseRepr ResponseRepr::reply_to(const Header& query, Rcode rcode) noexcept {
    ResponseRepr r;
    r.header.id = query.id;
    r.header.qr = true;
    r.header.opcode = query.opcode;
    r.header.rd = query.rd;  // RFC 1035 §4.1.1: RD is copied into the response
    r.header.ra = true;
    r.header.cd = query.cd;  // RFC 4035 §3.2.2
    r.rcode = rcode;
    return r;
}

ResponseRepr ResponseRepr::reply_to(const MessageView& query, Rcode rcode) noexcept {
    ResponseRepr r = reply_to(query.header(), rcode);
    r.question = query.question();
    // RFC 6891 §7: a query with OPT gets OPT back; DO is echoed (RFC 3225 §3).
    if (query.has_opt()) r.edns = EdnsRepr{kEdnsUdpSize, 0, query.dnssec_ok()};
    return r;
}

ResponseRepr& ResponseRepr::with_a(std::uint32_t ttl, Ipv4Addr addr) noexcept {
    answer_type = rrtype::a;
    answer_ttl = ttl;
    answer_addr = {};
    addr.store(answer_addr.data());
    return *this;
}

ResponseRepr& ResponseRepr::with_aaaa(std::uint32_t ttl, const Ipv6Addr& addr) noexcept {
    answer_type = rrtype::aaaa;
    answer_ttl = ttl;
    addr.store(answer_addr.data());
    return *this;
}

std::size_t ResponseRepr::buffer_len() const noexcept {
    std::size_t n = kHeaderLen;
    if (question) n += question->name.wire_len() + kQuestionFixedLen;
    if (answer_type == rrtype::a) n += 2 + kRrFixedLen + 4;
    if (answer_type == rrtype::aaaa) n += 2 + kRrFixedLen + 16;
    if (edns) n += kOptRrLen;
    return n;
}

Result<std::size_t> ResponseRepr::emit(MutByteView out) const noexcept {
    if (answer_type != 0 && answer_type != rrtype::a && answer_type != rrtype::aaaa)
        return fail(Errc::invalid_argument);
    if (answer_type != 0 && !question) return fail(Errc::invalid_argument);
    const auto rc = static_cast<unsigned>(rcode);
    if (rc > 0xfffu || (rc > 0x0fu && !edns)) return fail(Errc::invalid_argument);
    const std::size_t len = buffer_len();
    if (out.size() < len) return fail(Errc::too_large);

    Header h = header;
    h.rcode = static_cast<Rcode>(rc & 0x0fu);
    h.qdcount = question ? 1 : 0;
    h.ancount = answer_type != 0 ? 1 : 0;
    h.nscount = 0;
    h.arcount = edns ? 1 : 0;
    h.store(out.data());
    std::size_t p = kHeaderLen;
    if (question) {
        auto n = question->name.read(out.subspan(p), NameForm::wire);
        if (!n) return fail(n.error());
        p += *n;
        store_be16(out.data() + p, question->qtype);
        store_be16(out.data() + p + 2, question->qclass);
        p += kQuestionFixedLen;
    }
    if (answer_type != 0) {
        // RFC 1035 §4.1.4: the owner is the question name, by a pointer to offset 12.
        store_be16(out.data() + p, static_cast<std::uint16_t>(0xc000u | kHeaderLen));
        const std::uint16_t rdlen = answer_type == rrtype::a ? 4 : 16;
        store_be16(out.data() + p + 2, answer_type);
        store_be16(out.data() + p + 4, kClassIn);
        store_be32(out.data() + p + 6, answer_ttl);
        store_be16(out.data() + p + 10, rdlen);
        std::copy_n(answer_addr.data(), rdlen, out.data() + p + 12);
        p += 2 + kRrFixedLen + rdlen;
    }
    if (edns) {
        // RFC 6891 §6.1.2-6.1.3: root owner, CLASS = payload size, TTL = extended RCODE,
        // version, DO and zero flags, no options.
        store_u8(out.data() + p, 0);
        store_be16(out.data() + p + 1, rrtype::opt);
        store_be16(out.data() + p + 3, edns->udp_size);
        store_be32(out.data() + p + 5, ((rc >> 4) << 24) | (std::uint32_t{edns->version} << 16) |
                                           (edns->dnssec_ok ? 0x8000u : 0u));
        store_be16(out.data() + p + 9, 0);
        p += kOptRrLen;
    }
    return p;
}

}  // namespace slipway::dns
