// Result<T>: the error channel of slipway (tl::expected behind our own alias, DESIGN §6).
#pragma once

#include <cstdint>
#include <string_view>
#include <tl/expected.hpp>

namespace slipway {

// One flat error code space for the whole project. Parsers, pools and I/O wrappers return these;
// a dropped packet is not an error (it is a verdict plus a counter), so there is no "drop" code.
enum class Errc : std::uint8_t {
    truncated,         // input shorter than the header or a length field says
    bad_length,        // a length field contradicts itself or the buffer
    bad_version,       // IP version, ARP hardware/protocol type, ... not the one expected
    bad_checksum,      // a checksum that was required to verify did not
    unsupported,       // well-formed but outside what slipway handles
    too_large,         // output or input larger than the buffer or the protocol allows
    pool_exhausted,    // PacketPool has no free buffer of the requested class
    would_block,       // non-blocking operation could not make progress
    invalid_argument,  // a caller passed a value outside the documented range
    io_error,          // a system call failed; the caller logs errno where it has it
    conflict,          // clashes with something already configured (a forward on the same port)
    not_found,         // names something that does not exist (a forward id, a DNS record)
};

[[nodiscard]] constexpr std::string_view to_string(Errc e) noexcept {
    switch (e) {
        case Errc::truncated:
            return "truncated";
        case Errc::bad_length:
            return "bad length";
        case Errc::bad_version:
            return "bad version";
        case Errc::bad_checksum:
            return "bad checksum";
        case Errc::unsupported:
            return "unsupported";
        case Errc::too_large:
            return "too large";
        case Errc::pool_exhausted:
            return "pool exhausted";
        case Errc::would_block:
            return "would block";
        case Errc::invalid_argument:
            return "invalid argument";
        case Errc::io_error:
            return "I/O error";
        case Errc::conflict:
            return "conflict";
        case Errc::not_found:
            return "not found";
    }
    return "unknown error";
}

template <class T>
using Result = tl::expected<T, Errc>;

// `return fail(Errc::truncated);` reads better than spelling tl::unexpected every time.
[[nodiscard]] constexpr tl::unexpected<Errc> fail(Errc e) noexcept {
    return tl::unexpected<Errc>(e);
}

}  // namespace slipway
