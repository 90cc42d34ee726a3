// FlowLimits: per-guest flow, half-open and rate admission, and table-full eviction (limits.hpp).
#include "slipway/nat/limits.hpp"

#include <algorithm>
#include <bit>

#include "slipway/core/log.hpp"

namespace slipway::nat {

FlowLimits::FlowLimits(const LimitsConfig& cfg) : cfg_(cfg) {
    const std::uint32_t n = std::bit_ceil(std::max<std::uint32_t>(cfg_.guest_slots, 16));
    guests_.assign(n, Guest{});
    mask_ = n - 1;
    if (cfg_.new_flows_per_sec != 0 && cfg_.new_flows_burst == 0)
        cfg_.new_flows_burst = cfg_.new_flows_per_sec;
}

FlowLimits::Guest* FlowLimits::slot(Ipv4Addr ip, bool create) noexcept {
    if (ip.v == 0) return nullptr;
    std::uint32_t i = (ip.v * 2654435761u) & mask_;
    for (std::uint32_t n = 0; n <= mask_; ++n, i = (i + 1) & mask_) {
        Guest& g = guests_[i];
        if (g.addr == ip.v) return &g;
        if (g.addr == 0) {
            if (!create) return nullptr;
            g = Guest{};
            g.addr = ip.v;
            g.tokens_milli = cfg_.new_flows_burst * 1000;
            return &g;
        }
    }
    SLW_WARN_RATELIMITED("nat: more than {} guest addresses; per-guest limits do not apply to {}",
                         guests_.size(), ip.to_string());
    return nullptr;
}

const FlowLimits::Guest* FlowLimits::slot(Ipv4Addr ip) const noexcept {
    return const_cast<FlowLimits*>(this)->slot(ip, false);
}

Admit FlowLimits::admit(Ipv4Addr guest, bool half_open, std::uint64_t now_ms) noexcept {
    Guest* g = slot(guest, true);
    if (g == nullptr) return Admit::ok;
    if (cfg_.max_flows_per_guest != 0 && g->flows >= cfg_.max_flows_per_guest) {
        c_.guest_cap.inc();
        SLW_WARN_RATELIMITED("nat: guest {} has {} flows (--max-flows-per-guest): new flow refused",
                             guest.to_string(), g->flows);
        return Admit::guest_cap;
    }
    if (half_open && cfg_.max_half_open != 0 && g->half_open >= cfg_.max_half_open) {
        c_.half_open.inc();
        SLW_WARN_RATELIMITED(
            "nat: guest {} has {} connections opening (--max-half-open): SYN dropped",
            guest.to_string(), g->half_open);
        return Admit::half_open;
    }
    if (cfg_.new_flows_per_sec != 0) {
        const std::uint64_t cap = std::uint64_t{cfg_.new_flows_burst} * 1000;
        const std::uint64_t elapsed = now_ms >= g->refill_ms ? now_ms - g->refill_ms : 0;
        // rate flows per second = rate thousandths of a flow per millisecond.
        const std::uint64_t t =
            std::min<std::uint64_t>(cap, g->tokens_milli + elapsed * cfg_.new_flows_per_sec);
        g->refill_ms = now_ms;
        if (t < 1000) {
            g->tokens_milli = static_cast<std::uint32_t>(t);
            c_.rate.inc();
            SLW_WARN_RATELIMITED(
                "nat: guest {} opens flows faster than {}/s (--new-flow-rate): packet dropped",
                guest.to_string(), cfg_.new_flows_per_sec);
            return Admit::rate;
        }
        g->tokens_milli = static_cast<std::uint32_t>(t - 1000);
    }
    return Admit::ok;
}

void FlowLimits::opened(Ipv4Addr guest, bool half_open) noexcept {
    if (Guest* g = slot(guest, true)) {
        ++g->flows;
        if (half_open) ++g->half_open;
    }
}

void FlowLimits::connected(Ipv4Addr guest) noexcept {
    if (Guest* g = slot(guest, false); g && g->half_open != 0) --g->half_open;
}

void FlowLimits::closed(Ipv4Addr guest, bool half_open) noexcept {
    Guest* g = slot(guest, false);
    if (g == nullptr) return;
    if (g->flows != 0) --g->flows;
    if (half_open && g->half_open != 0) --g->half_open;
}

Result<FlowId> FlowLimits::insert(FlowTable& table, const FlowKey& key,
                                  std::uint64_t now_ms) noexcept {
    auto r = table.insert(key);
    if (r || r.error() != Errc::too_large) return r;
    if (evictor_ && evictor_(now_ms)) {
        c_.evicted.inc();
        SLW_LOG_RATELIMITED(::spdlog::level::info,
                            "nat: flow table full ({} flows, --max-flows): the idlest UDP/ICMP "
                            "flow made room for a new flow from {}",
                            table.capacity(), key.guest_ip.to_string());
        r = table.insert(key);
        if (r) return r;
    }
    c_.table_full.inc();
    SLW_WARN_RATELIMITED("nat: flow table full ({} flows, --max-flows): new flow from {} refused",
                         table.capacity(), key.guest_ip.to_string());
    return r;
}

std::uint32_t FlowLimits::flows_of(Ipv4Addr guest) const noexcept {
    const Guest* g = slot(guest);
    return g ? g->flows : 0;
}

std::uint32_t FlowLimits::half_open_of(Ipv4Addr guest) const noexcept {
    const Guest* g = slot(guest);
    return g ? g->half_open : 0;
}

}  // namespace slipway::nat
