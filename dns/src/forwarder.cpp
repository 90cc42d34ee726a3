// The DNS forwarder at the gateway.
//
// Theory of operation
// -------------------
// Guests send queries to the gateway's port 53; the gateway hands each UDP payload to
// process_query() with the guest's endpoint, and the forwarder answers through the ReplySink,
// which builds the UDP frame back. Everything runs on the network thread; nothing blocks.
//
// A query is validated once (MessageView::parse) and then answered by the first of:
//   1. the local zone: names from --dns-record and the embedding API, the built-in names of the
//      host alias and the gateway, and guests' DHCP host names under --domain and under
//      slipway.internal. Unknown names under slipway.internal get NXDOMAIN (we are authoritative
//      for it); other names go on;
//   2. the cache (cache.hpp), keyed by the lowercase question plus the flags that change an
//      answer (RD, CD, DO, whether the query had OPT). A hit is served with the querier's ID, aged
//      TTLs, and the querier's own spelling of the name (RFC 4343 §4.1);
//   3. the upstreams. The query is copied into a slot of the pending table (sized at start-up;
//      full: SERVFAIL at once, counted) and sent with a random ID on a UDP socket connected to
//      the preferred upstream: up to 8 such sockets per upstream, each picked at random, each
//      with its own kernel-chosen random source port and replaced after 64 queries, so ports keep
//      changing while a busy forwarder spends no system calls opening and closing sockets per
//      query. A connected socket only accepts datagrams from its server, and (socket, ID) finds
//      the query, so an answer must match socket, server, ID and question (RFC 5452 §9.1). If no
//      answer comes within the hedge delay, the next upstream is asked too, and the first good
//      answer wins. An upstream that refuses (ICMP unreachable -> ECONNREFUSED), answers
//      SERVFAIL/REFUSED or stays silent counts a failure; three in a row mark it dead for 10 s,
//      during which it is only tried last. So a dead resolver costs one hedge delay at most, and
//      none once it is marked.
// A truncated UDP answer (TC) is retried over TCP to the same upstream (RFC 7766 §5), with one of
// a few 64 KiB buffers reserved at start-up (none free: the guest gets the TC answer and retries
// itself). Answers larger than the guest can take (its EDNS size, RFC 6891 §6.2.5, and one
// unfragmented frame) go back truncated, with TC set. If nothing usable arrives by `timeout`
// (1.7 s), the guest gets SERVFAIL: it hears something within 2 s, never silence.
//
// Answers are cached per RFC 2308 (cache.hpp), EDNS OPT records pass through untouched in both
// directions, and every record type is forwarded as is. A 50 ms tick drives hedging and timeouts
// while queries are pending; resolv.conf, when it supplies the upstreams, is polled every 2 s and
// re-read when its mtime, size or inode change.
//
// Stream sessions (serve_stream) carry DNS over TCP (RFC 1035 §4.2.2, two-byte length prefix):
// the NAT engine will hand a guest's TCP connection to port 53 here as a connected stream socket.
// Their queries take the same path, with no size limit on the answer.
#include "slipway/dns/forwarder.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "slipway/core/log.hpp"
#include "slipway/core/open_addressing.hpp"
#include "slipway/dns/message.hpp"

namespace slipway::dns {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMaxQueryLen = 1232;  // bigger queries get FORMERR
constexpr std::size_t kMaxTries = 4;        // upstreams asked per query
constexpr std::size_t kMaxUpstreams = 8;
constexpr std::size_t kTcpBuffers = 16;
constexpr std::size_t kMaxStreams = 64;
constexpr std::size_t kSocksPerUpstream = 8;  // shared UDP sockets per upstream (random ports)
constexpr std::uint32_t kMaxSockUses = 64;    // queries per socket before it is replaced
constexpr std::size_t kMaxMsg = 65535;
constexpr auto kTick = 50ms;
constexpr std::int64_t kTryTimeoutMs = 700;  // an upstream silent this long counts a failure
constexpr unsigned kDeadAfter = 3;
constexpr std::int64_t kDeadForMs = 10'000;
constexpr std::uint32_t kLocalTtl = 60;
constexpr std::uint32_t kHostTtl = 10;  // DHCP host names move with leases

std::int64_t now_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!out.empty() && out.back() == '.') out.pop_back();
    return out;
}

// "a.b.c" under "b.c": the host part "a" (nullopt when `name` is not strictly under `zone`).
std::optional<std::string_view> under(std::string_view name, std::string_view zone) noexcept {
    if (zone.empty() || name.size() <= zone.size() + 1) return std::nullopt;
    if (name.substr(name.size() - zone.size()) != zone) return std::nullopt;
    if (name[name.size() - zone.size() - 1] != '.') return std::nullopt;
    return name.substr(0, name.size() - zone.size() - 1);
}

struct UpState {
    Upstream up;
    double srtt_ms = 0;
    unsigned fails = 0;
    std::int64_t dead_until = 0;
};

enum class TrySt : std::uint8_t { idle, udp, tcp_connect, tcp_write, tcp_read, failed };

struct Try {
    UniqueFd fd;                   // TCP retry only; UDP tries share a UdpSock
    std::unique_ptr<FdWatcher> w;  // built once, assigned per TCP socket
    int sock = -1;                 // UDP: index into socks while the try waits on it
    std::uint16_t id = 0;          // the ID this try was sent with
    TrySt st = TrySt::idle;
    std::uint8_t up = 0;
    std::uint32_t up_gen = 0;
    std::int64_t sent_ms = 0;
    std::size_t io = 0;  // TCP: bytes written, then bytes read
    int tcp_buf = -1;
    bool timed_out = false;
    [[nodiscard]] bool live() const noexcept { return st != TrySt::idle && st != TrySt::failed; }
};

struct Pending {
    bool used = false;
    std::uint32_t serial = 0;  // bumped on release: stale handlers see a different value
    GuestEndpoint client;
    std::uint16_t client_id = 0;
    std::uint16_t limit = kMinUdpSize;
    std::array<std::byte, kMaxQueryLen> query{};  // with the upstream ID in place
    std::size_t query_len = 0;
    std::array<std::byte, kMaxCacheKeyLen> key{};
    std::size_t key_len = 0;
    std::int64_t deadline = 0, next_hedge = 0;
    std::array<std::uint8_t, kMaxTries> order{};  // indices into ups of generation `gen`
    std::uint32_t gen = 0;
    std::uint8_t n_order = 0, next = 0;
    std::array<Try, kMaxTries> tries;
};

// A UDP socket connected to one upstream, shared by up to kMaxSockUses queries over its life.
struct UdpSock {
    UniqueFd fd;
    std::unique_ptr<FdWatcher> w;
    std::uint8_t up = 0;
    std::uint32_t gen = 0;
    std::uint32_t uses = 0;      // queries sent on it
    std::uint32_t inflight = 0;  // tries waiting on it
    std::uint32_t serial = 0;    // bumped on close: stale handlers see a different value
    bool retiring = false;       // takes no new query; closed when inflight reaches 0
    [[nodiscard]] bool open() const noexcept { return fd.valid(); }
};

// (socket, ID) -> pending slot and try, for answers arriving on shared sockets: open addressing
// with linear probing and backward-shift deletion, sized at start-up for every try at once.
class IdMap {
  public:
    static constexpr std::uint32_t kEmpty = 0xffffffffu;
    explicit IdMap(std::size_t max_entries) {
        std::size_t cap = 16;
        while (cap < 2 * max_entries)
            cap *= 2;
        keys_.assign(cap, kEmpty);
        vals_.assign(cap, 0);
        mask_ = cap - 1;
    }
    static std::uint32_t key(int sock, std::uint16_t id) noexcept {
        return (static_cast<std::uint32_t>(sock) << 16) | id;
    }
    [[nodiscard]] std::optional<std::uint32_t> find(std::uint32_t k) const noexcept {
        for (std::size_t i = home(k);; i = (i + 1) & mask_) {
            if (keys_[i] == kEmpty) return std::nullopt;
            if (keys_[i] == k) return vals_[i];
        }
    }
    // The caller keeps the load at most half (max_entries).
    void insert(std::uint32_t k, std::uint32_t v) noexcept {
        std::size_t i = home(k);
        while (keys_[i] != kEmpty && keys_[i] != k)
            i = (i + 1) & mask_;
        keys_[i] = k;
        vals_[i] = v;
    }
    void erase(std::uint32_t k) noexcept {
        std::size_t i = home(k);
        while (keys_[i] != k) {
            if (keys_[i] == kEmpty) return;
            i = (i + 1) & mask_;
        }
        // Backward shift: pull later entries of the run into the hole unless they sit between
        // their home and the hole already.
        for (std::size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
            if (keys_[j] == kEmpty) break;
            if (!can_fill_hole(i, j, home(keys_[j]), mask_)) continue;
            keys_[i] = keys_[j];
            vals_[i] = vals_[j];
            i = j;
        }
        keys_[i] = kEmpty;
    }

  private:
    [[nodiscard]] std::size_t home(std::uint32_t k) const noexcept {
        return static_cast<std::size_t>((k * 0x9E3779B1u) >> 7) & mask_;
    }
    std::vector<std::uint32_t> keys_, vals_;
    std::size_t mask_ = 0;
};

struct Stream {
    UniqueFd fd;
    std::unique_ptr<FdWatcher> w;
    std::vector<std::byte> buf;  // 2 + 65535, allocated when the first session opens
    std::size_t have = 0;
    std::uint32_t id = 0;
    bool used = false;
};

}  // namespace

struct Forwarder::Impl {
    Impl(IoContext& io_, ForwarderConfig c, ReplySink& s)
        : io(io_), cfg(std::move(c)), sink(s), cache(cfg.cache), tick(io_), resolv_timer(io_) {}

    IoContext& io;
    ForwarderConfig cfg;
    ReplySink& sink;
    Cache cache;
    bool cache_on = true;
    ForwarderCounters ctr;
    std::map<std::string, Ipv4Addr, std::less<>> records;

    std::vector<UpState> ups;
    std::uint32_t up_gen = 1;
    struct stat resolv_st {};
    bool resolv_seen = false;

    std::vector<Pending> pend;
    std::vector<std::uint32_t> free_slots;
    std::size_t n_pending = 0;
    std::vector<UdpSock> socks;
    IdMap ids{1};
    IdMap per_guest{1};  // guest IPv4 address -> its queries pending upstream
    std::uint32_t guest_share = 1;
    std::array<std::uint16_t, 256> rand_buf{};
    std::size_t rand_left = 0;
    std::vector<std::vector<std::byte>> tcp_bufs;
    std::vector<int> free_tcp;
    std::vector<Stream> streams;
    std::uint32_t stream_serial = 0;
    std::vector<std::byte> scratch = std::vector<std::byte>(kMaxMsg);

    boost::asio::steady_timer tick;
    bool tick_armed = false;
    boost::asio::steady_timer resolv_timer;

    // Adds or replaces a local A record; false for a name encode_name() rejects.
    bool add_record(std::string_view name, Ipv4Addr addr) {
        std::array<std::byte, kMaxNameLen> wire{};
        std::string n = lower(name);
        if (n.empty() || !encode_name(n, wire)) return false;
        records[std::move(n)] = addr;
        return true;
    }

    // ---- replies -------------------------------------------------------------------------

    void send_to(const GuestEndpoint& to, ByteView msg) noexcept {
        if (to.stream != 0) {
            stream_write(to.stream, msg);
        } else {
            sink.dispatch_dns_reply(to, msg);
        }
    }

    // Sends `answer` (already carrying the guest's ID), or a TC reply when it does not fit.
    void deliver(const GuestEndpoint& to, ByteView answer, const MessageView& query,
                 std::uint16_t limit) noexcept {
        if (answer.size() <= limit) {
            send_to(to, answer);
            return;
        }
        // RFC 2181 §9 / RFC 6891 §7: too large for UDP -> TC set, the guest retries over TCP.
        const auto h = Header::parse(answer);
        ResponseRepr r = ResponseRepr::reply_to(query, h ? h->rcode : Rcode::noerror);
        r.header.tc = true;
        if (h) r.header.aa = h->aa;
        ctr.truncated.inc();
        emit_and_send(to, r);
    }

    void emit_and_send(const GuestEndpoint& to, const ResponseRepr& r) noexcept {
        std::array<std::byte, kMaxQueryLen + 64> buf{};
        const auto n = r.emit(buf);
        if (!n) return;  // a reply to a query we validated always fits; nothing to send otherwise
        send_to(to, ByteView(buf).first(*n));
    }

    void reply_code(const MessageView& q, const GuestEndpoint& to, Rcode rc) noexcept {
        emit_and_send(to, ResponseRepr::reply_to(q, rc));
    }

    // ---- queries -------------------------------------------------------------------------

    void process_query(ByteView msg, const GuestEndpoint& from) noexcept {
        const auto h = Header::parse(msg);
        if (!h || h->qr) {
            ctr.drop_malformed.inc();  // too short for a header, or a response: no one to answer
            return;
        }
        const auto mv = MessageView::parse(msg);
        if (!mv) {
            // RFC 1035 §4.1.1: FORMERR, with no question (we could not read one).
            ctr.drop_malformed.inc();
            ctr.formerr.inc();
            emit_and_send(from, ResponseRepr::reply_to(*h, Rcode::formerr));
            return;
        }
        ctr.queries.inc();
        const auto q = mv->question();
        if (h->opcode != Opcode::query) {
            ctr.formerr.inc();
            reply_code(*mv, from, Rcode::notimp);  // RFC 1035 §4.1.1
            return;
        }
        if (!q || msg.size() > kMaxQueryLen) {
            ctr.formerr.inc();
            reply_code(*mv, from, Rcode::formerr);
            return;
        }
        const std::uint16_t limit =
            from.stream != 0
                ? static_cast<std::uint16_t>(kMaxMsg)
                : std::min<std::uint16_t>(mv->opt_udp_size(),
                                          std::max<std::uint16_t>(cfg.max_udp_reply, kMinUdpSize));
        if (answer_local(*mv, *q, from)) return;

        std::array<std::byte, kMaxCacheKeyLen> key{};
        std::size_t key_len = 0;
        if (const auto k = mv->question_key(MutByteView(key).first(kMaxKeyLen)); k) {
            key_len = *k;
            key[key_len++] = std::byte{static_cast<std::uint8_t>((h->rd ? 1 : 0) | (h->cd ? 2 : 0) |
                                                                 (mv->has_opt() ? 4 : 0) |
                                                                 (mv->dnssec_ok() ? 8 : 0))};
        }
        if (cache_on && key_len != 0) {
            if (const auto n = cache.lookup(ByteView(key).first(key_len), h->id, now_ms(), scratch);
                n) {
                // The stored question has the first querier's spelling; echo this one's.
                std::memcpy(scratch.data() + kHeaderLen, msg.data() + kHeaderLen,
                            q->name.wire_len());
                ctr.cache_hits.inc();
                deliver(from, ByteView(scratch).first(*n), *mv, limit);
                return;
            }
        }
        if (ups.empty()) {
            ctr.servfail.inc();
            SLW_WARN_RATELIMITED("dns: no upstream resolver configured; answering SERVFAIL");
            reply_code(*mv, from, Rcode::servfail);
            return;
        }
        // One guest may hold at most a quarter of the pending table, so a guest flooding slow
        // names cannot starve the others (streams are bounded by their session count instead).
        const bool counted = from.stream == 0 && from.ip.v != IdMap::kEmpty;
        const std::uint32_t held = counted ? per_guest.find(from.ip.v).value_or(0) : 0;
        if (free_slots.empty() || held >= guest_share) {
            ctr.drop_busy.inc();
            SLW_WARN_RATELIMITED(
                "dns: {} queries pending upstream ({} from {}); answering "
                "SERVFAIL",
                n_pending, held, from.ip.to_string());
            reply_code(*mv, from, Rcode::servfail);
            return;
        }
        if (counted) per_guest.insert(from.ip.v, held + 1);
        const std::uint32_t idx = free_slots.back();
        free_slots.pop_back();
        ++n_pending;
        Pending& p = pend[idx];
        p.used = true;
        p.client = from;
        p.client_id = h->id;
        p.limit = limit;
        std::memcpy(p.query.data(), msg.data(), msg.size());
        p.query_len = msg.size();
        std::memcpy(p.key.data(), key.data(), key_len);
        p.key_len = key_len;
        const std::int64_t now = now_ms();
        p.deadline = now + cfg.timeout.count();
        choose_order(p, now);
        start_next_try(idx, now);
        if (p.used && !live_tries(p)) servfail(idx);
        arm_tick();
    }

    bool answer_local(const MessageView& mv, const Question& q,
                      const GuestEndpoint& from) noexcept {
        std::array<std::byte, kMaxNameLen + 1> buf{};
        const auto n = q.name.read(buf, NameForm::dotted_lower);
        if (!n) return false;
        const std::string_view name(reinterpret_cast<const char*>(buf.data()), *n);
        std::optional<Ipv4Addr> addr;
        std::uint32_t ttl = kLocalTtl;
        bool ours = false;
        if (const auto it = records.find(name); it != records.end()) {
            addr = it->second;
            ours = true;
        } else {
            for (const std::string_view zone : {std::string_view(cfg.domain), kLocalZone}) {
                const auto host = under(name, zone);
                if (!host || host->find('.') != std::string_view::npos || !cfg.host_lookup)
                    continue;
                if ((addr = cfg.host_lookup(*host))) {
                    ttl = kHostTtl;
                    ours = true;
                    break;
                }
            }
        }
        // We are authoritative for slipway.internal: its unknown names do not exist.
        const bool in_zone = name == kLocalZone || under(name, kLocalZone).has_value();
        if (!ours && !in_zone) return false;
        const bool exists = ours || name == kLocalZone;
        ResponseRepr r = ResponseRepr::reply_to(mv, exists ? Rcode::noerror : Rcode::nxdomain);
        r.header.aa = true;
        // A record for A and ANY queries of class IN; every other type exists with no data
        // (RFC 2308 §2.2 NODATA).
        if (addr && q.qclass == kClassIn && (q.qtype == rrtype::a || q.qtype == rrtype::any))
            r.with_a(ttl, *addr);
        ctr.local_answers.inc();
        emit_and_send(from, r);
        return true;
    }

    // ---- upstreams -----------------------------------------------------------------------

    // Preferred first: live before dead, then lowest smoothed RTT (unknown counts as 0, so new
    // upstreams get tried).
    void choose_order(Pending& p, std::int64_t now) noexcept {
        std::array<std::uint8_t, kMaxUpstreams> all{};
        const std::size_t n = std::min(ups.size(), kMaxUpstreams);
        for (std::size_t i = 0; i < n; ++i)
            all[i] = static_cast<std::uint8_t>(i);
        std::stable_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n),
                         [&](std::uint8_t a, std::uint8_t b) {
                             const bool da = ups[a].dead_until > now, db = ups[b].dead_until > now;
                             if (da != db) return !da;
                             return ups[a].srtt_ms < ups[b].srtt_ms;
                         });
        p.n_order = static_cast<std::uint8_t>(std::min(n, kMaxTries));
        std::copy_n(all.begin(), p.n_order, p.order.begin());
        p.next = 0;
        p.gen = up_gen;
    }

    static std::size_t live_tries(const Pending& p) noexcept {
        std::size_t n = 0;
        for (const Try& t : p.tries)
            n += t.live() ? 1U : 0U;
        return n;
    }

    std::int64_t hedge_ms(const UpState& u) const noexcept {
        const auto cap = static_cast<double>(cfg.hedge.count());
        if (u.srtt_ms <= 0) return cfg.hedge.count();
        return static_cast<std::int64_t>(std::clamp(4 * u.srtt_ms + 5, 20.0, cap));
    }

    // Sends the query to the next upstream in the slot's order; on an immediate failure moves on
    // to the one after. Leaves the slot with no live try only when every upstream failed.
    void start_next_try(std::uint32_t idx, std::int64_t now) noexcept {
        Pending& p = pend[idx];
        if (p.gen != up_gen) p.next = p.n_order;  // resolv.conf changed: the order is stale
        while (p.next < p.n_order) {
            const std::size_t k = p.next;
            const std::uint8_t ui = p.order[p.next++];
            Try& t = p.tries[k];
            t.up = ui;
            t.up_gen = up_gen;
            t.timed_out = false;
            t.sent_ms = now;
            const int si = acquire_sock(ui);
            if (si < 0 || !send_on(idx, k, si)) {
                fail_try(p, k, now);
                continue;
            }
            ctr.upstream_queries.inc();
            p.next_hedge = now + hedge_ms(ups[ui]);
            return;
        }
    }

    void wait_try(std::uint32_t idx, std::size_t k, bool writable) {
        Pending& p = pend[idx];
        auto h = [this, idx, k, serial = p.serial](bool ok) { on_try_ready(idx, k, serial, ok); };
        if (writable) {
            p.tries[k].w->wait_writable(std::move(h));
        } else {
            p.tries[k].w->wait_readable(std::move(h));
        }
    }

    void close_try(Try& t) noexcept {
        if (t.sock >= 0) {
            ids.erase(IdMap::key(t.sock, t.id));
            UdpSock& us = socks[static_cast<std::size_t>(t.sock)];
            --us.inflight;
            if (us.retiring && us.inflight == 0) close_sock(us);
            t.sock = -1;
        }
        if (t.w->watching()) t.w->release();
        t.fd.reset();
        if (t.tcp_buf >= 0) {
            free_tcp.push_back(t.tcp_buf);
            t.tcp_buf = -1;
        }
        t.io = 0;
    }

    void note_failure(const Try& t, std::int64_t now) noexcept {
        if (t.up_gen != up_gen || t.up >= ups.size()) return;  // resolv.conf changed meanwhile
        UpState& u = ups[t.up];
        if (++u.fails >= kDeadAfter && u.dead_until <= now) {
            u.dead_until = now + kDeadForMs;
            SLW_WARN("dns: upstream {} failed {} times in a row; tried last for {} s", u.up.text,
                     u.fails, kDeadForMs / 1000);
        }
    }

    void fail_try(Pending& p, std::size_t k, std::int64_t now) noexcept {
        Try& t = p.tries[k];
        close_try(t);
        t.st = TrySt::failed;
        ctr.upstream_errors.inc();
        if (!t.timed_out) note_failure(t, now);
    }

    // After a try failed: ask the next upstream now, or give up when none is left.
    void after_failure(std::uint32_t idx, std::int64_t now) noexcept {
        Pending& p = pend[idx];
        if (live_tries(p) != 0) return;
        start_next_try(idx, now);
        if (live_tries(p) == 0) servfail(idx);
    }

    void release(std::uint32_t idx) noexcept {
        Pending& p = pend[idx];
        for (Try& t : p.tries) {
            close_try(t);
            t.st = TrySt::idle;
        }
        if (p.client.stream == 0 && p.client.ip.v != IdMap::kEmpty) {
            const std::uint32_t held = per_guest.find(p.client.ip.v).value_or(1);
            if (held <= 1) {
                per_guest.erase(p.client.ip.v);
            } else {
                per_guest.insert(p.client.ip.v, held - 1);
            }
        }
        p.used = false;
        ++p.serial;
        free_slots.push_back(idx);
        --n_pending;
    }

    void servfail(std::uint32_t idx) noexcept {
        Pending& p = pend[idx];
        ctr.servfail.inc();
        store_be16(p.query.data(), p.client_id);
        if (const auto q = MessageView::parse(ByteView(p.query).first(p.query_len)); q)
            reply_code(*q, p.client, Rcode::servfail);
        release(idx);
    }

    void on_try_ready(std::uint32_t idx, std::size_t k, std::uint32_t serial, bool ok) noexcept {
        if (!ok || idx >= pend.size()) return;
        Pending& p = pend[idx];
        if (!p.used || p.serial != serial || !p.tries[k].live()) return;
        switch (p.tries[k].st) {
            case TrySt::tcp_connect:
            case TrySt::tcp_write:
                on_tcp_writable(idx, k);
                break;
            case TrySt::tcp_read:
                on_tcp_readable(idx, k);
                break;
            default:
                break;
        }
        sink.flush_dns_replies();
    }

    // An upstream answer and the pending query it answers, both validated. Rewriting their IDs
    // in place later leaves the views valid (the ID is not part of any structure they checked).
    struct Matched {
        MessageView answer, query;
    };

    // Checks an upstream answer against the pending query: QR, ID, question (RFC 5452 §9.1).
    // nullopt when it does not match (the caller counts it).
    std::optional<Matched> match(const Pending& p, std::uint16_t id, ByteView ans) noexcept {
        const auto a = MessageView::parse(ans);
        const auto q = MessageView::parse(ByteView(p.query).first(p.query_len));
        if (!a || !q || !a->header().qr || a->id() != id) return std::nullopt;
        const auto aq = a->question(), qq = q->question();
        if (!aq || !qq || !aq->equals(*qq)) return std::nullopt;
        return Matched{*a, *q};
    }

    // ---- shared upstream sockets ---------------------------------------------------------

    // RFC 5452 §9.2: unpredictable IDs. arc4random is a CSPRNG (glibc >= 2.36, the BSDs);
    // drawing 256 at a time keeps it off the per-query path's system calls.
    std::uint16_t random16() noexcept {
        if (rand_left == 0) {
            ::arc4random_buf(rand_buf.data(), sizeof rand_buf);
            rand_left = rand_buf.size();
        }
        return rand_buf[--rand_left];
    }

    // A socket for a query to upstream `ui`: one of its open sockets at random, or a new one
    // (a new random source port) while it has fewer than kSocksPerUpstream. -1 when none can be
    // had (logged).
    int acquire_sock(std::uint8_t ui) noexcept {
        std::array<int, kSocksPerUpstream> mine{};
        std::size_t n = 0;
        int free_slot = -1;
        for (std::size_t i = 0; i < socks.size(); ++i) {
            const UdpSock& us = socks[i];
            if (!us.open()) {
                if (free_slot < 0) free_slot = static_cast<int>(i);
            } else if (!us.retiring && us.up == ui && us.gen == up_gen && n < mine.size()) {
                mine[n++] = static_cast<int>(i);
            }
        }
        if (n < kSocksPerUpstream && free_slot >= 0 && open_sock(free_slot, ui)) return free_slot;
        if (n == 0) return -1;
        return mine[random16() % n];
    }

    bool open_sock(int si, std::uint8_t ui) noexcept {
        UdpSock& us = socks[static_cast<std::size_t>(si)];
        const Upstream& u = ups[ui].up;
        const int fd = ::socket(u.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        us.fd.reset(fd);
        boost::system::error_code ec;
        // connect(): the kernel picks a random ephemeral port, and the socket then only takes
        // datagrams from this upstream's address and port.
        if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&u.addr), u.addr_len) != 0 ||
            !us.w->assign(fd, ec)) {
            SLW_WARN_RATELIMITED("dns: cannot open a socket to upstream {}: {}", u.text,
                                 ec ? ec.message() : std::strerror(errno));
            if (us.w->watching()) us.w->release();
            us.fd.reset();
            return false;
        }
        us.up = ui;
        us.gen = up_gen;
        us.uses = 0;
        us.inflight = 0;
        us.retiring = false;
        arm_sock(si);
        return true;
    }

    // The upstream list changed: sockets to the old ones take no new queries.
    void retire_socks() noexcept {
        for (UdpSock& us : socks) {
            if (!us.open()) continue;
            us.retiring = true;
            if (us.inflight == 0) close_sock(us);
        }
    }

    void close_sock(UdpSock& us) noexcept {
        if (us.w->watching()) us.w->release();
        us.fd.reset();
        ++us.serial;
        us.retiring = false;
    }

    void arm_sock(int si) {
        UdpSock& us = socks[static_cast<std::size_t>(si)];
        us.w->wait_readable([this, si, serial = us.serial](bool ok) {
            UdpSock& s2 = socks[static_cast<std::size_t>(si)];
            if (!ok || !s2.open() || s2.serial != serial) return;
            on_sock_readable(si);
            sink.flush_dns_replies();
            if (s2.open() && s2.serial == serial) arm_sock(si);
        });
    }

    // Sends pending `idx` as try `k` on socket `si` under an ID no other try on it uses.
    bool send_on(std::uint32_t idx, std::size_t k, int si) noexcept {
        Pending& p = pend[idx];
        Try& t = p.tries[k];
        UdpSock& us = socks[static_cast<std::size_t>(si)];
        std::uint16_t id = random16();
        for (int guard = 0; ids.find(IdMap::key(si, id)) && guard < 16; ++guard)
            id = random16();
        if (ids.find(IdMap::key(si, id))) return false;
        store_be16(p.query.data(), id);
        if (::send(us.fd.get(), p.query.data(), p.query_len, MSG_NOSIGNAL) !=
            static_cast<ssize_t>(p.query_len)) {
            // Often the ICMP error of an earlier query surfacing here: the upstream refuses.
            SLW_WARN_RATELIMITED("dns: cannot query upstream {}: {}", ups[us.up].up.text,
                                 std::strerror(errno));
            us.retiring = true;
            if (us.inflight == 0) close_sock(us);
            return false;
        }
        t.sock = si;
        t.id = id;
        t.st = TrySt::udp;
        ids.insert(IdMap::key(si, id), (idx << 2) | static_cast<std::uint32_t>(k));
        ++us.inflight;
        if (++us.uses >= kMaxSockUses) us.retiring = true;  // a fresh port for later queries
        return true;
    }

    void on_sock_readable(int si) noexcept {
        const std::int64_t now = now_ms();
        const std::uint32_t serial = socks[static_cast<std::size_t>(si)].serial;
        for (int i = 0; i < 32; ++i) {
            UdpSock& us = socks[static_cast<std::size_t>(si)];
            if (!us.open() || us.serial != serial) return;  // closed by what we just did
            const ssize_t n = ::recv(us.fd.get(), scratch.data(), scratch.size(), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                // ECONNREFUSED and friends: the ICMP error of a dead resolver (RFC 1122
                // §4.1.3.3). A connected socket reports it once, not per query: every try
                // waiting on this socket gives up on this upstream.
                us.retiring = true;
                fail_all_on(si, now);
                return;
            }
            const ByteView ans = ByteView(scratch).first(static_cast<std::size_t>(n));
            const auto h = Header::parse(ans);
            const auto v = h && h->qr ? ids.find(IdMap::key(si, h->id)) : std::nullopt;
            if (!v) {
                ctr.upstream_errors.inc();  // stray, late or spoofed: keep waiting
                continue;
            }
            on_udp_answer(*v >> 2, *v & 3, *h, MutByteView(scratch).first(ans.size()), now);
        }
    }

    void fail_all_on(int si, std::int64_t now) noexcept {
        // Collect first: failing a try can close this socket and reopen its slot for another
        // upstream within the same call (after_failure asks the next one), and that new try
        // must not be failed with the old socket's error.
        std::array<std::uint32_t, kMaxSockUses> victims{};
        std::size_t n = 0;
        for (std::uint32_t idx = 0; idx < pend.size() && n < victims.size(); ++idx) {
            const Pending& p = pend[idx];
            if (!p.used) continue;
            for (std::size_t k = 0; k < p.tries.size() && n < victims.size(); ++k)
                if (p.tries[k].sock == si)
                    victims[n++] = (idx << 2) | static_cast<std::uint32_t>(k);
        }
        const std::uint32_t serial = socks[static_cast<std::size_t>(si)].serial;
        for (std::size_t v = 0; v < n; ++v) {
            if (socks[static_cast<std::size_t>(si)].serial != serial) break;  // all gone already
            const std::uint32_t idx = victims[v] >> 2;
            const std::size_t k = victims[v] & 3;
            Pending& p = pend[idx];
            if (!p.used || p.tries[k].sock != si) continue;
            fail_try(p, k, now);
            after_failure(idx, now);
        }
        UdpSock& us = socks[static_cast<std::size_t>(si)];
        if (us.open() && us.serial == serial && us.inflight == 0) close_sock(us);
    }

    void on_udp_answer(std::uint32_t idx, std::size_t k, const Header& h, MutByteView ans,
                       std::int64_t now) noexcept {
        Pending& p = pend[idx];
        if (h.tc) {
            if (start_tcp(idx, k, now)) return;
            // No TCP buffer free: the guest is told to retry over TCP itself.
            ctr.truncated.inc();
            store_be16(p.query.data(), p.client_id);
            if (const auto q = MessageView::parse(ByteView(p.query).first(p.query_len)); q) {
                ResponseRepr r = ResponseRepr::reply_to(*q, h.rcode);
                r.header.tc = true;
                emit_and_send(p.client, r);
            }
            release(idx);
            return;
        }
        const auto m = match(p, p.tries[k].id, ans);
        if (!m) {
            ctr.upstream_errors.inc();  // right ID, wrong question: keep waiting
            return;
        }
        const Rcode rc = m->answer.rcode();
        if ((rc == Rcode::servfail || rc == Rcode::refused) && p.next < p.n_order) {
            // Another upstream may do better (RFC 1035 §7.3 lets a resolver move on).
            fail_try(p, k, now);
            after_failure(idx, now);
            return;
        }
        finish(idx, k, ans, *m, now);
    }

    // `ans` holds the bytes `m.answer` views; they go to the guest with its own ID.
    void finish(std::uint32_t idx, std::size_t k, MutByteView ans, const Matched& m,
                std::int64_t now) noexcept {
        Pending& p = pend[idx];
        const Try& t = p.tries[k];
        const std::int64_t rtt = std::max<std::int64_t>(0, now - t.sent_ms);
        ctr.upstream_answers.inc();
        ctr.latency_us_total.add(static_cast<std::uint64_t>(rtt) * 1000);
        ctr.latency_samples.inc();
        if (t.up_gen == up_gen && t.up < ups.size()) {
            UpState& u = ups[t.up];
            u.srtt_ms = u.srtt_ms <= 0 ? static_cast<double>(rtt)
                                       : 0.875 * u.srtt_ms + 0.125 * static_cast<double>(rtt);
            u.fails = 0;
            u.dead_until = 0;
        }
        store_be16(ans.data(), p.client_id);
        store_be16(p.query.data(), p.client_id);
        if (cache_on && p.key_len != 0 && !m.answer.header().tc)
            (void)cache.store(ByteView(p.key).first(p.key_len), m.answer, now);
        deliver(p.client, ans, m.query, p.limit);
        release(idx);
    }

    // ---- TCP retry (RFC 7766) ------------------------------------------------------------

    bool start_tcp(std::uint32_t idx, std::size_t k, std::int64_t now) noexcept {
        if (free_tcp.empty()) return false;
        Pending& p = pend[idx];
        Try& t = p.tries[k];
        if (t.up_gen != up_gen || t.up >= ups.size()) return false;
        close_try(t);
        const Upstream& u = ups[t.up].up;
        const int fd = ::socket(u.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        t.fd.reset(fd);
        boost::system::error_code ec;
        if (fd < 0 ||
            (::connect(fd, reinterpret_cast<const sockaddr*>(&u.addr), u.addr_len) != 0 &&
             errno != EINPROGRESS) ||
            !t.w->assign(fd, ec)) {
            fail_try(p, k, now);
            after_failure(idx, now);
            return true;
        }
        t.tcp_buf = free_tcp.back();
        free_tcp.pop_back();
        store_be16(p.query.data(), t.id);  // the ID the TCP answer must carry
        t.st = TrySt::tcp_connect;
        t.io = 0;
        t.sent_ms = now;
        ctr.tcp_retries.inc();
        ctr.upstream_queries.inc();
        wait_try(idx, k, true);
        return true;
    }

    void on_tcp_writable(std::uint32_t idx, std::size_t k) noexcept {
        Pending& p = pend[idx];
        Try& t = p.tries[k];
        const std::int64_t now = now_ms();
        if (t.st == TrySt::tcp_connect) {
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(t.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                fail_try(p, k, now);
                after_failure(idx, now);
                return;
            }
            t.st = TrySt::tcp_write;
            t.io = 0;
        }
        std::array<std::byte, 2> prefix{};
        store_be16(prefix.data(), static_cast<std::uint16_t>(p.query_len));
        const std::size_t total = 2 + p.query_len;
        while (t.io < total) {
            iovec iov[2];
            int n_iov = 0;
            if (t.io < 2) iov[n_iov++] = {prefix.data() + t.io, 2 - t.io};
            const std::size_t qoff = t.io < 2 ? 0 : t.io - 2;
            iov[n_iov++] = {p.query.data() + qoff, p.query_len - qoff};
            const ssize_t n = ::writev(t.fd.get(), iov, n_iov);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    wait_try(idx, k, true);
                    return;
                }
                fail_try(p, k, now);
                after_failure(idx, now);
                return;
            }
            t.io += static_cast<std::size_t>(n);
        }
        t.st = TrySt::tcp_read;
        t.io = 0;
        wait_try(idx, k, false);
    }

    void on_tcp_readable(std::uint32_t idx, std::size_t k) noexcept {
        Pending& p = pend[idx];
        Try& t = p.tries[k];
        const std::int64_t now = now_ms();
        std::vector<std::byte>& buf = tcp_bufs[static_cast<std::size_t>(t.tcp_buf)];
        for (;;) {
            const std::size_t need = t.io < 2 ? 2 : 2 + std::size_t{load_be16(buf.data())};
            if (t.io >= 2 && t.io == need) break;
            const ssize_t n = ::recv(t.fd.get(), buf.data() + t.io, need - t.io, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                wait_try(idx, k, false);
                return;
            }
            if (n <= 0) {  // closed before a whole answer, or an error
                fail_try(p, k, now);
                after_failure(idx, now);
                return;
            }
            t.io += static_cast<std::size_t>(n);
        }
        const MutByteView ans = MutByteView(buf).subspan(2, t.io - 2);
        const auto m = match(p, t.id, ans);
        if (!m) {
            fail_try(p, k, now);
            after_failure(idx, now);
            return;
        }
        // `ans` lives in the try's TCP buffer, which finish() returns to the free list only
        // after the answer went out.
        finish(idx, k, ans, *m, now);
    }

    // ---- timers --------------------------------------------------------------------------

    void arm_tick() {
        if (tick_armed || n_pending == 0) return;
        tick_armed = true;
        tick.expires_after(kTick);
        tick.async_wait([this](const boost::system::error_code& ec) {
            tick_armed = false;
            if (ec) return;
            on_tick();
            arm_tick();
        });
    }

    void on_tick() noexcept {
        const std::int64_t now = now_ms();
        for (std::uint32_t i = 0; i < pend.size() && n_pending != 0; ++i) {
            Pending& p = pend[i];
            if (!p.used) continue;
            for (Try& t : p.tries) {
                if (t.live() && !t.timed_out && now - t.sent_ms >= kTryTimeoutMs) {
                    t.timed_out = true;
                    ctr.upstream_timeouts.inc();
                    note_failure(t, now);
                }
            }
            if (now >= p.deadline) {
                servfail(i);
            } else if (now >= p.next_hedge && p.next < p.n_order) {
                start_next_try(i, now);
                if (live_tries(p) == 0) servfail(i);
            }
        }
        sink.flush_dns_replies();
    }

    // ---- resolv.conf ---------------------------------------------------------------------

    void load_resolv(bool initial) {
        struct stat st {};
        if (::stat(cfg.resolv_conf.c_str(), &st) != 0) {
            if (initial || resolv_seen)
                SLW_WARN("dns: cannot read {}: {}; no upstream resolver until it appears",
                         cfg.resolv_conf, std::strerror(errno));
            resolv_seen = false;
            if (!ups.empty()) {
                ups.clear();
                ++up_gen;
                retire_socks();
            }
            return;
        }
        if (resolv_seen && st.st_mtim.tv_sec == resolv_st.st_mtim.tv_sec &&
            st.st_mtim.tv_nsec == resolv_st.st_mtim.tv_nsec && st.st_size == resolv_st.st_size &&
            st.st_ino == resolv_st.st_ino)
            return;
        resolv_seen = true;
        resolv_st = st;
        std::ifstream in(cfg.resolv_conf);
        std::stringstream ss;
        ss << in.rdbuf();
        std::vector<std::string> skipped;
        auto list = parse_resolv_conf(ss.str(), &skipped);
        for (const auto& s : skipped)
            SLW_WARN("dns: {}: nameserver {} skipped (not an address usable from here)",
                     cfg.resolv_conf, s);
        if (list.size() > kMaxUpstreams) list.resize(kMaxUpstreams);
        std::vector<std::string> old = upstream_texts(), now;
        for (const auto& u : list)
            now.push_back(u.text);
        if (!initial && now == old) return;
        ups.clear();
        for (auto& u : list)
            ups.push_back(UpState{std::move(u)});
        ++up_gen;
        retire_socks();
        // At start-up the ready line names the source; the list itself is for debugging. A
        // change while running is news.
        if (ups.empty()) {
            SLW_WARN("dns: {} names no nameserver; queries get SERVFAIL until it does",
                     cfg.resolv_conf);
        } else if (initial) {
            SLW_DEBUG("dns: upstreams from {}: {}", cfg.resolv_conf, join(now));
        } else {
            SLW_INFO("dns: upstreams from {} now: {}", cfg.resolv_conf, join(now));
        }
    }

    void arm_resolv_poll() {
        resolv_timer.expires_after(cfg.resolv_poll);
        resolv_timer.async_wait([this](const boost::system::error_code& ec) {
            if (ec) return;
            load_resolv(false);
            arm_resolv_poll();
        });
    }

    [[nodiscard]] std::vector<std::string> upstream_texts() const {
        std::vector<std::string> out;
        for (const auto& u : ups)
            out.push_back(u.up.text);
        return out;
    }

    static std::string join(const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v)
            s += (s.empty() ? "" : ", ") + x;
        return s;
    }

    // ---- stream sessions -----------------------------------------------------------------

    static std::size_t stream_slot(std::uint32_t id) noexcept { return (id & 0xff) - 1; }

    void close_stream(Stream& s) noexcept {
        if (s.w->watching()) s.w->release();
        s.fd.reset();
        s.used = false;
        s.have = 0;
    }

    void stream_write(std::uint32_t id, ByteView msg) noexcept {
        const std::size_t i = stream_slot(id);
        if (i >= streams.size() || !streams[i].used || streams[i].id != id) return;  // gone
        Stream& s = streams[i];
        std::array<std::byte, 2> prefix{};
        store_be16(prefix.data(), static_cast<std::uint16_t>(msg.size()));
        iovec iov[2] = {{prefix.data(), 2}, {const_cast<std::byte*>(msg.data()), msg.size()}};
        const ssize_t n = ::writev(s.fd.get(), iov, 2);
        // A peer that does not read its answers loses its session rather than stalling the
        // thread (the NAT engine's end of the socket pair drains it as the guest's window opens).
        if (n != static_cast<ssize_t>(2 + msg.size())) {
            SLW_WARN_RATELIMITED("dns: stream session could not take an answer; closed");
            close_stream(s);
        }
    }

    void arm_stream(std::size_t i) {
        Stream& s = streams[i];
        s.w->wait_readable([this, i, id = s.id](bool ok) {
            if (!ok || !streams[i].used || streams[i].id != id) return;
            on_stream_readable(i);
            sink.flush_dns_replies();
        });
    }

    void on_stream_readable(std::size_t i) noexcept {
        Stream& s = streams[i];
        const std::uint32_t id = s.id;
        for (;;) {
            const ssize_t n = ::recv(s.fd.get(), s.buf.data() + s.have, s.buf.size() - s.have, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            if (n <= 0) {
                close_stream(s);
                return;
            }
            s.have += static_cast<std::size_t>(n);
            std::size_t off = 0;
            while (s.have - off >= 2) {
                const std::size_t len = load_be16(s.buf.data() + off);
                if (s.have - off < 2 + len) break;
                GuestEndpoint from;
                from.stream = id;
                process_query(ByteView(s.buf).subspan(off + 2, len), from);
                if (!s.used || s.id != id) return;  // closed by a failed write
                off += 2 + len;
            }
            std::memmove(s.buf.data(), s.buf.data() + off, s.have - off);
            s.have -= off;
        }
        arm_stream(i);
    }

    Result<void> serve_stream(UniqueFd fd) noexcept {
        for (std::size_t i = 0; i < streams.size(); ++i) {
            Stream& s = streams[i];
            if (s.used) continue;
            if (s.buf.empty()) s.buf.resize(2 + kMaxMsg);
            const int fl = ::fcntl(fd.get(), F_GETFL);
            boost::system::error_code ec;
            if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0 ||
                !s.w->assign(fd.get(), ec))
                return fail(Errc::io_error);
            s.fd = std::move(fd);
            s.used = true;
            s.have = 0;
            s.id = static_cast<std::uint32_t>(((++stream_serial & 0xffffff) << 8) | (i + 1));
            ctr.streams.inc();
            arm_stream(i);
            return {};
        }
        return fail(Errc::too_large);
    }
};

Forwarder::Forwarder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Forwarder::~Forwarder() {
    if (!impl_) return;
    impl_->tick.cancel();
    impl_->resolv_timer.cancel();
    for (auto& p : impl_->pend)
        for (auto& t : p.tries)
            impl_->close_try(t);
    for (auto& s : impl_->streams)
        impl_->close_stream(s);
    for (auto& us : impl_->socks)
        impl_->close_sock(us);
}

Result<std::unique_ptr<Forwarder>> Forwarder::create(IoContext& io, ForwarderConfig cfg,
                                                     ReplySink& sink, std::string& error) {
    const bool cache_on = cfg.cache.max_entries != 0;
    if (!cache_on) cfg.cache.max_entries = 1;  // the cache object exists but is never used
    if (cfg.cache.max_bytes < kMinUdpSize) cfg.cache.max_bytes = kMinUdpSize;
    if (cfg.max_pending == 0) cfg.max_pending = 1;
    auto impl = std::make_unique<Impl>(io, std::move(cfg), sink);
    Impl& m = *impl;
    m.cache_on = cache_on;
    // Built-in names (DESIGN §2), then the configured ones, which may override them.
    std::vector<LocalRecord> recs;
    recs.push_back({"gateway.slipway.internal", m.cfg.gateway});
    recs.push_back({"gateway.containers.internal", m.cfg.gateway});
    if (m.cfg.host_alias) {
        for (const char* n :
             {"host.slipway.internal", "host.containers.internal", "host.docker.internal"})
            recs.push_back({n, *m.cfg.host_alias});
    }
    recs.insert(recs.end(), m.cfg.records.begin(), m.cfg.records.end());
    for (const auto& r : recs) {
        if (!m.add_record(r.name, r.addr)) {
            error = "--dns-record: '" + r.name + "' is not a valid domain name";
            return fail(Errc::invalid_argument);
        }
    }
    m.cfg.domain = lower(m.cfg.domain);

    if (!m.cfg.upstreams.empty()) {
        if (m.cfg.upstreams.size() > kMaxUpstreams) {
            error = "--dns-upstream: at most " + std::to_string(kMaxUpstreams) + " upstreams";
            return fail(Errc::invalid_argument);
        }
        for (auto& u : m.cfg.upstreams)
            m.ups.push_back(UpState{u});
        SLW_DEBUG("dns: upstreams {}", Impl::join(m.upstream_texts()));
    } else {
        m.load_resolv(true);
        m.arm_resolv_poll();
    }
    m.pend = std::vector<Pending>(m.cfg.max_pending);
    for (auto& p : m.pend)
        for (auto& t : p.tries)
            t.w = std::make_unique<FdWatcher>(io);
    m.free_slots.reserve(m.pend.size());
    for (std::size_t i = m.pend.size(); i-- > 0;)
        m.free_slots.push_back(static_cast<std::uint32_t>(i));
    m.socks = std::vector<UdpSock>(2 * kMaxUpstreams * kSocksPerUpstream);
    for (auto& us : m.socks)
        us.w = std::make_unique<FdWatcher>(io);
    m.ids = IdMap(m.pend.size() * kMaxTries);
    m.per_guest = IdMap(m.pend.size());
    m.guest_share = static_cast<std::uint32_t>(std::max<std::size_t>(16, m.pend.size() / 4));
    m.tcp_bufs.assign(kTcpBuffers, std::vector<std::byte>(2 + kMaxMsg));
    for (std::size_t i = kTcpBuffers; i-- > 0;)
        m.free_tcp.push_back(static_cast<int>(i));
    m.streams = std::vector<Stream>(kMaxStreams);
    for (auto& s : m.streams)
        s.w = std::make_unique<FdWatcher>(io);
    return std::unique_ptr<Forwarder>(new Forwarder(std::move(impl)));
}

void Forwarder::process_query(ByteView msg, const GuestEndpoint& from) noexcept {
    impl_->process_query(msg, from);
}

Result<void> Forwarder::serve_stream(UniqueFd fd) noexcept {
    return impl_->serve_stream(std::move(fd));
}

Result<void> Forwarder::add_record(std::string_view name, Ipv4Addr addr) {
    if (!impl_->add_record(name, addr)) return fail(Errc::invalid_argument);
    return {};
}

bool Forwarder::remove_record(std::string_view name) {
    return impl_->records.erase(lower(name)) != 0;
}

std::vector<LocalRecord> Forwarder::records() const {
    std::vector<LocalRecord> out;
    for (const auto& [n, a] : impl_->records)
        out.push_back({n, a});
    return out;
}

std::vector<std::string> Forwarder::upstreams() const {
    return impl_->upstream_texts();
}

const ForwarderCounters& Forwarder::counters() const noexcept {
    return impl_->ctr;
}

const Cache& Forwarder::cache() const noexcept {
    return impl_->cache;
}

}  // namespace slipway::dns
