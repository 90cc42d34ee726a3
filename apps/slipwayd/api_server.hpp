// slipwayd's HTTP API: HTTP/1.1 (Boost.Beast) on a unix stream socket, on the network's thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "slipway/core/result.hpp"

namespace slipway::apps {

// Where the documents come from. Called on the io_context's thread, one request at a time, so
// they may read state owned by that thread (Network::status()/stats()). An exception thrown by a
// provider becomes a 500 response.
struct ApiProviders {
    std::function<nlohmann::json()> status;  // GET /v1/status
    std::function<nlohmann::json()> stats;   // GET /v1/stats
};

// Limits that keep one client from holding memory or a connection for long.
inline constexpr std::size_t kMaxRequestHeader = 8 * 1024;
inline constexpr std::size_t kMaxRequestBody = 8 * 1024;
inline constexpr std::chrono::seconds kRequestTimeout{10};

class ApiServer {
  public:
    ApiServer(boost::asio::io_context& io, ApiProviders providers);
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Binds and listens at `path` (mode 0600) and starts accepting. A stale socket file is
    // replaced; a live one (something accepts connections there) or a non-socket file is an error.
    // Errc::invalid_argument (path unusable) or Errc::io_error, with `error` one line naming it.
    Result<void> start(const std::string& path, std::string& error);
    // Stops accepting, closes open connections and removes the socket file. Idempotent; call on
    // the io_context's thread or while it is not running.
    void stop() noexcept;

    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    // Open connections are capped; one over the cap is closed as soon as it is accepted.
    static constexpr std::size_t kMaxSessions = 64;

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
