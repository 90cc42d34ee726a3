// Renders Network status and counters as the HTTP API's JSON documents.
#include "slipwayd/render_json.hpp"

#include <string>

namespace slipway::apps {

namespace {

nlohmann::json counters_to_json(const std::vector<CounterValue>& counters) {
    // nlohmann::json objects sort their keys: the output is stable between calls and diffable.
    nlohmann::json out = nlohmann::json::object();
    for (const auto& c : counters)
        out[c.name] = c.value;
    return out;
}

nlohmann::json port_to_json(const PortStats& p, bool with_counters) {
    nlohmann::json out = {
        {"name", p.name},
        {"kind", p.kind},
        {"spec", p.spec},
        {"state", p.state},
    };
    if (with_counters) out["counters"] = counters_to_json(p.counters);
    return out;
}

}  // namespace

nlohmann::json status_to_json(const NetworkStatus& status) {
    const NetworkPlan& plan = status.plan;
    nlohmann::json out = {
        {"version", status.version},
        {"subnet", plan.subnet.to_string() + "/" + std::to_string(plan.prefix_len)},
        {"gateway", plan.gateway.to_string()},
        {"dns", plan.dns.to_string()},
        {"host_alias", nullptr},
        {"gateway_mac", plan.gateway_mac.to_string()},
        {"mtu", plan.mtu},
        {"uptime_s", status.uptime.count()},
        {"ready", status.ready},
    };
    if (plan.host_alias) out["host_alias"] = plan.host_alias->to_string();
    out["dhcp_range"] =
        plan.dhcp ? nlohmann::json(plan.dhcp_first.to_string() + "-" + plan.dhcp_last.to_string())
                  : nlohmann::json(nullptr);
    out["dns_enabled"] = plan.dns_enabled;
    out["dns_upstreams"] = plan.dns_upstreams;
    // NAT settings in force: the ICMP mode --icmp auto chose, the egress policy in evaluation
    // order (canonical, the built-in metadata deny included) and the host alias's ports.
    out["icmp_mode"] = plan.icmp_mode;
    out["egress_rules"] = plan.egress_rules;
    out["host_alias_ports"] = plan.host_alias_ports;
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& p : status.ports)
        ports.push_back(port_to_json(p, false));
    out["ports"] = std::move(ports);
    return out;
}

nlohmann::json stats_to_json(const NetworkStats& stats) {
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& p : stats.ports)
        ports.push_back(port_to_json(p, true));
    return {
        {"switch", counters_to_json(stats.switch_counters)},
        {"ports", std::move(ports)},
        {"gateway", counters_to_json(stats.gateway_counters)},
        {"pool", counters_to_json(stats.pool)},
    };
}

}  // namespace slipway::apps
