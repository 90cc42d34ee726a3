// libFuzzer target: wire views and parse_frame() on arbitrary bytes, trapping on broken invariants.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_util.hpp"
#include "slipway/core/wire/frame.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;
using namespace slipway::wire;

// Equal except for the 16-bit field at `off`.
bool equal_except(ByteView a, ByteView b, std::size_t off) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (i != off && i != off + 1 && a[i] != b[i]) return false;
    return true;
}

// Equal except the 16-bit field at `off`, where 0x0000 and 0xffff are the same ones'-complement
// zero and a checksum that verifies may be either.
bool equal_but_checksum_zero(ByteView a, ByteView b, std::size_t off) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (i == off || i == off + 1) continue;
        if (a[i] != b[i]) return false;
    }
    const auto ca = load_be16(a.data() + off);
    const auto cb = load_be16(b.data() + off);
    return ca == cb || ((ca == 0 || ca == 0xffff) && (cb == 0 || cb == 0xffff));
}

std::array<std::byte, 65536 + 64> g_out;

void touch(const EthernetView& v, ByteView in) {
    sink(v.dst().b[0] + v.src().b[5] + static_cast<std::uint64_t>(v.ethertype()) + v.header_len());
    if (auto t = v.vlan()) sink(t->vid() + t->pcp() + static_cast<std::uint64_t>(t->tpid));
    check(inside(v.header(), in) && inside(v.payload(), in) && inside(v.frame(), in));
    check(v.header().size() + v.payload().size() == v.frame().size());
    auto n = EthernetRepr::from(v).emit(g_out);
    check(n && *n == v.header_len() && equal_bytes(ByteView(g_out).first(*n), v.header()));
}

void touch(const ArpView& v, ByteView in) {
    sink(static_cast<std::uint64_t>(v.op()) + v.sha().b[0] + v.spa().v + v.tha().b[1] + v.tpa().v);
    check(inside(v.bytes(), in) && v.bytes().size() == kArpEthIpv4Len);
    auto n = ArpRepr::from(v).emit(g_out);
    check(n && equal_bytes(ByteView(g_out).first(*n), v.bytes()));
}

void touch(const Ipv4View& v, ByteView in) {
    sink(v.header_len() + v.total_len() + v.tos() + v.dscp() + v.ecn() + v.ident() +
         v.reserved_flag() + v.dont_fragment() + v.more_fragments() + v.frag_offset() +
         v.frag_offset_bytes() + v.is_fragment() + v.is_first_fragment() + v.ttl() +
         static_cast<std::uint64_t>(v.protocol()) + v.header_checksum() + v.src().v + v.dst().v);
    check(inside(v.packet(), in) && inside(v.header(), in) && inside(v.payload(), in) &&
          inside(v.options(), in));
    check(v.packet().size() == v.total_len() && v.header_len() >= kIpv4MinHeaderLen &&
          v.header_len() <= kIpv4MaxHeaderLen);
    check(v.header().size() + v.payload().size() == v.packet().size());
    auto n = Ipv4Repr::from(v).emit(g_out);
    check(n && *n == v.header_len());
    const ByteView out = ByteView(g_out).first(*n);
    if (v.header_checksum_ok())
        check(equal_but_checksum_zero(out, v.header(), 10));
    else
        check(equal_except(out, v.header(), 10));
}

void touch(const Ipv6View& v, ByteView in) {
    sink(v.traffic_class() + v.dscp() + v.ecn() + v.flow_label() + v.payload_len() +
         static_cast<std::uint64_t>(v.next_header()) + v.hop_limit() + v.src().b[0] +
         v.dst().b[15] + static_cast<std::uint64_t>(v.upper_protocol()) + v.upper_offset() +
         v.ext_header_count() + v.is_fragment());
    if (auto f = v.fragment()) sink(f->offset + f->more + f->ident + f->offset_bytes());
    check(inside(v.packet(), in) && inside(v.header(), in) && inside(v.payload(), in) &&
          inside(v.ext_headers(), in) && inside(v.upper_payload(), in));
    check(v.packet().size() == kIpv6HeaderLen + v.payload_len());
    check(v.upper_offset() >= kIpv6HeaderLen && v.upper_offset() <= v.packet().size());
    check(v.ext_header_count() <= kIpv6MaxExtHeaders);
    check(kIpv6HeaderLen + v.ext_headers().size() + v.upper_payload().size() == v.packet().size());
    auto n = Ipv6Repr::from(v).emit(g_out);
    check(n && equal_bytes(ByteView(g_out).first(*n), v.header()));
}

void touch(const Icmpv4View& v, ByteView in) {
    sink(static_cast<std::uint64_t>(v.type()) + v.code() + v.checksum() + v.rest_of_header() +
         v.echo_id() + v.echo_seq());
    check(inside(v.message(), in) && inside(v.payload(), in));
    const bool ok = v.checksum_ok();
    auto n = Icmpv4Repr::from(v).emit(g_out);
    check(n && *n == v.message().size());
    const ByteView out = ByteView(g_out).first(*n);
    check(ok ? equal_but_checksum_zero(out, v.message(), 2) : equal_except(out, v.message(), 2));
    // Whatever the input, what emit() produced must verify.
    auto back = Icmpv4View::parse(out);
    check(back && back->checksum_ok());
}

void touch(const Icmpv6View& v, ByteView in) {
    sink(static_cast<std::uint64_t>(v.type()) + v.code() + v.checksum() + v.rest_of_header() +
         v.echo_id() + v.echo_seq() + v.body().size());
    check(inside(v.message(), in) && inside(v.body(), in) && inside(v.payload(), in));
    auto n = Icmpv6Repr::from(v).emit(g_out);
    check(n && equal_bytes(ByteView(g_out).first(*n), v.message()));
}

void touch(const TcpView& v, ByteView in) {
    sink(v.src_port().v + v.dst_port().v + v.seq().v + v.ack().v + v.header_len() +
         v.reserved_bits() + v.flags() + v.is_fin() + v.is_syn() + v.is_rst() + v.is_psh() +
         v.is_ack() + v.is_urg() + v.is_ece() + v.is_cwr() + v.window() + v.checksum() +
         v.urgent_ptr());
    check(inside(v.segment(), in) && inside(v.header(), in) && inside(v.payload(), in) &&
          inside(v.options(), in));
    check(v.header_len() >= kTcpMinHeaderLen && v.header_len() <= kTcpMaxHeaderLen);

    TcpOptionIter it = v.option_iter();
    std::size_t count = 0;
    while (auto opt = it.next()) {
        check(inside(opt->data, v.options()));
        sink(opt->kind + opt->data.size());
        check(++count <= kTcpMaxOptionsLen);
    }
    sink(it.malformed());

    const TcpOptions o = v.parse_options();
    check(!o.window_scale || *o.window_scale <= kTcpMaxWindowScale);
    check(o.sack_block_count <= kTcpMaxSackBlocks);
    const TcpRepr r = TcpRepr::from(v);
    auto n = r.emit(g_out);
    if (!n) {
        check(n.error() == Errc::invalid_argument && r.options_len() > kTcpMaxOptionsLen);
        return;
    }
    // Fixed fields come back verbatim; options come back with the same meaning.
    const ByteView out = ByteView(g_out).first(*n);
    for (std::size_t i = 0; i < kTcpMinHeaderLen; ++i)
        if (i != 12) check(out[i] == v.header()[i]);
    check((out[12] & std::byte{0x0f}) == (v.header()[12] & std::byte{0x0f}));
    auto back = TcpView::parse(out);
    check(back.has_value());
    TcpOptions again = back->parse_options();
    check(!again.malformed && again == r.options);
}

void touch(const UdpView& v, ByteView in) {
    sink(v.src_port().v + v.dst_port().v + v.length() + v.checksum());
    check(inside(v.datagram(), in) && inside(v.header(), in) && inside(v.payload(), in));
    check(v.datagram().size() == v.length() && v.length() >= kUdpHeaderLen);
    auto n = UdpRepr::from(v).emit(g_out);
    check(n && equal_bytes(ByteView(g_out).first(*n), v.header()));
}

template <class View>
void direct(ByteView in) {
    if (auto v = View::parse(in)) touch(*v, in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ByteView in{reinterpret_cast<const std::byte*>(data), size};

    // Every view on the raw bytes, so each parser sees every input shape.
    direct<EthernetView>(in);
    direct<ArpView>(in);
    direct<Ipv4View>(in);
    direct<Ipv6View>(in);
    direct<Icmpv4View>(in);
    direct<Icmpv6View>(in);
    direct<TcpView>(in);
    direct<UdpView>(in);

    auto f = parse_frame(in);
    if (!f) return 0;
    touch(f->eth, in);
    check(!(f->arp && (f->ipv4 || f->ipv6)) && !(f->ipv4 && f->ipv6));
    const int l4 = int{f->tcp.has_value()} + int{f->udp.has_value()} + int{f->icmpv4.has_value()} +
                   int{f->icmpv6.has_value()};
    check(l4 <= 1 && f->has_l4() == (l4 == 1));
    if (f->arp) touch(*f->arp, in);
    if (f->ipv4) {
        touch(*f->ipv4, in);
        check(f->ip_fragment == f->ipv4->is_fragment());
        // RFC 791 §3.2: nothing past L3 for a later fragment.
        if (!f->ipv4->is_first_fragment()) check(l4 == 0);
        if (f->icmpv6) __builtin_trap();
    }
    if (f->ipv6) {
        touch(*f->ipv6, in);
        check(f->ip_fragment == f->ipv6->is_fragment());
        if (f->ipv6->fragment() && !f->ipv6->fragment()->is_first()) check(l4 == 0);
        if (f->icmpv4) __builtin_trap();
    }
    if (f->tcp) touch(*f->tcp, in);
    if (f->udp) touch(*f->udp, in);
    if (f->icmpv4) touch(*f->icmpv4, in);
    if (f->icmpv6) touch(*f->icmpv6, in);
    return 0;
}
