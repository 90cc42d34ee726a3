// Internet checksum: the naive reference, the portable fast sum, and run-time dispatch to AVX2.
#include "slipway/core/checksum.hpp"

#include <atomic>
#include <bit>
#include <cstring>

namespace slipway {

namespace {

// Inner loops accumulate into 64-bit integers that could, in theory, overflow on inputs of many
// GiB; summing at most this many bytes per pass keeps every accumulator far from 2^64. Even, so
// each pass starts at an even offset and passes compose by plain addition.
constexpr std::size_t kPassBytes = std::size_t{1} << 30;
static_assert(kPassBytes % 2 == 0);

// One native-endian 32-bit word; memcpy of a fixed 4 bytes is a single unaligned load.
inline std::uint64_t load_ne32(const std::byte* p) noexcept {
    std::uint32_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
}

// Sum of `n` bytes as native-endian 32-bit words, the tail padded with zero bytes: on a
// little-endian CPU the byte-swapped RFC 1071 sum (RFC 1071 §2(B)), on a big-endian one the sum.
std::uint64_t sum_native_words(const std::byte* p, std::size_t n) noexcept {
    // Four accumulators so the adds of one iteration do not wait on each other.
    std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    // Word by word rather than one 32-byte memcpy into an array, which GCC routes through the
    // stack (wide stores, narrow reloads: a store-forwarding stall per word).
    while (n >= 32) {
        a0 += load_ne32(p) + load_ne32(p + 16);
        a1 += load_ne32(p + 4) + load_ne32(p + 20);
        a2 += load_ne32(p + 8) + load_ne32(p + 24);
        a3 += load_ne32(p + 12) + load_ne32(p + 28);
        p += 32;
        n -= 32;
    }
    while (n >= 4) {
        a0 += load_ne32(p);
        p += 4;
        n -= 4;
    }
    // The last 0..3 bytes, zero-padded to a word: exactly RFC 1071's odd-byte rule. Fixed-size
    // pieces, not memcpy(&w, p, n), which would be a library call.
    if (n >= 2) {
        std::uint16_t h;
        std::memcpy(&h, p, sizeof h);
        a1 += h;
        p += 2;
        n -= 2;
    }
    if (n != 0) {
        // The odd byte is the high byte of its network word: the low byte of a little-endian one.
        const std::uint64_t b = load_u8(p);
        a2 += std::endian::native == std::endian::little ? b : b << 8;
    }
    return a0 + a1 + a2 + a3;
}

// Turns a native-endian word sum into a partial sum in network order (see sum_native_words).
std::uint32_t native_to_partial(std::uint64_t native_sum) noexcept {
    const std::uint16_t f = csum_fold(detail::csum_fold64(native_sum));
    if constexpr (std::endian::native == std::endian::little)
        return __builtin_bswap16(f);
    else
        return f;
}

using CsumFn = std::uint32_t (*)(ByteView, std::uint32_t) noexcept;

CsumFn best_impl() noexcept {
    return csum_avx2_supported() ? &csum_avx2 : &csum_scalar;
}

std::uint32_t resolve_and_sum(ByteView data, std::uint32_t initial) noexcept;

// Starts at a resolver (constant-initialised, so no static-initialisation-order hazard for callers
// in other constructors) that replaces itself with the chosen implementation on first use.
// Relaxed order: racing threads all store the same pointer, and the pointer carries no other data
// to publish — the functions it points to are immutable code.
std::atomic<CsumFn> g_csum_impl{&resolve_and_sum};

std::uint32_t resolve_and_sum(ByteView data, std::uint32_t initial) noexcept {
    const CsumFn fn = best_impl();
    g_csum_impl.store(fn, std::memory_order_relaxed);
    return fn(data, initial);
}

}  // namespace

std::uint32_t csum_naive(ByteView data, std::uint32_t initial) noexcept {
    // 2^63 / 0xffff words is far beyond any addressable buffer, so one 64-bit sum never overflows.
    std::uint64_t sum = initial;
    const std::size_t n = data.size();
    std::size_t i = 0;
    for (; i + 1 < n; i += 2)
        sum += load_be16(data.data() + i);
    if (i < n) sum += std::uint32_t{load_u8(data.data() + i)} << 8;  // RFC 1071: pad the odd byte
    return detail::csum_fold64(sum);
}

std::uint32_t csum_scalar(ByteView data, std::uint32_t initial) noexcept {
    std::uint32_t sum = initial;
    const std::byte* p = data.data();
    std::size_t n = data.size();
    while (n > kPassBytes) {
        sum = csum_add(sum, native_to_partial(sum_native_words(p, kPassBytes)));
        p += kPassBytes;
        n -= kPassBytes;
    }
    return csum_add(sum, native_to_partial(sum_native_words(p, n)));
}

std::uint32_t csum_partial(ByteView data, std::uint32_t initial) noexcept {
    return g_csum_impl.load(std::memory_order_relaxed)(data, initial);
}

bool csum_avx2_supported() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    // Needed when called from another translation unit's static constructor, before libgcc's
    // own constructor has filled in the CPU model.
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

const char* csum_impl_name() noexcept {
    return best_impl() == &csum_avx2 ? "avx2" : "scalar";
}

}  // namespace slipway
