// ICMPv4 parsing, checksum verification and emission.
#include "slipway/core/wire/icmpv4.hpp"

#include <algorithm>

#include "slipway/core/checksum.hpp"

namespace slipway::wire {

Result<Icmpv4View> Icmpv4View::parse(ByteView message) noexcept {
    if (message.size() < kIcmpv4HeaderLen) return fail(Errc::truncated);
    return Icmpv4View{message};
}

bool Icmpv4View::checksum_ok() const noexcept {
    return csum_fold(csum_partial(b_)) == 0xffffu;
}

Result<std::size_t> Icmpv4Repr::emit(MutByteView out) const noexcept {
    const std::size_t len = buffer_len();
    if (out.size() < len) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_u8(p, static_cast<std::uint8_t>(type));
    store_u8(p + 1, code);
    store_be16(p + 2, 0);
    store_be32(p + 4, rest_of_header);
    std::copy(payload.begin(), payload.end(), p + kIcmpv4HeaderLen);
    store_be16(p + 2, csum_finish(csum_partial(out.first(len))));
    return len;
}

}  // namespace slipway::wire
