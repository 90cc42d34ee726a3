// libFuzzer target: nat::UdpEngine and nat::IcmpEngine (ping, raw, raw-unavailable and gateway
// modes) driven together by a script of guest UDP datagrams and ICMP messages, host datagrams,
// replies and errors injected into the fake sockets, socket events, timer ticks, link room,
// pool pressure and socket failures, against the fakes of tests/unit/nat/fake_dgram.hpp, with an
// egress policy and per-guest limits shared by both engines as the gateway shares them.
//
// Input: two configuration bytes, then operations (see Harness::step()). Two guests (one behind a
// VLAN), two ports each, and a small set of destinations: remote hosts, a policy-denied one, the
// host alias, the gateway itself, the guest network and a multicast group. Every payload carries a
// tag naming who sent it and in which order.
// Invariants, checked at every frame the engines dispatch and after every step (abort on
// violation):
//   - every frame parses: Ethernet from the gateway's MAC to the guest's (its VLAN as the guest
//     uses it), a 20-byte IPv4 header with a valid checksum and the frame's length, at most the
//     MTU, UDP and ICMP checksums valid (partial checksums only for a link that takes them,
//     seeded with the pseudo-header sum), fragments by RFC 791's rules, and fragments reassemble
//     (nat::Reassembler) into datagrams that check the same way;
//   - a host datagram reaches the guest of its socket's flow, from the destination the guest
//     addressed (the alias for 127.0.0.1), byte for byte, never out of order; an echo reply
//     carries its flow's guest identifier; in raw mode a reply from the wrong source never
//     arrives; every ICMP error quotes one of the guest's own flows and comes from the destination
//     the guest addressed or from the gateway;
//   - the guest's datagrams reach the socket of their own flow, byte for byte, in order; ping
//     sockets are only sent echo requests, raw sends carry valid checksums to the flow's address;
//   - flows() == live table entries of the protocol == open sockets of the kind; every live
//     flow's fd is open and watched under the flow's id; every closed fd is unwatched; the
//     DgramSockets contract holds (fake_dgram.hpp aborts on any breach); the per-guest counts of
//     FlowLimits equal the guests' live flows;
//   - after reset_all() and destruction: no flow, no table entry, every socket closed exactly
//     once, nothing watched, every pool buffer back.
//   - no datagram's fragments cut short by a full link, no ICMP reply dropped for a full link
//     (UdpEngineTest.FullLinkNeverCutsADatagramsFragmentsShort and
//     IcmpEngineTest.FullLinkLeavesRepliesInTheSocket; FUZZ_DGRAM_STRICT=0 turns these two off).
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../unit/nat/fake_dgram.hpp"
#include "fuzz_util.hpp"

namespace {

using namespace slipway;
using namespace slipway::nat;
using namespace slipway::nat::fake;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "fuzz_dgram_engine: invariant broken: %s %s\n", what, detail.c_str());
    std::abort();
}
void need(bool ok, const char* what, const std::string& detail = {}) {
    if (!ok) fail(what, detail);
}

PacketPool& pool() {
    static PacketPool p(PoolConfig{.small_buffers = 1024, .large_buffers = 32});
    return p;
}
PacketPool& reasm_pool() {
    static PacketPool p(PoolConfig{.small_buffers = 16, .large_buffers = 12});
    return p;
}

class Reader {
  public:
    Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    [[nodiscard]] bool empty() const { return i_ >= n_; }
    std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }

  private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

constexpr MacAddr kGuestMac2{{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}};
constexpr Ipv4Addr kGuestIp2 = Ipv4Addr::from_octets(192, 168, 127, 3);
constexpr wire::VlanTag kVlan2{EtherType::vlan, 5};
constexpr Ipv4Addr kDenied = Ipv4Addr::from_octets(198, 51, 100, 7);
constexpr Ipv4Addr kRemote2 = Ipv4Addr::from_octets(10, 1, 2, 3);
constexpr Ipv4Addr kRouter = Ipv4Addr::from_octets(10, 20, 30, 40);
constexpr Ipv4Addr kHostIp = Ipv4Addr::from_octets(10, 0, 2, 15);
constexpr Ipv4Addr kLoopback = Ipv4Addr::from_octets(127, 0, 0, 1);
constexpr std::uint32_t kMtus[] = {1500, 576, 9000, 1280};

struct Guest {
    Ipv4Addr ip;
    MacAddr mac;
    std::optional<wire::VlanTag> vlan;
};
const Guest kGuests[2] = {{kGuestIp, kGuestMac, std::nullopt}, {kGuestIp2, kGuestMac2, kVlan2}};
constexpr std::uint16_t kGuestPorts[2] = {40000, 40001};
const Endpoint kUdpDsts[] = {
    {kRemoteIp, 5000},
    {kRemoteIp, 53},
    {kRemote2, 123},
    {kDenied, 5000},
    {kAliasIp, 22},
    {kAliasIp, 8080},
    {kGatewayIp, 9999},
    {Ipv4Addr::from_octets(192, 168, 127, 9), 5000},
    {Ipv4Addr::from_octets(224, 0, 0, 251), 5353},
};
constexpr std::size_t kNumUdpDsts = sizeof kUdpDsts / sizeof kUdpDsts[0];
const Ipv4Addr kIcmpDsts[] = {kRemoteIp, kRemote2,   kDenied,
                              kAliasIp,  kGatewayIp, Ipv4Addr::from_octets(192, 168, 127, 9)};
constexpr std::size_t kNumIcmpDsts = sizeof kIcmpDsts / sizeof kIcmpDsts[0];
constexpr std::uint16_t kEchoIds[2] = {0x1234, 0x1235};
constexpr std::size_t kNumUdpTuples = 2 * 2 * kNumUdpDsts;
constexpr std::size_t kNumPingTuples = 2 * 2 * kNumIcmpDsts;

// Where a socket to `dst` is connected: the alias means the host's loopback.
Ipv4Addr host_side(Ipv4Addr dst) {
    return dst == kAliasIp ? kLoopback : dst;
}

struct UdpTuple {
    int guest = 0;
    std::uint16_t gport = 0;
    Endpoint dst;
    std::uint32_t next_seq = 1;
};
struct PingTuple {
    int guest = 0;
    std::uint16_t id = 0;
    Ipv4Addr dst;
    std::uint16_t next_seq = 1;
};

// What the harness knows about one socket the engines opened.
struct SockInfo {
    bool udp = false;
    int tuple = -1;
    std::size_t sent_checked = 0;      // guest datagrams already compared
    std::uint32_t last_guest_seq = 0;  // the guest's order on this socket
    std::uint16_t next_host = 1;       // host datagram counter (tags)
    int last_host_seen = -1;           // host datagram order as the guest got them
};

class Harness {
  public:
    Harness(const DgramNetOptions& o, bool policy, bool limits, bool strict)
        : net(o), policy_on(policy), limits_on(limits), strict(strict) {
        net.socks.abort_on_violation = true;
        net.link.on_dispatch = [this](const PacketRef& f) { on_frame(f); };
        for (std::size_t i = 0; i < kNumUdpTuples; ++i) {
            udp_tuples[i].guest = static_cast<int>(i & 1);
            udp_tuples[i].gport = kGuestPorts[(i >> 1) & 1];
            udp_tuples[i].dst = kUdpDsts[i >> 2];
        }
        for (std::size_t i = 0; i < kNumPingTuples; ++i) {
            ping_tuples[i].guest = static_cast<int>(i & 1);
            ping_tuples[i].id = kEchoIds[(i >> 1) & 1];
            ping_tuples[i].dst = kIcmpDsts[i >> 2];
        }
    }
    ~Harness() { net.link.on_dispatch = nullptr; }

    DgramNet net;
    bool policy_on, limits_on, strict;
    bool trace = false;
    UdpTuple udp_tuples[kNumUdpTuples];
    PingTuple ping_tuples[kNumPingTuples];
    std::map<int, SockInfo> socks;
    std::size_t opened_seen = 0;
    std::size_t raw_sent_seen = 0;
    std::map<std::uint16_t, int> host_ids;         // raw mode: host identifier -> ping tuple
    std::map<std::uint16_t, Bytes> host_requests;  // raw mode: last request sent under it
    std::uint16_t raw_counter = 1;
    std::vector<PacketRef> held;  // pool pressure

    // ---- frames from the engines ---------------------------------------------------------------

    void on_frame(const PacketRef& f) {
        const DgramOut o = check_frame(f, net.ucfg.mtu);
        if (trace) std::fprintf(stderr, "  <- %s\n", o.str().c_str());
        need(o.ok, "frame does not check", o.why);
        need(o.eth_src == kGatewayMac, "frame not from the gateway's MAC");
        int g = -1;
        for (int i = 0; i < 2; ++i)
            if (o.ip_dst == kGuests[i].ip) g = i;
        need(g >= 0, "frame to no guest", o.str());
        need(o.eth_dst == kGuests[g].mac, "frame to the wrong MAC", o.str());
        need(o.vlan == kGuests[g].vlan, "frame with the wrong VLAN tag", o.str());
        need(!o.needs_csum || net.link.caps.partial_csum, "partial checksum the link cannot take");
    }

    int udp_tuple_of(Ipv4Addr guest, std::uint16_t gport, Ipv4Addr dst, std::uint16_t dport) {
        for (std::size_t i = 0; i < kNumUdpTuples; ++i) {
            const UdpTuple& t = udp_tuples[i];
            if (kGuests[t.guest].ip == guest && t.gport == gport && t.dst.ip == dst &&
                t.dst.port == dport)
                return static_cast<int>(i);
        }
        return -1;
    }
    int ping_tuple_of(Ipv4Addr guest, std::uint16_t id, Ipv4Addr dst) {
        for (std::size_t i = 0; i < kNumPingTuples; ++i) {
            const PingTuple& t = ping_tuples[i];
            if (kGuests[t.guest].ip == guest && t.id == id && t.dst == dst)
                return static_cast<int>(i);
        }
        return -1;
    }

    // A datagram (reassembled if it came in fragments) as the guest gets it.
    void on_datagram(const DgramOut& o) {
        need(o.ok, "reassembled datagram does not check", o.why);
        if (o.udp) {
            const int ti = udp_tuple_of(o.ip_dst, o.dport, o.ip_src, o.sport);
            need(ti >= 0, "UDP datagram for a flow no guest opened", o.str());
            need(pattern_ok(o.payload), "UDP payload differs from what the host sent", o.str());
            const auto tag = pattern_tag(o.payload);
            if (!tag) return;
            const int fd = static_cast<int>(*tag >> 16);
            auto it = socks.find(fd);
            need(it != socks.end() && it->second.udp, "UDP datagram from no socket", o.str());
            need(it->second.tuple == ti, "UDP datagram delivered to another flow", o.str());
            const int n = static_cast<int>(*tag & 0xffff);
            need(n > it->second.last_host_seen, "host datagrams reordered", o.str());
            it->second.last_host_seen = n;
            return;
        }
        need(o.icmp, "neither UDP nor ICMP");
        if (o.icmp_type == 0) {
            need(o.icmp_code == 0, "echo reply with a code");
            const int ti = ping_tuple_of(o.ip_dst, o.echo_id(), o.ip_src);
            need(ti >= 0, "echo reply for no guest's ping", o.str());
            need(pattern_ok(o.payload), "echo reply payload differs", o.str());
            const auto tag = pattern_tag(o.payload);
            if (!tag) return;
            if ((*tag & 0x80000000u) != 0) {
                need((*tag & 0x40000000u) == 0, "raw reply from the wrong source delivered",
                     o.str());
                auto it = host_ids.find(static_cast<std::uint16_t>(*tag & 0xffffu));
                need(it != host_ids.end() && it->second == ti,
                     "raw reply delivered to another flow", o.str());
            } else {
                auto it = socks.find(static_cast<int>(*tag >> 16));
                need(it != socks.end() && !it->second.udp && it->second.tuple == ti,
                     "ping reply delivered to another flow", o.str());
            }
            return;
        }
        need(o.icmp_type == 3 || o.icmp_type == 11 || o.icmp_type == 12, "unexpected ICMP type",
             o.str());
        need(o.icmp_type != 3 || o.icmp_code != 13 || policy_on, "code 13 without a policy");
        need(o.payload.size() + 28 <= 576, "ICMP error above 576 bytes");
        const Quote q = parse_quote(o.payload);
        need(q.ok, "ICMP error quote", q.why);
        need(q.src == o.ip_dst, "ICMP error quoting another guest's datagram", o.str());
        need(q.l4.size() >= 8, "ICMP error quoting less than 8 bytes");
        // Host-side routers stay hidden: the destination speaks for itself, anyone else is the
        // gateway.
        need(o.ip_src == q.dst || o.ip_src == kGatewayIp, "ICMP error from a host-side address",
             o.str());
        if (q.proto == IpProto::udp) {
            need(udp_tuple_of(q.src, q.sport(), q.dst, q.dport()) >= 0,
                 "ICMP error quoting a datagram no guest sent", o.str());
        } else {
            need(q.proto == IpProto::icmp, "ICMP error quoting neither UDP nor ICMP");
            need(q.l4[0] == 8, "ICMP error quoting something other than an echo request");
            need(ping_tuple_of(q.src, q.echo_id(), q.dst) >= 0,
                 "ICMP error quoting a request no guest sent", o.str());
        }
    }

    // ---- after every step
    // ------------------------------------------------------------------------

    void learn_sockets() {
        for (; opened_seen < net.socks.opened.size(); ++opened_seen) {
            const int fd = net.socks.opened[opened_seen];
            const FakeDgramSocket& s = net.socks.at(fd);
            if (s.raw || s.closed) continue;  // a socket that never became a flow
            const FlowId id = net.table.by_fd(fd);
            need(id != kNoFlow, "an open socket no flow owns");
            const FlowKey& k = net.table.key(id);
            SockInfo info;
            info.udp = k.proto == IpProto::udp;
            info.tuple = info.udp
                             ? udp_tuple_of(k.guest_ip, k.guest_port, k.remote_ip, k.remote_port)
                             : ping_tuple_of(k.guest_ip, k.guest_port, k.remote_ip);
            need(info.tuple >= 0, "a flow for a tuple no guest used");
            need(s.protocol == (info.udp ? 0 : IPPROTO_ICMP), "socket of the wrong protocol");
            need(s.remote_ip() == host_side(k.remote_ip), "socket connected to the wrong address");
            need(!info.udp || s.remote_port() == k.remote_port,
                 "socket connected to the wrong port");
            socks[fd] = info;
        }
    }

    void check_sent() {
        for (auto& [fd, info] : socks) {
            const FakeDgramSocket& s = net.socks.at(fd);
            for (; info.sent_checked < s.sent.size(); ++info.sent_checked) {
                const Bytes& d = s.sent[info.sent_checked];
                if (info.udp) {
                    need(pattern_ok(d), "the socket got bytes the guest did not send");
                    const auto tag = pattern_tag(d);
                    if (!tag) continue;
                    need(static_cast<int>(*tag >> 20) == info.tuple,
                         "a guest datagram went to another flow's socket");
                    const std::uint32_t seq = *tag & 0xfffff;
                    need(seq > info.last_guest_seq, "guest datagrams reordered");
                    info.last_guest_seq = seq;
                } else {
                    need(d.size() >= 8 && d[0] == 8, "ping socket sent no echo request");
                    const PingTuple& t = ping_tuples[info.tuple];
                    need(get16(d, 4) == t.id, "ping socket sent another guest's identifier");
                    const Bytes body(d.begin() + 8, d.end());
                    need(pattern_ok(body), "echo request payload differs");
                }
            }
        }
        const int raw = net.socks.raw_fd();
        if (raw < 0) return;
        const auto& sent = net.socks.at(raw).sent_to;
        for (; raw_sent_seen < sent.size(); ++raw_sent_seen) {
            const auto& [to, m] = sent[raw_sent_seen];
            need(m.size() >= 8 && m[0] == 8 && m[1] == 0, "raw socket sent no echo request");
            const auto tag = pattern_tag(std::span(m).subspan(8));
            need(pattern_ok(std::span(m).subspan(8)), "raw echo request payload differs");
            if (!tag) continue;
            const int ti = static_cast<int>(*tag >> 16);
            need(ti >= 0 && ti < static_cast<int>(kNumPingTuples), "raw request of no tuple");
            need(to == host_side(ping_tuples[ti].dst), "raw request to the wrong address");
            const std::uint16_t hid = get16(m, 4);
            host_ids[hid] = ti;
            host_requests[hid] = m;
        }
    }

    void check_state() {
        learn_sockets();
        check_sent();
        for (const DgramOut& o : net.take())
            on_datagram(o);
        if (strict) {
            need(net.incomplete_datagrams() == 0, "a datagram's fragments cut short");
            need(net.icmp->counters().drop_link_full.get() == 0, "ICMP reply lost to a full link");
        }
        const std::uint32_t uf = net.udp->flows();
        const std::uint32_t icf = net.icmp->flows();
        need(uf == net.table_entries(IpProto::udp), "UDP flows != UDP table entries");
        need(icf == net.table_entries(IpProto::icmp), "ICMP flows != ICMP table entries");
        need(net.table.size() == uf + icf, "table entries of no engine");
        need(net.socks.open_count(0) == uf, "UDP flows != open UDP sockets");
        const IcmpMode m = net.icmp->mode();
        need(net.socks.open_count(IPPROTO_ICMP) == (m == IcmpMode::ping ? icf : 0),
             "ICMP flows != open ping sockets");
        need(net.socks.open_count(IPPROTO_ICMP, true) == (m == IcmpMode::raw ? 1u : 0u),
             "raw socket count");
        need(m != IcmpMode::gateway || icf == 0, "ICMP flows in gateway mode");
        // Every live UDP flow's fd is open and watched under its id.
        std::uint32_t seen = 0;
        net.udp->for_each_flow(net.now, [&](const UdpFlowInfo& i) {
            ++seen;
            const FakeDgramSocket* s = net.socks.find(i.fd);
            need(s != nullptr && !s->closed, "a live flow's fd is not open");
            const FlowId id = net.table.find(i.key);
            need(id != kNoFlow && net.table.by_fd(i.fd) == id, "flow and table disagree");
            need(net.poller.id_of(i.fd) == std::optional<FlowId>(id), "a live fd not watched");
        });
        need(seen == uf, "for_each_flow != flows()");
        // Every open socket watched (under its flow, or kRawIcmpSocket), every closed one not.
        for (const auto& [fd, s] : net.socks.socks) {
            if (s.closed) {
                need(!net.poller.is_watched(fd), "a closed fd is still watched");
                continue;
            }
            const auto id = net.poller.id_of(fd);
            need(id.has_value(), "an open fd is not watched");
            if (s.raw) {
                need(*id == kRawIcmpSocket, "the raw socket watched under a flow id");
            } else {
                need(net.table.in_use(*id) && net.table.by_fd(fd) == *id,
                     "an fd watched under another flow's id");
            }
        }
        for (const auto& [fd, w] : net.poller.watched) {
            const FakeDgramSocket* s = net.socks.find(fd);
            need(s != nullptr && !s->closed, "a watched fd is not open");
        }
        // FlowLimits' per-guest counts follow the flows exactly.
        if (limits_on) {
            for (const Guest& g : kGuests) {
                std::uint32_t n = 0;
                for (FlowId id = 0; id < net.table.capacity(); ++id)
                    if (net.table.in_use(id) && net.table.key(id).guest_ip == g.ip) ++n;
                need(net.limits->flows_of(g.ip) == n, "FlowLimits count != the guest's flows",
                     std::to_string(net.limits->flows_of(g.ip)) + " vs " + std::to_string(n));
            }
        }
    }

    // ---- the script ----------------------------------------------------------------------------

    // An open socket of one kind, picked by `b` (-1: none).
    int pick_socket(std::uint8_t b, bool udp) {
        std::vector<int> v;
        for (const auto& [fd, info] : socks) {
            const FakeDgramSocket& s = net.socks.at(fd);
            if (!s.closed && info.udp == udp) v.push_back(fd);
        }
        return v.empty() ? -1 : v[b % v.size()];
    }
    std::size_t size_of(std::uint8_t kind, Reader& in) {
        switch (kind & 7) {
            case 0:
            case 1:
            case 2:
                return in.u8();
            case 3:
                return in.u16() % 1600;
            case 4:
                return 1440 + in.u8() % 64;  // around one frame
            case 5:
                return in.u16() % 9000;
            case 6:
                return in.u16() % 65508;
            default:
                return (in.u8() & 1) ? 65507 : 70000;  // the largest, and too large
        }
    }

    void guest_udp_burst(Reader& in) {
        const std::size_t k = 1 + in.u8() % 8;
        std::vector<PacketRef> frames;
        for (std::size_t i = 0; i < k; ++i) {
            const int ti = in.u8() % static_cast<int>(kNumUdpTuples);
            UdpTuple& t = udp_tuples[ti];
            std::size_t n = size_of(in.u8(), in);
            n = std::min<std::size_t>(n, 20000);  // guest datagrams come reassembled
            if (in.u8() % 16 == 0) t.gport = 0;   // a malformed port, once
            const std::uint32_t tag =
                static_cast<std::uint32_t>(ti) << 20 | (t.next_seq++ & 0xfffff);
            const Guest& g = kGuests[t.guest];
            PacketRef f = build_udp_frame(net.link.pool(), g.mac, Endpoint{g.ip, t.gport}, t.dst,
                                          pattern(tag, n), g.vlan);
            t.gport = kGuestPorts[(ti >> 1) & 1];
            if (f) frames.push_back(std::move(f));
        }
        net.burst(std::move(frames));
    }
    void guest_icmp(Reader& in) {
        const int ti = in.u8() % static_cast<int>(kNumPingTuples);
        PingTuple& t = ping_tuples[ti];
        const std::uint8_t kind = in.u8();
        const std::size_t n = (kind & 0x80) ? in.u16() % 4000 : in.u8();
        const std::uint32_t tag = static_cast<std::uint32_t>(ti) << 16 | t.next_seq;
        Bytes msg;
        switch (kind & 7) {
            case 0:
                msg = icmp_message(13, 0, 0, Bytes(12, 0));  // timestamp: unhandled
                break;
            case 1:
                msg = echo(0, t.id, t.next_seq, pattern(tag, n));  // a reply: unhandled
                break;
            case 2:
                msg = icmp_message(8, 1, wire::Icmpv4Repr::echo_rest(t.id, t.next_seq),
                                   pattern(tag, n));  // code 1: unhandled
                break;
            default:
                msg = echo(8, t.id, t.next_seq, pattern(tag, n));
                break;
        }
        ++t.next_seq;
        const Guest& g = kGuests[t.guest];
        PacketRef f = build_icmp_frame(net.link.pool(), g.mac, g.ip, t.dst, msg, g.vlan);
        if (f) net.send(std::move(f));
    }
    void host_udp(Reader& in) {
        const int fd = pick_socket(in.u8(), true);
        const std::uint8_t kind = in.u8();
        const std::size_t n = size_of(kind, in);
        if (fd < 0) return;
        SockInfo& info = socks[fd];
        const std::uint32_t tag = static_cast<std::uint32_t>(fd) << 16 | info.next_host++;
        net.socks.deliver(fd, pattern(tag, std::max<std::size_t>(n, 4)));
        if (kind & 0x80) net.pump();
    }
    SockError sock_error(Reader& in, const FakeDgramSocket& s,
                         std::span<const std::uint8_t> quoted) {
        static constexpr std::uint8_t kTypes[][2] = {{3, 3},  {3, 1},  {3, 0}, {3, 4},
                                                     {11, 0}, {12, 0}, {5, 1}, {3, 10}};
        const std::uint8_t b = in.u8();
        const auto* tc = kTypes[b & 7];
        const Ipv4Addr offenders[] = {s.remote_ip(), kRouter, Ipv4Addr{}, kLoopback};
        SockError e =
            icmp_error(ECONNREFUSED, tc[0], tc[1], offenders[(b >> 3) & 3], quoted, in.u16());
        e.from_icmp = (b & 0x20) == 0;
        return e;
    }
    void host_error(Reader& in, bool udp) {
        const int fd = pick_socket(in.u8(), udp);
        const std::uint8_t b = in.u8();
        if (fd < 0) return;
        const FakeDgramSocket& s = net.socks.at(fd);
        if (s.sent.empty()) return;  // the kernel quotes the datagram the error is about
        Bytes quoted = s.sent.back();
        if (!udp) put16(quoted, 4, s.local);  // the kernel's identifier
        const SockError e = sock_error(in, s, quoted);
        net.socks.push_error(fd, e, (b & 1) != 0);
        if (b & 2) net.pump();
    }
    void ping_reply(Reader& in) {
        const int fd = pick_socket(in.u8(), false);
        const std::uint8_t b = in.u8();
        const std::size_t n = (b & 0x80) ? in.u16() % 12000 : in.u8();
        if (fd < 0) return;
        SockInfo& info = socks[fd];
        const FakeDgramSocket& s = net.socks.at(fd);
        const std::uint32_t tag = static_cast<std::uint32_t>(fd) << 16 | info.next_host++;
        Bytes m = echo((b & 7) == 0 ? 8 : 0, s.local, 1, pattern(tag, std::max<std::size_t>(n, 4)));
        if ((b & 7) == 1) m.resize(5);  // shorter than a header
        net.socks.deliver(fd, m);
        if (b & 0x40) net.pump();
    }
    void raw_packet(Reader& in) {
        const int raw = net.socks.raw_fd();
        const std::uint8_t b = in.u8();
        const std::uint8_t pick = in.u8();
        const std::size_t n = (b & 0x80) ? in.u16() % 12000 : in.u8();
        if (raw < 0) return;
        std::optional<std::uint16_t> hid;
        if (!host_ids.empty()) {
            auto it = host_ids.begin();
            std::advance(it, pick % host_ids.size());
            hid = it->first;
        }
        const std::uint16_t id = hid ? *hid : in.u16();
        const int ti = hid ? host_ids[*hid] : 0;
        const Ipv4Addr right = host_side(ping_tuples[ti].dst);
        Bytes pkt;
        Ipv4Addr from = right;
        switch (b & 7) {
            case 0:
            case 1:
            case 2: {  // a reply, from the right source or (marked) from elsewhere
                const bool wrong = (b & 7) == 2;
                from = wrong ? kRouter : right;
                // Raw-reply tags: bit 31 set, bit 30 "must never arrive", a counter, the host id.
                const std::uint32_t tag = 0x80000000u | (wrong ? 0x40000000u : 0u) |
                                          std::uint32_t{raw_counter++ & 0x3fffu} << 16 | id;
                pkt = ipv4_packet(from, kHostIp, IpProto::icmp,
                                  echo(0, id, 1, pattern(tag, std::max<std::size_t>(n, 4))));
                break;
            }
            case 3:
            case 4: {  // an error quoting our request, whole or its first 8 bytes
                Bytes req = hid ? host_requests[*hid] : echo(8, id, 1, {});
                const std::uint16_t total = static_cast<std::uint16_t>(20 + req.size());
                if ((b & 7) == 4 && req.size() > 8) req.resize(8);
                const Bytes quote = ipv4_packet(kHostIp, right, IpProto::icmp, req, 1, 64, total);
                from = (b & 8) ? kRouter : right;
                pkt =
                    ipv4_packet(from, kHostIp, IpProto::icmp,
                                icmp_message((b & 16) ? 11 : 3, (b & 32) ? 4 : 3, in.u16(), quote));
                break;
            }
            case 5: {  // someone pings the host
                pkt = ipv4_packet(kRouter, kHostIp, IpProto::icmp, echo(8, id, 1, {}));
                break;
            }
            case 6: {  // a bad checksum
                Bytes m = echo(0, id, 1, Bytes(n, 0));
                m[2] ^= 0x40;
                pkt = ipv4_packet(right, kHostIp, IpProto::icmp, m);
                break;
            }
            default: {  // bytes
                pkt.resize(n);
                for (std::size_t i = 0; i < n; ++i)
                    pkt[i] = in.u8();
                break;
            }
        }
        net.socks.deliver(raw, std::move(pkt), from);
        if (b & 0x40) net.pump();
    }

    void step(Reader& in) {
        const std::uint8_t op = static_cast<std::uint8_t>(in.u8() % 20);
        if (trace) std::fprintf(stderr, "op %u\n", op);
        switch (op) {
            case 0:
            case 1:
            case 2:
                guest_udp_burst(in);
                break;
            case 3:
            case 4:
                guest_icmp(in);
                break;
            case 5:
            case 6:
                host_udp(in);
                break;
            case 7:
                host_error(in, true);
                break;
            case 8:
                ping_reply(in);
                break;
            case 9:
                host_error(in, false);
                break;
            case 10:
                raw_packet(in);
                break;
            case 11:
                net.pump();
                break;
            case 12: {  // time passes
                static constexpr std::uint32_t kSteps[] = {1, 10, 100, 500, 999, 1000, 5000, 30000};
                const std::uint8_t b = in.u8();
                net.tick(kSteps[b & 7] * (1u + (b >> 6)));
                break;
            }
            case 13: {  // link room
                const std::uint8_t r = in.u8();
                net.link.room_per_call = r >= 64 ? 4096 : r;
                net.pump();
                break;
            }
            case 14: {  // pool pressure
                const std::uint8_t b = in.u8();
                if ((b & 1) != 0 || held.size() > 4096) {
                    held.clear();
                } else {
                    const std::size_t k = std::size_t{b} * 4;
                    const std::size_t at = held.size();
                    held.resize(at + k);
                    const std::size_t got = pool().try_alloc_burst(
                        (b & 2) ? SizeClass::large : SizeClass::small, std::span(held).subspan(at));
                    held.resize(at + got);
                }
                net.pump();
                break;
            }
            case 15: {  // socket failures
                static constexpr int kErrs[] = {-ENETUNREACH, -EHOSTUNREACH, -EMFILE, -EACCES};
                const std::uint8_t b = in.u8();
                if (b & 4)
                    net.poller.refuse = (b & 8) != 0;
                else
                    net.socks.open_script.push_back(kErrs[b & 3]);
                break;
            }
            case 16: {  // send failures
                static constexpr int kRes[] = {-EAGAIN, -ECONNREFUSED, -ENOBUFS, -EPERM, 0, 1, 2,
                                               3};
                const std::uint8_t b = in.u8();
                const int fd = pick_socket(in.u8(), (b & 8) == 0);
                if (fd >= 0)
                    net.socks.script_send(fd, {kRes[b & 7]});
                else if (net.socks.raw_fd() >= 0)
                    net.socks.script_send(net.socks.raw_fd(), {kRes[b & 3]});
                break;
            }
            case 17: {  // a pending error with nothing queued
                const std::uint8_t b = in.u8();
                const int fd = pick_socket(in.u8(), (b & 1) == 0);
                if (fd >= 0) {
                    net.socks.at(fd).so_error = ECONNREFUSED;
                    net.socks.at(fd).wake |= sock_event::error;
                }
                break;
            }
            case 18: {  // caps, eviction
                const std::uint8_t b = in.u8();
                if (b & 1) net.link.caps.partial_csum = (b & 2) != 0;
                if (b & 4) (void)net.udp->evict_idle(net.now);
                if (b & 8) (void)net.icmp->evict_idle(net.now);
                break;
            }
            default: {  // shutdown of one engine (the gateway's stop), rarely
                const std::uint8_t b = in.u8();
                if (b == 0x5a) net.udp->reset_all();
                if (b == 0xa5) net.icmp->reset_all();
                break;
            }
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2 || size > 8192) return 0;
    Reader in(data, size);
    const std::uint8_t c0 = in.u8();
    const std::uint8_t c1 = in.u8();
    DgramNetOptions o;
    o.external_pool = &pool();
    o.reassembly_pool = &reasm_pool();
    o.reassembly_slots = 8;
    o.table = FlowTableConfig{.capacity = (c1 & 1) ? 3u : 16u, .max_fd = 8192, .cache_slots = 4};
    static constexpr IcmpMode kModes[] = {IcmpMode::ping, IcmpMode::raw, IcmpMode::raw,
                                          IcmpMode::gateway};
    o.icmp.mode = kModes[c0 & 3];
    if ((c0 & 3) == 2) o.raw_open_result = -EPERM;  // raw wanted, not allowed: gateway
    o.udp.mtu = o.icmp.mtu = kMtus[(c0 >> 2) & 3];
    o.udp.timeout = std::chrono::milliseconds(20000);
    o.udp.short_timeout = std::chrono::milliseconds(5000);
    o.icmp.timeout = std::chrono::milliseconds(10000);
    o.udp.slice = o.icmp.slice = (c1 & 0x10) ? 4 : 64;
    const bool limits = (c1 & 6) != 0;
    if (limits) {
        LimitsConfig lc;
        if (c1 & 2) lc.max_flows_per_guest = 2;
        if (c1 & 4) {
            lc.new_flows_per_sec = 5;
            lc.new_flows_burst = 3;
        }
        o.limits = lc;
    }
    const bool policy = (c1 & 8) != 0;
    if (policy) {
        std::string err;
        o.policy =
            std::vector<PolicyRule>{*PolicyRule::parse("198.51.100.0/24", PolicyAction::deny, err)};
        o.alias_ports = *PortSet::parse("22,53", err);
    }
    const char* strict = std::getenv("FUZZ_DGRAM_STRICT");
    {
        Harness h(o, policy, limits, strict == nullptr || strict[0] != '0');
        h.net.link.caps.partial_csum = (c0 & 0x10) != 0;
        const char* verbose = std::getenv("FUZZ_DGRAM_ENGINE_VERBOSE");
        h.trace = verbose != nullptr && verbose[0] == '2';
        for (int steps = 0; steps < 300 && !in.empty(); ++steps) {
            h.step(in);
            h.check_state();
        }
        if (verbose != nullptr) {  // what a seed reaches
            const auto show = [](const char* name, const Counter& v) {
                if (v.get() != 0)
                    std::fprintf(stderr, "%s=%llu\n", name,
                                 static_cast<unsigned long long>(v.get()));
            };
            h.net.udp->counters().for_each(show);
            h.net.icmp->counters().for_each(show);
            if (h.net.limits) h.net.limits->counters().for_each(show);
        }
        h.held.clear();
        h.net.poller.refuse = false;
        h.net.udp->reset_all();
        h.net.icmp->reset_all();
        h.net.pump();
        h.check_state();
        need(h.net.udp->flows() == 0 && h.net.icmp->flows() == 0, "flows left after reset_all");
        need(h.net.table.size() == 0, "table entries left after reset_all");
        h.net.destroy_engines();
        need(h.net.socks.all_closed(), "a socket not closed exactly once");
        need(h.net.poller.watched.empty(), "an fd still watched after shutdown");
        h.net.link.on_dispatch = nullptr;
    }
    slipway::fuzz::check(slipway::fuzz::all_returned(pool()));
    slipway::fuzz::check(slipway::fuzz::all_returned(reasm_pool()));
    return 0;
}
