// LinuxSockets: the kernel's TCP sockets for the NAT engine (see host_socket.hpp).
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "slipway/nat/host_socket.hpp"

namespace slipway::nat {

namespace {

constexpr std::size_t kMaxIov = 64;
constexpr std::size_t kScratch = 16 * 1024;

ssize_t neg_errno() noexcept {
    return -static_cast<ssize_t>(errno);
}

}  // namespace

LinuxSockets::LinuxSockets(bool use_peek_off, std::size_t discard_area)
    : peek_off_(use_peek_off),
      discard_(use_peek_off ? nullptr : std::make_unique<std::byte[]>(discard_area)),
      discard_len_(use_peek_off ? 0 : discard_area),
      scratch_(std::make_unique<std::byte[]>(kScratch)) {}

LinuxSockets::~LinuxSockets() = default;

bool LinuxSockets::probe_peek_off() noexcept {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const int zero = 0;
    // Kernels before 6.9 reject the option on TCP sockets (EOPNOTSUPP).
    const bool ok = ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) == 0;
    ::close(fd);
    return ok;
}

void LinuxSockets::adopt(int fd) noexcept {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK) == 0) (void)::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    tune(fd);
}

void LinuxSockets::tune(int fd) noexcept {
    const int one = 1;
    // Frames to the guest are built by the engine; small writes go out at once on the host side
    // too, as the guest's own stack decided when to send them.
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (peek_off_) {
        const int zero = 0;
        (void)::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
    }
}

int LinuxSockets::open_connect(const sockaddr* addr, socklen_t len) noexcept {
    const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    tune(fd);  // created non-blocking: no fcntl() round trip per connection
    if (::connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
        const int err = errno;
        ::close(fd);
        return -err;
    }
    return fd;
}

int LinuxSockets::connect_result(int fd) noexcept {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}

ssize_t LinuxSockets::write(int fd, std::span<const iovec> iov) noexcept {
    msghdr mh{};
    mh.msg_iov = const_cast<iovec*>(iov.data());
    mh.msg_iovlen = iov.size();
    const ssize_t n = ::sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return neg_errno();
}

std::size_t LinuxSockets::send_space(int fd) noexcept {
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    int outq = 0;
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 ||
        ::ioctl(fd, SIOCOUTQ, &outq) != 0)
        return 0;
    // The kernel takes more data while the queue's memory (payload plus per-buffer overhead) is
    // below SO_SNDBUF; SIOCOUTQ counts payload only. A sixteenth is left for the overhead, which
    // stays small because the engine writes a whole burst per sendmsg. The queue must be able to
    // fill up: the kernel grows the send buffer (tcp_wmem autotuning) only once a sender found it
    // full, so a window held well below SO_SNDBUF (half of it, say) would pin the buffer at its
    // initial size and the guest's uploads at a few tens of KiB in flight.
    const int usable = sndbuf - sndbuf / 16;
    return usable > outq ? static_cast<std::size_t>(usable - outq) : 0;
}

ssize_t LinuxSockets::peek(int fd, std::size_t offset, std::span<const iovec> iov) noexcept {
    std::array<iovec, kMaxIov + 1> v{};
    std::size_t n = 0;
    if (!peek_off_) {
        if (offset > discard_len_) return -EINVAL;
        if (offset != 0) v[n++] = iovec{discard_.get(), offset};
    }
    for (const iovec& x : iov) {
        if (n == v.size()) break;
        v[n++] = x;
    }
    msghdr mh{};
    mh.msg_iov = v.data();
    mh.msg_iovlen = n;
    const ssize_t r = ::recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0) return (errno == EWOULDBLOCK) ? -EAGAIN : neg_errno();
    if (peek_off_ || offset == 0) return r;
    // Without SO_PEEK_OFF the kernel copied from the head: the first `offset` bytes landed in the
    // discard area. Fewer than that means nothing new is there (or the stream ended).
    const auto got = static_cast<std::size_t>(r);
    if (got > offset) return static_cast<ssize_t>(got - offset);
    return got == 0 ? 0 : -EAGAIN;
}

void LinuxSockets::set_peek_offset(int fd, std::size_t offset) noexcept {
    if (!peek_off_) return;  // the offset travels with every peek()
    const int off = static_cast<int>(offset);
    (void)::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
}

ssize_t LinuxSockets::discard(int fd, std::size_t n) noexcept {
    // MSG_TRUNC on a TCP socket drops the bytes without copying them (tcp(7)).
    std::size_t done = 0;
    while (done < n) {
        ssize_t r = ::recv(fd, nullptr, n - done, MSG_TRUNC | MSG_DONTWAIT);
        if (r < 0 && errno == EFAULT)
            // Only TCP drops without copying; other streams (the DNS service's AF_UNIX pair) copy,
            // and consumed nothing when the copy to nullptr failed.
            r = ::recv(fd, scratch_.get(), std::min(n - done, kScratch), MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR) continue;
            return done != 0 ? static_cast<ssize_t>(done) : neg_errno();
        }
        if (r == 0) break;
        done += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(done);
}

std::size_t LinuxSockets::max_peek_offset() const noexcept {
    return peek_off_ ? std::size_t{1} << 30 : discard_len_;
}

void LinuxSockets::shutdown_write(int fd) noexcept {
    (void)::shutdown(fd, SHUT_WR);
}

void LinuxSockets::close(int fd, bool reset) noexcept {
    if (reset) {
        const linger lg{1, 0};
        (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ::close(fd);
}

}  // namespace slipway::nat
