// UserspaceGateway: ARP and ICMP echo at the gateway (the userspace backend's first cut).
//
// Theory of operation
// -------------------
// The gateway is an ordinary switch port of kind `gateway`, living on the network thread. The
// switch delivers to it every frame addressed to its MAC and every flooded frame; it drains them
// in bursts from its to_port() ring, parses each once (wire::parse_frame) and decides:
//   - ARP request for one of its addresses (gateway, DNS, host alias) -> ARP reply (RFC 826);
//   - ICMP echo request to the gateway address -> echo reply (RFC 792) with the same identifier,
//     sequence number and data;
//   - a UDP datagram to port 67, broadcast or to the gateway -> the DHCP server (dhcp/), whose
//     reply goes out as a UDP datagram from the gateway's port 67 to the client's port 68, to the
//     address and MAC the server chose (RFC 2131 §4.1);
//   - a UDP datagram to the DNS address's port 53 -> the DNS forwarder (dns/), which answers
//     now or later through dispatch_dns_reply(), as a datagram from port 53 back to the sender;
//   - an IPv4 fragment addressed to it -> reassembly (nat/fragment.hpp); the whole datagram then
//     goes through these same rules;
//   - a TCP segment to an address beyond the guest network, to the host alias or to the DNS
//     address's port 53, a UDP datagram beyond the guest network, to the alias or to one of the
//     gateway's ports no service holds, an ICMP echo request beyond the guest network or to
//     the alias -> the NAT engines (nat/, driven from gateway_nat.cpp);
//   - clients of port forwards (portfwd/, gateway_inbound.cpp) -> inbound NAT flows into the
//     guests, whose MACs and switch ports come from the ARP frames guests send (and from ARP
//     requests the gateway sends for a guest it has not heard from yet);
//   - anything else addressed to it -> counted as unhandled and dropped;
//   - frames for others (flooded ARP between guests, multicast) -> counted as ignored.
// Replies are built by value types that emit bytes into pool buffers and pushed into to_switch()
// as one burst, followed by one notify_switch(). The switch queues, rather than nests, that
// re-entrant call. Nothing here allocates, throws or blocks; every discarded frame is counted.
#include <chrono>
#include <cstring>

#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/wire/arp.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/ipv4.hpp"

namespace slipway::backends {

// The engine reads whatever the guests send: GSO super-frames and partial checksums are its
// business (the NAT writes TSO payloads to sockets whole), so the switch need not fix them up on
// the way here.
UserspaceGateway::UserspaceGateway(PacketPool& pool, const GatewayConfig& cfg)
    : SwitchPort("gateway", PortKind::gateway,
                 PortCaps{.gso = true, .partial_csum = true, .max_frame = kMaxFrameLen}),
      pool_(pool),
      cfg_(cfg) {}

bool UserspaceGateway::owns(Ipv4Addr a) const noexcept {
    return a == cfg_.gateway || a == cfg_.dns || (cfg_.host_alias && a == *cfg_.host_alias);
}

void UserspaceGateway::on_frames_from_switch() noexcept {
    std::array<PacketRef, 32> burst;
    replies_in_burst_ = 0;
    for (;;) {
        const std::size_t n = to_port().pop_burst(burst);
        if (n == 0) break;
        burst_ms_ = tcp_ ? now_ms() : 0;  // one clock read per burst, not per segment
        for (std::size_t i = 0; i < n; ++i)
            process_frame(burst[i]);
        // The NAT engines gathered views into these frames: they write them before they go.
        if (tcp_) end_nat_burst(burst_ms_);
        for (std::size_t i = 0; i < n; ++i)
            burst[i].reset();
    }
    if (tcp_) {
        if (nat_pending()) schedule_pending();
        arm_tick();
    }
    if (replies_in_burst_ != 0) notify_switch();
}

void UserspaceGateway::process_frame(const PacketRef& frame) noexcept {
    auto parsed = wire::parse_frame(frame.data());
    if (!parsed) {
        gw_.drop_malformed.inc();
        return;
    }
    const wire::ParsedFrame& f = *parsed;
    if (f.arp) {
        process_arp(frame, f);
        return;
    }
    const MacAddr dst = f.eth.dst();
    if (f.ipv4 && f.ip_fragment && reasm_ && dst == cfg_.mac) {
        process_fragment(frame, f);
        return;
    }
    if (f.ipv4 && f.udp && f.udp->dst_port() == L4Port{dhcp::kServerPort} &&
        (dst == cfg_.mac || dst.is_broadcast()) &&
        (f.ipv4->dst().is_broadcast() || f.ipv4->dst() == cfg_.gateway)) {
        process_dhcp(f);
        return;
    }
    if (dst != cfg_.mac) {
        gw_.ignored.inc();  // a broadcast or multicast we do not serve (yet)
        return;
    }
    if (f.ipv4 && f.udp && f.udp->dst_port() == L4Port{dns::kDnsPort} &&
        f.ipv4->dst() == cfg_.dns) {
        process_dns(frame, f);
        return;
    }
    if (f.ipv4 && f.icmpv4 && f.ipv4->dst() == cfg_.gateway) {
        process_icmpv4(f);
        return;
    }
    if (tcp_ && f.ipv4 && f.tcp && tcp_->wants(f.ipv4->dst(), f.tcp->dst_port().v)) {
        process_tcp(frame, f);
        return;
    }
    if (udp_ && f.ipv4 && f.udp && udp_->wants(f.ipv4->dst())) {
        process_udp(frame, f);
        return;
    }
    if (icmp_ && f.ipv4 && f.icmpv4 && icmp_->wants(f.ipv4->dst())) {
        process_icmp_nat(frame, f);
        return;
    }
    if (f.ipv4 && !f.ipv4->header_checksum_ok()) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.drop_unhandled.inc();
}

void UserspaceGateway::process_arp(const PacketRef& frame, const wire::ParsedFrame& f) noexcept {
    const wire::ArpView& a = *f.arp;
    // Every ARP frame a guest sends (requests, flooded or to us, and replies to ours) says where
    // its sender address lives: port forwards need that to reach a guest first (RFC 826's
    // "merge" step, for the addresses of the guest network only).
    if (tcp_ && !a.sha().is_multicast() && !a.sha().is_zero() && !a.spa().is_unspecified() &&
        a.spa().in_prefix(subnet_, prefix_len_) && !owns(a.spa()))
        learn_neighbor(a.spa(), a.sha(), f.eth.vlan(), frame.meta().in_port);
    // RFC 826 "Packet Reception": answer a request whose target protocol address is ours. An ARP
    // probe (sender 0.0.0.0, RFC 5227 §2.1.1) for our address gets an answer too: it tells the
    // prober the address is taken.
    if (a.op() != wire::ArpOp::request || !owns(a.tpa())) {
        gw_.ignored.inc();  // (a reply to our request was learned above)
        return;
    }
    if (a.sha().is_multicast() || a.sha().is_zero()) {
        gw_.drop_malformed.inc();
        return;
    }
    auto r = build_arp(
        wire::EthernetRepr{
            .dst = a.sha(), .src = cfg_.mac, .vlan = f.eth.vlan(), .ethertype = EtherType::arp},
        wire::ArpRepr{.op = wire::ArpOp::reply,
                      .sha = cfg_.mac,
                      .spa = a.tpa(),
                      .tha = a.sha(),
                      .tpa = a.spa()});
    if (!r) return;
    gw_.arp_replies.inc();
    dispatch_reply(std::move(*r));
}

std::optional<PacketRef> UserspaceGateway::build_arp(const wire::EthernetRepr& eth,
                                                     const wire::ArpRepr& arp) noexcept {
    // Ethernet minimum frame: 60 bytes without FCS; pad with zeros like the kernel does.
    const std::size_t len = std::max<std::size_t>(eth.header_len() + arp.buffer_len(), 60);
    auto r = pool_.try_alloc(len);
    if (!r) {
        gw_.drop_no_buffer.inc();
        return std::nullopt;
    }
    const MutByteView out = r->data();
    std::fill(out.begin(), out.end(), std::byte{0});
    const auto h = eth.emit(out);
    if (!h || !arp.emit(out.subspan(*h))) {
        gw_.drop_malformed.inc();  // cannot happen with our own fields; counted, not asserted
        return std::nullopt;
    }
    return std::move(*r);
}

void UserspaceGateway::process_icmpv4(const wire::ParsedFrame& f) noexcept {
    const wire::Ipv4View& ip = *f.ipv4;
    const wire::Icmpv4View& icmp = *f.icmpv4;
    // Validate once: a reply must never be built from a corrupt request (RFC 1122 §3.2.1.2: a
    // datagram with a bad header checksum is discarded silently).
    if (!ip.header_checksum_ok() || !icmp.checksum_ok() || f.ip_fragment) {
        gw_.drop_malformed.inc();
        return;
    }
    if (icmp.type() != wire::Icmpv4Type::echo_request) {
        gw_.drop_unhandled.inc();
        return;
    }
    if (ip.src().is_multicast() || ip.src().is_broadcast() || ip.src().is_loopback()) {
        gw_.drop_malformed.inc();  // RFC 1122 §3.2.2.6: never answer to such a source
        return;
    }
    // RFC 792 "Echo or Echo Reply": same identifier, sequence number and data, type 0.
    const wire::Icmpv4Repr reply{.type = wire::Icmpv4Type::echo_reply,
                                 .code = 0,
                                 .rest_of_header = icmp.rest_of_header(),
                                 .payload = icmp.payload()};
    wire::Ipv4Repr ip_out;
    ip_out.src = cfg_.gateway;
    ip_out.dst = ip.src();
    ip_out.protocol = IpProto::icmp;
    ip_out.ttl = 64;
    ip_out.ident = next_ip_id_++;
    ip_out.payload_len = static_cast<std::uint16_t>(reply.buffer_len());
    const wire::EthernetRepr eth{
        .dst = f.eth.src(), .src = cfg_.mac, .vlan = f.eth.vlan(), .ethertype = EtherType::ipv4};
    const std::size_t len = eth.header_len() + ip_out.header_len() + reply.buffer_len();
    if (len > std::size_t{cfg_.mtu} + eth.header_len()) {
        gw_.drop_unhandled.inc();  // an echo we could only answer with a fragmented reply
        return;
    }
    auto r = pool_.try_alloc(len);
    if (!r) {
        gw_.drop_no_buffer.inc();
        return;
    }
    const MutByteView out = r->data();
    const auto h = eth.emit(out);
    const auto iph = h ? ip_out.emit(out.subspan(*h)) : h;
    if (!h || !iph || !reply.emit(out.subspan(*h + *iph))) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.icmp_echo_replies.inc();
    dispatch_reply(std::move(*r));
}

void UserspaceGateway::process_dhcp(const wire::ParsedFrame& f) noexcept {
    if (cfg_.dhcp == nullptr) {
        gw_.drop_unhandled.inc();  // --no-dhcp
        return;
    }
    if (!f.ipv4->header_checksum_ok() || f.ip_fragment) {
        gw_.drop_malformed.inc();
        return;
    }
    // The reply is built in place: headers first, the DHCP message after them, in one buffer of
    // the link's MTU (a DHCP reply never needs more; RFC 2131 §2 guarantees clients 576).
    const bool vlan = f.eth.vlan().has_value();
    auto r = pool_.try_alloc(std::size_t{cfg_.mtu} + wire::kEthernetHeaderLen + (vlan ? 4 : 0));
    if (!r) {
        gw_.drop_no_buffer.inc();
        return;
    }
    const auto tgt =
        cfg_.dhcp->process(f.udp->payload(), r->data().subspan(udp_payload_offset(vlan)),
                           std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
    if (!tgt) {
        gw_.dhcp_handled.inc();  // counted by the server (ignored, malformed, no address, ...)
        return;
    }
    if (!emit_udp_headers(*r, tgt->to_relay ? f.eth.src() : tgt->dst_mac, f.eth.vlan(),
                          cfg_.gateway, tgt->dst_ip, dhcp::kServerPort, tgt->dst_port, tgt->len)) {
        gw_.drop_malformed.inc();
        return;
    }
    gw_.dhcp_handled.inc();
    dispatch_reply(std::move(*r));
}

void UserspaceGateway::process_dns(const PacketRef& frame, const wire::ParsedFrame& f) noexcept {
    if (cfg_.dns_forwarder == nullptr) {
        gw_.drop_unhandled.inc();  // --no-dns
        return;
    }
    if (!f.ipv4->header_checksum_ok() || f.ip_fragment) {
        gw_.drop_malformed.inc();  // a fragment here: no reassembly without the NAT engine
        return;
    }
    if (!udp_checksum_ok(frame, f)) {
        gw_.drop_bad_checksum.inc();
        return;
    }
    const wire::UdpView& udp = *f.udp;
    const Ipv4Addr src = f.ipv4->src();
    if (src.is_multicast() || src.is_broadcast() || src.v == 0) {
        gw_.drop_malformed.inc();  // no address an answer could go back to
        return;
    }
    gw_.dns_handled.inc();
    const dns::GuestEndpoint from{.mac = f.eth.src(),
                                  .vlan = f.eth.vlan(),
                                  .ip = src,
                                  .port = udp.src_port().v,
                                  .local = f.ipv4->dst(),
                                  .stream = 0};
    cfg_.dns_forwarder->process_query(udp.payload(), from);
}

void UserspaceGateway::dispatch_dns_reply(const dns::GuestEndpoint& to, ByteView msg) noexcept {
    const std::size_t off = udp_payload_offset(to.vlan.has_value());
    auto r = pool_.try_alloc(off + msg.size());
    if (!r) {
        gw_.drop_no_buffer.inc();
        return;
    }
    std::memcpy(r->data().data() + off, msg.data(), msg.size());
    if (!emit_udp_headers(*r, to.mac, to.vlan, to.local, to.ip, dns::kDnsPort, to.port,
                          msg.size())) {
        gw_.drop_malformed.inc();
        return;
    }
    dispatch_reply(std::move(*r));
}

void UserspaceGateway::flush_dns_replies() noexcept {
    if (replies_in_burst_ == 0) return;
    replies_in_burst_ = 0;
    notify_switch();
}

bool UserspaceGateway::udp_checksum_ok(const PacketRef& frame,
                                       const wire::ParsedFrame& f) noexcept {
    // RFC 768: a zero checksum means none was computed. A partial checksum (virtio NEEDS_CSUM)
    // is the guest's offload, not an error: its data was never on a wire.
    const wire::UdpView& udp = *f.udp;
    if (udp.checksum() == 0 || frame.meta().vnet.needs_csum()) return true;
    return csum_finish(
               csum_partial(udp.datagram(), pseudo_header_sum_v4(f.ipv4->src(), f.ipv4->dst(),
                                                                 IpProto::udp, udp.length()))) == 0;
}

bool UserspaceGateway::emit_udp_headers(PacketRef& r, MacAddr dst_mac,
                                        std::optional<wire::VlanTag> vlan, Ipv4Addr src,
                                        Ipv4Addr dst, std::uint16_t src_port,
                                        std::uint16_t dst_port, std::size_t payload_len) noexcept {
    if (payload_len > 65535 - wire::kUdpHeaderLen - wire::kIpv4MinHeaderLen) return false;
    const auto udp_len = static_cast<std::uint16_t>(wire::kUdpHeaderLen + payload_len);
    const wire::EthernetRepr eth{
        .dst = dst_mac, .src = cfg_.mac, .vlan = vlan, .ethertype = EtherType::ipv4};
    wire::Ipv4Repr ip;
    ip.src = src;
    ip.dst = dst;
    ip.protocol = IpProto::udp;
    ip.ttl = 64;
    ip.ident = next_ip_id_++;
    ip.payload_len = udp_len;
    const wire::UdpRepr udp{.src_port = L4Port{src_port},
                            .dst_port = L4Port{dst_port},
                            .payload_len = static_cast<std::uint16_t>(payload_len)};
    const MutByteView buf = r.data();
    const auto eh = eth.emit(buf);
    const auto ih = eh ? ip.emit(buf.subspan(*eh)) : eh;
    const auto uh = ih ? udp.emit(buf.subspan(*eh + *ih)) : ih;
    if (!eh || !ih || !uh || !r.set_len(*eh + *ih + udp_len)) return false;
    // RFC 768: checksum over the pseudo-header, the UDP header and the data; 0 is sent as ~0.
    const MutByteView l4 = buf.subspan(*eh + *ih, udp_len);
    const std::uint16_t sum =
        csum_finish(csum_partial(l4, pseudo_header_sum_v4(ip.src, ip.dst, IpProto::udp, udp_len)));
    store_be16(l4.data() + 6, sum == 0 ? 0xffff : sum);
    return true;
}

void UserspaceGateway::dispatch_reply(PacketRef&& reply) noexcept {
    reply.meta().in_port = id();
    if (!to_switch().try_push(std::move(reply))) {
        gw_.drop_ring_full.inc();
        return;
    }
    ++replies_in_burst_;
}

}  // namespace slipway::backends
