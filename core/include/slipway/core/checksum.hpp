// The Internet checksum (RFC 1071): partial sums, pseudo-headers, RFC 1624 incremental updates.
#pragma once

// Theory of operation
// -------------------
// The Internet checksum is the ones'-complement of the ones'-complement sum of the data taken as
// big-endian 16-bit words, an odd trailing byte padded with a zero byte (RFC 1071 §1, RFC 768,
// RFC 9293 §3.1, RFC 8200 §8.1).
//
// Ones'-complement addition of 16-bit words is ordinary addition modulo 0xffff (with 0xffff and
// 0x0000 both standing for zero). Because 2^16 ≡ 1 (mod 0xffff), a carry out of bit 15 is worth
// exactly 1 — which is why the "end-around carry" exists — and the carries need not be added back
// at once: we may accumulate in a 32- or 64-bit integer, or in many independent SIMD lanes, and
// fold the high half into the low half at the end ("deferred carries", RFC 1071 §2(C)). For the
// same reason 2^32 ≡ 1 and 2^64 ≡ 1 (mod 0xffff): summing 32-bit words into 64-bit lanes gives
// the same residue as summing 16-bit words, so the fast paths load 4 or 8 bytes at a time.
//
// The sum is also byte-order independent (RFC 1071 §2(B)): summing little-endian words produces
// the byte-swapped result, so a little-endian CPU adds its native loads and swaps the two bytes of
// the folded 16-bit sum once at the end.
//
// The odd-byte rule makes position parity matter: a byte at an even offset is the high byte of a
// word (weight 256), a byte at an odd offset the low byte (weight 1). A chunk summed on its own is
// summed as if it started at an even offset, so a chunk that really starts at an odd offset of the
// datagram has every byte in the wrong half of its word; since 256 * 256 ≡ 1 (mod 0xffff),
// swapping the two bytes of that chunk's folded sum fixes it. Hence the composition rule below.
//
// Value conventions: a "partial sum" is a std::uint32_t accumulator, not folded, that may be fed
// back as `initial` or combined; only csum_fold() reduces it to 16 bits. A finished checksum is the
// host-order 16-bit value to store with store_be16() into the checksum field. To verify a received
// header, csum_fold(csum_partial(header_with_checksum)) == 0xffff.

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/types.hpp"

namespace slipway {

// ---- folding ---------------------------------------------------------------------------------

// Ones'-complement fold of a partial sum to 16 bits, not inverted. The result is 0 only when every
// word summed was 0; otherwise it lies in 1..0xffff (an all-ones sum stays 0xffff, "negative
// zero"), which is what RFC 1624 eqn. 3 expects.
[[nodiscard]] constexpr std::uint16_t csum_fold(std::uint32_t sum) noexcept {
    sum = (sum & 0xffffu) + (sum >> 16);  // at most 0x1fffe
    sum = (sum & 0xffffu) + (sum >> 16);  // at most 0xffff
    return static_cast<std::uint16_t>(sum);
}

// The value for the checksum field: inverted fold, host order, store with store_be16().
// UDP over IPv4 (RFC 768) and IPv6 (RFC 8200 §8.1): a computed 0x0000 is transmitted as 0xffff,
// because 0 in the field means "no checksum" — that substitution is the UDP code's business.
[[nodiscard]] constexpr std::uint16_t csum_finish(std::uint32_t sum) noexcept {
    return static_cast<std::uint16_t>(~csum_fold(sum));
}

namespace detail {
// Reduces a 64-bit accumulator to a 32-bit partial sum with the same residue mod 0xffff
// (2^32 ≡ 1), keeping "zero only if all zero".
[[nodiscard]] constexpr std::uint32_t csum_fold64(std::uint64_t sum) noexcept {
    sum = (sum & 0xffffffffu) + (sum >> 32);  // at most 0x1fffffffe
    sum = (sum & 0xffffffffu) + (sum >> 32);  // at most 0xffffffff
    return static_cast<std::uint32_t>(sum);
}
}  // namespace detail

// Adds two partial sums without losing a carry (end-around carry into bit 0).
[[nodiscard]] constexpr std::uint32_t csum_add(std::uint32_t a, std::uint32_t b) noexcept {
    return detail::csum_fold64(std::uint64_t{a} + b);
}

// Composition rule. csum_partial(b, csum_partial(a)) is the sum of a followed by b only when a has
// even length. For chunks of any length, sum each chunk on its own and combine it with the byte
// offset at which it starts in the datagram: a chunk at an odd offset has its folded sum
// byte-swapped (see the theory above).
[[nodiscard]] constexpr std::uint32_t csum_combine(std::uint32_t sum, std::uint32_t chunk_sum,
                                                   std::size_t chunk_offset) noexcept {
    if ((chunk_offset & 1u) != 0) {
        const std::uint16_t f = csum_fold(chunk_sum);
        chunk_sum = static_cast<std::uint32_t>((f >> 8) | ((f & 0xffu) << 8));
    }
    return csum_add(sum, chunk_sum);
}

// ---- full sums -------------------------------------------------------------------------------

// Partial sum of `data` (taken to start at an even offset) added to `initial`, using the fastest
// implementation this CPU supports (chosen once, at first use). Any length; no alignment needed.
[[nodiscard]] std::uint32_t csum_partial(ByteView data, std::uint32_t initial = 0) noexcept;

// The implementations behind csum_partial, callable one by one for tests and benchmarks. They
// return different unfolded partial sums for the same input, but equal csum_fold() values.
// csum_naive: the RFC 1071 byte-pair loop, the reference the others are tested against.
[[nodiscard]] std::uint32_t csum_naive(ByteView data, std::uint32_t initial = 0) noexcept;
// csum_scalar: portable; 32-bit native-endian loads into four 64-bit accumulators.
[[nodiscard]] std::uint32_t csum_scalar(ByteView data, std::uint32_t initial = 0) noexcept;
// csum_avx2: 256-bit lanes. Call only when csum_avx2_supported(); it is compiled for AVX2 alone.
[[nodiscard]] std::uint32_t csum_avx2(ByteView data, std::uint32_t initial = 0) noexcept;
[[nodiscard]] bool csum_avx2_supported() noexcept;
// Name of the implementation csum_partial dispatches to ("avx2" or "scalar"), for start-up logs.
[[nodiscard]] const char* csum_impl_name() noexcept;

// ---- pseudo-headers --------------------------------------------------------------------------

// Partial sum of the IPv4 pseudo-header (RFC 768; RFC 9293 §3.1): source, destination, zero,
// protocol, TCP/UDP length. Feed it as `initial` to csum_partial over the L4 header and payload.
[[nodiscard]] constexpr std::uint32_t pseudo_header_sum_v4(Ipv4Addr src, Ipv4Addr dst,
                                                           IpProto proto,
                                                           std::uint16_t l4_len) noexcept {
    return (src.v >> 16) + (src.v & 0xffffu) + (dst.v >> 16) + (dst.v & 0xffffu) +
           std::uint32_t{static_cast<std::uint8_t>(proto)} + l4_len;
}

namespace detail {
[[nodiscard]] constexpr std::uint32_t sum_ipv6_words(const Ipv6Addr& a) noexcept {
    std::uint32_t s = 0;
    for (std::size_t i = 0; i < 16; i += 2)
        s += (std::uint32_t{a.b[i]} << 8) | a.b[i + 1];
    return s;  // at most 8 * 0xffff
}
}  // namespace detail

// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer
// length, three zero bytes, next header (the upper-layer protocol, not an extension header).
[[nodiscard]] constexpr std::uint32_t pseudo_header_sum_v6(const Ipv6Addr& src, const Ipv6Addr& dst,
                                                           IpProto proto,
                                                           std::uint32_t l4_len) noexcept {
    // 16 words of addresses + 2 of length + 1 of protocol: far below 2^32, no carry lost.
    return detail::sum_ipv6_words(src) + detail::sum_ipv6_words(dst) + (l4_len >> 16) +
           (l4_len & 0xffffu) + std::uint32_t{static_cast<std::uint8_t>(proto)};
}

// ---- incremental updates (RFC 1624) ----------------------------------------------------------

// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): the new checksum field after a field covered by it
// changed from `old_val` to `new_val`. Eqn. 3 rather than RFC 1141's eqn. 2 because eqn. 2 can
// yield 0xffff where a full recomputation yields 0x0000 (RFC 1624 §3-§4); eqn. 3 agrees with a
// full recomputation whenever the covered data is not all zeros (always true for IP, TCP and UDP:
// the version, the pseudo-header protocol).
// All values host order (load_be16/load_be32 of the wire bytes). The changed field must start at
// an even offset of the checksummed data, as every IP, TCP and UDP header field of 16 or 32 bits
// does. For UDP, an old checksum of 0 means "none": do not update it; a result of 0x0000 must be
// sent as 0xffff (RFC 768).
[[nodiscard]] constexpr std::uint16_t csum_update16(std::uint16_t old_csum, std::uint16_t old_val,
                                                    std::uint16_t new_val) noexcept {
    const std::uint32_t s = std::uint32_t{static_cast<std::uint16_t>(~old_csum)} +
                            std::uint32_t{static_cast<std::uint16_t>(~old_val)} + new_val;
    return static_cast<std::uint16_t>(~csum_fold(s));
}

// As csum_update16 for a 32-bit field such as an IPv4 address (two words changed at once).
[[nodiscard]] constexpr std::uint16_t csum_update32(std::uint16_t old_csum, std::uint32_t old_val,
                                                    std::uint32_t new_val) noexcept {
    const std::uint32_t s = std::uint32_t{static_cast<std::uint16_t>(~old_csum)} +
                            ((~old_val) >> 16) + ((~old_val) & 0xffffu) + (new_val >> 16) +
                            (new_val & 0xffffu);
    return static_cast<std::uint16_t>(~csum_fold(s));
}

// As csum_update16 for a 16-byte IPv6 address (in the IPv6 header, or in the pseudo-header of a
// TCP/UDP/ICMPv6 checksum when NAT rewrites it).
[[nodiscard]] constexpr std::uint16_t csum_update_ipv6(std::uint16_t old_csum,
                                                       const Ipv6Addr& old_addr,
                                                       const Ipv6Addr& new_addr) noexcept {
    // ~m summed word by word is 8 * 0xffff - sum(m): no borrow, at most 16 words + 1 below 2^21.
    const std::uint32_t s = std::uint32_t{static_cast<std::uint16_t>(~old_csum)} +
                            (8u * 0xffffu - detail::sum_ipv6_words(old_addr)) +
                            detail::sum_ipv6_words(new_addr);
    return static_cast<std::uint16_t>(~csum_fold(s));
}

}  // namespace slipway
