// slipway::Network — the embedding API: build a network from options, attach guests, run it,
// read its status and counters. slipwayd is a thin layer over this.
//
// Threading: a Network runs on one thread, the one that calls run() (DESIGN §1). stop() may be
// called from any thread (and from a signal handler's posted work). status() and stats() read
// counters that the network thread writes: call them on the network thread (e.g. from work posted
// with post(), as the HTTP API does) or while the network is not running.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/core/types.hpp"

namespace slipway {

// A static DHCP lease (--dhcp-static MAC=IP[,hostname]).
struct DhcpStatic {
    MacAddr mac;
    Ipv4Addr ip;
    std::string hostname;
};

struct NetworkOptions {
    Ipv4Addr subnet = Ipv4Addr::from_octets(192, 168, 127, 0);
    std::uint8_t prefix_len = 24;
    std::optional<Ipv4Addr> gateway;  // default: first host address of the subnet (.1)
    std::optional<Ipv4Addr>
        host_alias;  // default: .254 of a /24 (last host - 0); see no_host_alias
    bool no_host_alias = false;
    std::uint32_t mtu = 1500;
    bool isolate = false;   // guests reach only the gateway
    bool mac_lock = true;   // a guest port may only send from the first MAC it used
    std::string pcap_path;  // empty: no capture
    PoolConfig pool{};

    // DHCP server (dhcp/). Defaults: pool .2 to .253 of a /24 (first host + 1 to last host - 1,
    // the gateway and the host alias skipped), 1 h leases, leases in memory only.
    bool no_dhcp = false;
    std::optional<std::pair<Ipv4Addr, Ipv4Addr>> dhcp_range;
    std::vector<DhcpStatic> dhcp_static;
    std::uint32_t lease_time_s = 3600;
    std::string domain;               // option 15; guests' host names resolve under it
    std::vector<std::string> search;  // option 119
    std::string lease_file;           // empty: leases kept in memory (logged at start-up)

    // DNS forwarder (dns/) at the gateway address, port 53.
    bool no_dns = false;
    std::vector<std::string> dns_upstreams;  // ADDR[:PORT] / [V6]:PORT; empty: resolv_conf's
    std::string resolv_conf = "/etc/resolv.conf";
    std::vector<std::pair<std::string, Ipv4Addr>> dns_records;  // local A records
    std::size_t dns_cache_entries = 4096;                       // 0: no cache
    std::size_t dns_cache_bytes = 4u << 20;

    // NAT engine (nat/). max_flows is clamped to what RLIMIT_NOFILE allows (logged).
    std::uint32_t max_flows = 65536;
    bool no_peek_off = false;  // force the MSG_PEEK discard-iovec path even with SO_PEEK_OFF
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds tcp_idle_timeout{std::chrono::hours(2)};
    // UDP flows idle this long are freed; udp_dns_timeout for destination ports 53 and 123.
    std::chrono::milliseconds udp_timeout{std::chrono::seconds(180)};
    std::chrono::milliseconds udp_dns_timeout{std::chrono::seconds(10)};
    // ICMP echo: "auto" (ping sockets, else a raw socket, else gateway only), "ping", "raw",
    // "gateway". An explicit mode the host does not allow is an error.
    std::string icmp_mode = "auto";
    // Egress policy in evaluation order, each "allow RULE" or "deny RULE" with RULE as in
    // nat::PolicyRule (CIDR[:PORTS][/PROTO]); first match wins, then the built-in deny of
    // 169.254.169.254, then allow.
    std::vector<std::string> egress_rules;
    std::string host_alias_ports;  // --host-alias-ports LIST; empty: every port
    // Per-guest admission (0: no limit): live flows, TCP connects in progress, new flows/s.
    std::uint32_t max_flows_per_guest = 0;
    std::uint32_t max_half_open = 4096;
    std::uint32_t new_flow_rate = 0;

    // Port forwards (portfwd/), each as --forward takes it:
    // "tcp|udp:[HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END]". Bound by create().
    std::vector<std::string> forwards;
};

// The address plan after defaults are applied.
struct NetworkPlan {
    Ipv4Addr subnet;
    std::uint8_t prefix_len;
    Ipv4Addr gateway;
    Ipv4Addr dns;  // the DNS address guests are told: the gateway
    std::optional<Ipv4Addr> host_alias;
    bool dhcp = false;  // the DHCP server runs
    Ipv4Addr dhcp_first, dhcp_last;
    bool dns_enabled = false;                // the DNS forwarder runs (at `dns`)
    std::vector<std::string> dns_upstreams;  // as configured (empty: from resolv.conf)
    MacAddr gateway_mac;
    std::uint32_t mtu;
    std::uint32_t max_flows = 0;            // after the RLIMIT_NOFILE clamp
    std::uint64_t nofile = 0;               // the RLIMIT_NOFILE in force (raised to the hard limit)
    bool peek_off = false;                  // host data peeked with SO_PEEK_OFF
    bool peek_off_kernel = false;           // the kernel has SO_PEEK_OFF for TCP
    std::string icmp_mode;                  // the ICMP echo mode in force: ping, raw or gateway
    std::vector<std::string> egress_rules;  // the policy in force, canonical, built-in included
    std::string host_alias_ports;           // canonical ("all" when unrestricted)
};

// A port forward as the API shows it.
struct ForwardInfo {
    std::uint32_t id = 0;        // stable for the rule's life, never reused by this network
    std::string proto;           // "tcp" | "udp"
    std::string host;            // "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8000-8009"
    std::string guest;           // "192.168.127.2:80", "192.168.127.2:8000-8009"
    std::string spec;            // canonical --forward form: "tcp:127.0.0.1:8080=192.168.127.2:80"
    std::uint64_t accepted = 0;  // TCP connections accepted / UDP client mappings opened
    std::uint64_t refused = 0;   // clients reset: the guest refused or never answered
    std::uint32_t active = 0;    // live TCP connections / UDP mappings of this rule
};

// A translated flow as the API shows it (filterable by protocol and guest address).
struct FlowInfo {
    std::string proto;             // "tcp" | "udp" | "icmp"
    std::string direction;         // "out" (guest-initiated) | "in" (through a port forward)
    std::string guest;             // "192.168.127.2:41234"
    std::string remote;            // as the guest sees it: "203.0.113.5:443"
    std::string state;             // tcp: connecting|syn-sent|established|closing; others: "open"
    std::uint32_t forward_id = 0;  // the rule an inbound flow came through (0: none)
};

struct FlowFilter {
    std::string proto;              // empty: all
    std::optional<Ipv4Addr> guest;  // only flows of this guest address
    std::size_t limit = 1000;       // at most this many flows listed
};

struct LeaseView {
    std::string mac, ip, hostname;
    std::int64_t expires_unix = 0;
    bool is_static = false, bound = false;
};

struct DnsRecordView {
    std::string name;
    std::string ip;
};

struct CounterValue {
    std::string name;
    std::uint64_t value;
};

struct PortStats {
    std::string name;
    std::string kind;   // "guest" | "gateway"
    std::string spec;   // attachment spec, empty for internal ports
    std::string state;  // "listening", "connected", "up", ...
    std::vector<CounterValue> counters;
};

struct NetworkStats {
    std::vector<CounterValue> switch_counters;
    std::vector<PortStats> ports;
    std::vector<CounterValue> gateway_counters;  // the userspace engine's own counters
    std::vector<CounterValue> pool;              // capacity, free, exhausted
};

struct NetworkStatus {
    std::string version;
    NetworkPlan plan;
    std::chrono::seconds uptime{0};
    bool ready = false;            // every attachment started
    std::vector<PortStats> ports;  // counters left empty
};

// A port whose far side is a thread of the embedding VMM (DESIGN §1): the VMM fills to_switch()
// and drains to_port() from its own thread; the rings are the only thing the threads share.
class InProcessPort : public SwitchPort {
  public:
    using SwitchPort::SwitchPort;
    // VMM thread: call after pushing frames into to_switch(). Wakes the network thread.
    virtual void kick() noexcept = 0;
    // Called on the network thread when the switch has put frames in to_port(); the embedder
    // wakes its own thread here (e.g. writes its eventfd). Set before attaching traffic.
    std::function<void()> on_frames_for_vmm;
};

// A virtio-net device whose driver side is the embedding VMM's guest (issue 8): the VMM hands
// slipway its guest memory, the negotiated features and one RX/TX virtqueue pair, and slipway
// runs the device data path (guest/virtio_net.hpp) on the network thread, as it does for
// vhost-user, without a socket.
class VirtioPort : public SwitchPort {
  public:
    using SwitchPort::SwitchPort;
    // The feature bits the port runs with (as given to attach_virtio).
    [[nodiscard]] virtual std::uint64_t features() const noexcept = 0;
    // True once the device marked a queue broken (a hostile or buggy driver): the VMM should
    // reset its device (detach, then attach_virtio again).
    [[nodiscard]] virtual bool broken() const noexcept = 0;
};

// One region of guest memory, mapped into this process by the VMM.
struct VirtioMemRegion {
    void* host = nullptr;          // where the region is mapped here
    std::uint64_t guest_addr = 0;  // guest physical address of its first byte
    std::uint64_t size = 0;        // bytes
};

// One virtqueue as the driver set it up (virtio 1.2 §2.7). Ring addresses are guest physical.
struct VirtioQueueOptions {
    std::uint32_t size = 0;  // entries: a power of two, 1..32768
    std::uint64_t desc = 0, avail = 0, used = 0;
    // The queue's notification eventfd (the VMM writes it when the driver kicks). Required.
    // attach_virtio() dup()s it: the caller keeps (and closes) its own.
    int kick_fd = -1;
    // The interrupt eventfd slipway writes when the driver wants an interrupt; -1 for none
    // (a polling driver). Also dup()ed.
    int call_fd = -1;
    std::uint16_t last_avail = 0;  // where the device resumes (0 for a freshly set-up queue)
};

struct VirtioAttachOptions {
    static constexpr std::size_t kRx = 0;  // receiveq1 (virtio 1.2 §5.1.2)
    static constexpr std::size_t kTx = 1;  // transmitq1

    std::string name;                      // the port's name in status and stats (not empty)
    std::vector<VirtioMemRegion> regions;  // 1..8 regions, not overlapping in guest addresses
    std::uint64_t features = 0;  // negotiated with the driver: a subset of the offered bits
    std::array<VirtioQueueOptions, 2> queues{};  // [kRx], [kTx]
};

// What slipway offers a virtio-net driver (guest::kOfferedFeatures): a VMM offers its guest at
// most these bits and passes the negotiated subset to attach_virtio().
[[nodiscard]] std::uint64_t virtio_offered_features() noexcept;

class Network {
  public:
    // Validates the options (subnet, addresses inside it, MTU range, pcap file writable).
    // On failure `error` is one line naming the option and the problem.
    static Result<std::unique_ptr<Network>> create(const NetworkOptions& opts, std::string& error);
    ~Network();
    Network(const Network&) = delete;
    Network& operator=(const Network&) = delete;

    // Adds a guest attachment from its spec (see guest/attachment.hpp) and starts it listening.
    Result<void> attach(std::string_view spec, std::string& error);
    // Adds an in-process port (caps as the VMM negotiated with its guest). Call before run() or
    // on the network thread. Errc::io_error (with `error` set) if no eventfd could be made.
    Result<InProcessPort*> attach_in_process(std::string name, PortCaps caps, std::string& error);
    // Adds a virtio-net device over the VMM's virtqueue pair and starts both queues: the same data
    // path as a vhost-user guest. Call before run() or on the network thread. The VMM keeps the
    // regions mapped and unchanged until detach(). Errc::invalid_argument (with `error` one line
    // naming the port and what is wrong: a region empty, unmapped, wrapping or overlapping; a
    // ring outside guest memory or misaligned; a queue size not a power of two; feature bits
    // slipway does not offer; a bad kick fd), Errc::io_error when the fds cannot be dup()ed or
    // watched.
    Result<VirtioPort*> attach_virtio(const VirtioAttachOptions& opts, std::string& error);
    // Removes an in-process or virtio port (from attach_in_process or attach_virtio): out of the
    // switch, queues stopped (slipway no longer touches guest memory or the fds once it returns),
    // frames still queued for it dropped, the port freed. A VMM resetting its device detaches and
    // attaches again. Call before run() or on the network thread. Errc::not_found if `port` is not
    // one of this network's in-process or virtio ports.
    Result<void> detach(const SwitchPort* port);

    // Runs the network on the calling thread until stop().
    void run();
    // Thread-safe: makes run() return after closing every attachment.
    void stop() noexcept;
    // Thread-safe: runs fn on the network thread.
    void post(std::function<void()> fn);
    // The network's event loop, for services that share its thread (the HTTP API).
    [[nodiscard]] IoContext& io() noexcept;

    // Local DNS records (A) answered by the forwarder, e.g. the VMM's names for its guests.
    // Call before run() or on the network thread. Errc::unsupported with --no-dns;
    // Errc::invalid_argument for a name that is not a valid domain name.
    Result<void> add_dns_record(std::string_view name, Ipv4Addr addr);
    bool remove_dns_record(std::string_view name);
    [[nodiscard]] std::vector<DnsRecordView> dns_records() const;

    // Port forwards (network thread, or before run()). add_forward parses `spec` as --forward
    // does and binds its host sockets: Errc::invalid_argument (bad spec), Errc::conflict (it
    // overlaps a forward of this network: same protocol, host address and a common port),
    // Errc::io_error (the kernel refused the bind: in use, privileged port, no such address),
    // each with `error` one line naming the address. remove_forward closes the rule's host
    // sockets; its established TCP connections and UDP mappings stay unless `kill` (then they are
    // reset): Errc::not_found for an unknown id. find_forward: the id of the rule whose host side
    // is exactly `host` (as ForwardInfo::host, or an address the same text parses to) and `proto`.
    Result<ForwardInfo> add_forward(std::string_view spec, std::string& error);
    Result<void> remove_forward(std::uint32_t id, bool kill);
    [[nodiscard]] std::optional<std::uint32_t> find_forward(std::string_view proto,
                                                            std::string_view host) const;
    [[nodiscard]] std::vector<ForwardInfo> forwards() const;

    [[nodiscard]] std::vector<LeaseView> leases() const;
    [[nodiscard]] std::vector<FlowInfo> flows(const FlowFilter& filter) const;

    // A guest TCP connection to the gateway's `port` gets, as its host end, the fd `open(guest)`
    // returns for the guest's address (a stream whose far end some service of the embedder
    // serves, e.g. the HTTP API for --guest-api), or -errno to refuse it (RST). Set before run()
    // or on the network thread.
    void serve_on_gateway(std::uint16_t port, std::function<int(Ipv4Addr guest)> open);

    // The network's packet pool: an in-process port's VMM thread allocates the frames it pushes
    // into to_switch() here (allocation and release are thread-safe, DESIGN §1).
    [[nodiscard]] PacketPool& pool() noexcept;

    [[nodiscard]] const NetworkPlan& plan() const noexcept;
    [[nodiscard]] NetworkStatus status() const;
    [[nodiscard]] NetworkStats stats() const;

  private:
    Network();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

[[nodiscard]] std::string_view version() noexcept;

}  // namespace slipway
