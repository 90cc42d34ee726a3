// Renders the API's JSON documents as text tables for slipwayctl (render.hpp).
#include "slipwayctl/render.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace slipway::apps {

namespace {

using nlohmann::json;
using Row = std::vector<std::string>;

// The server's text made safe for a terminal: C0 controls, DEL and the UTF-8 encoded C1 controls
// (U+0080..U+009F, which include the one-byte CSI) become '?'.
std::string printable(std::string s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            out += '?';
        } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
            out += '?';
            ++i;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Columns on a terminal: UTF-8 continuation bytes take none.
std::size_t columns(const std::string& s) {
    return static_cast<std::size_t>(std::count_if(
        s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

void append_padded(std::string& out, const std::string& text, std::size_t width) {
    out += text;
    const std::size_t used = columns(text);
    if (used < width) out.append(width - used, ' ');
}

// Rows as aligned columns, two spaces apart; the last column is not padded. The first row is the
// header. Every cell goes through printable().
std::string table(const std::vector<Row>& rows) {
    std::vector<std::size_t> width;
    for (const Row& row : rows) {
        if (width.size() < row.size()) width.resize(row.size(), 0);
        for (std::size_t i = 0; i < row.size(); ++i)
            width[i] = std::max(width[i], columns(printable(row[i])));
    }
    std::string out;
    for (const Row& row : rows) {
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (i + 1 < row.size())
                append_padded(out, printable(row[i]), width[i] + 2);
            else
                out += printable(row[i]);
        }
        out += '\n';
    }
    return out;
}

// A status field as text: strings bare, numbers and booleans as JSON writes them, null as "none",
// missing as "-" (the status output as it always was).
std::string field(const json& obj, const char* key) {
    if (!obj.is_object()) return "-";
    const auto it = obj.find(key);
    if (it == obj.end()) return "-";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_null()) return "none";
    return it->dump();
}

// A table cell of the newer documents: strings bare, numbers and booleans as JSON writes them;
// missing, null, empty, an array or an object is "-".
std::string cell(const json& obj, const char* key) {
    if (!obj.is_object()) return "-";
    const auto it = obj.find(key);
    if (it == obj.end()) return "-";
    if (it->is_string()) {
        const auto& s = it->get_ref<const std::string&>();
        return s.empty() ? "-" : s;
    }
    if (it->is_boolean() || it->is_number()) return it->dump();
    return "-";
}

// doc[key] when it is an array, else an empty one.
const json& list(const json& doc, const char* key) {
    static const json kEmpty = json::array();
    if (!doc.is_object()) return kEmpty;
    const auto it = doc.find(key);
    return it != doc.end() && it->is_array() ? *it : kEmpty;
}

// doc[key] is the boolean true.
bool is_true(const json& doc, const char* key) {
    if (!doc.is_object()) return false;
    const auto it = doc.find(key);
    return it != doc.end() && it->is_boolean() && it->get<bool>();
}

// doc[key] is a boolean: "yes" or "no" text for it, else "-".
std::string boolean(const json& doc, const char* key, const char* yes, const char* no) {
    if (!doc.is_object()) return "-";
    const auto it = doc.find(key);
    if (it == doc.end() || !it->is_boolean()) return "-";
    return it->get<bool>() ? yes : no;
}

std::string scalar(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

void append_counters(std::string& out, const std::string& prefix, const json& counters) {
    if (!counters.is_object()) return;
    for (const auto& [name, value] : counters.items())
        out += printable(prefix + " " + name + " " + scalar(value)) + "\n";
}

// A lease's EXPIRES: "static", the seconds left at `now` ("3599s"), "expired", or "-" when
// expires_unix is not an integer. A clock before 1970 counts as 1970.
std::string lease_expires(const json& lease, std::int64_t now) {
    if (!lease.is_object()) return "-";
    if (is_true(lease, "static")) return "static";
    const auto it = lease.find("expires_unix");
    if (it == lease.end() || !it->is_number_integer()) return "-";
    const std::uint64_t now_u = now < 0 ? 0 : static_cast<std::uint64_t>(now);
    std::uint64_t expires = 0;
    if (it->is_number_unsigned()) {
        expires = it->get<std::uint64_t>();
    } else {
        const auto v = it->get<std::int64_t>();
        expires = v < 0 ? 0 : static_cast<std::uint64_t>(v);
    }
    if (expires <= now_u) return "expired";
    return std::to_string(expires - now_u) + "s";
}

// A flow's FWD: the forward's id, "-" when no forward made the flow (0 or null).
std::string flow_forward(const json& flow) {
    if (flow.is_object()) {
        const auto it = flow.find("forward_id");
        if (it != flow.end() && it->is_number_integer() && it->get<std::int64_t>() == 0) return "-";
    }
    return cell(flow, "forward_id");
}

}  // namespace

std::string render_status_text(const json& status) {
    static constexpr std::array<const char*, 10> kKeys = {
        "version",     "subnet", "gateway",    "dns",      "host_alias",
        "gateway_mac", "mtu",    "dhcp_range", "uptime_s", "ready"};
    std::string out;
    for (const char* key : kKeys) {
        append_padded(out, key, 13);
        out += printable(field(status, key)) + "\n";
    }

    std::vector<Row> rows{{"NAME", "KIND", "STATE", "SPEC"}};
    for (const auto& p : list(status, "ports")) {
        std::string spec = field(p, "spec");
        if (spec.empty()) spec = "-";
        rows.push_back({field(p, "name"), field(p, "kind"), field(p, "state"), spec});
    }
    out += "\n";
    out += table(rows);
    return out;
}

std::string render_stats_text(const json& stats) {
    std::string out;
    if (!stats.is_object()) return out;
    if (stats.contains("switch")) append_counters(out, "switch", stats["switch"]);
    for (const auto& p : list(stats, "ports")) {
        std::string id = field(p, "spec");
        if (id.empty() || id == "-") id = field(p, "name");
        if (p.is_object() && p.contains("counters"))
            append_counters(out, "port " + id, p["counters"]);
    }
    if (stats.contains("gateway")) append_counters(out, "gateway", stats["gateway"]);
    if (stats.contains("pool")) append_counters(out, "pool", stats["pool"]);
    return out;
}

std::string render_forwards_text(const json& forwards) {
    std::vector<Row> rows{{"ID", "PROTO", "HOST", "GUEST", "ACTIVE", "ACCEPTED", "REFUSED"}};
    for (const auto& f : list(forwards, "forwards"))
        rows.push_back({cell(f, "id"), cell(f, "proto"), cell(f, "host"), cell(f, "guest"),
                        cell(f, "active"), cell(f, "accepted"), cell(f, "refused")});
    return table(rows);
}

std::string render_forward_added(const json& forward) {
    return printable("forward " + cell(forward, "id") + ": " + cell(forward, "spec")) + "\n";
}

std::string render_forward_deleted(const json& reply) {
    return printable("forward " + cell(reply, "deleted") + " deleted" +
                     (is_true(reply, "killed") ? ", connections reset" : "")) +
           "\n";
}

std::string render_leases_text(const json& leases, std::int64_t now_unix) {
    std::vector<Row> rows{{"IP", "MAC", "HOSTNAME", "EXPIRES", "STATE"}};
    for (const auto& l : list(leases, "leases"))
        rows.push_back({cell(l, "ip"), cell(l, "mac"), cell(l, "hostname"),
                        lease_expires(l, now_unix), boolean(l, "bound", "bound", "offered")});
    return table(rows);
}

std::string render_flows_text(const json& flows) {
    std::vector<Row> rows{{"PROTO", "DIR", "GUEST", "REMOTE", "STATE", "FWD"}};
    for (const auto& f : list(flows, "flows"))
        rows.push_back({cell(f, "proto"), cell(f, "direction"), cell(f, "guest"), cell(f, "remote"),
                        cell(f, "state"), flow_forward(f)});
    std::string out = table(rows);
    if (is_true(flows, "truncated"))
        out += "(truncated: showing the first " + std::to_string(rows.size() - 1) +
               " flows; narrow with --proto/--guest or raise --limit)\n";
    return out;
}

std::string render_dns_text(const json& records) {
    std::vector<Row> rows{{"NAME", "IP"}};
    for (const auto& r : list(records, "records"))
        rows.push_back({cell(r, "name"), cell(r, "ip")});
    return table(rows);
}

std::string render_dns_added(const json& record) {
    return printable("dns " + cell(record, "name") + ": " + cell(record, "ip")) + "\n";
}

std::string render_dns_deleted(const json& reply) {
    return printable("dns " + cell(reply, "deleted") + " deleted") + "\n";
}

}  // namespace slipway::apps
