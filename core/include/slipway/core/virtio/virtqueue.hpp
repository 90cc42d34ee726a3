// Split virtqueue, device side (virtio 1.2 §2.7): descriptor table, available and used rings in
// guest memory, indirect descriptors and VIRTIO_F_EVENT_IDX, every guest-supplied value checked.
//
// Theory of operation
// -------------------
// Guest memory is a handful of regions mapped into this process (GuestMemory): shared memfd
// regions a vhost-user front end passed with SET_MEM_TABLE, or the VMM's own RAM when slipway is
// embedded. A guest address is usable only through translate(), which returns a host pointer when
// the whole range [addr, addr + len) lies inside one region and nullptr otherwise; nothing in this
// folder dereferences guest memory any other way.
//
// SplitQueue is the device's view of one queue. start() checks the three rings: queue size a power
// of two up to 32768, alignment (desc 16, avail 2, used 4 bytes, §2.7), each ring wholly inside one
// region. pop() reads the next head from the available ring and walks its chain into a Chain of
// host segments: readable segments first, then writable ones (§2.7.4.2: a driver MUST NOT put a
// readable descriptor after a writable one), an indirect table (§2.7.5.3) followed when the
// feature was negotiated. A descriptor whose buffer crosses from one region into an adjacent one is
// split into two segments.
//
// What the guest can get wrong, and what it costs it:
//   - the queue is marked broken (logged once with the reason, every later call a no-op, the
//     owner tells the guest with DEVICE_NEEDS_RESET when it can): an available index more than
//     `size` ahead of the last one seen, a head or next index >= size, a chain longer than the
//     queue (a loop), an indirect table empty or not a multiple of 16 bytes, nested indirect,
//     indirect together with NEXT, or indirect without the feature (§2.7.5.3.1), a readable
//     descriptor after a writable one, a descriptor or table outside guest memory (an indirect
//     table must lie inside one region), a descriptor whose address range wraps past 2^64;
//   - the chain alone is dropped (PopResult::bad_chain: returned to the guest as used with length
//     0 and counted) when it is well-formed but more than Chain::kMaxSegments segments long.
//
// Memory ordering. The driver (another thread or process) writes descriptors, then the available
// ring entry, then releases avail->idx; pop() loads avail->idx with acquire, pairing with that
// store, before it reads any entry or descriptor. The device writes used elements and then
// publish_used() stores used->idx with release, pairing with the driver's acquire load of it.
// Notification decisions need a full fence between "publish" and "read the driver's suppression
// field" (§2.7.7 and §2.7.10), which should_notify() and enable_notify() issue. Guest memory is
// accessed with __atomic builtins on naturally aligned 16-bit fields (alignment checked in start)
// and memcpy for descriptors, never through a cast struct.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"

namespace slipway::virtio {

// Descriptor flags (virtio 1.2 §2.7.5).
inline constexpr std::uint16_t kDescFNext = 1;
inline constexpr std::uint16_t kDescFWrite = 2;
inline constexpr std::uint16_t kDescFIndirect = 4;
// Available ring flags (§2.7.6) and used ring flags (§2.7.8).
inline constexpr std::uint16_t kAvailFNoInterrupt = 1;
inline constexpr std::uint16_t kUsedFNoNotify = 1;
inline constexpr std::uint32_t kMaxQueueSize = 32768;
inline constexpr std::size_t kDescSize = 16;  // struct virtq_desc: le64 addr, le32 len, le16 x2

// Ring sizes in bytes for a queue of `n` entries (§2.7: with the event-idx trailer always counted,
// which is what drivers allocate).
[[nodiscard]] constexpr std::uint64_t desc_table_bytes(std::uint32_t n) noexcept {
    return std::uint64_t{kDescSize} * n;
}
[[nodiscard]] constexpr std::uint64_t avail_ring_bytes(std::uint32_t n) noexcept {
    return 6 + std::uint64_t{2} * n;  // flags, idx, ring[n], used_event
}
[[nodiscard]] constexpr std::uint64_t used_ring_bytes(std::uint32_t n) noexcept {
    return 6 + std::uint64_t{8} * n;  // flags, idx, ring[n] of {le32 id, le32 len}, avail_event
}

// One region of guest memory mapped into this process.
struct MemRegion {
    std::uint64_t guest_addr = 0;  // guest physical address of the region's first byte
    std::uint64_t size = 0;
    // The VMM's virtual address of the region (vhost-user gives ring addresses in this space).
    // An embedding VMM that uses guest physical ring addresses sets it equal to guest_addr.
    std::uint64_t user_addr = 0;
    std::byte* host = nullptr;  // where the region is mapped here
};

class GuestMemory {
  public:
    static constexpr std::size_t kMaxRegions = 8;  // vhost-user's baseline region count

    // Errc::invalid_argument for an empty region, a null host pointer, an address range that
    // wraps, or a guest range that overlaps one already added; Errc::too_large past kMaxRegions.
    Result<void> add(const MemRegion& r) noexcept;
    void clear() noexcept { n_ = 0; }
    [[nodiscard]] std::span<const MemRegion> regions() const noexcept {
        return {regions_.data(), n_};
    }

    // Host pointer to guest physical [gpa, gpa + len) if it lies inside one region, else nullptr.
    // len == 0 is allowed (returns the pointer for gpa if gpa is inside a region).
    [[nodiscard]] std::byte* translate(std::uint64_t gpa, std::uint64_t len) const noexcept;
    // The same for a VMM virtual address (MemRegion::user_addr space).
    [[nodiscard]] std::byte* translate_user(std::uint64_t uva, std::uint64_t len) const noexcept;
    // The longest prefix of [gpa, gpa + len) inside one region: its host pointer and length
    // (0 when gpa is in no region). Used to split buffers that cross adjacent regions.
    [[nodiscard]] std::byte* translate_prefix(std::uint64_t gpa, std::uint64_t len,
                                              std::uint64_t& got) const noexcept;

  private:
    std::array<MemRegion, kMaxRegions> regions_{};
    std::size_t n_ = 0;
};

// A run of guest bytes inside one region.
struct Segment {
    std::byte* ptr = nullptr;
    std::uint32_t len = 0;
};

// A descriptor chain taken from the available ring: seg[0, n_read) are device-readable,
// seg[n_read, n_read + n_write) device-writable.
struct Chain {
    static constexpr std::size_t kMaxSegments = 64;
    std::uint16_t head = 0;
    std::uint16_t n_read = 0;
    std::uint16_t n_write = 0;
    std::uint32_t read_len = 0;   // sum of readable segment lengths (clamped to 4 GiB - 1)
    std::uint32_t write_len = 0;  // sum of writable segment lengths
    std::array<Segment, kMaxSegments> seg{};

    [[nodiscard]] std::span<const Segment> readable() const noexcept {
        return {seg.data(), n_read};
    }
    [[nodiscard]] std::span<const Segment> writable() const noexcept {
        return {seg.data() + n_read, n_write};
    }
};

// Copies between a chain's segments and flat bytes, starting `offset` bytes into the readable
// (gather) or writable (scatter) part. Return the bytes copied (short when the chain runs out).
std::size_t gather(const Chain& c, std::size_t offset, std::span<std::byte> out) noexcept;
std::size_t scatter(const Chain& c, std::size_t offset, std::span<const std::byte> in) noexcept;

enum class PopResult : std::uint8_t {
    ok,         // `out` holds a chain
    empty,      // nothing available
    bad_chain,  // a chain was consumed but cannot be used: return it with push_used(head, 0)
    broken,     // the queue is broken (see broken_reason())
};

struct QueueCounters {
    Counter chains;        // chains popped
    Counter bad_chains;    // chains dropped as PopResult::bad_chain
    Counter notify_sent;   // should_notify() said yes
    Counter notify_saved;  // should_notify() said no (suppressed by the driver)
};

class SplitQueue {
  public:
    struct Config {
        std::uint32_t size = 0;  // entries: a power of two, 1..32768
        std::uint64_t desc = 0, avail = 0, used = 0;
        bool user_addrs = false;       // ring addresses are MemRegion::user_addr-space (vhost-user)
        bool event_idx = false;        // VIRTIO_F_EVENT_IDX negotiated
        bool indirect = false;         // VIRTIO_F_INDIRECT_DESC negotiated
        std::uint16_t last_avail = 0;  // where to resume (vhost-user SET_VRING_BASE)
    };

    // `mem` must outlive the queue's running time and not change while it runs. The name
    // (set_name) is used in log lines ("vhost-user:/run/vm.sock rx"). On failure
    // (Errc::invalid_argument) `error` says why and the queue stays stopped. pop() resumes at
    // cfg.last_avail; push_used() resumes at used->idx as found in guest memory, because that is
    // what the driver has seen (0 in a freshly zeroed ring). Clears a previous break.
    Result<void> start(const GuestMemory& mem, const Config& cfg, std::string& error);
    // Stops using guest memory. Returns the index to resume from (GET_VRING_BASE).
    std::uint16_t stop() noexcept;
    void set_name(std::string name) { name_ = std::move(name); }

    [[nodiscard]] bool running() const noexcept { return mem_ != nullptr && !broken_; }
    [[nodiscard]] bool broken() const noexcept { return broken_; }
    [[nodiscard]] const std::string& broken_reason() const noexcept { return broken_reason_; }
    [[nodiscard]] std::uint32_t size() const noexcept { return size_; }
    [[nodiscard]] std::uint16_t last_avail() const noexcept { return last_avail_; }
    [[nodiscard]] std::uint16_t used_idx() const noexcept { return used_idx_; }
    [[nodiscard]] QueueCounters& counters() noexcept { return counters_; }

    // Takes the next available chain.
    PopResult pop(Chain& out) noexcept;
    // Gives back the last `n` chains popped and not yet used (a frame that did not fit the
    // buffers found so far waits for more): the next pop() returns them again.
    void unpop(std::uint16_t n) noexcept;
    // Chains the driver has made available and pop() has not taken (0 when not running).
    [[nodiscard]] std::uint16_t available() const noexcept;

    // Records chain `head` as used with `written` bytes written into its writable part. Visible to
    // the driver only after publish_used().
    void push_used(std::uint16_t head, std::uint32_t written) noexcept;
    // Makes the used elements pushed so far visible (release store of used->idx).
    void publish_used() noexcept;
    // After publish_used(): whether the driver wants an interrupt for what was published since the
    // last notification (EVENT_IDX used_event per §2.7.7, else the NO_INTERRUPT flag).
    [[nodiscard]] bool should_notify() noexcept;

    // Asks the driver for a kick when it adds buffers (clears NO_NOTIFY, or sets avail_event).
    // `have`: chains already available that are not enough for the caller (an RX frame that needs
    // more merged buffers than the guest has posted): the kick is wanted only once the driver
    // goes past them (avail_event = last_avail + have). Returns true if more than `have` chains
    // are available now: the caller polls again instead of sleeping (§2.7.10's race).
    [[nodiscard]] bool enable_notify(std::uint16_t have = 0) noexcept;
    // Tells the driver not to kick while the device is polling anyway.
    void disable_notify() noexcept;

  private:
    void mark_broken(const char* why) noexcept;
    // Loads avail->idx (acquire) into avail_cached_; false (and the queue broken) if it ran more
    // than `size` ahead of last_avail_.
    bool reload_avail() noexcept;
    std::string name_;
    const GuestMemory* mem_ = nullptr;
    std::byte* desc_ = nullptr;
    std::byte* avail_ = nullptr;
    std::byte* used_ = nullptr;
    std::uint32_t size_ = 0;
    bool event_idx_ = false;
    bool indirect_ = false;
    std::uint16_t last_avail_ = 0;      // next available-ring slot pop() reads
    std::uint16_t avail_cached_ = 0;    // avail->idx as last loaded
    std::uint16_t used_idx_ = 0;        // next used-ring slot push_used() writes
    std::uint16_t used_published_ = 0;  // used->idx as last stored by publish_used()
    std::uint32_t inflight_ = 0;        // chains popped and not yet pushed used (bounds unpop)
    std::uint16_t signalled_used_ = 0;  // used idx at the last notification (EVENT_IDX)
    bool signalled_valid_ = false;
    bool broken_ = false;
    std::string broken_reason_;
    QueueCounters counters_;
};

}  // namespace slipway::virtio
