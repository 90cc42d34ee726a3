// dhcp::MessageView and ReplyRepr: parsing what Linux clients send, every rejection, option
// overload, reply emission within size limits, and the option 119/121 encodings of the RFCs.
#include "slipway/dhcp/message.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string_view>
#include <vector>

namespace slipway::dhcp {
namespace {

using Bytes = std::vector<std::byte>;

Bytes bytes(std::initializer_list<int> l) {
    Bytes b;
    for (int v : l)
        b.push_back(static_cast<std::byte>(v));
    return b;
}

// A client message: fixed part, cookie, then `options` verbatim (the caller adds 53 and END).
Bytes message(const Bytes& options, int op = 1) {
    Bytes b(kFixedLen, std::byte{0});
    b[0] = static_cast<std::byte>(op);
    b[1] = std::byte{1};
    b[2] = std::byte{6};
    store_be32(b.data() + 4, 0x3903f326);
    store_be16(b.data() + 10, 0x8000);
    const MacAddr mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
    mac.store(b.data() + 28);
    for (int c : {99, 130, 83, 99})
        b.push_back(static_cast<std::byte>(c));
    b.insert(b.end(), options.begin(), options.end());
    return b;
}

// A DISCOVER shaped like busybox udhcpc's: 53, 61, 57, 50, 12, 55, END, padding.
Bytes udhcpc_discover() {
    Bytes o = bytes({53,  1,    1,    61, 7, 1,   0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 57,
                     2,   0x02, 0x40, 50, 4, 192, 168,  127,  9,    12,   5,    'g',  'u',
                     'e', 's',  't',  55, 7, 1,   3,    6,    12,   15,   28,   42,   255});
    Bytes m = message(o);
    m.resize(300, std::byte{0});
    return m;
}

TEST(DhcpMessage, ParsesAClientDiscover) {
    const Bytes m = udhcpc_discover();
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << static_cast<int>(v.error());
    EXPECT_EQ(v->op(), Op::request);
    EXPECT_EQ(v->type(), MessageType::discover);
    EXPECT_EQ(v->xid(), 0x3903f326u);
    EXPECT_TRUE(v->broadcast_flag());
    EXPECT_EQ(v->chaddr(), (MacAddr{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}));
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(192, 168, 127, 9));
    EXPECT_FALSE(v->server_id());
    EXPECT_EQ(v->max_message_size(), 576);
    ASSERT_TRUE(v->client_id());
    EXPECT_EQ(v->client_id()->size(), 7u);
    EXPECT_EQ(v->hostname(), "guest");
    EXPECT_EQ(v->param_request_list().size(), 7u);
    EXPECT_FALSE(v->option(opt::domain_search));
}

TEST(DhcpMessage, TypedHelpersRejectWrongLengths) {
    Bytes m = message(bytes({53, 1,  3, 50,   3,    1,  2, 3, 54, 4, 10,  0,   0,
                             1,  57, 2, 0x01, 0x00, 61, 1, 1, 12, 2, 'a', ' ', 255}));
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->requested_ip());      // 3 bytes
    EXPECT_TRUE(v->server_id());          // fine
    EXPECT_FALSE(v->max_message_size());  // 256 < 576 (RFC 2132 §9.10)
    EXPECT_FALSE(v->client_id());         // needs type + at least one byte
    EXPECT_FALSE(v->hostname());          // not printable without spaces
    EXPECT_TRUE(v->param_request_list().empty());
}

TEST(DhcpMessage, Rejections) {
    const Bytes good = udhcpc_discover();
    EXPECT_EQ(MessageView::parse(ByteView{good}.first(kFixedLen + 3)).error(), Errc::truncated);
    Bytes b = good;
    b[0] = std::byte{3};
    EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_version);
    b = good;
    b[1] = std::byte{6};  // IEEE 802 htype
    EXPECT_EQ(MessageView::parse(b).error(), Errc::unsupported);
    b = good;
    b[kFixedLen] = std::byte{98};
    EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_version);
    // BOOTP: no option 53.
    EXPECT_EQ(MessageView::parse(message(bytes({255}))).error(), Errc::unsupported);
    // Option 53 of the wrong length or value.
    EXPECT_EQ(MessageView::parse(message(bytes({53, 2, 1, 1, 255}))).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 9, 255}))).error(), Errc::unsupported);
    // An option running past the end of the message.
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 12, 40, 'x'}))).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 12}))).error(), Errc::truncated);
}

TEST(DhcpMessage, OverloadedFileFieldCarriesOptions) {
    // RFC 2131 §4.1 / RFC 2132 §9.3: option 52 = 1 puts more options in the file field.
    Bytes m = message(bytes({53, 1, 1, 52, 1, 1, 255}));
    const Bytes in_file = bytes({12, 4, 'h', 'o', 's', 't', 255});
    std::memcpy(m.data() + 108, in_file.data(), in_file.size());
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->hostname(), "host");
    // A malformed option in an overloaded field rejects the message.
    m[108 + 1] = std::byte{200};
    EXPECT_EQ(MessageView::parse(m).error(), Errc::truncated);
    // Without option 52, the file field is not read.
    Bytes plain = message(bytes({53, 1, 1, 255}));
    std::memcpy(plain.data() + 108, in_file.data(), in_file.size());
    auto p = MessageView::parse(plain);
    ASSERT_TRUE(p);
    EXPECT_FALSE(p->hostname());
}

TEST(DhcpMessage, ReplyRoundTripsAndPadsToTheMinimum) {
    const std::array<std::byte, 4> mask{std::byte{255}, std::byte{255}, std::byte{255},
                                        std::byte{0}};
    const Option opts[] = {{opt::subnet_mask, mask}};
    ReplyRepr r;
    r.type = MessageType::ack;
    r.xid = 77;
    r.broadcast_flag = true;
    r.yiaddr = Ipv4Addr::from_octets(10, 0, 0, 5);
    r.chaddr = MacAddr{{2, 0, 0, 0, 0, 1}};
    r.options = opts;
    std::array<std::byte, 1500> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kMinMessageLen);  // RFC 2131 §2: 576-byte datagrams
    auto v = MessageView::parse(ByteView{out}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->op(), Op::reply);
    EXPECT_EQ(v->type(), MessageType::ack);
    EXPECT_EQ(v->xid(), 77u);
    EXPECT_TRUE(v->broadcast_flag());
    EXPECT_EQ(v->yiaddr(), Ipv4Addr::from_octets(10, 0, 0, 5));
    EXPECT_EQ(v->chaddr(), r.chaddr);
    ASSERT_TRUE(v->option(opt::subnet_mask));
    EXPECT_EQ(Ipv4Addr::load(v->option(opt::subnet_mask)->data()),
              Ipv4Addr::from_octets(255, 255, 255, 0));
    std::array<std::byte, 100> tiny{};
    EXPECT_EQ(r.emit(tiny).error(), Errc::too_large);
}

TEST(DhcpMessage, OptionsThatDoNotFitAreSkippedNotCut) {
    std::vector<std::byte> big(250, std::byte{'x'});
    const std::array<std::byte, 4> small{};
    const Option opts[] = {{opt::domain_name, big}, {opt::domain_name, big}, {opt::router, small}};
    ReplyRepr r;
    r.options = opts;
    r.max_len = kMinMessageLen;  // room for one 252-byte option, not two
    std::array<std::byte, 1500> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kMinMessageLen);
    auto v = MessageView::parse(ByteView{out}.first(*n));
    ASSERT_TRUE(v);
    ASSERT_TRUE(v->option(opt::domain_name));
    EXPECT_EQ(v->option(opt::domain_name)->size(), 250u);
    EXPECT_TRUE(v->option(opt::router));  // the smaller one after it still fits
    // With a larger limit both are there (the second is found by walking past the first).
    r.max_len = 1000;
    n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_GT(*n, kMinMessageLen);
}

TEST(DhcpMessage, SearchListEncodingFollowsRfc3397) {
    // RFC 3397 §2 example list "eng.apple.com." and "marketing.apple.com.", uncompressed.
    const std::string_view names[] = {"eng.apple.com", "marketing.apple.com."};
    std::array<std::byte, 64> out{};
    auto n = encode_search_list(names, out);
    ASSERT_TRUE(n);
    const Bytes want = bytes({3,   'e', 'n', 'g', 5,   'a', 'p', 'p', 'l', 'e', 3,   'c',
                              'o', 'm', 0,   9,   'm', 'a', 'r', 'k', 'e', 't', 'i', 'n',
                              'g', 5,   'a', 'p', 'p', 'l', 'e', 3,   'c', 'o', 'm', 0});
    EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*n)), want);
    const std::string_view bad[] = {"a..b"};
    EXPECT_EQ(encode_search_list(bad, out).error(), Errc::invalid_argument);
    const std::string_view many[] = {"abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz.org"};
    std::array<std::byte, 10> small{};
    EXPECT_EQ(encode_search_list(many, small).error(), Errc::too_large);
}

TEST(DhcpMessage, ClasslessRoutesFollowRfc3442) {
    // RFC 3442 §2 examples: 10.17.0.0/16 -> 2 octets, 10.27.129.0/24 -> 3, 0/0 -> none.
    const ClasslessRoute routes[] = {
        {Ipv4Addr::from_octets(10, 17, 0, 0), 16, Ipv4Addr::from_octets(10, 0, 0, 1)},
        {Ipv4Addr::from_octets(10, 27, 129, 0), 24, Ipv4Addr::from_octets(10, 0, 0, 2)},
        {Ipv4Addr{}, 0, Ipv4Addr::from_octets(10, 0, 0, 3)},
    };
    std::array<std::byte, 64> out{};
    auto n = encode_classless_routes(routes, out);
    ASSERT_TRUE(n);
    const Bytes want =
        bytes({16, 10, 17, 10, 0, 0, 1, 24, 10, 27, 129, 10, 0, 0, 2, 0, 10, 0, 0, 3});
    EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*n)), want);
    const ClasslessRoute bad[] = {{Ipv4Addr{}, 33, Ipv4Addr{}}};
    EXPECT_EQ(encode_classless_routes(bad, out).error(), Errc::invalid_argument);
}

}  // namespace
}  // namespace slipway::dhcp
