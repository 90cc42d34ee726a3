// libFuzzer target: DHCP message parsing, reply emission and the server's state machine.
//
// Input: arbitrary bytes as the UDP payload of a datagram to port 67. Invariants (trap on
// violation): no crash or sanitizer report; every view an accessor returns lies inside the input;
// the typed helpers honour their documented bounds; a ReplyRepr built from a parsed message (with
// its hostname and parameter request list as option values) parses again with the same xid,
// chaddr and type and stays within its size limits; a parsed message's reply, when the server
// sends one, parses again as a BOOTREPLY with the request's xid and chaddr, fits the 1500-byte
// buffer and the client's size limit, and is at least the RFC 2131 minimum; the server's counters
// grow by exactly one verdict per message.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_util.hpp"
#include "slipway/dhcp/message.hpp"
#include "slipway/dhcp/server.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;
using namespace slipway::dhcp;

Server& server() {
    static std::unique_ptr<Server> s = [] {
        ServerConfig c;
        c.server_id = c.router = c.dns = Ipv4Addr::from_octets(10, 0, 2, 1);
        c.subnet = Ipv4Addr::from_octets(10, 0, 2, 0);
        c.prefix_len = 24;
        c.range_first = Ipv4Addr::from_octets(10, 0, 2, 2);
        c.range_last = Ipv4Addr::from_octets(10, 0, 2, 9);  // small: exhaustion is reachable
        c.excluded = {c.server_id};
        c.domain = "fuzz.test";
        c.search = {"fuzz.test", "example.org"};
        c.statics.push_back(
            {MacAddr{{0x52, 0x54, 0, 0, 0, 7}}, Ipv4Addr::from_octets(10, 0, 2, 7), "seven"});
        std::string err;
        auto r = Server::create(c, err);
        if (!r) __builtin_trap();
        return std::move(*r);
    }();
    return *s;
}

std::uint64_t verdicts(const ServerCounters& c) {
    std::uint64_t n = 0;
    c.for_each([&](const char*, const Counter& v) { n += v.get(); });
    return n;
}

ByteView as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Every accessor of a parsed message; every view inside `in`, every helper within its bounds.
void touch(const MessageView& m, ByteView in) {
    check(in.size() >= kFixedLen + kCookieLen);
    sink(static_cast<unsigned>(m.op()) + m.xid() + m.secs() + m.broadcast_flag() + m.ciaddr().v +
         m.yiaddr().v + m.giaddr().v + m.chaddr().b[0]);
    check(m.op() == Op::request || m.op() == Op::reply);
    const auto t = static_cast<unsigned>(m.type());
    check(t >= 1 && t <= 8);
    for (unsigned code = 0; code < 256; ++code) {
        const auto v = m.option(static_cast<std::uint8_t>(code));
        if (!v) continue;
        check(code != opt::pad && code != opt::end && inside(*v, in) && v->size() <= 255);
        if (!v->empty()) sink(static_cast<std::uint8_t>(v->front()));
    }
    const auto mt = m.option(opt::message_type);
    check(mt && mt->size() == 1 && static_cast<unsigned>(mt->front()) == t);
    if (auto h = m.hostname()) {
        check(h->size() >= 1 && h->size() <= 63 && inside(as_bytes(*h), in));
        for (char c : *h)
            check(c > ' ' && c < 0x7f);
    }
    if (auto id = m.client_id()) check(inside(*id, in) && id->size() >= 2);
    if (auto mms = m.max_message_size()) check(*mms >= 576);
    const ByteView prl = m.param_request_list();
    check(inside(prl, in));
    if (auto ip = m.requested_ip()) sink(ip->v);
    if (auto ip = m.server_id()) sink(ip->v);
}

// A reply built from the parsed fields, carrying request-derived option values, parses again.
void check_reply(const MessageView& m, std::uint8_t variant) {
    static constexpr std::array<std::byte, 4> kMask{std::byte{255}, std::byte{255}, std::byte{255},
                                                    std::byte{0}};
    static constexpr std::array<std::byte, 4> kGw{std::byte{10}, std::byte{0}, std::byte{2},
                                                  std::byte{1}};
    const auto host = m.hostname();
    const ByteView host_bytes = host ? as_bytes(*host) : ByteView{};
    const ByteView prl = m.param_request_list();
    const ByteView cid = m.client_id().value_or(ByteView{});
    const Option opts[] = {
        {opt::server_id, kGw},     {opt::hostname, host_bytes}, {opt::subnet_mask, kMask},
        {opt::param_request, prl}, {opt::client_id, cid},       {opt::router, kGw},
        {opt::pad, kGw},  // never emitted
    };
    ReplyRepr r;
    r.type = static_cast<MessageType>(1 + variant % 8);
    r.xid = m.xid();
    r.broadcast_flag = m.broadcast_flag();
    r.ciaddr = m.ciaddr();
    r.yiaddr = Ipv4Addr::from_octets(10, 0, 2, 2);
    r.siaddr = Ipv4Addr::from_octets(10, 0, 2, 1);
    r.giaddr = m.giaddr();
    r.chaddr = m.chaddr();
    r.options = opts;
    // The client's limit when it gave one (less IP and UDP headers), else the RFC minimum; the
    // variant sometimes shrinks it below the minimum, which emit() must raise.
    const auto mms = m.max_message_size();
    r.max_len = mms ? std::size_t{*mms} - 28u : kMinMessageLen;
    if ((variant & 0x80) != 0) r.max_len = variant;
    std::array<std::byte, 1500> out;
    out.fill(std::byte{0xa5});
    const auto n = r.emit(out);
    check(n.has_value());
    const std::size_t limit = std::min(out.size(), std::max(r.max_len, kMinMessageLen));
    check(*n >= std::min(kMinMessageLen, out.size()) && *n <= limit);
    const ByteView msg = ByteView{out}.first(*n);
    auto v = MessageView::parse(msg);
    check(v.has_value());
    check(v->op() == Op::reply && v->xid() == m.xid() && v->chaddr() == m.chaddr() &&
          v->type() == r.type && v->broadcast_flag() == m.broadcast_flag() &&
          v->ciaddr() == m.ciaddr() && v->giaddr() == m.giaddr());
    check(!v->option(opt::pad) && v->secs() == 0);
    touch(*v, msg);
    // Options come back in order and whole: the first two always fit a 548-byte message, the
    // rest either come back whole or not at all.
    check(equal_bytes(*v->option(opt::server_id), kGw));
    check(equal_bytes(*v->option(opt::hostname), host_bytes));
    check(v->hostname() == host);
    for (const Option& o : opts) {
        if (o.code == opt::pad) continue;
        if (auto got = v->option(o.code)) check(equal_bytes(*got, o.value));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ByteView in{reinterpret_cast<const std::byte*>(data), size};
    if (auto m = MessageView::parse(in)) {
        touch(*m, in);
        check_reply(*m, size > 0 ? data[size - 1] : 0);
    } else {
        const Errc e = m.error();
        check(e == Errc::truncated || e == Errc::bad_version || e == Errc::unsupported ||
              e == Errc::bad_length);
    }
    Server& s = server();
    static std::int64_t now = 1000;
    now += 7;  // time moves: offers and leases expire across the run
    const std::uint64_t before = verdicts(s.counters());
    std::byte out[1500];
    const auto tgt = s.process(in, out, now);
    const std::uint64_t after = verdicts(s.counters());
    check(after > before);  // at least one counter per message (a request also counts an ack)
    if (tgt) {
        check(tgt->len >= kMinMessageLen && tgt->len <= sizeof out);
        auto req = MessageView::parse(in);
        check(req.has_value());
        auto rep = MessageView::parse(ByteView{out, tgt->len});
        check(rep.has_value());
        check(rep->op() == Op::reply);
        check(rep->xid() == req->xid() && rep->chaddr() == req->chaddr());
        if (auto mms = req->max_message_size())
            check(tgt->len <= std::max<std::size_t>(*mms - 28u, kMinMessageLen));
    }
    return 0;
}
