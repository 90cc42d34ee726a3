// nat::EgressPolicy: port-list and rule syntax (every form and every error), rule matching,
// first-match-wins evaluation, the built-in cloud-metadata deny, alias ports, no allocation.
#include "slipway/nat/policy.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "support/alloc_guard.hpp"

namespace slipway::nat {
namespace {

constexpr Ipv4Addr ip(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return Ipv4Addr::from_octets(a, b, c, d);
}

PortSet ports(std::string_view text) {
    std::string error;
    auto p = PortSet::parse(text, error);
    EXPECT_TRUE(p.has_value()) << text << ": " << error;
    return p ? *p : PortSet{};
}

std::string port_error(std::string_view text) {
    std::string error;
    auto p = PortSet::parse(text, error);
    EXPECT_FALSE(p.has_value()) << "'" << text << "' parsed as " << p->to_string();
    if (!p) {
        EXPECT_EQ(p.error(), Errc::invalid_argument);
    }
    return error;
}

PolicyRule rule(std::string_view text, PolicyAction action = PolicyAction::deny) {
    std::string error;
    auto r = PolicyRule::parse(text, action, error);
    EXPECT_TRUE(r.has_value()) << text << ": " << error;
    return r ? *r : PolicyRule{};
}

std::string rule_error(std::string_view text) {
    std::string error;
    auto r = PolicyRule::parse(text, PolicyAction::deny, error);
    EXPECT_FALSE(r.has_value()) << "'" << text << "' parsed as " << r->text;
    if (!r) {
        EXPECT_EQ(r.error(), Errc::invalid_argument);
    }
    return error;
}

std::vector<PortRange> ranges_of(const PortSet& s) {
    return {s.ranges().begin(), s.ranges().end()};
}

// ---- PortSet ----------------------------------------------------------------------------------

TEST(PortSet, AllAndEmpty) {
    const PortSet all = PortSet::all();
    EXPECT_TRUE(all.is_all());
    EXPECT_EQ(all.to_string(), "all");
    EXPECT_TRUE(all.contains(0));
    EXPECT_TRUE(all.contains(1));
    EXPECT_TRUE(all.contains(65535));
    EXPECT_EQ(ranges_of(all), (std::vector<PortRange>{{0, 65535}}));

    const PortSet none;
    EXPECT_FALSE(none.is_all());
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(none.to_string(), "none");
    EXPECT_FALSE(none.contains(0));
    EXPECT_FALSE(none.contains(80));
    EXPECT_FALSE(none.contains(65535));
}

TEST(PortSet, ParsesSinglePort) {
    const PortSet s = ports("22");
    EXPECT_EQ(ranges_of(s), (std::vector<PortRange>{{22, 22}}));
    EXPECT_TRUE(s.contains(22));
    EXPECT_FALSE(s.contains(21));
    EXPECT_FALSE(s.contains(23));
    EXPECT_FALSE(s.contains(0));
    EXPECT_FALSE(s.is_all());
    EXPECT_EQ(s.to_string(), "22");
}

TEST(PortSet, ParsesListsAndRangesSortedAndMerged) {
    EXPECT_EQ(ranges_of(ports("80,443")), (std::vector<PortRange>{{80, 80}, {443, 443}}));
    EXPECT_EQ(ranges_of(ports("443,80")), (std::vector<PortRange>{{80, 80}, {443, 443}}));
    EXPECT_EQ(ranges_of(ports("8000-8100,22")), (std::vector<PortRange>{{22, 22}, {8000, 8100}}));
    EXPECT_EQ(ports("8000-8100,22").to_string(), "22,8000-8100");
    // Overlapping, contained, adjacent and duplicate items merge.
    EXPECT_EQ(ranges_of(ports("10-20,15-30")), (std::vector<PortRange>{{10, 30}}));
    EXPECT_EQ(ranges_of(ports("10-100,20-30")), (std::vector<PortRange>{{10, 100}}));
    EXPECT_EQ(ranges_of(ports("10-20,21-30")), (std::vector<PortRange>{{10, 30}}));
    EXPECT_EQ(ranges_of(ports("80,81,82")), (std::vector<PortRange>{{80, 82}}));
    EXPECT_EQ(ranges_of(ports("53,53")), (std::vector<PortRange>{{53, 53}}));
    EXPECT_EQ(ranges_of(ports("10-20,22-30")), (std::vector<PortRange>{{10, 20}, {22, 30}}));
    EXPECT_EQ(ranges_of(ports("65535,65534")), (std::vector<PortRange>{{65534, 65535}}));
    EXPECT_EQ(ranges_of(ports("1")), (std::vector<PortRange>{{1, 1}}));
    EXPECT_EQ(ranges_of(ports("7-7")), (std::vector<PortRange>{{7, 7}}));
}

TEST(PortSet, EveryValidPortIsAll) {
    EXPECT_TRUE(ports("1-65535").is_all());
    EXPECT_EQ(ports("1-65535"), PortSet::all());
    EXPECT_TRUE(ports("1-1000,1001-65535").is_all());
    EXPECT_TRUE(ports("all").is_all());
    EXPECT_FALSE(ports("2-65535").is_all());
    EXPECT_FALSE(ports("1-65534").is_all());
    EXPECT_EQ(ports("2-65535").to_string(), "2-65535");
}

TEST(PortSet, ContainsAgreesWithNaiveModel) {
    const PortSet s = ports("5,100-200,1000,65000-65535,300-300,201");
    for (std::uint32_t p = 0; p <= 65535; ++p) {
        const bool want = p == 5 || (p >= 100 && p <= 201) || p == 300 || p == 1000 || p >= 65000;
        ASSERT_EQ(s.contains(static_cast<std::uint16_t>(p)), want) << p;
    }
    EXPECT_EQ(s.to_string(), "5,100-201,300,1000,65000-65535");
}

TEST(PortSet, ToStringRoundTrips) {
    for (std::string_view text : {"22", "80,443", "1-2,4-5,7", "100-200,300", "all", "65535"}) {
        const PortSet a = ports(text);
        EXPECT_EQ(ports(a.to_string()), a) << text;
    }
}

TEST(PortSet, AcceptsExactlySixtyFourItems) {
    std::string list;
    for (int i = 0; i < 64; ++i)
        list += (i ? "," : "") + std::to_string(1000 + 2 * i);
    const PortSet s = ports(list);
    EXPECT_EQ(s.ranges().size(), 64u);
    EXPECT_TRUE(s.contains(1000));
    EXPECT_FALSE(s.contains(1001));
    EXPECT_TRUE(s.contains(1126));

    std::string too_many = list + ",5000";
    EXPECT_NE(port_error(too_many).find("too many"), std::string::npos);
    // The limit is on items written, not on ranges left after merging.
    std::string merged;
    for (int i = 0; i < 65; ++i)
        merged += (i ? "," : "") + std::to_string(1000 + i);
    EXPECT_NE(port_error(merged).find("at most 64"), std::string::npos);
}

TEST(PortSet, RejectsBadLists) {
    EXPECT_EQ(port_error("90-80"), "bad port range '90-80': start is after end");
    EXPECT_EQ(port_error(""), "empty port list");
    EXPECT_EQ(port_error("0"), "port 0 is not allowed (ports are 1..65535)");
    EXPECT_NE(port_error("0-10").find("port 0 is not allowed"), std::string::npos);
    EXPECT_EQ(port_error("65536"), "port '65536' out of range 1..65535");
    EXPECT_EQ(port_error("100000"), "port '100000' out of range 1..65535");
    EXPECT_EQ(port_error("99999999999999999999"),
              "port '99999999999999999999' out of range 1..65535");
    EXPECT_NE(port_error("1-70000").find("out of range"), std::string::npos);
    EXPECT_EQ(port_error("080"), "bad port '080': leading zeros are not allowed");
    EXPECT_EQ(port_error("http"), "bad port 'http'");
    EXPECT_EQ(port_error("+80"), "bad port '+80'");
    EXPECT_EQ(port_error("80,,443"), "empty item in port list '80,,443'");
    EXPECT_EQ(port_error("80,"), "empty item in port list '80,'");
    EXPECT_EQ(port_error(",80"), "empty item in port list ',80'");
    EXPECT_EQ(port_error("80, 443"), "whitespace is not allowed in port list '80, 443'");
    EXPECT_NE(port_error(" 80").find("whitespace"), std::string::npos);
    EXPECT_NE(port_error("80\t").find("whitespace"), std::string::npos);
    EXPECT_EQ(port_error("-80"), "bad port range '-80': missing port number");
    EXPECT_EQ(port_error("80-"), "bad port range '80-': missing port number");
    EXPECT_EQ(port_error("1-2-3"), "bad port range '1-2-3': bad port '2-3'");
    EXPECT_EQ(port_error("ALL"), "bad port 'ALL'");
    EXPECT_EQ(port_error("all,80"), "bad port 'all'");
}

// ---- PolicyRule parsing -----------------------------------------------------------------------

TEST(PolicyRuleParse, BareAddressIsHostAllProtocols) {
    const PolicyRule r = rule("203.0.113.7", PolicyAction::allow);
    EXPECT_EQ(r.action, PolicyAction::allow);
    EXPECT_EQ(r.net, ip(203, 0, 113, 7));
    EXPECT_EQ(r.prefix_len, 32);
    EXPECT_TRUE(r.ports.is_all());
    EXPECT_EQ(r.protos, kProtoTcp | kProtoUdp | kProtoIcmp);
    EXPECT_EQ(r.text, "allow 203.0.113.7/32");
}

TEST(PolicyRuleParse, Cidr) {
    const PolicyRule r = rule("10.0.0.0/8");
    EXPECT_EQ(r.action, PolicyAction::deny);
    EXPECT_EQ(r.net, ip(10, 0, 0, 0));
    EXPECT_EQ(r.prefix_len, 8);
    EXPECT_TRUE(r.ports.is_all());
    EXPECT_EQ(r.protos, kProtoAll);
    EXPECT_EQ(r.text, "deny 10.0.0.0/8");

    const PolicyRule any = rule("0.0.0.0/0");
    EXPECT_EQ(any.net, ip(0, 0, 0, 0));
    EXPECT_EQ(any.prefix_len, 0);
    EXPECT_EQ(any.text, "deny 0.0.0.0/0");

    EXPECT_EQ(rule("198.51.100.1/32").prefix_len, 32);
    EXPECT_EQ(rule("192.0.2.128/25").prefix_len, 25);
    EXPECT_EQ(rule("255.255.255.255/32").net, ip(255, 255, 255, 255));
}

TEST(PolicyRuleParse, HostPortProto) {
    const PolicyRule r = rule("203.0.113.7:22/tcp");
    EXPECT_EQ(r.net, ip(203, 0, 113, 7));
    EXPECT_EQ(r.prefix_len, 32);
    EXPECT_EQ(ranges_of(r.ports), (std::vector<PortRange>{{22, 22}}));
    EXPECT_EQ(r.protos, kProtoTcp);
    EXPECT_EQ(r.text, "deny 203.0.113.7/32:22/tcp");
}

TEST(PolicyRuleParse, CidrPortProto) {
    const PolicyRule r = rule("0.0.0.0/0:53/udp", PolicyAction::allow);
    EXPECT_EQ(r.net, ip(0, 0, 0, 0));
    EXPECT_EQ(r.prefix_len, 0);
    EXPECT_EQ(ranges_of(r.ports), (std::vector<PortRange>{{53, 53}}));
    EXPECT_EQ(r.protos, kProtoUdp);
    EXPECT_EQ(r.text, "allow 0.0.0.0/0:53/udp");
}

TEST(PolicyRuleParse, CidrProtoWithoutPorts) {
    const PolicyRule r = rule("192.0.2.0/24/icmp");
    EXPECT_EQ(r.net, ip(192, 0, 2, 0));
    EXPECT_EQ(r.prefix_len, 24);
    EXPECT_TRUE(r.ports.is_all());
    EXPECT_EQ(r.protos, kProtoIcmp);
    EXPECT_EQ(r.text, "deny 192.0.2.0/24/icmp");

    const PolicyRule t = rule("192.0.2.0/24/tcp");
    EXPECT_EQ(t.protos, kProtoTcp);
    EXPECT_TRUE(t.ports.is_all());
}

TEST(PolicyRuleParse, HostProtoWithoutPrefix) {
    // '/' followed by a letter is the protocol, not a prefix length.
    const PolicyRule r = rule("1.2.3.4/udp");
    EXPECT_EQ(r.net, ip(1, 2, 3, 4));
    EXPECT_EQ(r.prefix_len, 32);
    EXPECT_EQ(r.protos, kProtoUdp);
    EXPECT_TRUE(r.ports.is_all());
    EXPECT_EQ(r.text, "deny 1.2.3.4/32/udp");
}

TEST(PolicyRuleParse, PortsWithoutProtoMeanTcpAndUdp) {
    const PolicyRule r = rule("198.51.100.1/32:80-90");
    EXPECT_EQ(r.net, ip(198, 51, 100, 1));
    EXPECT_EQ(r.prefix_len, 32);
    EXPECT_EQ(ranges_of(r.ports), (std::vector<PortRange>{{80, 90}}));
    EXPECT_EQ(r.protos, kProtoTcp | kProtoUdp);
    EXPECT_EQ(r.text, "deny 198.51.100.1/32:80-90");

    const PolicyRule h = rule("1.2.3.4:1000-2000");
    EXPECT_EQ(h.prefix_len, 32);
    EXPECT_EQ(ranges_of(h.ports), (std::vector<PortRange>{{1000, 2000}}));
    EXPECT_EQ(h.protos, kProtoTcp | kProtoUdp);

    const PolicyRule list = rule("10.0.0.0/8:443,80/tcp");
    EXPECT_EQ(ranges_of(list.ports), (std::vector<PortRange>{{80, 80}, {443, 443}}));
    EXPECT_EQ(list.protos, kProtoTcp);
    EXPECT_EQ(list.text, "deny 10.0.0.0/8:80,443/tcp");
}

TEST(PolicyRuleParse, ExplicitAllPortsStillDropIcmp) {
    // The port list covers every port, but writing one still means "tcp and udp".
    const PolicyRule r = rule("10.0.0.0/8:1-65535");
    EXPECT_TRUE(r.ports.is_all());
    EXPECT_EQ(r.protos, kProtoTcp | kProtoUdp);
    EXPECT_EQ(r.text, "deny 10.0.0.0/8:all");
    EXPECT_FALSE(r.matches(ip(10, 1, 1, 1), 0, IpProto::icmp));
    EXPECT_TRUE(r.matches(ip(10, 1, 1, 1), 1, IpProto::udp));
    // With a protocol the ports add nothing, so the canonical text leaves them out.
    EXPECT_EQ(rule("10.0.0.0/8:1-65535/tcp").text, "deny 10.0.0.0/8/tcp");
}

TEST(PolicyRuleParse, ProtocolIsCaseInsensitive) {
    EXPECT_EQ(rule("1.2.3.4/TCP").protos, kProtoTcp);
    EXPECT_EQ(rule("1.2.3.4:53/UDP").protos, kProtoUdp);
    EXPECT_EQ(rule("1.2.3.0/24/ICMP").protos, kProtoIcmp);
    EXPECT_EQ(rule("1.2.3.4/Tcp").protos, kProtoTcp);
    EXPECT_EQ(rule("1.2.3.4/TCP").text, "deny 1.2.3.4/32/tcp");
}

TEST(PolicyRuleParse, CanonicalTextParsesBackToTheSameRule) {
    for (std::string_view text :
         {"10.0.0.0/8", "203.0.113.7:22/tcp", "0.0.0.0/0:53/udp", "192.0.2.0/24/icmp",
          "198.51.100.1/32:80-90", "1.2.3.4:1-65535", "1.2.3.4/TCP", "10.0.0.0/8:443,80,81"}) {
        const PolicyRule a = rule(text, PolicyAction::allow);
        const std::string_view body = std::string_view(a.text).substr(6);  // after "allow "
        const PolicyRule b = rule(body, PolicyAction::allow);
        EXPECT_EQ(b.text, a.text) << text;
        EXPECT_EQ(b.net, a.net) << text;
        EXPECT_EQ(b.prefix_len, a.prefix_len) << text;
        EXPECT_EQ(b.ports, a.ports) << text;
        EXPECT_EQ(b.protos, a.protos) << text;
    }
}

TEST(PolicyRuleParse, RejectsBadAddresses) {
    EXPECT_EQ(rule_error(""), "'': empty rule");
    EXPECT_EQ(rule_error("/8"), "'/8': missing IPv4 address");
    EXPECT_EQ(rule_error(":80"), "':80': missing IPv4 address");
    EXPECT_EQ(rule_error("10.0.0"), "'10.0.0': bad IPv4 address '10.0.0' (want a.b.c.d)");
    EXPECT_EQ(rule_error("10.0.0.0.0"),
              "'10.0.0.0.0': bad IPv4 address '10.0.0.0.0' (want a.b.c.d)");
    EXPECT_EQ(rule_error("256.0.0.1"), "'256.0.0.1': bad IPv4 address '256.0.0.1' (want a.b.c.d)");
    EXPECT_EQ(rule_error("10..0.1"), "'10..0.1': bad IPv4 address '10..0.1' (want a.b.c.d)");
    EXPECT_EQ(rule_error("example.com"),
              "'example.com': bad IPv4 address 'example.com' (want a.b.c.d)");
    EXPECT_EQ(rule_error("0x0a.0.0.1"),
              "'0x0a.0.0.1': bad IPv4 address '0x0a.0.0.1' (want a.b.c.d)");
    EXPECT_EQ(rule_error("167772161"), "'167772161': bad IPv4 address '167772161' (want a.b.c.d)");
    // Leading zeros are rejected: inet_aton reads 010 as octal 8, people mean decimal 10.
    EXPECT_EQ(rule_error("010.0.0.1"),
              "'010.0.0.1': bad IPv4 address '010.0.0.1': leading zeros are not allowed");
    EXPECT_NE(rule_error("10.0.0.01").find("leading zeros"), std::string::npos);
    EXPECT_NE(rule_error("10.00.0.1").find("leading zeros"), std::string::npos);
    EXPECT_NE(rule_error("::1").find("IPv6 rules are not supported"), std::string::npos);
    EXPECT_NE(rule_error("2001:db8::1").find("IPv6"), std::string::npos);
    EXPECT_NE(rule_error("fe80::1/64").find("IPv6"), std::string::npos);
}

TEST(PolicyRuleParse, RejectsBadPrefixes) {
    EXPECT_EQ(rule_error("10.0.0.0/33"), "'10.0.0.0/33': prefix length must be 0..32");
    EXPECT_EQ(rule_error("10.0.0.0/100"), "'10.0.0.0/100': prefix length must be 0..32");
    EXPECT_EQ(rule_error("10.0.0.0/4294967304"),
              "'10.0.0.0/4294967304': prefix length must be 0..32");
    EXPECT_EQ(rule_error("10.0.0.0/08"),
              "'10.0.0.0/08': bad prefix length '08': leading zeros are not allowed");
    EXPECT_EQ(rule_error("10.0.0.1/8"),
              "'10.0.0.1/8': host bits set beyond /8 (did you mean 10.0.0.0/8?)");
    EXPECT_EQ(rule_error("192.168.1.1/24:80"),
              "'192.168.1.1/24:80': host bits set beyond /24 (did you mean 192.168.1.0/24?)");
    EXPECT_NE(rule_error("0.0.0.1/0").find("host bits set"), std::string::npos);
    EXPECT_NE(rule_error("10.0.0.1/31").find("host bits set"), std::string::npos);
    EXPECT_EQ(rule_error("10.0.0.0/"), "'10.0.0.0/': missing prefix length or protocol after '/'");
    EXPECT_EQ(rule_error("10.0.0.0/-8"),
              "'10.0.0.0/-8': expected a prefix length or a protocol after '/'");
    EXPECT_EQ(rule_error("10.0.0.0//tcp"),
              "'10.0.0.0//tcp': expected a prefix length or a protocol after '/'");
}

TEST(PolicyRuleParse, RejectsBadPortsAndProtocols) {
    EXPECT_EQ(rule_error("10.0.0.0/8:"), "'10.0.0.0/8:': missing port list after ':'");
    EXPECT_EQ(rule_error("10.0.0.0/8:/tcp"), "'10.0.0.0/8:/tcp': missing port list after ':'");
    EXPECT_EQ(rule_error("1.2.3.4:90-80"),
              "'1.2.3.4:90-80': bad port range '90-80': start is after end");
    EXPECT_EQ(rule_error("1.2.3.4:0"), "'1.2.3.4:0': port 0 is not allowed (ports are 1..65535)");
    EXPECT_EQ(rule_error("1.2.3.4:65536"), "'1.2.3.4:65536': port '65536' out of range 1..65535");
    EXPECT_EQ(rule_error("1.2.3.4:80:90"), "'1.2.3.4:80:90': bad port '80:90'");
    EXPECT_EQ(rule_error("1.2.3.4:80,,90"), "'1.2.3.4:80,,90': empty item in port list '80,,90'");
    EXPECT_EQ(rule_error("1.2.3.4:22/icmp"), "'1.2.3.4:22/icmp': ports cannot be used with icmp");
    EXPECT_EQ(rule_error("1.2.3.4/sctp"),
              "'1.2.3.4/sctp': unknown protocol 'sctp' (want tcp, udp or icmp)");
    EXPECT_EQ(rule_error("1.2.3.4:53/tcpx"),
              "'1.2.3.4:53/tcpx': unknown protocol 'tcpx' (want tcp, udp or icmp)");
    EXPECT_EQ(rule_error("1.2.3.4/8/"),
              "'1.2.3.4/8/': host bits set beyond /8 (did you mean 1.0.0.0/8?)");
    EXPECT_EQ(rule_error("10.0.0.0/8/"), "'10.0.0.0/8/': missing protocol after '/'");
    EXPECT_EQ(rule_error("10.0.0.0/8:80/"), "'10.0.0.0/8:80/': missing protocol after '/'");
    EXPECT_EQ(rule_error("10.0.0.0/8/8"),
              "'10.0.0.0/8/8': expected a protocol (tcp, udp or icmp) after '/'");
    EXPECT_EQ(rule_error("1.2.3.4/tcp:80"),
              "'1.2.3.4/tcp:80': ports must come before the protocol (CIDR[:PORTS][/PROTO])");
    std::string many = "1.2.3.4:";
    for (int i = 0; i < 65; ++i)
        many += (i ? "," : "") + std::to_string(100 + 3 * i);
    EXPECT_NE(rule_error(many).find("too many items in port list (at most 64)"), std::string::npos);
}

TEST(PolicyRuleParse, RejectsTrailingJunkAndWhitespace) {
    EXPECT_EQ(rule_error("10.0.0.0/8x"),
              "'10.0.0.0/8x': unexpected 'x' (want CIDR[:PORTS][/PROTO])");
    EXPECT_EQ(rule_error("1.2.3.4/tcp/udp"),
              "'1.2.3.4/tcp/udp': unexpected '/udp' (want CIDR[:PORTS][/PROTO])");
    EXPECT_EQ(rule_error("1.2.3.4:80/tcp:443"),
              "'1.2.3.4:80/tcp:443': unexpected ':443' (want CIDR[:PORTS][/PROTO])");
    EXPECT_EQ(rule_error("1.2.3.4/32/tcp/"),
              "'1.2.3.4/32/tcp/': unexpected '/' (want CIDR[:PORTS][/PROTO])");
    EXPECT_EQ(rule_error(" 10.0.0.0/8"), "' 10.0.0.0/8': whitespace is not allowed");
    EXPECT_EQ(rule_error("10.0.0.0/8 "), "'10.0.0.0/8 ': whitespace is not allowed");
    EXPECT_EQ(rule_error("10.0.0.0/8: 80"), "'10.0.0.0/8: 80': whitespace is not allowed");
    // An embedded NUL (text from an API, not argv) is part of the address token, not an end.
    EXPECT_NE(rule_error(std::string_view("10.0.0.0\0/8", 11)).find("bad IPv4 address"),
              std::string::npos);
    EXPECT_NE(rule_error(std::string_view("10.0.0.0/8\0", 11)).find("unexpected"),
              std::string::npos);
}

TEST(PolicyRuleParse, ErrorLeavesNoStaleOutputOnSuccess) {
    std::string error = "previous";
    auto r = PolicyRule::parse("10.0.0.0/8", PolicyAction::deny, error);
    ASSERT_TRUE(r.has_value());
    auto bad = PolicyRule::parse("10.0.0.0/8:0", PolicyAction::deny, error);
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(error, "'10.0.0.0/8:0': port 0 is not allowed (ports are 1..65535)");
}

// ---- PolicyRule matching ----------------------------------------------------------------------

TEST(PolicyRuleMatch, PrefixBoundaries) {
    const PolicyRule r = rule("10.0.0.0/8");
    EXPECT_TRUE(r.matches(ip(10, 0, 0, 0), 80, IpProto::tcp));
    EXPECT_TRUE(r.matches(ip(10, 255, 255, 255), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(9, 255, 255, 255), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(11, 0, 0, 0), 80, IpProto::tcp));

    const PolicyRule r25 = rule("192.0.2.128/25");
    EXPECT_TRUE(r25.matches(ip(192, 0, 2, 128), 1, IpProto::udp));
    EXPECT_TRUE(r25.matches(ip(192, 0, 2, 255), 1, IpProto::udp));
    EXPECT_FALSE(r25.matches(ip(192, 0, 2, 127), 1, IpProto::udp));
}

TEST(PolicyRuleMatch, SlashZeroMatchesEverything) {
    const PolicyRule r = rule("0.0.0.0/0");
    for (Ipv4Addr a : {ip(0, 0, 0, 0), ip(1, 2, 3, 4), ip(127, 0, 0, 1), ip(169, 254, 169, 254),
                       ip(255, 255, 255, 255)}) {
        EXPECT_TRUE(r.matches(a, 443, IpProto::tcp)) << a.to_string();
        EXPECT_TRUE(r.matches(a, 53, IpProto::udp)) << a.to_string();
        EXPECT_TRUE(r.matches(a, 0, IpProto::icmp)) << a.to_string();
    }
}

TEST(PolicyRuleMatch, SlashThirtyTwoMatchesOneAddress) {
    const PolicyRule r = rule("198.51.100.1/32");
    EXPECT_TRUE(r.matches(ip(198, 51, 100, 1), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(198, 51, 100, 0), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(198, 51, 100, 2), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(199, 51, 100, 1), 80, IpProto::tcp));
    EXPECT_FALSE(r.matches(ip(198, 51, 100, 1 | 0x80), 80, IpProto::tcp));
}

TEST(PolicyRuleMatch, ProtocolMasks) {
    const Ipv4Addr a = ip(192, 0, 2, 1);
    const PolicyRule tcp = rule("192.0.2.0/24/tcp");
    EXPECT_TRUE(tcp.matches(a, 80, IpProto::tcp));
    EXPECT_FALSE(tcp.matches(a, 80, IpProto::udp));
    EXPECT_FALSE(tcp.matches(a, 0, IpProto::icmp));

    const PolicyRule udp = rule("192.0.2.0/24/udp");
    EXPECT_FALSE(udp.matches(a, 80, IpProto::tcp));
    EXPECT_TRUE(udp.matches(a, 80, IpProto::udp));
    EXPECT_FALSE(udp.matches(a, 0, IpProto::icmp));

    const PolicyRule icmp = rule("192.0.2.0/24/icmp");
    EXPECT_FALSE(icmp.matches(a, 80, IpProto::tcp));
    EXPECT_FALSE(icmp.matches(a, 80, IpProto::udp));
    EXPECT_TRUE(icmp.matches(a, 0, IpProto::icmp));

    const PolicyRule any = rule("192.0.2.0/24");
    EXPECT_TRUE(any.matches(a, 80, IpProto::tcp));
    EXPECT_TRUE(any.matches(a, 80, IpProto::udp));
    EXPECT_TRUE(any.matches(a, 0, IpProto::icmp));
    // Protocols the engine does not translate match no rule.
    EXPECT_FALSE(any.matches(a, 0, IpProto::esp));
    EXPECT_FALSE(any.matches(a, 0, IpProto::icmpv6));
}

TEST(PolicyRuleMatch, PortSets) {
    const Ipv4Addr a = ip(10, 1, 2, 3);
    const PolicyRule r = rule("10.0.0.0/8:22,80-90,443/tcp");
    EXPECT_TRUE(r.matches(a, 22, IpProto::tcp));
    EXPECT_TRUE(r.matches(a, 80, IpProto::tcp));
    EXPECT_TRUE(r.matches(a, 85, IpProto::tcp));
    EXPECT_TRUE(r.matches(a, 90, IpProto::tcp));
    EXPECT_TRUE(r.matches(a, 443, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 21, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 79, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 91, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 8080, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 0, IpProto::tcp));
    EXPECT_FALSE(r.matches(a, 443, IpProto::udp));  // /tcp only
    EXPECT_FALSE(r.matches(ip(11, 1, 2, 3), 443, IpProto::tcp));

    const PolicyRule both = rule("10.0.0.0/8:53");
    EXPECT_TRUE(both.matches(a, 53, IpProto::tcp));
    EXPECT_TRUE(both.matches(a, 53, IpProto::udp));
    EXPECT_FALSE(both.matches(a, 54, IpProto::udp));
}

TEST(PolicyRuleMatch, IcmpNeverMatchesAPortRule) {
    const Ipv4Addr a = ip(10, 1, 2, 3);
    EXPECT_FALSE(rule("10.0.0.0/8:80").matches(a, 0, IpProto::icmp));
    EXPECT_FALSE(rule("0.0.0.0/0:1-65535").matches(a, 0, IpProto::icmp));
    EXPECT_FALSE(rule("10.0.0.0/8:all").matches(a, 0, IpProto::icmp));
    // Even a hand-built rule that claims icmp with a port list cannot match ICMP.
    PolicyRule hand = rule("10.0.0.0/8:80");
    hand.protos = kProtoAll;
    EXPECT_FALSE(hand.matches(a, 0, IpProto::icmp));
    EXPECT_FALSE(hand.matches(a, 80, IpProto::icmp));
    EXPECT_TRUE(hand.matches(a, 80, IpProto::tcp));
}

// ---- EgressPolicy -----------------------------------------------------------------------------

EgressPolicy policy(std::vector<std::pair<PolicyAction, std::string_view>> specs) {
    std::vector<PolicyRule> rules;
    for (const auto& [action, text] : specs)
        rules.push_back(rule(text, action));
    return EgressPolicy(std::move(rules));
}

constexpr auto kAllow = PolicyAction::allow;
constexpr auto kDeny = PolicyAction::deny;
constexpr Ipv4Addr kMetadata = ip(169, 254, 169, 254);

TEST(EgressPolicy, EmptyPolicyAllowsAllButMetadata) {
    const EgressPolicy p;
    ASSERT_EQ(p.rules().size(), 1u);
    EXPECT_EQ(p.rules()[0].text, "deny 169.254.169.254/32 (built-in: cloud metadata)");
    EXPECT_EQ(p.rules()[0].action, PolicyAction::deny);
    EXPECT_EQ(p.rules()[0].net, kMetadata);
    EXPECT_EQ(p.rules()[0].prefix_len, 32);
    EXPECT_EQ(p.rules()[0].protos, kProtoAll);

    for (IpProto proto : {IpProto::tcp, IpProto::udp, IpProto::icmp}) {
        const std::uint16_t port = proto == IpProto::icmp ? 0 : 80;
        const PolicyDecision d = p.check(kMetadata, port, proto);
        EXPECT_FALSE(d.allowed);
        EXPECT_EQ(d.rule, 0);
        const PolicyDecision other = p.check(ip(93, 184, 216, 34), port, proto);
        EXPECT_TRUE(other.allowed);
        EXPECT_EQ(other.rule, -1);
    }
    // Only the one address: its neighbours are open.
    EXPECT_TRUE(p.check(ip(169, 254, 169, 253), 80, IpProto::tcp).allowed);
    EXPECT_TRUE(p.check(ip(169, 254, 169, 255), 80, IpProto::tcp).allowed);
}

TEST(EgressPolicy, BuiltinRuleComesAfterUserRules) {
    const EgressPolicy p = policy({{kDeny, "10.0.0.0/8"}, {kAllow, "192.0.2.0/24/tcp"}});
    ASSERT_EQ(p.rules().size(), 3u);
    EXPECT_EQ(p.rules()[0].text, "deny 10.0.0.0/8");
    EXPECT_EQ(p.rules()[1].text, "allow 192.0.2.0/24/tcp");
    EXPECT_EQ(p.rules()[2].text, kBuiltinMetadataRuleText);
    EXPECT_EQ(p.check(kMetadata, 80, IpProto::tcp).rule, 2);
}

TEST(EgressPolicy, FirstMatchWins) {
    // A narrow allow before a broad deny punches a hole in it ...
    const EgressPolicy hole = policy({{kAllow, "10.1.2.3:443/tcp"}, {kDeny, "10.0.0.0/8"}});
    PolicyDecision d = hole.check(ip(10, 1, 2, 3), 443, IpProto::tcp);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.rule, 0);
    d = hole.check(ip(10, 1, 2, 3), 80, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
    d = hole.check(ip(10, 1, 2, 3), 443, IpProto::udp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
    d = hole.check(ip(10, 9, 9, 9), 443, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
    d = hole.check(ip(11, 0, 0, 1), 443, IpProto::tcp);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.rule, -1);

    // ... and the same rules the other way round do not: the deny shadows the allow.
    const EgressPolicy shadow = policy({{kDeny, "10.0.0.0/8"}, {kAllow, "10.1.2.3:443/tcp"}});
    d = shadow.check(ip(10, 1, 2, 3), 443, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 0);
}

TEST(EgressPolicy, AllowListWithCatchAllDeny) {
    const EgressPolicy p =
        policy({{kAllow, "0.0.0.0/0:53/udp"}, {kAllow, "0.0.0.0/0:443/tcp"}, {kDeny, "0.0.0.0/0"}});
    EXPECT_EQ(p.check(ip(8, 8, 8, 8), 53, IpProto::udp).rule, 0);
    EXPECT_TRUE(p.check(ip(8, 8, 8, 8), 53, IpProto::udp).allowed);
    EXPECT_EQ(p.check(ip(1, 1, 1, 1), 443, IpProto::tcp).rule, 1);
    EXPECT_TRUE(p.check(ip(1, 1, 1, 1), 443, IpProto::tcp).allowed);
    EXPECT_FALSE(p.check(ip(1, 1, 1, 1), 53, IpProto::tcp).allowed);
    EXPECT_FALSE(p.check(ip(1, 1, 1, 1), 80, IpProto::tcp).allowed);
    const PolicyDecision ping = p.check(ip(1, 1, 1, 1), 0, IpProto::icmp);
    EXPECT_FALSE(ping.allowed);
    EXPECT_EQ(ping.rule, 2);  // the port rules cannot claim ICMP; the catch-all does
    // Metadata on 443/tcp is re-opened by the broader allow that comes first.
    EXPECT_TRUE(p.check(kMetadata, 443, IpProto::tcp).allowed);
    // Metadata on other ports is caught by the user's catch-all before the built-in.
    EXPECT_EQ(p.check(kMetadata, 80, IpProto::tcp).rule, 2);
}

TEST(EgressPolicy, MetadataReopenedByExplicitAllow) {
    const EgressPolicy p = policy({{kAllow, "169.254.169.254"}});
    for (IpProto proto : {IpProto::tcp, IpProto::udp, IpProto::icmp}) {
        const PolicyDecision d = p.check(kMetadata, proto == IpProto::icmp ? 0 : 80, proto);
        EXPECT_TRUE(d.allowed);
        EXPECT_EQ(d.rule, 0);
    }
}

TEST(EgressPolicy, MetadataReopenedOnlyWhereTheAllowReaches) {
    const EgressPolicy p = policy({{kAllow, "169.254.0.0/16:80/tcp"}});
    EXPECT_TRUE(p.check(kMetadata, 80, IpProto::tcp).allowed);
    PolicyDecision d = p.check(kMetadata, 8080, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
    d = p.check(kMetadata, 80, IpProto::udp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
    d = p.check(kMetadata, 0, IpProto::icmp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 1);
}

TEST(EgressPolicy, AllowAfterAMetadataDenyDoesNotReopen) {
    const EgressPolicy p = policy({{kDeny, "169.254.0.0/16"}, {kAllow, "169.254.169.254"}});
    const PolicyDecision d = p.check(kMetadata, 80, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 0);
}

TEST(EgressPolicy, AllowThatMissesMetadataLeavesItDenied) {
    const EgressPolicy p = policy({{kAllow, "10.0.0.0/8"}, {kAllow, "169.254.169.253"}});
    const PolicyDecision d = p.check(kMetadata, 80, IpProto::tcp);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, 2);
}

TEST(EgressPolicy, AliasPorts) {
    EgressPolicy p;
    EXPECT_TRUE(p.alias_ports().is_all());
    EXPECT_TRUE(p.alias_port_allowed(1));
    EXPECT_TRUE(p.alias_port_allowed(22));
    EXPECT_TRUE(p.alias_port_allowed(65535));

    p.set_alias_ports(ports("8080,3000-3010"));
    EXPECT_EQ(p.alias_ports().to_string(), "3000-3010,8080");
    EXPECT_TRUE(p.alias_port_allowed(8080));
    EXPECT_TRUE(p.alias_port_allowed(3000));
    EXPECT_TRUE(p.alias_port_allowed(3010));
    EXPECT_FALSE(p.alias_port_allowed(3011));
    EXPECT_FALSE(p.alias_port_allowed(22));
    EXPECT_FALSE(p.alias_port_allowed(8081));
    // The alias restriction is separate from the egress rules.
    EXPECT_TRUE(p.check(ip(192, 168, 127, 254), 22, IpProto::tcp).allowed);

    p.set_alias_ports(PortSet{});
    EXPECT_FALSE(p.alias_port_allowed(8080));
    EXPECT_EQ(p.alias_ports().to_string(), "none");

    p.set_alias_ports(PortSet::all());
    EXPECT_TRUE(p.alias_port_allowed(22));
}

TEST(EgressPolicy, CheckDoesNotAllocate) {
    const EgressPolicy p = policy({{kAllow, "10.1.2.3:443,8443,9000-9100/tcp"},
                                   {kDeny, "10.0.0.0/8"},
                                   {kAllow, "0.0.0.0/0:53/udp"},
                                   {kDeny, "192.0.2.0/24/icmp"}});
    std::size_t allocations = 0;
    int allowed = 0;
    {
        test::AllocGuard guard;
        for (std::uint32_t i = 0; i < 4096; ++i) {
            const Ipv4Addr a{0x0a000000u + i * 977u};
            const auto port = static_cast<std::uint16_t>(i * 31u);
            for (IpProto proto : {IpProto::tcp, IpProto::udp, IpProto::icmp})
                allowed += p.check(a, proto == IpProto::icmp ? 0 : port, proto).allowed ? 1 : 0;
            allowed += p.alias_port_allowed(port) ? 1 : 0;
        }
        allocations = guard.count();
    }
    EXPECT_EQ(allocations, 0u);
    EXPECT_GT(allowed, 0);
}

}  // namespace
}  // namespace slipway::nat
