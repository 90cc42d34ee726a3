// qemu:PATH attachment against a real unix stream client: framing both ways, bad lengths,
// disconnect and reconnect, a second concurrent client, back-pressure with partial writes.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>

#include "guest_test_util.hpp"
#include "slipway/core/bytes.hpp"

namespace slipway::guest::test {
namespace {

class Client {
  public:
    explicit Client(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, path.data(), path.size());
        connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
    }
    ~Client() {
        if (fd_ >= 0) ::close(fd_);
    }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    [[nodiscard]] bool connected() const { return connected_; }
    void close() {
        ::close(fd_);
        fd_ = -1;
    }
    bool send_raw(const Bytes& b) {
        return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
    }
    // Reads what is there without blocking; false once the peer closed the connection.
    bool poll_read() { return read_available(fd_, in_); }
    // Complete frames received so far (length-prefixed), removed from the input.
    std::vector<Bytes> take_frames() {
        std::vector<Bytes> out;
        std::size_t off = 0;
        while (in_.size() - off >= 4) {
            const std::uint32_t len = load_be32(in_.data() + off);
            if (in_.size() - off - 4 < len) break;
            out.emplace_back(in_.begin() + static_cast<std::ptrdiff_t>(off + 4),
                             in_.begin() + static_cast<std::ptrdiff_t>(off + 4 + len));
            off += 4 + len;
        }
        in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(off));
        return out;
    }

  private:
    int fd_ = -1;
    bool connected_ = false;
    Bytes in_;
};

Bytes framed(const Bytes& f) {
    Bytes out(4 + f.size());
    store_be32(out.data(), static_cast<std::uint32_t>(f.size()));
    std::memcpy(out.data() + 4, f.data(), f.size());
    return out;
}

Bytes length_only(std::uint32_t len) {
    Bytes out(4 + 16);
    store_be32(out.data(), len);
    return out;
}

// Runs the loop until the client has `n` frames or the deadline passes.
std::vector<Bytes> receive_frames(Env& env, Client& c, std::size_t n) {
    std::vector<Bytes> got;
    env.run_until([&] {
        c.poll_read();
        auto f = c.take_frames();
        for (auto& x : f)
            got.push_back(std::move(x));
        return got.size() >= n;
    });
    return got;
}

bool wait_closed(Env& env, Client& c) {
    return env.run_until([&] { return !c.poll_read(); });
}

// Exchanges one frame each way through a freshly connected client.
void expect_exchange(Env& env, Attachment& a, Client& c, std::uint8_t seed) {
    const Bytes in = make_frame(100, seed);
    ASSERT_TRUE(c.send_raw(framed(in)));
    std::vector<Bytes> sw;
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(a))
            sw.push_back(std::move(f));
        return !sw.empty();
    }));
    ASSERT_EQ(sw.size(), 1u);
    EXPECT_EQ(sw[0], in);

    const Bytes out = make_frame(200, static_cast<std::uint8_t>(seed + 1));
    ASSERT_TRUE(push_to_port(env, a, out));
    a.on_frames_from_switch();
    const auto got = receive_frames(env, c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], out);
}

class QemuStreamTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(dir.ok());
        path = dir.file("vm.sock");
        att = make_started(env, "qemu:" + path);
        ASSERT_NE(att, nullptr);
    }
    bool wait_state(const std::string& s) {
        return env.run_until([&] { return att->state() == s; });
    }

    TempDir dir;
    Env env;
    std::string path;
    std::unique_ptr<Attachment> att;
};

TEST_F(QemuStreamTest, StartsListeningWithCapsAndPrivateSocket) {
    EXPECT_EQ(att->state(), "listening");
    EXPECT_EQ(att->spec(), "qemu:" + path);
    EXPECT_FALSE(att->caps().gso);
    EXPECT_FALSE(att->caps().partial_csum);
    EXPECT_EQ(att->caps().max_frame, 1514u);
    EXPECT_EQ(att->kind(), PortKind::guest);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(QemuStreamTest, IngressParsesBatchedAndSplitFrames) {
    Client c(path);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(wait_state("connected"));

    const Bytes f1 = make_frame(60, 1), f2 = make_frame(1514, 2), f3 = make_frame(14, 3);
    Bytes batch = framed(f1);
    for (const Bytes& f : {f2, f3}) {
        const Bytes x = framed(f);
        batch.insert(batch.end(), x.begin(), x.end());
    }
    ASSERT_TRUE(c.send_raw(batch));

    // One frame split across two writes, the split inside the length prefix's tail... and data.
    const Bytes f4 = make_frame(900, 4);
    const Bytes x4 = framed(f4);
    ASSERT_TRUE(c.send_raw(Bytes(x4.begin(), x4.begin() + 3)));
    std::vector<Bytes> got;
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(*att))
            got.push_back(std::move(f));
        return got.size() >= 3;
    }));
    env.run_for(20ms);  // the partial frame must not come out
    for (auto& f : drain_to_switch(*att))
        got.push_back(std::move(f));
    ASSERT_EQ(got.size(), 3u);
    ASSERT_TRUE(c.send_raw(Bytes(x4.begin() + 3, x4.begin() + 500)));
    env.run_for(20ms);
    EXPECT_TRUE(drain_to_switch(*att).empty());
    ASSERT_TRUE(c.send_raw(Bytes(x4.begin() + 500, x4.end())));
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(*att))
            got.push_back(std::move(f));
        return got.size() >= 4;
    }));
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0], f1);
    EXPECT_EQ(got[1], f2);
    EXPECT_EQ(got[2], f3);
    EXPECT_EQ(got[3], f4);
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(QemuStreamTest, JumboFrameUpToWireLimitIsAccepted) {
    Client c(path);
    ASSERT_TRUE(c.connected());
    const Bytes big = make_frame(65550, 9);
    ASSERT_TRUE(c.send_raw(framed(big)));
    std::vector<Bytes> got;
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(*att))
            got.push_back(std::move(f));
        return !got.empty();
    }));
    EXPECT_EQ(got[0], big);
}

TEST_F(QemuStreamTest, EgressIsFramedInOrder) {
    Client c(path);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(wait_state("connected"));
    std::vector<Bytes> sent;
    for (std::uint8_t i = 0; i < 3; ++i) {
        sent.push_back(make_frame(64u + i * 500u, i));
        ASSERT_TRUE(push_to_port(env, *att, sent.back()));
    }
    att->on_frames_from_switch();
    const auto got = receive_frames(env, c, 3);
    ASSERT_EQ(got.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i)
        EXPECT_EQ(got[i], sent[i]);
    EXPECT_TRUE(att->to_port().empty_approx());
}

TEST_F(QemuStreamTest, SlowReaderGetsEverythingAfterPartialWrites) {
    Client c(path);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(wait_state("connected"));
    // More than a unix socket buffer holds: the attachment meets EAGAIN / partial writes, keeps
    // the rest and must resume on writability only.
    constexpr std::size_t kFrames = 600;
    std::vector<Bytes> sent;
    for (std::size_t i = 0; i < kFrames; ++i) {
        sent.push_back(make_frame(1514, static_cast<std::uint8_t>(i)));
        ASSERT_TRUE(push_to_port(env, *att, sent.back()));
    }
    att->on_frames_from_switch();
    env.run_for(30ms);  // the client does not read yet
    EXPECT_FALSE(att->to_port().empty_approx());
    const auto got = receive_frames(env, c, kFrames);
    ASSERT_EQ(got.size(), kFrames);
    for (std::size_t i = 0; i < kFrames; ++i)
        ASSERT_EQ(got[i], sent[i]) << "frame " << i;
    EXPECT_EQ(att->counters().drop_io.get(), 0u);
}

TEST_F(QemuStreamTest, OversizedLengthClosesOnlyThatConnection) {
    {
        Client bad(path);
        ASSERT_TRUE(bad.connected());
        const Bytes good = make_frame(80, 7);
        Bytes b = framed(good);
        const Bytes l = length_only(70000);
        b.insert(b.end(), l.begin(), l.end());
        ASSERT_TRUE(bad.send_raw(b));
        EXPECT_TRUE(wait_closed(env, bad));
        // The good frame before the bad length still went through.
        const auto got = drain_to_switch(*att);
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], good);
    }
    EXPECT_EQ(att->counters().drop_wire.get(), 1u);
    EXPECT_TRUE(wait_state("listening"));
    Client c(path);
    ASSERT_TRUE(c.connected());
    expect_exchange(env, *att, c, 20);
}

TEST_F(QemuStreamTest, UndersizedLengthClosesOnlyThatConnection) {
    {
        Client bad(path);
        ASSERT_TRUE(bad.connected());
        ASSERT_TRUE(bad.send_raw(length_only(10)));
        EXPECT_TRUE(wait_closed(env, bad));
    }
    EXPECT_EQ(att->counters().drop_wire.get(), 1u);
    Client c(path);
    ASSERT_TRUE(c.connected());
    expect_exchange(env, *att, c, 30);
}

TEST_F(QemuStreamTest, DisconnectDropsQueuedFramesAndNextClientWorks) {
    {
        Client c1(path);
        ASSERT_TRUE(c1.connected());
        expect_exchange(env, *att, c1, 40);
        c1.close();
        ASSERT_TRUE(wait_state("listening"));
    }
    // Nobody attached: egress is dropped and counted, not queued for the next guest.
    ASSERT_TRUE(push_to_port(env, *att, make_frame(60, 1)));
    ASSERT_TRUE(push_to_port(env, *att, make_frame(60, 2)));
    att->on_frames_from_switch();
    EXPECT_EQ(att->counters().drop_io.get(), 2u);
    EXPECT_TRUE(att->to_port().empty_approx());

    Client c2(path);
    ASSERT_TRUE(c2.connected());
    ASSERT_TRUE(wait_state("connected"));
    expect_exchange(env, *att, c2, 50);
}

TEST_F(QemuStreamTest, SecondConcurrentClientIsRefused) {
    Client c1(path);
    ASSERT_TRUE(c1.connected());
    ASSERT_TRUE(wait_state("connected"));
    Client c2(path);
    ASSERT_TRUE(c2.connected());  // the kernel completes the connect; the attachment closes it
    EXPECT_TRUE(wait_closed(env, c2));
    EXPECT_EQ(att->state(), "connected");
    expect_exchange(env, *att, c1, 60);
}

TEST_F(QemuStreamTest, RegisteredPortIsResetOnDisconnect) {
    // With the real switch: a frame from the guest reaches another port, and after a reconnect
    // a guest with another MAC is accepted (the MAC lock was reset).
    SinkPort sink;
    env.sw.add_port(sink);
    env.sw.add_port(*att);
    {
        Client c1(path);
        ASSERT_TRUE(c1.connected());
        ASSERT_TRUE(c1.send_raw(framed(make_frame(60, 0x11))));
        ASSERT_TRUE(env.run_until([&] { return sink.got.size() == 1; }));
    }
    ASSERT_TRUE(wait_state("listening"));
    Client c2(path);
    ASSERT_TRUE(c2.connected());
    ASSERT_TRUE(c2.send_raw(framed(make_frame(60, 0x22))));
    EXPECT_TRUE(env.run_until([&] { return sink.got.size() == 2; }));
    EXPECT_EQ(att->counters().drop_src_mac.get(), 0u);
    env.sw.remove_port(*att);
    env.sw.remove_port(sink);
}

TEST_F(QemuStreamTest, StopUnlinksTheSocket) {
    att->stop();
    EXPECT_EQ(att->state(), "stopped");
    struct stat st {};
    EXPECT_NE(::stat(path.c_str(), &st), 0);
}

TEST(QemuStreamStart, ErrorsNameThePathAndCause) {
    Env env;
    TempDir dir;
    std::string err;
    const std::string missing = dir.file("no/such/dir/vm.sock");
    auto a = make_attachment("qemu:" + missing, env.ctx, err);
    ASSERT_TRUE(a.has_value()) << err;
    auto s = (*a)->start(err);
    ASSERT_FALSE(s.has_value());
    EXPECT_NE(err.find(missing), std::string::npos) << err;
    EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;

    // A regular file in the way is not a stale socket: never deleted.
    const std::string file = dir.file("regular");
    {
        FILE* f = std::fopen(file.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fclose(f);
    }
    auto b = make_attachment("qemu:" + file, env.ctx, err);
    ASSERT_TRUE(b.has_value());
    EXPECT_FALSE((*b)->start(err).has_value());
    EXPECT_NE(err.find(file), std::string::npos) << err;
    struct stat st {};
    EXPECT_EQ(::stat(file.c_str(), &st), 0);
}

TEST(QemuStreamStart, StaleSocketIsReplaced) {
    Env env;
    TempDir dir;
    const std::string path = dir.file("vm.sock");
    {
        auto a = make_started(env, "qemu:" + path);
        ASSERT_NE(a, nullptr);
        // Simulate a crash: the socket file stays behind.
        const std::string keep = path + ".keep";
        ASSERT_EQ(::link(path.c_str(), keep.c_str()), 0);
        a->stop();
        ASSERT_EQ(::rename(keep.c_str(), path.c_str()), 0);
    }
    auto b = make_started(env, "qemu:" + path);
    ASSERT_NE(b, nullptr);
    Client c(path);
    EXPECT_TRUE(c.connected());
}

}  // namespace
}  // namespace slipway::guest::test
