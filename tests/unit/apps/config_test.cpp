// slipwayd configuration: defaults, flags, the TOML file, precedence and error messages.
#include "slipwayd/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

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

}  // namespace
}  // namespace slipway::apps
