// slipwayctl's command -> HTTP request mapping and the `forward rm RULE` lookup (request.hpp).
#include "slipwayctl/request.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <limits>

#include "slipway/portfwd/rule.hpp"

namespace slipway::apps {

namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxId = std::numeric_limits<std::uint32_t>::max();

// A user's text inside a one-line error message: control characters become '?'.
std::string shown(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return out;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (const char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

bool all_letters(std::string_view s) {
    if (s.empty()) return false;
    for (const char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
    return true;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// A JSON object as a request body; invalid UTF-8 in the strings becomes U+FFFD instead of
// throwing.
std::string body_of(const json& doc) {
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A forward id in a document: a JSON integer (signed or unsigned) in 1..4294967295.
std::optional<std::uint32_t> id_of(const json& v) {
    if (v.is_number_unsigned()) {
        const auto n = v.get<std::uint64_t>();
        if (n >= 1 && n <= kMaxId) return static_cast<std::uint32_t>(n);
        return std::nullopt;
    }
    if (v.is_number_integer()) {
        const auto n = v.get<std::int64_t>();
        if (n >= 1 && static_cast<std::uint64_t>(n) <= kMaxId) return static_cast<std::uint32_t>(n);
    }
    return std::nullopt;
}

HttpRequest get(std::string target) {
    return HttpRequest{HttpMethod::get, std::move(target), {}};
}

Result<HttpRequest> usage(std::string& error, std::string message) {
    error = std::move(message);
    return fail(Errc::invalid_argument);
}

}  // namespace

std::string url_encode(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                                c == '~';
        if (unreserved) {
            out += ch;
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    return out;
}

Result<ForwardSelector> parse_forward_selector(std::string_view arg, std::string& error) {
    ForwardSelector sel;
    if (arg.empty()) {
        error = "forward rm needs an id or a rule such as tcp:127.0.0.1:8080";
        return fail(Errc::invalid_argument);
    }
    if (all_digits(arg)) {
        std::uint64_t v = 0;
        const auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), v);
        if (ec != std::errc{} || p != arg.data() + arg.size() || v == 0 || v > kMaxId) {
            error = "forward id '" + shown(arg) + "' is out of range (1-4294967295)";
            return fail(Errc::invalid_argument);
        }
        sel.id = static_cast<std::uint32_t>(v);
        return sel;
    }

    std::string_view rest = arg;
    sel.proto = "tcp";
    if (const auto colon = rest.find(':');
        colon != std::string_view::npos && all_letters(rest.substr(0, colon))) {
        sel.proto = lower(rest.substr(0, colon));
        if (sel.proto != "tcp" && sel.proto != "udp") {
            error = "unknown protocol '" + shown(rest.substr(0, colon)) + "' in '" + shown(arg) +
                    "' (tcp or udp)";
            return fail(Errc::invalid_argument);
        }
        rest = rest.substr(colon + 1);
    }
    rest = rest.substr(0, rest.find('='));  // a whole --forward rule: the guest side is ignored

    const std::string what =
        "'" + shown(arg) + "' is not a forward id or rule ([tcp:|udp:][ADDR:]PORT)";
    if (rest.empty()) {
        error = what;
        return fail(Errc::invalid_argument);
    }
    if (rest.front() == ':') {
        error = what + ": missing host address";
        return fail(Errc::invalid_argument);
    }
    // The grammar of a rule's host side is slipwayd's own (portfwd/rule.hpp).
    std::string why;
    if (!portfwd::parse_host_side(rest, why)) {
        error = what + ": " + why;
        return fail(Errc::invalid_argument);
    }
    const bool has_addr = rest.find(':') != std::string_view::npos;
    sel.host = (has_addr ? std::string() : std::string("127.0.0.1:")) + std::string(rest);
    return sel;
}

bool same_forward_host(std::string_view a, std::string_view b) {
    std::string why;
    const auto x = portfwd::parse_host_side(a, why);
    const auto y = portfwd::parse_host_side(b, why);
    if (!x || !y) return !x && !y && a == b;
    return x->addr == y->addr && x->first == y->first && x->last == y->last;
}

std::optional<std::uint32_t> find_forward_id(const json& forwards,
                                             const ForwardSelector& selector) {
    if (selector.id) return selector.id;
    if (!forwards.is_object()) return std::nullopt;
    const auto list = forwards.find("forwards");
    if (list == forwards.end() || !list->is_array()) return std::nullopt;
    for (const json& f : *list) {
        if (!f.is_object()) continue;
        const auto id = f.find("id");
        const auto proto = f.find("proto");
        const auto host = f.find("host");
        if (id == f.end() || proto == f.end() || host == f.end()) continue;
        if (!proto->is_string() || !host->is_string()) continue;
        const auto n = id_of(*id);
        if (!n) continue;
        if (lower(proto->get_ref<const std::string&>()) != selector.proto) continue;
        if (!same_forward_host(host->get_ref<const std::string&>(), selector.host)) continue;
        return n;
    }
    return std::nullopt;
}

HttpRequest forward_delete_request(std::uint32_t id, bool kill) {
    return HttpRequest{
        HttpMethod::del, "/v1/forwards/" + std::to_string(id) + (kill ? "?kill=1" : ""), {}};
}

Result<HttpRequest> build_request(const CommandArgs& args, std::string& error) {
    switch (args.command) {
        case Command::status:
            return get("/v1/status");
        case Command::stats:
            return get("/v1/stats");
        case Command::forward_ls:
            return get("/v1/forwards");
        case Command::leases:
            return get("/v1/leases");
        case Command::dns_ls:
            return get("/v1/dns");

        case Command::forward_add:
            if (args.spec.empty())
                return usage(error, "forward add needs a rule such as tcp:8080=192.168.127.2:80");
            return HttpRequest{HttpMethod::post, "/v1/forwards",
                               body_of(json{{"spec", args.spec}})};

        case Command::forward_rm: {
            auto sel = parse_forward_selector(args.forward, error);
            if (!sel) return fail(sel.error());
            if (sel->id) return forward_delete_request(*sel->id, args.kill);
            return get("/v1/forwards");  // look the rule up first (find_forward_id)
        }

        case Command::flows: {
            std::string query;
            const auto add = [&](const char* key, const std::string& value) {
                query += query.empty() ? '?' : '&';
                query += key;
                query += '=';
                query += url_encode(value);
            };
            if (!args.proto.empty()) {
                if (args.proto != "tcp" && args.proto != "udp" && args.proto != "icmp")
                    return usage(
                        error, "--proto must be tcp, udp or icmp, not '" + shown(args.proto) + "'");
                add("proto", args.proto);
            }
            if (!args.guest.empty()) add("guest", args.guest);
            if (args.limit) {
                if (*args.limit < 1 || *args.limit > kMaxId)
                    return usage(
                        error, "--limit must be 1-4294967295, not " + std::to_string(*args.limit));
                add("limit", std::to_string(*args.limit));
            }
            return get("/v1/flows" + query);
        }

        case Command::dns_add:
            if (args.name.empty() || args.ip.empty())
                return usage(error,
                             "dns add needs a NAME and an IP, e.g. db.example 192.168.127.9");
            return HttpRequest{HttpMethod::post, "/v1/dns",
                               body_of(json{{"name", args.name}, {"ip", args.ip}})};

        case Command::dns_rm:
            if (args.name.empty()) return usage(error, "dns rm needs a NAME");
            return HttpRequest{HttpMethod::del, "/v1/dns/" + url_encode(args.name), {}};
    }
    return usage(error, "unknown command");
}

}  // namespace slipway::apps
