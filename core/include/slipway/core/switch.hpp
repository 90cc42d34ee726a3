// Switch: the L2 switch between all ports of one network (MAC learning, flooding, source-MAC lock,
// isolation, offload fix-up). Runs on the network thread.
//
// Theory of operation: see core/src/switch.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/core/types.hpp"

namespace slipway {

class PcapWriter;

struct SwitchConfig {
    // Isolation mode: a guest port reaches only gateway ports (and gateway ports reach everyone).
    bool isolate_guests = false;
    // Source-MAC lock: a guest port may only send from the first MAC it used; reset_port() (a new
    // guest on the same socket) forgets the lock.
    bool mac_lock = true;
    std::chrono::seconds mac_ageing{300};
    std::uint32_t mac_table_size = 4096;  // entries, power of two
};

struct SwitchCounters {
    Counter frames;          // frames processed
    Counter flooded;         // broadcast/multicast/unknown-unicast frames flooded
    Counter drop_mac_table;  // MAC table full: source not learned (frame still forwarded)
    Counter drop_no_dest;    // nowhere to send (e.g. only port on the network)

    template <class F>
    void for_each(F&& f) const {
        f("frames", frames);
        f("flooded", flooded);
        f("drop_mac_table", drop_mac_table);
        f("drop_no_dest", drop_no_dest);
    }
};

class Switch {
  public:
    Switch(PacketPool& pool, SwitchConfig cfg);
    ~Switch();
    Switch(const Switch&) = delete;
    Switch& operator=(const Switch&) = delete;

    // Registers a port (start-up or when an attachment appears). The port must outlive its
    // registration. Returns the port id.
    std::uint16_t add_port(SwitchPort& port);
    // Unregisters a port and forgets every MAC learned on it; frames still in its rings stay
    // there (the port owns them).
    void remove_port(SwitchPort& port);
    // Pins `mac` to the port for good (its own MAC, e.g. the gateway's): never ages, never
    // relearned elsewhere, and frames from other ports with that source are dropped as spoofed
    // (their drop_src_mac). invalid_argument for an unregistered port, a group or zero MAC, or one
    // pinned to another port; too_large if its table window is full (start-up only: cannot happen
    // on a fresh table).
    Result<void> pin_mac(SwitchPort& port, const MacAddr& mac);
    // Forgets the MAC lock and the MACs learned on a port (its guest went away and a new one may
    // come on the same attachment).
    void reset_port(SwitchPort& port);

    // Every frame that crosses the switch is also written here (nullptr: none).
    void set_pcap(PcapWriter* pcap) noexcept { pcap_ = pcap; }

    // Drains the port's to_switch() ring in bursts and forwards every frame. Re-entrant calls (a
    // port that answers from inside on_frames_from_switch()) are queued, not nested.
    void process_port(SwitchPort& port) noexcept;

    [[nodiscard]] const SwitchCounters& counters() const noexcept { return counters_; }
    // Indexed by port id. Ids are stable while a port is registered; a removed port leaves a
    // nullptr slot that a later add_port() reuses.
    [[nodiscard]] std::span<SwitchPort* const> ports() const noexcept { return ports_; }
    [[nodiscard]] const SwitchConfig& config() const noexcept { return cfg_; }

  private:
    struct Impl;
    PacketPool& pool_;
    SwitchConfig cfg_;
    std::vector<SwitchPort*> ports_;
    SwitchCounters counters_;
    PcapWriter* pcap_ = nullptr;
    Impl* impl_;  // MAC table, pending queue, scratch bursts (allocated once in the constructor)
};

}  // namespace slipway
