// slipwayd's HTTP API server: the transport under api_routes.cpp.
//
// Each connection is a Session that reads one request at a time (bounded header and body, one
// deadline for reading the request, waiting for the network thread and writing the answer), hands
// it to ApiRoutes, writes the answer when the routes call back, and then reads the next request
// (keep-alive) or closes. Host-scope sessions come from the --api socket's acceptor, guest-scope
// ones from serve_guest (GuestHandoff in main.cpp); both run on the API thread's io_context, never
// on the network thread, which only sees the routes' commands. A client that vanishes at any
// point only ends its own Session; an answer arriving for a closed Session is dropped.
#include "slipwayd/api_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "slipway/core/log.hpp"
#include "slipway/core/unix_socket.hpp"

namespace slipway::apps {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using stream_protocol = asio::local::stream_protocol;

struct ApiServer::State {
    State(asio::io_context& io, ApiBackend& backend)
        : routes(std::make_shared<ApiRoutes>(backend)), acceptor(io), backoff(io) {}

    std::shared_ptr<ApiRoutes> routes;
    stream_protocol::acceptor acceptor;
    asio::steady_timer backoff;  // after an accept error such as EMFILE, so it does not spin
    std::vector<std::weak_ptr<Session>> sessions;
    bool stopped = false;

    // Forgets closed sessions; returns how many of `scope` are open.
    std::size_t open_sessions(ApiScope scope);
};

class ApiServer::Session : public std::enable_shared_from_this<Session> {
  public:
    Session(stream_protocol::socket socket, std::shared_ptr<ApiRoutes> routes, ApiScope scope,
            std::optional<Ipv4Addr> peer)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          buffer_(kMaxRequestHeader + kMaxRequestBody),
          routes_(std::move(routes)),
          scope_(scope),
          peer_(peer) {}

    void start() { read_request(); }

    [[nodiscard]] ApiScope scope() const noexcept { return scope_; }

    void close() noexcept {
        boost::system::error_code ec;
        timer_.cancel();
        socket_.shutdown(stream_protocol::socket::shutdown_both, ec);
        socket_.close(ec);
    }

  private:
    void read_request() {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(kMaxRequestHeader));
        parser_->body_limit(kMaxRequestBody);
        timer_.expires_after(kRequestTimeout);
        // The generation tells a deadline that fired just as its request was answered (its
        // handler queued, so cancel() came too late) from the next request's.
        const std::uint64_t gen = ++generation_;
        timer_.async_wait([weak = weak_from_this(), gen](const boost::system::error_code& ec) {
            if (ec) return;  // cancelled: the request was answered in time
            if (auto self = weak.lock(); self && self->generation_ == gen) self->close();
        });
        http::async_read(socket_, buffer_, *parser_,
                         [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                             self->on_read(ec);
                         });
    }

    static ApiResponse error_response(unsigned status, const std::string& message) {
        ApiResponse r;
        r.status = status;
        r.content_type = "application/json";
        r.body = nlohmann::json{{"error", message}}.dump() + "\n";
        return r;
    }

    void on_read(const beast::error_code& ec) {
        if (ec == http::error::header_limit || ec == http::error::body_limit ||
            ec == http::error::buffer_overflow) {
            keep_alive_ = false;
            version_ = 11;
            head_ = false;
            respond(error_response(413, "request too large (the body may be up to " +
                                            std::to_string(kMaxRequestBody / 1024) + " KiB)"));
            return;
        }
        if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
            ec == asio::error::operation_aborted || !socket_.is_open()) {
            close();
            return;
        }
        if (ec && ec.category() == http::make_error_code(http::error::bad_method).category()) {
            keep_alive_ = false;
            version_ = 11;
            head_ = false;
            respond(error_response(400, "malformed request: " + ec.message()));
            return;
        }
        if (ec) {  // reset by peer and the like: nobody to answer
            close();
            return;
        }
        auto& req = parser_->get();
        keep_alive_ = req.keep_alive();
        version_ = req.version();
        head_ = req.method() == http::verb::head;
        ApiRequest api_req;
        const auto m = req.method_string();
        api_req.method.assign(m.data(), m.size());
        const auto target = req.target();
        api_req.target.assign(target.data(), target.size());
        api_req.body = std::move(req.body());
        api_req.scope = scope_;
        api_req.peer = peer_;
        routes_->handle(
            api_req, [self = shared_from_this()](ApiResponse r) { self->respond(std::move(r)); });
    }

    void respond(ApiResponse r) {
        if (!socket_.is_open()) return;  // the deadline or stop() closed it meanwhile
        res_.emplace(static_cast<http::status>(r.status), version_);
        res_->set(http::field::server, "slipwayd");
        if (!r.content_type.empty()) res_->set(http::field::content_type, r.content_type);
        if (!r.allow.empty()) res_->set(http::field::allow, r.allow);
        if (r.nosniff) res_->set("X-Content-Type-Options", "nosniff");
        res_->keep_alive(keep_alive_);
        res_->body() = std::move(r.body);
        res_->prepare_payload();
        // HEAD: the headers a GET would get (Content-Length included), no body.
        if (head_) res_->body().clear();
        http::async_write(socket_, *res_,
                          [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                              self->on_write(ec);
                          });
    }

    void on_write(const beast::error_code& ec) {
        const bool again = !ec && res_ && res_->keep_alive() && socket_.is_open();
        res_.reset();
        timer_.cancel();
        if (!again) {
            close();
            return;
        }
        read_request();
    }

    stream_protocol::socket socket_;
    asio::steady_timer timer_;
    std::uint64_t generation_ = 0;  // of the request being read (its deadline's)
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<http::response<http::string_body>> res_;
    std::shared_ptr<ApiRoutes> routes_;
    ApiScope scope_;
    std::optional<Ipv4Addr> peer_;
    bool keep_alive_ = false;
    bool head_ = false;
    unsigned version_ = 11;
};

std::size_t ApiServer::State::open_sessions(ApiScope scope) {
    std::erase_if(sessions, [](const std::weak_ptr<Session>& w) { return w.expired(); });
    std::size_t n = 0;
    for (const auto& w : sessions)
        if (auto s = w.lock(); s && s->scope() == scope) ++n;
    return n;
}

ApiServer::ApiServer(boost::asio::io_context& io, ApiBackend& backend)
    : state_(std::make_shared<State>(io, backend)) {}

ApiServer::~ApiServer() {
    stop();
}

Result<void> ApiServer::start(const std::string& path, std::string& error) {
    const std::string label = "--api " + path;
    if (bound_ || state_->stopped) {
        error = label + ": the API server was started twice";
        return fail(Errc::invalid_argument);
    }
    if (path.empty()) {
        error = "--api: empty path";
        return fail(Errc::invalid_argument);
    }
    auto bound = bind_unix_socket(path, SOCK_STREAM, label, error);
    if (!bound) return fail(bound.error());
    bound_ = true;
    path_ = path;
    auto& acc = state_->acceptor;
    boost::system::error_code ec;
    const int raw = bound->release();
    acc.assign(stream_protocol(), raw, ec);
    if (ec) {
        ::close(raw);
        error = label + ": cannot use the socket: " + ec.message();
        stop();
        return fail(Errc::io_error);
    }
    acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        error = label + ": cannot listen: " + ec.message();
        stop();
        return fail(Errc::io_error);
    }
    accept_next(state_);
    return {};
}

void ApiServer::accept_next(const std::shared_ptr<State>& st) {
    st->acceptor.async_accept(
        [st](const boost::system::error_code& ec, stream_protocol::socket socket) {
            if (st->stopped) return;
            if (ec) {
                if (ec == asio::error::operation_aborted) return;
                SLW_WARN_RATELIMITED("api: accept failed: {}", ec.message());
                st->backoff.expires_after(std::chrono::milliseconds(100));
                st->backoff.async_wait([st](const boost::system::error_code& wait_ec) {
                    if (!wait_ec && !st->stopped) accept_next(st);
                });
                return;
            }
            if (st->open_sessions(ApiScope::host) >= kMaxSessions) {
                SLW_WARN_RATELIMITED("api: {} connections open, refusing another", kMaxSessions);
                boost::system::error_code ignored;
                socket.close(ignored);
            } else {
                auto session = std::make_shared<Session>(std::move(socket), st->routes,
                                                         ApiScope::host, std::nullopt);
                st->sessions.push_back(session);
                session->start();
            }
            accept_next(st);
        });
}

void ApiServer::serve_guest(int fd, std::optional<Ipv4Addr> peer) {
    if (state_->stopped || state_->open_sessions(ApiScope::guest) >= kMaxGuestSessions) {
        if (!state_->stopped)
            SLW_WARN_RATELIMITED("api: {} guest connections open, refusing another",
                                 kMaxGuestSessions);
        ::close(fd);
        return;
    }
    stream_protocol::socket socket(state_->acceptor.get_executor());
    boost::system::error_code ec;
    socket.assign(stream_protocol(), fd, ec);
    if (ec) {
        SLW_WARN_RATELIMITED("api: cannot serve a guest connection: {}", ec.message());
        ::close(fd);
        return;
    }
    auto session =
        std::make_shared<Session>(std::move(socket), state_->routes, ApiScope::guest, peer);
    state_->sessions.push_back(session);
    session->start();
}

void ApiServer::stop() noexcept {
    if (!state_) return;
    state_->stopped = true;
    boost::system::error_code ec;
    state_->acceptor.close(ec);
    state_->backoff.cancel();
    for (auto& weak : state_->sessions)
        if (auto s = weak.lock()) s->close();
    state_->sessions.clear();
    if (bound_) {
        ::unlink(path_.c_str());
        bound_ = false;
    }
}

}  // namespace slipway::apps
