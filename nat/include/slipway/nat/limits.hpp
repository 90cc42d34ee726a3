// FlowLimits: the admission rules every new NAT flow passes, whichever protocol opens it.
//
// Theory of operation
// -------------------
// The flow table is one pool of ids and host sockets shared by TCP, UDP and ICMP echo flows, so
// one guest (or one runaway program in it) could take all of it and starve the others. Before an
// engine creates a flow it asks admit(), which checks, for the flow's guest address:
//   - its live flows against --max-flows-per-guest (TCP gets a RST, UDP and ICMP a silent drop);
//   - for TCP, its half-open flows (connect() started, no answer yet) against --max-half-open:
//     a port scan or a flood of SYNs to black holes holds sockets for up to --connect-timeout
//     each; the SYN is dropped, so a legitimate client simply retransmits it a second later;
//   - its rate of new flows against --new-flow-rate (a token bucket per guest: `rate` tokens per
//     second, `burst` deep); the first packet is dropped, as a congested router would.
// Every refusal has a counter and a rate-limited log line naming the guest. Then insert() puts
// the flow into the table; when the table is full it asks the evictor (the datagram engines) to
// free the least recently active UDP or ICMP flow that has been idle for at least a second —
// datagram flows carry no connection state a peer would miss, unlike TCP — and retries once.
// opened()/connected()/closed() keep the per-guest counts exact as flows come and go, so the
// limits recover the moment flows close.
//
// The per-guest table is open addressing on the guest address, sized at start-up (a guest
// network has few addresses; entries are never removed, a full table admits newcomers without
// per-guest caps, and says so once). Nothing here allocates after construction, throws or blocks.
// One instance belongs to one network thread.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/nat/flow_table.hpp"

namespace slipway::nat {

struct LimitsConfig {
    std::uint32_t max_flows_per_guest = 0;  // 0: only the table's capacity
    std::uint32_t max_half_open = 0;        // TCP flows connecting at once, per guest; 0: none
    std::uint32_t new_flows_per_sec = 0;    // per guest; 0: unlimited
    std::uint32_t new_flows_burst = 0;      // token bucket depth; 0: one second's worth
    std::uint32_t guest_slots = 4096;       // distinct guest addresses tracked
};

struct LimitCounters {
    Counter guest_cap;   // new flows refused: the guest's flow cap reached
    Counter half_open;   // TCP SYNs dropped: the guest's half-open cap reached
    Counter rate;        // first packets dropped: the guest's new-flow rate exceeded
    Counter table_full;  // new flows refused: table full, nothing idle to evict
    Counter evicted;     // idle datagram flows freed to make room for a new flow

    template <class F>
    void for_each(F&& f) const {
        f("limit_guest_flows", guest_cap);
        f("limit_half_open", half_open);
        f("limit_rate", rate);
        f("limit_table_full", table_full);
        f("flows_evicted", evicted);
    }
};

enum class Admit : std::uint8_t { ok, guest_cap, half_open, rate };

class FlowLimits {
  public:
    explicit FlowLimits(const LimitsConfig& cfg);

    // May `guest` open a new flow now? `half_open`: a TCP flow about to connect. Consumes a
    // token of the guest's rate bucket when it says ok; counts and logs a refusal.
    [[nodiscard]] Admit admit(Ipv4Addr guest, bool half_open, std::uint64_t now_ms) noexcept;
    // The flow admitted for `guest` exists now (half_open: it is connecting).
    void opened(Ipv4Addr guest, bool half_open) noexcept;
    // A half-open flow of `guest` finished connecting.
    void connected(Ipv4Addr guest) noexcept;
    // A flow of `guest` is gone (half_open: it never finished connecting).
    void closed(Ipv4Addr guest, bool half_open) noexcept;

    // table.insert(key), and when the table is full one eviction and a second try; a refusal is
    // counted (table_full) and logged.
    [[nodiscard]] Result<FlowId> insert(FlowTable& table, const FlowKey& key,
                                        std::uint64_t now_ms) noexcept;
    // Frees one idle datagram flow (true) or finds none (false); installed by the driver.
    void set_evictor(std::function<bool(std::uint64_t now_ms)> f) { evictor_ = std::move(f); }

    [[nodiscard]] std::uint32_t flows_of(Ipv4Addr guest) const noexcept;
    [[nodiscard]] std::uint32_t half_open_of(Ipv4Addr guest) const noexcept;
    [[nodiscard]] const LimitCounters& counters() const noexcept { return c_; }
    [[nodiscard]] const LimitsConfig& config() const noexcept { return cfg_; }

  private:
    struct Guest {
        std::uint32_t addr = 0;  // 0: empty slot
        std::uint32_t flows = 0;
        std::uint32_t half_open = 0;
        std::uint32_t tokens_milli = 0;  // rate bucket, in thousandths of a flow
        std::uint64_t refill_ms = 0;
    };
    [[nodiscard]] Guest* slot(Ipv4Addr ip, bool create) noexcept;
    [[nodiscard]] const Guest* slot(Ipv4Addr ip) const noexcept;

    LimitsConfig cfg_;
    LimitCounters c_;
    std::vector<Guest> guests_;
    std::uint32_t mask_ = 0;
    std::function<bool(std::uint64_t)> evictor_;
};

}  // namespace slipway::nat
