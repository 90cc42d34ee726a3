// VirtioNetDevice: the virtio-net data path over one RX/TX split virtqueue pair (virtio 1.2 §5.1),
// for the vhost-user attachment and the embedding API's in-process virtqueues.
//
// Theory of operation
// -------------------
// The device runs on the network thread. Each queue's kick eventfd is watched by the network's
// io_context; a kick (or a frame from the switch, for RX) starts a pass over the queue. Passes
// work in bursts of kBurst chains and, after a full burst, post their own continuation so that one
// busy guest does not starve the rest of the loop.
//
// TX (guest -> switch). Each chain is `virtio_net_hdr` (12 bytes with VERSION_1 or MRG_RXBUF, 10
// otherwise; §5.1.6) followed by the Ethernet frame, in any split over descriptors. The header is
// gathered and checked: it may ask only for offloads the driver negotiated (GSO TCPv4 with
// HOST_TSO4, TCPv6 with HOST_TSO6, a partial checksum with CSUM; §5.1.6.2), and a partial checksum
// must lie inside the frame. The frame is then copied once, straight from guest memory, into a pool
// buffer sized for it (the only copy on TX), the chain is returned as used with length 0, and the
// burst goes to the switch. Chains that fail a check are returned and counted, never forwarded.
// While a pass runs the device tells the driver not to kick; when the ring is drained it asks for
// kicks again and re-checks for buffers that raced in (SplitQueue::enable_notify, §2.7.10).
//
// RX (switch -> guest). Frames wait in the port's ring. For each frame the device takes as many RX
// chains as it needs — with MRG_RXBUF several (§5.1.6.4: num_buffers in the first header), without
// it one chain that must hold header + frame — writes the header (offload fields as the switch
// left them: GSO only reaches a port whose caps say it takes GSO, a partial checksum only one that
// negotiated GUEST_CSUM) and copies the frame once into the guest's buffers. When the guest has
// posted too few buffers the chains taken so far are given back (unpop), the frame stays first in
// line, the device asks for a kick on the RX queue and counts rx_no_buffers; the port's ring is the
// only queue, so a guest that stops reading costs drop_ring_full at the switch, bounded by the
// ring. A frame larger than all the buffers the guest could ever post (without MRG_RXBUF: larger
// than one chain) is dropped and counted (rx_too_big). GSO kinds the guest did not negotiate (UDP
// GSO from a TAP guest, say) are segmented here with segment_gso().
//
// Interrupts go out once per pass, after publish_used(), when should_notify() says the driver
// wants one (EVENT_IDX used_event or the NO_INTERRUPT flag).
//
// A queue the SplitQueue marks broken (hostile or buggy driver: an index or address outside what
// the guest may name) stops being serviced: its kick is no longer watched, queue_broken counts it,
// frames for a broken or stopped RX queue are dropped as drop_io so they do not pin pool buffers.
// The owner restarts the queue (vhost-user: a new session or SET_VRING_* again).
#include "slipway/guest/virtio_net.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "attachment_impl.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/offload.hpp"

namespace slipway::guest {

PortCaps caps_for_features(std::uint64_t features, std::uint32_t mtu) noexcept {
    PortCaps c;
    c.gso = (features & vfeat::guest_tso4) != 0 && (features & vfeat::guest_tso6) != 0 &&
            (features & vfeat::guest_csum) != 0;  // GSO frames carry partial checksums
    c.partial_csum = (features & vfeat::guest_csum) != 0;
    c.max_frame = mtu + 14;
    return c;
}

namespace {

using detail::AliveToken;
using detail::kBurst;
constexpr std::size_t kMaxMerge = 64;          // RX chains one frame may take (MRG_RXBUF)
constexpr std::size_t kMaxSegmentsOut = 1024;  // as the switch: 64 KiB at an MSS of 64
constexpr std::size_t kMaxTxFrame = detail::kMaxWireFrame;  // Ethernet frame, no header

void signal_fd(int fd) noexcept {
    if (fd < 0) return;
    const std::uint64_t one = 1;
    // EAGAIN means the counter is at its maximum: the driver is going to see it anyway.
    [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
}

}  // namespace

struct VirtioNetDevice::Impl {
    struct Queue {
        virtio::SplitQueue vq;
        UniqueFd kick, call;
        std::unique_ptr<FdWatcher> w;
        AliveToken tok;
        bool posted = false;
        bool running = false;
    };

    VirtioNetDevice& dev;
    IoContext& io;
    PacketPool& pool;
    SwitchPort& port;
    std::string name;
    std::uint32_t mtu;
    std::array<Queue, 2> q;
    std::size_t hdr_len = virtio::kNetHdrV1Len;
    bool mrg = false;

    // TX staging.
    virtio::Chain chain;
    std::array<PacketRef, kBurst> burst;
    // RX: the frame at the head of the line, the chains taken for it, segments of a GSO frame the
    // guest cannot take whole.
    PacketRef rx_frame;
    std::unique_ptr<virtio::Chain[]> rx_chains = std::make_unique<virtio::Chain[]>(kMaxMerge);
    std::unique_ptr<PacketRef[]> segs = std::make_unique<PacketRef[]>(kMaxSegmentsOut);
    std::size_t seg_n = 0, seg_idx = 0;
    bool rx_posted = false;
    AliveToken rx_tok = detail::new_token();

    Impl(VirtioNetDevice& d, IoContext& i, PacketPool& p, SwitchPort& sp, std::string n,
         std::uint32_t m)
        : dev(d), io(i), pool(p), port(sp), name(std::move(n)), mtu(m) {
        q[kRxQueue].vq.set_name(name + " rx");
        q[kTxQueue].vq.set_name(name + " tx");
    }
    ~Impl() { detail::kill_token(rx_tok); }

    VirtioNetCounters& c() noexcept { return dev.counters_; }

    void arm_kick(unsigned qi) noexcept;
    void on_kick(unsigned qi) noexcept;
    void note_broken(unsigned qi) noexcept;
    void interrupt(unsigned qi) noexcept;

    void process_tx() noexcept;
    bool take_tx_chain(PacketRef& out) noexcept;
    [[nodiscard]] bool tx_hdr_allowed(const virtio::NetHdr& h) const noexcept;

    void process_rx() noexcept;
    // Places `f` in the guest's RX buffers: 1 placed, 0 not enough buffers yet (try later; `have`
    // says how many were there), -1 dropped.
    int place_rx(const PacketRef& f, std::size_t& used_chains, std::uint16_t& have) noexcept;
    [[nodiscard]] bool guest_takes_gso(const virtio::NetHdr& h) const noexcept;
    void drop_rx_backlog() noexcept;
};

// ---- kicks and interrupts ---------------------------------------------------------------------

void VirtioNetDevice::Impl::arm_kick(unsigned qi) noexcept {
    Queue& qu = q[qi];
    if (!qu.w) return;
    qu.w->wait_readable([this, qi, tok = qu.tok](bool ok) {
        if (!tok->alive || !ok) return;
        on_kick(qi);
    });
}

void VirtioNetDevice::Impl::on_kick(unsigned qi) noexcept {
    Queue& qu = q[qi];
    std::uint64_t v = 0;
    // Reset the eventfd's counter so the next kick is a new edge; several kicks fold into one.
    while (::read(qu.kick.get(), &v, sizeof v) < 0 && errno == EINTR) {
    }
    c().kicks.inc();
    const AliveToken tok = qu.tok;
    if (qi == kTxQueue)
        process_tx();
    else
        process_rx();
    if (tok->alive && q[qi].running) arm_kick(qi);
}

void VirtioNetDevice::Impl::note_broken(unsigned qi) noexcept {
    Queue& qu = q[qi];
    if (!qu.running) return;
    qu.running = false;
    c().queue_broken.inc();
    SLW_WARN("{}: {} queue broken by the driver ({}); it is no longer serviced until reset", name,
             qi == kTxQueue ? "TX" : "RX", qu.vq.broken_reason());
    detail::kill_token(qu.tok);
    qu.w.reset();
    if (qi == kRxQueue) drop_rx_backlog();
}

void VirtioNetDevice::Impl::interrupt(unsigned qi) noexcept {
    Queue& qu = q[qi];
    qu.vq.publish_used();
    if (qu.vq.should_notify()) {
        signal_fd(qu.call.get());
        c().interrupts.inc();
    }
}

// ---- TX ---------------------------------------------------------------------------------------

bool VirtioNetDevice::Impl::tx_hdr_allowed(const virtio::NetHdr& h) const noexcept {
    const std::uint64_t f = dev.features_;
    if (h.needs_csum() && (f & vfeat::csum) == 0) return false;
    if (!h.is_gso()) return true;
    if ((h.gso_type & virtio::kGsoEcn) != 0 && (f & vfeat::host_ecn) == 0) return false;
    switch (h.gso_kind()) {
        case virtio::kGsoTcpV4:
            return (f & vfeat::host_tso4) != 0 && h.needs_csum();
        case virtio::kGsoTcpV6:
            return (f & vfeat::host_tso6) != 0 && h.needs_csum();
        default:
            return false;  // UFO / USO are not offered
    }
}

// Takes one chain off the TX queue into `out`. False when the queue is empty or broken (the
// caller checks which); a chain that cannot become a frame is returned to the guest and counted,
// and the call goes on to the next one.
bool VirtioNetDevice::Impl::take_tx_chain(PacketRef& out) noexcept {
    virtio::SplitQueue& vq = q[kTxQueue].vq;
    for (;;) {
        const virtio::PopResult r = vq.pop(chain);
        if (r == virtio::PopResult::empty || r == virtio::PopResult::broken) return false;
        c().tx_chains.inc();
        if (r == virtio::PopResult::bad_chain) {
            port.counters().drop_wire.inc();
            vq.push_used(chain.head, 0);
            continue;
        }
        const std::size_t total = chain.read_len;
        if (total < hdr_len + detail::kMinFrame || total - hdr_len > kMaxTxFrame) {
            c().tx_bad_len.inc();
            port.counters().drop_wire.inc();
            SLW_WARN_RATELIMITED("{}: TX chain of {} bytes is not a header + frame", name, total);
            vq.push_used(chain.head, 0);
            continue;
        }
        const std::size_t frame_len = total - hdr_len;
        std::array<std::byte, virtio::kNetHdrV1Len> hb{};
        (void)virtio::gather(chain, 0, std::span<std::byte>(hb.data(), hdr_len));
        auto hdr = virtio::NetHdr::parse(ByteView(hb.data(), hdr_len), hdr_len);
        if (!hdr || !hdr->validate_for_frame(frame_len) || !tx_hdr_allowed(*hdr)) {
            c().tx_bad_hdr.inc();
            port.counters().drop_wire.inc();
            SLW_WARN_RATELIMITED(
                "{}: bad or unnegotiated virtio-net header on TX (flags {:#x}, "
                "gso {:#x})",
                name, static_cast<unsigned>(hb[0]), static_cast<unsigned>(hb[1]));
            vq.push_used(chain.head, 0);
            continue;
        }
        auto ref = pool.try_alloc(frame_len);
        if (!ref) {
            port.counters().drop_no_buffer.inc();
            vq.push_used(chain.head, 0);
            continue;
        }
        (void)virtio::gather(chain, hdr_len, ref->data());
        vq.push_used(chain.head, 0);
        hdr->num_buffers = 0;
        ref->meta().vnet = *hdr;
        ref->meta().in_port = port.id();
        out = std::move(*ref);
        return true;
    }
}

void VirtioNetDevice::Impl::process_tx() noexcept {
    Queue& qu = q[kTxQueue];
    if (!qu.running) return;
    const AliveToken tok = qu.tok;
    qu.posted = false;
    qu.vq.disable_notify();
    const std::uint16_t used_before = qu.vq.used_idx();
    std::size_t n = 0;
    while (n < kBurst && take_tx_chain(burst[n]))
        ++n;
    const bool broke = qu.vq.broken();
    if (qu.vq.used_idx() != used_before) interrupt(kTxQueue);
    detail::push_burst_to_switch(port, std::span<PacketRef>(burst.data(), n));
    if (!tok->alive) return;  // the switch's work closed the queue
    if (broke) {
        note_broken(kTxQueue);
        return;
    }
    if (n == kBurst) {
        detail::continue_later(io, qu.posted, tok, [this] { process_tx(); });
        return;
    }
    // Drained: ask for kicks, then look once more for buffers that raced in (§2.7.10).
    if (qu.vq.enable_notify()) detail::continue_later(io, qu.posted, tok, [this] { process_tx(); });
}

// ---- RX ---------------------------------------------------------------------------------------

bool VirtioNetDevice::Impl::guest_takes_gso(const virtio::NetHdr& h) const noexcept {
    const std::uint64_t f = dev.features_;
    if ((h.gso_type & virtio::kGsoEcn) != 0 && (f & vfeat::guest_ecn) == 0) return false;
    switch (h.gso_kind()) {
        case virtio::kGsoTcpV4:
            return (f & vfeat::guest_tso4) != 0;
        case virtio::kGsoTcpV6:
            return (f & vfeat::guest_tso6) != 0;
        default:
            return false;
    }
}

void VirtioNetDevice::Impl::drop_rx_backlog() noexcept {
    std::size_t dropped = 0;
    if (rx_frame) {
        rx_frame.reset();
        ++dropped;
    }
    for (std::size_t i = seg_idx; i < seg_n; ++i)
        ++dropped;
    for (std::size_t i = 0; i < seg_n; ++i)
        segs[i].reset();
    seg_n = seg_idx = 0;
    PacketRef f;
    while (port.to_port().try_pop(f)) {
        f.reset();
        ++dropped;
    }
    port.counters().drop_io.add(dropped);
}

int VirtioNetDevice::Impl::place_rx(const PacketRef& f, std::size_t& used_chains,
                                    std::uint16_t& have) noexcept {
    virtio::SplitQueue& vq = q[kRxQueue].vq;
    const std::size_t need = hdr_len + f.len();
    // A queue smaller than kMaxMerge can never hold more than its size at once.
    const std::size_t max_chains = mrg ? std::min<std::size_t>(kMaxMerge, vq.size()) : 1;
    std::size_t k = 0;
    std::size_t room = 0;
    while (room < need) {
        if (k == max_chains) {
            // Even the largest run of buffers we accept cannot hold it.
            vq.unpop(static_cast<std::uint16_t>(k));
            c().rx_too_big.inc();
            port.counters().drop_too_big.inc();
            return -1;
        }
        const virtio::PopResult r = vq.pop(rx_chains[k]);
        if (r == virtio::PopResult::empty || r == virtio::PopResult::broken) {
            vq.unpop(static_cast<std::uint16_t>(k));
            have = static_cast<std::uint16_t>(k);
            return 0;
        }
        // §5.1.6.3.1: every receive buffer holds at least the header (with MRG_RXBUF each one,
        // which a first buffer shorter than it would break).
        if (r == virtio::PopResult::bad_chain || rx_chains[k].write_len < hdr_len) {
            // Unusable: give it back as used with nothing written. unpop() can only rewind the
            // most recent pops, so chains already taken for this frame cannot wait behind it:
            // they go back empty too and the frame is dropped (only a buggy driver gets here).
            vq.push_used(rx_chains[k].head, 0);
            port.counters().drop_wire.inc();
            ++used_chains;
            if (k > 0) {
                for (std::size_t i = 0; i < k; ++i)
                    vq.push_used(rx_chains[i].head, 0);
                port.counters().drop_io.inc();
                return -1;
            }
            continue;
        }
        room += rx_chains[k].write_len;
        ++k;
    }
    // Header first (num_buffers = chains used, §5.1.6.4), then the frame, chain after chain.
    virtio::NetHdr h = f.meta().vnet;
    if (!port.caps().partial_csum)
        h.flags = static_cast<std::uint8_t>(h.flags & ~virtio::kNetHdrFNeedsCsum);
    h.num_buffers = static_cast<std::uint16_t>(k);
    std::array<std::byte, virtio::kNetHdrV1Len> hb{};
    (void)h.emit(std::span<std::byte>(hb.data(), hdr_len), hdr_len);
    const ByteView frame = f.data();
    std::size_t off = 0;  // into header + frame
    for (std::size_t i = 0; i < k; ++i) {
        const virtio::Chain& ch = rx_chains[i];
        std::size_t w = 0;
        if (i == 0) w = virtio::scatter(ch, 0, ByteView(hb.data(), hdr_len));
        const std::size_t want = std::min<std::size_t>(ch.write_len - w, need - off - w);
        const std::size_t fo = off + w - hdr_len;
        w += virtio::scatter(ch, w, frame.subspan(fo, want));
        vq.push_used(ch.head, static_cast<std::uint32_t>(w));
        off += w;
    }
    used_chains += k;
    c().rx_chains.add(k);
    return 1;
}

void VirtioNetDevice::Impl::process_rx() noexcept {
    Queue& qu = q[kRxQueue];
    rx_posted = false;
    if (!qu.running) {
        drop_rx_backlog();
        return;
    }
    const AliveToken tok = rx_tok;
    std::size_t frames = 0;
    std::size_t chains = 0;
    bool starved = false;
    std::uint16_t have = 0;  // chains that were there for the frame that must wait
    while (frames < kBurst * 2) {
        // The next frame: a pending segment, the frame that waited for buffers, or a new one.
        const PacketRef* cur = nullptr;
        if (seg_idx < seg_n) {
            cur = &segs[seg_idx];
        } else {
            seg_n = seg_idx = 0;
            if (!rx_frame && !port.to_port().try_pop(rx_frame)) break;
            const virtio::NetHdr& vh = rx_frame.meta().vnet;
            if (vh.is_gso() && !guest_takes_gso(vh)) {
                auto r =
                    segment_gso(rx_frame, pool, std::span<PacketRef>(segs.get(), kMaxSegmentsOut));
                rx_frame.reset();
                if (!r) {
                    port.counters().drop_no_buffer.inc();
                    continue;
                }
                port.counters().segmented.inc();
                seg_n = *r;
                continue;
            }
            cur = &rx_frame;
        }
        const int placed = place_rx(*cur, chains, have);
        if (placed == 0) {
            starved = true;
            break;
        }
        if (seg_idx < seg_n) {
            segs[seg_idx++].reset();
        } else {
            rx_frame.reset();
        }
        ++frames;
    }
    const bool broke = qu.vq.broken();
    if (chains != 0) interrupt(kRxQueue);
    if (broke) {
        note_broken(kRxQueue);
        return;
    }
    if (!tok->alive) return;
    if (starved) {
        c().rx_no_buffers.inc();
        // Wait for the guest to post more buffers than the `have` that were not enough; if some
        // raced in, go again at once (without `have` a merged frame would spin here).
        if (qu.vq.enable_notify(have))
            detail::continue_later(io, rx_posted, tok, [this] { process_rx(); });
        return;
    }
    qu.vq.disable_notify();
    if (frames == kBurst * 2 || seg_idx < seg_n || !port.to_port().empty_approx())
        detail::continue_later(io, rx_posted, tok, [this] { process_rx(); });
}

// ---- VirtioNetDevice --------------------------------------------------------------------------

VirtioNetDevice::VirtioNetDevice(IoContext& io, PacketPool& pool, SwitchPort& port,
                                 std::string name, std::uint32_t mtu)
    : impl_(std::make_unique<Impl>(*this, io, pool, port, std::move(name), mtu)) {}

VirtioNetDevice::~VirtioNetDevice() {
    stop_all();
}

Result<void> VirtioNetDevice::set_features(std::uint64_t features) noexcept {
    features &= ~(std::uint64_t{1} << 30);  // VHOST_USER_F_PROTOCOL_FEATURES: the transport's
    if ((features & ~kOfferedFeatures) != 0) return fail(Errc::invalid_argument);
    features_ = features;
    impl_->mrg = (features & vfeat::mrg_rxbuf) != 0;
    impl_->hdr_len = (features & (vfeat::version_1 | vfeat::mrg_rxbuf)) != 0
                         ? virtio::kNetHdrV1Len
                         : virtio::kNetHdrLegacyLen;
    impl_->port.set_caps(caps_for_features(features, impl_->mtu));
    return {};
}

Result<void> VirtioNetDevice::start_queue(unsigned qi, VirtqueueSetup s, std::string& error) {
    Impl& m = *impl_;
    if (qi > kTxQueue) {
        error = m.name + ": no queue " + std::to_string(qi) + " (one RX/TX pair)";
        return fail(Errc::invalid_argument);
    }
    if (mem_ == nullptr) {
        error = m.name + ": queue started before the guest memory was set";
        return fail(Errc::invalid_argument);
    }
    if (!s.kick.valid()) {
        error = m.name + ": queue without a kick eventfd (polling mode is not supported)";
        return fail(Errc::unsupported);
    }
    (void)stop_queue(qi);
    Impl::Queue& qu = m.q[qi];
    virtio::SplitQueue::Config cfg;
    cfg.size = s.size;
    cfg.desc = s.desc;
    cfg.avail = s.avail;
    cfg.used = s.used;
    cfg.user_addrs = s.user_addrs;
    cfg.event_idx = (features_ & vfeat::event_idx) != 0;
    cfg.indirect = (features_ & vfeat::indirect_desc) != 0;
    cfg.last_avail = s.last_avail;
    if (auto r = qu.vq.start(*mem_, cfg, error); !r) return r;
    // A blocking kick fd would stall the loop if a wake-up were spurious.
    const int fl = ::fcntl(s.kick.get(), F_GETFL);
    if (fl >= 0) (void)::fcntl(s.kick.get(), F_SETFL, fl | O_NONBLOCK);
    boost::system::error_code ec;
    auto w = FdWatcher::try_watch(m.io, s.kick.get(), ec);
    if (!w) {
        (void)qu.vq.stop();
        error = m.name + ": cannot watch the kick eventfd: " + ec.message();
        return fail(Errc::io_error);
    }
    qu.kick = std::move(s.kick);
    qu.call = std::move(s.call);
    qu.w = std::move(w);
    qu.tok = detail::new_token();
    qu.running = true;
    qu.posted = false;
    // Start as if kicked: the driver may have made buffers available before we watched.
    const AliveToken tok = qu.tok;
    boost::asio::post(m.io, [this, qi, tok] {
        if (!tok->alive) return;
        if (qi == kTxQueue)
            impl_->process_tx();
        else
            impl_->process_rx();
    });
    m.arm_kick(qi);
    return {};
}

std::uint16_t VirtioNetDevice::stop_queue(unsigned qi) noexcept {
    if (qi > kTxQueue) return 0;
    Impl::Queue& qu = impl_->q[qi];
    detail::kill_token(qu.tok);
    qu.w.reset();
    qu.running = false;
    qu.posted = false;
    const std::uint16_t base = qu.vq.stop();
    qu.kick.reset();
    qu.call.reset();
    return base;
}

void VirtioNetDevice::stop_all() noexcept {
    (void)stop_queue(kRxQueue);
    (void)stop_queue(kTxQueue);
    impl_->drop_rx_backlog();
}

void VirtioNetDevice::set_call(unsigned qi, UniqueFd call) noexcept {
    if (qi > kTxQueue) return;
    impl_->q[qi].call = std::move(call);
}

bool VirtioNetDevice::queue_running(unsigned qi) const noexcept {
    return qi <= kTxQueue && impl_->q[qi].running;
}

bool VirtioNetDevice::broken() const noexcept {
    return impl_->q[kRxQueue].vq.broken() || impl_->q[kTxQueue].vq.broken();
}

void VirtioNetDevice::on_egress() noexcept {
    impl_->process_rx();
}

}  // namespace slipway::guest
