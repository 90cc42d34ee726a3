// UserspaceGateway's port-forward side: clients the Forwarder (portfwd/) accepted or heard from
// become inbound NAT flows into the guests.
//
// Theory of operation
// -------------------
// A forward names a guest address; a frame to it needs the guest's MAC and the switch port it
// sits behind. The gateway learns both from every ARP frame a guest sends (guests ARP for the
// gateway before they send anything through it, and refresh that entry now and then), in a small
// table of the guest network's addresses. A client for a guest not in the table waits — its
// accepted socket parked, at most kMaxWaiting of them — while the gateway asks with an ARP
// request (again every second); the reply, learned like any ARP frame, releases it. After
// kNeighborWaitMs without an answer the client is reset. A UDP datagram for an unknown guest is
// dropped after the ARP request goes out: the client's retransmission finds the answer learned.
//
// What the guest sees as the client (DESIGN §2): a client on host loopback (127.0.0.0/8, ::1)
// or on IPv6 appears as the host-loopback alias (the gateway when there is none), so the guest's
// replies come back through the NAT to the alias; any other IPv4 client appears with its own
// address and port — the guest's logs and access rules see the real peer. Two clients that would
// look alike to the guest (127.0.0.1:5000 and [::1]:5000) get different ports.
// TCP: TcpEngine::open_inbound() sends the SYN from there (TCP.md §3). UDP: the first datagram of
// a client opens its mapping (a socket of its own connected to the client, portfwd's
// open_udp_mapping), adopted by the UDP engine as a flow; the datagram itself is delivered by
// the engine, and so are any that still reach the rule's socket before the kernel knows the
// mapping. Each mapping lives as long as the client keeps talking (--udp-timeout).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/wire/arp.hpp"
#include "slipway/core/wire/ethernet.hpp"

namespace slipway::backends {

namespace {
constexpr std::size_t kMaxWaiting = 256;         // accepted clients parked for an ARP answer
constexpr std::uint64_t kNeighborWaitMs = 3000;  // how long they wait
constexpr std::uint64_t kArpRetryMs = 1000;
constexpr int kPortTries = 64;  // alternative client ports tried when two clients look alike

// The IPv4 address of a socket address (IPv4-mapped IPv6 included); unspecified otherwise.
Ipv4Addr ipv4_of(const sockaddr_storage& a) noexcept {
    if (a.ss_family == AF_INET)
        return Ipv4Addr{ntohl(reinterpret_cast<const sockaddr_in*>(&a)->sin_addr.s_addr)};
    if (a.ss_family == AF_INET6) {
        const std::uint8_t* b = reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr.s6_addr;
        static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(b, kMapped, 12) == 0)
            return Ipv4Addr::from_octets(b[12], b[13], b[14], b[15]);
    }
    return Ipv4Addr{};
}

void reset_close(int fd) noexcept {
    const linger lg{1, 0};  // the client sees a RST, not a clean close
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(fd);
}
}  // namespace

void UserspaceGateway::learn_neighbor(Ipv4Addr ip, MacAddr mac, std::optional<wire::VlanTag> vlan,
                                      std::uint16_t port) noexcept {
    const std::uint64_t now = now_ms();
    Neighbor* slot = nullptr;
    for (Neighbor& n : neighbors_) {
        if (n.seen_ms != 0 && n.ip == ip) {
            slot = &n;
            break;
        }
        // Otherwise an empty slot, else the one heard from longest ago.
        if (slot == nullptr || (slot->seen_ms != 0 && n.seen_ms < slot->seen_ms)) slot = &n;
    }
    const bool changed = slot->seen_ms == 0 || slot->ip != ip || slot->mac != mac ||
                         slot->port != port || slot->vlan.has_value() != vlan.has_value() ||
                         (vlan && slot->vlan->vid() != vlan->vid());
    // Another MAC or switch port claiming an address already known (a guest restarted, or one
    // guest claiming another's address): said, since port forwards to it follow the claim.
    if (changed && slot->seen_ms != 0 && slot->ip == ip)
        SLW_WARN_RATELIMITED("neighbour {} moved from {} (port {}) to {} (port {})", ip.to_string(),
                             slot->mac.to_string(), slot->port, mac.to_string(), port);
    *slot = Neighbor{ip, mac, vlan, port, now};
    if (changed) gw_.neighbors_learned.inc();
    if (!waiting_.empty()) serve_waiting();
}

const UserspaceGateway::Neighbor* UserspaceGateway::neighbor(Ipv4Addr ip) const noexcept {
    for (const Neighbor& n : neighbors_)
        if (n.seen_ms != 0 && n.ip == ip) return &n;
    return nullptr;
}

void UserspaceGateway::send_arp_request(Ipv4Addr ip) noexcept {
    // RFC 826: a broadcast request from the gateway's own address. Untagged: a guest behind a
    // VLAN is found once it ARPs for the gateway itself.
    auto r = build_arp(wire::EthernetRepr{.dst = MacAddr::broadcast(),
                                          .src = cfg_.mac,
                                          .vlan = std::nullopt,
                                          .ethertype = EtherType::arp},
                       wire::ArpRepr{.op = wire::ArpOp::request,
                                     .sha = cfg_.mac,
                                     .spa = cfg_.gateway,
                                     .tha = {},
                                     .tpa = ip});
    if (!r) return;
    gw_.arp_requests.inc();
    r->meta().vnet = virtio::NetHdr{};
    if (dispatch(*r)) flush();
}

std::optional<std::pair<Ipv4Addr, std::uint16_t>> UserspaceGateway::client_view(
    const portfwd::Client& client) const noexcept {
    std::uint16_t port = 0;
    if (client.addr.ss_family == AF_INET)
        port = ntohs(reinterpret_cast<const sockaddr_in*>(&client.addr)->sin_port);
    else if (client.addr.ss_family == AF_INET6)
        port = ntohs(reinterpret_cast<const sockaddr_in6*>(&client.addr)->sin6_port);
    else
        return std::nullopt;
    // Loopback and IPv6 clients (and any address the guest could not answer directly: the guest
    // network itself, unspecified, multicast) appear as the host alias.
    Ipv4Addr ip = ipv4_of(client.addr);
    if (ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() ||
        ip.in_prefix(subnet_, prefix_len_))
        ip = cfg_.host_alias.value_or(cfg_.gateway);
    return std::pair{ip, port == 0 ? std::uint16_t{1024} : port};
}

std::optional<nat::FlowKey> UserspaceGateway::free_key(std::pair<Ipv4Addr, std::uint16_t> view,
                                                       Ipv4Addr guest, std::uint16_t guest_port,
                                                       IpProto proto) const noexcept {
    std::uint16_t port = view.second;
    for (int i = 0; i < kPortTries; ++i) {
        const nat::FlowKey key{guest, view.first, guest_port, port, proto};
        if (flows_->find(key) == nat::kNoFlow) return key;
        port = static_cast<std::uint16_t>(port >= 65535 ? 1024 : port + 1);
    }
    return std::nullopt;
}

void UserspaceGateway::accept_tcp(portfwd::RuleId rule, int fd, const portfwd::Client& client,
                                  Ipv4Addr guest, std::uint16_t guest_port) noexcept {
    if (nat_stopped_) {
        reset_close(fd);
        return;
    }
    const auto view = client_view(client);
    const auto key = view ? free_key(*view, guest, guest_port, IpProto::tcp) : std::nullopt;
    if (!key) {
        gw_.fwd_no_port.inc();
        fwd_->note_refused(rule);
        reset_close(fd);
        return;
    }
    WaitingClient w{fd, *key, rule, 0, 0};
    if (const Neighbor* n = neighbor(guest)) {
        open_tcp_inbound(w, *n);
        return;
    }
    if (waiting_.size() >= kMaxWaiting) {
        gw_.fwd_no_neighbor.inc();
        fwd_->note_refused(rule);
        reset_close(fd);
        return;
    }
    gw_.fwd_neighbor_wait.inc();
    const std::uint64_t now = now_ms();
    w.deadline_ms = now + kNeighborWaitMs;
    w.next_arp_ms = now + kArpRetryMs;
    waiting_.push_back(w);
    send_arp_request(guest);
    arm_waiting();
}

void UserspaceGateway::open_tcp_inbound(const WaitingClient& w, const Neighbor& n) noexcept {
    (void)tcp_->open_inbound(nat::TcpInbound{.fd = w.fd,
                                             .key = w.key,
                                             .guest_mac = n.mac,
                                             .vlan = n.vlan,
                                             .in_port = n.port,
                                             .tag = w.rule},
                             now_ms());
    flush();
    arm_tick();
}

void UserspaceGateway::serve_waiting() noexcept {
    const std::uint64_t now = now_ms();
    std::size_t keep = 0;
    for (std::size_t i = 0; i < waiting_.size(); ++i) {
        WaitingClient& w = waiting_[i];
        if (const Neighbor* n = neighbor(w.key.guest_ip)) {
            // The key was free when the client arrived; another flow may have taken it since.
            if (flows_->find(w.key) != nat::kNoFlow) {
                fwd_->note_refused(w.rule);
                reset_close(w.fd);
                continue;
            }
            open_tcp_inbound(w, *n);
            continue;
        }
        if (now >= w.deadline_ms) {
            gw_.fwd_no_neighbor.inc();
            SLW_WARN_RATELIMITED("forward {}: guest {} does not answer ARP; client reset", w.rule,
                                 w.key.guest_ip.to_string());
            fwd_->note_refused(w.rule);
            reset_close(w.fd);
            continue;
        }
        if (now >= w.next_arp_ms) {
            w.next_arp_ms = now + kArpRetryMs;
            send_arp_request(w.key.guest_ip);
        }
        waiting_[keep++] = w;
    }
    waiting_.resize(keep);
}

void UserspaceGateway::arm_waiting() noexcept {
    if (waiting_armed_ || nat_stopped_ || waiting_.empty()) return;
    waiting_armed_ = true;
    waiting_timer_->expires_after(std::chrono::milliseconds(250));
    waiting_timer_->async_wait([this, alive = alive_](const boost::system::error_code& ec) {
        if (!*alive || ec) return;
        waiting_armed_ = false;
        serve_waiting();
        arm_waiting();
    });
}

void UserspaceGateway::datagram_udp(portfwd::RuleId rule, const portfwd::Client& client,
                                    Ipv4Addr guest, std::uint16_t guest_port,
                                    ByteView payload) noexcept {
    if (nat_stopped_) return;
    const std::uint64_t now = now_ms();
    const auto view = client_view(client);
    if (!view) return;
    // A client with a mapping already (its datagram reached the rule's socket before the kernel
    // knew the mapping's): deliver through that flow. Its key is the view's port or one that
    // free_key() moved on to, so each candidate the table holds is checked by its socket's peer.
    std::uint16_t port = view->second;
    for (int i = 0; i < kPortTries; ++i) {
        const nat::FlowId existing =
            flows_->find(nat::FlowKey{guest, view->first, guest_port, port, IpProto::udp});
        if (existing == nat::kNoFlow) break;  // free_key() would have stopped here too
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const int mfd = udp_->fd_of(existing);
        if (mfd >= 0 && ::getpeername(mfd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
            len == client.addr_len && std::memcmp(&peer, &client.addr, len) == 0) {
            (void)udp_->deliver(existing, payload, now);
            flush();
            return;
        }
        port = static_cast<std::uint16_t>(port >= 65535 ? 1024 : port + 1);
    }
    const Neighbor* n = neighbor(guest);
    if (n == nullptr) {
        // Dropped: the client's retransmission finds the guest once it answered.
        gw_.fwd_no_neighbor.inc();
        send_arp_request(guest);
        return;
    }
    const auto key = free_key(*view, guest, guest_port, IpProto::udp);
    if (!key) {
        gw_.fwd_no_port.inc();
        return;
    }
    const int fd = portfwd::open_udp_mapping(client);
    if (fd < 0) {
        gw_.fwd_udp_failed.inc();
        SLW_WARN_RATELIMITED("forward {}: cannot open a UDP mapping: {}", rule, std::strerror(-fd));
        return;
    }
    const nat::FlowId id = udp_->open_inbound(nat::UdpInbound{.fd = fd,
                                                              .key = *key,
                                                              .guest_mac = n->mac,
                                                              .vlan = n->vlan,
                                                              .in_port = n->port,
                                                              .tag = rule,
                                                              .peer = ipv4_of(client.addr)},
                                              now);
    if (id == nat::kNoFlow) {
        gw_.fwd_udp_failed.inc();
        return;
    }
    gw_.fwd_udp_mappings.inc();
    fwd_->note_mapping(rule);
    (void)udp_->deliver(id, payload, now);
    flush();
    arm_tick();
}

void UserspaceGateway::kill_rule(portfwd::RuleId rule) noexcept {
    if (!tcp_) return;
    const std::uint32_t t = tcp_->reset_tagged(rule);
    const std::uint32_t u = udp_->reset_tagged(rule);
    std::size_t w = 0;
    for (std::size_t i = 0; i < waiting_.size(); ++i) {
        if (waiting_[i].rule == rule)
            reset_close(waiting_[i].fd);
        else
            waiting_[w++] = waiting_[i];
    }
    waiting_.resize(w);
    flush();
    SLW_INFO("forward {}: {} TCP connection(s) and {} UDP mapping(s) reset", rule, t, u);
}

}  // namespace slipway::backends
