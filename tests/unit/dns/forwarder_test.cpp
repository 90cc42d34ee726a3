// dns::Forwarder against a scripted upstream resolver on loopback (a thread with real UDP and TCP
// sockets): local names, forwarding and caching, TC -> TCP retry, truncation for small clients,
// fast SERVFAIL for a refusing upstream and timed SERVFAIL for a silent one, hedging to a second
// upstream, spoofed answers, stream sessions, resolv.conf parsing and re-reading.
#include "slipway/dns/forwarder.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dns_test_util.hpp"
#include "slipway/dns/message.hpp"

namespace slipway::dns {
namespace {

using namespace std::chrono_literals;
using namespace testutil;

Bytes query(std::uint16_t id, std::string_view name, std::uint16_t qtype = rrtype::a,
            bool edns = false, std::uint16_t edns_size = 1232) {
    Bytes b;
    put16(b, id);
    put16(b, 0x0100);  // RD
    put16(b, 1);
    put16(b, 0);
    put16(b, 0);
    put16(b, edns ? 1 : 0);
    std::array<std::byte, kMaxNameLen> wire{};
    const auto n = encode_name(name, wire);
    EXPECT_TRUE(n.has_value());
    b.insert(b.end(), wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(*n));
    put16(b, qtype);
    put16(b, kClassIn);
    if (edns) {
        b.push_back(std::byte{0});
        put16(b, rrtype::opt);
        put16(b, edns_size);
        put32(b, 0);
        put16(b, 0);
    }
    return b;
}

// The upstream's answer to `q`: its header and question, then `n_txt` TXT strings of 200 bytes
// (or one A record 10.1.2.3) with TTL 60. `tc`: header and question only, TC set.
Bytes answer(ByteView q, bool tc, int n_txt, std::uint16_t id_delta = 0) {
    const auto mv = MessageView::parse(q);
    EXPECT_TRUE(mv.has_value());
    const std::size_t qend = kHeaderLen + mv->question()->name.wire_len() + 4;
    Bytes b(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(qend));
    store_be16(b.data(), static_cast<std::uint16_t>(load_be16(b.data()) + id_delta));
    b[2] = static_cast<std::byte>(0x81 | (tc ? 0x02 : 0));  // QR, RD (+TC)
    b[3] = std::byte{0x80};                                 // RA
    store_be16(b.data() + 6, tc ? 0 : 1);                   // ANCOUNT
    store_be16(b.data() + 10, 0);                           // no OPT back
    if (tc) return b;
    put16(b, 0xc00c);
    if (n_txt > 0) {
        put16(b, rrtype::txt);
        put16(b, kClassIn);
        put32(b, 60);
        put16(b, static_cast<std::uint16_t>(n_txt * 201));
        for (int i = 0; i < n_txt; ++i) {
            b.push_back(std::byte{200});
            b.insert(b.end(), 200, std::byte{'x'});
        }
    } else {
        put16(b, rrtype::a);
        put16(b, kClassIn);
        put32(b, 60);
        put16(b, 4);
        for (int o : {10, 1, 2, 3})
            b.push_back(std::byte(o));
    }
    return b;
}

std::string qname(ByteView q) {
    const auto mv = MessageView::parse(q);
    if (!mv || !mv->question()) return {};
    std::array<std::byte, kMaxNameLen> buf{};
    const auto n = mv->question()->name.read(buf, NameForm::dotted_lower);
    return n ? std::string(reinterpret_cast<const char*>(buf.data()), *n) : std::string{};
}

// A resolver on 127.0.0.1 (UDP and TCP on one port) whose behaviour depends on the first label:
// "silent" never answers, "tc" answers UDP truncated and TCP in full (5 TXT strings), "big"
// answers 5 TXT strings over UDP, "spoof" sends a wrong-ID answer first, others get an A record.
class FakeUpstream {
  public:
    FakeUpstream() {
        udp_ = ::socket(AF_INET, SOCK_DGRAM, 0);
        tcp_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        socklen_t len = sizeof a;
        ::getsockname(udp_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        const int one = 1;
        ::setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        EXPECT_EQ(::bind(tcp_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(tcp_, 8), 0);
        thread_ = std::thread([this] { run(); });
    }
    ~FakeUpstream() {
        stop_ = true;
        thread_.join();
        ::close(udp_);
        ::close(tcp_);
    }
    [[nodiscard]] std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
    std::atomic<int> udp_queries{0}, tcp_queries{0};
    [[nodiscard]] std::set<std::uint16_t> source_ports() {
        const std::lock_guard<std::mutex> lock(mu_);
        return ports_;
    }

  private:
    void run() {
        while (!stop_) {
            pollfd p[2] = {{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
            if (::poll(p, 2, 20) <= 0) continue;
            if ((p[0].revents & POLLIN) != 0) on_udp();
            if ((p[1].revents & POLLIN) != 0) on_tcp();
        }
    }
    void on_udp() {
        Bytes buf(4096);
        sockaddr_in from{};
        socklen_t fl = sizeof from;
        const ssize_t n =
            ::recvfrom(udp_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
        if (n <= 0) return;
        ++udp_queries;
        {
            const std::lock_guard<std::mutex> lock(mu_);
            ports_.insert(ntohs(from.sin_port));
        }
        const ByteView q = ByteView(buf).first(static_cast<std::size_t>(n));
        const std::string name = qname(q);
        auto send = [&](const Bytes& b) {
            ::sendto(udp_, b.data(), b.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
        };
        if (name.rfind("silent", 0) == 0) return;
        if (name.rfind("tc", 0) == 0) return send(answer(q, true, 0));
        if (name.rfind("big", 0) == 0) return send(answer(q, false, 5));
        if (name.rfind("spoof", 0) == 0) send(answer(q, false, 0, 1));
        send(answer(q, false, 0));
    }
    void on_tcp() {
        const int c = ::accept(tcp_, nullptr, nullptr);
        if (c < 0) return;
        Bytes buf(4096);
        std::size_t have = 0;
        while (have < 2 || have < 2 + std::size_t{load_be16(buf.data())}) {
            const ssize_t n = ::recv(c, buf.data() + have, buf.size() - have, 0);
            if (n <= 0) break;
            have += static_cast<std::size_t>(n);
        }
        if (have >= 2) {
            ++tcp_queries;
            const Bytes a =
                answer(ByteView(buf).subspan(2, std::size_t{load_be16(buf.data())}), false, 5);
            Bytes out;
            put16(out, static_cast<std::uint16_t>(a.size()));
            out.insert(out.end(), a.begin(), a.end());
            ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
        }
        ::close(c);
    }
    std::mutex mu_;
    std::set<std::uint16_t> ports_;
    int udp_ = -1, tcp_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// A UDP socket bound to a free port of 127.0.0.1 (in `fd`), and that port.
std::uint16_t bound_udp_port(int& fd) {
    fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

struct Reply {
    GuestEndpoint to;
    Bytes msg;
};

class Sink final : public ReplySink {
  public:
    void dispatch_dns_reply(const GuestEndpoint& to, ByteView msg) noexcept override {
        replies.push_back({to, Bytes(msg.begin(), msg.end())});
    }
    void flush_dns_replies() noexcept override { ++flushes; }
    std::vector<Reply> replies;
    int flushes = 0;
};

GuestEndpoint guest(std::uint16_t port = 40000) {
    return GuestEndpoint{.mac = MacAddr{{0x52, 0x54, 0, 0, 0, 2}},
                         .vlan = std::nullopt,
                         .ip = Ipv4Addr::from_octets(192, 168, 127, 2),
                         .port = port,
                         .local = Ipv4Addr::from_octets(192, 168, 127, 1),
                         .stream = 0};
}

class ForwarderTest : public ::testing::Test {
  protected:
    ForwarderConfig base() {
        ForwarderConfig c;
        c.gateway = Ipv4Addr::from_octets(192, 168, 127, 1);
        c.host_alias = Ipv4Addr::from_octets(192, 168, 127, 254);
        c.upstreams.push_back(*parse_upstream(up.addr()));
        c.timeout = 400ms;
        c.hedge = 60ms;
        return c;
    }
    std::unique_ptr<Forwarder> make(ForwarderConfig c) {
        std::string err;
        auto f = Forwarder::create(io, std::move(c), sink, err);
        EXPECT_TRUE(f.has_value()) << err;
        return f ? std::move(*f) : nullptr;
    }
    // Runs the loop until `n` replies arrived or `limit` passed.
    void wait_replies(std::size_t n, std::chrono::milliseconds limit = 2000ms) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (sink.replies.size() < n && std::chrono::steady_clock::now() < end) {
            io.restart();
            io.run_for(5ms);
        }
    }
    static MessageView view(const Reply& r) {
        auto m = MessageView::parse(r.msg);
        EXPECT_TRUE(m.has_value());
        return *m;
    }
    static std::vector<std::string> a_records(const MessageView& m) {
        std::vector<std::string> out;
        for (const Rr& rr : m.rrs()) {
            if (rr.type != rrtype::a || rr.rdata.size() != 4) continue;
            char buf[INET_ADDRSTRLEN];
            ::inet_ntop(AF_INET, rr.rdata.data(), buf, sizeof buf);
            out.emplace_back(buf);
        }
        return out;
    }

    FakeUpstream up;
    IoContext io;
    Sink sink;
};

TEST_F(ForwarderTest, AnswersLocalNames) {
    auto c = base();
    c.records.push_back({"Build.Example", Ipv4Addr::from_octets(10, 0, 0, 9)});
    c.domain = "lan.test";
    c.host_lookup = [](std::string_view h) -> std::optional<Ipv4Addr> {
        if (h == "db") return Ipv4Addr::from_octets(192, 168, 127, 50);
        return std::nullopt;
    };
    auto f = make(std::move(c));
    const struct {
        const char* name;
        std::uint16_t type;
        Rcode rcode;
        const char* addr;
    } cases[] = {
        {"host.containers.internal", rrtype::a, Rcode::noerror, "192.168.127.254"},
        {"HOST.docker.internal", rrtype::a, Rcode::noerror, "192.168.127.254"},
        {"host.slipway.internal", rrtype::a, Rcode::noerror, "192.168.127.254"},
        {"gateway.slipway.internal", rrtype::a, Rcode::noerror, "192.168.127.1"},
        {"gateway.containers.internal", rrtype::a, Rcode::noerror, "192.168.127.1"},
        {"build.example.", rrtype::a, Rcode::noerror, "10.0.0.9"},
        {"db.lan.test", rrtype::a, Rcode::noerror, "192.168.127.50"},
        {"db.slipway.internal", rrtype::a, Rcode::noerror, "192.168.127.50"},
        {"host.slipway.internal", rrtype::aaaa, Rcode::noerror, nullptr},
        {"nothing.slipway.internal", rrtype::a, Rcode::nxdomain, nullptr},
    };
    std::uint16_t id = 100;
    for (const auto& k : cases) {
        sink.replies.clear();
        f->process_query(query(++id, k.name, k.type), guest());
        ASSERT_EQ(sink.replies.size(), 1U) << k.name;
        const MessageView m = view(sink.replies[0]);
        EXPECT_EQ(m.id(), id);
        EXPECT_EQ(m.rcode(), k.rcode) << k.name;
        EXPECT_TRUE(m.header().aa);
        const auto a = a_records(m);
        if (k.addr) {
            ASSERT_EQ(a.size(), 1U) << k.name;
            EXPECT_EQ(a[0], k.addr);
        } else {
            EXPECT_TRUE(a.empty()) << k.name;
        }
    }
    EXPECT_EQ(f->counters().local_answers.get(), std::size(cases));
    EXPECT_EQ(up.udp_queries.load(), 0);
    // Names added at run time, and removed again.
    ASSERT_TRUE(f->add_record("vm7.example", Ipv4Addr::from_octets(10, 7, 7, 7)));
    sink.replies.clear();
    f->process_query(query(1, "vm7.example"), guest());
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(a_records(view(sink.replies[0])), std::vector<std::string>{"10.7.7.7"});
    EXPECT_TRUE(f->remove_record("VM7.example"));
    EXPECT_FALSE(f->add_record("bad..name", Ipv4Addr{}));
}

TEST_F(ForwarderTest, ForwardsThenServesFromCacheWithTheQueriersIdAndCase) {
    auto f = make(base());
    f->process_query(query(0x1234, "www.example.com"), guest());
    EXPECT_TRUE(sink.replies.empty());
    wait_replies(1);
    ASSERT_EQ(sink.replies.size(), 1U);
    MessageView m = view(sink.replies[0]);
    EXPECT_EQ(m.id(), 0x1234);
    EXPECT_EQ(a_records(m), std::vector<std::string>{"10.1.2.3"});
    EXPECT_EQ(sink.replies[0].to.port, 40000);
    EXPECT_GE(sink.flushes, 1);
    EXPECT_EQ(up.udp_queries.load(), 1);

    f->process_query(query(0x4321, "WWW.Example.COM"), guest(40001));
    ASSERT_EQ(sink.replies.size(), 2U);  // synchronously, from the cache
    m = view(sink.replies[1]);
    EXPECT_EQ(m.id(), 0x4321);
    EXPECT_TRUE(m.question()->name.equals("WWW.Example.COM"));
    std::array<std::byte, kMaxNameLen> wire{};
    ASSERT_TRUE(m.question()->name.read(wire).has_value());
    EXPECT_EQ(static_cast<char>(wire[1]), 'W');  // the querier's spelling, not the first one's
    EXPECT_EQ(a_records(m), std::vector<std::string>{"10.1.2.3"});
    EXPECT_EQ(f->counters().cache_hits.get(), 1U);
    EXPECT_EQ(up.udp_queries.load(), 1);
    // A different type is a different question.
    f->process_query(query(7, "www.example.com", rrtype::aaaa), guest());
    wait_replies(3);
    EXPECT_EQ(up.udp_queries.load(), 2);
}

TEST_F(ForwarderTest, TruncatedAnswerIsRetriedOverTcp) {
    auto f = make(base());
    f->process_query(query(9, "tc.example", rrtype::txt, true, 1232), guest());
    wait_replies(1);
    ASSERT_EQ(sink.replies.size(), 1U);
    const MessageView m = view(sink.replies[0]);
    EXPECT_FALSE(m.header().tc);
    EXPECT_EQ(m.header().ancount, 1);
    EXPECT_GT(m.size(), 1000U);
    EXPECT_EQ(up.tcp_queries.load(), 1);
    EXPECT_EQ(f->counters().tcp_retries.get(), 1U);
}

TEST_F(ForwarderTest, AnswerTooLargeForTheClientGoesBackTruncated) {
    auto f = make(base());
    f->process_query(query(10, "big.example", rrtype::txt), guest());  // no EDNS: 512 bytes
    wait_replies(1);
    ASSERT_EQ(sink.replies.size(), 1U);
    const MessageView m = view(sink.replies[0]);
    EXPECT_TRUE(m.header().tc);
    EXPECT_EQ(m.id(), 10);
    EXPECT_LE(m.size(), 512U);
    EXPECT_EQ(f->counters().truncated.get(), 1U);
}

TEST_F(ForwarderTest, RefusingUpstreamGivesServfailAtOnce) {
    // A port nobody listens on: the kernel answers ICMP port unreachable, the socket reports
    // ECONNREFUSED, and the guest hears SERVFAIL without waiting for the timeout.
    int s = -1;
    const std::uint16_t port = bound_udp_port(s);
    ::close(s);
    auto c = base();
    c.upstreams = {*parse_upstream("127.0.0.1:" + std::to_string(port))};
    c.timeout = 1500ms;
    auto f = make(std::move(c));
    const auto t0 = std::chrono::steady_clock::now();
    f->process_query(query(11, "www.example.com"), guest());
    wait_replies(1);
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
    EXPECT_EQ(view(sink.replies[0]).rcode(), Rcode::servfail);
    EXPECT_EQ(f->counters().servfail.get(), 1U);
}

TEST_F(ForwarderTest, RefusingUpstreamIsSkippedForTheNextOne) {
    int s = -1;
    const std::uint16_t port = bound_udp_port(s);
    ::close(s);
    auto c = base();
    c.upstreams = {*parse_upstream("127.0.0.1:" + std::to_string(port)),
                   *parse_upstream(up.addr())};
    c.timeout = 1500ms;
    c.hedge = 1000ms;  // the refusal, not the hedge, must move the query on
    auto f = make(std::move(c));
    for (std::uint16_t id = 40; id < 44; ++id) {
        sink.replies.clear();
        const auto t0 = std::chrono::steady_clock::now();
        f->process_query(query(id, "www" + std::to_string(id) + ".example"), guest());
        wait_replies(1);
        ASSERT_EQ(sink.replies.size(), 1U) << id;
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms) << id;
        EXPECT_EQ(a_records(view(sink.replies[0])), std::vector<std::string>{"10.1.2.3"}) << id;
    }
}

TEST_F(ForwarderTest, SilentUpstreamGivesServfailAtTheTimeout) {
    auto f = make(base());
    const auto t0 = std::chrono::steady_clock::now();
    f->process_query(query(12, "silent.example"), guest());
    wait_replies(1);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(view(sink.replies[0]).rcode(), Rcode::servfail);
    EXPECT_GE(took, 350ms);
    EXPECT_LT(took, 1500ms);
    // Nothing was cached: the next one asks again.
    f->process_query(query(13, "silent.example"), guest());
    EXPECT_EQ(sink.replies.size(), 1U);
    wait_replies(2);
    EXPECT_EQ(up.udp_queries.load(), 2);
}

TEST_F(ForwarderTest, SecondUpstreamIsAskedWhenTheFirstIsSlow) {
    FakeUpstream second;
    auto c = base();
    // The first upstream is a black hole: a bound socket that never reads or answers.
    int hole = -1;
    const std::uint16_t port = bound_udp_port(hole);
    c.upstreams = {*parse_upstream("127.0.0.1:" + std::to_string(port)),
                   *parse_upstream(second.addr())};
    c.timeout = 1500ms;
    auto f = make(std::move(c));
    const auto t0 = std::chrono::steady_clock::now();
    f->process_query(query(14, "www.example.com"), guest());
    wait_replies(1);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(a_records(view(sink.replies[0])), std::vector<std::string>{"10.1.2.3"});
    EXPECT_LT(took, 1000ms);  // the hedge (60 ms), not the timeout
    EXPECT_EQ(second.udp_queries.load(), 1);
    ::close(hole);
}

TEST_F(ForwarderTest, ManyQueriesInFlightShareAFewRotatingSockets) {
    auto f = make(base());
    constexpr int kQueries = 200;  // fits the fake upstream's default receive buffer at once
    for (int i = 0; i < kQueries; ++i)
        f->process_query(
            query(static_cast<std::uint16_t>(1000 + i), "n" + std::to_string(i) + ".example"),
            guest(static_cast<std::uint16_t>(20000 + i)));
    wait_replies(kQueries, 5000ms);
    ASSERT_EQ(sink.replies.size(), static_cast<std::size_t>(kQueries));
    std::set<int> seen;
    for (const Reply& r : sink.replies) {
        const MessageView m = view(r);
        const int i = m.id() - 1000;
        ASSERT_EQ(r.to.port, 20000 + i);  // each answer went to the guest that asked
        EXPECT_TRUE(m.question()->name.equals("n" + std::to_string(i) + ".example"));
        EXPECT_EQ(a_records(m), std::vector<std::string>{"10.1.2.3"});
        seen.insert(i);
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kQueries));
    // At most 64 queries per socket: at least 4 source ports; sockets are shared, so far fewer
    // ports than queries.
    const auto ports = up.source_ports();
    EXPECT_GE(ports.size(), 4U);
    EXPECT_LE(ports.size(), 40U);
    EXPECT_EQ(f->counters().upstream_answers.get(), static_cast<std::uint64_t>(kQueries));
}

TEST_F(ForwarderTest, OneGuestCannotTakeTheWholePendingTable) {
    auto c = base();
    c.max_pending = 64;  // a guest's share: 16
    c.timeout = 1000ms;
    auto f = make(std::move(c));
    GuestEndpoint greedy = guest(30000);
    greedy.ip = Ipv4Addr::from_octets(192, 168, 127, 66);
    for (int i = 0; i < 20; ++i)
        f->process_query(query(static_cast<std::uint16_t>(i), "silent" + std::to_string(i) + ".x"),
                         greedy);
    // Past its share the greedy guest hears SERVFAIL at once; the others are still served.
    ASSERT_EQ(sink.replies.size(), 4U);
    for (const Reply& r : sink.replies)
        EXPECT_EQ(view(r).rcode(), Rcode::servfail);
    EXPECT_EQ(f->counters().drop_busy.get(), 4U);
    f->process_query(query(99, "www.example.com"), guest());
    wait_replies(5);
    ASSERT_EQ(sink.replies.size(), 5U);
    EXPECT_EQ(view(sink.replies[4]).id(), 99);
    EXPECT_EQ(a_records(view(sink.replies[4])), std::vector<std::string>{"10.1.2.3"});
    // Once its queries time out, the greedy guest gets its share back.
    wait_replies(5 + 16, 3000ms);
    sink.replies.clear();
    f->process_query(query(100, "www.example.com"), greedy);  // cached now
    f->process_query(query(101, "other.example"), greedy);
    wait_replies(2);
    ASSERT_EQ(sink.replies.size(), 2U);
    EXPECT_EQ(a_records(view(sink.replies[1])), std::vector<std::string>{"10.1.2.3"});
}

TEST_F(ForwarderTest, SpoofedIdIsIgnored) {
    auto f = make(base());
    f->process_query(query(15, "spoof.example"), guest());
    wait_replies(1);
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(view(sink.replies[0]).id(), 15);
    EXPECT_EQ(a_records(view(sink.replies[0])), std::vector<std::string>{"10.1.2.3"});
    EXPECT_GE(f->counters().upstream_errors.get(), 1U);
}

TEST_F(ForwarderTest, MalformedQueriesAreCountedAndAnsweredWhenPossible) {
    auto f = make(base());
    const Bytes short_msg = {std::byte{1}, std::byte{2}, std::byte{3}};
    f->process_query(short_msg, guest());
    EXPECT_TRUE(sink.replies.empty());
    // A question name that is a pointer to itself (a compression loop).
    Bytes loop = query(16, "a.example");
    loop.resize(kHeaderLen);
    put16(loop, 0xc00c);
    put16(loop, rrtype::a);
    put16(loop, kClassIn);
    f->process_query(loop, guest());
    ASSERT_EQ(sink.replies.size(), 1U);
    const auto h = Header::parse(sink.replies[0].msg);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->rcode, Rcode::formerr);
    EXPECT_EQ(h->id, 16);
    // A response (QR set) is never answered.
    Bytes resp = query(17, "a.example");
    resp[2] = std::byte{0x81};
    f->process_query(resp, guest());
    EXPECT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(f->counters().drop_malformed.get(), 3U);
    EXPECT_EQ(up.udp_queries.load(), 0);
}

TEST_F(ForwarderTest, ServesAStreamSession) {
    auto f = make(base());
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ASSERT_TRUE(f->serve_stream(UniqueFd(sv[0])).has_value());
    // Two queries in one write, the second one split: a local name and a forwarded one.
    Bytes out;
    for (const Bytes& q : {query(21, "gateway.slipway.internal"), query(22, "tc.example")}) {
        put16(out, static_cast<std::uint16_t>(q.size()));
        out.insert(out.end(), q.begin(), q.end());
    }
    ASSERT_EQ(::send(sv[1], out.data(), out.size() - 5, 0), static_cast<ssize_t>(out.size() - 5));
    io.restart();
    io.run_for(20ms);
    ASSERT_EQ(::send(sv[1], out.data() + out.size() - 5, 5, 0), 5);
    std::vector<Bytes> answers;
    Bytes buf;
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (answers.size() < 2 && std::chrono::steady_clock::now() < end) {
        io.restart();
        io.run_for(5ms);
        std::array<std::byte, 4096> tmp{};
        const ssize_t n = ::recv(sv[1], tmp.data(), tmp.size(), MSG_DONTWAIT);
        if (n > 0) buf.insert(buf.end(), tmp.begin(), tmp.begin() + n);
        while (buf.size() >= 2 && buf.size() >= 2 + std::size_t{load_be16(buf.data())}) {
            const std::size_t l = load_be16(buf.data());
            answers.emplace_back(buf.begin() + 2, buf.begin() + 2 + static_cast<std::ptrdiff_t>(l));
            buf.erase(buf.begin(), buf.begin() + 2 + static_cast<std::ptrdiff_t>(l));
        }
    }
    ASSERT_EQ(answers.size(), 2U);
    const auto a0 = MessageView::parse(answers[0]);
    const auto a1 = MessageView::parse(answers[1]);
    ASSERT_TRUE(a0 && a1);
    EXPECT_EQ(a0->id(), 21);
    EXPECT_EQ(a_records(*a0), std::vector<std::string>{"192.168.127.1"});
    EXPECT_EQ(a1->id(), 22);
    EXPECT_FALSE(a1->header().tc);  // a stream takes the whole answer (fetched over TCP)
    EXPECT_GT(a1->size(), 1000U);
    EXPECT_TRUE(sink.replies.empty());
    EXPECT_EQ(f->counters().streams.get(), 1U);
    ::close(sv[1]);
}

TEST(Upstream, ParsesAddressesAndPorts) {
    EXPECT_EQ(parse_upstream("192.0.2.1")->text, "192.0.2.1:53");
    EXPECT_EQ(parse_upstream("192.0.2.1:5353")->text, "192.0.2.1:5353");
    EXPECT_EQ(parse_upstream("2001:db8::1")->text, "[2001:db8::1]:53");
    EXPECT_EQ(parse_upstream("[2001:db8::1]:5353")->text, "[2001:db8::1]:5353");
    EXPECT_EQ(parse_upstream("[::1]")->family(), AF_INET6);
    for (const char* bad : {"", "dns.google", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:x",
                            "[192.0.2.1]:53", "[::1", "[::1]53", "1.2.3.4.5", "[::1]:"})
        EXPECT_FALSE(parse_upstream(bad).has_value()) << bad;
}

TEST(Upstream, ReadsResolvConf) {
    std::vector<std::string> skipped;
    const auto v = parse_resolv_conf(
        "# comment\nsearch example.org\nnameserver 192.0.2.53 # trailing\n"
        "nameserver\t2001:db8::53\n  nameserver fe80::1%eth0\nnameserver bogus\n"
        ";nameserver 192.0.2.99\noptions ndots:2\n",
        &skipped);
    ASSERT_EQ(v.size(), 2U);
    EXPECT_EQ(v[0].text, "192.0.2.53:53");
    EXPECT_EQ(v[1].text, "[2001:db8::53]:53");
    EXPECT_EQ(skipped, (std::vector<std::string>{"fe80::1%eth0", "bogus"}));
}

TEST_F(ForwarderTest, RereadsResolvConfWhenItChanges) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("slw-resolv-" + std::to_string(::getpid()) + ".conf");
    std::ofstream(path) << "nameserver 192.0.2.1\n";
    auto c = base();
    c.upstreams.clear();
    c.resolv_conf = path.string();
    c.resolv_poll = 20ms;
    auto f = make(std::move(c));
    EXPECT_EQ(f->upstreams(), std::vector<std::string>{"192.0.2.1:53"});
    std::ofstream(path) << "nameserver 192.0.2.2\nnameserver 192.0.2.3\n";
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (f->upstreams().size() != 2 && std::chrono::steady_clock::now() < end) {
        io.restart();
        io.run_for(10ms);
    }
    EXPECT_EQ(f->upstreams(), (std::vector<std::string>{"192.0.2.2:53", "192.0.2.3:53"}));
    std::filesystem::remove(path);
    // Gone: no upstream, so SERVFAIL at once rather than silence.
    const auto end2 = std::chrono::steady_clock::now() + 2s;
    while (!f->upstreams().empty() && std::chrono::steady_clock::now() < end2) {
        io.restart();
        io.run_for(10ms);
    }
    EXPECT_TRUE(f->upstreams().empty());
    f->process_query(query(30, "www.example.com"), guest());
    ASSERT_EQ(sink.replies.size(), 1U);
    EXPECT_EQ(view(sink.replies[0]).rcode(), Rcode::servfail);
}

}  // namespace
}  // namespace slipway::dns
