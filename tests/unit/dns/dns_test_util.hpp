// Byte helpers the dns/ unit tests share for laying out messages by hand.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "slipway/core/bytes.hpp"

namespace slipway::dns::testutil {

using Bytes = std::vector<std::byte>;

// "0a0b..." -> bytes (pairs of hex digits; a trailing odd digit is ignored).
inline Bytes hex(std::string_view s) {
    auto nib = [](char c) {
        return static_cast<unsigned>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    };
    Bytes b;
    for (std::size_t i = 0; i + 1 < s.size(); i += 2)
        b.push_back(static_cast<std::byte>((nib(s[i]) << 4) | nib(s[i + 1])));
    return b;
}

inline bool same(ByteView a, ByteView b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Big-endian appends.
inline void put16(Bytes& b, std::uint16_t v) {
    b.push_back(static_cast<std::byte>(v >> 8));
    b.push_back(static_cast<std::byte>(v & 0xff));
}
inline void put32(Bytes& b, std::uint32_t v) {
    put16(b, static_cast<std::uint16_t>(v >> 16));
    put16(b, static_cast<std::uint16_t>(v & 0xffff));
}

}  // namespace slipway::dns::testutil
