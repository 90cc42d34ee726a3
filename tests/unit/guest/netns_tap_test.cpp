// netns:PATH attachment against a real kernel: a TAP named slw0 in a throw-away namespace, ARP
// from the namespace's stack in, an ARP reply out that the kernel's neighbour table picks up.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "guest_test_util.hpp"
#include "slipway/core/bytes.hpp"

namespace slipway::guest::test {
namespace {

int run(const std::string& cmd) {
    return std::system((cmd + " >/dev/null 2>&1").c_str());
}

std::string capture(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
    if (p == nullptr) return out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr)
        out += buf;
    ::pclose(p);
    return out;
}

// A test namespace that is deleted however the test ends. Only creating and deleting it touches
// the machine's own namespace; everything else runs inside it.
class TestNetns {
  public:
    TestNetns() : name_("gtest-" + std::to_string(::getpid())) {
        run("ip netns del " + name_);
        ok_ = run("ip netns add " + name_) == 0;
    }
    ~TestNetns() { run("ip netns del " + name_); }
    TestNetns(const TestNetns&) = delete;
    TestNetns& operator=(const TestNetns&) = delete;
    [[nodiscard]] bool ok() const { return ok_; }
    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] std::string path() const { return "/run/netns/" + name_; }
    // Runs `cmd` inside the namespace.
    int exec(const std::string& cmd) const { return run("ip netns exec " + name_ + " " + cmd); }

  private:
    std::string name_;
    bool ok_ = false;
};

// A child process (recorded by PID) that is killed and reaped when the guard goes.
class Child {
  public:
    explicit Child(std::vector<std::string> argv) {
        pid_ = ::fork();
        if (pid_ == 0) {
            std::vector<char*> args;
            for (auto& a : argv)
                args.push_back(a.data());
            args.push_back(nullptr);
            const int devnull = ::open("/dev/null", O_WRONLY);
            ::dup2(devnull, 1);
            ::dup2(devnull, 2);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
    }
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

  private:
    pid_t pid_ = -1;
};

constexpr std::array<std::uint8_t, 4> kGuestIp = {10, 213, 7, 1};
constexpr std::array<std::uint8_t, 4> kPeerIp = {10, 213, 7, 2};
constexpr std::array<std::uint8_t, 6> kPeerMac = {0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc};

bool is_arp_request_for_peer(const Bytes& f) {
    if (f.size() < 42) return false;
    if (load_be16(f.data() + 12) != 0x0806 || load_be16(f.data() + 20) != 1) return false;
    for (std::size_t i = 0; i < 4; ++i)
        if (f[38 + i] != std::byte{kPeerIp[i]}) return false;
    return true;
}

Bytes arp_reply(const Bytes& request) {
    Bytes f(60, std::byte{0});
    std::memcpy(f.data(), request.data() + 6, 6);  // to the guest's MAC
    for (std::size_t i = 0; i < 6; ++i)
        f[6 + i] = std::byte{kPeerMac[i]};
    store_be16(f.data() + 12, 0x0806);
    store_be16(f.data() + 14, 1);       // Ethernet (RFC 826)
    store_be16(f.data() + 16, 0x0800);  // IPv4
    f[18] = std::byte{6};
    f[19] = std::byte{4};
    store_be16(f.data() + 20, 2);  // reply
    for (std::size_t i = 0; i < 6; ++i)
        f[22 + i] = std::byte{kPeerMac[i]};
    for (std::size_t i = 0; i < 4; ++i)
        f[28 + i] = std::byte{kPeerIp[i]};
    std::memcpy(f.data() + 32, request.data() + 22, 6);  // target: the requester
    for (std::size_t i = 0; i < 4; ++i)
        f[38 + i] = std::byte{kGuestIp[i]};
    return f;
}

TEST(NetnsTap, StartErrorNamesThePath) {
    Env env;
    std::string err;
    auto a = make_attachment("netns:/run/netns/slw-no-such-ns,ifname=slw0", env.ctx, err);
    ASSERT_TRUE(a.has_value()) << err;
    EXPECT_FALSE((*a)->start(err).has_value());
    EXPECT_NE(err.find("/run/netns/slw-no-such-ns"), std::string::npos) << err;
    EXPECT_NE(err.find("No such file"), std::string::npos) << err;
    EXPECT_EQ((*a)->state(), "stopped");
}

TEST(NetnsTap, ArpInAndReplyOutThroughTheKernel) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!std::filesystem::exists("/dev/net/tun")) GTEST_SKIP() << "no /dev/net/tun";
    TestNetns ns;
    ASSERT_TRUE(ns.ok()) << "ip netns add failed";

    Env env;
    auto att = make_started(env, "netns:" + ns.path() + ",ifname=slw0");
    ASSERT_NE(att, nullptr);
    EXPECT_EQ(att->state(), "up");
    EXPECT_TRUE(att->caps().gso);
    EXPECT_TRUE(att->caps().partial_csum);
    // The device exists in the namespace, and is left down for the guest to configure.
    ASSERT_NE(capture("ip -n " + ns.name() + " link show slw0").find("slw0"), std::string::npos);

    ASSERT_EQ(run("ip -n " + ns.name() + " link set slw0 up"), 0);
    ASSERT_EQ(run("ip -n " + ns.name() + " addr add 10.213.7.1/24 dev slw0"), 0);

    // The namespace's stack resolves the fake peer: its ARP request comes out of the TAP.
    Bytes request;
    {
        Child ping({"ip", "netns", "exec", ns.name(), "busybox", "ping", "-c", "1", "-W", "1",
                    "10.213.7.2"});
        ASSERT_TRUE(env.run_until(
            [&] {
                PacketRef f;
                while (att->to_switch().try_pop(f)) {
                    Bytes b = to_bytes(f.data());
                    if (is_arp_request_for_peer(b)) {
                        // The virtio-net header was parsed and stripped: a plain, complete frame.
                        EXPECT_FALSE(f.meta().vnet.is_gso());
                        EXPECT_FALSE(f.meta().vnet.needs_csum());
                        EXPECT_EQ(f.meta().vnet.num_buffers, 0u);
                        request = std::move(b);
                    }
                }
                return !request.empty();
            },
            5000ms));
    }
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);

    // Our reply goes in through the TAP; the kernel's neighbour table learns the peer's MAC.
    ASSERT_TRUE(push_to_port(env, *att, arp_reply(request)));
    att->on_frames_from_switch();
    EXPECT_TRUE(env.run_until(
        [&] {
            return capture("ip -n " + ns.name() + " neigh show 10.213.7.2")
                       .find("02:00:00:aa:bb:cc") != std::string::npos;
        },
        3000ms))
        << capture("ip -n " + ns.name() + " neigh show");
    EXPECT_EQ(att->counters().drop_io.get(), 0u);
    EXPECT_EQ(att->counters().drop_too_big.get(), 0u);

    // A frame larger than a small buffer takes the large staging buffer with it (jumbo MTU set
    // by the "guest"; the peer's MAC is now known, so the echo request goes out at once).
    ASSERT_EQ(run("ip -n " + ns.name() + " link set slw0 mtu 9000"), 0);
    std::size_t big_len = 0;
    {
        Child ping({"ip", "netns", "exec", ns.name(), "busybox", "ping", "-c", "1", "-W", "1", "-s",
                    "5000", "10.213.7.2"});
        EXPECT_TRUE(env.run_until(
            [&] {
                PacketRef f;
                while (att->to_switch().try_pop(f)) {
                    if (f.len() > 2000 && load_be16(f.data().data() + 12) == 0x0800) {
                        big_len = f.len();
                        EXPECT_EQ(f.meta().size_class, SizeClass::large);
                    }
                }
                return big_len != 0;
            },
            5000ms));
    }
    EXPECT_EQ(big_len, 14u + 20u + 8u + 5000u);

    att->stop();
    EXPECT_EQ(att->state(), "stopped");
    // The TAP was not persistent: closing it removed the device.
    EXPECT_TRUE(env.run_until([&] {
        return capture("ip -n " + ns.name() + " link show slw0").find("slw0") == std::string::npos;
    }));
}

}  // namespace
}  // namespace slipway::guest::test
