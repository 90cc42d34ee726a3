// UdpEngine: the guest's UDP flows translated onto connected host datagram sockets.
//
// Theory of operation
// -------------------
// A guest flow is its 5-tuple (guest address and port, destination address and port). The
// first datagram of a flow passes the checks every new flow passes — a translatable destination
// (beyond the guest network, or the host-loopback alias, which means the host's 127.0.0.1), the
// egress policy (--allow/--deny, --host-alias-ports), the per-guest limits — and then gets a host
// socket connected to the destination. That socket is the flow: the kernel picked its local port
// at connect() and keeps it for the flow's life, so the peer sees one stable source port (a
// NAT mapping that is "endpoint-independent" per flow, RFC 4787 REQ-1 style, and never shared
// between guests); the kernel drops whatever another sender aims at it; ICMP errors about it
// land in its error queue (IP_RECVERR).
//
// Guest -> host: the datagrams of a burst of guest frames are gathered per flow and written with
// one sendmmsg() each (stable order within a flow). UDP has no flow control: a full send buffer
// drops the datagram, counted, exactly as the guest's own kernel would on a full queue.
// Datagrams that arrived fragmented were reassembled by the caller before they get here.
// Host -> guest: a readable socket is drained with recvmmsg() straight into pool buffers (the
// headers are written in front of the payload in place) in slices of `slice` datagrams per flow
// per turn, and only as far as the link has room — a flow cut short waits in a pending list and
// its datagrams in its socket's receive buffer, which is UDP's natural back-pressure. A datagram
// larger than the guest's MTU goes out as IPv4 fragments (RFC 791), since no guest offload takes
// oversized UDP.
// Errors: a queued ICMP error (port, host or network unreachable, fragmentation needed, time
// exceeded) becomes an ICMP message of the same type and code to the guest, quoting the guest's
// datagram as the guest sent it (RFC 792; RFC 1122 §3.2.2 says the guest's UDP must pass it to the
// socket, so its next recv() says ECONNREFUSED). Its source is the destination itself when the
// destination answered, else the gateway: host-side routers stay hidden, like the host's own
// addresses. A datagram to one of the gateway's own addresses that no service answers gets a
// port unreachable from that address; a denied one gets "communication administratively
// prohibited" (RFC 1812 §5.2.7.1, code 13).
// Lifetime: each flow sits in one of two lists ordered by last activity (either direction):
// request/response ports (DNS 53, NTP 123) with the short timeout, everything else with
// --udp-timeout. on_tick() frees expired flows from the heads of both lists, so its cost is the
// number that expire; evict_idle() frees the least recently active flow when the table is full.
//
// Nothing here allocates after construction, throws or blocks; a dropped datagram is a counter.
// One engine belongs to one network thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/udp.hpp"
#include "slipway/nat/dgram_socket.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat {

struct UdpConfig {
    MacAddr gateway_mac;
    Ipv4Addr gateway;
    std::optional<Ipv4Addr> dns_addr;  // the gateway's DNS address (its port 53 is not ours)
    std::optional<Ipv4Addr> host_alias;
    Ipv4Addr subnet;
    std::uint8_t prefix_len = 24;
    std::uint32_t mtu = 1500;
    std::chrono::milliseconds timeout{std::chrono::seconds(180)};
    std::chrono::milliseconds short_timeout{std::chrono::seconds(10)};  // ports 53 and 123
    FlowLimits* limits = nullptr;            // nullptr: no per-guest limits
    const EgressPolicy* policy = nullptr;    // nullptr: everything allowed
    std::uint32_t slice = 64;                // datagrams per flow per turn
    std::uint64_t evict_min_idle_ms = 1000;  // evict_idle() spares flows active this recently
};

struct UdpCounters {
    Counter flows_opened;       // flows created (first datagram passed every check)
    Counter flows_expired;      // flows freed after their idle timeout
    Counter flows_evicted;      // idle flows freed to make room (table full)
    Counter datagrams_to_host;  // datagrams the sockets took
    Counter bytes_to_host;
    Counter datagrams_to_guest;  // datagrams delivered to guests
    Counter bytes_to_guest;
    Counter fragments_to_guest;  // frames of datagrams larger than the guest MTU
    Counter icmp_relayed;        // ICMP errors from the host side passed on to a guest
    Counter port_unreachable;    // datagrams to a gateway address no service listens on
    Counter denied;              // destinations not translatable (multicast, the guest network)
    Counter denied_policy;       // refused by --deny / --host-alias-ports (ICMP code 13)
    Counter drop_limit;          // refused by a per-guest limit or a full table
    Counter socket_failed;       // socket() or connect() failed (ICMP unreachable when routing)
    Counter drop_send_full;      // the socket's send buffer was full
    Counter send_errors;         // sendmmsg failed otherwise
    Counter drop_malformed;      // port 0, bad length
    Counter drop_no_buffer;      // pool exhausted (receive, or building a frame)
    Counter drop_link_full;      // the link refused a frame
    Counter drop_truncated;      // a host datagram longer than the receive buffers

    template <class F>
    void for_each(F&& f) const {
        f("udp_flows_opened", flows_opened);
        f("udp_flows_expired", flows_expired);
        f("udp_flows_evicted", flows_evicted);
        f("udp_datagrams_to_host", datagrams_to_host);
        f("udp_bytes_to_host", bytes_to_host);
        f("udp_datagrams_to_guest", datagrams_to_guest);
        f("udp_bytes_to_guest", bytes_to_guest);
        f("udp_fragments_to_guest", fragments_to_guest);
        f("udp_icmp_relayed", icmp_relayed);
        f("udp_port_unreachable", port_unreachable);
        f("udp_denied", denied);
        f("udp_denied_policy", denied_policy);
        f("udp_drop_limit", drop_limit);
        f("udp_socket_failed", socket_failed);
        f("udp_drop_send_full", drop_send_full);
        f("udp_send_errors", send_errors);
        f("udp_drop_malformed", drop_malformed);
        f("udp_drop_no_buffer", drop_no_buffer);
        f("udp_drop_link_full", drop_link_full);
        f("udp_drop_truncated", drop_truncated);
    }
};

// A UDP datagram from a guest, parsed and validated by the caller (IPv4 header checksum, UDP
// length and checksum; reassembled if it came in fragments). Views stay valid until end_burst().
struct UdpDatagramIn {
    MacAddr guest_mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t in_port = 0;
    wire::Ipv4View ip;
    wire::UdpView udp;
};

struct UdpFlowInfo {
    FlowKey key;
    int fd = -1;
    std::uint64_t idle_ms = 0;
    bool inbound = false;   // a port forward's client mapping
    std::uint32_t tag = 0;  // its forward's id
};

// A port forward's client mapping (portfwd/forwarder.hpp): a socket connected to the client,
// which becomes an ordinary flow whose remote side is the client as the guest is to see it.
struct UdpInbound {
    int fd = -1;  // the engine's from now on (closed on failure)
    FlowKey key;  // guest side: the forward's guest address and port; remote: the client's view
    MacAddr guest_mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t in_port = 0;
    std::uint32_t tag = 0;
    // The client's IPv4 address as the socket is connected to it (unset for an IPv6 client): an
    // ICMP error it sends about the guest's reply is relayed from the client as the guest sees it.
    Ipv4Addr peer;
};

class UdpEngine {
  public:
    UdpEngine(const UdpConfig& cfg, FlowTable& table, DgramSockets& sockets, Poller& poller,
              GuestLink& link);
    ~UdpEngine();
    UdpEngine(const UdpEngine&) = delete;
    UdpEngine& operator=(const UdpEngine&) = delete;

    // Whether this engine takes a datagram to `dst` (the caller served DHCP and DNS first):
    // unicast beyond the guest network, the host alias, and the gateway's own addresses (which
    // answer port unreachable).
    [[nodiscard]] bool wants(Ipv4Addr dst) const noexcept;

    void process_datagram(const UdpDatagramIn& d, std::uint64_t now_ms) noexcept;
    // Sends what the burst gathered.
    void end_burst(std::uint64_t now_ms) noexcept;
    void process_socket_event(FlowId id, std::uint32_t events, std::uint64_t now_ms) noexcept;
    // Idle timeouts; call at least once a second while flows exist.
    void on_tick(std::uint64_t now_ms) noexcept;
    [[nodiscard]] bool has_pending() const noexcept;
    void run_pending(std::uint64_t now_ms) noexcept;
    // Frees the least recently active flow if it has been idle for evict_min_idle_ms.
    bool evict_idle(std::uint64_t now_ms) noexcept;
    void reset_all() noexcept;

    // Adopts a port forward's client mapping as a flow (kNoFlow, fd closed, when the table is
    // full or the key taken). Idle timeout: the long one.
    FlowId open_inbound(const UdpInbound& in, std::uint64_t now_ms) noexcept;
    // A datagram of flow `id` that reached the host some other way than its socket (the rule's
    // own socket, before the mapping existed): sent to the guest like one read from the socket.
    // False when it could not go (counted).
    bool deliver(FlowId id, ByteView payload, std::uint64_t now_ms) noexcept;
    // Frees every inbound flow with this tag; returns how many.
    std::uint32_t reset_tagged(std::uint32_t tag) noexcept;
    // The socket of a live flow, or -1.
    [[nodiscard]] int fd_of(FlowId id) const noexcept;

    [[nodiscard]] std::uint32_t flows() const noexcept;
    [[nodiscard]] const UdpCounters& counters() const noexcept;
    void for_each_flow(std::uint64_t now_ms,
                       const std::function<void(const UdpFlowInfo&)>& f) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace slipway::nat
