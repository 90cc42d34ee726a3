// slipwayd configuration: defaults, flags, the TOML file, precedence and error messages.
#include "slipwayd/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace slipway::apps {
namespace {

ParseOutcome parse(std::initializer_list<std::string> args) {
    std::vector<std::string> owned{"slipwayd"};
    owned.insert(owned.end(), args.begin(), args.end());
    std::vector<const char*> argv;
    for (const auto& a : owned)
        argv.push_back(a.c_str());
    return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

Ipv4Addr ip(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return Ipv4Addr::from_octets(a, b, c, d);
}

// A TOML file in a private temporary directory, removed with the test.
class TempToml {
  public:
    explicit TempToml(const std::string& content) {
        char dir[] = "/tmp/slipway-config-test-XXXXXX";
        EXPECT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        path_ = dir_ + "/slipwayd.toml";
        std::ofstream(path_) << content;
    }
    ~TempToml() {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    [[nodiscard]] const std::string& path() const { return path_; }

  private:
    std::string dir_;
    std::string path_;
};

void expect_usage_error(const ParseOutcome& out, std::initializer_list<std::string> needles) {
    EXPECT_FALSE(out.config.has_value());
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_EQ(out.err.find('\n'), std::string::npos) << out.err;
    EXPECT_EQ(out.err.rfind("slipwayd: ", 0), 0u) << out.err;
    for (const auto& n : needles)
        EXPECT_NE(out.err.find(n), std::string::npos) << "'" << n << "' not in: " << out.err;
}

TEST(Config, Defaults) {
    const auto out = parse({});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    const DaemonConfig& c = *out.config;
    EXPECT_EQ(c.subnet, ip(192, 168, 127, 0));
    EXPECT_EQ(c.prefix_len, 24);
    EXPECT_FALSE(c.gateway.has_value());
    EXPECT_FALSE(c.host_alias.has_value());
    EXPECT_FALSE(c.no_host_alias);
    EXPECT_EQ(c.mtu, 1500u);
    EXPECT_TRUE(c.attach.empty());
    EXPECT_FALSE(c.isolate);
    EXPECT_FALSE(c.no_mac_lock);
    EXPECT_TRUE(c.api.empty());
    EXPECT_TRUE(c.pcap.empty());
    EXPECT_TRUE(c.pid_file.empty());
    EXPECT_EQ(c.log_level, spdlog::level::info);
    EXPECT_TRUE(out.err.empty());
}

TEST(Config, EveryFlag) {
    const auto out = parse({"--subnet",     "10.0.2.0/24",
                            "--gateway",    "10.0.2.2",
                            "--host-alias", "10.0.2.3",
                            "--mtu",        "9000",
                            "--attach",     "qemu:/tmp/a.sock",
                            "--attach",     "netns:/run/netns/g,ifname=slw0",
                            "--isolate",    "--no-mac-lock",
                            "--api",        "/tmp/api.sock",
                            "--pcap",       "/tmp/x.pcap",
                            "--pid-file",   "/tmp/x.pid",
                            "--log-level",  "debug"});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    const DaemonConfig& c = *out.config;
    EXPECT_EQ(c.subnet, ip(10, 0, 2, 0));
    EXPECT_EQ(c.prefix_len, 24);
    EXPECT_EQ(c.gateway, ip(10, 0, 2, 2));
    EXPECT_EQ(c.host_alias, ip(10, 0, 2, 3));
    EXPECT_EQ(c.mtu, 9000u);
    EXPECT_EQ(c.attach,
              (std::vector<std::string>{"qemu:/tmp/a.sock", "netns:/run/netns/g,ifname=slw0"}));
    EXPECT_TRUE(c.isolate);
    EXPECT_TRUE(c.no_mac_lock);
    EXPECT_EQ(c.api, "/tmp/api.sock");
    EXPECT_EQ(c.pcap, "/tmp/x.pcap");
    EXPECT_EQ(c.pid_file, "/tmp/x.pid");
    EXPECT_EQ(c.log_level, spdlog::level::debug);
}

TEST(Config, EqualsFormAndNoHostAlias) {
    const auto out = parse({"--subnet=172.16.0.0/12", "--no-host-alias", "--mtu=576"});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    EXPECT_EQ(out.config->prefix_len, 12);
    EXPECT_TRUE(out.config->no_host_alias);
    EXPECT_FALSE(out.config->host_alias.has_value());
    EXPECT_EQ(out.config->mtu, 576u);
    EXPECT_TRUE(parse({"--mtu", "65520"}).config.has_value());
}

TEST(Config, HelpListsEveryFlagWithDefaults) {
    const auto out = parse({"--help"});
    EXPECT_FALSE(out.config.has_value());
    EXPECT_EQ(out.exit_code, 0);
    for (const char* s : {"--subnet",
                          "--gateway",
                          "--host-alias",
                          "--no-host-alias",
                          "--mtu",
                          "--attach",
                          "--isolate",
                          "--no-mac-lock",
                          "--api",
                          "--pcap",
                          "--pid-file",
                          "--log-level",
                          "--config",
                          "--version",
                          "--help",
                          "192.168.127.0/24",
                          "default 1500",
                          "default info",
                          "576..65520",
                          "--no-dhcp",
                          "--dhcp-range",
                          "--dhcp-static",
                          "--dns-upstream",
                          "--no-dns",
                          "--dns-record",
                          "--resolv-conf",
                          "--dns-cache-entries",
                          "--dns-cache-bytes",
                          "--lease-time",
                          "--domain",
                          "--search",
                          "--lease-file",
                          "--max-flows",
                          "--no-peek-off",
                          "--connect-timeout",
                          "--tcp-idle-timeout",
                          "--udp-timeout",
                          "--udp-dns-timeout",
                          "--icmp",
                          "auto|ping|raw|gateway",
                          "--allow",
                          "--deny",
                          "CIDR[:PORTS][/PROTO]",
                          "169.254.169.254",
                          "--host-alias-ports",
                          "--max-flows-per-guest",
                          "--max-half-open",
                          "--new-flow-rate",
                          "default 180",
                          "1..86400",
                          "default 10",
                          "1..3600",
                          "default 4096",
                          "0..10000000",
                          "default 65536",
                          "default 3600"})
        EXPECT_NE(out.out.find(s), std::string::npos) << s;
}

TEST(Config, Version) {
    const auto out = parse({"--version"});
    EXPECT_FALSE(out.config.has_value());
    EXPECT_EQ(out.exit_code, 0);
    EXPECT_EQ(out.out.rfind("slipwayd ", 0), 0u) << out.out;
}

TEST(Config, BadFlagsAndValues) {
    expect_usage_error(parse({"--bogus"}), {"--bogus"});
    expect_usage_error(parse({"stray"}), {"stray"});
    expect_usage_error(parse({"--subnet"}), {"--subnet"});
    expect_usage_error(parse({"--subnet", "10.0.0.0/33"}), {"--subnet", "10.0.0.0/33", "CIDR"});
    expect_usage_error(parse({"--subnet", "10.0.0.0"}), {"--subnet", "10.0.0.0"});
    expect_usage_error(parse({"--subnet", "10.0.0/24"}), {"--subnet"});
    expect_usage_error(parse({"--gateway", "10.0.0.300"}), {"--gateway", "10.0.0.300"});
    expect_usage_error(parse({"--host-alias", "x"}), {"--host-alias", "'x'"});
    expect_usage_error(parse({"--mtu", "575"}), {"--mtu", "575", "576", "65520"});
    expect_usage_error(parse({"--mtu", "65521"}), {"--mtu", "65521"});
    expect_usage_error(parse({"--mtu", "15OO"}), {"--mtu", "15OO"});
    expect_usage_error(parse({"--mtu", "-1"}), {"--mtu"});
    expect_usage_error(parse({"--log-level", "loud"}), {"--log-level", "loud", "trace"});
    expect_usage_error(parse({"--host-alias", "192.168.127.9", "--no-host-alias"}),
                       {"--host-alias", "--no-host-alias"});
    expect_usage_error(parse({"--api", ""}), {"--api", "empty"});
    expect_usage_error(parse({"--attach", ""}), {"--attach", "empty"});
    expect_usage_error(parse({"--config", ""}), {"--config", "empty"});
}

TEST(Config, TomlFile) {
    TempToml f(R"(# a comment
subnet = "10.9.0.0/16"
gateway = "10.9.0.1"
host-alias = "10.9.255.254"
mtu = 4000
attach = ["qemu:/tmp/a.sock", "vfkit:/tmp/b.sock"]
isolate = true
no-mac-lock = true
api = "/tmp/api.sock"
pcap = "/tmp/cap.pcap"
pid-file = "/tmp/d.pid"
log-level = "warn"
)");
    const auto out = parse({"--config", f.path()});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    const DaemonConfig& c = *out.config;
    EXPECT_EQ(c.subnet, ip(10, 9, 0, 0));
    EXPECT_EQ(c.prefix_len, 16);
    EXPECT_EQ(c.gateway, ip(10, 9, 0, 1));
    EXPECT_EQ(c.host_alias, ip(10, 9, 255, 254));
    EXPECT_EQ(c.mtu, 4000u);
    EXPECT_EQ(c.attach, (std::vector<std::string>{"qemu:/tmp/a.sock", "vfkit:/tmp/b.sock"}));
    EXPECT_TRUE(c.isolate);
    EXPECT_TRUE(c.no_mac_lock);
    EXPECT_EQ(c.api, "/tmp/api.sock");
    EXPECT_EQ(c.pcap, "/tmp/cap.pcap");
    EXPECT_EQ(c.pid_file, "/tmp/d.pid");
    EXPECT_EQ(c.log_level, spdlog::level::warn);
    EXPECT_EQ(c.config_file, f.path());
}

TEST(Config, CommandLineWinsOverFile) {
    TempToml f(R"(subnet = "10.9.0.0/16"
mtu = 4000
attach = ["qemu:/tmp/a.sock", "qemu:/tmp/b.sock"]
log-level = "error"
isolate = true
)");
    // Flags before and after --config: position does not matter, the command line wins.
    const auto out = parse({"--subnet", "10.1.0.0/24", "--config", f.path(), "--attach",
                            "vfkit:/tmp/c.sock", "--log-level", "trace"});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    const DaemonConfig& c = *out.config;
    EXPECT_EQ(c.subnet, ip(10, 1, 0, 0));
    EXPECT_EQ(c.prefix_len, 24);
    EXPECT_EQ(c.mtu, 4000u);                                               // only in the file
    EXPECT_EQ(c.attach, (std::vector<std::string>{"vfkit:/tmp/c.sock"}));  // list replaced
    EXPECT_EQ(c.log_level, spdlog::level::trace);
    EXPECT_TRUE(c.isolate);
}

TEST(Config, HostAliasChoiceOnCommandLineReplacesFiles) {
    TempToml no_alias("no-host-alias = true\n");
    auto out = parse({"--config", no_alias.path(), "--host-alias", "192.168.127.200"});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    EXPECT_FALSE(out.config->no_host_alias);
    EXPECT_EQ(out.config->host_alias, ip(192, 168, 127, 200));

    TempToml alias("host-alias = \"192.168.127.200\"\n");
    out = parse({"--config", alias.path(), "--no-host-alias"});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    EXPECT_TRUE(out.config->no_host_alias);
    EXPECT_FALSE(out.config->host_alias.has_value());

    out = parse({"--config", no_alias.path()});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    EXPECT_TRUE(out.config->no_host_alias);

    TempToml both("host-alias = \"192.168.127.200\"\nno-host-alias = true\n");
    expect_usage_error(parse({"--config", both.path()}),
                       {both.path(), "host-alias", "no-host-alias"});
}

TEST(Config, SingleStringAttachInFile) {
    TempToml f("attach = \"qemu:/tmp/one.sock\"\n");
    const auto out = parse({"--config", f.path()});
    ASSERT_TRUE(out.config.has_value()) << out.err;
    EXPECT_EQ(out.config->attach, (std::vector<std::string>{"qemu:/tmp/one.sock"}));
}

TEST(Config, FileErrors) {
    {
        TempToml f("subnet = \"10.0.0.0/24\"\nbogus-key = 1\n");
        expect_usage_error(parse({"--config", f.path()}), {"--config", f.path(), "bogus-key"});
    }
    {
        TempToml f("[extra]\nsubnet = \"10.0.0.0/24\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"unknown key 'extra'"});
    }
    {
        TempToml f("config = \"/etc/other.toml\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"unknown key 'config'"});
    }
    {
        TempToml f("mtu = \"big\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"'mtu'", "integer"});
    }
    {
        TempToml f("mtu = 70000\n");
        expect_usage_error(parse({"--config", f.path()}), {"mtu in " + f.path(), "70000"});
    }
    {
        TempToml f("subnet = \"nope\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"subnet in " + f.path(), "nope"});
    }
    {
        TempToml f("isolate = \"yes\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"'isolate'", "true or false"});
    }
    {
        TempToml f("attach = [\"qemu:/a\", 3]\n");
        expect_usage_error(parse({"--config", f.path()}), {"'attach'", "array of strings"});
    }
    {
        TempToml f("subnet = \"10.0.0.0/24\"\nmtu = = 3\n");
        expect_usage_error(parse({"--config", f.path()}), {f.path(), "line 2"});
    }
    {
        TempToml f("log-level = \"chatty\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"log-level in", "chatty"});
    }
    // A bad value in the file does not matter when the command line replaces it.
    {
        TempToml f("mtu = 70000\n");
        EXPECT_TRUE(parse({"--config", f.path(), "--mtu", "1400"}).config.has_value());
    }
    expect_usage_error(parse({"--config", "/nonexistent/slipwayd.toml"}),
                       {"--config /nonexistent/slipwayd.toml", "cannot read"});
    // A directory is not a config file (libstdc++ would read it as empty).
    expect_usage_error(parse({"--config", "/tmp"}), {"--config /tmp", "not a regular file"});
}

TEST(Config, ParseCidr) {
    const auto a = parse_cidr("192.168.127.0/24");
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->first, ip(192, 168, 127, 0));
    EXPECT_EQ(a->second, 24);
    EXPECT_TRUE(parse_cidr("0.0.0.0/0").has_value());
    EXPECT_TRUE(parse_cidr("10.0.0.1/32").has_value());
    EXPECT_FALSE(parse_cidr("10.0.0.0/33").has_value());
    EXPECT_FALSE(parse_cidr("10.0.0.0/").has_value());
    EXPECT_FALSE(parse_cidr("10.0.0.0/2x").has_value());
    EXPECT_FALSE(parse_cidr("10.0.0.0/+8").has_value());
    EXPECT_FALSE(parse_cidr("/24").has_value());
    EXPECT_FALSE(parse_cidr("10.0.0.0").has_value());
}

}  // namespace
}  // namespace slipway::apps

namespace slipway::apps {
namespace {

TEST(Config, DhcpFlags) {
    auto o = parse({"--dhcp-range", "192.168.127.10-192.168.127.20", "--dhcp-static",
                    "52:54:00:00:00:01=192.168.127.5,Web", "--dhcp-static",
                    "52:54:00:00:00:02=192.168.127.6", "--lease-time", "600", "--domain", "vm.test",
                    "--search", "vm.test,example.org", "--lease-file", "/tmp/l"});
    ASSERT_TRUE(o.config) << o.err;
    const DaemonConfig& c = *o.config;
    ASSERT_TRUE(c.dhcp_range);
    EXPECT_EQ(c.dhcp_range->first, Ipv4Addr::from_octets(192, 168, 127, 10));
    ASSERT_EQ(c.dhcp_static.size(), 2u);
    EXPECT_EQ(c.dhcp_static[0].hostname, "web");
    EXPECT_EQ(c.lease_time_s, 600u);
    EXPECT_EQ(c.domain, "vm.test");
    EXPECT_EQ(c.search, (std::vector<std::string>{"vm.test", "example.org"}));
    EXPECT_EQ(c.lease_file, "/tmp/l");
    EXPECT_FALSE(c.no_dhcp);
    EXPECT_TRUE(parse({"--no-dhcp"}).config->no_dhcp);

    expect_usage_error(parse({"--dhcp-range", "192.168.127.10"}), {"--dhcp-range", "FIRST-LAST"});
    expect_usage_error(parse({"--dhcp-static", "52:54:00:00:00:01"}), {"--dhcp-static"});
    expect_usage_error(parse({"--lease-time", "5"}), {"--lease-time", "60 to"});
    expect_usage_error(parse({"--domain", "a..b"}), {"--domain"});
    expect_usage_error(parse({"--search", "ok.test,,x"}), {"--search"});
    expect_usage_error(parse({"--lease-file", ""}), {"--lease-file", "empty"});
}

TEST(Config, DhcpKeysInTheFile) {
    TempToml f(R"(search = ["a.test", "b.test"]
dhcp-static = ["52:54:00:00:00:01=10.0.0.5"]
lease-time = 120
no-dhcp = false
domain = "file.test"
)");
    auto o = parse({"--config", f.path(), "--domain", "cli.test"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->search, (std::vector<std::string>{"a.test", "b.test"}));
    EXPECT_EQ(o.config->dhcp_static.size(), 1u);
    EXPECT_EQ(o.config->lease_time_s, 120u);
    EXPECT_EQ(o.config->domain, "cli.test");  // the command line wins
    TempToml bad("lease-time = \"long\"\n");
    expect_usage_error(parse({"--config", bad.path()}), {"lease-time", "integer"});
}

TEST(Config, DnsFlags) {
    auto o = parse({"--dns-upstream", "192.0.2.53", "--dns-upstream", "[2001:db8::53]:5353",
                    "--dns-record", "build.example=10.0.0.9", "--resolv-conf", "/tmp/r.conf",
                    "--dns-cache-entries", "0", "--dns-cache-bytes", "65536"});
    ASSERT_TRUE(o.config) << o.err;
    const DaemonConfig& c = *o.config;
    EXPECT_EQ(c.dns_upstreams, (std::vector<std::string>{"192.0.2.53", "[2001:db8::53]:5353"}));
    ASSERT_EQ(c.dns_records.size(), 1u);
    EXPECT_EQ(c.dns_records[0].first, "build.example");
    EXPECT_EQ(c.dns_records[0].second, ip(10, 0, 0, 9));
    EXPECT_EQ(c.resolv_conf, "/tmp/r.conf");
    EXPECT_EQ(c.dns_cache_entries, 0u);
    EXPECT_EQ(c.dns_cache_bytes, 65536u);
    const DaemonConfig d = *parse({}).config;
    EXPECT_FALSE(d.no_dns);
    EXPECT_EQ(d.resolv_conf, "/etc/resolv.conf");
    EXPECT_EQ(d.dns_cache_entries, 4096u);
    EXPECT_TRUE(parse({"--no-dns"}).config->no_dns);

    expect_usage_error(parse({"--dns-upstream", "dns.google"}), {"--dns-upstream", "dns.google"});
    expect_usage_error(parse({"--dns-upstream", "192.0.2.1:99999"}), {"--dns-upstream"});
    expect_usage_error(parse({"--dns-record", "noaddress"}), {"--dns-record", "NAME=IPV4"});
    expect_usage_error(parse({"--dns-record", "x..y=1.2.3.4"}), {"--dns-record"});
    expect_usage_error(parse({"--dns-record", "ok.test=1.2.3"}), {"--dns-record"});
    expect_usage_error(parse({"--dns-cache-entries", "100000"}), {"--dns-cache-entries"});
    expect_usage_error(parse({"--dns-cache-bytes", "12"}), {"--dns-cache-bytes"});
    expect_usage_error(parse({"--resolv-conf", ""}), {"--resolv-conf", "empty"});
    expect_usage_error(parse({"--no-dns", "--dns-upstream", "192.0.2.1"}), {"--no-dns"});
}

TEST(Config, DnsKeysInTheFile) {
    TempToml f(R"(dns-upstream = ["192.0.2.1", "192.0.2.2:5353"]
dns-record = "a.test=10.0.0.1"
dns-cache-entries = 16
)");
    auto o = parse({"--config", f.path(), "--dns-upstream", "192.0.2.9"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->dns_upstreams, std::vector<std::string>{"192.0.2.9"});  // CLI wins
    EXPECT_EQ(o.config->dns_records.size(), 1u);
    EXPECT_EQ(o.config->dns_cache_entries, 16u);
    TempToml bad("no-dns = \"yes\"\n");
    expect_usage_error(parse({"--config", bad.path()}), {"no-dns"});
}

TEST(Config, NatFlagsAndKeys) {
    const DaemonConfig d = *parse({}).config;
    EXPECT_EQ(d.max_flows, 65536u);
    EXPECT_FALSE(d.no_peek_off);
    EXPECT_EQ(d.connect_timeout_s, 30u);
    EXPECT_EQ(d.tcp_idle_timeout_s, 7200u);
    auto o = parse({"--max-flows", "1000", "--no-peek-off", "--connect-timeout", "5",
                    "--tcp-idle-timeout", "600"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->max_flows, 1000u);
    EXPECT_TRUE(o.config->no_peek_off);
    EXPECT_EQ(o.config->connect_timeout_s, 5u);
    EXPECT_EQ(o.config->tcp_idle_timeout_s, 600u);
    expect_usage_error(parse({"--max-flows", "0"}), {"--max-flows", "16 to"});
    expect_usage_error(parse({"--max-flows", "lots"}), {"--max-flows"});
    expect_usage_error(parse({"--connect-timeout", "0"}), {"--connect-timeout"});
    expect_usage_error(parse({"--connect-timeout", "601"}), {"--connect-timeout"});
    expect_usage_error(parse({"--tcp-idle-timeout", "5"}), {"--tcp-idle-timeout"});

    TempToml f("max-flows = 4096\nno-peek-off = true\nconnect-timeout = 9\n");
    auto fo = parse({"--config", f.path(), "--max-flows", "2048"});
    ASSERT_TRUE(fo.config) << fo.err;
    EXPECT_EQ(fo.config->max_flows, 2048u);  // the command line wins
    EXPECT_TRUE(fo.config->no_peek_off);
    EXPECT_EQ(fo.config->connect_timeout_s, 9u);
    TempToml bad("max-flows = \"many\"\n");
    expect_usage_error(parse({"--config", bad.path()}), {"max-flows"});
}

TEST(Config, UdpIcmpPolicyAndLimitDefaults) {
    const DaemonConfig d = *parse({}).config;
    EXPECT_EQ(d.udp_timeout_s, 180u);
    EXPECT_EQ(d.udp_dns_timeout_s, 10u);
    EXPECT_EQ(d.icmp_mode, "auto");
    EXPECT_TRUE(d.egress_rules.empty());
    EXPECT_TRUE(d.host_alias_ports.empty());
    EXPECT_EQ(d.max_flows_per_guest, 0u);
    EXPECT_EQ(d.max_half_open, 4096u);
    EXPECT_EQ(d.new_flow_rate, 0u);
    // The daemon's defaults are NetworkOptions' defaults.
    const NetworkOptions n;
    EXPECT_EQ(std::chrono::seconds(d.udp_timeout_s), n.udp_timeout);
    EXPECT_EQ(std::chrono::seconds(d.udp_dns_timeout_s), n.udp_dns_timeout);
    EXPECT_EQ(d.icmp_mode, n.icmp_mode);
    EXPECT_EQ(d.host_alias_ports, n.host_alias_ports);
    EXPECT_EQ(d.max_flows_per_guest, n.max_flows_per_guest);
    EXPECT_EQ(d.max_half_open, n.max_half_open);
    EXPECT_EQ(d.new_flow_rate, n.new_flow_rate);
}

TEST(Config, UdpIcmpPolicyAndLimitFlags) {
    auto o =
        parse({"--udp-timeout", "60", "--udp-dns-timeout", "3", "--icmp", "gateway", "--allow",
               "203.0.113.7:22/tcp", "--host-alias-ports", "22,8000-8100", "--max-flows-per-guest",
               "512", "--max-half-open", "0", "--new-flow-rate", "100"});
    ASSERT_TRUE(o.config) << o.err;
    const DaemonConfig& c = *o.config;
    EXPECT_EQ(c.udp_timeout_s, 60u);
    EXPECT_EQ(c.udp_dns_timeout_s, 3u);
    EXPECT_EQ(c.icmp_mode, "gateway");
    EXPECT_EQ(c.egress_rules, std::vector<std::string>{"allow 203.0.113.7:22/tcp"});
    EXPECT_EQ(c.host_alias_ports, "22,8000-8100");
    EXPECT_EQ(c.max_flows_per_guest, 512u);
    EXPECT_EQ(c.max_half_open, 0u);
    EXPECT_EQ(c.new_flow_rate, 100u);
    for (const char* m : {"auto", "ping", "raw", "gateway"}) {
        auto mo = parse({"--icmp", m});
        ASSERT_TRUE(mo.config) << mo.err;
        EXPECT_EQ(mo.config->icmp_mode, m);
    }
    EXPECT_EQ(parse({"--icmp=raw"}).config->icmp_mode, "raw");
    EXPECT_EQ(parse({"--host-alias-ports", "all"}).config->host_alias_ports, "all");

    // Bounds: each end accepted, one past it rejected, naming the flag and the range.
    EXPECT_TRUE(parse({"--udp-timeout", "1"}).config);
    EXPECT_TRUE(parse({"--udp-timeout", "86400"}).config);
    expect_usage_error(parse({"--udp-timeout", "0"}), {"--udp-timeout", "'0'", "1 to 86400"});
    expect_usage_error(parse({"--udp-timeout", "86401"}), {"--udp-timeout", "86401"});
    expect_usage_error(parse({"--udp-timeout", "3m"}), {"--udp-timeout", "3m"});
    EXPECT_TRUE(parse({"--udp-dns-timeout", "3600"}).config);
    expect_usage_error(parse({"--udp-dns-timeout", "0"}), {"--udp-dns-timeout", "1 to 3600"});
    expect_usage_error(parse({"--udp-dns-timeout", "3601"}), {"--udp-dns-timeout", "3601"});
    EXPECT_TRUE(parse({"--max-flows-per-guest", "16777216"}).config);
    expect_usage_error(parse({"--max-flows-per-guest", "16777217"}),
                       {"--max-flows-per-guest", "0 to 16777216"});
    expect_usage_error(parse({"--max-flows-per-guest", "-1"}), {"--max-flows-per-guest"});
    EXPECT_TRUE(parse({"--max-half-open", "16777216"}).config);
    expect_usage_error(parse({"--max-half-open", "16777217"}),
                       {"--max-half-open", "0 to 16777216"});
    EXPECT_TRUE(parse({"--new-flow-rate", "10000000"}).config);
    expect_usage_error(parse({"--new-flow-rate", "10000001"}),
                       {"--new-flow-rate", "0 to 10000000"});
    expect_usage_error(parse({"--new-flow-rate", "fast"}), {"--new-flow-rate", "fast"});

    expect_usage_error(parse({"--icmp", "echo"}), {"--icmp", "'echo'", "auto|ping|raw|gateway"});
    expect_usage_error(parse({"--icmp", "Ping"}), {"--icmp", "Ping"});
    expect_usage_error(parse({"--icmp", ""}), {"--icmp"});

    expect_usage_error(parse({"--host-alias-ports", "90-80"}),
                       {"--host-alias-ports", "'90-80'", "port list"});
    expect_usage_error(parse({"--host-alias-ports", "0"}), {"--host-alias-ports", "'0'"});
    expect_usage_error(parse({"--host-alias-ports", "22,,80"}), {"--host-alias-ports"});
    expect_usage_error(parse({"--host-alias-ports", ""}), {"--host-alias-ports"});
    expect_usage_error(parse({"--no-host-alias", "--host-alias-ports", "22"}),
                       {"--no-host-alias", "--host-alias-ports"});
}

TEST(Config, BadEgressRulesNameTheFlagAndTheRule) {
    expect_usage_error(parse({"--deny", "10.0.0.1/8"}), {"--deny: ", "'10.0.0.1/8'", "host bits"});
    expect_usage_error(parse({"--allow", "10.0.0.0/8:0"}), {"--allow: ", "'10.0.0.0/8:0'"});
    expect_usage_error(parse({"--allow", "1.2.3.4/udpx"}), {"--allow: ", "'1.2.3.4/udpx'"});
    expect_usage_error(parse({"--deny", "example.com"}), {"--deny: ", "'example.com'"});
    expect_usage_error(parse({"--deny", ""}), {"--deny: ", "empty rule"});
    expect_usage_error(parse({"--deny", "1.2.3.4:22/icmp"}), {"--deny: ", "icmp"});
    // The bad one is named even after good ones of the other flag.
    expect_usage_error(parse({"--allow", "10.0.0.0/8", "--deny", "10.0.0.0/33"}),
                       {"--deny: ", "'10.0.0.0/33'", "0..32"});
    expect_usage_error(parse({"--allow"}), {"--allow"});
}

TEST(Config, AllowAndDenyKeepTheirCommandLineOrder) {
    auto o = parse({"--deny", "10.1.2.3/32", "--allow", "10.1.0.0/16", "--deny=10.0.0.0/8",
                    "--allow", "169.254.169.254/32:80/tcp", "--deny", "0.0.0.0/0:53/udp"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(
        o.config->egress_rules,
        (std::vector<std::string>{"deny 10.1.2.3/32", "allow 10.1.0.0/16", "deny 10.0.0.0/8",
                                  "allow 169.254.169.254/32:80/tcp", "deny 0.0.0.0/0:53/udp"}));
    // Order is kept across other flags in between too.
    o = parse({"--allow", "192.0.2.0/24", "--mtu", "1400", "--deny", "192.0.0.0/8", "--isolate",
               "--allow", "198.51.100.1"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(
        o.config->egress_rules,
        (std::vector<std::string>{"allow 192.0.2.0/24", "deny 192.0.0.0/8", "allow 198.51.100.1"}));
}

TEST(Config, UdpIcmpPolicyAndLimitKeysInTheFile) {
    TempToml f(R"(udp-timeout = 90
udp-dns-timeout = 5
icmp = "ping"
egress = ["deny 10.1.2.3", "allow 10.0.0.0/8:443/tcp", "deny 10.0.0.0/8"]
host-alias-ports = "22"
max-flows-per-guest = 1000
max-half-open = 64
new-flow-rate = 50
)");
    auto o = parse({"--config", f.path()});
    ASSERT_TRUE(o.config) << o.err;
    const DaemonConfig& c = *o.config;
    EXPECT_EQ(c.udp_timeout_s, 90u);
    EXPECT_EQ(c.udp_dns_timeout_s, 5u);
    EXPECT_EQ(c.icmp_mode, "ping");
    EXPECT_EQ(c.egress_rules, (std::vector<std::string>{"deny 10.1.2.3", "allow 10.0.0.0/8:443/tcp",
                                                        "deny 10.0.0.0/8"}));
    EXPECT_EQ(c.host_alias_ports, "22");
    EXPECT_EQ(c.max_flows_per_guest, 1000u);
    EXPECT_EQ(c.max_half_open, 64u);
    EXPECT_EQ(c.new_flow_rate, 50u);

    // The command line wins key by key; any --allow/--deny replaces the file's egress list as a
    // whole (like every list-valued key), keeping the command line's own order.
    o = parse({"--config", f.path(), "--icmp", "raw", "--allow", "192.0.2.0/24", "--deny",
               "192.0.2.9", "--max-half-open", "8"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->icmp_mode, "raw");
    EXPECT_EQ(o.config->egress_rules,
              (std::vector<std::string>{"allow 192.0.2.0/24", "deny 192.0.2.9"}));
    EXPECT_EQ(o.config->max_half_open, 8u);
    EXPECT_EQ(o.config->udp_timeout_s, 90u);  // only in the file
    o = parse({"--config", f.path(), "--deny", "0.0.0.0/0/icmp"});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->egress_rules, std::vector<std::string>{"deny 0.0.0.0/0/icmp"});

    TempToml one("egress = \"deny 203.0.113.0/24\"\n");  // a single string is a one-rule list
    o = parse({"--config", one.path()});
    ASSERT_TRUE(o.config) << o.err;
    EXPECT_EQ(o.config->egress_rules, std::vector<std::string>{"deny 203.0.113.0/24"});
}

TEST(Config, UdpIcmpPolicyAndLimitFileErrors) {
    {
        TempToml f("egress = [\"allow 10.0.0.0/8\", \"permit 10.0.0.0/8\"]\n");
        expect_usage_error(parse({"--config", f.path()}),
                           {"egress in " + f.path(), "'permit 10.0.0.0/8'", "allow RULE"});
    }
    {
        TempToml f("egress = [\"deny 10.0.0.1/8\"]\n");
        expect_usage_error(parse({"--config", f.path()}),
                           {"egress in " + f.path(), "deny '10.0.0.1/8'", "host bits"});
    }
    {
        TempToml f("egress = [\"deny\"]\n");
        expect_usage_error(parse({"--config", f.path()}), {"egress in " + f.path(), "empty"});
    }
    {
        TempToml f("egress = [\"allow 10.0.0.0/8\", 3]\n");
        expect_usage_error(parse({"--config", f.path()}), {"'egress'", "array of strings"});
    }
    {
        TempToml f("allow = [\"10.0.0.0/8\"]\n");
        expect_usage_error(parse({"--config", f.path()}), {"'allow'", "egress = ["});
    }
    {
        TempToml f("icmp = \"echo\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"icmp in " + f.path(), "'echo'"});
    }
    {
        TempToml f("icmp = true\n");
        expect_usage_error(parse({"--config", f.path()}), {"'icmp'", "a string"});
    }
    {
        TempToml f("host-alias-ports = \"22-\"\n");
        expect_usage_error(parse({"--config", f.path()}),
                           {"host-alias-ports in " + f.path(), "'22-'"});
    }
    {
        TempToml f("udp-timeout = 0\n");
        expect_usage_error(parse({"--config", f.path()}), {"udp-timeout in " + f.path(), "'0'"});
    }
    {
        TempToml f("new-flow-rate = \"10/s\"\n");
        expect_usage_error(parse({"--config", f.path()}), {"'new-flow-rate'", "integer"});
    }
    {
        TempToml f("max-half-open = 16777217\nmax-flows-per-guest = 1\n");
        expect_usage_error(parse({"--config", f.path()}), {"max-half-open in " + f.path()});
    }
    // A bad list in the file does not matter when the command line replaces it.
    {
        TempToml f("egress = [\"deny 10.0.0.1/8\"]\n");
        EXPECT_TRUE(parse({"--config", f.path(), "--allow", "10.0.0.0/8"}).config.has_value());
    }
}

}  // namespace
}  // namespace slipway::apps
