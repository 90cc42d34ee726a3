// Parsing of upstream resolver addresses (see upstream.hpp).
#include "slipway/dns/upstream.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace slipway::dns {

namespace {

std::optional<std::uint16_t> parse_port(std::string_view s) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(v);
}

std::string v6_text(const in6_addr& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &a, buf, sizeof buf);
    return buf;
}

}  // namespace

std::optional<Upstream> parse_upstream(std::string_view text) {
    std::string_view host = text;
    std::uint16_t port = kDnsPort;
    bool bracketed = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = text.substr(1, close - 1);
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            const auto p = parse_port(rest.substr(1));
            if (!p) return std::nullopt;
            port = *p;
        }
        bracketed = true;
    } else if (const auto colon = text.find(':');
               colon != std::string_view::npos &&
               text.find(':', colon + 1) == std::string_view::npos) {
        // Exactly one colon: IPv4 with a port. More than one: a bare IPv6 address.
        host = text.substr(0, colon);
        const auto p = parse_port(text.substr(colon + 1));
        if (!p) return std::nullopt;
        port = *p;
    }
    if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return std::nullopt;
    char buf[INET6_ADDRSTRLEN] = {};
    std::memcpy(buf, host.data(), host.size());
    Upstream u;
    in_addr a4{};
    in6_addr a6{};
    if (!bracketed && ::inet_pton(AF_INET, buf, &a4) == 1) {
        auto* sa = reinterpret_cast<sockaddr_in*>(&u.addr);
        sa->sin_family = AF_INET;
        sa->sin_port = htons(port);
        sa->sin_addr = a4;
        u.addr_len = sizeof(sockaddr_in);
        char out[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &a4, out, sizeof out);
        u.text = std::string(out) + ":" + std::to_string(port);
        return u;
    }
    if (::inet_pton(AF_INET6, buf, &a6) == 1) {
        auto* sa = reinterpret_cast<sockaddr_in6*>(&u.addr);
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(port);
        sa->sin6_addr = a6;
        u.addr_len = sizeof(sockaddr_in6);
        u.text = "[" + v6_text(a6) + "]:" + std::to_string(port);
        return u;
    }
    return std::nullopt;
}

std::vector<Upstream> parse_resolv_conf(std::string_view text, std::vector<std::string>* skipped) {
    std::vector<Upstream> out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (const auto c = line.find_first_of("#;"); c != std::string_view::npos)
            line = line.substr(0, c);
        const auto word = [&line]() -> std::string_view {
            const auto b = line.find_first_not_of(" \t\r");
            if (b == std::string_view::npos) return line = {};
            const auto e = line.find_first_of(" \t\r", b);
            const std::string_view w = line.substr(b, e == std::string_view::npos ? e : e - b);
            line = e == std::string_view::npos ? std::string_view{} : line.substr(e);
            return w;
        };
        if (word() != "nameserver") continue;
        const std::string_view addr = word();
        if (addr.empty()) continue;
        // resolv.conf has no port syntax: an address with one colon is not IPv4:port here.
        std::optional<Upstream> u;
        if (addr.find('%') == std::string_view::npos) {
            u = addr.find(':') == std::string_view::npos
                    ? parse_upstream(addr)
                    : parse_upstream("[" + std::string(addr) + "]");
        }
        if (u) {
            out.push_back(std::move(*u));
        } else if (skipped != nullptr) {
            skipped->emplace_back(addr);
        }
    }
    return out;
}

}  // namespace slipway::dns
