// slipwayctl's text output for the status and stats documents.
#include "slipwayctl/render.hpp"

#include <gtest/gtest.h>

namespace slipway::apps {
namespace {

using nlohmann::json;

TEST(Render, StatusText) {
    const json doc = {
        {"version", "0.1.0"},
        {"subnet", "192.168.127.0/24"},
        {"gateway", "192.168.127.1"},
        {"dns", "192.168.127.1"},
        {"host_alias", nullptr},
        {"gateway_mac", "5a:94:ef:e4:0c:dd"},
        {"mtu", 1500},
        {"dhcp_range", "192.168.127.2-192.168.127.253"},
        {"uptime_s", 7},
        {"ready", true},
        {"ports",
         {{{"name", "gateway"}, {"kind", "gateway"}, {"spec", ""}, {"state", "up"}},
          {{"name", "qemu0"},
           {"kind", "guest"},
           {"spec", "qemu:/x.sock"},
           {"state", "listening"}}}},
    };
    const std::string text = render_status_text(doc);
    EXPECT_NE(text.find("subnet       192.168.127.0/24\n"), std::string::npos) << text;
    EXPECT_NE(text.find("host_alias   none\n"), std::string::npos) << text;
    EXPECT_NE(text.find("mtu          1500\n"), std::string::npos) << text;
    EXPECT_NE(text.find("dhcp_range   192.168.127.2-192.168.127.253\n"), std::string::npos) << text;
    EXPECT_NE(text.find("ready        true\n"), std::string::npos) << text;
    EXPECT_NE(text.find("NAME     KIND     STATE      SPEC\n"), std::string::npos) << text;
    EXPECT_NE(text.find("gateway  gateway  up         -\n"), std::string::npos) << text;
    EXPECT_NE(text.find("qemu0    guest    listening  qemu:/x.sock\n"), std::string::npos) << text;
}

TEST(Render, StatsTextHasEveryCounterOnItsOwnLine) {
    const json doc = {
        {"switch", {{"frames_in", 10}, {"drop_no_dest", 0}}},
        {"ports",
         {{{"name", "gateway"}, {"spec", ""}, {"counters", {{"rx_frames", 5}}}},
          {{"name", "qemu0"},
           {"spec", "qemu:/x.sock"},
           {"counters", {{"drop_src_mac", 3}, {"rx_frames", 0}}}}}},
        {"gateway", {{"tcp_flows", 2}}},
        {"pool", {{"free", 4000}}},
    };
    EXPECT_EQ(render_stats_text(doc),
              "switch drop_no_dest 0\n"
              "switch frames_in 10\n"
              "port gateway rx_frames 5\n"
              "port qemu:/x.sock drop_src_mac 3\n"
              "port qemu:/x.sock rx_frames 0\n"
              "gateway tcp_flows 2\n"
              "pool free 4000\n");
}

TEST(Render, MissingFieldsDoNotThrow) {
    EXPECT_NO_THROW((void)render_status_text(json::object()));
    EXPECT_NO_THROW((void)render_status_text(json::array()));
    EXPECT_EQ(render_stats_text(json::object()), "");
    EXPECT_EQ(render_stats_text(json{{"ports", {{{"name", "x"}}}}, {"switch", 3}}), "");
    EXPECT_NE(render_status_text(json::object()).find("subnet       -\n"), std::string::npos);
}

}  // namespace
}  // namespace slipway::apps
