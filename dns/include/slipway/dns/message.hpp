// DNS messages on the wire (RFC 1035 §4, RFC 6891 EDNS, RFC 2308 negative caching): a view that
// validates a whole message once, name decompression, TTL aging, and a Repr for local replies.
//
// Theory of operation. The forwarder sees two kinds of messages: queries from guests and answers
// from upstream resolvers (later replayed from its cache). Both go through MessageView::parse(),
// which checks the header, the question and every resource record of every section in one walk:
// each name decompresses within the limits below, each RR's fixed part and RDATA lie inside the
// buffer, an OPT RR appears at most once and only in the additional section, and the names in the
// RDATA of NS, CNAME, PTR, DNAME, MX, SRV and SOA are well formed and fill it exactly (an SOA's
// with its five 32-bit fields). The walk also records what the forwarder asks later (minimum TTLs,
// the negative SOA, the OPT fields), so after parse() no accessor can fail or leave the span.
//
// Names. Compression pointers (RFC 1035 §4.1.4) are the attack surface of every DNS parser; here a
// pointer must point strictly before the start of the label run it ends (so every hop moves
// backwards and a loop is impossible), never into the 12-byte header, at most kMaxPointerHops
// times per name; the decoded name is at most kMaxNameLen bytes (RFC 1035 §3.1, length bytes and
// the root byte included); label types 0b01 (extended, RFC 6891 §5) and 0b10 (reserved) are
// rejected. A 6-bit length cannot exceed 63, so "label too long" shows up as type 0b01 or 0b10.
// Inside a message, parse() also requires every pointer to land on a label start (a length byte,
// pointer or root byte) of a name it validated earlier: the question, an owner, or a name in the
// RDATA types above. So no name can be made of TTL or RDATA bytes, and aging TTLs in place can
// never change a name.
//
// Lenience. Bytes after the last RR are accepted and ignored (RFC 1035 does not forbid them);
// bytes() excludes them, so a cached answer never carries them. QDCOUNT 0 is accepted (upstream
// FORMERR answers have no question); QDCOUNT above 1 is rejected (RFC 9619). A TC answer whose
// counts exceed what it carries fails parse(); Header::parse() still reads its TC bit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::dns {

inline constexpr std::size_t kHeaderLen = 12;        // RFC 1035 §4.1.1
inline constexpr std::size_t kQuestionFixedLen = 4;  // QTYPE, QCLASS (RFC 1035 §4.1.2)
inline constexpr std::size_t kRrFixedLen = 10;       // TYPE CLASS TTL RDLENGTH (RFC 1035 §4.1.3)
inline constexpr std::size_t kOptRrLen = 11;         // root name + fixed part, no options
inline constexpr std::size_t kMaxNameLen = 255;      // wire form, RFC 1035 §3.1
inline constexpr std::size_t kMaxLabelLen = 63;      // RFC 1035 §2.3.4
inline constexpr std::size_t kMaxPointerHops = 128;
inline constexpr std::size_t kMaxKeyLen = kMaxNameLen + kQuestionFixedLen;  // question_key()
inline constexpr std::uint16_t kMinUdpSize = 512;    // RFC 1035 §2.3.4, RFC 6891 §6.2.5
inline constexpr std::uint16_t kEdnsUdpSize = 1232;  // what our replies advertise (DNS flag day)
inline constexpr std::uint16_t kClassIn = 1;
static_assert(kHeaderLen == 12 && kRrFixedLen == 10 && kOptRrLen == 1 + kRrFixedLen);

// RR TYPE values slipway reads or writes (IANA registry; RFC 1035 §3.2.2 unless noted).
namespace rrtype {
inline constexpr std::uint16_t a = 1, ns = 2, cname = 5, soa = 6, ptr = 12, mx = 15, txt = 16,
                               aaaa = 28,  // RFC 3596
    srv = 33,                              // RFC 2782
    dname = 39,                            // RFC 6672
    opt = 41,                              // RFC 6891
    any = 255;
}  // namespace rrtype

enum class Opcode : std::uint8_t { query = 0, iquery = 1, status = 2, notify = 4, update = 5 };

// 12-bit extended RCODE (RFC 6891 §6.1.3): the header holds the low 4 bits, OPT the high 8.
enum class Rcode : std::uint16_t {
    noerror = 0,
    formerr = 1,
    servfail = 2,
    nxdomain = 3,
    notimp = 4,
    refused = 5,
    badvers = 16,
};

enum class Section : std::uint8_t { answer, authority, additional };

// The 12-byte header as values (RFC 1035 §4.1.1; AD and CD from RFC 4035 §3.2). The Z bit is
// read as zero and written as zero. `rcode` here is only the header's 4 bits.
struct Header {
    std::uint16_t id = 0;
    bool qr = false;
    Opcode opcode = Opcode::query;  // any 4-bit value
    bool aa = false, tc = false, rd = false, ra = false, ad = false, cd = false;
    Rcode rcode = Rcode::noerror;  // 0..15
    std::uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;

    // Errc::truncated below 12 bytes. Works on messages MessageView rejects (to answer FORMERR,
    // or to see TC on a truncated answer).
    [[nodiscard]] static Result<Header> parse(ByteView msg) noexcept;
    void store(std::byte* p) const noexcept;  // 12 bytes; rcode's high bits dropped
    friend bool operator==(const Header&, const Header&) = default;
};

// Output forms of a decoded name. `wire`: length-prefixed labels and the root byte, case kept.
// `wire_lower`: the same with ASCII A-Z folded (RFC 4343 §3). `dotted_lower`: text such as
// "www.example.com" (no trailing dot; the root is "."), ASCII-lowercased, Errc::unsupported when a
// label holds a '.' (the text would name something else).
enum class NameForm : std::uint8_t { wire, wire_lower, dotted_lower };

struct NameRead {
    std::size_t end = 0;       // offset just past the name's own bytes (past the first pointer)
    std::size_t wire_len = 0;  // decompressed wire length, root byte included: 1..255
    std::size_t out_len = 0;   // bytes written to `out`
};

// Decompresses the name at `offset` of `msg` (the whole message: pointers are offsets from its
// start) under the rules in the theory of operation, except the label-start rule, which needs the
// walk of a whole message; use it for names parse() did not check, such as the RDATA of other
// types. Errc::truncated when the name runs past `msg`; Errc::bad_length for a pointer that does
// not point strictly backwards or points into the header, more than kMaxPointerHops pointers, or
// a name above kMaxNameLen; Errc::unsupported for label types 0b01/0b10 (or a '.' in a label
// with dotted_lower); Errc::too_large when `out` is short.
[[nodiscard]] Result<NameRead> read_name(ByteView msg, std::size_t offset, MutByteView out,
                                         NameForm form = NameForm::wire) noexcept;
// The same checks without output (out_len is 0).
[[nodiscard]] Result<NameRead> scan_name(ByteView msg, std::size_t offset) noexcept;

// Encodes dotted text ("example.com", trailing dot optional, "" or "." for the root) in wire form,
// case kept. Errc::invalid_argument for an empty label, a label above 63 bytes or a name above
// 255; Errc::too_large when `out` is short. No escapes: '\' is an ordinary byte.
[[nodiscard]] Result<std::size_t> encode_name(std::string_view dotted, MutByteView out) noexcept;

// A name inside a validated message. Only MessageView hands these out, so reading one cannot
// meet a malformed name.
class NameRef {
  public:
    [[nodiscard]] std::size_t offset() const noexcept { return off_; }
    [[nodiscard]] std::size_t wire_len() const noexcept { return len_; }  // 1..255
    // Errc::too_large when `out` is short (or unsupported, see NameForm::dotted_lower).
    [[nodiscard]] Result<std::size_t> read(MutByteView out,
                                           NameForm form = NameForm::wire) const noexcept;
    // Label-by-label equality with ASCII case folding (RFC 4343 §3); other bytes compare exactly.
    [[nodiscard]] bool equals(const NameRef& o) const noexcept;
    // Against dotted text as encode_name() reads it; false for text encode_name() rejects.
    [[nodiscard]] bool equals(std::string_view dotted) const noexcept;

  private:
    friend class MessageView;
    friend class RrIterator;
    NameRef(ByteView msg, std::size_t off, std::size_t len) noexcept
        : msg_(msg), off_(off), len_(len) {}
    ByteView msg_;
    std::size_t off_ = 0;
    std::size_t len_ = 0;
};

struct Question {
    NameRef name;
    std::uint16_t qtype = 0;
    std::uint16_t qclass = 0;

    // RFC 4343: names case-insensitively, QTYPE and QCLASS exactly.
    [[nodiscard]] bool equals(const Question& o) const noexcept {
        return qtype == o.qtype && qclass == o.qclass && name.equals(o.name);
    }
};

// One resource record of a validated message.
struct Rr {
    NameRef name;
    std::uint16_t type = 0;
    std::uint16_t rclass = 0;  // for OPT: the UDP payload size
    std::uint32_t ttl = 0;     // raw; for OPT: extended RCODE, version, flags
    ByteView rdata;
    Section section = Section::answer;
    std::size_t ttl_offset = 0;  // of the TTL field within the message

    [[nodiscard]] bool is_opt() const noexcept {
        return type == rrtype::opt && section == Section::additional;
    }
};

// RFC 2181 §8: a TTL with the top bit set is treated as zero.
[[nodiscard]] constexpr std::uint32_t effective_ttl(std::uint32_t raw) noexcept {
    return (raw & 0x80000000u) != 0 ? 0 : raw;
}

// EDNS fields of an OPT RR (RFC 6891 §6.1.2-6.1.3, DO from RFC 3225 §3).
struct Edns {
    std::uint16_t udp_size = 0;  // raw CLASS field
    std::uint8_t ext_rcode = 0;  // upper 8 bits of the 12-bit RCODE
    std::uint8_t version = 0;
    bool dnssec_ok = false;
    ByteView options;  // RDATA, {code, length, data}*, not interpreted
};

// Iterates the RRs of a validated message in wire order (answer, authority, additional).
class RrIterator {
  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Rr;
    using difference_type = std::ptrdiff_t;
    using pointer = const Rr*;
    using reference = const Rr&;

    RrIterator() noexcept = default;
    [[nodiscard]] const Rr& operator*() const noexcept { return rr_; }
    [[nodiscard]] const Rr* operator->() const noexcept { return &rr_; }
    RrIterator& operator++() noexcept;
    RrIterator operator++(int) noexcept {
        RrIterator t = *this;
        ++*this;
        return t;
    }
    friend bool operator==(const RrIterator& a, const RrIterator& b) noexcept {
        return a.index_ == b.index_;
    }

  private:
    friend class MessageView;
    RrIterator(ByteView msg, std::size_t pos, std::size_t index, std::size_t total, std::size_t an,
               std::size_t ns) noexcept;
    void load() noexcept;
    ByteView msg_;
    std::size_t pos_ = 0, index_ = 0, total_ = 0, an_ = 0, ns_ = 0;
    Rr rr_{NameRef{{}, 0, 0}, 0, 0, 0, {}, Section::answer, 0};
};

struct RrRange {
    RrIterator b, e;
    [[nodiscard]] RrIterator begin() const noexcept { return b; }
    [[nodiscard]] RrIterator end() const noexcept { return e; }
};

// A validated DNS message (see the theory of operation for what parse() checks). Errc::truncated
// below 12 bytes or when a name, question or RR runs past the buffer; Errc::bad_length when the
// counts cannot fit the buffer, a name breaks the decompression rules, or the names of an NS,
// CNAME, PTR, DNAME, MX, SRV or SOA RDATA do not fill it exactly; Errc::unsupported for
// QDCOUNT > 1, reserved label types, or an OPT RR that is repeated, outside the additional
// section or whose NAME is not the single root byte (RFC 6891 §6.1.1-6.1.2: the responder
// answers FORMERR).
class MessageView {
  public:
    [[nodiscard]] static Result<MessageView> parse(ByteView msg) noexcept;

    [[nodiscard]] Header header() const noexcept;
    [[nodiscard]] std::uint16_t id() const noexcept { return load_be16(b_.data()); }
    // Header RCODE combined with OPT's extended bits (RFC 6891 §6.1.3).
    [[nodiscard]] Rcode rcode() const noexcept;
    [[nodiscard]] std::optional<Question> question() const noexcept;  // nullopt if QDCOUNT is 0
    // Cache key: the question name in lowercase wire form, then QTYPE and QCLASS big-endian, at
    // most kMaxKeyLen bytes. Errc::invalid_argument without a question; too_large if `out` is
    // short.
    [[nodiscard]] Result<std::size_t> question_key(MutByteView out) const noexcept;

    [[nodiscard]] RrRange rrs() const noexcept;
    template <class F>
    void for_each_rr(F&& f) const {
        for (const Rr& rr : rrs())
            f(rr);
    }

    // Minimum effective TTL (RFC 2181 §8) over the answer section; nullopt when it is empty.
    [[nodiscard]] std::optional<std::uint32_t> min_answer_ttl() const noexcept;
    // The same over every RR except OPT: the longest a whole cached message stays true.
    [[nodiscard]] std::optional<std::uint32_t> min_ttl() const noexcept;
    // NXDOMAIN, or NOERROR with no answer RR of QTYPE (ANY matches every type): RFC 2308 §2.1,
    // §2.2. CNAME-only answers count as NODATA for the chain's target. False for queries (QR 0)
    // and without a question.
    [[nodiscard]] bool is_negative() const noexcept;
    // The first SOA of the authority section of a negative answer (RFC 2308 §3).
    [[nodiscard]] std::optional<Rr> negative_soa() const noexcept;
    // The SOA's MINIMUM field (RFC 1035 §3.3.13), whenever negative_soa() has a value.
    [[nodiscard]] std::optional<std::uint32_t> negative_soa_minimum() const noexcept;
    // RFC 2308 §5: min(SOA TTL, SOA MINIMUM); nullopt when not negative or without an SOA (such
    // answers are not cached, RFC 2308 §5 last paragraph).
    [[nodiscard]] std::optional<std::uint32_t> negative_ttl() const noexcept;

    [[nodiscard]] bool has_opt() const noexcept { return opt_off_ != 0; }
    [[nodiscard]] std::optional<Edns> edns() const noexcept;
    // Largest UDP reply the sender takes: 512 without OPT, and never below 512 (RFC 6891 §6.2.5).
    [[nodiscard]] std::uint16_t opt_udp_size() const noexcept;
    [[nodiscard]] bool dnssec_ok() const noexcept;

    [[nodiscard]] ByteView bytes() const noexcept { return b_; }  // header .. last RR
    [[nodiscard]] std::size_t size() const noexcept { return b_.size(); }

  private:
    explicit MessageView(ByteView b) noexcept : b_(b) {}
    ByteView b_;
    std::size_t q_len_ = 0;     // question name wire length (0 without a question)
    std::size_t rr_start_ = 0;  // first byte of the answer section
    std::size_t opt_off_ = 0;   // owner-name offset of the OPT RR, 0 when absent
    std::size_t soa_off_ = 0;   // owner-name offset of the first authority SOA, 0 when absent
    std::uint32_t min_an_ttl_ = 0, min_ttl_ = 0;
    bool has_qtype_answer_ = false;
};

// Rewrites the ID and ages every TTL by `age` seconds, saturating at 0, in a cached answer before
// it is served (RFC 1034 §3.6: a TTL is how long a record may still be cached; RFC 2181 §8:
// top-bit TTLs count as 0). OPT's TTL field carries flags and is left alone. Validates first:
// errors as MessageView::parse(), and the message is untouched on error.
[[nodiscard]] Result<void> rewrite_id_and_age(MutByteView msg, std::uint16_t id,
                                              std::uint32_t age) noexcept;

// EDNS OPT RR to put in a reply (RFC 6891 §6.1.2): root owner, no options.
struct EdnsRepr {
    std::uint16_t udp_size = kEdnsUdpSize;
    std::uint8_t version = 0;
    bool dnssec_ok = false;  // copied from the query (RFC 3225 §3)
};

// Builds a reply: the header, the echoed question (verbatim, case kept: RFC 4343 §4.1, and the
// 0x20 trick relies on it), at most one A/AAAA answer of class IN owned by the question name
// through a compression pointer to offset 12, and an OPT RR. Use reply_to() to fill it from a
// query (the question then views the query's bytes, which must outlive emit()), then the with_*()
// helpers. emit() computes the counts; it returns the length written,
// Errc::too_large when `out` is short, Errc::invalid_argument for an answer without a question or
// an extended rcode (> 15) without EDNS.
struct ResponseRepr {
    Header header;                 // counts are ignored: emit() writes its own
    Rcode rcode = Rcode::noerror;  // full 12 bits; header.rcode is ignored
    std::optional<Question> question;
    std::optional<EdnsRepr> edns;
    std::uint16_t answer_type = 0;  // 0 (none), rrtype::a or rrtype::aaaa
    std::uint32_t answer_ttl = 0;
    std::array<std::byte, 16> answer_addr{};

    // ID, opcode, RD and CD copied from the query (RFC 1035 §4.1.1, RFC 4035 §3.2.2), QR and RA
    // set, the question echoed, and an OPT RR when the query had one (RFC 6891 §7).
    [[nodiscard]] static ResponseRepr reply_to(const MessageView& query, Rcode rcode) noexcept;
    // For a query that did not parse: header fields only, no question, no OPT.
    [[nodiscard]] static ResponseRepr reply_to(const Header& query, Rcode rcode) noexcept;
    ResponseRepr& with_a(std::uint32_t ttl, Ipv4Addr addr) noexcept;
    ResponseRepr& with_aaaa(std::uint32_t ttl, const Ipv6Addr& addr) noexcept;

    [[nodiscard]] std::size_t buffer_len() const noexcept;
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
};

}  // namespace slipway::dns
