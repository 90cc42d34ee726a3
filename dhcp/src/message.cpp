// DHCPv4 message view and reply builder (RFC 2131 §2-§4, RFC 2132, RFC 3397, RFC 3442).
#include "slipway/dhcp/message.hpp"

#include <algorithm>
#include <cstring>

namespace slipway::dhcp {

namespace {

constexpr std::size_t kSnameOff = 44, kSnameLen = 64;
constexpr std::size_t kFileOff = 108, kFileLen = 128;
constexpr std::size_t kOptionsOff = kFixedLen + kCookieLen;
constexpr std::array<std::uint8_t, 4> kCookie = {99, 130, 83, 99};

// Walks one options area (RFC 2132 §2): pad is one byte, end stops, everything else is
// code, length, value. Calls f(code, value) for each; returns false when an option runs past the
// area (a malformed message).
template <class F>
bool walk(ByteView area, F&& f) noexcept {
    std::size_t i = 0;
    while (i < area.size()) {
        const auto code = static_cast<std::uint8_t>(area[i]);
        if (code == opt::pad) {
            ++i;
            continue;
        }
        if (code == opt::end) return true;
        if (i + 1 >= area.size()) return false;
        const auto len = static_cast<std::size_t>(area[i + 1]);
        if (i + 2 + len > area.size()) return false;
        if (!f(code, area.subspan(i + 2, len))) return true;  // f asked to stop
        i += 2 + len;
    }
    return true;  // no END: tolerated (some clients end at the buffer)
}

}  // namespace

Result<MessageView> MessageView::parse(ByteView b) noexcept {
    if (b.size() < kOptionsOff) return fail(Errc::truncated);
    const auto op = static_cast<std::uint8_t>(b[0]);
    if (op != 1 && op != 2) return fail(Errc::bad_version);
    if (static_cast<std::uint8_t>(b[1]) != 1 || static_cast<std::uint8_t>(b[2]) != 6)
        return fail(Errc::unsupported);  // not Ethernet (htype 1, hlen 6)
    for (std::size_t i = 0; i < kCookie.size(); ++i)
        if (static_cast<std::uint8_t>(b[kFixedLen + i]) != kCookie[i])
            return fail(Errc::bad_version);
    MessageView v(b);
    // RFC 2131 §4.1: option 52 says whether file and sname carry options too; read it first.
    std::optional<std::uint8_t> type;
    bool bad_type = false;
    bool in_options_field = true;
    auto scan = [&](std::uint8_t code, ByteView val) {
        // RFC 2131 §4.1: option 52 counts only in the options field; RFC 2132 §9.3: values 1
        // (file), 2 (sname), 3 (both). Anything else is ignored, leaving file and sname unread.
        if (code == opt::overload && in_options_field && v.overload_ == 0 && val.size() == 1) {
            const auto o = static_cast<std::uint8_t>(val[0]);
            if (o >= 1 && o <= 3) v.overload_ = o;
        }
        if (code == opt::message_type && !type) {
            if (val.size() != 1) {
                bad_type = true;
            } else {
                type = static_cast<std::uint8_t>(val[0]);
            }
        }
        return true;
    };
    if (!walk(b.subspan(kOptionsOff), scan)) return fail(Errc::truncated);
    in_options_field = false;
    // RFC 2131 §4.1: file is read before sname, and each overloaded field must be well formed.
    if ((v.overload_ & 1) != 0 && !walk(b.subspan(kFileOff, kFileLen), scan))
        return fail(Errc::truncated);
    if ((v.overload_ & 2) != 0 && !walk(b.subspan(kSnameOff, kSnameLen), scan))
        return fail(Errc::truncated);
    if (bad_type) return fail(Errc::bad_length);
    if (!type) return fail(Errc::unsupported);  // plain BOOTP (RFC 951): not served
    // RFC 2132 §9.6: types 1..8 are DHCPv4 proper; later ones (RFC 4388 lease query, ...) are not.
    if (*type < 1 || *type > 8) return fail(Errc::unsupported);
    return v;
}

Op MessageView::op() const noexcept {
    return static_cast<Op>(b_[0]);
}
std::uint32_t MessageView::xid() const noexcept {
    return load_be32(b_.data() + 4);
}
std::uint16_t MessageView::secs() const noexcept {
    return load_be16(b_.data() + 8);
}
bool MessageView::broadcast_flag() const noexcept {
    return (load_be16(b_.data() + 10) & 0x8000) != 0;
}
Ipv4Addr MessageView::ciaddr() const noexcept {
    return Ipv4Addr::load(b_.data() + 12);
}
Ipv4Addr MessageView::yiaddr() const noexcept {
    return Ipv4Addr::load(b_.data() + 16);
}
Ipv4Addr MessageView::giaddr() const noexcept {
    return Ipv4Addr::load(b_.data() + 24);
}
MacAddr MessageView::chaddr() const noexcept {
    return MacAddr::load(b_.data() + 28);
}
MessageType MessageView::type() const noexcept {
    return static_cast<MessageType>(*option(opt::message_type)->data());  // checked in parse
}

std::optional<ByteView> MessageView::option(std::uint8_t code) const noexcept {
    std::optional<ByteView> found;
    auto find = [&](std::uint8_t c, ByteView val) {
        if (c != code) return true;
        found = val;
        return false;
    };
    (void)walk(b_.subspan(kOptionsOff), find);
    if (!found && (overload_ & 1) != 0) (void)walk(b_.subspan(kFileOff, kFileLen), find);
    if (!found && (overload_ & 2) != 0) (void)walk(b_.subspan(kSnameOff, kSnameLen), find);
    return found;
}

namespace {
std::optional<Ipv4Addr> addr_option(const MessageView& m, std::uint8_t code) noexcept {
    const auto v = m.option(code);
    if (!v || v->size() != 4) return std::nullopt;
    return Ipv4Addr::load(v->data());
}
}  // namespace

std::optional<Ipv4Addr> MessageView::requested_ip() const noexcept {
    return addr_option(*this, opt::requested_ip);
}
std::optional<Ipv4Addr> MessageView::server_id() const noexcept {
    return addr_option(*this, opt::server_id);
}
std::optional<std::uint16_t> MessageView::max_message_size() const noexcept {
    const auto v = option(opt::max_message_size);
    if (!v || v->size() != 2) return std::nullopt;
    const std::uint16_t n = load_be16(v->data());
    if (n < 576) return std::nullopt;  // RFC 2132 §9.10: minimum legal value
    return n;
}
std::optional<ByteView> MessageView::client_id() const noexcept {
    const auto v = option(opt::client_id);
    if (!v || v->size() < 2) return std::nullopt;  // RFC 2132 §9.14: type + at least one byte
    return v;
}
std::optional<std::string_view> MessageView::hostname() const noexcept {
    const auto v = option(opt::hostname);
    if (!v) return std::nullopt;
    // Windows clients NUL-terminate option 12 (RFC 2132 §3.14 does not); the NULs are not part
    // of the name.
    ByteView name = *v;
    while (!name.empty() && name.back() == std::byte{0})
        name = name.first(name.size() - 1);
    if (name.empty() || name.size() > 63) return std::nullopt;
    for (std::byte c : name) {
        const auto ch = static_cast<unsigned char>(c);
        // Printable without spaces: the name goes into the lease file and DNS answers.
        if (ch < 0x21 || ch > 0x7e) return std::nullopt;
    }
    return std::string_view(reinterpret_cast<const char*>(name.data()), name.size());
}
ByteView MessageView::param_request_list() const noexcept {
    const auto v = option(opt::param_request);
    return v ? *v : ByteView{};
}

Result<std::size_t> ReplyRepr::emit(MutByteView out) const noexcept {
    const std::size_t limit = std::min(out.size(), std::max(max_len, kMinMessageLen));
    constexpr std::size_t kMandatory = kOptionsOff + 3 + 1;  // cookie, option 53, END
    if (limit < kMandatory) return fail(Errc::too_large);
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(kOptionsOff), std::byte{0});
    out[0] = std::byte{2};  // BOOTREPLY
    out[1] = std::byte{1};
    out[2] = std::byte{6};
    store_be32(out.data() + 4, xid);
    store_be16(out.data() + 10, broadcast_flag ? 0x8000 : 0);
    ciaddr.store(out.data() + 12);
    yiaddr.store(out.data() + 16);
    siaddr.store(out.data() + 20);
    giaddr.store(out.data() + 24);
    chaddr.store(out.data() + 28);
    for (std::size_t i = 0; i < kCookie.size(); ++i)
        out[kFixedLen + i] = std::byte{kCookie[i]};
    std::size_t p = kOptionsOff;
    out[p++] = std::byte{opt::message_type};
    out[p++] = std::byte{1};
    out[p++] = std::byte{static_cast<std::uint8_t>(type)};
    for (const Option& o : options) {
        if (o.value.size() > 255 || o.code == opt::pad || o.code == opt::end) continue;
        if (p + 2 + o.value.size() + 1 > limit) continue;  // keep room for END; skip, never cut
        out[p++] = std::byte{o.code};
        out[p++] = std::byte{static_cast<std::uint8_t>(o.value.size())};
        if (!o.value.empty()) std::memcpy(out.data() + p, o.value.data(), o.value.size());
        p += o.value.size();
    }
    out[p++] = std::byte{opt::end};
    // RFC 2131 §2: pad to the 576-byte datagram minimum that BOOTP relays and clients expect.
    const std::size_t total = std::max(p, std::min(kMinMessageLen, out.size()));
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(p),
              out.begin() + static_cast<std::ptrdiff_t>(total), std::byte{0});
    return total;
}

Result<std::size_t> encode_search_list(std::span<const std::string_view> domains,
                                       MutByteView out) noexcept {
    std::size_t p = 0;
    for (std::string_view d : domains) {
        if (!d.empty() && d.back() == '.') d.remove_suffix(1);
        if (d.empty() || d.size() > 253) return fail(Errc::invalid_argument);
        std::size_t start = 0;
        while (start <= d.size()) {
            const std::size_t dot = std::min(d.find('.', start), d.size());
            const std::size_t len = dot - start;
            if (len == 0 || len > 63) return fail(Errc::invalid_argument);  // RFC 1035 §2.3.4
            if (p + 1 + len > out.size()) return fail(Errc::too_large);
            out[p++] = std::byte{static_cast<std::uint8_t>(len)};
            std::memcpy(out.data() + p, d.data() + start, len);
            p += len;
            start = dot + 1;
            if (dot == d.size()) break;
        }
        if (p + 1 > out.size()) return fail(Errc::too_large);
        out[p++] = std::byte{0};
    }
    return p;
}

Result<std::size_t> encode_classless_routes(std::span<const ClasslessRoute> routes,
                                            MutByteView out) noexcept {
    std::size_t p = 0;
    for (const ClasslessRoute& r : routes) {
        if (r.prefix_len > 32) return fail(Errc::invalid_argument);
        // RFC 3442 §2: the width, then only the significant octets of the destination.
        const std::size_t octets = (r.prefix_len + 7u) / 8u;
        if (p + 1 + octets + 4 > out.size()) return fail(Errc::too_large);
        out[p++] = std::byte{r.prefix_len};
        // Host bits past the prefix are cleared: a client installs `dest/prefix_len` as given,
        // and Linux refuses a route whose destination has host bits set.
        const std::uint32_t mask =
            r.prefix_len == 0 ? 0u : ~std::uint32_t{0} << (32u - r.prefix_len);
        std::array<std::byte, 4> d{};
        store_be32(d.data(), r.dest.v & mask);
        for (std::size_t i = 0; i < octets; ++i)
            out[p++] = d[i];
        r.router.store(out.data() + p);
        p += 4;
    }
    return p;
}

}  // namespace slipway::dhcp
