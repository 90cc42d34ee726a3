// A fixed-capacity cache of whole upstream DNS answers for the forwarder, sized at start-up.
//
// Theory of operation. The forwarder asks the cache once per guest query and offers it every
// validated upstream answer, so store() and lookup() run per packet: they never allocate, never
// throw and never take time proportional to the cache size. The memory is two fixed arrays made
// in the constructor:
//
//  - a ring of `max_entries` slots, used in insertion order (FIFO). A slot holds the key, the hash,
//    the time it was stored and the time it expires, and where its message lives in the arena;
//  - one circular byte arena of `max_bytes`, written in the same FIFO order, like a log. A message
//    is stored contiguously: when the tail of the arena is too short for it, the tail is skipped
//    and the write wraps to offset 0.
//
// To insert, the oldest entries are evicted until there is both a free slot and contiguous room
// for the bytes. So the cache is bounded in entries and in bytes without an allocator and without
// fragmentation, and the cost of an insert is the number of entries it evicts (amortised O(1)).
// FIFO rather than LRU: a hit does not move an entry, so lookup() writes nothing but the caller's
// buffer and the counters; DNS TTLs bound staleness anyway, and a popular name evicted early is
// fetched again within one upstream round trip. Replacing a key, or finding an expired entry on
// lookup, only removes the entry from the index ("dead"); its slot and bytes are reclaimed when
// the FIFO reaches them. Expired entries nobody asks for are reclaimed the same way.
//
// The index is an open-addressing hash table of at least 2 * max_entries buckets (load factor at
// most 1/2), linear probing and backward-shift deletion, so no tombstones build up. A bucket keeps
// the key's 64-bit hash beside the slot number, so a probe compares keys only on a full hash match.
//
// What is cached (store()): NOERROR and NXDOMAIN responses that are not truncated, for the lesser
// of their TTLs and a configured cap; see store() for the RFC references of each branch. What is
// served (lookup()): the stored bytes with the caller's ID and every TTL aged by the whole seconds
// spent in the cache, so a client never caches a record past its original expiry (RFC 1034 §3.6).
//
// Time is the caller's monotonic clock in milliseconds. Single-threaded: one forwarder owns it;
// the counters may be read from other threads (slipway::Counter).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/dns/message.hpp"

namespace slipway::dns {

// The forwarder's key is question_key() plus a flags byte (DO, CD, ...); a few bytes spare.
inline constexpr std::size_t kMaxCacheKeyLen = kMaxKeyLen + 4;

struct CacheConfig {
    std::size_t max_entries = 4096;         // at least 1 (raised to 1)
    std::size_t max_bytes = 4u << 20;       // total stored message bytes, at least 512 (raised)
    std::uint32_t max_ttl = 86400;          // positive answers are cached at most this long (s)
    std::uint32_t max_negative_ttl = 3600;  // RFC 2308 §5 cap for negative answers (s)
};

struct CacheCounters {
    Counter inserts;      // answers stored (a replacement counts as one insert)
    Counter hits;         // lookups answered from the cache
    Counter misses;       // lookups not answered: absent, expired, or `out` too short
    Counter expired;      // entries dropped because their TTL ran out (on lookup or eviction)
    Counter evicted;      // fresh entries dropped to make room for a newer one
    Counter uncacheable;  // answers store() refused (rcode, TC, TTL 0, no SOA, size, key)

    template <class F>
    void for_each(F&& f) const {
        f("inserts", inserts);
        f("hits", hits);
        f("misses", misses);
        f("expired", expired);
        f("evicted", evicted);
        f("uncacheable", uncacheable);
    }
};

class Cache {
  public:
    // Every allocation happens here. Out-of-range sizes are raised to their minimum (see
    // CacheConfig); config() reports what is in effect.
    explicit Cache(const CacheConfig& cfg);

    // Stores a validated upstream answer under `key` (opaque bytes, at most kMaxCacheKeyLen),
    // replacing an older entry for the key. Returns whether it was stored; refusals count as
    // `uncacheable` and leave an older entry for the key in place. Not cached: non-responses and
    // answers without a question, TC answers (RFC 2181 §9), rcodes other than NOERROR and NXDOMAIN
    // (RFC 2308 §7 allows caching SERVFAIL briefly; we do not), negative answers without an SOA
    // (RFC 2308 §5), answers whose TTL comes out 0, and answers larger than max_bytes.
    // TTL: a negative answer (MessageView::is_negative()) lives min(SOA TTL, SOA MINIMUM) (RFC
    // 2308 §5) capped at max_negative_ttl; a positive one the least TTL of its records capped at
    // max_ttl; neither outlives any record it carries. TTLs with the top bit set count as 0 (RFC
    // 2181 §8).
    bool store(ByteView key, const MessageView& answer, std::int64_t now_ms) noexcept;

    // On a fresh hit: copies the stored message into `out`, sets its ID to `id`, ages every TTL by
    // the whole seconds since it was stored, and returns its length. An entry expires at exactly
    // stored + TTL. nullopt (counted as a miss) when the key is absent, when the entry has expired
    // (it is removed then, and also counted as expired), or when `out` is shorter than the message
    // (the entry stays).
    [[nodiscard]] std::optional<std::size_t> lookup(ByteView key, std::uint16_t id,
                                                    std::int64_t now_ms, MutByteView out) noexcept;

    // Drops every entry; counters are kept.
    void clear() noexcept;

    // Live entries (reachable by lookup, possibly expired but not yet found so) and their bytes.
    [[nodiscard]] std::size_t entries() const noexcept { return live_entries_; }
    [[nodiscard]] std::size_t bytes() const noexcept { return live_bytes_; }
    [[nodiscard]] const CacheCounters& counters() const noexcept { return counters_; }
    [[nodiscard]] const CacheConfig& config() const noexcept { return cfg_; }

  private:
    static constexpr std::uint32_t kNoSlot = 0xffffffffu;

    struct Slot {
        std::uint64_t hash = 0;
        std::int64_t stored_ms = 0;
        std::int64_t expires_ms = 0;  // fresh while now < expires_ms
        std::size_t offset = 0;       // of the message in the arena
        std::size_t len = 0;          // message bytes, > 0
        bool live = false;            // in the index
        std::uint16_t key_len = 0;
        std::array<std::byte, kMaxCacheKeyLen> key{};
    };
    struct Bucket {
        std::uint64_t hash = 0;
        std::uint32_t slot = kNoSlot;  // kNoSlot: empty
    };

    [[nodiscard]] static std::uint64_t hash_key(ByteView key) noexcept;
    [[nodiscard]] std::size_t find(ByteView key, std::uint64_t h) const noexcept;  // or npos
    [[nodiscard]] std::size_t find_slot(std::uint32_t slot) const noexcept;
    void index_insert(std::uint64_t h, std::uint32_t slot) noexcept;
    void index_erase(std::size_t bucket) noexcept;
    void kill(std::size_t bucket) noexcept;  // removes the bucket's entry from the index
    void evict_oldest(std::int64_t now_ms) noexcept;
    // Evicts until `len` bytes fit contiguously beside a free slot; returns the arena offset.
    [[nodiscard]] std::size_t make_room(std::size_t len, std::int64_t now_ms) noexcept;
    [[nodiscard]] std::optional<std::uint32_t> cache_ttl(const MessageView& answer) const noexcept;

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    CacheConfig cfg_;
    std::vector<Slot> slots_;       // FIFO ring, cfg_.max_entries
    std::vector<Bucket> index_;     // power of two >= 2 * max_entries
    std::vector<std::byte> arena_;  // cfg_.max_bytes
    std::size_t mask_ = 0;          // index_.size() - 1
    std::size_t head_ = 0;          // oldest slot
    std::size_t used_ = 0;          // slots in the ring, live or dead
    std::size_t write_ = 0;         // arena offset just past the newest message
    std::size_t live_entries_ = 0;
    std::size_t live_bytes_ = 0;
    CacheCounters counters_;
};

}  // namespace slipway::dns
