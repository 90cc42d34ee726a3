// IPv6 header view (RFC 8200) with a bounded extension-header walk, and the fixed-header Repr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kIpv6HeaderLen = 40;
inline constexpr std::size_t kIpv6FragmentHeaderLen = 8;
// Real traffic carries two or three; more is either an attack or nothing slipway must serve.
inline constexpr std::size_t kIpv6MaxExtHeaders = 8;
static_assert(kIpv6HeaderLen == 40);
static_assert(kIpv6FragmentHeaderLen == 8);

// What the Fragment header (RFC 8200 §4.5) said.
struct Ipv6Fragment {
    std::uint16_t offset = 0;  // 8-byte units
    bool more = false;         // M flag
    std::uint32_t ident = 0;

    [[nodiscard]] constexpr bool is_first() const noexcept { return offset == 0; }
    [[nodiscard]] constexpr std::size_t offset_bytes() const noexcept {
        return std::size_t{offset} * 8;
    }
    friend constexpr bool operator==(const Ipv6Fragment&, const Ipv6Fragment&) = default;
};

// Validated IPv6 packet. parse() checks the version, payload length against the buffer (bytes
// after it are link padding) and walks the extension headers to the upper layer:
//  - hop-by-hop options anywhere but first: Errc::unsupported (RFC 8200 §4.1);
//  - payload length 0 (a jumbogram, RFC 2675): Errc::unsupported;
//  - ESP (50) or No Next Header (59): the walk stops and upper_protocol() says which;
//  - a fragment header with a non-zero offset: the walk stops after it, since what follows is
//    not a header (upper_protocol() is then the fragment's Next Header);
//  - more than kIpv6MaxExtHeaders headers: Errc::unsupported.
class Ipv6View {
  public:
    [[nodiscard]] static Result<Ipv6View> parse(ByteView packet) noexcept;

    [[nodiscard]] std::uint8_t traffic_class() const noexcept {
        return static_cast<std::uint8_t>((load_be32(b_.data()) >> 20) & 0xffu);
    }
    [[nodiscard]] std::uint8_t dscp() const noexcept {
        return static_cast<std::uint8_t>(traffic_class() >> 2);
    }
    [[nodiscard]] std::uint8_t ecn() const noexcept {
        return static_cast<std::uint8_t>(traffic_class() & 3u);
    }
    [[nodiscard]] std::uint32_t flow_label() const noexcept {
        return load_be32(b_.data()) & 0x000fffffu;
    }
    [[nodiscard]] std::uint16_t payload_len() const noexcept { return load_be16(b_.data() + 4); }
    // The Next Header of the fixed header (the first extension header, or the upper layer).
    [[nodiscard]] IpProto next_header() const noexcept {
        return static_cast<IpProto>(load_u8(b_.data() + 6));
    }
    [[nodiscard]] std::uint8_t hop_limit() const noexcept { return load_u8(b_.data() + 7); }
    [[nodiscard]] Ipv6Addr src() const noexcept { return Ipv6Addr::load(b_.data() + 8); }
    [[nodiscard]] Ipv6Addr dst() const noexcept { return Ipv6Addr::load(b_.data() + 24); }

    [[nodiscard]] IpProto upper_protocol() const noexcept { return upper_; }
    // Offset of the upper-layer header from the start of the IPv6 header.
    [[nodiscard]] std::size_t upper_offset() const noexcept { return upper_off_; }
    [[nodiscard]] std::uint8_t ext_header_count() const noexcept { return ext_count_; }
    [[nodiscard]] std::optional<Ipv6Fragment> fragment() const noexcept { return frag_; }
    [[nodiscard]] bool is_fragment() const noexcept { return frag_.has_value(); }

    [[nodiscard]] ByteView header() const noexcept { return b_.first(kIpv6HeaderLen); }
    [[nodiscard]] ByteView ext_headers() const noexcept {
        return b_.subspan(kIpv6HeaderLen, upper_off_ - kIpv6HeaderLen);
    }
    // Everything after the fixed header (extension headers included).
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(kIpv6HeaderLen); }
    // Everything after the last extension header.
    [[nodiscard]] ByteView upper_payload() const noexcept { return b_.subspan(upper_off_); }
    [[nodiscard]] ByteView packet() const noexcept { return b_; }  // 40 + payload_len() bytes

  private:
    Ipv6View(ByteView b, IpProto upper, std::size_t upper_off, std::uint8_t ext_count,
             std::optional<Ipv6Fragment> frag) noexcept
        : b_(b), upper_(upper), upper_off_(upper_off), ext_count_(ext_count), frag_(frag) {}
    ByteView b_;  // trimmed to 40 + payload_len
    IpProto upper_;
    std::size_t upper_off_;
    std::uint8_t ext_count_;
    std::optional<Ipv6Fragment> frag_;
};

// Builds the fixed IPv6 header; extension headers, if any, are the caller's bytes after it.
struct Ipv6Repr {
    Ipv6Addr src;
    Ipv6Addr dst;
    IpProto next_header = IpProto::udp;
    std::uint8_t hop_limit = 64;
    std::uint8_t traffic_class = 0;
    std::uint32_t flow_label = 0;   // 20 bits
    std::uint16_t payload_len = 0;  // bytes after the fixed header

    [[nodiscard]] static Ipv6Repr from(const Ipv6View& v) noexcept {
        return {v.src(),           v.dst(),        v.next_header(), v.hop_limit(),
                v.traffic_class(), v.flow_label(), v.payload_len()};
    }
    [[nodiscard]] static constexpr std::size_t header_len() noexcept { return kIpv6HeaderLen; }
    // Errc::invalid_argument if flow_label has more than 20 bits; Errc::too_large if out is short.
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
    friend bool operator==(const Ipv6Repr&, const Ipv6Repr&) = default;
};

}  // namespace slipway::wire
