// Counters for stats: written by the one thread that owns them, read from any thread (the API).
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

namespace slipway {

// A single-writer counter. The owner increments with a plain load+store (no locked instruction on
// the hot path); readers on other threads see a recent value. Relaxed ordering is enough because a
// counter publishes nothing but its own value.
class Counter {
  public:
    void add(std::uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void inc() noexcept { add(1); }
    [[nodiscard]] std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }
    void reset() noexcept { v_.store(0, std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> v_{0};
};

// A named view of counters, assembled at start-up by whoever owns them and read by the API. The
// names must outlive the set (string literals in practice).
class CounterSet {
  public:
    struct Entry {
        std::string_view name;
        const Counter* counter;
    };
    void add(std::string_view name, const Counter& c) { entries_.push_back({name, &c}); }
    [[nodiscard]] const std::vector<Entry>& entries() const noexcept { return entries_; }
    [[nodiscard]] std::uint64_t value(std::string_view name) const noexcept {
        for (const auto& e : entries_)
            if (e.name == name) return e.counter->get();
        return 0;
    }

  private:
    std::vector<Entry> entries_;
};

}  // namespace slipway
