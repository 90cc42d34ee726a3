// CommandChannel (theory of operation: command_channel.hpp).
#include "slipway/core/command_channel.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace slipway {

struct CommandChannel::Side {
    int efd = -1;
    FdWatcher watch;
    Side(IoContext& io, int fd) : efd(fd), watch(io, fd) {}
    ~Side() {
        watch.release();
        ::close(efd);
    }
    void wake() const noexcept {
        const std::uint64_t one = 1;
        // Fails only when the counter is already huge: the loop is going to wake anyway.
        [[maybe_unused]] const auto n = ::write(efd, &one, sizeof one);
    }
    void clear() const noexcept {
        std::uint64_t v;
        [[maybe_unused]] const auto n = ::read(efd, &v, sizeof v);
    }
};

namespace {
int make_eventfd() {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    return fd;
}
}  // namespace

CommandChannel::CommandChannel(IoContext& server, IoContext& client, std::size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity), requests_(capacity_), replies_(capacity_) {
    const int s = make_eventfd();
    try {
        server_ = std::make_unique<Side>(server, s);
    } catch (...) {
        ::close(s);
        throw;
    }
    const int c = make_eventfd();
    try {
        client_ = std::make_unique<Side>(client, c);
    } catch (...) {
        ::close(c);
        throw;
    }
    server_->watch.wait_readable([this, alive = alive_](bool ok) {
        if (ok && *alive) drain_requests();
    });
    client_->watch.wait_readable([this, alive = alive_](bool ok) {
        if (ok && *alive) drain_replies();
    });
}

CommandChannel::~CommandChannel() {
    *alive_ = false;
    server_.reset();
    client_.reset();
    Command* cmd = nullptr;
    while (requests_.try_pop(cmd))
        delete cmd;
    while (replies_.try_pop(cmd))
        delete cmd;
}

bool CommandChannel::call(std::function<void()> work, std::function<void()> done) {
    if (in_flight_ >= capacity_) return false;
    auto* cmd = new Command{std::move(work), std::move(done)};
    // Cannot fail: at most capacity_ commands are in flight and the ring holds that many.
    if (!requests_.try_push(cmd)) {
        delete cmd;
        return false;
    }
    ++in_flight_;
    server_->wake();
    return true;
}

void CommandChannel::drain_requests() noexcept {
    server_->clear();
    Command* cmd = nullptr;
    bool any = false;
    while (requests_.try_pop(cmd)) {
        try {
            if (cmd->work) cmd->work();
        } catch (...) {
            // `work` reports its failures through its captures; an escaping exception must not
            // take the server thread down. `done` still runs, and sees whatever was stored.
        }
        // The reply ring holds as many pointers as can be in flight: never full here.
        (void)replies_.try_push(cmd);
        any = true;
    }
    if (any) client_->wake();
    server_->watch.wait_readable([this, alive = alive_](bool ok) {
        if (ok && *alive) drain_requests();
    });
}

void CommandChannel::drain_replies() noexcept {
    client_->clear();
    Command* cmd = nullptr;
    while (replies_.try_pop(cmd)) {
        --in_flight_;
        try {
            if (cmd->done) cmd->done();
        } catch (...) {
        }
        delete cmd;
    }
    client_->watch.wait_readable([this, alive = alive_](bool ok) {
        if (ok && *alive) drain_replies();
    });
}

}  // namespace slipway
