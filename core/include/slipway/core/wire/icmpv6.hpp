// ICMPv6 message view (RFC 4443 §2.1) and its Repr; the caller owns the pseudo-header checksum.
#pragma once

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kIcmpv6HeaderLen = 4;  // type, code, checksum
// Every message defined by RFC 4443 and RFC 4861 has at least 4 more bytes (identifier/sequence,
// MTU, pointer, or reserved), so parse() requires them and the echo accessors stay in bounds.
inline constexpr std::size_t kIcmpv6MinMessageLen = 8;
static_assert(kIcmpv6HeaderLen == 4);
static_assert(kIcmpv6MinMessageLen == 8);

enum class Icmpv6Type : std::uint8_t {
    dest_unreachable = 1,
    packet_too_big = 2,
    time_exceeded = 3,
    parameter_problem = 4,
    echo_request = 128,
    echo_reply = 129,
    mld_query = 130,
    router_solicitation = 133,
    router_advertisement = 134,
    neighbor_solicitation = 135,
    neighbor_advertisement = 136,
    redirect = 137,
    mldv2_report = 143,
};

class Icmpv6View {
  public:
    [[nodiscard]] static Result<Icmpv6View> parse(ByteView message) noexcept;

    [[nodiscard]] Icmpv6Type type() const noexcept {
        return static_cast<Icmpv6Type>(load_u8(b_.data()));
    }
    [[nodiscard]] std::uint8_t code() const noexcept { return load_u8(b_.data() + 1); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 2); }
    // RFC 4443 §2.1 "Message Body": everything after the checksum.
    [[nodiscard]] ByteView body() const noexcept { return b_.subspan(kIcmpv6HeaderLen); }
    [[nodiscard]] std::uint32_t rest_of_header() const noexcept { return load_be32(b_.data() + 4); }
    [[nodiscard]] std::uint16_t echo_id() const noexcept { return load_be16(b_.data() + 4); }
    [[nodiscard]] std::uint16_t echo_seq() const noexcept { return load_be16(b_.data() + 6); }
    // After the first 8 bytes: echo data, the invoking packet of an error, NDP target + options.
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(kIcmpv6MinMessageLen); }
    [[nodiscard]] ByteView message() const noexcept { return b_; }

  private:
    explicit Icmpv6View(ByteView b) noexcept : b_(b) {}
    ByteView b_;
};

// Builds a whole ICMPv6 message. `checksum` is written as given (zero by default): the caller
// computes it over the IPv6 pseudo-header (RFC 4443 §2.3) and patches or supplies it.
struct Icmpv6Repr {
    Icmpv6Type type = Icmpv6Type::echo_reply;
    std::uint8_t code = 0;
    std::uint16_t checksum = 0;
    ByteView body;  // at least 4 bytes; copied by emit(), must not overlap the output

    [[nodiscard]] static Icmpv6Repr from(const Icmpv6View& v) noexcept {
        return {v.type(), v.code(), v.checksum(), v.body()};
    }
    [[nodiscard]] std::size_t buffer_len() const noexcept { return kIcmpv6HeaderLen + body.size(); }
    // Errc::invalid_argument if body is shorter than 4 bytes; Errc::too_large if out is short.
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
};

}  // namespace slipway::wire
