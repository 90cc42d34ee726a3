// ARP view and Repr for Ethernet/IPv4 only (RFC 826), the one combination a VM network carries.
#pragma once

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kArpEthIpv4Len = 28;
static_assert(kArpEthIpv4Len == 8 + 2 * 6 + 2 * 4);

enum class ArpOp : std::uint16_t { request = 1, reply = 2 };

// Validated ARP packet. Any other hardware/protocol pairing is Errc::unsupported; trailing bytes
// (Ethernet minimum-size padding) are allowed and ignored.
class ArpView {
  public:
    [[nodiscard]] static Result<ArpView> parse(ByteView packet) noexcept;

    [[nodiscard]] ArpOp op() const noexcept { return static_cast<ArpOp>(load_be16(b_.data() + 6)); }
    [[nodiscard]] MacAddr sha() const noexcept { return MacAddr::load(b_.data() + 8); }
    [[nodiscard]] Ipv4Addr spa() const noexcept { return Ipv4Addr::load(b_.data() + 14); }
    [[nodiscard]] MacAddr tha() const noexcept { return MacAddr::load(b_.data() + 18); }
    [[nodiscard]] Ipv4Addr tpa() const noexcept { return Ipv4Addr::load(b_.data() + 24); }
    [[nodiscard]] ByteView bytes() const noexcept { return b_; }  // exactly 28 bytes

  private:
    explicit ArpView(ByteView b) noexcept : b_(b) {}
    ByteView b_;
};

struct ArpRepr {
    ArpOp op = ArpOp::request;
    MacAddr sha;
    Ipv4Addr spa;
    MacAddr tha;
    Ipv4Addr tpa;

    [[nodiscard]] static ArpRepr from(const ArpView& v) noexcept {
        return {v.op(), v.sha(), v.spa(), v.tha(), v.tpa()};
    }
    [[nodiscard]] static constexpr std::size_t buffer_len() noexcept { return kArpEthIpv4Len; }
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
    friend bool operator==(const ArpRepr&, const ArpRepr&) = default;
};

}  // namespace slipway::wire
