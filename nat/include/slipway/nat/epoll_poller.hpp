// EpollPoller: the NAT engine's host sockets watched through one edge-triggered epoll instance
// (Linux), whose own fd the network's event loop watches.
//
// One epoll set for every flow's socket, rather than one loop registration per socket, keeps flow
// set-up to one epoll_ctl() and lets the driver collect up to a burst of readiness events with
// one epoll_wait() (DESIGN §1: nothing handles one event per system call when a batch is there).
// Each registration carries the FlowId, so an event needs no fd lookup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "slipway/core/result.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat {

struct SocketEvent {
    FlowId id = kNoFlow;
    std::uint32_t events = 0;  // sock_event bits
};

class EpollPoller final : public Poller {
  public:
    EpollPoller();  // throws std::system_error when epoll_create1 fails (start-up only)
    ~EpollPoller() override;
    EpollPoller(const EpollPoller&) = delete;
    EpollPoller& operator=(const EpollPoller&) = delete;

    bool watch(int fd, FlowId id, std::uint32_t interest) noexcept override;
    void rewatch(int fd, FlowId id, std::uint32_t interest) noexcept override;
    void unwatch(int fd) noexcept override;

    // The epoll fd: readable when some socket has an event.
    [[nodiscard]] int fd() const noexcept { return epfd_; }
    // Up to out.size() pending events without waiting; returns how many.
    std::size_t poll_burst(std::span<SocketEvent> out) noexcept;

  private:
    int epfd_ = -1;
};

}  // namespace slipway::nat
