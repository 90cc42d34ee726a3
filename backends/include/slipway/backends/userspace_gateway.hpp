// The userspace engine's gateway port: the switch port behind which slipway itself answers as the
// network's router: ARP, ICMP echo to the gateway, DHCP, DNS, and the NAT engine's TCP, UDP and
// ICMP echo flows (with IPv4 reassembly in front of them).
#pragma once

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/arp.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/frame.hpp"
#include "slipway/dhcp/server.hpp"
#include "slipway/dns/forwarder.hpp"
#include "slipway/nat/dgram_socket.hpp"
#include "slipway/nat/epoll_poller.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/fragment.hpp"
#include "slipway/nat/host_socket.hpp"
#include "slipway/nat/icmp.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/nat/tcp.hpp"
#include "slipway/nat/udp.hpp"
#include "slipway/portfwd/forwarder.hpp"

namespace slipway {
class Switch;
}

namespace slipway::backends {

struct GatewayConfig {
    Ipv4Addr gateway;
    Ipv4Addr dns;  // usually the gateway address
    std::optional<Ipv4Addr> host_alias;
    MacAddr mac;
    std::uint32_t mtu = 1500;
    dhcp::Server* dhcp = nullptr;  // nullptr: no DHCP (--no-dhcp); datagrams to port 67 unhandled
    // nullptr: no DNS (--no-dns); datagrams to the DNS address's port 53 unhandled. Set after
    // construction with set_dns(): the forwarder replies through the gateway.
    dns::Forwarder* dns_forwarder = nullptr;
};

struct GatewayCounters {
    Counter arp_replies;        // ARP requests for one of our addresses, answered
    Counter icmp_echo_replies;  // echo requests to the gateway, answered
    Counter ignored;            // not for us (other guests' ARP, broadcasts we do not serve)
    Counter drop_malformed;     // failed to parse, bad IPv4 header or ICMP checksum
    Counter drop_unhandled;     // for us, but not served yet (TCP/UDP/other until NAT lands)
    Counter drop_no_buffer;     // pool exhausted while building a reply
    Counter drop_ring_full;     // our ring into the switch was full
    Counter dhcp_handled;       // datagrams to port 67 given to the DHCP server (see its counters)
    Counter dns_handled;  // datagrams to port 53 given to the DNS forwarder (see its counters)
    Counter drop_bad_checksum;  // UDP to one of our services with a wrong checksum
    Counter tcp_handled;        // TCP segments given to the NAT engine (see its tcp_ counters)
    Counter udp_handled;        // UDP datagrams given to the NAT engine (udp_ counters)
    Counter icmp_handled;       // ICMP messages given to the NAT engine (icmp_ counters)
    Counter fragments;          // IPv4 fragments given to reassembly (frag_ counters)
    Counter arp_requests;       // ARP requests we sent for a guest a port forward must reach
    Counter neighbors_learned;  // guest address -> MAC bindings learned or changed (from ARP)
    Counter fwd_neighbor_wait;  // forwarded clients that waited for the guest's ARP reply
    Counter fwd_no_neighbor;    // ... dropped: the guest address never answered ARP
    Counter fwd_no_port;        // ... refused: no client port free in the guest's view
    Counter fwd_udp_mappings;   // UDP client mappings opened by port forwards
    Counter fwd_udp_failed;     // ... that could not be opened (socket, bind, full table)

    template <class F>
    void for_each(F&& f) const {
        f("arp_replies", arp_replies);
        f("icmp_echo_replies", icmp_echo_replies);
        f("ignored", ignored);
        f("drop_malformed", drop_malformed);
        f("drop_unhandled", drop_unhandled);
        f("drop_no_buffer", drop_no_buffer);
        f("drop_ring_full", drop_ring_full);
        f("dhcp_handled", dhcp_handled);
        f("dns_handled", dns_handled);
        f("drop_bad_checksum", drop_bad_checksum);
        f("tcp_handled", tcp_handled);
        f("udp_handled", udp_handled);
        f("icmp_handled", icmp_handled);
        f("fragments", fragments);
        f("arp_requests", arp_requests);
        f("neighbors_learned", neighbors_learned);
        f("fwd_neighbor_wait", fwd_neighbor_wait);
        f("fwd_no_neighbor", fwd_no_neighbor);
        f("fwd_no_port", fwd_no_port);
        f("fwd_udp_mappings", fwd_udp_mappings);
        f("fwd_udp_failed", fwd_udp_failed);
    }
};

// The NAT engine's settings (NetworkOptions carries them from the command line).
struct NatConfig {
    std::uint32_t max_flows = 65536;  // already clamped to RLIMIT_NOFILE by the caller
    std::uint32_t max_fd = 65536;     // highest fd + 1 the flow table maps
    bool peek_off = true;             // use SO_PEEK_OFF (when the kernel has it)
    // Engine settings; the gateway fills in their limits and policy pointers.
    nat::TcpConfig tcp;
    nat::UdpConfig udp;
    nat::IcmpConfig icmp;
    nat::LimitsConfig limits;
    nat::EgressPolicy policy;
    nat::ReassemblyConfig reassembly;
};

class UserspaceGateway final : public SwitchPort,
                               public dns::ReplySink,
                               private nat::GuestLink,
                               private portfwd::InboundSink {
  public:
    UserspaceGateway(PacketPool& pool, const GatewayConfig& cfg);
    ~UserspaceGateway() override;

    // Starts the NAT engine on `io` (the network thread's loop); `sw` answers which port a guest
    // sits behind and what it takes. Throws std::system_error / std::bad_alloc at start-up only.
    void enable_nat(IoContext& io, const Switch& sw, const NatConfig& cfg);
    [[nodiscard]] const nat::TcpEngine* tcp() const noexcept { return tcp_.get(); }
    [[nodiscard]] const nat::FlowTable* flow_table() const noexcept { return flows_.get(); }
    [[nodiscard]] const nat::UdpEngine* udp() const noexcept { return udp_.get(); }
    [[nodiscard]] const nat::IcmpEngine* icmp() const noexcept { return icmp_.get(); }
    [[nodiscard]] const nat::FlowLimits* limits() const noexcept { return limits_.get(); }
    [[nodiscard]] const nat::Reassembler* reassembler() const noexcept { return reasm_.get(); }
    [[nodiscard]] const nat::EgressPolicy* policy() const noexcept { return policy_.get(); }
    // Port forwards (after enable_nat); the network thread adds and removes rules through it.
    [[nodiscard]] portfwd::Forwarder* forwarder() noexcept { return fwd_.get(); }
    [[nodiscard]] const portfwd::Forwarder* forwarder() const noexcept { return fwd_.get(); }
    // Shutdown: every NAT flow reset on both sides, the engine's watchers cancelled.
    void stop_nat() noexcept;

    void set_dns(dns::Forwarder* fwd) noexcept { cfg_.dns_forwarder = fwd; }

    // Drains frames the switch delivered, answers what is ours, pushes the answers back into the
    // switch in one burst.
    void on_frames_from_switch() noexcept override;

    [[nodiscard]] const GatewayCounters& gateway_counters() const noexcept { return gw_; }
    [[nodiscard]] const GatewayConfig& config() const noexcept { return cfg_; }

    // dns::ReplySink: a DNS answer becomes a UDP datagram from port 53 to the guest.
    void dispatch_dns_reply(const dns::GuestEndpoint& to, ByteView msg) noexcept override;
    void flush_dns_replies() noexcept override;

  private:
    void process_frame(const PacketRef& frame) noexcept;
    void process_arp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    // An ARP frame padded to Ethernet's 60-byte minimum (counted drop when the pool is empty).
    [[nodiscard]] std::optional<PacketRef> build_arp(const wire::EthernetRepr& eth,
                                                     const wire::ArpRepr& arp) noexcept;
    void process_icmpv4(const wire::ParsedFrame& f) noexcept;
    void process_dhcp(const wire::ParsedFrame& f) noexcept;
    void process_dns(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    // Where a UDP payload starts in a frame we build: Ethernet (+ 802.1Q), IPv4 without options,
    // UDP.
    [[nodiscard]] static constexpr std::size_t udp_payload_offset(bool vlan) noexcept {
        return wire::kEthernetHeaderLen + (vlan ? 4 : 0) + wire::kIpv4MinHeaderLen +
               wire::kUdpHeaderLen;
    }
    // Writes Ethernet, IPv4 and UDP headers in front of the `payload_len` bytes already placed at
    // offset udp_payload_offset(vlan) of `r`, with the UDP checksum; sets the frame length.
    [[nodiscard]] bool emit_udp_headers(PacketRef& r, MacAddr dst_mac,
                                        std::optional<wire::VlanTag> vlan, Ipv4Addr src,
                                        Ipv4Addr dst, std::uint16_t src_port,
                                        std::uint16_t dst_port, std::size_t payload_len) noexcept;
    [[nodiscard]] bool owns(Ipv4Addr a) const noexcept;
    void dispatch_reply(PacketRef&& reply) noexcept;

    // nat::GuestLink: the engine's frames go into our ring to the switch.
    PacketPool& pool() noexcept override { return pool_; }
    std::size_t room() noexcept override;
    bool dispatch(PacketRef& frame) noexcept override;
    void flush() noexcept override;
    PortCaps caps_of(std::uint16_t port) noexcept override;
    std::size_t room_to(std::uint16_t port) noexcept override;

    // The NAT engine's driver (gateway_nat.cpp): socket events, timers, pending sends.
    void process_tcp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    void process_udp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    void process_icmp_nat(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    void process_fragment(const PacketRef& frame, const wire::ParsedFrame& f) noexcept;
    // Whether an IPv4 frame may reach the NAT engines: header checksum good, not a fragment, a
    // unicast source that is not ours (counts drop_malformed otherwise).
    [[nodiscard]] bool nat_ingress_ok(const wire::ParsedFrame& f) noexcept;
    // A UDP datagram's checksum, unless none was computed or the guest left it to us.
    [[nodiscard]] static bool udp_checksum_ok(const PacketRef& frame,
                                              const wire::ParsedFrame& f) noexcept;
    void end_nat_burst(std::uint64_t now) noexcept;
    [[nodiscard]] bool nat_pending() const noexcept;
    void run_nat_pending(std::uint64_t now) noexcept;
    void arm_sockets() noexcept;
    void on_sockets() noexcept;
    void arm_tick() noexcept;
    void schedule_pending() noexcept;
    [[nodiscard]] static std::uint64_t now_ms() noexcept;

    // Port forwards into guests (gateway_inbound.cpp): which MAC and switch port a guest address
    // sits behind (learned from ARP; asked for with an ARP request when unknown), and clients
    // waiting for that answer.
    struct Neighbor {
        Ipv4Addr ip;
        MacAddr mac;
        std::optional<wire::VlanTag> vlan;
        std::uint16_t port = 0;
        std::uint64_t seen_ms = 0;
    };
    struct WaitingClient {
        int fd = -1;
        nat::FlowKey key;
        portfwd::RuleId rule = 0;
        std::uint64_t deadline_ms = 0;
        std::uint64_t next_arp_ms = 0;
    };
    void accept_tcp(portfwd::RuleId rule, int fd, const portfwd::Client& client, Ipv4Addr guest,
                    std::uint16_t guest_port) noexcept override;
    void datagram_udp(portfwd::RuleId rule, const portfwd::Client& client, Ipv4Addr guest,
                      std::uint16_t guest_port, ByteView payload) noexcept override;
    void kill_rule(portfwd::RuleId rule) noexcept override;
    void learn_neighbor(Ipv4Addr ip, MacAddr mac, std::optional<wire::VlanTag> vlan,
                        std::uint16_t port) noexcept;
    [[nodiscard]] const Neighbor* neighbor(Ipv4Addr ip) const noexcept;
    void send_arp_request(Ipv4Addr ip) noexcept;
    // The client as the guest sees it: its own IPv4 address and port, or the host alias (the
    // gateway without one) for loopback and IPv6 clients.
    [[nodiscard]] std::optional<std::pair<Ipv4Addr, std::uint16_t>> client_view(
        const portfwd::Client& client) const noexcept;
    // The flow key for that view, its port moved on while the table holds the key (two clients
    // that look alike to the guest). nullopt when no port nearby is free.
    [[nodiscard]] std::optional<nat::FlowKey> free_key(std::pair<Ipv4Addr, std::uint16_t> view,
                                                       Ipv4Addr guest, std::uint16_t guest_port,
                                                       IpProto proto) const noexcept;
    void open_tcp_inbound(const WaitingClient& w, const Neighbor& n) noexcept;
    void serve_waiting() noexcept;
    void arm_waiting() noexcept;

    PacketPool& pool_;
    GatewayConfig cfg_;
    GatewayCounters gw_;
    std::uint16_t next_ip_id_ = 1;
    std::uint32_t replies_in_burst_ = 0;

    IoContext* io_ = nullptr;
    const Switch* sw_ = nullptr;
    std::unique_ptr<nat::FlowTable> flows_;
    std::unique_ptr<nat::LinuxSockets> socks_;
    std::unique_ptr<nat::LinuxDgramSockets> dsocks_;
    std::unique_ptr<nat::EpollPoller> poller_;
    std::unique_ptr<nat::EgressPolicy> policy_;
    std::unique_ptr<nat::FlowLimits> limits_;
    std::unique_ptr<nat::TcpEngine> tcp_;
    std::unique_ptr<nat::UdpEngine> udp_;
    std::unique_ptr<nat::IcmpEngine> icmp_;
    std::unique_ptr<nat::Reassembler> reasm_;
    std::unique_ptr<portfwd::Forwarder> fwd_;
    Ipv4Addr subnet_;  // the guest network (neighbors are learned inside it only)
    std::uint8_t prefix_len_ = 24;
    std::array<Neighbor, 256> neighbors_{};
    std::vector<WaitingClient> waiting_;  // reserved at enable_nat(); bounded by its capacity
    std::unique_ptr<boost::asio::steady_timer> waiting_timer_;
    bool waiting_armed_ = false;
    std::unique_ptr<FdWatcher> epoll_watch_;
    std::unique_ptr<boost::asio::steady_timer> tick_;
    std::uint64_t burst_ms_ = 0;        // the clock at the start of the burst being processed
    std::uint64_t last_slow_tick_ = 0;  // datagram timeouts and reassembly, once a second
    bool tick_armed_ = false;
    bool pending_posted_ = false;
    bool nat_stopped_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for posted work
};

}  // namespace slipway::backends
