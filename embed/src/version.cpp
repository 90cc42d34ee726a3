// slipway's version string (from the CMake project version).
#include "slipway/embed/network.hpp"

namespace slipway {
std::string_view version() noexcept {
    return SLIPWAY_VERSION;
}
}  // namespace slipway
