// IcmpEngine: guest echo requests onto ping or raw sockets (theory of operation: icmp.hpp).
#include "slipway/nat/icmp.hpp"

#include <netinet/in.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <vector>

#include "flow_lists.hpp"
#include "guest_frames.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/nat/fragment.hpp"

namespace slipway::nat {

namespace {

constexpr std::size_t kRecvBurst = 16;
constexpr std::size_t kSlot = 64 * 1024;  // one receive area per message of a burst
constexpr std::size_t kLinkReserve = 8;
constexpr std::size_t kIpHdr = wire::kIpv4MinHeaderLen;
constexpr std::size_t kIcmpHdr = 8;
constexpr std::uint8_t kEchoReply = 0;
constexpr std::uint8_t kEchoRequest = 8;

// Rewrites the echo identifier of the ICMP message at `p` (checksum updated, RFC 1624).
void set_echo_id(std::byte* p, std::uint16_t id) noexcept {
    const std::uint16_t old = load_be16(p + 4);
    store_be16(p + 2, csum_update16(load_be16(p + 2), old, id));
    store_be16(p + 4, id);
}

}  // namespace

struct IcmpEngine::Impl {
    struct Flow {
        int fd = -1;  // ping mode
        bool live = false;
        bool pending = false;
        bool err_pending = false;  // its error queue may hold more than was relayed
        detail::GuestAddr guest;
        Ipv4Addr host_dst;
        std::uint16_t host_id = 0;  // raw mode
        std::uint64_t last_ms = 0;
    };

    IcmpConfig cfg;
    FlowTable& table;
    DgramSockets& socks;
    Poller& poller;
    GuestLink& link;
    IcmpCounters c;
    std::vector<Flow> flows;
    detail::LruList lru;
    std::uint32_t live = 0;
    detail::PendingQueue pending;
    bool raw_pending = false;
    int raw_fd = -1;
    std::vector<FlowId> by_host_id;  // raw mode: host identifier -> flow
    std::uint16_t next_host_id = 0;
    std::unique_ptr<std::byte[]> slots;  // receive areas, and the raw mode's send copy
    detail::FrameBacklog backlog;        // a reply's frames the link could not take yet
    std::uint64_t now = 0;
    std::uint16_t ip_id = 1;

    Impl(const IcmpConfig& config, FlowTable& t, DgramSockets& s, Poller& p, GuestLink& l)
        : cfg(config),
          table(t),
          socks(s),
          poller(p),
          link(l),
          flows(t.capacity()),
          lru(t.capacity()),
          pending(t.capacity()),
          slots(std::make_unique<std::byte[]>((kRecvBurst + 1) * kSlot)) {
        if (cfg.mode == IcmpMode::raw) {
            raw_fd = socks.open_raw_icmp();
            if (raw_fd < 0 || !poller.watch(raw_fd, kRawIcmpSocket, sock_event::in)) {
                if (raw_fd >= 0) socks.close(raw_fd);
                raw_fd = -1;
                cfg.mode = IcmpMode::gateway;
            } else {
                by_host_id.assign(65536, kNoFlow);
                next_host_id = static_cast<std::uint16_t>(::arc4random());
            }
        }
    }

    ~Impl() {
        if (raw_fd >= 0) {
            poller.unwatch(raw_fd);
            socks.close(raw_fd);
        }
    }

    [[nodiscard]] bool own_address(Ipv4Addr a) const noexcept {
        return a == cfg.gateway || (cfg.dns_addr && a == *cfg.dns_addr);
    }

    void send_icmp_error(const detail::GuestAddr& to, Ipv4Addr src, Ipv4Addr guest_ip,
                         std::uint8_t type, std::uint8_t code, std::uint32_t rest,
                         ByteView quote) noexcept {
        // An error message the full link refuses is dropped (RFC 1812 §4.3.2.8 lets a router
        // limit them anyway): counted apart from replies, which are never read into a full link.
        switch (detail::emit_icmp_error(link, cfg.gateway_mac, to, src, guest_ip, type, code, rest,
                                        quote, ip_id++)) {
            case detail::Emitted::sent:
                break;
            case detail::Emitted::no_buffer:
                c.drop_no_buffer.inc();
                break;
            case detail::Emitted::link_full:
                c.errors_link_full.inc();
                break;
        }
    }

    // An ICMP message (header onwards, identifier already the guest's) from `src` to the guest,
    // in fragments when it exceeds the MTU.
    void deliver(const Flow& f, Ipv4Addr src, Ipv4Addr guest_ip, ByteView msg) noexcept {
        const std::size_t l2 = detail::l2_len(f.guest.vlan.has_value());
        std::size_t n = 1;
        if (kIpHdr + msg.size() <= cfg.mtu) {
            auto r = link.pool().try_alloc(l2 + kIpHdr + msg.size());
            if (!r) {
                c.drop_no_buffer.inc();
                return;
            }
            const MutByteView out = r->data();
            if (!detail::emit_l2_l3(out, cfg.gateway_mac, f.guest, src, guest_ip, IpProto::icmp,
                                    msg.size(), ip_id++, false))
                return;
            std::copy(msg.begin(), msg.end(),
                      out.begin() + static_cast<std::ptrdiff_t>(l2 + kIpHdr));
            r->meta().vnet = virtio::NetHdr{};
            backlog.slots()[0] = std::move(*r);
        } else {
            const std::array<ByteView, 1> pieces{msg};
            const FragmentSpec spec{.dst_mac = f.guest.mac,
                                    .src_mac = cfg.gateway_mac,
                                    .vlan = f.guest.vlan,
                                    .src = src,
                                    .dst = guest_ip,
                                    .proto = IpProto::icmp,
                                    .ident = ip_id++,
                                    .ttl = 64,
                                    .mtu = cfg.mtu};
            auto frags = fragment_ipv4(link.pool(), spec, pieces, backlog.slots());
            if (!frags) {
                c.drop_no_buffer.inc();
                return;
            }
            n = *frags;
        }
        // What the link cannot take now waits in the backlog; reading stops until it went.
        backlog.set(n);
        (void)flush_backlog();
        c.replies.inc();
    }

    bool flush_backlog() noexcept {
        return backlog.flush([this](PacketRef& r) { return link.push(r); });
    }

    void free_flow(FlowId id, Flow& f) noexcept {
        if (f.fd >= 0) {
            poller.unwatch(f.fd);
            socks.close(f.fd);
        }
        if (raw_fd >= 0 && by_host_id[f.host_id] == id) by_host_id[f.host_id] = kNoFlow;
        lru.remove(id);
        if (cfg.limits) cfg.limits->closed(table.key(id).guest_ip, false);
        f = Flow{};
        --live;
        table.erase(id);
    }

    FlowId open_flow(const IcmpMessageIn& m, const FlowKey& key) noexcept {
        const Ipv4Addr dst = key.remote_ip;
        const detail::GuestAddr from{m.guest_mac, m.vlan, m.in_port};
        const bool alias = cfg.host_alias && dst == *cfg.host_alias;
        if (!alias &&
            (own_address(dst) || dst.is_unspecified() || dst.is_broadcast() || dst.is_multicast() ||
             dst.is_loopback() || dst.in_prefix(cfg.subnet, cfg.prefix_len))) {
            c.denied.inc();
            return kNoFlow;
        }
        const auto refuse_with = [&](std::uint8_t code) {
            send_icmp_error(from, cfg.gateway, key.guest_ip, detail::kIcmpDestUnreachable, code, 0,
                            m.ip.packet());
        };
        const FlowId id = detail::admit_flow(cfg.policy, cfg.limits, table, key, cfg.host_alias,
                                             now, c, refuse_with);
        if (id == kNoFlow) return kNoFlow;
        const Ipv4Addr to = alias ? Ipv4Addr::from_octets(127, 0, 0, 1) : dst;
        Flow& f = flows[id];
        f = Flow{};
        if (cfg.mode == IcmpMode::ping) {
            const int fd = detail::open_flow_socket(socks, poller, table, id, IPPROTO_ICMP, to, 0,
                                                    c, refuse_with);
            if (fd < 0) return kNoFlow;
            f.fd = fd;
        } else {
            // A host identifier no live flow holds (65536 of them; a full wrap finds none only
            // when every one is taken, which the flow table's size rules out in practice).
            std::uint32_t n = 0;
            while (by_host_id[next_host_id] != kNoFlow && n++ < 65536)
                ++next_host_id;
            if (by_host_id[next_host_id] != kNoFlow) {
                table.erase(id);
                c.drop_limit.inc();
                return kNoFlow;
            }
            f.host_id = next_host_id++;
            by_host_id[f.host_id] = id;
        }
        f.live = true;
        f.guest = from;
        f.host_dst = to;
        f.last_ms = now;
        lru.push_back(id);
        ++live;
        if (cfg.limits) cfg.limits->opened(key.guest_ip, false);
        c.flows_opened.inc();
        return id;
    }

    // Messages to read now: as many as the link and the pool could take if each were of the
    // largest size, else one at a time while the link has room for a frame (a reply that then
    // needs more frames than are free — one larger than the MTU, on a link or pool this full —
    // is dropped and counted: the pinging program sends another request anyway).
    std::size_t fit(std::size_t room, bool vlan) noexcept {
        if (room <= kLinkReserve) return 0;
        return std::max<std::size_t>(
            1, detail::datagrams_that_fit(link.pool(), room - kLinkReserve, cfg.mtu, vlan));
    }

    void make_pending(FlowId id, Flow& f) noexcept {
        if (f.pending) return;
        f.pending = true;
        pending.push(id);
    }

    // The guest's request as it sent it, quoted in an error: IPv4 header, then the ICMP message
    // `data` (the host's copy) with the guest's identifier.
    std::size_t build_quote(std::span<std::byte> q, const FlowKey& k, ByteView data) noexcept {
        const std::size_t n = std::min(data.size(), q.size() - kIpHdr);
        wire::Ipv4Repr ip;
        ip.src = k.guest_ip;
        ip.dst = k.remote_ip;
        ip.protocol = IpProto::icmp;
        ip.payload_len = static_cast<std::uint16_t>(n);
        if (!ip.emit(q)) return 0;
        std::copy_n(data.begin(), n, q.begin() + kIpHdr);
        if (n >= kIcmpHdr) set_echo_id(q.data() + kIpHdr, k.guest_port);
        return kIpHdr + n;
    }

    // Ping mode: replies (and errors) of one flow's socket.
    void receive_ping(FlowId id, Flow& f, std::uint32_t budget) noexcept {
        if (f.err_pending) {
            drain_errors(id, f);
            if (!f.live || f.err_pending) return;
        }
        const FlowKey k = table.key(id);
        int errors = 0;
        while (budget > 0) {
            if (!flush_backlog() || link.room() <= kLinkReserve) {
                link.flush();
                make_pending(id, f);
                return;
            }
            const std::size_t want = std::min<std::size_t>(
                {kRecvBurst, budget, fit(link.room(), f.guest.vlan.has_value())});
            if (want == 0) {
                link.flush();
                make_pending(id, f);
                return;
            }
            std::array<DgramIn, kRecvBurst> msgs{};
            for (std::size_t i = 0; i < want; ++i)
                msgs[i].head = iovec{slots.get() + i * kSlot, kSlot};
            const int n = socks.recv_burst(f.fd, std::span(msgs).first(want));
            if (n < 0) {
                drain_errors(id, f);
                if (!f.live || ++errors > 2) return;
                continue;
            }
            for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
                std::byte* p = slots.get() + i * kSlot;
                const std::size_t len = std::min(msgs[i].len, kSlot);
                // The kernel hands a ping socket every echo reply carrying its identifier,
                // whoever sent it: only the destination's own replies are relayed, never one
                // another host forged.
                if (len < kIcmpHdr || static_cast<std::uint8_t>(p[0]) != kEchoReply ||
                    msgs[i].from != f.host_dst) {
                    c.unmatched.inc();
                    continue;
                }
                if (!backlog.empty()) {
                    c.drop_link_full.inc();  // not expected: the read was sized for the worst case
                    continue;
                }
                set_echo_id(p, k.guest_port);
                deliver(f, k.remote_ip, k.guest_ip, ByteView{p, len});
            }
            if (n > 0) {
                f.last_ms = now;
                lru.touch(id);
            }
            budget -= std::min<std::uint32_t>(budget, static_cast<std::uint32_t>(n));
            if (static_cast<std::size_t>(n) < want) return;
        }
        make_pending(id, f);
    }

    void drain_errors(FlowId id, Flow& f) noexcept {
        const FlowKey k = table.key(id);
        f.err_pending = !detail::drain_error_queue(
            socks, link, f.fd, [&](const SockError& e, std::uint32_t rest) {
                std::array<std::byte, kIpHdr + sizeof e.data> q{};
                const std::size_t qn =
                    build_quote(q, k, ByteView{e.data.data(), std::min(e.data_len, e.data.size())});
                if (qn == 0) return;
                send_icmp_error(
                    f.guest, detail::relay_source(e.offender, f.host_dst, k.remote_ip, cfg.gateway),
                    k.guest_ip, e.type, e.code, rest, ByteView{q.data(), qn});
                c.errors_relayed.inc();
            });
        if (f.err_pending) make_pending(id, f);
    }

    // Raw mode: one message the raw socket received (IPv4 header onwards).
    void process_raw(ByteView pkt) noexcept {
        auto ip = wire::Ipv4View::parse(pkt);
        if (!ip || ip->protocol() != IpProto::icmp || ip->is_fragment()) return;
        auto icmp = wire::Icmpv4View::parse(ip->payload());
        if (!icmp || !icmp->checksum_ok()) {
            c.unmatched.inc();
            return;
        }
        const auto type = static_cast<std::uint8_t>(icmp->type());
        if (!backlog.empty()) {
            c.drop_link_full.inc();  // not expected: the read was sized for the worst case
            return;
        }
        if (type == kEchoReply) {
            const auto host_id = static_cast<std::uint16_t>(icmp->rest_of_header() >> 16);
            const FlowId id = by_host_id[host_id];
            if (id == kNoFlow || !flows[id].live || flows[id].host_dst != ip->src()) {
                c.unmatched.inc();  // another program's ping, or a forged reply
                return;
            }
            Flow& f = flows[id];
            const FlowKey& k = table.key(id);
            const ByteView msg = ip->payload();
            std::byte* copy = slots.get() + kRecvBurst * kSlot;
            std::copy(msg.begin(), msg.end(), copy);
            set_echo_id(copy, k.guest_port);
            f.last_ms = now;
            lru.touch(id);
            deliver(f, k.remote_ip, k.guest_ip, ByteView{copy, msg.size()});
            return;
        }
        if (!detail::relayable_error(type)) {
            c.unmatched.inc();
            return;
        }
        // The error quotes our request: its IPv4 header, then at least 8 bytes of the echo
        // (RFC 792; often no more, so the quoted header's total length is not checked).
        const ByteView quoted = icmp->payload();
        if (quoted.size() < kIpHdr || (static_cast<std::uint8_t>(quoted[0]) >> 4) != 4) {
            c.unmatched.inc();
            return;
        }
        const std::size_t ihl = std::size_t{static_cast<std::uint8_t>(quoted[0]) & 0x0fu} * 4;
        if (ihl < kIpHdr || ihl > quoted.size() ||
            static_cast<IpProto>(quoted[9]) != IpProto::icmp) {
            c.unmatched.inc();
            return;
        }
        const Ipv4Addr inner_dst = Ipv4Addr::load(quoted.data() + 16);
        const ByteView req = quoted.subspan(ihl);
        if (req.size() < kIcmpHdr || static_cast<std::uint8_t>(req[0]) != kEchoRequest) {
            c.unmatched.inc();
            return;
        }
        const FlowId id = by_host_id[load_be16(req.data() + 4)];
        if (id == kNoFlow || !flows[id].live || flows[id].host_dst != inner_dst) {
            c.unmatched.inc();
            return;
        }
        Flow& f = flows[id];
        const FlowKey& k = table.key(id);
        std::array<std::byte, detail::kMaxIcmpQuote> q{};
        const std::size_t qn = build_quote(q, k, req);
        if (qn == 0) return;
        const std::uint32_t rest = detail::error_rest(type, icmp->code(), icmp->rest_of_header());
        send_icmp_error(f.guest,
                        detail::relay_source(ip->src(), f.host_dst, k.remote_ip, cfg.gateway),
                        k.guest_ip, type, icmp->code(), rest, ByteView{q.data(), qn});
        c.errors_relayed.inc();
    }

    void receive_raw(std::uint32_t budget) noexcept {
        raw_pending = false;
        while (budget > 0) {
            if (!flush_backlog() || link.room() <= kLinkReserve) {
                link.flush();
                raw_pending = true;
                return;
            }
            // Any flow's reply may be in there: bound by the untagged frame, the tag's 4 bytes
            // are within the reserve.
            const std::size_t want =
                std::min<std::size_t>({kRecvBurst, budget, fit(link.room(), false)});
            if (want == 0) {
                link.flush();
                raw_pending = true;
                return;
            }
            std::array<DgramIn, kRecvBurst> msgs{};
            for (std::size_t i = 0; i < want; ++i)
                msgs[i].head = iovec{slots.get() + i * kSlot, kSlot};
            const int n = socks.recv_burst(raw_fd, std::span(msgs).first(want));
            if (n <= 0) return;
            for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i)
                process_raw(ByteView{slots.get() + i * kSlot, std::min(msgs[i].len, kSlot)});
            budget -= std::min<std::uint32_t>(budget, static_cast<std::uint32_t>(n));
            if (static_cast<std::size_t>(n) < want) return;
        }
        raw_pending = true;
    }
};

// ---- public -----------------------------------------------------------------------------------

IcmpEngine::IcmpEngine(const IcmpConfig& cfg, FlowTable& table, DgramSockets& sockets,
                       Poller& poller, GuestLink& link)
    : impl_(std::make_unique<Impl>(cfg, table, sockets, poller, link)) {}

IcmpEngine::~IcmpEngine() {
    reset_all();
}

IcmpMode IcmpEngine::mode() const noexcept {
    return impl_->cfg.mode;
}

bool IcmpEngine::wants(Ipv4Addr dst) const noexcept {
    const IcmpConfig& cfg = impl_->cfg;
    if (dst == cfg.gateway) return false;  // the gateway answers its own echo requests
    if (cfg.host_alias && dst == *cfg.host_alias) return true;
    return !dst.is_broadcast() && !dst.is_multicast() && !dst.in_prefix(cfg.subnet, cfg.prefix_len);
}

void IcmpEngine::process_message(const IcmpMessageIn& msg, std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    const wire::Icmpv4View& icmp = msg.icmp;
    if (static_cast<std::uint8_t>(icmp.type()) != kEchoRequest || icmp.code() != 0 ||
        m.cfg.mode == IcmpMode::gateway) {
        m.c.unhandled.inc();
        return;
    }
    const auto guest_id = static_cast<std::uint16_t>(icmp.rest_of_header() >> 16);
    const FlowKey key{msg.ip.src(), msg.ip.dst(), guest_id, 0, IpProto::icmp};
    FlowId id = m.table.find(key);
    if (id == kNoFlow) {
        id = m.open_flow(msg, key);
        if (id == kNoFlow) return;
    }
    Impl::Flow& f = m.flows[id];
    f.guest = detail::GuestAddr{msg.guest_mac, msg.vlan, msg.in_port};
    f.last_ms = now_ms;
    m.lru.touch(id);
    const ByteView req = msg.ip.payload();
    int r;
    if (m.cfg.mode == IcmpMode::ping) {
        // The kernel puts the socket's own identifier and the checksum in.
        const iovec iov{const_cast<std::byte*>(req.data()), req.size()};
        r = m.socks.send_burst(f.fd, std::span(&iov, 1));
    } else {
        std::byte* copy = m.slots.get() + kRecvBurst * kSlot;
        std::copy(req.begin(), req.end(), copy);
        set_echo_id(copy, f.host_id);
        r = m.socks.send_to(m.raw_fd, f.host_dst, ByteView{copy, req.size()});
    }
    if (r <= 0) {
        m.c.send_errors.inc();
        return;
    }
    m.c.requests.inc();
}

void IcmpEngine::process_socket_event(FlowId id, std::uint32_t events,
                                      std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    if (id == kRawIcmpSocket) {
        if (m.raw_fd >= 0) m.receive_raw(m.cfg.slice);
        return;
    }
    if (id >= m.flows.size() || !m.flows[id].live || m.flows[id].fd < 0) return;
    Impl::Flow& f = m.flows[id];
    if ((events & sock_event::error) != 0) {
        m.drain_errors(id, f);
        if (!f.live) return;
    }
    if ((events & (sock_event::in | sock_event::error)) != 0) m.receive_ping(id, f, m.cfg.slice);
}

void IcmpEngine::on_tick(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    const auto t = static_cast<std::uint64_t>(m.cfg.timeout.count());
    while (!m.lru.empty()) {
        const FlowId id = m.lru.front();
        Impl::Flow& f = m.flows[id];
        if (now_ms - f.last_ms < t) break;
        m.c.flows_expired.inc();
        m.free_flow(id, f);
    }
}

bool IcmpEngine::has_pending() const noexcept {
    return impl_->raw_pending || !impl_->pending.empty();
}

void IcmpEngine::run_pending(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    if (m.raw_pending) m.receive_raw(m.cfg.slice);
    m.pending.drain([&](FlowId id) {
        Impl::Flow& f = m.flows[id];
        if (!f.pending) return true;
        f.pending = false;
        if (f.live) m.receive_ping(id, f, m.cfg.slice);
        return m.link.room() > kLinkReserve;
    });
}

bool IcmpEngine::evict_idle(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    const FlowId id = m.lru.front();
    if (id == kNoFlow || now_ms - m.flows[id].last_ms < m.cfg.evict_min_idle_ms) return false;
    m.c.flows_evicted.inc();
    m.free_flow(id, m.flows[id]);
    return true;
}

void IcmpEngine::reset_all() noexcept {
    Impl& m = *impl_;
    for (FlowId id = 0; id < m.flows.size(); ++id)
        if (m.flows[id].live) m.free_flow(id, m.flows[id]);
}

std::uint32_t IcmpEngine::flows() const noexcept {
    return impl_->live;
}

const IcmpCounters& IcmpEngine::counters() const noexcept {
    return impl_->c;
}

}  // namespace slipway::nat
