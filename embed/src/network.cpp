// slipway::Network: one network = one event loop thread, a packet pool, a switch, the userspace
// gateway and the guest attachments (DESIGN §1).
//
// Theory of operation
// -------------------
// create() validates the options into a NetworkPlan, then builds, in this order, the pool, the
// switch (with the pcap writer if asked) and the gateway port, all sized at start-up. attach()
// parses an attachment spec, starts it listening and registers it with the switch; every
// attachment and the switch run on the thread that calls run(), so none of them locks anything.
// In-process ports are the exception by design: their far side is a VMM thread that shares only
// the two SPSC rings and an eventfd with the network thread. stop() may come from any thread; it
// posts the shutdown to the loop, which closes every attachment and lets run() return.
//
// Virtio ports (attach_virtio) are the in-process form of vhost-user: the VMM's guest memory,
// feature bits and one RX/TX virtqueue pair go straight to a guest::VirtioNetDevice, which runs
// on the network thread like any attachment (kicks are eventfds watched by the loop). Everything
// the VMM passes is checked here first, so a bad argument is one clear line and not a queue that
// later turns out broken (the rings' geometry is checked by the queues' start()). detach() takes an
// in-process or virtio port out of the switch, stops its queues and frees it, which is how a VMM
// resets its device. On shutdown every virtio queue stops, so slipway no longer reads guest
// memory once run() has returned.
#include "slipway/embed/network.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/pcap.hpp"
#include "slipway/core/switch.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/dhcp/server.hpp"
#include "slipway/dns/forwarder.hpp"
#include "slipway/guest/attachment.hpp"
#include "slipway/guest/virtio_net.hpp"
#include "slipway/portfwd/forwarder.hpp"

namespace slipway {

namespace {

// gvproxy's gateway MAC (locally administered), so tools that expect it keep working.
constexpr MacAddr kGatewayMac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};

bool inside(Ipv4Addr a, Ipv4Addr subnet, std::uint8_t prefix) {
    return (a.v & Ipv4Addr::prefix_mask(prefix)) == subnet.v;
}

// A usable host address: inside the subnet, neither the network nor the broadcast address.
bool usable_host(Ipv4Addr a, Ipv4Addr subnet, std::uint8_t prefix) {
    const std::uint32_t host = a.v & ~Ipv4Addr::prefix_mask(prefix);
    return inside(a, subnet, prefix) && host != 0 && host != ~Ipv4Addr::prefix_mask(prefix);
}

// File descriptors kept for everything but NAT flows: attachments, the DNS forwarder's sockets,
// the API, logs.
constexpr std::uint32_t kFdReserve = 256;

// Raises the soft RLIMIT_NOFILE to the hard one and returns the soft limit now in force.
std::uint64_t raise_nofile() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlimit up = rl;
        up.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    return rl.rlim_cur == RLIM_INFINITY ? (std::uint64_t{1} << 20) : rl.rlim_cur;
}

// The window scale announced to guests: 65535 << scale must cover the largest send buffer a
// socket can grow to (net.ipv4.tcp_wmem's third field), since the window follows it.
std::uint8_t window_scale_for_wmem() {
    std::ifstream in("/proc/sys/net/ipv4/tcp_wmem");
    std::uint64_t lo = 0, def = 0, max = 4u << 20;
    if (!(in >> lo >> def >> max)) max = 4u << 20;
    std::uint8_t s = 0;
    while (s < 14 && (std::uint64_t{65535} << s) < max)
        ++s;
    return s;
}

template <class Counters>
std::vector<CounterValue> collect(const Counters& c) {
    std::vector<CounterValue> out;
    c.for_each([&](const char* name, const Counter& v) { out.push_back({name, v.get()}); });
    return out;
}

// An in-process port: the VMM thread pushes into to_switch() and calls kick(), which writes an
// eventfd; the network thread wakes on it and hands the frames to the switch.
class InProcessPortImpl final : public InProcessPort {
  public:
    InProcessPortImpl(IoContext& io, std::string name, PortCaps caps, int efd)
        : InProcessPort(std::move(name), PortKind::guest, caps), efd_(efd), watch_(io, efd) {
        arm();
    }
    ~InProcessPortImpl() override {
        watch_.release();
        ::close(efd_);
    }
    void kick() noexcept override {
        const std::uint64_t one = 1;
        // A failed write means the counter is already non-zero (EAGAIN at the 2^64-2 limit is
        // the only case): the loop is going to wake anyway.
        [[maybe_unused]] const auto n = ::write(efd_, &one, sizeof one);
    }
    void on_frames_from_switch() noexcept override {
        if (on_frames_for_vmm) on_frames_for_vmm();
    }

  private:
    void arm() {
        watch_.wait_readable([this](bool ok) {
            if (!ok) return;
            std::uint64_t v;
            [[maybe_unused]] const auto n = ::read(efd_, &v, sizeof v);
            notify_switch();
            arm();
        });
    }
    int efd_;
    FdWatcher watch_;
};

// An in-process virtio-net device: the switch port that owns the device and the guest memory
// table its queues read (guest physical addresses only, so user_addr = guest_addr).
class VirtioPortImpl final : public VirtioPort {
  public:
    VirtioPortImpl(IoContext& io, PacketPool& pool, std::string name, std::uint32_t mtu)
        : VirtioPort(name, PortKind::guest, PortCaps{}), dev_(io, pool, *this, name, mtu) {}
    ~VirtioPortImpl() override { dev_.stop_all(); }

    void on_frames_from_switch() noexcept override { dev_.on_egress(); }
    [[nodiscard]] std::uint64_t features() const noexcept override { return dev_.features(); }
    [[nodiscard]] bool broken() const noexcept override { return dev_.broken(); }

    virtio::GuestMemory& memory() noexcept { return mem_; }
    guest::VirtioNetDevice& device() noexcept { return dev_; }
    [[nodiscard]] const guest::VirtioNetDevice& device() const noexcept { return dev_; }

  private:
    virtio::GuestMemory mem_;  // before the device, which points at it
    guest::VirtioNetDevice dev_;
};

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// A duplicate of the caller's fd (close-on-exec), so the caller keeps and closes its own.
UniqueFd dup_fd(int fd) {
    return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

// --icmp: what was asked for, checked against what this host allows (DESIGN §2: auto takes ping
// sockets, then a raw socket, then gateway-only answers, and says which).
Result<nat::IcmpMode> choose_icmp_mode(std::string_view asked, std::string& error) {
    const bool ping = nat::LinuxDgramSockets::probe_ping();
    const bool raw = nat::LinuxDgramSockets::probe_raw();
    if (asked == "auto") {
        const nat::IcmpMode m =
            ping ? nat::IcmpMode::ping : (raw ? nat::IcmpMode::raw : nat::IcmpMode::gateway);
        if (m == nat::IcmpMode::gateway)
            SLW_WARN(
                "icmp: no ping sockets (net.ipv4.ping_group_range excludes our groups) and no "
                "CAP_NET_RAW: only the gateway answers pings (--icmp=gateway)");
        return m;
    }
    if (asked == "ping") {
        if (!ping) {
            error =
                "--icmp ping: this process may not open ping sockets (its groups are outside "
                "net.ipv4.ping_group_range)";
            return fail(Errc::invalid_argument);
        }
        return nat::IcmpMode::ping;
    }
    if (asked == "raw") {
        if (!raw) {
            error = "--icmp raw: no raw ICMP socket (needs CAP_NET_RAW)";
            return fail(Errc::invalid_argument);
        }
        return nat::IcmpMode::raw;
    }
    if (asked == "gateway") return nat::IcmpMode::gateway;
    error = "--icmp: expected auto, ping, raw or gateway, not '" + std::string(asked) + "'";
    return fail(Errc::invalid_argument);
}

// The egress policy from "allow RULE" / "deny RULE" lines and --host-alias-ports.
Result<nat::EgressPolicy> build_policy(const NetworkOptions& opts, std::string& error) {
    std::vector<nat::PolicyRule> rules;
    for (const std::string& line : opts.egress_rules) {
        const auto sp = line.find(' ');
        const std::string_view verb = std::string_view(line).substr(0, sp);
        const std::string_view rule =
            sp == std::string::npos ? std::string_view{} : std::string_view(line).substr(sp + 1);
        nat::PolicyAction action;
        if (verb == "allow") {
            action = nat::PolicyAction::allow;
        } else if (verb == "deny") {
            action = nat::PolicyAction::deny;
        } else {
            error = "egress rule '" + line + "': expected 'allow RULE' or 'deny RULE'";
            return fail(Errc::invalid_argument);
        }
        std::string why;
        auto r = nat::PolicyRule::parse(rule, action, why);
        if (!r) {
            error = "--" + std::string(verb) + " " + why;
            return fail(Errc::invalid_argument);
        }
        rules.push_back(std::move(*r));
    }
    nat::EgressPolicy policy(std::move(rules));
    if (!opts.host_alias_ports.empty()) {
        std::string why;
        auto ports = nat::PortSet::parse(opts.host_alias_ports, why);
        if (!ports) {
            error = "--host-alias-ports: " + why;
            return fail(Errc::invalid_argument);
        }
        policy.set_alias_ports(std::move(*ports));
    }
    return policy;
}

}  // namespace

struct Network::Impl {
    NetworkPlan plan;
    NetworkOptions opts;
    IoContext io{1};  // one thread: Asio may skip its internal locking
    boost::asio::executor_work_guard<IoContext::executor_type> work{io.get_executor()};
    std::unique_ptr<PacketPool> pool;
    std::unique_ptr<Switch> sw;
    std::unique_ptr<PcapWriter> pcap;
    std::unique_ptr<boost::asio::steady_timer> pcap_flush;  // every second, so tcpdump -r keeps up
    std::unique_ptr<dhcp::Server> dhcp;  // before the gateway, which points at it
    std::unique_ptr<backends::UserspaceGateway> gateway;
    std::unique_ptr<dns::Forwarder> dns;  // after the gateway, its reply sink (destroyed first)
    std::vector<std::unique_ptr<guest::Attachment>> attachments;
    std::vector<std::unique_ptr<InProcessPortImpl>> inproc;
    std::vector<std::unique_ptr<VirtioPortImpl>> virtio_ports;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    bool stopped = false;
    // Guest TCP to the gateway's ports (serve_on_gateway): port -> the service's stream opener.
    std::map<std::uint16_t, std::function<int(Ipv4Addr)>> gateway_services;

    // Teardown order matters: the switch unbinds every port it still holds, so it goes before
    // the ports; ports return their queued buffers to the pool, which outlives them all (it is
    // declared first); the pcap writer is the switch's tap, so it goes after the switch.
    ~Impl() {
        if (gateway) gateway->stop_nat();  // its RSTs go out while the switch still exists
        for (auto& a : attachments)
            a->stop();
        pcap_flush.reset();
        for (auto& v : virtio_ports)
            v->device().stop_all();
        sw.reset();
        inproc.clear();
        virtio_ports.clear();
        attachments.clear();
        dns.reset();
        gateway.reset();
        pcap.reset();
    }

    void arm_pcap_flush() {
        pcap_flush->expires_after(std::chrono::seconds(1));
        pcap_flush->async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            pcap->flush();
            arm_pcap_flush();
        });
    }

    void shutdown() {
        if (stopped) return;
        stopped = true;
        // NAT flows first: their RSTs still reach the guests through the switch.
        gateway->stop_nat();
        for (auto& a : attachments) {
            a->stop();
            sw->remove_port(*a);
        }
        // The VMM may unmap its memory once the network is down: no queue reads it after this.
        for (auto& v : virtio_ports)
            v->device().stop_all();
        if (pcap_flush) pcap_flush->cancel();
        if (pcap) pcap->flush();
        work.reset();
        io.stop();
    }
};

Network::Network() : impl_(std::make_unique<Impl>()) {}
Network::~Network() = default;

Result<std::unique_ptr<Network>> Network::create(const NetworkOptions& opts, std::string& error) {
    if (opts.prefix_len < 1 || opts.prefix_len > 30) {
        error = "--subnet: prefix length must be 1..30, got /" + std::to_string(opts.prefix_len);
        return fail(Errc::invalid_argument);
    }
    if ((opts.subnet.v & ~Ipv4Addr::prefix_mask(opts.prefix_len)) != 0) {
        error = "--subnet: " + opts.subnet.to_string() + "/" + std::to_string(opts.prefix_len) +
                " has host bits set";
        return fail(Errc::invalid_argument);
    }
    if (opts.mtu < 576 || opts.mtu > 65520) {
        error = "--mtu: must be 576..65520, got " + std::to_string(opts.mtu);
        return fail(Errc::invalid_argument);
    }
    NetworkPlan plan;
    plan.subnet = opts.subnet;
    plan.prefix_len = opts.prefix_len;
    plan.gateway = opts.gateway.value_or(Ipv4Addr{opts.subnet.v + 1});
    if (!usable_host(plan.gateway, opts.subnet, opts.prefix_len)) {
        error = "--gateway: " + plan.gateway.to_string() + " is not a host address of " +
                opts.subnet.to_string() + "/" + std::to_string(opts.prefix_len);
        return fail(Errc::invalid_argument);
    }
    plan.dns = plan.gateway;
    if (!opts.no_host_alias) {
        // Default: the last host address but one (.254 of a /24), as gvproxy does.
        const Ipv4Addr alias = opts.host_alias.value_or(
            Ipv4Addr{(opts.subnet.v | ~Ipv4Addr::prefix_mask(opts.prefix_len)) - 1});
        if (!usable_host(alias, opts.subnet, opts.prefix_len) || alias == plan.gateway) {
            error = "--host-alias: " + alias.to_string() +
                    " must be a host address of the subnet other than the gateway";
            return fail(Errc::invalid_argument);
        }
        plan.host_alias = alias;
    } else if (opts.host_alias) {
        error = "--host-alias and --no-host-alias exclude each other";
        return fail(Errc::invalid_argument);
    }
    plan.gateway_mac = kGatewayMac;
    plan.mtu = opts.mtu;

    std::unique_ptr<dhcp::Server> dhcp_server;
    if (!opts.no_dhcp) {
        dhcp::ServerConfig dc;
        dc.server_id = dc.router = dc.dns = plan.gateway;
        dc.subnet = opts.subnet;
        dc.prefix_len = opts.prefix_len;
        const std::uint32_t bcast = opts.subnet.v | ~Ipv4Addr::prefix_mask(opts.prefix_len);
        dc.range_first = Ipv4Addr{opts.subnet.v + 1};
        dc.range_last = Ipv4Addr{bcast - 1};
        dc.excluded.push_back(plan.gateway);
        if (plan.host_alias) dc.excluded.push_back(*plan.host_alias);
        // Default pool: every host address, trimmed at both ends of the gateway and the alias
        // (so .2-.253 with the defaults); excluded addresses inside it are skipped anyway.
        const auto excluded = [&](Ipv4Addr a) {
            return std::find(dc.excluded.begin(), dc.excluded.end(), a) != dc.excluded.end();
        };
        while (dc.range_first.v < dc.range_last.v && excluded(dc.range_first))
            ++dc.range_first.v;
        while (dc.range_last.v > dc.range_first.v && excluded(dc.range_last))
            --dc.range_last.v;
        if (opts.dhcp_range) std::tie(dc.range_first, dc.range_last) = *opts.dhcp_range;
        dc.lease_time = std::chrono::seconds(opts.lease_time_s);
        dc.mtu = opts.mtu;
        dc.domain = opts.domain;
        dc.search = opts.search;
        for (const auto& st : opts.dhcp_static)
            dc.statics.push_back(dhcp::StaticLease{st.mac, st.ip, st.hostname});
        dc.lease_file = opts.lease_file;
        auto srv = dhcp::Server::create(std::move(dc), error);
        if (!srv) return fail(srv.error());
        dhcp_server = std::move(*srv);
        plan.dhcp = true;
        plan.dhcp_first = dhcp_server->config().range_first;
        plan.dhcp_last = dhcp_server->config().range_last;
    }

    std::vector<dns::Upstream> upstreams;
    for (const auto& text : opts.dns_upstreams) {
        auto u = dns::parse_upstream(text);
        if (!u) {
            error = "--dns-upstream: '" + text + "' is not ADDR[:PORT] or [IPV6]:PORT";
            return fail(Errc::invalid_argument);
        }
        upstreams.push_back(std::move(*u));
    }
    if (opts.no_dns && (!opts.dns_upstreams.empty() || !opts.dns_records.empty())) {
        error = "--no-dns excludes --dns-upstream and --dns-record";
        return fail(Errc::invalid_argument);
    }

    std::unique_ptr<Network> net(new Network());
    Impl& m = *net->impl_;
    m.plan = plan;
    m.opts = opts;
    m.pool = std::make_unique<PacketPool>(opts.pool);
    m.sw = std::make_unique<Switch>(
        *m.pool, SwitchConfig{.isolate_guests = opts.isolate, .mac_lock = opts.mac_lock});
    if (!opts.pcap_path.empty()) {
        m.pcap = std::make_unique<PcapWriter>();
        if (!m.pcap->open(opts.pcap_path)) {
            error = "--pcap: cannot create " + opts.pcap_path + ": " + std::strerror(errno);
            return fail(Errc::invalid_argument);
        }
        m.sw->set_pcap(m.pcap.get());
        m.pcap_flush = std::make_unique<boost::asio::steady_timer>(m.io);
        m.arm_pcap_flush();
    }
    m.dhcp = std::move(dhcp_server);
    m.gateway = std::make_unique<backends::UserspaceGateway>(
        *m.pool, backends::GatewayConfig{.gateway = plan.gateway,
                                         .dns = plan.dns,
                                         .host_alias = plan.host_alias,
                                         .mac = plan.gateway_mac,
                                         .mtu = plan.mtu,
                                         .dhcp = m.dhcp.get()});
    if (!opts.no_dns) {
        dns::ForwarderConfig fc;
        fc.upstreams = std::move(upstreams);
        fc.resolv_conf = opts.resolv_conf;
        fc.gateway = plan.gateway;
        fc.host_alias = plan.host_alias;
        for (const auto& [name, addr] : opts.dns_records)
            fc.records.push_back({name, addr});
        fc.domain = opts.domain;
        if (m.dhcp) {
            dhcp::Server* srv = m.dhcp.get();
            fc.host_lookup = [srv](std::string_view host) {
                return srv->address_of(host,
                                       std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
            };
        }
        fc.cache.max_entries = opts.dns_cache_entries;
        fc.cache.max_bytes = opts.dns_cache_bytes;
        // One unfragmented frame: MTU minus the IPv4 and UDP headers.
        fc.max_udp_reply =
            static_cast<std::uint16_t>(std::min<std::uint32_t>(plan.mtu, 65535) - 28);
        auto fwd = dns::Forwarder::create(m.io, std::move(fc), *m.gateway, error);
        if (!fwd) return fail(fwd.error());
        m.dns = std::move(*fwd);
        m.gateway->set_dns(m.dns.get());
        m.plan.dns_enabled = true;
        m.plan.dns_upstreams = opts.dns_upstreams;
    }
    {
        const std::uint64_t nofile = raise_nofile();
        const std::uint64_t usable = nofile > kFdReserve ? nofile - kFdReserve : 0;
        std::uint32_t flows = opts.max_flows;
        if (flows == 0) {
            error = "--max-flows: must be at least 1";
            return fail(Errc::invalid_argument);
        }
        if (flows > usable) {
            if (usable < 16) {
                error = "--max-flows: RLIMIT_NOFILE (" + std::to_string(nofile) +
                        ") leaves no file descriptors for NAT flows";
                return fail(Errc::invalid_argument);
            }
            flows = static_cast<std::uint32_t>(usable);
        }
        backends::NatConfig nc;
        nc.max_flows = flows;
        nc.max_fd = static_cast<std::uint32_t>(std::min<std::uint64_t>(nofile, 1u << 24));
        const bool kernel_peek_off = nat::LinuxSockets::probe_peek_off();
        nc.peek_off = kernel_peek_off && !opts.no_peek_off;
        nat::TcpConfig& tc = nc.tcp;
        tc.gateway_mac = plan.gateway_mac;
        tc.gateway = plan.gateway;
        tc.host_alias = plan.host_alias;
        tc.subnet = opts.subnet;
        tc.prefix_len = opts.prefix_len;
        tc.mtu = plan.mtu;
        tc.connect_timeout = opts.connect_timeout;
        tc.idle_timeout = opts.tcp_idle_timeout;
        tc.rcv_wscale = window_scale_for_wmem();
        if (m.dns) {
            tc.dns_addr = plan.dns;
            dns::Forwarder* fwd = m.dns.get();
            // DNS over TCP (DESIGN §2): the flow's host end is one side of a socket pair whose
            // other side the forwarder serves.
            tc.open_dns_stream = [fwd]() -> int {
                int sv[2];
                if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
                    return -errno;
                if (!fwd->serve_stream(UniqueFd(sv[1]))) {
                    ::close(sv[0]);
                    return -EMFILE;
                }
                return sv[0];
            };
        }
        // The gateway's other TCP ports: whatever the embedder serves there (serve_on_gateway).
        tc.open_gateway_stream = [mp = &m](std::uint16_t port, Ipv4Addr guest) -> int {
            const auto it = mp->gateway_services.find(port);
            return it == mp->gateway_services.end() || !it->second ? -ECONNREFUSED
                                                                   : it->second(guest);
        };
        tc.serves_gateway_port = [mp = &m](std::uint16_t port) {
            const auto it = mp->gateway_services.find(port);
            return it != mp->gateway_services.end() && bool(it->second);
        };
        nat::UdpConfig& uc = nc.udp;
        uc.gateway_mac = plan.gateway_mac;
        uc.gateway = plan.gateway;
        uc.dns_addr = plan.dns;
        uc.host_alias = plan.host_alias;
        uc.subnet = opts.subnet;
        uc.prefix_len = opts.prefix_len;
        uc.mtu = plan.mtu;
        uc.timeout = opts.udp_timeout;
        uc.short_timeout = opts.udp_dns_timeout;
        nat::IcmpConfig& ic = nc.icmp;
        ic.gateway_mac = plan.gateway_mac;
        ic.gateway = plan.gateway;
        ic.dns_addr = plan.dns;
        ic.host_alias = plan.host_alias;
        ic.subnet = opts.subnet;
        ic.prefix_len = opts.prefix_len;
        ic.mtu = plan.mtu;
        auto mode = choose_icmp_mode(opts.icmp_mode, error);
        if (!mode) return fail(mode.error());
        ic.mode = *mode;
        nc.limits.max_flows_per_guest = opts.max_flows_per_guest;
        nc.limits.max_half_open = opts.max_half_open;
        nc.limits.new_flows_per_sec = opts.new_flow_rate;
        auto policy = build_policy(opts, error);
        if (!policy) return fail(policy.error());
        nc.policy = std::move(*policy);
        m.gateway->enable_nat(m.io, *m.sw, nc);
        m.plan.icmp_mode = std::string(nat::to_string(m.gateway->icmp()->mode()));
        for (const nat::PolicyRule& r : m.gateway->policy()->rules())
            m.plan.egress_rules.push_back(r.text);
        m.plan.host_alias_ports = m.gateway->policy()->alias_ports().to_string();
        m.plan.max_flows = flows;
        m.plan.peek_off = nc.peek_off;
        m.plan.nofile = nofile;
        m.plan.peek_off_kernel = kernel_peek_off;
    }
    for (const std::string& spec : opts.forwards) {
        auto f = net->add_forward(spec, error);
        if (!f) {
            if (f.error() != Errc::invalid_argument && error.rfind("--forward", 0) != 0)
                error = "--forward " + spec + ": " + error;
            else if (error.rfind("--forward", 0) != 0)
                error = "--" + error;
            // Two overlapping --forward flags are a configuration error (exit 2), not a failure
            // of the host (a port in use, exit 1).
            return fail(f.error() == Errc::conflict ? Errc::invalid_argument : f.error());
        }
    }
    m.sw->add_port(*m.gateway);
    // No guest may claim the gateway's MAC, and frames to it never flood (switch.cpp: pinned).
    if (!m.sw->pin_mac(*m.gateway, plan.gateway_mac)) {
        error = "internal: cannot pin the gateway MAC in the switch";
        return fail(Errc::invalid_argument);
    }
    return net;
}

Result<void> Network::attach(std::string_view spec, std::string& error) {
    Impl& m = *impl_;
    const guest::AttachmentContext ctx{m.io, *m.pool, *m.sw, m.plan.mtu};
    auto a = guest::make_attachment(spec, ctx, error);
    if (!a) return fail(a.error());
    if (auto s = (*a)->start(error); !s) return s;
    m.sw->add_port(**a);
    SLW_INFO("attached {} ({})", (*a)->spec(), (*a)->state());
    m.attachments.push_back(std::move(*a));
    return {};
}

Result<InProcessPort*> Network::attach_in_process(std::string name, PortCaps caps,
                                                  std::string& error) {
    Impl& m = *impl_;
    const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
        error = std::string("in-process port ") + name + ": eventfd: " + std::strerror(errno);
        return fail(Errc::io_error);
    }
    UniqueFd owned(efd);  // closed if the port cannot be built (the watcher may throw)
    auto p = std::make_unique<InProcessPortImpl>(m.io, std::move(name), caps, efd);
    (void)owned.release();  // the port owns it now
    m.sw->add_port(*p);
    m.inproc.push_back(std::move(p));
    return m.inproc.back().get();
}

Result<VirtioPort*> Network::attach_virtio(const VirtioAttachOptions& opts, std::string& error) {
    Impl& m = *impl_;
    if (opts.name.empty()) {
        error = "virtio port: a name is required";
        return fail(Errc::invalid_argument);
    }
    const std::string who = "virtio port " + opts.name + ": ";
    if (opts.regions.empty()) {
        error = who + "no guest memory regions";
        return fail(Errc::invalid_argument);
    }
    if (opts.regions.size() > virtio::GuestMemory::kMaxRegions) {
        error = who + std::to_string(opts.regions.size()) + " memory regions, at most " +
                std::to_string(virtio::GuestMemory::kMaxRegions);
        return fail(Errc::invalid_argument);
    }
    auto port = std::make_unique<VirtioPortImpl>(m.io, *m.pool, opts.name, m.plan.mtu);
    for (std::size_t i = 0; i < opts.regions.size(); ++i) {
        const VirtioMemRegion& r = opts.regions[i];
        const std::string rwho = who + "region " + std::to_string(i) + " (guest " +
                                 hex(r.guest_addr) + ", " + std::to_string(r.size) + " bytes): ";
        if (r.host == nullptr || r.size == 0) {
            error = rwho + (r.host == nullptr ? "no host mapping (null pointer)" : "empty");
            return fail(Errc::invalid_argument);
        }
        if (r.guest_addr + r.size < r.guest_addr ||
            reinterpret_cast<std::uintptr_t>(r.host) + r.size <
                reinterpret_cast<std::uintptr_t>(r.host)) {
            error = rwho + "the range wraps around the address space";
            return fail(Errc::invalid_argument);
        }
        const virtio::MemRegion mr{.guest_addr = r.guest_addr,
                                   .size = r.size,
                                   .user_addr = r.guest_addr,
                                   .host = static_cast<std::byte*>(r.host)};
        if (!port->memory().add(mr)) {
            error = rwho + "overlaps an earlier region";
            return fail(Errc::invalid_argument);
        }
    }
    // The ring geometry (size, alignment, inside guest memory) is checked once, by the queue's
    // start() below, whose one-line reason is prefixed with the port and queue.
    guest::VirtioNetDevice& dev = port->device();
    dev.set_memory(&port->memory());
    if (!dev.set_features(opts.features)) {
        error = who + "features " + hex(opts.features) + " include bits slipway does not offer (" +
                hex(opts.features & ~guest::kOfferedFeatures) +
                "; offered: " + hex(guest::kOfferedFeatures) + ")";
        return fail(Errc::invalid_argument);
    }
    static constexpr unsigned kQueue[2] = {guest::VirtioNetDevice::kRxQueue,
                                           guest::VirtioNetDevice::kTxQueue};
    for (std::size_t q = 0; q < opts.queues.size(); ++q) {
        const VirtioQueueOptions& vq = opts.queues[q];
        guest::VirtqueueSetup setup;
        setup.size = vq.size;
        setup.desc = vq.desc;
        setup.avail = vq.avail;
        setup.used = vq.used;
        setup.user_addrs = false;  // guest physical: the VMM's own view of its guest
        setup.last_avail = vq.last_avail;
        // A bad fd is the caller's mistake; running out of fds is the host's.
        const auto dup_failed = [&](const char* what, int fd) {
            const int e = errno;
            error = who + what + " fd " + std::to_string(fd) + ": " + std::strerror(e);
            dev.stop_all();
            return fail(e == EBADF ? Errc::invalid_argument : Errc::io_error);
        };
        setup.kick = dup_fd(vq.kick_fd);
        if (!setup.kick.valid()) return dup_failed("kick", vq.kick_fd);
        if (vq.call_fd >= 0) {
            setup.call = dup_fd(vq.call_fd);
            if (!setup.call.valid()) return dup_failed("call", vq.call_fd);
        }
        std::string why;
        if (auto ok = dev.start_queue(kQueue[q], std::move(setup), why); !ok) {
            error =
                who + (q == VirtioAttachOptions::kRx ? "rx queue (0): " : "tx queue (1): ") + why;
            dev.stop_all();
            return fail(ok.error());
        }
    }
    m.sw->add_port(*port);
    SLW_INFO("attached virtio port {} (features {})", port->name(), hex(opts.features));
    m.virtio_ports.push_back(std::move(port));
    return m.virtio_ports.back().get();
}

Result<void> Network::detach(const SwitchPort* port) {
    Impl& m = *impl_;
    const auto same = [port](const auto& p) { return p.get() == port; };
    if (auto it = std::find_if(m.virtio_ports.begin(), m.virtio_ports.end(), same);
        it != m.virtio_ports.end()) {
        // Out of the switch first, so no frame is handed to a device whose queues are stopping.
        m.sw->remove_port(**it);
        (*it)->device().stop_all();
        SLW_INFO("detached virtio port {}", (*it)->name());
        m.virtio_ports.erase(it);
        return {};
    }
    if (auto it = std::find_if(m.inproc.begin(), m.inproc.end(), same); it != m.inproc.end()) {
        m.sw->remove_port(**it);
        m.inproc.erase(it);
        return {};
    }
    return fail(Errc::not_found);
}

PacketPool& Network::pool() noexcept {
    return *impl_->pool;
}

std::uint64_t virtio_offered_features() noexcept {
    return guest::kOfferedFeatures;
}

void Network::run() {
    impl_->io.run();
}

void Network::stop() noexcept {
    Impl* m = impl_.get();
    boost::asio::post(m->io, [m] { m->shutdown(); });
}

void Network::post(std::function<void()> fn) {
    boost::asio::post(impl_->io, std::move(fn));
}

IoContext& Network::io() noexcept {
    return impl_->io;
}

Result<void> Network::add_dns_record(std::string_view name, Ipv4Addr addr) {
    if (!impl_->dns) return fail(Errc::unsupported);
    return impl_->dns->add_record(name, addr);
}

bool Network::remove_dns_record(std::string_view name) {
    return impl_->dns && impl_->dns->remove_record(name);
}

const NetworkPlan& Network::plan() const noexcept {
    return impl_->plan;
}

NetworkStatus Network::status() const {
    const Impl& m = *impl_;
    NetworkStatus s;
    s.version = std::string(version());
    s.plan = m.plan;
    s.uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                m.started);
    s.ready = !m.stopped;
    s.ports.push_back({m.gateway->name(), "gateway", "", "up", {}});
    for (const auto& a : m.attachments)
        s.ports.push_back({a->name(), "guest", a->spec(), a->state(), {}});
    for (const auto& p : m.inproc)
        s.ports.push_back({p->name(), "guest", "", "in-process", {}});
    for (const auto& v : m.virtio_ports)
        s.ports.push_back({v->name(), "guest", "", v->broken() ? "broken" : "virtio", {}});
    return s;
}

NetworkStats Network::stats() const {
    const Impl& m = *impl_;
    NetworkStats st;
    st.switch_counters = collect(m.sw->counters());
    auto port_stats = [](const SwitchPort& p, std::string kind, std::string spec,
                         std::string state) {
        return PortStats{p.name(), std::move(kind), std::move(spec), std::move(state),
                         collect(p.counters())};
    };
    st.ports.push_back(port_stats(*m.gateway, "gateway", "", "up"));
    for (const auto& a : m.attachments) {
        st.ports.push_back(port_stats(*a, "guest", a->spec(), a->state()));
        if (const guest::VirtioNetCounters* vc = a->virtio_counters()) {
            auto d = collect(*vc);
            st.ports.back().counters.insert(st.ports.back().counters.end(), d.begin(), d.end());
        }
    }
    for (const auto& p : m.inproc)
        st.ports.push_back(port_stats(*p, "guest", "", "in-process"));
    for (const auto& v : m.virtio_ports) {
        st.ports.push_back(port_stats(*v, "guest", "", v->broken() ? "broken" : "virtio"));
        auto d = collect(v->device().counters());
        st.ports.back().counters.insert(st.ports.back().counters.end(), d.begin(), d.end());
    }
    st.gateway_counters = collect(m.gateway->gateway_counters());
    if (m.dhcp) {
        auto d = collect(m.dhcp->counters());
        st.gateway_counters.insert(st.gateway_counters.end(), d.begin(), d.end());
    }
    if (const nat::TcpEngine* tcp = m.gateway->tcp()) {
        auto d = collect(tcp->counters());
        st.gateway_counters.insert(st.gateway_counters.end(), d.begin(), d.end());
        const std::uint32_t connecting = tcp->flows_in(nat::TcpState::connecting);
        const std::uint32_t established = tcp->flows_in(nat::TcpState::established);
        const std::uint32_t closing = tcp->flows_in(nat::TcpState::closing);
        const std::uint32_t syn_sent = tcp->flows_in(nat::TcpState::syn_sent);
        st.gateway_counters.push_back({"tcp_flows", connecting + established + closing + syn_sent});
        st.gateway_counters.push_back({"tcp_flows_connecting", connecting});
        st.gateway_counters.push_back({"tcp_flows_syn_sent", syn_sent});  // port forwards
        st.gateway_counters.push_back({"tcp_flows_established", established});
        st.gateway_counters.push_back({"tcp_flows_closing", closing});
        const auto add = [&](const auto& counters) {
            auto v = collect(counters);
            st.gateway_counters.insert(st.gateway_counters.end(), v.begin(), v.end());
        };
        if (const nat::UdpEngine* udp = m.gateway->udp()) {
            add(udp->counters());
            st.gateway_counters.push_back({"udp_flows", udp->flows()});
        }
        if (const nat::IcmpEngine* icmp = m.gateway->icmp()) {
            add(icmp->counters());
            st.gateway_counters.push_back({"icmp_flows", icmp->flows()});
        }
        if (const nat::FlowLimits* lim = m.gateway->limits()) add(lim->counters());
        if (const portfwd::Forwarder* fwd = m.gateway->forwarder()) {
            add(fwd->counters());
            st.gateway_counters.push_back(
                {"forwards", static_cast<std::uint64_t>(fwd->list().size())});
        }
        if (const nat::Reassembler* ra = m.gateway->reassembler()) {
            add(ra->counters());
            st.gateway_counters.push_back({"frag_in_progress", ra->in_progress()});
        }
        if (const nat::FlowTable* ft = m.gateway->flow_table()) {
            auto t = collect(ft->counters());
            st.gateway_counters.insert(st.gateway_counters.end(), t.begin(), t.end());
            st.gateway_counters.push_back({"flows", ft->size()});
            st.gateway_counters.push_back({"flows_capacity", ft->capacity()});
        }
    }
    if (m.dns) {
        auto d = collect(m.dns->counters());
        st.gateway_counters.insert(st.gateway_counters.end(), d.begin(), d.end());
        st.gateway_counters.push_back({"dns_cache_entries", m.dns->cache().entries()});
        st.gateway_counters.push_back({"dns_cache_bytes", m.dns->cache().bytes()});
    }
    st.pool = {
        {"small_capacity", m.pool->capacity(SizeClass::small)},
        {"large_capacity", m.pool->capacity(SizeClass::large)},
        {"small_free_global", m.pool->global_free_approx(SizeClass::small)},
        {"large_free_global", m.pool->global_free_approx(SizeClass::large)},
        {"exhausted", m.pool->exhausted_count()},
    };
    if (m.pcap) {
        st.switch_counters.push_back({"pcap_frames", m.pcap->frames()});
        st.switch_counters.push_back({"pcap_errors", m.pcap->errors()});
    }
    return st;
}

std::vector<DnsRecordView> Network::dns_records() const {
    std::vector<DnsRecordView> out;
    if (!impl_->dns) return out;
    for (const auto& r : impl_->dns->records())
        out.push_back({r.name, r.addr.to_string()});
    return out;
}

std::vector<LeaseView> Network::leases() const {
    std::vector<LeaseView> out;
    if (!impl_->dhcp) return out;
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    for (const auto& l : impl_->dhcp->leases(now))
        out.push_back({l.mac.to_string(), l.ip.to_string(), l.hostname, l.expires_unix, l.is_static,
                       l.bound});
    return out;
}

namespace {

std::string endpoint(Ipv4Addr a, std::uint16_t port) {
    return a.to_string() + ":" + std::to_string(port);
}

const char* state_name(nat::TcpState s) {
    switch (s) {
        case nat::TcpState::connecting:
            return "connecting";
        case nat::TcpState::syn_sent:
            return "syn-sent";
        case nat::TcpState::established:
            return "established";
        case nat::TcpState::closing:
            return "closing";
        case nat::TcpState::free:
            break;
    }
    return "free";
}

}  // namespace

Result<ForwardInfo> Network::add_forward(std::string_view spec, std::string& error) {
    Impl& m = *impl_;
    std::string why;
    auto rule = portfwd::Rule::parse(spec, why);
    if (!rule) {
        error = "forward '" + std::string(spec) + "': " + why;
        return fail(Errc::invalid_argument);
    }
    const Ipv4Addr g = rule->guest;
    const NetworkPlan& p = m.plan;
    if (!usable_host(g, p.subnet, p.prefix_len) || g == p.gateway ||
        (p.host_alias && g == *p.host_alias)) {
        error = "forward '" + std::string(spec) + "': guest address " + g.to_string() +
                " is not a guest address of " + p.subnet.to_string() + "/" +
                std::to_string(p.prefix_len) + " (nor the gateway or the host alias)";
        return fail(Errc::invalid_argument);
    }
    portfwd::Forwarder* fwd = m.gateway->forwarder();
    if (fwd == nullptr) {
        error = "port forwarding needs the NAT engine";
        return fail(Errc::unsupported);
    }
    auto id = fwd->add(*rule, error);
    if (!id) return fail(id.error());
    for (const ForwardInfo& f : forwards())
        if (f.id == *id) return f;
    error = "internal: forward " + std::to_string(*id) + " vanished";
    return fail(Errc::io_error);
}

Result<void> Network::remove_forward(std::uint32_t id, bool kill) {
    portfwd::Forwarder* fwd = impl_->gateway->forwarder();
    if (fwd == nullptr) return fail(Errc::not_found);
    return fwd->remove(id, kill);
}

std::optional<std::uint32_t> Network::find_forward(std::string_view proto,
                                                   std::string_view host) const {
    const portfwd::Forwarder* fwd = impl_->gateway->forwarder();
    if (fwd == nullptr) return std::nullopt;
    portfwd::Proto pr;
    if (proto == "tcp")
        pr = portfwd::Proto::tcp;
    else if (proto == "udp")
        pr = portfwd::Proto::udp;
    else
        return std::nullopt;
    // "ADDR:PORT" or "ADDR:FIRST-LAST" (as ForwardInfo::host writes it): the range's start.
    std::string_view h = host;
    if (const auto colon = h.rfind(':'); colon != std::string_view::npos) {
        const auto dash = h.find('-', colon);
        if (dash != std::string_view::npos) h = h.substr(0, dash);
    }
    const auto hp = portfwd::parse_host_port(h, true);
    if (!hp) return std::nullopt;
    return fwd->find(pr, hp->addr, hp->port);
}

std::vector<ForwardInfo> Network::forwards() const {
    const Impl& m = *impl_;
    std::vector<ForwardInfo> out;
    const portfwd::Forwarder* fwd = m.gateway->forwarder();
    if (fwd == nullptr) return out;
    for (const auto& e : fwd->list()) {
        ForwardInfo f;
        f.id = e.id;
        f.proto = std::string(portfwd::to_string(e.rule.proto));
        f.host = e.rule.host_text();
        f.guest = e.rule.guest_text();
        f.spec = e.rule.spec();
        f.accepted = e.accepted;
        f.refused = e.refused;
        out.push_back(std::move(f));
    }
    const auto count = [&out](std::uint32_t tag) {
        for (ForwardInfo& f : out)
            if (f.id == tag) ++f.active;
    };
    if (const nat::TcpEngine* tcp = m.gateway->tcp())
        tcp->for_each_flow([&](const nat::TcpFlowInfo& i) {
            if (i.inbound) count(i.tag);
        });
    if (const nat::UdpEngine* udp = m.gateway->udp())
        udp->for_each_flow(0, [&](const nat::UdpFlowInfo& i) {
            if (i.inbound) count(i.tag);
        });
    return out;
}

std::vector<FlowInfo> Network::flows(const FlowFilter& filter) const {
    const Impl& m = *impl_;
    std::vector<FlowInfo> out;
    const auto wanted = [&](std::string_view proto, const nat::FlowKey& k) {
        if (!filter.proto.empty() && filter.proto != proto) return false;
        if (filter.guest && k.guest_ip != *filter.guest) return false;
        return out.size() < filter.limit;
    };
    if (const nat::TcpEngine* tcp = m.gateway->tcp())
        tcp->for_each_flow([&](const nat::TcpFlowInfo& i) {
            if (!wanted("tcp", i.key)) return;
            out.push_back({"tcp", i.inbound ? "in" : "out",
                           endpoint(i.key.guest_ip, i.key.guest_port),
                           endpoint(i.key.remote_ip, i.key.remote_port), state_name(i.state),
                           i.inbound ? i.tag : 0});
        });
    if (const nat::UdpEngine* udp = m.gateway->udp())
        udp->for_each_flow(0, [&](const nat::UdpFlowInfo& i) {
            if (!wanted("udp", i.key)) return;
            out.push_back(
                {"udp", i.inbound ? "in" : "out", endpoint(i.key.guest_ip, i.key.guest_port),
                 endpoint(i.key.remote_ip, i.key.remote_port), "open", i.inbound ? i.tag : 0});
        });
    return out;
}

void Network::serve_on_gateway(std::uint16_t port, std::function<int(Ipv4Addr)> open) {
    impl_->gateway_services[port] = std::move(open);
}

}  // namespace slipway
