// PacketPool and PacketRef: fixed packet memory sized at start-up, handed out without locks or
// allocation, returned from any thread (DESIGN §1).
//
// Theory of operation
// -------------------
// The pool owns two size classes, each one contiguous array of fixed-stride buffers allocated
// once in the constructor: `small` (2 KiB: any MTU-sized frame with its headers) and `large`
// (68 KiB: a 65,535-byte IP packet + Ethernet/VLAN header + virtio-net header + headroom). A buffer
// is named by a 32-bit id; its metadata (PacketMeta: length, data offset, ingress port, virtio-net
// offload fields) lives in a separate array so that scanning metadata does not drag payload lines
// into the cache.
//
// Free buffers sit in two tiers:
//   1. a per-thread cache (thread_local, up to kCacheSize ids per class and pool) that alloc and
//      free use with no atomic operation at all — the hot path;
//   2. a global lock-free stack per class (a Treiber stack of ids with a generation tag beside the
//      head index, so a pop that raced with pop+push of the same id fails its CAS instead of
//      corrupting the list: the ABA problem). Caches refill and spill in batches of kBatch ids,
//      one CAS per batch.
// A buffer freed on a thread other than the one that took it just enters the freeing thread's
// cache and flows back to the global stack when that cache spills: cross-thread return needs no
// lock and no knowledge of the allocating thread. When a thread exits, its caches are flushed to
// the pools that are still alive (looked up by a never-reused pool uid in a registry that only
// start-up, shutdown and thread exit touch).
//
// Capacity is hard: when the thread's cache and the global stack are empty, try_alloc returns
// Errc::pool_exhausted and counts it; the pool never grows. Buffers parked in other threads' caches
// (at most kCacheSize per class per thread) are not visible to this thread until they spill.
//
// Debug builds (no NDEBUG, or SLIPWAY_POOL_DEBUG) keep a state byte per buffer and a canary after
// each buffer: freeing a free buffer (double free), writing past the buffer's end, or writing into
// a buffer after it was freed (the poison pattern is checked on the next allocation) abort with a
// message naming the buffer. Under AddressSanitizer free buffers are also poisoned, so a read
// through a stale pointer is reported at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "slipway/core/result.hpp"
#include "slipway/core/virtio/net_hdr.hpp"

#if !defined(NDEBUG) && !defined(SLIPWAY_POOL_DEBUG)
#define SLIPWAY_POOL_DEBUG 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SLIPWAY_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLIPWAY_POOL_ASAN 1
#endif
#endif

namespace slipway {

enum class SizeClass : std::uint8_t { small = 0, large = 1 };
inline constexpr std::size_t kNumSizeClasses = 2;

inline constexpr std::size_t kSmallBufferSize = 2048;
inline constexpr std::size_t kLargeBufferSize = 68 * 1024;
// Room in front of the frame for headers prepended on the way out (virtio-net header, VLAN tag,
// an encapsulation) without moving the frame.
inline constexpr std::size_t kDefaultHeadroom = 128;
// Largest frame a large buffer must hold after the default headroom: IP packet + Ethernet + one
// VLAN tag + virtio-net v1 header.
inline constexpr std::size_t kMaxFrameLen = 65535 + 14 + 4 + virtio::kNetHdrV1Len;
static_assert(kDefaultHeadroom + kMaxFrameLen <= kLargeBufferSize);
static_assert(kDefaultHeadroom + 1518 + 4 + virtio::kNetHdrV1Len <= kSmallBufferSize);

// Per-buffer metadata. One cache line.
struct PacketMeta {
    std::uint32_t len = 0;      // bytes of frame data starting at `head`
    std::uint32_t head = 0;     // offset of the first frame byte inside the buffer
    std::uint16_t in_port = 0;  // ingress switch port
    virtio::NetHdr vnet{};      // offload fields that travel with the frame
    SizeClass size_class = SizeClass::small;
};
static_assert(sizeof(PacketMeta) <= 64);

struct PoolConfig {
    std::uint32_t small_buffers = 4096;
    std::uint32_t large_buffers = 256;
    std::uint16_t headroom = kDefaultHeadroom;
};

class PacketPool;

namespace detail {
// One thread's cache of free ids for one pool (see the theory of operation).
struct PoolThreadCache {
    static constexpr std::uint32_t kSize = 64;
    std::uint64_t uid = 0;  // owning pool's uid; 0 = unused slot
    std::uint32_t count[kNumSizeClasses] = {0, 0};
    std::uint32_t ids[kNumSizeClasses][kSize];
};
// The cache this thread used last. constinit and trivially destructible, so the hot path reads it
// with no TLS initialisation guard.
inline constinit thread_local PoolThreadCache* t_pool_hint = nullptr;
}  // namespace detail

// Move-only owner of one pool buffer. Dropping it returns the buffer, from any thread.
class PacketRef {
  public:
    PacketRef() noexcept = default;
    PacketRef(PacketRef&& o) noexcept : pool_(o.pool_), id_(o.id_) { o.pool_ = nullptr; }
    PacketRef& operator=(PacketRef&& o) noexcept {
        if (this != &o) {
            reset();
            pool_ = o.pool_;
            id_ = o.id_;
            o.pool_ = nullptr;
        }
        return *this;
    }
    PacketRef(const PacketRef&) = delete;
    PacketRef& operator=(const PacketRef&) = delete;
    ~PacketRef() { reset(); }

    explicit operator bool() const noexcept { return pool_ != nullptr; }
    [[nodiscard]] std::uint32_t id() const noexcept { return id_; }
    [[nodiscard]] PacketPool* pool() const noexcept { return pool_; }

    [[nodiscard]] PacketMeta& meta() const noexcept;
    // The frame: `len` bytes from `head`.
    [[nodiscard]] std::span<std::byte> data() const noexcept;
    // Everything from `head` to the end of the buffer: where a frame of up to room().size() bytes
    // can be written before set_len().
    [[nodiscard]] std::span<std::byte> room() const noexcept;
    [[nodiscard]] std::size_t len() const noexcept { return meta().len; }
    // Sets the frame length; Errc::too_large if it would leave the buffer.
    Result<void> set_len(std::size_t n) const noexcept;
    // Grows the frame at the front by n bytes (prepend a header into the headroom).
    Result<std::span<std::byte>> push_head(std::size_t n) const noexcept;
    // Drops n bytes from the front of the frame (strip a header).
    Result<void> pull_head(std::size_t n) const noexcept;

    // Returns the buffer to the pool now (also what the destructor does).
    void reset() noexcept;
    // Gives up ownership without freeing: for handing the id through a channel that is not a
    // PacketRef (a descriptor table). PacketPool::adopt() turns it back into a PacketRef.
    [[nodiscard]] std::uint32_t release_id() noexcept {
        pool_ = nullptr;
        return id_;
    }

  private:
    friend class PacketPool;
    PacketRef(PacketPool* p, std::uint32_t id) noexcept : pool_(p), id_(id) {}
    PacketPool* pool_ = nullptr;
    std::uint32_t id_ = 0;
};

class PacketPool {
  public:
    // Allocates all buffer memory now. Throws std::bad_alloc if the memory is not there: that is a
    // start-up failure, never a per-frame one.
    explicit PacketPool(const PoolConfig& cfg = {});
    ~PacketPool();
    PacketPool(const PacketPool&) = delete;
    PacketPool& operator=(const PacketPool&) = delete;

    // A buffer whose room() holds at least `frame_len` bytes after the headroom, with len set to
    // `frame_len`. Errc::too_large past the large class, Errc::pool_exhausted when none is free.
    [[nodiscard]] Result<PacketRef> try_alloc(std::size_t frame_len) noexcept;
    [[nodiscard]] inline Result<PacketRef> try_alloc(SizeClass c) noexcept;
    // Up to out.size() buffers of class `c` (len 0); returns how many. Fewer means exhaustion.
    [[nodiscard]] std::size_t try_alloc_burst(SizeClass c, std::span<PacketRef> out) noexcept;

    // Turns an id obtained from PacketRef::release_id() back into an owner.
    [[nodiscard]] PacketRef adopt(std::uint32_t id) noexcept { return PacketRef(this, id); }
    // Frees a buffer by id (what PacketRef's destructor calls). Debug builds abort on a double
    // free; release builds trust the caller.
    inline void free_id(std::uint32_t id) noexcept;

    [[nodiscard]] PacketMeta& meta(std::uint32_t id) noexcept { return meta_[id]; }
    [[nodiscard]] std::byte* buffer(std::uint32_t id) noexcept;
    [[nodiscard]] std::size_t buffer_size(SizeClass c) const noexcept {
        return c == SizeClass::small ? kSmallBufferSize : kLargeBufferSize;
    }
    [[nodiscard]] std::uint32_t capacity(SizeClass c) const noexcept {
        return count_[static_cast<std::size_t>(c)];
    }
    [[nodiscard]] std::uint16_t headroom() const noexcept { return headroom_; }
    // Times try_alloc found the class empty (relaxed counter for stats).
    [[nodiscard]] std::uint64_t exhausted_count() const noexcept {
        return exhausted_.load(std::memory_order_relaxed);
    }
    // Buffers of class c in the global stack (excludes those parked in per-thread caches).
    [[nodiscard]] std::uint32_t global_free_approx(SizeClass c) const noexcept {
        return classes_[static_cast<std::size_t>(c)].free_count.load(std::memory_order_relaxed);
    }
    // Moves this thread's cached buffers of this pool back to the global stacks (tests, and a
    // thread that goes idle for long).
    void flush_thread_cache() noexcept;

    [[nodiscard]] std::uint64_t uid() const noexcept { return uid_; }

    // Per-thread cache geometry.
    static constexpr std::uint32_t kCacheSize = detail::PoolThreadCache::kSize;
    static constexpr std::uint32_t kBatch = 32;

    // Global-stack transfers used by thread caches (public for the cache, not for users).
    std::uint32_t pop_global(SizeClass c, std::uint32_t* ids, std::uint32_t n) noexcept;
    void push_global(SizeClass c, const std::uint32_t* ids, std::uint32_t n) noexcept;

  private:
    static constexpr std::uint32_t kNone = 0xffffffffu;

    struct alignas(64) ClassStack {
        std::atomic<std::uint64_t> head{kNone};  // (tag << 32) | top id, kNone = empty
        std::atomic<std::uint32_t> free_count{0};
    };

    [[nodiscard]] SizeClass class_of(std::uint32_t id) const noexcept {
        return id < count_[0] ? SizeClass::small : SizeClass::large;
    }
    [[nodiscard]] std::size_t stride(SizeClass c) const noexcept;
#if SLIPWAY_POOL_DEBUG || SLIPWAY_POOL_ASAN
    static constexpr bool kChecks = true;
#else
    static constexpr bool kChecks = false;
#endif
    void init_meta(std::uint32_t id, SizeClass c) noexcept {
        PacketMeta& m = meta_[id];
        m = PacketMeta{};
        m.head = headroom_;
        m.size_class = c;
    }
    void check_alloc(std::uint32_t id) noexcept;  // debug canaries / ASan unpoison
    void check_free(std::uint32_t id) noexcept;   // debug canaries / ASan poison
    Result<PacketRef> try_alloc_slow(SizeClass c) noexcept;
    void free_slow(std::uint32_t id) noexcept;
    detail::PoolThreadCache* local_cache() noexcept;

    const std::uint64_t uid_;
    const std::uint16_t headroom_;
    std::uint32_t count_[kNumSizeClasses];
    std::unique_ptr<std::byte[]> mem_[kNumSizeClasses];
    std::byte* base_[kNumSizeClasses];
    std::unique_ptr<PacketMeta[]> meta_;
    std::unique_ptr<std::atomic<std::uint32_t>[]> next_;  // free-list links, by id
#if SLIPWAY_POOL_DEBUG
    std::unique_ptr<std::atomic<std::uint8_t>[]> state_;  // kStateFree / kStateUsed, by id
#endif
    ClassStack classes_[kNumSizeClasses];
    std::atomic<std::uint64_t> exhausted_{0};
};

// ---- PacketRef inline accessors -------------------------------------------------------------

inline PacketMeta& PacketRef::meta() const noexcept {
    return pool_->meta(id_);
}
inline std::span<std::byte> PacketRef::data() const noexcept {
    const PacketMeta& m = meta();
    return {pool_->buffer(id_) + m.head, m.len};
}
inline std::span<std::byte> PacketRef::room() const noexcept {
    const PacketMeta& m = meta();
    return {pool_->buffer(id_) + m.head, pool_->buffer_size(m.size_class) - m.head};
}
inline Result<void> PacketRef::set_len(std::size_t n) const noexcept {
    PacketMeta& m = meta();
    if (n > pool_->buffer_size(m.size_class) - m.head) return fail(Errc::too_large);
    m.len = static_cast<std::uint32_t>(n);
    return {};
}
inline Result<std::span<std::byte>> PacketRef::push_head(std::size_t n) const noexcept {
    PacketMeta& m = meta();
    if (n > m.head) return fail(Errc::too_large);
    m.head = static_cast<std::uint32_t>(m.head - n);
    m.len += static_cast<std::uint32_t>(n);
    return std::span<std::byte>{pool_->buffer(id_) + m.head, n};
}
inline Result<void> PacketRef::pull_head(std::size_t n) const noexcept {
    PacketMeta& m = meta();
    if (n > m.len) return fail(Errc::truncated);
    m.head = static_cast<std::uint32_t>(m.head + n);
    m.len -= static_cast<std::uint32_t>(n);
    return {};
}
// The fast paths: this thread's cache for this pool has an id (alloc) or room (free). No atomic
// operation, no call out of line in release builds.
inline Result<PacketRef> PacketPool::try_alloc(SizeClass c) noexcept {
    const auto k = static_cast<std::size_t>(c);
    detail::PoolThreadCache* tc = detail::t_pool_hint;
    if (tc != nullptr && tc->uid == uid_ && tc->count[k] != 0) [[likely]] {
        const std::uint32_t id = tc->ids[k][--tc->count[k]];
        if constexpr (kChecks) check_alloc(id);
        init_meta(id, c);
        return PacketRef(this, id);
    }
    return try_alloc_slow(c);
}

inline void PacketPool::free_id(std::uint32_t id) noexcept {
    if constexpr (kChecks) check_free(id);
    const auto k = static_cast<std::size_t>(class_of(id));
    detail::PoolThreadCache* tc = detail::t_pool_hint;
    if (tc != nullptr && tc->uid == uid_ && tc->count[k] != kCacheSize) [[likely]] {
        tc->ids[k][tc->count[k]++] = id;
        return;
    }
    free_slow(id);
}

inline void PacketRef::reset() noexcept {
    if (pool_ != nullptr) {
        pool_->free_id(id_);
        pool_ = nullptr;
    }
}

}  // namespace slipway
