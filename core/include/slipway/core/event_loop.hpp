// Event-loop glue: one Boost.Asio io_context per network thread (epoll on Linux), and a watcher
// that waits for readiness of a native fd it does not own, so handlers can do batched native I/O
// (recvmmsg, readv, writev) themselves.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <new>
#include <utility>

namespace slipway {

using IoContext = boost::asio::io_context;

class FdWatcher {
  public:
    // Throws boost::system::system_error when the loop cannot watch the fd (start-up paths).
    FdWatcher(IoContext& io, int fd) : sd_(io, fd) {}
    // The non-throwing form for handlers: nullptr when the fd cannot be registered with epoll
    // (e.g. ENOSPC once fs.epoll.max_user_watches is reached), with the reason in `ec`.
    static std::unique_ptr<FdWatcher> try_watch(IoContext& io, int fd,
                                                boost::system::error_code& ec) noexcept {
        std::unique_ptr<FdWatcher> w(new (std::nothrow) FdWatcher(io));
        if (!w) {
            ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
            return nullptr;
        }
        w->sd_.assign(fd, ec);
        if (ec) return nullptr;
        return w;
    }
    // An idle watcher, to be given fds later with assign(): services that cycle through many
    // short-lived sockets (the DNS forwarder's upstream queries) build their watchers once at
    // start-up instead of one per socket.
    explicit FdWatcher(IoContext& io) : sd_(io) {}
    // Watches `fd` (after release() of the previous one). False with `ec` set when epoll refuses.
    bool assign(int fd, boost::system::error_code& ec) noexcept {
        sd_.assign(fd, ec);
        return !ec;
    }
    [[nodiscard]] bool watching() const noexcept { return sd_.is_open(); }
    ~FdWatcher() { release(); }
    FdWatcher(const FdWatcher&) = delete;
    FdWatcher& operator=(const FdWatcher&) = delete;

    // One-shot: calls h(ok) once the fd is readable (ok == false when cancelled or on error).
    template <class Handler>
    void wait_readable(Handler&& h) {
        sd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [h = std::forward<Handler>(h)](const boost::system::error_code& ec) mutable {
                           h(!ec);
                       });
    }
    template <class Handler>
    void wait_writable(Handler&& h) {
        sd_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                       [h = std::forward<Handler>(h)](const boost::system::error_code& ec) mutable {
                           h(!ec);
                       });
    }
    void cancel() {
        boost::system::error_code ec;
        sd_.cancel(ec);
    }
    // Stops watching without closing the fd (its owner closes it).
    void release() {
        if (sd_.is_open()) {
            cancel();
            (void)sd_.release();
        }
    }
    [[nodiscard]] int fd() const { return const_cast<FdWatcher*>(this)->sd_.native_handle(); }

  private:
    boost::asio::posix::stream_descriptor sd_;
};

}  // namespace slipway
