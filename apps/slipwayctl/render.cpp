// Renders the API's status and stats JSON documents as text tables for slipwayctl.
#include "slipwayctl/render.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace slipway::apps {

namespace {

using nlohmann::json;

// A field as text: strings bare, numbers and booleans as JSON writes them, null as "none".
std::string field(const json& obj, const char* key) {
    if (!obj.is_object()) return "-";
    const auto it = obj.find(key);
    if (it == obj.end()) return "-";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_null()) return "none";
    return it->dump();
}

std::string scalar(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

void append_padded(std::string& out, const std::string& text, std::size_t width) {
    out += text;
    if (text.size() < width) out.append(width - text.size(), ' ');
}

void append_counters(std::string& out, const std::string& prefix, const json& counters) {
    if (!counters.is_object()) return;
    for (const auto& [name, value] : counters.items())
        out += prefix + " " + name + " " + scalar(value) + "\n";
}

}  // namespace

std::string render_status_text(const json& status) {
    static constexpr std::array<const char*, 10> kKeys = {
        "version",     "subnet", "gateway",    "dns",      "host_alias",
        "gateway_mac", "mtu",    "dhcp_range", "uptime_s", "ready"};
    std::string out;
    for (const char* key : kKeys) {
        append_padded(out, key, 13);
        out += field(status, key) + "\n";
    }

    std::vector<std::array<std::string, 4>> rows{{"NAME", "KIND", "STATE", "SPEC"}};
    if (status.is_object() && status.contains("ports") && status["ports"].is_array()) {
        for (const auto& p : status["ports"]) {
            std::string spec = field(p, "spec");
            if (spec.empty()) spec = "-";
            rows.push_back({field(p, "name"), field(p, "kind"), field(p, "state"), spec});
        }
    }
    std::array<std::size_t, 4> width{};
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i)
            width[i] = std::max(width[i], row[i].size());
    out += "\n";
    for (const auto& row : rows) {
        for (std::size_t i = 0; i + 1 < row.size(); ++i)
            append_padded(out, row[i], width[i] + 2);
        out += row.back() + "\n";
    }
    return out;
}

std::string render_stats_text(const json& stats) {
    std::string out;
    if (!stats.is_object()) return out;
    if (stats.contains("switch")) append_counters(out, "switch", stats["switch"]);
    if (stats.contains("ports") && stats["ports"].is_array()) {
        for (const auto& p : stats["ports"]) {
            std::string id = field(p, "spec");
            if (id.empty() || id == "-") id = field(p, "name");
            if (p.is_object() && p.contains("counters"))
                append_counters(out, "port " + id, p["counters"]);
        }
    }
    if (stats.contains("gateway")) append_counters(out, "gateway", stats["gateway"]);
    if (stats.contains("pool")) append_counters(out, "pool", stats["pool"]);
    return out;
}

}  // namespace slipway::apps
