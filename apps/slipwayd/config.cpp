// slipwayd's configuration: CLI11 flags merged over a toml++ config file, then validated.
//
// Both sources are first read into the same "raw" form (text as given plus where it came from),
// merged key by key with the command line winning, and only then validated, so a bad value gets
// the same message whichever source it came from, naming the flag or the file and key.
#include "slipwayd/config.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "common/text.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/parse.hpp"
#include "slipway/dhcp/server.hpp"
#include "slipway/dns/upstream.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/portfwd/rule.hpp"

#ifndef SLIPWAY_VERSION
#define SLIPWAY_VERSION "unknown"
#endif

namespace slipway::apps {

std::optional<std::pair<Ipv4Addr, std::uint8_t>> parse_cidr(std::string_view text) noexcept {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const auto addr = Ipv4Addr::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    const std::string_view len_text = text.substr(slash + 1);
    unsigned len = 0;
    const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (len_text.empty() || ec != std::errc{} || end != len_text.data() + len_text.size() ||
        len > 32)
        return std::nullopt;
    return std::pair{*addr, static_cast<std::uint8_t>(len)};
}

namespace {

// One value as given: its text and how to name it in an error ("--mtu" or "mtu in FILE").
struct Given {
    std::string text;
    std::string where;
};
struct GivenBool {
    bool value = false;
    std::string where;
};
struct GivenList {
    std::vector<std::string> values;
    std::string where;
};
// The egress policy: "allow RULE" / "deny RULE" in order, each with its own `where` ("--allow",
// "--deny" or "egress in FILE"), since one list is made by two flags.
struct GivenRule {
    std::string text;
    std::string where;
};
struct GivenRules {
    std::vector<GivenRule> rules;
};

struct Raw {
    std::optional<Given> subnet, gateway, host_alias, mtu, api, pcap, pid_file, log_level;
    std::optional<GivenBool> no_host_alias, isolate, no_mac_lock;
    std::optional<GivenList> attach;
    std::optional<Given> dhcp_range, lease_time, domain, lease_file;
    std::optional<GivenBool> no_dhcp;
    std::optional<GivenList> dhcp_static, search;
    std::optional<Given> resolv_conf, dns_cache_entries, dns_cache_bytes;
    std::optional<GivenBool> no_dns;
    std::optional<GivenList> dns_upstream, dns_record;
    std::optional<Given> max_flows, connect_timeout, tcp_idle_timeout;
    std::optional<GivenBool> no_peek_off;
    std::optional<Given> udp_timeout, udp_dns_timeout, icmp, host_alias_ports;
    std::optional<Given> max_flows_per_guest, max_half_open, new_flow_rate;
    std::optional<GivenRules> egress;
    std::optional<GivenList> forward;
    std::optional<GivenBool> guest_api;
};

// Reads the TOML file into `raw`. Returns false with `err` set on the first problem.
bool read_config_file(const std::string& path, Raw& raw, std::string& err) {
    const std::string label = "--config " + path;
    // A directory opens as an empty stream with libstdc++: check for a regular file first.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        err = label + ": not a regular file";
        return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        err = label + ": cannot read: " + std::strerror(errno);
        return false;
    }
    std::ostringstream content;
    content << in.rdbuf();
    if (in.bad()) {
        err = label + ": cannot read: " + std::strerror(errno);
        return false;
    }

    toml::table table;
    try {
        table = toml::parse(content.str(), path);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        err = label + ": line " + std::to_string(where.line) + " column " +
              std::to_string(where.column) + ": " +
              slipway::apps::one_line(std::string(e.description()));
        return false;
    }

    for (const auto& entry : table) {
        // Named, not a structured binding: clang 14 cannot capture bindings in the lambdas below.
        const std::string key(entry.first.str());
        const toml::node& node = entry.second;
        const std::string where = key + " in " + path;
        auto bad_type = [&](const char* expected) {
            err = label + ": key '" + key + "' must be " + expected;
            return false;
        };
        auto take_string = [&](std::optional<Given>& slot) {
            const auto* s = node.as_string();
            if (s == nullptr) return bad_type("a string");
            slot = Given{s->get(), where};
            return true;
        };
        auto take_bool = [&](std::optional<GivenBool>& slot) {
            const auto* b = node.as_boolean();
            if (b == nullptr) return bad_type("true or false");
            slot = GivenBool{b->get(), where};
            return true;
        };

        // A string or an array of strings (repeatable flags, DESIGN §4).
        auto take_list = [&](std::optional<GivenList>& slot) {
            GivenList list{{}, where};
            if (const auto* s = node.as_string()) {
                list.values.push_back(s->get());
            } else if (const auto* arr = node.as_array()) {
                for (const auto& item : *arr) {
                    const auto* s2 = item.as_string();
                    if (s2 == nullptr) return bad_type("an array of strings");
                    list.values.push_back(s2->get());
                }
            } else {
                return bad_type("an array of strings");
            }
            slot = std::move(list);
            return true;
        };
        auto take_int = [&](std::optional<Given>& slot) {
            const auto* i = node.as_integer();
            if (i == nullptr) return bad_type("an integer");
            slot = Given{std::to_string(i->get()), where};
            return true;
        };

        bool ok = true;
        if (key == "subnet") {
            ok = take_string(raw.subnet);
        } else if (key == "gateway") {
            ok = take_string(raw.gateway);
        } else if (key == "host-alias") {
            ok = take_string(raw.host_alias);
        } else if (key == "no-host-alias") {
            ok = take_bool(raw.no_host_alias);
        } else if (key == "mtu") {
            ok = take_int(raw.mtu);
        } else if (key == "attach") {
            ok = take_list(raw.attach);
        } else if (key == "no-dhcp") {
            ok = take_bool(raw.no_dhcp);
        } else if (key == "dhcp-range") {
            ok = take_string(raw.dhcp_range);
        } else if (key == "dhcp-static") {
            ok = take_list(raw.dhcp_static);
        } else if (key == "lease-time") {
            ok = take_int(raw.lease_time);
        } else if (key == "domain") {
            ok = take_string(raw.domain);
        } else if (key == "search") {
            ok = take_list(raw.search);
        } else if (key == "lease-file") {
            ok = take_string(raw.lease_file);
        } else if (key == "no-dns") {
            ok = take_bool(raw.no_dns);
        } else if (key == "dns-upstream") {
            ok = take_list(raw.dns_upstream);
        } else if (key == "dns-record") {
            ok = take_list(raw.dns_record);
        } else if (key == "resolv-conf") {
            ok = take_string(raw.resolv_conf);
        } else if (key == "dns-cache-entries") {
            ok = take_int(raw.dns_cache_entries);
        } else if (key == "dns-cache-bytes") {
            ok = take_int(raw.dns_cache_bytes);
        } else if (key == "max-flows") {
            ok = take_int(raw.max_flows);
        } else if (key == "connect-timeout") {
            ok = take_int(raw.connect_timeout);
        } else if (key == "tcp-idle-timeout") {
            ok = take_int(raw.tcp_idle_timeout);
        } else if (key == "no-peek-off") {
            ok = take_bool(raw.no_peek_off);
        } else if (key == "udp-timeout") {
            ok = take_int(raw.udp_timeout);
        } else if (key == "udp-dns-timeout") {
            ok = take_int(raw.udp_dns_timeout);
        } else if (key == "icmp") {
            ok = take_string(raw.icmp);
        } else if (key == "egress") {
            std::optional<GivenList> list;
            ok = take_list(list);
            if (ok) {
                GivenRules rules;
                for (auto& v : list->values)
                    rules.rules.push_back(GivenRule{std::move(v), where});
                raw.egress = std::move(rules);
            }
        } else if (key == "allow" || key == "deny") {
            // One ordered list in the file, as on the command line.
            err = label + ": key '" + key +
                  "' is not a config key; write the policy as egress = [\"allow RULE\", "
                  "\"deny RULE\", ...] in the order to apply";
            return false;
        } else if (key == "host-alias-ports") {
            ok = take_string(raw.host_alias_ports);
        } else if (key == "forward") {
            ok = take_list(raw.forward);
        } else if (key == "guest-api") {
            ok = take_bool(raw.guest_api);
        } else if (key == "max-flows-per-guest") {
            ok = take_int(raw.max_flows_per_guest);
        } else if (key == "max-half-open") {
            ok = take_int(raw.max_half_open);
        } else if (key == "new-flow-rate") {
            ok = take_int(raw.new_flow_rate);
        } else if (key == "isolate") {
            ok = take_bool(raw.isolate);
        } else if (key == "no-mac-lock") {
            ok = take_bool(raw.no_mac_lock);
        } else if (key == "api") {
            ok = take_string(raw.api);
        } else if (key == "pcap") {
            ok = take_string(raw.pcap);
        } else if (key == "pid-file") {
            ok = take_string(raw.pid_file);
        } else if (key == "log-level") {
            ok = take_string(raw.log_level);
        } else {
            err = label + ": unknown key '" + key + "'";
            return false;
        }
        if (!ok) return false;
    }
    return true;
}

// "WHERE: 'VALUE' PROBLEM" into `err`; false, so callers can `return bad_value(...)`.
bool bad_value(std::string& err, const std::string& where, const std::string& value,
               const std::string& problem) {
    err = where + ": '" + value + "' " + problem;
    return false;
}

// The whole text as a decimal integer in [lo, hi] (core/parse.hpp).
std::optional<long long> parse_bounded(std::string_view t, long long lo, long long hi) {
    return slipway::parse_decimal<long long>(t, lo, hi);
}

bool valid_domain(std::string_view d) {
    if (d.empty() || d.size() > 253) return false;
    std::size_t label = 0;
    for (char c : d) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label != 0;
}

// The DHCP flags; what depends on the subnet is Network::create's to check.
bool dhcp_options(const Raw& cli, DaemonConfig& cfg, std::string& err) {
    auto bad = [&err](const std::string& where, const std::string& text,
                      const std::string& problem) { return bad_value(err, where, text, problem); };
    if (cli.no_dhcp) cfg.no_dhcp = cli.no_dhcp->value;
    if (cli.dhcp_range) {
        const auto r = dhcp::parse_range(cli.dhcp_range->text);
        if (!r)
            return bad(cli.dhcp_range->where, cli.dhcp_range->text,
                       "is not an address range (FIRST-LAST, e.g. 192.168.127.10-192.168.127.99)");
        cfg.dhcp_range = *r;
    }
    if (cli.dhcp_static) {
        for (const auto& v : cli.dhcp_static->values) {
            const auto st = dhcp::parse_static(v);
            if (!st)
                return bad(cli.dhcp_static->where, v,
                           "is not MAC=IP[,hostname] (e.g. 52:54:00:12:34:56=192.168.127.10,web)");
            cfg.dhcp_static.push_back(DhcpStatic{st->mac, st->ip, st->hostname});
        }
    }
    if (cli.lease_time) {
        const std::string& t = cli.lease_time->text;
        const auto v = parse_bounded(t, 60, 31536000);
        if (!v)
            return bad(cli.lease_time->where, t, "is not a lease time (seconds, 60 to 31536000)");
        cfg.lease_time_s = static_cast<std::uint32_t>(*v);
    }
    if (cli.domain) {
        if (!valid_domain(cli.domain->text))
            return bad(cli.domain->where, cli.domain->text, "is not a domain name");
        cfg.domain = cli.domain->text;
    }
    if (cli.search) {
        cfg.search.clear();
        for (const auto& v : cli.search->values) {
            // --search D1,D2 on the command line; an array (or one comma list) in the file.
            std::string_view rest = v;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                const std::string_view d = rest.substr(0, comma);
                if (!valid_domain(d))
                    return bad(cli.search->where, v, "is not a comma-separated list of domains");
                cfg.search.emplace_back(d);
                rest =
                    comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            }
        }
    }
    if (cli.lease_file) {
        if (cli.lease_file->text.empty()) {
            err = cli.lease_file->where + ": empty path";
            return false;
        }
        cfg.lease_file = cli.lease_file->text;
    }
    return true;
}

bool nat_options(const Raw& cli, DaemonConfig& cfg, std::string& err) {
    if (cli.no_peek_off) cfg.no_peek_off = cli.no_peek_off->value;
    auto number = [&](const std::optional<Given>& g, long long lo, long long hi, std::uint32_t& out,
                      const char* why) {
        if (!g) return true;
        const auto v = parse_bounded(g->text, lo, hi);
        if (!v) return bad_value(err, g->where, g->text, why);
        out = static_cast<std::uint32_t>(*v);
        return true;
    };
    if (!number(cli.max_flows, 16, 1LL << 24, cfg.max_flows,
                "is not a flow count (16 to 16777216)") ||
        !number(cli.connect_timeout, 1, 600, cfg.connect_timeout_s,
                "is not a number of seconds (1 to 600)") ||
        !number(cli.tcp_idle_timeout, 10, 1LL << 24, cfg.tcp_idle_timeout_s,
                "is not a number of seconds (10 to 16777216)") ||
        !number(cli.udp_timeout, 1, 86400, cfg.udp_timeout_s,
                "is not a number of seconds (1 to 86400)") ||
        !number(cli.udp_dns_timeout, 1, 3600, cfg.udp_dns_timeout_s,
                "is not a number of seconds (1 to 3600)") ||
        !number(cli.max_flows_per_guest, 0, 1LL << 24, cfg.max_flows_per_guest,
                "is not a flow count (0 to 16777216; 0 for no per-guest cap)") ||
        !number(cli.max_half_open, 0, 1LL << 24, cfg.max_half_open,
                "is not a connection count (0 to 16777216; 0 for no cap)") ||
        !number(cli.new_flow_rate, 0, 10000000, cfg.new_flow_rate,
                "is not a rate in flows per second (0 to 10000000; 0 for unlimited)"))
        return false;
    if (cli.icmp) {
        const std::string& m = cli.icmp->text;
        if (m != "auto" && m != "ping" && m != "raw" && m != "gateway")
            return bad_value(err, cli.icmp->where, m,
                             "is not an ICMP mode (auto|ping|raw|gateway)");
        cfg.icmp_mode = m;
    }
    if (cli.egress) {
        for (const GivenRule& g : cli.egress->rules) {
            // "VERB RULE"; on the command line the flag is the verb, so only the rule is named.
            const bool from_flag = g.where.rfind("--", 0) == 0;
            const auto space = g.text.find(' ');
            const std::string verb = g.text.substr(0, space);
            nat::PolicyAction action = nat::PolicyAction::deny;
            if (verb == "allow") {
                action = nat::PolicyAction::allow;
            } else if (verb != "deny") {
                return bad_value(err, g.where, g.text,
                                 "is not \"allow RULE\" or \"deny RULE\" (RULE = "
                                 "CIDR[:PORTS][/PROTO])");
            }
            const std::string rule = space == std::string::npos ? "" : g.text.substr(space + 1);
            std::string why;
            if (!nat::PolicyRule::parse(rule, action, why)) {
                // `why` is "'RULE': what is wrong", specific enough on its own.
                err = g.where + ": " + (from_flag ? "" : verb + " ") + why;
                return false;
            }
            cfg.egress_rules.push_back(verb + " " + rule);
        }
    }
    if (cli.forward) {
        for (const std::string& spec : cli.forward->values) {
            std::string why;
            if (!portfwd::Rule::parse(spec, why)) {
                err = cli.forward->where + ": " + why;
                return false;
            }
            cfg.forwards.push_back(spec);
        }
    }
    if (cli.guest_api) cfg.guest_api = cli.guest_api->value;
    if (cli.host_alias_ports) {
        const Given& g = *cli.host_alias_ports;
        std::string why;
        if (!nat::PortSet::parse(g.text, why))
            return bad_value(err, g.where, g.text,
                             "is not a port list (e.g. 22,8000-8100, or all): " + why);
        cfg.host_alias_ports = g.text;
        if (cfg.no_host_alias) {
            err = "--no-host-alias excludes --host-alias-ports";
            return false;
        }
    }
    return true;
}

bool dns_options(const Raw& cli, DaemonConfig& cfg, std::string& err) {
    auto bad = [&err](const std::string& where, const std::string& value, const std::string& why) {
        return bad_value(err, where, value, why);
    };
    if (cli.no_dns) cfg.no_dns = cli.no_dns->value;
    if (cli.dns_upstream) {
        for (const auto& v : cli.dns_upstream->values) {
            if (!dns::parse_upstream(v))
                return bad(cli.dns_upstream->where, v,
                           "is not ADDR[:PORT] or [IPV6]:PORT (an address, not a host name)");
            cfg.dns_upstreams.push_back(v);
        }
    }
    if (cli.dns_record) {
        for (const auto& v : cli.dns_record->values) {
            const auto eq = v.find('=');
            const auto ip = eq == std::string::npos
                                ? std::nullopt
                                : Ipv4Addr::parse(std::string_view(v).substr(eq + 1));
            if (!ip || eq == 0 || !valid_domain(std::string_view(v).substr(0, eq)))
                return bad(cli.dns_record->where, v, "is not NAME=IPV4");
            cfg.dns_records.emplace_back(v.substr(0, eq), *ip);
        }
    }
    if (cli.resolv_conf) {
        if (cli.resolv_conf->text.empty()) {
            err = cli.resolv_conf->where + ": empty path";
            return false;
        }
        cfg.resolv_conf = cli.resolv_conf->text;
    }
    auto number = [&](const std::optional<Given>& g, long long lo, long long hi, std::size_t& out,
                      const char* why) {
        if (!g) return true;
        const auto v = parse_bounded(g->text, lo, hi);
        if (!v) return bad(g->where, g->text, why);
        out = static_cast<std::size_t>(*v);
        return true;
    };
    if (!number(cli.dns_cache_entries, 0, 1LL << 16, cfg.dns_cache_entries,
                "is not an entry count (0 to 65536; 0 turns the cache off)") ||
        !number(cli.dns_cache_bytes, 4096, 1LL << 30, cfg.dns_cache_bytes,
                "is not a byte count (4096 to 1073741824)"))
        return false;
    if (cfg.no_dns && (!cfg.dns_upstreams.empty() || !cfg.dns_records.empty())) {
        err = "--no-dns excludes --dns-upstream and --dns-record";
        return false;
    }
    return true;
}

template <class T>
void prefer(std::optional<T>& cli, const std::optional<T>& file) {
    if (!cli && file) cli = file;
}

// Merges `file` under `cli` (the command line wins) and validates into `cfg`.
bool merge_and_validate(Raw cli, const Raw& file, DaemonConfig& cfg, std::string& err) {
    // The host alias is one choice made by two keys: if the command line makes it (either key),
    // the file's choice is ignored as a whole; within the file the two must not contradict.
    if (!cli.host_alias && !cli.no_host_alias) {
        if (file.host_alias && file.no_host_alias && file.no_host_alias->value) {
            err = "--config " + cfg.config_file +
                  ": keys 'host-alias' and 'no-host-alias' are mutually exclusive";
            return false;
        }
        cli.host_alias = file.host_alias;
        cli.no_host_alias = file.no_host_alias;
    }
    prefer(cli.subnet, file.subnet);
    prefer(cli.gateway, file.gateway);
    prefer(cli.mtu, file.mtu);
    prefer(cli.api, file.api);
    prefer(cli.pcap, file.pcap);
    prefer(cli.pid_file, file.pid_file);
    prefer(cli.log_level, file.log_level);
    prefer(cli.isolate, file.isolate);
    prefer(cli.no_mac_lock, file.no_mac_lock);
    prefer(cli.attach, file.attach);
    prefer(cli.no_dhcp, file.no_dhcp);
    prefer(cli.dhcp_range, file.dhcp_range);
    prefer(cli.dhcp_static, file.dhcp_static);
    prefer(cli.lease_time, file.lease_time);
    prefer(cli.domain, file.domain);
    prefer(cli.search, file.search);
    prefer(cli.lease_file, file.lease_file);
    prefer(cli.no_dns, file.no_dns);
    prefer(cli.dns_upstream, file.dns_upstream);
    prefer(cli.dns_record, file.dns_record);
    prefer(cli.resolv_conf, file.resolv_conf);
    prefer(cli.dns_cache_entries, file.dns_cache_entries);
    prefer(cli.dns_cache_bytes, file.dns_cache_bytes);
    prefer(cli.max_flows, file.max_flows);
    prefer(cli.connect_timeout, file.connect_timeout);
    prefer(cli.tcp_idle_timeout, file.tcp_idle_timeout);
    prefer(cli.no_peek_off, file.no_peek_off);
    prefer(cli.udp_timeout, file.udp_timeout);
    prefer(cli.udp_dns_timeout, file.udp_dns_timeout);
    prefer(cli.icmp, file.icmp);
    prefer(cli.egress, file.egress);  // any --allow/--deny replaces the file's list as a whole
    prefer(cli.host_alias_ports, file.host_alias_ports);
    prefer(cli.max_flows_per_guest, file.max_flows_per_guest);
    prefer(cli.max_half_open, file.max_half_open);
    prefer(cli.new_flow_rate, file.new_flow_rate);
    prefer(cli.forward, file.forward);
    prefer(cli.guest_api, file.guest_api);

    auto bad = [&](const Given& g, const std::string& problem) {
        return bad_value(err, g.where, g.text, problem);
    };

    if (cli.subnet) {
        const auto cidr = parse_cidr(cli.subnet->text);
        if (!cidr) return bad(*cli.subnet, "is not a subnet in CIDR form (a.b.c.d/len, len 0..32)");
        cfg.subnet = cidr->first;
        cfg.prefix_len = cidr->second;
    }
    if (cli.gateway) {
        const auto a = Ipv4Addr::parse(cli.gateway->text);
        if (!a) return bad(*cli.gateway, "is not an IPv4 address");
        cfg.gateway = *a;
    }
    if (cli.no_host_alias) cfg.no_host_alias = cli.no_host_alias->value;
    if (cli.host_alias && !cfg.no_host_alias) {
        const auto a = Ipv4Addr::parse(cli.host_alias->text);
        if (!a) return bad(*cli.host_alias, "is not an IPv4 address");
        cfg.host_alias = *a;
    }
    if (cli.mtu) {
        const auto v = parse_bounded(cli.mtu->text, kMinMtu, kMaxMtu);
        if (!v)
            return bad(*cli.mtu, "is not an MTU (an integer from " + std::to_string(kMinMtu) +
                                     " to " + std::to_string(kMaxMtu) + ")");
        cfg.mtu = static_cast<std::uint32_t>(*v);
    }
    if (cli.log_level) {
        const auto lv = log::parse_level(cli.log_level->text);
        if (!lv)
            return bad(*cli.log_level,
                       "is not a log level (trace|debug|info|warn|error|critical|off)");
        cfg.log_level = *lv;
        cfg.log_level_name = cli.log_level->text;
    }
    auto path = [&](const std::optional<Given>& g, std::string& out) {
        if (!g) return true;
        if (g->text.empty()) {
            err = g->where + ": empty path";
            return false;
        }
        out = g->text;
        return true;
    };
    if (!path(cli.api, cfg.api) || !path(cli.pcap, cfg.pcap) || !path(cli.pid_file, cfg.pid_file))
        return false;
    if (cli.isolate) cfg.isolate = cli.isolate->value;
    if (cli.no_mac_lock) cfg.no_mac_lock = cli.no_mac_lock->value;
    if (cli.attach) {
        for (const auto& spec : cli.attach->values) {
            if (spec.empty()) {
                err = cli.attach->where + ": empty attachment spec";
                return false;
            }
        }
        cfg.attach = cli.attach->values;
    }
    if (!dhcp_options(cli, cfg, err)) return false;
    if (!dns_options(cli, cfg, err)) return false;
    if (!nat_options(cli, cfg, err)) return false;
    return true;
}

}  // namespace

ParseOutcome parse_command_line(int argc, const char* const* argv) {
    ParseOutcome outcome;

    CLI::App app{
        "slipwayd: userspace network for VMs and network namespaces (NAT, DHCP, DNS, switch).\n"
        "Every flag may also be set in the --config TOML file under its long name without the\n"
        "dashes (subnet = \"10.0.0.0/24\", attach = [\"qemu:/run/vm.sock\"], isolate = true);\n"
        "the command line wins over the file.",
        "slipwayd"};
    app.set_version_flag("--version", std::string("slipwayd ") + SLIPWAY_VERSION,
                         "Print the version and exit");
    app.set_help_flag("-h,--help", "Print this help and exit");
    app.footer(
        "Exit status: 0 after SIGTERM or SIGINT; 1 when start-up or running fails (e.g. a socket\n"
        "that cannot be bound); 2 for a bad flag or value (one line on stderr names it).");

    std::string subnet, gateway, host_alias, mtu, api, pcap, pid_file, log_level, config_file;
    std::vector<std::string> attach;
    bool no_host_alias = false, isolate = false, no_mac_lock = false;

    auto* o_subnet =
        app.add_option("--subnet", subnet, "IPv4 subnet of the network (default 192.168.127.0/24)")
            ->type_name("CIDR");
    auto* o_gateway =
        app.add_option("--gateway", gateway,
                       "Gateway (and DNS) address, inside the subnet (default: .1, the first "
                       "host of the subnet)")
            ->type_name("IP");
    auto* o_host_alias =
        app.add_option("--host-alias", host_alias,
                       "Address in the subnet that reaches the host's 127.0.0.1 (default: .254 "
                       "of the subnet)")
            ->type_name("IP");
    auto* o_no_host_alias = app.add_flag("--no-host-alias", no_host_alias,
                                         "No host-loopback alias address (default: off)");
    o_host_alias->excludes(o_no_host_alias);
    auto* o_mtu = app.add_option("--mtu", mtu,
                                 "IP MTU offered to guests, " + std::to_string(kMinMtu) + ".." +
                                     std::to_string(kMaxMtu) + " (default 1500)")
                      ->type_name("N");
    auto* o_attach =
        app.add_option("--attach", attach,
                       "Guest attachment, repeatable: netns:PATH[,ifname=NAME] (TAP in a network "
                       "namespace), qemu:PATH (QEMU -netdev stream socket), vfkit:PATH (vfkit/"
                       "krunkit unixgram socket), vhost-user:PATH (vhost-user-net socket for "
                       "QEMU/cloud-hypervisor) (default: none)")
            ->type_name("SPEC")
            ->allow_extra_args(false);
    auto* o_isolate = app.add_flag("--isolate", isolate,
                                   "Guests reach only the gateway, not each other (default: off)");
    auto* o_no_mac_lock = app.add_flag(
        "--no-mac-lock", no_mac_lock,
        "Let guests change their source MAC (default: a guest port is locked to the first MAC "
        "it sends from)");
    auto* o_api = app.add_option("--api", api,
                                 "Serve the HTTP API on this unix socket, mode 0600: slipway's "
                                 "/v1/... (status, stats, ports, forwards, leases, flows, dns), "
                                 "Prometheus /metrics, and gvproxy's /services/..., /leases and "
                                 "/stats (default: no API)")
                      ->type_name("PATH");
    auto* o_pcap = app.add_option("--pcap", pcap,
                                  "Write every switched frame to this pcap file (default: none)")
                       ->type_name("FILE");
    auto* o_pid_file =
        app.add_option("--pid-file", pid_file,
                       "Write the process id to this file, removed on exit (default: none)")
            ->type_name("FILE");
    auto* o_log_level = app.add_option("--log-level", log_level,
                                       "trace|debug|info|warn|error|critical|off (default info)")
                            ->type_name("LEVEL");
    std::string dhcp_range, lease_time, domain, search, lease_file;
    std::vector<std::string> dhcp_static;
    bool no_dhcp = false;
    auto* o_no_dhcp = app.add_flag("--no-dhcp", no_dhcp, "No DHCP server (default: on)");
    auto* o_dhcp_range =
        app.add_option("--dhcp-range", dhcp_range,
                       "Addresses DHCP hands out, FIRST-LAST inside the subnet (default: .2-.253, "
                       "every host address but the gateway and the host alias)")
            ->type_name("A-B");
    auto* o_dhcp_static =
        app.add_option("--dhcp-static", dhcp_static,
                       "Static lease, repeatable: MAC=IP[,hostname] (default: none)")
            ->type_name("MAC=IP[,NAME]")
            ->allow_extra_args(false);
    auto* o_lease_time =
        app.add_option("--lease-time", lease_time, "DHCP lease time in seconds (default 3600)")
            ->type_name("S");
    auto* o_domain = app.add_option("--domain", domain,
                                    "Domain name given to guests (option 15); their host names "
                                    "resolve under it (default: none)")
                         ->type_name("NAME");
    auto* o_search =
        app.add_option("--search", search, "DNS search list given to guests, D1,D2 (default: none)")
            ->type_name("LIST");
    auto* o_lease_file =
        app.add_option("--lease-file", lease_file,
                       "Keep DHCP leases in this file across restarts (default: in memory)")
            ->type_name("FILE");
    std::string resolv_conf, dns_cache_entries, dns_cache_bytes;
    std::vector<std::string> dns_upstream, dns_record;
    bool no_dns = false;
    auto* o_no_dns =
        app.add_flag("--no-dns", no_dns, "No DNS forwarder at the gateway address (default: on)");
    auto* o_dns_upstream =
        app.add_option("--dns-upstream", dns_upstream,
                       "Upstream resolver, repeatable: ADDR[:PORT] or [IPV6]:PORT; the fastest "
                       "answer wins (default: the nameservers of --resolv-conf)")
            ->type_name("ADDR")
            ->allow_extra_args(false);
    auto* o_resolv_conf =
        app.add_option("--resolv-conf", resolv_conf,
                       "Where to read upstream nameservers when no --dns-upstream is given; "
                       "re-read when it changes (default /etc/resolv.conf)")
            ->type_name("FILE");
    auto* o_dns_record =
        app.add_option("--dns-record", dns_record,
                       "Local A record answered by the forwarder, repeatable: NAME=IPV4 "
                       "(default: none besides host./gateway.slipway.internal and friends)")
            ->type_name("NAME=IP")
            ->allow_extra_args(false);
    auto* o_dns_cache_entries =
        app.add_option("--dns-cache-entries", dns_cache_entries,
                       "DNS cache size in answers, 0 for no cache (default 4096)")
            ->type_name("N");
    auto* o_dns_cache_bytes = app.add_option("--dns-cache-bytes", dns_cache_bytes,
                                             "DNS cache size in bytes (default 4194304)")
                                  ->type_name("N");
    std::string max_flows, connect_timeout, tcp_idle_timeout;
    bool no_peek_off = false;
    auto* o_max_flows =
        app.add_option("--max-flows", max_flows,
                       "NAT flows at once; clamped to what RLIMIT_NOFILE allows, logged "
                       "(default 65536)")
            ->type_name("N");
    auto* o_no_peek_off = app.add_flag(
        "--no-peek-off", no_peek_off,
        "Read host data with a discard iovec even where the kernel has SO_PEEK_OFF (default: "
        "SO_PEEK_OFF when present)");
    auto* o_connect_timeout =
        app.add_option("--connect-timeout", connect_timeout,
                       "Seconds a guest's TCP connect may take before it gets a RST (default 30)")
            ->type_name("S");
    auto* o_tcp_idle_timeout =
        app.add_option("--tcp-idle-timeout", tcp_idle_timeout,
                       "Seconds an established TCP flow may stay silent before both sides are "
                       "reset (default 7200)")
            ->type_name("S");
    std::string udp_timeout, udp_dns_timeout, icmp, host_alias_ports, max_flows_per_guest,
        max_half_open, new_flow_rate;
    auto* o_udp_timeout =
        app.add_option("--udp-timeout", udp_timeout,
                       "Seconds a NAT UDP flow may stay idle before it is freed, 1..86400 "
                       "(default 180)")
            ->type_name("S");
    auto* o_udp_dns_timeout =
        app.add_option("--udp-dns-timeout", udp_dns_timeout,
                       "Idle timeout of UDP flows to ports 53 and 123 (request/response), in "
                       "seconds, 1..3600 (default 10)")
            ->type_name("S");
    auto* o_icmp =
        app.add_option("--icmp", icmp,
                       "ICMP echo through the NAT: auto|ping|raw|gateway (default auto: "
                       "unprivileged ping sockets if net.ipv4.ping_group_range allows, else a raw "
                       "socket with CAP_NET_RAW, else only the gateway answers; logged at start)")
            ->type_name("MODE");
    // --allow and --deny make one list in command-line order (first match wins), so each
    // occurrence is recorded as it is parsed rather than per flag.
    std::vector<GivenRule> egress;
    auto rule_flag = [&app, &egress](const std::string& flag, const std::string& verb,
                                     const std::string& help) {
        return app
            .add_option_function<std::string>(
                flag,
                [&egress, flag, verb](const std::string& rule) {
                    egress.push_back(GivenRule{verb + " " + rule, flag});
                },
                help)
            ->type_name("RULE")
            ->trigger_on_parse();
    };
    rule_flag("--allow", "allow",
              "Egress rule, repeatable: let guests open flows to CIDR[:PORTS][/PROTO] (e.g. "
              "10.0.0.0/8, 203.0.113.7:22/tcp, 0.0.0.0/0:53/udp). --allow and --deny apply in "
              "command-line order, first match wins, then a built-in deny of 169.254.169.254, "
              "then allow (default: none)");
    rule_flag("--deny", "deny",
              "Egress rule, repeatable: refuse new flows to CIDR[:PORTS][/PROTO] (TCP with a "
              "RST, UDP and ICMP with an ICMP 'administratively prohibited'), ordered with "
              "--allow as above (default: none); in the config file both are one array, egress "
              "= [\"deny RULE\", \"allow RULE\"], replaced as a whole by any --allow/--deny");
    auto* o_host_alias_ports =
        app.add_option("--host-alias-ports", host_alias_ports,
                       "Host-loopback ports the host alias exposes, TCP and UDP, e.g. "
                       "22,8000-8100 (default: all ports)")
            ->type_name("LIST");
    auto* o_max_flows_per_guest =
        app.add_option("--max-flows-per-guest", max_flows_per_guest,
                       "NAT flows per guest address, 0..16777216 (default 0: no cap beyond "
                       "--max-flows)")
            ->type_name("N");
    auto* o_max_half_open =
        app.add_option("--max-half-open", max_half_open,
                       "TCP connections per guest still connecting; extra SYNs are dropped (the "
                       "guest retransmits), 0..16777216, 0 for no cap (default 4096)")
            ->type_name("N");
    auto* o_new_flow_rate =
        app.add_option("--new-flow-rate", new_flow_rate,
                       "New NAT flows per second per guest (token bucket, one second deep); extra "
                       "first packets are dropped, 0..10000000 (default 0: unlimited)")
            ->type_name("N");
    std::vector<std::string> forward;
    bool guest_api = false;
    auto* o_forward =
        app.add_option("--forward", forward,
                       "Port forward, repeatable: [tcp:|udp:][HOSTADDR:]HOSTPORT[-END]=GUESTADDR:"
                       "GUESTPORT[-END], e.g. tcp:8080=192.168.127.2:80, udp:0.0.0.0:5353="
                       "192.168.127.2:53, tcp:[::1]:2222=192.168.127.2:22. HOSTADDR defaults to "
                       "127.0.0.1; clients not on host loopback reach the guest with their own "
                       "address (default: none; more can be added through the API)")
            ->type_name("RULE")
            ->allow_extra_args(false);
    auto* o_guest_api = app.add_flag(
        "--guest-api", guest_api,
        "Serve gvproxy's forwarder API (/services/forwarder/{all,expose,unexpose}) to guests at "
        "the gateway's port 80, as gvproxy does; works with or without --api (default: off)");
    auto* o_config = app.add_option("--config", config_file,
                                    "TOML file with any of the flags above as keys (default: none)")
                         ->type_name("FILE");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        outcome.out = app.help();
        outcome.exit_code = 0;
        return outcome;
    } catch (const CLI::CallForVersion& e) {
        outcome.out = std::string(e.what()) + "\n";
        outcome.exit_code = 0;
        return outcome;
    } catch (const CLI::ParseError& e) {
        outcome.err = "slipwayd: " + slipway::apps::one_line(e.what()) + " (see --help)";
        outcome.exit_code = kExitUsage;
        return outcome;
    }

    Raw cli;
    auto given = [](CLI::Option* o, const std::string& v, std::optional<Given>& slot) {
        if (o->count() > 0) slot = Given{v, o->get_name()};
    };
    auto given_bool = [](CLI::Option* o, bool v, std::optional<GivenBool>& slot) {
        if (o->count() > 0) slot = GivenBool{v, o->get_name()};
    };
    given(o_subnet, subnet, cli.subnet);
    given(o_gateway, gateway, cli.gateway);
    given(o_host_alias, host_alias, cli.host_alias);
    given(o_mtu, mtu, cli.mtu);
    given(o_api, api, cli.api);
    given(o_pcap, pcap, cli.pcap);
    given(o_pid_file, pid_file, cli.pid_file);
    given(o_log_level, log_level, cli.log_level);
    given_bool(o_no_host_alias, no_host_alias, cli.no_host_alias);
    given_bool(o_isolate, isolate, cli.isolate);
    given_bool(o_no_mac_lock, no_mac_lock, cli.no_mac_lock);
    if (o_attach->count() > 0) cli.attach = GivenList{attach, o_attach->get_name()};
    given_bool(o_no_dhcp, no_dhcp, cli.no_dhcp);
    given(o_dhcp_range, dhcp_range, cli.dhcp_range);
    if (o_dhcp_static->count() > 0)
        cli.dhcp_static = GivenList{dhcp_static, o_dhcp_static->get_name()};
    given(o_lease_time, lease_time, cli.lease_time);
    given(o_domain, domain, cli.domain);
    if (o_search->count() > 0) cli.search = GivenList{{search}, o_search->get_name()};
    given(o_lease_file, lease_file, cli.lease_file);
    given_bool(o_no_dns, no_dns, cli.no_dns);
    if (o_dns_upstream->count() > 0)
        cli.dns_upstream = GivenList{dns_upstream, o_dns_upstream->get_name()};
    if (o_dns_record->count() > 0) cli.dns_record = GivenList{dns_record, o_dns_record->get_name()};
    given(o_resolv_conf, resolv_conf, cli.resolv_conf);
    given(o_dns_cache_entries, dns_cache_entries, cli.dns_cache_entries);
    given(o_dns_cache_bytes, dns_cache_bytes, cli.dns_cache_bytes);
    given(o_max_flows, max_flows, cli.max_flows);
    given(o_connect_timeout, connect_timeout, cli.connect_timeout);
    given(o_tcp_idle_timeout, tcp_idle_timeout, cli.tcp_idle_timeout);
    given_bool(o_no_peek_off, no_peek_off, cli.no_peek_off);
    given(o_udp_timeout, udp_timeout, cli.udp_timeout);
    given(o_udp_dns_timeout, udp_dns_timeout, cli.udp_dns_timeout);
    given(o_icmp, icmp, cli.icmp);
    if (!egress.empty()) cli.egress = GivenRules{std::move(egress)};
    given(o_host_alias_ports, host_alias_ports, cli.host_alias_ports);
    given(o_max_flows_per_guest, max_flows_per_guest, cli.max_flows_per_guest);
    given(o_max_half_open, max_half_open, cli.max_half_open);
    given(o_new_flow_rate, new_flow_rate, cli.new_flow_rate);
    if (o_forward->count() > 0) cli.forward = GivenList{forward, o_forward->get_name()};
    given_bool(o_guest_api, guest_api, cli.guest_api);

    DaemonConfig cfg;
    Raw file;
    std::string err;
    if (o_config->count() > 0 && config_file.empty()) {
        outcome.err = "slipwayd: --config: empty path";
        outcome.exit_code = kExitUsage;
        return outcome;
    }
    if (!config_file.empty()) {
        cfg.config_file = config_file;
        if (!read_config_file(config_file, file, err)) {
            outcome.err = "slipwayd: " + err;
            outcome.exit_code = kExitUsage;
            return outcome;
        }
    }
    if (!merge_and_validate(std::move(cli), file, cfg, err)) {
        outcome.err = "slipwayd: " + err;
        outcome.exit_code = kExitUsage;
        return outcome;
    }
    outcome.config = std::move(cfg);
    return outcome;
}

}  // namespace slipway::apps
