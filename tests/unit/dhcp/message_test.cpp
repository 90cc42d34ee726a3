// dhcp::MessageView and ReplyRepr: parsing what Linux clients send, every rejection, option
// overload, reply emission within size limits, and the option 119/121 encodings of the RFCs.
#include "slipway/dhcp/message.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace slipway::dhcp {
namespace {

using Bytes = std::vector<std::byte>;

constexpr std::size_t kSnameOff = 44;
constexpr std::size_t kFileOff = 108;
constexpr std::size_t kOptionsOff = kFixedLen + kCookieLen;
const MacAddr kMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};

Bytes bytes(std::initializer_list<int> l) {
    Bytes b;
    for (int v : l)
        b.push_back(static_cast<std::byte>(v));
    return b;
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes b;
    for (const Bytes& p : parts)
        b.insert(b.end(), p.begin(), p.end());
    return b;
}

std::ptrdiff_t at(std::size_t n) {
    return static_cast<std::ptrdiff_t>(n);
}

bool all_zero(ByteView b) {
    return std::all_of(b.begin(), b.end(), [](std::byte c) { return c == std::byte{0}; });
}

// The fixed fields of a client message (RFC 2131 §2, Figure 1).
struct Fixed {
    int op = 1;
    int hops = 0;
    std::uint32_t xid = 0x3903f326;
    std::uint16_t secs = 0;
    bool broadcast = false;
    Ipv4Addr ciaddr, giaddr;
    MacAddr chaddr = kMac;
};

// A client message: fixed part, cookie, then `options` verbatim (the caller writes 53 and END),
// zero-padded to `pad_to` bytes as clients pad to the 300-byte BOOTP minimum.
Bytes message(const Bytes& options, const Fixed& f = {}, std::size_t pad_to = 0) {
    Bytes b(kFixedLen, std::byte{0});
    b[0] = static_cast<std::byte>(f.op);
    b[1] = std::byte{1};
    b[2] = std::byte{6};
    b[3] = static_cast<std::byte>(f.hops);
    store_be32(b.data() + 4, f.xid);
    store_be16(b.data() + 8, f.secs);
    store_be16(b.data() + 10, f.broadcast ? std::uint16_t{0x8000} : std::uint16_t{0});
    f.ciaddr.store(b.data() + 12);
    f.giaddr.store(b.data() + 24);
    f.chaddr.store(b.data() + 28);
    for (int c : {99, 130, 83, 99})
        b.push_back(static_cast<std::byte>(c));
    b.insert(b.end(), options.begin(), options.end());
    if (b.size() < pad_to) b.resize(pad_to, std::byte{0});
    return b;
}

// busybox udhcpc 1.35 DISCOVER (`udhcpc -i slw0 -x hostname:guest -r 192.168.127.9`): 53, 61
// (type 1 + MAC), 57 = 576, 50, 12, 55 (its default list), END, zeros to 300 bytes.
Bytes udhcpc_discover() {
    const Bytes o = bytes({53,  1,    1,    61, 7, 1,   0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 57,
                           2,   0x02, 0x40, 50, 4, 192, 168,  127,  9,    12,   5,    'g',  'u',
                           'e', 's',  't',  55, 7, 1,   3,    6,    12,   15,   28,   42,   255});
    return message(o, {}, 300);
}

// ISC dhclient 4.4 DISCOVER after a reboot: secs counting, no client id, 50 with the old lease,
// 12, a long 55 (its dhclient.conf `request` line), END, zeros to 300 bytes.
Bytes dhclient_discover() {
    const Bytes o = bytes({53, 1, 1,  50, 4, 192, 168, 127, 2,  12, 4,  'v', 'm', '0', '1', 55,
                           13, 1, 28, 2,  3, 15,  6,   119, 12, 44, 47, 26,  121, 42,  255});
    Fixed f;
    f.xid = 0x7f3a9c01;
    f.secs = 3;
    return message(o, f, 300);
}

// The bytes of one option as a vector, for comparing views.
Bytes of(std::optional<ByteView> v) {
    return v ? Bytes(v->begin(), v->end()) : Bytes{};
}

// ------------------------------------------------------------------------- parsing clients

TEST(DhcpMessage, ParsesAUdhcpcDiscover) {
    const Bytes m = udhcpc_discover();
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->op(), Op::request);
    EXPECT_EQ(v->type(), MessageType::discover);
    EXPECT_EQ(v->xid(), 0x3903f326u);
    EXPECT_EQ(v->secs(), 0);
    EXPECT_FALSE(v->broadcast_flag());
    EXPECT_EQ(v->ciaddr(), Ipv4Addr{});
    EXPECT_EQ(v->yiaddr(), Ipv4Addr{});
    EXPECT_EQ(v->giaddr(), Ipv4Addr{});
    EXPECT_EQ(v->chaddr(), kMac);
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(192, 168, 127, 9));
    EXPECT_FALSE(v->server_id());
    EXPECT_EQ(v->max_message_size(), 576);
    ASSERT_TRUE(v->client_id());
    EXPECT_EQ(of(v->client_id()), bytes({1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    EXPECT_EQ(v->hostname(), "guest");
    EXPECT_EQ(Bytes(v->param_request_list().begin(), v->param_request_list().end()),
              bytes({1, 3, 6, 12, 15, 28, 42}));
    EXPECT_EQ(of(v->option(opt::message_type)), bytes({1}));
    EXPECT_FALSE(v->option(opt::domain_search));
    EXPECT_FALSE(v->option(opt::overload));
}

TEST(DhcpMessage, ParsesADhclientDiscover) {
    const Bytes m = dhclient_discover();
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::discover);
    EXPECT_EQ(v->xid(), 0x7f3a9c01u);
    EXPECT_EQ(v->secs(), 3);
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(192, 168, 127, 2));
    EXPECT_FALSE(v->client_id());
    EXPECT_FALSE(v->max_message_size());
    EXPECT_EQ(v->hostname(), "vm01");
    EXPECT_EQ(v->param_request_list().size(), 13u);
    EXPECT_EQ(v->param_request_list()[6], std::byte{opt::domain_search});
}

TEST(DhcpMessage, ParsesARequestInSelectingState) {
    // RFC 2131 §4.3.2: SELECTING carries 50 and 54 with ciaddr zero; udhcpc also broadcasts.
    const Bytes o = bytes({53,  1,   3,   61,  7,   1,  0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 50,
                           4,   192, 168, 127, 2,   54, 4,    192,  168,  127,  1,    12,   5,
                           'g', 'u', 'e', 's', 't', 55, 3,    1,    3,    6,    255});
    Fixed f;
    f.broadcast = true;
    const Bytes m = message(o, f, 300);
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::request);
    EXPECT_TRUE(v->broadcast_flag());
    EXPECT_EQ(v->ciaddr(), Ipv4Addr{});
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(192, 168, 127, 2));
    EXPECT_EQ(v->server_id(), Ipv4Addr::from_octets(192, 168, 127, 1));
    EXPECT_EQ(v->hostname(), "guest");
}

TEST(DhcpMessage, ParsesARelease) {
    // RFC 2131 §4.4.6: ciaddr holds the address given up, 54 names the server, no 50.
    Fixed f;
    f.ciaddr = Ipv4Addr::from_octets(192, 168, 127, 2);
    const Bytes m = message(bytes({53, 1, 7, 54, 4, 192, 168, 127, 1, 255}), f, 300);
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::release);
    EXPECT_EQ(v->ciaddr(), Ipv4Addr::from_octets(192, 168, 127, 2));
    EXPECT_EQ(v->server_id(), Ipv4Addr::from_octets(192, 168, 127, 1));
    EXPECT_FALSE(v->requested_ip());
    EXPECT_FALSE(v->hostname());
    EXPECT_TRUE(v->param_request_list().empty());
}

TEST(DhcpMessage, ParsesAnInformWithCiaddr) {
    // RFC 2131 §4.4.3: the client already has ciaddr and asks only for parameters.
    Fixed f;
    f.ciaddr = Ipv4Addr::from_octets(192, 168, 127, 100);
    f.secs = 12;
    const Bytes m = message(bytes({53, 1, 8, 55, 4, 1, 3, 6, 15, 255}), f, 300);
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::inform);
    EXPECT_EQ(v->ciaddr(), Ipv4Addr::from_octets(192, 168, 127, 100));
    EXPECT_EQ(v->secs(), 12);
    EXPECT_EQ(Bytes(v->param_request_list().begin(), v->param_request_list().end()),
              bytes({1, 3, 6, 15}));
}

TEST(DhcpMessage, ParsesARelayedDecline) {
    // RFC 2131 §4.1: a relay fills giaddr and counts hops; the view reports giaddr as sent.
    Fixed f;
    f.hops = 1;
    f.giaddr = Ipv4Addr::from_octets(10, 1, 0, 1);
    const Bytes m = message(bytes({53, 1, 4, 50, 4, 10, 1, 0, 50, 255}), f);
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::decline);
    EXPECT_EQ(v->giaddr(), Ipv4Addr::from_octets(10, 1, 0, 1));
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(10, 1, 0, 50));
}

TEST(DhcpMessage, ParsesEveryMessageTypeAndBothOps) {
    for (int t = 1; t <= 8; ++t) {
        for (int op : {1, 2}) {
            Fixed f;
            f.op = op;
            const Bytes m = message(bytes({53, 1, t, 255}), f);
            auto v = MessageView::parse(m);
            ASSERT_TRUE(v) << t;
            EXPECT_EQ(v->type(), static_cast<MessageType>(t));
            EXPECT_EQ(v->op(), static_cast<Op>(op));
        }
    }
}

TEST(DhcpMessage, OptionsWalkPadsEndAndBufferEnd) {
    // RFC 2132 §3.1: pad is one byte anywhere. The last option may end at the buffer without END
    // (tolerated), and bytes after END are not options.
    const Bytes padded = message(bytes({0, 0, 53, 1, 1, 0, 12, 1, 'a', 0, 0}));
    auto v = MessageView::parse(padded);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "a");

    const Bytes no_end = message(bytes({53, 1, 1, 12, 2, 'a', 'b'}));
    v = MessageView::parse(no_end);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "ab");

    const Bytes after_end = message(bytes({53, 1, 1, 255, 12, 200, 'x'}));
    v = MessageView::parse(after_end);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_FALSE(v->option(opt::hostname));
    EXPECT_FALSE(v->option(opt::end));  // END is a marker, never an option with a value
    EXPECT_FALSE(v->option(opt::pad));

    // A zero-length option is well formed.
    const Bytes empty_opt = message(bytes({53, 1, 1, 80, 0, 255}));
    v = MessageView::parse(empty_opt);
    ASSERT_TRUE(v) << to_string(v.error());
    ASSERT_TRUE(v->option(80));
    EXPECT_TRUE(v->option(80)->empty());
}

TEST(DhcpMessage, OptionReturnsTheFirstOccurrenceInsideTheBuffer) {
    const Bytes m = message(bytes({53, 1, 1, 12, 3, 'o', 'n', 'e', 12, 3, 't', 'w', 'o', 255}));
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->hostname(), "one");
    const auto o = v->option(opt::hostname);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->data(), m.data() + kOptionsOff + 5);  // a view into the message, not a copy
}

// ---------------------------------------------------------------------------- typed helpers

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

    m = message(bytes(
        {53, 1, 3, 50, 5, 1, 2, 3, 4, 5, 54, 0, 57, 3, 0x02, 0x40, 0, 61, 2, 0, 'x', 12, 0, 255}));
    v = MessageView::parse(m);
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->requested_ip());                 // 5 bytes
    EXPECT_FALSE(v->server_id());                    // 0 bytes
    EXPECT_FALSE(v->max_message_size());             // 3 bytes
    EXPECT_EQ(of(v->client_id()), bytes({0, 'x'}));  // 2 bytes: the smallest legal client id
    EXPECT_FALSE(v->hostname());                     // empty
}

TEST(DhcpMessage, MaxMessageSizeBoundary) {
    auto mms = [](int hi, int lo) {
        const Bytes m = message(bytes({53, 1, 1, 57, 2, hi, lo, 255}));
        auto v = MessageView::parse(m);
        return v ? v->max_message_size() : std::nullopt;
    };
    EXPECT_FALSE(mms(0x02, 0x3f));  // 575
    EXPECT_EQ(mms(0x02, 0x40), 576);
    EXPECT_EQ(mms(0x05, 0xdc), 1500);
    EXPECT_EQ(mms(0xff, 0xff), 65535);
}

TEST(DhcpMessage, HostnameBoundsAndTrailingNul) {
    auto host = [](const std::string& h) -> std::optional<std::string> {
        Bytes o = bytes({53, 1, 1, 12, static_cast<int>(h.size())});
        for (char c : h)
            o.push_back(static_cast<std::byte>(c));
        o.push_back(std::byte{255});
        const Bytes m = message(o);
        auto v = MessageView::parse(m);
        if (!v) return std::string("parse failed");
        auto n = v->hostname();
        return n ? std::optional<std::string>(std::string(*n)) : std::nullopt;
    };
    EXPECT_EQ(host("a"), "a");
    EXPECT_EQ(host(std::string(63, 'h')), std::string(63, 'h'));
    EXPECT_FALSE(host(std::string(64, 'h')));
    EXPECT_EQ(host("win10-pc"), "win10-pc");
    EXPECT_EQ(host(std::string("win10-pc\0", 9)), "win10-pc");  // Windows NUL-terminates
    EXPECT_FALSE(host(std::string("\0", 1)));
    EXPECT_FALSE(host(std::string("a\0b", 3)));
    EXPECT_FALSE(host("tab\there"));
    EXPECT_FALSE(host("del\x7f"));
    EXPECT_FALSE(host("caf\xc3\xa9"));
}

// ------------------------------------------------------------------------------- rejections

TEST(DhcpMessage, RejectsShortMessages) {
    const Bytes good = udhcpc_discover();
    for (std::size_t n :
         {std::size_t{0}, std::size_t{1}, kFixedLen - 1, kFixedLen, kFixedLen + 3}) {
        auto v = MessageView::parse(ByteView{good}.first(n));
        ASSERT_FALSE(v) << n;
        EXPECT_EQ(v.error(), Errc::truncated) << n;
    }
}

TEST(DhcpMessage, RejectsBadHeaderFields) {
    const Bytes good = udhcpc_discover();
    Bytes b = good;
    for (int op : {0, 3, 255}) {
        b[0] = static_cast<std::byte>(op);
        EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_version) << op;
    }
    b = good;
    b[1] = std::byte{6};  // IEEE 802 htype
    EXPECT_EQ(MessageView::parse(b).error(), Errc::unsupported);
    b = good;
    b[2] = std::byte{16};  // hlen of an InfiniBand-sized address
    EXPECT_EQ(MessageView::parse(b).error(), Errc::unsupported);
    for (std::size_t i = 0; i < kCookieLen; ++i) {
        b = good;
        b[kFixedLen + i] ^= std::byte{0x01};
        EXPECT_EQ(MessageView::parse(b).error(), Errc::bad_version) << i;
    }
}

TEST(DhcpMessage, RejectsMissingOrBadMessageType) {
    // BOOTP: no option 53, or 53 only after END.
    EXPECT_EQ(MessageView::parse(message(bytes({255}))).error(), Errc::unsupported);
    EXPECT_EQ(MessageView::parse(message({})).error(), Errc::unsupported);
    EXPECT_EQ(MessageView::parse(message(bytes({12, 1, 'a', 255, 53, 1, 1}))).error(),
              Errc::unsupported);
    // Option 53 of the wrong length (RFC 2132 §9.6: exactly one byte) or value.
    EXPECT_EQ(MessageView::parse(message(bytes({53, 0, 255}))).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 2, 1, 1, 255}))).error(), Errc::bad_length);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 0, 255}))).error(), Errc::unsupported);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 9, 255}))).error(), Errc::unsupported);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 13, 255}))).error(), Errc::unsupported);
}

TEST(DhcpMessage, RejectsOptionsRunningPastTheEnd) {
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 12, 40, 'x'}))).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 12}))).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1}))).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 12, 2, 'x'}))).error(), Errc::truncated);
    // A later malformed option rejects the message even when 53 came first.
    EXPECT_EQ(MessageView::parse(message(bytes({53, 1, 1, 0, 0, 61, 3, 1}))).error(),
              Errc::truncated);
}

// --------------------------------------------------------------------------------- overload

// A message whose option 52 is `overload`, with `file` and `sname` bytes in those fields.
Bytes overloaded(int overload, const Bytes& file, const Bytes& sname, const Bytes& first = {}) {
    Bytes m = message(concat({bytes({53, 1, 1, 52, 1, overload}), first, bytes({255})}));
    std::copy(file.begin(), file.end(), m.begin() + at(kFileOff));
    std::copy(sname.begin(), sname.end(), m.begin() + at(kSnameOff));
    return m;
}

TEST(DhcpMessage, OverloadedFileFieldCarriesOptions) {
    // RFC 2131 §4.1 / RFC 2132 §9.3: option 52 = 1 puts more options in the file field.
    const Bytes in_file = bytes({12, 4, 'h', 'o', 's', 't', 255});
    Bytes m = overloaded(1, in_file, {});
    auto v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "host");
    EXPECT_EQ(v->option(opt::hostname)->data(), m.data() + kFileOff + 2);
    // A malformed option in an overloaded field rejects the message.
    m[kFileOff + 1] = std::byte{200};
    EXPECT_EQ(MessageView::parse(m).error(), Errc::truncated);
    // Without option 52, the file field is a file name, not options.
    Bytes plain = message(bytes({53, 1, 1, 255}));
    std::copy(in_file.begin(), in_file.end(), plain.begin() + at(kFileOff));
    auto p = MessageView::parse(plain);
    ASSERT_TRUE(p);
    EXPECT_FALSE(p->hostname());
}

TEST(DhcpMessage, OverloadedSnameAndBothFields) {
    const Bytes host_a = bytes({12, 1, 'a', 255});
    const Bytes host_b = bytes({12, 1, 'b', 50, 4, 10, 0, 0, 9, 255});
    // 2: sname only; the file field's bytes are not read.
    const Bytes sname_only = overloaded(2, host_a, host_b);
    auto v = MessageView::parse(sname_only);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "b");
    // 3: both; options first, then file, then sname (RFC 2131 §4.1).
    const Bytes both = overloaded(3, host_a, host_b);
    v = MessageView::parse(both);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "a");
    EXPECT_EQ(v->requested_ip(), Ipv4Addr::from_octets(10, 0, 0, 9));  // only in sname
    const Bytes both_and_options = overloaded(3, host_a, host_b, bytes({12, 1, 'o'}));
    v = MessageView::parse(both_and_options);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->hostname(), "o");
    // A malformed sname rejects the message when overloaded, and only then.
    const Bytes bad = bytes({12, 100, 'x'});
    EXPECT_EQ(MessageView::parse(overloaded(2, {}, bad)).error(), Errc::truncated);
    EXPECT_EQ(MessageView::parse(overloaded(3, {}, bad)).error(), Errc::truncated);
    EXPECT_TRUE(MessageView::parse(overloaded(1, {}, bad)));
    // A code byte in the last byte of a field has no length byte.
    Bytes last = overloaded(1, {}, {});
    last[kFileOff + 127] = std::byte{12};
    EXPECT_EQ(MessageView::parse(last).error(), Errc::truncated);
}

TEST(DhcpMessage, OverloadNeedsAValidOptionInTheOptionsField) {
    const Bytes bad = bytes({12, 100, 'x'});
    // RFC 2132 §9.3 values are 1..3: others leave file and sname alone.
    for (int o : {0, 4, 5, 255}) {
        auto v = MessageView::parse(overloaded(o, bad, bad));
        EXPECT_TRUE(v) << o;
    }
    // RFC 2131 §4.1: option 52 counts only in the options field, so a 52 inside the file
    // field does not open sname.
    const Bytes file = bytes({52, 1, 2, 255});
    auto v = MessageView::parse(overloaded(1, file, bad));
    EXPECT_TRUE(v);
    // Option 53 may itself live in an overloaded field.
    Bytes m = message(bytes({52, 1, 1, 255}));
    const Bytes type_in_file = bytes({53, 1, 3, 255});
    std::copy(type_in_file.begin(), type_in_file.end(), m.begin() + at(kFileOff));
    v = MessageView::parse(m);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->type(), MessageType::request);
    // ... and is checked there like anywhere else.
    m[kFileOff + 2] = std::byte{42};
    EXPECT_EQ(MessageView::parse(m).error(), Errc::unsupported);
}

// ------------------------------------------------------------------------------------ emit

ReplyRepr ack_for(const MessageView& req) {
    ReplyRepr r;
    r.type = MessageType::ack;
    r.xid = req.xid();
    r.broadcast_flag = req.broadcast_flag();
    r.ciaddr = req.ciaddr();
    r.yiaddr = Ipv4Addr::from_octets(192, 168, 127, 2);
    r.siaddr = Ipv4Addr::from_octets(192, 168, 127, 1);
    r.giaddr = req.giaddr();
    r.chaddr = req.chaddr();
    return r;
}

TEST(DhcpMessage, ReplyRoundTripsAndPadsToTheMinimum) {
    const Bytes req_bytes = udhcpc_discover();
    auto req = MessageView::parse(req_bytes);
    ASSERT_TRUE(req);
    const Bytes mask = bytes({255, 255, 255, 0});
    const Bytes router = bytes({192, 168, 127, 1});
    const Bytes lease = bytes({0, 0, 0x0e, 0x10});
    const Option opts[] = {{opt::server_id, router},
                           {opt::lease_time, lease},
                           {opt::subnet_mask, mask},
                           {opt::router, router},
                           {opt::hostname, ByteView{}}};
    ReplyRepr r = ack_for(*req);
    r.broadcast_flag = true;
    r.options = opts;
    std::array<std::byte, 1500> out;
    out.fill(std::byte{0xee});  // stale bytes: emit must overwrite everything it returns
    auto n = r.emit(out);
    ASSERT_TRUE(n) << to_string(n.error());
    EXPECT_EQ(*n, kMinMessageLen);  // RFC 2131 §2: 576-byte datagrams
    const ByteView msg = ByteView{out}.first(*n);
    auto v = MessageView::parse(msg);
    ASSERT_TRUE(v) << to_string(v.error());
    EXPECT_EQ(v->op(), Op::reply);
    EXPECT_EQ(v->type(), MessageType::ack);
    EXPECT_EQ(v->xid(), 0x3903f326u);
    EXPECT_TRUE(v->broadcast_flag());
    EXPECT_EQ(v->secs(), 0);
    EXPECT_EQ(v->ciaddr(), Ipv4Addr{});
    EXPECT_EQ(v->yiaddr(), Ipv4Addr::from_octets(192, 168, 127, 2));
    EXPECT_EQ(Ipv4Addr::load(msg.data() + 20), Ipv4Addr::from_octets(192, 168, 127, 1));
    EXPECT_EQ(v->giaddr(), Ipv4Addr{});
    EXPECT_EQ(v->chaddr(), kMac);
    EXPECT_EQ(v->server_id(), Ipv4Addr::from_octets(192, 168, 127, 1));
    EXPECT_EQ(of(v->option(opt::lease_time)), lease);
    EXPECT_EQ(of(v->option(opt::subnet_mask)), mask);
    EXPECT_EQ(of(v->option(opt::router)), router);
    ASSERT_TRUE(v->option(opt::hostname));  // a zero-length value is still emitted
    EXPECT_TRUE(v->option(opt::hostname)->empty());

    // Fixed part byte by byte: op, htype, hlen, hops; chaddr padding, sname and file are zero.
    EXPECT_EQ(msg[0], std::byte{2});
    EXPECT_EQ(msg[1], std::byte{1});
    EXPECT_EQ(msg[2], std::byte{6});
    EXPECT_EQ(msg[3], std::byte{0});
    EXPECT_TRUE(all_zero(msg.subspan(34, 10)));         // chaddr bytes 6..15
    EXPECT_TRUE(all_zero(msg.subspan(kSnameOff, 64)));  // sname
    EXPECT_TRUE(all_zero(msg.subspan(kFileOff, 128)));  // file
    EXPECT_EQ(Bytes(msg.begin() + at(kFixedLen), msg.begin() + at(kOptionsOff)),
              bytes({99, 130, 83, 99}));
    // Option 53 first, then the options in the order given, END, zeros to the end.
    const Bytes head =
        bytes({53, 1, 5,   54,  4,   192, 168, 127, 1,   51,  4,   0, 0,  0x0e, 0x10,
               1,  4, 255, 255, 255, 0,   3,   4,   192, 168, 127, 1, 12, 0,    255});
    EXPECT_EQ(Bytes(msg.begin() + at(kOptionsOff), msg.begin() + at(kOptionsOff + head.size())),
              head);
    EXPECT_TRUE(all_zero(msg.subspan(kOptionsOff + head.size())));
}

TEST(DhcpMessage, ReplyFlagsAndRelayFields) {
    Fixed f;
    f.giaddr = Ipv4Addr::from_octets(10, 1, 0, 1);
    f.ciaddr = Ipv4Addr::from_octets(10, 1, 0, 7);
    const Bytes req_bytes = message(bytes({53, 1, 8, 255}), f);
    auto req = MessageView::parse(req_bytes);
    ASSERT_TRUE(req);
    const ReplyRepr r = ack_for(*req);
    std::array<std::byte, 600> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    auto v = MessageView::parse(ByteView{out}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->broadcast_flag());
    EXPECT_EQ(load_be16(out.data() + 10), 0);  // flags: reserved bits zero too
    EXPECT_EQ(v->ciaddr(), Ipv4Addr::from_octets(10, 1, 0, 7));
    EXPECT_EQ(v->giaddr(), Ipv4Addr::from_octets(10, 1, 0, 1));
}

TEST(DhcpMessage, ReplyTooSmallABuffer) {
    ReplyRepr r;
    std::array<std::byte, 100> tiny{};
    EXPECT_EQ(r.emit(tiny).error(), Errc::too_large);
    // Fixed part, cookie, option 53 and END: 244 bytes is the least that works.
    std::array<std::byte, kOptionsOff + 3> almost{};
    EXPECT_EQ(r.emit(almost).error(), Errc::too_large);
    std::array<std::byte, kOptionsOff + 4> just{};
    auto n = r.emit(just);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, just.size());  // padding stops at the buffer
    auto v = MessageView::parse(ByteView{just}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->type(), MessageType::offer);
}

TEST(DhcpMessage, OptionsThatDoNotFitAreSkippedNotCut) {
    // 240 fixed + cookie, 3 for option 53, so a 548-byte message has 305 bytes for options and
    // END: 252 for the first, 53 left, of which one is END.
    const Bytes big(250, std::byte{'x'});
    const Bytes over(51, std::byte{'o'});  // 53 bytes with its header: no room for END
    const Bytes fits(50, std::byte{'f'});  // 52 bytes: END lands in the last byte
    const Option opts[] = {{opt::domain_name, big}, {opt::message, over}, {opt::router, fits}};
    ReplyRepr r;
    r.options = opts;
    r.max_len = kMinMessageLen;
    std::array<std::byte, 1500> out{};
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kMinMessageLen);
    EXPECT_EQ(out[kMinMessageLen - 1], std::byte{opt::end});
    auto v = MessageView::parse(ByteView{out}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->option(opt::domain_name)->size(), 250u);
    EXPECT_FALSE(v->option(opt::message));  // skipped, not cut to fit
    EXPECT_EQ(v->option(opt::router)->size(), 50u);

    // A max_len below the RFC 2131 minimum is raised to it: the same message.
    r.max_len = 300;
    std::array<std::byte, 1500> low{};
    n = r.emit(low);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kMinMessageLen);
    EXPECT_EQ(low, out);

    // With room for all, the message is as long as its options and no longer.
    r.max_len = 1000;
    n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kOptionsOff + 3 + 252 + 53 + 52 + 1);
    v = MessageView::parse(ByteView{out}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->option(opt::message)->size(), 51u);

    // The buffer limits too when smaller than max_len.
    r.max_len = 1500;
    std::array<std::byte, 400> small{};
    n = r.emit(small);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, small.size());
    v = MessageView::parse(ByteView{small}.first(*n));
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->option(opt::domain_name));
    EXPECT_EQ(v->option(opt::message)->size(), 51u);
    EXPECT_EQ(v->option(opt::router)->size(), 50u);
}

TEST(DhcpMessage, UnencodableOptionsAreSkipped) {
    const Bytes huge(256, std::byte{'h'});  // RFC 2132 §2: a length is one byte
    const Bytes one = bytes({1});
    const Bytes mtu = bytes({0x05, 0xdc});
    const Option opts[] = {
        {opt::domain_name, huge}, {opt::pad, one}, {opt::end, one}, {opt::mtu, mtu}};
    ReplyRepr r;
    r.type = MessageType::nak;
    r.options = opts;
    std::array<std::byte, 1500> out{};
    r.max_len = 1500;
    auto n = r.emit(out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, kMinMessageLen);
    EXPECT_EQ(Bytes(out.begin() + at(kOptionsOff), out.begin() + at(kOptionsOff + 8)),
              bytes({53, 1, 6, 26, 2, 0x05, 0xdc, 255}));
}

// ---------------------------------------------------------------------- option 119 and 121

Bytes written(const std::array<std::byte, 300>& out, std::size_t n) {
    return Bytes(out.begin(), out.begin() + at(n));
}

TEST(DhcpMessage, SearchListEncodingFollowsRfc3397) {
    // RFC 3397 §2 example list "eng.apple.com." and "marketing.apple.com.", here without the
    // compression pointer the example uses: each name in full.
    const std::string_view names[] = {"eng.apple.com", "marketing.apple.com."};
    std::array<std::byte, 300> out{};
    auto n = encode_search_list(names, out);
    ASSERT_TRUE(n);
    const Bytes want = bytes({3,   'e', 'n', 'g', 5,   'a', 'p', 'p', 'l', 'e', 3,   'c',
                              'o', 'm', 0,   9,   'm', 'a', 'r', 'k', 'e', 't', 'i', 'n',
                              'g', 5,   'a', 'p', 'p', 'l', 'e', 3,   'c', 'o', 'm', 0});
    EXPECT_EQ(written(out, *n), want);

    const std::string_view single[] = {"lan"};
    n = encode_search_list(single, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(written(out, *n), bytes({3, 'l', 'a', 'n', 0}));

    n = encode_search_list({}, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);
}

TEST(DhcpMessage, SearchListLimits) {
    std::array<std::byte, 512> out{};
    // RFC 1035 §2.3.4: labels 1..63 bytes, names up to 255 bytes encoded.
    const std::string l63(63, 'a');
    const std::string name255 = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
    const std::string_view ok[] = {l63, name255};
    auto n = encode_search_list(ok, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, (63u + 2u) + 255u);
    const std::string name256 = name255 + "b";
    const std::string l64(64, 'a');
    for (std::string_view bad :
         {std::string_view{}, std::string_view{"."}, std::string_view{"a..b"},
          std::string_view{".a"}, std::string_view{"a.."}, std::string_view{l64},
          std::string_view{name256}}) {
        const std::string_view list[] = {"fine.example", bad};
        EXPECT_EQ(encode_search_list(list, out).error(), Errc::invalid_argument) << bad;
    }
    const std::string_view many[] = {"abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz.org"};
    std::array<std::byte, 10> small{};
    EXPECT_EQ(encode_search_list(many, small).error(), Errc::too_large);
    const std::string_view exact[] = {"ab.c"};  // 3 + 2 + 1 = 6 bytes
    std::array<std::byte, 6> six{};
    EXPECT_TRUE(encode_search_list(exact, six));
    EXPECT_EQ(encode_search_list(exact, MutByteView{six}.first(5)).error(), Errc::too_large);
}

TEST(DhcpMessage, ClasslessRoutesFollowRfc3442) {
    // RFC 3442 §2, the table of destination descriptors, each with a router of 10.0.0.1.
    const auto gw = Ipv4Addr::from_octets(10, 0, 0, 1);
    const ClasslessRoute routes[] = {
        {Ipv4Addr{}, 0, gw},                                // 0
        {Ipv4Addr::from_octets(10, 0, 0, 0), 8, gw},        // 8.10
        {Ipv4Addr::from_octets(10, 0, 0, 0), 24, gw},       // 24.10.0.0
        {Ipv4Addr::from_octets(10, 17, 0, 0), 16, gw},      // 16.10.17
        {Ipv4Addr::from_octets(10, 27, 129, 0), 24, gw},    // 24.10.27.129
        {Ipv4Addr::from_octets(10, 229, 0, 128), 25, gw},   // 25.10.229.0.128
        {Ipv4Addr::from_octets(10, 198, 122, 47), 32, gw},  // 32.10.198.122.47
    };
    std::array<std::byte, 300> out{};
    auto n = encode_classless_routes(routes, out);
    ASSERT_TRUE(n);
    const Bytes want =
        bytes({0,  10, 0,   0,   1,              //
               8,  10, 10,  0,   0,   1,         //
               24, 10, 0,   0,   10,  0,  0, 1,  //
               16, 10, 17,  10,  0,   0,  1,     //
               24, 10, 27,  129, 10,  0,  0, 1,  //
               25, 10, 229, 0,   128, 10, 0, 0, 1, 32, 10, 198, 122, 47, 10, 0, 0, 1});
    EXPECT_EQ(written(out, *n), want);
}

TEST(DhcpMessage, ClasslessRoutesLimits) {
    std::array<std::byte, 300> out{};
    // Host bits past the prefix are cleared (Linux refuses such a route).
    const ClasslessRoute sloppy[] = {
        {Ipv4Addr::from_octets(10, 229, 0, 255), 25, Ipv4Addr::from_octets(10, 0, 0, 1)},
        {Ipv4Addr::from_octets(172, 31, 7, 7), 12, Ipv4Addr::from_octets(10, 0, 0, 2)},
    };
    auto n = encode_classless_routes(sloppy, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(written(out, *n),
              bytes({25, 10, 229, 0, 128, 10, 0, 0, 1, 12, 172, 16, 10, 0, 0, 2}));
    const ClasslessRoute bad[] = {{Ipv4Addr{}, 33, Ipv4Addr{}}};
    EXPECT_EQ(encode_classless_routes(bad, out).error(), Errc::invalid_argument);
    const ClasslessRoute one[] = {{Ipv4Addr::from_octets(10, 1, 0, 0), 16, Ipv4Addr{}}};
    std::array<std::byte, 7> seven{};  // 1 + 2 + 4
    n = encode_classless_routes(one, seven);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 7u);
    EXPECT_EQ(encode_classless_routes(one, MutByteView{seven}.first(6)).error(), Errc::too_large);
    n = encode_classless_routes({}, out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);
}

}  // namespace
}  // namespace slipway::dhcp
