// slipwayctl's HTTP client: one Boost.Beast request (GET, POST, DELETE) over a unix socket, with a
// deadline.
//
// It runs on a private io_context with run_for(): blocking Asio calls would wait forever on a stuck
// server (a receive timeout does not help, Asio polls again after EAGAIN).
#include "slipwayctl/client.hpp"

#include <sys/un.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace slipway::apps {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using stream_protocol = asio::local::stream_protocol;

namespace {

http::verb to_verb(HttpMethod m) {
    switch (m) {
        case HttpMethod::get:
            return http::verb::get;
        case HttpMethod::post:
            return http::verb::post;
        case HttpMethod::del:
            return http::verb::delete_;
    }
    return http::verb::get;
}

}  // namespace

Result<HttpResponse> http_request_unix(const std::string& socket_path, const HttpRequest& request,
                                       std::string& error, std::chrono::milliseconds timeout) {
    if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
        error = "bad API socket path '" + socket_path + "'";
        return fail(Errc::io_error);
    }
    asio::io_context io;
    stream_protocol::socket socket(io);
    http::request<http::string_body> req(to_verb(request.method), request.target, 11);
    req.set(http::field::host, "localhost");
    req.set(http::field::user_agent, "slipwayctl");
    req.keep_alive(false);
    if (!request.body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = request.body;
    }
    req.prepare_payload();  // Content-Length (0 for a bodiless POST or DELETE)
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);

    std::optional<boost::system::error_code> result;
    std::string stage = "connect to";
    socket.async_connect(stream_protocol::endpoint(socket_path), [&](const auto& cec) {
        if (cec) {
            result = cec;
            return;
        }
        stage = "send request to";
        http::async_write(socket, req, [&](const auto& wec, std::size_t) {
            if (wec) {
                result = wec;
                return;
            }
            stage = "read response from";
            http::async_read(socket, buffer, parser,
                             [&](const auto& rec, std::size_t) { result = rec; });
        });
    });
    io.run_for(timeout);
    if (!result) {
        error = "timed out after " + std::to_string(timeout.count()) + " ms waiting to " + stage +
                " " + socket_path;
        return fail(Errc::io_error);
    }
    if (*result) {
        error = "cannot " + stage + " " + socket_path + ": " + result->message();
        return fail(Errc::io_error);
    }
    HttpResponse out;
    out.status = parser.get().result_int();
    out.body = std::move(parser.get().body());
    return out;
}

Result<HttpResponse> http_get_unix(const std::string& socket_path, const std::string& target,
                                   std::string& error, std::chrono::milliseconds timeout) {
    return http_request_unix(socket_path, HttpRequest{HttpMethod::get, target, {}}, error, timeout);
}

}  // namespace slipway::apps
