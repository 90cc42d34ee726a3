// The NAT engine's flow table: guest 5-tuple -> flow id, and host socket -> flow id.
//
// Theory of operation
// -------------------
// Every translated flow (TCP, UDP, ICMP echo) has a FlowId, a dense index 0..capacity-1 handed
// out from a free list; the engine keeps each flow's state in its own arrays indexed by it. The
// table answers the two questions of the data path:
//   - a frame from a guest: which flow is this 5-tuple? -> find() / find_burst();
//   - a readable host socket: which flow owns this fd? -> by_fd() (a flat array indexed by fd,
//     sized by RLIMIT_NOFILE at start-up, so one load).
// The key index is open addressing with linear probing (load factor at most 1/2: the index has at
// least twice as many slots as flows). Each slot is 32 bytes holding the whole key, its hash and
// the id; beside the slots, a byte per slot holds a tag (7 bits of the hash, 0 for empty), so a
// probe compares 16 tags with one SSE2 instruction and touches a slot only when its tag matches:
// a miss usually reads one cache line of tags, a hit one line of tags and one slot. Erasure
// shifts later entries of the probe run back (no tombstones), so lookups never slow down as
// flows come and go. In front of find() sits a small direct-mapped cache of recently found ids
// (with half their hash, so a cache miss costs no extra load), which makes the common case, the
// next frame of the same flow, one compare. find_burst() hashes a whole burst first and
// prefetches every home tag line and slot before probing any, so the cache misses of up to 32
// lookups overlap instead of queueing; that is where a hand-written table beats a
// general-purpose one once the table outgrows the CPU caches (bench/micro/bench_flow_table.cpp
// measures it). A burst skips the direct-mapped cache: its keys are mostly of different flows.
// Everything is allocated in the constructor; find, insert and erase never allocate, throw or
// block. One table belongs to one engine thread: nothing here is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"

namespace slipway::nat {

// A guest flow as the guest sees it (IPv4; IPv6 joins with the same shape). For ICMP echo the
// ports carry the echo identifier (guest_port) and 0.
struct FlowKey {
    Ipv4Addr guest_ip;
    Ipv4Addr remote_ip;
    std::uint16_t guest_port = 0;
    std::uint16_t remote_port = 0;
    IpProto proto = IpProto::tcp;

    friend bool operator==(const FlowKey& a, const FlowKey& b) noexcept {
        return a.guest_ip == b.guest_ip && a.remote_ip == b.remote_ip &&
               a.guest_port == b.guest_port && a.remote_port == b.remote_port && a.proto == b.proto;
    }
    [[nodiscard]] std::uint64_t hash() const noexcept;
};

using FlowId = std::uint32_t;
inline constexpr FlowId kNoFlow = 0xffffffffu;

struct FlowTableConfig {
    std::uint32_t capacity = 65536;    // flows at once (--max-flows)
    std::uint32_t max_fd = 65536;      // host fds by_fd() can map (RLIMIT_NOFILE)
    std::uint32_t cache_slots = 1024;  // direct-mapped cache, rounded up to a power of two
};

struct FlowTableCounters {
    Counter inserts, erases, full;  // full: an insert found no free id
    template <class F>
    void for_each(F&& f) const {
        f("flow_inserts", inserts);
        f("flow_erases", erases);
        f("flow_table_full", full);
    }
};

class FlowTable {
  public:
    explicit FlowTable(const FlowTableConfig& cfg);
    ~FlowTable();
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    [[nodiscard]] FlowId find(const FlowKey& key) noexcept;
    // out[i] = find(keys[i]) for every i < min(keys.size(), out.size()), with the memory
    // accesses of the whole burst overlapped.
    void find_burst(std::span<const FlowKey> keys, std::span<FlowId> out) noexcept;

    // A new flow for `key`, which must not be in the table (Errc::invalid_argument if it is);
    // Errc::too_large when every id is taken (counted as `full`).
    [[nodiscard]] Result<FlowId> insert(const FlowKey& key) noexcept;
    // Frees `id` (and its fd mapping). Ids not in use are ignored.
    void erase(FlowId id) noexcept;

    // Host socket of a flow: bind after the socket exists; erase() unbinds. False when `fd` is
    // outside [0, max_fd) or `id` is not in use.
    bool bind_fd(FlowId id, int fd) noexcept;
    [[nodiscard]] FlowId by_fd(int fd) const noexcept;

    [[nodiscard]] const FlowKey& key(FlowId id) const noexcept;  // id must be in use
    [[nodiscard]] bool in_use(FlowId id) const noexcept;
    [[nodiscard]] std::uint32_t size() const noexcept;
    [[nodiscard]] std::uint32_t capacity() const noexcept;
    [[nodiscard]] const FlowTableCounters& counters() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace slipway::nat
