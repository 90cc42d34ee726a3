// Text-to-number for configuration and API input: the whole text, decimal, inside a range.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace slipway {

// The whole of `t` as a decimal integer in [lo, hi]; nullopt for empty text, a sign or character
// that is not part of the number, overflow, or a value outside the range.
template <class T>
[[nodiscard]] std::optional<T> parse_decimal(std::string_view t, T lo, T hi) noexcept {
    T v{};
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size() || v < lo || v > hi)
        return std::nullopt;
    return v;
}

}  // namespace slipway
