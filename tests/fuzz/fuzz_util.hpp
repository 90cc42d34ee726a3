// Helpers every fuzz target shares: a trap on a broken invariant, a sink that keeps reads alive,
// span checks, and the pool leak check.
#pragma once

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

}  // namespace slipway::fuzz
