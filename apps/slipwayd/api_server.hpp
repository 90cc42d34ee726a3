// slipwayd's HTTP API server: HTTP/1.1 (Boost.Beast) on a unix stream socket (--api) and on guest
// connections to the gateway's port 80 (--guest-api), on the API thread's own io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"
#include "slipwayd/api_backend.hpp"
#include "slipwayd/api_routes.hpp"

namespace slipway::apps {

// Limits that keep one client from holding memory or a connection for long (the body limit,
// kMaxRequestBody, is in api_routes.hpp). The deadline covers reading a request, waiting for the
// network thread and writing the answer, as gvproxy's ReadTimeout and WriteTimeout of 10 s do.
inline constexpr std::size_t kMaxRequestHeader = 8 * 1024;
inline constexpr std::chrono::seconds kRequestTimeout{10};

class ApiServer {
  public:
    // `backend` outlives the server. Everything below runs on `io`'s thread (or before it runs).
    ApiServer(boost::asio::io_context& io, ApiBackend& backend);
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Binds and listens at `path` (mode 0600) and starts accepting host-scope connections. A
    // stale socket file is replaced; a live one (something accepts connections there) or a
    // non-socket file is an error. Errc::invalid_argument (path unusable) or Errc::io_error, with
    // `error` one line naming it. Optional: a server that only serves guests never calls it.
    Result<void> start(const std::string& path, std::string& error);

    // Serves one connected stream socket in guest scope (gvproxy's forwarder paths only); the
    // server owns `fd` from here. `peer` is the guest's address when the network knows it.
    void serve_guest(int fd, std::optional<Ipv4Addr> peer = std::nullopt);

    // Stops accepting, closes open connections and removes the socket file. Idempotent; call on
    // the io_context's thread or while it is not running.
    void stop() noexcept;

    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    // Open connections are capped, host and guest ones apart so guests cannot crowd out the
    // host's clients; one over its cap is closed as soon as it arrives.
    static constexpr std::size_t kMaxSessions = 64;
    static constexpr std::size_t kMaxGuestSessions = 16;

  private:
    class Session;
    // Shared with the pending handlers, so a handler that runs after the ApiServer is gone (or
    // is destroyed with the io_context) never touches freed memory.
    struct State;
    static void accept_next(const std::shared_ptr<State>& st);

    std::shared_ptr<State> state_;
    std::string path_;
    bool bound_ = false;
};

}  // namespace slipway::apps
