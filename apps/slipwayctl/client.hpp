// slipwayctl's HTTP client: one GET over a unix stream socket, with a deadline.
#pragma once

#include <chrono>
#include <string>

#include "slipway/core/result.hpp"

namespace slipway::apps {

struct HttpResponse {
    unsigned status = 0;  // 200, 404, ...
    std::string body;
};

inline constexpr std::size_t kMaxResponseBody = 16 * 1024 * 1024;

// GETs `target` (e.g. "/v1/status") from the HTTP server on the unix socket `socket_path`. Any
// HTTP status is a success here; the caller decides what a 404 means. Errc::io_error with `error`
// one line (no such socket, connection refused, timed out, malformed response).
Result<HttpResponse> http_get_unix(const std::string& socket_path, const std::string& target,
                                   std::string& error,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace slipway::apps
