// LinuxDgramSockets: the kernel's UDP, ping and raw ICMP sockets for the datagram engines
// (dgram_socket.hpp).
// clang-format off
#include <time.h>  // before linux/errqueue.h, which uses struct timespec without including it
#include <linux/errqueue.h>
// clang-format on
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "slipway/nat/dgram_socket.hpp"

namespace slipway::nat {

namespace {

constexpr std::size_t kMaxBurst = 64;

int open_probe(int type, int protocol) noexcept {
    const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, protocol);
    if (fd >= 0) ::close(fd);
    return fd;
}

}  // namespace

bool LinuxDgramSockets::probe_ping() noexcept {
    return open_probe(SOCK_DGRAM, IPPROTO_ICMP) >= 0;
}

bool LinuxDgramSockets::probe_raw() noexcept {
    return open_probe(SOCK_RAW, IPPROTO_ICMP) >= 0;
}

int LinuxDgramSockets::open_connected(int protocol, const sockaddr* to, socklen_t len) noexcept {
    const int fd = ::socket(to->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) return -errno;
    const int one = 1;
    // ip(7): queue ICMP errors with their details rather than only setting a pending errno.
    (void)::setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one);
    if (::connect(fd, to, len) != 0) {
        const int err = errno;
        ::close(fd);
        return -err;
    }
    return fd;
}

int LinuxDgramSockets::open_raw_icmp() noexcept {
    const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd < 0) return -errno;
    return fd;
}

int LinuxDgramSockets::send_burst(int fd, std::span<const iovec> datagrams) noexcept {
    std::array<mmsghdr, kMaxBurst> mm{};
    const std::size_t n = std::min(datagrams.size(), mm.size());
    for (std::size_t i = 0; i < n; ++i) {
        mm[i].msg_hdr.msg_iov = const_cast<iovec*>(&datagrams[i]);
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    for (;;) {
        const int r =
            ::sendmmsg(fd, mm.data(), static_cast<unsigned>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        return -errno;
    }
}

int LinuxDgramSockets::send_to(int fd, Ipv4Addr to, std::span<const std::byte> msg) noexcept {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(to.v);
    const ssize_t r = ::sendto(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                               reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int LinuxDgramSockets::recv_burst(int fd, std::span<DgramIn> msgs) noexcept {
    std::array<mmsghdr, kMaxBurst> mm{};
    std::array<std::array<iovec, 2>, kMaxBurst> iov{};
    std::array<sockaddr_in, kMaxBurst> from{};
    const std::size_t n = std::min(msgs.size(), mm.size());
    for (std::size_t i = 0; i < n; ++i) {
        iov[i][0] = msgs[i].head;
        iov[i][1] = msgs[i].tail;
        mm[i].msg_hdr.msg_iov = iov[i].data();
        mm[i].msg_hdr.msg_iovlen = msgs[i].tail.iov_len != 0 ? 2 : 1;
        mm[i].msg_hdr.msg_name = &from[i];
        mm[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int r;
    do {
        // MSG_TRUNC: msg_len is the datagram's real length even when it did not fit.
        r = ::recvmmsg(fd, mm.data(), static_cast<unsigned>(n), MSG_DONTWAIT | MSG_TRUNC, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return (errno == EWOULDBLOCK) ? 0 : -errno;
    for (std::size_t i = 0; i < static_cast<std::size_t>(r); ++i) {
        msgs[i].len = mm[i].msg_len;
        msgs[i].from = Ipv4Addr{ntohl(from[i].sin_addr.s_addr)};
    }
    return r;
}

bool LinuxDgramSockets::read_error(int fd, SockError& e) noexcept {
    std::array<std::byte, 512> ctl{};
    iovec iov{e.data.data(), e.data.size()};
    sockaddr_in name{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.data();
    mh.msg_controllen = ctl.size();
    mh.msg_name = &name;
    mh.msg_namelen = sizeof name;
    const ssize_t r = ::recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (r < 0) return false;
    e.data_len = static_cast<std::size_t>(r);
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_RECVERR) continue;
        sock_extended_err ee{};
        std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
        e.err = static_cast<int>(ee.ee_errno);
        e.from_icmp = ee.ee_origin == SO_EE_ORIGIN_ICMP;
        e.type = ee.ee_type;
        e.code = ee.ee_code;
        e.info = ee.ee_info;
        e.offender = Ipv4Addr{};
        // The offender's sockaddr follows the structure (SO_EE_OFFENDER); AF_UNSPEC when unknown.
        sockaddr_in off{};
        const std::size_t at = sizeof ee;
        if (c->cmsg_len >= CMSG_LEN(at + sizeof off)) {
            std::memcpy(&off, CMSG_DATA(c) + at, sizeof off);
            if (off.sin_family == AF_INET) e.offender = Ipv4Addr{ntohl(off.sin_addr.s_addr)};
        }
        return true;
    }
    e.err = 0;
    e.from_icmp = false;
    return true;  // an entry without the control message: taken off the queue, nothing to say
}

void LinuxDgramSockets::close(int fd) noexcept {
    ::close(fd);
}

}  // namespace slipway::nat
