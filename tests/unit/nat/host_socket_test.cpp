// nat::LinuxSockets against the kernel's TCP over loopback, in both peek modes (SO_PEEK_OFF and
// the discard area): connect results, peeking at offsets, rewinds, discards, end of stream,
// partial writes into a full send queue, and resets.
#include "slipway/nat/host_socket.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace slipway::nat {
namespace {

struct Listener {
    int fd = -1;
    sockaddr_in addr{};
    Listener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        socklen_t len = sizeof addr;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        EXPECT_EQ(::listen(fd, 4), 0);
    }
    ~Listener() { ::close(fd); }
    [[nodiscard]] const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

bool wait_for(int fd, short events, int ms = 2000) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, ms) == 1;
}

std::string text(const std::vector<char>& b, ssize_t n) {
    return n > 0 ? std::string(b.data(), static_cast<std::size_t>(n)) : std::string();
}

class HostSocketsTest : public ::testing::TestWithParam<bool> {
  protected:
    void SetUp() override {
        if (GetParam() && !LinuxSockets::probe_peek_off()) GTEST_SKIP() << "no SO_PEEK_OFF";
        socks = std::make_unique<LinuxSockets>(GetParam(), 1 << 16);
        fd = socks->open_connect(lis.sa(), sizeof lis.addr);
        ASSERT_GE(fd, 0);
        ASSERT_TRUE(wait_for(fd, POLLOUT));
        ASSERT_EQ(socks->connect_result(fd), 0);
        peer = ::accept(lis.fd, nullptr, nullptr);
        ASSERT_GE(peer, 0);
    }
    void TearDown() override {
        if (socks && fd >= 0) socks->close(fd, false);
        if (peer >= 0) ::close(peer);
    }
    // peek(offset) of up to `len` bytes, as text, or the negative result as "E<errno>".
    std::string peek(std::size_t offset, std::size_t len) {
        std::vector<char> b(len);
        iovec v{b.data(), len};
        const ssize_t n = socks->peek(fd, offset, {&v, 1});
        return n < 0 ? "E" + std::to_string(-n) : text(b, n);
    }
    Listener lis;
    std::unique_ptr<LinuxSockets> socks;
    int fd = -1;
    int peer = -1;
};

TEST_P(HostSocketsTest, PeekAtOffsetsRewindDiscardAndEnd) {
    ASSERT_EQ(::send(peer, "0123456789", 10, 0), 10);
    ASSERT_TRUE(wait_for(fd, POLLIN));
    EXPECT_EQ(peek(0, 4), "0123");
    EXPECT_EQ(peek(4, 4), "4567");
    EXPECT_EQ(peek(8, 10), "89");
    EXPECT_EQ(peek(10, 10), "E" + std::to_string(EAGAIN));  // nothing new
    // The guest acknowledges 4 bytes: they leave the queue, offsets move with them.
    EXPECT_EQ(socks->discard(fd, 4), 4);
    EXPECT_EQ(peek(6, 10), "E" + std::to_string(EAGAIN));
    // A retransmission rewinds to the oldest unacknowledged byte.
    socks->set_peek_offset(fd, 0);
    EXPECT_EQ(peek(0, 3), "456");
    EXPECT_EQ(peek(3, 10), "789");
    // More data arrives, then the peer's FIN.
    ASSERT_EQ(::send(peer, "abc", 3, 0), 3);
    ASSERT_EQ(::shutdown(peer, SHUT_WR), 0);
    // Each successful peek moves the kernel's offset (SO_PEEK_OFF): keep the one that succeeds.
    std::string got;
    for (int i = 0; i < 100; ++i) {
        got = peek(6, 10);
        if (got.rfind('E', 0) != 0) break;
        ::usleep(10000);
    }
    EXPECT_EQ(got, "abc");
    EXPECT_EQ(socks->discard(fd, 9), 9);
    EXPECT_EQ(peek(0, 10), "");  // end of stream: 0
}

TEST_P(HostSocketsTest, WritesWhatTheQueueTakesAndNoMore) {
    const int small = 16384;
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ASSERT_EQ(::setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    std::vector<char> chunk(65536, 'x');
    std::size_t total = 0;
    for (int i = 0; i < 1000; ++i) {
        iovec v{chunk.data(), chunk.size()};
        const ssize_t n = socks->write(fd, {&v, 1});
        ASSERT_GE(n, 0);
        if (n == 0) break;  // full: nothing taken, nothing lost
        ASSERT_LE(static_cast<std::size_t>(n), chunk.size());
        total += static_cast<std::size_t>(n);
    }
    EXPECT_GT(total, 0u);
    EXPECT_LT(total, 1000u * chunk.size());
    EXPECT_LT(socks->send_space(fd), 4096u);
    // The peer reads everything: exactly `total` bytes arrive, and space returns.
    std::size_t got = 0;
    std::vector<char> buf(65536);
    while (got < total && wait_for(peer, POLLIN)) {
        const ssize_t n = ::recv(peer, buf.data(), buf.size(), 0);
        ASSERT_GT(n, 0);
        got += static_cast<std::size_t>(n);
    }
    EXPECT_EQ(got, total);
    for (int i = 0; i < 100 && socks->send_space(fd) == 0; ++i)
        ::usleep(10000);
    EXPECT_GT(socks->send_space(fd), 0u);
}

TEST_P(HostSocketsTest, ResetCloseReachesThePeer) {
    socks->close(fd, true);
    fd = -1;
    ASSERT_TRUE(wait_for(peer, POLLIN));
    char c;
    EXPECT_EQ(::recv(peer, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECONNRESET);
}

TEST_P(HostSocketsTest, WriteAfterPeerResetIsAnErrorNotASignal) {
    const linger lg{1, 0};
    ::setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(peer);
    peer = -1;
    ASSERT_TRUE(wait_for(fd, POLLIN));
    char c = 'x';
    iovec v{&c, 1};
    ssize_t n = 0;
    for (int i = 0; i < 3 && n >= 0; ++i)
        n = socks->write(fd, {&v, 1});
    EXPECT_TRUE(n == -ECONNRESET || n == -EPIPE) << n;
}

INSTANTIATE_TEST_SUITE_P(PeekModes, HostSocketsTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                             return p.param ? "PeekOff" : "DiscardArea";
                         });

TEST(HostSockets, RefusedConnectIsReported) {
    LinuxSockets socks(false, 4096);
    sockaddr_in a{};
    {
        Listener gone;  // a port that was just free, now closed again
        a = gone.addr;
    }
    const int fd = socks.open_connect(reinterpret_cast<const sockaddr*>(&a), sizeof a);
    ASSERT_GE(fd, 0);  // loopback connects finish later, even when refused
    ASSERT_TRUE(wait_for(fd, POLLOUT));
    EXPECT_EQ(socks.connect_result(fd), ECONNREFUSED);
    socks.close(fd, false);
}

TEST(HostSockets, PeekBeyondTheDiscardAreaIsRefused) {
    LinuxSockets socks(false, 4096);
    EXPECT_EQ(socks.max_peek_offset(), 4096u);
    char b[8];
    iovec v{b, sizeof b};
    EXPECT_EQ(socks.peek(-1, 5000, {&v, 1}), -EINVAL);
}

}  // namespace
}  // namespace slipway::nat
