// UserspaceGateway's NAT driver: hands guest TCP segments, UDP datagrams and ICMP echo requests
// (reassembled first when they came in fragments) to the engines, which share one flow table,
// one set of per-guest limits and one egress policy, and drives them from the network thread's
// loop — host socket readiness (one epoll set for every engine's sockets, itself watched by the
// loop; each event carries its flow id, whose key says which engine owns it), a 10 ms tick while
// TCP flows exist (a 1 s one while only datagram flows or reassemblies do), and pending reads
// that a full ring cut short.
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <chrono>

#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/switch.hpp"

namespace slipway::backends {

namespace {
constexpr auto kTick = std::chrono::milliseconds(10);
constexpr auto kSlowTick = std::chrono::milliseconds(1000);
constexpr std::size_t kEventBurst = 64;
constexpr int kEventRounds = 16;  // bursts per loop turn before yielding to the other handlers
}  // namespace

UserspaceGateway::~UserspaceGateway() {
    stop_nat();
}

std::uint64_t UserspaceGateway::now_ms() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

void UserspaceGateway::enable_nat(IoContext& io, const Switch& sw, const NatConfig& cfg) {
    io_ = &io;
    sw_ = &sw;
    flows_ = std::make_unique<nat::FlowTable>(
        nat::FlowTableConfig{.capacity = cfg.max_flows, .max_fd = cfg.max_fd});
    socks_ = std::make_unique<nat::LinuxSockets>(cfg.peek_off);
    dsocks_ = std::make_unique<nat::LinuxDgramSockets>();
    poller_ = std::make_unique<nat::EpollPoller>();
    policy_ = std::make_unique<nat::EgressPolicy>(cfg.policy);
    limits_ = std::make_unique<nat::FlowLimits>(cfg.limits);
    auto& link = static_cast<nat::GuestLink&>(*this);
    subnet_ = cfg.tcp.subnet;
    prefix_len_ = cfg.tcp.prefix_len;
    fwd_ = std::make_unique<portfwd::Forwarder>(io, static_cast<portfwd::InboundSink&>(*this));
    waiting_.reserve(256);
    waiting_timer_ = std::make_unique<boost::asio::steady_timer>(io);
    nat::TcpConfig tc = cfg.tcp;
    tc.limits = limits_.get();
    tc.policy = policy_.get();
    tc.on_inbound_refused = [this](std::uint32_t tag) { fwd_->note_refused(tag); };
    tcp_ = std::make_unique<nat::TcpEngine>(tc, *flows_, *socks_, *poller_, link);
    nat::UdpConfig uc = cfg.udp;
    uc.limits = limits_.get();
    uc.policy = policy_.get();
    udp_ = std::make_unique<nat::UdpEngine>(uc, *flows_, *dsocks_, *poller_, link);
    nat::IcmpConfig ic = cfg.icmp;
    ic.limits = limits_.get();
    ic.policy = policy_.get();
    icmp_ = std::make_unique<nat::IcmpEngine>(ic, *flows_, *dsocks_, *poller_, link);
    reasm_ = std::make_unique<nat::Reassembler>(pool_, cfg.reassembly);
    // A full table gives up the datagram flow idle longest (UDP or ICMP) for a new flow.
    limits_->set_evictor(
        [this](std::uint64_t now) { return udp_->evict_idle(now) || icmp_->evict_idle(now); });
    epoll_watch_ = std::make_unique<FdWatcher>(io, poller_->fd());
    tick_ = std::make_unique<boost::asio::steady_timer>(io);
    arm_sockets();
}

void UserspaceGateway::stop_nat() noexcept {
    if (!tcp_ || nat_stopped_) return;
    nat_stopped_ = true;
    *alive_ = false;
    if (epoll_watch_) epoll_watch_->release();
    if (tick_) tick_->cancel();
    if (waiting_timer_) waiting_timer_->cancel();
    fwd_->clear();  // the forwarded ports refuse from now on
    for (const WaitingClient& w : waiting_)
        ::close(w.fd);
    waiting_.clear();
    tcp_->reset_all();
    udp_->reset_all();
    icmp_->reset_all();
    flush();
}

// ---- nat::GuestLink ---------------------------------------------------------------------------

std::size_t UserspaceGateway::room() noexcept {
    const std::size_t used = to_switch().size_approx();
    const std::size_t cap = to_switch().capacity();
    return used < cap ? cap - used : 0;
}

bool UserspaceGateway::dispatch(PacketRef& frame) noexcept {
    frame.meta().in_port = id();
    if (!to_switch().try_push(std::move(frame))) return false;
    ++replies_in_burst_;
    return true;
}

void UserspaceGateway::flush() noexcept {
    if (replies_in_burst_ == 0) return;
    replies_in_burst_ = 0;
    notify_switch();
}

PortCaps UserspaceGateway::caps_of(std::uint16_t port) noexcept {
    if (sw_ != nullptr) {
        const auto ports = sw_->ports();
        if (port < ports.size() && ports[port] != nullptr) return ports[port]->caps();
    }
    return PortCaps{};  // unknown port: plain MTU-sized, fully checksummed frames
}

std::size_t UserspaceGateway::room_to(std::uint16_t port) noexcept {
    const std::size_t own = room();
    if (sw_ == nullptr) return own;
    const auto ports = sw_->ports();
    if (port >= ports.size() || ports[port] == nullptr) return own;
    // The switch pushes our frames into the port's queue, and drops what does not fit there
    // (drop_ring_full): the TCP engine must not send a guest more than its queue takes. Frames
    // still in our own ring may all be for this port, so they count against its room too.
    // size_approx() is read from the producer's side (this thread runs the switch), so it can
    // only overstate what is queued: the room is never overstated.
    const SpscRing<PacketRef>& q = ports[port]->to_port();
    const std::size_t queued = q.size_approx() + to_switch().size_approx();
    return std::min(own, queued < q.capacity() ? q.capacity() - queued : std::size_t{0});
}

// ---- driver -----------------------------------------------------------------------------------

void UserspaceGateway::process_tcp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept {
    const wire::Ipv4View& ip = *f.ipv4;
    if (!nat_ingress_ok(f)) return;
    gw_.tcp_handled.inc();
    tcp_->process_segment(nat::TcpSegmentIn{.guest_mac = f.eth.src(),
                                            .vlan = f.eth.vlan(),
                                            .in_port = frame.meta().in_port,
                                            .ip = ip,
                                            .tcp = *f.tcp},
                          burst_ms_);
}

bool UserspaceGateway::nat_ingress_ok(const wire::ParsedFrame& f) noexcept {
    const wire::Ipv4View& ip = *f.ipv4;
    const Ipv4Addr src = ip.src();
    // Reassembly came first, so a fragment here is not whole; a source an answer could not go
    // back to (or one of ours) opens no flow.
    if (!ip.header_checksum_ok() || f.ip_fragment || src.is_multicast() || src.is_broadcast() ||
        src.is_unspecified() || src.is_loopback() || f.eth.src().is_multicast() || owns(src)) {
        gw_.drop_malformed.inc();
        return false;
    }
    return true;
}

void UserspaceGateway::process_udp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept {
    if (!nat_ingress_ok(f)) return;
    if (!udp_checksum_ok(frame, f)) {
        gw_.drop_bad_checksum.inc();
        return;
    }
    gw_.udp_handled.inc();
    udp_->process_datagram(nat::UdpDatagramIn{.guest_mac = f.eth.src(),
                                              .vlan = f.eth.vlan(),
                                              .in_port = frame.meta().in_port,
                                              .ip = *f.ipv4,
                                              .udp = *f.udp},
                           burst_ms_);
}

void UserspaceGateway::process_icmp_nat(const PacketRef& frame,
                                        const wire::ParsedFrame& f) noexcept {
    if (!nat_ingress_ok(f)) return;
    if (!f.icmpv4->checksum_ok()) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.icmp_handled.inc();
    icmp_->process_message(nat::IcmpMessageIn{.guest_mac = f.eth.src(),
                                              .vlan = f.eth.vlan(),
                                              .in_port = frame.meta().in_port,
                                              .ip = *f.ipv4,
                                              .icmp = *f.icmpv4},
                           burst_ms_);
}

void UserspaceGateway::process_fragment(const PacketRef& frame,
                                        const wire::ParsedFrame& f) noexcept {
    if (!f.ipv4->header_checksum_ok()) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.fragments.inc();
    auto whole = reasm_->process(frame, *f.ipv4, burst_ms_);
    if (!whole) return;
    // The datagram is complete: it goes through the same rules as one that came whole. The
    // engines may hold views into it until their burst ends, so end it now, before it goes.
    process_frame(*whole);
    end_nat_burst(burst_ms_);
}

void UserspaceGateway::end_nat_burst(std::uint64_t now) noexcept {
    tcp_->end_burst(now);
    udp_->end_burst(now);
}

bool UserspaceGateway::nat_pending() const noexcept {
    return tcp_->has_pending() || udp_->has_pending() || icmp_->has_pending();
}

void UserspaceGateway::run_nat_pending(std::uint64_t now) noexcept {
    if (tcp_->has_pending()) tcp_->run_pending(now);
    if (udp_->has_pending()) udp_->run_pending(now);
    if (icmp_->has_pending()) icmp_->run_pending(now);
}

void UserspaceGateway::arm_sockets() noexcept {
    if (nat_stopped_) return;
    epoll_watch_->wait_readable([this, alive = alive_](bool ok) {
        if (!*alive || !ok) return;
        on_sockets();
    });
}

void UserspaceGateway::on_sockets() noexcept {
    std::array<nat::SocketEvent, kEventBurst> ev;
    bool more = false;
    for (int round = 0; round < kEventRounds; ++round) {
        const std::size_t n = poller_->poll_burst(ev);
        const std::uint64_t now = now_ms();
        for (std::size_t i = 0; i < n; ++i) {
            const nat::FlowId id = ev[i].id;
            if (id == nat::kRawIcmpSocket) {
                icmp_->process_socket_event(id, ev[i].events, now);
                continue;
            }
            if (!flows_->in_use(id)) continue;  // a stale event of a flow freed meanwhile
            switch (flows_->key(id).proto) {
                case IpProto::tcp:
                    tcp_->process_socket_event(id, ev[i].events, now);
                    break;
                case IpProto::udp:
                    udp_->process_socket_event(id, ev[i].events, now);
                    break;
                case IpProto::icmp:
                    icmp_->process_socket_event(id, ev[i].events, now);
                    break;
                default:
                    break;
            }
        }
        more = n == ev.size();
        if (!more) break;
    }
    tcp_->end_burst(now_ms());  // after up to 16 x 64 events: the clock has moved
    flush();
    if (nat_pending()) schedule_pending();
    arm_tick();
    if (more) {
        // Events left in the epoll set raise no new edge for the loop: come back at once.
        boost::asio::post(*io_, [this, alive = alive_] {
            if (*alive) on_sockets();
        });
        return;
    }
    arm_sockets();
}

void UserspaceGateway::arm_tick() noexcept {
    if (tick_armed_ || nat_stopped_) return;
    const std::uint32_t tcp_live =
        tcp_->flows_in(nat::TcpState::connecting) + tcp_->flows_in(nat::TcpState::established) +
        tcp_->flows_in(nat::TcpState::closing) + tcp_->flows_in(nat::TcpState::syn_sent);
    const bool slow = udp_->flows() != 0 || icmp_->flows() != 0 || reasm_->in_progress() != 0;
    if (tcp_live == 0 && !slow) return;  // no flows, no timers: the loop sleeps
    tick_armed_ = true;
    tick_->expires_after(tcp_live != 0 ? kTick : kSlowTick);
    tick_->async_wait([this, alive = alive_](const boost::system::error_code& ec) {
        if (!*alive || ec) return;
        tick_armed_ = false;
        const std::uint64_t now = now_ms();
        tcp_->on_tick(now);
        if (now - last_slow_tick_ >= static_cast<std::uint64_t>(kSlowTick.count()) / 2) {
            last_slow_tick_ = now;
            udp_->on_tick(now);
            icmp_->on_tick(now);
            reasm_->expire(now);
        }
        flush();
        if (nat_pending()) schedule_pending();
        arm_tick();
    });
}

void UserspaceGateway::schedule_pending() noexcept {
    if (pending_posted_ || nat_stopped_) return;
    pending_posted_ = true;
    boost::asio::post(*io_, [this, alive = alive_] {
        if (!*alive) return;
        pending_posted_ = false;
        run_nat_pending(now_ms());
        flush();
        if (nat_pending()) schedule_pending();
    });
}

}  // namespace slipway::backends
