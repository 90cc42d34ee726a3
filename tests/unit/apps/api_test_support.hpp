// Shared by the HTTP API tests: a fake ApiBackend with a small network's worth of state, a raw
// HTTP/1.1 client over a unix socket, and a checker for the Prometheus text format.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "slipway/portfwd/rule.hpp"
#include "slipwayd/api_backend.hpp"

namespace slipway::apps::test {

// The network a fake backend pretends to be: gvproxy's default addresses, so gvproxy's expected
// documents apply unchanged.
inline NetworkPlan fake_plan() {
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

// Answers from plain members, one asio::post later (as a reply from the network thread comes a
// loop turn later). Touch its members only on the io thread (FakeBackendTest::on_io) or while the
// io thread does not run.
class FakeBackend : public ApiBackend {
  public:
    explicit FakeBackend(boost::asio::io_context& io) : io_(io) {
        status_.version = "0.1.0-test";
        status_.plan = plan_;
        status_.uptime = std::chrono::seconds(42);
        status_.ready = true;
        status_.ports.push_back({"gateway", "gateway", "", "up", {}});
        status_.ports.push_back({"qemu0", "guest", "qemu:/tmp/x.sock", "listening", {}});
        stats_.switch_counters = {{"frames", 10}, {"drop_no_dest", 0}};
        stats_.ports.push_back({"gateway", "gateway", "", "up", {{"rx_bytes", 100}}});
        stats_.ports.push_back({"qemu0",
                                "guest",
                                "qemu:/tmp/x.sock",
                                "connected",
                                {{"rx_bytes", 700}, {"tx_bytes", 900}, {"drop_src_mac", 3}}});
        stats_.gateway_counters = {{"tcp_flows", 2},
                                   {"tcp_flows_established", 1},
                                   {"udp_flows_opened", 5},
                                   {"tcp_syn_received", 4},
                                   {"dns_cache_entries", 7}};
        stats_.pool = {{"small_capacity", 4096}, {"small_free_global", 4000}, {"exhausted", 0}};
        leases_.push_back({"5a:94:ef:e4:0c:ee", "192.168.127.2", "vm1", 1700000000, false, true});
        flows_.push_back(
            {"tcp", "out", "192.168.127.2:40000", "203.0.113.5:443", "established", 0});
        flows_.push_back({"udp", "out", "192.168.127.2:40001", "203.0.113.5:53", "open", 0});
        flows_.push_back({"tcp", "in", "192.168.127.3:80", "127.0.0.1:5000", "established", 1});
    }

    [[nodiscard]] const NetworkPlan& plan() const override { return plan_; }

    bool status(Reply<NetworkStatus> reply) override { return later(std::move(reply), status_); }
    bool stats(Reply<NetworkStats> reply) override { return later(std::move(reply), stats_); }
    bool forwards(Reply<std::vector<ForwardInfo>> reply) override {
        return later(std::move(reply), forwards_);
    }

    bool add_forward(std::string spec, Reply<ForwardInfo> reply) override {
        ++calls;
        std::string why;
        auto rule = portfwd::Rule::parse(spec, why);
        if (!rule) return later_error<ForwardInfo>(std::move(reply), rule.error(), why);
        if (forward_error) {
            auto e = *forward_error;
            return later_error<ForwardInfo>(std::move(reply), e.code, e.message);
        }
        for (const auto& [id, r] : rules_) {
            if (r.overlaps(*rule))
                return later_error<ForwardInfo>(std::move(reply), Errc::conflict,
                                                spec + " overlaps forward " + std::to_string(id));
        }
        ForwardInfo f;
        f.id = next_id_++;
        f.proto = std::string(portfwd::to_string(rule->proto));
        f.host = rule->host_text();
        f.guest = rule->guest_text();
        f.spec = rule->spec();
        rules_.emplace(f.id, *rule);
        forwards_.push_back(f);
        return later(std::move(reply), f);
    }

    bool remove_forward(std::uint32_t id, bool kill, Reply<void> reply) override {
        ++calls;
        if (rules_.erase(id) == 0)
            return later_error<void>(std::move(reply), Errc::not_found,
                                     "no forward with id " + std::to_string(id));
        std::erase_if(forwards_, [id](const ForwardInfo& f) { return f.id == id; });
        last_kill = kill;
        return later_void(std::move(reply));
    }

    bool find_forward(std::string proto, std::string host,
                      Reply<std::optional<std::uint32_t>> reply) override {
        std::optional<std::uint32_t> found;
        const auto hp = portfwd::parse_host_port(host, false);
        for (const auto& [id, r] : rules_) {
            if (hp && portfwd::to_string(r.proto) == proto && r.host == hp->addr &&
                r.host_first == hp->port && r.host_last == hp->port)
                found = id;
        }
        return later(std::move(reply), found);
    }

    bool leases(Reply<std::vector<LeaseView>> reply) override {
        return later(std::move(reply), leases_);
    }

    bool flows(FlowFilter filter, Reply<std::vector<FlowInfo>> reply) override {
        last_filter = filter;
        std::vector<FlowInfo> out;
        for (const auto& f : flows_) {
            if (out.size() >= filter.limit) break;
            if (!filter.proto.empty() && f.proto != filter.proto) continue;
            if (filter.guest && f.guest.rfind(filter.guest->to_string() + ":", 0) != 0) continue;
            out.push_back(f);
        }
        return later(std::move(reply), out);
    }

    bool dns_records(Reply<std::vector<DnsRecordView>> reply) override {
        std::vector<DnsRecordView> out;
        for (const auto& [n, a] : dns_)
            out.push_back({n, a});
        return later(std::move(reply), out);
    }

    bool add_dns_records(std::vector<std::pair<std::string, Ipv4Addr>> records,
                         Reply<void> reply) override {
        ++calls;
        if (dns_off)
            return later_error<void>(std::move(reply), Errc::unsupported, "DNS is off (--no-dns)");
        for (const auto& [n, a] : records)
            dns_[n] = a.to_string();
        return later_void(std::move(reply));
    }

    bool remove_dns_record(std::string name, Reply<void> reply) override {
        ++calls;
        if (dns_.erase(name) == 0)
            return later_error<void>(std::move(reply), Errc::not_found, "no DNS record " + name);
        return later_void(std::move(reply));
    }

    // State the tests set up and look at.
    bool busy = false;
    bool dns_off = false;
    std::optional<ApiError> forward_error;  // the next add_forward fails so (after parsing)
    int calls = 0;                          // mutating calls made
    std::optional<bool> last_kill;
    std::optional<FlowFilter> last_filter;
    NetworkPlan plan_ = fake_plan();
    NetworkStatus status_;
    NetworkStats stats_;
    std::vector<ForwardInfo> forwards_;
    std::map<std::uint32_t, portfwd::Rule> rules_;
    std::vector<LeaseView> leases_;
    std::vector<FlowInfo> flows_;
    std::map<std::string, std::string> dns_ = {{"gateway.containers.internal", "192.168.127.1"},
                                               {"host.containers.internal", "192.168.127.254"},
                                               {"gateway.docker.internal", "192.168.127.1"},
                                               {"host.docker.internal", "192.168.127.254"}};

  private:
    template <class T, class V>
    bool later(Reply<T> reply, V value) {
        if (busy) return false;
        boost::asio::post(io_, [reply = std::move(reply), value = std::move(value)]() mutable {
            reply(ApiResult<T>(std::move(value)));
        });
        return true;
    }
    bool later_void(Reply<void> reply) {
        if (busy) return false;
        boost::asio::post(io_, [reply = std::move(reply)] { reply(ApiResult<void>()); });
        return true;
    }
    template <class T>
    bool later_error(Reply<T> reply, Errc code, std::string message) {
        if (busy) return false;
        boost::asio::post(io_, [reply = std::move(reply), code, message = std::move(message)] {
            reply(tl::unexpected(ApiError{code, message}));
        });
        return true;
    }

    boost::asio::io_context& io_;
    std::uint32_t next_id_ = 1;
};

// One HTTP exchange as the bytes came back.
struct RawReply {
    std::string raw;
    unsigned status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;

    [[nodiscard]] bool has(const std::string& name) const { return headers.count(name) != 0; }
    [[nodiscard]] std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

// Splits a response (one, Content-Length framed) into status, headers and body.
inline RawReply parse_reply(std::string raw) {
    RawReply r;
    r.raw = std::move(raw);
    const auto end = r.raw.find("\r\n\r\n");
    if (end == std::string::npos || r.raw.rfind("HTTP/1.", 0) != 0) return r;
    r.status = static_cast<unsigned>(std::stoul(r.raw.substr(9, 3)));
    std::istringstream lines(r.raw.substr(0, end));
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (auto& c : name)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        r.headers[name] = value;
    }
    r.body = r.raw.substr(end + 4);
    return r;
}

// Writes `bytes` to a connected stream socket and reads until EOF (or 5 s).
inline std::string exchange_fd(int fd, const std::string& bytes, bool half_close = true) {
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
    return out;
}

inline int connect_unix(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// "METHOD TARGET HTTP/1.1" with a body (Content-Length) and Connection: close.
inline std::string request_bytes(const std::string& method, const std::string& target,
                                 const std::string& body = "", const std::string& extra = "") {
    std::string r = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra;
    if (!body.empty() || method == "POST" || method == "PUT")
        r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return r + "\r\n" + body;
}

// Checks `text` against the Prometheus text format 0.0.4 as far as a scraper relies on it:
// every sample line is `name{label="value",...} value`; each family has exactly one HELP and one
// TYPE line (counter or gauge), before its samples, and its samples together; no sample repeats
// a label set. Returns "" when it holds, else what is wrong. `types` gets each family's type.
inline std::string check_prometheus(const std::string& text,
                                    std::map<std::string, std::string>* types = nullptr) {
    static const std::regex sample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")*\})? ([0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)$)");
    static const std::regex meta(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)( (.*))?$)");
    std::set<std::string> helped, typed, finished, seen_samples;
    std::string current;
    std::istringstream in(text);
    std::string line;
    if (text.empty() || text.back() != '\n') return "the text does not end with a newline";
    while (std::getline(in, line)) {
        std::smatch m;
        if (line.rfind("#", 0) == 0) {
            if (!std::regex_match(line, m, meta)) return "bad comment line: " + line;
            const std::string name = m[2];
            if (name != current) {
                if (!current.empty()) finished.insert(current);
                if (finished.count(name) != 0) return "family split: " + name;
                current = name;
            }
            auto& set = m[1] == "HELP" ? helped : typed;
            if (!set.insert(name).second) return "second " + std::string(m[1]) + " for " + name;
            if (m[1] == "TYPE") {
                const std::string type = m[4];
                if (type != "counter" && type != "gauge") return "bad type: " + line;
                if (types != nullptr) (*types)[name] = type;
            }
            continue;
        }
        if (!std::regex_match(line, m, sample)) return "bad sample line: " + line;
        const std::string name = m[1];
        if (name != current) return "sample outside its family: " + line;
        if (typed.count(name) == 0 || helped.count(name) == 0)
            return "sample before HELP/TYPE: " + line;
        if (!seen_samples.insert(name + std::string(m[2])).second)
            return "repeated sample: " + line;
    }
    if (helped != typed) return "HELP and TYPE lines do not pair up";
    return "";
}

}  // namespace slipway::apps::test
