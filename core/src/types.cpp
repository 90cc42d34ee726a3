// Text conversions of the strong address types (cold path: configuration, logs, API).
#include "slipway/core/types.hpp"

#include <arpa/inet.h>

#include <cstdio>

namespace slipway {

std::string MacAddr::to_string() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                  b[5]);
    return buf;
}

std::optional<MacAddr> MacAddr::parse(std::string_view text) noexcept {
    // Exactly six two-digit hex groups separated by ':' or '-'.
    if (text.size() != 17) return std::nullopt;
    MacAddr m;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 6; ++i) {
        const int hi = hex(text[i * 3]);
        const int lo = hex(text[i * 3 + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        if (i < 5 && text[i * 3 + 2] != ':' && text[i * 3 + 2] != '-') return std::nullopt;
        m.b[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return m;
}

std::string Ipv4Addr::to_string() const {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff,
                  v & 0xff);
    return buf;
}

std::optional<Ipv4Addr> Ipv4Addr::parse(std::string_view text) noexcept {
    char buf[INET_ADDRSTRLEN];
    if (text.size() >= sizeof buf) return std::nullopt;
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    in_addr a{};
    if (inet_pton(AF_INET, buf, &a) != 1) return std::nullopt;
    return Ipv4Addr{ntohl(a.s_addr)};
}

std::string Ipv6Addr::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    in6_addr a{};
    for (std::size_t i = 0; i < 16; ++i)
        a.s6_addr[i] = b[i];
    if (inet_ntop(AF_INET6, &a, buf, sizeof buf) == nullptr) return "?";
    return buf;
}

std::optional<Ipv6Addr> Ipv6Addr::parse(std::string_view text) noexcept {
    char buf[INET6_ADDRSTRLEN];
    if (text.size() >= sizeof buf) return std::nullopt;
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    in6_addr a{};
    if (inet_pton(AF_INET6, buf, &a) != 1) return std::nullopt;
    Ipv6Addr r;
    for (std::size_t i = 0; i < 16; ++i)
        r.b[i] = a.s6_addr[i];
    return r;
}

}  // namespace slipway
