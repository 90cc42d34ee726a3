// DHCPv4 messages on the wire (RFC 2131 §2, RFC 2132): a view that validates a BOOTP/DHCP
// message once, and a Repr that emits a reply with its options.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::dhcp {

inline constexpr std::size_t kFixedLen = 236;                // op .. file (RFC 2131 §2, Figure 1)
inline constexpr std::size_t kCookieLen = 4;                 // 99.130.83.99 (RFC 2131 §3)
inline constexpr std::size_t kMinMessageLen = 576 - 20 - 8;  // RFC 2131 §2: 576-byte datagrams
inline constexpr std::uint16_t kServerPort = 67;
inline constexpr std::uint16_t kClientPort = 68;

enum class MessageType : std::uint8_t {  // option 53 (RFC 2132 §9.6)
    discover = 1,
    offer = 2,
    request = 3,
    decline = 4,
    ack = 5,
    nak = 6,
    release = 7,
    inform = 8,
};

enum class Op : std::uint8_t { request = 1, reply = 2 };  // BOOTREQUEST, BOOTREPLY

// Option codes slipway reads or writes (RFC 2132 unless noted).
namespace opt {
inline constexpr std::uint8_t pad = 0, subnet_mask = 1, router = 3, dns = 6, hostname = 12,
                              domain_name = 15, mtu = 26, broadcast = 28, requested_ip = 50,
                              lease_time = 51, overload = 52, message_type = 53, server_id = 54,
                              param_request = 55, message = 56, max_message_size = 57,
                              renewal_time = 58, rebinding_time = 59, client_id = 61,
                              domain_search = 119,  // RFC 3397
    classless_routes = 121,                         // RFC 3442
    end = 255;
}  // namespace opt

// A validated DHCP message (the UDP payload). parse() checks: at least kFixedLen + 4 bytes,
// op is 1 or 2, htype 1 (Ethernet) with hlen 6, the magic cookie, and that the options area is a
// well-formed sequence of code/length/value up to an END option (or the end of the buffer): no
// option runs past the buffer. Option overload (52) into file/sname is honoured when the option
// says so (RFC 2131 §4.1). A message without option 53 is BOOTP and is rejected
// (Errc::unsupported). Accessors never leave the span.
class MessageView {
  public:
    [[nodiscard]] static Result<MessageView> parse(ByteView payload) noexcept;

    [[nodiscard]] Op op() const noexcept;
    [[nodiscard]] std::uint32_t xid() const noexcept;
    [[nodiscard]] std::uint16_t secs() const noexcept;
    [[nodiscard]] bool broadcast_flag() const noexcept;  // flags bit 15 (RFC 2131 §2)
    [[nodiscard]] Ipv4Addr ciaddr() const noexcept;
    [[nodiscard]] Ipv4Addr yiaddr() const noexcept;
    [[nodiscard]] Ipv4Addr giaddr() const noexcept;
    [[nodiscard]] MacAddr chaddr() const noexcept;
    [[nodiscard]] MessageType type() const noexcept;  // option 53, validated to 1..8

    // The first occurrence of option `code` (its value bytes), searched in options, then file and
    // sname when overloaded. RFC 3396 concatenation of split long options is not done: slipway
    // reads only short options.
    [[nodiscard]] std::optional<ByteView> option(std::uint8_t code) const noexcept;
    // Typed helpers over option(): nullopt when absent or of the wrong length.
    [[nodiscard]] std::optional<Ipv4Addr> requested_ip() const noexcept;           // 50, 4 bytes
    [[nodiscard]] std::optional<Ipv4Addr> server_id() const noexcept;              // 54, 4 bytes
    [[nodiscard]] std::optional<std::uint16_t> max_message_size() const noexcept;  // 57, >= 576
    [[nodiscard]] std::optional<ByteView> client_id() const noexcept;              // 61, >= 2 bytes
    [[nodiscard]] std::optional<std::string_view> hostname() const noexcept;  // 12, 1..63 bytes
    [[nodiscard]] ByteView param_request_list() const noexcept;  // 55, empty when absent

  private:
    explicit MessageView(ByteView b) noexcept : b_(b) {}
    ByteView b_;
    std::uint8_t overload_ = 0;  // option 52 value: 1 file, 2 sname, 3 both
};

// One option to emit: code and value bytes (at most 255).
struct Option {
    std::uint8_t code;
    ByteView value;
};

// Builds a BOOTREPLY. emit() writes the fixed part (op 2, htype 1, hlen 6, xid, flags, ciaddr,
// yiaddr, siaddr, giaddr, chaddr copied from the request fields given), the cookie, option 53,
// then `options` in order, then END, then pads with zeros to at least kMinMessageLen (RFC 2131
// §2 minimum, as clients expect). Options that do not fit `max_len` (the client's maximum message
// size less IP/UDP headers, or kMinMessageLen) are skipped, never truncated: the caller orders
// them by priority. Returns the length written; Errc::too_large if even the fixed part, cookie,
// type and END do not fit `out`.
struct ReplyRepr {
    MessageType type = MessageType::offer;
    std::uint32_t xid = 0;
    bool broadcast_flag = false;
    Ipv4Addr ciaddr, yiaddr, siaddr, giaddr;
    MacAddr chaddr;
    std::span<const Option> options;
    std::size_t max_len = kMinMessageLen;

    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
};

// RFC 1035 §3.1 name encoding of a search list for option 119 (RFC 3397), without compression:
// each domain as labels then a zero byte. Returns bytes written; Errc::invalid_argument for an
// empty label, a label above 63 bytes or a name above 255; Errc::too_large if `out` is short.
[[nodiscard]] Result<std::size_t> encode_search_list(std::span<const std::string_view> domains,
                                                     MutByteView out) noexcept;

// RFC 3442 option 121 value for routes (destination, prefix length, router): each route as the
// prefix length, the significant octets of the destination, then the router. Returns bytes
// written; Errc::invalid_argument for prefix > 32, Errc::too_large if `out` is short.
struct ClasslessRoute {
    Ipv4Addr dest;
    std::uint8_t prefix_len;
    Ipv4Addr router;
};
[[nodiscard]] Result<std::size_t> encode_classless_routes(std::span<const ClasslessRoute> routes,
                                                          MutByteView out) noexcept;

}  // namespace slipway::dhcp
