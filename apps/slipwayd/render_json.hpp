// JSON shapes of the HTTP API: slipway's own /v1 documents (the shapes of the issue 7 API spec)
// and gvproxy's documents for its paths (/services/..., /leases, /stats), rendered with
// nlohmann::json. gvproxy's keep Go's key order (ordered_json) so they read like gvproxy's own.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "slipway/embed/network.hpp"

namespace slipway::apps {

// {version, subnet, gateway, dns, host_alias|null, gateway_mac, mtu, uptime_s, ready,
//  dhcp_range|null, dns_enabled, dns_upstreams: [..], icmp_mode, egress_rules: [..],
//  host_alias_ports, ports: [{name, kind, spec, state}]}
nlohmann::json status_to_json(const NetworkStatus& status);

// {switch: {name: value...}, ports: [{name, kind, spec, state, counters: {name: value...}}],
//  gateway: {name: value...}, pool: {name: value...}}
nlohmann::json stats_to_json(const NetworkStats& stats);

// {ports: [{name, kind, spec, state}]}
nlohmann::ordered_json ports_to_json(const NetworkStatus& status);
// {id, proto, host, guest, spec, accepted, refused, active}
nlohmann::ordered_json forward_to_json(const ForwardInfo& f);
// {forwards: [F...]}
nlohmann::ordered_json forwards_to_json(const std::vector<ForwardInfo>& forwards);
// {leases: [{mac, ip, hostname, expires_unix, static, bound}]}
nlohmann::ordered_json leases_to_json(const std::vector<LeaseView>& leases);
// {flows: [{proto, direction, guest, remote, state, forward_id}], truncated}
nlohmann::ordered_json flows_to_json(const std::vector<FlowInfo>& flows, bool truncated);
// {name, ip}
nlohmann::ordered_json dns_record_to_json(const DnsRecordView& r);
// {records: [{name, ip}]}
nlohmann::ordered_json dns_records_to_json(const std::vector<DnsRecordView>& records);

// ---- gvproxy's shapes (pkg/types, pkg/services/... of containers/gvisor-tap-vsock) ----------

// GET /services/forwarder/all: [{local, remote, protocol}] sorted by local, then protocol (as
// newer gvproxy sorts). `locals` maps forward ids to the "local" text a gvproxy client exposed
// them with (":8080"), which gvproxy shows as given; other forwards show ForwardInfo::host.
nlohmann::ordered_json gv_forwards_to_json(const std::vector<ForwardInfo>& forwards,
                                           const std::map<std::uint32_t, std::string>& locals);
// GET /services/dhcp/leases and /leases: {ip: mac}, the gateway's own address included (gvproxy's
// pool reserves it), keys sorted as Go's encoder sorts map keys.
nlohmann::ordered_json gv_leases_to_json(const std::vector<LeaseView>& leases,
                                         const NetworkPlan& plan);
// GET /services/dns/all: [{Name, Records: [{Name, IP}], DefaultIP: ""}]. Each record name is split
// at its first dot into a record label and its zone ("host.containers.internal" is record "host"
// of zone "containers.internal."), which is how gvproxy's zones answer the same name; a name
// without a dot is a record of the zone "" (gvproxy's suffix "." then matches the name itself).
// Zones and their records sorted by name.
nlohmann::ordered_json gv_zones_to_json(const std::vector<DnsRecordView>& records);
// GET /stats: gvproxy's field names where a slipway counter means the same thing (BytesSent and
// BytesReceived: bytes the switch sent to and received from guests; a subset of the TCP and UDP
// objects from the NAT engine's counters), plus "slipway": stats_to_json(stats).
nlohmann::ordered_json gv_stats_to_json(const NetworkStats& stats);

}  // namespace slipway::apps
