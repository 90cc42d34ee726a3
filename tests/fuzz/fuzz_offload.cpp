// libFuzzer target: complete_checksum, segment_gso and the Switch on arbitrary frames and vnet
// fields.
//
// Input: flags, gso_type, gso_size (le16), csum_start (le16), csum_offset (le16), a control byte,
// then the Ethernet frame. Invariants (trap on violation): no crash or sanitizer report; every
// segment is an ordinary frame no larger than the original, no larger than headers + gso_size,
// that parses with valid IP and transport checksums; a failed segmentation leaves `out` empty;
// the switch never hands a port what its caps refuse; every pool buffer is back at the end.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/offload.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/switch.hpp"
#include "slipway/core/wire/frame.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;

constexpr std::size_t kPrefix = 9;
// Largest header stack segment_gso replicates: Ethernet + VLAN, IPv4 with options, TCP with
// options.
constexpr std::size_t kMaxHdrs = 18 + 60 + 60;

PacketPool& pool() {
    static PacketPool p(PoolConfig{.small_buffers = 512, .large_buffers = 8});
    return p;
}

bool l4_ok(const wire::ParsedFrame& pf) {
    ByteView l4;
    IpProto proto;
    if (pf.tcp) {
        l4 = pf.tcp->segment();
        proto = IpProto::tcp;
    } else if (pf.udp) {
        l4 = pf.udp->datagram();
        proto = IpProto::udp;
    } else {
        return false;
    }
    std::uint32_t ps;
    if (pf.ipv4)
        ps = pseudo_header_sum_v4(pf.ipv4->src(), pf.ipv4->dst(), proto,
                                  static_cast<std::uint16_t>(l4.size()));
    else if (pf.ipv6)
        ps = pseudo_header_sum_v6(pf.ipv6->src(), pf.ipv6->dst(), proto,
                                  static_cast<std::uint32_t>(l4.size()));
    else
        return false;
    return csum_fold(csum_partial(l4, ps)) == 0xffff;
}

// A port that checks what the switch hands it against its caps, then drops it.
class SinkPort : public SwitchPort {
  public:
    SinkPort(const char* name, PortKind kind, PortCaps caps) : SwitchPort(name, kind, caps, 64) {}
    void on_frames_from_switch() noexcept override {
        PacketRef r;
        while (to_port().try_pop(r)) {
            const virtio::NetHdr& v = r.meta().vnet;
            if (!caps().gso) check(!v.is_gso());
            if (!caps().partial_csum) check(!v.needs_csum());
            if (!v.is_gso()) check(r.len() <= caps().max_frame);
            r.reset();
        }
    }
};

struct Net {
    Switch sw{pool(), SwitchConfig{.mac_table_size = 64}};
    SinkPort in{"in", PortKind::guest, {.gso = true, .partial_csum = true, .max_frame = 65535}};
    SinkPort full{
        "full", PortKind::gateway, {.gso = true, .partial_csum = true, .max_frame = 65535}};
    SinkPort plain{"plain", PortKind::guest, {}};
    SinkPort jumbo{
        "jumbo", PortKind::guest, {.gso = false, .partial_csum = true, .max_frame = 9014}};
    Net() {
        sw.add_port(in);
        sw.add_port(full);
        sw.add_port(plain);
        sw.add_port(jumbo);
    }
};

void fuzz_checksum(ByteView frame, const virtio::NetHdr& vnet) {
    auto r = pool().try_alloc(frame.size());
    if (!r) return;
    if (!frame.empty()) std::memcpy(r->data().data(), frame.data(), frame.size());
    r->meta().vnet = vnet;
    const bool in_range = std::size_t{vnet.csum_start} + vnet.csum_offset + 2 <= frame.size();
    auto res = complete_checksum(*r);
    if (!vnet.needs_csum()) {
        check(res.has_value());
        return;
    }
    check(res.has_value() == in_range);
    if (!res) return;
    check(!r->meta().vnet.needs_csum());
    // With the field at an even offset from csum_start, the completed range sums, together with
    // the seed the sender left in the field, to ones'-complement zero (virtio 1.2 §5.1.6.2).
    if (vnet.csum_offset % 2 == 0) {
        const std::uint16_t seed = load_be16(frame.data() + vnet.csum_start + vnet.csum_offset);
        const std::uint32_t s = csum_partial(ByteView{r->data()}.subspan(vnet.csum_start));
        check(csum_fold(csum_add(s, seed)) == 0xffff);
    }
}

void fuzz_segment(ByteView frame, const virtio::NetHdr& vnet) {
    static std::vector<PacketRef> out(1024);
    auto r = pool().try_alloc(frame.size());
    if (!r) return;
    if (!frame.empty()) std::memcpy(r->data().data(), frame.data(), frame.size());
    r->meta().vnet = vnet;
    r->meta().in_port = 3;
    auto n = segment_gso(*r, pool(), out);
    if (!n) {
        for (const PacketRef& s : out)
            check(!s);
        return;
    }
    check(*n >= 1 && *n <= out.size());
    for (std::size_t i = 0; i < *n; ++i) {
        PacketRef& s = out[i];
        check(static_cast<bool>(s));
        check(s.len() <= frame.size());
        check(s.len() <= kMaxHdrs + vnet.gso_size);
        check(!s.meta().vnet.is_gso() && !s.meta().vnet.needs_csum());
        check(s.meta().in_port == 3);
        auto pf = wire::parse_frame(ByteView{s.data()});
        check(pf.has_value());
        if (pf->ipv4) check(pf->ipv4->header_checksum_ok());
        check(l4_ok(*pf));
        s.reset();
    }
    for (std::size_t i = *n; i < out.size(); ++i)
        check(!out[i]);
}

void fuzz_switch(ByteView frame, const virtio::NetHdr& vnet, std::uint8_t ctl) {
    static Net net;
    auto r = pool().try_alloc(frame.size());
    if (!r) return;
    if (!frame.empty()) std::memcpy(r->data().data(), frame.data(), frame.size());
    r->meta().vnet = vnet;
    if ((ctl & 1) != 0) net.sw.reset_port(net.in);  // else keep the lock and the table
    if (!net.in.to_switch().try_push(std::move(*r))) return;
    net.in.notify_switch();
    check(net.in.to_switch().empty_approx());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < kPrefix) return 0;
    static constexpr std::uint8_t kTypes[] = {
        virtio::kGsoNone,  virtio::kGsoTcpV4, virtio::kGsoTcpV6,
        virtio::kGsoUdpL4, virtio::kGsoUdp,   virtio::kGsoTcpV4 | virtio::kGsoEcn};
    virtio::NetHdr vnet;
    vnet.flags = static_cast<std::uint8_t>(data[0] & virtio::kNetHdrKnownFlags);
    vnet.gso_type = kTypes[data[1] % sizeof kTypes];
    vnet.gso_size = static_cast<std::uint16_t>(data[2] | (data[3] << 8));
    vnet.csum_start = static_cast<std::uint16_t>(data[4] | (data[5] << 8));
    vnet.csum_offset = static_cast<std::uint16_t>(data[6] | (data[7] << 8));
    const std::uint8_t ctl = data[8];
    const std::size_t len = std::min(size - kPrefix, kMaxFrameLen);
    const ByteView frame{reinterpret_cast<const std::byte*>(data + kPrefix), len};

    fuzz_checksum(frame, vnet);
    fuzz_segment(frame, vnet);
    fuzz_switch(frame, vnet, ctl);
    check(all_returned(pool()));
    return 0;
}
