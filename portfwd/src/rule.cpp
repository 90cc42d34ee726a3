// Port forwarding rules: parsing, canonical text, overlap (rule.hpp).
#include "slipway/portfwd/rule.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace slipway::portfwd {

namespace {

std::optional<std::uint16_t> parse_port(std::string_view s) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535)
        return std::nullopt;
    return static_cast<std::uint16_t>(v);
}

// "PORT" or "FIRST-LAST".
bool parse_range(std::string_view s, std::uint16_t& first, std::uint16_t& last, bool& ranged,
                 std::string& why) {
    const auto dash = s.find('-');
    ranged = dash != std::string_view::npos;
    const auto a = parse_port(s.substr(0, dash));
    const auto b = ranged ? parse_port(s.substr(dash + 1)) : a;
    if (!a || !b) {
        why = "'" + std::string(s) + "' is not a port (1-65535) or a range FIRST-LAST";
        return false;
    }
    if (*b < *a) {
        why = "port range '" + std::string(s) + "' ends before it starts";
        return false;
    }
    first = *a;
    last = *b;
    return true;
}

std::optional<HostAddr> parse_addr(std::string_view s) {
    HostAddr h;
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
        auto a = Ipv6Addr::parse(s.substr(1, s.size() - 2));
        if (!a) return std::nullopt;
        // An IPv4-mapped address is its IPv4 address (the kernel treats it so).
        static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(a->b.data(), kMapped, 12) == 0) {
            h.v4 = Ipv4Addr::from_octets(a->b[12], a->b[13], a->b[14], a->b[15]);
            return h;
        }
        h.v6 = true;
        h.v6addr = *a;
        return h;
    }
    auto a = Ipv4Addr::parse(s);
    if (!a) return std::nullopt;
    h.v4 = *a;
    return h;
}

// Splits "ADDR:PORTS" where ADDR may be "[v6]"; `addr` empty when there is none.
bool split_addr(std::string_view s, std::string_view& addr, std::string_view& ports) {
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
            return false;
        addr = s.substr(0, close + 1);
        ports = s.substr(close + 2);
        return true;
    }
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
        addr = {};
        ports = s;
        return true;
    }
    addr = s.substr(0, colon);
    ports = s.substr(colon + 1);
    return true;
}

std::string range_text(std::uint16_t a, std::uint16_t b) {
    return a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b);
}

}  // namespace

bool HostAddr::is_loopback() const noexcept {
    if (!v6) return v4.is_loopback();
    Ipv6Addr one{};
    one.b[15] = 1;
    return v6addr == one;
}

std::string HostAddr::to_string() const {
    return v6 ? "[" + v6addr.to_string() + "]" : v4.to_string();
}

socklen_t HostAddr::to_sockaddr(std::uint16_t port, sockaddr_storage& out) const noexcept {
    std::memset(&out, 0, sizeof out);
    if (v6) {
        auto* sa = reinterpret_cast<sockaddr_in6*>(&out);
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(port);
        std::memcpy(&sa->sin6_addr, v6addr.b.data(), 16);
        return sizeof(sockaddr_in6);
    }
    auto* sa = reinterpret_cast<sockaddr_in*>(&out);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    sa->sin_addr.s_addr = htonl(v4.v);
    return sizeof(sockaddr_in);
}

Result<Rule> Rule::parse(std::string_view text, std::string& why) {
    Rule r;
    std::string_view s = text;
    if (s.starts_with("tcp:")) {
        s.remove_prefix(4);
    } else if (s.starts_with("udp:")) {
        r.proto = Proto::udp;
        s.remove_prefix(4);
    }
    const auto eq = s.find('=');
    if (eq == std::string_view::npos) {
        why = "'" + std::string(text) +
              "': expected [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END]";
        return fail(Errc::invalid_argument);
    }
    const auto host = parse_host_side(s.substr(0, eq), why);
    if (!host) return fail(Errc::invalid_argument);
    r.host = host->addr;
    r.host_first = host->first;
    r.host_last = host->last;
    if (r.ports() > kMaxRangePorts) {
        why = "host range " + range_text(r.host_first, r.host_last) + " has " +
              std::to_string(r.ports()) + " ports; at most " + std::to_string(kMaxRangePorts) +
              " per rule";
        return fail(Errc::invalid_argument);
    }
    std::string_view guest = s.substr(eq + 1);
    std::string_view guest_addr, guest_ports;
    if (!split_addr(guest, guest_addr, guest_ports) || guest_addr.empty()) {
        why = "guest side '" + std::string(guest) + "' is not GUESTADDR:GUESTPORT[-END]";
        return fail(Errc::invalid_argument);
    }
    auto ga = Ipv4Addr::parse(guest_addr);
    if (!ga || ga->is_unspecified() || ga->is_multicast() || ga->is_broadcast() ||
        ga->is_loopback()) {
        why = "guest address '" + std::string(guest_addr) + "' is not a unicast IPv4 address";
        return fail(Errc::invalid_argument);
    }
    r.guest = *ga;
    std::uint16_t gf = 0, gl = 0;
    bool guest_ranged = false;
    if (!parse_range(guest_ports, gf, gl, guest_ranged, why)) return fail(Errc::invalid_argument);
    r.guest_first = gf;
    if (guest_ranged && std::uint32_t{gl} - gf + 1 != r.ports()) {
        why = "guest range " + range_text(gf, gl) + " is not as long as host range " +
              range_text(r.host_first, r.host_last);
        return fail(Errc::invalid_argument);
    }
    if (std::uint32_t{gf} + (r.ports() - 1) > 65535) {
        why = "guest range starting at " + std::to_string(gf) + " runs past port 65535";
        return fail(Errc::invalid_argument);
    }
    return r;
}

std::optional<HostSide> parse_host_side(std::string_view text, std::string& why) {
    std::string_view addr, ports;
    if (!split_addr(text, addr, ports)) {
        why = "'" + std::string(text) + "': an IPv6 host address is written [ADDR]:PORT";
        return std::nullopt;
    }
    HostSide h;
    if (addr.empty()) {
        h.addr.v4 = Ipv4Addr::from_octets(127, 0, 0, 1);
    } else {
        auto a = parse_addr(addr);
        if (!a) {
            why = "host address '" + std::string(addr) +
                  "' is not an IPv4 address or a bracketed IPv6 address";
            if (addr.find(':') != std::string_view::npos && addr.front() != '[')
                why += " (IPv6 addresses go in brackets: [::1]:53)";
            return std::nullopt;
        }
        h.addr = *a;
    }
    bool ranged = false;
    if (!parse_range(ports, h.first, h.last, ranged, why)) return std::nullopt;
    return h;
}

std::string Rule::host_text() const {
    return host.to_string() + ":" + range_text(host_first, host_last);
}

std::string Rule::guest_text() const {
    return guest.to_string() + ":" + range_text(guest_first, guest_last());
}

std::string Rule::spec() const {
    return std::string(to_string(proto)) + ":" + host_text() + "=" + guest_text();
}

bool Rule::overlaps(const Rule& o) const noexcept {
    if (proto != o.proto || host.v6 != o.host.v6) return false;
    if (host_last < o.host_first || o.host_last < host_first) return false;
    return host == o.host || host.is_wildcard() || o.host.is_wildcard();
}

std::optional<HostPort> parse_host_port(std::string_view text, bool empty_is_any) {
    std::string_view addr, port;
    if (!split_addr(text, addr, port)) return std::nullopt;
    HostPort hp;
    const auto p = parse_port(port);
    if (!p) return std::nullopt;
    hp.port = *p;
    if (addr.empty()) {
        // "8080": the default host address; ":8080": every address when the caller says so.
        const bool had_colon = text.find(':') != std::string_view::npos;
        hp.addr.v4 = had_colon && empty_is_any ? Ipv4Addr{} : Ipv4Addr::from_octets(127, 0, 0, 1);
        return hp;
    }
    auto a = parse_addr(addr);
    if (!a) return std::nullopt;
    hp.addr = *a;
    return hp;
}

}  // namespace slipway::portfwd
