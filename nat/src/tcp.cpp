// TcpEngine: guest TCP flows onto host stream sockets (theory of operation: tcp.hpp; TCP.md).
#include "slipway/nat/tcp.hpp"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "slipway/core/checksum.hpp"
#include "slipway/core/open_addressing.hpp"
#include "slipway/core/virtio/net_hdr.hpp"
#include "slipway/core/wire/icmpv4.hpp"

namespace slipway::nat {

namespace {

constexpr std::uint32_t kRtoMinMs = 200;  // TCP.md §5: start ~200 ms
constexpr std::uint32_t kRtoMaxMs = 60000;
constexpr std::uint32_t kProbeMaxMs = 30000;
constexpr std::size_t kMaxGather = 64;      // payloads written with one sendmsg()
constexpr std::size_t kMaxPeekFrames = 32;  // frames filled by one peek
constexpr std::size_t kAckList = 256;       // flows with an ACK due at end_burst()
constexpr std::size_t kLinkReserve = 8;     // ring slots kept for ACKs and control frames
constexpr std::uint16_t kDefaultMss = 536;  // RFC 9293 §3.7.1: no MSS option
constexpr std::uint32_t kSynRtoMs = 1000;   // RFC 6298 §2.1: the initial RTO of our own SYN
constexpr std::uint8_t kSynRetries = 6;     // 1+2+4+8+16+32 s, like Linux's tcp_syn_retries
constexpr std::size_t kIpHdr = wire::kIpv4MinHeaderLen;
constexpr std::size_t kTcpHdr = wire::kTcpMinHeaderLen;

std::size_t l2_len(bool vlan) noexcept {
    return vlan ? wire::kEthernetMaxHeaderLen : wire::kEthernetHeaderLen;
}

}  // namespace

struct TcpEngine::Impl {
    struct Flow {
        int fd = -1;
        TcpState state = TcpState::free;
        bool syn_acked = false;  // the guest acknowledged our SYN-ACK
        bool guest_fin = false;  // guest FIN taken: SHUT_WR done, rcv_nxt counts it
        bool sock_eof = false;   // the socket's stream ended
        bool fin_sent = false;   // our FIN is in [snd_una, snd_nxt)
        bool fin_acked = false;  // the guest acknowledged our FIN
        bool ack_due = false;    // in the ACK list of this burst
        bool pending = false;    // in the pending list (more to send than the slice allowed)
        bool in_timers = false;  // in the timer list
        bool wnd_watch = false;  // a small window was advertised: watching for send space
        bool rtt_on = false;     // timing the segment that ends at rtt_seq
        bool ws_ok = false;      // window scaling agreed (both SYNs carried the option)
        // The last peek found nothing more: no need to peek again before the next readable edge
        // (unless the peer's FIN came, which without SO_PEEK_OFF shows only at offset 0).
        bool drained = false;
        bool peer_fin = false;  // the socket reported the peer's FIN (EPOLLRDHUP)
        // An ACK is owed but held back for the next tick, in the hope that a reply carries it.
        bool delack = false;
        bool inbound = false;  // opened by a port forward: we sent the SYN
        std::uint8_t dupacks = 0;
        std::uint8_t backoff = 0;
        std::uint8_t snd_wscale = 0;      // the guest's shift
        std::uint8_t rcv_wscale = 0;      // ours
        std::uint16_t mss = kDefaultMss;  // payload per frame to the guest
        std::uint16_t in_port = 0;
        std::uint32_t interest = 0;
        MacAddr guest_mac;
        std::optional<wire::VlanTag> vlan;
        TcpSeq guest_isn, rcv_nxt;
        TcpSeq snd_isn, snd_una, snd_nxt;
        TcpSeq snd_max;  // highest snd_nxt so far (a go-back rewinds snd_nxt, not this)
        TcpSeq rcv_adv;  // the right edge of the furthest window advertised to the guest
        TcpSeq fin_seq;  // where our FIN went, once fin_ever
        bool fin_ever = false;
        TcpSeq recover;           // fast retransmit: no second one until snd_una passes this
        TcpSeq snd_wl1, snd_wl2;  // seq and ack of the segment that last set snd_wnd
        TcpSeq rtt_seq;
        std::uint32_t snd_wnd = 0;  // the guest's window, in bytes
        std::uint32_t rcv_wnd = 0;  // the window last advertised to the guest
        std::uint32_t srtt_us = 0, rttvar_us = 0;
        std::uint32_t rto_ms = kRtoMinMs;
        std::uint64_t rtt_start_ms = 0;
        std::uint64_t rtx_at = 0;    // retransmission / probe / SYN-ACK timer (0: off)
        std::uint64_t since_ms = 0;  // when the flow entered its state (connect, FIN timeouts)
        std::uint64_t last_ms = 0;   // last activity either way (idle timeout)
        std::uint32_t tag = 0;       // inbound: the port forward's id

        // Data bytes sent to the guest and not yet acknowledged (the peek offset).
        [[nodiscard]] std::uint32_t unacked() const noexcept {
            std::uint32_t n = snd_nxt - snd_una;
            if (!syn_acked && n != 0) --n;  // our SYN
            if (fin_sent && !fin_acked && n != 0) --n;
            return n;
        }
    };

    TcpConfig cfg;
    FlowTable& table;
    HostSockets& socks;
    Poller& poller;
    GuestLink& link;
    TcpCounters c;
    std::vector<Flow> flows;
    std::array<std::uint32_t, 5> state_count{};
    std::vector<FlowId> pending;  // FIFO of flows cut short (served from pending_head)
    std::size_t pending_head = 0;
    std::vector<FlowId> timers;  // flows with a timer armed (swept by on_tick)
    std::vector<FlowId> ack_list;
    std::uint64_t now = 0;
    std::uint64_t last_sweep = 0;
    std::uint16_t ip_id = 1;
    // The key of inbound_isn()'s hash: random per engine.
    std::uint64_t isn_secret = std::uint64_t{::arc4random()} << 32 | ::arc4random();
    // Per-guest admission (shared with the datagram engines, or our own for a lone engine).
    std::unique_ptr<FlowLimits> own_limits;
    FlowLimits& limits;

    // The burst's gather: payloads of one flow that continue each other.
    FlowId g_flow = kNoFlow;
    std::array<iovec, kMaxGather> g_iov{};
    std::size_t g_n = 0;
    std::size_t g_len = 0;
    bool g_fin = false;

    Impl(const TcpConfig& config, FlowTable& t, HostSockets& s, Poller& p, GuestLink& l)
        : cfg(config),
          table(t),
          socks(s),
          poller(p),
          link(l),
          flows(t.capacity()),
          own_limits(config.limits ? nullptr
                                   : std::make_unique<FlowLimits>(LimitsConfig{
                                         .max_flows_per_guest = config.max_flows_per_guest})),
          limits(config.limits ? *config.limits : *own_limits) {
        pending.reserve(t.capacity());
        timers.reserve(t.capacity());
        ack_list.reserve(kAckList);
        cfg.rcv_wscale = std::min<std::uint8_t>(cfg.rcv_wscale, wire::kTcpMaxWindowScale);
    }

    // ---- bookkeeping --------------------------------------------------------------------

    void set_state(Flow& f, TcpState s) noexcept {
        if (f.state != TcpState::free) --state_count[static_cast<std::size_t>(f.state)];
        if (s != TcpState::free) ++state_count[static_cast<std::size_t>(s)];
        f.state = s;
        f.since_ms = now;
    }

    // Whether a guest may reach `dst`:`port` through a host socket.
    [[nodiscard]] bool translatable(Ipv4Addr dst, std::uint16_t port) const noexcept {
        if (cfg.dns_addr && dst == *cfg.dns_addr && port == 53) return bool(cfg.open_dns_stream);
        if (dst == cfg.gateway)
            return cfg.open_gateway_stream && cfg.serves_gateway_port &&
                   cfg.serves_gateway_port(port);
        if (cfg.host_alias && dst == *cfg.host_alias) return true;
        if (dst == cfg.gateway || (cfg.dns_addr && dst == *cfg.dns_addr)) return false;
        if (dst.is_unspecified() || dst.is_broadcast() || dst.is_multicast() || dst.is_loopback())
            return false;
        return !dst.in_prefix(cfg.subnet, cfg.prefix_len);
    }

    void arm_timers(FlowId id, Flow& f) noexcept {
        if (f.in_timers) return;
        f.in_timers = true;
        timers.push_back(id);
    }

    void set_rtx(FlowId id, Flow& f) noexcept {
        f.rtx_at = now + (std::uint64_t{f.rto_ms} << std::min<std::uint8_t>(f.backoff, 8));
        arm_timers(id, f);
    }

    void make_pending(FlowId id, Flow& f) noexcept {
        if (f.pending) return;
        f.pending = true;
        pending.push_back(id);
    }

    void set_interest(Flow& f, FlowId id, std::uint32_t interest) noexcept {
        f.interest = interest;
        poller.rewatch(f.fd, id, interest);
    }

    // A flow back to its initial state, except its membership bits: the pending, timer and ACK
    // lists hold ids lazily, and an entry left there by a freed flow serves the id's next flow,
    // which therefore must not be entered a second time.
    static void clear(Flow& f) noexcept {
        const bool pend = f.pending, tim = f.in_timers, ack = f.ack_due;
        f = Flow{};
        f.pending = pend;
        f.in_timers = tim;
        f.ack_due = ack;
    }

    // Forgets what the burst gathered (views into guest frames, not yet written).
    void drop_gather() noexcept {
        g_flow = kNoFlow;
        g_n = g_len = 0;
        g_fin = false;
    }

    void free_flow(FlowId id, Flow& f, bool reset_socket) noexcept {
        if (f.fd >= 0) {
            poller.unwatch(f.fd);
            socks.close(f.fd, reset_socket);
        }
        // Inbound flows (port forwards) are the host's doing: they do not count against the
        // guest's own caps.
        if (!f.inbound) limits.closed(table.key(id).guest_ip, f.state == TcpState::connecting);
        if (g_flow == id) drop_gather();
        set_state(f, TcpState::free);
        clear(f);
        table.erase(id);
    }

    // ---- frames -------------------------------------------------------------------------

    struct Dest {
        MacAddr mac;
        std::optional<wire::VlanTag> vlan;
        std::uint16_t port_id = 0;
        Ipv4Addr src, dst;  // src: the remote as the guest sees it
        std::uint16_t sport = 0, dport = 0;
    };

    Dest dest_of(FlowId id, const Flow& f) const noexcept {
        const FlowKey& k = table.key(id);
        return {f.guest_mac, f.vlan,        f.in_port,   k.remote_ip,
                k.guest_ip,  k.remote_port, k.guest_port};
    }

    // Ethernet and IPv4 headers (no options, DF as Linux sets it) for an L4 message of `l4_len`.
    bool emit_l2_l3(MutByteView out, MacAddr dst_mac, std::optional<wire::VlanTag> vlan,
                    Ipv4Addr src, Ipv4Addr dst, IpProto proto, std::size_t l4_len) noexcept {
        const wire::EthernetRepr eth{
            .dst = dst_mac, .src = cfg.gateway_mac, .vlan = vlan, .ethertype = EtherType::ipv4};
        wire::Ipv4Repr ip;
        ip.src = src;
        ip.dst = dst;
        ip.protocol = proto;
        ip.ttl = 64;
        ip.ident = ip_id++;
        ip.dont_fragment = true;
        ip.payload_len = static_cast<std::uint16_t>(l4_len);
        return eth.emit(out) && ip.emit(out.subspan(l2_len(vlan.has_value())));
    }

    // Writes Ethernet, IPv4 and TCP headers in front of the `payload_len` bytes already at
    // l2 + 20 + tcp.header_len() in `r`, sets the length, checksum and offload fields.
    bool emit_headers(PacketRef& r, const Dest& d, const wire::TcpRepr& tcp,
                      std::size_t payload_len, std::uint16_t gso_mss,
                      const PortCaps& caps) noexcept {
        const std::size_t l2 = l2_len(d.vlan.has_value());
        const std::size_t th = tcp.header_len();
        const std::size_t l4_len = th + payload_len;
        if (kIpHdr + l4_len > 65535) return false;
        const MutByteView out = r.room();
        if (l2 + kIpHdr + l4_len > out.size()) return false;
        if (!emit_l2_l3(out, d.mac, d.vlan, d.src, d.dst, IpProto::tcp, l4_len) ||
            !tcp.emit(out.subspan(l2 + kIpHdr)))
            return false;
        if (!r.set_len(l2 + kIpHdr + l4_len)) return false;
        std::byte* t = out.data() + l2 + kIpHdr;
        const std::uint32_t pseudo =
            pseudo_header_sum_v4(d.src, d.dst, IpProto::tcp, static_cast<std::uint16_t>(l4_len));
        virtio::NetHdr& vh = r.meta().vnet;
        vh = virtio::NetHdr{};
        const bool gso = gso_mss != 0 && payload_len > gso_mss;
        if (gso || caps.partial_csum) {
            // virtio 1.2 §5.1.6.2: the field carries the pseudo-header sum; the receiver (or the
            // switch, for a port that cannot take it) sums the rest.
            store_be16(t + 16, csum_fold(pseudo));
            vh.flags = virtio::kNetHdrFNeedsCsum;
            vh.csum_start = static_cast<std::uint16_t>(l2 + kIpHdr);
            vh.csum_offset = 16;
            if (gso) {
                vh.gso_type = virtio::kGsoTcpV4;
                vh.gso_size = gso_mss;
                vh.hdr_len = static_cast<std::uint16_t>(l2 + kIpHdr + th);
            }
        } else {
            store_be16(t + 16, 0);
            store_be16(t + 16, csum_finish(csum_partial(ByteView{t, l4_len}, pseudo)));
        }
        return true;
    }

    bool send_frame(PacketRef& r) noexcept {
        if (!link.push(r)) {
            c.drop_link_full.inc();
            return false;
        }
        return true;
    }

    // A header-only segment (control or bare ACK).
    bool send_control(const Dest& d, TcpSeq seq, TcpSeq ack, std::uint8_t flags,
                      std::uint16_t window, const wire::TcpOptions* opts = nullptr) noexcept {
        wire::TcpRepr t;
        t.src_port = L4Port{d.sport};
        t.dst_port = L4Port{d.dport};
        t.seq = seq;
        t.ack = ack;
        t.flags = flags;
        t.window = window;
        if (opts) t.options = *opts;
        const std::size_t len = l2_len(d.vlan.has_value()) + kIpHdr + t.header_len();
        auto r = link.pool().try_alloc(len);
        if (!r) {
            c.drop_no_buffer.inc();
            return false;
        }
        const PortCaps caps = link.caps_of(d.port_id);
        if (!emit_headers(*r, d, t, 0, 0, caps)) return false;
        return send_frame(*r);
    }

    // The window to advertise: the socket's free send space (TCP.md §4), scaled.
    std::uint16_t window_field(Flow& f) noexcept {
        std::size_t space = f.guest_fin || f.fd < 0 ? 0 : socks.send_space(f.fd);
        const std::size_t max = std::size_t{65535} << f.rcv_wscale;
        space = std::min(space, max);
        f.rcv_wnd = static_cast<std::uint32_t>(space);
        if (f.rcv_adv < f.rcv_nxt + f.rcv_wnd) f.rcv_adv = f.rcv_nxt + f.rcv_wnd;
        return static_cast<std::uint16_t>(space >> f.rcv_wscale);
    }

    void send_ack(FlowId id, Flow& f) noexcept {
        f.delack = false;
        const std::uint16_t w = window_field(f);
        if (send_control(dest_of(id, f), f.snd_nxt, f.rcv_nxt, wire::tcp_flag::ack, w))
            c.acks_sent.inc();
        watch_window(id, f);
    }

    // A small window was advertised: ask for writability, so space returning becomes a window
    // update at once rather than at the guest's next probe. Sockets are watched for output from
    // the start, edge-triggered; re-arming makes the kernel's poll note that someone waits for
    // space (SOCK_NOSPACE), without which no edge would come when the queue drains.
    void watch_window(FlowId id, Flow& f) noexcept {
        const bool small = !f.guest_fin && f.rcv_wnd < 4u * f.mss;
        if (small == f.wnd_watch) return;
        f.wnd_watch = small;
        if (!small) return;
        arm_timers(id, f);
        set_interest(f, id, f.interest | sock_event::out);
    }

    void queue_ack(FlowId id, Flow& f) noexcept {
        if (f.ack_due) return;
        if (ack_list.size() == kAckList) {
            send_ack(id, f);  // list full: this one goes now
            return;
        }
        f.ack_due = true;
        ack_list.push_back(id);
    }

    void send_rst_to_guest(FlowId id, Flow& f) noexcept {
        (void)send_control(dest_of(id, f), f.snd_nxt, f.rcv_nxt,
                           wire::tcp_flag::rst | wire::tcp_flag::ack, 0);
    }

    // RFC 9293 §3.10.7.1: the reset for a segment that belongs to no connection.
    void send_rst_for(const TcpSegmentIn& s) noexcept {
        const wire::TcpView& t = s.tcp;
        Dest d{s.guest_mac, s.vlan,         s.in_port,     s.ip.dst(),
               s.ip.src(),  t.dst_port().v, t.src_port().v};
        if (t.is_ack()) {
            (void)send_control(d, t.ack(), TcpSeq{0}, wire::tcp_flag::rst, 0);
        } else {
            const auto len = static_cast<std::uint32_t>(t.payload().size()) +
                             (t.is_syn() ? 1u : 0u) + (t.is_fin() ? 1u : 0u);
            (void)send_control(d, TcpSeq{0}, t.seq() + len,
                               wire::tcp_flag::rst | wire::tcp_flag::ack, 0);
        }
    }

    // RFC 792 destination unreachable quoting the guest's SYN (IP header + first 8 bytes of TCP,
    // enough for the guest to match it to its connection: RFC 1122 §3.2.2.1).
    void send_unreachable(FlowId id, const Flow& f, std::uint8_t code) noexcept {
        const FlowKey& k = table.key(id);
        std::array<std::byte, kIpHdr + 8> quote{};
        wire::Ipv4Repr q;
        q.src = k.guest_ip;
        q.dst = k.remote_ip;
        q.protocol = IpProto::tcp;
        q.ttl = 64;
        q.dont_fragment = true;
        q.payload_len = static_cast<std::uint16_t>(kTcpHdr);
        if (!q.emit(quote)) return;
        store_be16(quote.data() + kIpHdr, k.guest_port);
        store_be16(quote.data() + kIpHdr + 2, k.remote_port);
        store_be32(quote.data() + kIpHdr + 4, f.guest_isn.v);
        const wire::Icmpv4Repr icmp{.type = wire::Icmpv4Type::dest_unreachable,
                                    .code = code,
                                    .rest_of_header = 0,
                                    .payload = ByteView{quote}};
        const std::size_t l2 = l2_len(f.vlan.has_value());
        auto r = link.pool().try_alloc(l2 + kIpHdr + icmp.buffer_len());
        if (!r) {
            c.drop_no_buffer.inc();
            return;
        }
        const MutByteView out = r->data();
        if (!emit_l2_l3(out, f.guest_mac, f.vlan, cfg.gateway, k.guest_ip, IpProto::icmp,
                        icmp.buffer_len()) ||
            !icmp.emit(out.subspan(l2 + kIpHdr)))
            return;
        r->meta().vnet = virtio::NetHdr{};
        (void)send_frame(*r);
    }

    void send_synack(FlowId id, Flow& f) noexcept {
        wire::TcpOptions o;
        o.mss = static_cast<std::uint16_t>(std::min<std::uint32_t>(cfg.mtu, 65535) - 40);
        if (f.ws_ok) o.window_scale = f.rcv_wscale;
        // RFC 7323 §2.2: the window of a SYN segment is never scaled.
        const std::size_t space = f.fd < 0 ? 0 : socks.send_space(f.fd);
        f.rcv_wnd = static_cast<std::uint32_t>(std::min<std::size_t>(space, 65535));
        f.rcv_adv = f.rcv_nxt + f.rcv_wnd;
        (void)send_control(dest_of(id, f), f.snd_isn, f.rcv_nxt,
                           wire::tcp_flag::syn | wire::tcp_flag::ack,
                           static_cast<std::uint16_t>(f.rcv_wnd), &o);
        set_rtx(id, f);
    }

    // ---- opening ------------------------------------------------------------------------

    // What the guest's SYN (outbound) or SYN-ACK (inbound) says: its ISN, MSS (clamped to what
    // our MTU allows), window scale and first window.
    void take_guest_syn(Flow& f, const wire::TcpView& t) noexcept {
        f.guest_isn = t.seq();
        f.rcv_nxt = t.seq() + 1;
        const wire::TcpOptions o = t.parse_options();
        const std::uint32_t mtu_mss = std::min<std::uint32_t>(cfg.mtu, 65535) - 40;
        f.mss = static_cast<std::uint16_t>(
            std::clamp<std::uint32_t>(o.mss.value_or(kDefaultMss), 64, mtu_mss));
        // RFC 7323 §2.2: scaling applies only when both SYNs carry the option.
        f.ws_ok = o.window_scale.has_value();
        f.snd_wscale = f.ws_ok ? *o.window_scale : 0;
        f.rcv_wscale = f.ws_ok ? cfg.rcv_wscale : 0;
        f.snd_wnd = t.window();  // RFC 7323 §2.2: the window of a SYN is never scaled
        f.snd_wl1 = t.seq();
    }

    void open_flow(const TcpSegmentIn& s, const FlowKey& key) noexcept {
        const wire::TcpView& t = s.tcp;
        if (!translatable(key.remote_ip, key.remote_port) || key.remote_port == 0 ||
            key.guest_port == 0) {
            c.denied.inc();
            send_rst_for(s);
            return;
        }
        // The gateway's own services (DNS, the guest API) are not egress: the policy governs
        // what leaves.
        const bool own_dns =
            (cfg.dns_addr && key.remote_ip == *cfg.dns_addr && key.remote_port == 53) ||
            key.remote_ip == cfg.gateway;
        if (cfg.policy && !own_dns && !cfg.policy->permits(key, cfg.host_alias)) {
            c.denied_policy.inc();
            send_rst_for(s);
            return;
        }
        switch (limits.admit(key.guest_ip, true, now)) {
            case Admit::ok:
                break;
            case Admit::guest_cap:
                c.limit_guest.inc();
                send_rst_for(s);
                return;
            case Admit::half_open:
            case Admit::rate:
                return;  // dropped: the guest retransmits the SYN (counted by FlowLimits)
        }
        auto ins = limits.insert(table, key, now);
        if (!ins) {
            c.limit_global.inc();
            send_rst_for(s);
            return;
        }
        const FlowId id = *ins;
        Flow& f = flows[id];
        clear(f);
        set_state(f, TcpState::connecting);
        limits.opened(key.guest_ip, true);
        f.guest_mac = s.guest_mac;
        f.vlan = s.vlan;
        f.in_port = s.in_port;
        take_guest_syn(f, t);
        // RFC 9293 §3.4.1: unpredictable (a test may fix it, so crash inputs replay).
        f.snd_isn = TcpSeq{cfg.isn ? cfg.isn() : ::arc4random()};
        f.snd_una = f.snd_nxt = f.recover = f.snd_wl2 = f.snd_isn;
        f.last_ms = now;
        c.syn_received.inc();

        int fd = -1;
        if (cfg.dns_addr && key.remote_ip == *cfg.dns_addr && key.remote_port == 53) {
            fd = cfg.open_dns_stream ? cfg.open_dns_stream() : -EOPNOTSUPP;
            if (fd >= 0) socks.adopt(fd);
        } else if (key.remote_ip == cfg.gateway) {
            fd = cfg.open_gateway_stream ? cfg.open_gateway_stream(key.remote_port, key.guest_ip)
                                         : -ECONNREFUSED;
            if (fd >= 0) socks.adopt(fd);
        } else {
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(key.remote_port);
            const Ipv4Addr to = (cfg.host_alias && key.remote_ip == *cfg.host_alias)
                                    ? Ipv4Addr::from_octets(127, 0, 0, 1)
                                    : key.remote_ip;
            sa.sin_addr.s_addr = htonl(to.v);
            fd = socks.open_connect(reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
        }
        if (fd < 0) {
            fail_connect(id, f, -fd);
            return;
        }
        f.fd = fd;
        if (!table.bind_fd(id, fd) || !poller.watch(fd, id, sock_event::in | sock_event::out)) {
            fail_connect(id, f, EMFILE);
            return;
        }
        f.interest = sock_event::in | sock_event::out;
        arm_timers(id, f);
    }

    // TCP.md §3: refused -> RST; unreachable -> ICMP; anything else -> RST.
    void fail_connect(FlowId id, Flow& f, int err) noexcept {
        if (err == ENETUNREACH || err == EHOSTUNREACH) {
            c.connect_unreachable.inc();
            send_unreachable(id, f, err == ENETUNREACH ? 0 : 1);
        } else {
            if (err == ECONNREFUSED)
                c.connect_refused.inc();
            else if (err == ETIMEDOUT)
                c.connect_timeout.inc();
            else
                c.connect_failed.inc();
            (void)send_control(dest_of(id, f), TcpSeq{0}, f.rcv_nxt,
                               wire::tcp_flag::rst | wire::tcp_flag::ack, 0);
        }
        free_flow(id, f, false);
    }

    void connected(FlowId id, Flow& f) noexcept {
        set_state(f, TcpState::established);
        limits.connected(table.key(id).guest_ip);
        c.established.inc();
        f.snd_nxt = f.snd_max = f.snd_isn + 1;
        send_synack(id, f);
    }

    // ---- inbound (port forwards, TCP.md §3) ----------------------------------------------

    // RFC 6528's ISN: a keyed hash of the connection's addresses and ports plus a clock (64 ns
    // ticks, as Linux does). Here it matters beyond unpredictability: port-forward clients reuse
    // their ports, and the guest, which closed the last connection of that 4-tuple first, may
    // still hold it in TIME_WAIT. Linux accepts a SYN in TIME_WAIT only when its sequence number
    // is after the old connection's end (RFC 9293 §3.6.1; our SYN has no timestamps); a random
    // ISN is behind half the time, and the guest then answers with an ACK of the old connection
    // instead of a SYN-ACK, which costs the client a SYN retransmission (1 s) at best. A clock
    // ISN for the same 4-tuple grows faster than any one connection's bytes can.
    [[nodiscard]] std::uint32_t inbound_isn(const FlowKey& k) const noexcept {
        const std::uint64_t tuple =
            (std::uint64_t{k.guest_ip.v} << 32 | k.remote_ip.v) ^
            (std::uint64_t{k.guest_port} << 16 | k.remote_port) * 0x9e3779b97f4a7c15ULL;
        const auto ns =
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::steady_clock::now().time_since_epoch())
                                           .count());
        return static_cast<std::uint32_t>(mix64(tuple ^ isn_secret)) +
               static_cast<std::uint32_t>(ns >> 6);
    }

    // Our SYN to the guest, from the client's side, with our MSS and window scale.
    void send_syn(FlowId id, Flow& f) noexcept {
        wire::TcpOptions o;
        o.mss = static_cast<std::uint16_t>(std::min<std::uint32_t>(cfg.mtu, 65535) - 40);
        o.window_scale = cfg.rcv_wscale;
        // RFC 7323 §2.2: the window of a SYN segment is never scaled.
        const std::size_t space = f.fd < 0 ? 0 : socks.send_space(f.fd);
        f.rcv_wnd = static_cast<std::uint32_t>(std::min<std::size_t>(space, 65535));
        (void)send_control(dest_of(id, f), f.snd_isn, TcpSeq{0}, wire::tcp_flag::syn,
                           static_cast<std::uint16_t>(f.rcv_wnd), &o);
        set_rtx(id, f);
    }

    FlowId open_inbound(const TcpInbound& in) noexcept {
        socks.adopt(in.fd);
        const auto refuse = [&] {
            c.inbound_failed.inc();
            socks.close(in.fd, true);
            if (cfg.on_inbound_refused) cfg.on_inbound_refused(in.tag);
            return kNoFlow;
        };
        if (table.find(in.key) != kNoFlow) return refuse();
        auto ins = limits.insert(table, in.key, now);
        if (!ins) return refuse();
        const FlowId id = *ins;
        Flow& f = flows[id];
        clear(f);
        set_state(f, TcpState::syn_sent);
        f.inbound = true;
        f.tag = in.tag;
        f.guest_mac = in.guest_mac;
        f.vlan = in.vlan;
        f.in_port = in.in_port;
        f.rcv_wscale = cfg.rcv_wscale;
        f.snd_isn = TcpSeq{cfg.isn ? cfg.isn() : inbound_isn(in.key)};
        f.snd_una = f.recover = f.snd_wl2 = f.snd_isn;
        f.snd_nxt = f.snd_max = f.snd_isn + 1;
        f.rto_ms = kSynRtoMs;
        f.last_ms = now;
        f.fd = in.fd;
        if (!table.bind_fd(id, in.fd) ||
            !poller.watch(in.fd, id, sock_event::in | sock_event::out)) {
            c.inbound_failed.inc();
            if (cfg.on_inbound_refused) cfg.on_inbound_refused(in.tag);
            free_flow(id, f, true);
            return kNoFlow;
        }
        f.interest = sock_event::in | sock_event::out;
        c.inbound_opened.inc();
        send_syn(id, f);
        return id;
    }

    // RFC 9293 §3.10.7.3 (SYN-SENT): the guest's SYN-ACK acknowledging our SYN.
    void establish_inbound(FlowId id, Flow& f, const wire::TcpView& t) noexcept {
        take_guest_syn(f, t);
        f.snd_wl2 = t.ack();
        f.rcv_adv = f.rcv_nxt;  // send_ack() below advertises the first window and moves it
        f.snd_una = t.ack();
        f.syn_acked = true;
        if (f.backoff == 0) rtt_sample(f, static_cast<std::uint32_t>((now - f.since_ms) * 1000));
        f.rtx_at = 0;
        f.backoff = 0;
        f.rto_ms = std::max(f.rto_ms, kRtoMinMs);
        set_state(f, TcpState::established);
        c.inbound_established.inc();
        send_ack(id, f);  // the handshake's third segment
        // The client may have written before the guest answered: its bytes wait in the socket,
        // whose readable edge came and went meanwhile.
        f.drained = false;
        try_send(id, f, cfg.slice_frames);
    }

    // The guest refused (RST) or never answered: the client gets a reset.
    void fail_inbound(FlowId id, Flow& f, bool timed_out) noexcept {
        if (timed_out) {
            c.inbound_timeout.inc();
            // Whatever half-open state the guest keeps for our SYN goes too.
            (void)send_control(dest_of(id, f), f.snd_nxt, TcpSeq{0}, wire::tcp_flag::rst, 0);
        } else {
            c.inbound_refused.inc();
        }
        if (cfg.on_inbound_refused) cfg.on_inbound_refused(f.tag);
        free_flow(id, f, true);
    }

    // ---- guest -> host --------------------------------------------------------------------

    void flush_gather() noexcept {
        if (g_flow == kNoFlow) return;
        const FlowId id = g_flow;
        Flow& f = flows[id];
        const std::size_t len = g_len;
        const bool fin = g_fin;
        const std::size_t n_iov = g_n;  // g_iov itself stays valid until the next gather
        drop_gather();
        std::size_t took = 0;
        if (len != 0) {
            const ssize_t n = socks.write(f.fd, std::span<const iovec>(g_iov.data(), n_iov));
            if (n < 0) {
                host_error(id, f);
                return;
            }
            took = static_cast<std::size_t>(n);
            f.rcv_nxt += static_cast<std::uint32_t>(took);
            c.bytes_to_host.add(took);
            if (took < len) c.short_writes.inc();
        }
        // TCP.md §6: the FIN is taken once everything before it was written.
        if (fin && took == len && !f.guest_fin) {
            socks.shutdown_write(f.fd);
            f.guest_fin = true;
            f.rcv_nxt += 1;
            enter_closing(f);
            if (f.fin_acked) {
                // Our FIN was acknowledged before: this ACK of theirs is the last segment.
                send_ack(id, f);
                c.closed.inc();
                free_flow(id, f, false);
                return;
            }
        }
        // A small request on a flow that has answered before (request/response traffic, like
        // Linux's "pingpong" mode): its ACK waits for the reply, which usually comes within the
        // loop turn and carries it, or for the next tick (10 ms). Full segments, short writes,
        // FINs and a flow's first exchange are acknowledged at once.
        if (!fin && took == len && len != 0 && len < f.mss && f.snd_max - f.snd_isn > 1 &&
            !f.ack_due) {
            f.delack = true;
            arm_timers(id, f);
            return;
        }
        queue_ack(id, f);
    }

    void host_error(FlowId id, Flow& f) noexcept {
        c.reset_by_host.inc();
        send_rst_to_guest(id, f);
        free_flow(id, f, true);
    }

    void enter_closing(Flow& f) noexcept {
        if (f.state == TcpState::established) set_state(f, TcpState::closing);
    }

    // Data and FIN of an accepted segment (the caller handled SYN, RST and ACK).
    void process_data(FlowId id, Flow& f, const wire::TcpView& t) noexcept {
        ByteView payload = t.payload();
        const bool fin = t.is_fin();
        if (payload.empty() && !fin) {
            // A keep-alive probe (one below rcv_nxt) gets a bare ACK (TCP.md §6); a pure ACK
            // gets nothing.
            if (t.seq() < f.rcv_nxt) queue_ack(id, f);
            return;
        }
        if (f.guest_fin) {  // everything up to the FIN was taken: a retransmission
            queue_ack(id, f);
            return;
        }
        // Where this flow's gathered bytes end: the next sequence number the socket will get.
        const bool gathering = g_flow == id;
        const TcpSeq expect = f.rcv_nxt + static_cast<std::uint32_t>(gathering ? g_len : 0);
        TcpSeq seq = t.seq();
        if (seq > expect) {
            // RFC 9293 §3.10.7.4: out of order; not kept (the socket is the only buffer), so a
            // duplicate ACK now lets the guest fast-retransmit the gap.
            c.out_of_order.inc();
            if (gathering) flush_gather();
            send_ack(id, f);
            return;
        }
        const std::uint32_t seg_len = static_cast<std::uint32_t>(payload.size());
        if (seq + seg_len < expect || (seq + seg_len == expect && !fin)) {
            queue_ack(id, f);  // entirely old: a retransmission or a keep-alive probe
            return;
        }
        const std::uint32_t trim = expect - seq;  // overlap with what was already taken
        payload = payload.subspan(std::min<std::size_t>(trim, payload.size()));
        if (!gathering) {
            flush_gather();
            g_flow = id;
        } else if (g_n == kMaxGather) {
            flush_gather();
            g_flow = id;
        }
        if (!payload.empty()) {
            g_iov[g_n++] = iovec{const_cast<std::byte*>(payload.data()), payload.size()};
            g_len += payload.size();
        }
        if (fin) {
            g_fin = true;
            flush_gather();
        }
    }

    // ---- host -> guest --------------------------------------------------------------------

    void process_ack(FlowId id, Flow& f, const wire::TcpView& t) noexcept {
        const TcpSeq ack = t.ack();
        if (!f.syn_acked) {
            if (ack != f.snd_isn + 1) {
                c.drop_out_of_window.inc();
                return;
            }
            f.syn_acked = true;
            f.snd_una = ack;
            f.rtx_at = 0;
            f.backoff = 0;
        }
        if (ack > f.snd_max) {
            // RFC 9293 §3.10.7.4: an ACK for something never sent: ACK and drop.
            c.drop_out_of_window.inc();
            queue_ack(id, f);
            return;
        }
        if (ack < f.snd_una) return;  // an old duplicate: it says nothing, not even a window
        const std::uint32_t new_wnd = std::uint32_t{t.window()} << f.snd_wscale;
        const bool bare = t.payload().empty() && !t.is_fin();
        if (ack > f.snd_una) {
            // It may cover bytes beyond a rewound snd_nxt (sent before a go-back): they arrived.
            std::uint32_t acked = ack - f.snd_una;
            if (f.fin_ever && !f.fin_acked && ack == f.fin_seq + 1) {
                f.fin_acked = f.fin_sent = true;
                --acked;
            }
            if (acked != 0) {
                const ssize_t d = socks.discard(f.fd, acked);
                if (d < 0 || static_cast<std::uint32_t>(d) != acked) {
                    host_error(id, f);
                    return;
                }
            }
            f.snd_una = ack;
            if (f.snd_nxt < ack) f.snd_nxt = ack;  // SO_PEEK_OFF's offset fell to 0 with it
            f.dupacks = 0;
            f.backoff = 0;
            if (f.rtt_on && ack >= f.rtt_seq) {
                f.rtt_on = false;
                rtt_sample(f, static_cast<std::uint32_t>((now - f.rtt_start_ms) * 1000));
            }
            f.rtx_at = 0;
            if (f.snd_una != f.snd_nxt) set_rtx(id, f);
        } else if (ack == f.snd_una && bare && new_wnd == f.snd_wnd && f.snd_una != f.snd_nxt) {
            // RFC 5681 §2: a duplicate ACK. The third starts a go-back retransmission, once
            // per window (RFC 6582's recovery point).
            if (++f.dupacks == 3 && f.snd_una >= f.recover) {
                f.recover = f.snd_nxt;
                c.fast_retransmits.inc();
                go_back(f);
            }
        }
        // RFC 9293 §3.10.7.4: only a segment newer than the one that last set the window may
        // change it (a reordered old ACK must not reopen a window the guest closed since).
        bool opened = false;
        if (f.snd_wl1 < t.seq() || (f.snd_wl1 == t.seq() && f.snd_wl2 <= ack)) {
            opened = new_wnd > f.snd_wnd;
            f.snd_wnd = new_wnd;
            f.snd_wl1 = t.seq();
            f.snd_wl2 = ack;
        }
        if (f.fin_acked && f.guest_fin) {
            c.closed.inc();
            free_flow(id, f, false);
            return;
        }
        // A drained socket raises a readable edge when data comes: peeking now would find
        // nothing, unless the window opened, a rewind happened or the stream's end is due.
        if (!f.drained || f.peer_fin || opened) try_send(id, f, cfg.slice_frames);
    }

    void rtt_sample(Flow& f, std::uint32_t r_us) noexcept {
        // RFC 6298 §2.2/§2.3.
        if (f.srtt_us == 0) {
            f.srtt_us = std::max<std::uint32_t>(r_us, 1);
            f.rttvar_us = r_us / 2;
        } else {
            const std::uint32_t diff = f.srtt_us > r_us ? f.srtt_us - r_us : r_us - f.srtt_us;
            f.rttvar_us = (3 * f.rttvar_us + diff) / 4;
            f.srtt_us = (7 * f.srtt_us + r_us) / 8;
        }
        const std::uint32_t rto = (f.srtt_us + 4 * f.rttvar_us) / 1000;
        f.rto_ms = std::clamp(rto, kRtoMinMs, kRtoMaxMs);
    }

    // TCP.md §5: send everything again from snd_una (the socket still holds it).
    void go_back(Flow& f) noexcept {
        f.snd_nxt = f.snd_una;
        f.drained = false;
        if (f.fin_sent && !f.fin_acked) f.fin_sent = false;
        f.rtt_on = false;  // Karn: no sample from retransmitted data
        socks.set_peek_offset(f.fd, 0);
    }

    // Sends host data (and the FIN) within the guest's window, at most `budget` frames.
    void try_send(FlowId id, Flow& f, std::uint32_t budget) noexcept {
        if (f.state == TcpState::free || f.state == TcpState::connecting || !f.syn_acked) return;
        if (f.fin_sent) return;
        const Dest d = dest_of(id, f);
        const PortCaps caps = link.caps_of(f.in_port);
        const std::size_t l2 = l2_len(d.vlan.has_value());
        const std::size_t hdr = l2 + kIpHdr + kTcpHdr;
        std::uint32_t per = f.mss;
        if (caps.gso) per = static_cast<std::uint32_t>((65535 - kIpHdr - kTcpHdr) / f.mss * f.mss);
        std::array<PacketRef, kMaxPeekFrames> frames;
        std::array<iovec, kMaxPeekFrames> iov{};
        std::array<std::uint32_t, kMaxPeekFrames> lens{};
        bool window_known = false;
        std::uint16_t window = 0;
        while (budget != 0) {
            const std::uint32_t unacked = f.unacked();
            const std::int64_t room_w = static_cast<std::int64_t>(f.snd_wnd) -
                                        static_cast<std::int64_t>(f.snd_nxt - f.snd_una);
            std::size_t want = room_w > 0 ? static_cast<std::size_t>(room_w) : 0;
            const std::size_t max_off = socks.max_peek_offset();
            want = std::min<std::size_t>(want, unacked < max_off ? max_off - unacked : 0);
            if (want == 0) {
                if (f.snd_wnd == 0 && f.rtx_at == 0) set_rtx(id, f);  // zero-window probe
                // A FIN needs no window: with everything acknowledged, look for the end of the
                // stream with a one-byte peek (a zero-length one would say 0 either way).
                if (unacked == 0) probe_eof(id, f);
                return;
            }
            std::size_t link_room = link.room_to(f.in_port);
            if (link_room <= kLinkReserve) {
                link.flush();
                link_room = link.room_to(f.in_port);
            }
            if (link_room <= kLinkReserve) {
                // The guest's own queue is full while the link is not: the guest is behind on
                // its RX queue. The data waits in the socket (peeked, never lost); the ACKs for
                // what is in flight bring us back, as a window opening would. Sending on would
                // only have the switch drop the frames and the guest ask for them again.
                if (link.room() > kLinkReserve && f.snd_una != f.snd_nxt) {
                    c.guest_queue_waits.inc();
                    return;
                }
                make_pending(id, f);
                return;
            }
            std::size_t nf = (want + per - 1) / per;
            nf = std::min({nf, kMaxPeekFrames, std::size_t{budget}, link_room - kLinkReserve});
            std::size_t asked = 0;
            std::size_t got_frames = 0;
            for (; got_frames < nf && asked < want; ++got_frames) {
                const std::uint32_t len =
                    static_cast<std::uint32_t>(std::min<std::size_t>(per, want - asked));
                auto r = link.pool().try_alloc(hdr + len);
                if (!r) {
                    c.pool_waits.inc();  // not a drop: the data waits in the socket
                    break;
                }
                frames[got_frames] = std::move(*r);
                iov[got_frames] = iovec{frames[got_frames].room().data() + hdr, len};
                lens[got_frames] = len;
                asked += len;
            }
            if (got_frames == 0) {
                make_pending(id, f);
                return;
            }
            const ssize_t n =
                socks.peek(f.fd, unacked, std::span<const iovec>(iov.data(), got_frames));
            if (n == -EAGAIN) {
                f.drained = true;
                return;
            }
            if (n < 0) {
                host_error(id, f);
                return;
            }
            if (n == 0) {
                // TCP.md §6: end of stream, every byte before it sent: FIN to the guest.
                f.sock_eof = true;
                send_fin(id, f);
                return;
            }
            // Stamp the frames that got data; frames beyond go back to the pool unused.
            std::size_t left = static_cast<std::size_t>(n);
            std::size_t sent = 0;
            for (std::size_t i = 0; i < got_frames && left != 0; ++i) {
                const std::uint32_t plen =
                    static_cast<std::uint32_t>(std::min<std::size_t>(lens[i], left));
                wire::TcpRepr t;
                t.src_port = L4Port{d.sport};
                t.dst_port = L4Port{d.dport};
                t.seq = f.snd_nxt + static_cast<std::uint32_t>(sent);
                t.ack = f.rcv_nxt;
                t.flags = static_cast<std::uint8_t>(wire::tcp_flag::ack |
                                                    (plen == left ? wire::tcp_flag::psh : 0));
                if (!window_known) {  // two system calls: once per slice, not per frame
                    window = window_field(f);
                    window_known = true;
                }
                t.window = window;
                if (!emit_headers(frames[i], d, t, plen, f.mss, caps) || !send_frame(frames[i]))
                    break;
                sent += plen;
                left -= plen;
                c.frames_to_guest.inc();
            }
            for (std::size_t i = 0; i < got_frames; ++i)
                frames[i].reset();
            if (sent != 0) {
                if (!f.rtt_on && f.backoff == 0) {
                    f.rtt_on = true;
                    f.rtt_seq = f.snd_nxt + static_cast<std::uint32_t>(sent);
                    f.rtt_start_ms = now;
                }
                f.snd_nxt += static_cast<std::uint32_t>(sent);
                if (f.snd_max < f.snd_nxt) f.snd_max = f.snd_nxt;
                f.delack = false;  // the data frames carried the ACK
                c.bytes_to_guest.add(sent);
                if (f.rtx_at == 0) set_rtx(id, f);
                f.last_ms = now;
            }
            if (sent != static_cast<std::size_t>(n)) {
                // The link refused a frame: the rest stays in the socket and goes next turn.
                socks.set_peek_offset(f.fd, f.unacked());
                make_pending(id, f);
                return;
            }
            budget -= static_cast<std::uint32_t>(std::min<std::size_t>(budget, got_frames));
            if (static_cast<std::size_t>(n) < asked) {
                f.drained = true;  // the next readable edge brings more
                return;
            }
        }
        make_pending(id, f);
    }

    void probe_eof(FlowId id, Flow& f) noexcept {
        std::byte b{};
        const iovec one{&b, 1};
        const ssize_t n = socks.peek(f.fd, 0, std::span<const iovec>(&one, 1));
        if (n == 0) {
            f.sock_eof = true;
            send_fin(id, f);
        } else if (n > 0) {
            socks.set_peek_offset(f.fd, 0);  // SO_PEEK_OFF moved on by the byte
        } else if (n != -EAGAIN) {
            host_error(id, f);
        }
    }

    void send_fin(FlowId id, Flow& f) noexcept {
        const std::uint16_t w = window_field(f);
        if (!send_control(dest_of(id, f), f.snd_nxt, f.rcv_nxt,
                          wire::tcp_flag::fin | wire::tcp_flag::ack, w)) {
            make_pending(id, f);
            return;
        }
        f.fin_sent = true;
        f.delack = false;  // the FIN carries the ACK
        f.fin_ever = true;
        f.fin_seq = f.snd_nxt;
        f.snd_nxt += 1;
        if (f.snd_max < f.snd_nxt) f.snd_max = f.snd_nxt;
        set_rtx(id, f);
        enter_closing(f);
    }

    // ---- timers ---------------------------------------------------------------------------

    void on_rtx(FlowId id, Flow& f) noexcept {
        f.rtx_at = 0;
        if (f.state == TcpState::syn_sent) {
            // RFC 6298 §5.5: back off and send the SYN again; expire() gives up.
            if (f.backoff < kSynRetries) {
                ++f.backoff;
                c.retransmits.inc();
                send_syn(id, f);
            }
            return;
        }
        if (f.state == TcpState::established && !f.syn_acked) {
            // Our SYN-ACK was lost: send it again (RFC 9293 §3.8.1).
            if (f.backoff < 6) {
                ++f.backoff;
                c.retransmits.inc();
                send_synack(id, f);
            }
            return;
        }
        if (f.snd_una != f.snd_nxt) {
            ++f.backoff;
            c.retransmits.inc();
            go_back(f);
            try_send(id, f, cfg.slice_frames);
            if (f.state != TcpState::free && f.rtx_at == 0 && f.snd_una != f.snd_nxt)
                set_rtx(id, f);
            return;
        }
        if (f.snd_wnd == 0 && !f.fin_sent) {
            // Zero window: a segment one below snd_nxt makes the guest answer with its window
            // (RFC 9293 §3.8.6.1).
            c.window_probes.inc();
            (void)send_control(dest_of(id, f), f.snd_nxt + 0xffffffffu, f.rcv_nxt,
                               wire::tcp_flag::ack, window_field(f));
            if (f.backoff < 16) ++f.backoff;
            f.rtx_at = now + std::min<std::uint64_t>(
                                 std::uint64_t{f.rto_ms} << std::min<std::uint8_t>(f.backoff, 8),
                                 kProbeMaxMs);
        }
    }

    // RFC 9293 §3.8.6.2.2 (receiver's SWS avoidance): a window update once the window grew by
    // an MSS, or at all from zero (a send buffer smaller than an MSS would otherwise never
    // reopen it).
    void check_window_update(FlowId id, Flow& f) noexcept {
        if (!f.wnd_watch || f.fd < 0) return;
        const std::size_t space =
            std::min<std::size_t>(socks.send_space(f.fd), std::size_t{65535} << f.rcv_wscale);
        if (space > f.rcv_wnd && (space - f.rcv_wnd >= f.mss || f.rcv_wnd == 0)) {
            c.window_updates.inc();
            send_ack(id, f);
        }
    }

    // Connect, idle and FIN timeouts (TCP.md §6). True when the flow was freed.
    bool expire(FlowId id, Flow& f) noexcept {
        const auto ms = [](std::chrono::milliseconds d) {
            return static_cast<std::uint64_t>(d.count());
        };
        if (f.state == TcpState::connecting) {
            if (now - f.since_ms < ms(cfg.connect_timeout)) return false;
            fail_connect(id, f, ETIMEDOUT);
            return true;
        }
        if (f.state == TcpState::syn_sent) {
            if (now - f.since_ms < ms(cfg.connect_timeout)) return false;
            fail_inbound(id, f, true);
            return true;
        }
        const bool idle =
            f.state == TcpState::established && now - f.last_ms >= ms(cfg.idle_timeout);
        // Half-closed flows live while data moves the other way (TCP.md §6's 60 s is the
        // silence allowed once one side closed).
        const bool fin = f.state == TcpState::closing &&
                         now - std::max(f.since_ms, f.last_ms) >= ms(cfg.fin_timeout);
        if (!idle && !fin) return false;
        c.timed_out.inc();
        send_rst_to_guest(id, f);
        free_flow(id, f, true);
        return true;
    }

    void tick_flow(FlowId id, Flow& f) noexcept {
        if (f.state == TcpState::connecting) {
            (void)expire(id, f);
            return;
        }
        if (f.rtx_at != 0 && now >= f.rtx_at) {
            on_rtx(id, f);
            if (f.state == TcpState::free) return;
        }
        if (f.delack) send_ack(id, f);
        check_window_update(id, f);
    }
};

// ---- public ---------------------------------------------------------------------------------

TcpEngine::TcpEngine(const TcpConfig& cfg, FlowTable& table, HostSockets& sockets, Poller& poller,
                     GuestLink& link)
    : impl_(std::make_unique<Impl>(cfg, table, sockets, poller, link)) {}

TcpEngine::~TcpEngine() {
    reset_all();
}

bool TcpEngine::wants(Ipv4Addr dst, std::uint16_t) const noexcept {
    const TcpConfig& cfg = impl_->cfg;
    // The gateway's own addresses too: what it does not serve gets a RST rather than silence.
    if (dst == cfg.gateway || (cfg.dns_addr && dst == *cfg.dns_addr)) return true;
    if (cfg.host_alias && dst == *cfg.host_alias) return true;
    return !dst.is_broadcast() && !dst.is_multicast() && !dst.in_prefix(cfg.subnet, cfg.prefix_len);
}

void TcpEngine::process_segment(const TcpSegmentIn& s, std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    m.c.segments_in.inc();
    const wire::TcpView& t = s.tcp;
    const FlowKey key{s.ip.src(), s.ip.dst(), t.src_port().v, t.dst_port().v, IpProto::tcp};
    if (t.is_syn() && t.is_fin()) {
        m.c.drop_malformed.inc();
        return;
    }
    FlowId id = m.table.find(key);
    if (id == kNoFlow) {
        if (t.is_rst()) return;  // RFC 9293 §3.10.7.1: a RST for no connection is dropped
        if (t.is_syn() && !t.is_ack()) {
            m.open_flow(s, key);
            return;
        }
        m.c.rst_no_flow.inc();
        m.send_rst_for(s);
        return;
    }
    Impl::Flow& f = m.flows[id];
    f.last_ms = now_ms;
    if (f.state == TcpState::syn_sent) {
        // RFC 9293 §3.10.7.3: in SYN-SENT, a RST counts only with an ACK of our SYN; a SYN-ACK
        // acknowledging it completes the handshake; a SYN-ACK acknowledging anything else gets
        // a RST; everything else is dropped.
        const bool acks_syn = t.is_ack() && t.ack() == f.snd_isn + 1;
        if (t.is_rst()) {
            if (acks_syn) m.fail_inbound(id, f, false);
            return;
        }
        if (t.is_syn() && t.is_ack()) {
            if (acks_syn) {
                m.establish_inbound(id, f, t);
            } else {
                m.c.drop_out_of_window.inc();
                (void)m.send_control(m.dest_of(id, f), t.ack(), TcpSeq{0}, wire::tcp_flag::rst, 0);
            }
            return;
        }
        m.c.drop_out_of_window.inc();
        // An ACK of something never sent gets <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.3).
        if (t.is_ack() && !acks_syn)
            (void)m.send_control(m.dest_of(id, f), t.ack(), TcpSeq{0}, wire::tcp_flag::rst, 0);
        return;
    }
    if (t.is_rst()) {
        // RFC 5961 §3.2: accept a reset within the receive window; outside it, answer with a
        // challenge ACK — a guest that really reset answers that with a RST at exactly rcv_nxt
        // (this also covers a guest whose unacknowledged data the full socket has not taken).
        const TcpSeq seq = t.seq();
        const std::uint32_t wnd = std::max<std::uint32_t>(f.rcv_wnd, 1);
        if (f.state == TcpState::connecting || (seq >= f.rcv_nxt && seq < f.rcv_nxt + wnd)) {
            m.c.reset_by_guest.inc();
            m.free_flow(id, f, true);  // drops what the burst gathered for it, unwritten
        } else {
            m.c.drop_out_of_window.inc();
            m.send_ack(id, f);
        }
        return;
    }
    if (t.is_syn()) {
        if (t.is_ack()) {
            // Our handshake ACK was lost: the guest sends its SYN-ACK again (RFC 9293 §3.10.7.4).
            if (f.inbound && t.seq() == f.guest_isn)
                m.queue_ack(id, f);
            else
                m.c.drop_malformed.inc();
            return;
        }
        if (t.seq() == f.guest_isn) {
            // A retransmitted SYN: still connecting -> nothing yet (TCP.md §3); our SYN-ACK was
            // lost -> send it again.
            if (f.state == TcpState::established && !f.syn_acked) m.send_synack(id, f);
            return;
        }
        // A new connection on the same 5-tuple: the old one is gone on the guest's side.
        m.c.reset_by_guest.inc();
        if (m.g_flow == id) m.flush_gather();
        if (m.flows[id].state != TcpState::free) m.free_flow(id, m.flows[id], true);
        m.open_flow(s, key);
        return;
    }
    if (f.state == TcpState::connecting) {
        m.c.drop_out_of_window.inc();  // nothing sent to the guest yet: nothing to acknowledge
        return;
    }
    if (!t.is_ack()) {
        m.c.drop_malformed.inc();  // RFC 9293 §3.10.7.4: past SYN-SENT every segment has ACK
        return;
    }
    if (!f.syn_acked && t.ack() != f.snd_isn + 1) {
        // RFC 9293 §3.10.7.4 (SYN-RECEIVED): a segment that does not acknowledge our SYN-ACK is
        // not part of this connection yet; its data is not taken.
        m.c.drop_out_of_window.inc();
        return;
    }
    // RFC 9293 §3.10.7.4, first check: a segment must overlap the receive window, which runs to
    // the furthest edge ever advertised (plus the rounding of the scaled field), so nothing the
    // guest sent in good faith is refused. Anything else — a keep-alive probe, an old
    // retransmission, a forged segment — gets an ACK and is dropped, its ACK field unread.
    {
        const auto len = static_cast<std::uint32_t>(t.payload().size()) + (t.is_fin() ? 1u : 0u);
        const TcpSeq hi = f.rcv_adv + (std::uint32_t{1} << f.rcv_wscale);
        const TcpSeq seq = t.seq();
        const bool ok =
            len == 0 ? (seq >= f.rcv_nxt && seq <= hi) : (seq < hi && seq + len > f.rcv_nxt);
        if (!ok) {
            if (!(len == 0 && seq + 1 == f.rcv_nxt)) m.c.drop_out_of_window.inc();
            m.queue_ack(id, f);
            return;
        }
    }
    // Data first (its bytes were sent before this ACK was), then the ACK.
    m.process_data(id, f, t);
    if (f.state == TcpState::free) return;
    m.process_ack(id, f, t);
}

void TcpEngine::end_burst(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    m.flush_gather();
    for (const FlowId id : m.ack_list) {
        Impl::Flow& f = m.flows[id];
        if (!f.ack_due) continue;
        f.ack_due = false;
        if (f.state != TcpState::free) m.send_ack(id, f);
    }
    m.ack_list.clear();
}

void TcpEngine::process_socket_event(FlowId id, std::uint32_t events,
                                     std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    if (id >= m.flows.size()) return;
    Impl::Flow& f = m.flows[id];
    if (f.state == TcpState::free || f.fd < 0) return;  // stale event of a freed flow
    f.last_ms = now_ms;
    if (f.state == TcpState::syn_sent) {
        // The client's bytes (and FIN) wait in the socket until the guest answers; only an error
        // (the client reset) ends the attempt.
        if ((events & sock_event::rdhup) != 0) f.peer_fin = true;
        if ((events & sock_event::error) != 0 && m.socks.connect_result(f.fd) != 0) {
            m.c.reset_by_host.inc();
            (void)m.send_control(m.dest_of(id, f), f.snd_nxt, TcpSeq{0}, wire::tcp_flag::rst, 0);
            m.free_flow(id, f, true);
        }
        return;
    }
    if (f.state == TcpState::connecting) {
        if ((events & (sock_event::out | sock_event::error | sock_event::hup)) == 0) return;
        const int err = m.socks.connect_result(f.fd);
        if (err == 0 && (events & sock_event::out) != 0)
            m.connected(id, f);
        else if (err != 0)
            m.fail_connect(id, f, err);
        return;
    }
    if ((events & sock_event::error) != 0 && m.socks.connect_result(f.fd) != 0) {
        m.host_error(id, f);
        return;
    }
    if ((events & sock_event::out) != 0) m.check_window_update(id, f);
    if ((events & sock_event::rdhup) != 0) f.peer_fin = true;
    if ((events & (sock_event::in | sock_event::hup | sock_event::rdhup)) != 0) {
        f.drained = false;
        m.try_send(id, f, m.cfg.slice_frames);
    }
}

void TcpEngine::on_tick(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    for (std::size_t i = 0; i < m.timers.size();) {
        const FlowId id = m.timers[i];
        Impl::Flow& f = m.flows[id];
        if (f.state != TcpState::free) m.tick_flow(id, f);
        const bool armed = f.state != TcpState::free && (f.rtx_at != 0 || f.wnd_watch || f.delack ||
                                                         f.state == TcpState::connecting);
        if (!armed) {
            f.in_timers = false;
            m.timers[i] = m.timers.back();
            m.timers.pop_back();
            continue;
        }
        ++i;
    }
    // Idle and FIN timeouts are long: a sweep over every flow once a second finds them, so the
    // timer list holds only flows with something due within milliseconds.
    if (now_ms - m.last_sweep >= 1000) {
        m.last_sweep = now_ms;
        for (FlowId id = 0; id < m.flows.size(); ++id) {
            Impl::Flow& f = m.flows[id];
            if (f.state != TcpState::free) (void)m.expire(id, f);
        }
    }
}

bool TcpEngine::has_pending() const noexcept {
    return impl_->pending_head < impl_->pending.size();
}

void TcpEngine::run_pending(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    const std::size_t end = m.pending.size();
    while (m.pending_head < end) {
        const FlowId id = m.pending[m.pending_head++];
        Impl::Flow& f = m.flows[id];
        if (!f.pending) continue;
        f.pending = false;
        if (f.state != TcpState::free) m.try_send(id, f, m.cfg.slice_frames);
        if (m.link.room() <= kLinkReserve) break;
    }
    if (m.pending_head == m.pending.size()) {
        m.pending.clear();
        m.pending_head = 0;
    } else if (m.pending_head > m.pending.size() / 2) {
        m.pending.erase(m.pending.begin(),
                        m.pending.begin() + static_cast<std::ptrdiff_t>(m.pending_head));
        m.pending_head = 0;
    }
}

void TcpEngine::reset_all() noexcept {
    Impl& m = *impl_;
    for (FlowId id = 0; id < m.flows.size(); ++id) {
        Impl::Flow& f = m.flows[id];
        if (f.state == TcpState::free) continue;
        if (f.state == TcpState::syn_sent)  // nothing of the guest's to acknowledge yet
            (void)m.send_control(m.dest_of(id, f), f.snd_nxt, TcpSeq{0}, wire::tcp_flag::rst, 0);
        else if (f.state != TcpState::connecting)
            m.send_rst_to_guest(id, f);
        m.free_flow(id, f, true);
    }
}

FlowId TcpEngine::open_inbound(const TcpInbound& in, std::uint64_t now_ms) noexcept {
    impl_->now = now_ms;
    return impl_->open_inbound(in);
}

std::uint32_t TcpEngine::reset_tagged(std::uint32_t tag) noexcept {
    Impl& m = *impl_;
    std::uint32_t n = 0;
    for (FlowId id = 0; id < m.flows.size(); ++id) {
        Impl::Flow& f = m.flows[id];
        if (f.state == TcpState::free || !f.inbound || f.tag != tag) continue;
        if (f.state == TcpState::syn_sent)
            (void)m.send_control(m.dest_of(id, f), f.snd_nxt, TcpSeq{0}, wire::tcp_flag::rst, 0);
        else
            m.send_rst_to_guest(id, f);
        m.free_flow(id, f, true);
        ++n;
    }
    m.link.flush();
    return n;
}

bool TcpEngine::has_flow(const FlowKey& key) const noexcept {
    return impl_->table.find(key) != kNoFlow;
}

const TcpCounters& TcpEngine::counters() const noexcept {
    return impl_->c;
}

std::uint32_t TcpEngine::flows_in(TcpState s) const noexcept {
    return impl_->state_count[static_cast<std::size_t>(s)];
}

std::optional<TcpFlowInfo> TcpEngine::flow_info(FlowId id) const noexcept {
    const Impl& m = *impl_;
    if (id >= m.flows.size() || m.flows[id].state == TcpState::free) return std::nullopt;
    const Impl::Flow& f = m.flows[id];
    return TcpFlowInfo{m.table.key(id), f.state,    f.fd,       f.unacked(), f.snd_wnd,
                       f.guest_fin,     f.sock_eof, f.fin_sent, f.inbound,   f.tag};
}

void TcpEngine::for_each_flow(const std::function<void(const TcpFlowInfo&)>& fn) const {
    for (FlowId id = 0; id < impl_->flows.size(); ++id)
        if (auto i = flow_info(id)) fn(*i);
}

}  // namespace slipway::nat
