// Internet checksum over 256-bit AVX2 lanes; compiled per function, selected at run time.
#include "slipway/core/checksum.hpp"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <array>
#include <bit>
#include <cstring>

// Only the functions below carry target("avx2"): the rest of the library stays runnable on any
// x86-64, and checksum.cpp calls in here only after __builtin_cpu_supports("avx2").
#define SLIPWAY_AVX2 __attribute__((target("avx2")))

namespace slipway {

namespace {

static_assert(std::endian::native == std::endian::little, "x86 is little-endian");

// See kPassBytes in checksum.cpp: bounds the 64-bit lane sums; even, so passes compose.
constexpr std::size_t kPassBytes = std::size_t{1} << 30;

// The one place a byte pointer becomes the intrinsic's vector pointer type: _mm256_loadu_si256
// makes no alignment or aliasing assumption about it.
SLIPWAY_AVX2 inline __m256i load32(const std::byte* p) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// One 32-byte block into 32-bit lanes, three ops: flipping each 16-bit word's top bit turns the
// unsigned word w into the signed w - 0x8000, so that vpmaddwd against ones adds a lane's two
// little-endian words exactly, as lo + hi - 0x10000 (unsigned words would be read as signed and
// come out wrong by 0x10000 per word with its top bit set). The constant -0x10000 per lane per
// block is added back by widen() from a count of blocks.
SLIPWAY_AVX2 inline __m256i add_block(__m256i acc, __m256i v) noexcept {
    const __m256i flip = _mm256_set1_epi16(static_cast<short>(0x8000));
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_xor_si256(v, flip), ones));
}

// A lane that took `blocks` add_block()s (over all accumulators added together) holds (sum of lo +
// hi) - blocks * 0x10000 modulo 2^32. The true sum is below blocks * 0x1fffe, under 2^32 while
// blocks <= kMaxBlocksPerRound, so adding the bias back modulo 2^32 recovers it exactly; then it is
// zero-extended into 64-bit lanes.
constexpr std::uint32_t kMaxBlocksPerRound = 32768;
static_assert(std::uint64_t{kMaxBlocksPerRound} * 0x1fffe <= 0xffffffffu);

SLIPWAY_AVX2 inline __m256i widen(__m256i total64, __m256i acc32, std::uint32_t blocks) noexcept {
    const __m256i exact =
        _mm256_add_epi32(acc32, _mm256_set1_epi32(static_cast<int>(blocks << 16)));
    const __m256i lo = _mm256_and_si256(exact, _mm256_set1_epi64x(0xffffffffLL));
    return _mm256_add_epi64(total64, _mm256_add_epi64(lo, _mm256_srli_epi64(exact, 32)));
}

// Below this size the vector set-up and reduction cost more than they save.
constexpr std::size_t kShortBytes = 64;

// Keeps the last n (< 32) bytes of a 32-byte window: 32 zero bytes then 32 ones, loaded at n.
constexpr std::array<std::byte, 64> kTailMask = [] {
    std::array<std::byte, 64> m{};
    for (std::size_t i = 32; i < 64; ++i)
        m[i] = std::byte{0xff};
    return m;
}();

// Little-endian word sum of a short run (under kShortBytes), zero-padded: 8-byte words, then
// fixed-size pieces (a memcpy of variable size would be a library call). Each piece starts at an
// even offset, so its low-address byte is the low byte of a little-endian word.
inline std::uint64_t sum_le_short(const std::byte* p, std::size_t n) noexcept {
    std::uint64_t s = 0;
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        s += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        std::uint32_t w;
        std::memcpy(&w, p, sizeof w);
        s += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        std::uint16_t w;
        std::memcpy(&w, p, sizeof w);
        s += w;
        p += 2;
        n -= 2;
    }
    if (n != 0) s += load_u8(p);
    return s;
}

// Little-endian word sum of n bytes (the byte-swapped RFC 1071 sum, RFC 1071 §2(B)), n at most
// kPassBytes.
SLIPWAY_AVX2 std::uint64_t sum_le_avx2(const std::byte* p, std::size_t n) noexcept {
    if (n < 32) return sum_le_short(p, n);  // only the last pass of a multi-GiB input
    // An odd last byte is summed alone, so the even remainder can end in one overlapping window
    // that starts at an even offset (only offset parity decides a byte's weight, see the header).
    std::uint64_t odd = 0;
    if ((n & 1u) != 0) {
        --n;
        odd = load_u8(p + n);
    }
    __m256i total = _mm256_setzero_si256();
    do {
        // One round of at most kMaxBlocksPerRound blocks in all (1 MiB): the four accumulators
        // are added lane by lane and widened exactly into `total` once. Four accumulators so
        // that one iteration's four blocks never wait on each other.
        __m256i a0 = _mm256_setzero_si256();
        __m256i a1 = _mm256_setzero_si256();
        __m256i a2 = _mm256_setzero_si256();
        __m256i a3 = _mm256_setzero_si256();
        // Leaves room for the three single blocks and the tail window below.
        constexpr std::size_t kMaxIters = kMaxBlocksPerRound / 4 - 1;
        std::size_t iters = n / 128 < kMaxIters ? n / 128 : kMaxIters;
        std::uint32_t blocks = 4 * static_cast<std::uint32_t>(iters);
        for (; iters != 0; --iters) {
            a0 = add_block(a0, load32(p));
            a1 = add_block(a1, load32(p + 32));
            a2 = add_block(a2, load32(p + 64));
            a3 = add_block(a3, load32(p + 96));
            p += 128;
            n -= 128;
        }
        if (n < 128) {
            // The round that reaches the end: up to three whole blocks, then the tail.
            if (n >= 32) {
                a1 = add_block(a1, load32(p));
                ++blocks;
                p += 32;
                n -= 32;
            }
            if (n >= 32) {
                a2 = add_block(a2, load32(p));
                ++blocks;
                p += 32;
                n -= 32;
            }
            if (n >= 32) {
                a3 = add_block(a3, load32(p));
                ++blocks;
                p += 32;
                n -= 32;
            }
            if (n != 0) {
                // 2..30 bytes left and at least 32 already summed: re-read the last 32 bytes
                // and zero the ones already counted, instead of a scalar tail loop.
                const __m256i mask = load32(kTailMask.data() + n);
                a0 = add_block(a0, _mm256_and_si256(load32(p + n - 32), mask));
                ++blocks;
                n = 0;
            }
        }
        const __m256i a = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
        total = widen(total, a, blocks);
    } while (n != 0);
    // Horizontal sum: a kPassBytes pass adds at most 2^30 / 16 words of 17 bits into each
    // 64-bit lane, so neither the lanes nor their total can overflow.
    const __m128i h =
        _mm_add_epi64(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    return static_cast<std::uint64_t>(_mm_cvtsi128_si64(h)) +
           static_cast<std::uint64_t>(_mm_extract_epi64(h, 1)) + odd;
}

SLIPWAY_AVX2 std::uint32_t csum_avx2_long(const std::byte* p, std::size_t n,
                                          std::uint32_t initial) noexcept {
    std::uint32_t sum = initial;
    for (;;) {
        const std::size_t len = n < kPassBytes ? n : kPassBytes;
        const std::uint16_t le = csum_fold(detail::csum_fold64(sum_le_avx2(p, len)));
        sum = csum_add(sum, __builtin_bswap16(le));
        p += len;
        n -= len;
        if (n == 0) return sum;
    }
}

}  // namespace

std::uint32_t csum_avx2(ByteView data, std::uint32_t initial) noexcept {
    if (data.size() < kShortBytes) {
        const std::uint16_t le =
            csum_fold(detail::csum_fold64(sum_le_short(data.data(), data.size())));
        return csum_add(initial, __builtin_bswap16(le));
    }
    return csum_avx2_long(data.data(), data.size(), initial);
}

}  // namespace slipway

#else  // not x86: keep the symbol so callers link; csum_avx2_supported() is false here.

namespace slipway {
std::uint32_t csum_avx2(ByteView data, std::uint32_t initial) noexcept {
    return csum_scalar(data, initial);
}
}  // namespace slipway

#endif
