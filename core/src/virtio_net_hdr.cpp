// virtio-net header codec (virtio 1.2 §5.1.6); fields are little-endian under VIRTIO_F_VERSION_1.
#include "slipway/core/virtio/net_hdr.hpp"

namespace slipway::virtio {

Result<NetHdr> NetHdr::parse(ByteView in, std::size_t hdr_len_bytes) noexcept {
    if (hdr_len_bytes != kNetHdrLegacyLen && hdr_len_bytes != kNetHdrV1Len)
        return fail(Errc::invalid_argument);
    if (in.size() < hdr_len_bytes) return fail(Errc::truncated);
    NetHdr h;
    const std::byte* p = in.data();
    h.flags = load_u8(p);
    h.gso_type = load_u8(p + 1);
    h.hdr_len = load_le16(p + 2);
    h.gso_size = load_le16(p + 4);
    h.csum_start = load_le16(p + 6);
    h.csum_offset = load_le16(p + 8);
    if (hdr_len_bytes == kNetHdrV1Len) h.num_buffers = load_le16(p + 10);

    if ((h.flags & ~kNetHdrKnownFlags) != 0) return fail(Errc::unsupported);
    switch (h.gso_kind()) {
        case kGsoNone:
            // ECN only qualifies a TCP GSO type.
            if (h.gso_type != kGsoNone) return fail(Errc::unsupported);
            break;
        case kGsoTcpV4:
        case kGsoTcpV6:
        case kGsoUdp:
        case kGsoUdpL4:
            // A GSO frame without a segment size cannot be segmented (virtio 1.2 §5.1.6.2.1).
            if (h.gso_size == 0) return fail(Errc::bad_length);
            break;
        default:
            return fail(Errc::unsupported);
    }
    return h;
}

Result<void> NetHdr::validate_for_frame(std::size_t frame_len) const noexcept {
    if (needs_csum() && std::size_t{csum_start} + std::size_t{csum_offset} + 2 > frame_len)
        return fail(Errc::bad_length);
    return {};
}

Result<std::size_t> NetHdr::emit(MutByteView out, std::size_t hdr_len_bytes) const noexcept {
    if (hdr_len_bytes != kNetHdrLegacyLen && hdr_len_bytes != kNetHdrV1Len)
        return fail(Errc::invalid_argument);
    if (out.size() < hdr_len_bytes) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_u8(p, flags);
    store_u8(p + 1, gso_type);
    store_le16(p + 2, hdr_len);
    store_le16(p + 4, gso_size);
    store_le16(p + 6, csum_start);
    store_le16(p + 8, csum_offset);
    if (hdr_len_bytes == kNetHdrV1Len) store_le16(p + 10, num_buffers);
    return hdr_len_bytes;
}

}  // namespace slipway::virtio
