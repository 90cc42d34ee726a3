// libFuzzer target: port forwarding rules' text form (portfwd/include/slipway/portfwd/rule.hpp).
//
// Input: a split byte, then text. The text is parsed whole as a rule and as a host:port (both
// ways of reading an empty address), and again as two rules, split where the first byte says.
// Invariants (trap on violation): no crash or sanitizer report; a refusal says why; a parsed rule
// is within its documented bounds, its spec() parses to an equal rule (protocol, host address,
// host and guest ranges, guest address) and is a fixed point of parse-then-spec(); overlaps() is
// reflexive and symmetric; parse_host_port gives a port of 1-65535 and, when it parses, a rule
// made from its host text parses back to the same address and port.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "slipway/portfwd/rule.hpp"

namespace {

using namespace slipway;
using namespace slipway::portfwd;
using slipway::fuzz::check;

bool same(const Rule& a, const Rule& b) {
    return a.proto == b.proto && a.host == b.host && a.host_first == b.host_first &&
           a.host_last == b.host_last && a.guest == b.guest && a.guest_first == b.guest_first;
}

// Parses `text`; checks a parsed rule round-trips through spec(). nullopt when it does not parse.
std::optional<Rule> parse_checked(std::string_view text) {
    std::string why;
    auto r = Rule::parse(text, why);
    if (!r) {
        check(!why.empty());
        check(r.error() == Errc::invalid_argument);
        return std::nullopt;
    }
    const Rule& rule = *r;
    check(rule.host_first >= 1 && rule.host_first <= rule.host_last);
    check(rule.ports() >= 1 && rule.ports() <= kMaxRangePorts);
    check(rule.guest_first >= 1);
    check(std::uint32_t{rule.guest_first} + rule.ports() - 1 <= 65535);
    check(rule.guest_last() >= rule.guest_first);
    check(!rule.guest.is_unspecified() && !rule.guest.is_loopback() && !rule.guest.is_multicast() &&
          !rule.guest.is_broadcast());
    check(rule.guest_port_for(rule.host_last) == rule.guest_last());

    const std::string spec = rule.spec();
    std::string why2;
    auto again = Rule::parse(spec, why2);
    check(again.has_value());
    check(same(rule, *again));
    check(again->spec() == spec);
    check(rule.overlaps(rule));
    return rule;
}

void check_host_port(std::string_view text) {
    for (const bool any : {false, true}) {
        const auto hp = parse_host_port(text, any);
        if (!hp) continue;
        check(hp->port >= 1);
        // Its canonical text as a rule's host side parses back to the same address and port.
        const std::string spec = hp->addr.to_string() + ":" + std::to_string(hp->port) +
                                 "=192.168.127.2:" + std::to_string(hp->port);
        std::string why;
        auto r = Rule::parse(spec, why);
        check(r.has_value());
        check(r->host == hp->addr && r->host_first == hp->port && r->host_last == hp->port);
        const auto back =
            parse_host_port(hp->addr.to_string() + ":" + std::to_string(hp->port), any);
        check(back && back->addr == hp->addr && back->port == hp->port);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 4096) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

    const auto whole = parse_checked(text);
    check_host_port(text);

    const std::size_t at = text.empty() ? 0 : data[0] % (text.size() + 1);
    const auto a = parse_checked(text.substr(0, at));
    const auto b = parse_checked(text.substr(at));
    check_host_port(text.substr(0, at));
    check_host_port(text.substr(at));
    if (a && b) check(a->overlaps(*b) == b->overlaps(*a));
    if (whole && a) check(whole->overlaps(*a) == a->overlaps(*whole));
    if (whole && b) check(whole->overlaps(*b) == b->overlaps(*whole));
    return 0;
}
