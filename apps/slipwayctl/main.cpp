// slipwayctl: asks a running slipwayd for its state, and changes its forwards and DNS names, over
// the HTTP API socket.
//
// Usage: slipwayctl [--api PATH] [--json] COMMAND. PATH comes from --api, else from the SLIPWAY_API
// environment variable; --api and --json may also follow the (sub)command. The commands and the
// API call behind each (request.hpp builds them):
//   status                              GET /v1/status
//   stats                               GET /v1/stats
//   forward ls                          GET /v1/forwards
//   forward add SPEC                    POST /v1/forwards {"spec": SPEC}
//   forward rm ID [--kill]              DELETE /v1/forwards/ID[?kill=1]
//   forward rm RULE [--kill]            GET /v1/forwards (the id of the rule's host side), then
//                                       DELETE /v1/forwards/ID[?kill=1]
//   leases                              GET /v1/leases
//   flows [--proto P] [--guest IP] [--limit N]
//                                       GET /v1/flows[?proto=P&guest=IP&limit=N]
//   dns ls                              GET /v1/dns
//   dns add NAME IP                     POST /v1/dns {"name": NAME, "ip": IP}
//   dns rm NAME                         DELETE /v1/dns/NAME
// Output: a text table or one line per command (render.hpp); with --json, the server's JSON
// document unchanged. Exit status: 0 on success (any 2xx reply), 1 when the request fails (no such
// socket, connection refused, HTTP error, malformed reply, no forward with that rule), 2 for usage
// errors. An HTTP error prints "slipwayctl: METHOD PATH: HTTP CODE: MESSAGE", MESSAGE being the
// server's "error" field, else the first line of its reply.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

#include "common/text.hpp"
#include "slipwayctl/client.hpp"
#include "slipwayctl/render.hpp"
#include "slipwayctl/request.hpp"

#ifndef SLIPWAY_VERSION
#define SLIPWAY_VERSION "unknown"
#endif

namespace {

using nlohmann::json;
using slipway::apps::Command;
using slipway::apps::CommandArgs;
using slipway::apps::HttpRequest;

int fail_with(int code, const std::string& message) {
    std::fprintf(stderr, "slipwayctl: %s\n", message.c_str());
    return code;
}

// Text from the server or the user, on one line and without control characters.
std::string safe_line(std::string s) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

std::string what(const HttpRequest& req) {
    return std::string(slipway::apps::method_name(req.method)) + " " + safe_line(req.target);
}

// Sends `req` and returns the body of its 2xx reply; otherwise prints why and sets `code` (1).
std::optional<std::string> exchange(const std::string& api, const HttpRequest& req, int& code) {
    std::string error;
    auto res = slipway::apps::http_request_unix(api, req, error);
    if (!res) {
        code = fail_with(1, safe_line(slipway::apps::one_line(error)));
        return std::nullopt;
    }
    if (res->status < 200 || res->status > 299) {
        std::string detail = res->body.substr(0, res->body.find('\n'));
        const auto doc = json::parse(res->body, nullptr, false);
        if (doc.is_object() && doc.contains("error") && doc["error"].is_string())
            detail = slipway::apps::one_line(doc["error"].get<std::string>());
        detail = safe_line(slipway::apps::one_line(detail));
        code = fail_with(1, what(req) + ": HTTP " + std::to_string(res->status) +
                                (detail.empty() ? "" : ": " + detail));
        return std::nullopt;
    }
    return std::move(res->body);
}

std::string render(Command c, const json& doc) {
    namespace a = slipway::apps;
    switch (c) {
        case Command::status:
            return a::render_status_text(doc);
        case Command::stats:
            return a::render_stats_text(doc);
        case Command::forward_ls:
            return a::render_forwards_text(doc);
        case Command::forward_add:
            return a::render_forward_added(doc);
        case Command::forward_rm:
            return a::render_forward_deleted(doc);
        case Command::leases:
            return a::render_leases_text(doc, static_cast<std::int64_t>(std::time(nullptr)));
        case Command::flows:
            return a::render_flows_text(doc);
        case Command::dns_ls:
            return a::render_dns_text(doc);
        case Command::dns_add:
            return a::render_dns_added(doc);
        case Command::dns_rm:
            return a::render_dns_deleted(doc);
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"slipwayctl: query and change a running slipwayd through its HTTP API socket.",
                 "slipwayctl"};
    app.set_version_flag("--version", std::string("slipwayctl ") + SLIPWAY_VERSION,
                         "Print the version and exit");
    app.set_help_flag("-h,--help", "Print this help and exit");
    app.require_subcommand(1);
    app.fallthrough();  // --api and --json are accepted before or after the subcommands
    app.footer(
        "Commands:\n"
        "  status | stats\n"
        "  forward ls | forward add SPEC | forward rm ID|RULE [--kill]\n"
        "  leases\n"
        "  flows [--proto tcp|udp|icmp] [--guest IP] [--limit N]\n"
        "  dns ls | dns add NAME IP | dns rm NAME\n"
        "'slipwayctl COMMAND --help' describes each. Exit status: 0 done, 1 the request failed, 2 "
        "usage error.");

    std::string api;
    bool json_out = false;
    CommandArgs args;
    std::uint64_t limit = 0;
    app.add_option("--api", api,
                   "slipwayd's API socket, as given to slipwayd --api (default: $SLIPWAY_API)")
        ->type_name("PATH");
    app.add_flag("--json", json_out, "Print the JSON document as the daemon sent it");

    auto* status_cmd = app.add_subcommand("status", "Address plan, uptime and ports");
    auto* stats_cmd = app.add_subcommand(
        "stats", "Every counter: one 'switch|port ID|gateway|pool NAME VALUE' line each");

    auto* forward_cmd = app.add_subcommand("forward", "List, add and remove host port forwards");
    forward_cmd->require_subcommand(1);
    forward_cmd->fallthrough();
    auto* forward_ls = forward_cmd->add_subcommand(
        "ls", "Every forward: ID PROTO HOST GUEST ACTIVE ACCEPTED REFUSED");
    auto* forward_add = forward_cmd->add_subcommand(
        "add", "Add a forward; prints 'forward ID: SPEC' with the rule as slipwayd reads it");
    forward_add
        ->add_option("SPEC", args.spec,
                     "[tcp:|udp:][HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END], as "
                     "slipwayd --forward takes it")
        ->required();
    forward_add->footer("Example: slipwayctl forward add tcp:8080=192.168.127.2:80");
    auto* forward_rm = forward_cmd->add_subcommand(
        "rm",
        "Remove a forward by its id or by its rule's host side; its connections keep "
        "running unless --kill");
    forward_rm
        ->add_option("FORWARD", args.forward,
                     "An id from 'forward ls', or [tcp:|udp:][HOSTADDR:]PORT[-END] (tcp and "
                     "127.0.0.1 when left out; a whole rule works too)")
        ->required();
    forward_rm->add_flag("--kill", args.kill, "Also reset the forward's open connections");
    forward_rm->footer(
        "Examples: slipwayctl forward rm 3; slipwayctl forward rm udp:[::1]:53 --kill");

    auto* leases_cmd = app.add_subcommand("leases", "DHCP leases: IP MAC HOSTNAME EXPIRES STATE");
    auto* flows_cmd = app.add_subcommand(
        "flows", "The NAT's flows: PROTO DIR GUEST REMOTE STATE FWD (FWD: the forward's id)");
    flows_cmd->add_option("--proto", args.proto, "Only this protocol")
        ->type_name("tcp|udp|icmp")
        ->check(CLI::IsMember({"tcp", "udp", "icmp"}));
    flows_cmd->add_option("--guest", args.guest, "Only the flows of this guest address")
        ->type_name("IP");
    auto* limit_opt =
        flows_cmd
            ->add_option("--limit", limit, "At most N flows (the server's own limit otherwise)")
            ->type_name("N")
            ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{4294967295U}));

    auto* dns_cmd = app.add_subcommand("dns", "List, add and remove the gateway's local DNS names");
    dns_cmd->require_subcommand(1);
    dns_cmd->fallthrough();
    auto* dns_ls = dns_cmd->add_subcommand("ls", "Every local name: NAME IP");
    auto* dns_add = dns_cmd->add_subcommand("add", "Answer NAME with IP; prints 'dns NAME: IP'");
    dns_add->add_option("NAME", args.name, "A DNS name, e.g. db.example")->required();
    dns_add->add_option("IP", args.ip, "Its address, e.g. 192.168.127.9")->required();
    auto* dns_rm = dns_cmd->add_subcommand("rm", "Remove a local name");
    dns_rm->add_option("NAME", args.name, "The name, as 'dns ls' shows it")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);  // the help of the innermost subcommand given
        return 0;
    } catch (const CLI::CallForVersion& e) {
        std::printf("%s\n", e.what());
        return 0;
    } catch (const CLI::ParseError& e) {
        return fail_with(2, safe_line(slipway::apps::one_line(e.what())) + " (see --help)");
    }

    if (status_cmd->parsed()) args.command = Command::status;
    if (stats_cmd->parsed()) args.command = Command::stats;
    if (forward_ls->parsed()) args.command = Command::forward_ls;
    if (forward_add->parsed()) args.command = Command::forward_add;
    if (forward_rm->parsed()) args.command = Command::forward_rm;
    if (leases_cmd->parsed()) args.command = Command::leases;
    if (flows_cmd->parsed()) args.command = Command::flows;
    if (dns_ls->parsed()) args.command = Command::dns_ls;
    if (dns_add->parsed()) args.command = Command::dns_add;
    if (dns_rm->parsed()) args.command = Command::dns_rm;
    if (limit_opt->count() > 0) args.limit = limit;

    std::string error;
    auto req = slipway::apps::build_request(args, error);
    if (!req) return fail_with(2, safe_line(error) + " (see --help)");

    if (api.empty()) {
        if (const char* env = std::getenv("SLIPWAY_API"); env != nullptr) api = env;
    }
    if (api.empty()) return fail_with(2, "no API socket: pass --api PATH or set SLIPWAY_API");

    int code = 0;
    if (args.command == Command::forward_rm && req->method == slipway::apps::HttpMethod::get) {
        // A rule: find its id in the forward list, then delete by id.
        const auto sel = slipway::apps::parse_forward_selector(args.forward, error);
        if (!sel) return fail_with(2, safe_line(error));
        const auto list = exchange(api, *req, code);
        if (!list) return code;
        const auto doc = json::parse(*list, nullptr, false);
        if (doc.is_discarded() || !doc.is_object())
            return fail_with(1, what(*req) + ": reply is not a JSON object");
        const auto id = slipway::apps::find_forward_id(doc, *sel);
        if (!id)
            return fail_with(1, "no " + sel->proto + " forward on host side " +
                                    safe_line(sel->host) + " (see slipwayctl forward ls)");
        req = slipway::apps::forward_delete_request(*id, args.kill);
    }

    const auto body = exchange(api, *req, code);
    if (!body) return code;
    if (json_out) {
        std::fputs(body->c_str(), stdout);
        if (body->empty() || body->back() != '\n') std::fputc('\n', stdout);
        return std::fflush(stdout) == 0 ? 0 : 1;
    }
    const auto doc = json::parse(*body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return fail_with(1, what(*req) + ": reply is not a JSON object");
    const std::string text = render(args.command, doc);
    std::fputs(text.c_str(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}
