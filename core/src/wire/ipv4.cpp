// IPv4 header parsing, checksum verification and emission.
#include "slipway/core/wire/ipv4.hpp"

#include <algorithm>

#include "slipway/core/checksum.hpp"

namespace slipway::wire {

Result<Ipv4View> Ipv4View::parse(ByteView packet) noexcept {
    if (packet.size() < kIpv4MinHeaderLen) return fail(Errc::truncated);
    const auto vihl = load_u8(packet.data());
    if ((vihl >> 4) != 4) return fail(Errc::bad_version);
    // RFC 791 §3.1: IHL counts 32-bit words and is at least 5.
    const std::size_t hlen = std::size_t{vihl & 0x0fu} * 4;
    if (hlen < kIpv4MinHeaderLen) return fail(Errc::bad_length);
    if (hlen > packet.size()) return fail(Errc::truncated);
    // RFC 791 §3.1: Total Length covers header and data; anything after it is link padding.
    const std::size_t total = load_be16(packet.data() + 2);
    if (total < hlen) return fail(Errc::bad_length);
    if (total > packet.size()) return fail(Errc::truncated);
    return Ipv4View{packet.first(total), hlen};
}

bool Ipv4View::header_checksum_ok() const noexcept {
    return csum_fold(csum_partial(header())) == 0xffffu;
}

Ipv4Repr Ipv4Repr::from(const Ipv4View& v) noexcept {
    Ipv4Repr r;
    r.src = v.src();
    r.dst = v.dst();
    r.protocol = v.protocol();
    r.ttl = v.ttl();
    r.tos = v.tos();
    r.ident = v.ident();
    r.reserved_flag = v.reserved_flag();
    r.dont_fragment = v.dont_fragment();
    r.more_fragments = v.more_fragments();
    r.frag_offset = v.frag_offset();
    r.payload_len = static_cast<std::uint16_t>(v.total_len() - v.header_len());
    const ByteView opts = v.options();
    std::copy(opts.begin(), opts.end(), r.options.begin());
    r.options_len = static_cast<std::uint8_t>(opts.size());
    return r;
}

Result<std::size_t> Ipv4Repr::emit(MutByteView out) const noexcept {
    if (options_len > kIpv4MaxOptionsLen || options_len % 4 != 0 || frag_offset > 0x1fffu)
        return fail(Errc::invalid_argument);
    const std::size_t hlen = header_len();
    if (hlen + payload_len > kIpv4MaxPacketLen) return fail(Errc::invalid_argument);
    if (out.size() < hlen) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_u8(p, static_cast<std::uint8_t>(0x40u | (hlen / 4)));
    store_u8(p + 1, tos);
    store_be16(p + 2, static_cast<std::uint16_t>(hlen + payload_len));
    store_be16(p + 4, ident);
    const unsigned flags = (reserved_flag ? 0x8000u : 0u) | (dont_fragment ? 0x4000u : 0u) |
                           (more_fragments ? 0x2000u : 0u);
    store_be16(p + 6, static_cast<std::uint16_t>(flags | frag_offset));
    store_u8(p + 8, ttl);
    store_u8(p + 9, static_cast<std::uint8_t>(protocol));
    store_be16(p + 10, 0);
    src.store(p + 12);
    dst.store(p + 16);
    std::copy_n(options.begin(), options_len, p + kIpv4MinHeaderLen);
    store_be16(p + 10, csum_finish(csum_partial(out.first(hlen))));
    return hlen;
}

}  // namespace slipway::wire
