// GuestHandoff: hands the API thread one end of a socketpair for each guest connection to the
// gateway's HTTP port (--guest-api), without a lock.
//
// The network thread terminates a guest's TCP connection to gateway:80 on a host-side fd it gets
// from an opener (Network::serve_on_gateway). open() is that opener: it makes a socketpair, keeps
// nothing, returns one end to the network thread and pushes the other into an SpscRing read by
// the API thread, then writes an eventfd the API loop watches. The network thread is the ring's
// only producer, the API thread its only consumer (DESIGN §1: rings are how threads meet). A full
// ring (the API thread far behind) refuses the connection (-EAGAIN: the guest gets a RST) rather
// than block the network thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/spsc_ring.hpp"
#include "slipway/core/types.hpp"

namespace slipway::apps {

class GuestHandoff {
  public:
    // `serve` runs on `api_io`'s thread with each fd, which it owns from then on (even when it
    // throws), and the guest's address. Throws std::system_error when no eventfd can be made
    // (start-up only).
    GuestHandoff(IoContext& api_io, std::function<void(int, Ipv4Addr)> serve,
                 std::size_t capacity = 16);
    // On the API thread once its loop has stopped (or before it runs), after the network thread
    // stopped calling open(): closes the fds still queued.
    ~GuestHandoff();
    GuestHandoff(const GuestHandoff&) = delete;
    GuestHandoff& operator=(const GuestHandoff&) = delete;

    // Network thread only. The fd for the network's end of a connection from guest `guest`, or
    // -errno (-EAGAIN when the API thread has `capacity` connections not yet picked up).
    int open(Ipv4Addr guest) noexcept;

  private:
    void drain() noexcept;
    void arm();

    struct Conn {
        int fd = -1;
        Ipv4Addr guest;
    };
    SpscRing<Conn> ring_;
    int efd_ = -1;
    std::unique_ptr<FdWatcher> watch_;
    std::function<void(int, Ipv4Addr)> serve_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace slipway::apps
