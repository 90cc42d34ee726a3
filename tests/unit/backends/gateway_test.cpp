// UserspaceGateway: ARP and ICMP echo answered like the Linux kernel answers them, everything else
// counted. Requests are frames captured from the kernel (tests/unit/core/captures); the gateway
// plays the captured peer (10.99.0.2, 02:00:00:00:bb:02), so its replies can be compared with the
// kernel's own replies from the same capture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/captures/wire_captures.hpp"
#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/wire/frame.hpp"
#include "slipway/dns/message.hpp"

namespace slipway::backends {
namespace {

using namespace slipway::test_captures;

class GatewayTest : public ::testing::Test {
  protected:
    PacketPool pool{PoolConfig{.small_buffers = 64, .large_buffers = 2}};
    UserspaceGateway gw{pool, GatewayConfig{.gateway = Ipv4Addr::from_octets(10, 99, 0, 2),
                                            .dns = Ipv4Addr::from_octets(10, 99, 0, 2),
                                            .host_alias = Ipv4Addr::from_octets(10, 99, 0, 254),
                                            .mac = *MacAddr::parse("02:00:00:00:bb:02"),
                                            .mtu = 1500}};

    void deliver(ByteView frame) {
        auto p = pool.try_alloc(frame.size());
        ASSERT_TRUE(p);
        std::memcpy(p->data().data(), frame.data(), frame.size());
        ASSERT_TRUE(gw.to_port().try_push(std::move(*p)));
        gw.on_frames_from_switch();
    }
    std::vector<std::vector<std::byte>> replies() {
        std::vector<std::vector<std::byte>> out;
        PacketRef r;
        while (gw.to_switch().try_pop(r))
            out.emplace_back(r.data().begin(), r.data().end());
        return out;
    }
};

TEST_F(GatewayTest, ArpReplyMatchesTheKernels) {
    deliver(kArpRequest);
    auto out = replies();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].size(), 60u);  // padded to the Ethernet minimum
    ASSERT_GE(kArpReply.size(), 42u);
    EXPECT_TRUE(std::equal(kArpReply.begin(), kArpReply.begin() + 42, out[0].begin()));
    EXPECT_EQ(gw.gateway_counters().arp_replies.get(), 1u);
}

TEST_F(GatewayTest, ArpForOtherAddressesIsIgnored) {
    auto req = std::vector<std::byte>(kArpRequest.begin(), kArpRequest.end());
    req[41] = std::byte{77};  // target 10.99.0.77: someone else
    deliver(req);
    EXPECT_TRUE(replies().empty());
    EXPECT_EQ(gw.gateway_counters().ignored.get(), 1u);
}

TEST_F(GatewayTest, ArpForTheHostAliasIsAnswered) {
    auto req = std::vector<std::byte>(kArpRequest.begin(), kArpRequest.end());
    req[41] = std::byte{254};
    deliver(req);
    auto out = replies();
    ASSERT_EQ(out.size(), 1u);
    auto f = wire::parse_frame(out[0]);
    ASSERT_TRUE(f && f->arp);
    EXPECT_EQ(f->arp->spa(), Ipv4Addr::from_octets(10, 99, 0, 254));
}

TEST_F(GatewayTest, EchoReplyMatchesTheKernelsButForIpIdent) {
    deliver(kIcmpEchoRequest);
    auto out = replies();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].size(), kIcmpEchoReply.size());
    // Ethernet header and the whole ICMP message (type, checksum, id, seq, data) are identical.
    EXPECT_TRUE(std::equal(kIcmpEchoReply.begin(), kIcmpEchoReply.begin() + 14, out[0].begin()));
    EXPECT_TRUE(std::equal(kIcmpEchoReply.begin() + 34, kIcmpEchoReply.end(), out[0].begin() + 34));
    auto f = wire::parse_frame(out[0]);
    ASSERT_TRUE(f && f->ipv4 && f->icmpv4);
    EXPECT_TRUE(f->ipv4->header_checksum_ok());
    EXPECT_TRUE(f->icmpv4->checksum_ok());
    EXPECT_EQ(f->ipv4->src(), Ipv4Addr::from_octets(10, 99, 0, 2));
    EXPECT_EQ(f->ipv4->dst(), Ipv4Addr::from_octets(10, 99, 0, 1));
    EXPECT_EQ(gw.gateway_counters().icmp_echo_replies.get(), 1u);
}

TEST_F(GatewayTest, CorruptEchoIsDroppedNotAnswered) {
    auto bad_icmp = std::vector<std::byte>(kIcmpEchoRequest.begin(), kIcmpEchoRequest.end());
    bad_icmp.back() ^= std::byte{0xff};  // payload no longer matches the ICMP checksum
    deliver(bad_icmp);
    auto bad_ip = std::vector<std::byte>(kIcmpEchoRequest.begin(), kIcmpEchoRequest.end());
    bad_ip[24] ^= std::byte{0x01};  // IPv4 header checksum
    deliver(bad_ip);
    EXPECT_TRUE(replies().empty());
    EXPECT_EQ(gw.gateway_counters().drop_malformed.get(), 2u);
}

TEST_F(GatewayTest, TruncatedAndUnhandledFramesAreCounted) {
    for (std::size_t n = 0; n < 60; n += 7)
        deliver(ByteView(kIcmpEchoRequest).first(n));
    deliver(kTcpSyn4);  // TCP to the gateway: NAT is not there yet
    EXPECT_TRUE(replies().empty());
    const auto& c = gw.gateway_counters();
    EXPECT_EQ(c.drop_unhandled.get(), 1u);
    EXPECT_GE(c.drop_malformed.get() + c.ignored.get(), 8u);
}

TEST_F(GatewayTest, PoolExhaustionIsCounted) {
    std::vector<PacketRef> hog(64);
    // Leave exactly one buffer: the request takes it, the reply finds none.
    ASSERT_EQ(pool.try_alloc_burst(SizeClass::small, std::span(hog).first(63)), 63u);
    deliver(kArpRequest);
    EXPECT_TRUE(replies().empty());
    EXPECT_EQ(gw.gateway_counters().drop_no_buffer.get(), 1u);
}

}  // namespace
}  // namespace slipway::backends

namespace slipway::backends {
namespace {

// A DHCPDISCOVER as a Linux guest broadcasts it, in a full Ethernet/IPv4/UDP frame.
std::vector<std::byte> discover_frame(const MacAddr& client, bool broadcast_flag) {
    std::vector<std::byte> dhcp(300, std::byte{0});
    dhcp[0] = std::byte{1};
    dhcp[1] = std::byte{1};
    dhcp[2] = std::byte{6};
    store_be32(dhcp.data() + 4, 0xabcdef01);
    if (broadcast_flag) dhcp[10] = std::byte{0x80};
    client.store(dhcp.data() + 28);
    const std::uint8_t tail[] = {99, 130, 83, 99, 53, 1, 1, 255};
    std::memcpy(dhcp.data() + 236, tail, sizeof tail);
    std::vector<std::byte> f(14 + 20 + 8 + dhcp.size());
    MacAddr::broadcast().store(f.data());
    client.store(f.data() + 6);
    store_be16(f.data() + 12, 0x0800);
    wire::Ipv4Repr ip;
    ip.src = Ipv4Addr{};
    ip.dst = Ipv4Addr{0xffffffffu};
    ip.protocol = IpProto::udp;
    ip.payload_len = static_cast<std::uint16_t>(8 + dhcp.size());
    EXPECT_TRUE(ip.emit(MutByteView{f}.subspan(14)));
    const wire::UdpRepr udp{L4Port{68}, L4Port{67}, static_cast<std::uint16_t>(dhcp.size()), 0};
    EXPECT_TRUE(udp.emit(MutByteView{f}.subspan(34)));
    std::memcpy(f.data() + 42, dhcp.data(), dhcp.size());
    return f;
}

class GatewayDhcpTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dhcp::ServerConfig c;
        c.server_id = c.router = c.dns = kGw;
        c.subnet = Ipv4Addr::from_octets(10, 99, 0, 0);
        c.prefix_len = 24;
        c.range_first = Ipv4Addr::from_octets(10, 99, 0, 10);
        c.range_last = Ipv4Addr::from_octets(10, 99, 0, 20);
        c.excluded = {kGw};
        std::string err;
        auto s = dhcp::Server::create(c, err);
        ASSERT_TRUE(s) << err;
        server = std::move(*s);
        gw = std::make_unique<UserspaceGateway>(pool, GatewayConfig{.gateway = kGw,
                                                                    .dns = kGw,
                                                                    .host_alias = std::nullopt,
                                                                    .mac = kGwMac,
                                                                    .mtu = 1500,
                                                                    .dhcp = server.get()});
    }
    std::vector<std::vector<std::byte>> exchange(const std::vector<std::byte>& frame) {
        auto p = pool.try_alloc(frame.size());
        EXPECT_TRUE(p);
        std::memcpy(p->data().data(), frame.data(), frame.size());
        EXPECT_TRUE(gw->to_port().try_push(std::move(*p)));
        gw->on_frames_from_switch();
        std::vector<std::vector<std::byte>> out;
        PacketRef r;
        while (gw->to_switch().try_pop(r))
            out.emplace_back(r.data().begin(), r.data().end());
        return out;
    }
    static constexpr Ipv4Addr kGw = Ipv4Addr::from_octets(10, 99, 0, 1);
    const MacAddr kGwMac = *MacAddr::parse("5a:94:ef:e4:0c:dd");
    const MacAddr kClient = *MacAddr::parse("52:54:00:aa:bb:cc");
    PacketPool pool{PoolConfig{.small_buffers = 64, .large_buffers = 2}};
    std::unique_ptr<dhcp::Server> server;
    std::unique_ptr<UserspaceGateway> gw;
};

TEST_F(GatewayDhcpTest, DiscoverGetsAnOfferInAValidUdpDatagram) {
    const auto out = exchange(discover_frame(kClient, false));
    ASSERT_EQ(out.size(), 1u);
    auto f = wire::parse_frame(out[0]);
    ASSERT_TRUE(f);
    ASSERT_TRUE(f->ipv4 && f->udp);
    EXPECT_EQ(f->eth.src(), kGwMac);
    EXPECT_EQ(f->eth.dst(), kClient);  // unicast: no broadcast flag (RFC 2131 §4.1)
    EXPECT_EQ(f->ipv4->src(), kGw);
    EXPECT_EQ(f->ipv4->dst(), Ipv4Addr::from_octets(10, 99, 0, 10));
    EXPECT_TRUE(f->ipv4->header_checksum_ok());
    EXPECT_EQ(f->udp->src_port(), L4Port{67});
    EXPECT_EQ(f->udp->dst_port(), L4Port{68});
    // The UDP checksum verifies over the pseudo-header (RFC 768).
    EXPECT_EQ(csum_finish(csum_partial(f->udp->datagram(),
                                       pseudo_header_sum_v4(f->ipv4->src(), f->ipv4->dst(),
                                                            IpProto::udp, f->udp->length()))),
              0);
    auto m = dhcp::MessageView::parse(f->udp->payload());
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), dhcp::MessageType::offer);
    EXPECT_EQ(m->xid(), 0xabcdef01u);
    EXPECT_EQ(gw->gateway_counters().dhcp_handled.get(), 1u);
    EXPECT_EQ(server->counters().offers.get(), 1u);
}

TEST_F(GatewayDhcpTest, BroadcastFlagGetsABroadcastReply) {
    const auto out = exchange(discover_frame(kClient, true));
    ASSERT_EQ(out.size(), 1u);
    auto f = wire::parse_frame(out[0]);
    ASSERT_TRUE(f && f->ipv4);
    EXPECT_TRUE(f->eth.dst().is_broadcast());
    EXPECT_TRUE(f->ipv4->dst().is_broadcast());
}

TEST_F(GatewayDhcpTest, GarbageToPort67IsCountedByTheServer) {
    auto frame = discover_frame(kClient, false);
    frame[42 + 236] = std::byte{0};  // break the magic cookie
    EXPECT_TRUE(exchange(frame).empty());
    EXPECT_EQ(server->counters().drop_malformed.get(), 1u);
    EXPECT_EQ(gw->gateway_counters().dhcp_handled.get(), 1u);
}

// A DNS query from a guest (10.99.0.10:40000) to the gateway's port 53, with a valid UDP checksum
// unless `bad_csum`; VLAN-tagged with `vlan`.
std::vector<std::byte> dns_query_frame(const MacAddr& client, const MacAddr& gw_mac,
                                       std::string_view name, bool bad_csum = false) {
    std::vector<std::byte> q(12, std::byte{0});
    store_be16(q.data(), 0x5151);
    store_be16(q.data() + 2, 0x0100);
    store_be16(q.data() + 4, 1);
    std::array<std::byte, dns::kMaxNameLen> wire{};
    const auto n = dns::encode_name(name, wire);
    EXPECT_TRUE(n.has_value());
    q.insert(q.end(), wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(*n));
    const std::uint8_t tail[] = {0, 1, 0, 1};  // A, IN
    for (auto b : tail)
        q.push_back(std::byte{b});
    std::vector<std::byte> f(14 + 20 + 8 + q.size());
    gw_mac.store(f.data());
    client.store(f.data() + 6);
    store_be16(f.data() + 12, 0x0800);
    wire::Ipv4Repr ip;
    ip.src = Ipv4Addr::from_octets(10, 99, 0, 10);
    ip.dst = Ipv4Addr::from_octets(10, 99, 0, 1);
    ip.protocol = IpProto::udp;
    ip.payload_len = static_cast<std::uint16_t>(8 + q.size());
    EXPECT_TRUE(ip.emit(MutByteView{f}.subspan(14)));
    const wire::UdpRepr udp{L4Port{40000}, L4Port{53}, static_cast<std::uint16_t>(q.size()), 0};
    EXPECT_TRUE(udp.emit(MutByteView{f}.subspan(34)));
    std::memcpy(f.data() + 42, q.data(), q.size());
    const std::uint16_t sum = csum_finish(csum_partial(
        ByteView{f}.subspan(34), pseudo_header_sum_v4(ip.src, ip.dst, IpProto::udp,
                                                      static_cast<std::uint16_t>(8 + q.size()))));
    store_be16(f.data() + 40, static_cast<std::uint16_t>(bad_csum ? sum ^ 0x0101 : sum));
    return f;
}

class GatewayDnsTest : public GatewayDhcpTest {
  protected:
    void SetUp() override {
        GatewayDhcpTest::SetUp();
        dns::ForwarderConfig c;
        c.gateway = kGw;
        c.host_alias = Ipv4Addr::from_octets(10, 99, 0, 254);
        c.resolv_conf = "/nonexistent/slipway-test-resolv.conf";
        std::string err;
        auto f = dns::Forwarder::create(io, std::move(c), *gw, err);
        ASSERT_TRUE(f) << err;
        fwd = std::move(*f);
        gw->set_dns(fwd.get());
    }
    IoContext io;
    std::unique_ptr<dns::Forwarder> fwd;
};

TEST_F(GatewayDnsTest, QueryGetsAnAnswerInAValidUdpDatagram) {
    const auto out = exchange(dns_query_frame(kClient, kGwMac, "host.containers.internal"));
    ASSERT_EQ(out.size(), 1u);
    auto f = wire::parse_frame(out[0]);
    ASSERT_TRUE(f && f->ipv4 && f->udp);
    EXPECT_EQ(f->eth.src(), kGwMac);
    EXPECT_EQ(f->eth.dst(), kClient);
    EXPECT_EQ(f->ipv4->src(), kGw);
    EXPECT_EQ(f->ipv4->dst(), Ipv4Addr::from_octets(10, 99, 0, 10));
    EXPECT_TRUE(f->ipv4->header_checksum_ok());
    EXPECT_EQ(f->udp->src_port(), L4Port{53});
    EXPECT_EQ(f->udp->dst_port(), L4Port{40000});
    EXPECT_EQ(csum_finish(csum_partial(f->udp->datagram(),
                                       pseudo_header_sum_v4(f->ipv4->src(), f->ipv4->dst(),
                                                            IpProto::udp, f->udp->length()))),
              0);
    const auto m = dns::MessageView::parse(f->udp->payload());
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id(), 0x5151);
    EXPECT_EQ(m->header().ancount, 1);
    EXPECT_EQ(gw->gateway_counters().dns_handled.get(), 1u);
    EXPECT_EQ(fwd->counters().local_answers.get(), 1u);
}

TEST_F(GatewayDnsTest, BadChecksumIsDroppedAndCounted) {
    EXPECT_TRUE(
        exchange(dns_query_frame(kClient, kGwMac, "host.containers.internal", true)).empty());
    EXPECT_EQ(gw->gateway_counters().drop_bad_checksum.get(), 1u);
    EXPECT_EQ(fwd->counters().queries.get(), 0u);
}

TEST_F(GatewayDnsTest, WithoutTheForwarderPort53IsUnhandled) {
    gw->set_dns(nullptr);
    EXPECT_TRUE(exchange(dns_query_frame(kClient, kGwMac, "host.containers.internal")).empty());
    EXPECT_EQ(gw->gateway_counters().drop_unhandled.get(), 1u);
}

}  // namespace
}  // namespace slipway::backends
