// IPv4 fragment reassembly and fragmentation (theory of operation in fragment.hpp).
#include "slipway/nat/fragment.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace slipway::nat {

namespace {

// 8-byte blocks of a 65,536-byte datagram: the fragment offset field's whole range (RFC 791 §3.1).
constexpr std::size_t kBlocks = 8192;
constexpr std::size_t kWords = kBlocks / 64;
static_assert((wire::kIpv4MaxPacketLen + 1) / 8 == kBlocks);

// Where the pieces sit in a slot's buffer (offsets into room()): the Ethernet header ends at kIpAt
// (an untagged one starts 4 bytes later than a tagged one), the IPv4 header written at completion
// follows, then the payload at a fixed place whatever the first fragment's headers were.
constexpr std::size_t kIpAt = wire::kEthernetMaxHeaderLen;
constexpr std::size_t kPayloadAt = kIpAt + wire::kIpv4MinHeaderLen;

using Bitmap = std::array<std::uint64_t, kWords>;

// Mask of `take` bits (1..64) starting at bit `bit` of a word.
std::uint64_t word_mask(std::size_t bit, std::size_t take) noexcept {
    const std::uint64_t low = take == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << take) - 1;
    return low << bit;
}

// Blocks set in [b0, b1).
std::size_t count_blocks(const Bitmap& m, std::size_t b0, std::size_t b1) noexcept {
    std::size_t n = 0;
    while (b0 < b1) {
        const std::size_t bit = b0 % 64;
        const std::size_t take = std::min<std::size_t>(64 - bit, b1 - b0);
        n += static_cast<std::size_t>(std::popcount(m[b0 / 64] & word_mask(bit, take)));
        b0 += take;
    }
    return n;
}

void set_blocks(Bitmap& m, std::size_t b0, std::size_t b1) noexcept {
    while (b0 < b1) {
        const std::size_t bit = b0 % 64;
        const std::size_t take = std::min<std::size_t>(64 - bit, b1 - b0);
        m[b0 / 64] |= word_mask(bit, take);
        b0 += take;
    }
}

// The slot table is scanned for every fragment, so the keys live apart from the bulky state.
struct SlotKey {
    FragmentKey key;
    std::uint64_t first_ms = 0;  // arrival of the datagram's first fragment (any offset)
    bool used = false;
};

struct SlotState {
    PacketRef buf;              // large pool buffer: headers and payload at fixed offsets
    std::uint32_t held = 0;     // payload bytes held; no byte is held twice
    std::uint32_t max_end = 0;  // furthest payload byte any fragment reached; the total once
    bool last_seen = false;     //   the last fragment (MF = 0) fixed it
    std::uint8_t eth_len = 0;   // 14 or 18; this and the next three are set by offset 0
    std::uint8_t ttl = 0;       // of the first fragment
    std::uint8_t tos = 0;       // of the first fragment
    std::uint16_t in_port = 0;  // of the first fragment's frame
    Bitmap blocks{};            // 8-byte blocks held
};

constexpr std::uint32_t kNoSlot = 0xffffffffu;

}  // namespace

struct Reassembler::Impl {
    Impl(PacketPool& p, const ReassemblyConfig& cfg)
        : pool(p),
          timeout_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(cfg.timeout.count(), 0))),
          n(std::max<std::uint32_t>(cfg.slots, 1)),
          keys(std::make_unique<SlotKey[]>(n)),
          state(std::make_unique<SlotState[]>(n)) {
        // A pool with an unusually large headroom leaves less room than a full datagram needs:
        // datagrams that would not fit count as too big rather than overrun the buffer.
        const std::size_t room =
            kLargeBufferSize - std::min<std::size_t>(p.headroom(), kLargeBufferSize);
        max_payload = room > kPayloadAt ? std::min(kMaxIpv4Payload, room - kPayloadAt) : 0;
    }

    [[nodiscard]] std::uint32_t find(const FragmentKey& k) const noexcept {
        for (std::uint32_t i = 0; i < n; ++i)
            if (keys[i].used && keys[i].key == k) return i;
        return kNoSlot;
    }
    [[nodiscard]] bool expired(std::uint32_t i, std::uint64_t now_ms) const noexcept {
        return now_ms >= keys[i].first_ms && now_ms - keys[i].first_ms >= timeout_ms;
    }
    void drop(std::uint32_t i) noexcept {
        state[i].buf.reset();
        keys[i].used = false;
        --active;
    }
    // Drops the datagram in slot i (if any) and counts `c`: the verdict for a fragment that
    // spoils its datagram.
    std::optional<PacketRef> fail_datagram(std::uint32_t i, Counter& c) noexcept {
        if (i != kNoSlot) drop(i);
        c.inc();
        return std::nullopt;
    }
    // A slot for a new datagram, with its buffer: a free slot and a fresh buffer, or the oldest
    // datagram's slot and buffer when every slot is taken. kNoSlot when the pool has no buffer.
    std::uint32_t claim(const FragmentKey& k, std::uint64_t now_ms) noexcept;
    std::optional<PacketRef> complete(std::uint32_t i) noexcept;

    PacketPool& pool;
    const std::uint64_t timeout_ms;
    const std::uint32_t n;
    std::size_t max_payload = kMaxIpv4Payload;
    std::uint32_t active = 0;
    std::unique_ptr<SlotKey[]> keys;
    std::unique_ptr<SlotState[]> state;
    ReassemblyCounters counters;
};

std::uint32_t Reassembler::Impl::claim(const FragmentKey& k, std::uint64_t now_ms) noexcept {
    std::uint32_t i = kNoSlot;
    PacketRef buf;
    if (active < n) {
        for (std::uint32_t j = 0; j < n; ++j) {
            if (!keys[j].used) {
                i = j;
                break;
            }
        }
        auto r = pool.try_alloc(SizeClass::large);
        if (!r) {
            counters.no_buffer.inc();
            return kNoSlot;
        }
        buf = std::move(*r);
        ++active;
    } else {
        // Every slot taken: the oldest datagram goes (it has had the longest to complete), and
        // its buffer serves the new one, so eviction never fails for want of a buffer.
        i = 0;
        for (std::uint32_t j = 1; j < n; ++j)
            if (keys[j].first_ms < keys[i].first_ms) i = j;
        if (expired(i, now_ms))
            counters.timeouts.inc();
        else
            counters.evicted.inc();
        buf = std::move(state[i].buf);
    }
    keys[i] = SlotKey{k, now_ms, true};
    SlotState& s = state[i];
    s.buf = std::move(buf);
    s.held = 0;
    s.max_end = 0;
    s.last_seen = false;
    s.blocks.fill(0);
    return i;
}

std::optional<PacketRef> Reassembler::Impl::complete(std::uint32_t i) noexcept {
    SlotState& s = state[i];
    const MutByteView room = s.buf.room();
    wire::Ipv4Repr ip;
    ip.src = keys[i].key.src;
    ip.dst = keys[i].key.dst;
    ip.protocol = keys[i].key.proto;
    ip.ident = keys[i].key.ident;
    ip.ttl = s.ttl;
    ip.tos = s.tos;
    ip.payload_len = static_cast<std::uint16_t>(s.max_end);  // <= max_payload <= 65515
    // Neither can fail: the header fits at kIpAt and max_end + kPayloadAt fits in room (claim()
    // and process() bound both); a failure would be a bug, so the datagram is dropped, counted.
    if (!ip.emit(room.subspan(kIpAt, wire::kIpv4MinHeaderLen)) ||
        !s.buf.set_len(kPayloadAt + s.max_end) || !s.buf.pull_head(kIpAt - s.eth_len))
        return fail_datagram(i, counters.malformed);
    PacketMeta& m = s.buf.meta();
    m.in_port = s.in_port;
    m.vnet = {};
    PacketRef out = std::move(s.buf);
    keys[i].used = false;
    --active;
    counters.reassembled.inc();
    return out;
}

Reassembler::Reassembler(PacketPool& pool, const ReassemblyConfig& cfg)
    : impl_(std::make_unique<Impl>(pool, cfg)) {}

Reassembler::~Reassembler() = default;

std::optional<PacketRef> Reassembler::process(const PacketRef& frame, const wire::Ipv4View& ip,
                                              std::uint64_t now_ms) noexcept {
    Impl& r = *impl_;
    r.counters.fragments.inc();

    // The caller's promises, checked because a broken one would make us copy the wrong bytes:
    // `ip` is a fragment and is exactly the IPv4 payload of `frame`'s Ethernet header.
    if (!frame || !ip.is_fragment()) {
        r.counters.malformed.inc();
        return std::nullopt;
    }
    const auto eth = wire::EthernetView::parse(frame.data());
    if (!eth || eth->ethertype() != EtherType::ipv4 ||
        eth->payload().data() != ip.packet().data() || eth->payload().size() < ip.packet().size()) {
        r.counters.malformed.inc();
        return std::nullopt;
    }

    const FragmentKey key{ip.src(), ip.dst(), ip.protocol(), ip.ident()};
    const ByteView data = ip.payload();
    const std::size_t off = ip.frag_offset_bytes();
    const std::size_t end = off + data.size();
    const bool last = !ip.more_fragments();

    std::uint32_t i = r.find(key);
    if (i != kNoSlot && r.expired(i, now_ms)) {
        // expire() has not run since the time ran out (RFC 1122 §3.3.2): this fragment starts
        // a new datagram instead of completing a stale one.
        r.fail_datagram(i, r.counters.timeouts);
        i = kNoSlot;
    }

    // RFC 791 §3.2: every fragment but the last carries a multiple of 8 bytes (the next offset is
    // in 8-byte units). An empty fragment carries nothing and is treated as Linux does: the
    // datagram cannot be what its sender meant, so it goes with the fragment.
    if (data.empty() || (!last && data.size() % 8 != 0))
        return r.fail_datagram(i, r.counters.malformed);
    // RFC 791 §3.1: a datagram is at most 65,535 bytes, header included, and ours has 20.
    if (end > r.max_payload) return r.fail_datagram(i, r.counters.too_big);

    const std::size_t b0 = off / 8;
    const std::size_t b1 = (end + 7) / 8;
    if (i != kNoSlot) {
        SlotState& s = r.state[i];
        // RFC 791 §3.2 / RFC 815 §3: the last fragment fixes the total; a second last fragment
        // with another end, a last fragment short of bytes already held, or a later fragment past
        // the end make the datagram ambiguous.
        if (last ? (s.last_seen ? end != s.max_end : end < s.max_end)
                 : (s.last_seen && end > s.max_end))
            return r.fail_datagram(i, r.counters.malformed);
        const std::size_t covered = count_blocks(s.blocks, b0, b1);
        if (covered == b1 - b0) {
            // Every byte already held (RFC 8200 §4.5's duplicate, Linux's IPFRAG_DUP): ignored,
            // so the bytes held stay the first copy. A last fragment still tells where the
            // datagram ends, which pieces of it that arrived first could not.
            r.counters.duplicates.inc();
            if (!last || s.last_seen) return std::nullopt;
            s.last_seen = true;
            s.max_end = static_cast<std::uint32_t>(end);
            return s.held == s.max_end ? r.complete(i) : std::nullopt;
        }
        // RFC 5722 §4 (the IPv6 rule, applied to IPv4 as Linux does): new bytes beside held ones
        // mean two different versions of the datagram; drop it whole.
        if (covered != 0) return r.fail_datagram(i, r.counters.overlaps);
    } else {
        i = r.claim(key, now_ms);
        if (i == kNoSlot) return std::nullopt;
    }

    SlotState& s = r.state[i];
    const MutByteView room = s.buf.room();
    std::memcpy(room.data() + kPayloadAt + off, data.data(), data.size());
    set_blocks(s.blocks, b0, b1);
    s.held += static_cast<std::uint32_t>(data.size());
    if (last) s.last_seen = true;
    s.max_end = std::max(s.max_end, static_cast<std::uint32_t>(end));
    if (off == 0) {
        // The reassembled frame goes out as the first fragment came in (RFC 791 §3.2: the first
        // fragment's header fields are the datagram's).
        const ByteView h = eth->header();
        std::memcpy(room.data() + kIpAt - h.size(), h.data(), h.size());
        s.eth_len = static_cast<std::uint8_t>(h.size());
        s.ttl = ip.ttl();
        s.tos = ip.tos();
        s.in_port = frame.meta().in_port;
    }
    // No byte is held twice, so `held` reaching the total means every byte is there.
    if (s.last_seen && s.held == s.max_end) return r.complete(i);
    return std::nullopt;
}

void Reassembler::expire(std::uint64_t now_ms) noexcept {
    Impl& r = *impl_;
    if (r.active == 0) return;
    for (std::uint32_t i = 0; i < r.n; ++i)
        if (r.keys[i].used && r.expired(i, now_ms)) r.fail_datagram(i, r.counters.timeouts);
}

std::uint32_t Reassembler::in_progress() const noexcept {
    return impl_->active;
}

bool Reassembler::holds(const FragmentKey& key) const noexcept {
    return impl_->find(key) != kNoSlot;
}

std::uint32_t Reassembler::slots() const noexcept {
    return impl_->n;
}

const ReassemblyCounters& Reassembler::counters() const noexcept {
    return impl_->counters;
}

// ---- fragmentation ---------------------------------------------------------------------------

Result<std::size_t> fragment_ipv4(PacketPool& pool, const FragmentSpec& spec,
                                  std::span<const ByteView> pieces,
                                  std::span<PacketRef> out) noexcept {
    // RFC 791 §3.1: 68 bytes is the MTU every link must carry; below it no fragment could hold
    // even 8 bytes of data beside a maximal header.
    if (spec.mtu < kMinIpv4Mtu) return fail(Errc::too_large);
    std::size_t total = 0;
    for (const ByteView p : pieces) {
        total += p.size();
        if (total > kMaxIpv4Payload) return fail(Errc::too_large);
    }

    const std::size_t mtu = std::min<std::size_t>(spec.mtu, wire::kIpv4MaxPacketLen);
    const bool whole = wire::kIpv4MinHeaderLen + total <= mtu;
    // RFC 791 §3.2: fragment data ends on an 8-byte boundary except in the last fragment.
    const std::size_t per = whole ? total : (mtu - wire::kIpv4MinHeaderLen) / 8 * 8;
    const std::size_t count = whole ? 1 : (total + per - 1) / per;
    if (count > out.size()) return fail(Errc::too_large);

    const wire::EthernetRepr eth{spec.dst_mac, spec.src_mac, spec.vlan, EtherType::ipv4};
    std::array<std::byte, wire::kEthernetMaxHeaderLen> eth_hdr{};
    const auto eth_len = eth.emit(eth_hdr);
    if (!eth_len) return fail(eth_len.error());

    wire::Ipv4Repr ip;
    ip.src = spec.src;
    ip.dst = spec.dst;
    ip.protocol = spec.proto;
    ip.ttl = spec.ttl;
    ip.tos = spec.tos;
    ip.ident = spec.ident;
    ip.dont_fragment = false;

    std::size_t piece = 0;      // pieces[piece] is where the next byte comes from,
    std::size_t piece_off = 0;  // at this offset
    std::size_t off = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t chunk = std::min(per, total - off);
        const std::size_t frame_len = *eth_len + wire::kIpv4MinHeaderLen + chunk;
        auto r = pool.try_alloc(frame_len);
        if (!r) {
            for (std::size_t j = 0; j < i; ++j)
                out[j].reset();
            return fail(r.error());
        }
        PacketRef p = std::move(*r);
        const MutByteView d = p.data();  // frame_len bytes
        std::memcpy(d.data(), eth_hdr.data(), *eth_len);
        ip.more_fragments = i + 1 < count;
        ip.frag_offset = static_cast<std::uint16_t>(off / 8);
        ip.payload_len = static_cast<std::uint16_t>(chunk);
        // Cannot fail: 20 bytes of header fit in d, and chunk <= 65515 keeps the total in range.
        if (!ip.emit(d.subspan(*eth_len))) {
            for (std::size_t j = 0; j < i; ++j)
                out[j].reset();
            return fail(Errc::invalid_argument);
        }
        std::byte* w = d.data() + *eth_len + wire::kIpv4MinHeaderLen;
        std::size_t left = chunk;
        while (left != 0) {
            const ByteView src = pieces[piece];
            const std::size_t take = std::min(left, src.size() - piece_off);
            if (take != 0) std::memcpy(w, src.data() + piece_off, take);
            w += take;
            left -= take;
            piece_off += take;
            if (piece_off == src.size()) {
                ++piece;
                piece_off = 0;
            }
        }
        p.meta().vnet = {};
        out[i] = std::move(p);
        off += chunk;
    }
    return count;
}

}  // namespace slipway::nat
