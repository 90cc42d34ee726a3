// PacketPool: buffer arrays, the lock-free global free stacks and the per-thread caches.
#include "slipway/core/packet_pool.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>

#if SLIPWAY_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define SLW_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLW_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLW_POISON(p, n) ((void)(p), (void)(n))
#define SLW_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace slipway {
namespace {

// Each buffer is followed by a guard zone that holds the overflow canary in debug builds and keeps
// buffers on distinct cache lines in all builds.
constexpr std::size_t kGuard = 64;
constexpr std::uint64_t kCanary = 0x5157'4159'4341'4e59ull;  // "SWAYCANY"-ish
[[maybe_unused]] constexpr std::byte kPoison{0xdb};
[[maybe_unused]] constexpr std::uint8_t kStateFree = 0xf5;
[[maybe_unused]] constexpr std::uint8_t kStateUsed = 0xa1;
// How much of a freed buffer is poisoned and checked: enough to catch the headers that stale
// code writes, without making debug builds memset 68 KiB per frame.
[[maybe_unused]] constexpr std::size_t kPoisonLen = 256;

std::atomic<std::uint64_t> g_next_uid{1};

// Registry of live pools, so thread-exit flushes never touch a destroyed pool. Touched only when a
// pool is created or destroyed and when a thread that used a pool exits: a mutex is fine.
std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
}
std::unordered_map<std::uint64_t, PacketPool*>& registry() {
    static std::unordered_map<std::uint64_t, PacketPool*> r;
    return r;
}

[[noreturn, maybe_unused]] void pool_fatal(const char* what, std::uint32_t id) noexcept {
    std::fprintf(stderr, "slipway: PacketPool: %s (buffer %u)\n", what, id);
    std::abort();
}

}  // namespace

// ---- per-thread caches --------------------------------------------------------------------

namespace {

// A thread uses few pools at once (one per network it serves); more than kSlots falls back to the
// global stacks, still correct, only slower.
constexpr std::size_t kSlots = 4;

// Set once this thread's caches have been torn down: frees from later thread-exit destructors (a
// thread_local holding a PacketRef) then go straight to the global stacks.
constinit thread_local bool t_caches_gone = false;

struct ThreadCaches {
    detail::PoolThreadCache slot[kSlots];

    ~ThreadCaches() {
        // Thread exit: give cached buffers back to pools that still exist.
        std::lock_guard<std::mutex> lock(registry_mutex());
        for (auto& c : slot) {
            if (c.uid == 0) continue;
            auto it = registry().find(c.uid);
            if (it != registry().end()) {
                for (std::size_t k = 0; k < kNumSizeClasses; ++k)
                    it->second->push_global(static_cast<SizeClass>(k), c.ids[k], c.count[k]);
            }
            c.uid = 0;
        }
        detail::t_pool_hint = nullptr;
        t_caches_gone = true;
    }
};

thread_local ThreadCaches t_caches;

}  // namespace

detail::PoolThreadCache* PacketPool::local_cache() noexcept {
    if (detail::PoolThreadCache* hint = detail::t_pool_hint; hint != nullptr && hint->uid == uid_)
        return hint;
    if (t_caches_gone) return nullptr;
    ThreadCaches& tc = t_caches;
    for (auto& c : tc.slot) {
        if (c.uid == uid_) return detail::t_pool_hint = &c;
    }
    // Claim a free slot, or one whose pool has been destroyed (its cached ids died with it).
    std::lock_guard<std::mutex> lock(registry_mutex());
    for (auto& c : tc.slot) {
        if (c.uid != 0 && registry().count(c.uid) != 0) continue;
        c.uid = uid_;
        c.count[0] = c.count[1] = 0;
        return detail::t_pool_hint = &c;
    }
    return nullptr;
}

void PacketPool::flush_thread_cache() noexcept {
    if (t_caches_gone) return;
    for (auto& c : t_caches.slot) {
        if (c.uid != uid_) continue;
        for (std::size_t k = 0; k < kNumSizeClasses; ++k) {
            push_global(static_cast<SizeClass>(k), c.ids[k], c.count[k]);
            c.count[k] = 0;
        }
    }
}

// ---- construction -------------------------------------------------------------------------

PacketPool::PacketPool(const PoolConfig& cfg)
    : uid_(g_next_uid.fetch_add(1, std::memory_order_relaxed)),  // uniqueness only
      headroom_(cfg.headroom),
      count_{cfg.small_buffers, cfg.large_buffers} {
    const std::uint32_t total = count_[0] + count_[1];
    meta_ = std::make_unique<PacketMeta[]>(total);
    next_ = std::make_unique<std::atomic<std::uint32_t>[]>(total);
#if SLIPWAY_POOL_DEBUG
    state_ = std::make_unique<std::atomic<std::uint8_t>[]>(total);
#endif
    std::uint32_t first_id = 0;
    for (std::size_t k = 0; k < kNumSizeClasses; ++k) {
        const auto c = static_cast<SizeClass>(k);
        const std::size_t bytes = stride(c) * count_[k];
        mem_[k] = std::make_unique_for_overwrite<std::byte[]>(bytes + 4096);
        // Start the first buffer on a page boundary (and so every buffer on a cache line).
        auto addr = reinterpret_cast<std::uintptr_t>(mem_[k].get());
        base_[k] = mem_[k].get() + ((4096 - (addr & 4095)) & 4095);

        // Build the free stack: ids in increasing order from the top.
        for (std::uint32_t i = 0; i < count_[k]; ++i) {
            const std::uint32_t id = first_id + i;
            next_[id].store(i + 1 < count_[k] ? id + 1 : kNone, std::memory_order_relaxed);
            std::byte* buf = base_[k] + stride(c) * i;
            std::memcpy(buf + buffer_size(c), &kCanary, sizeof kCanary);
#if SLIPWAY_POOL_DEBUG
            state_[id].store(kStateFree, std::memory_order_relaxed);
            std::memset(buf, static_cast<int>(kPoison), kPoisonLen);
#endif
            SLW_POISON(buf, buffer_size(c));
        }
        classes_[k].head.store(count_[k] != 0 ? first_id : kNone, std::memory_order_relaxed);
        classes_[k].free_count.store(count_[k], std::memory_order_relaxed);
        first_id += count_[k];
    }
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().emplace(uid_, this);
}

PacketPool::~PacketPool() {
    {
        std::lock_guard<std::mutex> lock(registry_mutex());
        registry().erase(uid_);
    }
    // Forget this thread's cache for the pool now; other threads' slots are reclaimed lazily.
    if (!t_caches_gone)
        for (auto& c : t_caches.slot)
            if (c.uid == uid_) c.uid = 0;
    for (std::size_t k = 0; k < kNumSizeClasses; ++k)
        SLW_UNPOISON(base_[k], stride(static_cast<SizeClass>(k)) * count_[k]);
}

std::size_t PacketPool::stride(SizeClass c) const noexcept {
    return buffer_size(c) + kGuard;
}

std::byte* PacketPool::buffer(std::uint32_t id) noexcept {
    const SizeClass c = class_of(id);
    const std::uint32_t local = c == SizeClass::small ? id : id - count_[0];
    return base_[static_cast<std::size_t>(c)] + stride(c) * local;
}

// ---- global lock-free stacks ----------------------------------------------------------------

std::uint32_t PacketPool::pop_global(SizeClass c, std::uint32_t* ids, std::uint32_t n) noexcept {
    ClassStack& s = classes_[static_cast<std::size_t>(c)];
    // acquire: pairs with the release CAS in push_global, so the links written before a push are
    // visible when we walk them.
    std::uint64_t old = s.head.load(std::memory_order_acquire);
    for (;;) {
        std::uint32_t top = static_cast<std::uint32_t>(old);
        if (top == kNone) return 0;
        // Walk up to n links. If another thread changes the stack meanwhile, what we read may be
        // stale, but every link is a valid id or kNone, and the tagged CAS below then fails.
        std::uint32_t got = 0;
        std::uint32_t cur = top;
        while (got < n && cur != kNone) {
            ids[got++] = cur;
            // relaxed: ordered by the acquire load of head above (or of the failed CAS).
            cur = next_[cur].load(std::memory_order_relaxed);
        }
        const std::uint64_t tag = (old >> 32) + 1;
        const std::uint64_t desired = (tag << 32) | cur;
        // acquire on success and failure: as for the initial load (we read links after it).
        if (s.head.compare_exchange_weak(old, desired, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
            // relaxed: an approximate gauge for stats, ordered by nothing.
            s.free_count.fetch_sub(got, std::memory_order_relaxed);
            return got;
        }
    }
}

void PacketPool::push_global(SizeClass c, const std::uint32_t* ids, std::uint32_t n) noexcept {
    if (n == 0) return;
    ClassStack& s = classes_[static_cast<std::size_t>(c)];
    // Link the batch privately first: ids[0] -> ids[1] -> ... -> ids[n-1] -> old top.
    for (std::uint32_t i = 0; i + 1 < n; ++i)
        next_[ids[i]].store(ids[i + 1], std::memory_order_relaxed);  // published by the CAS
    std::uint64_t old = s.head.load(std::memory_order_relaxed);
    for (;;) {
        next_[ids[n - 1]].store(static_cast<std::uint32_t>(old), std::memory_order_relaxed);
        const std::uint64_t tag = (old >> 32) + 1;
        const std::uint64_t desired = (tag << 32) | ids[0];
        // release: publishes the links stored above; pairs with the acquire load/CAS in
        // pop_global. Failure is relaxed: we only retry with the fresh value.
        if (s.head.compare_exchange_weak(old, desired, std::memory_order_release,
                                         std::memory_order_relaxed))
            break;
    }
    s.free_count.fetch_add(n, std::memory_order_relaxed);  // gauge only
}

// ---- alloc / free -------------------------------------------------------------------------

void PacketPool::check_alloc(std::uint32_t id) noexcept {
    [[maybe_unused]] std::byte* buf = buffer(id);
    SLW_UNPOISON(buf, buffer_size(class_of(id)));
#if SLIPWAY_POOL_DEBUG
    // acq_rel: pairs with the exchange in check_free on whichever thread freed it last.
    if (state_[id].exchange(kStateUsed, std::memory_order_acq_rel) != kStateFree)
        pool_fatal("free list handed out a buffer that is in use", id);
    for (std::size_t i = 0; i < kPoisonLen; ++i)
        if (buf[i] != kPoison) pool_fatal("buffer was written after it was freed", id);
#endif
}

void PacketPool::check_free(std::uint32_t id) noexcept {
#if SLIPWAY_POOL_DEBUG
    if (id >= count_[0] + count_[1]) pool_fatal("free of an id outside the pool", id);
#endif
    const SizeClass c = class_of(id);
    [[maybe_unused]] std::byte* buf = buffer(id);
#if SLIPWAY_POOL_DEBUG
    // acq_rel: pairs with the exchange in check_alloc.
    if (state_[id].exchange(kStateFree, std::memory_order_acq_rel) != kStateUsed)
        pool_fatal("double free", id);
    std::uint64_t canary;
    std::memcpy(&canary, buf + buffer_size(c), sizeof canary);
    if (canary != kCanary) pool_fatal("write past the end of the buffer", id);
    std::memset(buf, static_cast<int>(kPoison), kPoisonLen);
#endif
    SLW_POISON(buf, buffer_size(c));
}

// This thread's cache is missing (first use, or more pools than slots) or full.
void PacketPool::free_slow(std::uint32_t id) noexcept {
    const SizeClass c = class_of(id);
    const auto k = static_cast<std::size_t>(c);
    detail::PoolThreadCache* tc = local_cache();
    if (tc == nullptr) {
        push_global(c, &id, 1);
        return;
    }
    if (tc->count[k] == kCacheSize) {
        // Spill the older half; keep the recently freed (cache-warm) ids for the next allocs.
        push_global(c, tc->ids[k], kBatch);
        std::memmove(tc->ids[k], tc->ids[k] + kBatch,
                     (kCacheSize - kBatch) * sizeof(std::uint32_t));
        tc->count[k] -= kBatch;
    }
    tc->ids[k][tc->count[k]++] = id;
}

// This thread's cache is missing or empty: refill it with one batch from the global stack.
Result<PacketRef> PacketPool::try_alloc_slow(SizeClass c) noexcept {
    const auto k = static_cast<std::size_t>(c);
    std::uint32_t id;
    detail::PoolThreadCache* tc = local_cache();
    if (tc != nullptr) {
        if (tc->count[k] == 0) tc->count[k] = pop_global(c, tc->ids[k], kBatch);
        if (tc->count[k] == 0) {
            exhausted_.fetch_add(1, std::memory_order_relaxed);  // stats gauge
            return fail(Errc::pool_exhausted);
        }
        id = tc->ids[k][--tc->count[k]];
    } else if (pop_global(c, &id, 1) == 0) {
        exhausted_.fetch_add(1, std::memory_order_relaxed);
        return fail(Errc::pool_exhausted);
    }
    if constexpr (kChecks) check_alloc(id);
    init_meta(id, c);
    return PacketRef(this, id);
}

Result<PacketRef> PacketPool::try_alloc(std::size_t frame_len) noexcept {
    SizeClass c;
    if (frame_len + headroom_ <= kSmallBufferSize)
        c = SizeClass::small;
    else if (frame_len + headroom_ <= kLargeBufferSize)
        c = SizeClass::large;
    else
        return fail(Errc::too_large);
    auto r = try_alloc(c);
    if (r) meta_[r->id()].len = static_cast<std::uint32_t>(frame_len);
    return r;
}

std::size_t PacketPool::try_alloc_burst(SizeClass c, std::span<PacketRef> out) noexcept {
    const auto k = static_cast<std::size_t>(c);
    detail::PoolThreadCache* tc = local_cache();
    std::size_t n = 0;
    if (tc == nullptr) {
        for (std::uint32_t id; n < out.size() && pop_global(c, &id, 1) == 1;) {
            if constexpr (kChecks) check_alloc(id);
            init_meta(id, c);
            out[n++] = PacketRef(this, id);
        }
    } else {
        while (n < out.size()) {
            std::uint32_t& count = tc->count[k];
            if (count == 0 && (count = pop_global(c, tc->ids[k], kBatch)) == 0) break;
            // Take a run of ids straight from the cache, newest (cache-warm) first.
            const std::size_t take = std::min<std::size_t>(count, out.size() - n);
            for (std::size_t i = 0; i < take; ++i) {
                const std::uint32_t id = tc->ids[k][--count];
                if constexpr (kChecks) check_alloc(id);
                init_meta(id, c);
                out[n++] = PacketRef(this, id);
            }
        }
    }
    if (n < out.size()) exhausted_.fetch_add(1, std::memory_order_relaxed);  // stats gauge
    return n;
}

}  // namespace slipway
