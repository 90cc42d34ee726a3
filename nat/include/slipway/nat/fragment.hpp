// IPv4 fragment reassembly (guest -> engine) and fragmentation (engine -> guest) for the NAT
// engine.
//
// Theory of operation
// -------------------
// Why reassembly exists here. The engine hands a guest's UDP datagrams and ICMP echo requests to
// host sockets, and a socket takes whole datagrams only. A guest that sends a datagram larger than
// its link MTU (a 4 KiB DNS-over-UDP answer, `ping -s 3000`, NFS over UDP, a QUIC probe without
// DF) lets its IP layer cut it into fragments (RFC 791 §2.3, §3.2); only the first carries the UDP
// or ICMP header, so nothing can be forwarded until every fragment is in. The Reassembler puts
// them back together, then the engine treats the result like any unfragmented frame. TCP never
// needs it: guests set DF on TCP and segment to the MSS.
//
// Why fragmentation exists here. The opposite direction: a host socket returns a datagram (a UDP
// reply, an echo reply) larger than what fits in one frame of the guest's MTU. A real router would
// fragment it (the host kernel already reassembled whatever the peer sent), so fragment_ipv4()
// cuts it into frames of at most the guest MTU that the guest's IP layer reassembles.
//
// Reassembly, datagram by datagram. A datagram is identified by (source, destination, protocol,
// identification) — RFC 791 §3.2. Each datagram in progress owns a slot: one large pool buffer
// (68 KiB, big enough for the largest datagram) into which every fragment's payload is copied at
// its offset as it arrives, and a bitmap of the 8-byte blocks received (8192 bits: offsets are in
// 8-byte units, RFC 791 §3.1) — RFC 815's hole list in its simplest fixed-size form. A fragment
// that is not the last carries a multiple of 8 bytes (RFC 791 §3.2), so block coverage is exact.
// The datagram is complete when its last fragment (MF = 0) fixed the total length and every byte
// up to it is held; the frame then gets the Ethernet header of the first fragment and a fresh
// 20-byte IPv4 header, and leaves the slot without a copy (the slot's buffer becomes the frame).
//
// Overlaps (RFC 5722 for IPv6; RFC 791 would let a later fragment overwrite earlier bytes, which
// is how Teardrop-style and IDS-evasion tricks work): a fragment that brings new bytes but also
// covers any byte already held drops the whole datagram, counted `overlaps`, as Linux has done
// since the FragmentSmack fixes (CVE-2018-5391). A fragment whose every byte is already held — an
// exact duplicate, or a piece of a held range — is ignored and counted `duplicates`, as Linux's
// IPFRAG_DUP does (and RFC 8200 §4.5 allows for duplicates); since held bytes never change,
// ignoring it cannot alter the datagram.
//
// Resources are bounded up front: `slots` datagrams at once (each pins one large pool buffer, and
// the pool has few of those), each at most `timeout` old (RFC 1122 §3.3.2 asks for a timeout;
// 30 s is Linux's ipfrag_time). A new datagram when every slot is taken evicts the oldest one
// (counted `evicted`), so a flood of never-completed datagrams costs the guest at most `slots`
// buffers and cannot lock newer datagrams out. RFC 1122 §3.3.2 would also send the source an ICMP
// Time Exceeded (code 1, RFC 792) when a datagram whose first fragment arrived times out; none is
// sent (yet): the guest's UDP or ping learns of the loss from its own timeout, as it would had
// the datagram been lost on the wire.
//
// Nothing here allocates after construction (besides pool buffers), throws or blocks; a dropped
// fragment or datagram is a counter. A Reassembler belongs to one engine thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "slipway/core/bytes.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"

namespace slipway::nat {

// Largest IPv4 payload: a 65,535-byte packet minus the 20-byte header the reassembled datagram
// (or each fragment built here) carries.
inline constexpr std::size_t kMaxIpv4Payload = wire::kIpv4MaxPacketLen - wire::kIpv4MinHeaderLen;
static_assert(kMaxIpv4Payload == 65515);
// RFC 791 §3.1: every host must be able to forward a 68-byte datagram without fragmenting it.
inline constexpr std::uint32_t kMinIpv4Mtu = 68;

// ---- reassembly ------------------------------------------------------------------------------

// The datagram a fragment belongs to (RFC 791 §3.2).
struct FragmentKey {
    Ipv4Addr src;
    Ipv4Addr dst;
    IpProto proto = IpProto::udp;
    std::uint16_t ident = 0;
    friend constexpr bool operator==(const FragmentKey&, const FragmentKey&) = default;
};

struct ReassemblyConfig {
    // Datagrams in reassembly at once; each holds one large pool buffer. 0 is taken as 1.
    std::uint32_t slots = 16;
    // Per datagram, from its first fragment to arrive (Linux's ipfrag_time; RFC 1122 §3.3.2).
    std::chrono::milliseconds timeout{30000};
};

struct ReassemblyCounters {
    Counter fragments;    // every fragment handed to process()
    Counter reassembled;  // datagrams completed
    Counter timeouts;     // datagrams dropped because their time ran out
    Counter overlaps;     // datagrams dropped because a fragment overlapped held bytes (RFC 5722)
    Counter duplicates;   // fragments whose every byte was already held: bytes ignored
    Counter evicted;      // datagrams dropped to make room for a new one (slots full)
    Counter too_big;      // datagrams dropped because they would exceed 65,535 bytes of IP
    Counter no_buffer;    // fragments dropped because the pool had no large buffer for a new slot
    Counter malformed;    // bad fragment length, conflicting last fragment, frame not as promised

    template <class F>
    void for_each(F&& f) const {
        f("frag_in", fragments);
        f("frag_reassembled", reassembled);
        f("frag_timeouts", timeouts);
        f("frag_overlaps", overlaps);
        f("frag_duplicates", duplicates);
        f("frag_evicted", evicted);
        f("frag_too_big", too_big);
        f("frag_no_buffer", no_buffer);
        f("frag_malformed", malformed);
    }
};

class Reassembler {
  public:
    // Allocates its slot table now (cfg.slots, at least 1); pool buffers are taken per datagram.
    Reassembler(PacketPool& pool, const ReassemblyConfig& cfg);
    ~Reassembler();
    Reassembler(const Reassembler&) = delete;
    Reassembler& operator=(const Reassembler&) = delete;

    // `frame`: a whole Ethernet frame (optionally 802.1Q/802.1ad tagged) whose IPv4 packet `ip` (a
    // view into frame) is a fragment (ip.is_fragment()), header checksum already validated by the
    // caller. Returns the reassembled datagram as a new Ethernet frame when this fragment completes
    // one: the Ethernet header (with VLAN tag, if any) of the fragment at offset 0, then a 20-byte
    // IPv4 header (no options; src/dst/protocol/ttl/tos/ident of the first fragment, MF=0, offset
    // 0, DF=0, total length and header checksum recomputed), then the whole payload; its meta has
    // in_port of the offset-0 fragment's frame and zeroed vnet fields. Otherwise std::nullopt (the
    // fragment was kept, or dropped and counted). `frame` itself is never kept or modified.
    [[nodiscard]] std::optional<PacketRef> process(const PacketRef& frame, const wire::Ipv4View& ip,
                                                   std::uint64_t now_ms) noexcept;
    // Drops datagrams whose first fragment arrived `timeout` or more before now_ms.
    void expire(std::uint64_t now_ms) noexcept;

    [[nodiscard]] std::uint32_t in_progress() const noexcept;
    // Whether a datagram with this key is in reassembly (tests, fuzzing, diagnostics).
    [[nodiscard]] bool holds(const FragmentKey& key) const noexcept;
    [[nodiscard]] std::uint32_t slots() const noexcept;
    [[nodiscard]] const ReassemblyCounters& counters() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---- fragmentation ---------------------------------------------------------------------------

struct FragmentSpec {
    MacAddr dst_mac;
    MacAddr src_mac;
    std::optional<wire::VlanTag> vlan;
    Ipv4Addr src;
    Ipv4Addr dst;
    IpProto proto = IpProto::udp;
    std::uint16_t ident = 0;
    std::uint8_t ttl = 64;
    std::uint8_t tos = 0;
    std::uint32_t mtu = 1500;  // IP MTU (header included), at least kMinIpv4Mtu
};

// Splits one IPv4 datagram whose L4 bytes are the concatenation of `pieces` (e.g. a UDP header then
// the payload in two buffers) into Ethernet frames of at most spec.mtu IP bytes each: every
// fragment's payload except the last a multiple of 8 (RFC 791 §3.2), MF on all but the last, DF
// off, same ident, 20-byte headers. When everything fits in one packet, one unfragmented frame (MF
// = 0, offset 0). Frames go into out[0..n) in order; returns n. Errc::too_large when the datagram
// exceeds 65535 - 20 bytes of payload, needs more than out.size() frames, or mtu < 68 (RFC 791
// §3.1 minimum); nothing in `out` is touched then. Errc::pool_exhausted when a buffer is missing:
// the entries already filled are reset, so no frame is returned. Allocates only pool buffers
// (small or large, whichever each frame needs); meta vnet fields zeroed, in_port 0.
[[nodiscard]] Result<std::size_t> fragment_ipv4(PacketPool& pool, const FragmentSpec& spec,
                                                std::span<const ByteView> pieces,
                                                std::span<PacketRef> out) noexcept;

}  // namespace slipway::nat
