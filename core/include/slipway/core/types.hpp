// Strong types for protocol quantities: addresses, ports, TCP sequence numbers (DESIGN §6).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "slipway/core/bytes.hpp"

namespace slipway {

// Ethernet MAC address, six bytes in wire order.
struct MacAddr {
    std::array<std::uint8_t, 6> b{};

    static constexpr MacAddr broadcast() noexcept { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
    [[nodiscard]] constexpr bool is_broadcast() const noexcept { return *this == broadcast(); }
    [[nodiscard]] constexpr bool is_multicast() const noexcept { return (b[0] & 0x01) != 0; }
    [[nodiscard]] constexpr bool is_zero() const noexcept { return *this == MacAddr{}; }
    static MacAddr load(const std::byte* p) noexcept {
        MacAddr m;
        for (std::size_t i = 0; i < 6; ++i)
            m.b[i] = static_cast<std::uint8_t>(p[i]);
        return m;
    }
    void store(std::byte* p) const noexcept {
        for (std::size_t i = 0; i < 6; ++i)
            p[i] = static_cast<std::byte>(b[i]);
    }
    [[nodiscard]] std::string to_string() const;
    static std::optional<MacAddr> parse(std::string_view text) noexcept;
    friend constexpr auto operator<=>(const MacAddr&, const MacAddr&) = default;
};
static_assert(sizeof(MacAddr) == 6);

// IPv4 address held in host byte order (so arithmetic and masks are natural).
struct Ipv4Addr {
    std::uint32_t v = 0;

    static constexpr Ipv4Addr from_octets(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                          std::uint8_t d) noexcept {
        return Ipv4Addr{(std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) |
                        (std::uint32_t{c} << 8) | std::uint32_t{d}};
    }
    static Ipv4Addr load(const std::byte* p) noexcept { return Ipv4Addr{load_be32(p)}; }
    void store(std::byte* p) const noexcept { store_be32(p, v); }
    [[nodiscard]] constexpr bool is_unspecified() const noexcept { return v == 0; }
    [[nodiscard]] constexpr bool is_broadcast() const noexcept { return v == 0xffffffffu; }
    [[nodiscard]] constexpr bool is_multicast() const noexcept { return (v >> 28) == 0xe; }
    [[nodiscard]] constexpr bool is_loopback() const noexcept { return (v >> 24) == 127; }
    // The netmask of a prefix length 0..32, host order (/24 -> 255.255.255.0).
    [[nodiscard]] static constexpr std::uint32_t prefix_mask(std::uint8_t len) noexcept {
        return len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
    }
    // Whether this address lies in `net`/`len` (host bits of `net` are ignored).
    [[nodiscard]] constexpr bool in_prefix(Ipv4Addr net, std::uint8_t len) const noexcept {
        return ((v ^ net.v) & prefix_mask(len)) == 0;
    }
    [[nodiscard]] std::string to_string() const;
    static std::optional<Ipv4Addr> parse(std::string_view text) noexcept;
    friend constexpr auto operator<=>(const Ipv4Addr&, const Ipv4Addr&) = default;
};

// IPv6 address, sixteen bytes in wire order.
struct Ipv6Addr {
    std::array<std::uint8_t, 16> b{};

    static Ipv6Addr load(const std::byte* p) noexcept {
        Ipv6Addr a;
        for (std::size_t i = 0; i < 16; ++i)
            a.b[i] = static_cast<std::uint8_t>(p[i]);
        return a;
    }
    void store(std::byte* p) const noexcept {
        for (std::size_t i = 0; i < 16; ++i)
            p[i] = static_cast<std::byte>(b[i]);
    }
    [[nodiscard]] constexpr bool is_multicast() const noexcept { return b[0] == 0xff; }
    [[nodiscard]] constexpr bool is_link_local() const noexcept {
        return b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
    }
    [[nodiscard]] constexpr bool is_unspecified() const noexcept { return *this == Ipv6Addr{}; }
    [[nodiscard]] std::string to_string() const;
    static std::optional<Ipv6Addr> parse(std::string_view text) noexcept;
    friend constexpr auto operator<=>(const Ipv6Addr&, const Ipv6Addr&) = default;
};
static_assert(sizeof(Ipv6Addr) == 16);

// TCP/UDP port in host byte order.
struct L4Port {
    std::uint16_t v = 0;
    friend constexpr auto operator<=>(const L4Port&, const L4Port&) = default;
};

// TCP sequence number with modulo-2^32 comparison (RFC 9293 §3.4): a < b when b is "after" a,
// i.e. less than 2^31 ahead. Plain integer comparison is wrong across wraparound.
struct TcpSeq {
    std::uint32_t v = 0;

    constexpr TcpSeq operator+(std::uint32_t n) const noexcept { return TcpSeq{v + n}; }
    constexpr TcpSeq& operator+=(std::uint32_t n) noexcept {
        v += n;
        return *this;
    }
    // Distance from `from` to this, valid when this is not before `from`.
    [[nodiscard]] constexpr std::uint32_t operator-(TcpSeq from) const noexcept {
        return v - from.v;
    }
    friend constexpr bool operator==(TcpSeq a, TcpSeq b) noexcept { return a.v == b.v; }
    friend constexpr bool operator<(TcpSeq a, TcpSeq b) noexcept {
        return static_cast<std::int32_t>(a.v - b.v) < 0;
    }
    friend constexpr bool operator>(TcpSeq a, TcpSeq b) noexcept { return b < a; }
    friend constexpr bool operator<=(TcpSeq a, TcpSeq b) noexcept { return !(b < a); }
    friend constexpr bool operator>=(TcpSeq a, TcpSeq b) noexcept { return !(a < b); }
};

// IP protocol numbers (IANA) used across the engine.
enum class IpProto : std::uint8_t {
    hop_by_hop = 0,
    icmp = 1,
    tcp = 6,
    udp = 17,
    ipv6_route = 43,
    ipv6_frag = 44,
    esp = 50,
    ah = 51,
    icmpv6 = 58,
    ipv6_none = 59,
    ipv6_opts = 60,
};

// EtherType values (IEEE registry).
enum class EtherType : std::uint16_t {
    ipv4 = 0x0800,
    arp = 0x0806,
    vlan = 0x8100,
    qinq = 0x88a8,
    ipv6 = 0x86dd,
};

}  // namespace slipway
