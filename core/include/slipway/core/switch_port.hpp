// SwitchPort: where an attachment (a guest, the gateway engine, a VMM thread) meets the Switch —
// two SPSC rings of PacketRef, a wake-up each way, declared offload capabilities, counters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/spsc_ring.hpp"
#include "slipway/core/stats.hpp"

namespace slipway {

// What a port's far side can take (DESIGN §1 "Offloads are first-class"). The Switch fixes up
// frames for ports that cannot take them: software segmentation of GSO frames, checksum completion.
struct PortCaps {
    bool gso = false;           // takes GSO super-frames (PacketMeta::vnet.gso_type != NONE)
    bool partial_csum = false;  // takes frames with NEEDS_CSUM set (checksum left to the receiver)
    // Largest ordinary (non-GSO) frame: Ethernet header + payload, no FCS, no virtio-net header.
    // Frames above it that cannot be segmented are dropped and counted.
    std::uint32_t max_frame = 1514;  // untagged: MTU + 14; an 802.1Q tag may add 4 more
};

enum class PortKind : std::uint8_t {
    guest,    // a VM or namespace; subject to the source-MAC lock and to isolation
    gateway,  // slipway's own engine (or another backend): trusted, reachable from every guest
};

// Per-port counters. All written on the network thread (the switch and the attachment both run
// there); readable from anywhere.
struct PortCounters {
    Counter rx_frames, rx_bytes;  // from the port into the switch
    Counter tx_frames, tx_bytes;  // from the switch into the port's ring
    Counter drop_src_mac;         // source MAC differs from the one the port is locked to
    Counter drop_bad_frame;       // shorter than an Ethernet header, multicast source, ...
    Counter drop_isolated;        // guest-to-guest frame in isolation mode
    Counter drop_ring_full;       // the port's ring was full: its far side is not draining
    Counter drop_too_big;         // above max_frame and not segmentable
    Counter drop_no_buffer;       // pool exhausted while copying (flooding) or segmenting
    Counter segmented;            // GSO frames segmented in software for this port
    Counter csum_completed;       // partial checksums completed in software for this port
    Counter drop_wire;            // attachment: malformed wire input (bad length, bad header)
    Counter drop_io;              // attachment: frames lost to I/O errors or a gone peer

    template <class F>
    void for_each(F&& f) const {
        f("rx_frames", rx_frames);
        f("rx_bytes", rx_bytes);
        f("tx_frames", tx_frames);
        f("tx_bytes", tx_bytes);
        f("drop_src_mac", drop_src_mac);
        f("drop_bad_frame", drop_bad_frame);
        f("drop_isolated", drop_isolated);
        f("drop_ring_full", drop_ring_full);
        f("drop_too_big", drop_too_big);
        f("drop_no_buffer", drop_no_buffer);
        f("segmented", segmented);
        f("csum_completed", csum_completed);
        f("drop_wire", drop_wire);
        f("drop_io", drop_io);
    }
};

class SwitchPort {
  public:
    static constexpr std::size_t kDefaultRingSize = 1024;

    SwitchPort(std::string name, PortKind kind, PortCaps caps,
               std::size_t ring_size = kDefaultRingSize)
        : name_(std::move(name)),
          kind_(kind),
          caps_(caps),
          to_switch_(ring_size),
          to_port_(ring_size) {}
    virtual ~SwitchPort() = default;
    SwitchPort(const SwitchPort&) = delete;
    SwitchPort& operator=(const SwitchPort&) = delete;

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] PortKind kind() const noexcept { return kind_; }
    [[nodiscard]] const PortCaps& caps() const noexcept { return caps_; }
    void set_caps(const PortCaps& c) noexcept { caps_ = c; }  // e.g. after a TAP negotiated
    [[nodiscard]] std::uint16_t id() const noexcept { return id_; }
    [[nodiscard]] PortCounters& counters() noexcept { return counters_; }
    [[nodiscard]] const PortCounters& counters() const noexcept { return counters_; }

    // ---- attachment side ------------------------------------------------------------------
    // Frames from the attachment into the switch. Producer: the attachment; consumer: the switch.
    [[nodiscard]] SpscRing<PacketRef>& to_switch() noexcept { return to_switch_; }
    // Tells the switch that to_switch() has frames. On the network thread only (a port whose
    // producer is another thread wakes the loop first, e.g. with an eventfd, and calls this there).
    void notify_switch() noexcept {
        if (on_ingress_) on_ingress_(*this);
    }

    // ---- switch side ----------------------------------------------------------------------
    // Frames from the switch to the attachment. Producer: the switch; consumer: the attachment.
    [[nodiscard]] SpscRing<PacketRef>& to_port() noexcept { return to_port_; }
    // Called by the switch on the network thread after it pushed frames into to_port(): the
    // attachment drains the ring and writes (or, if its peer is not writable, waits and keeps the
    // frames in the ring).
    virtual void on_frames_from_switch() noexcept = 0;

    // Set by Switch::add_port; cleared by Switch::remove_port.
    void bind(std::uint16_t id, std::function<void(SwitchPort&)> on_ingress) {
        id_ = id;
        on_ingress_ = std::move(on_ingress);
    }

  private:
    std::string name_;
    PortKind kind_;
    PortCaps caps_;
    std::uint16_t id_ = 0xffff;
    std::function<void(SwitchPort&)> on_ingress_;
    PortCounters counters_;
    SpscRing<PacketRef> to_switch_;
    SpscRing<PacketRef> to_port_;
};

}  // namespace slipway
