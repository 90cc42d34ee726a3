// slipwayctl's new commands: the argument -> request mapping (request.hpp) and the text tables for
// forwards, leases, flows and DNS records (render.hpp), including documents of the wrong shape.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "slipwayctl/render.hpp"
#include "slipwayctl/request.hpp"

namespace slipway::apps {
namespace {

using nlohmann::json;

// ---- build_request ----

HttpRequest must_build(const CommandArgs& args) {
    std::string error;
    auto r = build_request(args, error);
    EXPECT_TRUE(r.has_value()) << error;
    return r ? *r : HttpRequest{};
}

CommandArgs cmd(Command c) {
    CommandArgs a;
    a.command = c;
    return a;
}

TEST(SlipwayctlRequest, PlainGets) {
    const std::vector<std::pair<Command, std::string>> cases = {
        {Command::status, "/v1/status"},       {Command::stats, "/v1/stats"},
        {Command::forward_ls, "/v1/forwards"}, {Command::leases, "/v1/leases"},
        {Command::flows, "/v1/flows"},         {Command::dns_ls, "/v1/dns"},
    };
    for (const auto& [c, target] : cases) {
        const HttpRequest r = must_build(cmd(c));
        EXPECT_EQ(r.method, HttpMethod::get) << target;
        EXPECT_EQ(r.target, target);
        EXPECT_TRUE(r.body.empty()) << target;
    }
}

TEST(SlipwayctlRequest, MethodNames) {
    EXPECT_STREQ(method_name(HttpMethod::get), "GET");
    EXPECT_STREQ(method_name(HttpMethod::post), "POST");
    EXPECT_STREQ(method_name(HttpMethod::del), "DELETE");
}

TEST(SlipwayctlRequest, ForwardAddPostsTheSpec) {
    CommandArgs a = cmd(Command::forward_add);
    a.spec = "tcp:8080=192.168.127.2:80";
    const HttpRequest r = must_build(a);
    EXPECT_EQ(r.method, HttpMethod::post);
    EXPECT_EQ(r.target, "/v1/forwards");
    EXPECT_EQ(json::parse(r.body), (json{{"spec", "tcp:8080=192.168.127.2:80"}}));
}

TEST(SlipwayctlRequest, BodiesAreEscapedAndSurviveBadUtf8) {
    CommandArgs a = cmd(Command::forward_add);
    a.spec = "a\"b\\c\n\xff";
    HttpRequest r;
    ASSERT_NO_THROW(r = must_build(a));
    const json doc = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(doc.is_object()) << r.body;
    EXPECT_EQ(doc["spec"].get<std::string>().substr(0, 6), "a\"b\\c\n");
}

TEST(SlipwayctlRequest, ForwardRmById) {
    CommandArgs a = cmd(Command::forward_rm);
    a.forward = "3";
    HttpRequest r = must_build(a);
    EXPECT_EQ(r.method, HttpMethod::del);
    EXPECT_EQ(r.target, "/v1/forwards/3");
    EXPECT_TRUE(r.body.empty());
    a.kill = true;
    a.forward = "0042";
    r = must_build(a);
    EXPECT_EQ(r.target, "/v1/forwards/42?kill=1");
}

TEST(SlipwayctlRequest, ForwardRmByRuleLooksUpFirst) {
    CommandArgs a = cmd(Command::forward_rm);
    a.forward = "tcp:127.0.0.1:8080";
    const HttpRequest r = must_build(a);
    EXPECT_EQ(r.method, HttpMethod::get);
    EXPECT_EQ(r.target, "/v1/forwards");
}

TEST(SlipwayctlRequest, ForwardRmRejectsNonsense) {
    for (const char* bad :
         {"", "foo", "tcp:", "tcp:localhost:80", "sctp:80", "tcp:127.0.0.1:0",
          "tcp:127.0.0.1:70000", "tcp:[::1:53", "tcp:::1:53", "99999999999", "tcp:80-79", "-3"}) {
        CommandArgs a = cmd(Command::forward_rm);
        a.forward = bad;
        std::string error;
        auto r = build_request(a, error);
        EXPECT_FALSE(r.has_value()) << bad;
        EXPECT_FALSE(error.empty()) << bad;
        EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    }
}

TEST(SlipwayctlRequest, FlowsQuery) {
    CommandArgs a = cmd(Command::flows);
    a.proto = "tcp";
    EXPECT_EQ(must_build(a).target, "/v1/flows?proto=tcp");
    a.guest = "192.168.127.2";
    a.limit = 50;
    EXPECT_EQ(must_build(a).target, "/v1/flows?proto=tcp&guest=192.168.127.2&limit=50");
    a.proto.clear();
    a.limit.reset();
    a.guest = "a b&c=d";
    EXPECT_EQ(must_build(a).target, "/v1/flows?guest=a%20b%26c%3Dd");
    a.guest.clear();
    a.limit = 0;
    std::string error;
    EXPECT_FALSE(build_request(a, error).has_value());
    EXPECT_NE(error.find("--limit"), std::string::npos) << error;
}

TEST(SlipwayctlRequest, Dns) {
    CommandArgs a = cmd(Command::dns_add);
    a.name = "db.example";
    a.ip = "192.168.127.9";
    HttpRequest r = must_build(a);
    EXPECT_EQ(r.method, HttpMethod::post);
    EXPECT_EQ(r.target, "/v1/dns");
    EXPECT_EQ(json::parse(r.body), (json{{"name", "db.example"}, {"ip", "192.168.127.9"}}));

    a.command = Command::dns_rm;
    r = must_build(a);
    EXPECT_EQ(r.method, HttpMethod::del);
    EXPECT_EQ(r.target, "/v1/dns/db.example");
    EXPECT_TRUE(r.body.empty());
    a.name = "we?ird/name#x";
    EXPECT_EQ(must_build(a).target, "/v1/dns/we%3Fird%2Fname%23x");

    std::string error;
    a.name.clear();
    EXPECT_FALSE(build_request(a, error).has_value());
    a.command = Command::dns_add;
    a.name = "x.example";
    a.ip.clear();
    EXPECT_FALSE(build_request(a, error).has_value());
    a.command = Command::forward_add;
    a.spec.clear();
    EXPECT_FALSE(build_request(a, error).has_value());
}

TEST(SlipwayctlRequest, UrlEncode) {
    EXPECT_EQ(url_encode("AZaz09-._~"), "AZaz09-._~");
    EXPECT_EQ(url_encode("a/b c%"), "a%2Fb%20c%25");
    EXPECT_EQ(url_encode("\xff\x01"), "%FF%01");
    EXPECT_EQ(url_encode(""), "");
}

// ---- forward selectors ----

ForwardSelector must_select(const std::string& arg) {
    std::string error;
    auto s = parse_forward_selector(arg, error);
    EXPECT_TRUE(s.has_value()) << arg << ": " << error;
    return s ? *s : ForwardSelector{};
}

TEST(SlipwayctlSelector, Forms) {
    EXPECT_EQ(must_select("7").id, 7U);
    EXPECT_EQ(must_select("4294967295").id, 4294967295U);

    ForwardSelector s = must_select("tcp:127.0.0.1:8080");
    EXPECT_FALSE(s.id);
    EXPECT_EQ(s.proto, "tcp");
    EXPECT_EQ(s.host, "127.0.0.1:8080");

    s = must_select("udp:[::1]:53");
    EXPECT_EQ(s.proto, "udp");
    EXPECT_EQ(s.host, "[::1]:53");

    s = must_select("tcp:8080");
    EXPECT_EQ(s.proto, "tcp");
    EXPECT_EQ(s.host, "127.0.0.1:8080");

    s = must_select("UDP:0.0.0.0:5353=192.168.127.2:53");  // a whole --forward rule
    EXPECT_EQ(s.proto, "udp");
    EXPECT_EQ(s.host, "0.0.0.0:5353");

    s = must_select("127.0.0.1:8000-8009");
    EXPECT_EQ(s.proto, "tcp");
    EXPECT_EQ(s.host, "127.0.0.1:8000-8009");

    std::string error;
    EXPECT_FALSE(parse_forward_selector("4294967296", error).has_value());
    EXPECT_NE(error.find("out of range"), std::string::npos) << error;
}

TEST(SlipwayctlSelector, SameHost) {
    EXPECT_TRUE(same_forward_host("127.0.0.1:8080", "127.0.0.1:8080"));
    EXPECT_TRUE(same_forward_host("[::1]:53", "[0:0::1]:53"));
    EXPECT_TRUE(same_forward_host("127.0.0.1:80", "127.0.0.1:80-80"));
    EXPECT_FALSE(same_forward_host("127.0.0.1:8080", "0.0.0.0:8080"));
    EXPECT_FALSE(same_forward_host("127.0.0.1:8080", "127.0.0.1:8081"));
    EXPECT_FALSE(same_forward_host("[::1]:53", "127.0.0.1:53"));
    EXPECT_TRUE(same_forward_host("weird", "weird"));
    EXPECT_FALSE(same_forward_host("weird", "127.0.0.1:80"));
}

TEST(SlipwayctlSelector, FindForwardId) {
    const json doc = json::parse(R"({"forwards":[
        {"id":1,"proto":"tcp","host":"127.0.0.1:8080","guest":"192.168.127.2:80"},
        {"id":2,"proto":"udp","host":"127.0.0.1:8080","guest":"192.168.127.2:80"},
        {"id":5,"proto":"udp","host":"[::1]:53","guest":"192.168.127.2:53"},
        {"id":9,"proto":"tcp","host":"0.0.0.0:8000-8009","guest":"192.168.127.2:8000-8009"}
    ]})");
    EXPECT_EQ(find_forward_id(doc, must_select("tcp:8080")), 1U);
    EXPECT_EQ(find_forward_id(doc, must_select("udp:127.0.0.1:8080")), 2U);
    EXPECT_EQ(find_forward_id(doc, must_select("udp:[0::1]:53")), 5U);
    EXPECT_EQ(find_forward_id(doc, must_select("tcp:0.0.0.0:8000-8009")), 9U);
    EXPECT_FALSE(find_forward_id(doc, must_select("tcp:[::1]:53")));
    EXPECT_FALSE(find_forward_id(doc, must_select("tcp:0.0.0.0:8000")));
    // An id needs no lookup.
    EXPECT_EQ(find_forward_id(json(), must_select("12")), 12U);
}

TEST(SlipwayctlSelector, FindForwardIdInMalformedDocuments) {
    const ForwardSelector s = must_select("tcp:8080");
    for (const char* text : {
             "null",
             "[]",
             "3",
             R"("x")",
             "{}",
             R"({"forwards":null})",
             R"({"forwards":{}})",
             R"({"forwards":[1,"a",null,[]]})",
             R"({"forwards":[{"proto":"tcp","host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":"1","proto":"tcp","host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":-1,"proto":"tcp","host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":1.5,"proto":"tcp","host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":4294967296,"proto":"tcp","host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":1,"proto":6,"host":"127.0.0.1:8080"}]})",
             R"({"forwards":[{"id":1,"proto":"tcp","host":["127.0.0.1:8080"]}]})",
         }) {
        const json doc = json::parse(text);
        std::optional<std::uint32_t> id;
        EXPECT_NO_THROW(id = find_forward_id(doc, s)) << text;
        EXPECT_FALSE(id) << text;
    }
    // An id stored as a signed integer (as json{{"id", 4}} builds it) still matches.
    json doc = {{"forwards", {{{"id", 4}, {"proto", "tcp"}, {"host", "127.0.0.1:8080"}}}}};
    EXPECT_EQ(find_forward_id(doc, s), 4U);
}

// ---- renderers ----

TEST(SlipwayctlRender, Forwards) {
    const json doc = json::parse(R"({"forwards":[
        {"id":1,"proto":"tcp","host":"127.0.0.1:8080","guest":"192.168.127.2:80",
         "spec":"tcp:127.0.0.1:8080=192.168.127.2:80","accepted":12,"refused":0,"active":3},
        {"id":17,"proto":"udp","host":"[::1]:53","guest":"192.168.127.2:53",
         "spec":"udp:[::1]:53=192.168.127.2:53","accepted":0,"refused":0,"active":0}
    ]})");
    EXPECT_EQ(render_forwards_text(doc),
              "ID  PROTO  HOST            GUEST             ACTIVE  ACCEPTED  REFUSED\n"
              "1   tcp    127.0.0.1:8080  192.168.127.2:80  3       12        0\n"
              "17  udp    [::1]:53        192.168.127.2:53  0       0         0\n");
    EXPECT_EQ(render_forwards_text(json::parse(R"({"forwards":[]})")),
              "ID  PROTO  HOST  GUEST  ACTIVE  ACCEPTED  REFUSED\n");
}

TEST(SlipwayctlRender, ForwardAddedAndDeleted) {
    EXPECT_EQ(render_forward_added(json::parse(
                  R"({"id":4,"proto":"tcp","host":"127.0.0.1:8080","guest":"192.168.127.2:80",
                      "spec":"tcp:127.0.0.1:8080=192.168.127.2:80"})")),
              "forward 4: tcp:127.0.0.1:8080=192.168.127.2:80\n");
    EXPECT_EQ(render_forward_deleted(json::parse(R"({"deleted":4,"killed":false})")),
              "forward 4 deleted\n");
    EXPECT_EQ(render_forward_deleted(json::parse(R"({"deleted":4,"killed":true})")),
              "forward 4 deleted, connections reset\n");
    EXPECT_EQ(render_forward_added(json::array()), "forward -: -\n");
    EXPECT_EQ(render_forward_deleted(json::parse(R"({"deleted":[1],"killed":"yes"})")),
              "forward - deleted\n");
}

TEST(SlipwayctlRender, Leases) {
    const json doc = json::parse(R"({"leases":[
        {"mac":"52:54:00:12:34:56","ip":"192.168.127.2","hostname":"vm1",
         "expires_unix":1003599,"static":false,"bound":true},
        {"mac":"52:54:00:00:00:09","ip":"192.168.127.9","hostname":"",
         "expires_unix":0,"static":true,"bound":false},
        {"mac":"52:54:00:00:00:0a","ip":"192.168.127.10","hostname":"old",
         "expires_unix":999000,"static":false,"bound":true}
    ]})");
    EXPECT_EQ(render_leases_text(doc, 1000000),
              "IP              MAC                HOSTNAME  EXPIRES  STATE\n"
              "192.168.127.2   52:54:00:12:34:56  vm1       3599s    bound\n"
              "192.168.127.9   52:54:00:00:00:09  -         static   offered\n"
              "192.168.127.10  52:54:00:00:00:0a  old       expired  bound\n");
}

TEST(SlipwayctlRender, LeaseHostnameCannotEscapeTheTerminal) {
    const json doc = {{"leases",
                       {{{"ip", "192.168.127.2"},
                         {"mac", "m"},
                         {"hostname", "evil\x1b[2J\nx"},
                         {"expires_unix", 5},
                         {"static", false},
                         {"bound", false}}}}};
    const std::string text = render_leases_text(doc, 0);
    EXPECT_NE(text.find("evil?[2J?x"), std::string::npos) << text;
    EXPECT_EQ(text.find('\x1b'), std::string::npos);
    EXPECT_NE(text.find("5s       offered\n"), std::string::npos) << text;
}

TEST(SlipwayctlRender, Flows) {
    const json doc = json::parse(R"({"flows":[
        {"proto":"tcp","direction":"out","guest":"192.168.127.2:41234",
         "remote":"203.0.113.5:443","state":"established","forward_id":0},
        {"proto":"tcp","direction":"in","guest":"192.168.127.2:80",
         "remote":"192.168.127.254:50000","state":"established","forward_id":3},
        {"proto":"icmp","direction":"out","guest":"192.168.127.2:7",
         "remote":"203.0.113.5:7","state":"open","forward_id":null}
    ],"truncated":false})");
    EXPECT_EQ(render_flows_text(doc),
              "PROTO  DIR  GUEST                REMOTE                 STATE        FWD\n"
              "tcp    out  192.168.127.2:41234  203.0.113.5:443        established  -\n"
              "tcp    in   192.168.127.2:80     192.168.127.254:50000  established  3\n"
              "icmp   out  192.168.127.2:7      203.0.113.5:7          open         -\n");
    json truncated = doc;
    truncated["truncated"] = true;
    const std::string text = render_flows_text(truncated);
    EXPECT_EQ(text.rfind("(truncated", 0), std::string::npos);
    EXPECT_NE(text.find("\n(truncated: "), std::string::npos) << text;
    EXPECT_EQ(text.back(), '\n');
}

TEST(SlipwayctlRender, Dns) {
    const json doc = json::parse(R"({"records":[
        {"name":"db.example","ip":"192.168.127.9"},{"name":"a","ip":"192.168.127.10"}]})");
    EXPECT_EQ(render_dns_text(doc),
              "NAME        IP\n"
              "db.example  192.168.127.9\n"
              "a           192.168.127.10\n");
    EXPECT_EQ(render_dns_added(json::parse(R"({"name":"db.example","ip":"192.168.127.9"})")),
              "dns db.example: 192.168.127.9\n");
    EXPECT_EQ(render_dns_deleted(json::parse(R"({"deleted":"db.example"})")),
              "dns db.example deleted\n");
}

TEST(SlipwayctlRender, WrongTypesAndMissingKeysPrintDashes) {
    const json doc = json::parse(R"({"forwards":[
        {"id":"x","proto":null,"host":{"a":1},"guest":[1,2],"active":true},
        7, null, "s", [], {}
    ]})");
    const std::string text = render_forwards_text(doc);
    EXPECT_NE(text.find("x   -      -     -      true    -         -\n"), std::string::npos)
        << text;
    EXPECT_NE(text.find("-   -      -     -      -       -         -\n"), std::string::npos)
        << text;

    const json leases = json::parse(R"({"leases":[
        {"ip":1,"static":"yes","bound":"yes","expires_unix":"soon"},
        {"expires_unix":-5,"bound":false},
        {"expires_unix":18446744073709551615,"bound":true},
        {"expires_unix":1.5e9}
    ]})");
    std::string out;
    ASSERT_NO_THROW(out = render_leases_text(leases, 100));
    EXPECT_NE(out.find("1   -    -         -                      -\n"), std::string::npos) << out;
    EXPECT_NE(out.find("expired"), std::string::npos) << out;
    EXPECT_NE(out.find("18446744073709551515s"), std::string::npos) << out;
}

TEST(SlipwayctlRender, MalformedDocumentsDoNotThrow) {
    const std::vector<json> docs = {
        json(),
        json::array(),
        json::object(),
        json(3),
        json("text"),
        json(true),
        json::parse(R"({"forwards":3,"leases":"x","flows":{},"records":null,"truncated":1})"),
        json::parse(R"({"forwards":[[]],"leases":[[1]],"flows":[null],"records":[3]})"),
        json::parse(R"({"flows":[{"forward_id":"7","proto":1}],"truncated":"yes"})"),
        json::parse(R"({"deleted":null,"killed":null,"name":{},"ip":[],"id":{},"spec":1})"),
    };
    for (const json& d : docs) {
        EXPECT_NO_THROW((void)render_forwards_text(d)) << d.dump();
        EXPECT_NO_THROW((void)render_forward_added(d)) << d.dump();
        EXPECT_NO_THROW((void)render_forward_deleted(d)) << d.dump();
        EXPECT_NO_THROW((void)render_leases_text(d, 0)) << d.dump();
        EXPECT_NO_THROW((void)render_leases_text(d, -1)) << d.dump();
        EXPECT_NO_THROW((void)render_flows_text(d)) << d.dump();
        EXPECT_NO_THROW((void)render_dns_text(d)) << d.dump();
        EXPECT_NO_THROW((void)render_dns_added(d)) << d.dump();
        EXPECT_NO_THROW((void)render_dns_deleted(d)) << d.dump();
        EXPECT_NO_THROW((void)render_status_text(d)) << d.dump();
        EXPECT_NO_THROW((void)render_stats_text(d)) << d.dump();
    }
    EXPECT_EQ(render_dns_text(json(3)), "NAME  IP\n");
    EXPECT_EQ(render_flows_text(json::parse(R"({"flows":[],"truncated":"yes"})")),
              "PROTO  DIR  GUEST  REMOTE  STATE  FWD\n");
}

}  // namespace
}  // namespace slipway::apps
