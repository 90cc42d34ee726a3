// libFuzzer target: slipwayd's HTTP API routes (apps/slipwayd/api_routes.cpp) on hostile requests,
// and the Prometheus renderer (api_metrics.cpp) on hostile counter and port names.
//
// Input: a script line (the bytes up to the first '\n', at most kMaxScript of them), then the
// rest. The script's first byte picks the mode:
//   - 'm': the rest builds a NetworkStats (records of kind, name length, name, value) that
//     metrics_text renders; every line must match the text exposition grammar and the samples
//     must be exactly the ones the stats call for. The same stats are then served through
//     GET /metrics, /v1/stats and /stats.
//   - anything else: the rest is what a client sends on one connection (pipelined HTTP/1.1
//     requests), parsed as ApiServer's session parses it (Boost.Beast's request_parser with the
//     server's header and body limits) and handed to ApiRoutes::handle request by request, in
//     host scope when bit 0 of the byte is clear and in guest scope (--guest-api) when it is set;
//     bit 1 gives the connection a peer address (bit 2 makes it 0.0.0.0).
// The script's other bytes decide, one per call, what the fake backend's calls do (cycling): a
// byte % 16 of 0-7 succeeds, 8 is "busy" (the call returns false), 9-13 fail with
// invalid_argument, not_found, conflict, io_error and unsupported, 14 with would_block, 15 with
// io_error and an empty message. Printable: '0'-'7' succeed, '8' busy, '9' ';' '<' '=' '>' '?'.
// An empty script: every call succeeds. Replies come one asio::post later, as the network
// thread's do.
//
// Invariants (trap on violation): no crash or sanitizer report; every request gets exactly one
// response, with a status in 200..599; a JSON response (application/json, or a gvproxy 2xx body)
// parses; an error from /v1/... or /metrics is a JSON object with an "error" string; a 405 names
// the methods allowed; a 200 /metrics body passes the exposition checker; guest scope answers 2xx
// only on /services/forwarder/{all,expose,unexpose}, and reaches no backend call but the forward
// ones (never a kill).
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/portfwd/rule.hpp"
#include "slipwayd/api_backend.hpp"
#include "slipwayd/api_metrics.hpp"
#include "slipwayd/api_routes.hpp"
#include "slipwayd/api_server.hpp"

namespace {

using namespace slipway;
using namespace slipway::apps;
using slipway::fuzz::check;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

constexpr std::size_t kMaxScript = 32;
constexpr std::size_t kMaxRequests = 16;

// ---- the fake backend --------------------------------------------------------------------------

NetworkPlan fake_plan() {
    NetworkPlan p{};
    p.subnet = Ipv4Addr::from_octets(192, 168, 127, 0);
    p.prefix_len = 24;
    p.gateway = Ipv4Addr::from_octets(192, 168, 127, 1);
    p.dns = p.gateway;
    p.host_alias = Ipv4Addr::from_octets(192, 168, 127, 254);
    p.gateway_mac = MacAddr{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};
    p.mtu = 1500;
    p.dhcp = true;
    p.dhcp_first = Ipv4Addr::from_octets(192, 168, 127, 2);
    p.dhcp_last = Ipv4Addr::from_octets(192, 168, 127, 253);
    p.dns_enabled = true;
    return p;
}

NetworkStats default_stats() {
    NetworkStats s;
    s.switch_counters = {{"frames", 10}, {"drop_no_dest", 0}};
    s.ports.push_back({"gateway", "gateway", "", "up", {{"rx_bytes", 100}}});
    s.ports.push_back({"qemu0\"\\\n\xff",
                       "guest",
                       "qemu:/tmp/x.sock",
                       "connected",
                       {{"rx_bytes", 700}, {"tx_bytes", 900}, {"tcp_flows", 3}}});
    s.gateway_counters = {{"tcp_flows", 2}, {"udp_flows_opened", 5}, {"dns_cache_entries", 7}};
    s.pool = {{"small_capacity", 4096}, {"small_free_global", 4000}, {"exhausted", 0}};
    return s;
}

// What one backend call does, from the script.
enum class Outcome : std::uint8_t { ok, busy, fail };

class FuzzBackend : public ApiBackend {
  public:
    FuzzBackend(asio::io_context& io, std::string_view script, ApiScope scope)
        : io_(io), script_(script), scope_(scope) {
        status_.version = "fuzz";
        status_.plan = plan_;
        status_.ready = true;
        status_.ports.push_back({"gateway", "gateway", "", "up", {}});
        stats_ = default_stats();
        // A guest picks its DHCP host name: quotes, control bytes and bytes that are not UTF-8.
        leases_.push_back({"5a:94:ef:e4:0c:ee", "192.168.127.2", "vm\"\\\n\x01\xc3\x28", 1700000000,
                           false, true});
        flows_.push_back(
            {"tcp", "out", "192.168.127.2:40000", "203.0.113.5:443", "established", 0});
        flows_.push_back({"udp", "out", "192.168.127.2:40001", "203.0.113.5:53", "open", 0});
        dns_ = {{"host.containers.internal", "192.168.127.254"}};
    }

    [[nodiscard]] const NetworkPlan& plan() const override { return plan_; }

    bool status(Reply<NetworkStatus> reply) override {
        host_only();
        return answer(std::move(reply), [&] { return status_; });
    }
    bool stats(Reply<NetworkStats> reply) override {
        host_only();
        return answer(std::move(reply), [&] { return stats_; });
    }
    bool forwards(Reply<std::vector<ForwardInfo>> reply) override {
        return answer(std::move(reply), [&] { return forwards_; });
    }
    bool add_forward(std::string spec, Reply<ForwardInfo> reply) override {
        return answer(std::move(reply), [&]() -> ApiResult<ForwardInfo> {
            std::string why;
            auto rule = portfwd::Rule::parse(spec, why);
            if (!rule) return tl::unexpected(ApiError{rule.error(), why});
            for (const auto& [id, r] : rules_)
                if (r.overlaps(*rule))
                    return tl::unexpected(
                        ApiError{Errc::conflict, "overlaps " + std::to_string(id)});
            ForwardInfo f;
            f.id = next_id_++;
            f.proto = std::string(portfwd::to_string(rule->proto));
            f.host = rule->host_text();
            f.guest = rule->guest_text();
            f.spec = rule->spec();
            rules_.emplace(f.id, *rule);
            forwards_.push_back(f);
            return f;
        });
    }
    bool remove_forward(std::uint32_t id, bool kill, Reply<void> reply) override {
        if (scope_ == ApiScope::guest) check(!kill);
        return answer(std::move(reply), [&]() -> ApiResult<void> {
            if (rules_.erase(id) == 0)
                return tl::unexpected(ApiError{Errc::not_found, "no such id"});
            std::erase_if(forwards_, [id](const ForwardInfo& f) { return f.id == id; });
            return {};
        });
    }
    bool find_forward(std::string proto, std::string host,
                      Reply<std::optional<std::uint32_t>> reply) override {
        return answer(std::move(reply), [&] {
            std::optional<std::uint32_t> found;
            const auto hp = portfwd::parse_host_port(host, false);
            for (const auto& [id, r] : rules_)
                if (hp && portfwd::to_string(r.proto) == proto && r.host == hp->addr &&
                    r.host_first == hp->port && r.host_last == hp->port)
                    found = id;
            return found;
        });
    }
    bool leases(Reply<std::vector<LeaseView>> reply) override {
        host_only();
        return answer(std::move(reply), [&] { return leases_; });
    }
    bool flows(FlowFilter filter, Reply<std::vector<FlowInfo>> reply) override {
        host_only();
        return answer(std::move(reply), [&] {
            std::vector<FlowInfo> out;
            for (const auto& f : flows_) {
                if (out.size() >= filter.limit) break;
                if (!filter.proto.empty() && f.proto != filter.proto) continue;
                out.push_back(f);
            }
            return out;
        });
    }
    bool dns_records(Reply<std::vector<DnsRecordView>> reply) override {
        host_only();
        return answer(std::move(reply), [&] {
            std::vector<DnsRecordView> out;
            for (const auto& [n, a] : dns_)
                out.push_back({n, a});
            return out;
        });
    }
    bool add_dns_records(std::vector<std::pair<std::string, Ipv4Addr>> records,
                         Reply<void> reply) override {
        host_only();
        check(!records.empty());
        return answer(std::move(reply), [&]() -> ApiResult<void> {
            for (const auto& [n, a] : records)
                dns_[n] = a.to_string();
            return {};
        });
    }
    bool remove_dns_record(std::string name, Reply<void> reply) override {
        host_only();
        return answer(std::move(reply), [&]() -> ApiResult<void> {
            if (dns_.erase(name) == 0)
                return tl::unexpected(ApiError{Errc::not_found, "no record"});
            return {};
        });
    }

    [[nodiscard]] std::size_t forwards_count() const { return forwards_.size(); }

    NetworkStats stats_;

  private:
    // Guests reach only gvproxy's forwarder routes.
    void host_only() const { check(scope_ == ApiScope::host); }

    std::pair<Outcome, ApiError> next() {
        if (script_.empty()) return {Outcome::ok, {}};
        const auto b = static_cast<std::uint8_t>(script_[pos_++ % script_.size()]);
        switch (b % 16) {
            case 8:
                return {Outcome::busy, {}};
            case 9:
                return {Outcome::fail, {Errc::invalid_argument, "bad \"arg\"\n\xff"}};
            case 10:
                return {Outcome::fail, {Errc::not_found, "not found"}};
            case 11:
                return {Outcome::fail, {Errc::conflict, "conflict"}};
            case 12:
                return {Outcome::fail, {Errc::io_error, "bind: Address in use"}};
            case 13:
                return {Outcome::fail, {Errc::unsupported, "DNS is off"}};
            case 14:
                return {Outcome::fail, {Errc::would_block, "would block"}};
            case 15:
                return {Outcome::fail, {Errc::io_error, ""}};
            default:
                return {Outcome::ok, {}};
        }
    }

    // Decides the call's outcome now (a busy call makes no change), runs `make` for a success and
    // posts the reply.
    template <class T, class Make>
    bool answer(Reply<T> reply, Make make) {
        auto [outcome, error] = next();
        if (outcome == Outcome::busy) return false;
        ApiResult<T> result =
            outcome == Outcome::fail ? ApiResult<T>(tl::unexpected(error)) : ApiResult<T>(make());
        asio::post(io_, [reply = std::move(reply), result = std::move(result)]() mutable {
            reply(std::move(result));
        });
        return true;
    }

    asio::io_context& io_;
    std::string_view script_;
    std::size_t pos_ = 0;
    ApiScope scope_;
    NetworkPlan plan_ = fake_plan();
    NetworkStatus status_;
    std::vector<ForwardInfo> forwards_;
    std::map<std::uint32_t, portfwd::Rule> rules_;
    std::uint32_t next_id_ = 1;
    std::vector<LeaseView> leases_;
    std::vector<FlowInfo> flows_;
    std::map<std::string, std::string> dns_;
};

// ---- the exposition checker --------------------------------------------------------------------

bool name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) {
    return name_start(c) || (c >= '0' && c <= '9');
}

// A metric name at the start of `s` (consumed); empty when there is none.
std::string_view take_name(std::string_view& s, bool colons = true) {
    std::size_t n = 0;
    while (n < s.size() && (n == 0 ? name_start(s[n]) : name_char(s[n])) && (colons || s[n] != ':'))
        ++n;
    const auto name = s.substr(0, n);
    s.remove_prefix(n);
    return name;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

struct Parsed {
    // family -> "counter" | "gauge"
    std::map<std::string, std::string> types;
    // (family, unescaped label value or "" without labels, has label) -> value
    std::map<std::pair<std::string, std::optional<std::string>>, std::uint64_t> samples;
};

// Checks `text` line by line against the text exposition format 0.0.4 (HELP, TYPE, samples with
// at most the one label slipway writes, each family's HELP, TYPE and samples together, no label
// set twice) and returns what it read; traps on the first violation. Label values and HELP texts
// are unescaped, and `utf8` demands they be valid UTF-8.
Parsed check_exposition(std::string_view text, bool utf8) {
    Parsed out;
    check(!text.empty() && text.back() == '\n');
    std::set<std::string> finished;
    std::string current;
    bool helped = false, typed = false;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
            const bool help = line[2] == 'H';
            line.remove_prefix(7);
            const std::string name(take_name(line));
            check(!name.empty() && line.starts_with(' '));
            line.remove_prefix(1);
            if (name != current) {
                check(finished.insert(name).second);  // a family appears once
                check(help);                          // HELP first
                current = name;
                helped = typed = false;
            }
            if (help) {
                check(!helped && !typed);
                helped = true;
                // HELP text: '\' only as "\\" or "\n".
                std::string unescaped;
                for (std::size_t i = 0; i < line.size(); ++i) {
                    if (line[i] == '\\') {
                        check(i + 1 < line.size() && (line[i + 1] == '\\' || line[i + 1] == 'n'));
                        unescaped += line[i + 1] == 'n' ? '\n' : '\\';
                        ++i;
                    } else {
                        unescaped += line[i];
                    }
                }
                if (utf8) check(valid_utf8(unescaped));
            } else {
                check(helped && !typed);
                typed = true;
                check(line == "counter" || line == "gauge");
                out.types[name] = std::string(line);
            }
            continue;
        }
        check(!line.starts_with('#'));
        const std::string name(take_name(line));
        check(!name.empty() && name == current && helped && typed);
        std::optional<std::string> label;
        if (line.starts_with('{')) {
            line.remove_prefix(1);
            check(!take_name(line, false).empty());
            check(line.starts_with("=\""));
            line.remove_prefix(2);
            std::string value;
            for (;;) {
                check(!line.empty());
                const char c = line.front();
                line.remove_prefix(1);
                if (c == '"') break;
                if (c == '\\') {
                    check(!line.empty());
                    const char e = line.front();
                    line.remove_prefix(1);
                    check(e == '\\' || e == '"' || e == 'n');
                    value += e == 'n' ? '\n' : e;
                } else {
                    value += c;
                }
            }
            check(line.starts_with('}'));
            line.remove_prefix(1);
            if (utf8) check(valid_utf8(value));
            label = std::move(value);
        }
        check(line.starts_with(' '));
        line.remove_prefix(1);
        check(!line.empty() && line.size() <= 20);
        std::uint64_t v = 0;
        for (const char c : line) {
            check(c >= '0' && c <= '9');
            v = v * 10 + static_cast<std::uint64_t>(c - '0');
        }
        check(out.samples.emplace(std::make_pair(name, std::move(label)), v).second);
    }
    return out;
}

// The families, types and samples metrics_text should write for `stats`, by its documented
// rules (first counter of a name wins, one label set per family).
Parsed expected_exposition(const NetworkStats& stats, std::size_t forwards) {
    Parsed e;
    const auto add = [&](const std::string& family, bool gauge, std::optional<std::string> label,
                         std::uint64_t v) {
        e.types.try_emplace(family, gauge ? "gauge" : "counter");
        e.samples.try_emplace(std::make_pair(family, std::move(label)), v);
    };
    add("slipway_up", true, std::nullopt, 1);
    add("slipway_forwards", true, std::nullopt, forwards);
    for (const auto& c : stats.switch_counters)
        add(metric_name("switch", c.name), is_gauge(c.name), std::nullopt, c.value);
    for (const auto& p : stats.ports)
        for (const auto& c : p.counters)
            add(metric_name("port", c.name), is_gauge(c.name), p.name, c.value);
    for (const auto& c : stats.gateway_counters)
        add(metric_name("gateway", c.name), is_gauge(c.name), std::nullopt, c.value);
    for (const auto& c : stats.pool)
        add(metric_name("pool", c.name), is_gauge(c.name), std::nullopt, c.value);
    return e;
}

bool utf8_names(const NetworkStats& s) {
    const auto counters_ok = [](const std::vector<CounterValue>& cs) {
        for (const auto& c : cs)
            if (!valid_utf8(c.name)) return false;
        return true;
    };
    for (const auto& p : s.ports)
        if (!valid_utf8(p.name) || !counters_ok(p.counters)) return false;
    return counters_ok(s.switch_counters) && counters_ok(s.gateway_counters) && counters_ok(s.pool);
}

void check_metrics(const NetworkStats& stats, std::size_t forwards, const std::string& text) {
    const Parsed got = check_exposition(text, utf8_names(stats));
    const Parsed want = expected_exposition(stats, forwards);
    check(got.types == want.types);
    check(got.samples == want.samples);
}

// ---- one request through the routes ------------------------------------------------------------

bool is_v1_path(std::string_view path) {
    return path == "/v1" || path.starts_with("/v1/") || path == "/metrics" ||
           path.starts_with("/metrics/");
}

std::optional<nlohmann::json> parse_json(const std::string& body) {
    auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return std::nullopt;
    return doc;
}

struct Conn {
    asio::io_context& io;
    std::shared_ptr<ApiRoutes> routes;
    FuzzBackend& backend;
    ApiScope scope;
    std::optional<Ipv4Addr> peer;
};

void serve(Conn& c, std::string method, std::string target, std::string body) {
    ApiRequest req;
    req.method = std::move(method);
    req.target = std::move(target);
    req.body = std::move(body);
    req.scope = c.scope;
    req.peer = c.peer;
    auto responses = std::make_shared<std::vector<ApiResponse>>();
    c.routes->handle(req, [responses](ApiResponse r) { responses->push_back(std::move(r)); });
    c.io.restart();
    c.io.run();  // every backend reply was posted: this returns once they have all run

    check(responses->size() == 1);
    const ApiResponse& r = responses->front();
    check(r.status >= 200 && r.status <= 599);
    if (r.status == 405) check(!r.allow.empty());
    const std::string path = req.target.substr(0, req.target.find('?'));
    const bool ok = r.status >= 200 && r.status < 300;
    if (c.scope == ApiScope::guest) {
        check(!ok || path == "/services/forwarder/all" || path == "/services/forwarder/expose" ||
              path == "/services/forwarder/unexpose");
    }
    if (r.content_type == "application/json") check(parse_json(r.body).has_value());
    if (c.scope == ApiScope::host && is_v1_path(path) && r.status >= 400) {
        const auto doc = parse_json(r.body);
        check(doc && doc->is_object());
        const auto it = doc->find("error");
        check(it != doc->end() && it->is_string());
    }
    if (!is_v1_path(path) && ok && !r.body.empty()) check(parse_json(r.body).has_value());
    if (path == "/metrics" && r.status == 200)
        check_metrics(c.backend.stats_, c.backend.forwards_count(), r.body);
}

// ---- the two modes -----------------------------------------------------------------------------

// Records of [kind][name length][name][value] build the stats.
NetworkStats stats_from(std::string_view in) {
    NetworkStats s;
    while (in.size() >= 2) {
        const auto kind = static_cast<std::uint8_t>(in[0]);
        const std::size_t len =
            std::min<std::size_t>(static_cast<std::uint8_t>(in[1]) % 64, in.size() - 2);
        std::string name(in.substr(2, len));
        in.remove_prefix(2 + len);
        std::uint64_t value = 0;
        if (!in.empty()) {
            const auto v = static_cast<std::uint8_t>(in[0]);
            value = v == 0xff ? UINT64_MAX : std::uint64_t{v} * 1000003u;
            in.remove_prefix(1);
        }
        switch (kind % 5) {
            case 0:
                s.switch_counters.push_back({std::move(name), value});
                break;
            case 1:
                s.ports.push_back({std::move(name), "guest", "", "connected", {}});
                break;
            case 2:
                if (s.ports.empty()) s.ports.push_back({"qemu0", "guest", "", "up", {}});
                s.ports.back().counters.push_back({std::move(name), value});
                break;
            case 3:
                s.gateway_counters.push_back({std::move(name), value});
                break;
            default:
                s.pool.push_back({std::move(name), value});
                break;
        }
    }
    return s;
}

void metrics_mode(std::string_view script, std::string_view rest) {
    const NetworkStats stats = stats_from(rest);
    const std::size_t forwards = script.size() > 1 ? static_cast<std::uint8_t>(script[1]) : 0;
    check_metrics(stats, forwards, metrics_text(stats, forwards));

    // The same stats through the routes (render_json too); the backend always succeeds.
    asio::io_context io;
    FuzzBackend backend(io, {}, ApiScope::host);
    backend.stats_ = stats;
    Conn c{io, std::make_shared<ApiRoutes>(backend), backend, ApiScope::host, std::nullopt};
    for (const char* target : {"/metrics", "/v1/stats", "/stats"})
        serve(c, "GET", target, "");
}

void http_mode(std::string_view script, std::string_view stream) {
    const auto flags = static_cast<std::uint8_t>(script.empty() ? 0 : script[0]);
    const ApiScope scope = (flags & 1) != 0 ? ApiScope::guest : ApiScope::host;
    std::optional<Ipv4Addr> peer;
    if ((flags & 2) != 0)
        peer = (flags & 4) != 0 ? Ipv4Addr{} : Ipv4Addr::from_octets(192, 168, 127, 2);
    asio::io_context io;
    FuzzBackend backend(io, script.empty() ? script : script.substr(1), scope);
    Conn c{io, std::make_shared<ApiRoutes>(backend), backend, scope, peer};

    // As ApiServer's session reads: one request at a time until the stream ends, a request fails
    // to parse (413 or 400, then close) or one does not keep the connection alive.
    for (std::size_t n = 0; n < kMaxRequests && !stream.empty(); ++n) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(kMaxRequestHeader));
        parser.body_limit(kMaxRequestBody);
        parser.eager(true);
        beast::error_code ec;
        while (!parser.is_done()) {
            const std::size_t used = parser.put(asio::buffer(stream.data(), stream.size()), ec);
            stream.remove_prefix(used);
            if (ec == http::error::need_more) {
                if (used == 0) return;  // a partial request at the end: the session closes
                ec = {};
                continue;
            }
            if (ec) break;
            if (used == 0 && !parser.is_done()) return;
        }
        if (ec) {
            // The session answers these itself (413, 400) and closes; the routes never see them.
            return;
        }
        auto& req = parser.get();
        const bool keep_alive = req.keep_alive();
        const auto m = req.method_string();
        const auto t = req.target();
        serve(c, std::string(m.data(), m.size()), std::string(t.data(), t.size()),
              std::move(req.body()));
        if (!keep_alive) return;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > kMaxRequestHeader + kMaxRequestBody + 1024) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const auto nl = in.substr(0, kMaxScript + 1).find('\n');
    if (nl == std::string_view::npos) return 0;
    const std::string_view script = in.substr(0, nl);
    const std::string_view rest = in.substr(nl + 1);
    if (!script.empty() && script[0] == 'm') {
        metrics_mode(script, rest);
    } else {
        http_mode(script, rest);
    }
    return 0;
}
