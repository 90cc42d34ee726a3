// Hot-path allocation guard for tests: counts heap allocations made by this thread while armed.
#pragma once

#include <cstddef>

namespace slipway::test {

// Number of operator new calls on this thread since the last arm().
std::size_t allocations_while_armed() noexcept;

// RAII: while alive, every operator new on this thread is counted. The test asserts the count is
// zero; it cannot fail inside operator new itself (gtest would allocate to report it).
class AllocGuard {
  public:
    AllocGuard() noexcept;
    ~AllocGuard();
    AllocGuard(const AllocGuard&) = delete;
    AllocGuard& operator=(const AllocGuard&) = delete;
    [[nodiscard]] std::size_t count() const noexcept { return allocations_while_armed(); }
};

}  // namespace slipway::test
