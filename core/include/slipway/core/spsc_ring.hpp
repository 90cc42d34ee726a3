// SpscRing<T>: bounded lock-free single-producer/single-consumer ring, the only thing two threads
// of the data path share (DESIGN §1).
//
// Theory of operation
// -------------------
// Capacity is a power of two so a free-running index maps to a slot with `& mask`. `tail_` counts
// every element ever pushed and `head_` every element ever popped; both only grow (a 64-bit index
// does not wrap in the lifetime of a process), so `tail_ - head_` is the fill level and the ring
// needs no "one slot empty" trick. Each index is written by exactly one side:
//   - the producer writes tail_ and reads head_;
//   - the consumer writes head_ and reads tail_.
// Each side keeps a private cached copy of the other side's index and re-reads the shared atomic
// only when the cached copy says "full" (producer) or "empty" (consumer). In steady state a push or
// pop touches only its own cache line; the other line moves between cores once per refill, not
// once per element. Producer state, consumer state and the read-only slot pointer sit on separate
// cache lines so neither side's stores invalidate the other's hot line.
//
// Memory ordering (each release store pairs with the other side's acquire load of the same index):
//   - producer: construct element in slot, then tail_.store(release)  ->  consumer's
//     tail_.load(acquire) sees the index and therefore the constructed element;
//   - consumer: move element out and destroy it, then head_.store(release)  ->  producer's
//     head_.load(acquire) sees the slot free and may construct into it again.
// Loads of a side's own index are relaxed: only that thread ever stores it.
//
// Elements live in raw storage and are constructed on push and destroyed on pop, so move-only
// types (PacketRef) work and nothing is constructed for empty slots. The burst calls move up to n
// elements with a single index publication, which is what makes batching cheap.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

namespace slipway {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
class SpscRing {
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "ring elements move on the hot path, which must not throw");
    static_assert(std::is_nothrow_destructible_v<T>);

  public:
    // Capacity is rounded up to a power of two, at least 2. Allocates once, here (start-up).
    explicit SpscRing(std::size_t min_capacity)
        : mask_(std::bit_ceil(min_capacity < 2 ? std::size_t{2} : min_capacity) - 1),
          slots_(std::make_unique<Slot[]>(mask_ + 1)) {}

    SpscRing(const SpscRing&) = delete;
    SpscRing& operator=(const SpscRing&) = delete;

    ~SpscRing() {
        // Single-threaded by now: both sides have stopped.
        const std::size_t t = prod_.tail.load(std::memory_order_relaxed);
        for (std::size_t h = cons_.head.load(std::memory_order_relaxed); h != t; ++h)
            elem(h)->~T();
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

    // ---- producer side -------------------------------------------------------------------

    // Moves `v` in and returns true, or returns false (and leaves `v` untouched) when full.
    [[nodiscard]] bool try_push(T&& v) noexcept {
        const std::size_t t = prod_.tail.load(std::memory_order_relaxed);  // own index
        if (t - prod_.head_cache == capacity() && refresh_head(t) == 0) return false;
        ::new (static_cast<void*>(slot_ptr(t))) T(std::move(v));
        // release: publishes the constructed element; pairs with the consumer's acquire load of
        // tail in refresh_tail().
        prod_.tail.store(t + 1, std::memory_order_release);
        return true;
    }
    template <class U = T>
    requires std::is_nothrow_copy_constructible_v<U>
    [[nodiscard]] bool try_push(const T& v) noexcept {
        T copy(v);
        return try_push(std::move(copy));
    }

    // Moves up to items.size() elements in, from the front of `items`; returns how many. The moved
    // elements are left in their moved-from state; the rest are untouched.
    [[nodiscard]] std::size_t push_burst(std::span<T> items) noexcept {
        const std::size_t t = prod_.tail.load(std::memory_order_relaxed);  // own index
        std::size_t room = capacity() - (t - prod_.head_cache);
        if (room < items.size()) room = refresh_head(t);
        const std::size_t n = items.size() < room ? items.size() : room;
        for (std::size_t i = 0; i < n; ++i)
            ::new (static_cast<void*>(slot_ptr(t + i))) T(std::move(items[i]));
        if (n != 0)
            // release: publishes all n elements at once; pairs with the consumer's acquire load.
            prod_.tail.store(t + n, std::memory_order_release);
        return n;
    }

    // ---- consumer side -------------------------------------------------------------------

    // Moves the oldest element into `out` and returns true, or returns false when empty.
    [[nodiscard]] bool try_pop(T& out) noexcept {
        const std::size_t h = cons_.head.load(std::memory_order_relaxed);  // own index
        if (h == cons_.tail_cache && refresh_tail(h) == 0) return false;
        T* e = elem(h);
        out = std::move(*e);
        e->~T();
        // release: the slot is free for the producer to construct into again; pairs with the
        // producer's acquire load of head in refresh_head().
        cons_.head.store(h + 1, std::memory_order_release);
        return true;
    }
    [[nodiscard]] std::optional<T> try_pop() noexcept {
        const std::size_t h = cons_.head.load(std::memory_order_relaxed);  // own index
        if (h == cons_.tail_cache && refresh_tail(h) == 0) return std::nullopt;
        T* e = elem(h);
        std::optional<T> out(std::move(*e));
        e->~T();
        // release: pairs with the producer's acquire load of head, as in try_pop(T&).
        cons_.head.store(h + 1, std::memory_order_release);
        return out;
    }

    // Moves up to out.size() oldest elements into `out` (move-assigned), returns how many.
    [[nodiscard]] std::size_t pop_burst(std::span<T> out) noexcept {
        const std::size_t h = cons_.head.load(std::memory_order_relaxed);  // own index
        std::size_t avail = cons_.tail_cache - h;
        if (avail < out.size()) avail = refresh_tail(h);
        const std::size_t n = out.size() < avail ? out.size() : avail;
        for (std::size_t i = 0; i < n; ++i) {
            T* e = elem(h + i);
            out[i] = std::move(*e);
            e->~T();
        }
        if (n != 0)
            // release: frees all n slots at once; pairs with the producer's acquire load of head.
            cons_.head.store(h + n, std::memory_order_release);
        return n;
    }

    // ---- either side (approximate while the other side runs) ------------------------------

    [[nodiscard]] std::size_t size_approx() const noexcept {
        // acquire on both: a monitoring read; never used to decide whether a slot is safe.
        const std::size_t h = cons_.head.load(std::memory_order_acquire);
        const std::size_t t = prod_.tail.load(std::memory_order_acquire);
        return t - h;
    }
    [[nodiscard]] bool empty_approx() const noexcept { return size_approx() == 0; }

  private:
    struct Slot {
        alignas(T) std::byte raw[sizeof(T)];
    };

    void* slot_ptr(std::size_t i) noexcept { return slots_[i & mask_].raw; }
    T* elem(std::size_t i) noexcept { return std::launder(reinterpret_cast<T*>(slot_ptr(i))); }

    // Producer: re-read head; returns free room after the refresh.
    std::size_t refresh_head(std::size_t t) noexcept {
        // acquire: pairs with the consumer's release store of head after it destroyed the
        // element, so constructing into that slot cannot race with the consumer's move-out.
        prod_.head_cache = cons_.head.load(std::memory_order_acquire);
        return capacity() - (t - prod_.head_cache);
    }
    // Consumer: re-read tail; returns available elements after the refresh.
    std::size_t refresh_tail(std::size_t h) noexcept {
        // acquire: pairs with the producer's release store of tail after it constructed the
        // element, so the element's contents are visible here.
        cons_.tail_cache = prod_.tail.load(std::memory_order_acquire);
        return cons_.tail_cache - h;
    }

    struct alignas(kCacheLine) ProducerSide {
        std::atomic<std::size_t> tail{0};
        std::size_t head_cache = 0;  // producer's last view of cons_.head
    };
    struct alignas(kCacheLine) ConsumerSide {
        std::atomic<std::size_t> head{0};
        std::size_t tail_cache = 0;  // consumer's last view of prod_.tail
    };

    ProducerSide prod_;
    ConsumerSide cons_;
    alignas(kCacheLine) const std::size_t mask_;
    const std::unique_ptr<Slot[]> slots_;
};

}  // namespace slipway
