// libFuzzer target: the userspace gateway port on arbitrary frames.
//
// Input: a control byte, then the Ethernet frame. Control bit 0 readdresses the frame to the
// gateway's MAC and bit 1 its IPv4 destination to the gateway's address (at the offsets of an
// untagged frame), so the fuzzer reaches the ICMP path without guessing both. Invariants (trap on
// violation): no crash or sanitizer report; every frame lands in exactly one counter; every reply
// parses and comes from the gateway's MAC; an ARP reply goes to the request's sender hardware
// address and answers one of the gateway's addresses; an echo reply has valid IPv4 and ICMP
// checksums, the gateway as source and the request's source as destination; every pool buffer is
// back at the end.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/backends/userspace_gateway.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/wire/frame.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;

constexpr Ipv4Addr kGateway = Ipv4Addr::from_octets(10, 0, 2, 2);
constexpr Ipv4Addr kDns = Ipv4Addr::from_octets(10, 0, 2, 3);
constexpr Ipv4Addr kAlias = Ipv4Addr::from_octets(10, 0, 2, 254);
constexpr MacAddr kMac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};

PacketPool& pool() {
    static PacketPool p(PoolConfig{.small_buffers = 64, .large_buffers = 4});
    return p;
}

std::uint64_t total(const backends::GatewayCounters& c) {
    std::uint64_t t = 0;
    c.for_each([&](const char*, const Counter& v) { t += v.get(); });
    return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 70000) return 0;
    static backends::UserspaceGateway gw(
        pool(), backends::GatewayConfig{
                    .gateway = kGateway, .dns = kDns, .host_alias = kAlias, .mac = kMac});
    const std::uint8_t control = data[0];
    std::vector<std::byte> frame(size - 1);
    if (!frame.empty()) std::memcpy(frame.data(), data + 1, frame.size());
    if ((control & 1) != 0 && frame.size() >= 6) kMac.store(frame.data());
    if ((control & 2) != 0 && frame.size() >= 34) kGateway.store(frame.data() + 30);

    auto in = pool().try_alloc(frame.size());
    if (!in) return 0;  // larger than the pool's largest class: the switch never delivers that
    if (!frame.empty()) std::memcpy(in->data().data(), frame.data(), frame.size());
    const auto request = wire::parse_frame(ByteView{frame});

    const std::uint64_t before = total(gw.gateway_counters());
    check(gw.to_port().try_push(std::move(*in)));
    gw.on_frames_from_switch();
    check(total(gw.gateway_counters()) == before + 1);

    PacketRef reply;
    std::size_t replies = 0;
    while (gw.to_switch().try_pop(reply)) {
        ++replies;
        check(request.has_value());
        const auto r = wire::parse_frame(reply.data());
        check(r.has_value());
        check(r->eth.src() == kMac);
        if (r->arp) {
            // RFC 826: the reply goes to the sender hardware address, as Linux sends it, which
            // need not be the frame's Ethernet source.
            check(request->arp.has_value());
            check(r->eth.dst() == request->arp->sha() && r->arp->tha() == request->arp->sha());
            const Ipv4Addr spa = r->arp->spa();
            check(spa == kGateway || spa == kDns || spa == kAlias);
            check(r->arp->sha() == kMac);
        } else {
            check(r->ipv4 && r->icmpv4);
            check(r->eth.dst() == request->eth.src());
            check(r->ipv4->header_checksum_ok() && r->icmpv4->checksum_ok());
            check(r->ipv4->src() == kGateway);
            check(request->ipv4 && r->ipv4->dst() == request->ipv4->src());
            check(r->icmpv4->type() == wire::Icmpv4Type::echo_reply);
        }
        reply.reset();
    }
    check(replies <= 1);
    check(all_returned(pool()));
    return 0;
}
