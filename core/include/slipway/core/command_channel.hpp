// CommandChannel: control-plane calls from one thread (a client, e.g. the HTTP API's) into
// another thread's event loop (the network thread) and their completions back, through two SPSC
// rings — the only way DESIGN §1 lets threads meet.
//
// Theory of operation
// -------------------
// call(work, done) boxes both closures into a Command and pushes its pointer into the request
// ring, then writes the server's eventfd. The server thread, woken by that eventfd through its
// loop, pops every request, runs `work` (which may read and change state the server thread owns,
// e.g. add a port forward), pushes the same pointer into the reply ring and writes the client's
// eventfd. The client thread pops replies and runs `done` (which reads what `work` stored in the
// closures' shared captures). The rings carry pointers only: each Command is allocated and freed
// by the client thread, so the server thread never frees memory the client allocated.
//
// Neither ring can overflow: at most `capacity` commands are in flight (call() refuses more and
// says so, so the caller can answer "busy"), and both rings hold `capacity` pointers. Memory
// order: each push is SpscRing's release store of its tail, paired with the other thread's
// acquire load in pop, so a Command's closures (and what `work` wrote) are visible to the thread
// that pops it; the eventfd only wakes the loop, it carries no data.
//
// Commands are control-plane work (milliseconds at most); the data path on the server thread
// runs between them as between any two loop handlers. Both loops must outlive the channel; close
// it (destroy it) on the client thread while the server loop no longer runs or from the server
// thread's last handler — commands still queued are dropped unrun, their `done` never called.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/spsc_ring.hpp"

namespace slipway {

class CommandChannel {
  public:
    // Throws std::system_error when an eventfd cannot be made (start-up only).
    CommandChannel(IoContext& server, IoContext& client, std::size_t capacity = 64);
    ~CommandChannel();
    CommandChannel(const CommandChannel&) = delete;
    CommandChannel& operator=(const CommandChannel&) = delete;

    // Client thread: runs `work` on the server thread, then `done` on the client thread. False
    // (nothing queued) when `capacity` commands are already in flight.
    bool call(std::function<void()> work, std::function<void()> done);

    [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }

  private:
    struct Command {
        std::function<void()> work;
        std::function<void()> done;
    };
    struct Side;
    void drain_requests() noexcept;
    void drain_replies() noexcept;

    std::size_t capacity_;
    std::size_t in_flight_ = 0;  // client thread only
    SpscRing<Command*> requests_;
    SpscRing<Command*> replies_;
    std::unique_ptr<Side> server_;  // eventfd + watcher on the server loop
    std::unique_ptr<Side> client_;  // eventfd + watcher on the client loop
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace slipway
