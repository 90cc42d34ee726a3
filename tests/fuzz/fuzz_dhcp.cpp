// libFuzzer target: DHCP message parsing and the server's state machine on arbitrary messages.
//
// Input: arbitrary bytes as the UDP payload of a datagram to port 67. Invariants (trap on
// violation): no crash or sanitizer report; every option view lies inside the input; a parsed
// message's reply, when the server sends one, parses again as a BOOTREPLY with the request's xid
// and chaddr, fits the 1500-byte buffer and the client's size limit, and is at least the RFC 2131
// minimum; the server's counters grow by exactly one verdict per message.
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ByteView in{reinterpret_cast<const std::byte*>(data), size};
    if (auto m = MessageView::parse(in)) {
        for (unsigned code = 0; code < 256; ++code)
            if (auto v = m->option(static_cast<std::uint8_t>(code))) check(inside(*v, in));
        if (auto h = m->hostname()) check(h->size() >= 1 && h->size() <= 63);
        if (auto id = m->client_id()) check(inside(*id, in) && id->size() >= 2);
        if (auto mms = m->max_message_size()) check(*mms >= 576);
        check(inside(m->param_request_list(), in));
        (void)m->type();
        (void)m->requested_ip();
        (void)m->server_id();
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
