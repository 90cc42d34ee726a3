// Replaced global operator new/delete that count allocations made while an AllocGuard is armed.
#include "support/alloc_guard.hpp"

#include <cstdlib>
#include <new>

namespace {
thread_local bool t_armed = false;
thread_local std::size_t t_count = 0;

void* counted_alloc(std::size_t n, std::size_t align) {
    if (t_armed) ++t_count;
    if (n == 0) n = 1;
    void* p = align <= alignof(std::max_align_t)
                  ? std::malloc(n)
                  : std::aligned_alloc(align, (n + align - 1) / align * align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
}  // namespace

namespace slipway::test {
std::size_t allocations_while_armed() noexcept {
    return t_count;
}
AllocGuard::AllocGuard() noexcept {
    t_count = 0;
    t_armed = true;
}
AllocGuard::~AllocGuard() {
    t_armed = false;
}
}  // namespace slipway::test

void* operator new(std::size_t n) {
    return counted_alloc(n, alignof(std::max_align_t));
}
void* operator new[](std::size_t n) {
    return counted_alloc(n, alignof(std::max_align_t));
}
void* operator new(std::size_t n, std::align_val_t a) {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
