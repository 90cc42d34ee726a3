// portfwd::Forwarder on real loopback sockets inside the test process (no network namespace is
// assumed: only 127.0.0.1 and [::1], on ports the kernel just handed out as free): TCP clients
// accepted and handed to the sink with the guest port their host port maps to; UDP datagrams
// with the client's address and the local address it wrote to (IP_PKTINFO for wildcard rules);
// overlap refused before any bind; a refused bind naming the address and leaving nothing bound;
// remove() closing the port at once and kill reaching the sink; open_udp_mapping()'s connected
// socket winning the client's later datagrams and answering from the rule's port.
#include "slipway/portfwd/forwarder.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "slipway/core/event_loop.hpp"
#include "slipway/portfwd/rule.hpp"

namespace slipway::portfwd {
namespace {

using namespace std::chrono_literals;

constexpr Ipv4Addr kGuest = Ipv4Addr::from_octets(192, 168, 127, 2);

// ---- socket helpers -----------------------------------------------------------------------------

// An fd closed at scope exit.
struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd = o.fd;
            o.fd = -1;
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    [[nodiscard]] int get() const { return fd; }
};

socklen_t loopback(bool v6, std::uint16_t port, sockaddr_storage& ss) {
    HostAddr a;
    a.v6 = v6;
    if (v6)
        a.v6addr.b[15] = 1;
    else
        a.v4 = Ipv4Addr::from_octets(127, 0, 0, 1);
    return a.to_sockaddr(port, ss);
}

std::uint16_t port_of(const sockaddr_storage& ss) {
    return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port)
                                    : ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}
std::string addr_of(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
    return buf;
}

// A socket bound to loopback:`port` (0: any), or an invalid Fd.
Fd bound(int type, bool v6, std::uint16_t port, bool reuseport = false) {
    Fd s(::socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0));
    if (s.get() < 0) return {};
    const int one = 1;
    if (v6) ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (reuseport) ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_storage ss{};
    const socklen_t len = loopback(v6, port, ss);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return {};
    return s;
}

bool port_free(int type, bool v6, std::uint16_t port) {
    return bound(type, v6, port).get() >= 0;
}

// `n` consecutive ports free for both TCP and UDP on loopback of that family: the kernel picks
// one (bind to port 0), the socket is closed and the range checked, retrying a few times.
std::optional<std::uint16_t> free_ports(bool v6 = false, std::uint16_t n = 1) {
    for (int attempt = 0; attempt < 50; ++attempt) {
        std::uint16_t first = 0;
        {
            Fd s = bound(SOCK_STREAM, v6, 0);
            if (s.get() < 0) return std::nullopt;
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
                return std::nullopt;
            first = port_of(ss);
        }
        if (first == 0 || std::uint32_t{first} + n - 1 > 65535) continue;
        bool ok = true;
        for (std::uint16_t i = 0; i < n && ok; ++i) {
            const auto p = static_cast<std::uint16_t>(first + i);
            ok = port_free(SOCK_STREAM, v6, p) && port_free(SOCK_DGRAM, v6, p);
        }
        if (ok) return first;
    }
    return std::nullopt;
}

bool have_ipv6_loopback() {
    return bound(SOCK_STREAM, true, 0).get() >= 0;
}

// A blocking TCP connect to loopback:`port`: the client fd, or -errno.
int tcp_connect(bool v6, std::uint16_t port, Fd& out) {
    Fd s(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) return -errno;
    sockaddr_storage ss{};
    const socklen_t len = loopback(v6, port, ss);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return -errno;
    out = std::move(s);
    return out.get();
}

// A UDP client socket bound to an ephemeral loopback port.
Fd udp_client(bool v6 = false) {
    return bound(SOCK_DGRAM, v6, 0);
}

bool udp_send(int fd, bool v6, std::uint16_t port, const std::string& payload) {
    sockaddr_storage ss{};
    const socklen_t len = loopback(v6, port, ss);
    return ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
           static_cast<ssize_t>(payload.size());
}

// One datagram within `timeout` (with where it came from), or nullopt.
std::optional<std::string> recv_within(int fd, std::chrono::milliseconds timeout,
                                       sockaddr_storage* from = nullptr) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[2048];
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const ssize_t n =
        ::recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return std::nullopt;
    if (from != nullptr) *from = ss;
    return std::string(buf, static_cast<std::size_t>(n));
}

sockaddr_storage local_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ss;
}
sockaddr_storage peer_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ss;
}

Rule rule(const std::string& text) {
    std::string why;
    auto r = Rule::parse(text, why);
    EXPECT_TRUE(r.has_value()) << text << ": " << why;
    return r ? *r : Rule{};
}

// ---- the sink -----------------------------------------------------------------------------------

struct Accepted {
    RuleId rule = 0;
    Fd fd;
    Client client;
    Ipv4Addr guest;
    std::uint16_t guest_port = 0;
};
struct Datagram {
    RuleId rule = 0;
    Client client;
    Ipv4Addr guest;
    std::uint16_t guest_port = 0;
    std::string payload;
};

class RecordingSink final : public InboundSink {
  public:
    std::vector<Accepted> accepted;
    std::vector<Datagram> datagrams;
    std::vector<RuleId> killed;
    // Called inside datagram_udp (the payload is valid only then), as the real sink opens its
    // mapping there.
    std::function<void(const Datagram&)> on_datagram;

    void accept_tcp(RuleId r, int fd, const Client& c, Ipv4Addr guest,
                    std::uint16_t guest_port) noexcept override {
        Accepted a;
        a.rule = r;
        a.fd = Fd(fd);
        a.client = c;
        a.guest = guest;
        a.guest_port = guest_port;
        accepted.push_back(std::move(a));
    }
    void datagram_udp(RuleId r, const Client& c, Ipv4Addr guest, std::uint16_t guest_port,
                      ByteView payload) noexcept override {
        Datagram d;
        d.rule = r;
        d.client = c;
        d.guest = guest;
        d.guest_port = guest_port;
        d.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
        datagrams.push_back(d);
        if (on_datagram) on_datagram(datagrams.back());
    }
    void kill_rule(RuleId r) noexcept override { killed.push_back(r); }
};

class ForwarderTest : public ::testing::Test {
  protected:
    // Runs the loop until `done` or `timeout`; false on timeout.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() > end) return false;
            io.restart();
            io.run_for(5ms);
        }
        return true;
    }
    // Runs the loop for a while (to show that something does not happen).
    void run_for(std::chrono::milliseconds d) {
        const auto end = std::chrono::steady_clock::now() + d;
        while (std::chrono::steady_clock::now() < end) {
            io.restart();
            io.run_for(5ms);
        }
    }
    RuleId add_ok(const std::string& text) {
        std::string err;
        auto id = fwd.add(rule(text), err);
        EXPECT_TRUE(id.has_value()) << text << ": " << err;
        return id.value_or(0);
    }

    IoContext io;
    RecordingSink sink;
    Forwarder fwd{io, sink};
};

// ---- TCP --------------------------------------------------------------------------------------

TEST_F(ForwarderTest, TcpClientIsAcceptedWithItsGuestPort) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    const RuleId id = add_ok("tcp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:80");
    ASSERT_NE(id, 0u);
    ASSERT_NE(fwd.find(id), nullptr);
    EXPECT_EQ(fwd.find(id)->rule.spec(),
              "tcp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:80");

    Fd client;
    ASSERT_GE(tcp_connect(false, *port, client), 0) << std::strerror(errno);
    ASSERT_TRUE(run_until([&] { return sink.accepted.size() == 1; }));
    const Accepted& a = sink.accepted[0];
    EXPECT_EQ(a.rule, id);
    EXPECT_EQ(a.guest, kGuest);
    EXPECT_EQ(a.guest_port, 80);
    ASSERT_GE(a.fd.get(), 0);
    EXPECT_NE(::fcntl(a.fd.get(), F_GETFL) & O_NONBLOCK, 0) << "the sink gets a non-blocking fd";
    EXPECT_NE(::fcntl(a.fd.get(), F_GETFD) & FD_CLOEXEC, 0);
    // The client as the sink sees it is the client socket's own address.
    const sockaddr_storage cl = local_of(client.get());
    EXPECT_EQ(a.client.addr.ss_family, AF_INET);
    EXPECT_EQ(a.client.addr_len, sizeof(sockaddr_in));
    EXPECT_EQ(addr_of(a.client.addr), "127.0.0.1");
    EXPECT_EQ(port_of(a.client.addr), port_of(cl));
    // `local`: the address and port the client reached.
    EXPECT_EQ(a.client.local_len, sizeof(sockaddr_in));
    EXPECT_EQ(addr_of(a.client.local), "127.0.0.1");
    EXPECT_EQ(port_of(a.client.local), *port);
    // The fd is the client's connection: bytes go both ways.
    EXPECT_EQ(port_of(peer_of(a.fd.get())), port_of(cl));
    ASSERT_EQ(::send(client.get(), "ping", 4, 0), 4);
    char buf[8] = {};
    pollfd p{a.fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 2000), 1);
    ASSERT_EQ(::recv(a.fd.get(), buf, sizeof buf, 0), 4);
    EXPECT_EQ(std::string(buf, 4), "ping");
    EXPECT_EQ(fwd.counters().accepted.get(), 1u);
    EXPECT_EQ(fwd.find(id)->accepted, 1u);

    // More clients, each accepted once (the listener re-armed after each burst).
    Fd c2, c3;
    ASSERT_GE(tcp_connect(false, *port, c2), 0);
    ASSERT_GE(tcp_connect(false, *port, c3), 0);
    ASSERT_TRUE(run_until([&] { return sink.accepted.size() == 3; }));
    run_for(20ms);
    EXPECT_EQ(sink.accepted.size(), 3u);
    EXPECT_EQ(fwd.counters().accepted.get(), 3u);
    EXPECT_EQ(fwd.list().at(0).accepted, 3u);
    EXPECT_EQ(fwd.counters().accept_errors.get(), 0u);
}

TEST_F(ForwarderTest, TcpRangeMapsEachPortOntoItsGuestPort) {
    const auto first = free_ports(false, 3);
    ASSERT_TRUE(first.has_value());
    const std::string range = std::to_string(*first) + "-" + std::to_string(*first + 2);
    const RuleId id = add_ok("tcp:127.0.0.1:" + range + "=192.168.127.2:9000");
    for (std::uint16_t i = 0; i < 3; ++i) {
        Fd c;
        ASSERT_GE(tcp_connect(false, static_cast<std::uint16_t>(*first + 2 - i), c), 0);
        ASSERT_TRUE(run_until([&] { return sink.accepted.size() == i + 1u; }));
        const Accepted& a = sink.accepted.back();
        EXPECT_EQ(a.rule, id);
        EXPECT_EQ(a.guest_port, 9000 + 2 - i);
        EXPECT_EQ(port_of(a.client.local), *first + 2 - i);
    }
    EXPECT_EQ(fwd.find(id)->accepted, 3u);
}

TEST_F(ForwarderTest, TcpOverIpv6Loopback) {
    if (!have_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback here";
    const auto port = free_ports(true);
    ASSERT_TRUE(port.has_value());
    const RuleId id = add_ok("tcp:[::1]:" + std::to_string(*port) + "=192.168.127.2:22");
    Fd client;
    ASSERT_GE(tcp_connect(true, *port, client), 0) << std::strerror(errno);
    ASSERT_TRUE(run_until([&] { return sink.accepted.size() == 1; }));
    const Accepted& a = sink.accepted[0];
    EXPECT_EQ(a.rule, id);
    EXPECT_EQ(a.guest_port, 22);
    EXPECT_EQ(a.client.addr.ss_family, AF_INET6);
    EXPECT_EQ(addr_of(a.client.addr), "::1");
    EXPECT_EQ(port_of(a.client.addr), port_of(local_of(client.get())));
    EXPECT_EQ(a.client.local.ss_family, AF_INET6);
    EXPECT_EQ(port_of(a.client.local), *port);
    // IPV6_V6ONLY: the IPv4 loopback's port stays free.
    EXPECT_LT(tcp_connect(false, *port, client), 0);
}

// ---- conflicts and bind failures ----------------------------------------------------------------

TEST_F(ForwarderTest, OverlappingRulesAreRefusedAsConflicts) {
    const auto port = free_ports(false, 2);
    ASSERT_TRUE(port.has_value());
    const std::string p = std::to_string(*port);
    const std::string p2 = std::to_string(*port + 1);
    const RuleId tcp = add_ok("tcp:127.0.0.1:" + p + "=192.168.127.2:80");
    for (const std::string& text :
         {"tcp:127.0.0.1:" + p + "=192.168.127.3:81", "tcp:0.0.0.0:" + p + "=192.168.127.2:80",
          "tcp:127.0.0.1:" + p + "-" + p2 + "=192.168.127.2:80"}) {
        std::string err;
        auto r = fwd.add(rule(text), err);
        ASSERT_FALSE(r.has_value()) << text;
        EXPECT_EQ(r.error(), Errc::conflict) << text;
        EXPECT_NE(err.find("overlaps forward " + std::to_string(tcp)), std::string::npos) << err;
        EXPECT_NE(err.find("tcp:127.0.0.1:" + p + "=192.168.127.2:80"), std::string::npos)
            << "the error names the rule in force: " << err;
    }
    // UDP on the same port is another socket: fine. A second UDP rule would bind too (the rule
    // sockets set SO_REUSEPORT), so the forwarder itself must refuse it.
    const RuleId udp = add_ok("udp:127.0.0.1:" + p + "=192.168.127.2:53");
    for (const std::string& text :
         {"udp:127.0.0.1:" + p + "=192.168.127.3:53", "udp:0.0.0.0:" + p + "=192.168.127.2:53"}) {
        std::string err;
        auto r = fwd.add(rule(text), err);
        ASSERT_FALSE(r.has_value()) << text;
        EXPECT_EQ(r.error(), Errc::conflict) << text;
        EXPECT_NE(err.find("overlaps forward " + std::to_string(udp)), std::string::npos) << err;
    }
    EXPECT_EQ(fwd.list().size(), 2u);
    // The port next door is no conflict.
    add_ok("tcp:127.0.0.1:" + p2 + "=192.168.127.2:80");
    EXPECT_EQ(fwd.list().size(), 3u);
    EXPECT_EQ(fwd.find(Proto::tcp, rule("tcp:127.0.0.1:" + p + "=192.168.127.2:1").host, *port),
              std::optional<RuleId>(tcp));
    EXPECT_EQ(fwd.find(Proto::udp, rule("tcp:127.0.0.1:" + p + "=192.168.127.2:1").host, *port),
              std::optional<RuleId>(udp));
    EXPECT_FALSE(fwd.find(Proto::tcp, rule("tcp:0.0.0.0:" + p + "=192.168.127.2:1").host, *port)
                     .has_value());
}

TEST_F(ForwarderTest, PortHeldByAnotherSocketIsAnIoErrorNamingTheAddress) {
    const auto port = free_ports(false, 3);
    ASSERT_TRUE(port.has_value());
    const std::string p = std::to_string(*port);
    {
        Fd holder = bound(SOCK_STREAM, false, *port);
        ASSERT_GE(holder.get(), 0);
        ASSERT_EQ(::listen(holder.get(), 4), 0);
        std::string err;
        auto r = fwd.add(rule("tcp:127.0.0.1:" + p + "=192.168.127.2:80"), err);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::io_error);
        EXPECT_NE(err.find("tcp 127.0.0.1:" + p), std::string::npos) << err;
        EXPECT_NE(err.find("address already in use"), std::string::npos) << err;
    }
    {
        // UDP: the holder has no SO_REUSEPORT, so the rule socket's own does not help it.
        Fd holder = bound(SOCK_DGRAM, false, *port);
        ASSERT_GE(holder.get(), 0);
        std::string err;
        auto r = fwd.add(rule("udp:127.0.0.1:" + p + "=192.168.127.2:53"), err);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::io_error);
        EXPECT_NE(err.find("udp 127.0.0.1:" + p), std::string::npos) << err;
        EXPECT_NE(err.find("address already in use"), std::string::npos) << err;
    }
    {
        // The last port of a range is taken: nothing of the rule stays bound.
        const auto last = static_cast<std::uint16_t>(*port + 2);
        Fd holder = bound(SOCK_STREAM, false, last);
        ASSERT_GE(holder.get(), 0);
        ASSERT_EQ(::listen(holder.get(), 4), 0);
        std::string err;
        auto r = fwd.add(
            rule("tcp:127.0.0.1:" + p + "-" + std::to_string(last) + "=192.168.127.2:80"), err);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::io_error);
        EXPECT_NE(err.find("127.0.0.1:" + std::to_string(last)), std::string::npos) << err;
        EXPECT_TRUE(port_free(SOCK_STREAM, false, *port)) << "the range's first port stayed bound";
        EXPECT_TRUE(port_free(SOCK_STREAM, false, static_cast<std::uint16_t>(*port + 1)));
    }
    EXPECT_TRUE(fwd.list().empty());
    // The port is usable once the holder is gone.
    add_ok("tcp:127.0.0.1:" + p + "=192.168.127.2:80");
}

TEST_F(ForwarderTest, AddressNotOnTheHostIsAnIoError) {
    Fd probe = Fd(::open("/proc/sys/net/ipv4/ip_nonlocal_bind", O_RDONLY | O_CLOEXEC));
    char c = '0';
    if (probe.get() >= 0 && ::read(probe.get(), &c, 1) == 1 && c != '0')
        GTEST_SKIP() << "net.ipv4.ip_nonlocal_bind is set: any address binds";
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    std::string err;
    // 192.0.2.0/24 (TEST-NET-1) is on no host.
    auto r = fwd.add(rule("tcp:192.0.2.77:" + std::to_string(*port) + "=192.168.127.2:80"), err);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_NE(err.find("192.0.2.77"), std::string::npos) << err;
    EXPECT_NE(err.find("the host has no address 192.0.2.77"), std::string::npos) << err;
    EXPECT_TRUE(fwd.list().empty());
}

// ---- remove -------------------------------------------------------------------------------------

TEST_F(ForwarderTest, RemoveClosesThePortAndKillReachesTheSink) {
    const auto port = free_ports(false, 2);
    ASSERT_TRUE(port.has_value());
    const RuleId a = add_ok("tcp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:80");
    const RuleId b = add_ok("udp:127.0.0.1:" + std::to_string(*port + 1) + "=192.168.127.2:53");
    ASSERT_NE(a, b);
    Fd c;
    ASSERT_GE(tcp_connect(false, *port, c), 0);
    ASSERT_TRUE(run_until([&] { return sink.accepted.size() == 1; }));

    ASSERT_TRUE(fwd.remove(a, false).has_value());
    EXPECT_TRUE(sink.killed.empty()) << "remove without kill leaves connections alone";
    EXPECT_EQ(fwd.find(a), nullptr);
    Fd refused;
    EXPECT_EQ(tcp_connect(false, *port, refused), -ECONNREFUSED) << "the port must close at once";
    // The connection already made stays.
    EXPECT_EQ(::send(c.get(), "x", 1, MSG_NOSIGNAL), 1);
    char x = 0;
    pollfd pf{sink.accepted[0].fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pf, 1, 2000), 1);
    EXPECT_EQ(::recv(sink.accepted[0].fd.get(), &x, 1, 0), 1);

    ASSERT_TRUE(fwd.remove(b, true).has_value());
    ASSERT_EQ(sink.killed.size(), 1u);
    EXPECT_EQ(sink.killed[0], b);
    EXPECT_TRUE(port_free(SOCK_DGRAM, false, static_cast<std::uint16_t>(*port + 1)));
    EXPECT_TRUE(fwd.list().empty());

    auto again = fwd.remove(a, true);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error(), Errc::not_found);
    EXPECT_EQ(sink.killed.size(), 1u);
    // Ids are not reused; the port can be forwarded again at once (SO_REUSEADDR, while the
    // connection accepted before still holds it).
    const RuleId d = add_ok("tcp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:80");
    EXPECT_NE(d, a);
    EXPECT_NE(d, b);
}

TEST_F(ForwarderTest, ClearClosesEveryPort) {
    const auto port = free_ports(false, 2);
    ASSERT_TRUE(port.has_value());
    add_ok("tcp:127.0.0.1:" + std::to_string(*port) + "-" + std::to_string(*port + 1) +
           "=192.168.127.2:80");
    fwd.clear();
    EXPECT_TRUE(fwd.list().empty());
    Fd c;
    EXPECT_EQ(tcp_connect(false, *port, c), -ECONNREFUSED);
    EXPECT_EQ(tcp_connect(false, static_cast<std::uint16_t>(*port + 1), c), -ECONNREFUSED);
    run_for(10ms);
    EXPECT_TRUE(sink.accepted.empty());
    EXPECT_TRUE(sink.killed.empty());
}

TEST_F(ForwarderTest, PerRuleTallies) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    const RuleId id = add_ok("udp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:53");
    fwd.note_mapping(id);
    fwd.note_mapping(id);
    fwd.note_refused(id);
    fwd.note_refused(id + 100);  // unknown: ignored
    ASSERT_NE(fwd.find(id), nullptr);
    EXPECT_EQ(fwd.find(id)->accepted, 2u);
    EXPECT_EQ(fwd.find(id)->refused, 1u);
    const auto l = fwd.list();
    ASSERT_EQ(l.size(), 1u);
    EXPECT_EQ(l[0].id, id);
    EXPECT_EQ(l[0].refused, 1u);
}

// ---- UDP ----------------------------------------------------------------------------------------

TEST_F(ForwarderTest, UdpDatagramReachesTheSinkWithTheClientAndLocalAddress) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    const RuleId id = add_ok("udp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:53");
    Fd client = udp_client();
    ASSERT_GE(client.get(), 0);
    ASSERT_TRUE(udp_send(client.get(), false, *port, "hello"));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 1; }));
    const Datagram& d = sink.datagrams[0];
    EXPECT_EQ(d.rule, id);
    EXPECT_EQ(d.payload, "hello");
    EXPECT_EQ(d.guest, kGuest);
    EXPECT_EQ(d.guest_port, 53);
    EXPECT_EQ(d.client.addr.ss_family, AF_INET);
    EXPECT_EQ(addr_of(d.client.addr), "127.0.0.1");
    EXPECT_EQ(port_of(d.client.addr), port_of(local_of(client.get())));
    EXPECT_EQ(d.client.local.ss_family, AF_INET);
    EXPECT_EQ(addr_of(d.client.local), "127.0.0.1");
    EXPECT_EQ(port_of(d.client.local), *port);
    EXPECT_EQ(fwd.counters().datagrams.get(), 1u);

    // An empty datagram and a large one arrive as they are.
    ASSERT_TRUE(udp_send(client.get(), false, *port, ""));
    const std::string big(1400, 'z');
    ASSERT_TRUE(udp_send(client.get(), false, *port, big));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 3; }));
    EXPECT_EQ(sink.datagrams[1].payload, "");
    EXPECT_EQ(sink.datagrams[2].payload, big);
    EXPECT_EQ(fwd.counters().datagrams.get(), 3u);
    EXPECT_EQ(fwd.counters().recv_errors.get(), 0u);
}

TEST_F(ForwarderTest, WildcardUdpRuleReportsTheAddressTheClientWroteTo) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    add_ok("udp:0.0.0.0:" + std::to_string(*port) + "=192.168.127.2:53");
    Fd client = udp_client();
    ASSERT_TRUE(udp_send(client.get(), false, *port, "q"));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 1; }));
    // IP_PKTINFO: not 0.0.0.0 but the loopback address the client wrote to.
    EXPECT_EQ(addr_of(sink.datagrams[0].client.local), "127.0.0.1");
    EXPECT_EQ(port_of(sink.datagrams[0].client.local), *port);
}

TEST_F(ForwarderTest, WildcardUdpRuleOverIpv6ReportsTheAddressTheClientWroteTo) {
    if (!have_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback here";
    const auto port = free_ports(true);
    ASSERT_TRUE(port.has_value());
    add_ok("udp:[::]:" + std::to_string(*port) + "=192.168.127.2:53");
    Fd client = udp_client(true);
    ASSERT_GE(client.get(), 0);
    ASSERT_TRUE(udp_send(client.get(), true, *port, "q6"));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 1; }));
    const Datagram& d = sink.datagrams[0];
    EXPECT_EQ(d.payload, "q6");
    EXPECT_EQ(d.client.addr.ss_family, AF_INET6);
    EXPECT_EQ(addr_of(d.client.addr), "::1");
    EXPECT_EQ(d.client.local.ss_family, AF_INET6);
    EXPECT_EQ(addr_of(d.client.local), "::1");
    EXPECT_EQ(port_of(d.client.local), *port);
}

TEST_F(ForwarderTest, UdpMappingWinsTheClientsLaterDatagramsAndAnswersFromTheRulePort) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    add_ok("udp:127.0.0.1:" + std::to_string(*port) + "=192.168.127.2:53");
    Fd mapping;
    int map_err = 0;
    // As the real sink does: the mapping is opened inside the callback.
    sink.on_datagram = [&](const Datagram& d) {
        if (mapping.get() >= 0) return;
        const int fd = open_udp_mapping(d.client);
        if (fd < 0)
            map_err = -fd;
        else
            mapping = Fd(fd);
    };
    Fd client = udp_client();
    ASSERT_TRUE(udp_send(client.get(), false, *port, "first"));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 1; }));
    ASSERT_GE(mapping.get(), 0) << "open_udp_mapping: " << std::strerror(map_err);
    EXPECT_NE(::fcntl(mapping.get(), F_GETFL) & O_NONBLOCK, 0);
    // Bound to the rule's address and port, connected to the client.
    EXPECT_EQ(addr_of(local_of(mapping.get())), "127.0.0.1");
    EXPECT_EQ(port_of(local_of(mapping.get())), *port);
    EXPECT_EQ(port_of(peer_of(mapping.get())), port_of(local_of(client.get())));

    // The client's next datagram goes to the connected mapping, not the rule socket.
    ASSERT_TRUE(udp_send(client.get(), false, *port, "second"));
    const auto got = recv_within(mapping.get(), 2000ms);
    ASSERT_TRUE(got.has_value()) << "the mapping socket did not get the client's datagram";
    EXPECT_EQ(*got, "second");
    run_for(30ms);
    EXPECT_EQ(sink.datagrams.size(), 1u)
        << "the rule socket got a datagram the mapping should have";

    // The mapping's reply reaches the client from the port it wrote to.
    ASSERT_EQ(::send(mapping.get(), "reply", 5, 0), 5);
    sockaddr_storage from{};
    const auto reply = recv_within(client.get(), 2000ms, &from);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(*reply, "reply");
    EXPECT_EQ(addr_of(from), "127.0.0.1");
    EXPECT_EQ(port_of(from), *port);

    // Another client still reaches the rule socket.
    Fd other = udp_client();
    ASSERT_TRUE(udp_send(other.get(), false, *port, "other"));
    ASSERT_TRUE(run_until([&] { return sink.datagrams.size() == 2; }));
    EXPECT_EQ(sink.datagrams[1].payload, "other");
    EXPECT_EQ(port_of(sink.datagrams[1].client.addr), port_of(local_of(other.get())));
}

TEST_F(ForwarderTest, UdpMappingFailsWithErrnoWhenThePortIsNotShareable) {
    const auto port = free_ports();
    ASSERT_TRUE(port.has_value());
    // A socket without SO_REUSEPORT holds the port: the mapping cannot join it.
    Fd holder = bound(SOCK_DGRAM, false, *port);
    ASSERT_GE(holder.get(), 0);
    Fd client = udp_client();
    Client c;
    c.addr = local_of(client.get());
    c.addr_len = sizeof(sockaddr_in);
    c.local_len = loopback(false, *port, c.local);
    EXPECT_EQ(open_udp_mapping(c), -EADDRINUSE);
}

}  // namespace
}  // namespace slipway::portfwd
