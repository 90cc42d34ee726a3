// slipwayctl: asks a running slipwayd for its status or counters over the HTTP API socket.
//
// Usage: slipwayctl [--api PATH] status|stats [--json]. PATH comes from --api, else from the
// SLIPWAY_API environment variable. Exit status: 0 on success, 1 when the request fails (no such
// socket, connection refused, HTTP error, malformed reply), 2 for usage errors.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/text.hpp"
#include "slipwayctl/client.hpp"
#include "slipwayctl/render.hpp"

#ifndef SLIPWAY_VERSION
#define SLIPWAY_VERSION "unknown"
#endif

namespace {

int fail_with(int code, const std::string& message) {
    std::fprintf(stderr, "slipwayctl: %s\n", message.c_str());
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"slipwayctl: query a running slipwayd through its HTTP API socket.", "slipwayctl"};
    app.set_version_flag("--version", std::string("slipwayctl ") + SLIPWAY_VERSION,
                         "Print the version and exit");
    app.set_help_flag("-h,--help", "Print this help and exit");
    app.require_subcommand(1);
    app.fallthrough();  // --api and --json are accepted before or after the subcommand

    std::string api;
    bool json_out = false;
    app.add_option("--api", api,
                   "slipwayd's API socket, as given to slipwayd --api (default: $SLIPWAY_API)")
        ->type_name("PATH");
    app.add_flag("--json", json_out, "Print the JSON document as the daemon sent it");
    auto* status_cmd = app.add_subcommand("status", "Address plan, uptime and ports");
    auto* stats_cmd = app.add_subcommand(
        "stats", "Every counter: one 'switch|port ID|gateway|pool NAME VALUE' line each");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::CallForVersion& e) {
        std::printf("%s\n", e.what());
        return 0;
    } catch (const CLI::ParseError& e) {
        return fail_with(2, slipway::apps::one_line(e.what()) + " (see --help)");
    }

    if (api.empty()) {
        if (const char* env = std::getenv("SLIPWAY_API"); env != nullptr) api = env;
    }
    if (api.empty()) return fail_with(2, "no API socket: pass --api PATH or set SLIPWAY_API");

    const bool want_status = status_cmd->parsed();
    const std::string target = want_status ? "/v1/status" : "/v1/stats";
    (void)stats_cmd;

    std::string error;
    auto res = slipway::apps::http_get_unix(api, target, error);
    if (!res) return fail_with(1, error);
    if (res->status != 200) {
        std::string detail = slipway::apps::one_line(res->body);
        const auto doc = nlohmann::json::parse(res->body, nullptr, false);
        if (doc.is_object() && doc.contains("error") && doc["error"].is_string())
            detail = doc["error"].get<std::string>();
        return fail_with(1, "GET " + target + ": HTTP " + std::to_string(res->status) +
                                (detail.empty() ? "" : ": " + detail));
    }
    if (json_out) {
        std::fputs(res->body.c_str(), stdout);
        if (res->body.empty() || res->body.back() != '\n') std::fputc('\n', stdout);
        return 0;
    }
    const auto doc = nlohmann::json::parse(res->body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return fail_with(1, "GET " + target + ": reply is not a JSON object");
    const std::string text = want_status ? slipway::apps::render_status_text(doc)
                                         : slipway::apps::render_stats_text(doc);
    std::fputs(text.c_str(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}
