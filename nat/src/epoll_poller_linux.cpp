// EpollPoller: edge-triggered epoll for the NAT engine's host sockets (see epoll_poller.hpp).
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

#include "slipway/nat/epoll_poller.hpp"

namespace slipway::nat {

namespace {

// Edge-triggered: the engine reads host data with MSG_PEEK and leaves it queued until the guest
// acknowledges it, so a level-triggered "readable" would stay set while the guest's window is
// full. An edge fires on every new arrival instead; the engine resumes on its own when an ACK
// opens the window.
std::uint32_t to_epoll(std::uint32_t interest) noexcept {
    std::uint32_t e = EPOLLET | EPOLLRDHUP;
    if ((interest & sock_event::in) != 0) e |= EPOLLIN;
    if ((interest & sock_event::out) != 0) e |= EPOLLOUT;
    return e;
}

}  // namespace

EpollPoller::EpollPoller() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

EpollPoller::~EpollPoller() {
    if (epfd_ >= 0) ::close(epfd_);
}

bool EpollPoller::watch(int fd, FlowId id, std::uint32_t interest) noexcept {
    epoll_event ev{};
    ev.events = to_epoll(interest);
    ev.data.u64 = id;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void EpollPoller::rewatch(int fd, FlowId id, std::uint32_t interest) noexcept {
    epoll_event ev{};
    ev.events = to_epoll(interest);
    ev.data.u64 = id;
    (void)::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void EpollPoller::unwatch(int fd) noexcept {
    (void)::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

std::size_t EpollPoller::poll_burst(std::span<SocketEvent> out) noexcept {
    std::array<epoll_event, 64> evs{};
    const int max = static_cast<int>(out.size() < evs.size() ? out.size() : evs.size());
    const int n = ::epoll_wait(epfd_, evs.data(), max, 0);
    if (n <= 0) return 0;
    for (int i = 0; i < n; ++i) {
        const epoll_event& e = evs[static_cast<std::size_t>(i)];
        std::uint32_t bits = 0;
        if ((e.events & EPOLLIN) != 0) bits |= sock_event::in;
        if ((e.events & EPOLLRDHUP) != 0) bits |= sock_event::rdhup;
        if ((e.events & EPOLLOUT) != 0) bits |= sock_event::out;
        if ((e.events & EPOLLERR) != 0) bits |= sock_event::error;
        if ((e.events & EPOLLHUP) != 0) bits |= sock_event::hup;
        out[static_cast<std::size_t>(i)] = {static_cast<FlowId>(e.data.u64), bits};
    }
    return static_cast<std::size_t>(n);
}

}  // namespace slipway::nat
