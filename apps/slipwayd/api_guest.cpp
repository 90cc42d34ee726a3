// GuestHandoff (theory of operation: api_guest.hpp).
#include "slipwayd/api_guest.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

namespace slipway::apps {

GuestHandoff::GuestHandoff(IoContext& api_io, std::function<void(int, Ipv4Addr)> serve,
                           std::size_t capacity)
    : ring_(capacity), serve_(std::move(serve)) {
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    try {
        watch_ = std::make_unique<FdWatcher>(api_io, efd_);
    } catch (...) {
        ::close(efd_);
        throw;
    }
    arm();
}

GuestHandoff::~GuestHandoff() {
    *alive_ = false;
    watch_.reset();
    ::close(efd_);
    Conn c;
    while (ring_.try_pop(c))
        ::close(c.fd);
}

int GuestHandoff::open(Ipv4Addr guest) noexcept {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    // try_push is SpscRing's release store of its tail, paired with the API thread's acquire
    // load in try_pop: the fd number is visible there before the eventfd wakes it.
    if (!ring_.try_push(Conn{sv[1], guest})) {
        ::close(sv[0]);
        ::close(sv[1]);
        return -EAGAIN;
    }
    const std::uint64_t one = 1;
    // Fails only when the counter is already huge: the API loop is going to wake anyway.
    [[maybe_unused]] const auto n = ::write(efd_, &one, sizeof one);
    return sv[0];
}

void GuestHandoff::arm() {
    watch_->wait_readable([this, alive = alive_](bool ok) {
        if (ok && *alive) drain();
    });
}

void GuestHandoff::drain() noexcept {
    std::uint64_t v;
    [[maybe_unused]] const auto n = ::read(efd_, &v, sizeof v);
    Conn c;
    while (ring_.try_pop(c)) {
        try {
            serve_(c.fd, c.guest);  // owns the fd from here, even when it throws
        } catch (...) {
            // An allocation failure for one session: that guest's connection is closed, the
            // handoff keeps serving the others.
        }
    }
    arm();
}

}  // namespace slipway::apps
