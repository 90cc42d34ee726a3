// Byte spans and big/little-endian loads and stores that never reinterpret_cast (DESIGN §6).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace slipway {

using ByteView = std::span<const std::byte>;  // read-only frame bytes
using MutByteView = std::span<std::byte>;     // writable frame bytes

// Callers guarantee bounds: these run after a view's parse() validated the span once, so they carry
// no checks of their own. memcpy of a fixed size compiles to a single load/store.
[[nodiscard]] inline std::uint8_t load_u8(const std::byte* p) noexcept {
    return static_cast<std::uint8_t>(*p);
}
[[nodiscard]] inline std::uint16_t load_be16(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) |
                                      static_cast<unsigned>(p[1]));
}
[[nodiscard]] inline std::uint32_t load_be32(const std::byte* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_bswap32(v);
}
[[nodiscard]] inline std::uint16_t load_le16(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) |
                                      (static_cast<unsigned>(p[1]) << 8));
}
inline void store_u8(std::byte* p, std::uint8_t v) noexcept {
    *p = static_cast<std::byte>(v);
}
inline void store_be16(std::byte* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::byte>(v >> 8);
    p[1] = static_cast<std::byte>(v & 0xff);
}
inline void store_be32(std::byte* p, std::uint32_t v) noexcept {
    const std::uint32_t be = __builtin_bswap32(v);
    std::memcpy(p, &be, sizeof be);
}
inline void store_le16(std::byte* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::byte>(v & 0xff);
    p[1] = static_cast<std::byte>(v >> 8);
}

// Span-indexed convenience for tests and cold paths.
[[nodiscard]] inline std::uint16_t load_be16(ByteView s, std::size_t off) noexcept {
    return load_be16(s.data() + off);
}
[[nodiscard]] inline std::uint32_t load_be32(ByteView s, std::size_t off) noexcept {
    return load_be32(s.data() + off);
}

// Turn a byte-literal list into a std::array<std::byte, N> (tests, constant headers).
template <class... Ts>
[[nodiscard]] constexpr std::array<std::byte, sizeof...(Ts)> make_bytes(Ts... vs) noexcept {
    return {static_cast<std::byte>(vs)...};
}

}  // namespace slipway
