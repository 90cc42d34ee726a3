// IcmpEngine: the guest's ICMP echo requests (ping) translated onto host sockets.
//
// Theory of operation
// -------------------
// An echo flow is (guest address, destination, the guest's echo identifier). Its requests are
// sent by the host and its replies come back rewritten to the guest's identifier, so concurrent
// pings from several guests — or several pings in one guest — never see each other's replies.
// Three modes (--icmp), chosen at start-up; `auto` takes the first that works and logs it:
//   - ping: an unprivileged ICMP datagram socket (SOCK_DGRAM/IPPROTO_ICMP, allowed when
//     net.ipv4.ping_group_range holds one of our groups) per flow, connected to the destination.
//     The kernel gives each socket its own identifier and delivers it the replies carrying it —
//     from any sender, so the engine relays only those whose source is the destination; errors
//     about it come through IP_RECVERR, as for UDP.
//   - raw: one raw ICMP socket (CAP_NET_RAW) for every flow. The engine gives each flow a host
//     identifier no other flow holds and matches replies by identifier *and* source address;
//     errors quoting one of our requests are matched the same way. The raw socket sees every
//     ICMP message the host receives; whatever matches no flow is ignored.
//   - gateway: no host sockets; only the gateway's own address answers (the gateway does that
//     itself), every other echo request is dropped and counted.
// A reply is only ever relayed, never made up: a destination the host cannot reach gets no echo
// reply, only the ICMP error the host received, if any (RFC 1812 §4.3.2.3 quoting). The
// host-loopback alias means the host's 127.0.0.1 here too. New flows pass the egress policy
// (denied: ICMP "communication administratively prohibited") and the per-guest limits. Flows
// expire after `timeout` without a request or reply (30 s, Linux conntrack's ICMP timeout).
//
// Nothing here allocates after construction, throws or blocks. One engine, one network thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/nat/dgram_socket.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat {

enum class IcmpMode : std::uint8_t { gateway, ping, raw };

[[nodiscard]] constexpr std::string_view to_string(IcmpMode m) noexcept {
    switch (m) {
        case IcmpMode::gateway:
            return "gateway";
        case IcmpMode::ping:
            return "ping";
        case IcmpMode::raw:
            return "raw";
    }
    return "?";
}

// The id under which the raw socket's readiness reaches process_socket_event().
inline constexpr FlowId kRawIcmpSocket = kNoFlow - 1;

struct IcmpConfig {
    MacAddr gateway_mac;
    Ipv4Addr gateway;
    std::optional<Ipv4Addr> dns_addr;
    std::optional<Ipv4Addr> host_alias;
    Ipv4Addr subnet;
    std::uint8_t prefix_len = 24;
    std::uint32_t mtu = 1500;
    IcmpMode mode = IcmpMode::gateway;
    std::chrono::milliseconds timeout{std::chrono::seconds(30)};
    FlowLimits* limits = nullptr;
    const EgressPolicy* policy = nullptr;
    std::uint32_t slice = 64;  // messages per socket per turn
    std::uint64_t evict_min_idle_ms = 1000;
};

struct IcmpCounters {
    Counter flows_opened;
    Counter flows_expired;
    Counter flows_evicted;
    Counter requests;        // echo requests sent on the guests' behalf
    Counter replies;         // echo replies relayed to guests
    Counter errors_relayed;  // ICMP errors about guests' requests relayed
    Counter denied;          // destinations not translatable
    Counter denied_policy;   // refused by --deny (code 13 sent)
    Counter drop_limit;      // per-guest limits, full table
    Counter socket_failed;   // socket() failed (unreachable destinations get ICMP)
    Counter send_errors;     // the request could not be sent
    Counter unhandled;       // not an echo request, or --icmp=gateway
    Counter unmatched;       // raw-socket messages that belong to no flow
    Counter drop_no_buffer;
    Counter drop_link_full;    // replies the link refused
    Counter errors_link_full;  // ICMP errors to guests (policy, unreachable) the link refused
    Counter drop_malformed;

    template <class F>
    void for_each(F&& f) const {
        f("icmp_flows_opened", flows_opened);
        f("icmp_flows_expired", flows_expired);
        f("icmp_flows_evicted", flows_evicted);
        f("icmp_requests", requests);
        f("icmp_replies", replies);
        f("icmp_errors_relayed", errors_relayed);
        f("icmp_denied", denied);
        f("icmp_denied_policy", denied_policy);
        f("icmp_drop_limit", drop_limit);
        f("icmp_socket_failed", socket_failed);
        f("icmp_send_errors", send_errors);
        f("icmp_unhandled", unhandled);
        f("icmp_unmatched", unmatched);
        f("icmp_drop_no_buffer", drop_no_buffer);
        f("icmp_drop_link_full", drop_link_full);
        f("icmp_errors_link_full", errors_link_full);
        f("icmp_drop_malformed", drop_malformed);
    }
};

// An ICMP message from a guest, parsed and validated by the caller (IPv4 header and ICMP
// checksums; reassembled if it came in fragments).
struct IcmpMessageIn {
    MacAddr guest_mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t in_port = 0;
    wire::Ipv4View ip;
    wire::Icmpv4View icmp;
};

class IcmpEngine {
  public:
    // In raw mode the shared socket is opened and watched here; when that fails the engine runs
    // in gateway mode (mode() says so).
    IcmpEngine(const IcmpConfig& cfg, FlowTable& table, DgramSockets& sockets, Poller& poller,
               GuestLink& link);
    ~IcmpEngine();
    IcmpEngine(const IcmpEngine&) = delete;
    IcmpEngine& operator=(const IcmpEngine&) = delete;

    [[nodiscard]] IcmpMode mode() const noexcept;
    // Whether an ICMP message to `dst` is ours (not the gateway's own address, which the gateway
    // answers; everything translatable when a host mode runs).
    [[nodiscard]] bool wants(Ipv4Addr dst) const noexcept;
    void process_message(const IcmpMessageIn& m, std::uint64_t now_ms) noexcept;
    // `id`: a flow's id (ping mode) or kRawIcmpSocket.
    void process_socket_event(FlowId id, std::uint32_t events, std::uint64_t now_ms) noexcept;
    void on_tick(std::uint64_t now_ms) noexcept;
    [[nodiscard]] bool has_pending() const noexcept;
    void run_pending(std::uint64_t now_ms) noexcept;
    bool evict_idle(std::uint64_t now_ms) noexcept;
    void reset_all() noexcept;

    [[nodiscard]] std::uint32_t flows() const noexcept;
    [[nodiscard]] const IcmpCounters& counters() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace slipway::nat
