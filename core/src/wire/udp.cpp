// UDP header parsing and emission.
#include "slipway/core/wire/udp.hpp"

namespace slipway::wire {

Result<UdpView> UdpView::parse(ByteView datagram) noexcept {
    if (datagram.size() < kUdpHeaderLen) return fail(Errc::truncated);
    // RFC 768: Length counts header and data, so it is at least 8.
    const std::size_t len = load_be16(datagram.data() + 4);
    if (len < kUdpHeaderLen) return fail(Errc::bad_length);
    if (len > datagram.size()) return fail(Errc::bad_length);
    return UdpView{datagram.first(len)};
}

Result<std::size_t> UdpRepr::emit(MutByteView out) const noexcept {
    if (std::size_t{payload_len} + kUdpHeaderLen > 0xffffu) return fail(Errc::invalid_argument);
    if (out.size() < kUdpHeaderLen) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_be16(p, src_port.v);
    store_be16(p + 2, dst_port.v);
    store_be16(p + 4, static_cast<std::uint16_t>(payload_len + kUdpHeaderLen));
    store_be16(p + 6, checksum);
    return kUdpHeaderLen;
}

}  // namespace slipway::wire
