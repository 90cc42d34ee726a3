// nat::UdpEngine against fake datagram sockets, poller and link (fake_dgram.hpp): one connected
// socket per guest flow (the host alias meaning 127.0.0.1), reused for the flow's life; a burst's
// datagrams gathered into one send per flow in order; host datagrams as frames with correct
// Ethernet, IPv4 and UDP headers and checksums (or partial-checksum offload), as IPv4 fragments
// that reassemble when larger than the MTU; ICMP errors from the socket's error queue relayed
// with the guest's datagram quoted; port unreachable from the gateway's own addresses; policy
// refusals (code 13) and untranslatable destinations; per-guest caps and LRU eviction from a
// full table; idle timeouts per port class; link and pool back-pressure without loss; send
// failures; shutdown. Every frame is checked as it is taken (DgramNet::take()), and each test ends
// with every socket closed exactly once and nothing watched.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nat/fake_dgram.hpp"
#include "slipway/nat/udp.hpp"

namespace slipway::nat {
namespace {

using namespace slipway::nat::fake;

constexpr MacAddr kGuestMac2{{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}};
constexpr Ipv4Addr kGuestIp2 = Ipv4Addr::from_octets(192, 168, 127, 3);
constexpr Ipv4Addr kRouterIp = Ipv4Addr::from_octets(10, 20, 30, 40);
constexpr Ipv4Addr kHostLoopback = Ipv4Addr::from_octets(127, 0, 0, 1);

// One guest UDP flow as the test drives it.
struct UFlow {
    Endpoint guest{kGuestIp, 40000};
    Endpoint remote{kRemoteIp, 5000};
    MacAddr mac = kGuestMac;
    std::optional<wire::VlanTag> vlan;

    [[nodiscard]] FlowKey key() const {
        return FlowKey{guest.ip, remote.ip, guest.port, remote.port, IpProto::udp};
    }
};

PolicyRule rule(const char* text, PolicyAction a) {
    std::string err;
    auto r = PolicyRule::parse(text, a, err);
    EXPECT_TRUE(r.has_value()) << err;
    return r ? *r : PolicyRule{};
}

class UdpEngineTest : public ::testing::Test {
  protected:
    void SetUp() override { make(DgramNetOptions{}); }
    void TearDown() override { finish(); }

    void make(const DgramNetOptions& o) {
        finish();
        net = std::make_unique<DgramNet>(o);
    }
    // Shutdown: nothing half-sent, every socket closed exactly once, nothing watched.
    void finish() {
        if (!net) return;
        (void)take();
        EXPECT_EQ(net->incomplete_datagrams(), 0u) << "fragments of a datagram went missing";
        net->udp->reset_all();
        EXPECT_EQ(net->udp->flows(), 0u);
        EXPECT_EQ(net->table_entries(IpProto::udp), 0u);
        net->destroy_engines();
        EXPECT_EQ(net->table.size(), 0u);
        EXPECT_TRUE(net->socks.all_closed()) << "a socket left open, or closed twice";
        EXPECT_TRUE(net->poller.watched.empty()) << "an fd still watched";
        for (const std::string& v : net->socks.violations)
            ADD_FAILURE() << "DgramSockets contract: " << v;
        const ReassemblyCounters& rc = net->reasm.counters();
        EXPECT_EQ(rc.overlaps.get() + rc.duplicates.get() + rc.malformed.get() + rc.too_big.get(),
                  0u)
            << "fragments that do not fit together";
        net.reset();
    }

    // ---- guest side ----------------------------------------------------------------------------

    PacketRef frame(const UFlow& f, const Bytes& payload) {
        return build_udp_frame(net->link.pool(), f.mac, f.guest, f.remote, payload, f.vlan);
    }
    void send(const UFlow& f, const Bytes& payload) { net->send(frame(f, payload)); }
    // The flow's host socket (-1: none).
    int fd_of(const UFlow& f) {
        int fd = -1;
        net->udp->for_each_flow(net->now, [&](const UdpFlowInfo& i) {
            if (i.key == f.key()) fd = i.fd;
        });
        return fd;
    }
    // Opens `f` with one datagram and returns its socket.
    int open(const UFlow& f, std::uint32_t tag = 1) {
        send(f, pattern(tag, 32));
        const int fd = fd_of(f);
        EXPECT_GE(fd, 0) << "the first datagram must open a socket";
        return fd;
    }

    // ---- the engine's frames, checked -------------------------------------------------------

    std::vector<DgramOut> take() {
        auto v = net->take();
        for (const DgramOut& o : v) {
            EXPECT_TRUE(o.ok) << o.str();
            if (!o.ok) continue;
            EXPECT_EQ(o.eth_src, kGatewayMac);
            EXPECT_TRUE(o.ip_dst.in_prefix(kSubnet, 24)) << "not to the guest network: " << o.str();
            EXPECT_EQ(o.ttl, 64);
        }
        return v;
    }
    void expect_datagram(const DgramOut& o, const UFlow& f, const Bytes& payload) {
        EXPECT_TRUE(o.udp) << o.str();
        EXPECT_EQ(o.eth_dst, f.mac);
        EXPECT_EQ(o.vlan, f.vlan);
        EXPECT_EQ(o.ip_src, f.remote.ip) << o.str();
        EXPECT_EQ(o.ip_dst, f.guest.ip) << o.str();
        EXPECT_EQ(o.sport, f.remote.port) << o.str();
        EXPECT_EQ(o.dport, f.guest.port) << o.str();
        EXPECT_TRUE(o.payload == payload) << "payload differs: " << o.str();
    }
    // An ICMP error to the guest of `f` from `src`, quoting the guest's datagram as it sent it.
    void expect_icmp_error(const DgramOut& o, const UFlow& f, Ipv4Addr src, std::uint8_t type,
                           std::uint8_t code, const Bytes& quoted_payload) {
        ASSERT_TRUE(o.icmp) << o.str();
        EXPECT_EQ(o.icmp_type, type) << o.str();
        EXPECT_EQ(o.icmp_code, code) << o.str();
        EXPECT_EQ(o.ip_src, src) << o.str();
        EXPECT_EQ(o.ip_dst, f.guest.ip) << o.str();
        EXPECT_EQ(o.eth_dst, f.mac);
        EXPECT_EQ(o.vlan, f.vlan);
        EXPECT_FALSE(o.dont_fragment);
        EXPECT_LE(o.payload.size() + 8 + 20, 576u) << "RFC 1812 §4.3.2.3: at most 576 bytes";
        const Quote q = parse_quote(o.payload);
        ASSERT_TRUE(q.ok) << q.why;
        EXPECT_EQ(q.src, f.guest.ip) << "the quote is the guest's datagram";
        EXPECT_EQ(q.dst, f.remote.ip) << "the quote is the guest's datagram (as addressed)";
        EXPECT_EQ(q.proto, IpProto::udp);
        ASSERT_GE(q.l4.size(), 8u) << "RFC 792: the quote holds at least 8 bytes of the datagram";
        EXPECT_EQ(q.sport(), f.guest.port) << "ports as the guest sent them";
        EXPECT_EQ(q.dport(), f.remote.port) << "ports as the guest sent them";
        const Bytes tail(q.l4.begin() + 8, q.l4.end());
        ASSERT_GE(tail.size(), std::min<std::size_t>(quoted_payload.size(), 8));
        EXPECT_TRUE(std::equal(tail.begin(), tail.end(), quoted_payload.begin(),
                               quoted_payload.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                            tail.size(), quoted_payload.size()))))
            << "the quote's payload is not the datagram's";
    }

    const UdpCounters& counters() { return net->udp->counters(); }
    FakeDgramSocket& sock(int fd) { return net->socks.at(fd); }

    std::unique_ptr<DgramNet> net;
};

// ---- the checker ------------------------------------------------------------------------------

// check_frame() is what every other test relies on: it must refuse what a guest would drop.
TEST_F(UdpEngineTest, FrameCheckerRejectsBrokenFrames) {
    PacketPool& pool = net->link.pool();
    const Endpoint g{kGuestIp, 40000}, r{kRemoteIp, 5000};
    const auto mutate = [&](auto&& change) {
        PacketRef f = build_udp_frame(pool, kGuestMac, g, r, pattern(1, 100));
        change(f);
        return check_frame(f, 1500);
    };
    EXPECT_TRUE(mutate([](PacketRef&) {}).ok);
    EXPECT_FALSE(mutate([](PacketRef& f) { f.data()[14 + 28 + 50] ^= std::byte{1}; }).ok)
        << "payload changed under its checksum";
    EXPECT_FALSE(mutate([](PacketRef& f) { store_be16(f.data().data() + 14 + 26, 0); }).ok)
        << "no UDP checksum";
    EXPECT_FALSE(mutate([](PacketRef& f) { f.data()[14 + 8] = std::byte{1}; }).ok)
        << "TTL changed under the header checksum";
    EXPECT_FALSE(mutate([](PacketRef& f) { (void)f.set_len(f.len() + 2); }).ok)
        << "a frame longer than its IPv4 packet";
    EXPECT_FALSE(mutate([](PacketRef& f) {
                     f.meta().vnet.flags = virtio::kNetHdrFNeedsCsum;
                     f.meta().vnet.csum_start = 34;
                     f.meta().vnet.csum_offset = 16;
                 }).ok)
        << "partial checksum pointing elsewhere";
    EXPECT_FALSE(check_frame(build_udp_frame(pool, kGuestMac, g, r, pattern(1, 1000)), 576).ok)
        << "above the MTU";
    // A non-last fragment whose length is not a multiple of 8, and one with DF.
    Bytes frag = ipv4_packet(kRemoteIp, kGuestIp, IpProto::udp, Bytes(12, 0));
    frag[6] = 0x20;  // MF
    frag[10] = frag[11] = 0;
    put16(frag, 10, csum_finish(csum_partial(as_bytes(std::span(frag).first(20)))));
    EXPECT_FALSE(check_frame(build_ipv4_frame(pool, kGuestMac, frag), 1500).ok);
    frag = ipv4_packet(kRemoteIp, kGuestIp, IpProto::udp, Bytes(16, 0));
    frag[6] = 0x60;  // DF and MF
    frag[10] = frag[11] = 0;
    put16(frag, 10, csum_finish(csum_partial(as_bytes(std::span(frag).first(20)))));
    EXPECT_FALSE(check_frame(build_ipv4_frame(pool, kGuestMac, frag), 1500).ok);
    Bytes bad_icmp = echo(0, 1, 1, pattern(1, 10));
    bad_icmp[9] ^= 1;
    EXPECT_FALSE(
        check_frame(build_icmp_frame(pool, kGuestMac, kRemoteIp, kGuestIp, bad_icmp), 1500).ok);
}

// ---- opening and reuse ------------------------------------------------------------------------

TEST_F(UdpEngineTest, FirstDatagramOpensOneConnectedSocketLaterOnesReuseIt) {
    UFlow f;
    EXPECT_TRUE(net->udp->wants(f.remote.ip));
    const Bytes p1 = pattern(1, 100), p2 = pattern(2, 7), p3 = pattern(3, 0);
    send(f, p1);
    ASSERT_EQ(net->socks.open_calls, 1u);
    const int fd = net->socks.last_opened();
    const FakeDgramSocket& s = sock(fd);
    EXPECT_EQ(s.protocol, 0) << "a UDP socket";
    EXPECT_FALSE(s.raw);
    EXPECT_EQ(s.remote_ip(), kRemoteIp);
    EXPECT_EQ(s.remote_port(), 5000);
    const FlowId id = net->table.find(f.key());
    ASSERT_NE(id, kNoFlow);
    EXPECT_EQ(net->table.by_fd(fd), id);
    EXPECT_EQ(net->poller.id_of(fd), std::optional<FlowId>(id));
    EXPECT_EQ(fd_of(f), fd);

    send(f, p2);
    send(f, p3);
    EXPECT_EQ(net->socks.open_calls, 1u) << "later datagrams reuse the flow's socket";
    ASSERT_EQ(s.sent.size(), 3u);
    EXPECT_EQ(s.sent[0], p1);
    EXPECT_EQ(s.sent[1], p2);
    EXPECT_EQ(s.sent[2], p3);
    EXPECT_TRUE(take().empty()) << "nothing goes back to the guest";
    EXPECT_EQ(net->udp->flows(), 1u);
    EXPECT_EQ(counters().flows_opened.get(), 1u);
    EXPECT_EQ(counters().datagrams_to_host.get(), 3u);
    EXPECT_EQ(counters().bytes_to_host.get(), 107u);
}

TEST_F(UdpEngineTest, HostAliasMeansHostLoopback) {
    UFlow f;
    f.remote = Endpoint{kAliasIp, 8053};
    EXPECT_TRUE(net->udp->wants(kAliasIp));
    const int fd = open(f);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(sock(fd).remote_ip(), kHostLoopback);
    EXPECT_EQ(sock(fd).remote_port(), 8053);
    // The answer comes from 127.0.0.1; the guest sees it from the alias it talked to.
    const Bytes reply = pattern(9, 40);
    net->socks.deliver(fd, reply);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, reply);
}

TEST_F(UdpEngineTest, SeparateFlowsPerTupleAndPerGuest) {
    UFlow a, b, c;
    b.guest.port = 40001;
    c.guest = Endpoint{kGuestIp2, 40000};
    c.mac = kGuestMac2;
    const int fa = open(a), fb = open(b), fc = open(c);
    EXPECT_NE(fa, fb);
    EXPECT_NE(fa, fc);
    EXPECT_NE(fb, fc);
    EXPECT_EQ(net->udp->flows(), 3u);
    EXPECT_EQ(net->table_entries(IpProto::udp), 3u);
    // Each answer goes to its own guest endpoint only.
    net->socks.deliver(fc, pattern(30, 10));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], c, pattern(30, 10));
}

// ---- gathering
// ------------------------------------------------------------------------------------

TEST_F(UdpEngineTest, BurstOfOneFlowIsOneSendInOrder) {
    UFlow f;
    const int fd = open(f);
    std::vector<PacketRef> frames;
    std::vector<Bytes> payloads;
    for (std::uint32_t i = 0; i < 5; ++i) {
        payloads.push_back(pattern(100 + i, 20 + i));
        frames.push_back(frame(f, payloads.back()));
    }
    net->burst(std::move(frames));
    const FakeDgramSocket& s = sock(fd);
    ASSERT_EQ(s.burst_sizes.size(), 2u) << "the open, then one send_burst for the whole burst";
    EXPECT_EQ(s.burst_sizes[1], 5u);
    ASSERT_EQ(s.sent.size(), 6u);
    for (std::size_t i = 0; i < 5; ++i)
        EXPECT_EQ(s.sent[1 + i], payloads[i]) << "datagram " << i << " out of order";
}

TEST_F(UdpEngineTest, InterleavedFlowsEachKeepTheirOrder) {
    UFlow a, b;
    b.remote = Endpoint{Ipv4Addr::from_octets(198, 51, 100, 9), 6000};
    // Both flows open within the burst itself.
    std::vector<PacketRef> frames;
    std::vector<Bytes> pa, pb;
    for (std::uint32_t i = 0; i < 4; ++i) {
        pa.push_back(pattern(10 + i, 30));
        frames.push_back(frame(a, pa.back()));
        if (i < 3) {
            pb.push_back(pattern(20 + i, 31));
            frames.push_back(frame(b, pb.back()));
        }
    }
    net->burst(std::move(frames));
    const int fa = fd_of(a), fb = fd_of(b);
    ASSERT_GE(fa, 0);
    ASSERT_GE(fb, 0);
    EXPECT_EQ(net->socks.open_calls, 2u);
    EXPECT_EQ(sock(fa).burst_sizes, std::vector<std::size_t>{4});
    EXPECT_EQ(sock(fb).burst_sizes, std::vector<std::size_t>{3});
    EXPECT_EQ(sock(fa).sent, pa);
    EXPECT_EQ(sock(fb).sent, pb);
    EXPECT_EQ(counters().datagrams_to_host.get(), 7u);
}

TEST_F(UdpEngineTest, MoreThanAGatherAreaInOneBurstKeepsOrder) {
    UFlow f;
    const int fd = open(f);
    std::vector<PacketRef> frames;
    std::vector<Bytes> payloads;
    for (std::uint32_t i = 0; i < 150; ++i) {
        payloads.push_back(pattern(1000 + i, 8));
        frames.push_back(frame(f, payloads.back()));
    }
    net->burst(std::move(frames));
    ASSERT_EQ(sock(fd).sent.size(), 151u);
    for (std::size_t i = 0; i < 150; ++i)
        EXPECT_EQ(sock(fd).sent[1 + i], payloads[i]) << i;
}

// ---- host -> guest ------------------------------------------------------------------------------

TEST_F(UdpEngineTest, HostDatagramBecomesAChecksummedFrame) {
    UFlow f;
    const int fd = open(f);
    const Bytes p1 = pattern(7, 333), p2 = pattern(8, 1), p3;
    net->socks.deliver(fd, p1);
    net->socks.deliver(fd, p2);
    net->socks.deliver(fd, p3);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 3u);
    expect_datagram(out[0], f, p1);
    expect_datagram(out[1], f, p2);
    expect_datagram(out[2], f, p3);
    for (const DgramOut& o : out) {
        EXPECT_FALSE(o.needs_csum) << "the link takes no partial checksums";
        EXPECT_EQ(o.fragments, 0u);
        EXPECT_EQ(o.frame_len, 14u + 20 + 8 + o.payload.size());
    }
    EXPECT_NE(out[0].ident, out[1].ident) << "each datagram its own IPv4 identification";
    EXPECT_EQ(counters().datagrams_to_guest.get(), 3u);
    EXPECT_EQ(counters().bytes_to_guest.get(), 334u);
}

TEST_F(UdpEngineTest, ComputedZeroChecksumIsSentAsAllOnes) {
    UFlow f;
    const int fd = open(f);
    // A payload whose checksum computes to 0 (RFC 768: transmitted as 0xffff).
    Bytes d(12, 0);
    put16(d, 0, f.remote.port);
    put16(d, 2, f.guest.port);
    put16(d, 4, 12);
    d[10] = 0x12;
    d[11] = 0x34;
    const std::uint32_t pseudo = pseudo_header_sum_v4(f.remote.ip, f.guest.ip, IpProto::udp, 12);
    const std::uint16_t s = csum_fold(csum_partial(as_bytes(d), pseudo));
    put16(d, 8, static_cast<std::uint16_t>(0xffff - s));
    const Bytes payload(d.begin() + 8, d.end());
    net->socks.deliver(fd, payload);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, payload);
    EXPECT_EQ(out[0].udp_checksum, 0xffff);
}

TEST_F(UdpEngineTest, PartialChecksumWhenTheLinkTakesIt) {
    net->link.caps.partial_csum = true;
    UFlow f;
    const int fd = open(f);
    const Bytes p = pattern(5, 501);
    net->socks.deliver(fd, p);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, p);
    EXPECT_TRUE(out[0].needs_csum) << "NEEDS_CSUM with the pseudo-header sum as seed";
    EXPECT_EQ(net->link.last_port, net->in_port) << "caps asked of the guest's port";
}

TEST_F(UdpEngineTest, VlanTaggedGuestGetsTaggedFrames) {
    UFlow f;
    f.vlan = wire::VlanTag{EtherType::vlan, 0x2064};
    const int fd = open(f);
    const Bytes small = pattern(1, 1472), big = pattern(2, 3000);
    net->socks.deliver(fd, small);
    net->socks.deliver(fd, big);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 2u);
    expect_datagram(out[0], f, small);
    EXPECT_EQ(out[0].frame_len, 18u + 1500u) << "a full-MTU datagram in one tagged frame";
    expect_datagram(out[1], f, big);
    EXPECT_EQ(out[1].fragments, 3u);
}

TEST_F(UdpEngineTest, GuestThatMovedIsAnsweredWhereItIsNow) {
    UFlow f;
    const int fd = open(f);
    UFlow moved = f;
    moved.mac = kGuestMac2;
    net->in_port = 2;
    send(moved, pattern(2, 10));
    net->link.caps.partial_csum = true;
    net->socks.deliver(fd, pattern(3, 10));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], moved, pattern(3, 10));
    EXPECT_EQ(net->link.last_port, 2) << "caps of the port the guest is behind now";
    EXPECT_EQ(net->socks.open_calls, 1u);
}

// ---- fragments --------------------------------------------------------------------------------

TEST_F(UdpEngineTest, DatagramsAboveTheMtuArriveAsFragmentsThatReassemble) {
    net->link.caps.partial_csum = true;  // never for fragments
    UFlow f;
    const int fd = open(f);
    const Bytes edge = pattern(1, 1473);  // one byte too many for one frame
    const Bytes mid = pattern(2, 4000);   // beyond the receive buffer's head
    const Bytes max = pattern(3, 65507);  // the largest UDP payload over IPv4
    net->socks.deliver(fd, edge);
    net->socks.deliver(fd, mid);
    net->socks.deliver(fd, max);
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 3u);
    expect_datagram(out[0], f, edge);
    EXPECT_EQ(out[0].fragments, 2u);
    expect_datagram(out[1], f, mid);
    EXPECT_EQ(out[1].fragments, 3u);
    expect_datagram(out[2], f, max);
    EXPECT_EQ(out[2].fragments, 45u);
    EXPECT_EQ(counters().fragments_to_guest.get(), 50u);
    EXPECT_EQ(counters().datagrams_to_guest.get(), 3u);
    EXPECT_EQ(counters().bytes_to_guest.get(), 1473u + 4000 + 65507);
    EXPECT_EQ(net->fragments_taken, 50u);
}

TEST_F(UdpEngineTest, SmallMtuFragmentsEverythingAboveIt) {
    DgramNetOptions o;
    o.udp.mtu = 576;
    o.icmp.mtu = 576;
    make(o);
    UFlow f;
    const int fd = open(f);
    const Bytes fits = pattern(1, 548), big = pattern(2, 1000);
    net->socks.deliver(fd, fits);
    net->socks.deliver(fd, big);
    net->pump();
    const auto out = take();  // check_frame: no frame above 576 bytes of IP
    ASSERT_EQ(out.size(), 2u);
    expect_datagram(out[0], f, fits);
    EXPECT_EQ(out[0].fragments, 0u);
    expect_datagram(out[1], f, big);
    EXPECT_EQ(out[1].fragments, 2u);
}

TEST_F(UdpEngineTest, DatagramLongerThanTheReceiveBuffersIsDropped) {
    UFlow f;
    const int fd = open(f);
    net->socks.deliver(fd, pattern(1, 70000));
    net->socks.deliver(fd, pattern(2, 10));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, pattern(2, 10));
    EXPECT_EQ(counters().drop_truncated.get(), 1u);
}

// ---- ICMP errors from the host side ----------------------------------------------------------

TEST_F(UdpEngineTest, PortUnreachableFromTheDestinationIsRelayed) {
    UFlow f;
    const Bytes p = pattern(77, 100);
    send(f, p);
    const int fd = fd_of(f);
    ASSERT_GE(fd, 0);
    net->socks.push_error(fd, icmp_error(ECONNREFUSED, 3, 3, kRemoteIp, p));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kRemoteIp, 3, 3, Bytes(p.begin(), p.begin() + 64));
    EXPECT_EQ(out[0].icmp_rest, 0u);
    EXPECT_EQ(counters().icmp_relayed.get(), 1u);
    EXPECT_EQ(net->udp->flows(), 1u) << "an error does not end the flow";
    // The socket's pending error was consumed with the queue: the flow goes on.
    send(f, pattern(78, 5));
    EXPECT_EQ(sock(fd).sent.size(), 2u);
}

TEST_F(UdpEngineTest, ErrorFromARouterComesFromTheGateway) {
    UFlow f;
    const Bytes p = pattern(1, 20);
    send(f, p);
    const int fd = fd_of(f);
    net->socks.push_error(fd, icmp_error(EHOSTUNREACH, 3, 1, kRouterIp, p));
    net->socks.push_error(fd, icmp_error(EHOSTUNREACH, 11, 0, kRouterIp, p));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 2u);
    expect_icmp_error(out[0], f, kGatewayIp, 3, 1, p);
    expect_icmp_error(out[1], f, kGatewayIp, 11, 0, p);
    EXPECT_EQ(counters().icmp_relayed.get(), 2u);
}

TEST_F(UdpEngineTest, UnknownOffenderCountsAsTheDestination) {
    UFlow f;
    const Bytes p = pattern(1, 20);
    send(f, p);
    net->socks.push_error(fd_of(f), icmp_error(ECONNREFUSED, 3, 3, Ipv4Addr{}, p));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kRemoteIp, 3, 3, p);
}

TEST_F(UdpEngineTest, AliasFlowErrorFromHostLoopbackComesFromTheAlias) {
    UFlow f;
    f.remote = Endpoint{kAliasIp, 9999};
    const Bytes p = pattern(1, 20);
    send(f, p);
    net->socks.push_error(fd_of(f), icmp_error(ECONNREFUSED, 3, 3, kHostLoopback, p));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kAliasIp, 3, 3, p);
}

TEST_F(UdpEngineTest, FragmentationNeededCarriesTheNextHopMtu) {
    UFlow f;
    const Bytes p = pattern(1, 1400);
    send(f, p);
    net->socks.push_error(fd_of(f), icmp_error(EMSGSIZE, 3, 4, kRouterIp, p, 1280));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kGatewayIp, 3, 4, p);
    EXPECT_EQ(out[0].icmp_rest, 1280u) << "RFC 1191: Next-Hop MTU in the low 16 bits";
}

TEST_F(UdpEngineTest, LocalErrorsAndOtherIcmpTypesAreNotRelayed) {
    UFlow f;
    const Bytes p = pattern(1, 20);
    send(f, p);
    const int fd = fd_of(f);
    SockError local;
    local.err = EMSGSIZE;
    local.from_icmp = false;
    net->socks.push_error(fd, local);
    net->socks.push_error(fd, icmp_error(0, 5, 1, kRouterIp, p));  // a redirect
    net->pump();
    EXPECT_TRUE(take().empty());
    EXPECT_EQ(counters().icmp_relayed.get(), 0u);
    EXPECT_TRUE(sock(fd).errq.empty()) << "the queue is drained all the same";
}

TEST_F(UdpEngineTest, PendingErrorBeforeDataLosesNoData) {
    UFlow f;
    const int fd = open(f);
    // sk_err set without a queued entry: recv reports it first, then the data comes.
    sock(fd).so_error = ECONNREFUSED;
    net->socks.deliver(fd, pattern(5, 50));
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, pattern(5, 50));
}

// ---- refusals ---------------------------------------------------------------------------------

TEST_F(UdpEngineTest, GatewayOwnAddressAnswersPortUnreachable) {
    UFlow f;
    f.remote = Endpoint{kGatewayIp, 9999};
    EXPECT_TRUE(net->udp->wants(kGatewayIp));
    const Bytes p = pattern(1, 48);
    send(f, p);
    EXPECT_EQ(net->socks.open_calls, 0u) << "no socket for the gateway's own address";
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kGatewayIp, 3, 3, p);
    const Quote q = parse_quote(out[0].payload);
    EXPECT_EQ(q.total_len, 20u + 8 + 48) << "the guest's datagram quoted whole";
    EXPECT_EQ(q.l4, udp_datagram(f.guest.ip, f.guest.port, f.remote.ip, f.remote.port, p));
    EXPECT_EQ(counters().port_unreachable.get(), 1u);
    EXPECT_EQ(net->udp->flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
}

TEST_F(UdpEngineTest, LongDatagramToTheGatewayIsQuotedWithin576Bytes) {
    UFlow f;
    f.remote = Endpoint{kGatewayIp, 9999};
    const Bytes p = pattern(1, 1400);
    send(f, p);
    const auto out = take();
    ASSERT_EQ(out.size(), 1u);
    expect_icmp_error(out[0], f, kGatewayIp, 3, 3, p);
    EXPECT_EQ(out[0].payload.size() + 8 + 20, 576u);
}

TEST_F(UdpEngineTest, PolicyDenyAnswersAdministrativelyProhibited) {
    DgramNetOptions o;
    o.policy = std::vector<PolicyRule>{rule("198.51.100.0/24", PolicyAction::deny)};
    std::string err;
    o.alias_ports = *PortSet::parse("22", err);
    make(o);
    struct Case {
        Endpoint remote;
        bool denied;
    };
    const Case cases[] = {
        {{Ipv4Addr::from_octets(198, 51, 100, 7), 5000}, true},
        {{kCloudMetadataAddr, 80}, true},  // the built-in rule
        {{kAliasIp, 8080}, true},          // --host-alias-ports 22
        {{kAliasIp, 22}, false},
        {{kRemoteIp, 5000}, false},
    };
    std::uint16_t port = 41000;
    std::uint64_t denied = 0;
    for (const Case& c : cases) {
        UFlow f;
        f.guest.port = port++;
        f.remote = c.remote;
        const Bytes p = pattern(port, 24);
        const std::uint32_t opens = net->socks.open_calls;
        send(f, p);
        const auto out = take();
        if (c.denied) {
            ++denied;
            EXPECT_EQ(net->socks.open_calls, opens) << c.remote.ip.to_string();
            ASSERT_EQ(out.size(), 1u);
            expect_icmp_error(out[0], f, kGatewayIp, 3, 13, p);
        } else {
            EXPECT_EQ(net->socks.open_calls, opens + 1) << c.remote.ip.to_string();
            EXPECT_TRUE(out.empty());
        }
    }
    EXPECT_EQ(counters().denied_policy.get(), denied);
    EXPECT_EQ(net->udp->flows(), 2u);
}

TEST_F(UdpEngineTest, UntranslatableDestinationsAreDroppedAndCounted) {
    const Ipv4Addr dsts[] = {
        Ipv4Addr::from_octets(224, 0, 0, 251),      // multicast
        Ipv4Addr::from_octets(255, 255, 255, 255),  // broadcast
        Ipv4Addr::from_octets(192, 168, 127, 7),    // the guest network
        Ipv4Addr::from_octets(127, 0, 0, 1),        // someone else's loopback
        Ipv4Addr{},                                 // unspecified
    };
    EXPECT_FALSE(net->udp->wants(dsts[0]));
    EXPECT_FALSE(net->udp->wants(dsts[1]));
    EXPECT_FALSE(net->udp->wants(dsts[2]));
    for (const Ipv4Addr d : dsts) {
        UFlow f;
        f.remote = Endpoint{d, 5353};
        send(f, pattern(1, 10));
    }
    EXPECT_TRUE(take().empty()) << "dropped silently";
    EXPECT_EQ(net->socks.open_calls, 0u);
    EXPECT_EQ(counters().denied.get(), 5u);
    EXPECT_EQ(net->table.size(), 0u);
}

TEST_F(UdpEngineTest, PortZeroIsMalformed) {
    UFlow a, b;
    a.guest.port = 0;
    b.remote.port = 0;
    send(a, pattern(1, 10));
    send(b, pattern(1, 10));
    EXPECT_EQ(net->socks.open_calls, 0u);
    EXPECT_EQ(counters().drop_malformed.get(), 2u);
    EXPECT_TRUE(take().empty());
}

TEST_F(UdpEngineTest, SocketFailuresAnswerUnreachableWhenRoutingSaysSo) {
    struct Case {
        int err;
        std::optional<std::uint8_t> code;
    };
    const Case cases[] = {{-ENETUNREACH, 0}, {-EHOSTUNREACH, 1}, {-EMFILE, std::nullopt}};
    std::uint16_t port = 42000;
    for (const Case& c : cases) {
        UFlow f;
        f.guest.port = port++;
        const Bytes p = pattern(port, 16);
        net->socks.open_script.push_back(c.err);
        send(f, p);
        const auto out = take();
        if (c.code) {
            ASSERT_EQ(out.size(), 1u);
            expect_icmp_error(out[0], f, kGatewayIp, 3, *c.code, p);
        } else {
            EXPECT_TRUE(out.empty());
        }
        EXPECT_EQ(net->table.size(), 0u);
        EXPECT_EQ(net->udp->flows(), 0u);
    }
    EXPECT_EQ(counters().socket_failed.get(), 3u);
    // The next datagram tries again, and succeeds.
    UFlow f;
    EXPECT_GE(open(f), 0);
}

TEST_F(UdpEngineTest, PollerRefusalClosesTheSocket) {
    net->poller.refuse = true;
    UFlow f;
    send(f, pattern(1, 10));
    ASSERT_EQ(net->socks.opened.size(), 1u);
    EXPECT_TRUE(sock(net->socks.last_opened()).closed);
    EXPECT_EQ(counters().socket_failed.get(), 1u);
    EXPECT_EQ(net->table.size(), 0u);
    net->poller.refuse = false;
}

// ---- limits -----------------------------------------------------------------------------------

TEST_F(UdpEngineTest, PerGuestCapRefusesNewFlows) {
    DgramNetOptions o;
    o.limits = LimitsConfig{.max_flows_per_guest = 2};
    make(o);
    UFlow a, b, c, other;
    b.guest.port = 40001;
    c.guest.port = 40002;
    other.guest = Endpoint{kGuestIp2, 40000};
    other.mac = kGuestMac2;
    open(a);
    open(b);
    send(c, pattern(3, 10));
    EXPECT_EQ(fd_of(c), -1);
    EXPECT_EQ(net->socks.open_calls, 2u);
    EXPECT_EQ(counters().drop_limit.get(), 1u);
    EXPECT_EQ(net->limits->counters().guest_cap.get(), 1u);
    EXPECT_EQ(net->limits->flows_of(kGuestIp), 2u);
    EXPECT_TRUE(take().empty()) << "a silent drop";
    // Existing flows go on; another guest is not affected.
    send(a, pattern(4, 10));
    EXPECT_EQ(sock(fd_of(a)).sent.size(), 2u);
    EXPECT_GE(open(other), 0);
    // When a flow of the guest goes, the guest may open another.
    net->tick(180'000);
    EXPECT_EQ(net->limits->flows_of(kGuestIp), 0u);
    EXPECT_GE(open(c), 0);
    EXPECT_EQ(net->limits->flows_of(kGuestIp), 1u);
}

TEST_F(UdpEngineTest, NewFlowRateLimitDropsTheFirstDatagram) {
    DgramNetOptions o;
    o.limits = LimitsConfig{.new_flows_per_sec = 1, .new_flows_burst = 1};
    make(o);
    UFlow a, b;
    b.guest.port = 40001;
    open(a);
    send(b, pattern(2, 10));
    EXPECT_EQ(fd_of(b), -1);
    EXPECT_EQ(counters().drop_limit.get(), 1u);
    EXPECT_EQ(net->limits->counters().rate.get(), 1u);
    net->now += 1000;
    EXPECT_GE(open(b), 0);
}

TEST_F(UdpEngineTest, FullTableEvictsTheLeastRecentlyActiveIdleFlow) {
    DgramNetOptions o;
    o.table.capacity = 2;
    o.limits = LimitsConfig{};
    make(o);
    UFlow a, b, c, d;
    b.guest.port = 40001;
    c.guest.port = 40002;
    d.guest.port = 40003;
    const int fa = open(a);
    net->now += 500;
    const int fb = open(b);
    net->now += 600;  // a idle 1100 ms, b 600 ms
    const int fc = open(c);
    ASSERT_GE(fc, 0) << "a full table makes room";
    EXPECT_TRUE(sock(fa).closed) << "a, idle longest, was evicted";
    EXPECT_FALSE(net->poller.is_watched(fa));
    EXPECT_EQ(net->table.find(a.key()), kNoFlow);
    EXPECT_FALSE(sock(fb).closed);
    EXPECT_EQ(counters().flows_evicted.get(), 1u);
    EXPECT_EQ(net->limits->counters().evicted.get(), 1u);

    // b idle 600 ms and c just opened: nothing idle long enough (evict_min_idle_ms), refused.
    send(d, pattern(4, 10));
    EXPECT_EQ(fd_of(d), -1);
    EXPECT_EQ(counters().drop_limit.get(), 1u);
    EXPECT_EQ(net->limits->counters().table_full.get(), 1u);
    EXPECT_EQ(net->udp->flows(), 2u);

    // Activity either way counts: b hears from its peer, so c is the one idle longest.
    net->now += 5000;
    net->socks.deliver(fb, pattern(5, 10));
    net->pump();
    (void)take();
    net->now += 1000;
    const int fd = open(d);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(sock(fc).closed) << "c was idle longest";
    EXPECT_FALSE(sock(fb).closed);
    EXPECT_EQ(counters().flows_evicted.get(), 2u);
}

TEST_F(UdpEngineTest, EvictIdleSparesRecentFlowsAndFindsNothingWhenEmpty) {
    EXPECT_FALSE(net->udp->evict_idle(net->now));
    UFlow f;
    open(f);
    EXPECT_FALSE(net->udp->evict_idle(net->now + 999));
    EXPECT_TRUE(net->udp->evict_idle(net->now + 1000));
    EXPECT_EQ(net->udp->flows(), 0u);
}

// ---- timeouts ---------------------------------------------------------------------------------

TEST_F(UdpEngineTest, IdleFlowIsFreedByOnTick) {
    UFlow f;
    const int fd = open(f);
    const FlowId id = net->table.find(f.key());
    net->tick(179'999);
    EXPECT_FALSE(sock(fd).closed);
    EXPECT_EQ(net->udp->flows(), 1u);
    net->tick(1);
    EXPECT_TRUE(sock(fd).closed);
    EXPECT_FALSE(net->poller.is_watched(fd));
    EXPECT_FALSE(net->table.in_use(id));
    EXPECT_EQ(net->table.find(f.key()), kNoFlow);
    EXPECT_EQ(net->table.by_fd(fd), kNoFlow);
    EXPECT_EQ(net->udp->flows(), 0u);
    EXPECT_EQ(counters().flows_expired.get(), 1u);
    // A stale event for the freed flow is ignored.
    net->udp->process_socket_event(id, sock_event::in, net->now);
    // The next datagram opens a new socket.
    const int fd2 = open(f, 2);
    EXPECT_NE(fd2, fd);
}

TEST_F(UdpEngineTest, DnsAndNtpFlowsExpireSooner) {
    UFlow longf, dns, ntp;
    dns.guest.port = 40001;
    dns.remote = Endpoint{Ipv4Addr::from_octets(8, 8, 8, 8), 53};
    ntp.guest.port = 40002;
    ntp.remote.port = 123;
    const int fl = open(longf), fd = open(dns), fn = open(ntp);
    net->tick(9'999);
    EXPECT_FALSE(sock(fd).closed);
    net->tick(1);
    EXPECT_TRUE(sock(fd).closed) << "port 53: the short timeout";
    EXPECT_TRUE(sock(fn).closed) << "port 123: the short timeout";
    EXPECT_FALSE(sock(fl).closed);
    EXPECT_EQ(net->udp->flows(), 1u);
    EXPECT_EQ(counters().flows_expired.get(), 2u);
}

TEST_F(UdpEngineTest, ActivityEitherWayRestartsTheTimeout) {
    UFlow f;
    const int fd = open(f);
    net->tick(100'000);
    net->socks.deliver(fd, pattern(2, 10));  // the peer speaks
    net->pump();
    (void)take();
    net->tick(100'000);
    EXPECT_FALSE(sock(fd).closed) << "200 s after opening, 100 s after the peer's datagram";
    send(f, pattern(3, 10));  // the guest speaks
    net->tick(179'999);
    EXPECT_FALSE(sock(fd).closed);
    net->tick(1);
    EXPECT_TRUE(sock(fd).closed);
}

TEST_F(UdpEngineTest, ForEachFlowReportsIdleTime) {
    UFlow f;
    const int fd = open(f);
    net->now += 1234;
    int n = 0;
    net->udp->for_each_flow(net->now, [&](const UdpFlowInfo& i) {
        ++n;
        EXPECT_EQ(i.fd, fd);
        EXPECT_EQ(i.idle_ms, 1234u);
        EXPECT_TRUE(i.key == f.key());
    });
    EXPECT_EQ(n, 1);
}

// ---- back-pressure ----------------------------------------------------------------------------

TEST_F(UdpEngineTest, FullLinkLeavesDatagramsInTheSocketUntilThereIsRoom) {
    UFlow f;
    const int fd = open(f);
    net->link.room_per_call = 12;  // 8 are kept for control frames: 4 per turn
    std::vector<Bytes> sent;
    for (std::uint32_t i = 0; i < 40; ++i) {
        sent.push_back(pattern(500 + i, 100));
        net->socks.deliver(fd, sent.back());
    }
    net->pump(128);
    const auto out = take();
    ASSERT_EQ(out.size(), 40u) << "nothing lost";
    for (std::size_t i = 0; i < out.size(); ++i)
        expect_datagram(out[i], f, sent[i]);
    EXPECT_GT(sock(fd).recv_calls, 5u) << "read in turns as room came back";
    EXPECT_EQ(counters().drop_link_full.get(), 0u);
    EXPECT_FALSE(net->udp->has_pending());
}

// A datagram above the MTU needs a frame per fragment: with less room than fragments, the rest
// must wait (the backlog) rather than be refused, which would leave the guest a datagram it can
// never reassemble (reads were once bounded in datagrams, not frames: a bug this test found).
TEST_F(UdpEngineTest, FullLinkNeverCutsADatagramsFragmentsShort) {
    UFlow f;
    const int fd = open(f);
    net->link.room_per_call = 20;
    const Bytes big = pattern(1, 30000);  // 21 fragments at MTU 1500
    net->socks.deliver(fd, big);
    net->pump(128);
    const auto out = take();
    EXPECT_EQ(counters().drop_link_full.get(), 0u);
    EXPECT_EQ(net->incomplete_datagrams(), 0u) << "fragments of a datagram sent without the rest";
    ASSERT_EQ(out.size(), 1u);
    expect_datagram(out[0], f, big);
}

TEST_F(UdpEngineTest, SliceYieldsToOtherFlows) {
    DgramNetOptions o;
    o.udp.slice = 4;
    make(o);
    UFlow a, b;
    b.guest.port = 40001;
    const int fa = open(a), fb = open(b);
    for (std::uint32_t i = 0; i < 10; ++i) {
        net->socks.deliver(fa, pattern(100 + i, 10));
        net->socks.deliver(fb, pattern(200 + i, 10));
    }
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 20u);
    // Neither flow gets more than one slice ahead of the other.
    int a_seen = 0, b_seen = 0;
    for (const DgramOut& x : out) {
        (x.dport == a.guest.port ? a_seen : b_seen)++;
        if (a_seen < 10 && b_seen < 10) {
            EXPECT_LE(std::abs(a_seen - b_seen), 4);
        }
    }
    EXPECT_EQ(a_seen, 10);
    EXPECT_EQ(b_seen, 10);
}

TEST_F(UdpEngineTest, EmptyPoolLeavesDatagramsInTheSocketUntilBuffersReturn) {
    PacketPool pool(PoolConfig{.small_buffers = 64, .large_buffers = 8});
    DgramNetOptions o;
    o.external_pool = &pool;
    make(o);
    UFlow f;
    const int fd = open(f);
    std::vector<PacketRef> held(256);
    const std::size_t n = pool.try_alloc_burst(SizeClass::small, held);
    ASSERT_GT(n, 0u);
    std::vector<Bytes> sent;
    for (std::uint32_t i = 0; i < 3; ++i) {
        sent.push_back(pattern(40 + i, 60));
        net->socks.deliver(fd, sent.back());
    }
    net->pump(4);
    EXPECT_TRUE(take().empty());
    EXPECT_GT(counters().drop_no_buffer.get(), 0u);
    EXPECT_TRUE(net->udp->has_pending());
    for (PacketRef& r : held)
        r.reset();
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 3u) << "nothing lost: the datagrams waited in the socket";
    for (std::size_t i = 0; i < 3; ++i)
        expect_datagram(out[i], f, sent[i]);
    EXPECT_FALSE(net->udp->has_pending());
}

// A datagram above the MTU needs buffers for its fragments after it was read: when the pool
// cannot give them, it must wait (held) until buffers return, not be dropped (a bug this test
// found).
TEST_F(UdpEngineTest, EmptyPoolNeverLosesAFragmentedDatagram) {
    PacketPool pool(PoolConfig{.small_buffers = 64, .large_buffers = 8});
    DgramNetOptions o;
    o.external_pool = &pool;
    make(o);
    UFlow f;
    const int fd = open(f);
    // Everything but two buffers taken: room to read the datagram, not to fragment it.
    std::vector<PacketRef> held(256);
    const std::size_t n = pool.try_alloc_burst(SizeClass::small, held);
    ASSERT_GE(n, 2u);
    held[n - 1].reset();
    held[n - 2].reset();
    const Bytes big = pattern(1, 4000);
    net->socks.deliver(fd, big);
    net->pump(4);
    for (PacketRef& r : held)
        r.reset();
    net->pump();
    const auto out = take();
    ASSERT_EQ(out.size(), 1u) << "the datagram was read, then dropped for want of buffers";
    expect_datagram(out[0], f, big);
}

// ---- send failures ----------------------------------------------------------------------------

TEST_F(UdpEngineTest, FullSendBufferDropsAndCounts) {
    UFlow f;
    const int fd = open(f);
    net->socks.script_send(fd, {-EAGAIN});
    std::vector<PacketRef> frames;
    for (std::uint32_t i = 0; i < 3; ++i)
        frames.push_back(frame(f, pattern(10 + i, 10)));
    net->burst(std::move(frames));
    EXPECT_EQ(sock(fd).sent.size(), 1u);
    EXPECT_EQ(counters().drop_send_full.get(), 3u);
    EXPECT_EQ(counters().send_errors.get(), 0u);
    // A send buffer that takes only part of a burst.
    net->socks.script_send(fd, {2, -EAGAIN});
    frames.clear();
    for (std::uint32_t i = 0; i < 5; ++i)
        frames.push_back(frame(f, pattern(20 + i, 10)));
    net->burst(std::move(frames));
    ASSERT_EQ(sock(fd).sent.size(), 3u);
    EXPECT_EQ(sock(fd).sent[1], pattern(20, 10));
    EXPECT_EQ(sock(fd).sent[2], pattern(21, 10));
    EXPECT_EQ(counters().drop_send_full.get(), 6u);
    EXPECT_EQ(counters().datagrams_to_host.get(), 3u);
    // The flow goes on.
    send(f, pattern(30, 10));
    EXPECT_EQ(sock(fd).sent.size(), 4u);
}

TEST_F(UdpEngineTest, ConnectionRefusedOnceIsRetried) {
    UFlow f;
    const int fd = open(f);
    net->socks.script_send(fd, {-ECONNREFUSED});
    std::vector<PacketRef> frames;
    frames.push_back(frame(f, pattern(2, 10)));
    frames.push_back(frame(f, pattern(3, 10)));
    net->burst(std::move(frames));
    ASSERT_EQ(sock(fd).sent.size(), 3u) << "the error belonged to an earlier datagram";
    EXPECT_EQ(sock(fd).sent[1], pattern(2, 10));
    EXPECT_EQ(counters().send_errors.get(), 0u);
    EXPECT_EQ(counters().datagrams_to_host.get(), 3u);
    // Twice in a row is an error.
    net->socks.script_send(fd, {-ECONNREFUSED, -ECONNREFUSED});
    send(f, pattern(4, 10));
    EXPECT_EQ(sock(fd).sent.size(), 3u);
    EXPECT_EQ(counters().send_errors.get(), 1u);
    // Any other error is counted at once.
    net->socks.script_send(fd, {-EPERM});
    send(f, pattern(5, 10));
    EXPECT_EQ(counters().send_errors.get(), 2u);
    EXPECT_EQ(sock(fd).burst_sizes.back(), 1u);
}

// ---- shutdown ---------------------------------------------------------------------------------

TEST_F(UdpEngineTest, ResetAllClosesEverything) {
    std::vector<int> fds;
    for (std::uint16_t i = 0; i < 5; ++i) {
        UFlow f;
        f.guest.port = static_cast<std::uint16_t>(40000 + i);
        fds.push_back(open(f, i));
    }
    // A datagram gathered but not yet sent goes with the flows.
    UFlow f;
    PacketRef fr = frame(f, pattern(99, 10));
    auto d = udp_in(fr, 1);
    ASSERT_TRUE(d.has_value());
    net->udp->process_datagram(*d, net->now);
    net->udp->reset_all();
    net->udp->end_burst(net->now);
    for (int fd : fds) {
        EXPECT_TRUE(sock(fd).closed);
        EXPECT_FALSE(net->poller.is_watched(fd));
    }
    EXPECT_EQ(sock(fds[0]).sent.size(), 1u);
    EXPECT_EQ(net->udp->flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
}

TEST_F(UdpEngineTest, DestructionClosesEverything) {
    UFlow f;
    const int fd = open(f);
    net->destroy_engines();
    EXPECT_TRUE(sock(fd).closed);
    EXPECT_EQ(net->table.size(), 0u);
    EXPECT_TRUE(net->socks.all_closed());
    EXPECT_TRUE(net->poller.watched.empty());
    EXPECT_TRUE(net->socks.violations.empty());
    net.reset();  // finish() needs the engines
}

}  // namespace
}  // namespace slipway::nat
