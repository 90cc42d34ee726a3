// ARP parsing and emission for Ethernet/IPv4.
#include "slipway/core/wire/arp.hpp"

namespace slipway::wire {

namespace {
constexpr std::uint16_t kHtypeEthernet = 1;
constexpr std::uint16_t kPtypeIpv4 = 0x0800;
constexpr std::uint8_t kHlenEthernet = 6;
constexpr std::uint8_t kPlenIpv4 = 4;
}  // namespace

Result<ArpView> ArpView::parse(ByteView packet) noexcept {
    if (packet.size() < kArpEthIpv4Len) return fail(Errc::truncated);
    const std::byte* p = packet.data();
    // RFC 826 "Packet format": the address sizes follow from htype/ptype, so anything but
    // Ethernet/IPv4 would move every later field.
    if (load_be16(p) != kHtypeEthernet || load_be16(p + 2) != kPtypeIpv4 ||
        load_u8(p + 4) != kHlenEthernet || load_u8(p + 5) != kPlenIpv4)
        return fail(Errc::unsupported);
    return ArpView{packet.first(kArpEthIpv4Len)};
}

Result<std::size_t> ArpRepr::emit(MutByteView out) const noexcept {
    if (out.size() < kArpEthIpv4Len) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_be16(p, kHtypeEthernet);
    store_be16(p + 2, kPtypeIpv4);
    store_u8(p + 4, kHlenEthernet);
    store_u8(p + 5, kPlenIpv4);
    store_be16(p + 6, static_cast<std::uint16_t>(op));
    sha.store(p + 8);
    spa.store(p + 14);
    tha.store(p + 18);
    tpa.store(p + 24);
    return kArpEthIpv4Len;
}

}  // namespace slipway::wire
