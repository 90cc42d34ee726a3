// libFuzzer target: the DNS forwarder's query path and its cache, on arbitrary messages.
//
// Input: a control byte, then a message. Bit 0 of the control byte sends the message to the
// forwarder as a guest's query (local zone, cache, error replies; no upstream is configured, so
// every forwarded query is answered SERVFAIL at once). Bit 1 stores the message in a cache as if
// an upstream had sent it, under its own question key, then looks the key up again.
// Invariants (trap on violation): no crash or sanitizer report; a query gets at most one reply,
// synchronously; a reply is a response (QR set) with the query's ID, and when the query parsed,
// the reply parses in full and echoes its question; a cache hit parses, carries the ID asked for
// and is no longer than what was stored; entries and bytes stay within the configured bounds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/dns/cache.hpp"
#include "slipway/dns/forwarder.hpp"
#include "slipway/dns/message.hpp"

namespace {

using namespace slipway;
using namespace slipway::dns;
using namespace slipway::fuzz;

struct Sink final : ReplySink {
    void dispatch_dns_reply(const GuestEndpoint&, ByteView msg) noexcept override {
        ++count;
        last.assign(msg.begin(), msg.end());
    }
    void flush_dns_replies() noexcept override {}
    std::size_t count = 0;
    std::vector<std::byte> last;
};

struct World {
    IoContext io;
    Sink sink;
    std::unique_ptr<Forwarder> fwd;
    Cache cache{CacheConfig{.max_entries = 8, .max_bytes = 4096}};
    World() {
        ForwarderConfig c;
        c.gateway = Ipv4Addr::from_octets(10, 0, 2, 2);
        c.host_alias = Ipv4Addr::from_octets(10, 0, 2, 254);
        c.resolv_conf = "/nonexistent/slipway-fuzz-resolv.conf";  // no upstream at all
        c.records.push_back({"a.test", Ipv4Addr::from_octets(10, 1, 2, 3)});
        c.domain = "lan.test";
        c.host_lookup = [](std::string_view h) -> std::optional<Ipv4Addr> {
            if (h == "db") return Ipv4Addr::from_octets(10, 0, 2, 50);
            return std::nullopt;
        };
        std::string err;
        auto f = Forwarder::create(io, std::move(c), sink, err);
        check(f.has_value());
        fwd = std::move(*f);
    }
};

World& world() {
    static World w;
    return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 70000) return 0;
    World& w = world();
    const std::uint8_t control = data[0];
    std::vector<std::byte> msg(size - 1);
    if (!msg.empty()) std::memcpy(msg.data(), data + 1, msg.size());

    if ((control & 1) != 0) {
        const std::size_t before = w.sink.count;
        w.fwd->process_query(msg, GuestEndpoint{});
        const std::size_t replies = w.sink.count - before;
        check(replies <= 1);
        const auto qh = Header::parse(msg);
        if (replies == 1) {
            check(qh.has_value() && !qh->qr);
            const auto rh = Header::parse(w.sink.last);
            check(rh.has_value() && rh->qr && rh->id == qh->id);
            if (const auto q = MessageView::parse(msg); q && q->question()) {
                const auto r = MessageView::parse(w.sink.last);
                check(r.has_value());
                check(r->question().has_value() && r->question()->equals(*q->question()));
            }
        }
    }
    if ((control & 2) != 0) {
        const auto a = MessageView::parse(msg);
        std::array<std::byte, kMaxKeyLen> key{};
        if (a && a->question()) {
            const auto k = a->question_key(key);
            check(k.has_value());
            const ByteView kv = ByteView(key).first(*k);
            const bool stored = w.cache.store(kv, *a, 1000);
            std::vector<std::byte> out(70000);
            const auto n = w.cache.lookup(kv, 0xbeef, 1000 + (control >> 2) * 100, out);
            if (n) {
                check(stored || w.cache.entries() != 0);
                const auto hit = MessageView::parse(ByteView(out).first(*n));
                check(hit.has_value() && hit->id() == 0xbeef);
            }
        }
        check(w.cache.entries() <= 8 && w.cache.bytes() <= 4096);
    }
    return 0;
}
