// Upstream resolvers of the forwarder: `--dns-upstream ADDR[:PORT]` and the nameserver lines of
// resolv.conf(5).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slipway::dns {

inline constexpr std::uint16_t kDnsPort = 53;

struct Upstream {
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string text;  // canonical "ADDR:PORT" / "[V6]:PORT", for logs and stats

    [[nodiscard]] int family() const noexcept { return addr.ss_family; }
};

// "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:5353"; the port defaults to 53
// and must be 1..65535. nullopt for anything else (host names included: a resolver's own address
// cannot need resolving).
[[nodiscard]] std::optional<Upstream> parse_upstream(std::string_view text);

// The `nameserver` lines of a resolv.conf text, in order ('#' and ';' start comments). Addresses
// that do not parse, or IPv6 link-local ones with a zone (`fe80::1%eth0`, meaningless from
// another network namespace), are appended to `skipped` when it is given.
[[nodiscard]] std::vector<Upstream> parse_resolv_conf(std::string_view text,
                                                      std::vector<std::string>* skipped = nullptr);

}  // namespace slipway::dns
