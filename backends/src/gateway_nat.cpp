// UserspaceGateway's NAT driver: hands guest TCP segments to the engine and drives it from the
// network thread's loop — host socket readiness (one epoll set, itself watched by the loop), a
// 10 ms tick for its timers while flows exist, and pending sends that a full ring cut short.
#include <boost/asio/post.hpp>
#include <chrono>

#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/switch.hpp"

namespace slipway::backends {

namespace {
constexpr auto kTick = std::chrono::milliseconds(10);
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
    poller_ = std::make_unique<nat::EpollPoller>();
    tcp_ = std::make_unique<nat::TcpEngine>(cfg.tcp, *flows_, *socks_, *poller_,
                                            static_cast<nat::GuestLink&>(*this));
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
    tcp_->reset_all();
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

// ---- driver -----------------------------------------------------------------------------------

void UserspaceGateway::process_tcp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept {
    const wire::Ipv4View& ip = *f.ipv4;
    if (!ip.header_checksum_ok() || f.ip_fragment) {
        gw_.drop_malformed.inc();  // TCP is never fragmented by a sane guest (it sets DF)
        return;
    }
    const Ipv4Addr src = ip.src();
    if (src.is_multicast() || src.is_broadcast() || src.is_unspecified() || src.is_loopback() ||
        f.eth.src().is_multicast()) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.tcp_handled.inc();
    tcp_->process_segment(nat::TcpSegmentIn{.guest_mac = f.eth.src(),
                                            .vlan = f.eth.vlan(),
                                            .in_port = frame.meta().in_port,
                                            .ip = ip,
                                            .tcp = *f.tcp},
                          burst_ms_);
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
        for (std::size_t i = 0; i < n; ++i)
            tcp_->process_socket_event(ev[i].id, ev[i].events, now);
        more = n == ev.size();
        if (!more) break;
    }
    tcp_->end_burst(now_ms());  // after up to 16 x 64 events: the clock has moved
    flush();
    if (tcp_->has_pending()) schedule_pending();
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
    const std::uint32_t live = tcp_->flows_in(nat::TcpState::connecting) +
                               tcp_->flows_in(nat::TcpState::established) +
                               tcp_->flows_in(nat::TcpState::closing);
    if (live == 0) return;  // no flows, no timers: the loop sleeps
    tick_armed_ = true;
    tick_->expires_after(kTick);
    tick_->async_wait([this, alive = alive_](const boost::system::error_code& ec) {
        if (!*alive || ec) return;
        tick_armed_ = false;
        tcp_->on_tick(now_ms());
        flush();
        if (tcp_->has_pending()) schedule_pending();
        arm_tick();
    });
}

void UserspaceGateway::schedule_pending() noexcept {
    if (pending_posted_ || nat_stopped_) return;
    pending_posted_ = true;
    boost::asio::post(*io_, [this, alive = alive_] {
        if (!*alive) return;
        pending_posted_ = false;
        tcp_->run_pending(now_ms());
        flush();
        if (tcp_->has_pending()) schedule_pending();
    });
}

}  // namespace slipway::backends
