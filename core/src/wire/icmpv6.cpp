// ICMPv6 parsing and emission.
#include "slipway/core/wire/icmpv6.hpp"

#include <algorithm>

namespace slipway::wire {

Result<Icmpv6View> Icmpv6View::parse(ByteView message) noexcept {
    if (message.size() < kIcmpv6MinMessageLen) return fail(Errc::truncated);
    return Icmpv6View{message};
}

Result<std::size_t> Icmpv6Repr::emit(MutByteView out) const noexcept {
    if (body.size() < kIcmpv6MinMessageLen - kIcmpv6HeaderLen) return fail(Errc::invalid_argument);
    const std::size_t len = buffer_len();
    if (out.size() < len) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_u8(p, static_cast<std::uint8_t>(type));
    store_u8(p + 1, code);
    store_be16(p + 2, checksum);
    std::copy(body.begin(), body.end(), p + kIcmpv6HeaderLen);
    return len;
}

}  // namespace slipway::wire
