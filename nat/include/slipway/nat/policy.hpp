// The NAT engine's egress policy: which destinations a guest may open new flows to.
//
// Theory of operation
// -------------------
// A guest behind slipway reaches the world through host sockets, so everything the host can reach
// the guest can reach too — including addresses the host itself trusts, such as the cloud
// metadata service at 169.254.169.254 (which hands out instance credentials) or a private
// network the VM should not see. The egress policy is the one place that says no. It is a list of
// rules given on the command line (`--allow RULE`, `--deny RULE`), each
//
//     CIDR[:PORTS][/PROTO]        e.g. 10.0.0.0/8   203.0.113.7:22/tcp   0.0.0.0/0:53/udp
//
// evaluated first-match-wins in command-line order, like a firewall chain, so a narrow allow put
// before a broad deny punches a hole in it. After the user's rules comes one built-in rule,
// deny 169.254.169.254/32 for every protocol, and after that the default allow: metadata is
// closed unless the user explicitly (or through a broader allow placed first) opens it, and
// everything else is open unless the user closes it. The built-in rule is an ordinary entry at the
// end of rules(), so logs and the API show it and a decision can name it by index.
//
// A rule's protocol set is a bit mask (tcp, udp, icmp). No /PROTO means every protocol, but a
// rule with PORTS means tcp and udp only: ICMP has no ports, so a port rule can never match it
// (and PORTS with /icmp is rejected rather than silently meaning nothing). Protocols other than
// tcp, udp and icmp match no rule; the engine does not translate them at all.
//
// The policy is checked once per new flow, not per packet: the flow table remembers the verdict.
// check() is a linear scan over a handful of rules (a rule is a prefix compare, a bit test and,
// for port rules, a binary search over at most 64 sorted ranges); it never allocates, throws or
// blocks. Parsing happens at start-up and may allocate; it reports errors as text for the CLI.
//
// The same PortSet type restricts which host-loopback ports the host-alias address (.254, DESIGN
// §2) may reach (`--host-alias-ports LIST`), since "everything on the host's 127.0.0.1" is often
// more than a guest should see.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"
#include "slipway/nat/flow_table.hpp"

namespace slipway::nat {

// An inclusive range of TCP/UDP ports.
struct PortRange {
    std::uint16_t lo = 0, hi = 65535;
    friend constexpr bool operator==(const PortRange&, const PortRange&) = default;
};

// A set of ports: sorted, merged ranges. A default-constructed set is empty (no port at all);
// PortSet::all() is every port, 0 included (ranges() is then the single range 0-65535).
class PortSet {
  public:
    static constexpr std::size_t kMaxItems = 64;

    static PortSet all();
    // "22", "80,443", "8000-8100,22"; no whitespace; ports 1..65535 (0 rejected), lo <= hi, at
    // most kMaxItems comma-separated items, no leading zeros. Overlapping and adjacent items are
    // merged. The whole text "all" is accepted too (what to_string() prints for all()), and a list
    // that covers 1-65535 becomes all(). On failure `error` gets a one-line description for the
    // CLI, e.g. "bad port range '90-80'", and the result is Errc::invalid_argument.
    static Result<PortSet> parse(std::string_view text, std::string& error);

    [[nodiscard]] bool contains(std::uint16_t port) const noexcept;
    [[nodiscard]] bool is_all() const noexcept;
    [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
    // Canonical form: "all" for all(), "none" for the empty set, else "22,80-90,443".
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] std::span<const PortRange> ranges() const noexcept { return ranges_; }

    friend bool operator==(const PortSet&, const PortSet&) = default;

  private:
    std::vector<PortRange> ranges_;  // sorted by lo, disjoint, never adjacent
};

enum class PolicyAction : std::uint8_t { allow, deny };

[[nodiscard]] constexpr std::string_view to_string(PolicyAction a) noexcept {
    return a == PolicyAction::allow ? "allow" : "deny";
}

// Bits of PolicyRule::protos.
inline constexpr std::uint8_t kProtoTcp = 1;
inline constexpr std::uint8_t kProtoUdp = 2;
inline constexpr std::uint8_t kProtoIcmp = 4;
inline constexpr std::uint8_t kProtoAll = kProtoTcp | kProtoUdp | kProtoIcmp;

// One --allow/--deny rule: CIDR[:PORTS][/PROTO]
//   CIDR  = a.b.c.d or a.b.c.d/len (len 0..32, no leading zeros); host bits beyond len must be
//           zero ("10.0.0.1/8" is an error, not silently 10.0.0.0/8). Leading zeros in an
//           octet are rejected (some tools read 010 as octal, others as decimal).
//   PORTS = a PortSet list (10.0.0.0/8:80,443 or 1.2.3.4:1000-2000)
//   PROTO = tcp | udp | icmp, case-insensitive
// No PROTO means tcp, udp and icmp — or, with PORTS, tcp and udp. PORTS with /icmp is an error.
struct PolicyRule {
    PolicyAction action = PolicyAction::deny;
    Ipv4Addr net;
    std::uint8_t prefix_len = 32;    // 0..32; parse() guarantees it, matches() relies on it
    PortSet ports = PortSet::all();  // all() when no PORTS were given
    std::uint8_t protos = 0;         // kProtoTcp | kProtoUdp | kProtoIcmp
    // Canonical text for logs and the API: "deny 10.0.0.0/8:80,443/tcp". Parsing it again (minus
    // the action word) gives the same rule.
    std::string text;

    // On failure `error` gets "'<text>': <what is wrong>" (the caller prefixes the flag name) and
    // the result is Errc::invalid_argument.
    static Result<PolicyRule> parse(std::string_view text, PolicyAction action, std::string& error);
    // Whether a new flow to dst:port over proto falls under this rule. For ICMP pass port 0; a
    // rule with PORTS never matches ICMP.
    [[nodiscard]] bool matches(Ipv4Addr dst, std::uint16_t port, IpProto proto) const noexcept;
};

// rule: index into EgressPolicy::rules() of the rule that decided, -1 = the default allow.
struct PolicyDecision {
    bool allowed = true;
    int rule = -1;
};

// The cloud metadata address that the built-in rule denies (AWS, GCP, Azure, OpenStack, ...).
inline constexpr Ipv4Addr kCloudMetadataAddr = Ipv4Addr::from_octets(169, 254, 169, 254);
inline constexpr std::string_view kBuiltinMetadataRuleText =
    "deny 169.254.169.254/32 (built-in: cloud metadata)";

class EgressPolicy {
  public:
    // `rules` in command-line order (first match wins); the built-in metadata deny is appended
    // (it is rules().back()); then the default allow.
    explicit EgressPolicy(std::vector<PolicyRule> rules = {});

    // Evaluated once per new flow (not per packet): linear over rules, no allocation.
    [[nodiscard]] PolicyDecision check(Ipv4Addr dst, std::uint16_t port,
                                       IpProto proto) const noexcept;
    [[nodiscard]] std::span<const PolicyRule> rules() const noexcept { return rules_; }

    // Host-loopback alias port restriction (--host-alias-ports LIST): default all. An empty set
    // closes every port.
    void set_alias_ports(PortSet p);
    [[nodiscard]] bool alias_port_allowed(std::uint16_t port) const noexcept;
    [[nodiscard]] const PortSet& alias_ports() const noexcept { return alias_ports_; }

    // The whole decision for a new flow `key` (as the guest addressed it): the alias port
    // restriction when it goes to `host_alias` (TCP and UDP), then check().
    [[nodiscard]] bool permits(const FlowKey& key,
                               std::optional<Ipv4Addr> host_alias) const noexcept {
        if (host_alias && key.remote_ip == *host_alias && key.proto != IpProto::icmp &&
            !alias_port_allowed(key.remote_port))
            return false;
        return check(key.remote_ip, key.proto == IpProto::icmp ? 0 : key.remote_port, key.proto)
            .allowed;
    }

  private:
    std::vector<PolicyRule> rules_;
    PortSet alias_ports_ = PortSet::all();
};

}  // namespace slipway::nat
