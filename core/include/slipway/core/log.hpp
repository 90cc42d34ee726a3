// Logging on spdlog: one process-wide logger, level names for the CLI, and a rate-limited macro
// for warnings that a hostile or broken peer could otherwise turn into a log flood.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "slipway/core/result.hpp"

namespace slipway::log {

// Installs the "slipway" logger (stderr, colour when a terminal) at `level` and makes it the
// default. Safe to call more than once; later calls only change the level.
void init(spdlog::level::level_enum level = spdlog::level::info);
// Parses trace|debug|info|warn|error|critical|off; Errc::invalid_argument otherwise.
Result<spdlog::level::level_enum> parse_level(std::string_view name) noexcept;

// Per-call-site limiter: lets `burst` messages through per `interval`, then counts what it
// suppresses and reports the count with the next message let through. Lock-free and
// allocation-free; callers on different threads may race on a window boundary and let a message
// or two more through, which is harmless for a log limiter.
class RateLimiter {
  public:
    constexpr RateLimiter(std::uint32_t burst, std::chrono::milliseconds interval) noexcept
        : burst_(burst), interval_ns_(interval.count() * 1'000'000) {}

    // Returns true if the message may be logged; `*suppressed` gets the number dropped since the
    // last message that was let through.
    bool allow(std::uint64_t* suppressed) noexcept {
        const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count();
        // relaxed throughout: the fields are independent statistics, no data is published.
        std::int64_t start = window_start_.load(std::memory_order_relaxed);
        if (now - start >= interval_ns_ &&
            window_start_.compare_exchange_strong(start, now, std::memory_order_relaxed)) {
            used_.store(0, std::memory_order_relaxed);
        }
        if (used_.fetch_add(1, std::memory_order_relaxed) < burst_) {
            *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
            return true;
        }
        suppressed_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }

  private:
    const std::uint32_t burst_;
    const std::int64_t interval_ns_;
    std::atomic<std::int64_t> window_start_{INT64_MIN / 2};
    std::atomic<std::uint32_t> used_{0};
    std::atomic<std::uint64_t> suppressed_{0};
};

}  // namespace slipway::log

#define SLW_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define SLW_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define SLW_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define SLW_WARN(...) SPDLOG_WARN(__VA_ARGS__)
#define SLW_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)

// At most 10 messages per second from this call site; the rest are counted and the count is
// appended to the next message that gets through. Format arguments are evaluated only when logged.
#define SLW_LOG_RATELIMITED(level, fmt, ...)                                                      \
    do {                                                                                          \
        static ::slipway::log::RateLimiter slw_rl_{10, std::chrono::milliseconds(1000)};          \
        std::uint64_t slw_rl_suppressed_ = 0;                                                     \
        if (::spdlog::should_log(level) && slw_rl_.allow(&slw_rl_suppressed_)) {                  \
            if (slw_rl_suppressed_ != 0)                                                          \
                ::spdlog::log(level,                                                              \
                              fmt " ({} similar messages suppressed)" __VA_OPT__(, ) __VA_ARGS__, \
                              slw_rl_suppressed_);                                                \
            else                                                                                  \
                ::spdlog::log(level, fmt __VA_OPT__(, ) __VA_ARGS__);                             \
        }                                                                                         \
    } while (0)
#define SLW_WARN_RATELIMITED(fmt, ...) \
    SLW_LOG_RATELIMITED(::spdlog::level::warn, fmt __VA_OPT__(, ) __VA_ARGS__)
