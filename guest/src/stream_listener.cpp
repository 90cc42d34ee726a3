// StreamListener: bind, listen and accept for the one-client unix stream attachments.
#include "stream_listener.hpp"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <cerrno>

#include "slipway/core/log.hpp"

namespace slipway::guest::detail {
namespace {
constexpr int kBacklog = 8;
constexpr int kAcceptsPerEvent = 16;
}  // namespace

Result<void> StreamListener::start(std::string& error, std::function<bool()> busy,
                                   OnClient on_client) {
    if (fd_.valid()) return {};
    auto bound = bind_unix_socket(path_, SOCK_STREAM, path_, error);
    if (!bound) return fail(bound.error());
    UniqueFd fd = std::move(*bound);
    created_socket_ = true;
    if (::listen(fd.get(), kBacklog) != 0) {
        error = path_ + ": listen: " + errno_text(errno);
        ::unlink(path_.c_str());
        created_socket_ = false;
        return fail(Errc::io_error);
    }
    fd_ = std::move(fd);
    w_ = std::make_unique<FdWatcher>(io_, fd_.get());
    tok_ = new_token();
    busy_ = std::move(busy);
    on_client_ = std::move(on_client);
    arm_accept();
    SLW_INFO("{}: listening for a {}", spec_, peer_);
    return {};
}

void StreamListener::stop() noexcept {
    kill_token(tok_);
    w_.reset();
    fd_.reset();
    if (created_socket_) {
        ::unlink(path_.c_str());
        created_socket_ = false;
    }
}

void StreamListener::arm_accept() noexcept {
    w_->wait_readable([this, tok = tok_](bool ok) {
        if (!tok->alive || !ok) return;
        on_acceptable();
    });
}

void StreamListener::on_acceptable() noexcept {
    const AliveToken tok = tok_;
    for (int i = 0; i < kAcceptsPerEvent; ++i) {
        UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!c.valid()) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                SLW_WARN_RATELIMITED("{}: accept: {}", spec_, errno_text(errno));
            arm_accept();
            return;
        }
        if (busy_()) {
            SLW_WARN_RATELIMITED("{}: a {} is already attached; closing the new connection", spec_,
                                 peer_);
            continue;
        }
        boost::system::error_code ec;
        auto w = FdWatcher::try_watch(io_, c.get(), ec);
        if (!w) {
            SLW_WARN_RATELIMITED("{}: cannot watch the new connection: {}", spec_, ec.message());
            continue;
        }
        on_client_(std::move(c), std::move(w));
        if (!tok->alive) return;  // the owner stopped listening
    }
    // Still more connections pending: continue after the rest of the loop had its turn.
    boost::asio::post(io_, [this, tok] {
        if (tok->alive) on_acceptable();
    });
}

}  // namespace slipway::guest::detail
