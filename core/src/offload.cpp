// Offload fix-up in software: checksum completion and GSO segmentation (TSO v4/v6, UDP_L4).
#include "slipway/core/offload.hpp"

#include <algorithm>
#include <cstring>

#include "slipway/core/checksum.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/ipv6.hpp"
#include "slipway/core/wire/tcp.hpp"
#include "slipway/core/wire/udp.hpp"

namespace slipway {

namespace {

// Where the headers of a GSO super-frame are, as found by parsing (vnet.hdr_len is only a hint
// from the sender and is not trusted).
struct GsoLayout {
    std::size_t l3_off = 0;       // IP header
    std::size_t ip_hlen = 0;      // IPv4 header with options, or the 40-byte IPv6 header
    std::size_t l4_off = 0;       // TCP/UDP header
    std::size_t l4_hlen = 0;      // TCP header with options, or 8
    std::size_t payload_len = 0;  // L4 payload bytes to split
    bool v6 = false;
    bool tcp = false;
    Ipv4Addr src4, dst4;
    Ipv6Addr src6, dst6;
    std::uint16_t ident = 0;  // IPv4 identification of the super-frame
    TcpSeq seq;               // TCP sequence number of the super-frame
    std::uint8_t tcp_flags = 0;
};

constexpr std::size_t kTcpSeqOff = 4;
constexpr std::size_t kTcpFlagsOff = 13;
constexpr std::size_t kTcpCsumOff = 16;
constexpr std::size_t kUdpLenOff = 4;
constexpr std::size_t kUdpCsumOff = 6;
constexpr std::size_t kIpv4LenOff = 2;
constexpr std::size_t kIpv4IdOff = 4;
constexpr std::size_t kIpv4CsumOff = 10;
constexpr std::size_t kIpv6PayloadLenOff = 4;

Result<GsoLayout> parse_gso(ByteView frame, const virtio::NetHdr& vnet) noexcept {
    const std::uint8_t kind = vnet.gso_kind();
    // virtio 1.2 §5.1.6.2: UFO (GSO_UDP) would need IP fragmentation, which slipway does not do.
    if (kind == virtio::kGsoUdp) return fail(Errc::unsupported);
    if (kind != virtio::kGsoTcpV4 && kind != virtio::kGsoTcpV6 && kind != virtio::kGsoUdpL4)
        return fail(kind == virtio::kGsoNone ? Errc::invalid_argument : Errc::unsupported);
    // virtio 1.2 §5.1.6.2.1: a GSO frame without a segment size cannot be segmented.
    if (vnet.gso_size == 0) return fail(Errc::bad_length);

    auto eth = wire::EthernetView::parse(frame);
    if (!eth) return fail(eth.error());
    GsoLayout L;
    L.l3_off = eth->header_len();
    const bool want_tcp = kind != virtio::kGsoUdpL4;
    ByteView l4;  // the L4 header and payload, bounded by the IP length field
    if (eth->ethertype() == EtherType::ipv4) {
        if (kind == virtio::kGsoTcpV6) return fail(Errc::bad_version);
        auto ip = wire::Ipv4View::parse(eth->payload());
        if (!ip) return fail(ip.error());
        // RFC 791 §3.2: a fragment has no complete transport segment to split.
        if (ip->is_fragment()) return fail(Errc::unsupported);
        if (ip->protocol() != (want_tcp ? IpProto::tcp : IpProto::udp))
            return fail(Errc::unsupported);
        L.ip_hlen = ip->header_len();
        L.src4 = ip->src();
        L.dst4 = ip->dst();
        L.ident = ip->ident();
        l4 = ip->payload();
    } else if (eth->ethertype() == EtherType::ipv6) {
        if (kind == virtio::kGsoTcpV4) return fail(Errc::bad_version);
        auto ip = wire::Ipv6View::parse(eth->payload());
        if (!ip) return fail(ip.error());
        // RFC 8200 §4: extension headers would have to be replicated and walked per segment;
        // Linux guests send TSO/USO frames without them.
        if (ip->ext_header_count() != 0) return fail(Errc::unsupported);
        if (ip->upper_protocol() != (want_tcp ? IpProto::tcp : IpProto::udp))
            return fail(Errc::unsupported);
        L.v6 = true;
        L.ip_hlen = wire::kIpv6HeaderLen;
        L.src6 = ip->src();
        L.dst6 = ip->dst();
        l4 = ip->upper_payload();
    } else {
        return fail(Errc::unsupported);
    }
    L.l4_off = L.l3_off + L.ip_hlen;
    L.tcp = want_tcp;
    if (want_tcp) {
        auto tcp = wire::TcpView::parse(l4);  // RFC 9293 §3.1: data offset within the segment
        if (!tcp) return fail(tcp.error());
        L.l4_hlen = tcp->header_len();
        L.payload_len = tcp->payload().size();
        L.seq = tcp->seq();
        L.tcp_flags = tcp->flags();
    } else {
        auto udp = wire::UdpView::parse(l4);
        if (!udp) return fail(udp.error());
        // RFC 768: the length covers header and data; a super-frame's must match the IP length.
        if (udp->length() != l4.size()) return fail(Errc::bad_length);
        L.l4_hlen = wire::kUdpHeaderLen;
        L.payload_len = udp->payload().size();
    }
    // virtio 1.2 §5.1.6.2: the partial checksum, if announced, must be the transport checksum.
    if (vnet.needs_csum()) {
        const std::size_t want_off = want_tcp ? kTcpCsumOff : kUdpCsumOff;
        if (vnet.csum_start != L.l4_off || vnet.csum_offset != want_off)
            return fail(Errc::bad_length);
    }
    return L;
}

std::uint32_t l4_pseudo_sum(const GsoLayout& L, std::size_t l4_len) noexcept {
    const IpProto proto = L.tcp ? IpProto::tcp : IpProto::udp;
    // RFC 9293 §3.1 / RFC 768 (IPv4), RFC 8200 §8.1 (IPv6) pseudo-headers.
    if (L.v6)
        return pseudo_header_sum_v6(L.src6, L.dst6, proto, static_cast<std::uint32_t>(l4_len));
    return pseudo_header_sum_v4(L.src4, L.dst4, proto, static_cast<std::uint16_t>(l4_len));
}

}  // namespace

Result<void> complete_checksum(PacketRef& frame) noexcept {
    PacketMeta& m = frame.meta();
    if (!m.vnet.needs_csum()) return {};
    const MutByteView d = frame.data();
    const std::size_t start = m.vnet.csum_start;
    const std::size_t field = start + std::size_t{m.vnet.csum_offset};
    if (start > d.size() || field + 2 > d.size()) return fail(Errc::bad_length);
    // virtio 1.2 §5.1.6.2: the field holds the pseudo-header sum the sender seeded; summing
    // [csum_start, end) with it in place and inverting gives the final checksum.
    std::uint16_t c = csum_finish(csum_partial(ByteView{d.subspan(start)}));
    // RFC 768: 0 means "no checksum" for UDP; 0xffff is the same ones'-complement value and is
    // valid for every protocol, so it is always used (as Linux's skb_checksum_help does).
    if (c == 0) c = 0xffff;
    store_be16(d.data() + field, c);
    m.vnet.flags = static_cast<std::uint8_t>(m.vnet.flags & ~virtio::kNetHdrFNeedsCsum);
    return {};
}

Result<std::size_t> segment_gso(const PacketRef& frame, PacketPool& pool,
                                std::span<PacketRef> out) noexcept {
    const PacketMeta& m = frame.meta();
    const ByteView in{frame.data()};
    auto lay = parse_gso(in, m.vnet);
    if (!lay) return fail(lay.error());
    const GsoLayout& L = *lay;
    const std::size_t gso = m.vnet.gso_size;
    const std::size_t hdrs = L.l4_off + L.l4_hlen;
    const std::size_t nseg = L.payload_len == 0 ? 1 : (L.payload_len + gso - 1) / gso;
    if (nseg > out.size()) return fail(Errc::too_large);

    const std::size_t l4_csum_off = L.l4_off + (L.tcp ? kTcpCsumOff : kUdpCsumOff);
    std::size_t done = 0;
    for (std::size_t i = 0; i < nseg; ++i) {
        const std::size_t pos = i * gso;
        const std::size_t chunk = std::min(gso, L.payload_len - pos);
        auto seg = pool.try_alloc(hdrs + chunk);
        if (!seg) {
            for (std::size_t k = 0; k < done; ++k)
                out[k].reset();
            return fail(seg.error());
        }
        std::byte* p = seg->data().data();
        std::memcpy(p, in.data(), hdrs);
        if (chunk != 0) std::memcpy(p + hdrs, in.data() + hdrs + pos, chunk);

        const std::size_t l4_len = L.l4_hlen + chunk;
        std::byte* ip = p + L.l3_off;
        if (L.v6) {
            // RFC 8200 §3: payload length counts everything after the fixed header.
            store_be16(ip + kIpv6PayloadLenOff, static_cast<std::uint16_t>(l4_len));
        } else {
            // RFC 791 §3.1: total length, a fresh identification per segment (as Linux TSO
            // does), and the header checksum over the rewritten header.
            store_be16(ip + kIpv4LenOff, static_cast<std::uint16_t>(L.ip_hlen + l4_len));
            store_be16(ip + kIpv4IdOff, static_cast<std::uint16_t>(L.ident + i));
            store_be16(ip + kIpv4CsumOff, 0);
            store_be16(ip + kIpv4CsumOff, csum_finish(csum_partial(ByteView{ip, L.ip_hlen})));
        }
        std::byte* l4 = p + L.l4_off;
        if (L.tcp) {
            store_be32(l4 + kTcpSeqOff, (L.seq + static_cast<std::uint32_t>(pos)).v);
            std::uint8_t flags = L.tcp_flags;
            // RFC 9293 §3.1: FIN and PSH belong to the end of the data, so only the last segment.
            if (i + 1 != nseg)
                flags =
                    static_cast<std::uint8_t>(flags & ~(wire::tcp_flag::fin | wire::tcp_flag::psh));
            // RFC 3168 §6.1.2: CWR marks one window reduction, so only the first segment.
            if (i != 0) flags = static_cast<std::uint8_t>(flags & ~wire::tcp_flag::cwr);
            store_u8(l4 + kTcpFlagsOff, flags);
        } else {
            // RFC 768: the length covers this datagram's header and data.
            store_be16(l4 + kUdpLenOff, static_cast<std::uint16_t>(l4_len));
        }
        store_be16(p + l4_csum_off, 0);
        std::uint16_t c = csum_finish(csum_partial(ByteView{l4, l4_len}, l4_pseudo_sum(L, l4_len)));
        // RFC 768: a computed UDP checksum of 0 is sent as 0xffff (0 means "none").
        if (!L.tcp && c == 0) c = 0xffff;
        store_be16(p + l4_csum_off, c);

        PacketMeta& sm = seg->meta();
        sm.in_port = m.in_port;
        sm.vnet = virtio::NetHdr{};  // complete, ordinary frames: no GSO, no NEEDS_CSUM
        out[i] = std::move(*seg);
        ++done;
    }
    return nseg;
}

}  // namespace slipway
