// slipway::Network: option validation, and an in-process port driven from a second thread (the
// VMM's) that gets ARP and ICMP answers from the gateway through the switch.
#include "slipway/embed/network.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "core/captures/wire_captures.hpp"
#include "slipway/core/wire/frame.hpp"

namespace slipway {
namespace {

TEST(Network, DefaultsMatchGvproxy) {
    std::string err;
    auto net = Network::create(NetworkOptions{}, err);
    ASSERT_TRUE(net) << err;
    const NetworkPlan& p = (*net)->plan();
    EXPECT_EQ(p.gateway.to_string(), "192.168.127.1");
    EXPECT_EQ(p.dns.to_string(), "192.168.127.1");
    ASSERT_TRUE(p.host_alias);
    EXPECT_EQ(p.host_alias->to_string(), "192.168.127.254");
    EXPECT_EQ(p.gateway_mac.to_string(), "5a:94:ef:e4:0c:dd");
    EXPECT_EQ(p.mtu, 1500u);
}

TEST(Network, RejectsBadOptionsWithOneLine) {
    auto bad = [](NetworkOptions o, const char* needle) {
        std::string err;
        auto net = Network::create(o, err);
        EXPECT_FALSE(net);
        EXPECT_NE(err.find(needle), std::string::npos) << err;
        EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    };
    NetworkOptions o;
    o.subnet = Ipv4Addr::from_octets(10, 0, 0, 5);
    bad(o, "host bits");
    o = {};
    o.prefix_len = 31;
    bad(o, "prefix");
    o = {};
    o.gateway = Ipv4Addr::from_octets(10, 0, 0, 1);
    bad(o, "--gateway");
    o = {};
    o.gateway = Ipv4Addr::from_octets(192, 168, 127, 255);  // broadcast
    bad(o, "--gateway");
    o = {};
    o.host_alias = Ipv4Addr::from_octets(192, 168, 127, 1);  // the gateway
    bad(o, "--host-alias");
    o = {};
    o.mtu = 100;
    bad(o, "--mtu");
    o = {};
    o.pcap_path = "/nonexistent-dir/x.pcap";
    bad(o, "--pcap");
    o = {};
    o.no_host_alias = true;
    o.host_alias = Ipv4Addr::from_octets(192, 168, 127, 9);
    bad(o, "exclude");
    o = {};
    o.dns_upstreams = {"resolver.example"};
    bad(o, "--dns-upstream");
    o = {};
    o.dns_records = {{"bad..name", Ipv4Addr::from_octets(10, 0, 0, 1)}};
    bad(o, "--dns-record");
    o = {};
    o.no_dns = true;
    o.dns_upstreams = {"192.0.2.1"};
    bad(o, "--no-dns");
}

TEST(Network, DnsRecordsThroughTheEmbeddingApi) {
    std::string err;
    NetworkOptions o;
    o.dns_upstreams = {"192.0.2.53"};
    auto net = Network::create(o, err);
    ASSERT_TRUE(net) << err;
    EXPECT_TRUE((*net)->plan().dns_enabled);
    EXPECT_TRUE((*net)->add_dns_record("vm1.example", Ipv4Addr::from_octets(192, 168, 127, 9)));
    EXPECT_FALSE((*net)->add_dns_record("bad..name", Ipv4Addr{}));
    EXPECT_TRUE((*net)->remove_dns_record("VM1.example"));
    EXPECT_FALSE((*net)->remove_dns_record("vm1.example"));
    o = {};
    o.no_dns = true;
    auto off = Network::create(o, err);
    ASSERT_TRUE(off) << err;
    EXPECT_FALSE((*off)->plan().dns_enabled);
    EXPECT_EQ((*off)->add_dns_record("vm1.example", Ipv4Addr{}).error(), Errc::unsupported);
}

TEST(Network, BadAttachSpecIsAnErrorNotACrash) {
    std::string err;
    auto net = Network::create(NetworkOptions{}, err);
    ASSERT_TRUE(net) << err;
    EXPECT_FALSE((*net)->attach("bogus:/x", err));
    EXPECT_FALSE(err.empty());
}

TEST(Network, InProcessPortGetsAnswersAcrossThreads) {
    std::string err;
    NetworkOptions o;
    o.subnet = Ipv4Addr::from_octets(10, 99, 0, 0);
    o.gateway = Ipv4Addr::from_octets(10, 99, 0, 2);  // the captured peer's address
    auto net = Network::create(o, err);
    ASSERT_TRUE(net) << err;
    auto port = (*net)->attach_in_process("vmm", PortCaps{}, err);
    ASSERT_TRUE(port) << err;
    InProcessPort& p = **port;
    std::atomic<int> wakeups{0};
    p.on_frames_for_vmm = [&] { wakeups.fetch_add(1); };

    std::thread loop([&] { (*net)->run(); });

    // The VMM thread: its own pool, frames pushed into the port's ring, then a kick.
    PacketPool vmm_pool(PoolConfig{.small_buffers = 16, .large_buffers = 0});
    auto push = [&](ByteView frame) {
        auto b = vmm_pool.try_alloc(frame.size());
        ASSERT_TRUE(b);
        std::memcpy(b->data().data(), frame.data(), frame.size());
        ASSERT_TRUE(p.to_switch().try_push(std::move(*b)));
    };
    push(test_captures::kArpRequest);
    // The captured echo request is addressed to the captured peer's MAC; a real guest would have
    // learned ours from the ARP reply, so address it to the gateway MAC the plan announces.
    std::vector<std::byte> echo(test_captures::kIcmpEchoRequest.begin(),
                                test_captures::kIcmpEchoRequest.end());
    (*net)->plan().gateway_mac.store(echo.data());
    push(echo);
    p.kick();

    int arp = 0, icmp = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((arp == 0 || icmp == 0) && std::chrono::steady_clock::now() < deadline) {
        PacketRef r;
        if (!p.to_port().try_pop(r)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        auto f = wire::parse_frame(r.data());
        ASSERT_TRUE(f);
        if (f->arp) ++arp;
        if (f->icmpv4) ++icmp;
    }
    (*net)->stop();
    loop.join();
    EXPECT_EQ(arp, 1);
    EXPECT_EQ(icmp, 1);
    EXPECT_GE(wakeups.load(), 1);
    // Counters are read after the loop stopped, as the API contract says.
    const NetworkStats st = (*net)->stats();
    std::uint64_t replies = 0;
    for (const auto& c : st.gateway_counters)
        if (c.name == "arp_replies" || c.name == "icmp_echo_replies") replies += c.value;
    EXPECT_EQ(replies, 2u);
}

}  // namespace
}  // namespace slipway
