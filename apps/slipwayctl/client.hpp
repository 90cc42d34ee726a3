// slipwayctl's HTTP client: one request (GET, POST or DELETE) over a unix stream socket, with a
// deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "slipway/core/result.hpp"

namespace slipway::apps {

enum class HttpMethod : std::uint8_t { get, post, del };

// "GET", "POST", "DELETE".
[[nodiscard]] constexpr const char* method_name(HttpMethod m) noexcept {
    switch (m) {
        case HttpMethod::get:
            return "GET";
        case HttpMethod::post:
            return "POST";
        case HttpMethod::del:
            return "DELETE";
    }
    return "GET";
}

struct HttpRequest {
    HttpMethod method = HttpMethod::get;
    std::string target;  // "/v1/forwards/3?kill=1": path and query, already URL-encoded
    std::string body;    // a JSON document, or empty for none
};

struct HttpResponse {
    unsigned status = 0;  // 200, 404, ...
    std::string body;
};

inline constexpr std::size_t kMaxResponseBody = 16 * 1024 * 1024;

// Sends `request` to the HTTP server on the unix socket `socket_path` and reads the whole
// response. A non-empty body goes with "Content-Type: application/json". Any HTTP status is a
// success here; the caller decides what a 404 means. Errc::io_error with `error` one line (no such
// socket, connection refused, timed out, malformed response). `timeout` bounds the whole exchange.
Result<HttpResponse> http_request_unix(const std::string& socket_path, const HttpRequest& request,
                                       std::string& error,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(5));

// GETs `target` (e.g. "/v1/status"): http_request_unix with an empty GET.
Result<HttpResponse> http_get_unix(const std::string& socket_path, const std::string& target,
                                   std::string& error,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace slipway::apps
