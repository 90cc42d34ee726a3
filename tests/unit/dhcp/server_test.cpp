// dhcp::Server: the RFC 2131 §4.3 exchanges, address choice, static leases, exhaustion, the
// lease file (restart, atomic write, corrupt file moved aside), reply addressing and options.
#include "slipway/dhcp/server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace slipway::dhcp {
namespace {

using Bytes = std::vector<std::byte>;

constexpr Ipv4Addr ip(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return Ipv4Addr::from_octets(a, b, c, d);
}
const Ipv4Addr kGw = ip(192, 168, 127, 1);
const Ipv4Addr kAlias = ip(192, 168, 127, 254);
MacAddr mac(std::uint8_t last) {
    return MacAddr{{0x52, 0x54, 0x00, 0x00, 0x00, last}};
}

struct Opt {
    std::uint8_t code;
    Bytes value;
};
Bytes v4(Ipv4Addr a) {
    Bytes b(4);
    a.store(b.data());
    return b;
}
Bytes str(std::string_view s) {
    Bytes b(s.size());
    std::memcpy(b.data(), s.data(), s.size());
    return b;
}
Bytes list(std::initializer_list<std::uint8_t> l) {
    Bytes b;
    for (auto c : l)
        b.push_back(std::byte{c});
    return b;
}

// A BOOTREQUEST as Linux clients send it: fixed part, cookie, option 53, the options, END.
Bytes client_msg(MessageType type, const MacAddr& m, std::uint32_t xid, std::vector<Opt> opts = {},
                 Ipv4Addr ciaddr = {}, bool broadcast = false) {
    Bytes b(kFixedLen, std::byte{0});
    b[0] = std::byte{1};
    b[1] = std::byte{1};
    b[2] = std::byte{6};
    store_be32(b.data() + 4, xid);
    if (broadcast) b[10] = std::byte{0x80};
    ciaddr.store(b.data() + 12);
    m.store(b.data() + 28);
    for (int c : {99, 130, 83, 99})
        b.push_back(static_cast<std::byte>(c));
    b.push_back(std::byte{opt::message_type});
    b.push_back(std::byte{1});
    b.push_back(std::byte{static_cast<std::uint8_t>(type)});
    for (const auto& o : opts) {
        b.push_back(std::byte{o.code});
        b.push_back(std::byte{static_cast<std::uint8_t>(o.value.size())});
        b.insert(b.end(), o.value.begin(), o.value.end());
    }
    b.push_back(std::byte{opt::end});
    b.resize(std::max<std::size_t>(b.size(), 300), std::byte{0});
    return b;
}

struct Reply {
    ReplyTarget to;
    Bytes bytes;
    [[nodiscard]] MessageView view() const {
        auto v = MessageView::parse(bytes);
        EXPECT_TRUE(v.has_value());
        return *v;
    }
};

class ServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/slw-dhcp-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir); }

    ServerConfig config() {
        ServerConfig c;
        c.server_id = c.router = c.dns = kGw;
        c.subnet = ip(192, 168, 127, 0);
        c.prefix_len = 24;
        c.range_first = ip(192, 168, 127, 1);
        c.range_last = ip(192, 168, 127, 254);
        c.excluded = {kGw, kAlias};
        c.domain = "slipway.test";
        c.search = {"slipway.test", "example.org"};
        return c;
    }
    std::unique_ptr<Server> make(ServerConfig c) {
        std::string err;
        auto s = Server::create(std::move(c), err);
        EXPECT_TRUE(s.has_value()) << err;
        return s ? std::move(*s) : nullptr;
    }
    std::optional<Reply> send(Server& s, const Bytes& msg, std::int64_t at = 1000) {
        Bytes out(1500);
        auto t = s.process(msg, out, at);
        if (!t) return std::nullopt;
        out.resize(t->len);
        return Reply{*t, out};
    }
    // DISCOVER + REQUEST (SELECTING): the bound address.
    Ipv4Addr bind(Server& s, const MacAddr& m, std::vector<Opt> extra = {},
                  std::int64_t at = 1000) {
        auto offer = send(s, client_msg(MessageType::discover, m, 1, extra), at);
        EXPECT_TRUE(offer);
        if (!offer) return {};
        const Ipv4Addr a = offer->view().yiaddr();
        auto opts = extra;
        opts.push_back({opt::requested_ip, v4(a)});
        opts.push_back({opt::server_id, v4(kGw)});
        auto ack = send(s, client_msg(MessageType::request, m, 2, opts), at);
        EXPECT_TRUE(ack);
        if (!ack) return {};
        EXPECT_EQ(ack->view().type(), MessageType::ack);
        return ack->view().yiaddr();
    }
    std::string dir;
};

TEST_F(ServerTest, DiscoverOfferRequestAck) {
    auto s = make(config());
    auto offer = send(
        *s,
        client_msg(MessageType::discover, mac(1), 0x1234,
                   {{opt::param_request, list({opt::subnet_mask, opt::router, opt::dns,
                                               opt::domain_name, opt::mtu, opt::domain_search})}}));
    ASSERT_TRUE(offer);
    const MessageView o = offer->view();
    EXPECT_EQ(o.op(), Op::reply);
    EXPECT_EQ(o.type(), MessageType::offer);
    EXPECT_EQ(o.xid(), 0x1234u);
    EXPECT_EQ(o.yiaddr(), ip(192, 168, 127, 2));  // .1 is the gateway
    EXPECT_EQ(o.chaddr(), mac(1));
    EXPECT_EQ(o.server_id(), kGw);
    // No broadcast bit: unicast to the offered address at the client's MAC (RFC 2131 §4.1).
    EXPECT_EQ(offer->to.dst_ip, ip(192, 168, 127, 2));
    EXPECT_EQ(offer->to.dst_mac, mac(1));
    EXPECT_GE(offer->bytes.size(), kMinMessageLen);
    ASSERT_TRUE(o.option(opt::subnet_mask));
    EXPECT_EQ(Ipv4Addr::load(o.option(opt::subnet_mask)->data()), ip(255, 255, 255, 0));
    EXPECT_EQ(Ipv4Addr::load(o.option(opt::router)->data()), kGw);
    EXPECT_EQ(Ipv4Addr::load(o.option(opt::dns)->data()), kGw);
    ASSERT_TRUE(o.option(opt::mtu));
    EXPECT_EQ(load_be16(o.option(opt::mtu)->data()), 1500);
    ASSERT_TRUE(o.option(opt::lease_time));
    EXPECT_EQ(load_be32(o.option(opt::lease_time)->data()), 3600u);
    EXPECT_EQ(load_be32(o.option(opt::renewal_time)->data()), 1800u);
    EXPECT_EQ(load_be32(o.option(opt::rebinding_time)->data()), 3150u);
    const auto dn = o.option(opt::domain_name);
    ASSERT_TRUE(dn);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(dn->data()), dn->size()), "slipway.test");
    EXPECT_TRUE(o.option(opt::domain_search));
    EXPECT_FALSE(o.option(opt::broadcast));  // not asked for

    auto ack = send(*s, client_msg(MessageType::request, mac(1), 0x1235,
                                   {{opt::requested_ip, v4(o.yiaddr())},
                                    {opt::server_id, v4(kGw)},
                                    {opt::hostname, str("Web1")}}));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->view().type(), MessageType::ack);
    EXPECT_EQ(ack->view().yiaddr(), o.yiaddr());
    const auto leases = s->leases(1000);
    ASSERT_EQ(leases.size(), 1u);
    EXPECT_TRUE(leases[0].bound);
    EXPECT_EQ(leases[0].hostname, "web1");  // host names are case-insensitive: kept lowercase
    EXPECT_EQ(leases[0].expires_unix, 1000 + 3600);
    EXPECT_EQ(s->address_of("WEB1", 1000), o.yiaddr());
    EXPECT_FALSE(s->address_of("web1", 1000 + 3601));  // expired
    EXPECT_EQ(s->counters().acks.get(), 1u);
}

// RFC 2131 table 3 allows options the client did not ask for: an MTU other than 1500 is sent
// even to a client whose parameter request list lacks option 26 (busybox udhcpc's default);
// 1500, the Ethernet default, only when asked.
TEST_F(ServerTest, AnMtuOtherThan1500GoesUnasked) {
    const std::vector<Opt> prl{
        {opt::param_request, list({opt::subnet_mask, opt::router, opt::dns})}};
    for (std::uint32_t mtu : {1500u, 1400u, 65520u}) {
        ServerConfig c = config();
        c.mtu = mtu;
        auto s = make(c);
        auto offer = send(*s, client_msg(MessageType::discover, mac(1), 1, prl));
        ASSERT_TRUE(offer);
        const auto o = offer->view().option(opt::mtu);
        if (mtu == 1500) {
            EXPECT_FALSE(o) << "1500 was not asked for";
        } else {
            ASSERT_TRUE(o) << mtu;
            EXPECT_EQ(load_be16(o->data()), mtu);
        }
        EXPECT_TRUE(offer->view().option(opt::dns));
    }
}

TEST_F(ServerTest, BroadcastFlagAndNakGoToBroadcast) {
    auto s = make(config());
    auto offer = send(*s, client_msg(MessageType::discover, mac(1), 1, {}, {}, true));
    ASSERT_TRUE(offer);
    EXPECT_TRUE(offer->to.dst_ip.is_broadcast());
    EXPECT_TRUE(offer->to.dst_mac.is_broadcast());
    EXPECT_TRUE(offer->view().broadcast_flag());
    // INIT-REBOOT asking for an address of another network: NAK, broadcast (RFC 2131 §4.3.2).
    auto nak = send(*s, client_msg(MessageType::request, mac(2), 2,
                                   {{opt::requested_ip, v4(ip(10, 0, 0, 5))}}));
    ASSERT_TRUE(nak);
    EXPECT_EQ(nak->view().type(), MessageType::nak);
    EXPECT_TRUE(nak->to.dst_ip.is_broadcast());
    EXPECT_EQ(nak->view().yiaddr(), Ipv4Addr{});
    EXPECT_TRUE(nak->view().option(opt::message));
    EXPECT_EQ(s->counters().naks.get(), 1u);
}

TEST_F(ServerTest, TwoClientsDifferentAddressesAndRenewal) {
    auto s = make(config());
    const Ipv4Addr a = bind(*s, mac(1));
    const Ipv4Addr b = bind(*s, mac(2));
    EXPECT_NE(a, b);
    // RENEWING: ciaddr set, unicast to it, lease extended.
    auto renew = send(*s, client_msg(MessageType::request, mac(1), 7, {}, a), 2000);
    ASSERT_TRUE(renew);
    EXPECT_EQ(renew->view().type(), MessageType::ack);
    EXPECT_EQ(renew->view().yiaddr(), a);
    EXPECT_EQ(renew->to.dst_ip, a);
    EXPECT_EQ(renew->to.dst_mac, mac(1));
    // Renewing someone else's address: NAK.
    auto steal = send(*s, client_msg(MessageType::request, mac(3), 8, {}, b), 2000);
    ASSERT_TRUE(steal);
    EXPECT_EQ(steal->view().type(), MessageType::nak);
}

TEST_F(ServerTest, ClientIdentifierIdentifiesTheClient) {
    auto s = make(config());
    const Bytes id = list({0xff, 1, 2, 3, 4, 5, 6, 7, 8});
    const Ipv4Addr a = bind(*s, mac(1), {{opt::client_id, id}});
    // Same client id from another MAC (a VM whose NIC changed): same address.
    auto offer = send(*s, client_msg(MessageType::discover, mac(9), 3, {{opt::client_id, id}}));
    ASSERT_TRUE(offer);
    EXPECT_EQ(offer->view().yiaddr(), a);
}

TEST_F(ServerTest, OtherServerSelectedDropsOurOffer) {
    auto s = make(config());
    auto offer = send(*s, client_msg(MessageType::discover, mac(1), 1));
    ASSERT_TRUE(offer);
    EXPECT_FALSE(send(*s, client_msg(MessageType::request, mac(1), 2,
                                     {{opt::requested_ip, v4(offer->view().yiaddr())},
                                      {opt::server_id, v4(ip(192, 168, 127, 200))}})));
    EXPECT_EQ(s->counters().ignored.get(), 1u);
    // The address is free again for someone else.
    auto other = send(*s, client_msg(MessageType::discover, mac(2), 3));
    ASSERT_TRUE(other);
    EXPECT_EQ(other->view().yiaddr(), offer->view().yiaddr());
}

TEST_F(ServerTest, InitRebootWithoutRecordIsSilent) {
    auto s = make(config());
    EXPECT_FALSE(send(*s, client_msg(MessageType::request, mac(1), 1,
                                     {{opt::requested_ip, v4(ip(192, 168, 127, 50))}})));
    EXPECT_EQ(s->counters().ignored.get(), 1u);
}

TEST_F(ServerTest, ReleaseKeepsTheAssociationDeclineQuarantines) {
    auto s = make(config());
    const Ipv4Addr a = bind(*s, mac(1));
    EXPECT_FALSE(
        send(*s, client_msg(MessageType::release, mac(1), 5, {{opt::server_id, v4(kGw)}}, a)));
    EXPECT_EQ(s->counters().releases.get(), 1u);
    EXPECT_FALSE(s->leases(1000).at(0).bound);
    // Another client does not get the released address while others are free...
    auto other = send(*s, client_msg(MessageType::discover, mac(2), 6));
    ASSERT_TRUE(other);
    EXPECT_NE(other->view().yiaddr(), a);
    // ...and the client that released it gets it back.
    EXPECT_EQ(bind(*s, mac(1)), a);

    // DECLINE: the address is quarantined, the client is offered another one.
    EXPECT_FALSE(send(*s, client_msg(MessageType::decline, mac(1), 9,
                                     {{opt::requested_ip, v4(a)}, {opt::server_id, v4(kGw)}})));
    auto again = send(*s, client_msg(MessageType::discover, mac(1), 10));
    ASSERT_TRUE(again);
    EXPECT_NE(again->view().yiaddr(), a);
    EXPECT_EQ(s->counters().declines.get(), 1u);
}

TEST_F(ServerTest, StaticLeaseIsHonouredAndReserved) {
    auto c = config();
    c.statics.push_back({mac(7), ip(192, 168, 127, 77), "db"});
    auto s = make(c);
    EXPECT_EQ(bind(*s, mac(7)), ip(192, 168, 127, 77));
    EXPECT_EQ(s->address_of("db", 1000), ip(192, 168, 127, 77));
    // Nobody else gets it, even when asking for it.
    auto other = send(*s, client_msg(MessageType::discover, mac(8), 1,
                                     {{opt::requested_ip, v4(ip(192, 168, 127, 77))}}));
    ASSERT_TRUE(other);
    EXPECT_NE(other->view().yiaddr(), ip(192, 168, 127, 77));
    // The static hostname is sent to the client when it asks for option 12.
    auto offer = send(*s, client_msg(MessageType::discover, mac(7), 2,
                                     {{opt::param_request, list({opt::hostname})}}));
    ASSERT_TRUE(offer);
    const auto h = offer->view().hostname();
    ASSERT_TRUE(h);
    EXPECT_EQ(*h, "db");
}

TEST_F(ServerTest, ExhaustedPoolGivesNoOffer) {
    auto c = config();
    c.range_first = ip(192, 168, 127, 10);
    c.range_last = ip(192, 168, 127, 11);
    auto s = make(c);
    bind(*s, mac(1));
    bind(*s, mac(2));
    EXPECT_FALSE(send(*s, client_msg(MessageType::discover, mac(3), 1)));
    EXPECT_EQ(s->counters().no_address.get(), 1u);
    // After the others' leases expire (and are not renewed), the pool has room again.
    auto later = send(*s, client_msg(MessageType::discover, mac(3), 2), 1000 + 3601);
    ASSERT_TRUE(later);
}

TEST_F(ServerTest, InformGetsConfigurationButNoLease) {
    auto s = make(config());
    const Ipv4Addr self = ip(192, 168, 127, 100);  // configured statically by the guest
    auto ack = send(*s, client_msg(MessageType::inform, mac(1), 1, {}, self));
    ASSERT_TRUE(ack);
    const MessageView v = ack->view();
    EXPECT_EQ(v.type(), MessageType::ack);
    EXPECT_EQ(v.yiaddr(), Ipv4Addr{});
    EXPECT_FALSE(v.option(opt::lease_time));  // RFC 2131 §4.3.5
    EXPECT_TRUE(v.option(opt::router));
    EXPECT_EQ(ack->to.dst_ip, self);
}

TEST_F(ServerTest, ParameterOrderAndSizeLimit) {
    auto s = make(config());
    // A client that asks for routes (121) gets the default route in it (RFC 3442 §2).
    auto offer = send(*s, client_msg(MessageType::discover, mac(1), 1,
                                     {{opt::param_request, list({opt::classless_routes})}}));
    ASSERT_TRUE(offer);
    const auto r = offer->view().option(opt::classless_routes);
    ASSERT_TRUE(r);
    // 24.192.168.127 -> 0.0.0.0 (on-link), then 0 -> 192.168.127.1.
    const Bytes want = list({24, 192, 168, 127, 0, 0, 0, 0, 0, 192, 168, 127, 1});
    EXPECT_EQ(Bytes(r->begin(), r->end()), want);
}

TEST_F(ServerTest, MalformedAndRelayedAreCounted) {
    auto s = make(config());
    EXPECT_FALSE(send(*s, Bytes(100, std::byte{1})));
    Bytes reply = client_msg(MessageType::discover, mac(1), 1);
    reply[0] = std::byte{2};  // a BOOTREPLY sent to the server port
    EXPECT_FALSE(send(*s, reply));
    EXPECT_EQ(s->counters().drop_malformed.get(), 2u);
    Bytes relayed = client_msg(MessageType::discover, mac(1), 1);
    ip(10, 1, 1, 1).store(relayed.data() + 24);  // giaddr of another network
    EXPECT_FALSE(send(*s, relayed));
    EXPECT_EQ(s->counters().ignored.get(), 1u);
}

TEST_F(ServerTest, RelayOnTheGuestLinkIsServedAtGiaddr) {
    auto s = make(config());
    Bytes relayed = client_msg(MessageType::discover, mac(1), 1);
    ip(192, 168, 127, 250).store(relayed.data() + 24);  // a relay agent inside the subnet
    auto offer = send(*s, relayed);
    ASSERT_TRUE(offer);
    EXPECT_TRUE(offer->to.to_relay);
    EXPECT_EQ(offer->to.dst_ip, ip(192, 168, 127, 250));
    EXPECT_EQ(offer->to.dst_port, kServerPort);
    EXPECT_EQ(offer->view().giaddr(), ip(192, 168, 127, 250));
    EXPECT_EQ(offer->view().yiaddr(), ip(192, 168, 127, 2));
}

TEST_F(ServerTest, LeaseFileGivesTheSameAddressesAfterRestart) {
    auto c = config();
    c.lease_file = dir + "/leases";
    Ipv4Addr a, b;
    {
        auto s = make(c);
        bind(*s, mac(1));  // takes .2, so the others get later addresses
        a = bind(*s, mac(2), {{opt::hostname, str("alpha")}});
        b = bind(*s, mac(3));
    }
    struct stat st {};
    ASSERT_EQ(::stat(c.lease_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_NE(::stat((c.lease_file + ".tmp").c_str(), &st), 0);  // renamed, not left behind
    auto s2 = make(c);
    // In the opposite order: each still gets its own address back.
    EXPECT_EQ(bind(*s2, mac(3), {}, 1100), b);
    EXPECT_EQ(bind(*s2, mac(2), {}, 1100), a);
    EXPECT_EQ(s2->address_of("alpha", 1100), a);
}

TEST_F(ServerTest, CorruptLeaseFileIsMovedAsideNotTruncated) {
    auto c = config();
    c.lease_file = dir + "/leases";
    { std::ofstream(c.lease_file) << "# slipway leases v1\nlease zz:zz 1.2.3.4 5 - -\n"; }
    auto s = make(c);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->leases(0).empty());
    bool aside = false;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().filename().string().rfind("leases.corrupt-", 0) == 0) {
            aside = true;
            std::ifstream in(e.path());
            std::string first;
            std::getline(in, first);
            EXPECT_EQ(first, "# slipway leases v1");  // the original content, intact
        }
    }
    EXPECT_TRUE(aside);
    // Not a lease file at all: moved aside too.
    { std::ofstream(c.lease_file) << "hello\n"; }
    EXPECT_NE(make(c), nullptr);
}

TEST_F(ServerTest, ConfigErrorsNameTheFlag) {
    std::string err;
    auto c = config();
    c.range_first = ip(10, 0, 0, 1);
    EXPECT_FALSE(Server::create(c, err));
    EXPECT_NE(err.find("--dhcp-range"), std::string::npos) << err;
    c = config();
    c.lease_time = std::chrono::seconds(5);
    EXPECT_FALSE(Server::create(c, err));
    EXPECT_NE(err.find("--lease-time"), std::string::npos) << err;
    c = config();
    c.statics.push_back({mac(1), kGw, ""});
    EXPECT_FALSE(Server::create(c, err));
    EXPECT_NE(err.find("--dhcp-static"), std::string::npos) << err;
    c = config();
    c.lease_file = dir + "/no/such/dir/leases";  // cannot be written: refused at start
    EXPECT_FALSE(Server::create(c, err));
    EXPECT_NE(err.find("--lease-file"), std::string::npos) << err;
}

TEST(DhcpParse, RangeAndStatic) {
    auto r = parse_range("192.168.127.10-192.168.127.20");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first, ip(192, 168, 127, 10));
    EXPECT_FALSE(parse_range("192.168.127.10"));
    EXPECT_FALSE(parse_range("a-b"));
    auto st = parse_static("52:54:00:12:34:56=192.168.127.10,Web");
    ASSERT_TRUE(st);
    EXPECT_EQ(st->ip, ip(192, 168, 127, 10));
    EXPECT_EQ(st->hostname, "web");
    EXPECT_TRUE(parse_static("52:54:00:12:34:56=192.168.127.10"));
    EXPECT_FALSE(parse_static("52:54:00:12:34:56"));
    EXPECT_FALSE(parse_static("ff:ff:ff:ff:ff:ff=192.168.127.10"));
    EXPECT_FALSE(parse_static("52:54:00:12:34:56=192.168.127.10,bad name"));
}

}  // namespace
}  // namespace slipway::dhcp
