// slipwayctl's command line -> HTTP request mapping, as pure functions (no I/O), so that the unit
// tests can check every command's method, path, query and body without a daemon.
//
// `forward rm` takes an id ("3") or a rule's host side ("tcp:127.0.0.1:8080", "udp:[::1]:53",
// "tcp:8080", a whole --forward rule): an id is deleted at once, a rule is first looked up in
// GET /v1/forwards (find_forward_id) and then deleted by its id.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "slipway/core/result.hpp"
#include "slipwayctl/client.hpp"

namespace slipway::apps {

enum class Command : std::uint8_t {
    status,       // GET /v1/status
    stats,        // GET /v1/stats
    forward_ls,   // GET /v1/forwards
    forward_add,  // POST /v1/forwards {"spec": spec}
    forward_rm,   // DELETE /v1/forwards/ID[?kill=1] (a rule: GET /v1/forwards first)
    leases,       // GET /v1/leases
    flows,        // GET /v1/flows[?proto=P&guest=IP&limit=N]
    dns_ls,       // GET /v1/dns
    dns_add,      // POST /v1/dns {"name": name, "ip": ip}
    dns_rm,       // DELETE /v1/dns/NAME
};

// What the command line said; each command reads only its own fields.
struct CommandArgs {
    Command command = Command::status;
    std::string spec;                    // forward add
    std::string forward;                 // forward rm: ID or rule
    bool kill = false;                   // forward rm --kill
    std::string proto;                   // flows --proto (tcp, udp, icmp; empty: all)
    std::string guest;                   // flows --guest (empty: all)
    std::optional<std::uint64_t> limit;  // flows --limit (1..4294967295)
    std::string name;                    // dns add, dns rm
    std::string ip;                      // dns add
};

// The request for `args`. For `forward rm` with a rule this is the lookup (GET /v1/forwards);
// forward_delete_request() makes the DELETE once find_forward_id() has the id.
// Errc::invalid_argument with `error` one line for a usage error (exit status 2).
Result<HttpRequest> build_request(const CommandArgs& args, std::string& error);

// DELETE /v1/forwards/ID, with "?kill=1" when `kill`.
HttpRequest forward_delete_request(std::uint32_t id, bool kill);

// `forward rm`'s argument: an id (1..4294967295), or the host side of a rule
// ([tcp:|udp:][HOSTADDR:]PORT[-END][=GUEST...]; proto tcp and 127.0.0.1 when left out, the guest
// side ignored).
struct ForwardSelector {
    std::optional<std::uint32_t> id;
    std::string proto;  // "tcp" or "udp" (lower case) when id is empty
    std::string host;   // "127.0.0.1:8080", "[::1]:53", "0.0.0.0:8000-8009", as written
};
Result<ForwardSelector> parse_forward_selector(std::string_view arg, std::string& error);

// Whether two host sides ("ADDR:PORT[-END]") name the same thing, by value: "[::1]:53" is
// "[0:0::1]:53", "127.0.0.1:80" is "127.0.0.1:80-80". Text that does not parse matches only
// itself.
bool same_forward_host(std::string_view a, std::string_view b);

// The selector's id: its own, or that of the forward in a GET /v1/forwards document with the
// same protocol and host side. nullopt when none matches (or the document is not of that shape).
std::optional<std::uint32_t> find_forward_id(const nlohmann::json& forwards,
                                             const ForwardSelector& selector);

// Percent-encodes everything but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~).
std::string url_encode(std::string_view s);

}  // namespace slipway::apps
