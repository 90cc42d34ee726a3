// Split virtqueue (device side) against hand-built descriptor tables: chains, indirect tables,
// index wraparound, notification suppression, and every hostile case the header lists.
#include "slipway/core/virtio/virtqueue.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "slipway/core/log.hpp"

namespace slipway::virtio {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

// Guest layout. Region A holds the descriptor table and nothing else, sized exactly, so a read
// of entry `size` would run off its heap block (ASan reports it). Region B, not adjacent, holds
// the rings, indirect tables and buffers. Both have VMM (user) addresses unlike their guest ones.
constexpr std::uint64_t kDescGpa = 0x10000;
constexpr std::uint64_t kDescUva = 0x7f00'0001'0000;
constexpr std::uint64_t kBGpa = 0x100000;
constexpr std::uint64_t kBUva = 0x7f00'0010'0000;
constexpr std::uint64_t kBSize = 0x10000;
constexpr std::uint64_t kAvailGpa = kBGpa;          // 6 + 2n bytes
constexpr std::uint64_t kUsedGpa = kBGpa + 0x1000;  // 6 + 8n bytes
constexpr std::uint64_t kIndGpa = kBGpa + 0x3000;   // indirect tables
constexpr std::uint64_t kBufGpa = kBGpa + 0x8000;   // buffers
constexpr std::uint64_t kBEnd = kBGpa + kBSize;     // one past region B

void put_le(std::byte* p, std::uint64_t v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}
std::uint64_t get_le(const std::byte* p, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = n; i-- > 0;)
        v = (v << 8) | static_cast<std::uint64_t>(p[i]);
    return v;
}

class Virtqueue : public ::testing::Test {
  protected:
    // Builds the memory for a queue of `n` entries (n <= 256 fits region B's layout).
    void layout(std::uint32_t n) {
        n_ = n;
        a_.assign(desc_table_bytes(n), std::byte{0});
        b_.assign(kBSize, std::byte{0});
        mem_.clear();
        ASSERT_TRUE(mem_.add({kDescGpa, a_.size(), kDescUva, a_.data()}));
        ASSERT_TRUE(mem_.add({kBGpa, kBSize, kBUva, b_.data()}));
        avail_idx_ = 0;
    }
    SplitQueue::Config config() const {
        SplitQueue::Config c;
        c.size = n_;
        c.desc = kDescGpa;
        c.avail = kAvailGpa;
        c.used = kUsedGpa;
        c.indirect = true;
        return c;
    }
    void start(const SplitQueue::Config& c) {
        std::string err;
        ASSERT_TRUE(q_.start(mem_, c, err)) << err;
        ASSERT_TRUE(q_.running());
    }
    void start() { start(config()); }

    std::byte* at(std::uint64_t gpa, std::uint64_t len = 1) {
        std::byte* p = mem_.translate(gpa, len);
        EXPECT_NE(p, nullptr) << std::hex << gpa;
        return p;
    }
    // struct virtq_desc at index i of the table at `table`.
    void tdesc(std::uint64_t table, std::uint32_t i, std::uint64_t addr, std::uint32_t len,
               std::uint16_t flags, std::uint16_t next = 0) {
        std::byte* p = at(table + std::uint64_t{16} * i, 16);
        put_le(p, addr, 8);
        put_le(p + 8, len, 4);
        put_le(p + 12, flags, 2);
        put_le(p + 14, next, 2);
    }
    void desc(std::uint32_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
              std::uint16_t next = 0) {
        tdesc(kDescGpa, i, addr, len, flags, next);
    }
    // Driver side: make `head` available.
    void offer(std::uint16_t head) {
        put_le(at(kAvailGpa + 4 + 2 * std::uint64_t{avail_idx_ & (n_ - 1)}, 2), head, 2);
        set_avail_idx(static_cast<std::uint16_t>(avail_idx_ + 1));
    }
    void set_avail_idx(std::uint16_t v) {
        avail_idx_ = v;
        put_le(at(kAvailGpa + 2, 2), v, 2);
    }
    void set_avail_flags(std::uint16_t f) { put_le(at(kAvailGpa, 2), f, 2); }
    void set_used_event(std::uint16_t v) {
        put_le(at(kAvailGpa + 4 + 2 * std::uint64_t{n_}, 2), v, 2);
    }
    std::uint16_t used_flags() { return static_cast<std::uint16_t>(get_le(at(kUsedGpa, 2), 2)); }
    std::uint16_t used_idx_mem() {
        return static_cast<std::uint16_t>(get_le(at(kUsedGpa + 2, 2), 2));
    }
    std::uint16_t avail_event() {
        return static_cast<std::uint16_t>(get_le(at(kUsedGpa + 4 + 8 * std::uint64_t{n_}, 2), 2));
    }
    std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint32_t slot) {
        const std::byte* p = at(kUsedGpa + 4 + 8 * std::uint64_t{slot}, 8);
        return {static_cast<std::uint32_t>(get_le(p, 4)),
                static_cast<std::uint32_t>(get_le(p + 4, 4))};
    }
    // A queue that must now be broken, and stays so: pop, push and notify are no-ops.
    void expect_broken() {
        EXPECT_TRUE(q_.broken());
        EXPECT_FALSE(q_.running());
        EXPECT_FALSE(q_.broken_reason().empty());
        Chain c;
        EXPECT_EQ(q_.pop(c), PopResult::broken);
        EXPECT_EQ(q_.available(), 0);
        const std::uint16_t before = used_idx_mem();
        q_.push_used(0, 1);
        q_.publish_used();
        EXPECT_EQ(used_idx_mem(), before);
        EXPECT_FALSE(q_.should_notify());
        EXPECT_FALSE(q_.enable_notify());
    }
    // Offers a single chain with head `head` and expects pop() to break the queue.
    void expect_pop_breaks(std::uint16_t head) {
        offer(head);
        Chain c;
        EXPECT_EQ(q_.pop(c), PopResult::broken);
        expect_broken();
    }

    std::vector<std::byte> a_, b_;
    GuestMemory mem_;
    SplitQueue q_;
    std::uint32_t n_ = 0;
    std::uint16_t avail_idx_ = 0;
};

// ---- GuestMemory ------------------------------------------------------------------------------

TEST(GuestMemory, AddRejectsBadRegions) {
    std::vector<std::byte> buf(0x1000);
    GuestMemory m;
    EXPECT_EQ(m.add({0x1000, 0, 0, buf.data()}).error(), Errc::invalid_argument);
    EXPECT_EQ(m.add({0x1000, 0x1000, 0, nullptr}).error(), Errc::invalid_argument);
    // Guest or user range wrapping past 2^64.
    EXPECT_EQ(m.add({kU64Max - 0xfff + 1, 0x1001, 0, buf.data()}).error(), Errc::invalid_argument);
    EXPECT_EQ(m.add({0, 0x1000, kU64Max - 0x10, buf.data()}).error(), Errc::invalid_argument);
    // A region that ends exactly at 2^64 does not wrap.
    EXPECT_TRUE(m.add({kU64Max - 0xfff, 0x1000, 0, buf.data()}));
    EXPECT_TRUE(m.add({0x1000, 0x1000, 0x1000, buf.data()}));
    // Overlaps, at either end and enclosing.
    EXPECT_EQ(m.add({0x1fff, 0x10, 0, buf.data()}).error(), Errc::invalid_argument);
    EXPECT_EQ(m.add({0x0800, 0x801, 0, buf.data()}).error(), Errc::invalid_argument);
    EXPECT_EQ(m.add({0x0000, 0x10000, 0, buf.data()}).error(), Errc::invalid_argument);
    EXPECT_TRUE(m.add({0x2000, 0x10, 0, buf.data()}));  // adjacent is fine
    EXPECT_EQ(m.regions().size(), 3u);
    for (std::uint64_t i = 3; i < GuestMemory::kMaxRegions; ++i)
        EXPECT_TRUE(m.add({0x100000 * i, 0x10, 0, buf.data()}));
    EXPECT_EQ(m.add({0x100000 * 100, 0x10, 0, buf.data()}).error(), Errc::too_large);
    m.clear();
    EXPECT_TRUE(m.regions().empty());
}

TEST(GuestMemory, TranslateStaysInsideOneRegion) {
    std::vector<std::byte> a(0x1000), b(0x1000);
    GuestMemory m;
    ASSERT_TRUE(m.add({0x10000, 0x1000, 0x7000'0000, a.data()}));
    ASSERT_TRUE(m.add({0x11000, 0x1000, 0x9000'0000, b.data()}));  // adjacent in guest space
    EXPECT_EQ(m.translate(0x10000, 0x1000), a.data());
    EXPECT_EQ(m.translate(0x10ff0, 0x10), a.data() + 0xff0);
    EXPECT_EQ(m.translate(0x10ff0, 0x11), nullptr);  // crosses into b: not one region
    EXPECT_EQ(m.translate(0x11000, 0), b.data());
    EXPECT_EQ(m.translate(0x12000, 0), nullptr);
    EXPECT_EQ(m.translate(0xffff, 1), nullptr);
    EXPECT_EQ(m.translate(0x10000, kU64Max), nullptr);
    EXPECT_EQ(m.translate(kU64Max, 2), nullptr);
    // User addresses are a separate space.
    EXPECT_EQ(m.translate_user(0x7000'0010, 0x10), a.data() + 0x10);
    EXPECT_EQ(m.translate_user(0x9000'0fff, 1), b.data() + 0xfff);
    EXPECT_EQ(m.translate_user(0x9000'0fff, 2), nullptr);
    EXPECT_EQ(m.translate_user(0x10000, 1), nullptr);
    EXPECT_EQ(m.translate(0x7000'0000, 1), nullptr);

    std::uint64_t got = 99;
    EXPECT_EQ(m.translate_prefix(0x10ff0, 0x20, got), a.data() + 0xff0);
    EXPECT_EQ(got, 0x10u);
    EXPECT_EQ(m.translate_prefix(0x11000, 0x10, got), b.data());
    EXPECT_EQ(got, 0x10u);
    EXPECT_EQ(m.translate_prefix(0x11ff0, kU64Max, got), b.data() + 0xff0);
    EXPECT_EQ(got, 0x10u);
    EXPECT_EQ(m.translate_prefix(0x12000, 0x10, got), nullptr);
    EXPECT_EQ(got, 0u);
}

// ---- start() -----------------------------------------------------------------------------------

TEST_F(Virtqueue, StartRejectsBadSizes) {
    layout(16);
    for (std::uint32_t bad : {0u, 3u, 12u, 65536u, 1u << 20}) {
        SplitQueue::Config c = config();
        c.size = bad;
        std::string err;
        EXPECT_EQ(q_.start(mem_, c, err).error(), Errc::invalid_argument) << bad;
        EXPECT_FALSE(err.empty());
        EXPECT_FALSE(q_.running());
    }
    SplitQueue::Config c = config();
    c.size = 1;  // the smallest power of two
    std::string err;
    EXPECT_TRUE(q_.start(mem_, c, err)) << err;
}

TEST(VirtqueueStart, LargestQueue) {
    constexpr std::uint32_t n = kMaxQueueSize;
    std::vector<std::byte> buf(desc_table_bytes(n) + 0x20000 + used_ring_bytes(n) + 0x100);
    GuestMemory m;
    ASSERT_TRUE(m.add({0x100000, buf.size(), 0x100000, buf.data()}));
    SplitQueue q;
    SplitQueue::Config c;
    c.size = n;
    c.desc = 0x100000;
    c.avail = c.desc + desc_table_bytes(n);
    c.used = c.desc + desc_table_bytes(n) + 0x20000;
    std::string err;
    ASSERT_TRUE(q.start(m, c, err)) << err;
    EXPECT_EQ(q.size(), n);
    // The used ring one byte short of its event trailer is outside memory.
    c.used = 0x100000 + buf.size() - used_ring_bytes(n) + 4;
    EXPECT_FALSE(q.start(m, c, err));
    EXPECT_FALSE(q.running());
}

TEST_F(Virtqueue, StartRejectsMisalignedRings) {
    layout(16);
    std::string err;
    SplitQueue::Config c = config();
    c.desc += 8;
    EXPECT_FALSE(q_.start(mem_, c, err));
    c = config();
    c.avail += 1;
    EXPECT_FALSE(q_.start(mem_, c, err));
    c = config();
    c.used += 2;
    EXPECT_FALSE(q_.start(mem_, c, err));
    EXPECT_FALSE(q_.running());
    // Aligned guest addresses mapped at an odd host address cannot be accessed atomically.
    GuestMemory odd;
    ASSERT_TRUE(odd.add({kDescGpa, a_.size(), kDescUva, a_.data()}));
    ASSERT_TRUE(odd.add({kBGpa, kBSize - 1, kBUva, b_.data() + 1}));
    EXPECT_EQ(q_.start(odd, config(), err).error(), Errc::invalid_argument);
    EXPECT_FALSE(q_.running());
}

TEST_F(Virtqueue, StartRejectsRingsOutsideMemory) {
    layout(16);
    std::string err;
    SplitQueue::Config c = config();
    c.desc = kDescGpa + 16;  // table runs one descriptor past region A
    EXPECT_FALSE(q_.start(mem_, c, err));
    EXPECT_NE(err.find("descriptor table"), std::string::npos) << err;
    c = config();
    c.avail = kBEnd - avail_ring_bytes(16) + 2;  // the used_event trailer is outside
    EXPECT_FALSE(q_.start(mem_, c, err));
    EXPECT_NE(err.find("available ring"), std::string::npos) << err;
    c = config();
    c.used = kBEnd - 4;
    EXPECT_FALSE(q_.start(mem_, c, err));
    c = config();
    c.used = kU64Max - 3;  // aligned, but the ring would wrap past 2^64
    EXPECT_FALSE(q_.start(mem_, c, err));
    c = config();
    c.avail = 0x4000;  // in no region
    EXPECT_FALSE(q_.start(mem_, c, err));
    // Guest addresses are not user addresses.
    c = config();
    c.user_addrs = true;
    EXPECT_FALSE(q_.start(mem_, c, err));
    EXPECT_FALSE(q_.running());
}

TEST_F(Virtqueue, UserAddressRings) {
    layout(16);
    SplitQueue::Config c = config();
    c.user_addrs = true;
    c.desc = kDescUva;
    c.avail = kBUva + (kAvailGpa - kBGpa);
    c.used = kBUva + (kUsedGpa - kBGpa);
    start(c);
    // Buffers are still guest physical (vhost-user translates only the ring addresses so).
    desc(0, kBufGpa, 100, 0);
    offer(0);
    Chain ch;
    ASSERT_EQ(q_.pop(ch), PopResult::ok);
    ASSERT_EQ(ch.n_read, 1);
    EXPECT_EQ(ch.seg[0].ptr, at(kBufGpa));
    q_.push_used(ch.head, 0);
    q_.publish_used();
    EXPECT_EQ(used_idx_mem(), 1);
}

// ---- chains ------------------------------------------------------------------------------------

TEST_F(Virtqueue, ReadableThenWritableChain) {
    layout(16);
    start();
    Chain c;
    EXPECT_EQ(q_.pop(c), PopResult::empty);
    EXPECT_EQ(q_.available(), 0);
    desc(3, kBufGpa, 10, kDescFNext, 7);
    desc(7, kBufGpa + 0x100, 20, kDescFNext, 1);
    desc(1, kBufGpa + 0x200, 30, kDescFWrite | kDescFNext, 9);
    desc(9, kBufGpa + 0x300, 40, kDescFWrite);
    offer(3);
    EXPECT_EQ(q_.available(), 1);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 3);
    ASSERT_EQ(c.n_read, 2);
    ASSERT_EQ(c.n_write, 2);
    EXPECT_EQ(c.read_len, 30u);
    EXPECT_EQ(c.write_len, 70u);
    EXPECT_EQ(c.readable()[0].ptr, at(kBufGpa));
    EXPECT_EQ(c.readable()[1].ptr, at(kBufGpa + 0x100));
    EXPECT_EQ(c.readable()[1].len, 20u);
    EXPECT_EQ(c.writable()[0].ptr, at(kBufGpa + 0x200));
    EXPECT_EQ(c.writable()[1].len, 40u);
    EXPECT_EQ(q_.available(), 0);
    EXPECT_EQ(q_.pop(c), PopResult::empty);
    EXPECT_EQ(q_.counters().chains.get(), 1u);

    // Used element visible only after publish.
    q_.push_used(3, 55);
    EXPECT_EQ(used_idx_mem(), 0);
    EXPECT_EQ(q_.used_idx(), 1);
    q_.publish_used();
    EXPECT_EQ(used_idx_mem(), 1);
    EXPECT_EQ(used_elem(0), std::make_pair(3u, 55u));
    EXPECT_EQ(q_.stop(), 1);
    EXPECT_FALSE(q_.running());
    EXPECT_EQ(q_.pop(c), PopResult::empty);
}

TEST_F(Virtqueue, ZeroLengthDescriptorGivesNoSegment) {
    layout(8);
    start();
    desc(0, kBufGpa, 0, kDescFNext, 1);
    desc(1, 0xdead'0000'0000, 0, kDescFNext | kDescFWrite, 2);  // no bytes, no address check
    desc(2, kBufGpa, 8, kDescFWrite);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.n_read, 0);
    EXPECT_EQ(c.n_write, 1);
}

TEST_F(Virtqueue, PopsSeveralAndReloadsIndexOnlyWhenEmpty) {
    layout(8);
    start();
    for (std::uint16_t i = 0; i < 4; ++i) {
        desc(i, kBufGpa + 0x100 * i, 16, 0);
        offer(i);
    }
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 0);
    // The driver adds more while we have cached entries: still in order.
    desc(4, kBufGpa + 0x400, 16, 0);
    offer(4);
    for (std::uint16_t i = 1; i <= 4; ++i) {
        ASSERT_EQ(q_.pop(c), PopResult::ok);
        EXPECT_EQ(c.head, i);
    }
    EXPECT_EQ(q_.pop(c), PopResult::empty);
    EXPECT_EQ(q_.last_avail(), 5);
}

TEST_F(Virtqueue, IndirectTable) {
    layout(8);
    start();
    tdesc(kIndGpa, 0, kBufGpa, 12, kDescFNext, 2);
    tdesc(kIndGpa, 2, kBufGpa + 0x100, 100, kDescFWrite | kDescFNext, 1);
    tdesc(kIndGpa, 1, kBufGpa + 0x200, 200, kDescFWrite);
    // WRITE on the descriptor that points at the table is ignored (§2.7.5.3.2).
    desc(5, kIndGpa, 3 * 16, kDescFIndirect | kDescFWrite);
    offer(5);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 5);
    ASSERT_EQ(c.n_read, 1);
    ASSERT_EQ(c.n_write, 2);
    EXPECT_EQ(c.read_len, 12u);
    EXPECT_EQ(c.write_len, 300u);
    EXPECT_EQ(c.writable()[1].ptr, at(kBufGpa + 0x200));
}

TEST_F(Virtqueue, DirectDescriptorsThenIndirectTable) {
    // §2.7.5.3.2: zero or more normal descriptors followed by one indirect one.
    layout(8);
    start();
    tdesc(kIndGpa, 0, kBufGpa + 0x100, 64, kDescFWrite);
    desc(0, kBufGpa, 12, kDescFNext, 1);
    desc(1, kIndGpa, 16, kDescFIndirect);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.n_read, 1);
    EXPECT_EQ(c.n_write, 1);
    EXPECT_EQ(c.writable()[0].ptr, at(kBufGpa + 0x100));
}

TEST_F(Virtqueue, IndexWraparound) {
    layout(4);
    // Resume just below 65535 with the used ring where the driver saw it.
    put_le(at(kUsedGpa + 2, 2), 65533, 2);
    set_avail_idx(65533);
    SplitQueue::Config cfg = config();
    cfg.last_avail = 65533;
    start(cfg);
    EXPECT_EQ(q_.used_idx(), 65533);
    for (std::uint16_t i = 0; i < 4; ++i)
        desc(i, kBufGpa + 0x100 * i, 8, kDescFWrite);
    Chain c;
    std::uint16_t expect_head = 0;
    // Six chains through idx 65533..65535, 0..2: the 16-bit indices wrap.
    for (int round = 0; round < 3; ++round) {
        offer(expect_head);
        offer(static_cast<std::uint16_t>(expect_head + 1));
        EXPECT_EQ(q_.available(), 2);
        for (int k = 0; k < 2; ++k) {
            ASSERT_EQ(q_.pop(c), PopResult::ok);
            EXPECT_EQ(c.head, expect_head);
            const std::uint32_t slot = q_.used_idx() & 3u;
            q_.push_used(c.head, 8);
            q_.publish_used();
            EXPECT_EQ(used_elem(slot), std::make_pair(std::uint32_t{expect_head}, 8u));
            expect_head = static_cast<std::uint16_t>((expect_head + 1) & 3);
        }
    }
    EXPECT_EQ(q_.last_avail(), 3);
    EXPECT_EQ(q_.used_idx(), 3);
    EXPECT_EQ(used_idx_mem(), 3);
    EXPECT_EQ(q_.pop(c), PopResult::empty);
    EXPECT_EQ(q_.stop(), 3);
}

TEST_F(Virtqueue, FullRingAcrossWrapIsNotTooFarAhead) {
    layout(4);
    set_avail_idx(65534);
    SplitQueue::Config cfg = config();
    cfg.last_avail = 65534;
    start(cfg);
    for (std::uint16_t i = 0; i < 4; ++i) {
        desc(i, kBufGpa, 8, 0);
        offer(i);  // exactly `size` ahead: allowed
    }
    EXPECT_EQ(q_.available(), 4);
    Chain c;
    for (int i = 0; i < 4; ++i)
        ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_FALSE(q_.broken());
}

TEST_F(Virtqueue, Unpop) {
    layout(8);
    start();
    for (std::uint16_t i = 0; i < 4; ++i) {
        desc(i, kBufGpa + 0x100 * i, 16, kDescFWrite);
        offer(i);
    }
    Chain c;
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(q_.pop(c), PopResult::ok);
    q_.unpop(2);
    EXPECT_EQ(q_.last_avail(), 1);
    EXPECT_EQ(q_.available(), 3);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 1);
    // Only chains still in flight can be given back: 2 popped and unused (0 and 1).
    q_.push_used(0, 0);
    q_.unpop(100);
    EXPECT_EQ(q_.last_avail(), 1);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 1);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 2);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 3);
    EXPECT_EQ(q_.pop(c), PopResult::empty);
    EXPECT_FALSE(q_.broken());
}

TEST_F(Virtqueue, ChainCrossingAdjacentRegionsIsSplit) {
    layout(8);
    // Two more regions adjacent in guest space, unrelated on the host.
    std::vector<std::byte> c1(0x1000), c2(0x1000);
    ASSERT_TRUE(mem_.add({0x300000, 0x1000, 0x9000'0000, c1.data()}));
    ASSERT_TRUE(mem_.add({0x301000, 0x1000, 0x5000'0000, c2.data()}));
    start();
    desc(0, 0x300ff0, 0x20, kDescFNext, 1);
    desc(1, 0x301ff8, 8, kDescFWrite);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    ASSERT_EQ(c.n_read, 2);
    EXPECT_EQ(c.seg[0].ptr, c1.data() + 0xff0);
    EXPECT_EQ(c.seg[0].len, 16u);
    EXPECT_EQ(c.seg[1].ptr, c2.data());
    EXPECT_EQ(c.seg[1].len, 16u);
    EXPECT_EQ(c.read_len, 32u);
    for (std::size_t i = 0; i < 16; ++i) {
        c1[0xff0 + i] = static_cast<std::byte>(i);
        c2[i] = static_cast<std::byte>(16 + i);
    }
    std::array<std::byte, 32> out{};
    EXPECT_EQ(gather(c, 0, out), 32u);
    for (std::size_t i = 0; i < 32; ++i)
        EXPECT_EQ(out[i], static_cast<std::byte>(i));

    // Running into a gap after a region is outside memory: the queue breaks.
    desc(2, 0x301ff0, 0x20, 0);
    expect_pop_breaks(2);
}

TEST(GatherScatter, AtOffsets) {
    std::array<std::byte, 64> mem{};
    for (std::size_t i = 0; i < mem.size(); ++i)
        mem[i] = static_cast<std::byte>(i);
    Chain c;
    c.seg[0] = {mem.data(), 3};
    c.seg[1] = {mem.data() + 10, 5};
    c.seg[2] = {mem.data() + 20, 7};
    c.seg[3] = {mem.data() + 40, 4};
    c.seg[4] = {mem.data() + 50, 6};
    c.n_read = 3;
    c.n_write = 2;

    std::array<std::byte, 32> out{};
    EXPECT_EQ(gather(c, 4, out), 11u);  // 15 readable bytes, from the 5th
    const std::array<int, 11> want{11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 26};
    for (std::size_t i = 0; i < want.size(); ++i)
        EXPECT_EQ(out[i], static_cast<std::byte>(want[i])) << i;
    EXPECT_EQ(gather(c, 3, std::span<std::byte>(out.data(), 2)), 2u);
    EXPECT_EQ(out[0], std::byte{10});
    EXPECT_EQ(gather(c, 15, out), 0u);
    EXPECT_EQ(gather(c, 1000, out), 0u);

    const std::array<std::byte, 8> in{std::byte{0xa0}, std::byte{0xa1}, std::byte{0xa2},
                                      std::byte{0xa3}, std::byte{0xa4}, std::byte{0xa5},
                                      std::byte{0xa6}, std::byte{0xa7}};
    EXPECT_EQ(scatter(c, 2, in), 8u);  // 2 bytes into seg 3, then 6 into seg 4
    EXPECT_EQ(mem[41], std::byte{41});
    EXPECT_EQ(mem[42], std::byte{0xa0});
    EXPECT_EQ(mem[43], std::byte{0xa1});
    EXPECT_EQ(mem[44], std::byte{44});  // past seg 3
    EXPECT_EQ(mem[50], std::byte{0xa2});
    EXPECT_EQ(mem[55], std::byte{0xa7});
    EXPECT_EQ(mem[56], std::byte{56});
    EXPECT_EQ(scatter(c, 8, in), 2u);  // only 2 writable bytes left
    EXPECT_EQ(mem[54], std::byte{0xa0});
    EXPECT_EQ(mem[56], std::byte{56});
    EXPECT_EQ(mem[20], std::byte{20});  // readable part untouched
}

// ---- notifications -----------------------------------------------------------------------------

TEST_F(Virtqueue, EventIdxShouldNotify) {
    layout(8);
    SplitQueue::Config cfg = config();
    cfg.event_idx = true;
    start(cfg);
    set_avail_flags(kAvailFNoInterrupt);  // ignored with EVENT_IDX
    auto use = [&](int k) {
        for (int i = 0; i < k; ++i)
            q_.push_used(0, 0);
        q_.publish_used();
    };
    set_used_event(0);
    use(1);                           // used idx 1
    EXPECT_TRUE(q_.should_notify());  // first time: no previous signal to compare with
    use(2);                           // old 1, new 3
    set_used_event(1);
    EXPECT_TRUE(q_.should_notify());  // 3 - 1 - 1 = 1 < 2
    use(2);                           // old 3, new 5
    set_used_event(6);
    EXPECT_FALSE(q_.should_notify());  // the driver wants to hear only past 6
    use(2);                            // old 5, new 7
    EXPECT_TRUE(q_.should_notify());   // crossed 6
    use(1);                            // old 7, new 8
    set_used_event(6);
    EXPECT_FALSE(q_.should_notify());  // 6 already passed before the last interrupt
    EXPECT_FALSE(q_.should_notify());  // nothing new published
    set_used_event(8);
    use(1);  // old 8, new 9: event 8 reached exactly
    EXPECT_TRUE(q_.should_notify());
    // Pushed but not published does not count.
    q_.push_used(0, 0);
    set_used_event(9);
    EXPECT_FALSE(q_.should_notify());
    q_.publish_used();
    EXPECT_TRUE(q_.should_notify());
    EXPECT_EQ(q_.counters().notify_sent.get(), 5u);
    EXPECT_EQ(q_.counters().notify_saved.get(), 4u);
}

TEST_F(Virtqueue, EventIdxShouldNotifyAcrossWrap) {
    layout(8);
    put_le(at(kUsedGpa + 2, 2), 65534, 2);
    SplitQueue::Config cfg = config();
    cfg.event_idx = true;
    cfg.last_avail = 65534;
    start(cfg);
    q_.push_used(0, 0);
    q_.publish_used();
    EXPECT_TRUE(q_.should_notify());  // first; old = 65535
    set_used_event(0);                // wants to hear when idx passes 0 (i.e. reaches 1)
    q_.push_used(0, 0);
    q_.publish_used();  // new 0
    EXPECT_FALSE(q_.should_notify());
    q_.push_used(0, 0);
    q_.publish_used();  // new 1
    EXPECT_TRUE(q_.should_notify());
}

TEST_F(Virtqueue, NoInterruptFlagWithoutEventIdx) {
    layout(8);
    start();
    set_used_event(100);  // ignored without EVENT_IDX
    q_.push_used(0, 0);
    q_.publish_used();
    EXPECT_TRUE(q_.should_notify());
    set_avail_flags(kAvailFNoInterrupt);
    EXPECT_FALSE(q_.should_notify());
    set_avail_flags(0);
    EXPECT_TRUE(q_.should_notify());
    EXPECT_EQ(q_.counters().notify_saved.get(), 1u);
}

TEST_F(Virtqueue, EnableNotifyWithEventIdx) {
    layout(8);
    SplitQueue::Config cfg = config();
    cfg.event_idx = true;
    start(cfg);
    desc(0, kBufGpa, 8, 0);
    EXPECT_FALSE(q_.enable_notify());
    EXPECT_EQ(avail_event(), 0);
    offer(0);
    offer(0);
    // Buffers raced in after the caller's last empty pop: poll again.
    EXPECT_TRUE(q_.enable_notify());
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    q_.disable_notify();  // nothing to write with EVENT_IDX
    EXPECT_EQ(avail_event(), 0);
    EXPECT_EQ(used_flags(), 0);
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_FALSE(q_.enable_notify());
    EXPECT_EQ(avail_event(), 2);  // kick me when entry 2 becomes available
    EXPECT_EQ(used_flags(), 0);
}

// An RX frame that needs more merged buffers than the guest has posted: the device asks for a
// kick only past the buffers it already saw (enable_notify(have)), or it would spin on them.
TEST_F(Virtqueue, EnableNotifyPastBuffersAlreadySeen) {
    layout(8);
    SplitQueue::Config cfg = config();
    cfg.event_idx = true;
    start(cfg);
    desc(0, kBufGpa, 8, 0);
    offer(0);
    offer(0);
    // Two available, both not enough: kick me when the third arrives.
    EXPECT_FALSE(q_.enable_notify(2));
    EXPECT_EQ(avail_event(), 2);
    offer(0);
    EXPECT_TRUE(q_.enable_notify(2));
    // Without EVENT_IDX the flag is cleared and the same count decides.
    SplitQueue::Config plain = config();
    start(plain);
    EXPECT_FALSE(q_.enable_notify(3));
    EXPECT_TRUE(q_.enable_notify(2));
}

TEST_F(Virtqueue, EnableNotifyWithoutEventIdx) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, 0);
    q_.disable_notify();
    EXPECT_EQ(used_flags(), kUsedFNoNotify);
    EXPECT_FALSE(q_.enable_notify());
    EXPECT_EQ(used_flags(), 0);
    EXPECT_EQ(avail_event(), 0);  // untouched without EVENT_IDX
    q_.disable_notify();
    offer(0);
    EXPECT_TRUE(q_.enable_notify());
    EXPECT_EQ(used_flags(), 0);
}

TEST_F(Virtqueue, EnableNotifyReportsCorruptIndexForPop) {
    layout(8);
    start();
    set_avail_idx(9);                 // more than 8 ahead
    EXPECT_TRUE(q_.enable_notify());  // the caller pops and learns
    EXPECT_EQ(q_.available(), 8);
    Chain c;
    EXPECT_EQ(q_.pop(c), PopResult::broken);
    expect_broken();
}

// ---- too many segments: the chain alone is dropped ----------------------------------------------

TEST_F(Virtqueue, TooManySegmentsIsBadChain) {
    layout(128);
    start();
    // 65 one-byte readable descriptors.
    for (std::uint16_t i = 0; i < 65; ++i)
        desc(i, kBufGpa + i, 1, i < 64 ? kDescFNext : 0, static_cast<std::uint16_t>(i + 1));
    offer(0);
    desc(100, kBufGpa, 4, 0);
    offer(100);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::bad_chain);
    EXPECT_EQ(c.head, 0);
    EXPECT_FALSE(q_.broken());
    EXPECT_EQ(q_.counters().bad_chains.get(), 1u);
    q_.push_used(c.head, 0);
    q_.publish_used();
    EXPECT_EQ(used_elem(0), std::make_pair(0u, 0u));
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.head, 100);
    EXPECT_EQ(q_.counters().chains.get(), 1u);
}

TEST_F(Virtqueue, ExactlyMaxSegmentsInIndirectTable) {
    layout(8);
    std::vector<std::byte> c1(0x1000), c2(0x1000);
    ASSERT_TRUE(mem_.add({0x300000, 0x1000, 0x300000, c1.data()}));
    ASSERT_TRUE(mem_.add({0x301000, 0x1000, 0x301000, c2.data()}));
    start();
    for (std::uint16_t i = 0; i < 64; ++i)
        tdesc(kIndGpa, i, kBufGpa + i, 1,
              static_cast<std::uint16_t>(kDescFWrite | (i < 63 ? kDescFNext : 0)),
              static_cast<std::uint16_t>(i + 1));
    desc(0, kIndGpa, 64 * 16, kDescFIndirect);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.n_write, 64);
    EXPECT_EQ(c.write_len, 64u);
    // One more via a region split: 63 descriptors plus one that crosses two regions.
    tdesc(kIndGpa, 63, 0x300fff, 2, kDescFWrite);
    offer(0);
    EXPECT_EQ(q_.pop(c), PopResult::bad_chain);
    EXPECT_FALSE(q_.broken());
}

TEST_F(Virtqueue, TooManySegmentsThenOutsideMemoryBreaks) {
    layout(128);
    start();
    for (std::uint16_t i = 0; i < 70; ++i)
        desc(i, kBufGpa + i, 1, kDescFNext, static_cast<std::uint16_t>(i + 1));
    desc(70, 0x4000'0000, 1, 0);  // past the segment limit, still checked
    expect_pop_breaks(0);
}

// ---- hostile drivers: the queue is broken, nothing is read out of bounds
// -------------------------

TEST_F(Virtqueue, AvailIndexTooFarAhead) {
    layout(8);
    start();
    set_avail_idx(9);
    Chain c;
    EXPECT_EQ(q_.pop(c), PopResult::broken);
    expect_broken();
    EXPECT_NE(q_.broken_reason().find("available index"), std::string::npos);
}

TEST_F(Virtqueue, AvailIndexTooFarAheadAfterCachedEntries) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, 0);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    set_avail_idx(static_cast<std::uint16_t>(1 + 9));
    EXPECT_EQ(q_.pop(c), PopResult::broken);
    expect_broken();
}

TEST_F(Virtqueue, AvailIndexGoingBackwardsBreaks) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, 0);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    set_avail_idx(0);  // 65535 entries "ahead"
    EXPECT_EQ(q_.pop(c), PopResult::broken);
}

TEST_F(Virtqueue, HeadOutOfRange) {
    layout(8);
    start();
    expect_pop_breaks(8);  // desc[8] would be just past region A
    EXPECT_NE(q_.broken_reason().find("head"), std::string::npos);
}

TEST_F(Virtqueue, HeadWayOutOfRange) {
    layout(8);
    start();
    expect_pop_breaks(0xffff);
}

TEST_F(Virtqueue, NextOutOfRange) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, kDescFNext, 8);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("next"), std::string::npos);
}

TEST_F(Virtqueue, ChainLoop) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, kDescFNext, 1);
    desc(1, kBufGpa, 8, kDescFNext, 0);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("loop"), std::string::npos);
}

TEST_F(Virtqueue, SelfLoopOnSizeOneQueue) {
    layout(1);
    start();
    desc(0, kBufGpa, 8, kDescFNext, 0);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, ChainOfExactlyQueueSizeIsFine) {
    layout(8);
    start();
    for (std::uint16_t i = 0; i < 8; ++i)
        desc(i, kBufGpa, 8, i < 7 ? kDescFNext : 0, static_cast<std::uint16_t>(i + 1));
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.n_read, 8);
}

TEST_F(Virtqueue, IndirectLengthNotMultipleOf16) {
    layout(8);
    start();
    desc(0, kIndGpa, 24, kDescFIndirect);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("multiple of 16"), std::string::npos);
}

TEST_F(Virtqueue, IndirectEmptyTable) {
    layout(8);
    start();
    desc(0, kIndGpa, 0, kDescFIndirect);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, NestedIndirect) {
    layout(8);
    start();
    tdesc(kIndGpa, 0, kIndGpa + 0x100, 16, kDescFIndirect);
    tdesc(kIndGpa + 0x100, 0, kBufGpa, 8, 0);
    desc(0, kIndGpa, 16, kDescFIndirect);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("nested"), std::string::npos);
}

TEST_F(Virtqueue, IndirectWithoutFeature) {
    layout(8);
    SplitQueue::Config cfg = config();
    cfg.indirect = false;
    start(cfg);
    tdesc(kIndGpa, 0, kBufGpa, 8, 0);
    desc(0, kIndGpa, 16, kDescFIndirect);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("INDIRECT_DESC"), std::string::npos);
}

TEST_F(Virtqueue, IndirectWithNext) {
    layout(8);
    start();
    tdesc(kIndGpa, 0, kBufGpa, 8, 0);
    desc(0, kIndGpa, 16, kDescFIndirect | kDescFNext, 1);
    desc(1, kBufGpa, 8, 0);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, IndirectNextOutOfRange) {
    layout(8);
    start();
    // A 2-entry table at the very end of region B: entry 2 would be past the heap block.
    const std::uint64_t t = kBEnd - 32;
    tdesc(t, 0, kBufGpa, 8, kDescFNext, 2);  // the loop bound alone would let it read entry 2
    tdesc(t, 1, kBufGpa, 8, 0);
    desc(0, t, 32, kDescFIndirect);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, IndirectLoop) {
    layout(8);
    start();
    tdesc(kIndGpa, 0, kBufGpa, 8, kDescFNext, 1);
    tdesc(kIndGpa, 1, kBufGpa, 8, kDescFNext, 0);
    desc(0, kIndGpa, 32, kDescFIndirect);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, IndirectTableOutsideMemory) {
    layout(8);
    start();
    desc(0, kBEnd - 16, 32, kDescFIndirect);  // runs 16 bytes past region B
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("indirect table"), std::string::npos);
}

TEST_F(Virtqueue, IndirectTableWrapsAddressSpace) {
    layout(8);
    start();
    desc(0, kU64Max - 15, 32, kDescFIndirect);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, ReadableAfterWritable) {
    layout(8);
    start();
    desc(0, kBufGpa, 8, kDescFWrite | kDescFNext, 1);
    desc(1, kBufGpa, 8, 0);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("readable"), std::string::npos);
}

TEST_F(Virtqueue, ReadableAfterWritableInsideIndirect) {
    layout(8);
    start();
    tdesc(kIndGpa, 0, kBufGpa, 8, kDescFWrite | kDescFNext, 1);
    tdesc(kIndGpa, 1, kBufGpa, 8, 0);
    desc(0, kIndGpa, 32, kDescFIndirect);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, DescriptorOutsideMemory) {
    layout(8);
    start();
    desc(0, 0x5000'0000, 8, 0);
    expect_pop_breaks(0);
    EXPECT_NE(q_.broken_reason().find("outside guest memory"), std::string::npos);
}

TEST_F(Virtqueue, DescriptorRunningPastRegionEnd) {
    layout(8);
    start();
    desc(0, kBEnd - 8, 9, 0);
    expect_pop_breaks(0);
}

TEST_F(Virtqueue, DescriptorWrappingPast2To64) {
    layout(8);
    // A region at the very top of the address space and one at 0: a descriptor running off the
    // top must not continue at 0.
    std::vector<std::byte> top(0x1000), low(0x1000);
    ASSERT_TRUE(mem_.add({kU64Max - 0xfff, 0x1000, 0x200000, top.data()}));
    ASSERT_TRUE(mem_.add({0, 0x1000, 0x300000, low.data()}));
    start();
    desc(0, kU64Max - 0xf, 0x10, kDescFNext, 1);  // ends exactly at 2^64: fine
    desc(1, 0, 0x10, 0);
    offer(0);
    Chain c;
    ASSERT_EQ(q_.pop(c), PopResult::ok);
    EXPECT_EQ(c.seg[0].ptr, top.data() + 0xff0);
    EXPECT_EQ(c.seg[1].ptr, low.data());
    desc(2, kU64Max - 0xf, 0x20, 0);
    expect_pop_breaks(2);
    EXPECT_NE(q_.broken_reason().find("wraps"), std::string::npos);
}

TEST_F(Virtqueue, DescriptorLongerThanItsRegion) {
    layout(8);
    start();
    desc(0, kBufGpa, 0xffff'ffff, 0);
    expect_pop_breaks(0);
}

// ---- break bookkeeping -------------------------------------------------------------------------

TEST_F(Virtqueue, BreakIsLoggedOnceAndClearedByRestart) {
    layout(8);
    auto old = spdlog::default_logger();
    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    auto logger = std::make_shared<spdlog::logger>("vq-test", sink);
    logger->set_level(spdlog::level::warn);
    spdlog::set_default_logger(logger);

    q_.set_name("test rx");
    start();
    desc(0, kBufGpa, 8, kDescFNext, 0);  // self loop
    offer(0);
    Chain c;
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(q_.pop(c), PopResult::broken);
    q_.push_used(0, 0);
    (void)q_.enable_notify();
    spdlog::set_default_logger(old);

    const std::string log = out.str();
    std::size_t lines = 0;
    for (std::size_t p = log.find("test rx"); p != std::string::npos;
         p = log.find("test rx", p + 1))
        ++lines;
    EXPECT_EQ(lines, 1u) << log;
    EXPECT_NE(log.find("loop"), std::string::npos) << log;

    // stop() keeps the verdict; a new start() clears it.
    EXPECT_EQ(q_.stop(), 0);
    EXPECT_TRUE(q_.broken());
    desc(0, kBufGpa, 8, 0);
    start();
    EXPECT_FALSE(q_.broken());
    EXPECT_TRUE(q_.broken_reason().empty());
    ASSERT_EQ(q_.pop(c), PopResult::ok);
}

}  // namespace
}  // namespace slipway::virtio
