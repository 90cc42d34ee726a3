// ICMPv4 message view (RFC 792) and the Repr that builds messages with their checksum.
#pragma once

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kIcmpv4HeaderLen = 8;
static_assert(kIcmpv4HeaderLen == 8);

enum class Icmpv4Type : std::uint8_t {
    echo_reply = 0,
    dest_unreachable = 3,
    redirect = 5,
    echo_request = 8,
    time_exceeded = 11,
    parameter_problem = 12,
};

// Validated ICMPv4 message: type, code, checksum and the 4-byte "rest of header" that every
// RFC 792 message has (identifier/sequence for echo, unused/MTU/pointer for errors).
class Icmpv4View {
  public:
    [[nodiscard]] static Result<Icmpv4View> parse(ByteView message) noexcept;

    [[nodiscard]] Icmpv4Type type() const noexcept {
        return static_cast<Icmpv4Type>(load_u8(b_.data()));
    }
    [[nodiscard]] std::uint8_t code() const noexcept { return load_u8(b_.data() + 1); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 2); }
    // RFC 792: the checksum covers the whole ICMP message, no pseudo-header.
    [[nodiscard]] bool checksum_ok() const noexcept;
    [[nodiscard]] std::uint32_t rest_of_header() const noexcept { return load_be32(b_.data() + 4); }
    [[nodiscard]] std::uint16_t echo_id() const noexcept { return load_be16(b_.data() + 4); }
    [[nodiscard]] std::uint16_t echo_seq() const noexcept { return load_be16(b_.data() + 6); }
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(kIcmpv4HeaderLen); }
    [[nodiscard]] ByteView message() const noexcept { return b_; }

  private:
    explicit Icmpv4View(ByteView b) noexcept : b_(b) {}
    ByteView b_;
};

// Builds a whole ICMPv4 message (header and payload); emit() computes the checksum.
struct Icmpv4Repr {
    Icmpv4Type type = Icmpv4Type::echo_reply;
    std::uint8_t code = 0;
    std::uint32_t rest_of_header = 0;
    ByteView payload;  // copied by emit(); must not overlap the output

    [[nodiscard]] static Icmpv4Repr from(const Icmpv4View& v) noexcept {
        return {v.type(), v.code(), v.rest_of_header(), v.payload()};
    }
    [[nodiscard]] static constexpr std::uint32_t echo_rest(std::uint16_t id,
                                                           std::uint16_t seq) noexcept {
        return (std::uint32_t{id} << 16) | seq;
    }
    [[nodiscard]] std::size_t buffer_len() const noexcept {
        return kIcmpv4HeaderLen + payload.size();
    }
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
};

}  // namespace slipway::wire
