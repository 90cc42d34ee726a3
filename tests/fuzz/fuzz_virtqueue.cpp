// Fuzz target: a hostile driver against the split virtqueue. The input picks the queue size,
// features, memory layout and ring addresses, then plays a sequence of driver writes (descriptors,
// ring entries, indices, raw bytes anywhere) and device calls (pop, unpop, push_used, publish,
// should_notify, enable/disable_notify, restart). Invariants: every segment handed out lies inside
// guest memory, a broken queue stays broken and never yields a chain, indices move as documented.
#include <spdlog/sinks/null_sink.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/virtio/virtqueue.hpp"

namespace {

using namespace slipway::virtio;
using slipway::fuzz::check;

constexpr std::uint64_t kHalf = 0x2000;  // bytes per host buffer
constexpr std::uint64_t kUserBase = 0x7f00'0000'0000;

using Reader = slipway::fuzz::Input;

void put_le(std::byte* p, std::uint64_t v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

// Guest memory: two host buffers of kHalf bytes, laid out in guest space by `mode`.
struct Memory {
    std::vector<std::byte> a = std::vector<std::byte>(kHalf);
    std::vector<std::byte> b = std::vector<std::byte>(kHalf);
    std::array<std::uint64_t, 2> base{};
    GuestMemory mem;

    explicit Memory(unsigned mode) {
        switch (mode) {
            case 0:  // adjacent: buffers may cross from a into b
                base = {0x10000, 0x10000 + kHalf};
                break;
            case 1:  // a gap between them
                base = {0x10000, 0x10000 + kHalf + 0x1000};
                break;
            case 2:  // the top of the address space and 0: ranges that wrap must be refused
                base = {~std::uint64_t{0} - kHalf + 1, 0};
                break;
            default:  // b before a, adjacent
                base = {0x40000 + kHalf, 0x40000};
                break;
        }
        check(static_cast<bool>(mem.add({base[0], kHalf, kUserBase, a.data()})));
        check(static_cast<bool>(mem.add({base[1], kHalf, kUserBase + 0x100000, b.data()})));
    }
    // The host bytes behind a guest range, when the driver (this harness) can write there.
    std::byte* at(std::uint64_t gpa, std::uint64_t len) const { return mem.translate(gpa, len); }
    bool inside(const Segment& s) const {
        const auto in = [&](const std::vector<std::byte>& v) {
            return s.ptr >= v.data() && s.len <= kHalf && s.ptr + s.len <= v.data() + v.size();
        };
        return s.ptr != nullptr && s.len != 0 && (in(a) || in(b));
    }
};

void quiet_logs() {
    // Breaks are logged; keep the formatting path exercised but the output out of the fuzzer's way.
    static const bool done = [] {
        auto sink = std::make_shared<spdlog::sinks::null_sink_mt>();
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("fuzz", sink));
        spdlog::set_level(spdlog::level::warn);
        return true;
    }();
    (void)done;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    quiet_logs();
    Reader r(data, size);

    // Header: queue size, features and layout, resume index, ring offsets.
    const std::uint8_t size_sel = r.u8();
    const std::uint8_t opts = r.u8();
    const std::uint16_t last_avail = r.u16();
    const std::uint16_t off_desc = r.u16();
    const std::uint16_t off_avail = r.u16();
    const std::uint16_t off_used = r.u16();

    Memory m((opts >> 3) & 3);
    SplitQueue::Config cfg;
    // Mostly valid sizes up to 256 (what fits), sometimes invalid ones (0, 517, ... 65659).
    cfg.size = (size_sel & 0x80) != 0 ? static_cast<std::uint32_t>(size_sel & 0x7f) * 517u
                                      : 1u << (size_sel % 9);
    cfg.event_idx = (opts & 1) != 0;
    cfg.indirect = (opts & 2) != 0;
    cfg.user_addrs = (opts & 4) != 0;
    cfg.last_avail = last_avail;
    const bool raw_offsets = (opts & 0x20) != 0;
    // Ring offsets within the 2 * kHalf bytes of guest space starting at region a.
    auto ring_addr = [&](std::uint16_t off, std::uint16_t align) {
        std::uint64_t o = off % (2 * kHalf);
        if (!raw_offsets) o &= ~std::uint64_t{align - 1u};
        // Offsets past region a land in region b (at its own base).
        const std::uint64_t gpa = o < kHalf ? m.base[0] + o : m.base[1] + (o - kHalf);
        if (!cfg.user_addrs) return gpa;
        return o < kHalf ? kUserBase + o : kUserBase + 0x100000 + (o - kHalf);
    };
    cfg.desc = ring_addr(off_desc, 16);
    cfg.avail = ring_addr(off_avail, 2);
    cfg.used = ring_addr(off_used, 4);
    // The guest-physical addresses the harness writes the rings through.
    auto gpa_of = [&](std::uint16_t off, std::uint16_t align) {
        std::uint64_t o = off % (2 * kHalf);
        if (!raw_offsets) o &= ~std::uint64_t{align - 1u};
        return o < kHalf ? m.base[0] + o : m.base[1] + (o - kHalf);
    };
    const std::uint64_t desc_gpa = gpa_of(off_desc, 16);
    const std::uint64_t avail_gpa = gpa_of(off_avail, 2);
    const std::uint64_t used_gpa = gpa_of(off_used, 4);

    SplitQueue q;
    std::string err;
    bool started = static_cast<bool>(q.start(m.mem, cfg, err));
    check(started == q.running());
    check(!q.broken());
    std::uint16_t drv_avail = last_avail;  // the driver's avail->idx
    bool was_broken = false;
    // Heads popped and not yet returned, oldest first (a small FIFO is enough to drive push_used).
    std::array<std::uint16_t, 64> popped{};
    std::size_t n_popped = 0;
    std::array<std::byte, 512> scratch{};

    for (int ops = 0; ops < 2000 && !r.empty(); ++ops) {
        const std::uint8_t op = r.u8();
        switch (op % 16) {
            case 1: {  // driver writes a whole chain: long ones, loops, write-then-read orders
                const std::uint8_t start = r.u8();
                const unsigned count = r.u8() % 80u + 1u;
                const unsigned first_write = r.u8();
                const std::uint32_t len = r.u8() + 1u;
                const std::uint64_t table = (op & 0x40) != 0 ? gpa_of(r.u16(), 1) : desc_gpa;
                const std::uint64_t buf = m.base[(op >> 7) & 1];
                for (unsigned j = 0; j < count; ++j) {
                    const std::uint64_t idx = (start + j) % 256u;
                    std::byte* p = m.at(table + 16 * idx, 16);
                    if (p == nullptr) continue;
                    const bool last = j + 1 == count;
                    std::uint16_t flags = j >= first_write ? kDescFWrite : 0;
                    std::uint64_t next = (idx + 1) % 256u;
                    if (!last) {
                        flags |= kDescFNext;
                    } else if ((op & 0x20) != 0) {
                        flags |= kDescFNext;  // back to the start: a loop
                        next = start;
                    }
                    put_le(p, buf + (std::uint64_t{len} * j) % kHalf, 8);
                    put_le(p + 8, len, 4);
                    put_le(p + 12, flags, 2);
                    put_le(p + 14, next, 2);
                }
                break;
            }
            case 0: {  // pop, then touch every byte handed out
                const bool broken_before = q.broken();
                const bool running_before = q.running();
                const std::uint16_t la = q.last_avail();
                Chain c;
                const PopResult res = q.pop(c);
                if (broken_before) check(res == PopResult::broken);
                if (!running_before && !broken_before) check(res == PopResult::empty);
                if (res == PopResult::broken) check(q.broken());
                if (res == PopResult::empty) check(q.last_avail() == la);
                if (res == PopResult::ok || res == PopResult::bad_chain) {
                    check(!q.broken());
                    check(c.head < q.size());
                    check(q.last_avail() == static_cast<std::uint16_t>(la + 1));
                    if (n_popped < popped.size()) popped[n_popped++] = c.head;
                }
                if (res == PopResult::ok) {
                    check(std::size_t{c.n_read} + c.n_write <= Chain::kMaxSegments);
                    std::uint64_t rl = 0;
                    std::uint64_t wl = 0;
                    for (const Segment& s : c.readable()) {
                        check(m.inside(s));
                        rl += s.len;
                    }
                    for (const Segment& s : c.writable()) {
                        check(m.inside(s));
                        wl += s.len;
                    }
                    check(c.read_len == rl && c.write_len == wl);
                    // Every byte is read (ASan checks the pointers), and some written.
                    std::size_t off = 0;
                    while (true) {
                        const std::size_t got = gather(c, off, scratch);
                        if (got == 0) break;
                        check(got <= scratch.size());
                        off += got;
                    }
                    check(off == rl);
                    const std::size_t w = std::min<std::size_t>(wl, scratch.size());
                    check(scatter(c, 0, std::span<const std::byte>(scratch.data(), w)) == w);
                    check(scatter(c, wl, scratch) == 0);
                }
                break;
            }
            case 2: {  // unpop
                const std::uint8_t n = r.u8() % 8;
                const std::uint16_t la = q.last_avail();
                q.unpop(n);
                check(static_cast<std::uint16_t>(la - q.last_avail()) <= n);
                const std::size_t k = static_cast<std::uint16_t>(la - q.last_avail());
                n_popped = k <= n_popped ? n_popped - k : 0;
                break;
            }
            case 3: {  // push_used: the oldest popped head, or any value
                const std::uint32_t written = r.u16();
                std::uint16_t head = 0;
                if (n_popped != 0 && (op & 0x80) == 0) {
                    head = popped[0];
                    std::memmove(popped.data(), popped.data() + 1, (n_popped - 1) * sizeof head);
                    --n_popped;
                } else {
                    head = r.u16();
                }
                q.push_used(head, written);
                break;
            }
            case 4:
                q.publish_used();
                if (q.running()) {
                    std::byte* p = m.at(used_gpa + 2, 2);
                    check(p != nullptr);
                    check(slipway::load_le16(p) == q.used_idx());
                }
                break;
            case 5: {
                const bool broken_before = q.broken();
                const bool n = q.should_notify();
                if (broken_before) check(!n);
                break;
            }
            case 6: {
                const bool broken_before = q.broken();
                const bool more = q.enable_notify();
                if (broken_before || !started) check(!more);
                break;
            }
            case 7:
                q.disable_notify();
                break;
            case 8: {
                const std::uint16_t n = q.available();
                check(n <= q.size());
                if (!q.running()) check(n == 0);
                break;
            }
            case 9: {  // driver writes a descriptor into the table, or anywhere (indirect tables)
                const std::uint8_t sel = r.u8();
                std::uint64_t where = 0;
                if ((sel & 0x08) != 0) {
                    const std::uint16_t o = r.u16();
                    where = gpa_of(o, 1);
                } else {
                    where = desc_gpa + std::uint64_t{16} * r.u8();
                }
                std::uint64_t addr = 0;
                if ((sel & 0x80) != 0) {
                    addr = r.u64();  // anything at all
                } else {
                    const std::uint16_t o = r.u16();
                    addr = m.base[(sel >> 6) & 1] + o % (kHalf + 64);  // may run past a region
                }
                const std::uint32_t len = (sel & 0x20) != 0 ? r.u32() : r.u16() % 1024u;
                const std::uint16_t flags = (sel & 0x10) != 0 ? r.u16() : (r.u8() & 7);
                const std::uint16_t next = (sel & 0x04) != 0 ? r.u16() : r.u8();
                if (std::byte* p = m.at(where, 16)) {
                    put_le(p, addr, 8);
                    put_le(p + 8, len, 4);
                    put_le(p + 12, flags, 2);
                    put_le(p + 14, next, 2);
                }
                break;
            }
            case 10: {  // driver offers a head
                const std::uint16_t head = (op & 0x80) != 0 ? r.u16() : r.u8();
                const std::uint32_t n = cfg.size == 0 ? 1 : cfg.size;
                const std::uint64_t slot = drv_avail % n;
                if (std::byte* p = m.at(avail_gpa + 4 + 2 * slot, 2)) put_le(p, head, 2);
                ++drv_avail;
                if (std::byte* p = m.at(avail_gpa + 2, 2)) put_le(p, drv_avail, 2);
                break;
            }
            case 11: {  // driver sets avail->idx to anything
                drv_avail = r.u16();
                if (std::byte* p = m.at(avail_gpa + 2, 2)) put_le(p, drv_avail, 2);
                break;
            }
            case 12: {  // driver writes 8 raw bytes anywhere in its memory
                const std::uint16_t o = r.u16();
                const std::uint64_t v = r.u64();
                if (std::byte* p = m.at(gpa_of(o, 1), 8)) put_le(p, v, 8);
                break;
            }
            case 13: {  // avail flags, used_event
                const std::uint16_t v = r.u16();
                const std::uint64_t n = cfg.size;
                const std::uint64_t where = (op & 0x80) != 0 ? avail_gpa + 4 + 2 * n : avail_gpa;
                if (std::byte* p = m.at(where, 2)) put_le(p, v, 2);
                break;
            }
            case 14: {  // stop and resume where we were
                const std::uint16_t base = q.stop();
                check(!q.running());
                check(q.broken() == was_broken);
                SplitQueue::Config c2 = cfg;
                c2.last_avail = base;
                started = static_cast<bool>(q.start(m.mem, c2, err));
                check(started == q.running());
                check(!q.broken());
                was_broken = false;
                n_popped = 0;
                break;
            }
            default: {  // a burst: pop and return everything available
                Chain c;
                for (int i = 0; i < 64; ++i) {
                    const PopResult res = q.pop(c);
                    if (res == PopResult::ok) {
                        for (const Segment& s : c.readable())
                            check(m.inside(s));
                        for (const Segment& s : c.writable())
                            check(m.inside(s));
                    }
                    if (res != PopResult::ok && res != PopResult::bad_chain) break;
                    q.push_used(c.head, 0);
                }
                q.publish_used();
                slipway::fuzz::sink(q.should_notify() ? 1 : 0);
                break;
            }
        }
        // A broken queue stays broken until restarted, and is never running.
        if (was_broken) check(q.broken());
        was_broken = q.broken();
        if (q.broken()) check(!q.running() && !q.broken_reason().empty());
    }
    slipway::fuzz::sink(q.stop());
    return 0;
}
