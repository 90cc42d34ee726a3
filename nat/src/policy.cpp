// Egress policy: parsing of --allow/--deny rules and port lists, and the per-flow check.
#include "slipway/nat/policy.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slipway::nat {
namespace {

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string quoted(std::string_view s) {
    std::string out = "'";
    out += s;
    out += '\'';
    return out;
}

// A decimal number: digits only, no sign, no leading zeros (a lone "0" is fine), at most `max`.
// Length is capped before accumulating so the value cannot overflow.
std::optional<std::uint32_t> parse_decimal(std::string_view s, std::uint32_t max) noexcept {
    if (s.empty() || s.size() > 5) return std::nullopt;
    if (s.size() > 1 && s[0] == '0') return std::nullopt;
    std::uint32_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return std::nullopt;
        v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (v > max) return std::nullopt;
    return v;
}

// One port of a list: 1..65535. Writes a specific message on failure.
std::optional<std::uint16_t> parse_port(std::string_view s, std::string& error) {
    if (s.empty()) {
        error = "missing port number";
        return std::nullopt;
    }
    if (!std::all_of(s.begin(), s.end(), is_digit)) {
        error = "bad port " + quoted(s);
        return std::nullopt;
    }
    if (s.size() > 1 && s[0] == '0') {
        error = "bad port " + quoted(s) + ": leading zeros are not allowed";
        return std::nullopt;
    }
    const auto v = parse_decimal(s, 65535);
    if (!v) {
        error = "port " + quoted(s) + " out of range 1..65535";
        return std::nullopt;
    }
    if (*v == 0) {
        error = "port 0 is not allowed (ports are 1..65535)";
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(*v);
}

std::uint8_t proto_bit(IpProto p) noexcept {
    switch (p) {
        case IpProto::tcp:
            return kProtoTcp;
        case IpProto::udp:
            return kProtoUdp;
        case IpProto::icmp:
            return kProtoIcmp;
        default:
            return 0;
    }
}

std::optional<std::uint8_t> parse_proto(std::string_view s) noexcept {
    std::string_view lower[] = {"tcp", "udp", "icmp"};
    const std::uint8_t bits[] = {kProtoTcp, kProtoUdp, kProtoIcmp};
    for (std::size_t i = 0; i < 3; ++i) {
        if (s.size() != lower[i].size()) continue;
        bool same = true;
        for (std::size_t j = 0; j < s.size() && same; ++j) {
            const char c = is_alpha(s[j]) ? static_cast<char>(s[j] | 0x20) : s[j];
            same = c == lower[i][j];
        }
        if (same) return bits[i];
    }
    return std::nullopt;
}

// The rule text as parse() would accept it, minus the action: every field spelled out only when
// it differs from what its absence would mean.
std::string canonical_text(const PolicyRule& r) {
    std::string t{to_string(r.action)};
    t += ' ';
    t += r.net.to_string();
    t += '/';
    t += std::to_string(r.prefix_len);
    // Explicit PORTS (even "all") drop ICMP, so they must show whenever ICMP was dropped by them.
    const bool explicit_ports = !r.ports.is_all() || r.protos == (kProtoTcp | kProtoUdp);
    if (explicit_ports) {
        t += ':';
        t += r.ports.to_string();
    }
    switch (r.protos) {
        case kProtoTcp:
            t += "/tcp";
            break;
        case kProtoUdp:
            t += "/udp";
            break;
        case kProtoIcmp:
            t += "/icmp";
            break;
        default:
            break;  // kProtoAll, or tcp+udp implied by the ports
    }
    return t;
}

}  // namespace

// ---- PortSet ----------------------------------------------------------------------------------

PortSet PortSet::all() {
    PortSet s;
    s.ranges_.push_back(PortRange{0, 65535});
    return s;
}

Result<PortSet> PortSet::parse(std::string_view text, std::string& error) {
    if (text.empty()) {
        error = "empty port list";
        return fail(Errc::invalid_argument);
    }
    if (text == "all") return all();
    if (std::any_of(text.begin(), text.end(), is_space)) {
        error = "whitespace is not allowed in port list " + quoted(text);
        return fail(Errc::invalid_argument);
    }

    std::vector<PortRange> items;
    std::string_view rest = text;
    for (;;) {
        const std::size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (item.empty()) {
            error = "empty item in port list " + quoted(text);
            return fail(Errc::invalid_argument);
        }
        if (items.size() == kMaxItems) {
            error = "too many items in port list (at most " + std::to_string(kMaxItems) + ")";
            return fail(Errc::invalid_argument);
        }
        const std::size_t dash = item.find('-');
        PortRange r;
        if (dash == std::string_view::npos) {
            const auto p = parse_port(item, error);
            if (!p) return fail(Errc::invalid_argument);
            r = PortRange{*p, *p};
        } else {
            const auto lo = parse_port(item.substr(0, dash), error);
            if (!lo) {
                error = "bad port range " + quoted(item) + ": " + error;
                return fail(Errc::invalid_argument);
            }
            const auto hi = parse_port(item.substr(dash + 1), error);
            if (!hi) {
                error = "bad port range " + quoted(item) + ": " + error;
                return fail(Errc::invalid_argument);
            }
            if (*lo > *hi) {
                error = "bad port range " + quoted(item) + ": start is after end";
                return fail(Errc::invalid_argument);
            }
            r = PortRange{*lo, *hi};
        }
        items.push_back(r);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }

    std::sort(items.begin(), items.end(),
              [](const PortRange& a, const PortRange& b) { return a.lo < b.lo; });
    PortSet s;
    for (const PortRange& r : items) {
        // 32-bit arithmetic: hi + 1 must not wrap at 65535.
        if (!s.ranges_.empty() && std::uint32_t{r.lo} <= std::uint32_t{s.ranges_.back().hi} + 1) {
            s.ranges_.back().hi = std::max(s.ranges_.back().hi, r.hi);
        } else {
            s.ranges_.push_back(r);
        }
    }
    // Every valid port listed is "all": one canonical form, so is_all() and to_string() agree.
    if (s.ranges_.size() == 1 && s.ranges_[0].lo <= 1 && s.ranges_[0].hi == 65535) return all();
    return s;
}

bool PortSet::contains(std::uint16_t port) const noexcept {
    // First range starting after `port`; the one before it is the only candidate.
    const auto it =
        std::upper_bound(ranges_.begin(), ranges_.end(), port,
                         [](std::uint16_t p, const PortRange& r) noexcept { return p < r.lo; });
    return it != ranges_.begin() && port <= std::prev(it)->hi;
}

bool PortSet::is_all() const noexcept {
    return ranges_.size() == 1 && ranges_[0].lo == 0 && ranges_[0].hi == 65535;
}

std::string PortSet::to_string() const {
    if (is_all()) return "all";
    if (ranges_.empty()) return "none";
    std::string out;
    for (const PortRange& r : ranges_) {
        if (!out.empty()) out += ',';
        out += std::to_string(r.lo);
        if (r.hi != r.lo) {
            out += '-';
            out += std::to_string(r.hi);
        }
    }
    return out;
}

// ---- PolicyRule -------------------------------------------------------------------------------

Result<PolicyRule> PolicyRule::parse(std::string_view text, PolicyAction action,
                                     std::string& error) {
    const auto bad = [&](const std::string& what) {
        error = quoted(text) + ": " + what;
        return fail(Errc::invalid_argument);
    };
    if (text.empty()) return bad("empty rule");
    if (std::any_of(text.begin(), text.end(), is_space)) return bad("whitespace is not allowed");

    PolicyRule r;
    r.action = action;

    // CIDR address: everything up to the first ':' or '/'.
    const std::size_t addr_end = text.find_first_of(":/");
    const std::string_view addr = text.substr(0, addr_end);
    // Two colons cannot be CIDR:PORTS; it is an IPv6 address, worth naming as such.
    const bool looks_ipv6 = std::count(text.begin(), text.end(), ':') >= 2;
    const auto bad_addr = [&] {
        if (looks_ipv6) return bad("IPv6 rules are not supported yet; expected an IPv4 address");
        if (addr.empty()) return bad("missing IPv4 address");
        return bad("bad IPv4 address " + quoted(addr) + " (want a.b.c.d)");
    };
    if (addr.empty()) return bad_addr();
    if (!std::all_of(addr.begin(), addr.end(), [](char c) { return is_digit(c) || c == '.'; }))
        return bad_addr();
    // Ipv4Addr::parse (inet_pton) wants exactly four decimal octets; it also rejects leading
    // zeros on glibc, but we check ourselves so the rule does not depend on the C library.
    for (std::size_t i = 0; i < addr.size(); ++i) {
        const bool octet_start = i == 0 || addr[i - 1] == '.';
        if (octet_start && addr[i] == '0' && i + 1 < addr.size() && is_digit(addr[i + 1]))
            return bad("bad IPv4 address " + quoted(addr) + ": leading zeros are not allowed");
    }
    const auto ip = Ipv4Addr::parse(addr);
    if (!ip) return bad_addr();
    r.net = *ip;

    std::string_view rest = text.substr(addr.size());
    bool have_prefix = false;
    bool have_ports = false;
    bool have_proto = false;

    // '/' + digit: prefix length. ('/' + letter is the protocol, handled below.)
    if (rest.size() >= 2 && rest[0] == '/' && is_digit(rest[1])) {
        std::size_t n = 1;
        while (n < rest.size() && is_digit(rest[n]))
            ++n;
        const std::string_view len = rest.substr(1, n - 1);
        if (len.size() > 1 && len[0] == '0')
            return bad("bad prefix length " + quoted(len) + ": leading zeros are not allowed");
        const auto v = parse_decimal(len, 32);
        if (!v) return bad("prefix length must be 0..32");
        r.prefix_len = static_cast<std::uint8_t>(*v);
        have_prefix = true;
        rest.remove_prefix(n);
        if (r.net.v & ~Ipv4Addr::prefix_mask(r.prefix_len)) {
            const Ipv4Addr masked{r.net.v & Ipv4Addr::prefix_mask(r.prefix_len)};
            return bad("host bits set beyond /" + std::to_string(r.prefix_len) + " (did you mean " +
                       masked.to_string() + "/" + std::to_string(r.prefix_len) + "?)");
        }
    }

    // ':' PORTS, up to the next '/'.
    if (!rest.empty() && rest[0] == ':') {
        const std::size_t end = rest.find('/');
        const std::string_view list = rest.substr(1, end == std::string_view::npos ? end : end - 1);
        if (list.empty()) return bad("missing port list after ':'");
        std::string port_error;
        auto ports = PortSet::parse(list, port_error);
        if (!ports) return bad(port_error);
        r.ports = std::move(*ports);
        have_ports = true;
        rest.remove_prefix(1 + list.size());
    }

    // '/' PROTO: the rest of the rule.
    if (!rest.empty() && rest[0] == '/') {
        rest.remove_prefix(1);
        if (rest.empty()) {
            return bad(have_prefix || have_ports ? "missing protocol after '/'"
                                                 : "missing prefix length or protocol after '/'");
        }
        if (!is_alpha(rest[0])) {
            return bad(have_prefix || have_ports
                           ? "expected a protocol (tcp, udp or icmp) after '/'"
                           : "expected a prefix length or a protocol after '/'");
        }
        std::size_t n = 0;
        while (n < rest.size() && rest[n] != ':' && rest[n] != '/')
            ++n;
        const std::string_view name = rest.substr(0, n);
        const auto bit = parse_proto(name);
        if (!bit) return bad("unknown protocol " + quoted(name) + " (want tcp, udp or icmp)");
        r.protos = *bit;
        have_proto = true;
        rest.remove_prefix(n);
    }

    if (!rest.empty()) {
        if (have_proto && rest[0] == ':' && !have_ports)
            return bad("ports must come before the protocol (CIDR[:PORTS][/PROTO])");
        return bad("unexpected " + quoted(rest) + " (want CIDR[:PORTS][/PROTO])");
    }

    if (!have_proto) r.protos = have_ports ? (kProtoTcp | kProtoUdp) : kProtoAll;
    // ICMP has no ports; a port rule over ICMP could never match, so it is a mistake to report.
    if (have_ports && r.protos == kProtoIcmp) return bad("ports cannot be used with icmp");

    r.text = canonical_text(r);
    return r;
}

bool PolicyRule::matches(Ipv4Addr dst, std::uint16_t port, IpProto proto) const noexcept {
    if ((protos & proto_bit(proto)) == 0) return false;
    if (!dst.in_prefix(net, prefix_len)) return false;
    // ICMP carries no port: only a rule without a port restriction can speak for it.
    if (proto == IpProto::icmp) return ports.is_all();
    return ports.contains(port);
}

// ---- EgressPolicy -----------------------------------------------------------------------------

EgressPolicy::EgressPolicy(std::vector<PolicyRule> rules) : rules_(std::move(rules)) {
    PolicyRule metadata;
    metadata.action = PolicyAction::deny;
    metadata.net = kCloudMetadataAddr;
    metadata.prefix_len = 32;
    metadata.ports = PortSet::all();
    metadata.protos = kProtoAll;
    metadata.text = std::string(kBuiltinMetadataRuleText);
    rules_.push_back(std::move(metadata));
}

PolicyDecision EgressPolicy::check(Ipv4Addr dst, std::uint16_t port, IpProto proto) const noexcept {
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        const PolicyRule& r = rules_[i];
        if (r.matches(dst, port, proto))
            return PolicyDecision{r.action == PolicyAction::allow, static_cast<int>(i)};
    }
    return PolicyDecision{};
}

void EgressPolicy::set_alias_ports(PortSet p) {
    alias_ports_ = std::move(p);
}

bool EgressPolicy::alias_port_allowed(std::uint16_t port) const noexcept {
    return alias_ports_.contains(port);
}

}  // namespace slipway::nat
