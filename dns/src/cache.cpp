// dns::Cache: FIFO slot ring, circular message arena and open-addressing index (see cache.hpp).
#include "slipway/dns/cache.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "slipway/core/open_addressing.hpp"

namespace slipway::dns {

namespace {
// Beyond this the index would need more than 2^31 buckets; no forwarder caches that much.
constexpr std::size_t kMaxEntriesLimit = std::size_t{1} << 30;
}  // namespace

Cache::Cache(const CacheConfig& cfg) : cfg_(cfg) {
    cfg_.max_entries = std::clamp<std::size_t>(cfg_.max_entries, 1, kMaxEntriesLimit);
    cfg_.max_bytes = std::max<std::size_t>(cfg_.max_bytes, kMinUdpSize);
    slots_.resize(cfg_.max_entries);
    index_.resize(std::bit_ceil(2 * cfg_.max_entries));
    mask_ = index_.size() - 1;
    arena_.resize(cfg_.max_bytes);
}

// FNV-1a 64 over the bytes, then mix64 so that the low bits (the bucket) depend on every input
// byte.
std::uint64_t Cache::hash_key(ByteView key) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const std::byte b : key) {
        h ^= static_cast<std::uint64_t>(b);
        h *= 0x100000001b3ull;
    }
    return mix64(h);
}

// ------------------------------------------------------------------------------------- index
// At most max_entries buckets are used out of at least twice as many, so every probe ends on an
// empty bucket.

std::size_t Cache::find(ByteView key, std::uint64_t h) const noexcept {
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
        const Bucket& b = index_[i];
        if (b.slot == kNoSlot) return npos;
        if (b.hash != h) continue;
        const Slot& s = slots_[b.slot];
        if (s.key_len == key.size() && std::equal(key.begin(), key.end(), s.key.begin())) return i;
    }
}

std::size_t Cache::find_slot(std::uint32_t slot) const noexcept {
    for (std::size_t i = slots_[slot].hash & mask_;; i = (i + 1) & mask_) {
        if (index_[i].slot == slot) return i;
        if (index_[i].slot == kNoSlot) return npos;  // not indexed: a broken invariant
    }
}

void Cache::index_insert(std::uint64_t h, std::uint32_t slot) noexcept {
    std::size_t i = h & mask_;
    while (index_[i].slot != kNoSlot)
        i = (i + 1) & mask_;
    index_[i] = Bucket{h, slot};
}

// Backward-shift deletion: pull later buckets of the probe run into the hole whenever their home
// bucket does not lie cyclically in (hole, bucket], so every key stays reachable from its home
// without tombstones.
void Cache::index_erase(std::size_t hole) noexcept {
    std::size_t i = hole;
    for (;;) {
        i = (i + 1) & mask_;
        if (index_[i].slot == kNoSlot) break;
        const std::size_t home = index_[i].hash & mask_;
        if (can_fill_hole(hole, i, home, mask_)) {
            index_[hole] = index_[i];
            hole = i;
        }
    }
    index_[hole] = Bucket{};
}

void Cache::kill(std::size_t bucket) noexcept {
    Slot& s = slots_[index_[bucket].slot];
    s.live = false;
    --live_entries_;
    live_bytes_ -= s.len;
    index_erase(bucket);
}

// -------------------------------------------------------------------------------------- ring

void Cache::evict_oldest(std::int64_t now_ms) noexcept {
    const Slot& s = slots_[head_];
    if (s.live) {
        // Pressure and staleness are told apart: an entry past its TTL would have gone anyway.
        (now_ms >= s.expires_ms ? counters_.expired : counters_.evicted).inc();
        const std::size_t b = find_slot(static_cast<std::uint32_t>(head_));
        if (b != npos) kill(b);
    }
    head_ = head_ + 1 == slots_.size() ? 0 : head_ + 1;
    --used_;
    if (used_ == 0) write_ = 0;
}

// Messages occupy one run of the arena, oldest first: [begin, write_) when unwrapped, or
// [begin, end of the tail) then [0, write_) when wrapped. Every message is at least one byte, so
// with entries present write_ > begin exactly when unwrapped.
std::size_t Cache::make_room(std::size_t len, std::int64_t now_ms) noexcept {
    const std::size_t cap = arena_.size();
    for (;;) {
        if (used_ == slots_.size()) {
            evict_oldest(now_ms);
            continue;
        }
        if (used_ == 0) {
            write_ = 0;
            return 0;  // the caller checked len <= cap
        }
        const std::size_t begin = slots_[head_].offset;
        if (write_ > begin) {
            if (cap - write_ >= len) return write_;
            if (begin >= len) return 0;  // skip the short tail and wrap
        } else if (begin - write_ >= len) {
            return write_;
        }
        evict_oldest(now_ms);
    }
}

// -------------------------------------------------------------------------------------- API

std::optional<std::uint32_t> Cache::cache_ttl(const MessageView& answer) const noexcept {
    const Header h = answer.header();
    // Only responses to standard queries, which the caller keys by their question.
    if (!h.qr || h.opcode != Opcode::query || !answer.question()) return std::nullopt;
    // RFC 2181 §9: a truncated answer may hold a partial RRset; the client must retry over TCP.
    if (h.tc) return std::nullopt;
    // RFC 2308 §7.1 allows caching SERVFAIL for up to five minutes; we forward it uncached, as
    // every other error rcode (the extended ones of RFC 6891 §6.1.3 included).
    const Rcode rc = answer.rcode();
    if (rc != Rcode::noerror && rc != Rcode::nxdomain) return std::nullopt;
    // RFC 2181 §8: min_ttl() already reads top-bit TTLs as 0. It bounds both branches: a cached
    // message must not outlive any record in it (a CNAME before a NODATA, say).
    const std::optional<std::uint32_t> least = answer.min_ttl();
    std::uint32_t ttl = 0;
    if (answer.is_negative()) {
        // RFC 2308 §5: min(SOA TTL, SOA MINIMUM); without an SOA a negative answer is not cached.
        const std::optional<std::uint32_t> neg = answer.negative_ttl();
        if (!neg) return std::nullopt;
        ttl = std::min(*neg, cfg_.max_negative_ttl);
    } else {
        if (!least) return std::nullopt;  // no records: cannot happen for a positive answer
        ttl = std::min(*least, cfg_.max_ttl);
    }
    if (least) ttl = std::min(ttl, *least);
    if (ttl == 0) return std::nullopt;  // RFC 1035 §3.2.1: TTL 0 means use once, do not cache
    return ttl;
}

bool Cache::store(ByteView key, const MessageView& answer, std::int64_t now_ms) noexcept {
    const std::size_t len = answer.size();
    const std::optional<std::uint32_t> ttl = cache_ttl(answer);
    if (key.size() > kMaxCacheKeyLen || len == 0 || len > arena_.size() || !ttl) {
        counters_.uncacheable.inc();
        return false;
    }
    const std::uint64_t h = hash_key(key);
    if (const std::size_t old = find(key, h); old != npos) kill(old);  // reclaimed by the FIFO

    const std::size_t off = make_room(len, now_ms);
    std::size_t idx = head_ + used_;
    if (idx >= slots_.size()) idx -= slots_.size();
    ++used_;
    Slot& s = slots_[idx];
    s.hash = h;
    s.stored_ms = now_ms;
    s.expires_ms = now_ms + std::int64_t{*ttl} * 1000;
    s.offset = off;
    s.len = len;
    s.live = true;
    s.key_len = static_cast<std::uint16_t>(key.size());
    std::copy(key.begin(), key.end(), s.key.begin());
    std::memcpy(arena_.data() + off, answer.bytes().data(), len);
    write_ = off + len;

    index_insert(h, static_cast<std::uint32_t>(idx));
    ++live_entries_;
    live_bytes_ += len;
    counters_.inserts.inc();
    return true;
}

std::optional<std::size_t> Cache::lookup(ByteView key, std::uint16_t id, std::int64_t now_ms,
                                         MutByteView out) noexcept {
    const std::size_t b = key.size() <= kMaxCacheKeyLen ? find(key, hash_key(key)) : npos;
    if (b == npos) {
        counters_.misses.inc();
        return std::nullopt;
    }
    const Slot& s = slots_[index_[b].slot];
    if (now_ms >= s.expires_ms) {
        kill(b);
        counters_.expired.inc();
        counters_.misses.inc();
        return std::nullopt;
    }
    if (out.size() < s.len) {
        counters_.misses.inc();
        return std::nullopt;
    }
    const std::size_t len = s.len;
    std::memcpy(out.data(), arena_.data() + s.offset, len);
    // Fresh means now < expires = stored + TTL * 1000, so the age is below the TTL and fits. A
    // clock that stepped back ages nothing.
    const std::int64_t age_ms = now_ms > s.stored_ms ? now_ms - s.stored_ms : 0;
    const auto age = static_cast<std::uint32_t>(age_ms / 1000);
    if (!rewrite_id_and_age(out.first(len), id, age)) {
        // The bytes parsed when stored and the arena is ours: this means memory corruption.
        kill(b);
        counters_.misses.inc();
        return std::nullopt;
    }
    counters_.hits.inc();
    return len;
}

void Cache::clear() noexcept {
    std::fill(index_.begin(), index_.end(), Bucket{});
    for (Slot& s : slots_)
        s.live = false;
    head_ = used_ = write_ = 0;
    live_entries_ = live_bytes_ = 0;
}

}  // namespace slipway::dns
