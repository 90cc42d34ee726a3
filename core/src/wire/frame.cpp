// Whole-frame parse: Ethernet -> ARP | IPv4 | IPv6 -> TCP | UDP | ICMPv4 | ICMPv6.
#include "slipway/core/wire/frame.hpp"

namespace slipway::wire {

namespace {

// Parses the transport header of `l4` into f. For a first fragment a failure is swallowed.
Result<void> parse_l4(ParsedFrame& f, IpProto proto, ByteView l4, bool first_fragment) noexcept {
    Errc err{};
    bool failed = false;
    auto take = [&](auto r, auto& slot) noexcept {
        if (r) {
            slot = *r;
        } else {
            failed = true;
            err = r.error();
        }
    };
    switch (proto) {
        case IpProto::tcp:
            take(TcpView::parse(l4), f.tcp);
            break;
        case IpProto::udp:
            take(UdpView::parse(l4), f.udp);
            break;
        case IpProto::icmp:
            if (f.ipv4) take(Icmpv4View::parse(l4), f.icmpv4);
            break;
        case IpProto::icmpv6:
            if (f.ipv6) take(Icmpv6View::parse(l4), f.icmpv6);
            break;
        default:
            break;
    }
    if (failed && !first_fragment) return fail(err);
    return {};
}

}  // namespace

Result<ParsedFrame> parse_frame(ByteView frame) noexcept {
    auto eth = EthernetView::parse(frame);
    if (!eth) return fail(eth.error());
    ParsedFrame f{*eth};
    switch (eth->ethertype()) {
        case EtherType::arp: {
            auto arp = ArpView::parse(eth->payload());
            if (!arp) return fail(arp.error());
            f.arp = *arp;
            return f;
        }
        case EtherType::ipv4: {
            auto ip = Ipv4View::parse(eth->payload());
            if (!ip) return fail(ip.error());
            f.ipv4 = *ip;
            f.ip_fragment = ip->is_fragment();
            // RFC 791 §3.2: later fragments carry no transport header.
            if (!ip->is_first_fragment()) return f;
            auto r = parse_l4(f, ip->protocol(), ip->payload(), f.ip_fragment);
            if (!r) return fail(r.error());
            return f;
        }
        case EtherType::ipv6: {
            auto ip = Ipv6View::parse(eth->payload());
            if (!ip) return fail(ip.error());
            f.ipv6 = *ip;
            const auto frag = ip->fragment();
            f.ip_fragment = frag.has_value();
            // RFC 8200 §4.5: only the first fragment carries the upper-layer header.
            if (frag && !frag->is_first()) return f;
            auto r = parse_l4(f, ip->upper_protocol(), ip->upper_payload(), f.ip_fragment);
            if (!r) return fail(r.error());
            return f;
        }
        default:
            return f;
    }
}

}  // namespace slipway::wire
