// UdpEngine: guest UDP flows onto connected host datagram sockets (theory of operation: udp.hpp).
#include "slipway/nat/udp.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <vector>

#include "flow_lists.hpp"
#include "guest_frames.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/virtio/net_hdr.hpp"
#include "slipway/nat/fragment.hpp"

namespace slipway::nat {

namespace {

constexpr std::size_t kMaxGather = 64;    // guest datagrams held per burst before a flush
constexpr std::size_t kRecvBurst = 32;    // datagrams per recvmmsg()
constexpr std::size_t kTail = 64 * 1024;  // overflow area per receive slot
constexpr std::size_t kLinkReserve = 8;   // ring slots kept for control frames
constexpr std::size_t kIpHdr = wire::kIpv4MinHeaderLen;
constexpr std::size_t kUdpHdr = wire::kUdpHeaderLen;

bool short_lived(std::uint16_t port) noexcept {
    return port == 53 || port == 123;  // DNS, NTP: one request, one answer
}

}  // namespace

struct UdpEngine::Impl {
    struct Flow {
        int fd = -1;
        bool live = false;
        bool pending = false;
        bool err_pending = false;  // its error queue may hold more than was relayed
        bool short_class = false;
        detail::GuestAddr guest;
        Ipv4Addr host_dst;  // where the socket is connected (the alias means 127.0.0.1)
        std::uint64_t last_ms = 0;
        bool inbound = false;  // a port forward's client mapping
        std::uint32_t tag = 0;
    };
    struct Gathered {
        FlowId id;
        iovec iov;
    };

    UdpConfig cfg;
    FlowTable& table;
    DgramSockets& socks;
    Poller& poller;
    GuestLink& link;
    UdpCounters c;
    std::vector<Flow> flows;
    detail::LruList lru_short, lru_long;
    std::uint32_t live = 0;
    detail::PendingQueue pending;
    std::array<Gathered, kMaxGather> gather{};
    std::size_t g_n = 0;
    std::unique_ptr<std::byte[]> tails;  // kRecvBurst overflow areas of kTail bytes
    // A datagram read but not yet delivered. Reads are sized so that the link and the pool could
    // take the fragments of every datagram read even if each were of the largest size; when not
    // even one would fit, flows read one at a time, and that one waits instead of being lost:
    // its fragments the link cannot take yet in the backlog, or, when the pool has no buffers
    // for them, its bytes in `held`. Either way its flow is pending and nothing more is read
    // until it went. At most one datagram waits, engine-wide.
    detail::FrameBacklog backlog;
    std::unique_ptr<std::byte[]> held;
    std::size_t held_len = 0;
    FlowId held_id = kNoFlow;
    std::uint64_t now = 0;
    std::uint16_t ip_id = 1;

    Impl(const UdpConfig& config, FlowTable& t, DgramSockets& s, Poller& p, GuestLink& l)
        : cfg(config),
          table(t),
          socks(s),
          poller(p),
          link(l),
          flows(t.capacity()),
          lru_short(t.capacity()),
          lru_long(t.capacity()),
          pending(t.capacity()),
          tails(std::make_unique<std::byte[]>(kRecvBurst * kTail)),
          held(std::make_unique<std::byte[]>(kTail + kTail)) {}

    detail::LruList& lru_of(const Flow& f) noexcept { return f.short_class ? lru_short : lru_long; }
    [[nodiscard]] std::uint64_t timeout_of(bool short_class) const noexcept {
        return static_cast<std::uint64_t>((short_class ? cfg.short_timeout : cfg.timeout).count());
    }

    [[nodiscard]] bool own_address(Ipv4Addr a) const noexcept {
        return a == cfg.gateway || (cfg.dns_addr && a == *cfg.dns_addr);
    }

    // ---- frames to the guest ----------------------------------------------------------------

    bool send_frame(PacketRef& r) noexcept {
        if (!link.push(r)) {
            c.drop_link_full.inc();
            return false;
        }
        return true;
    }

    // An ICMP error to the guest quoting `quote` (its datagram: IPv4 header onwards).
    void send_icmp(const detail::GuestAddr& to, Ipv4Addr src, Ipv4Addr guest_ip, std::uint8_t type,
                   std::uint8_t code, std::uint32_t rest, ByteView quote) noexcept {
        switch (detail::emit_icmp_error(link, cfg.gateway_mac, to, src, guest_ip, type, code, rest,
                                        quote, ip_id++)) {
            case detail::Emitted::sent:
                break;
            case detail::Emitted::no_buffer:
                c.drop_no_buffer.inc();
                break;
            case detail::Emitted::link_full:
                c.drop_link_full.inc();
                break;
        }
    }

    void refuse(const UdpDatagramIn& d, Ipv4Addr src, std::uint8_t code) noexcept {
        const detail::GuestAddr to{d.guest_mac, d.vlan, d.in_port};
        send_icmp(to, src, d.ip.src(), detail::kIcmpDestUnreachable, code, 0, d.ip.packet());
    }

    // ---- flows --------------------------------------------------------------------------------

    void free_flow(FlowId id, Flow& f) noexcept {
        if (f.fd >= 0) {
            poller.unwatch(f.fd);
            socks.close(f.fd);
        }
        lru_of(f).remove(id);
        // Inbound flows (port forwards) do not count against the guest's caps.
        if (cfg.limits && !f.inbound) cfg.limits->closed(table.key(id).guest_ip, false);
        for (std::size_t i = 0; i < g_n; ++i)
            if (gather[i].id == id) gather[i].id = kNoFlow;  // unsent: dropped with the flow
        if (held_id == id) held_id = kNoFlow;  // (backlog frames are built: they still go)
        f = Flow{};
        --live;
        table.erase(id);
    }

    FlowId open_flow(const UdpDatagramIn& d, const FlowKey& key) noexcept {
        const Ipv4Addr dst = key.remote_ip;
        if (own_address(dst)) {
            // RFC 1122 §3.2.2.1: a host answers a datagram to a port nobody listens on.
            c.port_unreachable.inc();
            refuse(d, dst, detail::kCodePortUnreachable);
            return kNoFlow;
        }
        const bool alias = cfg.host_alias && dst == *cfg.host_alias;
        if (!alias && (dst.is_unspecified() || dst.is_broadcast() || dst.is_multicast() ||
                       dst.is_loopback() || dst.in_prefix(cfg.subnet, cfg.prefix_len))) {
            c.denied.inc();
            return kNoFlow;
        }
        const auto refuse_with = [&](std::uint8_t code) { refuse(d, cfg.gateway, code); };
        const FlowId id = detail::admit_flow(cfg.policy, cfg.limits, table, key, cfg.host_alias,
                                             now, c, refuse_with);
        if (id == kNoFlow) return kNoFlow;
        const Ipv4Addr to = alias ? Ipv4Addr::from_octets(127, 0, 0, 1) : dst;
        const int fd = detail::open_flow_socket(socks, poller, table, id, 0, to, key.remote_port, c,
                                                refuse_with);
        if (fd < 0) return kNoFlow;
        Flow& f = flows[id];
        f = Flow{};
        f.fd = fd;
        f.live = true;
        f.short_class = short_lived(key.remote_port);
        f.guest = detail::GuestAddr{d.guest_mac, d.vlan, d.in_port};
        f.host_dst = to;
        f.last_ms = now;
        lru_of(f).push_back(id);
        ++live;
        if (cfg.limits) cfg.limits->opened(key.guest_ip, false);
        c.flows_opened.inc();
        return id;
    }

    void touch(FlowId id, Flow& f) noexcept {
        f.last_ms = now;
        lru_of(f).touch(id);
    }

    // ---- guest -> host ------------------------------------------------------------------------

    void send_run(FlowId id, std::span<const iovec> dgrams) noexcept {
        Flow& f = flows[id];
        std::size_t done = 0;
        bool retried = false;
        while (done < dgrams.size()) {
            const int r = socks.send_burst(f.fd, dgrams.subspan(done));
            if (r > 0) {
                for (std::size_t i = done; i < done + static_cast<std::size_t>(r); ++i)
                    c.bytes_to_host.add(dgrams[i].iov_len);
                c.datagrams_to_host.add(static_cast<std::uint64_t>(r));
                done += static_cast<std::size_t>(r);
                continue;
            }
            if (r == -EAGAIN || r == -ENOBUFS) {
                c.drop_send_full.add(dgrams.size() - done);
                return;
            }
            // An ICMP error that arrived since the last send is reported by this call instead of
            // sending (the error queue still holds its details for the guest): try once more.
            if (!retried && (r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ENETUNREACH)) {
                retried = true;
                continue;
            }
            c.send_errors.add(dgrams.size() - done);
            return;
        }
    }

    void flush_gather() noexcept {
        if (g_n == 0) return;
        // Group by flow, keeping each flow's order (insertion sort: stable, no allocation, and
        // the burst is small and usually sorted already).
        for (std::size_t i = 1; i < g_n; ++i) {
            const Gathered x = gather[i];
            std::size_t j = i;
            for (; j > 0 && gather[j - 1].id > x.id; --j)
                gather[j] = gather[j - 1];
            gather[j] = x;
        }
        std::array<iovec, kMaxGather> iov{};
        for (std::size_t i = 0; i < g_n;) {
            const FlowId id = gather[i].id;
            std::size_t n = 0;
            for (; i < g_n && gather[i].id == id; ++i)
                iov[n++] = gather[i].iov;
            if (id != kNoFlow && flows[id].live) send_run(id, std::span(iov).first(n));
        }
        g_n = 0;
    }

    // ---- host -> guest ------------------------------------------------------------------------

    void make_pending(FlowId id, Flow& f) noexcept {
        if (f.pending) return;
        f.pending = true;
        pending.push(id);
    }

    // Writes the UDP, IPv4 and Ethernet headers in front of the payload already at `off` in `r`
    // (it fits the guest MTU), with the checksum or the offload that stands for it.
    bool finish_in_place(PacketRef& r, const Flow& f, const FlowKey& k, std::size_t len) noexcept {
        const std::size_t l2 = detail::l2_len(f.guest.vlan.has_value());
        const std::size_t udp_len = kUdpHdr + len;
        const MutByteView out = r.room();
        std::byte* u = out.data() + l2 + kIpHdr;
        store_be16(u, k.remote_port);
        store_be16(u + 2, k.guest_port);
        store_be16(u + 4, static_cast<std::uint16_t>(udp_len));
        store_be16(u + 6, 0);
        if (!detail::emit_l2_l3(out, cfg.gateway_mac, f.guest, k.remote_ip, k.guest_ip,
                                IpProto::udp, udp_len, ip_id++, false) ||
            !r.set_len(l2 + kIpHdr + udp_len))
            return false;
        const std::uint32_t pseudo = pseudo_header_sum_v4(k.remote_ip, k.guest_ip, IpProto::udp,
                                                          static_cast<std::uint16_t>(udp_len));
        virtio::NetHdr& vh = r.meta().vnet;
        vh = virtio::NetHdr{};
        if (link.caps_of(f.guest.port).partial_csum) {
            // virtio 1.2 §5.1.6.2: the field holds the pseudo-header sum, the receiver the rest.
            store_be16(u + 6, csum_fold(pseudo));
            vh.flags = virtio::kNetHdrFNeedsCsum;
            vh.csum_start = static_cast<std::uint16_t>(l2 + kIpHdr);
            vh.csum_offset = 6;
        } else {
            const std::uint16_t cs = csum_finish(csum_partial(ByteView{u, udp_len}, pseudo));
            store_be16(u + 6, cs == 0 ? 0xffff : cs);  // RFC 768: a computed 0 goes as all ones
        }
        return true;
    }

    enum class Sent : std::uint8_t { yes, later, dropped };

    // A datagram longer than the guest MTU (or than the head buffer): its UDP header and its
    // two parts go out as IPv4 fragments. `later`: the pool cannot give every fragment a buffer
    // now (nothing was sent). Fragments the link cannot take now wait in the backlog.
    Sent deliver_fragmented(const Flow& f, const FlowKey& k, ByteView head,
                            ByteView tail) noexcept {
        const std::size_t len = head.size() + tail.size();
        const std::size_t udp_len = kUdpHdr + len;
        std::array<std::byte, kUdpHdr> uh{};
        store_be16(uh.data(), k.remote_port);
        store_be16(uh.data() + 2, k.guest_port);
        store_be16(uh.data() + 4, static_cast<std::uint16_t>(udp_len));
        std::uint32_t sum = pseudo_header_sum_v4(k.remote_ip, k.guest_ip, IpProto::udp,
                                                 static_cast<std::uint16_t>(udp_len));
        sum = csum_combine(sum, csum_partial(ByteView{uh}), 0);
        sum = csum_combine(sum, csum_partial(head), kUdpHdr);
        sum = csum_combine(sum, csum_partial(tail), kUdpHdr + head.size());
        const std::uint16_t cs = csum_finish(sum);
        store_be16(uh.data() + 6, cs == 0 ? 0xffff : cs);
        const std::array<ByteView, 3> pieces{ByteView{uh}, head, tail};
        const FragmentSpec spec{.dst_mac = f.guest.mac,
                                .src_mac = cfg.gateway_mac,
                                .vlan = f.guest.vlan,
                                .src = k.remote_ip,
                                .dst = k.guest_ip,
                                .proto = IpProto::udp,
                                .ident = ip_id++,
                                .ttl = 64,
                                .mtu = cfg.mtu};
        auto n = fragment_ipv4(link.pool(), spec, pieces, backlog.slots());
        if (!n) {
            if (n.error() == Errc::pool_exhausted) return Sent::later;  // nothing was sent
            c.drop_truncated.inc();
            return Sent::dropped;
        }
        c.fragments_to_guest.add(*n);
        c.datagrams_to_guest.inc();
        c.bytes_to_guest.add(len);
        backlog.set(*n);
        (void)flush_backlog();
        return Sent::yes;
    }

    // Sends what waits in the backlog: true when it is empty.
    bool flush_backlog() noexcept {
        return backlog.flush([this](PacketRef& r) { return link.push(r); });
    }

    // What was read but not delivered goes first: true when nothing waits any more.
    bool deliver_waiting() noexcept {
        if (!flush_backlog()) return false;
        if (held_id == kNoFlow) return true;
        const Flow& f = flows[held_id];
        if (f.live && deliver_fragmented(f, table.key(held_id), ByteView{held.get(), held_len},
                                         {}) == Sent::later)
            return false;
        held_id = kNoFlow;
        return flush_backlog();
    }

    // Reads up to `budget` datagrams of flow `id` and sends them to the guest.
    void receive(FlowId id, Flow& f, std::uint32_t budget) noexcept {
        if (!deliver_waiting()) {
            make_pending(id, f);
            return;
        }
        if (f.err_pending) {
            drain_errors(id, f);
            if (!f.live || f.err_pending) return;
        }
        const FlowKey k = table.key(id);
        const std::size_t off = detail::l2_len(f.guest.vlan.has_value()) + kIpHdr + kUdpHdr;
        const std::size_t max_payload = std::min<std::size_t>(cfg.mtu, 65535) - kIpHdr - kUdpHdr;
        int errors = 0;
        while (budget > 0) {
            const std::size_t room = link.room();
            if (room <= kLinkReserve) {
                link.flush();
                make_pending(id, f);
                return;
            }
            // No more than the link and the pool could take if every datagram were of the largest
            // size, so none read is lost for want of room for its fragments; when not even one
            // such would fit, one at a time, and one that cannot go out is held (below).
            const std::size_t fit = detail::datagrams_that_fit(link.pool(), room - kLinkReserve,
                                                               cfg.mtu, f.guest.vlan.has_value());
            const std::size_t want =
                std::min<std::size_t>({kRecvBurst, budget, std::max<std::size_t>(fit, 1)});
            std::array<PacketRef, kRecvBurst> bufs;
            const std::size_t got =
                link.pool().try_alloc_burst(SizeClass::small, std::span(bufs).first(want));
            if (got == 0) {
                c.drop_no_buffer.inc();  // the datagrams wait in the socket: not lost yet
                make_pending(id, f);
                return;
            }
            std::array<DgramIn, kRecvBurst> msgs{};
            for (std::size_t i = 0; i < got; ++i) {
                const MutByteView r = bufs[i].room();
                // An even head, so the checksum of head and tail combine without a byte swap.
                const std::size_t cap = (r.size() - off) & ~std::size_t{1};
                msgs[i].head = iovec{r.data() + off, cap};
                msgs[i].tail = iovec{tails.get() + i * kTail, kTail};
            }
            const int n = socks.recv_burst(f.fd, std::span(msgs).first(got));
            if (n < 0) {
                // A pending error (ECONNREFUSED, ...) comes before the data: its details wait in
                // the error queue.
                drain_errors(id, f);
                if (!f.live || ++errors > 2) return;
                continue;
            }
            for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
                const std::size_t len = msgs[i].len;
                const std::size_t head = msgs[i].head.iov_len;
                if (!backlog.empty()) {
                    c.drop_link_full.inc();  // not expected: the read was sized for the worst case
                    continue;
                }
                if (len > head + kTail) {
                    c.drop_truncated.inc();
                    continue;
                }
                if (len <= head && len <= max_payload) {
                    if (!finish_in_place(bufs[i], f, k, len)) {
                        c.drop_truncated.inc();
                        continue;
                    }
                    if (send_frame(bufs[i])) {
                        c.datagrams_to_guest.inc();
                        c.bytes_to_guest.add(len);
                    }
                    continue;
                }
                const auto* h = static_cast<const std::byte*>(msgs[i].head.iov_base);
                const ByteView hv{h, std::min(len, head)};
                const ByteView tv{tails.get() + i * kTail, len > head ? len - head : 0};
                const Sent sent = deliver_fragmented(f, k, hv, tv);
                if (sent == Sent::dropped || (sent == Sent::yes && backlog.empty())) continue;
                const bool last = i + 1 == static_cast<std::size_t>(n);
                if (sent == Sent::later) {
                    if (!last) {
                        // Not expected: the read was sized for the worst case.
                        c.drop_no_buffer.inc();
                        continue;
                    }
                    std::copy(hv.begin(), hv.end(), held.get());
                    std::copy(tv.begin(), tv.end(), held.get() + hv.size());
                    held_len = len;
                    held_id = id;
                }
                if (!last) continue;  // (backlog: the datagrams after it are counted above)
                // Read one at a time (fit was 0), so this is the last of its read: it waits (its
                // fragments in the backlog, or its bytes held for want of buffers) and nothing
                // more is read until it went.
                touch(id, f);
                make_pending(id, f);
                return;
            }
            if (n > 0) touch(id, f);
            budget -= std::min<std::uint32_t>(budget, static_cast<std::uint32_t>(n));
            if (static_cast<std::size_t>(n) < got) return;  // drained
        }
        make_pending(id, f);  // more may be waiting: the next turn reads on
    }

    // ICMP errors about the flow, from its socket's error queue, passed on to the guest.
    void drain_errors(FlowId id, Flow& f) noexcept {
        const FlowKey k = table.key(id);
        f.err_pending = !detail::drain_error_queue(
            socks, link, f.fd, [&](const SockError& e, std::uint32_t rest) {
                // The guest's datagram as it sent it: its IPv4 and UDP headers, then what the error
                // quoted of the payload.
                std::array<std::byte, kIpHdr + kUdpHdr + sizeof e.data> q{};
                const std::size_t dlen = std::min(e.data_len, e.data.size());
                wire::Ipv4Repr ip;
                ip.src = k.guest_ip;
                ip.dst = k.remote_ip;
                ip.protocol = IpProto::udp;
                ip.payload_len = static_cast<std::uint16_t>(kUdpHdr + dlen);
                if (!ip.emit(q)) return;
                store_be16(q.data() + kIpHdr, k.guest_port);
                store_be16(q.data() + kIpHdr + 2, k.remote_port);
                store_be16(q.data() + kIpHdr + 4, static_cast<std::uint16_t>(kUdpHdr + dlen));
                std::copy_n(e.data.begin(), dlen, q.begin() + kIpHdr + kUdpHdr);
                send_icmp(
                    f.guest, detail::relay_source(e.offender, f.host_dst, k.remote_ip, cfg.gateway),
                    k.guest_ip, e.type, e.code, rest, ByteView{q.data(), kIpHdr + kUdpHdr + dlen});
                c.icmp_relayed.inc();
            });
        if (f.err_pending) make_pending(id, f);
    }

    bool expire_heads(detail::LruList& l, bool short_class) noexcept {
        const std::uint64_t t = timeout_of(short_class);
        bool any = false;
        while (!l.empty()) {
            const FlowId id = l.front();
            Flow& f = flows[id];
            if (now - f.last_ms < t) break;
            c.flows_expired.inc();
            free_flow(id, f);
            any = true;
        }
        return any;
    }
};

// ---- public -----------------------------------------------------------------------------------

UdpEngine::UdpEngine(const UdpConfig& cfg, FlowTable& table, DgramSockets& sockets, Poller& poller,
                     GuestLink& link)
    : impl_(std::make_unique<Impl>(cfg, table, sockets, poller, link)) {}

UdpEngine::~UdpEngine() {
    reset_all();
}

bool UdpEngine::wants(Ipv4Addr dst) const noexcept {
    const UdpConfig& cfg = impl_->cfg;
    if (impl_->own_address(dst)) return true;
    if (cfg.host_alias && dst == *cfg.host_alias) return true;
    return !dst.is_broadcast() && !dst.is_multicast() && !dst.in_prefix(cfg.subnet, cfg.prefix_len);
}

void UdpEngine::process_datagram(const UdpDatagramIn& d, std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    const FlowKey key{d.ip.src(), d.ip.dst(), d.udp.src_port().v, d.udp.dst_port().v, IpProto::udp};
    if (key.guest_port == 0 || key.remote_port == 0) {
        m.c.drop_malformed.inc();  // no socket can send from or to port 0
        return;
    }
    FlowId id = m.table.find(key);
    if (id == kNoFlow) {
        id = m.open_flow(d, key);
        if (id == kNoFlow) return;
    }
    Impl::Flow& f = m.flows[id];
    // The guest may have moved (a new MAC or switch port after a restart): answer where it is.
    f.guest = detail::GuestAddr{d.guest_mac, d.vlan, d.in_port};
    m.touch(id, f);
    if (m.g_n == m.gather.size()) m.flush_gather();
    const ByteView p = d.udp.payload();
    m.gather[m.g_n++] = {id, iovec{const_cast<std::byte*>(p.data()), p.size()}};
}

void UdpEngine::end_burst(std::uint64_t now_ms) noexcept {
    impl_->now = now_ms;
    impl_->flush_gather();
}

void UdpEngine::process_socket_event(FlowId id, std::uint32_t events,
                                     std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    if (id >= m.flows.size() || !m.flows[id].live) return;  // stale event of a freed flow
    Impl::Flow& f = m.flows[id];
    if ((events & sock_event::error) != 0) {
        m.drain_errors(id, f);
        if (!f.live) return;
    }
    if ((events & (sock_event::in | sock_event::error)) != 0) m.receive(id, f, m.cfg.slice);
}

void UdpEngine::on_tick(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    (void)m.expire_heads(m.lru_short, true);
    (void)m.expire_heads(m.lru_long, false);
}

bool UdpEngine::has_pending() const noexcept {
    return !impl_->pending.empty();
}

void UdpEngine::run_pending(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    m.pending.drain([&](FlowId id) {
        Impl::Flow& f = m.flows[id];
        if (!f.pending) return true;
        f.pending = false;
        if (f.live) m.receive(id, f, m.cfg.slice);
        return m.link.room() > kLinkReserve;
    });
}

bool UdpEngine::evict_idle(std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    FlowId best = kNoFlow;
    for (const detail::LruList* l : {&m.lru_short, &m.lru_long}) {
        const FlowId id = l->front();
        if (id != kNoFlow && (best == kNoFlow || m.flows[id].last_ms < m.flows[best].last_ms))
            best = id;
    }
    if (best == kNoFlow || now_ms - m.flows[best].last_ms < m.cfg.evict_min_idle_ms) return false;
    m.c.flows_evicted.inc();
    m.free_flow(best, m.flows[best]);
    return true;
}

void UdpEngine::reset_all() noexcept {
    Impl& m = *impl_;
    m.g_n = 0;
    for (FlowId id = 0; id < m.flows.size(); ++id)
        if (m.flows[id].live) m.free_flow(id, m.flows[id]);
}

std::uint32_t UdpEngine::flows() const noexcept {
    return impl_->live;
}

const UdpCounters& UdpEngine::counters() const noexcept {
    return impl_->c;
}

void UdpEngine::for_each_flow(std::uint64_t now_ms,
                              const std::function<void(const UdpFlowInfo&)>& fn) const {
    const Impl& m = *impl_;
    for (FlowId id = 0; id < m.flows.size(); ++id) {
        const Impl::Flow& f = m.flows[id];
        if (f.live)
            fn(UdpFlowInfo{m.table.key(id), f.fd, now_ms - std::min(now_ms, f.last_ms), f.inbound,
                           f.tag});
    }
}

FlowId UdpEngine::open_inbound(const UdpInbound& in, std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    const auto refuse = [&] {
        m.c.drop_limit.inc();
        m.socks.close(in.fd);
        return kNoFlow;
    };
    if (m.table.find(in.key) != kNoFlow) return refuse();
    Result<FlowId> ins =
        m.cfg.limits ? m.cfg.limits->insert(m.table, in.key, now_ms) : m.table.insert(in.key);
    if (!ins) return refuse();
    const FlowId id = *ins;
    if (!m.table.bind_fd(id, in.fd) || !m.poller.watch(in.fd, id, sock_event::in)) {
        m.table.erase(id);
        m.c.socket_failed.inc();
        m.socks.close(in.fd);
        return kNoFlow;
    }
    Impl::Flow& f = m.flows[id];
    f = Impl::Flow{};
    f.fd = in.fd;
    f.live = true;
    f.inbound = true;
    f.tag = in.tag;
    f.host_dst = in.peer;
    f.guest = detail::GuestAddr{in.guest_mac, in.vlan, in.in_port};
    f.last_ms = now_ms;
    m.lru_of(f).push_back(id);
    ++m.live;
    m.c.flows_opened.inc();
    return id;
}

bool UdpEngine::deliver(FlowId id, ByteView payload, std::uint64_t now_ms) noexcept {
    Impl& m = *impl_;
    m.now = now_ms;
    if (id >= m.flows.size() || !m.flows[id].live) return false;
    Impl::Flow& f = m.flows[id];
    if (payload.size() > 65535 - kIpHdr - kUdpHdr) {
        m.c.drop_truncated.inc();
        return false;
    }
    if (m.link.room() <= kLinkReserve || !m.deliver_waiting()) {
        m.c.drop_link_full.inc();  // UDP: the client's retransmission is the recovery
        return false;
    }
    m.touch(id, f);
    // One path for every size: a datagram that fits the MTU leaves as one whole fragment.
    switch (m.deliver_fragmented(f, m.table.key(id), payload, {})) {
        case Impl::Sent::yes:
            // Fragments the link could not take yet wait in the backlog: the pending turn sends
            // them (as receive() arranges for its own).
            if (!m.backlog.empty()) m.make_pending(id, f);
            return true;
        case Impl::Sent::later:
            m.c.drop_no_buffer.inc();
            return false;
        case Impl::Sent::dropped:
            return false;
    }
    return false;
}

std::uint32_t UdpEngine::reset_tagged(std::uint32_t tag) noexcept {
    Impl& m = *impl_;
    std::uint32_t n = 0;
    for (FlowId id = 0; id < m.flows.size(); ++id) {
        Impl::Flow& f = m.flows[id];
        if (!f.live || !f.inbound || f.tag != tag) continue;
        m.free_flow(id, f);
        ++n;
    }
    return n;
}

int UdpEngine::fd_of(FlowId id) const noexcept {
    const Impl& m = *impl_;
    return id < m.flows.size() && m.flows[id].live ? m.flows[id].fd : -1;
}

}  // namespace slipway::nat
