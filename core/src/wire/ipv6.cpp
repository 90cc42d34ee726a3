// IPv6 parsing: fixed header, extension-header walk, fixed-header emission.
#include "slipway/core/wire/ipv6.hpp"

namespace slipway::wire {

Result<Ipv6View> Ipv6View::parse(ByteView packet) noexcept {
    if (packet.size() < kIpv6HeaderLen) return fail(Errc::truncated);
    if ((load_u8(packet.data()) >> 4) != 6) return fail(Errc::bad_version);
    const std::size_t plen = load_be16(packet.data() + 4);
    auto next = static_cast<IpProto>(load_u8(packet.data() + 6));
    // RFC 2675 §3: a zero payload length with a hop-by-hop header means a jumbo payload option.
    if (plen == 0 && next == IpProto::hop_by_hop) return fail(Errc::unsupported);
    if (kIpv6HeaderLen + plen > packet.size()) return fail(Errc::truncated);
    const ByteView pkt = packet.first(kIpv6HeaderLen + plen);

    std::size_t off = kIpv6HeaderLen;
    std::uint8_t count = 0;
    std::optional<Ipv6Fragment> frag;
    for (;;) {
        std::size_t len = 0;
        switch (next) {
            case IpProto::hop_by_hop:
                // RFC 8200 §4.1: hop-by-hop options may only follow the IPv6 header directly.
                if (count != 0) return fail(Errc::unsupported);
                [[fallthrough]];
            case IpProto::ipv6_route:
            case IpProto::ipv6_opts:
                // RFC 8200 §4.3/§4.4/§4.6: Hdr Ext Len in 8-octet units, not counting the first 8.
                if (pkt.size() - off < 2) return fail(Errc::truncated);
                len = (std::size_t{load_u8(pkt.data() + off + 1)} + 1) * 8;
                break;
            case IpProto::ah:
                // RFC 4302 §2.2: Payload Len in 4-octet units, minus 2.
                if (pkt.size() - off < 2) return fail(Errc::truncated);
                len = (std::size_t{load_u8(pkt.data() + off + 1)} + 2) * 4;
                break;
            case IpProto::ipv6_frag:
                len = kIpv6FragmentHeaderLen;  // RFC 8200 §4.5: fixed size
                break;
            default:
                // Upper layer, ESP (opaque to us) or No Next Header (RFC 8200 §4.7): stop here.
                return Ipv6View{pkt, next, off, count, frag};
        }
        if (count == kIpv6MaxExtHeaders) return fail(Errc::unsupported);
        if (pkt.size() - off < len) return fail(Errc::truncated);
        const auto header_next = static_cast<IpProto>(load_u8(pkt.data() + off));
        if (next == IpProto::ipv6_frag) {
            // RFC 8200 §4.5: a second fragment header would mean nested fragmentation.
            if (frag) return fail(Errc::unsupported);
            const std::uint16_t om = load_be16(pkt.data() + off + 2);
            frag = Ipv6Fragment{static_cast<std::uint16_t>(om >> 3), (om & 1u) != 0,
                                load_be32(pkt.data() + off + 4)};
            ++count;
            off += len;
            // RFC 8200 §4.5: only the first fragment holds the headers after this one.
            if (!frag->is_first()) return Ipv6View{pkt, header_next, off, count, frag};
        } else {
            ++count;
            off += len;
        }
        next = header_next;
    }
}

Result<std::size_t> Ipv6Repr::emit(MutByteView out) const noexcept {
    if (flow_label > 0x000fffffu) return fail(Errc::invalid_argument);
    if (out.size() < kIpv6HeaderLen) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_be32(p, (6u << 28) | (std::uint32_t{traffic_class} << 20) | flow_label);
    store_be16(p + 4, payload_len);
    store_u8(p + 6, static_cast<std::uint8_t>(next_header));
    store_u8(p + 7, hop_limit);
    src.store(p + 8);
    dst.store(p + 24);
    return kIpv6HeaderLen;
}

}  // namespace slipway::wire
