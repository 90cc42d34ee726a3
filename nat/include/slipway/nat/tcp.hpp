// TcpEngine: the guest's TCP flows translated onto host stream sockets (TCP.md is the contract).
//
// Theory of operation
// -------------------
// slipway speaks TCP to the guest and hands the bytes to a host socket; the host kernel speaks TCP
// to the peer. The engine holds no payload: guest->host bytes go straight from the guest's frame
// into the socket's send queue and are acknowledged only as far as the socket took them;
// host->guest bytes stay in the socket's receive queue, read with a peek at an offset, until the
// guest acknowledges them (HostSockets explains the two peek paths). Per flow it keeps only the
// sequence state of TCP.md §2, in an array indexed by the FlowTable's id.
//
// States and transitions (guest side; "sock" is the host socket):
//
//   (none) --guest SYN, policy and limits pass, socket()+connect() started--> connecting
//   connecting --connect ok: SYN-ACK sent--> established
//   (none) --open_inbound(): a port forward's client accepted, SYN sent to the guest--> syn_sent
//   syn_sent --guest SYN-ACK acknowledging our SYN: ACK sent--> established
//   syn_sent --guest RST, or no SYN-ACK within --connect-timeout--> client reset, freed
//   connecting --ECONNREFUSED / timeout (--connect-timeout) / other error--> RST to guest, freed
//   connecting --ENETUNREACH / EHOSTUNREACH--> ICMP unreachable (SYN quoted) to guest, freed
//   established --guest FIN, all before it written--> shutdown(SHUT_WR), FIN acked     [guest_fin]
//   established --sock EOF, every byte before it sent--> FIN to guest                  [fin_sent]
//   guest_fin and fin_sent and the guest acked our FIN --> socket closed, flow freed
//   any --guest RST (in window)--> SO_LINGER 0 + close, freed
//   any --socket error (ECONNRESET, EPIPE, ...)--> RST to guest, close, freed
//   any --idle timeout (established) or FIN timeout (one side closed)--> RST both sides, freed
//
// "connecting" ignores retransmitted SYNs: the SYN-ACK goes out only once the host connection
// exists (TCP.md §3). A segment for an unknown flow that is not a SYN gets a RST (RFC 9293
// §3.10.7.1), so a guest whose flow slipway already freed learns at once.
//
// The data path runs in bursts: process_segment() for each TCP frame of a burst from the switch
// (payloads of one flow that continue each other are gathered into one sendmsg()), then
// end_burst() writes what was gathered and sends one ACK per flow that needs one. Host sockets are
// watched edge-triggered through a Poller: readable -> peek and send as far as the guest's window
// and the link's room allow, in bounded slices per flow so one flow cannot starve the others
// (flows cut short wait in a pending list that run_pending() serves). The link's room is that of
// the guest's own port queue too (room_to()): a guest slow to post RX buffers is sent no more than
// its queue takes, and its ACKs bring the rest, like a window; frames sent past it would only be
// dropped by the switch and retransmitted. Writable -> connect done, or
// send space returned after a small window (a window update goes out). Timers (on_tick(), every
// few milliseconds from the driver) cover retransmission (RFC 6298 estimator, 200 ms floor,
// exponential back-off), zero-window probes, delayed ACKs, connect, idle and FIN timeouts.
// A small request on a flow that has answered before has its ACK held for the reply's data
// frames (or the next tick); every other ACK goes out with its burst. Segments must overlap
// the receive window (RFC 9293 §3.10.7.4), which reaches to the furthest edge ever advertised.
//
// Nothing here allocates after construction, throws or blocks; a dropped frame is a counter.
// One engine belongs to one network thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/tcp.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/host_socket.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"

namespace slipway::nat {

// Socket readiness as the driver reports it to the engine (epoll's bits, named portably).
namespace sock_event {
inline constexpr std::uint32_t in = 1;      // readable (new data, or the peer's FIN)
inline constexpr std::uint32_t out = 2;     // writable (connect finished, send space returned)
inline constexpr std::uint32_t error = 4;   // a pending socket error
inline constexpr std::uint32_t hup = 8;     // both directions shut
inline constexpr std::uint32_t rdhup = 16;  // the peer shut its side (its FIN arrived)
}  // namespace sock_event

// Readiness interest on host sockets. Edge-triggered: an event fires when the socket becomes
// ready for something in its interest (and once at once when it already is, on watch()/rewatch()).
class Poller {
  public:
    virtual ~Poller() = default;
    // Starts watching `fd` for flow `id`. False when the kernel refuses (the flow is then failed).
    virtual bool watch(int fd, FlowId id, std::uint32_t interest) noexcept = 0;
    virtual void rewatch(int fd, FlowId id, std::uint32_t interest) noexcept = 0;
    virtual void unwatch(int fd) noexcept = 0;
};

// Where the engine's frames go (the gateway's ring into the switch).
class GuestLink {
  public:
    virtual ~GuestLink() = default;
    [[nodiscard]] virtual PacketPool& pool() noexcept = 0;
    // Frames the link takes now; the engine sends no more than this per call.
    [[nodiscard]] virtual std::size_t room() noexcept = 0;
    // Queues a frame. False (frame untouched) when the link is full.
    virtual bool dispatch(PacketRef& frame) noexcept = 0;
    // Moves queued frames on now if it can (the engine calls it when room() runs low).
    virtual void flush() noexcept {}
    // dispatch(), after a flush() when the link is full.
    bool push(PacketRef& frame) noexcept {
        if (room() == 0) flush();
        return dispatch(frame);
    }
    // What the guest behind switch port `port` takes (GSO frames, partial checksums).
    [[nodiscard]] virtual PortCaps caps_of(std::uint16_t port) noexcept = 0;
    // Frames that may go to switch port `port` now without being dropped on the way: room(),
    // bounded by what that port's own queue takes (a guest behind on its RX queue fills it).
    [[nodiscard]] virtual std::size_t room_to(std::uint16_t /*port*/) noexcept { return room(); }
};

struct TcpConfig {
    MacAddr gateway_mac;
    Ipv4Addr gateway;
    // Traffic to this address goes to the host's 127.0.0.1, same port.
    std::optional<Ipv4Addr> host_alias;
    // Guest connections to dns_addr port 53 get a stream from open_dns_stream() as their host end
    // (the DNS service serves the other end): the fd, or -errno. Unset: such SYNs get a RST.
    std::optional<Ipv4Addr> dns_addr;
    std::function<int()> open_dns_stream;
    // Guest connections to the gateway's other ports get, as their host end, what this returns
    // for the port and the guest's address: a stream some local service serves (the API for
    // --guest-api), or -errno (-ECONNREFUSED: RST). Unset: every such SYN gets a RST.
    std::function<int(std::uint16_t port, Ipv4Addr guest)> open_gateway_stream;
    // Which of the gateway's ports have such a service (others get a RST at once, before any
    // admission check). Unset: none.
    std::function<bool(std::uint16_t port)> serves_gateway_port;
    // The guest network (its own addresses are not NAT destinations).
    Ipv4Addr subnet;
    std::uint8_t prefix_len = 24;
    std::uint32_t mtu = 1500;
    std::chrono::milliseconds connect_timeout{30000};
    std::chrono::milliseconds idle_timeout{std::chrono::hours(2)};
    std::chrono::milliseconds fin_timeout{std::chrono::seconds(60)};
    // Admission limits shared with the other engines; nullptr: the engine keeps its own, with
    // only max_flows_per_guest (flows per guest address; 0: only the table's capacity).
    FlowLimits* limits = nullptr;
    std::uint32_t max_flows_per_guest = 0;
    // The egress policy (--allow/--deny, --host-alias-ports); nullptr: everything allowed.
    const EgressPolicy* policy = nullptr;
    // Window scale announced to guests: 65535 << scale must cover the largest socket send buffer
    // (net.ipv4.tcp_wmem's maximum); 0..14.
    std::uint8_t rcv_wscale = 7;
    // Frames per flow per turn before it yields to the others (fairness, TCP.md §7).
    std::uint32_t slice_frames = 64;
    // Initial sequence numbers; nullptr: arc4random(). Tests and the fuzz target fix it.
    std::uint32_t (*isn)() = nullptr;
    // An inbound flow (a port forward's client) the guest refused or never answered: its tag.
    std::function<void(std::uint32_t tag)> on_inbound_refused;
};

struct TcpCounters {
    Counter syn_received;         // guest SYNs that started a flow
    Counter established;          // flows whose host connection came up (SYN-ACK sent)
    Counter closed;               // flows freed after an orderly close
    Counter connect_refused;      // ECONNREFUSED: RST to the guest
    Counter connect_unreachable;  // ENETUNREACH/EHOSTUNREACH: ICMP unreachable to the guest
    Counter connect_timeout;      // no answer within --connect-timeout: RST to the guest
    Counter connect_failed;       // any other connect or socket() failure: RST to the guest
    Counter reset_by_guest;       // guest RSTs: the host peer was reset
    Counter reset_by_host;        // socket errors: RST to the guest
    Counter timed_out;            // idle or FIN timeouts: both sides reset
    Counter rst_no_flow;          // segments for no known flow, answered with RST
    Counter limit_global;         // SYNs refused (RST): flow table full
    Counter limit_guest;          // SYNs refused (RST): the guest's flow cap reached
    Counter denied;               // SYNs refused (RST): destination not translatable
    Counter denied_policy;        // SYNs refused (RST): --deny / --host-alias-ports
    Counter segments_in;          // guest segments processed
    Counter bytes_to_host;        // guest payload bytes the sockets took
    Counter short_writes;         // writes the socket took only in part (tail left unacked)
    Counter out_of_order;         // guest segments beyond rcv_nxt (dup ACK sent, not written)
    Counter frames_to_guest;      // data frames sent to guests
    Counter bytes_to_guest;       // payload bytes sent to guests (retransmissions included)
    Counter retransmits;          // go-back retransmissions (timer)
    Counter fast_retransmits;     // go-back retransmissions (three duplicate ACKs)
    Counter window_probes;        // zero-window probes sent
    Counter window_updates;       // window updates sent after send space returned
    Counter acks_sent;            // bare ACKs sent
    Counter drop_malformed;       // bad header, bad flags combination
    Counter drop_no_buffer;       // pool exhausted while building a control frame (ACK, RST)
    Counter pool_waits;           // data frames deferred for want of a buffer (data stays queued)
    Counter guest_queue_waits;    // sends held back: the guest's port queue was full (ditto)
    Counter drop_link_full;       // the link refused a frame (data frames are re-sent later)
    Counter drop_out_of_window;   // ACKs of unsent data, RSTs outside the window, ...
    Counter inbound_opened;       // port-forward clients handed to the engine (SYN sent)
    Counter inbound_established;  // ... whose guest answered with a SYN-ACK
    Counter inbound_refused;      // ... whose guest answered with a RST (client reset)
    Counter inbound_timeout;      // ... whose guest never answered (client reset)
    Counter inbound_failed;       // ... refused for want of a flow slot (client reset)

    template <class F>
    void for_each(F&& f) const {
        f("tcp_syn_received", syn_received);
        f("tcp_established", established);
        f("tcp_closed", closed);
        f("tcp_connect_refused", connect_refused);
        f("tcp_connect_unreachable", connect_unreachable);
        f("tcp_connect_timeout", connect_timeout);
        f("tcp_connect_failed", connect_failed);
        f("tcp_reset_by_guest", reset_by_guest);
        f("tcp_reset_by_host", reset_by_host);
        f("tcp_timed_out", timed_out);
        f("tcp_rst_no_flow", rst_no_flow);
        f("tcp_limit_global", limit_global);
        f("tcp_limit_guest", limit_guest);
        f("tcp_denied", denied);
        f("tcp_denied_policy", denied_policy);
        f("tcp_segments_in", segments_in);
        f("tcp_bytes_to_host", bytes_to_host);
        f("tcp_short_writes", short_writes);
        f("tcp_out_of_order", out_of_order);
        f("tcp_frames_to_guest", frames_to_guest);
        f("tcp_bytes_to_guest", bytes_to_guest);
        f("tcp_retransmits", retransmits);
        f("tcp_fast_retransmits", fast_retransmits);
        f("tcp_window_probes", window_probes);
        f("tcp_window_updates", window_updates);
        f("tcp_acks_sent", acks_sent);
        f("tcp_drop_malformed", drop_malformed);
        f("tcp_drop_no_buffer", drop_no_buffer);
        f("tcp_pool_waits", pool_waits);
        f("tcp_guest_queue_waits", guest_queue_waits);
        f("tcp_drop_link_full", drop_link_full);
        f("tcp_drop_out_of_window", drop_out_of_window);
        f("tcp_inbound_opened", inbound_opened);
        f("tcp_inbound_established", inbound_established);
        f("tcp_inbound_refused", inbound_refused);
        f("tcp_inbound_timeout", inbound_timeout);
        f("tcp_inbound_failed", inbound_failed);
    }
};

// syn_sent: an inbound flow (port forward) waiting for the guest's SYN-ACK.
enum class TcpState : std::uint8_t { free = 0, connecting, established, closing, syn_sent };

// A TCP segment from a guest, parsed and validated by the caller (Ethernet, IPv4 header checksum,
// TCP header). The views must stay valid until end_burst().
struct TcpSegmentIn {
    MacAddr guest_mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t in_port = 0;  // switch port the guest sits behind
    wire::Ipv4View ip;
    wire::TcpView tcp;
};

// One flow, as the API and tests see it.
struct TcpFlowInfo {
    FlowKey key;
    TcpState state = TcpState::free;
    int fd = -1;
    std::uint32_t unacked = 0;  // bytes sent to the guest, not yet acknowledged
    std::uint32_t snd_wnd = 0;  // the guest's window
    bool guest_fin = false, sock_eof = false, fin_sent = false;
    bool inbound = false;   // opened through a port forward
    std::uint32_t tag = 0;  // the forward's id (inbound flows)
};

// A port forward's accepted client, to be connected into the guest (TCP.md §3, inbound).
struct TcpInbound {
    int fd = -1;  // connected, non-blocking; the engine's from now on (closed on failure)
    // guest_ip/guest_port: the guest's service; remote_ip/remote_port: the client as the guest
    // is to see it (its own address, or the host alias for loopback clients). Must be free.
    FlowKey key;
    MacAddr guest_mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t in_port = 0;  // switch port the guest sits behind
    std::uint32_t tag = 0;      // the forward's id, reported back by on_inbound_refused
};

class TcpEngine {
  public:
    // The table, sockets, poller and link must outlive the engine. Allocates every per-flow array
    // for the table's capacity now.
    TcpEngine(const TcpConfig& cfg, FlowTable& table, HostSockets& sockets, Poller& poller,
              GuestLink& link);
    ~TcpEngine();
    TcpEngine(const TcpEngine&) = delete;
    TcpEngine& operator=(const TcpEngine&) = delete;

    // Whether this engine translates a segment to `dst` (so the caller hands it over rather than
    // counting it unhandled): every unicast address outside the guest subnet, the host alias, and
    // the DNS address's port 53.
    [[nodiscard]] bool wants(Ipv4Addr dst, std::uint16_t dst_port) const noexcept;

    void process_segment(const TcpSegmentIn& seg, std::uint64_t now_ms) noexcept;
    // Writes what the burst gathered, sends the burst's ACKs.
    void end_burst(std::uint64_t now_ms) noexcept;
    // A host socket's readiness (sock_event bits) for flow `id`.
    void process_socket_event(FlowId id, std::uint32_t events, std::uint64_t now_ms) noexcept;
    // Timers; call every few milliseconds.
    void on_tick(std::uint64_t now_ms) noexcept;
    // Flows with more to send than their last slice allowed: serve them (bounded).
    [[nodiscard]] bool has_pending() const noexcept;
    void run_pending(std::uint64_t now_ms) noexcept;
    // Shutdown: every flow reset on both sides and freed.
    void reset_all() noexcept;

    // Starts an inbound flow: sends the guest a SYN from in.key's remote side. kNoFlow (the fd
    // closed with a reset, counted) when no flow slot is free or the key is taken.
    FlowId open_inbound(const TcpInbound& in, std::uint64_t now_ms) noexcept;
    // Resets (both sides) every inbound flow with this tag; returns how many.
    std::uint32_t reset_tagged(std::uint32_t tag) noexcept;
    // Whether the table holds `key` (a port forward picks a free client port with it).
    [[nodiscard]] bool has_flow(const FlowKey& key) const noexcept;

    [[nodiscard]] const TcpCounters& counters() const noexcept;
    [[nodiscard]] std::uint32_t flows_in(TcpState s) const noexcept;
    [[nodiscard]] std::optional<TcpFlowInfo> flow_info(FlowId id) const noexcept;
    // Calls f(TcpFlowInfo) for every live TCP flow.
    void for_each_flow(const std::function<void(const TcpFlowInfo&)>& f) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace slipway::nat
