// slipwayd's HTTP API server: accepts on a unix socket and answers GET /v1/status and /v1/stats.
//
// Each connection is a Session that reads one request at a time (bounded header and body, a
// deadline per request), answers it with a JSON document and either reads the next request
// (keep-alive) or closes. Everything runs on the io_context's thread; a client that vanishes at
// any point only ends its own Session.
#include "slipwayd/api_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
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
    State(asio::io_context& io, ApiProviders p)
        : providers(std::make_shared<const ApiProviders>(std::move(p))),
          acceptor(io),
          backoff(io) {}

    std::shared_ptr<const ApiProviders> providers;
    stream_protocol::acceptor acceptor;
    asio::steady_timer backoff;  // after an accept error such as EMFILE, so it does not spin
    std::vector<std::weak_ptr<Session>> sessions;
    bool stopped = false;
};

class ApiServer::Session : public std::enable_shared_from_this<Session> {
  public:
    Session(stream_protocol::socket socket, std::shared_ptr<const ApiProviders> providers)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          buffer_(kMaxRequestHeader + kMaxRequestBody),
          providers_(std::move(providers)) {}

    void start() { read_request(); }

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
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) return;  // cancelled: the request finished in time
            if (auto self = weak.lock()) self->close();
        });
        http::async_read(socket_, buffer_, *parser_,
                         [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                             self->on_read(ec);
                         });
    }

    void on_read(const beast::error_code& ec) {
        if (ec == http::error::header_limit || ec == http::error::body_limit ||
            ec == http::error::buffer_overflow) {
            respond(http::status::payload_too_large, error_doc("request too large"), false, 11);
            return;
        }
        if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
            ec == asio::error::operation_aborted || !socket_.is_open()) {
            close();
            return;
        }
        if (ec && ec.category() == http::make_error_code(http::error::bad_method).category()) {
            respond(http::status::bad_request, error_doc("malformed request: " + ec.message()),
                    false, 11);
            return;
        }
        if (ec) {  // reset by peer and the like: nobody to answer
            close();
            return;
        }
        handle(parser_->get());
    }

    static nlohmann::json error_doc(const std::string& message) {
        return nlohmann::json{{"error", message}};
    }

    void handle(const http::request<http::string_body>& req) {
        const auto raw = req.target();
        std::string_view target(raw.data(), raw.size());
        if (const auto q = target.find('?'); q != std::string_view::npos)
            target = target.substr(0, q);
        const bool keep_alive = req.keep_alive();
        const unsigned version = req.version();

        const std::function<nlohmann::json()>* provider = nullptr;
        if (target == "/v1/status")
            provider = &providers_->status;
        else if (target == "/v1/stats")
            provider = &providers_->stats;

        if (provider == nullptr || !*provider) {
            respond(http::status::not_found,
                    error_doc("no such endpoint: " + std::string(target) +
                              " (try GET /v1/status or /v1/stats)"),
                    keep_alive, version);
            return;
        }
        if (req.method() != http::verb::get) {
            const auto m = req.method_string();
            respond(
                http::status::method_not_allowed,
                error_doc("method " + std::string(m.data(), m.size()) + " not allowed, use GET"),
                keep_alive, version);
            return;
        }
        nlohmann::json doc;
        try {
            doc = (*provider)();
        } catch (const std::exception& e) {
            respond(http::status::internal_server_error, error_doc(e.what()), keep_alive, version);
            return;
        }
        respond(http::status::ok, doc, keep_alive, version);
    }

    void respond(http::status status, const nlohmann::json& doc, bool keep_alive,
                 unsigned version) {
        res_.emplace(status, version);
        res_->set(http::field::server, "slipwayd");
        res_->set(http::field::content_type, "application/json");
        if (status == http::status::method_not_allowed) res_->set(http::field::allow, "GET");
        res_->keep_alive(keep_alive);
        // replace, not throw, on invalid UTF-8 in a name: a reply beats a dropped connection.
        res_->body() = doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        res_->prepare_payload();
        http::async_write(socket_, *res_,
                          [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                              self->on_write(ec);
                          });
    }

    void on_write(const beast::error_code& ec) {
        const bool again = !ec && res_ && res_->keep_alive() && socket_.is_open();
        res_.reset();
        if (!again) {
            close();
            return;
        }
        read_request();
    }

    stream_protocol::socket socket_;
    asio::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<http::response<http::string_body>> res_;
    std::shared_ptr<const ApiProviders> providers_;
};

ApiServer::ApiServer(boost::asio::io_context& io, ApiProviders providers)
    : state_(std::make_shared<State>(io, std::move(providers))) {}

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
    st->acceptor.async_accept([st](const boost::system::error_code& ec,
                                   stream_protocol::socket socket) {
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
        std::erase_if(st->sessions, [](const std::weak_ptr<Session>& w) { return w.expired(); });
        if (st->sessions.size() >= kMaxSessions) {
            SLW_WARN_RATELIMITED("api: {} connections open, refusing another", kMaxSessions);
            boost::system::error_code ignored;
            socket.close(ignored);
        } else {
            auto session = std::make_shared<Session>(std::move(socket), st->providers);
            st->sessions.push_back(session);
            session->start();
        }
        accept_next(st);
    });
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
