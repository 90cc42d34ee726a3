// Helpers every fuzz target shares: a trap on a broken invariant, a sink that keeps reads alive,
// span checks, the pool leak check, and a reader of the input as integers and byte runs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/packet_pool.hpp"

namespace slipway::fuzz {

// A broken invariant is a crash libFuzzer records with the input, not a silent return.
inline void check(bool ok) {
    if (!ok) __builtin_trap();
}

// Keeps accessor reads from being optimised away.
inline volatile std::uint64_t g_sink = 0;
inline void sink(std::uint64_t v) {
    g_sink = g_sink + v;
}

// `sub` lies within `whole` (an empty view anywhere is fine).
inline bool inside(ByteView sub, ByteView whole) {
    const auto* b = whole.data();
    const auto* e = whole.data() + whole.size();
    return sub.empty() || (sub.data() >= b && sub.data() + sub.size() <= e);
}

inline bool equal_bytes(ByteView a, ByteView b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Every buffer of `pool` is back home: both size classes can be allocated whole (and are freed
// again). Leaks show up as a trap with the input that caused them.
inline bool all_returned(PacketPool& pool) {
    static std::vector<PacketRef> v;
    for (SizeClass c : {SizeClass::small, SizeClass::large}) {
        v.resize(pool.capacity(c));
        const std::size_t n = pool.try_alloc_burst(c, v);
        for (PacketRef& r : v)
            r.reset();
        if (n != pool.capacity(c)) return false;
    }
    return true;
}

// The fuzz input read as a stream of little-endian integers and byte runs; past the end every
// read gives zeros (so a short input is still a complete, if dull, scenario).
class Input {
  public:
    Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    [[nodiscard]] bool empty() const { return off_ >= n_; }
    std::uint8_t u8() { return off_ < n_ ? d_[off_++] : 0; }
    std::uint16_t u16() {
        const unsigned lo = u8();
        return static_cast<std::uint16_t>(lo | (unsigned{u8()} << 8));
    }
    std::uint32_t u32() {
        const std::uint32_t lo = u16();
        return lo | (std::uint32_t{u16()} << 16);
    }
    std::uint64_t u64() {
        const std::uint64_t lo = u32();
        return lo | (std::uint64_t{u32()} << 32);
    }
    // Copies up to `want` input bytes to `out`; returns how many there were.
    std::size_t take(std::byte* out, std::size_t want) {
        const std::size_t k = std::min(want, n_ - std::min(off_, n_));
        if (k != 0) std::memcpy(out, d_ + off_, k);
        off_ += k;
        return k;
    }

  private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t off_ = 0;
};

}  // namespace slipway::fuzz
