// One-call parse of an Ethernet frame down to its transport header (switch, engine, fuzzer).
#pragma once

#include <cstddef>
#include <optional>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/wire/arp.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/icmpv6.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/ipv6.hpp"
#include "slipway/core/wire/tcp.hpp"
#include "slipway/core/wire/udp.hpp"

namespace slipway::wire {

// Layers that parse_frame() recognised. At most one of arp/ipv4/ipv6 and at most one of
// tcp/udp/icmpv4/icmpv6 is set. An EtherType or IP protocol slipway does not handle is not an
// error: the frame parses with the deeper members empty.
struct ParsedFrame {
    explicit ParsedFrame(EthernetView e) noexcept : eth(e) {}

    EthernetView eth;
    std::optional<ArpView> arp;
    std::optional<Ipv4View> ipv4;
    std::optional<Ipv6View> ipv6;
    std::optional<TcpView> tcp;
    std::optional<UdpView> udp;
    std::optional<Icmpv4View> icmpv4;
    std::optional<Icmpv6View> icmpv6;

    // The IP packet is a fragment. A non-first fragment stops at L3. A first fragment gets its
    // transport header parsed when it can be, but a failure there is not an error: the UDP length
    // or the ICMP message legitimately runs into the later fragments.
    bool ip_fragment = false;

    [[nodiscard]] bool has_l4() const noexcept { return tcp || udp || icmpv4 || icmpv6; }
};

// Errors come from a recognised layer that failed to parse (truncated, bad length, ...).
[[nodiscard]] Result<ParsedFrame> parse_frame(ByteView frame) noexcept;

}  // namespace slipway::wire
