// make_attachment spec parsing: the three accepted forms and every rejected one.
#include "guest_test_util.hpp"

namespace slipway::guest::test {
namespace {

TEST(AttachmentSpec, AcceptsTheThreeForms) {
    Env env;
    std::string err;
    struct Case {
        const char* spec;
        bool gso;
    };
    for (const Case c :
         {Case{"netns:/run/netns/x", true}, Case{"netns:/proc/1/ns/net,ifname=slw0", true},
          Case{"qemu:/tmp/vm,1.sock", false}, Case{"vfkit:/tmp/vfkit.sock", false}}) {
        auto a = make_attachment(c.spec, env.ctx, err);
        ASSERT_TRUE(a.has_value()) << c.spec << ": " << err;
        EXPECT_EQ((*a)->spec(), c.spec);
        EXPECT_EQ((*a)->state(), "stopped");
        EXPECT_EQ((*a)->kind(), PortKind::guest);
        EXPECT_EQ((*a)->caps().gso, c.gso) << c.spec;
        EXPECT_EQ((*a)->caps().partial_csum, c.gso) << c.spec;
        EXPECT_EQ((*a)->caps().max_frame, 1514u) << c.spec;
    }
}

TEST(AttachmentSpec, MaxFrameFollowsTheMtu) {
    Env env;
    AttachmentContext ctx{env.io, env.pool, env.sw, 9000};
    std::string err;
    auto a = make_attachment("qemu:/tmp/x.sock", ctx, err);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ((*a)->caps().max_frame, 9014u);
}

TEST(AttachmentSpec, RejectsBadSpecsWithOneLine) {
    Env env;
    const std::string long_path(200, 'a');
    const std::string specs[] = {
        "",
        "qemu",
        "tap:/dev/net/tun",
        "QEMU:/tmp/x",
        "qemu:",
        "vfkit:",
        "netns:",
        "netns:,ifname=slw0",
        "netns:/run/netns/x,",
        "netns:/run/netns/x,ifname=slw0,",
        "netns:/run/netns/x,mtu=1500",
        "netns:/run/netns/x,ifname",
        "netns:/run/netns/x,ifname=",
        "netns:/run/netns/x,ifname=abcdefghijklmnop",  // 16 characters
        "netns:/run/netns/x,ifname=a/b",
        "netns:/run/netns/x,ifname=a b",
        "netns:/run/netns/x,ifname=..",
        "netns:/run/netns/x,ifname=slw0,ifname=slw1",
        "qemu:/tmp/" + long_path,
        "vfkit:/tmp/" + long_path,
    };
    for (const std::string& s : specs) {
        std::string err;
        auto a = make_attachment(s, env.ctx, err);
        ASSERT_FALSE(a.has_value()) << "accepted '" << s << "'";
        EXPECT_EQ(a.error(), Errc::invalid_argument) << s;
        EXPECT_FALSE(err.empty()) << s;
        EXPECT_EQ(err.find('\n'), std::string::npos) << s;
    }
}

TEST(AttachmentSpec, FifteenCharacterIfnameIsFine) {
    Env env;
    std::string err;
    auto a = make_attachment("netns:/run/netns/x,ifname=abcdefghijklmno", env.ctx, err);
    EXPECT_TRUE(a.has_value()) << err;
}

}  // namespace
}  // namespace slipway::guest::test
