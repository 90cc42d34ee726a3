// portfwd::Rule: the text form [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END]
// (defaults, IPv6 host addresses in brackets, IPv4-mapped addresses as IPv4, ranges mapped port by
// port, the guest range's end optional), every refusal with its reason, the canonical text and
// its round trip, overlap between rules, HostAddr helpers and parse_host_port() (gvproxy's
// "local" field).
#include "slipway/portfwd/rule.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace slipway::portfwd {
namespace {

constexpr Ipv4Addr kGuest = Ipv4Addr::from_octets(192, 168, 127, 2);
constexpr Ipv4Addr kLoop4 = Ipv4Addr::from_octets(127, 0, 0, 1);

Rule must_parse(const std::string& text) {
    std::string why;
    auto r = Rule::parse(text, why);
    EXPECT_TRUE(r.has_value()) << "'" << text << "' refused: " << why;
    return r ? *r : Rule{};
}

// Parses `text`, expecting a refusal whose reason mentions `needle`.
void expect_refused(const std::string& text, const std::string& needle) {
    std::string why;
    auto r = Rule::parse(text, why);
    ASSERT_FALSE(r.has_value()) << "'" << text << "' accepted as " << r->spec();
    EXPECT_EQ(r.error(), Errc::invalid_argument) << text;
    EXPECT_FALSE(why.empty()) << "no reason given for '" << text << "'";
    EXPECT_NE(why.find(needle), std::string::npos)
        << "reason for '" << text << "' is '" << why << "', expected it to mention '" << needle
        << "'";
}

Ipv6Addr v6(const char* text) {
    auto a = Ipv6Addr::parse(text);
    EXPECT_TRUE(a.has_value()) << text;
    return a.value_or(Ipv6Addr{});
}

// ---- good specs -------------------------------------------------------------------------------

TEST(PortfwdRule, DefaultsAreTcpAndHostLoopback) {
    const Rule r = must_parse("8080=192.168.127.2:80");
    EXPECT_EQ(r.proto, Proto::tcp);
    EXPECT_FALSE(r.host.v6);
    EXPECT_EQ(r.host.v4, kLoop4);
    EXPECT_EQ(r.host_first, 8080);
    EXPECT_EQ(r.host_last, 8080);
    EXPECT_EQ(r.guest, kGuest);
    EXPECT_EQ(r.guest_first, 80);
    EXPECT_EQ(r.guest_last(), 80);
    EXPECT_EQ(r.ports(), 1u);
    EXPECT_EQ(r.guest_port_for(8080), 80);
    EXPECT_EQ(r.spec(), "tcp:127.0.0.1:8080=192.168.127.2:80");
    EXPECT_EQ(r.host_text(), "127.0.0.1:8080");
    EXPECT_EQ(r.guest_text(), "192.168.127.2:80");
}

TEST(PortfwdRule, ExplicitProtocolAndHostAddress) {
    const Rule t = must_parse("tcp:10.1.2.3:2222=192.168.127.2:22");
    EXPECT_EQ(t.proto, Proto::tcp);
    EXPECT_EQ(t.host.v4, Ipv4Addr::from_octets(10, 1, 2, 3));
    EXPECT_EQ(t.spec(), "tcp:10.1.2.3:2222=192.168.127.2:22");

    const Rule u = must_parse("udp:0.0.0.0:5353=192.168.127.9:53");
    EXPECT_EQ(u.proto, Proto::udp);
    EXPECT_FALSE(u.host.v6);
    EXPECT_TRUE(u.host.is_wildcard());
    EXPECT_EQ(u.guest, Ipv4Addr::from_octets(192, 168, 127, 9));
    EXPECT_EQ(u.spec(), "udp:0.0.0.0:5353=192.168.127.9:53");

    // udp: without a host address: still the loopback default.
    const Rule d = must_parse("udp:5353=192.168.127.2:53");
    EXPECT_EQ(d.proto, Proto::udp);
    EXPECT_EQ(d.host.v4, kLoop4);
    EXPECT_EQ(to_string(Proto::tcp), "tcp");
    EXPECT_EQ(to_string(Proto::udp), "udp");
}

TEST(PortfwdRule, BracketedIpv6HostAddresses) {
    const Rule lo = must_parse("[::1]:8080=192.168.127.2:80");
    EXPECT_TRUE(lo.host.v6);
    EXPECT_EQ(lo.host.v6addr, v6("::1"));
    EXPECT_TRUE(lo.host.is_loopback());
    EXPECT_FALSE(lo.host.is_wildcard());
    EXPECT_EQ(lo.host_text(), "[::1]:8080");
    EXPECT_EQ(lo.spec(), "tcp:[::1]:8080=192.168.127.2:80");

    const Rule any = must_parse("udp:[::]:8000-8009=192.168.127.2:8000");
    EXPECT_TRUE(any.host.v6);
    EXPECT_TRUE(any.host.is_wildcard());
    EXPECT_FALSE(any.host.is_loopback());
    EXPECT_EQ(any.host_text(), "[::]:8000-8009");
    EXPECT_EQ(any.spec(), "udp:[::]:8000-8009=192.168.127.2:8000-8009");

    const Rule doc = must_parse("[2001:db8::7]:443=192.168.127.2:8443");
    EXPECT_TRUE(doc.host.v6);
    EXPECT_EQ(doc.host.v6addr, v6("2001:db8::7"));
    EXPECT_EQ(doc.host.to_string(), "[2001:db8::7]");
}

TEST(PortfwdRule, Ipv4MappedIpv6BecomesIpv4) {
    const Rule r = must_parse("[::ffff:127.0.0.1]:8080=192.168.127.2:80");
    EXPECT_FALSE(r.host.v6) << "the kernel treats a v4-mapped address as its IPv4 address";
    EXPECT_EQ(r.host.v4, kLoop4);
    EXPECT_EQ(r.spec(), "tcp:127.0.0.1:8080=192.168.127.2:80");
    const Rule w = must_parse("[::ffff:0.0.0.0]:8080=192.168.127.2:80");
    EXPECT_FALSE(w.host.v6);
    EXPECT_TRUE(w.host.is_wildcard());
    EXPECT_TRUE(w.overlaps(must_parse("0.0.0.0:8080=192.168.127.2:80")));
}

TEST(PortfwdRule, RangesMapPortByPort) {
    const Rule r = must_parse("8000-8009=192.168.127.2:9000-9009");
    EXPECT_EQ(r.host_first, 8000);
    EXPECT_EQ(r.host_last, 8009);
    EXPECT_EQ(r.ports(), 10u);
    EXPECT_EQ(r.guest_first, 9000);
    EXPECT_EQ(r.guest_last(), 9009);
    for (std::uint16_t p = 8000; p <= 8009; ++p)
        EXPECT_EQ(r.guest_port_for(p), static_cast<std::uint16_t>(p + 1000));
    EXPECT_EQ(r.host_text(), "127.0.0.1:8000-8009");
    EXPECT_EQ(r.guest_text(), "192.168.127.2:9000-9009");
}

TEST(PortfwdRule, GuestRangeMayBeLeftAtItsStart) {
    const Rule r = must_parse("8000-8009=192.168.127.2:9000");
    EXPECT_EQ(r.guest_first, 9000);
    EXPECT_EQ(r.guest_last(), 9009);
    EXPECT_EQ(r.guest_port_for(8009), 9009);
    EXPECT_EQ(r.guest_text(), "192.168.127.2:9000-9009");
    EXPECT_EQ(r.spec(), "tcp:127.0.0.1:8000-8009=192.168.127.2:9000-9009");
    // Same port on both sides: the common case of a range forward.
    const Rule same = must_parse("udp:0.0.0.0:60000-60009=192.168.127.2:60000");
    EXPECT_EQ(same.guest_port_for(60005), 60005);
}

TEST(PortfwdRule, RangeLimitsAreInclusive) {
    // A one-port range written as a range is a single port.
    const Rule one = must_parse("8080-8080=192.168.127.2:80-80");
    EXPECT_EQ(one.ports(), 1u);
    EXPECT_EQ(one.spec(), "tcp:127.0.0.1:8080=192.168.127.2:80");
    // Exactly kMaxRangePorts ports.
    const Rule max = must_parse("10000-11023=192.168.127.2:20000");
    EXPECT_EQ(max.ports(), kMaxRangePorts);
    EXPECT_EQ(max.guest_last(), 21023);
    // The port bounds: 1 and 65535, on both sides.
    const Rule low = must_parse("1=192.168.127.2:65535");
    EXPECT_EQ(low.host_first, 1);
    EXPECT_EQ(low.guest_first, 65535);
    const Rule high = must_parse("65535=192.168.127.2:1");
    EXPECT_EQ(high.host_last, 65535);
    // A guest range ending exactly at 65535.
    const Rule edge = must_parse("1000-1009=192.168.127.2:65526");
    EXPECT_EQ(edge.guest_last(), 65535);
    EXPECT_EQ(edge.guest_port_for(1009), 65535);
    // Any unicast guest address outside loopback, even one outside the guest subnet.
    EXPECT_EQ(must_parse("8080=10.0.0.1:80").guest, Ipv4Addr::from_octets(10, 0, 0, 1));
}

TEST(PortfwdRule, CanonicalTextRoundTrips) {
    const std::vector<std::string> specs = {
        "8080=192.168.127.2:80",
        "udp:5353=192.168.127.2:53",
        "tcp:0.0.0.0:2222=192.168.127.2:22",
        "tcp:[::1]:8080=192.168.127.2:80",
        "udp:[::]:7000-7099=192.168.127.3:17000",
        "[2001:db8::1]:443=192.168.127.2:443",
        "[::ffff:10.0.0.1]:80=192.168.127.2:8080",
        "8000-8009=192.168.127.2:9000-9009",
        "65535=192.168.127.2:65535",
        "10000-11023=192.168.127.2:1",
    };
    for (const std::string& text : specs) {
        const Rule a = must_parse(text);
        const std::string canon = a.spec();
        const Rule b = must_parse(canon);
        EXPECT_EQ(b.spec(), canon) << text;
        EXPECT_EQ(b.proto, a.proto) << text;
        EXPECT_EQ(b.host, a.host) << text;
        EXPECT_EQ(b.host_first, a.host_first) << text;
        EXPECT_EQ(b.host_last, a.host_last) << text;
        EXPECT_EQ(b.guest, a.guest) << text;
        EXPECT_EQ(b.guest_first, a.guest_first) << text;
        EXPECT_EQ(b.guest_last(), a.guest_last()) << text;
        // The canonical form always names the protocol and the host address.
        EXPECT_TRUE(canon.starts_with("tcp:") || canon.starts_with("udp:")) << canon;
        EXPECT_EQ(canon,
                  std::string(to_string(a.proto)) + ":" + a.host_text() + "=" + a.guest_text());
    }
}

// ---- refusals ---------------------------------------------------------------------------------

TEST(PortfwdRule, MissingEqualsSignIsRefused) {
    expect_refused("8080", "expected [tcp:|udp:]");
    expect_refused("tcp:8080:192.168.127.2:80", "expected [tcp:|udp:]");
    expect_refused("", "expected");
}

TEST(PortfwdRule, BadPortsAreRefused) {
    for (const char* text :
         {"0=192.168.127.2:80", "65536=192.168.127.2:80", "x=192.168.127.2:80", "=192.168.127.2:80",
          "80x=192.168.127.2:80", "-1=192.168.127.2:80", "8000-=192.168.127.2:80",
          "-8000=192.168.127.2:80", "8000-0=192.168.127.2:80", "8000-70000=192.168.127.2:80",
          "127.0.0.1:=192.168.127.2:80"})
        expect_refused(text, "is not a port (1-65535)");
    for (const char* text :
         {"8080=192.168.127.2:0", "8080=192.168.127.2:65536", "8080=192.168.127.2:x",
          "8080=192.168.127.2:", "8080=192.168.127.2:80-", "8080=192.168.127.2:80-x"})
        expect_refused(text, "is not a port (1-65535)");
}

TEST(PortfwdRule, ReversedRangeIsRefused) {
    expect_refused("8010-8000=192.168.127.2:80", "ends before it starts");
    expect_refused("8000=192.168.127.2:90-80", "ends before it starts");
}

TEST(PortfwdRule, RangeOfMoreThan1024PortsIsRefused) {
    expect_refused("10000-11024=192.168.127.2:10000", "at most 1024 per rule");
    expect_refused("1-65535=192.168.127.2:1", "has 65535 ports");
}

TEST(PortfwdRule, GuestRangeOfAnotherLengthIsRefused) {
    expect_refused("8000-8009=192.168.127.2:9000-9005", "is not as long as host range 8000-8009");
    expect_refused("8000-8009=192.168.127.2:9000-9010", "is not as long as");
    // A single host port with a guest range.
    expect_refused("8000=192.168.127.2:9000-9001", "is not as long as");
}

TEST(PortfwdRule, GuestRangePast65535IsRefused) {
    expect_refused("1000-1009=192.168.127.2:65527", "runs past port 65535");
    expect_refused("8000-8009=192.168.127.2:65535", "runs past port 65535");
}

TEST(PortfwdRule, BadGuestAddressesAreRefused) {
    for (const char* text :
         {"8080=0.0.0.0:80", "8080=224.0.0.1:80", "8080=239.255.255.250:80",
          "8080=255.255.255.255:80", "8080=127.0.0.1:80", "8080=127.1.2.3:80", "8080=999.1.1.1:80",
          "8080=1.2.3:80", "8080=guest:80", "8080=[::1]:80", "8080=[fe80::1]:80"})
        expect_refused(text, "is not a unicast IPv4 address");
    // No guest address at all.
    expect_refused("8080=80", "is not GUESTADDR:GUESTPORT");
    expect_refused("8080=", "is not GUESTADDR:GUESTPORT");
    expect_refused("8080=[::1:80", "is not GUESTADDR:GUESTPORT");
}

TEST(PortfwdRule, BadHostAddressesAreRefused) {
    for (const char* text : {"1.2.3:8080=192.168.127.2:80", "localhost:8080=192.168.127.2:80",
                             "256.0.0.1:8080=192.168.127.2:80", "[zz::1]:8080=192.168.127.2:80",
                             "[]:8080=192.168.127.2:80", "[1.2.3.4]:8080=192.168.127.2:80",
                             "sctp:8080=192.168.127.2:80"})
        expect_refused(text, "is not an IPv4 address or a bracketed IPv6 address");
    // A bracket that does not close, or no ':' after it.
    expect_refused("[::1:8080=192.168.127.2:80", "an IPv6 host address is written [ADDR]:PORT");
    expect_refused("[::1]8080=192.168.127.2:80", "an IPv6 host address is written [ADDR]:PORT");
    expect_refused("[::1]=192.168.127.2:80", "an IPv6 host address is written [ADDR]:PORT");
}

TEST(PortfwdRule, UnbracketedIpv6HostIsRefused) {
    expect_refused("::1:8080=192.168.127.2:80", "bracketed IPv6");
    expect_refused("tcp:2001:db8::1:8080=192.168.127.2:80", "bracketed IPv6");
    expect_refused("udp:::8080=192.168.127.2:80", "bracketed IPv6");
}

// ---- overlap ----------------------------------------------------------------------------------

TEST(PortfwdRule, OverlapTruthTable) {
    struct Case {
        const char* a;
        const char* b;
        bool overlap;
    };
    const std::vector<Case> cases = {
        // Same everything.
        {"tcp:127.0.0.1:8080=192.168.127.2:80", "tcp:127.0.0.1:8080=192.168.127.3:81", true},
        // Another protocol: separate sockets.
        {"tcp:127.0.0.1:8080=192.168.127.2:80", "udp:127.0.0.1:8080=192.168.127.2:80", false},
        // Another address of the same family.
        {"tcp:127.0.0.1:8080=192.168.127.2:80", "tcp:127.0.0.2:8080=192.168.127.2:80", false},
        // A wildcard covers every address of its family, either way round.
        {"tcp:0.0.0.0:8080=192.168.127.2:80", "tcp:127.0.0.1:8080=192.168.127.2:80", true},
        {"tcp:10.0.0.1:8080=192.168.127.2:80", "tcp:0.0.0.0:8080=192.168.127.2:80", true},
        {"udp:0.0.0.0:53=192.168.127.2:53", "udp:0.0.0.0:53=192.168.127.2:53", true},
        {"tcp:[::]:8080=192.168.127.2:80", "tcp:[::1]:8080=192.168.127.2:80", true},
        {"tcp:[::1]:8080=192.168.127.2:80", "tcp:[::]:8080=192.168.127.2:80", true},
        {"tcp:[::1]:8080=192.168.127.2:80", "tcp:[::1]:8080=192.168.127.2:80", true},
        {"tcp:[::1]:8080=192.168.127.2:80", "tcp:[2001:db8::1]:8080=192.168.127.2:80", false},
        // IPv4 and IPv6 never (IPV6_V6ONLY: separate sockets), wildcards included.
        {"tcp:127.0.0.1:8080=192.168.127.2:80", "tcp:[::1]:8080=192.168.127.2:80", false},
        {"tcp:0.0.0.0:8080=192.168.127.2:80", "tcp:[::]:8080=192.168.127.2:80", false},
        {"tcp:0.0.0.0:8080=192.168.127.2:80", "tcp:[::1]:8080=192.168.127.2:80", false},
        {"tcp:[::]:8080=192.168.127.2:80", "tcp:127.0.0.1:8080=192.168.127.2:80", false},
        // Ranges: a common port is enough; adjacent ranges share none.
        {"8000-8009=192.168.127.2:8000", "8009-8020=192.168.127.2:9009", true},
        {"8000-8009=192.168.127.2:8000", "8005=192.168.127.2:80", true},
        {"8005=192.168.127.2:80", "8000-8009=192.168.127.2:8000", true},
        {"8000-8009=192.168.127.2:8000", "8010-8020=192.168.127.2:8010", false},
        {"8010-8020=192.168.127.2:8010", "8000-8009=192.168.127.2:8000", false},
        {"8000-8009=192.168.127.2:8000", "7990-7999=192.168.127.2:8000", false},
        {"8000-8009=192.168.127.2:8000", "7500-8500=192.168.127.2:7500", true},
        // The guest side plays no part.
        {"8080=192.168.127.2:80", "8081=192.168.127.2:80", false},
    };
    for (const Case& c : cases) {
        const Rule a = must_parse(c.a);
        const Rule b = must_parse(c.b);
        EXPECT_EQ(a.overlaps(b), c.overlap) << c.a << " vs " << c.b;
        EXPECT_EQ(b.overlaps(a), c.overlap) << c.b << " vs " << c.a << " (symmetry)";
    }
}

// ---- HostAddr ---------------------------------------------------------------------------------

TEST(PortfwdRule, HostAddrSockaddr) {
    const Rule r4 = must_parse("10.1.2.3:8080=192.168.127.2:80");
    sockaddr_storage ss{};
    ASSERT_EQ(r4.host.to_sockaddr(8080, ss), sizeof(sockaddr_in));
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    EXPECT_EQ(sin->sin_family, AF_INET);
    EXPECT_EQ(ntohs(sin->sin_port), 8080);
    EXPECT_EQ(ntohl(sin->sin_addr.s_addr), Ipv4Addr::from_octets(10, 1, 2, 3).v);

    const Rule r6 = must_parse("[2001:db8::5]:443=192.168.127.2:80");
    ASSERT_EQ(r6.host.to_sockaddr(443, ss), sizeof(sockaddr_in6));
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    EXPECT_EQ(sin6->sin6_family, AF_INET6);
    EXPECT_EQ(ntohs(sin6->sin6_port), 443);
    EXPECT_EQ(std::memcmp(&sin6->sin6_addr, v6("2001:db8::5").b.data(), 16), 0);

    HostAddr a, b;
    a.v4 = kLoop4;
    b.v4 = kLoop4;
    EXPECT_TRUE(a == b);
    b.v6 = true;  // same v4 bits, another family
    EXPECT_FALSE(a == b);
    EXPECT_TRUE(a.is_loopback());
    EXPECT_EQ(a.to_string(), "127.0.0.1");
    HostAddr any6;
    any6.v6 = true;
    EXPECT_TRUE(any6.is_wildcard());
    EXPECT_EQ(any6.to_string(), "[::]");
}

// ---- parse_host_port --------------------------------------------------------------------------

TEST(PortfwdRule, ParseHostPort) {
    // A bare port: the default address, whatever the caller says about empty addresses.
    for (const bool any : {false, true}) {
        const auto p = parse_host_port("8080", any);
        ASSERT_TRUE(p.has_value());
        EXPECT_FALSE(p->addr.v6);
        EXPECT_EQ(p->addr.v4, kLoop4);
        EXPECT_EQ(p->port, 8080);
    }
    // ":8080": every address when the caller says so (gvproxy), else the default.
    const auto any = parse_host_port(":8080", true);
    ASSERT_TRUE(any.has_value());
    EXPECT_TRUE(any->addr.is_wildcard());
    EXPECT_FALSE(any->addr.v6);
    EXPECT_EQ(any->port, 8080);
    const auto def = parse_host_port(":8080", false);
    ASSERT_TRUE(def.has_value());
    EXPECT_EQ(def->addr.v4, kLoop4);

    const auto v4 = parse_host_port("10.0.0.1:22", true);
    ASSERT_TRUE(v4.has_value());
    EXPECT_EQ(v4->addr.v4, Ipv4Addr::from_octets(10, 0, 0, 1));
    EXPECT_EQ(v4->port, 22);
    const auto six = parse_host_port("[::1]:8443", false);
    ASSERT_TRUE(six.has_value());
    EXPECT_TRUE(six->addr.v6);
    EXPECT_TRUE(six->addr.is_loopback());
    EXPECT_EQ(six->port, 8443);
    const auto mapped = parse_host_port("[::ffff:192.0.2.1]:80", false);
    ASSERT_TRUE(mapped.has_value());
    EXPECT_FALSE(mapped->addr.v6);
    EXPECT_EQ(mapped->addr.v4, Ipv4Addr::from_octets(192, 0, 2, 1));

    for (const char* bad : {"", "x", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "[::1]",
                            "[::1]:x", "[::1]8080", "host:80", "::1:80", "1.2.3.4:80-90"})
        EXPECT_FALSE(parse_host_port(bad, true).has_value()) << "'" << bad << "' accepted";
}

}  // namespace
}  // namespace slipway::portfwd
