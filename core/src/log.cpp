// spdlog set-up for slipway.
#include "slipway/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace slipway::log {

void init(spdlog::level::level_enum level) {
    auto logger = spdlog::get("slipway");
    if (!logger) {
        logger = spdlog::stderr_color_mt("slipway");
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
        spdlog::set_default_logger(logger);
    }
    logger->set_level(level);
    spdlog::set_level(level);
}

Result<spdlog::level::level_enum> parse_level(std::string_view name) noexcept {
    using L = spdlog::level::level_enum;
    if (name == "trace") return L::trace;
    if (name == "debug") return L::debug;
    if (name == "info") return L::info;
    if (name == "warn" || name == "warning") return L::warn;
    if (name == "error") return L::err;
    if (name == "critical") return L::critical;
    if (name == "off") return L::off;
    return fail(Errc::invalid_argument);
}

}  // namespace slipway::log
