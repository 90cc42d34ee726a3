// What the hand-written linear-probing tables share (the DNS cache index, the DNS forwarder's
// ID map, the NAT flow table): the hash finaliser that picks slots, and backward-shift deletion.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slipway {

// splitmix64's finaliser: every input bit reaches every output bit, so the low bits that pick a
// slot (hash & mask) are as good as the high ones.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// Backward-shift deletion (Knuth, TAOCP vol. 3, §6.4 Algorithm R): after emptying slot `hole`,
// walk the rest of the probe run; the entry at `pos`, whose home slot is `home`, moves into the
// hole unless its home lies cyclically in (hole, pos] — then it is still reachable where it is.
// `mask` is the table size minus one (a power of two). No tombstones are ever needed.
[[nodiscard]] constexpr bool can_fill_hole(std::size_t hole, std::size_t pos, std::size_t home,
                                           std::size_t mask) noexcept {
    return ((pos - home) & mask) >= ((pos - hole) & mask);
}

}  // namespace slipway
