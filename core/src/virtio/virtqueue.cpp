// Split virtqueue, device side (virtio 1.2 §2.7): guest memory translation, the chain walk with
// every guest-supplied index, length and address checked, the used ring and notification
// suppression.
#include "slipway/core/virtio/virtqueue.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "slipway/core/bytes.hpp"
#include "slipway/core/log.hpp"

namespace slipway::virtio {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

// Field offsets in the rings (§2.7.6 available ring, §2.7.8 used ring).
constexpr std::size_t kRingFlags = 0;
constexpr std::size_t kRingIdx = 2;
constexpr std::size_t kRingEntries = 4;
constexpr std::size_t kAvailEntrySize = 2;
constexpr std::size_t kUsedElemSize = 8;  // le32 id, le32 len
// The `next` field is 16 bits, so no chain can reach past entry 65535 of an indirect table.
constexpr std::uint32_t kMaxIndirectEntries = 65536;
// The layouts of §2.7.5 (struct virtq_desc), §2.7.6 and §2.7.8 with their event-idx trailers.
static_assert(desc_table_bytes(1) == 16);
static_assert(avail_ring_bytes(256) == 2 + 2 + 2 * 256 + 2);
static_assert(used_ring_bytes(256) == 2 + 2 + 8 * 256 + 2);
static_assert(kRingEntries + kUsedElemSize * 256 + 2 == used_ring_bytes(256));
// broken_reason_ keeps this much room from start() on, so mark_broken() does not allocate.
constexpr std::size_t kReasonCapacity = 128;

// Virtio 1.x rings are little-endian whatever the host (§2.7); the atomic accesses below load and
// store native integers, so they convert on the way.
constexpr std::uint16_t le16(std::uint16_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        return v;
    } else {
        return __builtin_bswap16(v);
    }
}
constexpr std::uint32_t le32(std::uint32_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        return v;
    } else {
        return __builtin_bswap32(v);
    }
}

// 16-bit ring fields. start() checked that the rings are 2- and 4-byte aligned both as guest
// addresses and as host pointers, so these are naturally aligned single-copy atomic accesses.
template <int Order>
std::uint16_t load16(const std::byte* p) noexcept {
    return le16(__atomic_load_n(reinterpret_cast<const std::uint16_t*>(p), Order));
}
template <int Order>
void store16(std::byte* p, std::uint16_t v) noexcept {
    __atomic_store_n(reinterpret_cast<std::uint16_t*>(p), le16(v), Order);
}

std::uint64_t decode_le(const std::byte* p, std::size_t n) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = n; i-- > 0;)
        v = (v << 8) | static_cast<std::uint64_t>(p[i]);
    return v;
}

struct Desc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
};

// struct virtq_desc (§2.7.5). One snapshot per descriptor: the guest may rewrite the table while
// we walk it, so every check and every use below sees the same copy.
Desc read_desc(const std::byte* p) noexcept {
    std::array<std::byte, kDescSize> b;
    std::memcpy(b.data(), p, kDescSize);
    return Desc{decode_le(b.data(), 8), static_cast<std::uint32_t>(decode_le(b.data() + 8, 4)),
                load_le16(b.data() + 12), load_le16(b.data() + 14)};
}

// [a, a + len) inside [base, base + size)? Written so that nothing can overflow: the offset is
// taken first, then compared against what is left of the region.
bool within(std::uint64_t base, std::uint64_t size, std::uint64_t a, std::uint64_t len,
            std::uint64_t& off) noexcept {
    if (a < base) return false;
    off = a - base;
    return off < size && len <= size - off;
}

// A last byte at base + size - 1 that is representable: the range does not wrap past 2^64.
bool fits(std::uint64_t base, std::uint64_t size) noexcept {
    return size - 1 <= kU64Max - base;
}

// Walks the chain starting at `head` of `table` (a `size`-entry descriptor table) into `out`.
// Returns nullptr when the chain is well-formed (then `too_many` says whether it had more
// segments than Chain::kMaxSegments), else the reason the queue must be marked broken.
const char* walk_chain(const GuestMemory& mem, const std::byte* table, std::uint32_t size,
                       bool indirect_ok, std::uint16_t head, Chain& out, bool& too_many) noexcept {
    out.head = head;
    too_many = false;
    std::size_t n_read = 0;
    std::size_t n_write = 0;
    std::uint64_t read_len = 0;
    std::uint64_t write_len = 0;
    std::uint32_t table_n = size;
    std::uint32_t visited = 0;
    std::uint32_t idx = head;
    bool in_indirect = false;
    bool seen_write = false;
    for (;;) {
        // §2.7.5.3.1: no chain is longer than its table (the queue size, or an indirect table's
        // entry count), so one step more can only be a loop.
        if (++visited > table_n) return "descriptor chain loops (longer than its table)";
        const Desc d = read_desc(table + kDescSize * idx);

        if ((d.flags & kDescFIndirect) != 0) {
            // §2.7.5.3.1: only with the feature, one table per chain (never from inside a table),
            // not combined with NEXT. Its WRITE flag is ignored (§2.7.5.3.2).
            if (!indirect_ok) return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
            if (in_indirect) return "nested indirect descriptor";
            if ((d.flags & kDescFNext) != 0) return "indirect descriptor with NEXT set";
            if (d.len == 0 || d.len % kDescSize != 0)
                return "indirect table length is not a non-zero multiple of 16";
            const std::byte* t = mem.translate(d.addr, d.len);
            if (t == nullptr) return "indirect table outside guest memory";
            table = t;
            table_n = std::min<std::uint32_t>(d.len / kDescSize, kMaxIndirectEntries);
            idx = 0;  // §2.7.5.3: the table's chain starts at its first entry
            visited = 0;
            in_indirect = true;
            continue;
        }

        const bool writable = (d.flags & kDescFWrite) != 0;
        // §2.7.4.2: device-readable buffers come before device-writable ones.
        if (!writable && seen_write) return "readable descriptor after a writable one";
        seen_write = seen_write || writable;
        if (d.len != 0 && !fits(d.addr, d.len)) return "descriptor address range wraps past 2^64";

        // A buffer may run from one region into an adjacent one: one segment per region.
        std::uint64_t addr = d.addr;
        std::uint64_t left = d.len;
        while (left != 0) {
            std::uint64_t got = 0;
            std::byte* p = mem.translate_prefix(addr, left, got);
            if (p == nullptr || got == 0) return "descriptor outside guest memory";
            const std::size_t n = n_read + n_write;
            if (n < Chain::kMaxSegments) {
                // got <= d.len, a 32-bit value.
                out.seg[n] = Segment{p, static_cast<std::uint32_t>(got)};
                if (writable) {
                    ++n_write;
                    write_len += got;
                } else {
                    ++n_read;
                    read_len += got;
                }
            } else {
                // Keep walking: the chain is dropped alone only if the rest is well-formed too.
                too_many = true;
            }
            addr += got;
            left -= got;
        }

        if ((d.flags & kDescFNext) == 0) break;
        idx = d.next;
        if (idx >= table_n) return "next descriptor index out of range";
    }
    constexpr std::uint64_t kLenMax = std::numeric_limits<std::uint32_t>::max();
    out.n_read = static_cast<std::uint16_t>(n_read);
    out.n_write = static_cast<std::uint16_t>(n_write);
    out.read_len = static_cast<std::uint32_t>(std::min(read_len, kLenMax));
    out.write_len = static_cast<std::uint32_t>(std::min(write_len, kLenMax));
    return nullptr;
}

}  // namespace

// ---- GuestMemory -------------------------------------------------------------------------------

Result<void> GuestMemory::add(const MemRegion& r) noexcept {
    if (r.size == 0 || r.host == nullptr) return fail(Errc::invalid_argument);
    if (!fits(r.guest_addr, r.size) || !fits(r.user_addr, r.size) ||
        !fits(reinterpret_cast<std::uintptr_t>(r.host), r.size))
        return fail(Errc::invalid_argument);
    for (std::size_t i = 0; i < n_; ++i) {
        const MemRegion& o = regions_[i];
        // Inclusive last bytes: fits() made them representable.
        const std::uint64_t r_last = r.guest_addr + (r.size - 1);
        const std::uint64_t o_last = o.guest_addr + (o.size - 1);
        if (r.guest_addr <= o_last && o.guest_addr <= r_last) return fail(Errc::invalid_argument);
    }
    if (n_ == kMaxRegions) return fail(Errc::too_large);
    regions_[n_++] = r;
    return {};
}

std::byte* GuestMemory::translate(std::uint64_t gpa, std::uint64_t len) const noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
        const MemRegion& r = regions_[i];
        std::uint64_t off = 0;
        if (within(r.guest_addr, r.size, gpa, len, off)) return r.host + off;
    }
    return nullptr;
}

std::byte* GuestMemory::translate_user(std::uint64_t uva, std::uint64_t len) const noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
        const MemRegion& r = regions_[i];
        std::uint64_t off = 0;
        if (within(r.user_addr, r.size, uva, len, off)) return r.host + off;
    }
    return nullptr;
}

std::byte* GuestMemory::translate_prefix(std::uint64_t gpa, std::uint64_t len,
                                         std::uint64_t& got) const noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
        const MemRegion& r = regions_[i];
        std::uint64_t off = 0;
        if (within(r.guest_addr, r.size, gpa, 0, off)) {
            got = std::min(len, r.size - off);
            return r.host + off;
        }
    }
    got = 0;
    return nullptr;
}

// ---- gather / scatter --------------------------------------------------------------------------

namespace {

template <class Copy>
std::size_t copy_segments(std::span<const Segment> segs, std::size_t offset, std::size_t want,
                          Copy&& copy) noexcept {
    std::size_t done = 0;
    for (const Segment& s : segs) {
        if (done == want) break;
        if (offset >= s.len) {
            offset -= s.len;
            continue;
        }
        const std::size_t n = std::min<std::size_t>(s.len - offset, want - done);
        copy(s.ptr + offset, done, n);
        done += n;
        offset = 0;
    }
    return done;
}

}  // namespace

std::size_t gather(const Chain& c, std::size_t offset, std::span<std::byte> out) noexcept {
    return copy_segments(c.readable(), offset, out.size(),
                         [&](const std::byte* src, std::size_t at, std::size_t n) {
                             std::memcpy(out.data() + at, src, n);
                         });
}

std::size_t scatter(const Chain& c, std::size_t offset, std::span<const std::byte> in) noexcept {
    return copy_segments(c.writable(), offset, in.size(),
                         [&](std::byte* dst, std::size_t at, std::size_t n) {
                             std::memcpy(dst, in.data() + at, n);
                         });
}

// ---- SplitQueue --------------------------------------------------------------------------------

Result<void> SplitQueue::start(const GuestMemory& mem, const Config& cfg, std::string& error) {
    (void)stop();
    broken_ = false;
    broken_reason_.clear();
    broken_reason_.reserve(kReasonCapacity);

    const std::uint32_t n = cfg.size;
    // §2.7: Queue Size is a power of two, at most 32768.
    if (n == 0 || n > kMaxQueueSize || (n & (n - 1)) != 0) {
        error = "queue size " + std::to_string(n) + " is not a power of two from 1 to 32768";
        return fail(Errc::invalid_argument);
    }
    // §2.7 table "Virtqueue Part / Alignment": descriptor table 16, available ring 2, used ring 4.
    if (cfg.desc % 16 != 0 || cfg.avail % 2 != 0 || cfg.used % 4 != 0) {
        error =
            "virtqueue ring addresses are misaligned (descriptor table 16, available ring 2, "
            "used ring 4 bytes)";
        return fail(Errc::invalid_argument);
    }
    auto tr = [&](std::uint64_t a, std::uint64_t len) {
        return cfg.user_addrs ? mem.translate_user(a, len) : mem.translate(a, len);
    };
    std::byte* d = tr(cfg.desc, desc_table_bytes(n));
    std::byte* a = tr(cfg.avail, avail_ring_bytes(n));
    std::byte* u = tr(cfg.used, used_ring_bytes(n));
    if (d == nullptr || a == nullptr || u == nullptr) {
        error = std::string(d == nullptr   ? "descriptor table"
                            : a == nullptr ? "available ring"
                                           : "used ring") +
                " of a " + std::to_string(n) + "-entry queue is not inside one guest memory region";
        return fail(Errc::invalid_argument);
    }
    // The 16-bit ring fields are accessed atomically, which needs the host mapping to keep the
    // guest alignment (it does for page-aligned regions; a caller's odd buffer would not).
    if (reinterpret_cast<std::uintptr_t>(a) % 2 != 0 ||
        reinterpret_cast<std::uintptr_t>(u) % 4 != 0) {
        error = "virtqueue rings are misaligned in host memory";
        return fail(Errc::invalid_argument);
    }

    desc_ = d;
    avail_ = a;
    used_ = u;
    size_ = n;
    event_idx_ = cfg.event_idx;
    indirect_ = cfg.indirect;
    last_avail_ = cfg.last_avail;
    avail_cached_ = cfg.last_avail;  // "empty": the first pop() loads avail->idx
    // Relaxed: the device is used->idx's only writer; the driver has seen exactly this value.
    used_idx_ = load16<__ATOMIC_RELAXED>(used_ + kRingIdx);
    used_published_ = used_idx_;
    inflight_ = 0;
    signalled_used_ = 0;
    signalled_valid_ = false;
    mem_ = &mem;
    return {};
}

std::uint16_t SplitQueue::stop() noexcept {
    mem_ = nullptr;
    desc_ = nullptr;
    avail_ = nullptr;
    used_ = nullptr;
    return last_avail_;
}

void SplitQueue::mark_broken(const char* why) noexcept {
    if (broken_) return;
    broken_ = true;
    broken_reason_.assign(why);  // within the capacity start() reserved: no allocation
    SLW_WARN("virtqueue {}: driver error, queue stopped until reset: {} (size {}, last_avail {})",
             name_.empty() ? std::string_view("(unnamed)") : std::string_view(name_), why, size_,
             last_avail_);
}

bool SplitQueue::reload_avail() noexcept {
    // Acquire: pairs with the driver's release (write barrier, then store) of avail->idx, so the
    // ring entries and descriptors it covers are visible before pop() reads them.
    const std::uint16_t idx = load16<__ATOMIC_ACQUIRE>(avail_ + kRingIdx);
    // Every outstanding chain holds at least one of the `size` descriptors (§2.7.5), so a bigger
    // step is a corrupt index: reading on would hand out ring slots twice.
    if (static_cast<std::uint16_t>(idx - last_avail_) > size_) {
        mark_broken("available index ran more than the queue size ahead");
        return false;
    }
    avail_cached_ = idx;
    return true;
}

PopResult SplitQueue::pop(Chain& out) noexcept {
    if (broken_) return PopResult::broken;
    if (mem_ == nullptr) return PopResult::empty;
    // The cached index may be stale but is safe: everything up to it was published before the
    // acquire load that read it. Reloading only when it says empty keeps a burst of pops off the
    // cache line the driver writes.
    if (avail_cached_ == last_avail_) {
        if (!reload_avail()) return PopResult::broken;
        if (avail_cached_ == last_avail_) return PopResult::empty;
    }
    // Relaxed: ordered after the acquire of avail->idx above (or an earlier one that covered it).
    const std::size_t slot = last_avail_ & (size_ - 1);
    const std::uint16_t head =
        load16<__ATOMIC_RELAXED>(avail_ + kRingEntries + kAvailEntrySize * slot);
    if (head >= size_) {
        mark_broken("available ring names a head index >= queue size");
        return PopResult::broken;
    }
    bool too_many = false;
    if (const char* why = walk_chain(*mem_, desc_, size_, indirect_, head, out, too_many)) {
        mark_broken(why);
        return PopResult::broken;
    }
    ++last_avail_;
    if (inflight_ < kMaxQueueSize) ++inflight_;
    if (too_many) {
        counters_.bad_chains.inc();
        return PopResult::bad_chain;
    }
    counters_.chains.inc();
    return PopResult::ok;
}

void SplitQueue::unpop(std::uint16_t n) noexcept {
    if (!running()) return;
    // Only chains still in flight can be given back, and never so many that more than `size`
    // entries would look pending (the invariant reload_avail() enforces).
    const auto pending = static_cast<std::uint16_t>(avail_cached_ - last_avail_);
    const std::uint32_t room = size_ - std::min<std::uint32_t>(pending, size_);
    const std::uint32_t k = std::min({std::uint32_t{n}, inflight_, room});
    last_avail_ = static_cast<std::uint16_t>(last_avail_ - k);
    inflight_ -= k;
}

std::uint16_t SplitQueue::available() const noexcept {
    if (!running()) return 0;
    // Acquire for the same pairing as reload_avail(); the caller pops next.
    const std::uint16_t idx = load16<__ATOMIC_ACQUIRE>(avail_ + kRingIdx);
    const auto pending = static_cast<std::uint16_t>(idx - last_avail_);
    // A corrupt index is reported by the next pop(), which breaks the queue; until then it must
    // not look like more than a queue's worth.
    return pending > size_ ? static_cast<std::uint16_t>(size_) : pending;
}

void SplitQueue::push_used(std::uint16_t head, std::uint32_t written) noexcept {
    if (!running()) return;
    std::byte* e = used_ + kRingEntries + kUsedElemSize * (used_idx_ & (size_ - 1));
    // Relaxed: the driver reads the element only after its acquire of used->idx, which
    // publish_used() releases. 4-byte aligned: the used ring is (checked in start()).
    __atomic_store_n(reinterpret_cast<std::uint32_t*>(e), le32(head), __ATOMIC_RELAXED);
    __atomic_store_n(reinterpret_cast<std::uint32_t*>(e + 4), le32(written), __ATOMIC_RELAXED);
    ++used_idx_;
    if (inflight_ != 0) --inflight_;
}

void SplitQueue::publish_used() noexcept {
    if (!running()) return;
    // Release: pairs with the driver's acquire (read barrier after loading) of used->idx, making
    // the elements push_used() wrote visible first.
    store16<__ATOMIC_RELEASE>(used_ + kRingIdx, used_idx_);
    used_published_ = used_idx_;
}

bool SplitQueue::should_notify() noexcept {
    if (!running()) return false;
    // §2.7.7: a full fence between our used->idx store and our read of used_event / flags,
    // pairing with the driver's between writing used_event (or clearing NO_INTERRUPT) and
    // re-reading used->idx. Without it each side could read the other's old value and the
    // driver would wait for an interrupt that never comes.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool notify = false;
    if (event_idx_) {
        // §2.7.7 (VIRTIO_F_EVENT_IDX): interrupt when used->idx passed used_event since the last
        // interrupt: vring_need_event(event, new, old) = (u16)(new - event - 1) < (u16)(new - old).
        const std::uint16_t event =
            load16<__ATOMIC_RELAXED>(avail_ + kRingEntries + kAvailEntrySize * std::size_t{size_});
        const std::uint16_t now = used_published_;
        const std::uint16_t old = signalled_used_;
        const bool valid = signalled_valid_;
        signalled_used_ = now;
        signalled_valid_ = true;
        // Until the first interrupt there is no `old` to compare with: interrupt to be safe.
        notify = !valid || static_cast<std::uint16_t>(now - event - 1) <
                               static_cast<std::uint16_t>(now - old);
    } else {
        // §2.7.7: without EVENT_IDX the only hint is the NO_INTERRUPT flag.
        notify = (load16<__ATOMIC_RELAXED>(avail_ + kRingFlags) & kAvailFNoInterrupt) == 0;
    }
    (notify ? counters_.notify_sent : counters_.notify_saved).inc();
    return notify;
}

bool SplitQueue::enable_notify(std::uint16_t have) noexcept {
    if (!running()) return false;
    if (event_idx_) {
        // §2.7.10: avail_event = the first index we still need: kick when the driver makes it
        // available. Relaxed: ordered by the fence below.
        store16<__ATOMIC_RELAXED>(used_ + kRingEntries + kUsedElemSize * std::size_t{size_},
                                  static_cast<std::uint16_t>(last_avail_ + have));
    } else {
        // §2.7.8: clear VIRTQ_USED_F_NO_NOTIFY; the device is the flags field's only writer.
        const std::uint16_t f = load16<__ATOMIC_RELAXED>(used_ + kRingFlags);
        if ((f & kUsedFNoNotify) != 0)
            store16<__ATOMIC_RELAXED>(used_ + kRingFlags,
                                      static_cast<std::uint16_t>(f & ~kUsedFNoNotify));
    }
    // §2.7.10's race: a full fence between publishing our wish and re-reading avail->idx, pairing
    // with the driver's between its avail->idx store and its read of avail_event / the flags.
    // Either the driver sees our request and kicks, or we see its buffers here.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    // Acquire pairs with the driver's release of avail->idx like reload_avail(); pop() will
    // reload and validate it itself, so the cache is left alone.
    const std::uint16_t idx = load16<__ATOMIC_ACQUIRE>(avail_ + kRingIdx);
    return static_cast<std::uint16_t>(idx - last_avail_) > have;
}

void SplitQueue::disable_notify() noexcept {
    if (!running()) return;
    // With EVENT_IDX nothing to do: the driver kicks only when it crosses avail_event, which
    // stays behind while we poll (§2.7.10).
    if (event_idx_) return;
    const std::uint16_t f = load16<__ATOMIC_RELAXED>(used_ + kRingFlags);
    if ((f & kUsedFNoNotify) == 0)
        store16<__ATOMIC_RELAXED>(used_ + kRingFlags,
                                  static_cast<std::uint16_t>(f | kUsedFNoNotify));
}

}  // namespace slipway::virtio
