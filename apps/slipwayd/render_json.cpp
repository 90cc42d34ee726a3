// Renders the network's state as the HTTP API's JSON documents: slipway's /v1 shapes and
// gvproxy's.
#include "slipwayd/render_json.hpp"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

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

std::uint64_t counter(const std::vector<CounterValue>& counters, std::string_view name) {
    for (const auto& c : counters)
        if (c.name == name) return c.value;
    return 0;
}

std::uint64_t sum(const std::vector<CounterValue>& counters,
                  std::initializer_list<std::string_view> names) {
    std::uint64_t total = 0;
    for (const auto n : names)
        total += counter(counters, n);
    return total;
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

nlohmann::ordered_json ports_to_json(const NetworkStatus& status) {
    nlohmann::ordered_json ports = nlohmann::ordered_json::array();
    for (const auto& p : status.ports)
        ports.push_back({{"name", p.name}, {"kind", p.kind}, {"spec", p.spec}, {"state", p.state}});
    return {{"ports", std::move(ports)}};
}

nlohmann::ordered_json forward_to_json(const ForwardInfo& f) {
    return {
        {"id", f.id},     {"proto", f.proto},       {"host", f.host},       {"guest", f.guest},
        {"spec", f.spec}, {"accepted", f.accepted}, {"refused", f.refused}, {"active", f.active},
    };
}

nlohmann::ordered_json forwards_to_json(const std::vector<ForwardInfo>& forwards) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& f : forwards)
        list.push_back(forward_to_json(f));
    return {{"forwards", std::move(list)}};
}

nlohmann::ordered_json leases_to_json(const std::vector<LeaseView>& leases) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& l : leases)
        list.push_back({{"mac", l.mac},
                        {"ip", l.ip},
                        {"hostname", l.hostname},
                        {"expires_unix", l.expires_unix},
                        {"static", l.is_static},
                        {"bound", l.bound}});
    return {{"leases", std::move(list)}};
}

nlohmann::ordered_json flows_to_json(const std::vector<FlowInfo>& flows, bool truncated) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& f : flows)
        list.push_back({{"proto", f.proto},
                        {"direction", f.direction},
                        {"guest", f.guest},
                        {"remote", f.remote},
                        {"state", f.state},
                        {"forward_id", f.forward_id}});
    return {{"flows", std::move(list)}, {"truncated", truncated}};
}

nlohmann::ordered_json dns_record_to_json(const DnsRecordView& r) {
    return {{"name", r.name}, {"ip", r.ip}};
}

nlohmann::ordered_json dns_records_to_json(const std::vector<DnsRecordView>& records) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& r : records)
        list.push_back(dns_record_to_json(r));
    return {{"records", std::move(list)}};
}

nlohmann::ordered_json gv_forwards_to_json(const std::vector<ForwardInfo>& forwards,
                                           const std::map<std::uint32_t, std::string>& locals) {
    struct Row {
        std::string local, remote, protocol;
    };
    std::vector<Row> rows;
    rows.reserve(forwards.size());
    for (const auto& f : forwards) {
        const auto it = locals.find(f.id);
        rows.push_back({it != locals.end() ? it->second : f.host, f.guest, f.proto});
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        return a.local != b.local ? a.local < b.local : a.protocol < b.protocol;
    });
    // gvproxy builds its list with make([]proxy, 0): an empty list is [], never null.
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (auto& r : rows)
        list.push_back({{"local", std::move(r.local)},
                        {"remote", std::move(r.remote)},
                        {"protocol", std::move(r.protocol)}});
    return list;
}

nlohmann::ordered_json gv_leases_to_json(const std::vector<LeaseView>& leases,
                                         const NetworkPlan& plan) {
    // Go's encoder writes map keys sorted bytewise, as std::map orders std::string.
    std::map<std::string, std::string> by_ip;
    by_ip[plan.gateway.to_string()] = plan.gateway_mac.to_string();
    for (const auto& l : leases)
        by_ip[l.ip] = l.mac;
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (auto& [ip, mac] : by_ip)
        out[ip] = std::move(mac);
    return out;
}

nlohmann::ordered_json gv_zones_to_json(const std::vector<DnsRecordView>& records) {
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> zones;
    for (const auto& r : records) {
        std::string_view name = r.name;
        if (!name.empty() && name.back() == '.') name.remove_suffix(1);
        const auto dot = name.find('.');
        if (dot == std::string_view::npos) {
            zones[""].emplace_back(std::string(name), r.ip);
        } else {
            zones[std::string(name.substr(dot + 1)) + "."].emplace_back(
                std::string(name.substr(0, dot)), r.ip);
        }
    }
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (auto& [zone, recs] : zones) {
        std::sort(recs.begin(), recs.end());
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (auto& [label, ip] : recs)
            list.push_back({{"Name", std::move(label)}, {"IP", std::move(ip)}});
        // gvproxy's DefaultIP is a net.IP: unset encodes as "" (slipway has no zone defaults).
        out.push_back({{"Name", zone}, {"Records", std::move(list)}, {"DefaultIP", ""}});
    }
    return out;
}

nlohmann::ordered_json gv_stats_to_json(const NetworkStats& stats) {
    std::uint64_t sent = 0, received = 0;
    for (const auto& p : stats.ports) {
        if (p.kind != "guest") continue;
        sent += counter(p.counters, "tx_bytes");
        received += counter(p.counters, "rx_bytes");
    }
    const auto& g = stats.gateway_counters;
    // Each field is the NAT engine's counter for the same event as gVisor's stack counts it in
    // gvproxy: the stack accepts a guest's SYN (passive open) and dials the guest for a forward
    // (active open); a connection that dies before it is established is a failed attempt.
    nlohmann::ordered_json tcp = {
        {"ActiveConnectionOpenings", counter(g, "tcp_inbound_opened")},
        {"PassiveConnectionOpenings", counter(g, "tcp_syn_received")},
        {"CurrentEstablished", counter(g, "tcp_flows_established")},
        {"EstablishedTimedout", counter(g, "tcp_timed_out")},
        {"FailedConnectionAttempts",
         sum(g, {"tcp_connect_refused", "tcp_connect_unreachable", "tcp_connect_timeout",
                 "tcp_connect_failed", "tcp_inbound_refused", "tcp_inbound_timeout",
                 "tcp_inbound_failed"})},
        {"ValidSegmentsReceived", counter(g, "tcp_segments_in")},
        {"SegmentsSent", counter(g, "tcp_frames_to_guest")},
        {"Retransmits", counter(g, "tcp_retransmits")},
        {"FastRetransmit", counter(g, "tcp_fast_retransmits")},
    };
    nlohmann::ordered_json udp = {
        {"PacketsReceived", counter(g, "udp_datagrams_to_host")},
        {"MalformedPacketsReceived", counter(g, "udp_drop_malformed")},
        {"PacketsSent", counter(g, "udp_datagrams_to_guest")},
    };
    return {
        {"BytesSent", sent},     {"BytesReceived", received},       {"TCP", std::move(tcp)},
        {"UDP", std::move(udp)}, {"slipway", stats_to_json(stats)},
    };
}

}  // namespace slipway::apps
