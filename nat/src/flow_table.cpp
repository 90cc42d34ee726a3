// FlowTable: see flow_table.hpp for the theory of operation.
#include "slipway/nat/flow_table.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <vector>

#include "slipway/core/open_addressing.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace slipway::nat {

namespace {

// One index slot: the whole key, its hash and the id, in 32 bytes, so a hit at home reads one
// cache line (over-aligned to 32 bytes, a slot never straddles two lines).
struct alignas(32) Slot {
    std::uint32_t guest_ip = 0;
    std::uint32_t remote_ip = 0;
    std::uint16_t guest_port = 0;
    std::uint16_t remote_port = 0;
    std::uint8_t proto = 0;
    std::uint8_t used = 0;
    std::uint16_t pad = 0;
    std::uint64_t hash = 0;
    FlowId id = kNoFlow;

    [[nodiscard]] bool matches(const FlowKey& k, std::uint64_t h) const noexcept {
        return hash == h && guest_ip == k.guest_ip.v && remote_ip == k.remote_ip.v &&
               guest_port == k.guest_port && remote_port == k.remote_port &&
               proto == static_cast<std::uint8_t>(k.proto);
    }
};
static_assert(sizeof(Slot) == 32);

}  // namespace

std::uint64_t FlowKey::hash() const noexcept {
    const std::uint64_t a = (std::uint64_t{guest_ip.v} << 32) | remote_ip.v;
    const std::uint64_t b = (std::uint64_t{guest_port} << 24) | (std::uint64_t{remote_port} << 8) |
                            static_cast<std::uint8_t>(proto);
    return mix64(a ^ (b * 0x9e3779b97f4a7c15ULL));  // the packed tuple, finalised
}

namespace {

// A slot's tag: 0 for empty, else the top 7 bits of its hash with the high bit set, so 16 tags
// (one SSE2 compare) tell which of 16 slots may hold a key and where the probe run ends.
constexpr std::size_t kGroup = 16;
std::uint8_t tag_of(std::uint64_t h) noexcept {
    return static_cast<std::uint8_t>(0x80 | (h >> 57));
}

// Bit i set when p[i] == t, for the 16 tags at p.
std::uint32_t match16(const std::uint8_t* p, std::uint8_t t) noexcept {
#if defined(__SSE2__)
    const __m128i g = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return static_cast<std::uint32_t>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(g, _mm_set1_epi8(static_cast<char>(t)))));
#else
    std::uint32_t m = 0;
    for (std::size_t i = 0; i < kGroup; ++i)
        m |= (p[i] == t ? 1u : 0u) << i;
    return m;
#endif
}

struct CacheEntry {
    FlowId id = kNoFlow;
    std::uint32_t hash = 0;  // low half of the key's hash: most misses end here, without a load
};

}  // namespace

struct FlowTable::Impl {
    std::vector<Slot> slots;  // the index, a power of two >= 2 * capacity (and >= kGroup)
    // One tag per slot, then the first kGroup tags again, so a 16-tag load at any slot reads the
    // probe run across the wrap without a second load.
    std::vector<std::uint8_t> tags;
    std::size_t mask = 0;
    std::vector<FlowKey> keys;           // by id
    std::vector<std::uint32_t> slot_of;  // by id: where its index slot is (kept on shifts)
    std::vector<int> fd_of;              // by id: bound host fd, -1 when none
    std::vector<FlowId> by_fd;           // by fd
    std::vector<FlowId> free_ids;
    std::vector<CacheEntry> cache;  // direct-mapped, by hash
    std::size_t cache_mask = 0;
    std::uint32_t size = 0;
    std::uint32_t capacity = 0;
    FlowTableCounters counters;

    [[nodiscard]] std::size_t home(std::uint64_t h) const noexcept {
        return static_cast<std::size_t>(h) & mask;
    }
    [[nodiscard]] std::size_t cache_index(std::uint64_t h) const noexcept {
        return static_cast<std::size_t>(h >> 40) & cache_mask;
    }

    void set_tag(std::size_t i, std::uint8_t t) noexcept {
        tags[i] = t;
        if (i < kGroup) tags[slots.size() + i] = t;
    }

    // Linear probing from the home slot, 16 tags at a time: candidates are the tag matches
    // before the first empty slot, which ends the run.
    [[nodiscard]] FlowId probe(const FlowKey& k, std::uint64_t h) const noexcept {
        const std::uint8_t t = tag_of(h);
        for (std::size_t i = home(h);; i = (i + kGroup) & mask) {
            const std::uint32_t empty = match16(&tags[i], 0);
            std::uint32_t cand = match16(&tags[i], t);
            if (empty != 0) cand &= (empty & (0u - empty)) - 1;  // only before the first empty
            for (; cand != 0; cand &= cand - 1) {
                const Slot& s =
                    slots[(i + static_cast<std::size_t>(std::countr_zero(cand))) & mask];
                if (s.matches(k, h)) return s.id;
            }
            if (empty != 0) return kNoFlow;
        }
    }

    FlowId find(const FlowKey& k, std::uint64_t h) noexcept {
        CacheEntry& c = cache[cache_index(h)];
        if (c.id != kNoFlow && c.hash == static_cast<std::uint32_t>(h) && keys[c.id] == k)
            return c.id;
        const FlowId id = probe(k, h);
        if (id != kNoFlow) c = CacheEntry{id, static_cast<std::uint32_t>(h)};
        return id;
    }

    void place(std::size_t i, const FlowKey& k, std::uint64_t h, FlowId id) noexcept {
        Slot& s = slots[i];
        s.guest_ip = k.guest_ip.v;
        s.remote_ip = k.remote_ip.v;
        s.guest_port = k.guest_port;
        s.remote_port = k.remote_port;
        s.proto = static_cast<std::uint8_t>(k.proto);
        s.used = 1;
        s.hash = h;
        s.id = id;
        set_tag(i, tag_of(h));
        slot_of[id] = static_cast<std::uint32_t>(i);
    }

    // Removes index slot i and shifts the rest of its probe run back over the hole (Knuth's
    // algorithm R for linear probing): an entry moves unless its home lies cyclically in
    // (hole, its position].
    void remove_slot(std::size_t i) noexcept {
        for (std::size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
            const Slot& s = slots[j];
            if (s.used == 0) break;
            if (!can_fill_hole(i, j, home(s.hash), mask)) continue;
            slots[i] = s;
            set_tag(i, tags[j]);
            slot_of[s.id] = static_cast<std::uint32_t>(i);
            i = j;
        }
        slots[i] = Slot{};
        set_tag(i, 0);
    }
};

FlowTable::FlowTable(const FlowTableConfig& cfg) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.capacity = std::max<std::uint32_t>(cfg.capacity, 1);
    const std::size_t n_slots = std::max(kGroup, std::bit_ceil(std::size_t{m.capacity} * 2));
    m.slots.assign(n_slots, Slot{});
    m.tags.assign(n_slots + kGroup, 0);
    m.mask = n_slots - 1;
    m.keys.assign(m.capacity, FlowKey{});
    m.slot_of.assign(m.capacity, 0);
    m.fd_of.assign(m.capacity, -1);
    m.by_fd.assign(cfg.max_fd, kNoFlow);
    m.free_ids.resize(m.capacity);
    // Lowest ids first: the engine's per-flow arrays stay dense while few flows are open.
    for (std::uint32_t i = 0; i < m.capacity; ++i)
        m.free_ids[i] = m.capacity - 1 - i;
    const std::size_t n_cache = std::bit_ceil(std::max<std::size_t>(cfg.cache_slots, 1));
    m.cache.assign(n_cache, CacheEntry{});
    m.cache_mask = n_cache - 1;
}

FlowTable::~FlowTable() = default;

FlowId FlowTable::find(const FlowKey& key) noexcept {
    return impl_->find(key, key.hash());
}

void FlowTable::find_burst(std::span<const FlowKey> keys, std::span<FlowId> out) noexcept {
    Impl& m = *impl_;
    constexpr std::size_t kChunk = 32;
    const std::size_t n = std::min(keys.size(), out.size());
    std::array<std::uint64_t, kChunk> hashes{};
    std::array<std::uint32_t, kChunk> cand{};
    for (std::size_t base = 0; base < n; base += kChunk) {
        const std::size_t c = std::min(kChunk, n - base);
        // Pass 1: hash everything and start every home tag line on its way.
        for (std::size_t i = 0; i < c; ++i) {
            hashes[i] = keys[base + i].hash();
            __builtin_prefetch(&m.tags[m.home(hashes[i])]);
        }
        // Pass 2: match the tags (lines mostly there by now); start the first candidate slot of
        // each on its way. A miss usually ends here, having read one line.
        for (std::size_t i = 0; i < c; ++i) {
            const std::size_t h = m.home(hashes[i]);
            const std::uint32_t empty = match16(&m.tags[h], 0);
            std::uint32_t found = match16(&m.tags[h], tag_of(hashes[i]));
            if (empty != 0) found &= (empty & (0u - empty)) - 1;
            cand[i] = found;
            if (found != 0)
                __builtin_prefetch(
                    &m.slots[(h + static_cast<std::size_t>(std::countr_zero(found))) & m.mask]);
        }
        // Pass 3: compare keys. Runs longer than one tag group (rare at load <= 1/2) and tag
        // collisions take the ordinary probe.
        for (std::size_t i = 0; i < c; ++i) {
            const std::size_t h = m.home(hashes[i]);
            const bool run_ends = match16(&m.tags[h], 0) != 0;
            FlowId id = kNoFlow;
            bool decided = run_ends;
            for (std::uint32_t f = cand[i]; f != 0; f &= f - 1) {
                const Slot& s =
                    m.slots[(h + static_cast<std::size_t>(std::countr_zero(f))) & m.mask];
                if (s.matches(keys[base + i], hashes[i])) {
                    id = s.id;
                    decided = true;
                    break;
                }
            }
            out[base + i] = decided ? id : m.probe(keys[base + i], hashes[i]);
        }
    }
}

Result<FlowId> FlowTable::insert(const FlowKey& key) noexcept {
    Impl& m = *impl_;
    const std::uint64_t h = key.hash();
    std::size_t i = m.home(h);
    for (; m.slots[i].used != 0; i = (i + 1) & m.mask)
        if (m.slots[i].matches(key, h)) return fail(Errc::invalid_argument);
    if (m.free_ids.empty()) {
        m.counters.full.inc();
        return fail(Errc::too_large);
    }
    const FlowId id = m.free_ids.back();
    m.free_ids.pop_back();
    m.keys[id] = key;
    m.place(i, key, h, id);
    ++m.size;
    m.counters.inserts.inc();
    return id;
}

void FlowTable::erase(FlowId id) noexcept {
    Impl& m = *impl_;
    if (!in_use(id)) return;
    const std::uint64_t h = m.slots[m.slot_of[id]].hash;
    CacheEntry& c = m.cache[m.cache_index(h)];
    if (c.id == id) c = CacheEntry{};
    if (const int fd = m.fd_of[id]; fd >= 0) {
        m.by_fd[static_cast<std::size_t>(fd)] = kNoFlow;
        m.fd_of[id] = -1;
    }
    m.remove_slot(m.slot_of[id]);
    m.free_ids.push_back(id);
    --m.size;
    m.counters.erases.inc();
}

bool FlowTable::bind_fd(FlowId id, int fd) noexcept {
    Impl& m = *impl_;
    if (!in_use(id) || fd < 0 || static_cast<std::size_t>(fd) >= m.by_fd.size()) return false;
    if (const int old = m.fd_of[id]; old >= 0) m.by_fd[static_cast<std::size_t>(old)] = kNoFlow;
    m.by_fd[static_cast<std::size_t>(fd)] = id;
    m.fd_of[id] = fd;
    return true;
}

FlowId FlowTable::by_fd(int fd) const noexcept {
    const Impl& m = *impl_;
    if (fd < 0 || static_cast<std::size_t>(fd) >= m.by_fd.size()) return kNoFlow;
    return m.by_fd[static_cast<std::size_t>(fd)];
}

const FlowKey& FlowTable::key(FlowId id) const noexcept {
    return impl_->keys[id];
}

bool FlowTable::in_use(FlowId id) const noexcept {
    const Impl& m = *impl_;
    if (id >= m.capacity) return false;
    const Slot& s = m.slots[m.slot_of[id]];
    return s.used != 0 && s.id == id;
}

std::uint32_t FlowTable::size() const noexcept {
    return impl_->size;
}

std::uint32_t FlowTable::capacity() const noexcept {
    return impl_->capacity;
}

const FlowTableCounters& FlowTable::counters() const noexcept {
    return impl_->counters;
}

}  // namespace slipway::nat
