// Ethernet header parsing and emission.
#include "slipway/core/wire/ethernet.hpp"

namespace slipway::wire {

namespace {
constexpr std::uint16_t kMinEtherType = 0x0600;  // IEEE 802.3 §3.2.6: below this it is a length

constexpr bool is_tag_tpid(std::uint16_t t) noexcept {
    return t == static_cast<std::uint16_t>(EtherType::vlan) ||
           t == static_cast<std::uint16_t>(EtherType::qinq);
}
}  // namespace

Result<EthernetView> EthernetView::parse(ByteView frame) noexcept {
    if (frame.size() < kEthernetHeaderLen) return fail(Errc::truncated);
    std::size_t hlen = kEthernetHeaderLen;
    std::uint16_t type = load_be16(frame.data() + 12);
    if (is_tag_tpid(type)) {
        // IEEE 802.1Q §9.3: the tag sits between the source MAC and the real EtherType.
        if (frame.size() < kEthernetMaxHeaderLen) return fail(Errc::truncated);
        hlen = kEthernetMaxHeaderLen;
        type = load_be16(frame.data() + 16);
        if (is_tag_tpid(type)) return fail(Errc::unsupported);  // stacked tags (QinQ)
    }
    if (type < kMinEtherType) return fail(Errc::unsupported);
    return EthernetView{frame, hlen};
}

Result<std::size_t> EthernetRepr::emit(MutByteView out) const noexcept {
    const std::size_t len = header_len();
    if (vlan && !is_tag_tpid(static_cast<std::uint16_t>(vlan->tpid)))
        return fail(Errc::invalid_argument);
    if (out.size() < len) return fail(Errc::too_large);
    std::byte* p = out.data();
    dst.store(p);
    src.store(p + 6);
    if (vlan) {
        store_be16(p + 12, static_cast<std::uint16_t>(vlan->tpid));
        store_be16(p + 14, vlan->tci);
    }
    store_be16(p + len - 2, static_cast<std::uint16_t>(ethertype));
    return len;
}

}  // namespace slipway::wire
