// DHCPv4 server: address selection, the RFC 2131 §4.3 state machine, replies and the lease file.
//
// Theory of operation
// -------------------
// The server lives on the network thread, behind the gateway port: the gateway hands it the UDP
// payload of every datagram to port 67 and sends back whatever process() writes. DHCP is control
// traffic (a handful of messages per guest per lease time), so the server may allocate when a
// lease changes; it never throws out of process() and every message ends in a counter.
//
// Leases. One record per client, keyed by the client identifier (option 61) or, without one, by
// the hardware address (RFC 2131 §4.2). A record holds the address, the host name the client
// gave (option 12), the expiry, and a state: `offered` (reserved for 60 s after an OFFER),
// `bound` (ACKed), or `remembered` (released or expired: the address stays associated with the
// client so it gets the same one back, but any other client may take it when nothing else is
// free). Declined addresses (DECLINE: someone else answers ARP for them) are quarantined for
// decline_quarantine. Static leases (--dhcp-static) bind a MAC to an address that no other
// client is ever given.
//
// Address choice for a DISCOVER (RFC 2131 §4.3.1), first that applies: the client's static
// address; its current or remembered address if still free for it; the requested address
// (option 50) if it is in the pool and free; the lowest never-used pool address; the remembered
// address of another client that expired longest ago. None: no OFFER, `dhcp_no_address`, and a
// rate-limited log line saying the pool is exhausted.
//
// REQUEST (RFC 2131 §4.3.2): with a server identifier (SELECTING) it must name us and the
// offered address, else the client chose another server and our offer is dropped; without one and
// with option 50 (INIT-REBOOT) the address must be the client's own record, a foreign or
// out-of-subnet address gets a NAK, no record at all gets silence (the RFC's MUST); with ciaddr
// (RENEWING/REBINDING) the record must match, a free in-pool ciaddr is re-bound (a client that
// kept its lease across a slipwayd restart without a lease file), anything else is a NAK.
// RELEASE forgets the binding but remembers the association; DECLINE quarantines; INFORM gets an
// ACK with configuration but no lease (§4.3.5).
//
// Replies (§4.1): to ciaddr by unicast when the client has one (renewals, INFORM); NAKs and
// replies to clients that set the broadcast bit go to 255.255.255.255; everything else goes by
// unicast to yiaddr at chaddr (the client accepts unicast before it has an address, as Linux
// clients do). A relay agent on the guest link (giaddr inside the subnet) gets its replies at
// giaddr, port 67; a giaddr from another network is ignored: slipway serves its own subnet only.
// Options: 53, 54 and for OFFER/ACK 51, 58, 59 first, then 1, 3, 6, 15, 26, 28, 119, 121, 12 in
// the order the client's parameter request list (55) asks (RFC 2132 §9.8), or a default set when
// it has none; options beyond the client's maximum message size (57) are left out, never cut.
// Option 121 carries the default route too, because a client that takes 121 ignores option 3
// (RFC 3442 §2).
//
// Lease file. Text, one `lease MAC IP EXPIRES CLIENT-ID-HEX|- HOSTNAME|-` line per bound or
// remembered record under a version line. It is rewritten whenever a binding changes (ACK,
// RELEASE, DECLINE, expiry of an offer does not count): written to FILE.tmp, fsync'ed, renamed
// over FILE, and the directory fsync'ed, so a crash leaves the old or the new file, never half
// of one. This is a blocking write of a few hundred bytes on the network thread, a few times per
// lease time per guest. A file that does not parse is moved aside, never truncated.
#include "slipway/dhcp/server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "slipway/core/log.hpp"

namespace slipway::dhcp {

namespace {

constexpr std::int64_t kOfferHold = 60;  // seconds an OFFER reserves its address
constexpr std::string_view kFileVersion = "# slipway leases v1";

enum class State : std::uint8_t { offered, bound, remembered };

struct Record {
    std::string key;  // client id bytes, or "\x01" + chaddr (RFC 2131 §4.2)
    MacAddr mac;
    Ipv4Addr ip;
    std::string hostname;
    std::int64_t expires = 0;
    State state = State::offered;
};

std::string hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) {
        const auto b = static_cast<unsigned char>(c);
        out += kDigits[b >> 4];
        out += kDigits[b & 15];
    }
    return out;
}

std::optional<std::string> unhex(std::string_view s) {
    if (s.size() % 2 != 0) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 2) {
        unsigned v = 0;
        const auto r = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
        if (r.ec != std::errc{} || r.ptr != s.data() + i + 2) return std::nullopt;
        out += static_cast<char>(v);
    }
    return out;
}

bool valid_hostname(std::string_view h) {
    if (h.empty() || h.size() > 63) return false;
    return std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    });
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

}  // namespace

struct Server::Impl {
    ServerConfig cfg;
    std::vector<Record> records;
    std::unordered_map<std::uint32_t, std::int64_t> quarantine;  // address -> until
    std::vector<std::byte> search_opt;                           // option 119 value
    std::vector<std::byte> routes_opt;                           // option 121 value

    [[nodiscard]] bool in_subnet(Ipv4Addr a) const {
        return (a.v & Ipv4Addr::prefix_mask(cfg.prefix_len)) == cfg.subnet.v;
    }
    [[nodiscard]] bool in_pool(Ipv4Addr a) const {
        return a.v >= cfg.range_first.v && a.v <= cfg.range_last.v &&
               std::find(cfg.excluded.begin(), cfg.excluded.end(), a) == cfg.excluded.end();
    }
    [[nodiscard]] const StaticLease* static_for(const MacAddr& m) const {
        for (const auto& s : cfg.statics)
            if (s.mac == m) return &s;
        return nullptr;
    }
    [[nodiscard]] bool static_elsewhere(Ipv4Addr a, const MacAddr& m) const {
        for (const auto& s : cfg.statics)
            if (s.ip == a && s.mac != m) return true;
        return false;
    }
    Record* find(std::string_view key) {
        for (auto& r : records)
            if (r.key == key) return &r;
        return nullptr;
    }
    // Who holds `a` right now (an unexpired offer or binding), if not `key`.
    [[nodiscard]] const Record* holder(Ipv4Addr a, std::string_view key, std::int64_t now) const {
        for (const auto& r : records)
            if (r.ip == a && r.key != key && r.state != State::remembered && r.expires > now)
                return &r;
        return nullptr;
    }
    [[nodiscard]] bool quarantined(Ipv4Addr a, std::int64_t now) const {
        const auto it = quarantine.find(a.v);
        return it != quarantine.end() && it->second > now;
    }
    // Free for this client: assignable, nobody else holds it, not declined, not someone's static.
    [[nodiscard]] bool free_for(Ipv4Addr a, std::string_view key, const MacAddr& mac,
                                std::int64_t now) const {
        if (!in_subnet(a) || quarantined(a, now) || static_elsewhere(a, mac)) return false;
        if (a == cfg.server_id ||
            std::find(cfg.excluded.begin(), cfg.excluded.end(), a) != cfg.excluded.end())
            return false;
        return holder(a, key, now) == nullptr;
    }
    [[nodiscard]] bool remembered_by_other(Ipv4Addr a, std::string_view key) const {
        for (const auto& r : records)
            if (r.ip == a && r.key != key) return true;
        return false;
    }

    std::optional<Ipv4Addr> choose(const MessageView& m, std::string_view key, std::int64_t now) {
        const MacAddr mac = m.chaddr();
        if (const StaticLease* s = static_for(mac)) {
            if (!quarantined(s->ip, now) && holder(s->ip, key, now) == nullptr) return s->ip;
            return std::nullopt;  // its only address is taken or declined: nothing else is its
        }
        if (const Record* r = find(key);
            r != nullptr && in_pool(r->ip) && free_for(r->ip, key, mac, now))
            return r->ip;
        if (auto want = m.requested_ip(); want && in_pool(*want) &&
                                          free_for(*want, key, mac, now) &&
                                          !remembered_by_other(*want, key))
            return *want;
        // Lowest never-used address first, so returning clients keep theirs.
        for (std::uint32_t v = cfg.range_first.v; v <= cfg.range_last.v && v != 0; ++v) {
            const Ipv4Addr a{v};
            if (in_pool(a) && free_for(a, key, mac, now) && !remembered_by_other(a, key)) return a;
            if (v == cfg.range_last.v) break;
        }
        // Then the remembered address of another client that expired longest ago.
        const Record* oldest = nullptr;
        for (const auto& r : records)
            if (r.key != key && in_pool(r.ip) && free_for(r.ip, key, mac, now) &&
                (oldest == nullptr || r.expires < oldest->expires))
                oldest = &r;
        if (oldest != nullptr) return oldest->ip;
        return std::nullopt;
    }

    Record& upsert(std::string_view key, const MacAddr& mac) {
        if (Record* r = find(key)) return *r;
        records.push_back(Record{std::string(key), mac, {}, {}, 0, State::offered});
        return records.back();
    }
    // Another client's remembered record of `a` loses it when `a` is given to someone else.
    void take_over(Ipv4Addr a, std::string_view key) {
        std::erase_if(records, [&](const Record& r) { return r.ip == a && r.key != key; });
    }

    Result<void> persist(std::string& error) const;
    Result<void> load(std::string& error);
};

// ---- lease file ------------------------------------------------------------------------------

Result<void> Server::Impl::persist(std::string& error) const {
    if (cfg.lease_file.empty()) return {};
    std::ostringstream os;
    os << kFileVersion << "\n";
    for (const auto& r : records) {
        if (r.state == State::offered) continue;
        os << "lease " << r.mac.to_string() << ' ' << r.ip.to_string() << ' ' << r.expires << ' '
           << (r.key.empty() ? std::string("-") : hex(r.key)) << ' '
           << (r.hostname.empty() ? std::string("-") : r.hostname) << "\n";
    }
    const std::string body = os.str();
    const std::string tmp = cfg.lease_file + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = "--lease-file " + tmp + ": " + std::strerror(errno);
        return fail(Errc::io_error);
    }
    std::size_t off = 0;
    while (off < body.size()) {
        const ssize_t w = ::write(fd, body.data() + off, body.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            error = "--lease-file " + tmp + ": write: " + std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            return fail(Errc::io_error);
        }
        off += static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        error = "--lease-file " + tmp + ": fsync: " + std::strerror(errno);
        ::unlink(tmp.c_str());
        return fail(Errc::io_error);
    }
    if (::rename(tmp.c_str(), cfg.lease_file.c_str()) != 0) {
        error = "--lease-file " + cfg.lease_file + ": rename: " + std::strerror(errno);
        ::unlink(tmp.c_str());
        return fail(Errc::io_error);
    }
    // The rename is durable only once the directory is.
    std::string dir = cfg.lease_file;
    const auto slash = dir.rfind('/');
    dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : dir.substr(0, slash));
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
    return {};
}

Result<void> Server::Impl::load(std::string& error) {
    if (cfg.lease_file.empty()) return {};
    std::ifstream in(cfg.lease_file);
    if (!in) {
        if (errno == ENOENT) return {};  // first run
        error = "--lease-file " + cfg.lease_file + ": cannot read: " + std::strerror(errno);
        return fail(Errc::io_error);
    }
    std::vector<Record> loaded;
    std::string line;
    std::size_t lineno = 0;
    std::string problem;
    while (problem.empty() && std::getline(in, line)) {
        ++lineno;
        if (lineno == 1) {
            if (line != kFileVersion) problem = "line 1: not a slipway lease file";
            continue;
        }
        if (line.empty()) continue;
        std::istringstream ls(line);
        std::string word, mac_s, ip_s, exp_s, id_s, host_s, extra;
        if (!(ls >> word >> mac_s >> ip_s >> exp_s >> id_s >> host_s) || word != "lease" ||
            (ls >> extra)) {
            problem = "line " + std::to_string(lineno) + ": malformed";
            break;
        }
        const auto mac = MacAddr::parse(mac_s);
        const auto ip = Ipv4Addr::parse(ip_s);
        std::int64_t exp = 0;
        const auto er = std::from_chars(exp_s.data(), exp_s.data() + exp_s.size(), exp);
        const auto id = id_s == "-" ? std::optional<std::string>("") : unhex(id_s);
        if (!mac || !ip || er.ec != std::errc{} || er.ptr != exp_s.data() + exp_s.size() || !id ||
            (host_s != "-" && !valid_hostname(host_s))) {
            problem = "line " + std::to_string(lineno) + ": malformed";
            break;
        }
        loaded.push_back(
            Record{*id, *mac, *ip, host_s == "-" ? std::string() : host_s, exp, State::bound});
    }
    if (problem.empty() && lineno == 0) problem = "empty file";
    if (!problem.empty()) {
        const std::string aside =
            cfg.lease_file + ".corrupt-" +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
        if (::rename(cfg.lease_file.c_str(), aside.c_str()) != 0) {
            error = "--lease-file " + cfg.lease_file + ": " + problem +
                    ", and it cannot be moved aside: " + std::strerror(errno);
            return fail(Errc::io_error);
        }
        SLW_ERROR("--lease-file {}: {}; moved it to {} and starting with no leases", cfg.lease_file,
                  problem, aside);
        return {};
    }
    records = std::move(loaded);
    SLW_INFO("dhcp: {} lease{} loaded from {}", records.size(), records.size() == 1 ? "" : "s",
             cfg.lease_file);
    return {};
}

// ---- server -----------------------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

const ServerConfig& Server::config() const noexcept {
    return impl_->cfg;
}

Result<std::unique_ptr<Server>> Server::create(ServerConfig cfg, std::string& error) {
    const std::uint32_t mask = Ipv4Addr::prefix_mask(cfg.prefix_len);
    const auto inside = [&](Ipv4Addr a) {
        return (a.v & mask) == cfg.subnet.v && a.v != cfg.subnet.v && a.v != (cfg.subnet.v | ~mask);
    };
    if (!inside(cfg.range_first) || !inside(cfg.range_last) ||
        cfg.range_first.v > cfg.range_last.v) {
        error = "--dhcp-range: " + cfg.range_first.to_string() + "-" + cfg.range_last.to_string() +
                " is not an ascending range of host addresses of the subnet";
        return fail(Errc::invalid_argument);
    }
    if (cfg.lease_time < std::chrono::seconds(60) ||
        cfg.lease_time > std::chrono::hours(24 * 365)) {
        error = "--lease-time: " + std::to_string(cfg.lease_time.count()) +
                " is outside 60..31536000 seconds";
        return fail(Errc::invalid_argument);
    }
    for (std::size_t i = 0; i < cfg.statics.size(); ++i) {
        const auto& s = cfg.statics[i];
        if (!inside(s.ip) || s.ip == cfg.server_id ||
            std::find(cfg.excluded.begin(), cfg.excluded.end(), s.ip) != cfg.excluded.end()) {
            error = "--dhcp-static " + s.mac.to_string() + "=" + s.ip.to_string() +
                    ": not a free host address of the subnet";
            return fail(Errc::invalid_argument);
        }
        for (std::size_t j = 0; j < i; ++j)
            if (cfg.statics[j].mac == s.mac || cfg.statics[j].ip == s.ip) {
                error = "--dhcp-static " + s.mac.to_string() + "=" + s.ip.to_string() +
                        ": the MAC or the address is already given a static lease";
                return fail(Errc::invalid_argument);
            }
    }
    auto impl = std::make_unique<Impl>();
    impl->cfg = std::move(cfg);
    // Option 119 and 121 values are fixed for the server's life: encode them once.
    {
        std::vector<std::string_view> names(impl->cfg.search.begin(), impl->cfg.search.end());
        std::array<std::byte, 255> buf{};
        auto n = encode_search_list(names, buf);
        if (!n) {
            error = "--search: the list is not valid domain names or is longer than 255 bytes";
            return fail(Errc::invalid_argument);
        }
        impl->search_opt.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
        const ClasslessRoute routes[] = {
            {impl->cfg.subnet, impl->cfg.prefix_len, Ipv4Addr{}},  // on-link (router 0.0.0.0)
            {Ipv4Addr{}, 0, impl->cfg.router},                     // default route
        };
        auto m = encode_classless_routes(routes, buf);
        if (!m) {
            error = "internal: cannot encode option 121";
            return fail(Errc::invalid_argument);
        }
        impl->routes_opt.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*m));
    }
    if (auto r = impl->load(error); !r) return fail(r.error());
    // Write it back at once: a lease file that cannot be written is a start-up error, not a
    // surprise at the first ACK (and a moved-aside corrupt file is replaced by a good one).
    if (auto r = impl->persist(error); !r) return fail(r.error());
    return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::optional<ReplyTarget> Server::process(ByteView payload, MutByteView out,
                                           std::int64_t now) noexcept {
    Impl& im = *impl_;
    auto parsed = MessageView::parse(payload);
    if (!parsed || parsed->op() != Op::request) {
        counters_.drop_malformed.inc();
        return std::nullopt;
    }
    const MessageView& m = *parsed;
    // A relay agent inside our subnet sits on the guest link (a guest running one, or perfdhcp,
    // which always speaks as a relay): serve it, replying to giaddr (RFC 2131 §4.1). One from
    // elsewhere would be asking for another network's addresses: not ours to give.
    const bool relayed = !m.giaddr().is_unspecified();
    if (relayed && !im.in_subnet(m.giaddr())) {
        counters_.ignored.inc();
        return std::nullopt;
    }
    try {
        const MacAddr mac = m.chaddr();
        std::string key;
        if (auto id = m.client_id()) {
            key.assign(reinterpret_cast<const char*>(id->data()), id->size());
        } else {
            key.push_back('\x01');  // RFC 2132 §9.14: type 1 (Ethernet) + chaddr
            for (auto b : mac.b)
                key.push_back(static_cast<char>(b));
        }
        std::string hostname;
        if (auto h = m.hostname(); h && valid_hostname(*h)) hostname = lower(*h);

        // ---- decide ----
        MessageType reply_type = MessageType::ack;
        Ipv4Addr yiaddr{};
        bool with_lease = true;
        bool changed = false;  // the lease file must be rewritten
        const char* nak_reason = nullptr;

        switch (m.type()) {
            case MessageType::discover: {
                counters_.discovers.inc();
                auto a = im.choose(m, key, now);
                if (!a) {
                    counters_.no_address.inc();
                    SLW_WARN_RATELIMITED(
                        "dhcp: no address to offer {} (pool {}-{} exhausted{})", mac.to_string(),
                        im.cfg.range_first.to_string(), im.cfg.range_last.to_string(),
                        im.static_for(mac) != nullptr ? ", or its static address is in use" : "");
                    return std::nullopt;
                }
                Record& r = im.upsert(key, mac);
                if (r.state != State::bound || r.ip != *a || r.expires <= now) {
                    r.state = State::offered;
                    r.expires = now + kOfferHold;
                }
                r.ip = *a;
                r.mac = mac;
                if (!hostname.empty()) r.hostname = hostname;
                reply_type = MessageType::offer;
                yiaddr = *a;
                counters_.offers.inc();
                break;
            }
            case MessageType::request: {
                counters_.requests.inc();
                const auto sid = m.server_id();
                const auto want = m.requested_ip();
                Record* r = im.find(key);
                const StaticLease* st = im.static_for(mac);
                Ipv4Addr addr{};
                if (sid) {  // SELECTING
                    if (*sid != im.cfg.server_id) {
                        if (r != nullptr && r->state == State::offered)
                            std::erase_if(im.records,
                                          [&](const Record& x) { return x.key == key; });
                        counters_.ignored.inc();
                        return std::nullopt;
                    }
                    if (!want || r == nullptr || r->ip != *want) {
                        nak_reason = "requested address was not offered to it";
                    } else if (!im.free_for(*want, key, mac, now)) {
                        nak_reason = "the offered address was taken meanwhile";
                    } else {
                        addr = *want;
                    }
                } else if (want && m.ciaddr().is_unspecified()) {  // INIT-REBOOT
                    if (!im.in_subnet(*want)) {
                        nak_reason = "requested address is not on this network";
                    } else if (r != nullptr && r->ip == *want) {
                        if (!im.free_for(*want, key, mac, now) ||
                            (st != nullptr && st->ip != *want))
                            nak_reason = "its address is no longer available";
                        else
                            addr = *want;
                    } else if (r != nullptr || !im.free_for(*want, key, mac, now) ||
                               (st != nullptr && st->ip != *want)) {
                        nak_reason = "requested address belongs to another client";
                    } else {
                        counters_.ignored.inc();  // no record: RFC 2131 §4.3.2 MUST be silent
                        return std::nullopt;
                    }
                } else if (!m.ciaddr().is_unspecified()) {  // RENEWING / REBINDING
                    const Ipv4Addr c = m.ciaddr();
                    if ((r != nullptr && r->ip == c && im.free_for(c, key, mac, now)) ||
                        (r == nullptr && im.in_pool(c) && im.free_for(c, key, mac, now) &&
                         !im.remembered_by_other(c, key) && st == nullptr)) {
                        addr = c;
                    } else {
                        nak_reason = "its address is not leased to it";
                    }
                } else {
                    nak_reason = "REQUEST with neither server id, requested address nor ciaddr";
                }
                if (nak_reason != nullptr) {
                    reply_type = MessageType::nak;
                    with_lease = false;
                    break;
                }
                (void)im.upsert(key, mac);
                im.take_over(addr, key);
                Record& bound = *im.find(key);  // take_over may have moved records
                bound.ip = addr;
                bound.mac = mac;
                bound.state = State::bound;
                bound.expires = now + im.cfg.lease_time.count();
                if (!hostname.empty()) bound.hostname = hostname;
                if (st != nullptr && !st->hostname.empty()) bound.hostname = st->hostname;
                im.quarantine.erase(addr.v);
                yiaddr = addr;
                changed = true;
                break;
            }
            case MessageType::decline: {
                counters_.declines.inc();
                if (auto sid = m.server_id(); sid && *sid != im.cfg.server_id) {
                    counters_.ignored.inc();
                    return std::nullopt;
                }
                if (auto a = m.requested_ip()) {
                    im.quarantine[a->v] = now + im.cfg.decline_quarantine.count();
                    std::erase_if(im.records, [&](const Record& x) { return x.ip == *a; });
                    SLW_WARN("dhcp: {} declined {}: another host uses it; quarantined for {} s",
                             mac.to_string(), a->to_string(), im.cfg.decline_quarantine.count());
                    changed = true;
                }
                break;
            }
            case MessageType::release: {
                counters_.releases.inc();
                if (Record* r = im.find(key); r != nullptr && r->ip == m.ciaddr()) {
                    r->state = State::remembered;
                    r->expires = now;
                    changed = true;
                }
                break;
            }
            case MessageType::inform: {
                counters_.informs.inc();
                with_lease = false;
                break;
            }
            default:  // OFFER/ACK/NAK sent to a server port: not for us
                counters_.ignored.inc();
                return std::nullopt;
        }
        if (changed) {
            std::string err;
            if (!im.persist(err)) {
                counters_.persist_errors.inc();
                SLW_WARN_RATELIMITED("dhcp: {}", err);
            }
        }
        const MessageType t = m.type();
        if (t == MessageType::decline || t == MessageType::release) return std::nullopt;

        // ---- reply ----
        std::array<std::byte, 4> server_id{}, mask{}, router{}, dns{}, bcast{}, lease{}, t1{}, t2{};
        std::array<std::byte, 2> mtu{};
        im.cfg.server_id.store(server_id.data());
        Ipv4Addr{Ipv4Addr::prefix_mask(im.cfg.prefix_len)}.store(mask.data());
        im.cfg.router.store(router.data());
        im.cfg.dns.store(dns.data());
        Ipv4Addr{im.cfg.subnet.v | ~Ipv4Addr::prefix_mask(im.cfg.prefix_len)}.store(bcast.data());
        const auto lt = static_cast<std::uint32_t>(im.cfg.lease_time.count());
        store_be32(lease.data(), lt);
        store_be32(t1.data(), lt / 2);                                     // RFC 2131 §4.4.5
        store_be32(t2.data(), static_cast<std::uint32_t>(lt * 7ull / 8));  // 0.875
        store_be16(mtu.data(),
                   static_cast<std::uint16_t>(std::min<std::uint32_t>(im.cfg.mtu, 65535)));
        std::string host_for_reply;
        if (with_lease) {
            if (const StaticLease* s = im.static_for(mac); s != nullptr && !s->hostname.empty())
                host_for_reply = s->hostname;
        }
        const auto as_bytes = [](std::string_view s) {
            return ByteView{reinterpret_cast<const std::byte*>(s.data()), s.size()};
        };

        std::array<Option, 20> opts{};
        std::size_t n = 0;
        opts[n++] = {opt::server_id, server_id};
        if (reply_type == MessageType::nak) {
            opts[n++] = {opt::message, as_bytes(nak_reason)};
        } else {
            if (with_lease) {
                opts[n++] = {opt::lease_time, lease};
                opts[n++] = {opt::renewal_time, t1};
                opts[n++] = {opt::rebinding_time, t2};
            }
            const auto add = [&](std::uint8_t code) {
                for (std::size_t i = 0; i < n; ++i)
                    if (opts[i].code == code) return;
                switch (code) {
                    case opt::subnet_mask:
                        opts[n++] = {code, mask};
                        break;
                    case opt::router:
                        opts[n++] = {code, router};
                        break;
                    case opt::dns:
                        opts[n++] = {code, dns};
                        break;
                    case opt::domain_name:
                        if (!im.cfg.domain.empty()) opts[n++] = {code, as_bytes(im.cfg.domain)};
                        break;
                    case opt::mtu:
                        opts[n++] = {code, mtu};
                        break;
                    case opt::broadcast:
                        opts[n++] = {code, bcast};
                        break;
                    case opt::domain_search:
                        if (!im.search_opt.empty()) opts[n++] = {code, im.search_opt};
                        break;
                    case opt::classless_routes:
                        opts[n++] = {code, im.routes_opt};
                        break;
                    case opt::hostname:
                        if (!host_for_reply.empty()) opts[n++] = {code, as_bytes(host_for_reply)};
                        break;
                    default:
                        break;  // not something slipway serves
                }
            };
            // RFC 2131 §4.3.1: the mask and router always (every client needs them), then what
            // the client asked for, in its order; a client without a list gets a default set.
            add(opt::subnet_mask);
            add(opt::router);
            // An MTU other than Ethernet's 1500 goes unasked too (RFC 2131 table 3: any other
            // option MAY be sent): a guest left at 1500 on a smaller MTU sends frames slipway
            // must drop (drop_too_big), and on a larger one never uses it. busybox udhcpc does
            // not ask for option 26 unless told to.
            if (im.cfg.mtu != 1500) add(opt::mtu);
            const ByteView prl = m.param_request_list();
            if (prl.empty()) {
                for (std::uint8_t c : {opt::dns, opt::domain_name, opt::mtu, opt::broadcast,
                                       opt::domain_search, opt::hostname})
                    add(c);
            } else {
                for (std::byte c : prl)
                    if (n < opts.size()) add(static_cast<std::uint8_t>(c));
            }
        }
        ReplyRepr rep;
        rep.type = reply_type;
        rep.xid = m.xid();
        rep.broadcast_flag = m.broadcast_flag();
        rep.ciaddr =
            (t == MessageType::inform || reply_type == MessageType::ack) ? m.ciaddr() : Ipv4Addr{};
        rep.yiaddr = yiaddr;
        rep.chaddr = mac;
        rep.giaddr = m.giaddr();
        rep.options = std::span<const Option>(opts.data(), n);
        // Option 57 counts the whole IP datagram (RFC 2132 §9.10): leave room for IP and UDP.
        rep.max_len = kMinMessageLen;
        if (auto mms = m.max_message_size())
            rep.max_len = std::max<std::size_t>(*mms - 28u, kMinMessageLen);
        auto len = rep.emit(out);
        if (!len) {
            counters_.drop_malformed.inc();
            return std::nullopt;
        }
        if (reply_type == MessageType::nak) {
            counters_.naks.inc();
            SLW_INFO("dhcp: NAK to {}: {}", mac.to_string(), nak_reason);
        } else if (reply_type == MessageType::ack) {
            counters_.acks.inc();
            if (with_lease)
                SLW_INFO("dhcp: {} bound to {}{}{}", mac.to_string(), yiaddr.to_string(),
                         hostname.empty() ? "" : " as ", hostname);
        }
        // RFC 2131 §4.1: where the reply goes.
        ReplyTarget tgt{*len, Ipv4Addr{0xffffffffu}, MacAddr::broadcast()};
        if (relayed) {
            tgt.dst_ip = m.giaddr();
            tgt.dst_port = kServerPort;
            tgt.to_relay = true;
            return tgt;
        }
        if (reply_type == MessageType::nak) return tgt;
        if (!m.ciaddr().is_unspecified()) {
            tgt.dst_ip = m.ciaddr();
            tgt.dst_mac = mac;
        } else if (!m.broadcast_flag()) {
            tgt.dst_ip = yiaddr;
            tgt.dst_mac = mac;
        }
        return tgt;
    } catch (...) {  // allocation failure while recording a lease: drop this message
        counters_.drop_malformed.inc();
        return std::nullopt;
    }
}

std::vector<LeaseInfo> Server::leases(std::int64_t now) const {
    std::vector<LeaseInfo> out;
    for (const auto& r : impl_->records) {
        if (r.state == State::offered && r.expires <= now) continue;
        out.push_back(LeaseInfo{r.mac, r.ip, r.hostname, r.expires,
                                impl_->static_for(r.mac) != nullptr,
                                r.state == State::bound && r.expires > now});
    }
    return out;
}

std::optional<Ipv4Addr> Server::address_of(std::string_view hostname, std::int64_t now) const {
    const std::string h = lower(hostname);
    for (const auto& r : impl_->records)
        if (r.state == State::bound && r.expires > now && r.hostname == h) return r.ip;
    for (const auto& s : impl_->cfg.statics)
        if (!s.hostname.empty() && lower(s.hostname) == h) return s.ip;
    return std::nullopt;
}

std::optional<std::pair<Ipv4Addr, Ipv4Addr>> parse_range(std::string_view text) {
    const auto dash = text.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto a = Ipv4Addr::parse(text.substr(0, dash));
    auto b = Ipv4Addr::parse(text.substr(dash + 1));
    if (!a || !b) return std::nullopt;
    return std::make_pair(*a, *b);
}

std::optional<StaticLease> parse_static(std::string_view text) {
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    auto mac = MacAddr::parse(text.substr(0, eq));
    std::string_view rest = text.substr(eq + 1);
    std::string_view host;
    if (const auto comma = rest.find(','); comma != std::string_view::npos) {
        host = rest.substr(comma + 1);
        rest = rest.substr(0, comma);
        if (!valid_hostname(host)) return std::nullopt;
    }
    auto ip = Ipv4Addr::parse(rest);
    if (!mac || !ip || mac->is_multicast() || mac->is_zero()) return std::nullopt;
    return StaticLease{*mac, *ip, lower(host)};
}

}  // namespace slipway::dhcp
