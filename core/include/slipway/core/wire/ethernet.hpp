// Ethernet II header view with at most one 802.1Q / 802.1ad tag, and its Repr for building frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kEthernetHeaderLen = 14;
inline constexpr std::size_t kVlanTagLen = 4;
inline constexpr std::size_t kEthernetMaxHeaderLen = kEthernetHeaderLen + kVlanTagLen;
static_assert(kEthernetHeaderLen == 14);
static_assert(kVlanTagLen == 4);
static_assert(kEthernetMaxHeaderLen == 18);

// One 802.1Q (TPID 0x8100) or 802.1ad (TPID 0x88a8) tag.
struct VlanTag {
    EtherType tpid = EtherType::vlan;
    std::uint16_t tci = 0;  // PCP(3) | DEI(1) | VID(12)

    [[nodiscard]] constexpr std::uint16_t vid() const noexcept { return tci & 0x0fffu; }
    [[nodiscard]] constexpr std::uint8_t pcp() const noexcept {
        return static_cast<std::uint8_t>(tci >> 13);
    }
    friend constexpr bool operator==(const VlanTag&, const VlanTag&) = default;
};

// Validated Ethernet header. Frames carrying an 802.3 length instead of an EtherType (< 0x0600)
// are rejected as unsupported: slipway speaks no LLC. A second, nested tag (QinQ) is rejected as
// unsupported too: the switch assigns one VLAN per port and never stacks them.
class EthernetView {
  public:
    [[nodiscard]] static Result<EthernetView> parse(ByteView frame) noexcept;

    [[nodiscard]] MacAddr dst() const noexcept { return MacAddr::load(b_.data()); }
    [[nodiscard]] MacAddr src() const noexcept { return MacAddr::load(b_.data() + 6); }
    [[nodiscard]] std::optional<VlanTag> vlan() const noexcept {
        if (hlen_ == kEthernetHeaderLen) return std::nullopt;
        return VlanTag{static_cast<EtherType>(load_be16(b_.data() + 12)),
                       load_be16(b_.data() + 14)};
    }
    // The EtherType after any tag: what the payload is.
    [[nodiscard]] EtherType ethertype() const noexcept {
        return static_cast<EtherType>(load_be16(b_.data() + hlen_ - 2));
    }
    [[nodiscard]] std::size_t header_len() const noexcept { return hlen_; }
    [[nodiscard]] ByteView header() const noexcept { return b_.first(hlen_); }
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(hlen_); }
    [[nodiscard]] ByteView frame() const noexcept { return b_; }

  private:
    EthernetView(ByteView b, std::size_t hlen) noexcept : b_(b), hlen_(hlen) {}
    ByteView b_;
    std::size_t hlen_;
};

struct EthernetRepr {
    MacAddr dst;
    MacAddr src;
    std::optional<VlanTag> vlan;
    EtherType ethertype = EtherType::ipv4;

    [[nodiscard]] static EthernetRepr from(const EthernetView& v) noexcept {
        return {v.dst(), v.src(), v.vlan(), v.ethertype()};
    }
    [[nodiscard]] std::size_t header_len() const noexcept {
        return vlan ? kEthernetMaxHeaderLen : kEthernetHeaderLen;
    }
    // Writes the header only; the payload follows at out[header_len()].
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
    friend bool operator==(const EthernetRepr&, const EthernetRepr&) = default;
};

}  // namespace slipway::wire
