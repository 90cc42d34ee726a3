// Differential fuzzer: every checksum implementation, chunk composition and RFC 1624 update agree.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_util.hpp"
#include "slipway/core/checksum.hpp"

namespace {

using namespace slipway;
using namespace slipway::fuzz;

// Room for any alignment plus the largest IP datagram; libFuzzer inputs rarely get near it.
constexpr std::size_t kMaxAlign = 64;
constexpr std::size_t kMaxData = 65536;
alignas(64) std::byte g_buf[kMaxAlign + kMaxData];

void check_sums(ByteView data, std::uint32_t initial) {
    const std::uint16_t want = csum_fold(csum_naive(data, initial));
    check(csum_fold(csum_scalar(data, initial)) == want);
    check(csum_fold(csum_partial(data, initial)) == want);
    if (csum_avx2_supported()) check(csum_fold(csum_avx2(data, initial)) == want);
}

void check_combine(ByteView data, std::size_t cut) {
    // Two chunks summed apart and joined by offset equal the whole, whatever the cut's parity.
    const std::uint32_t joined =
        csum_combine(csum_partial(data.first(cut)), csum_partial(data.subspan(cut)), cut);
    check(csum_fold(joined) == csum_fold(csum_naive(data)));
}

// data[0..1] is the checksum field; a 16- or 32-bit field at an even offset changes to new_val.
void check_update(std::byte* pkt, std::size_t len, std::size_t sel, std::uint32_t new_val) {
    const bool wide = (sel & 1u) != 0;
    const std::size_t fsize = wide ? 4 : 2;
    if (len < 2 + fsize) return;
    const std::size_t slots = (len - 2 - fsize) / 2 + 1;
    const std::size_t off = 2 + 2 * ((sel >> 1) % slots);
    store_be16(pkt, 0);
    const std::uint16_t hc = csum_finish(csum_naive({pkt, len}));
    std::uint16_t got;
    if (wide) {
        const std::uint32_t old_val = load_be32(pkt + off);
        store_be32(pkt + off, new_val);
        got = csum_update32(hc, old_val, new_val);
    } else {
        const std::uint16_t old_val = load_be16(pkt + off);
        const auto nv = static_cast<std::uint16_t>(new_val);
        store_be16(pkt + off, nv);
        got = csum_update16(hc, old_val, nv);
    }
    const std::uint32_t new_sum = csum_naive({pkt, len});
    // RFC 1624 eqn. 3 yields 0x0000 where recomputation yields 0xffff only when everything
    // covered is zero, which no real header is; the header documents that exception.
    if (new_sum == 0) return;
    check(got == csum_finish(new_sum));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
    // Layout: [align][initial: 4][cut: 2][selector][new value: 4][data...]
    constexpr std::size_t kHeader = 12;
    if (size < kHeader) return 0;
    const std::size_t align = in[0] % kMaxAlign;
    std::uint32_t initial;
    std::memcpy(&initial, in + 1, sizeof initial);
    const std::size_t cut_seed = std::size_t{in[5]} | (std::size_t{in[6]} << 8);
    const std::size_t sel = in[7];
    std::uint32_t new_val;
    std::memcpy(&new_val, in + 8, sizeof new_val);
    std::size_t len = size - kHeader;
    if (len > kMaxData) len = kMaxData;

    std::byte* data = g_buf + align;
    std::memcpy(data, in + kHeader, len);
    const ByteView view(data, len);

    check_sums(view, initial);
    check_sums(view, 0);
    check_combine(view, cut_seed % (len + 1));
    check_update(data, len, sel, new_val);
    return 0;
}
