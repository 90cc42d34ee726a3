// The HTTP API's routes.
//
// Two families share one socket:
//   - slipway's own API under /v1/ (and /metrics): JSON documents in, JSON documents out (each
//     ending in a newline), errors as {"error": "one line"}, 404 naming an unknown path, 405 with
//     Allow for a method a path does not take, query strings checked (an unknown parameter or a
//     bad value is a 400 naming it).
//   - gvproxy's API (containers/gvisor-tap-vsock, pkg/services/... and pkg/virtualnetwork/...):
//     the same paths, request bodies and status codes, so podman and gvproxy's own client work
//     unchanged. That means Go's net/http habits: errors are plain text plus a newline, a mutating
//     path takes only POST (anything else is 400 "post only", not 405), read paths take any
//     method, JSON keys match case-insensitively and trailing bytes after the first JSON value are
//     ignored (json.Decoder), an empty body is 400 "EOF", and an expose or unexpose that fails
//     past decoding is a 500.
//
// Every route that needs the network makes one or more ApiBackend calls; each reply comes back on
// the API thread and answers the request. A backend that is busy (the command ring to the network
// thread is full) is a 503 right away.
//
// HTTP statuses for backend errors, in one place (status_for):
//   Errc::invalid_argument -> 400, not_found -> 404, conflict -> 409, io_error -> 500 (a bind the
//   kernel refused, with its reason), unsupported -> 501 (a feature not built into this slipway),
//   except on the DNS routes where unsupported means "DNS is off (--no-dns)": 400, as the issue 7
//   spec wants. gvproxy's expose and unexpose answer every failure past decoding with 500, as
//   gvproxy does; its dns/add answers a refused zone with 400 (newest gvproxy's handlers.go).
#include "slipwayd/api_routes.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "slipway/dns/message.hpp"
#include "slipway/portfwd/rule.hpp"
#include "slipwayd/api_metrics.hpp"
#include "slipwayd/render_json.hpp"

#ifndef SLIPWAY_VERSION
#define SLIPWAY_VERSION "unknown"
#endif

namespace slipway::apps {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr int kApiVersion = 1;
constexpr std::string_view kGoText = "text/plain; charset=utf-8";

// ---- answers ---------------------------------------------------------------------------------

template <class Json>
ApiResponse json_reply(unsigned status, const Json& doc) {
    ApiResponse r;
    r.status = status;
    r.content_type = "application/json";
    // replace, not throw, on invalid UTF-8 in a name: a reply beats a dropped connection.
    r.body = doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    return r;
}

ApiResponse json_error(unsigned status, const std::string& message) {
    return json_reply(status, json{{"error", message}});
}

ApiResponse not_allowed(std::string_view method, std::string_view allow) {
    ApiResponse r = json_error(
        405, "method " + std::string(method) + " not allowed, use " + std::string(allow));
    r.allow = std::string(allow);
    return r;
}

ApiResponse busy_v1() {
    return json_error(503, "busy");
}

// http.Error(w, msg, code): text/plain, nosniff, the message and a newline.
ApiResponse go_error(unsigned status, const std::string& message) {
    ApiResponse r;
    r.status = status;
    r.content_type = std::string(kGoText);
    r.nosniff = true;
    r.body = message + "\n";
    return r;
}

// json.NewEncoder(w).Encode(x) with no Content-Type set: compact JSON and a newline, which Go's
// content sniffing labels text/plain.
ApiResponse go_json(const ordered_json& doc) {
    ApiResponse r;
    r.content_type = std::string(kGoText);
    r.body = doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    return r;
}

// w.WriteHeader(http.StatusOK) alone: no Content-Type, an empty body.
ApiResponse go_ok() {
    return ApiResponse{};
}

ApiResponse go_not_found() {
    return go_error(404, "404 page not found");
}

unsigned status_for(Errc code, bool dns_route = false) {
    switch (code) {
        case Errc::invalid_argument:
            return 400;
        case Errc::not_found:
            return 404;
        case Errc::conflict:
            return 409;
        case Errc::unsupported:
            return dns_route ? 400 : 501;
        default:
            return 500;
    }
}

ApiResponse v1_failure(const ApiError& e, bool dns_route = false) {
    return json_error(status_for(e.code, dns_route),
                      e.message.empty() ? std::string(to_string(e.code)) : e.message);
}

// ---- targets and query strings ---------------------------------------------------------------

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %XX escapes (and '+' as a space in a query string); false on a malformed escape.
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            const int hi = hex_value(in[i + 1]);
            const int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return true;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

bool method_in(std::string_view method, std::initializer_list<std::string_view> methods) {
    return std::find(methods.begin(), methods.end(), method) != methods.end();
}

// ---- gvproxy's JSON decoding (Go's encoding/json, as far as its clients can tell) ------------

std::string go_kind(const json& v) {
    if (v.is_string()) return "string";
    if (v.is_number()) return "number";
    if (v.is_boolean()) return "bool";
    if (v.is_array()) return "array";
    return "object";
}

// json.NewDecoder(body).Decode(&v) for a struct v: the first JSON value (trailing bytes are never
// read), an object or null (which leaves v as it was). `go_type` names v in the error.
ApiResult<json> go_decode(std::string_view body, std::string_view go_type) {
    const auto first = body.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos)
        return tl::unexpected(ApiError{Errc::invalid_argument, "EOF"});
    json doc;
    try {
        // operator>> parses one value and stops there, as Go's Decoder does.
        std::istringstream in{std::string(body)};
        in >> doc;
    } catch (const json::exception& e) {
        return tl::unexpected(ApiError{Errc::invalid_argument, e.what()});
    }
    if (doc.is_null()) return json::object();
    if (!doc.is_object()) {
        return tl::unexpected(
            ApiError{Errc::invalid_argument, "json: cannot unmarshal " + go_kind(doc) +
                                                 " into Go value of type " + std::string(go_type)});
    }
    return doc;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// A struct field as Go finds it: the key spelled exactly, else any spelling that differs only in
// case. nullptr when absent or null (Go leaves the field at its zero value).
const json* go_field(const json& obj, std::string_view key) {
    const json* found = nullptr;
    if (auto it = obj.find(key); it != obj.end()) {
        found = &*it;
    } else {
        for (auto i = obj.begin(); i != obj.end(); ++i) {
            if (iequals(i.key(), key)) {
                found = &*i;
                break;
            }
        }
    }
    return found != nullptr && !found->is_null() ? found : nullptr;
}

// A string field of `go_struct` ("ExposeRequest"); "" when absent.
ApiResult<std::string> go_string(const json& obj, std::string_view key,
                                 std::string_view go_struct) {
    const json* v = go_field(obj, key);
    if (v == nullptr) return std::string();
    if (!v->is_string()) {
        return tl::unexpected(
            ApiError{Errc::invalid_argument, "json: cannot unmarshal " + go_kind(*v) +
                                                 " into Go struct field " + std::string(go_struct) +
                                                 "." + std::string(key) + " of type string"});
    }
    return v->get<std::string>();
}

// net.SplitHostPort, with Go's error texts ("address 8080: missing port in address").
bool go_split_host_port(std::string_view hostport, std::string& host, std::string& port,
                        std::string& error) {
    const auto fail_with = [&](std::string_view why) {
        error = "address " + std::string(hostport) + ": " + std::string(why);
        return false;
    };
    const auto colon = hostport.rfind(':');
    if (colon == std::string_view::npos) return fail_with("missing port in address");
    std::string_view h;
    if (!hostport.empty() && hostport[0] == '[') {
        const auto end = hostport.find(']');
        if (end == std::string_view::npos) return fail_with("missing ']' in address");
        if (end + 1 == hostport.size()) return fail_with("missing port in address");
        if (end + 1 != colon) {
            return fail_with(hostport[end + 1] == ':' ? "too many colons in address"
                                                      : "missing port in address");
        }
        h = hostport.substr(1, end - 1);
    } else {
        h = hostport.substr(0, colon);
        if (h.find(':') != std::string_view::npos) return fail_with("too many colons in address");
    }
    host = std::string(h);
    port = std::string(hostport.substr(colon + 1));
    return true;
}

// strconv.ParseUint(text, 10, 16) with Go's error texts.
bool go_parse_port(std::string_view text, std::uint16_t& port, std::string& error) {
    const std::string prefix = "strconv.ParseUint: parsing \"" + std::string(text) + "\": ";
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
        error = prefix + "invalid syntax";
        return false;
    }
    unsigned long long v = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || v > 65535) {
        error = prefix + "value out of range";
        return false;
    }
    port = static_cast<std::uint16_t>(v);
    return true;
}

// gvproxy's "local": a Go listen address, host:port with the host optional (":8080" is every
// address). slipway binds IPv4 or bracketed IPv6 literals; the canonical host text is what
// ForwardInfo::host and find_forward use. nullopt (with gvproxy's wording in `error`) otherwise.
std::optional<std::string> canonical_local(std::string_view proto, std::string_view local,
                                           std::string& error) {
    if (local.find(':') == std::string_view::npos) {
        error = "listen " + std::string(proto) + ": address " + std::string(local) +
                ": missing port in address";
        return std::nullopt;
    }
    const auto hp = portfwd::parse_host_port(local, /*empty_is_any=*/true);
    if (!hp) {
        error = "listen " + std::string(proto) + " " + std::string(local) +
                ": slipway binds IPv4 or [IPv6] address literals with a port (e.g. "
                "127.0.0.1:8080, [::1]:8080, :8080)";
        return std::nullopt;
    }
    return hp->addr.to_string() + ":" + std::to_string(hp->port);
}

bool is_forward_proto(std::string_view p) {
    return p == "tcp" || p == "udp";
}

}  // namespace

// ---- routing ---------------------------------------------------------------------------------

struct ApiRoutes::Target {
    std::string path;   // percent-escapes left as sent (only path parameters are decoded)
    std::string query;  // after '?', raw
    std::map<std::string, std::string, std::less<>> params;
    bool params_ok = true;
};

void ApiRoutes::handle(const ApiRequest& req, const Responder& respond) {
    Target t;
    const auto q = req.target.find('?');
    t.path = req.target.substr(0, q);
    if (q != std::string::npos) {
        t.query = req.target.substr(q + 1);
        std::string_view rest = t.query;
        while (!rest.empty()) {
            const auto amp = rest.find('&');
            const std::string_view pair = rest.substr(0, amp);
            rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
            if (pair.empty()) continue;
            const auto eq = pair.find('=');
            std::string key, value;
            if (!percent_decode(pair.substr(0, eq), true, key) ||
                (eq != std::string_view::npos &&
                 !percent_decode(pair.substr(eq + 1), true, value))) {
                t.params_ok = false;
                break;
            }
            t.params[key] = value;  // a repeated parameter: the last one counts
        }
    }

    if (req.scope == ApiScope::guest) {
        // gvproxy's gateway listener (cmd/gvproxy/main.go) mounts exactly these three paths.
        if (t.path == "/services/forwarder/all" || t.path == "/services/forwarder/expose" ||
            t.path == "/services/forwarder/unexpose") {
            route_gvproxy(req, t, respond);
        } else {
            respond(go_not_found());
        }
        return;
    }
    if (t.path == "/v1" || starts_with(t.path, "/v1/") || t.path == "/metrics" ||
        starts_with(t.path, "/metrics/")) {
        route_v1(req, t, respond);
        return;
    }
    if (starts_with(t.path, "/services/") || t.path == "/leases" || t.path == "/stats" ||
        t.path == "/cam" || t.path == "/tunnel" || t.path == "/connect") {
        route_gvproxy(req, t, respond);
        return;
    }
    respond(json_error(404, "no such endpoint: " + t.path +
                                " (slipway serves /v1/..., /metrics and gvproxy's /services/...)"));
}

void ApiRoutes::route_v1(const ApiRequest& req, const Target& t, const Responder& respond) {
    const std::string& path = t.path;
    // HEAD is answered as GET; the session sends the headers only.
    const std::string_view m = req.method == "HEAD" ? std::string_view("GET") : req.method;
    // Checks the method and the query string's parameter names; answers and returns false when
    // either is wrong.
    const auto accept = [&](std::string_view allow, std::initializer_list<std::string_view> methods,
                            std::initializer_list<std::string_view> params = {}) {
        if (!method_in(m, methods)) {
            respond(not_allowed(req.method, allow));
            return false;
        }
        if (!t.params_ok) {
            respond(json_error(400, "malformed query string: " + t.query));
            return false;
        }
        for (const auto& [key, value] : t.params) {
            if (std::find(params.begin(), params.end(), key) == params.end()) {
                respond(json_error(400, "unknown query parameter \"" + key + "\" for " + path));
                return false;
            }
        }
        return true;
    };

    if (path == "/v1/version") {
        if (!accept("GET", {"GET"})) return;
        respond(json_reply(200, ordered_json{{"version", SLIPWAY_VERSION}, {"api", kApiVersion}}));
    } else if (path == "/v1/status") {
        if (accept("GET", {"GET"})) v1_status(respond);
    } else if (path == "/v1/stats") {
        if (!accept("GET", {"GET"})) return;
        if (!backend_.stats([respond](ApiResult<NetworkStats> r) {
                respond(r ? json_reply(200, stats_to_json(*r)) : v1_failure(r.error()));
            }))
            respond(busy_v1());
    } else if (path == "/v1/ports") {
        if (!accept("GET", {"GET"})) return;
        if (!backend_.status([respond](ApiResult<NetworkStatus> r) {
                respond(r ? json_reply(200, ports_to_json(*r)) : v1_failure(r.error()));
            }))
            respond(busy_v1());
    } else if (path == "/v1/forwards") {
        if (!accept("GET, POST", {"GET", "POST"})) return;
        if (m == "POST") {
            v1_add_forward(req, respond);
            return;
        }
        if (!backend_.forwards([respond](ApiResult<std::vector<ForwardInfo>> r) {
                respond(r ? json_reply(200, forwards_to_json(*r)) : v1_failure(r.error()));
            }))
            respond(busy_v1());
    } else if (starts_with(path, "/v1/forwards/") && path.size() > 13 &&
               path.find('/', 13) == std::string::npos) {
        if (accept("DELETE", {"DELETE"}, {"kill"}))
            v1_remove_forward(t, std::string_view(path).substr(13), respond);
    } else if (path == "/v1/leases") {
        if (!accept("GET", {"GET"})) return;
        if (!backend_.leases([respond](ApiResult<std::vector<LeaseView>> r) {
                respond(r ? json_reply(200, leases_to_json(*r)) : v1_failure(r.error()));
            }))
            respond(busy_v1());
    } else if (path == "/v1/flows") {
        if (accept("GET", {"GET"}, {"proto", "guest", "limit"})) v1_flows(t, respond);
    } else if (path == "/v1/dns") {
        if (!accept("GET, POST", {"GET", "POST"})) return;
        if (m == "POST") {
            v1_add_dns(req, respond);
            return;
        }
        if (!backend_.dns_records([respond](ApiResult<std::vector<DnsRecordView>> r) {
                respond(r ? json_reply(200, dns_records_to_json(*r)) : v1_failure(r.error(), true));
            }))
            respond(busy_v1());
    } else if (starts_with(path, "/v1/dns/") && path.size() > 8 &&
               path.find('/', 8) == std::string::npos) {
        if (!accept("DELETE", {"DELETE"})) return;
        std::string name;
        if (!percent_decode(std::string_view(path).substr(8), false, name)) {
            respond(json_error(400, "malformed %-escape in the DNS name: " + path.substr(8)));
            return;
        }
        if (!backend_.remove_dns_record(name, [respond, name](ApiResult<void> r) {
                respond(r ? json_reply(200, ordered_json{{"deleted", name}})
                          : v1_failure(r.error(), true));
            }))
            respond(busy_v1());
    } else if (path == "/metrics") {
        if (accept("GET", {"GET"})) metrics(respond);
    } else {
        respond(json_error(404, "no such endpoint: " + path));
    }
}

void ApiRoutes::v1_status(const Responder& respond) {
    auto self = shared_from_this();
    const bool queued = backend_.status([self, respond](ApiResult<NetworkStatus> st) {
        if (!st) {
            respond(v1_failure(st.error()));
            return;
        }
        // Two commands, so the forward count may be a moment younger than the status; both
        // are snapshots anyway.
        auto doc = std::make_shared<json>(status_to_json(*st));
        if (!self->backend_.forwards([doc, respond](ApiResult<std::vector<ForwardInfo>> fw) {
                if (!fw) {
                    respond(v1_failure(fw.error()));
                    return;
                }
                (*doc)["forwards"] = fw->size();
                respond(json_reply(200, *doc));
            }))
            respond(busy_v1());
    });
    if (!queued) respond(busy_v1());
}

void ApiRoutes::v1_add_forward(const ApiRequest& req, const Responder& respond) {
    json body;
    try {
        body = json::parse(req.body);
    } catch (const json::exception& e) {
        respond(json_error(400, std::string("bad JSON: ") + e.what()));
        return;
    }
    if (!body.is_object()) {
        respond(json_error(400,
                           "the body must be a JSON object with \"spec\", or \"host\" and "
                           "\"guest\" (and \"proto\")"));
        return;
    }
    // Each field either absent or a string.
    std::map<std::string, std::string, std::less<>> fields;
    for (const std::string_view key : {"spec", "proto", "host", "guest"}) {
        const auto it = body.find(key);
        if (it == body.end()) continue;
        if (!it->is_string()) {
            respond(json_error(400, "field \"" + std::string(key) + "\" must be a string"));
            return;
        }
        fields[std::string(key)] = it->get<std::string>();
    }
    std::string spec;
    if (fields.count("spec") != 0) {
        if (fields.count("host") != 0 || fields.count("guest") != 0 || fields.count("proto") != 0) {
            respond(json_error(400,
                               "give either field \"spec\" or \"proto\", \"host\" and "
                               "\"guest\", not both"));
            return;
        }
        spec = fields["spec"];
        if (spec.empty()) {
            respond(json_error(400, "field \"spec\" is empty"));
            return;
        }
    } else {
        if (fields.count("host") == 0 && fields.count("guest") == 0) {
            respond(json_error(400, "missing field \"spec\" (or \"host\" and \"guest\")"));
            return;
        }
        for (const char* key : {"host", "guest"}) {
            if (fields.count(key) == 0 || fields[key].empty()) {
                respond(json_error(400, std::string("missing field \"") + key + "\""));
                return;
            }
        }
        const std::string proto = fields.count("proto") != 0 ? fields["proto"] : "tcp";
        if (!is_forward_proto(proto)) {
            respond(json_error(
                400, "field \"proto\" must be \"tcp\" or \"udp\", not \"" + proto + "\""));
            return;
        }
        spec = proto + ":" + fields["host"] + "=" + fields["guest"];
    }
    if (!backend_.add_forward(spec, [respond](ApiResult<ForwardInfo> r) {
            respond(r ? json_reply(201, forward_to_json(*r)) : v1_failure(r.error()));
        }))
        respond(busy_v1());
}

void ApiRoutes::v1_remove_forward(const Target& t, std::string_view id_text,
                                  const Responder& respond) {
    std::uint32_t id = 0;
    const auto [p, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc() || p != id_text.data() + id_text.size() || id == 0) {
        respond(json_error(400, "bad forward id \"" + std::string(id_text) +
                                    "\" (a number from GET /v1/forwards)"));
        return;
    }
    bool kill = false;
    if (const auto it = t.params.find("kill"); it != t.params.end()) {
        const std::string& v = it->second;
        if (v.empty() || v == "1" || v == "true" || v == "yes") {
            kill = true;
        } else if (v == "0" || v == "false" || v == "no") {
            kill = false;
        } else {
            respond(json_error(
                400, "bad value for query parameter \"kill\": \"" + v + "\" (use 1 or 0)"));
            return;
        }
    }
    if (!backend_.remove_forward(id, kill, [respond, id, kill](ApiResult<void> r) {
            respond(r ? json_reply(200, ordered_json{{"deleted", id}, {"killed", kill}})
                      : v1_failure(r.error()));
        }))
        respond(busy_v1());
}

void ApiRoutes::v1_flows(const Target& t, const Responder& respond) {
    FlowFilter filter;
    if (const auto it = t.params.find("proto"); it != t.params.end()) {
        if (it->second != "tcp" && it->second != "udp" && it->second != "icmp") {
            respond(json_error(400, "bad value for query parameter \"proto\": \"" + it->second +
                                        "\" (tcp, udp or icmp)"));
            return;
        }
        filter.proto = it->second;
    }
    if (const auto it = t.params.find("guest"); it != t.params.end()) {
        filter.guest = Ipv4Addr::parse(it->second);
        if (!filter.guest) {
            respond(json_error(400, "bad value for query parameter \"guest\": \"" + it->second +
                                        "\" (an IPv4 address)"));
            return;
        }
    }
    constexpr std::size_t kMaxLimit = 1'000'000;
    if (const auto it = t.params.find("limit"); it != t.params.end()) {
        const std::string& v = it->second;
        std::size_t limit = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), limit);
        if (ec != std::errc() || p != v.data() + v.size() || limit == 0 || limit > kMaxLimit) {
            respond(json_error(400, "bad value for query parameter \"limit\": \"" + v +
                                        "\" (1 to " + std::to_string(kMaxLimit) + ")"));
            return;
        }
        filter.limit = limit;
    }
    // One more than asked for tells whether the list was cut.
    const std::size_t limit = filter.limit;
    filter.limit = limit + 1;
    if (!backend_.flows(std::move(filter), [respond, limit](ApiResult<std::vector<FlowInfo>> r) {
            if (!r) {
                respond(v1_failure(r.error()));
                return;
            }
            const bool truncated = r->size() > limit;
            if (truncated) r->resize(limit);
            respond(json_reply(200, flows_to_json(*r, truncated)));
        }))
        respond(busy_v1());
}

namespace {

// A DNS name as the forwarder stores it: one trailing dot dropped; false when DNS could not
// encode it (an empty label, a label over 63 bytes, a name over 255).
bool dns_name_ok(std::string& name) {
    if (!name.empty() && name.back() == '.') name.pop_back();
    if (name.empty()) return false;
    std::array<std::byte, 256> wire{};
    return dns::encode_name(name, wire).has_value();
}

}  // namespace

void ApiRoutes::v1_add_dns(const ApiRequest& req, const Responder& respond) {
    json body;
    try {
        body = json::parse(req.body);
    } catch (const json::exception& e) {
        respond(json_error(400, std::string("bad JSON: ") + e.what()));
        return;
    }
    if (!body.is_object()) {
        respond(json_error(400, "the body must be a JSON object with \"name\" and \"ip\""));
        return;
    }
    std::string fields[2];
    const char* keys[2] = {"name", "ip"};
    for (int i = 0; i < 2; ++i) {
        const auto it = body.find(keys[i]);
        if (it == body.end()) {
            respond(json_error(400, std::string("missing field \"") + keys[i] + "\""));
            return;
        }
        if (!it->is_string()) {
            respond(json_error(400, std::string("field \"") + keys[i] + "\" must be a string"));
            return;
        }
        fields[i] = it->get<std::string>();
    }
    std::string name = fields[0];
    if (!dns_name_ok(name)) {
        respond(json_error(400, "field \"name\": not a valid domain name: \"" + fields[0] + "\""));
        return;
    }
    const auto ip = Ipv4Addr::parse(fields[1]);
    if (!ip) {
        respond(json_error(400, "field \"ip\": not an IPv4 address: \"" + fields[1] + "\""));
        return;
    }
    std::vector<std::pair<std::string, Ipv4Addr>> records{{name, *ip}};
    if (!backend_.add_dns_records(std::move(records), [respond, name, ip](ApiResult<void> r) {
            respond(r ? json_reply(201, dns_record_to_json({name, ip->to_string()}))
                      : v1_failure(r.error(), true));
        }))
        respond(busy_v1());
}

void ApiRoutes::metrics(const Responder& respond) {
    auto self = shared_from_this();
    const bool queued = backend_.stats([self, respond](ApiResult<NetworkStats> st) {
        if (!st) {
            respond(v1_failure(st.error()));
            return;
        }
        auto stats = std::make_shared<NetworkStats>(std::move(*st));
        if (!self->backend_.forwards([stats, respond](ApiResult<std::vector<ForwardInfo>> fw) {
                if (!fw) {
                    respond(v1_failure(fw.error()));
                    return;
                }
                ApiResponse r;
                r.content_type = std::string(kMetricsContentType);
                r.body = metrics_text(*stats, fw->size());
                respond(std::move(r));
            }))
            respond(busy_v1());
    });
    if (!queued) respond(busy_v1());
}

// ---- gvproxy ---------------------------------------------------------------------------------

void ApiRoutes::route_gvproxy(const ApiRequest& req, const Target& t, const Responder& respond) {
    const std::string& path = t.path;
    const auto busy = [&respond] { respond(go_error(503, "busy")); };
    const auto failed = [](const ApiError& e) {
        return go_error(500, e.message.empty() ? std::string(to_string(e.code)) : e.message);
    };
    auto self = shared_from_this();

    // Mutating paths check the method first (pkg/services/forwarder/ports.go, dns/dns.go).
    const bool mutating = path == "/services/forwarder/expose" ||
                          path == "/services/forwarder/unexpose" || path == "/services/dns/add";
    if (mutating && req.method != "POST") {
        respond(go_error(400, "post only"));
        return;
    }

    if (path == "/services/forwarder/all") {
        if (!backend_.forwards([self, respond, failed](ApiResult<std::vector<ForwardInfo>> r) {
                if (!r) {
                    respond(failed(r.error()));
                    return;
                }
                // Forget the "local" texts of forwards that are gone (removed through /v1).
                std::erase_if(self->gv_locals_, [&](const auto& kv) {
                    return std::none_of(r->begin(), r->end(),
                                        [&](const ForwardInfo& f) { return f.id == kv.first; });
                });
                respond(go_json(gv_forwards_to_json(*r, self->gv_locals_)));
            }))
            busy();
    } else if (path == "/services/forwarder/expose") {
        gv_expose(req, respond);
    } else if (path == "/services/forwarder/unexpose") {
        gv_unexpose(req, respond);
    } else if (path == "/services/dhcp/leases" || path == "/leases") {
        if (!backend_.leases([self, respond, failed](ApiResult<std::vector<LeaseView>> r) {
                respond(r ? go_json(gv_leases_to_json(*r, self->backend_.plan()))
                          : failed(r.error()));
            }))
            busy();
    } else if (path == "/services/dns/all") {
        if (!backend_.dns_records([respond, failed](ApiResult<std::vector<DnsRecordView>> r) {
                respond(r ? go_json(gv_zones_to_json(*r)) : failed(r.error()));
            }))
            busy();
    } else if (path == "/services/dns/add") {
        gv_dns_add(req, respond);
    } else if (path == "/stats") {
        if (!backend_.stats([respond, failed](ApiResult<NetworkStats> r) {
                respond(r ? go_json(gv_stats_to_json(*r)) : failed(r.error()));
            }))
            busy();
    } else if (path == "/cam" || path == "/tunnel" || path == "/connect") {
        respond(go_error(404, path + " is gvproxy's and not served by slipway"));
    } else {
        respond(go_not_found());
    }
}

// POST /services/forwarder/expose {"local","remote","protocol"}: the order of checks and the
// statuses of pkg/services/forwarder/ports.go (Mux "/expose", remote(), Expose, tcpipAddress).
void ApiRoutes::gv_expose(const ApiRequest& req, const Responder& respond) {
    auto doc = go_decode(req.body, "types.ExposeRequest");
    if (!doc) {
        respond(go_error(400, doc.error().message));
        return;
    }
    auto local = go_string(*doc, "local", "ExposeRequest");
    auto remote = go_string(*doc, "remote", "ExposeRequest");
    auto protocol = go_string(*doc, "protocol", "ExposeRequest");
    for (const auto* f : {&local, &remote, &protocol}) {
        if (!*f) {
            respond(go_error(400, f->error().message));
            return;
        }
    }
    std::string proto = protocol->empty() ? "tcp" : *protocol;
    if (proto == "unix" || proto == "npipe") {
        // gvproxy forwards host unix sockets and Windows named pipes too; slipway forwards ports.
        // The guest gateway answers 403 as gvproxy's gateway protocol filter does
        // (cmd/gvproxy/gateway_test.go); the host API 500, as any expose gvproxy cannot do.
        respond(go_error(req.scope == ApiScope::guest ? 403 : 500,
                         proto + " forwards are not supported by slipway: only tcp and udp "
                                 "protocols are allowed"));
        return;
    }
    // remote(): a remote without an address means the HTTP client's, i.e. the guest asking.
    std::string rhost, rport, error;
    if (!go_split_host_port(*remote, rhost, rport, error)) {
        respond(go_error(400, error));
        return;
    }
    std::string resolved = *remote;
    if (rhost.empty()) {
        if (!req.peer) {
            respond(go_error(400, "remote " + *remote +
                                      " has no address and this connection has none to lend "
                                      "it: give the guest's address, e.g. 192.168.127.2" +
                                      *remote));
            return;
        }
        resolved = req.peer->to_string() + *remote;
    }
    if (!is_forward_proto(proto)) {
        respond(go_error(500, "unknown protocol " + proto));
        return;
    }
    // tcpipAddress(): exactly "IPv4:port".
    const auto colon = resolved.find(':');
    if (colon == std::string::npos || resolved.find(':', colon + 1) != std::string::npos) {
        respond(go_error(500, "invalid remote addr"));
        return;
    }
    const auto guest = Ipv4Addr::parse(std::string_view(resolved).substr(0, colon));
    if (!guest) {
        respond(go_error(500, "invalid remote addr"));
        return;
    }
    std::uint16_t guest_port = 0;
    if (!go_parse_port(std::string_view(resolved).substr(colon + 1), guest_port, error)) {
        respond(go_error(500, error));
        return;
    }
    const auto host = canonical_local(proto, *local, error);
    if (!host) {
        respond(go_error(500, error));
        return;
    }
    const std::string spec =
        proto + ":" + *host + "=" + guest->to_string() + ":" + std::to_string(guest_port);
    auto self = shared_from_this();
    const std::string local_text = *local;
    // gvproxy refuses a second expose of the same protocol and local before it binds anything.
    const bool queued = backend_.find_forward(
        proto, *host,
        [self, respond, proto, local_text, spec](ApiResult<std::optional<std::uint32_t>> found) {
            if (found && *found) {
                respond(go_error(500, "proxy already running for " + proto + " on " + local_text));
                return;
            }
            if (!self->backend_.add_forward(
                    spec, [self, respond, local_text](ApiResult<ForwardInfo> r) {
                        if (!r) {
                            respond(go_error(500, r.error().message.empty()
                                                      ? std::string(to_string(r.error().code))
                                                      : r.error().message));
                            return;
                        }
                        self->gv_locals_[r->id] = local_text;
                        respond(go_ok());
                    }))
                respond(go_error(503, "busy"));
        });
    if (!queued) respond(go_error(503, "busy"));
}

// POST /services/forwarder/unexpose {"local","protocol"}: a forward that is not there is a 500
// "proxy not found" (ports.go Unexpose). slipway matches `local` by address, so ":8080" finds a
// forward made as "0.0.0.0:8080" (gvproxy compares the text).
void ApiRoutes::gv_unexpose(const ApiRequest& req, const Responder& respond) {
    auto doc = go_decode(req.body, "types.UnexposeRequest");
    if (!doc) {
        respond(go_error(400, doc.error().message));
        return;
    }
    auto local = go_string(*doc, "local", "UnexposeRequest");
    auto protocol = go_string(*doc, "protocol", "UnexposeRequest");
    for (const auto* f : {&local, &protocol}) {
        if (!*f) {
            respond(go_error(400, f->error().message));
            return;
        }
    }
    const std::string proto = protocol->empty() ? "tcp" : *protocol;
    std::string error;
    const auto host = is_forward_proto(proto) ? canonical_local(proto, *local, error)
                                              : std::optional<std::string>();
    if (!host) {
        respond(go_error(500, "proxy not found"));
        return;
    }
    auto self = shared_from_this();
    const bool queued = backend_.find_forward(
        proto, *host, [self, respond](ApiResult<std::optional<std::uint32_t>> found) {
            if (!found || !*found) {
                respond(
                    go_error(500, found ? std::string("proxy not found") : found.error().message));
                return;
            }
            const std::uint32_t id = **found;
            if (!self->backend_.remove_forward(id, false, [self, respond, id](ApiResult<void> r) {
                    if (!r) {
                        respond(go_error(500, r.error().code == Errc::not_found
                                                  ? std::string("proxy not found")
                                                  : r.error().message));
                        return;
                    }
                    self->gv_locals_.erase(id);
                    respond(go_ok());
                }))
                respond(go_error(503, "busy"));
        });
    if (!queued) respond(go_error(503, "busy"));
}

// POST /services/dns/add, a types.Zone {Name, Records: [{Name, IP, Regexp}], DefaultIP}
// (pkg/types/configuration.go; no json tags, so the keys are the Go field names, matched
// case-insensitively). gvproxy answers a query name Q from zone Z's record R when Q is
// R.Name + "." + Z.Name, so each record becomes slipway's local A record for that name (Z.Name's
// trailing dot optional here; a zone "" makes record names whole names). Regexp records and a
// zone DefaultIP (wildcards) have no counterpart among slipway's exact-name records: 400.
void ApiRoutes::gv_dns_add(const ApiRequest& req, const Responder& respond) {
    auto doc = go_decode(req.body, "types.Zone");
    if (!doc) {
        respond(go_error(400, doc.error().message));
        return;
    }
    auto zone = go_string(*doc, "Name", "Zone");
    auto default_ip = go_string(*doc, "DefaultIP", "Zone");
    for (const auto* f : {&zone, &default_ip}) {
        if (!*f) {
            respond(go_error(400, f->error().message));
            return;
        }
    }
    // net.IP's UnmarshalText: "" is no address, anything else must parse.
    const auto parse_ip = [](const std::string& text, bool& v6) -> std::optional<Ipv4Addr> {
        v6 = false;
        if (auto a = Ipv4Addr::parse(text)) return a;
        v6 = Ipv6Addr::parse(text).has_value();
        return std::nullopt;
    };
    bool v6 = false;
    if (!default_ip->empty()) {
        if (!parse_ip(*default_ip, v6) && !v6) {
            respond(go_error(400, "invalid IP address: " + *default_ip));
            return;
        }
        respond(go_error(400, "zone " + *zone +
                                  ": DefaultIP (an answer for every name in the "
                                  "zone) is not supported by slipway; add records "
                                  "by name"));
        return;
    }
    std::string suffix = *zone;
    if (!suffix.empty() && suffix.back() == '.') suffix.pop_back();

    std::vector<std::pair<std::string, Ipv4Addr>> records;
    if (const json* list = go_field(*doc, "Records")) {
        if (!list->is_array()) {
            respond(go_error(400, "json: cannot unmarshal " + go_kind(*list) +
                                      " into Go struct field Zone.Records of type "
                                      "[]types.Record"));
            return;
        }
        for (const auto& rec : *list) {
            if (!rec.is_null() && !rec.is_object()) {
                respond(go_error(400, "json: cannot unmarshal " + go_kind(rec) +
                                          " into Go struct field Zone.Records of type "
                                          "types.Record"));
                return;
            }
            const json obj = rec.is_null() ? json::object() : rec;
            auto name = go_string(obj, "Name", "Zone.Records");
            auto ip_text = go_string(obj, "IP", "Zone.Records");
            auto regexp = go_string(obj, "Regexp", "Zone.Records");
            for (const auto* f : {&name, &ip_text, &regexp}) {
                if (!*f) {
                    respond(go_error(400, f->error().message));
                    return;
                }
            }
            if (!regexp->empty()) {
                respond(go_error(400, "record " + *name +
                                          ": Regexp records are not supported by "
                                          "slipway; add records by name"));
                return;
            }
            if (name->empty()) {
                respond(go_error(400, "a record of zone " + *zone + " has no Name"));
                return;
            }
            const auto ip = parse_ip(*ip_text, v6);
            if (!ip) {
                respond(go_error(400, ip_text->empty() ? "record " + *name + " has no IP"
                                      : v6             ? "record " + *name + ": " + *ip_text +
                                                 " is IPv6; slipway serves A records only"
                                           : "invalid IP address: " + *ip_text));
                return;
            }
            std::string fqdn = *name;
            if (!fqdn.empty() && fqdn.back() == '.') fqdn.pop_back();
            if (!suffix.empty()) fqdn += "." + suffix;
            std::string checked = fqdn;
            if (!dns_name_ok(checked)) {
                respond(go_error(400, "record " + *name + " of zone " + *zone +
                                          ": not a valid domain name: " + fqdn));
                return;
            }
            records.emplace_back(std::move(checked), *ip);
        }
    }
    if (records.empty()) {
        respond(go_ok());  // gvproxy keeps an empty zone, which answers nothing
        return;
    }
    // In a gvproxy zone the first record for a name answers; adding replaces a name here, so
    // adding in reverse order leaves the first one in force.
    std::reverse(records.begin(), records.end());
    if (!backend_.add_dns_records(std::move(records), [respond](ApiResult<void> r) {
            if (!r) {
                const unsigned status =
                    r.error().code == Errc::invalid_argument || r.error().code == Errc::unsupported
                        ? 400
                        : 500;
                respond(go_error(status, r.error().message));
                return;
            }
            respond(go_ok());
        }))
        respond(go_error(503, "busy"));
}

}  // namespace slipway::apps
