// JSON shapes of the HTTP API: NetworkStatus and NetworkStats rendered with nlohmann::json.
#pragma once

#include <nlohmann/json.hpp>

#include "slipway/embed/network.hpp"

namespace slipway::apps {

// {version, subnet, gateway, dns, host_alias|null, gateway_mac, mtu, uptime_s, ready,
//  dhcp_range|null, dns_enabled, dns_upstreams: [..], icmp_mode, egress_rules: [..],
//  host_alias_ports, ports: [{name, kind, spec, state}]}
nlohmann::json status_to_json(const NetworkStatus& status);

// {switch: {name: value...}, ports: [{name, kind, spec, state, counters: {name: value...}}],
//  gateway: {name: value...}, pool: {name: value...}}
nlohmann::json stats_to_json(const NetworkStats& stats);

}  // namespace slipway::apps
