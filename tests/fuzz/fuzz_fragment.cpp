// libFuzzer target: nat::Reassembler under random fragment sequences, and fragment_ipv4() round
// trips through it.
//
// Input: one mode byte. Odd: a fragment_ipv4() round trip (spec, sizes, cuts, order and content
// seed from the input). Even: a configuration byte pair (slots, timeout), then operations:
//   - a fragment of one of four model datagrams (offset, length, MF, VLAN, IP options, time step),
//     its bytes a pattern of (datagram, generation, offset);
//   - a whole model datagram cut into fragments of one size, fed in an input-chosen order;
//   - a raw fragment: arbitrary header and payload bytes (source forced outside the model keys);
//   - expire(), or a clock step.
// Invariants (trap on violation):
//   - every reassembled frame parses (Ethernet, IPv4 with a good checksum, 20-byte header, not a
//     fragment), its length matches its headers, and for a model datagram its key fields are the
//     datagram's, its payload length equals the sum of the payloads of the fragments the
//     reassembler took (not counted as duplicates) since the datagram started, and every payload
//     byte is the pattern of the current generation at that offset (no stale or foreign byte);
//   - frag_in counts every process() call; in_progress() never exceeds the slots;
//   - fragment_ipv4() fails exactly when the spec says it must; every fragment parses, respects
//     the MTU and RFC 791's rules, and the reassembled datagram equals the input byte for byte;
//   - after each input every pool buffer is back (no leak), under ASan.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/nat/fragment.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;
using namespace slipway::nat;

PacketPool& pool() {
    // Small: 1365 fragments of the largest datagram at MTU 68; large: 35 fragments of it at the
    // largest MTU whose frames miss the small class (1903), the reassembly slots, and a
    // reassembled frame.
    static PacketPool p(PoolConfig{.small_buffers = 2048, .large_buffers = 48});
    return p;
}

class Reader {
  public:
    Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    [[nodiscard]] bool empty() const { return i_ >= n_; }
    std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }
    std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }

  private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

// xorshift32: content and orders from a seed out of the input, so a short input can describe a
// 64 KiB datagram.
struct Rng {
    std::uint32_t s;
    std::uint32_t next() {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        return s;
    }
};

const MacAddr kGuestMac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
const MacAddr kGatewayMac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};
constexpr Ipv4Addr kRemote = Ipv4Addr::from_octets(203, 0, 113, 9);
constexpr wire::VlanTag kVlan{EtherType::vlan, 0x0064};

constexpr std::size_t kKeys = 4;
constexpr std::array<FragmentKey, kKeys> kModelKeys{{
    {Ipv4Addr::from_octets(192, 168, 127, 2), kRemote, IpProto::udp, 7},
    {Ipv4Addr::from_octets(192, 168, 127, 3), kRemote, IpProto::udp, 7},
    {Ipv4Addr::from_octets(192, 168, 127, 2), kRemote, IpProto::udp, 8},
    {Ipv4Addr::from_octets(192, 168, 127, 2), kRemote, IpProto::icmp, 7},
}};

std::byte pattern(std::size_t key, std::uint32_t gen, std::size_t i) {
    const std::uint32_t g = (gen * 2654435761u) >> 24;
    return static_cast<std::byte>((i * 131u + (i >> 8) * 7u + g + key * 101u) & 0xffu);
}

// Checks what every reassembled frame must be; returns its IPv4 view.
wire::Ipv4View check_datagram(const PacketRef& out) {
    check(static_cast<bool>(out));
    const auto eth = wire::EthernetView::parse(out.data());
    check(eth.has_value() && eth->ethertype() == EtherType::ipv4);
    const auto ip = wire::Ipv4View::parse(eth->payload());
    check(ip.has_value());
    check(ip->header_checksum_ok() && ip->header_len() == wire::kIpv4MinHeaderLen);
    check(!ip->is_fragment() && !ip->dont_fragment());
    check(out.len() == eth->header_len() + ip->total_len());
    check(out.meta().vnet.flags == 0 && out.meta().vnet.gso_type == virtio::kGsoNone);
    return *ip;
}

// ---- reassembly against the model ------------------------------------------------------------

struct Model {
    std::uint32_t gen[kKeys] = {};
    std::size_t sum[kKeys] = {};  // payload bytes the reassembler took for the current datagram
    std::uint64_t start[kKeys] = {};
    bool started[kKeys] = {};
};

class Harness {
  public:
    Harness(std::uint32_t slots, std::uint32_t timeout_ms)
        : re_(pool(),
              ReassemblyConfig{.slots = slots, .timeout = std::chrono::milliseconds(timeout_ms)}),
          timeout_ms_(timeout_ms) {}

    void model_fragment(std::size_t k, std::size_t off, std::size_t len, bool mf,
                        std::optional<wire::VlanTag> vlan, std::uint8_t options_len,
                        std::uint16_t in_port) {
        // The model's own idea of when the reassembler forgets a datagram: time out (process()
        // drops an expired datagram before looking at the fragment), or gone already.
        if (m_.started[k] && (!re_.holds(kModelKeys[k]) || now_ - m_.start[k] >= timeout_ms_))
            reset(k);
        if (off == 0 && !mf) mf = true;  // only fragments go in
        const std::uint32_t gen = m_.gen[k];
        const FragmentKey& key = kModelKeys[k];

        const wire::EthernetRepr eth{kGatewayMac, kGuestMac, vlan, EtherType::ipv4};
        wire::Ipv4Repr ip;
        ip.src = key.src;
        ip.dst = key.dst;
        ip.protocol = key.proto;
        ip.ident = key.ident;
        ip.ttl = static_cast<std::uint8_t>(len);
        ip.more_fragments = mf;
        ip.frag_offset = static_cast<std::uint16_t>(off / 8);
        ip.payload_len = static_cast<std::uint16_t>(len);
        ip.options_len = options_len;
        ip.options.fill(std::byte{1});
        const std::size_t hl = eth.header_len() + ip.header_len();
        auto r = pool().try_alloc(hl + len);
        check(r.has_value());
        const PacketRef p = std::move(*r);
        check(eth.emit(p.data()).has_value());
        check(ip.emit(p.data().subspan(eth.header_len())).has_value());
        for (std::size_t i = 0; i < len; ++i)
            p.data()[hl + i] = pattern(k, gen, off + i);
        p.meta().in_port = in_port;
        p.meta().vnet.flags = 1;

        // Not started in the model: this fragment begins a datagram (no slot, or an expired one
        // that process() drops first).
        const bool fresh = !m_.started[k];
        const std::uint64_t dups = re_.counters().duplicates.get();
        auto out = feed(p);
        const bool took = re_.counters().duplicates.get() == dups;
        if (out) {
            // Completed: this fragment was taken (or was a duplicate that fixed the end).
            const std::size_t total = m_.sum[k] + (took ? len : 0);
            const wire::Ipv4View v = check_datagram(*out);
            check(v.src() == key.src && v.dst() == key.dst && v.protocol() == key.proto &&
                  v.ident() == key.ident);
            const ByteView pl = v.payload();
            check(pl.size() == total);
            for (std::size_t i = 0; i < pl.size(); ++i)
                check(pl[i] == pattern(k, gen, i));
            check(!re_.holds(key));
            reset(k);
            return;
        }
        if (!re_.holds(key)) {
            reset(k);  // dropped, with whatever it held
            return;
        }
        if (fresh) {
            m_.started[k] = true;
            m_.start[k] = now_;
        }
        if (took) m_.sum[k] += len;
    }

    void raw_fragment(Reader& in) {
        std::array<std::byte, 2048> buf{};
        const bool vlan = (in.u8() & 1) != 0;
        const wire::EthernetRepr eth{kGatewayMac, kGuestMac,
                                     vlan ? std::optional<wire::VlanTag>(kVlan) : std::nullopt,
                                     EtherType::ipv4};
        const std::size_t hl = eth.header_len();
        check(eth.emit(buf).has_value());
        const std::size_t n = std::min<std::size_t>(in.u16() % 1600, buf.size() - hl);
        for (std::size_t i = 0; i < n; ++i)
            buf[hl + i] = static_cast<std::byte>(in.u8());
        if (n >= 20) {
            // Outside the model's keys (192.168.127.x), so it cannot feed a model datagram.
            Ipv4Addr::from_octets(10, 0, 0, static_cast<std::uint8_t>(buf[hl + 15]))
                .store(buf.data() + hl + 12);
        }
        auto r = pool().try_alloc(hl + n);
        check(r.has_value());
        const PacketRef p = std::move(*r);
        std::memcpy(p.data().data(), buf.data(), hl + n);
        const auto e = wire::EthernetView::parse(p.data());
        if (!e) return;
        const auto ip = wire::Ipv4View::parse(e->payload());
        if (!ip) return;
        if (auto out = feed_ip(p, *ip)) {
            const wire::Ipv4View v = check_datagram(*out);
            check(v.src() == ip->src() && v.dst() == ip->dst() && v.ident() == ip->ident());
        }
    }

    void expire() { re_.expire(now_); }
    void advance(std::uint64_t ms) { now_ += ms; }
    void after_step() {
        check(re_.in_progress() <= re_.slots());
        check(re_.counters().fragments.get() == calls_);
        for (std::size_t k = 0; k < kKeys; ++k)
            if (m_.started[k] && !re_.holds(kModelKeys[k])) reset(k);
    }

  private:
    std::optional<PacketRef> feed(const PacketRef& p) {
        const auto e = wire::EthernetView::parse(p.data());
        check(e.has_value());
        const auto ip = wire::Ipv4View::parse(e->payload());
        check(ip.has_value());
        return feed_ip(p, *ip);
    }
    std::optional<PacketRef> feed_ip(const PacketRef& p, const wire::Ipv4View& ip) {
        ++calls_;
        return re_.process(p, ip, now_);
    }
    void reset(std::size_t k) {
        ++m_.gen[k];
        m_.sum[k] = 0;
        m_.started[k] = false;
    }

    Reassembler re_;
    Model m_;
    std::uint64_t now_ = 1000;
    std::uint64_t calls_ = 0;
    const std::uint64_t timeout_ms_;
};

void run_reassembly(Reader& in) {
    const std::uint32_t slots = 1u + in.u8() % 6u;
    const std::uint32_t timeout_ms = 1u + in.u16() % 3000u;
    Harness h(slots, timeout_ms);
    for (int step = 0; step < 2000 && !in.empty(); ++step) {
        const std::uint8_t op = in.u8();
        switch (op % 8) {
            case 0:
            case 1:
            case 2:
            case 3: {
                const std::size_t k = in.u8() % kKeys;
                const std::uint8_t shape = in.u8();
                // Mostly small offsets that meet; sometimes anywhere (oversize, far apart).
                const std::size_t off =
                    (shape & 0x80) != 0 ? std::size_t{in.u16() & 0x1fffu} * 8 : (in.u8() % 64u) * 8;
                std::size_t len = in.u16() % 1400u;
                if ((shape & 0x01) != 0) len &= ~std::size_t{7};  // a valid non-last length
                const bool mf = (shape & 0x02) != 0;
                const auto vlan =
                    (shape & 0x04) != 0 ? std::optional<wire::VlanTag>(kVlan) : std::nullopt;
                const auto options = static_cast<std::uint8_t>((shape & 0x08) != 0 ? 8 : 0);
                h.advance(shape & 0x30);
                h.model_fragment(k, off, len, mf, vlan, options, shape);
                break;
            }
            case 4:
            case 5: {
                // A whole datagram in equal fragments, in an order from the input.
                const std::size_t k = in.u8() % kKeys;
                const std::size_t total = 9 + in.u16() % 6000u;
                const std::size_t per = 8 * (1 + std::size_t{in.u8()} % 128u);
                Rng rng{in.u32() | 1u};
                std::array<std::size_t, 800> order{};
                const std::size_t n = (total + per - 1) / per;
                for (std::size_t i = 0; i < n; ++i)
                    order[i] = i;
                for (std::size_t i = n; i > 1; --i)
                    std::swap(order[i - 1], order[rng.next() % i]);
                const auto vlan =
                    (op & 0x10) != 0 ? std::optional<wire::VlanTag>(kVlan) : std::nullopt;
                for (std::size_t j = 0; j < n; ++j) {
                    const std::size_t off = order[j] * per;
                    const std::size_t len = std::min(per, total - off);
                    h.model_fragment(k, off, len, off + len < total, vlan, 0,
                                     static_cast<std::uint16_t>(j));
                    h.after_step();
                }
                break;
            }
            case 6:
                h.raw_fragment(in);
                break;
            default:
                if ((op & 0x10) != 0)
                    h.expire();
                else
                    h.advance(in.u16());
                break;
        }
        h.after_step();
    }
}

// ---- fragment_ipv4 round trip ----------------------------------------------------------------

void run_round_trip(Reader& in) {
    static std::array<std::byte, 65536 + 16> data;
    static std::vector<PacketRef> frames(2048);
    const std::uint8_t flags = in.u8();
    FragmentSpec spec;
    spec.dst_mac = kGuestMac;
    spec.src_mac = kGatewayMac;
    if ((flags & 1) != 0) spec.vlan = kVlan;
    spec.src = kRemote;
    spec.dst = Ipv4Addr::from_octets(192, 168, 127, 2);
    spec.proto = (flags & 2) != 0 ? IpProto::icmp : IpProto::udp;
    spec.ident = in.u16();
    spec.ttl = in.u8();
    spec.tos = in.u8();
    constexpr std::uint32_t kMtus[] = {68, 576, 1280, 1500, 9000, 65535};
    spec.mtu = (flags & 4) != 0 ? std::uint32_t{in.u16()} : kMtus[in.u8() % 6];
    const std::size_t total = (flags & 8) != 0 ? in.u16() % 65517u : in.u16() % 4000u;
    Rng rng{in.u32() | 1u};
    for (std::size_t i = 0; i < total; ++i)
        data[i] = static_cast<std::byte>(rng.next() >> 24);
    // Up to four pieces, cut where the input says (empty pieces allowed).
    std::array<std::size_t, 5> cuts{0, 0, 0, 0, total};
    for (std::size_t i = 1; i < 4; ++i)
        cuts[i] = total == 0 ? 0 : in.u16() % (total + 1);
    std::sort(cuts.begin(), cuts.end());
    std::array<ByteView, 4> pieces;
    for (std::size_t i = 0; i < 4; ++i)
        pieces[i] = ByteView(data).subspan(cuts[i], cuts[i + 1] - cuts[i]);
    const std::size_t room = 1 + in.u16() % frames.size();
    const std::span<PacketRef> out(frames.data(), room);

    const auto r = fragment_ipv4(pool(), spec, pieces, out);
    const std::size_t mtu = std::min<std::size_t>(spec.mtu, 65535);
    const bool whole = 20 + total <= mtu;
    const std::size_t per = spec.mtu < 68 ? 0 : (mtu - 20) / 8 * 8;
    const std::size_t need = whole ? 1 : (per == 0 ? 0 : (total + per - 1) / per);
    if (spec.mtu < 68 || total > kMaxIpv4Payload || need > room) {
        check(!r.has_value() && r.error() == Errc::too_large);
        for (const PacketRef& f : out)
            check(!f);
        return;
    }
    check(r.has_value() && *r == need);
    const std::size_t n = *r;

    const FragmentKey key{spec.src, spec.dst, spec.proto, spec.ident};
    std::size_t next = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto e = wire::EthernetView::parse(frames[i].data());
        check(e.has_value() && e->vlan() == spec.vlan);
        const auto ip = wire::Ipv4View::parse(e->payload());
        check(ip.has_value() && ip->header_checksum_ok() && ip->total_len() <= mtu);
        check(frames[i].len() == e->header_len() + ip->total_len());
        check(ip->more_fragments() == (i + 1 < n) && !ip->dont_fragment());
        check(ip->frag_offset_bytes() == next && ip->ident() == spec.ident);
        check(ip->ttl() == spec.ttl && ip->tos() == spec.tos && ip->protocol() == spec.proto);
        check(i + 1 == n || ip->payload().size() % 8 == 0);
        check(equal_bytes(ip->payload(), ByteView(data).subspan(next, ip->payload().size())));
        next += ip->payload().size();
    }
    check(next == total);
    if (n > 1) {
        Reassembler re(pool(), ReassemblyConfig{.slots = 1});
        std::array<std::size_t, 1400> order{};
        for (std::size_t i = 0; i < n; ++i)
            order[i] = i;
        for (std::size_t i = n; i > 1; --i)
            std::swap(order[i - 1], order[rng.next() % i]);
        std::optional<PacketRef> done;
        for (std::size_t j = 0; j < n; ++j) {
            const PacketRef& f = frames[order[j]];
            const auto e = wire::EthernetView::parse(f.data());
            const auto ip = wire::Ipv4View::parse(e->payload());
            auto o = re.process(f, *ip, j);
            check(o.has_value() == (j + 1 == n));
            if (o) done = std::move(o);
        }
        check(done.has_value());
        const wire::Ipv4View v = check_datagram(*done);
        check(v.src() == key.src && v.dst() == key.dst && v.protocol() == key.proto &&
              v.ident() == key.ident && v.ttl() == spec.ttl && v.tos() == spec.tos);
        check(equal_bytes(v.payload(), ByteView(data).first(total)));
        check(re.counters().reassembled.get() == 1 && re.in_progress() == 0);
    }
    for (std::size_t i = 0; i < n; ++i)
        frames[i].reset();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Reader in(data, size);
    if ((in.u8() & 1) != 0)
        run_round_trip(in);
    else
        run_reassembly(in);
    check(all_returned(pool()));
    return 0;
}
