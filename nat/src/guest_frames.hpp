// Frames the datagram engines build towards a guest: Ethernet + IPv4 headers, and ICMP error
// messages quoting one of the guest's own datagrams. Internal to nat/.
#pragma once

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "slipway/core/checksum.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/nat/dgram_socket.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat::detail {

// Where a guest sits: its MAC, its VLAN, the switch port behind which it was seen.
struct GuestAddr {
    MacAddr mac;
    std::optional<wire::VlanTag> vlan;
    std::uint16_t port = 0;
};

inline std::size_t l2_len(bool vlan) noexcept {
    return vlan ? wire::kEthernetMaxHeaderLen : wire::kEthernetHeaderLen;
}

// Ethernet and IPv4 headers (no options) for an L4 message of `l4_len` bytes.
inline bool emit_l2_l3(MutByteView out, MacAddr src_mac, const GuestAddr& to, Ipv4Addr src,
                       Ipv4Addr dst, IpProto proto, std::size_t l4_len, std::uint16_t ident,
                       bool dont_fragment) noexcept {
    if (wire::kIpv4MinHeaderLen + l4_len > wire::kIpv4MaxPacketLen) return false;
    const wire::EthernetRepr eth{
        .dst = to.mac, .src = src_mac, .vlan = to.vlan, .ethertype = EtherType::ipv4};
    wire::Ipv4Repr ip;
    ip.src = src;
    ip.dst = dst;
    ip.protocol = proto;
    ip.ttl = 64;
    ip.ident = ident;
    ip.dont_fragment = dont_fragment;
    ip.payload_len = static_cast<std::uint16_t>(l4_len);
    return eth.emit(out) && ip.emit(out.subspan(l2_len(to.vlan.has_value())));
}

// ICMP destination unreachable codes the engines send (RFC 792, RFC 1812 §5.2.7.1).
inline constexpr std::uint8_t kIcmpDestUnreachable = 3;
inline constexpr std::uint8_t kCodeNetUnreachable = 0;
inline constexpr std::uint8_t kCodeHostUnreachable = 1;
inline constexpr std::uint8_t kCodePortUnreachable = 3;
inline constexpr std::uint8_t kCodeAdminProhibited = 13;

// RFC 1812 §4.3.2.3: an ICMP error quotes as much of the original datagram as fits in 576 bytes.
inline constexpr std::size_t kMaxIcmpQuote = 576 - wire::kIpv4MinHeaderLen - 8;

// An ICMP error (RFC 792: destination unreachable, time exceeded, ...) from `src` to the guest's
// `guest_ip`, quoting `quote` (the guest's IPv4 header and the start of its payload; cut to
// kMaxIcmpQuote). Unset when the pool is empty.
inline std::optional<PacketRef> build_icmp_error(PacketPool& pool, MacAddr src_mac,
                                                 const GuestAddr& to, Ipv4Addr src,
                                                 Ipv4Addr guest_ip, std::uint8_t type,
                                                 std::uint8_t code, std::uint32_t rest,
                                                 ByteView quote, std::uint16_t ident) noexcept {
    quote = quote.first(std::min(quote.size(), kMaxIcmpQuote));
    const wire::Icmpv4Repr icmp{.type = static_cast<wire::Icmpv4Type>(type),
                                .code = code,
                                .rest_of_header = rest,
                                .payload = quote};
    const std::size_t l2 = l2_len(to.vlan.has_value());
    auto r = pool.try_alloc(l2 + wire::kIpv4MinHeaderLen + icmp.buffer_len());
    if (!r) return std::nullopt;
    const MutByteView out = r->data();
    if (!emit_l2_l3(out, src_mac, to, src, guest_ip, IpProto::icmp, icmp.buffer_len(), ident,
                    false) ||
        !icmp.emit(out.subspan(l2 + wire::kIpv4MinHeaderLen)))
        return std::nullopt;
    r->meta().vnet = virtio::NetHdr{};
    return std::move(*r);
}

enum class Emitted : std::uint8_t { sent, no_buffer, link_full };

// build_icmp_error() handed to the link (flushed first when it is full).
inline Emitted emit_icmp_error(GuestLink& link, MacAddr src_mac, const GuestAddr& to, Ipv4Addr src,
                               Ipv4Addr guest_ip, std::uint8_t type, std::uint8_t code,
                               std::uint32_t rest, ByteView quote, std::uint16_t ident) noexcept {
    auto r =
        build_icmp_error(link.pool(), src_mac, to, src, guest_ip, type, code, rest, quote, ident);
    if (!r) return Emitted::no_buffer;
    return link.push(*r) ? Emitted::sent : Emitted::link_full;
}

// ICMP errors a guest hears of: destination unreachable, time exceeded, parameter problem.
inline bool relayable_error(std::uint8_t type) noexcept {
    return type == 3 || type == 11 || type == 12;
}
// The second word of such an error's ICMP header, from what the host's error said: the next-hop
// MTU for "fragmentation needed" (RFC 1191), else zero.
inline std::uint32_t error_rest(std::uint8_t type, std::uint8_t code, std::uint32_t mtu) noexcept {
    return (type == 3 && code == 4) ? (mtu & 0xffffu) : 0;
}

// Takes entries off socket `fd`'s error queue (IP_RECVERR) while the link has room and calls
// relay(e, rest) for each that an ICMP message caused and a guest should hear of (destination
// unreachable, time exceeded, parameter problem); `rest` is the ICMP header's second word (RFC
// 1191: the next-hop MTU of "fragmentation needed"). False when it stopped early — the link
// full, or 64 entries taken — and the rest waits in the queue for the flow's next turn, as its
// data waits in the receive queue.
template <class Relay>
bool drain_error_queue(DgramSockets& socks, GuestLink& link, int fd, Relay&& relay) noexcept {
    SockError e;
    for (int n = 0; n < 64; ++n) {
        if (link.room() == 0) {
            link.flush();
            if (link.room() == 0) return false;
        }
        if (!socks.read_error(fd, e)) return true;
        if (!e.from_icmp || !relayable_error(e.type)) continue;
        relay(static_cast<const SockError&>(e), error_rest(e.type, e.code, e.info));
    }
    return false;
}

// Who an error the host received about a flow comes from, as the guest sees it: the destination
// itself when it answered, else the gateway (host-side routers and the host's own addresses
// stay hidden).
inline Ipv4Addr relay_source(Ipv4Addr offender, Ipv4Addr host_dst, Ipv4Addr remote,
                             Ipv4Addr gateway) noexcept {
    return (offender.is_unspecified() || offender == host_dst) ? remote : gateway;
}

// The checks a new datagram flow passes once its destination is known to be translatable: the
// egress policy (denied: refuse(kCodeAdminProhibited), counted denied_policy), the per-guest
// limits and a table entry (counted drop_limit). The new flow's id, or kNoFlow.
template <class Counters, class Refuse>
FlowId admit_flow(const EgressPolicy* policy, FlowLimits* limits, FlowTable& table,
                  const FlowKey& key, std::optional<Ipv4Addr> host_alias, std::uint64_t now,
                  Counters& c, Refuse&& refuse) noexcept {
    if (policy && !policy->permits(key, host_alias)) {
        c.denied_policy.inc();
        refuse(kCodeAdminProhibited);
        return kNoFlow;
    }
    if (limits && limits->admit(key.guest_ip, false, now) != Admit::ok) {
        c.drop_limit.inc();
        return kNoFlow;
    }
    auto ins = limits ? limits->insert(table, key, now) : table.insert(key);
    if (!ins) {
        c.drop_limit.inc();
        return kNoFlow;
    }
    return *ins;
}

// A datagram socket of `protocol` connected to `to`:`port` for flow `id`, bound to it in the
// table and watched: the fd, or -1 after the flow's entry was erased (counted socket_failed; a
// destination the host has no route to first gets refuse(net or host unreachable)).
template <class Counters, class Refuse>
int open_flow_socket(DgramSockets& socks, Poller& poller, FlowTable& table, FlowId id, int protocol,
                     Ipv4Addr to, std::uint16_t port, Counters& c, Refuse&& refuse) noexcept {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(to.v);
    const int fd =
        socks.open_connected(protocol, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    if (fd >= 0 && table.bind_fd(id, fd) && poller.watch(fd, id, sock_event::in)) return fd;
    if (fd >= 0) socks.close(fd);
    table.erase(id);
    c.socket_failed.inc();
    if (fd == -ENETUNREACH || fd == -EHOSTUNREACH)
        refuse(fd == -ENETUNREACH ? kCodeNetUnreachable : kCodeHostUnreachable);
    return -1;
}

// Frames the largest IPv4 datagram takes at `mtu` once fragmented (RFC 791: every fragment but
// the last carries a multiple of 8 bytes).
inline std::size_t max_fragments(std::uint32_t mtu) noexcept {
    const std::size_t per =
        (std::clamp<std::uint32_t>(mtu, 68, 65535) - wire::kIpv4MinHeaderLen) & ~std::size_t{7};
    const std::size_t payload = wire::kIpv4MaxPacketLen - wire::kIpv4MinHeaderLen;
    return (payload + per - 1) / per;
}

// Whether the link and the pool could take the fragments of `n` maximum-size datagrams now, so a
// datagram read from a socket is never lost for want of either after the read: the engines read
// no more than this allows (the pool's global free list leaves the thread caches out, so this
// errs on the safe side).
inline std::size_t datagrams_that_fit(PacketPool& pool, std::size_t room, std::uint32_t mtu,
                                      bool vlan) noexcept {
    const std::size_t per = max_fragments(mtu);
    const std::size_t frame = l2_len(vlan) + std::min<std::uint32_t>(mtu, 65535);
    const SizeClass c =
        frame + pool.headroom() <= kSmallBufferSize ? SizeClass::small : SizeClass::large;
    return std::min(room / per, std::size_t{pool.global_free_approx(c)} / per);
}

}  // namespace slipway::nat::detail
