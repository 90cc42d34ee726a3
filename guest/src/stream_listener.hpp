// StreamListener: the listening half of a one-client unix stream server, shared by qemu:PATH and
// vhost-user:PATH.
//
// It binds PATH (mode 0600, via bind_unix_socket), accepts on the network loop, and hands each new
// connection — non-blocking, close-on-exec, already registered with the loop — to the owner. While
// the owner says a client is attached, a newcomer is accepted and closed at once with a warning:
// queueing it would leave a VMM waiting on a socket nobody answers. stop() closes the socket and
// removes PATH if this listener created it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "attachment_impl.hpp"

namespace slipway::guest::detail {

class StreamListener {
  public:
    // `peer` names what connects, for log lines ("QEMU stream client", "vhost-user front end").
    StreamListener(IoContext& io, const std::string& spec, std::string path, std::string peer)
        : io_(io), spec_(spec), path_(std::move(path)), peer_(std::move(peer)) {}
    ~StreamListener() { stop(); }
    StreamListener(const StreamListener&) = delete;
    StreamListener& operator=(const StreamListener&) = delete;

    // `busy`: whether a client is attached now. `on_client`: takes a new connection and its
    // watcher; it may stop the listener (the accept loop then ends).
    using OnClient = std::function<void(UniqueFd, std::unique_ptr<FdWatcher>)>;
    Result<void> start(std::string& error, std::function<bool()> busy, OnClient on_client);
    void stop() noexcept;
    [[nodiscard]] bool listening() const noexcept { return fd_.valid(); }

  private:
    void arm_accept() noexcept;
    void on_acceptable() noexcept;

    IoContext& io_;
    const std::string& spec_;
    std::string path_;
    std::string peer_;
    bool created_socket_ = false;
    UniqueFd fd_;
    std::unique_ptr<FdWatcher> w_;
    AliveToken tok_;
    std::function<bool()> busy_;
    OnClient on_client_;
};

}  // namespace slipway::guest::detail
