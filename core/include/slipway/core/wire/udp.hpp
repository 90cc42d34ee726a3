// UDP datagram view (RFC 768) and the Repr that builds UDP headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kUdpHeaderLen = 8;
static_assert(kUdpHeaderLen == 8);

// Validated UDP datagram: the length field is at least 8 and within the buffer (RFC 768 "Length");
// bytes past it are ignored, so payload() follows the length field, not the buffer.
class UdpView {
  public:
    [[nodiscard]] static Result<UdpView> parse(ByteView datagram) noexcept;

    [[nodiscard]] L4Port src_port() const noexcept { return L4Port{load_be16(b_.data())}; }
    [[nodiscard]] L4Port dst_port() const noexcept { return L4Port{load_be16(b_.data() + 2)}; }
    [[nodiscard]] std::uint16_t length() const noexcept { return load_be16(b_.data() + 4); }
    // Zero over IPv4 means "not computed" (RFC 768); over IPv6 it is invalid (RFC 8200 §8.1).
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 6); }
    [[nodiscard]] ByteView header() const noexcept { return b_.first(kUdpHeaderLen); }
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(kUdpHeaderLen); }
    [[nodiscard]] ByteView datagram() const noexcept { return b_; }  // length() bytes

  private:
    explicit UdpView(ByteView b) noexcept : b_(b) {}
    ByteView b_;
};

// Builds a UDP header; `checksum` is written as given (caller computes it over the pseudo-header
// and payload, or leaves zero over IPv4 / for checksum offload).
struct UdpRepr {
    L4Port src_port;
    L4Port dst_port;
    std::uint16_t payload_len = 0;
    std::uint16_t checksum = 0;

    [[nodiscard]] static UdpRepr from(const UdpView& v) noexcept {
        return {v.src_port(), v.dst_port(), static_cast<std::uint16_t>(v.length() - kUdpHeaderLen),
                v.checksum()};
    }
    [[nodiscard]] static constexpr std::size_t header_len() noexcept { return kUdpHeaderLen; }
    // Header only. Errc::invalid_argument if 8 + payload_len exceeds 65535; Errc::too_large if
    // out is short.
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
    friend bool operator==(const UdpRepr&, const UdpRepr&) = default;
};

}  // namespace slipway::wire
