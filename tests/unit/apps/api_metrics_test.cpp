// GET /metrics' text: Prometheus exposition format 0.0.4 from NetworkStats.
#include "slipwayd/api_metrics.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "api_test_support.hpp"

namespace slipway::apps {
namespace {

TEST(ApiMetrics, NamesAreSanitised) {
    EXPECT_EQ(metric_name("switch", "frames"), "slipway_switch_frames");
    EXPECT_EQ(metric_name("gateway", "dns.latency-us/total"),
              "slipway_gateway_dns_latency_us_total");
    EXPECT_EQ(metric_name("port", "r\xc3\xa9x"), "slipway_port_r__x");
}

TEST(ApiMetrics, GaugesAreLevelsNotEvents) {
    for (const char* g : {"flows", "tcp_flows", "udp_flows", "icmp_flows", "tcp_flows_connecting",
                          "tcp_flows_established", "tcp_flows_closing", "flows_capacity",
                          "small_capacity", "small_free_global", "dns_cache_entries",
                          "dns_cache_bytes", "frag_in_progress", "active"})
        EXPECT_TRUE(is_gauge(g)) << g;
    for (const char* c : {"frames", "rx_bytes", "tcp_bytes_to_host", "udp_flows_opened",
                          "udp_flows_expired", "icmp_flows_evicted", "flows_evicted",
                          "limit_guest_flows", "flow_inserts", "exhausted", "dns_cache_hits"})
        EXPECT_FALSE(is_gauge(c)) << c;
}

TEST(ApiMetrics, LabelValuesAreEscaped) {
    EXPECT_EQ(escape_label_value("plain"), "plain");
    EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

NetworkStats sample_stats() {
    NetworkStats s;
    s.switch_counters = {{"frames", 10}, {"flooded", 2}};
    s.ports.push_back({"gateway", "gateway", "", "up", {{"rx_frames", 5}, {"tx_frames", 6}}});
    s.ports.push_back({"vm \"one\"\\\n",
                       "guest",
                       "qemu:/x",
                       "connected",
                       {{"rx_frames", 7}, {"drop_src_mac", 1}}});
    s.ports.push_back({"vm2", "guest", "", "in-process", {{"tx_frames", 9}}});
    s.gateway_counters = {{"tcp_flows", 3},          {"udp_flows_opened", 4},
                          {"flows_capacity", 65536}, {"dns-hits", 1},
                          {"dns_hits", 2},  // sanitise to one name
                          {"frag_in_progress", 0}};
    s.pool = {{"small_capacity", 4096}, {"small_free_global", 4000}, {"exhausted", 0}};
    return s;
}

TEST(ApiMetrics, TextParsesAndHasOneFamilyPerName) {
    const std::string text = metrics_text(sample_stats(), 3);
    std::map<std::string, std::string> types;
    ASSERT_EQ(test::check_prometheus(text, &types), "") << text;
    EXPECT_EQ(types["slipway_up"], "gauge");
    EXPECT_EQ(types["slipway_forwards"], "gauge");
    EXPECT_EQ(types["slipway_switch_frames"], "counter");
    EXPECT_EQ(types["slipway_port_rx_frames"], "counter");
    EXPECT_EQ(types["slipway_gateway_tcp_flows"], "gauge");
    EXPECT_EQ(types["slipway_gateway_udp_flows_opened"], "counter");
    EXPECT_EQ(types["slipway_gateway_flows_capacity"], "gauge");
    EXPECT_EQ(types["slipway_pool_small_free_global"], "gauge");
    EXPECT_EQ(types["slipway_pool_exhausted"], "counter");

    EXPECT_NE(text.find("slipway_up 1\n"), std::string::npos);
    EXPECT_NE(text.find("slipway_forwards 3\n"), std::string::npos);
    // Per-port counters: one family, a port label each, samples together.
    const std::string rx =
        "# HELP slipway_port_rx_frames per-port counter rx_frames\n"
        "# TYPE slipway_port_rx_frames counter\n"
        "slipway_port_rx_frames{port=\"gateway\"} 5\n"
        "slipway_port_rx_frames{port=\"vm \\\"one\\\"\\\\\\n\"} 7\n";
    EXPECT_NE(text.find(rx), std::string::npos) << text;
    EXPECT_NE(text.find("slipway_port_tx_frames{port=\"vm2\"} 9\n"), std::string::npos);
    // Two counters sanitised to one name: the first value stays, the family is not repeated.
    EXPECT_NE(text.find("slipway_gateway_dns_hits 1\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("slipway_gateway_dns_hits 2\n"), std::string::npos) << text;
}

TEST(ApiMetrics, CheckerCatchesBrokenText) {
    // The checker itself, so a pass above means something.
    EXPECT_NE(test::check_prometheus("x 1\n"), "");  // no HELP/TYPE
    EXPECT_NE(test::check_prometheus("# HELP x h\n# TYPE x counter\n# TYPE x counter\nx 1\n"), "");
    EXPECT_NE(test::check_prometheus("# HELP x h\n# TYPE x counter\nx{a=\"\n\"} 1\n"), "");
    EXPECT_NE(test::check_prometheus("# HELP x h\n# TYPE x counter\nx 1\nx 2\n"), "");
    EXPECT_NE(test::check_prometheus("# HELP x h\n# TYPE x counter\nx 1\n# HELP y h\n# TYPE y "
                                     "gauge\ny 1\nx{a=\"b\"} 1\n"),
              "");
    EXPECT_EQ(test::check_prometheus("# HELP x h\n# TYPE x counter\nx{a=\"\\\"\"} 1\n"), "");
}

}  // namespace
}  // namespace slipway::apps
