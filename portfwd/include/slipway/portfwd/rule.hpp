// A port forwarding rule: a protocol, a host address and port range, a guest address and port
// range of the same length (DESIGN §2 "Port forwarding").
//
// Text form (--forward, the config file's `forward` array, the API):
//     [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END]
// HOSTADDR is an IPv4 address or a bracketed IPv6 one ("[::1]"), 127.0.0.1 when left out;
// 0.0.0.0 and [::] mean every address of that family. The protocol defaults to tcp. A host range
// maps port by port onto the guest range, which has the same length (GUESTPORT-END may be left
// at GUESTPORT: the guest range then starts there). Guests are IPv4 (the guest network is).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::portfwd {

enum class Proto : std::uint8_t { tcp, udp };

[[nodiscard]] constexpr std::string_view to_string(Proto p) noexcept {
    return p == Proto::tcp ? "tcp" : "udp";
}

// Ports one rule may cover: each is a host socket (a file descriptor).
inline constexpr std::uint32_t kMaxRangePorts = 1024;

// A host address: IPv4 or IPv6.
struct HostAddr {
    bool v6 = false;
    Ipv4Addr v4;
    Ipv6Addr v6addr;

    [[nodiscard]] bool is_wildcard() const noexcept {
        return v6 ? v6addr.is_unspecified() : v4.is_unspecified();
    }
    [[nodiscard]] bool is_loopback() const noexcept;
    // "127.0.0.1", "[::1]"
    [[nodiscard]] std::string to_string() const;
    // A socket address for `port`; returns its length.
    socklen_t to_sockaddr(std::uint16_t port, sockaddr_storage& out) const noexcept;
    friend bool operator==(const HostAddr& a, const HostAddr& b) noexcept {
        return a.v6 == b.v6 && (a.v6 ? a.v6addr == b.v6addr : a.v4 == b.v4);
    }
};

struct Rule {
    Proto proto = Proto::tcp;
    HostAddr host;
    std::uint16_t host_first = 0, host_last = 0;  // inclusive
    Ipv4Addr guest;
    std::uint16_t guest_first = 0;  // guest_last = guest_first + (host_last - host_first)

    // Parses the text form; on failure `why` says what is wrong (without the flag's name).
    static Result<Rule> parse(std::string_view text, std::string& why);

    [[nodiscard]] std::uint16_t guest_last() const noexcept {
        return static_cast<std::uint16_t>(guest_first + (host_last - host_first));
    }
    [[nodiscard]] std::uint32_t ports() const noexcept {
        return std::uint32_t{host_last} - host_first + 1;
    }
    [[nodiscard]] std::uint16_t guest_port_for(std::uint16_t host_port) const noexcept {
        return static_cast<std::uint16_t>(guest_first + (host_port - host_first));
    }
    // "127.0.0.1:8080", "[::1]:8000-8009"
    [[nodiscard]] std::string host_text() const;
    // "192.168.127.2:80", "192.168.127.2:8000-8009"
    [[nodiscard]] std::string guest_text() const;
    // The canonical text form: "tcp:127.0.0.1:8080=192.168.127.2:80".
    [[nodiscard]] std::string spec() const;
    // Whether both rules would bind a common socket: same protocol, a common port, and the same
    // address or a wildcard of the same family on either side.
    [[nodiscard]] bool overlaps(const Rule& o) const noexcept;
};

// A rule's host side as its text writes it: "[HOSTADDR:]PORT[-END]", HOSTADDR an IPv4 address or
// "[V6]" (an IPv4-mapped one is its IPv4 address), 127.0.0.1 when left out. nullopt with `why`
// saying what is wrong (an address without a port, a bad address, a bad or reversed range).
struct HostSide {
    HostAddr addr;
    std::uint16_t first = 0, last = 0;
};
[[nodiscard]] std::optional<HostSide> parse_host_side(std::string_view text, std::string& why);

// "HOSTADDR:PORT" / "PORT" / "[V6]:PORT" (a single port) as gvproxy's "local" field writes it,
// parsed into an address (127.0.0.1 when left out; gvproxy's ":8080" means every address) and a
// port. nullopt when malformed.
struct HostPort {
    HostAddr addr;
    std::uint16_t port = 0;
};
[[nodiscard]] std::optional<HostPort> parse_host_port(std::string_view text, bool empty_is_any);

}  // namespace slipway::portfwd
