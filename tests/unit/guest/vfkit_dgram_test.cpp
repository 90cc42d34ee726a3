// vfkit:PATH attachment against real unix datagram peers: magic handshake, peer learning and
// replacement, short and 64 KiB datagrams, egress with no peer.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>

#include "guest_test_util.hpp"

namespace slipway::guest::test {
namespace {

// A bound datagram socket, as vfkit uses (so replies can reach it).
class Peer {
  public:
    Peer(const std::string& own, const std::string& server) : own_(own) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        const int buf = 1 << 20;
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        sockaddr_un sa = addr(own);
        bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
        server_ = addr(server);
    }
    ~Peer() {
        ::close(fd_);
        ::unlink(own_.c_str());
    }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    [[nodiscard]] bool bound() const { return bound_; }
    // Non-blocking: the server's queue holds only net.unix.max_dgram_qlen datagrams (10 by
    // default), so while it is full the loop runs to let the attachment drain it.
    bool send(Env& env, const void* p, std::size_t n) {
        ssize_t r = -1;
        env.run_until([&] {
            r = ::sendto(fd_, p, n, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&server_),
                         sizeof server_);
            return r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        });
        return r == static_cast<ssize_t>(n);
    }
    bool send(Env& env, const Bytes& b) { return send(env, b.data(), b.size()); }
    bool send_magic(Env& env) { return send(env, "VFKT", 4); }
    // Datagrams received so far (non-blocking).
    std::vector<Bytes> poll() {
        std::vector<Bytes> out;
        std::vector<std::byte> buf(70000);
        for (;;) {
            const ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0) break;
            out.emplace_back(buf.begin(), buf.begin() + n);
        }
        return out;
    }

  private:
    static sockaddr_un addr(const std::string& p) {
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, p.data(), p.size());
        return sa;
    }
    std::string own_;
    int fd_ = -1;
    bool bound_ = false;
    sockaddr_un server_{};
};

std::vector<Bytes> receive(Env& env, Peer& p, std::size_t n) {
    std::vector<Bytes> got;
    env.run_until([&] {
        for (auto& d : p.poll())
            got.push_back(std::move(d));
        return got.size() >= n;
    });
    return got;
}

std::vector<Bytes> ingress(Env& env, Attachment& a, std::size_t n) {
    std::vector<Bytes> got;
    env.run_until([&] {
        for (auto& f : drain_to_switch(a))
            got.push_back(std::move(f));
        return got.size() >= n;
    });
    return got;
}

class VfkitTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(dir.ok());
        path = dir.file("vfkit.sock");
        att = make_started(env, "vfkit:" + path);
        ASSERT_NE(att, nullptr);
    }
    void egress_reaches(Peer& p, std::uint8_t seed) {
        const Bytes f = make_frame(300, seed);
        ASSERT_TRUE(push_to_port(env, *att, f));
        att->on_frames_from_switch();
        const auto got = receive(env, p, 1);
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], f);
    }

    TempDir dir;
    Env env;
    std::string path;
    std::unique_ptr<Attachment> att;
};

TEST_F(VfkitTest, CapsAndStates) {
    EXPECT_EQ(att->state(), "listening");
    EXPECT_FALSE(att->caps().gso);
    EXPECT_FALSE(att->caps().partial_csum);
    EXPECT_EQ(att->caps().max_frame, 1514u);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    att->stop();
    EXPECT_EQ(att->state(), "stopped");
    EXPECT_NE(::stat(path.c_str(), &st), 0);  // stop() removed the socket it created
}

TEST_F(VfkitTest, MagicTeachesThePeerAndIsNotAFrame) {
    Peer p(dir.file("peer.sock"), path);
    ASSERT_TRUE(p.bound());
    ASSERT_TRUE(p.send_magic(env));
    ASSERT_TRUE(env.run_until([&] { return att->state() == "connected"; }));
    env.run_for(10ms);
    EXPECT_TRUE(drain_to_switch(*att).empty());
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
    egress_reaches(p, 1);
}

TEST_F(VfkitTest, FirstFrameTeachesThePeerWithoutMagic) {
    Peer p(dir.file("peer.sock"), path);
    ASSERT_TRUE(p.bound());
    std::vector<Bytes> sent;
    for (std::uint8_t i = 0; i < 40; ++i) {  // more than one recvmmsg burst
        sent.push_back(make_frame(60u + i, i));
        ASSERT_TRUE(p.send(env, sent.back()));
    }
    const auto got = ingress(env, *att, sent.size());
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i)
        EXPECT_EQ(got[i], sent[i]);
    EXPECT_EQ(att->state(), "connected");
    egress_reaches(p, 2);
}

TEST_F(VfkitTest, ShortDatagramIsCountedAndJumboIsAccepted) {
    Peer p(dir.file("peer.sock"), path);
    ASSERT_TRUE(p.bound());
    const Bytes tiny(10, std::byte{0x42});
    ASSERT_TRUE(p.send(env, tiny));
    const Bytes big = make_frame(65536, 5);  // 64 KiB: crosses the small buffer into overflow
    ASSERT_TRUE(p.send(env, big));
    const Bytes mid = make_frame(1514, 6);  // an MTU frame: lands in the small buffer in place
    ASSERT_TRUE(p.send(env, mid));
    const auto got = ingress(env, *att, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0], big);
    EXPECT_EQ(got[1], mid);
    EXPECT_EQ(att->counters().drop_wire.get(), 1u);
}

TEST_F(VfkitTest, EgressWithoutPeerIsDroppedAndCounted) {
    ASSERT_TRUE(push_to_port(env, *att, make_frame(60, 1)));
    ASSERT_TRUE(push_to_port(env, *att, make_frame(60, 2)));
    att->on_frames_from_switch();
    EXPECT_EQ(att->counters().drop_io.get(), 2u);
    EXPECT_TRUE(att->to_port().empty_approx());
}

TEST_F(VfkitTest, NewSenderReplacesThePeer) {
    Peer a(dir.file("a.sock"), path);
    Peer b(dir.file("b.sock"), path);
    ASSERT_TRUE(a.bound() && b.bound());
    ASSERT_TRUE(a.send_magic(env));
    ASSERT_TRUE(env.run_until([&] { return att->state() == "connected"; }));
    egress_reaches(a, 1);
    ASSERT_TRUE(b.send(env, make_frame(70, 9)));
    ASSERT_EQ(ingress(env, *att, 1).size(), 1u);
    egress_reaches(b, 2);
    env.run_for(10ms);
    EXPECT_TRUE(a.poll().empty());
}

TEST_F(VfkitTest, PeerChangeInsideOneBatchLocksTheNewGuest) {
    // With the real switch: the old guest's last frame and the new guest's first arrive in one
    // recvmmsg batch. The port must end up locked to the new guest's MAC, not the old one's.
    SinkPort sink;
    env.sw.add_port(sink);
    env.sw.add_port(*att);
    Peer a(dir.file("a.sock"), path);
    Peer b(dir.file("b.sock"), path);
    ASSERT_TRUE(a.bound() && b.bound());
    ASSERT_TRUE(a.send(env, make_frame(60, 0x11)));  // queued: the loop has not run yet
    ASSERT_TRUE(b.send(env, make_frame(60, 0x22)));
    ASSERT_TRUE(env.run_until([&] { return sink.got.size() == 2; }));
    ASSERT_TRUE(b.send(env, make_frame(61, 0x22)));  // the new guest keeps working
    EXPECT_TRUE(env.run_until([&] { return sink.got.size() == 3; }));
    EXPECT_EQ(att->counters().drop_src_mac.get(), 0u);
    env.sw.remove_port(*att);
    env.sw.remove_port(sink);
}

TEST_F(VfkitTest, SlowPeerBacksOffAndGetsEverything) {
    Peer p(dir.file("peer.sock"), path);
    ASSERT_TRUE(p.bound());
    ASSERT_TRUE(p.send_magic(env));
    ASSERT_TRUE(env.run_until([&] { return att->state() == "connected"; }));
    // More than the peer's receive queue takes: sendmmsg meets EAGAIN; frames stay queued and go
    // out as the peer reads. Frames stay in order.
    constexpr std::size_t kFrames = 900;
    std::vector<Bytes> sent;
    for (std::size_t i = 0; i < kFrames; ++i) {
        sent.push_back(make_frame(1500, static_cast<std::uint8_t>(i)));
        ASSERT_TRUE(push_to_port(env, *att, sent.back()));
    }
    att->on_frames_from_switch();
    const auto got = receive(env, p, kFrames);
    ASSERT_EQ(got.size(), kFrames);
    for (std::size_t i = 0; i < kFrames; ++i)
        ASSERT_EQ(got[i], sent[i]) << "frame " << i;
    EXPECT_EQ(att->counters().drop_io.get(), 0u);
}

}  // namespace
}  // namespace slipway::guest::test
