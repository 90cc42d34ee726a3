// slipwayd's HTTP API over real unix sockets with a fake backend: every /v1 route and error class,
// gvproxy's paths with request bodies and expected answers taken from gvproxy's source and tests
// (containers/gvisor-tap-vsock; each test names the file), the guest scope, and the transport
// (keep-alive, limits, the socket file's life).
#include "slipwayd/api_server.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "api_test_support.hpp"

namespace slipway::apps {
namespace {

using nlohmann::json;
using test::FakeBackend;
using test::RawReply;

// An ApiServer and a FakeBackend on their own io_context thread, in a private directory.
class ApiServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char dir[] = "/tmp/slipway-api-test-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        path_ = dir_ + "/api.sock";
        server_.emplace(io_, backend_);
        std::string error;
        ASSERT_TRUE(server_->start(path_, error).has_value()) << error;
        thread_ = std::thread([this] { io_.run(); });
    }

    void TearDown() override {
        stop_thread();
        server_.reset();
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }

    void stop_thread() {
        if (!thread_.joinable()) return;
        on_io([&] { server_->stop(); });
        work_.reset();
        io_.stop();
        thread_.join();
    }

    // Runs fn on the io thread and waits: the backend's state belongs to that thread.
    template <class Fn>
    void on_io(Fn fn) {
        std::promise<void> done;
        boost::asio::post(io_, [&] {
            fn();
            done.set_value();
        });
        done.get_future().wait();
    }

    RawReply raw(const std::string& bytes) {
        const int fd = test::connect_unix(path_);
        EXPECT_GE(fd, 0);
        if (fd < 0) return {};
        auto r = test::parse_reply(test::exchange_fd(fd, bytes));
        ::close(fd);
        return r;
    }

    RawReply call(const std::string& method, const std::string& target,
                  const std::string& body = "", const std::string& extra = "") {
        return raw(test::request_bytes(method, target, body, extra));
    }

    // A /v1 JSON answer: the document, after checking the framing every one shares.
    static json doc_of(const RawReply& r) {
        EXPECT_EQ(r.header("content-type"), "application/json") << r.raw;
        EXPECT_FALSE(r.body.empty());
        if (r.body.empty()) return {};
        EXPECT_EQ(r.body.back(), '\n');
        return json::parse(r.body);
    }

    static std::string error_of(const RawReply& r) {
        const json d = doc_of(r);
        EXPECT_TRUE(d.contains("error")) << r.raw;
        return d.value("error", std::string());
    }

    // gvproxy's http.Error framing: text/plain, nosniff, the message and a newline.
    static void expect_go_error(const RawReply& r, unsigned status, const std::string& body) {
        EXPECT_EQ(r.status, status) << r.raw;
        EXPECT_EQ(r.body, body) << r.raw;
        EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8") << r.raw;
        EXPECT_EQ(r.header("x-content-type-options"), "nosniff") << r.raw;
    }

    // gvproxy's w.WriteHeader(http.StatusOK): 200, nothing else.
    static void expect_go_ok(const RawReply& r) {
        EXPECT_EQ(r.status, 200u) << r.raw;
        EXPECT_EQ(r.body, "") << r.raw;
        EXPECT_FALSE(r.has("content-type")) << r.raw;
        EXPECT_EQ(r.header("content-length"), "0") << r.raw;
    }

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
        boost::asio::make_work_guard(io_);
    FakeBackend backend_{io_};
    std::optional<ApiServer> server_;
    std::thread thread_;
    std::string dir_;
    std::string path_;
};

// ---- /v1 ---------------------------------------------------------------------------------------

TEST_F(ApiServerTest, Version) {
    const auto r = call("GET", "/v1/version");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(doc_of(r), (json{{"version", "0.1.0"}, {"api", 1}}));
}

TEST_F(ApiServerTest, StatusCarriesTheForwardCount) {
    ForwardInfo f;
    f.id = 7;
    on_io([&] { backend_.forwards_.push_back(f); });
    const auto r = call("GET", "/v1/status");
    ASSERT_EQ(r.status, 200u) << r.raw;
    const json d = doc_of(r);
    EXPECT_EQ(d["version"], "0.1.0-test");
    EXPECT_EQ(d["subnet"], "192.168.127.0/24");
    EXPECT_EQ(d["gateway_mac"], "5a:94:ef:e4:0c:dd");
    EXPECT_EQ(d["uptime_s"], 42);
    EXPECT_EQ(d["forwards"], 1);
    EXPECT_EQ(d["ports"].size(), 2u);
}

TEST_F(ApiServerTest, StatsAndPorts) {
    auto r = call("GET", "/v1/stats");
    ASSERT_EQ(r.status, 200u);
    json d = doc_of(r);
    EXPECT_EQ(d["switch"], (json{{"frames", 10}, {"drop_no_dest", 0}}));
    EXPECT_EQ(d["ports"][1]["counters"]["drop_src_mac"], 3);
    EXPECT_EQ(d["pool"]["small_capacity"], 4096);

    r = call("GET", "/v1/ports");
    ASSERT_EQ(r.status, 200u);
    d = doc_of(r);
    ASSERT_EQ(d["ports"].size(), 2u);
    EXPECT_EQ(d["ports"][1], (json{{"name", "qemu0"},
                                   {"kind", "guest"},
                                   {"spec", "qemu:/tmp/x.sock"},
                                   {"state", "listening"}}));
}

TEST_F(ApiServerTest, ForwardsAddListDelete) {
    auto r = call("GET", "/v1/forwards");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(doc_of(r), (json{{"forwards", json::array()}}));

    r = call("POST", "/v1/forwards", R"({"spec":"tcp:8080=192.168.127.2:80"})");
    ASSERT_EQ(r.status, 201u) << r.raw;
    EXPECT_EQ(doc_of(r), (json{{"id", 1},
                               {"proto", "tcp"},
                               {"host", "127.0.0.1:8080"},
                               {"guest", "192.168.127.2:80"},
                               {"spec", "tcp:127.0.0.1:8080=192.168.127.2:80"},
                               {"accepted", 0},
                               {"refused", 0},
                               {"active", 0}}));
    // The field form; proto defaults to tcp and the host may be just a port.
    r = call("POST", "/v1/forwards", R"({"host":"8081","guest":"192.168.127.2:81"})");
    ASSERT_EQ(r.status, 201u) << r.raw;
    EXPECT_EQ(doc_of(r)["spec"], "tcp:127.0.0.1:8081=192.168.127.2:81");
    r = call("POST", "/v1/forwards",
             R"({"proto":"udp","host":"0.0.0.0:5353","guest":"192.168.127.2:53"})");
    ASSERT_EQ(r.status, 201u) << r.raw;
    EXPECT_EQ(doc_of(r)["proto"], "udp");

    r = call("GET", "/v1/forwards");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(doc_of(r)["forwards"].size(), 3u);

    r = call("DELETE", "/v1/forwards/2");
    ASSERT_EQ(r.status, 200u) << r.raw;
    EXPECT_EQ(doc_of(r), (json{{"deleted", 2}, {"killed", false}}));
    r = call("DELETE", "/v1/forwards/1?kill=1");
    ASSERT_EQ(r.status, 200u) << r.raw;
    EXPECT_EQ(doc_of(r), (json{{"deleted", 1}, {"killed", true}}));
    bool kill = false;
    on_io([&] { kill = backend_.last_kill.value_or(false); });
    EXPECT_TRUE(kill);
    r = call("DELETE", "/v1/forwards/1");
    EXPECT_EQ(r.status, 404u);
    EXPECT_EQ(error_of(r), "no forward with id 1");
}

TEST_F(ApiServerTest, ForwardAddErrorsNameTheField) {
    struct Case {
        const char* body;
        const char* needle;
    };
    for (const Case& c : {
             Case{"", "bad JSON"}, Case{"{", "bad JSON"}, Case{"[1]", "JSON object"},
             Case{"{}", "missing field \"spec\""},
             Case{R"({"host":"8080"})", "missing field \"guest\""},
             Case{R"({"guest":"192.168.127.2:80"})", "missing field \"host\""},
             Case{R"({"spec":5})", "field \"spec\" must be a string"},
             Case{R"({"proto":"sctp","host":"1","guest":"192.168.127.2:1"})", "field \"proto\""},
             Case{R"({"spec":"tcp:1=192.168.127.2:1","host":"2"})", "not both"},
             Case{R"({"spec":"tcp:nonsense"})", ""},  // the backend's own reason
         }) {
        const auto r = call("POST", "/v1/forwards", c.body);
        EXPECT_EQ(r.status, 400u) << c.body << "\n" << r.raw;
        EXPECT_NE(error_of(r).find(c.needle), std::string::npos) << c.body << "\n" << r.raw;
    }
    int calls = -1;
    on_io([&] { calls = backend_.calls; });
    EXPECT_EQ(calls, 1);  // only the well-formed request reached the backend
}

TEST_F(ApiServerTest, ForwardErrorsMapToStatuses) {
    auto r = call("POST", "/v1/forwards", R"({"spec":"tcp:8080=192.168.127.2:80"})");
    ASSERT_EQ(r.status, 201u);
    // Overlapping an existing forward: 409.
    r = call("POST", "/v1/forwards", R"({"spec":"tcp:0.0.0.0:8080=192.168.127.3:80"})");
    EXPECT_EQ(r.status, 409u) << r.raw;
    EXPECT_NE(error_of(r).find("overlaps"), std::string::npos);
    // The kernel refused the bind: 500 with its reason.
    on_io([&] {
        backend_.forward_error = ApiError{Errc::io_error, "127.0.0.1:80: bind: Permission denied"};
    });
    r = call("POST", "/v1/forwards", R"({"spec":"tcp:80=192.168.127.2:80"})");
    EXPECT_EQ(r.status, 500u);
    EXPECT_EQ(error_of(r), "127.0.0.1:80: bind: Permission denied");
    // Port forwarding not built into this slipway: 501.
    on_io([&] {
        backend_.forward_error = ApiError{Errc::unsupported, "port forwarding is not built yet"};
    });
    r = call("POST", "/v1/forwards", R"({"spec":"tcp:81=192.168.127.2:80"})");
    EXPECT_EQ(r.status, 501u);
    EXPECT_EQ(error_of(r), "port forwarding is not built yet");
}

TEST_F(ApiServerTest, ForwardDeleteChecksIdAndQuery) {
    for (const char* target :
         {"/v1/forwards/abc", "/v1/forwards/0", "/v1/forwards/1x", "/v1/forwards/99999999999",
          "/v1/forwards/1?kill=maybe", "/v1/forwards/1?force=1", "/v1/forwards/1?kill=%zz"}) {
        const auto r = call("DELETE", target);
        EXPECT_EQ(r.status, 400u) << target << "\n" << r.raw;
        EXPECT_FALSE(error_of(r).empty());
    }
    EXPECT_NE(error_of(call("DELETE", "/v1/forwards/1?force=1")).find("\"force\""),
              std::string::npos);
    EXPECT_NE(error_of(call("DELETE", "/v1/forwards/1?kill=maybe")).find("kill"),
              std::string::npos);
}

TEST_F(ApiServerTest, Leases) {
    const auto r = call("GET", "/v1/leases");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(doc_of(r), (json{{"leases",
                                {{{"mac", "5a:94:ef:e4:0c:ee"},
                                  {"ip", "192.168.127.2"},
                                  {"hostname", "vm1"},
                                  {"expires_unix", 1700000000},
                                  {"static", false},
                                  {"bound", true}}}}}));
}

TEST_F(ApiServerTest, FlowsWithFilters) {
    auto r = call("GET", "/v1/flows");
    ASSERT_EQ(r.status, 200u);
    json d = doc_of(r);
    EXPECT_EQ(d["flows"].size(), 3u);
    EXPECT_EQ(d["truncated"], false);
    EXPECT_EQ(d["flows"][2], (json{{"proto", "tcp"},
                                   {"direction", "in"},
                                   {"guest", "192.168.127.3:80"},
                                   {"remote", "127.0.0.1:5000"},
                                   {"state", "established"},
                                   {"forward_id", 1}}));

    r = call("GET", "/v1/flows?proto=tcp&guest=192.168.127.2");
    d = doc_of(r);
    ASSERT_EQ(d["flows"].size(), 1u);
    EXPECT_EQ(d["flows"][0]["remote"], "203.0.113.5:443");
    std::optional<FlowFilter> filter;
    on_io([&] { filter = backend_.last_filter; });
    ASSERT_TRUE(filter.has_value());
    EXPECT_EQ(filter->proto, "tcp");
    EXPECT_EQ(filter->guest, Ipv4Addr::from_octets(192, 168, 127, 2));

    r = call("GET", "/v1/flows?limit=2");
    d = doc_of(r);
    EXPECT_EQ(d["flows"].size(), 2u);
    EXPECT_EQ(d["truncated"], true);
    r = call("GET", "/v1/flows?limit=3");
    EXPECT_EQ(doc_of(r)["truncated"], false);

    for (const char* target : {"/v1/flows?proto=sctp", "/v1/flows?guest=nope",
                               "/v1/flows?guest=::1", "/v1/flows?limit=0", "/v1/flows?limit=-1",
                               "/v1/flows?limit=x", "/v1/flows?limit=", "/v1/flows?bogus=1"}) {
        r = call("GET", target);
        EXPECT_EQ(r.status, 400u) << target << "\n" << r.raw;
        EXPECT_FALSE(error_of(r).empty());
    }
}

TEST_F(ApiServerTest, DnsRecords) {
    auto r = call("GET", "/v1/dns");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(doc_of(r)["records"].size(), 4u);
    EXPECT_EQ(doc_of(r)["records"][0],
              (json{{"name", "gateway.containers.internal"}, {"ip", "192.168.127.1"}}));

    r = call("POST", "/v1/dns", R"({"name":"db.example","ip":"192.168.127.9"})");
    ASSERT_EQ(r.status, 201u) << r.raw;
    EXPECT_EQ(doc_of(r), (json{{"name", "db.example"}, {"ip", "192.168.127.9"}}));
    r = call("DELETE", "/v1/dns/db.example");
    ASSERT_EQ(r.status, 200u) << r.raw;
    EXPECT_EQ(doc_of(r), (json{{"deleted", "db.example"}}));
    r = call("DELETE", "/v1/dns/db.example");
    EXPECT_EQ(r.status, 404u);
    EXPECT_EQ(error_of(r), "no DNS record db.example");
    // A path parameter is percent-decoded.
    r = call("DELETE", "/v1/dns/host%2Edocker.internal");
    EXPECT_EQ(r.status, 200u) << r.raw;

    struct Case {
        const char* body;
        const char* needle;
    };
    for (const Case& c :
         {Case{R"({"ip":"192.168.127.9"})", "missing field \"name\""},
          Case{R"({"name":"a.b"})", "missing field \"ip\""},
          Case{R"({"name":"a.b","ip":"300.1.1.1"})", "field \"ip\""},
          Case{R"({"name":"a..b","ip":"192.168.127.9"})", "field \"name\""},
          Case{R"({"name":7,"ip":"192.168.127.9"})", "field \"name\""}, Case{"nope", "bad JSON"}}) {
        r = call("POST", "/v1/dns", c.body);
        EXPECT_EQ(r.status, 400u) << c.body << "\n" << r.raw;
        EXPECT_NE(error_of(r).find(c.needle), std::string::npos) << c.body << "\n" << r.raw;
    }
    // --no-dns: 400, not 501.
    on_io([&] { backend_.dns_off = true; });
    r = call("POST", "/v1/dns", R"({"name":"db.example","ip":"192.168.127.9"})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(error_of(r), "DNS is off (--no-dns)");
}

TEST_F(ApiServerTest, UnknownPathsAre404NamingThePath) {
    for (const char* target : {"/v1/nope", "/v1", "/v1/forwards/", "/v1/forwards/1/x", "/v1/dns/",
                               "/metrics/x", "/nope"}) {
        const auto r = call("GET", target);
        EXPECT_EQ(r.status, 404u) << target;
        EXPECT_NE(error_of(r).find(target), std::string::npos) << target << "\n" << r.raw;
    }
}

TEST_F(ApiServerTest, WrongMethodIs405WithAllow) {
    struct Case {
        const char* method;
        const char* target;
        const char* allow;
    };
    for (const Case& c :
         {Case{"POST", "/v1/status", "GET"}, Case{"DELETE", "/v1/version", "GET"},
          Case{"PUT", "/v1/forwards", "GET, POST"}, Case{"GET", "/v1/forwards/1", "DELETE"},
          Case{"PATCH", "/v1/dns", "GET, POST"}, Case{"GET", "/v1/dns/x.y", "DELETE"},
          Case{"POST", "/metrics", "GET"}, Case{"HEAD", "/v1/forwards/1", "DELETE"}}) {
        const auto r = call(c.method, c.target, std::string(c.method) == "HEAD" ? "" : "{}");
        EXPECT_EQ(r.status, 405u) << c.method << " " << c.target << "\n" << r.raw;
        EXPECT_EQ(r.header("allow"), c.allow) << c.method << " " << c.target;
        if (std::string(c.method) != "HEAD") {
            EXPECT_NE(error_of(r).find(c.method), std::string::npos);
        }
    }
    int calls = -1;
    on_io([&] { calls = backend_.calls; });
    EXPECT_EQ(calls, 0);
}

TEST_F(ApiServerTest, OversizedRequestIs413) {
    const std::string big(kMaxRequestBody + 1, 'x');
    auto r = call("POST", "/v1/forwards", big);
    EXPECT_EQ(r.status, 413u) << r.raw.substr(0, 200);
    r = raw("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " +
            std::string(kMaxRequestHeader * 2, 'a') + "\r\n\r\n");
    EXPECT_TRUE(r.raw.empty() || r.status == 413u) << r.raw.substr(0, 40);
    // A body just under the limit is read and judged on its content.
    r = call("POST", "/v1/dns", std::string(kMaxRequestBody - 10, ' ') + "{}");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(call("GET", "/v1/version").status, 200u);
}

TEST_F(ApiServerTest, BusyBackendIs503) {
    on_io([&] { backend_.busy = true; });
    for (const char* target : {"/v1/status", "/v1/forwards", "/v1/leases", "/v1/flows", "/v1/dns",
                               "/v1/stats", "/v1/ports", "/metrics"}) {
        const auto r = call("GET", target);
        EXPECT_EQ(r.status, 503u) << target;
        EXPECT_EQ(doc_of(r), (json{{"error", "busy"}}));
    }
    auto r = call("POST", "/v1/forwards", R"({"spec":"tcp:8080=192.168.127.2:80"})");
    EXPECT_EQ(r.status, 503u);
    r = call("DELETE", "/v1/forwards/1");
    EXPECT_EQ(r.status, 503u);
    expect_go_error(call("GET", "/services/forwarder/all"), 503, "busy\n");
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":":8080","remote":"192.168.127.2:80"})"),
                    503, "busy\n");
    // /v1/version needs no backend.
    EXPECT_EQ(call("GET", "/v1/version").status, 200u);
}

TEST_F(ApiServerTest, MetricsParseAsPrometheusText) {
    const auto r = call("GET", "/metrics");
    ASSERT_EQ(r.status, 200u) << r.raw;
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    std::map<std::string, std::string> types;
    EXPECT_EQ(test::check_prometheus(r.body, &types), "") << r.body;
    EXPECT_NE(r.body.find("\nslipway_up 1\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\nslipway_forwards 0\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\nslipway_port_rx_bytes{port=\"qemu0\"} 700\n"), std::string::npos);
    EXPECT_NE(r.body.find("\nslipway_port_rx_bytes{port=\"gateway\"} 100\n"), std::string::npos);
    EXPECT_EQ(types["slipway_gateway_tcp_flows"], "gauge");
    EXPECT_EQ(types["slipway_gateway_udp_flows_opened"], "counter");
    EXPECT_EQ(types["slipway_pool_small_free_global"], "gauge");
    EXPECT_EQ(types["slipway_switch_frames"], "counter");
}

// ---- gvproxy's API -----------------------------------------------------------------------------

// README.md ("curl ... /services/forwarder/expose -X POST -d '{"local":":6443",...}'") and
// pkg/services/forwarder/ports.go: expose answers an empty 200, /all lists the rule with the
// local text as sent, unexpose removes it.
TEST_F(ApiServerTest, GvproxyReadmeExposeListUnexpose) {
    auto r = call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "[]\n");  // make([]proxy, 0): never null
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");

    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":":6443","remote":"192.168.127.2:6443"})"));
    r = call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.body, R"([{"local":":6443","remote":"192.168.127.2:6443","protocol":"tcp"}])"
                      "\n");
    // ":6443" is every address.
    std::string host;
    on_io([&] { host = backend_.forwards_.at(0).host; });
    EXPECT_EQ(host, "0.0.0.0:6443");

    expect_go_ok(call("POST", "/services/forwarder/unexpose", R"({"local":":6443"})"));
    EXPECT_EQ(call("GET", "/services/forwarder/all").body, "[]\n");
}

// pkg/services/forwarder/ports.go Expose: the key protocol/local is taken -> 500
// "proxy already running for %s on %s"; Unexpose of an unknown key -> 500 "proxy not found".
TEST_F(ApiServerTest, GvproxyDuplicateAndUnknown) {
    const std::string body = R"({"local":":8080","remote":"192.168.127.2:80","protocol":"tcp"})";
    expect_go_ok(call("POST", "/services/forwarder/expose", body));
    expect_go_error(call("POST", "/services/forwarder/expose", body), 500,
                    "proxy already running for tcp on :8080\n");
    // Same local as udp is another key (ports.go key()).
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":":8080","remote":"192.168.127.2:80","protocol":"udp"})"));
    // A different text binding a common port fails at bind in gvproxy: still a 500.
    auto r = call("POST", "/services/forwarder/expose",
                  R"({"local":"127.0.0.1:8080","remote":"192.168.127.2:80"})");
    EXPECT_EQ(r.status, 500u) << r.raw;

    expect_go_error(call("POST", "/services/forwarder/unexpose", R"({"local":":9999"})"), 500,
                    "proxy not found\n");
    expect_go_error(
        call("POST", "/services/forwarder/unexpose", R"({"local":":8080","protocol":"sctp"})"), 500,
        "proxy not found\n");
    expect_go_error(call("POST", "/services/forwarder/unexpose", R"({"local":"garbage"})"), 500,
                    "proxy not found\n");
    // Unexpose matches protocol and local and ignores remote (podman omits it).
    expect_go_ok(call("POST", "/services/forwarder/unexpose",
                      R"({"local":":8080","protocol":"udp","remote":"x"})"));
    r = call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.body, R"([{"local":":8080","remote":"192.168.127.2:80","protocol":"tcp"}])"
                      "\n");
}

// test/port_forwarding_test.go: client.Expose(&types.ExposeRequest{Local: "127.0.0.1:9090",
// Remote: "192.168.127.2:8080"}) (Go marshals the empty Protocol as ""), and the UDP pair
// {Local: ":1053", Remote: "192.168.127.2:53", Protocol: "udp"} / Unexpose {":1053", "udp"}.
TEST_F(ApiServerTest, GvproxyGoClientRequests) {
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":"127.0.0.1:9090","remote":"192.168.127.2:8080","protocol":""})",
                      "Content-Type: application/json\r\n"));
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":":1053","remote":"192.168.127.2:53","protocol":"udp"})"));
    // Sorted by local as newer gvproxy sorts (bytewise: '1' before ':').
    const auto r = call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.body,
              R"([{"local":"127.0.0.1:9090","remote":"192.168.127.2:8080","protocol":"tcp"},)"
              R"({"local":":1053","remote":"192.168.127.2:53","protocol":"udp"}])"
              "\n");
    expect_go_ok(call("POST", "/services/forwarder/unexpose",
                      R"({"local":"127.0.0.1:9090","protocol":""})"));
    expect_go_ok(
        call("POST", "/services/forwarder/unexpose", R"({"local":":1053","protocol":"udp"})"));
}

// cmd/gvproxy/gateway_test.go's bodies against the host API (its 403 for unix is the gateway's;
// see GuestScope below): tcp and udp 200, "not json" and an empty body 400.
TEST_F(ApiServerTest, GvproxyGatewayTestBodies) {
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":":8080","remote":"192.168.127.2:80","protocol":"tcp"})"));
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":":5353","remote":"192.168.127.2:53","protocol":"udp"})"));
    auto r = call("POST", "/services/forwarder/expose", "not json");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");
    expect_go_error(call("POST", "/services/forwarder/expose", ""), 400, "EOF\n");
    // unix forwards are gvproxy's, not slipway's: refused, saying so.
    r = call("POST", "/services/forwarder/expose",
             R"({"local":"/tmp/test.sock","remote":"tcp://192.168.127.2:22","protocol":"unix"})");
    EXPECT_EQ(r.status, 500u);
    EXPECT_NE(r.body.find("only tcp and udp protocols are allowed"), std::string::npos) << r.body;
    r = call(
        "POST", "/services/forwarder/expose",
        R"({"local":"npipe:////./pipe/x","remote":"tcp://192.168.127.2:22","protocol":"npipe"})");
    EXPECT_EQ(r.status, 500u);
}

// Go's net/http and encoding/json habits (see the notes on gvproxy's API, section 0).
TEST_F(ApiServerTest, GvproxyDecodingLikeGo) {
    // Mutating paths take only POST: 400 "post only" (ports.go, dns.go), not 405.
    expect_go_error(call("GET", "/services/forwarder/expose"), 400, "post only\n");
    expect_go_error(call("PUT", "/services/forwarder/unexpose", "{}"), 400, "post only\n");
    expect_go_error(call("GET", "/services/dns/add"), 400, "post only\n");
    // Whitespace only is still EOF.
    expect_go_error(call("POST", "/services/forwarder/unexpose", " \n"), 400, "EOF\n");
    // Wrong types, with encoding/json's wording.
    expect_go_error(call("POST", "/services/forwarder/expose", R"({"local":5})"), 400,
                    "json: cannot unmarshal number into Go struct field ExposeRequest.local of "
                    "type string\n");
    expect_go_error(call("POST", "/services/forwarder/expose", "[]"), 400,
                    "json: cannot unmarshal array into Go value of type types.ExposeRequest\n");
    // Keys match case-insensitively: old clients send untagged Go structs (Local, Remote).
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"Local":"127.0.0.1:7000","Remote":"192.168.127.2:7000"})"));
    // Only the first JSON value is read; curl's default form Content-Type is not checked.
    expect_go_ok(call("POST", "/services/forwarder/expose",
                      R"({"local":"127.0.0.1:7001","remote":"192.168.127.2:7001"} trailing)",
                      "Content-Type: application/x-www-form-urlencoded\r\n"));
    // Read paths take any method.
    auto r = call("POST", "/services/forwarder/all", "");
    EXPECT_EQ(r.status, 200u);
    EXPECT_NE(r.body.find("127.0.0.1:7000"), std::string::npos);
    // Exact paths: a trailing slash is Go's 404.
    expect_go_error(call("GET", "/services/forwarder/all/"), 404, "404 page not found\n");
    expect_go_error(call("GET", "/services/nope"), 404, "404 page not found\n");
    // A query string does not change the route.
    EXPECT_EQ(call("GET", "/services/forwarder/all?x=1").status, 200u);
}

// ports.go remote() (net.SplitHostPort -> 400) and tcpipAddress() (-> 500), Expose's protocol
// switch ("unknown protocol %s" -> 500), and the listen address's form.
TEST_F(ApiServerTest, GvproxyExposeAddressErrors) {
    expect_go_error(
        call("POST", "/services/forwarder/expose", R"({"local":":8080","remote":"8080"})"), 400,
        "address 8080: missing port in address\n");
    expect_go_error(call("POST", "/services/forwarder/expose", R"({"local":":8080"})"), 400,
                    "address : missing port in address\n");
    expect_go_error(
        call("POST", "/services/forwarder/expose", R"({"local":":8080","remote":"1:2:3"})"), 400,
        "address 1:2:3: too many colons in address\n");
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":":8080","remote":"192.168.127.2:80","protocol":"sctp"})"),
                    500, "unknown protocol sctp\n");
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":":8080","remote":"192.168.127.2:80","protocol":"TCP"})"),
                    500, "unknown protocol TCP\n");
    expect_go_error(
        call("POST", "/services/forwarder/expose", R"({"local":":8080","remote":"[fd00::2]:80"})"),
        500, "invalid remote addr\n");
    expect_go_error(
        call("POST", "/services/forwarder/expose", R"({"local":":8080","remote":"vm:80"})"), 500,
        "invalid remote addr\n");
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":":8080","remote":"192.168.127.2:x"})"),
                    500, "strconv.ParseUint: parsing \"x\": invalid syntax\n");
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":":8080","remote":"192.168.127.2:70000"})"),
                    500, "strconv.ParseUint: parsing \"70000\": value out of range\n");
    // Go's listen wants host:port: "8080" fails there.
    auto r = call("POST", "/services/forwarder/expose",
                  R"({"local":"8080","remote":"192.168.127.2:80"})");
    EXPECT_EQ(r.status, 500u);
    EXPECT_EQ(r.body, "listen tcp: address 8080: missing port in address\n");
    // Over a unix socket the HTTP client has no address to lend an address-less remote.
    r = call("POST", "/services/forwarder/expose", R"({"local":":8080","remote":":80"})");
    EXPECT_EQ(r.status, 400u);
    int calls = -1;
    on_io([&] { calls = backend_.calls; });
    EXPECT_EQ(calls, 0);
    // A bind the kernel refuses is a 500 with its text (podman looks for "permission denied").
    on_io([&] {
        backend_.forward_error =
            ApiError{Errc::io_error, "listen tcp 127.0.0.1:80: bind: permission denied"};
    });
    expect_go_error(call("POST", "/services/forwarder/expose",
                         R"({"local":"127.0.0.1:80","remote":"192.168.127.2:80"})"),
                    500, "listen tcp 127.0.0.1:80: bind: permission denied\n");
}

// test/basic_tests.go BasicDHCPTests: the leases map holds the gateway and the guest
// (ip -> mac), at both /services/dhcp/leases and /leases (pkg/virtualnetwork/handlers.go).
TEST_F(ApiServerTest, GvproxyLeases) {
    for (const char* target : {"/services/dhcp/leases", "/leases"}) {
        const auto r = call("GET", target);
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.body,
                  R"({"192.168.127.1":"5a:94:ef:e4:0c:dd","192.168.127.2":"5a:94:ef:e4:0c:ee"})"
                  "\n")
            << target;
        EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");
    }
}

// cmd/gvproxy/main.go's default zones, as GET /services/dns/all shows them (Go field names, key
// order Name, Records, DefaultIP; an unset DefaultIP is "").
TEST_F(ApiServerTest, GvproxyDnsAllShowsZones) {
    const auto r = call("GET", "/services/dns/all");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(
        r.body,
        R"([{"Name":"containers.internal.","Records":[{"Name":"gateway","IP":"192.168.127.1"},)"
        R"({"Name":"host","IP":"192.168.127.254"}],"DefaultIP":""},)"
        R"({"Name":"docker.internal.","Records":[{"Name":"gateway","IP":"192.168.127.1"},)"
        R"({"Name":"host","IP":"192.168.127.254"}],"DefaultIP":""}])"
        "\n");
}

// test/basic_tests.go BasicDNSTests via the Go client's AddDNS (json.Marshal of types.Zone):
// test.dynamic.internal answers .254, then the same zone again with .253 shadows it.
TEST_F(ApiServerTest, GvproxyDnsAdd) {
    expect_go_ok(call(
        "POST", "/services/dns/add",
        R"({"Name":"dynamic.internal.","Records":[{"Name":"test","IP":"192.168.127.254"}],"DefaultIP":""})"));
    std::string ip;
    on_io([&] { ip = backend_.dns_["test.dynamic.internal"]; });
    EXPECT_EQ(ip, "192.168.127.254");
    expect_go_ok(
        call("POST", "/services/dns/add",
             R"({"Name":"dynamic.internal.","Records":[{"Name":"test","IP":"192.168.127.253"}]})"));
    on_io([&] { ip = backend_.dns_["test.dynamic.internal"]; });
    EXPECT_EQ(ip, "192.168.127.253");
    // Case-insensitive keys; the first record of a name wins within a zone, as gvproxy's lookup.
    expect_go_ok(
        call("POST", "/services/dns/add",
             R"({"name":"lower.test","records":[{"name":"a","ip":"192.168.127.5"},)"
             R"({"name":"a","ip":"192.168.127.6"},{"name":"b.c","ip":"192.168.127.7"}]})"));
    std::string a, bc;
    on_io([&] {
        a = backend_.dns_["a.lower.test"];
        bc = backend_.dns_["b.c.lower.test"];
    });
    EXPECT_EQ(a, "192.168.127.5");
    EXPECT_EQ(bc, "192.168.127.7");
    // A zone "" makes the record names whole names; a zone with no records is a no-op.
    expect_go_ok(call("POST", "/services/dns/add",
                      R"({"Name":"","Records":[{"Name":"whole.name","IP":"192.168.127.8"}]})"));
    on_io([&] { ip = backend_.dns_["whole.name"]; });
    EXPECT_EQ(ip, "192.168.127.8");
    expect_go_ok(call("POST", "/services/dns/add", R"({"Name":"empty.zone."})"));
    const auto r = call("GET", "/services/dns/all");
    EXPECT_NE(
        r.body.find(
            R"({"Name":"dynamic.internal.","Records":[{"Name":"test","IP":"192.168.127.253"}],"DefaultIP":""})"),
        std::string::npos)
        << r.body;
}

// What slipway's exact-name records cannot express is refused with 400 (newest gvproxy answers a
// refused zone with 400, pkg/virtualnetwork/handlers.go handleDNSAdd); bad IPs with net.IP's
// "invalid IP address: %s".
TEST_F(ApiServerTest, GvproxyDnsAddRefusals) {
    // test/basic_tests.go: a zone DefaultIP (every name) has no slipway counterpart.
    auto r = call("POST", "/services/dns/add",
                  R"({"Name":"dynamic.testing.","DefaultIP":"192.168.127.2"})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_NE(r.body.find("DefaultIP"), std::string::npos);
    r = call("POST", "/services/dns/add",
             R"({"Name":"z.","Records":[{"Name":"","IP":"192.168.127.2","Regexp":"^.*$"}]})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_NE(r.body.find("Regexp"), std::string::npos);
    expect_go_error(
        call("POST", "/services/dns/add", R"({"Name":"z.","Records":[{"Name":"a","IP":"1.2.3"}]})"),
        400, "invalid IP address: 1.2.3\n");
    r = call("POST", "/services/dns/add",
             R"({"Name":"z.","Records":[{"Name":"a","IP":"fd00::1"}]})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_NE(r.body.find("IPv6"), std::string::npos);
    r = call("POST", "/services/dns/add", R"({"Name":"z.","Records":[{"Name":"a"}]})");
    EXPECT_EQ(r.status, 400u);
    r = call("POST", "/services/dns/add", R"({"Name":"z.","Records":{"Name":"a"}})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(r.body,
              "json: cannot unmarshal object into Go struct field Zone.Records of type "
              "[]types.Record\n");
    expect_go_error(call("POST", "/services/dns/add", ""), 400, "EOF\n");
    int calls = -1;
    on_io([&] { calls = backend_.calls; });
    EXPECT_EQ(calls, 0);
    on_io([&] { backend_.dns_off = true; });
    r = call("POST", "/services/dns/add",
             R"({"Name":"z.","Records":[{"Name":"a","IP":"1.2.3.4"}]})");
    EXPECT_EQ(r.status, 400u);
}

// pkg/virtualnetwork/stats.go: gvproxy's field names where slipway counts the same thing.
TEST_F(ApiServerTest, GvproxyStats) {
    const auto r = call("GET", "/stats");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");
    const json d = json::parse(r.body);
    EXPECT_EQ(d["BytesSent"], 900);      // to guests: the guest ports' tx_bytes
    EXPECT_EQ(d["BytesReceived"], 700);  // from guests
    EXPECT_EQ(d["TCP"]["CurrentEstablished"], 1);
    EXPECT_EQ(d["TCP"]["PassiveConnectionOpenings"], 4);
    EXPECT_TRUE(d["UDP"].is_object());
    EXPECT_EQ(d["slipway"]["switch"]["frames"], 10);
    // gvproxy's other host paths: named, not served.
    for (const char* target : {"/cam", "/tunnel?ip=192.168.127.2&port=22", "/connect"}) {
        const auto n = call("GET", target);
        EXPECT_EQ(n.status, 404u) << target;
        EXPECT_NE(n.body.find("not served by slipway"), std::string::npos);
    }
}

// ---- guest scope -------------------------------------------------------------------------------

// A guest's connection to gateway:80 as GuestHandoff delivers it: one end of a socketpair.
class GuestScopeTest : public ApiServerTest {
  protected:
    RawReply guest_call(const std::string& method, const std::string& target,
                        const std::string& body = "", std::optional<Ipv4Addr> peer = std::nullopt) {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        on_io([&] { server_->serve_guest(sv[1], peer); });
        auto r =
            test::parse_reply(test::exchange_fd(sv[0], test::request_bytes(method, target, body)));
        ::close(sv[0]);
        return r;
    }
};

// cmd/gvproxy/main.go mounts only the three forwarder paths on the gateway listener; everything
// else is Go's 404.
TEST_F(GuestScopeTest, OnlyTheForwarderPaths) {
    auto r = guest_call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "[]\n");
    for (const char* target : {"/stats", "/leases", "/services/dns/all", "/services/dhcp/leases",
                               "/v1/status", "/v1/forwards", "/metrics", "/tunnel", "/"}) {
        expect_go_error(guest_call("GET", target), 404, "404 page not found\n");
    }
    expect_go_error(guest_call("POST", "/services/dns/add",
                               R"({"Name":"x.","Records":[{"Name":"a","IP":"1.2.3.4"}]})"),
                    404, "404 page not found\n");
    expect_go_error(guest_call("POST", "/v1/forwards", R"({"spec":"tcp:1=192.168.127.2:1"})"), 404,
                    "404 page not found\n");
    int calls = -1;
    on_io([&] { calls = backend_.calls; });
    EXPECT_EQ(calls, 0);
}

// test/port_forwarding_test.go from the guest: curl gateway.containers.internal/...expose
// -d'{"local":":9090", "remote":":8080"}' (the remote's address is the guest's own), then
// unexpose -d'{"local":":9090"}'.
TEST_F(GuestScopeTest, ExposeFromTheGuest) {
    const auto guest = Ipv4Addr::from_octets(192, 168, 127, 2);
    expect_go_ok(guest_call("POST", "/services/forwarder/expose",
                            R"({"local":":9090", "remote":":8080"})", guest));
    auto r = guest_call("GET", "/services/forwarder/all");
    EXPECT_EQ(r.body, R"([{"local":":9090","remote":"192.168.127.2:8080","protocol":"tcp"}])"
                      "\n");
    expect_go_ok(guest_call("POST", "/services/forwarder/unexpose", R"({"local":":9090"})"));
    // Without knowing the guest, an address-less remote cannot be completed.
    r = guest_call("POST", "/services/forwarder/expose", R"({"local":":9090","remote":":8080"})");
    EXPECT_EQ(r.status, 400u);
    EXPECT_NE(r.body.find("no address"), std::string::npos) << r.body;
    // cmd/gvproxy/gateway_test.go: unix from the gateway is 403 "only tcp and udp protocols are
    // allowed"; tcp and udp bodies 200; "not json" and empty 400.
    r = guest_call(
        "POST", "/services/forwarder/expose",
        R"({"local":"/tmp/test.sock","remote":"tcp://192.168.127.2:22","protocol":"unix"})");
    EXPECT_EQ(r.status, 403u);
    EXPECT_NE(r.body.find("only tcp and udp protocols are allowed"), std::string::npos);
    expect_go_ok(guest_call("POST", "/services/forwarder/expose",
                            R"({"local":":8080","remote":"192.168.127.2:80","protocol":"tcp"})"));
    expect_go_ok(guest_call("POST", "/services/forwarder/expose",
                            R"({"local":":5353","remote":"192.168.127.2:53","protocol":"udp"})"));
    EXPECT_EQ(guest_call("POST", "/services/forwarder/expose", "not json").status, 400u);
    EXPECT_EQ(guest_call("POST", "/services/forwarder/expose", "").status, 400u);
}

TEST_F(GuestScopeTest, GuestSessionsAreCapped) {
    std::vector<int> held;
    for (std::size_t i = 0; i < ApiServer::kMaxGuestSessions; ++i) {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        on_io([&] { server_->serve_guest(sv[1]); });
        held.push_back(sv[0]);
    }
    // One over the cap is closed at once; the host API is unaffected.
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    on_io([&] { server_->serve_guest(sv[1]); });
    EXPECT_EQ(test::exchange_fd(sv[0], test::request_bytes("GET", "/services/forwarder/all")), "");
    ::close(sv[0]);
    EXPECT_EQ(call("GET", "/v1/version").status, 200u);
    for (const int fd : held)
        ::close(fd);
}

// ---- transport ---------------------------------------------------------------------------------

TEST_F(ApiServerTest, KeepAliveServesSeveralRequests) {
    const int fd = test::connect_unix(path_);
    ASSERT_GE(fd, 0);
    const std::string body = R"({"local":":8080","remote":"192.168.127.2:80"})";
    const std::string reply = test::exchange_fd(
        fd,
        "GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /services/forwarder/expose HTTP/1.1\r\nHost: x\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body +
            "GET /v1/forwards HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ::close(fd);
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
    const auto second = reply.find("HTTP/1.1 200", 10);
    ASSERT_NE(second, std::string::npos) << reply;
    EXPECT_NE(reply.find("HTTP/1.1 200", second + 10), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"0.0.0.0:8080\""), std::string::npos) << reply;
}

TEST_F(ApiServerTest, HeadGetsHeadersOnly) {
    auto r = call("HEAD", "/services/forwarder/all");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-length"), "3");
    EXPECT_EQ(r.body, "");
    r = call("HEAD", "/v1/version");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_NE(r.header("content-length"), "0");
    EXPECT_EQ(r.body, "");
}

TEST_F(ApiServerTest, MalformedRequestIs400) {
    const auto r = raw("NOT HTTP AT ALL\r\n\r\n");
    EXPECT_EQ(r.status, 400u) << r.raw;
}

TEST_F(ApiServerTest, ClientVanishingMidRequestHarmsNothing) {
    const int a = test::connect_unix(path_);
    EXPECT_EQ(test::exchange_fd(a, "GET /v1/sta"), "");
    ::close(a);
    const int b = test::connect_unix(path_);
    (void)::send(b, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 37, MSG_NOSIGNAL);
    ::close(b);  // before the reply: the server's write fails (EPIPE), not the process
    EXPECT_EQ(call("GET", "/v1/status").status, 200u);
}

TEST_F(ApiServerTest, SocketIsMode0600AndStopRemovesIt) {
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    stop_thread();
    EXPECT_NE(::access(path_.c_str(), F_OK), 0);
    EXPECT_LT(test::connect_unix(path_), 0);
}

TEST_F(ApiServerTest, LiveSocketIsNotStolen) {
    ApiServer second(io_, backend_);
    std::string error;
    auto r = second.start(path_, error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_NE(error.find(path_), std::string::npos) << error;
    second.stop();  // the failed one does not remove the live server's socket
    EXPECT_EQ(call("GET", "/v1/version").status, 200u);
}

TEST(ApiServerStart, StaleSocketReplacedRegularFileKept) {
    char dir[] = "/tmp/slipway-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/api.sock";
    boost::asio::io_context io;
    FakeBackend backend(io);
    {
        // A socket file nobody listens on, as a crashed daemon leaves behind.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.data(), path.size());
        ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
        ::close(fd);
        ApiServer server(io, backend);
        std::string error;
        EXPECT_TRUE(server.start(path, error).has_value()) << error;
    }
    EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed by the destructor's stop()
    std::ofstream(path) << "precious";
    {
        ApiServer server(io, backend);
        std::string error;
        auto r = server.start(path, error);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::invalid_argument);
        EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
    }
    std::ifstream in(path);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
    ::unlink(path.c_str());
    {
        ApiServer server(io, backend);
        std::string error;
        auto r = server.start(std::string(dir) + "/no/such/dir/api.sock", error);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::io_error);
        EXPECT_NE(error.find("--api"), std::string::npos) << error;
        EXPECT_EQ(error.find('\n'), std::string::npos);
    }
    ::rmdir(dir);
}

}  // namespace
}  // namespace slipway::apps
