// slipway::Network: option validation, an in-process port driven from a second thread (the
// VMM's) that gets ARP and ICMP answers from the gateway through the switch, and the argument
// checks of attach_virtio() and detach() (the virtqueue data path is tested in guest/).
#include "slipway/embed/network.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "core/captures/wire_captures.hpp"
#include "slipway/core/bytes.hpp"
#include "slipway/core/wire/frame.hpp"
#include "virtio_driver.hpp"

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

// Guest memory and a well-formed queue pair for attach_virtio(): 64 KiB at guest physical
// 0x100000, the RX rings in its first 12 KiB and the TX rings in the next 12 KiB.
struct VirtioFixture {
    static constexpr std::uint64_t kBase = 0x100000;
    static constexpr std::size_t kSize = 64 * 1024;
    alignas(4096) std::array<std::byte, kSize> ram{};
    int kick[2] = {::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                   ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    int call[2] = {::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                   ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};

    ~VirtioFixture() {
        for (int fd : {kick[0], kick[1], call[0], call[1]})
            if (fd >= 0) ::close(fd);
    }
    VirtioAttachOptions options() {
        VirtioAttachOptions o;
        o.name = "vm-virtio";
        o.regions.push_back({ram.data(), kBase, kSize});
        o.features = virtio_offered_features();
        for (std::size_t q = 0; q < 2; ++q) {
            const std::uint64_t at = kBase + q * 12 * 1024;
            o.queues[q] = {.size = 256,
                           .desc = at,
                           .avail = at + 4096,
                           .used = at + 8192,
                           .kick_fd = kick[q],
                           .call_fd = call[q],
                           .last_avail = 0};
        }
        return o;
    }
};

bool fd_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

TEST(Network, AttachVirtioRejectsBadArgumentsWithOneLine) {
    std::string err;
    auto net = Network::create(NetworkOptions{}, err);
    ASSERT_TRUE(net) << err;
    VirtioFixture fx;
    ASSERT_GE(fx.kick[0], 0);
    auto bad = [&](const VirtioAttachOptions& o, const char* needle) {
        std::string e;
        auto p = (*net)->attach_virtio(o, e);
        EXPECT_FALSE(p) << needle;
        if (!p) {
            EXPECT_EQ(p.error(), Errc::invalid_argument) << e;
        }
        EXPECT_NE(e.find(needle), std::string::npos) << e;
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    };
    VirtioAttachOptions o = fx.options();
    o.name.clear();
    bad(o, "name");
    o = fx.options();
    o.regions.clear();
    bad(o, "no guest memory regions");
    o = fx.options();
    o.regions[0].host = nullptr;
    bad(o, "null");
    o = fx.options();
    o.regions[0].size = 0;
    bad(o, "empty");
    o = fx.options();
    o.regions[0].guest_addr = ~std::uint64_t{0} - 100;
    bad(o, "wraps");
    o = fx.options();
    o.regions.push_back({fx.ram.data(), VirtioFixture::kBase + 4096, 4096});  // inside region 0
    bad(o, "overlaps");
    o = fx.options();
    o.regions.assign(9, VirtioMemRegion{fx.ram.data(), 0, 16});
    bad(o, "at most 8");
    // A descriptor table that runs past the end of guest memory.
    o = fx.options();
    o.queues[VirtioAttachOptions::kTx].desc = VirtioFixture::kBase + VirtioFixture::kSize - 16;
    bad(o, "descriptor table");
    // A used ring in no region at all.
    o = fx.options();
    o.queues[VirtioAttachOptions::kRx].used = 0x1000;
    bad(o, "used ring");
    o = fx.options();
    o.queues[VirtioAttachOptions::kRx].avail += 1;
    bad(o, "aligned");
    o = fx.options();
    o.queues[VirtioAttachOptions::kRx].size = 100;
    bad(o, "power of two");
    o = fx.options();
    o.queues[VirtioAttachOptions::kRx].size = 65536;
    bad(o, "power of two");
    o = fx.options();
    o.features |= std::uint64_t{1} << 17;  // VIRTIO_NET_F_CTRL_VQ: not offered
    bad(o, "does not offer");
    o = fx.options();
    o.queues[VirtioAttachOptions::kTx].kick_fd = -1;
    bad(o, "kick");
    // An fd number that is not open: the dup fails with EBADF, the caller's mistake.
    o = fx.options();
    o.queues[VirtioAttachOptions::kTx].kick_fd = 100000;
    bad(o, "kick fd 100000");
    // Nothing was added to the network by any of these.
    EXPECT_EQ((*net)->status().ports.size(), 1u);  // the gateway
}

TEST(Network, AttachVirtioThenDetach) {
    std::string err;
    auto net = Network::create(NetworkOptions{}, err);
    ASSERT_TRUE(net) << err;
    VirtioFixture fx;
    auto port = (*net)->attach_virtio(fx.options(), err);
    ASSERT_TRUE(port) << err;
    EXPECT_EQ((*port)->name(), "vm-virtio");
    EXPECT_EQ((*port)->features(), virtio_offered_features());
    EXPECT_FALSE((*port)->broken());
    // The device's counters are the port's, beside the switch port's own.
    const NetworkStats st = (*net)->stats();
    bool found = false;
    for (const PortStats& p : st.ports) {
        if (p.name != "vm-virtio") continue;
        found = true;
        EXPECT_EQ(p.state, "virtio");
        bool kicks = false, rx = false;
        for (const CounterValue& c : p.counters) {
            kicks |= c.name == "virtio_kicks";
            rx |= c.name == "rx_frames";
        }
        EXPECT_TRUE(kicks && rx);
    }
    EXPECT_TRUE(found);

    // A second device over the same memory under another name (a VMM with two NICs).
    VirtioAttachOptions o2 = fx.options();
    o2.name = "vm-virtio-2";
    for (std::size_t q = 0; q < 2; ++q)
        o2.queues[q].desc = o2.queues[q].avail = o2.queues[q].used = 0;
    for (std::size_t q = 0; q < 2; ++q) {
        const std::uint64_t at = VirtioFixture::kBase + 24 * 1024 + q * 12 * 1024;
        o2.queues[q].desc = at;
        o2.queues[q].avail = at + 4096;
        o2.queues[q].used = at + 8192;
    }
    auto port2 = (*net)->attach_virtio(o2, err);
    ASSERT_TRUE(port2) << err;
    EXPECT_EQ((*net)->status().ports.size(), 3u);

    // Detach: the port goes, the caller's fds stay open (attach_virtio used duplicates).
    EXPECT_TRUE((*net)->detach(*port));
    EXPECT_EQ((*net)->detach(*port).error(), Errc::not_found);
    for (int fd : {fx.kick[0], fx.kick[1], fx.call[0], fx.call[1]})
        EXPECT_TRUE(fd_open(fd)) << fd;
    EXPECT_EQ((*net)->status().ports.size(), 2u);
    // The VMM resets its device: the same queues attach again.
    auto again = (*net)->attach_virtio(fx.options(), err);
    ASSERT_TRUE(again) << err;
    EXPECT_TRUE((*net)->detach(*again));
    EXPECT_TRUE((*net)->detach(*port2));

    // In-process frame ports detach the same way; foreign pointers are refused.
    auto frame = (*net)->attach_in_process("vmm", PortCaps{}, err);
    ASSERT_TRUE(frame) << err;
    EXPECT_TRUE((*net)->detach(*frame));
    EXPECT_EQ((*net)->detach(nullptr).error(), Errc::not_found);
    EXPECT_EQ((*net)->status().ports.size(), 1u);
}

TEST(Network, VirtioPortDetachedWhileTheNetworkRuns) {
    std::string err;
    auto net = Network::create(NetworkOptions{}, err);
    ASSERT_TRUE(net) << err;
    VirtioFixture fx;
    std::thread loop([&] { (*net)->run(); });
    // On the network thread, as the API asks while it runs.
    std::promise<bool> done;
    (*net)->post([&] {
        std::string e;
        auto p = (*net)->attach_virtio(fx.options(), e);
        bool ok = p.has_value();
        // A kick with no buffers posted is taken and counted, and changes nothing else.
        const std::uint64_t one = 1;
        if (ok) ok = ::write(fx.kick[VirtioAttachOptions::kTx], &one, sizeof one) == sizeof one;
        (*net)->post([&, port = ok ? *p : nullptr] {
            done.set_value(port != nullptr && (*net)->detach(port).has_value());
        });
    });
    auto f = done.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_TRUE(f.get());
    (*net)->stop();
    loop.join();
    EXPECT_EQ((*net)->status().ports.size(), 1u);
}

}  // namespace
// Frames through attach_virtio's queues, driven by the test-side virtio-net driver on this thread
// while the network runs on its own: the embedding API's data path, as a VMM uses it.
TEST(Network, VirtioPortCarriesFramesBothWays) {
    std::string err;
    NetworkOptions o;
    o.subnet = Ipv4Addr::from_octets(10, 99, 0, 0);
    o.gateway = Ipv4Addr::from_octets(10, 99, 0, 2);  // the captured ARP request asks for .2
    auto net = Network::create(o, err);
    ASSERT_TRUE(net) << err;
    auto ram = testing::GuestRam::create(64u << 20, err);
    ASSERT_TRUE(ram) << err;
    const std::uint64_t features = virtio_offered_features();
    auto drv = testing::NetDriver::create(**ram, features, 64, err);
    ASSERT_TRUE(drv) << err;
    ASSERT_TRUE((*drv)->post_rx(64, 4096)) << (*drv)->error();
    VirtioAttachOptions a;
    a.name = "vm0";
    const virtio::MemRegion r = (*ram)->region();
    a.regions.push_back({r.host, r.guest_addr, r.size});
    a.features = features;
    for (unsigned q = 0; q < 2; ++q) {
        testing::DriverQueue& dq = (*drv)->queue(q);
        a.queues[q] = VirtioQueueOptions{
            dq.size(), dq.desc_gpa(), dq.avail_gpa(), dq.used_gpa(), dq.kick_fd(), dq.call_fd(), 0};
    }
    auto port = (*net)->attach_virtio(a, err);
    ASSERT_TRUE(port) << err;
    std::thread loop([&] { (*net)->run(); });
    struct Stop {
        Network& n;
        std::thread& t;
        ~Stop() {
            n.stop();
            t.join();
        }
    } stop{**net, loop};

    // TX: the captured ARP request for 10.99.0.2; RX: the gateway's reply, with a v1 header.
    ASSERT_TRUE((*drv)->send(virtio::NetHdr{}, test_captures::kArpRequest)) << (*drv)->error();
    virtio::NetHdr h{};
    std::vector<std::byte> f;
    auto got = (*drv)->recv(h, f, testing::Millis{3000});
    ASSERT_TRUE(got) << (*drv)->error();
    ASSERT_TRUE(*got) << "no ARP reply through the virtqueues";
    ASSERT_GE(f.size(), 42u);
    EXPECT_EQ(load_be16(ByteView(f), 12), 0x0806);  // ARP
    EXPECT_EQ(load_be16(ByteView(f), 20), 2);       // reply
    EXPECT_EQ(h.num_buffers, 1);
    // A GSO frame the guest could not have sent without HOST_TSO4 is fine here (negotiated), and a
    // header asking for UFO is refused and counted, not forwarded.
    virtio::NetHdr ufo{};
    ufo.gso_type = virtio::kGsoUdp;
    ufo.gso_size = 1000;
    ASSERT_TRUE((*drv)->send(ufo, test_captures::kArpRequest)) << (*drv)->error();
    std::uint64_t bad_hdr = 0;
    for (int i = 0; i < 200 && bad_hdr == 0; ++i) {
        std::promise<std::uint64_t> p;
        auto fut = p.get_future();
        (*net)->post([&] {
            std::uint64_t v = 0;
            for (const PortStats& ps : (*net)->stats().ports)
                if (ps.name == "vm0")
                    for (const CounterValue& c : ps.counters)
                        if (c.name == "virtio_tx_bad_hdr") v = c.value;
            p.set_value(v);
        });
        bad_hdr = fut.get();
        if (bad_hdr == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(bad_hdr, 1u);
}

}  // namespace slipway
