// Prometheus text exposition of NetworkStats (format 0.0.4).
#include "slipwayd/api_metrics.hpp"

#include <array>
#include <map>
#include <utility>
#include <vector>

namespace slipway::apps {

namespace {

struct Sample {
    std::string labels;  // "" or "{port=\"qemu0\"}"
    std::uint64_t value = 0;
};

struct Family {
    std::string name;
    std::string help;
    bool gauge = false;
    std::vector<Sample> samples;
};

// Families in order of first appearance, so the output follows NetworkStats' own order.
class Exposition {
  public:
    void add(const std::string& name, std::string help, bool gauge, std::string labels,
             std::uint64_t value) {
        auto [it, fresh] = index_.try_emplace(name, families_.size());
        if (fresh) families_.push_back({name, std::move(help), gauge, {}});
        Family& f = families_[it->second];
        for (const auto& s : f.samples)
            if (s.labels == labels) return;  // sanitised to a name already taken: first wins
        f.samples.push_back({std::move(labels), value});
    }

    [[nodiscard]] std::string text() const {
        std::string out;
        for (const auto& f : families_) {
            out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
            out += "# TYPE " + f.name + (f.gauge ? " gauge\n" : " counter\n");
            for (const auto& s : f.samples)
                out += f.name + s.labels + " " + std::to_string(s.value) + "\n";
        }
        return out;
    }

  private:
    // HELP text escapes only '\' and newline (a '"' stays as it is there).
    static std::string escape_help(std::string_view text) {
        std::string out;
        for (const char c : text) {
            if (c == '\\') {
                out += "\\\\";
            } else if (c == '\n') {
                out += "\\n";
            } else {
                out += c;
            }
        }
        return out;
    }

    std::vector<Family> families_;
    std::map<std::string, std::size_t> index_;
};

bool contains(std::string_view s, std::string_view part) {
    return s.find(part) != std::string_view::npos;
}

void add_group(Exposition& ex, std::string_view group, std::string_view what,
               const std::vector<CounterValue>& counters) {
    for (const auto& c : counters)
        ex.add(metric_name(group, c.name), std::string(what) + " " + c.name, is_gauge(c.name), "",
               c.value);
}

}  // namespace

std::string metric_name(std::string_view group, std::string_view counter) {
    std::string out = "slipway_";
    out += group;
    out += '_';
    for (const char c : counter) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out += ok ? c : '_';
    }
    return out;
}

bool is_gauge(std::string_view counter) {
    // Levels by what they measure. "cache_bytes" and not "bytes": rx_bytes and tcp_bytes_to_host
    // count traffic.
    static constexpr std::array<std::string_view, 6> kLevelWords = {
        "capacity", "free", "entries", "cache_bytes", "in_progress", "active"};
    for (const auto w : kLevelWords)
        if (contains(counter, w)) return true;
    // Flows open now ("flows", "tcp_flows", "tcp_flows_established"), but not the counts of flows
    // opened, expired or evicted ("udp_flows_opened", "flows_evicted") nor of flows refused by a
    // cap ("limit_guest_flows").
    std::string_view rest = counter;
    for (const std::string_view proto : {"tcp_", "udp_", "icmp_"}) {
        if (rest.substr(0, proto.size()) == proto) {
            rest.remove_prefix(proto.size());
            break;
        }
    }
    if (rest == "flows" || counter == "forwards") return true;
    for (const std::string_view state :
         {"flows_connecting", "flows_syn_sent", "flows_established", "flows_closing"})
        if (rest == state) return true;
    return false;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    for (const char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string metrics_text(const NetworkStats& stats, std::size_t forwards) {
    Exposition ex;
    ex.add("slipway_up", "1 while slipwayd answers", true, "", 1);
    ex.add("slipway_forwards", "port forwards in place", true, "", forwards);
    add_group(ex, "switch", "switch counter", stats.switch_counters);
    for (const auto& p : stats.ports) {
        const std::string labels = "{port=\"" + escape_label_value(p.name) + "\"}";
        for (const auto& c : p.counters)
            ex.add(metric_name("port", c.name), "per-port counter " + c.name, is_gauge(c.name),
                   labels, c.value);
    }
    add_group(ex, "gateway", "gateway counter", stats.gateway_counters);
    add_group(ex, "pool", "packet pool", stats.pool);
    return ex.text();
}

}  // namespace slipway::apps
