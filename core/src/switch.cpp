// Switch: the L2 switch of one network — learning, flooding, anti-spoofing, isolation, fix-up.
//
// Theory of operation
// -------------------
// Ports. add_port() gives a port the lowest free id (its index in ports_) and binds it, so that
// the attachment's notify_switch() calls process_port(). Ids are stable while a port is
// registered; remove_port() leaves a nullptr hole that a later add_port() reuses, and forgets every
// MAC learned on the port so a reused id never inherits stale entries.
//
// MAC learning. Every valid frame teaches "source MAC -> ingress port, seen now". The table is a
// fixed open-addressing array (mac_table_size entries, rounded up to a power of two, allocated in
// the constructor) probed linearly for at most kProbe slots from the hash of the MAC. Lookups scan
// the whole probe window instead of stopping at an empty slot, so forgetting an entry is just
// clearing it (no tombstones). An entry older than mac_ageing counts as absent and its slot may be
// reused; if the window holds no free or expired slot the source is not learned
// (drop_mac_table) but the frame is still forwarded — the destination side falls back to flooding.
// The clock is read once per burst (steady_clock), not per frame.
//
// Forwarding. A broadcast, multicast or unknown unicast destination is flooded to every other
// eligible port; a known unicast goes to its port only. A unicast that would go back out of its
// ingress port is dropped (switch drop_no_dest), as a hardware switch filters it. With nowhere to
// send, the frame is dropped and counted (drop_no_dest).
//
// Source-MAC lock. With mac_lock, the first valid source MAC of a guest-kind port locks the port;
// a frame from any other source is dropped (port drop_src_mac) before it can poison the MAC
// table. reset_port() (a new guest on the same attachment) forgets the lock and the port's MACs.
// Gateway ports are trusted and never locked.
//
// Pinned MACs. pin_mac() gives a port's own MAC (the gateway's) a permanent entry: it never ages,
// learning never moves it, and a frame from another port with that source is dropped (that port's
// drop_src_mac) before it can lock or teach anything. Without this, a guest whose first frame
// claims the gateway's MAC would capture every other guest's traffic to the gateway, and frames
// to a gateway that has not spoken yet would be flooded to every guest.
//
// Isolation. With isolate_guests, a guest-kind port's frames reach only gateway-kind ports: its
// floods skip other guests and a known unicast to a guest is dropped (ingress drop_isolated).
// Gateway ports reach every port.
//
// Offload fix-up per destination (DESIGN §1). A GSO frame goes whole to a port that takes GSO
// (and partial checksums, if it carries one); otherwise segment_gso() splits it into pool buffers
// (port `segmented`). A NEEDS_CSUM frame for a port without partial_csum is completed in software
// (port `csum_completed`). An ordinary frame above the port's max_frame (plus 4 bytes when it
// carries an 802.1Q tag) is dropped (drop_too_big).
// When flooding, every destination but the last gets its own copy (pool buffer, data and metadata
// including the virtio-net fields), so a fix-up done for one port never shows in another's frame;
// a destination that needs segmentation segments straight from the shared original instead of
// copying it first. No buffer for a copy or a segment: the destination's drop_no_buffer.
//
// Delivery. A frame is pushed into the destination's to_port() ring; a full ring drops it (the
// PacketRef is destroyed: the buffer goes home) and counts drop_ring_full. After each burst every
// port that received frames gets one on_frames_from_switch() call.
//
// Re-entrancy. A port may answer synchronously from on_frames_from_switch(): it pushes into its
// own to_switch() and calls notify_switch(), which lands in process_port() while the switch is
// still inside it. Such a nested call only marks the port pending and returns; the outermost call
// keeps taking one burst (kBurst frames) at a time from pending ports, round-robin, until none is
// pending. No recursion, so a chatty pair of ports cannot grow the stack, and frames from one port
// cannot starve another.
//
// Hot path. No allocation, exception or lock per frame: the burst, segment and destination
// scratch arrays live in Impl and are sized in the constructor or in add_port(). Drops are
// verdicts and counters, never errors. Everything runs on the network thread.
#include "slipway/core/switch.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "slipway/core/offload.hpp"
#include "slipway/core/pcap.hpp"
#include "slipway/core/wire/ethernet.hpp"

namespace slipway {

namespace {

constexpr std::size_t kBurst = 32;
// Largest number of segments one GSO frame may become: 64 KiB of payload at an MSS of 64.
constexpr std::size_t kMaxSegments = 1024;
constexpr std::uint32_t kMinTableSize = 16;
constexpr std::uint32_t kMaxTableSize = std::uint32_t{1} << 24;
constexpr std::size_t kProbe = 16;  // linear-probe window
constexpr std::uint16_t kNoPort = 0xffff;

std::uint64_t mac_key(const MacAddr& m) noexcept {
    std::uint64_t k = 0;
    for (std::uint8_t b : m.b)
        k = (k << 8) | b;
    return k | (std::uint64_t{1} << 48);  // bit 48 marks a used slot; 0 is an empty one
}

}  // namespace

struct Switch::Impl {
    struct MacEntry {
        std::uint64_t key = 0;  // mac_key(), 0 = empty
        std::int64_t seen_ns = 0;
        std::uint16_t port = kNoPort;
        bool pinned = false;  // pin_mac(): never ages, never moves
    };
    struct PortState {
        MacAddr locked_mac;
        bool locked = false;
        bool pending = false;  // to_switch() may hold frames the outer loop has to take
        bool touched = false;  // received frames in the current burst
    };

    Impl(Switch& owner, std::uint32_t table_size)
        : sw(owner),
          table(table_size),
          table_mask(table_size - 1),
          table_shift(64 - std::countr_zero(table_size)),
          burst(kBurst),
          segs(kMaxSegments) {}

    Switch& sw;
    std::vector<MacEntry> table;
    std::uint32_t table_mask;
    int table_shift;
    std::int64_t ageing_ns = 0;

    std::vector<PortState> state;      // by port id
    std::vector<std::uint16_t> dests;  // flood destinations of one frame
    std::vector<std::uint16_t> touched;
    std::size_t touched_n = 0;
    std::size_t pending_n = 0;
    bool in_process = false;

    std::vector<PacketRef> burst;
    std::vector<PacketRef> segs;

    [[nodiscard]] std::size_t slot_of(std::uint64_t key) const noexcept {
        return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> table_shift);
    }
    [[nodiscard]] bool expired(const MacEntry& e, std::int64_t now) const noexcept {
        return !e.pinned && now - e.seen_ns > ageing_ns;
    }

    // Port the MAC was last seen on, or kNoPort (unknown or aged out).
    [[nodiscard]] std::uint16_t lookup(const MacAddr& mac, std::int64_t now) const noexcept {
        const std::uint64_t key = mac_key(mac);
        const std::size_t start = slot_of(key);
        for (std::size_t i = 0; i < kProbe; ++i) {
            const MacEntry& e = table[(start + i) & table_mask];
            if (e.key == key) return expired(e, now) ? kNoPort : e.port;
        }
        return kNoPort;
    }

    // The entry of `key`, or nullptr; one probe of the window (expired entries included).
    [[nodiscard]] MacEntry* find(std::uint64_t key) noexcept {
        const std::size_t start = slot_of(key);
        for (std::size_t i = 0; i < kProbe; ++i) {
            MacEntry& e = table[(start + i) & table_mask];
            if (e.key == key) return &e;
        }
        return nullptr;
    }

    // True when `e` (the source's entry, or nullptr) is pinned to a port other than `port`: a
    // spoofed source.
    [[nodiscard]] static bool pinned_elsewhere(const MacEntry* e, std::uint16_t port) noexcept {
        return e != nullptr && e->pinned && e->port != port;
    }

    // Records `key` on `port`. `e` is find(key), already done by the caller so the per-frame path
    // probes the window once for a known source. False when the window is full of live entries
    // for other MACs. A pinned entry is left as it is unless `pin` (forward_one() has already
    // dropped frames that claim it from elsewhere).
    bool learn(MacEntry* e, std::uint64_t key, std::uint16_t port, std::int64_t now,
               bool pin = false) noexcept {
        if (e != nullptr) {
            if (e->pinned && !pin) return true;
            *e = MacEntry{key, now, port, pin};
            return true;
        }
        const std::size_t start = slot_of(key);
        for (std::size_t i = 0; i < kProbe; ++i) {
            MacEntry& f = table[(start + i) & table_mask];
            if (f.key == 0 || expired(f, now)) {
                f = MacEntry{key, now, port, pin};
                return true;
            }
        }
        return false;
    }

    // Forgets the MACs learned on a port; its pinned ones too only when the port goes away.
    void forget_port(std::uint16_t port, bool and_pinned) noexcept {
        for (MacEntry& e : table)
            if (e.key != 0 && e.port == port && (and_pinned || !e.pinned)) e = MacEntry{};
    }

    void mark_pending(std::uint16_t id) noexcept {
        if (!state[id].pending) {
            state[id].pending = true;
            ++pending_n;
        }
    }
    void clear_pending(std::uint16_t id) noexcept {
        if (state[id].pending) {
            state[id].pending = false;
            --pending_n;
        }
    }
    void touch(std::uint16_t id) noexcept {
        if (!state[id].touched) {
            state[id].touched = true;
            touched[touched_n++] = id;
        }
    }

    // The per-frame path (Impl is nested in Switch, so it reaches the switch's private state).
    void forward_burst(SwitchPort& in, std::size_t n) noexcept;
    void forward_one(SwitchPort& in, PacketRef f, std::int64_t now) noexcept;
    void deliver_copy(SwitchPort& dest, const PacketRef& f) noexcept;
    void deliver(SwitchPort& dest, PacketRef f) noexcept;
    void deliver_segments(SwitchPort& dest, const PacketRef& f) noexcept;
    void push(SwitchPort& dest, PacketRef f) noexcept;
    void notify_touched() noexcept;
};

Switch::Switch(PacketPool& pool, SwitchConfig cfg) : pool_(pool), cfg_(cfg), impl_(nullptr) {
    std::uint32_t n = std::clamp(cfg_.mac_table_size, kMinTableSize, kMaxTableSize);
    n = std::bit_ceil(n);
    cfg_.mac_table_size = n;
    impl_ = new Impl(*this, n);
    impl_->ageing_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.mac_ageing).count();
}

Switch::~Switch() {
    // Ports may outlive the switch: leave none of them calling back into a dead object.
    for (SwitchPort* p : ports_)
        if (p != nullptr) p->bind(kNoPort, {});
    delete impl_;
}

std::uint16_t Switch::add_port(SwitchPort& port) {
    Impl& im = *impl_;
    std::size_t id = 0;
    while (id < ports_.size() && ports_[id] != nullptr)
        ++id;
    if (id >= kNoPort) return kNoPort;  // 65,535 ports: not a network slipway will see
    if (id == ports_.size()) {
        ports_.push_back(nullptr);
        im.state.emplace_back();
        im.dests.resize(ports_.size());
        im.touched.resize(ports_.size());
    }
    const auto pid = static_cast<std::uint16_t>(id);
    ports_[id] = &port;
    im.state[id] = Impl::PortState{};
    port.bind(pid, [this](SwitchPort& p) { process_port(p); });
    return pid;
}

void Switch::remove_port(SwitchPort& port) {
    Impl& im = *impl_;
    const std::uint16_t id = port.id();
    if (id >= ports_.size() || ports_[id] != &port) return;
    port.bind(kNoPort, {});
    ports_[id] = nullptr;
    im.clear_pending(id);
    // A touched flag left behind is harmless: notify skips null slots and clears it.
    im.state[id].locked = false;
    im.forget_port(id, true);
}

Result<void> Switch::pin_mac(SwitchPort& port, const MacAddr& mac) {
    Impl& im = *impl_;
    const std::uint16_t id = port.id();
    if (id >= ports_.size() || ports_[id] != &port || mac.is_multicast() || mac.is_zero())
        return fail(Errc::invalid_argument);
    const std::uint64_t key = mac_key(mac);
    Impl::MacEntry* e = im.find(key);
    if (Impl::pinned_elsewhere(e, id)) return fail(Errc::invalid_argument);
    if (!im.learn(e, key, id, 0, true)) return fail(Errc::too_large);  // window full
    return {};
}

void Switch::reset_port(SwitchPort& port) {
    Impl& im = *impl_;
    const std::uint16_t id = port.id();
    if (id >= ports_.size() || ports_[id] != &port) return;
    im.state[id].locked = false;
    im.state[id].locked_mac = MacAddr{};
    im.forget_port(id, false);
}

void Switch::process_port(SwitchPort& port) noexcept {
    Impl& im = *impl_;
    const std::uint16_t id = port.id();
    if (id >= ports_.size() || ports_[id] != &port) return;
    im.mark_pending(id);
    if (im.in_process) return;  // nested: the outer loop below will take this port's frames
    im.in_process = true;
    while (im.pending_n != 0) {
        // Index-based: callbacks may add or remove ports (and grow the vectors) meanwhile.
        for (std::size_t i = 0; i < ports_.size() && im.pending_n != 0; ++i) {
            const auto pid = static_cast<std::uint16_t>(i);
            if (!im.state[i].pending) continue;
            im.clear_pending(pid);
            SwitchPort* p = ports_[i];
            if (p == nullptr) continue;
            const std::size_t n = p->to_switch().pop_burst(std::span<PacketRef>(im.burst));
            if (n == 0) continue;
            if (n == kBurst) im.mark_pending(pid);  // there may be more; others go first
            im.forward_burst(*p, n);
            im.notify_touched();
        }
    }
    im.in_process = false;
}

void Switch::Impl::forward_burst(SwitchPort& in, std::size_t n) noexcept {
    Impl& im = *this;
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
    for (std::size_t k = 0; k < n; ++k) {
        PacketRef f = std::move(im.burst[k]);
        if (!f) continue;
        const std::size_t len = f.len();
        in.counters().rx_frames.inc();
        in.counters().rx_bytes.add(len);
        sw.counters_.frames.inc();
        if (sw.pcap_ != nullptr) sw.pcap_->write(ByteView{f.data()});
        forward_one(in, std::move(f), now);
    }
}

void Switch::Impl::forward_one(SwitchPort& in, PacketRef f, std::int64_t now) noexcept {
    Impl& im = *this;
    PortCounters& ic = in.counters();
    auto eth = wire::EthernetView::parse(ByteView{f.data()});
    if (!eth) {
        ic.drop_bad_frame.inc();
        return;
    }
    const MacAddr src = eth->src();
    const MacAddr dst = eth->dst();
    // IEEE 802 addresses: a group bit in the source is never valid; all-zero is no station.
    if (src.is_multicast() || src.is_zero()) {
        ic.drop_bad_frame.inc();
        return;
    }
    PacketMeta& m = f.meta();
    // virtio 1.2 §5.1.6.2: a partial checksum must lie inside the frame; checked once here so
    // completing it later cannot fail.
    if (!m.vnet.validate_for_frame(m.len)) {
        ic.drop_bad_frame.inc();
        return;
    }
    const std::uint16_t id = in.id();
    m.in_port = id;

    const std::uint64_t src_key = mac_key(src);
    Impl::MacEntry* src_entry = im.find(src_key);  // one probe serves the checks and learning
    if (Impl::pinned_elsewhere(src_entry, id)) {   // claims the gateway's MAC (theory: pinned MACs)
        ic.drop_src_mac.inc();
        return;
    }
    if (in.kind() == PortKind::guest && sw.cfg_.mac_lock) {
        Impl::PortState& st = im.state[id];
        if (!st.locked) {
            st.locked = true;
            st.locked_mac = src;
        } else if (st.locked_mac != src) {
            ic.drop_src_mac.inc();
            return;
        }
    }
    if (!im.learn(src_entry, src_key, id, now)) sw.counters_.drop_mac_table.inc();

    const bool isolated = sw.cfg_.isolate_guests && in.kind() == PortKind::guest;
    if (!dst.is_multicast()) {  // broadcast is a multicast address too
        const std::uint16_t to = im.lookup(dst, now);
        if (to != kNoPort && to < sw.ports_.size() && sw.ports_[to] != nullptr) {
            if (to == id) {
                sw.counters_.drop_no_dest.inc();
                return;
            }
            SwitchPort& d = *sw.ports_[to];
            if (isolated && d.kind() == PortKind::guest) {
                ic.drop_isolated.inc();
                return;
            }
            deliver(d, std::move(f));
            return;
        }
    }

    std::size_t nd = 0;
    for (std::size_t i = 0; i < sw.ports_.size(); ++i) {
        const SwitchPort* p = sw.ports_[i];
        if (p == nullptr || i == id) continue;
        if (isolated && p->kind() != PortKind::gateway) continue;
        im.dests[nd++] = static_cast<std::uint16_t>(i);
    }
    if (nd == 0) {
        sw.counters_.drop_no_dest.inc();
        return;
    }
    sw.counters_.flooded.inc();
    for (std::size_t j = 0; j + 1 < nd; ++j)
        deliver_copy(*sw.ports_[im.dests[j]], f);
    deliver(*sw.ports_[im.dests[nd - 1]], std::move(f));
}

namespace {

// A port's max_frame is the untagged size (MTU + Ethernet header); an 802.1Q tag adds its 4 bytes
// on top, as on any Ethernet link (IEEE 802.3 §3.2.7), so a full-MTU tagged frame still fits.
std::size_t frame_limit(const PortCaps& caps, ByteView frame) noexcept {
    constexpr std::size_t kVlanTag = 4;
    const bool tagged = frame.size() >= 14 && load_be16(frame.data() + 12) == 0x8100;
    return std::size_t{caps.max_frame} + (tagged ? kVlanTag : 0);
}

// The port cannot take this GSO frame as it is: no GSO, or a partial checksum it cannot finish.
bool needs_segmentation(const PortCaps& caps, const virtio::NetHdr& vnet) noexcept {
    return vnet.is_gso() && (!caps.gso || (vnet.needs_csum() && !caps.partial_csum));
}

}  // namespace

void Switch::Impl::deliver_copy(SwitchPort& dest, const PacketRef& f) noexcept {
    const PacketMeta& m = f.meta();
    const PortCaps& caps = dest.caps();
    if (needs_segmentation(caps, m.vnet)) {
        deliver_segments(dest, f);  // segments are new buffers anyway: no copy needed
        return;
    }
    if (!m.vnet.is_gso() && m.len > frame_limit(caps, ByteView{f.data()})) {
        dest.counters().drop_too_big.inc();
        return;
    }
    auto c = sw.pool_.try_alloc(std::size_t{m.len});
    if (!c) {
        dest.counters().drop_no_buffer.inc();
        return;
    }
    std::memcpy(c->data().data(), f.data().data(), m.len);
    PacketMeta& cm = c->meta();
    cm.in_port = m.in_port;
    cm.vnet = m.vnet;
    deliver(dest, std::move(*c));
}

void Switch::Impl::deliver(SwitchPort& dest, PacketRef f) noexcept {
    PacketMeta& m = f.meta();
    const PortCaps& caps = dest.caps();
    PortCounters& dc = dest.counters();
    if (needs_segmentation(caps, m.vnet)) {
        deliver_segments(dest, f);
        return;
    }
    if (!m.vnet.is_gso() && m.len > frame_limit(caps, ByteView{f.data()})) {
        dc.drop_too_big.inc();
        return;
    }
    if (m.vnet.needs_csum() && !caps.partial_csum) {
        if (!complete_checksum(f)) {  // unreachable: offsets were validated at ingress
            dc.drop_too_big.inc();
            return;
        }
        dc.csum_completed.inc();
    }
    push(dest, std::move(f));
}

void Switch::Impl::deliver_segments(SwitchPort& dest, const PacketRef& f) noexcept {
    Impl& im = *this;
    PortCounters& dc = dest.counters();
    auto r = segment_gso(f, sw.pool_, std::span<PacketRef>(im.segs));
    if (!r) {
        if (r.error() == Errc::pool_exhausted)
            dc.drop_no_buffer.inc();
        else
            dc.drop_too_big.inc();  // malformed or unsplittable: cannot be made to fit
        return;
    }
    dc.segmented.inc();
    for (std::size_t i = 0; i < *r; ++i) {
        PacketRef s = std::move(im.segs[i]);
        if (s.len() > frame_limit(dest.caps(), ByteView{s.data()})) {
            dc.drop_too_big.inc();  // gso_size above this port's MTU
            continue;
        }
        push(dest, std::move(s));
    }
}

void Switch::Impl::push(SwitchPort& dest, PacketRef f) noexcept {
    const std::size_t len = f.len();
    PortCounters& dc = dest.counters();
    if (!dest.to_port().try_push(std::move(f))) {
        dc.drop_ring_full.inc();  // f still owns the buffer and frees it on return
        return;
    }
    dc.tx_frames.inc();
    dc.tx_bytes.add(len);
    touch(dest.id());
}

void Switch::Impl::notify_touched() noexcept {
    Impl& im = *this;
    // A callback may re-enter process_port() (only marks pending) or add/remove ports; nothing it
    // does appends to `touched`, so the index walk is stable.
    for (std::size_t t = 0; t < im.touched_n; ++t) {
        const std::uint16_t id = im.touched[t];
        if (id < im.state.size()) im.state[id].touched = false;
        if (id < sw.ports_.size() && sw.ports_[id] != nullptr)
            sw.ports_[id]->on_frames_from_switch();
    }
    im.touched_n = 0;
}

}  // namespace slipway
