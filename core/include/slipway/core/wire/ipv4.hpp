// IPv4 header view (RFC 791) and the Repr that builds headers with their checksum.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kIpv4MinHeaderLen = 20;
inline constexpr std::size_t kIpv4MaxHeaderLen = 60;
inline constexpr std::size_t kIpv4MaxOptionsLen = kIpv4MaxHeaderLen - kIpv4MinHeaderLen;
inline constexpr std::size_t kIpv4MaxPacketLen = 65535;
static_assert(kIpv4MinHeaderLen == 20);
static_assert(kIpv4MaxHeaderLen == 15 * 4);  // IHL is four bits of 32-bit words
static_assert(kIpv4MaxOptionsLen == 40);

// Validated IPv4 header. parse() checks version, IHL against the buffer and total length against
// IHL and the buffer; bytes past total length (Ethernet minimum-frame padding) are not payload.
class Ipv4View {
  public:
    [[nodiscard]] static Result<Ipv4View> parse(ByteView packet) noexcept;

    [[nodiscard]] std::size_t header_len() const noexcept { return hlen_; }
    [[nodiscard]] std::uint16_t total_len() const noexcept { return load_be16(b_.data() + 2); }
    [[nodiscard]] std::uint8_t tos() const noexcept { return load_u8(b_.data() + 1); }
    [[nodiscard]] std::uint8_t dscp() const noexcept {
        return static_cast<std::uint8_t>(tos() >> 2);
    }
    [[nodiscard]] std::uint8_t ecn() const noexcept {
        return static_cast<std::uint8_t>(tos() & 3u);
    }
    [[nodiscard]] std::uint16_t ident() const noexcept { return load_be16(b_.data() + 4); }
    [[nodiscard]] bool reserved_flag() const noexcept { return (flags_frag() & 0x8000u) != 0; }
    [[nodiscard]] bool dont_fragment() const noexcept { return (flags_frag() & 0x4000u) != 0; }
    [[nodiscard]] bool more_fragments() const noexcept { return (flags_frag() & 0x2000u) != 0; }
    // In 8-byte units, as on the wire.
    [[nodiscard]] std::uint16_t frag_offset() const noexcept {
        return static_cast<std::uint16_t>(flags_frag() & 0x1fffu);
    }
    [[nodiscard]] std::size_t frag_offset_bytes() const noexcept {
        return std::size_t{frag_offset()} * 8;
    }
    [[nodiscard]] bool is_fragment() const noexcept {
        return more_fragments() || frag_offset() != 0;
    }
    // Only the first fragment carries the upper-layer header (RFC 791 §3.2 "Fragmentation").
    [[nodiscard]] bool is_first_fragment() const noexcept { return frag_offset() == 0; }
    [[nodiscard]] std::uint8_t ttl() const noexcept { return load_u8(b_.data() + 8); }
    [[nodiscard]] IpProto protocol() const noexcept {
        return static_cast<IpProto>(load_u8(b_.data() + 9));
    }
    [[nodiscard]] std::uint16_t header_checksum() const noexcept {
        return load_be16(b_.data() + 10);
    }
    // Ones'-complement sum over the header including the checksum field is 0xffff when intact.
    [[nodiscard]] bool header_checksum_ok() const noexcept;
    [[nodiscard]] Ipv4Addr src() const noexcept { return Ipv4Addr::load(b_.data() + 12); }
    [[nodiscard]] Ipv4Addr dst() const noexcept { return Ipv4Addr::load(b_.data() + 16); }
    [[nodiscard]] ByteView options() const noexcept {
        return b_.subspan(kIpv4MinHeaderLen, hlen_ - kIpv4MinHeaderLen);
    }
    [[nodiscard]] ByteView header() const noexcept { return b_.first(hlen_); }
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(hlen_); }
    [[nodiscard]] ByteView packet() const noexcept { return b_; }  // total_len() bytes

  private:
    Ipv4View(ByteView b, std::size_t hlen) noexcept : b_(b), hlen_(hlen) {}
    [[nodiscard]] std::uint16_t flags_frag() const noexcept { return load_be16(b_.data() + 6); }
    ByteView b_;  // trimmed to total_len
    std::size_t hlen_;
};

// Builds an IPv4 header; emit() fills in total length and the header checksum.
struct Ipv4Repr {
    Ipv4Addr src;
    Ipv4Addr dst;
    IpProto protocol = IpProto::udp;
    std::uint8_t ttl = 64;
    std::uint8_t tos = 0;
    std::uint16_t ident = 0;
    bool reserved_flag = false;  // RFC 791 §3.1 says zero; kept so from()+emit() round-trips
    bool dont_fragment = false;
    bool more_fragments = false;
    std::uint16_t frag_offset = 0;  // 8-byte units, < 0x2000
    std::uint16_t payload_len = 0;  // bytes after the header
    std::array<std::byte, kIpv4MaxOptionsLen> options{};
    std::uint8_t options_len = 0;  // multiple of 4, <= 40 (RFC 791 §3.1: options pad to 32 bits)

    [[nodiscard]] static Ipv4Repr from(const Ipv4View& v) noexcept;
    [[nodiscard]] std::size_t header_len() const noexcept {
        return kIpv4MinHeaderLen + options_len;
    }
    // Writes the header only (payload follows at out[header_len()]). Errc::invalid_argument for
    // bad options_len/frag_offset or a total length above 65535; Errc::too_large if out is short.
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
    friend bool operator==(const Ipv4Repr&, const Ipv4Repr&) = default;
};

}  // namespace slipway::wire
