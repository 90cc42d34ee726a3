// slipwayd's configuration: command-line flags merged over an optional TOML file (DESIGN §4).
#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "slipway/core/types.hpp"
#include "slipway/embed/network.hpp"

namespace slipway::apps {

// Everything slipwayd takes from its command line and config file, after defaults. Values whose
// meaning depends on the subnet (gateway and host alias inside it) are checked by
// Network::create; attachment specs by Network::attach.
struct DaemonConfig {
    Ipv4Addr subnet = Ipv4Addr::from_octets(192, 168, 127, 0);
    std::uint8_t prefix_len = 24;
    std::optional<Ipv4Addr> gateway;     // unset: .1 of the subnet (Network's default)
    std::optional<Ipv4Addr> host_alias;  // unset: .254 (Network's default) unless no_host_alias
    bool no_host_alias = false;
    std::uint32_t mtu = 1500;
    std::vector<std::string> attach;
    bool isolate = false;
    bool no_mac_lock = false;
    std::string api;       // empty: no API socket
    std::string pcap;      // empty: no capture
    std::string pid_file;  // empty: none
    spdlog::level::level_enum log_level = spdlog::level::info;
    std::string log_level_name = "info";
    std::string config_file;  // empty: none

    // DHCP (Network checks ranges and statics against the subnet).
    bool no_dhcp = false;
    std::optional<std::pair<Ipv4Addr, Ipv4Addr>> dhcp_range;
    std::vector<DhcpStatic> dhcp_static;
    std::uint32_t lease_time_s = 3600;
    std::string domain;
    std::vector<std::string> search;
    std::string lease_file;  // empty: leases in memory

    // DNS forwarder.
    bool no_dns = false;
    std::vector<std::string> dns_upstreams;  // validated ADDR[:PORT] / [V6]:PORT
    std::string resolv_conf = "/etc/resolv.conf";
    std::vector<std::pair<std::string, Ipv4Addr>> dns_records;
    std::size_t dns_cache_entries = 4096;
    std::size_t dns_cache_bytes = 4u << 20;

    // NAT engine.
    std::uint32_t max_flows = 65536;  // Network clamps it to RLIMIT_NOFILE
    bool no_peek_off = false;
    std::uint32_t connect_timeout_s = 30;
    std::uint32_t tcp_idle_timeout_s = 7200;
    std::uint32_t udp_timeout_s = 180;
    std::uint32_t udp_dns_timeout_s = 10;  // UDP flows to ports 53 and 123
    std::string icmp_mode = "auto";        // auto|ping|raw|gateway (Network probes the host)
    // --allow/--deny in command-line order, "allow RULE" / "deny RULE" (RULE validated by
    // nat::PolicyRule::parse, kept as given); the file's `egress` array when the command line
    // has neither flag.
    std::vector<std::string> egress_rules;
    std::string host_alias_ports;  // validated nat::PortSet list as given; empty: every port
    std::uint32_t max_flows_per_guest = 0;  // 0: no cap beyond max_flows
    std::uint32_t max_half_open = 4096;     // 0: no cap
    std::uint32_t new_flow_rate = 0;        // new flows per second per guest; 0: unlimited

    // Port forwards (--forward, repeatable; the file's `forward` array), validated by
    // portfwd::Rule::parse, kept as given. The API adds more at run time.
    std::vector<std::string> forwards;
    bool guest_api = false;  // serve the forwarder API to guests at the gateway's port 80
};

// What parse_command_line decided. When `config` is set the daemon runs with it; otherwise the
// process exits with `exit_code` after printing `out` to stdout (--help, --version) or `err` (one
// line, no trailing newline) to stderr.
struct ParseOutcome {
    std::optional<DaemonConfig> config;
    int exit_code = 0;
    std::string out;
    std::string err;
};

inline constexpr int kExitUsage = 2;    // bad flag or value (DESIGN §4)
inline constexpr int kExitRuntime = 1;  // failure after start-up began

inline constexpr std::uint32_t kMinMtu = 576;
inline constexpr std::uint32_t kMaxMtu = 65520;

// Parses argv (argv[0] is the program name) and the --config file if one is named. Never prints
// and never exits.
ParseOutcome parse_command_line(int argc, const char* const* argv);

// "a.b.c.d/n" → address and prefix length; nullopt when malformed or n > 32.
std::optional<std::pair<Ipv4Addr, std::uint8_t>> parse_cidr(std::string_view text) noexcept;

}  // namespace slipway::apps
