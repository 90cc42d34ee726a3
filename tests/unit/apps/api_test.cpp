// slipwayd's HTTP API over a real unix socket, queried with slipwayctl's client code.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "slipwayctl/client.hpp"
#include "slipwayd/api_server.hpp"
#include "slipwayd/render_json.hpp"

namespace slipway::apps {
namespace {

using nlohmann::json;

NetworkStatus fake_status() {
    NetworkStatus s;
    s.version = "0.1.0-test";
    s.plan.subnet = Ipv4Addr::from_octets(192, 168, 127, 0);
    s.plan.prefix_len = 24;
    s.plan.gateway = Ipv4Addr::from_octets(192, 168, 127, 1);
    s.plan.dns = s.plan.gateway;
    s.plan.host_alias = Ipv4Addr::from_octets(192, 168, 127, 254);
    s.plan.gateway_mac = MacAddr{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};
    s.plan.mtu = 1500;
    s.uptime = std::chrono::seconds(42);
    s.ready = true;
    s.ports.push_back({"gateway", "gateway", "", "up", {}});
    s.ports.push_back({"qemu0", "guest", "qemu:/tmp/x.sock", "listening", {}});
    return s;
}

NetworkStats fake_stats() {
    NetworkStats s;
    s.switch_counters = {{"frames_in", 10}, {"drop_no_dest", 0}};
    s.ports.push_back({"gateway", "gateway", "", "up", {{"rx_frames", 5}}});
    s.ports.push_back({"qemu0",
                       "guest",
                       "qemu:/tmp/x.sock",
                       "connected",
                       {{"drop_src_mac", 3}, {"rx_frames", 7}}});
    s.gateway_counters = {{"tcp_flows", 2}};
    s.pool = {{"capacity", 4096}, {"free", 4000}, {"exhausted", 0}};
    return s;
}

// An ApiServer on its own io_context thread, in a private temporary directory.
class ApiTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char dir[] = "/tmp/slipway-api-test-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        path_ = dir_ + "/api.sock";
    }

    void TearDown() override {
        stop_thread();
        server_.reset();
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }

    ApiProviders fake_providers() {
        return ApiProviders{
            [this] {
                ++calls_;
                on_io_thread_ = std::this_thread::get_id() == io_thread_id_;
                return status_to_json(fake_status());
            },
            [this] {
                ++calls_;
                return stats_to_json(fake_stats());
            },
        };
    }

    void start(ApiProviders providers) {
        server_.emplace(io_, std::move(providers));
        std::string error;
        auto r = server_->start(path_, error);
        ASSERT_TRUE(r.has_value()) << error;
        thread_ = std::thread([this] { io_.run(); });
        io_thread_id_ = thread_.get_id();
    }

    void stop_thread() {
        work_.reset();
        if (thread_.joinable()) {
            // stop() belongs on the io thread while it runs.
            std::promise<void> done;
            boost::asio::post(io_, [&] {
                if (server_) server_->stop();
                done.set_value();
            });
            done.get_future().wait();
            io_.stop();
            thread_.join();
        }
    }

    Result<HttpResponse> get(const std::string& target) {
        std::string error;
        auto r = http_get_unix(path_, target, error);
        EXPECT_TRUE(r.has_value()) << error;
        return r;
    }

    // Sends raw bytes on a fresh connection and returns everything read until EOF (or 5 s).
    std::string raw_exchange(const std::string& bytes, bool half_close = true) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        EXPECT_GE(fd, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path_.data(), path_.size());
        EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::size_t off = 0;
        while (off < bytes.size()) {
            const auto n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        if (half_close) ::shutdown(fd, SHUT_WR);
        std::string out;
        char buf[4096];
        for (;;) {
            const auto n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        return out;
    }

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
        boost::asio::make_work_guard(io_);
    std::optional<ApiServer> server_;
    std::thread thread_;
    std::thread::id io_thread_id_;
    std::atomic<int> calls_{0};
    std::atomic<bool> on_io_thread_{false};
    std::string dir_;
    std::string path_;
};

TEST_F(ApiTest, StatusDocument) {
    start(fake_providers());
    auto r = get("/v1/status");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
    const json doc = json::parse(r->body);
    EXPECT_EQ(doc["version"], "0.1.0-test");
    EXPECT_EQ(doc["subnet"], "192.168.127.0/24");
    EXPECT_EQ(doc["gateway"], "192.168.127.1");
    EXPECT_EQ(doc["dns"], "192.168.127.1");
    EXPECT_EQ(doc["host_alias"], "192.168.127.254");
    EXPECT_TRUE(doc["dhcp_range"].is_null());  // the test plan has no DHCP
    EXPECT_EQ(doc["gateway_mac"], "5a:94:ef:e4:0c:dd");
    EXPECT_EQ(doc["mtu"], 1500);
    EXPECT_EQ(doc["uptime_s"], 42);
    EXPECT_EQ(doc["ready"], true);
    ASSERT_EQ(doc["ports"].size(), 2u);
    EXPECT_EQ(doc["ports"][1], (json{{"name", "qemu0"},
                                     {"kind", "guest"},
                                     {"spec", "qemu:/tmp/x.sock"},
                                     {"state", "listening"}}));
    EXPECT_TRUE(on_io_thread_.load());
}

TEST_F(ApiTest, StatsDocument) {
    start(fake_providers());
    auto r = get("/v1/stats?pretty=1");  // a query string is ignored
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
    const json doc = json::parse(r->body);
    EXPECT_EQ(doc["switch"], (json{{"frames_in", 10}, {"drop_no_dest", 0}}));
    ASSERT_EQ(doc["ports"].size(), 2u);
    EXPECT_EQ(doc["ports"][1]["spec"], "qemu:/tmp/x.sock");
    EXPECT_EQ(doc["ports"][1]["state"], "connected");
    EXPECT_EQ(doc["ports"][1]["counters"], (json{{"drop_src_mac", 3}, {"rx_frames", 7}}));
    EXPECT_EQ(doc["gateway"], (json{{"tcp_flows", 2}}));
    EXPECT_EQ(doc["pool"], (json{{"capacity", 4096}, {"free", 4000}, {"exhausted", 0}}));
}

TEST_F(ApiTest, NoHostAliasIsNull) {
    NetworkStatus s = fake_status();
    s.plan.host_alias.reset();
    EXPECT_TRUE(status_to_json(s)["host_alias"].is_null());
}

TEST_F(ApiTest, StatusShowsNatSettingsInForce) {
    NetworkStatus s = fake_status();
    s.plan.icmp_mode = "ping";
    s.plan.egress_rules = {"allow 10.1.0.0/16", "deny 10.0.0.0/8",
                           "deny 169.254.169.254/32 (built-in: cloud metadata)"};
    s.plan.host_alias_ports = "22,8000-8100";
    const json doc = status_to_json(s);
    EXPECT_EQ(doc["icmp_mode"], "ping");
    EXPECT_EQ(doc["egress_rules"], (json{"allow 10.1.0.0/16", "deny 10.0.0.0/8",
                                         "deny 169.254.169.254/32 (built-in: cloud metadata)"}));
    EXPECT_EQ(doc["host_alias_ports"], "22,8000-8100");
}

TEST_F(ApiTest, UnknownPathIs404Json) {
    start(fake_providers());
    auto r = get("/nope");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 404u);
    const json doc = json::parse(r->body);
    ASSERT_TRUE(doc["error"].is_string());
    EXPECT_NE(doc["error"].get<std::string>().find("/nope"), std::string::npos);
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ApiTest, OtherMethodIs405) {
    start(fake_providers());
    const std::string reply = raw_exchange(
        "POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    EXPECT_EQ(reply.rfind("HTTP/1.1 405", 0), 0u) << reply;
    EXPECT_NE(reply.find("Allow: GET"), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"error\""), std::string::npos) << reply;
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ApiTest, SocketIsMode0600) {
    start(fake_providers());
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ApiTest, KeepAliveServesSeveralRequests) {
    start(fake_providers());
    const std::string reply = raw_exchange(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
    EXPECT_NE(reply.find("HTTP/1.1 200", 10), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"pool\""), std::string::npos);
    EXPECT_EQ(calls_.load(), 2);
}

TEST_F(ApiTest, ClientVanishingMidRequestHarmsNothing) {
    start(fake_providers());
    EXPECT_EQ(raw_exchange("GET /v1/sta"), "");
    EXPECT_EQ(raw_exchange(""), "");
    // Gone without even a half-close: the server sees a reset or EOF later.
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path_.data(), path_.size());
        ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
        (void)::send(fd, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 37, MSG_NOSIGNAL);
        ::close(fd);  // before the reply: the server's write fails (EPIPE), not the process
    }
    auto r = get("/v1/status");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
}

TEST_F(ApiTest, OversizedRequestIsRefused) {
    start(fake_providers());
    const std::string big_header =
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(kMaxRequestHeader * 2, 'a') +
        "\r\n\r\n";
    const std::string reply = raw_exchange(big_header, false);
    EXPECT_TRUE(reply.empty() || reply.rfind("HTTP/1.1 413", 0) == 0) << reply.substr(0, 40);
    const std::string big_body = "GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                 std::to_string(kMaxRequestBody * 4) + "\r\n\r\n";
    EXPECT_EQ(raw_exchange(big_body, false).rfind("HTTP/1.1 413", 0), 0u);
    EXPECT_EQ(calls_.load(), 0);
    auto r = get("/v1/stats");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
}

TEST_F(ApiTest, MalformedRequestIs400) {
    start(fake_providers());
    const std::string reply = raw_exchange("NOT HTTP AT ALL\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
}

TEST_F(ApiTest, ProviderExceptionIs500) {
    start(ApiProviders{[]() -> json { throw std::runtime_error("status exploded"); },
                       [] { return json::object(); }});
    auto r = get("/v1/status");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 500u);
    EXPECT_EQ(json::parse(r->body)["error"], "status exploded");
    r = get("/v1/stats");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
}

TEST_F(ApiTest, StopRemovesSocketFile) {
    start(fake_providers());
    ASSERT_EQ(::access(path_.c_str(), F_OK), 0);
    stop_thread();
    EXPECT_NE(::access(path_.c_str(), F_OK), 0);
    std::string error;
    EXPECT_FALSE(http_get_unix(path_, "/v1/status", error).has_value());
}

TEST_F(ApiTest, StaleSocketFileIsReplaced) {
    // A socket file nobody listens on, as a crashed daemon leaves behind.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
    start(fake_providers());
    auto r = get("/v1/status");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200u);
}

TEST_F(ApiTest, LiveSocketIsNotStolen) {
    start(fake_providers());
    ApiServer second(io_, fake_providers());
    std::string error;
    auto r = second.start(path_, error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_NE(error.find(path_), std::string::npos) << error;
    // The first server is untouched, and the failed one did not remove its socket.
    second.stop();
    auto g = get("/v1/status");
    ASSERT_TRUE(g.has_value());
    EXPECT_EQ(g->status, 200u);
}

TEST_F(ApiTest, RegularFileIsNotReplaced) {
    std::ofstream(path_) << "precious";
    ApiServer server(io_, fake_providers());
    std::string error;
    auto r = server.start(path_, error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::invalid_argument);
    EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
    std::ifstream in(path_);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
}

TEST_F(ApiTest, UnbindablePathIsAnError) {
    ApiServer server(io_, fake_providers());
    std::string error;
    auto r = server.start(dir_ + "/no/such/dir/api.sock", error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_NE(error.find("--api"), std::string::npos) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos);
    r = server.start(std::string(200, 'x'), error);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(error.find("too long"), std::string::npos) << error;
}

TEST(ApiClient, NoSuchSocket) {
    std::string error;
    auto r = http_get_unix("/nonexistent/slipway/api.sock", "/v1/status", error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_NE(error.find("/nonexistent/slipway/api.sock"), std::string::npos) << error;
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;
}

TEST(ApiClient, TimesOutOnSilentServer) {
    char dir[] = "/tmp/slipway-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/silent.sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd, 4), 0);  // accepts (in the backlog) but never answers
    std::string error;
    auto r = http_get_unix(path, "/v1/status", error, std::chrono::milliseconds(200));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(error.find("timed out"), std::string::npos) << error;
    ::close(fd);
    ::unlink(path.c_str());
    ::rmdir(dir);
}

}  // namespace
}  // namespace slipway::apps
