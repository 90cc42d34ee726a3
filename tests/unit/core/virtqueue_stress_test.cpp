// Two-thread stress test of the split virtqueue's memory ordering and notification suppression
// (virtio 1.2 §2.7): a driver thread and a device thread on shared guest RAM; also run under
// ThreadSanitizer (tsan preset, label `stress`).
//
// The driver is tests/support's DriverQueue (written from the spec, not from SplitQueue), the
// device SplitQueue. Every request carries a sequence number and a pattern derived from it; the
// device checks them in order and writes a reply derived from them, which the driver checks
// against the used length. Torn or stale buffer data, a lost, duplicated or reordered chain, and a
// lost notification (both sides asleep: a wait with no progress past the stall limit) fail the
// test; TSan reports any access to shared memory that acquire/release does not order.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "slipway/core/virtio/virtqueue.hpp"
#include "virtio_driver.hpp"

namespace slipway::virtio {
namespace {

namespace tst = slipway::testing;
using Clock = std::chrono::steady_clock;

// Sanitizers slow every access by 5-20x: fewer chains there, so both event-idx modes together
// stay well under 20 s in the tsan build.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kChains = 150'000;
constexpr auto kBudget = std::chrono::seconds(6);
#else
constexpr std::uint64_t kChains = 200'000;
constexpr auto kBudget = std::chrono::seconds(10);
#endif
// Both sides asleep this long with work outstanding can only be a lost kick or call.
constexpr auto kStall = std::chrono::seconds(2);
constexpr int kSliceMs = 20;  // waits poll in slices so a failing peer's stop is seen quickly

constexpr std::uint16_t kQueueSize = 256;
// Buffer slots are indexed by seq % kSlots. The device returns chains in order, so the chains in
// flight are a window of consecutive sequence numbers, kept at most kSlots wide.
constexpr std::size_t kSlots = kQueueSize;
constexpr std::size_t kSlotBytes = 512;
// Request (device-readable): le64 seq, le32 payload length, payload.
constexpr std::size_t kReqHdr = 12;
constexpr std::size_t kMaxPayload = 200;
constexpr std::size_t kReadCap = kReqHdr + kMaxPayload;
// Reply (device-writable): le64 seq + 1, payload. The buffer has slack past the longest reply so
// a device writing more than it reports shows up as clobbered poison.
constexpr std::size_t kReplyHdr = 8;
constexpr std::size_t kWriteOff = 256;
constexpr std::size_t kWriteCap = 240;
constexpr std::uint8_t kPoison = 0xee;
static_assert(kReadCap <= kWriteOff && kWriteOff + kWriteCap <= kSlotBytes);
static_assert(kReplyHdr + kMaxPayload < kWriteCap);

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

std::size_t payload_len(std::uint64_t seq) {
    return static_cast<std::size_t>((seq * 7919u) % (kMaxPayload + 1));
}
// Every byte depends on the sequence number, so data left over from the slot's last use (the
// chain kSlots earlier) never passes for the current one.
std::uint8_t req_byte(std::uint64_t seq, std::size_t i) {
    const std::uint64_t x = (seq ^ (std::uint64_t{i} << 20)) * 0x9e3779b97f4a7c15ull;
    return static_cast<std::uint8_t>(x >> 56);
}
std::uint8_t reply_byte(std::uint64_t seq, std::size_t i) {
    return static_cast<std::uint8_t>(req_byte(seq + 1, i) ^ 0x5a);
}

struct Options {
    bool event_idx = false;
    std::uint64_t chains = kChains;
    Clock::duration budget = kBudget;
    Clock::duration stall = kStall;
    // Fault injection for the detector's own test: from this sequence number on, the driver
    // drops every kick the device asked for.
    std::uint64_t drop_kicks_from = kNever;
};

struct DriverSide {
    std::uint64_t added = 0;
    std::uint64_t reclaimed = 0;
    std::uint64_t kick_calls = 0;  // kick() calls (kicks_sent + kicks_saved)
    std::uint64_t kicks_dropped = 0;
    std::uint64_t sleeps = 0;    // waits on the call eventfd
    std::uint64_t woken = 0;     // ... ended by a call
    std::uint64_t rechecks = 0;  // enable_call() found used buffers: §2.7.10's race seen
    std::string error;
};

struct DeviceSide {
    std::uint64_t seen = 0;
    std::uint64_t unpopped = 0;
    std::uint64_t notify_checks = 0;  // should_notify() calls
    std::uint64_t calls = 0;          // ... that said yes: the call eventfd written
    std::uint64_t sleeps = 0;         // waits on the kick eventfd
    std::uint64_t woken = 0;          // ... ended by a kick
    std::uint64_t rechecks = 0;       // enable_notify() found buffers: §2.7.10's race seen
    std::string error;
};

std::string ms(Clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

enum class Wait { signalled, stopped, stalled };

// Sleeps on an eventfd without re-reading the ring on a timeout: re-reading would hide a lost
// notification, which must show up as a stall instead.
Wait wait_fd(int fd, const std::atomic<bool>& stop, Clock::duration stall) {
    const auto until = Clock::now() + stall;
    for (;;) {
        if (stop.load(std::memory_order_acquire)) return Wait::stopped;
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, kSliceMs);
        if (r > 0) {
            std::uint64_t v = 0;
            const ssize_t n = ::read(fd, &v, sizeof v);
            (void)n;  // EAGAIN cannot happen: only this thread reads the eventfd
            return Wait::signalled;
        }
        if (Clock::now() >= until) return Wait::stalled;
    }
}

class VirtqueueStress : public ::testing::Test {
  protected:
    void run(const Options& opt) {
        std::string err;
        auto ram = tst::GuestRam::create(std::size_t{1} << 20, err);
        ASSERT_TRUE(ram) << err;
        ram_ = std::move(*ram);
        auto q = tst::DriverQueue::create(*ram_, kQueueSize, opt.event_idx, err);
        ASSERT_TRUE(q) << err;
        dq_ = std::move(*q);
        bufs_ = ram_->alloc(kSlots * kSlotBytes, 64);
        ASSERT_NE(bufs_, 0u);
        ASSERT_TRUE(mem_.add(ram_->region()));
        SplitQueue::Config cfg;
        cfg.size = kQueueSize;
        cfg.desc = dq_->desc_gpa();
        cfg.avail = dq_->avail_gpa();
        cfg.used = dq_->used_gpa();
        cfg.event_idx = opt.event_idx;
        cfg.indirect = true;
        ASSERT_TRUE(sq_.start(mem_, cfg, err)) << err;

        std::thread device([&] { device_loop(opt); });
        std::thread driver([&] { driver_loop(opt); });
        driver.join();
        device.join();
        const auto& ds = dq_->stats();
        const auto& c = sq_.counters();
        std::cout << "virtqueue stress (" << (opt.event_idx ? "event idx" : "flags") << "): chains "
                  << drv_.reclaimed << ", kicks sent/saved " << ds.kicks_sent << "/"
                  << ds.kicks_saved << ", calls sent/saved " << c.notify_sent.get() << "/"
                  << c.notify_saved.get() << ", device sleeps/rechecks " << dev_.sleeps << "/"
                  << dev_.rechecks << ", driver sleeps/rechecks " << drv_.sleeps << "/"
                  << drv_.rechecks << ", unpops " << dev_.unpopped << "\n";
    }

    std::byte* slot(std::uint64_t seq) const { return ram_->at(slot_gpa(seq), kSlotBytes); }
    std::uint64_t slot_gpa(std::uint64_t seq) const { return bufs_ + (seq % kSlots) * kSlotBytes; }

    // used->idx as the driver would read it (a naturally aligned 16-bit ring field, §2.7.8).
    std::uint16_t load_used_idx() const {
        const std::byte* p = ram_->at(dq_->used_gpa() + 2, 2);
        return __atomic_load_n(reinterpret_cast<const std::uint16_t*>(p), __ATOMIC_ACQUIRE);
    }

    void fail(std::string& where, std::string what) {
        if (where.empty()) where = std::move(what);
        stop_.store(true, std::memory_order_release);
    }

    // Writes the request and poisons the reply buffer, then adds the chain in one of several
    // shapes (split buffers, an indirect table) so the device's chain walk varies.
    Result<std::uint16_t> add(std::uint64_t seq, std::mt19937& rng) {
        std::byte* s = slot(seq);
        const std::size_t len = payload_len(seq);
        tst::put_le64(s, seq);
        tst::put_le32(s + 8, static_cast<std::uint32_t>(len));
        for (std::size_t i = 0; i < len; ++i)
            s[kReqHdr + i] = std::byte{req_byte(seq, i)};
        std::memset(s + kWriteOff, kPoison, kWriteCap);

        const std::uint64_t g = slot_gpa(seq);
        const std::size_t n = kReqHdr + len;
        std::array<tst::Buf, 2> rd{};
        std::array<tst::Buf, 2> wr{};
        std::size_t nr = 1;
        std::size_t nw = 1;
        rd[0] = {g, static_cast<std::uint32_t>(n)};
        if (rng() % 3 == 0) {
            const std::size_t cut = 1 + rng() % (n - 1);
            rd[0] = {g, static_cast<std::uint32_t>(cut)};
            rd[1] = {g + cut, static_cast<std::uint32_t>(n - cut)};
            nr = 2;
        }
        wr[0] = {g + kWriteOff, static_cast<std::uint32_t>(kWriteCap)};
        if (rng() % 3 == 0) {
            const std::size_t cut = 1 + rng() % (kWriteCap - 1);
            wr[0] = {g + kWriteOff, static_cast<std::uint32_t>(cut)};
            wr[1] = {g + kWriteOff + cut, static_cast<std::uint32_t>(kWriteCap - cut)};
            nw = 2;
        }
        const bool indirect = rng() % 4 == 0;
        return dq_->add_chain(std::span<const tst::Buf>(rd.data(), nr),
                              std::span<const tst::Buf>(wr.data(), nw), indirect);
    }

    // Checks the used element for `seq`: the reported length and the reply the device wrote.
    bool check_reply(std::uint64_t seq, std::uint32_t used_len) {
        const std::size_t len = payload_len(seq);
        if (used_len != kReplyHdr + len) {
            fail(drv_.error, "seq " + std::to_string(seq) + ": used length " +
                                 std::to_string(used_len) + ", expected " +
                                 std::to_string(kReplyHdr + len));
            return false;
        }
        const std::byte* w = slot(seq) + kWriteOff;
        if (tst::le64_at(w) != seq + 1) {
            fail(drv_.error, "seq " + std::to_string(seq) + ": reply carries " +
                                 std::to_string(tst::le64_at(w)) + " (stale or torn reply)");
            return false;
        }
        for (std::size_t i = 0; i < len; ++i) {
            if (w[kReplyHdr + i] != std::byte{reply_byte(seq, i)}) {
                fail(drv_.error, "seq " + std::to_string(seq) + ": reply byte " +
                                     std::to_string(i) + " wrong (stale or torn reply)");
                return false;
            }
        }
        if (w[kReplyHdr + len] != std::byte{kPoison}) {
            fail(drv_.error,
                 "seq " + std::to_string(seq) + ": device wrote past the length it reported");
            return false;
        }
        return true;
    }

    void driver_loop(const Options& opt) {
        std::mt19937 rng(opt.event_idx ? 11 : 12);
        std::vector<std::uint64_t> seq_of_head(kQueueSize, kNever);
        std::uint64_t next_seq = 0;   // next to add
        std::uint64_t next_used = 0;  // next expected back
        const auto add_until = Clock::now() + opt.budget;
        bool adding = true;
        bool quiesced = false;  // the pause before lost kicks (drop_kicks_from) is done
        while (!stop_.load(std::memory_order_acquire)) {
            bool progress = false;
            for (;;) {
                std::uint16_t head = 0;
                std::uint32_t len = 0;
                auto r = dq_->poll_used(head, len);
                if (!r) {
                    fail(drv_.error, "driver: " + dq_->error());
                    break;
                }
                if (!*r) break;
                progress = true;
                const std::uint64_t seq = seq_of_head[head];
                if (seq != next_used) {
                    fail(drv_.error, "used head " + std::to_string(head) + " is seq " +
                                         std::to_string(seq) + ", expected " +
                                         std::to_string(next_used) +
                                         " (lost, duplicated or reordered)");
                    break;
                }
                if (!check_reply(seq, len)) break;
                seq_of_head[head] = kNever;
                ++next_used;
            }
            if (!drv_.error.empty()) break;

            adding = adding && next_seq < opt.chains && Clock::now() < add_until;
            if (!adding && next_used == next_seq) break;  // all returned: done

            // Fault injection made deterministic: before the first chain whose kick is lost, let
            // the device take back everything and go to sleep, so that it does need that kick
            // (a device still polling would pick the chains up without one, and the run would
            // pass by luck of timing).
            bool hold = false;
            if (!quiesced && next_seq > opt.drop_kicks_from) {
                hold = next_used != next_seq;  // wait for the ring to drain first
                if (!hold) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                    quiesced = true;
                }
            }

            // A burst of chains, then one publish and one kick decision, as a driver batches.
            const std::size_t burst = 1 + rng() % 32;
            std::size_t added = 0;
            while (adding && !hold && added < burst && next_seq < opt.chains &&
                   next_seq - next_used < kSlots) {
                auto h = add(next_seq, rng);
                if (!h) {
                    if (h.error() != Errc::would_block)
                        fail(drv_.error, "add_chain failed: " + dq_->error());
                    break;
                }
                if (seq_of_head[*h] != kNever) {
                    fail(drv_.error,
                         "add_chain reused head " + std::to_string(*h) + " still with the device");
                    break;
                }
                seq_of_head[*h] = next_seq++;
                ++added;
            }
            if (!drv_.error.empty()) break;
            if (added != 0) {
                dq_->publish();
                ++drv_.kick_calls;
                if (next_seq > opt.drop_kicks_from) {
                    // Fault injection: decide like kick() does, then lose the kick.
                    if (dq_->kick_needed()) ++drv_.kicks_dropped;
                } else {
                    dq_->kick();
                }
                progress = true;
            }
            if (rng() % 512 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
            if (progress) continue;

            // Nothing to reclaim and no room (or nothing left) to add: sleep until called.
            // §2.7.10: ask for the call, then look once more before sleeping.
            if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
            if (dq_->enable_call()) {
                ++drv_.rechecks;
                continue;
            }
            ++drv_.sleeps;
            const Wait w = wait_fd(dq_->call_fd(), stop_, opt.stall);
            if (w == Wait::stalled) {
                // Only the diagnosis looks at used->idx again: published elements mean the device
                // did its part and the call went missing; none mean the device never woke.
                const bool published = load_used_idx() != static_cast<std::uint16_t>(next_used);
                fail(drv_.error, "driver: asleep for " + ms(opt.stall) + " ms with " +
                                     std::to_string(next_seq - next_used) + " chains in flight, " +
                                     (published ? "used elements published (lost call)"
                                                : "none returned (lost kick?)"));
                break;
            }
            if (w == Wait::signalled) {
                ++drv_.woken;
                dq_->disable_call();  // busy reclaiming now, as a driver's interrupt handler
            }
        }
        drv_.added = next_seq;
        drv_.reclaimed = next_used;
        driver_done_.store(true, std::memory_order_release);
    }

    // Returns the bytes written, or 0 after recording an error.
    std::uint32_t serve(const Chain& c, std::uint64_t expect) {
        std::array<std::byte, kReadCap> in{};
        std::array<std::byte, kWriteCap> out{};
        if (c.read_len < kReqHdr || c.read_len > kReadCap || c.n_write == 0) {
            fail(dev_.error, "device: chain with " + std::to_string(c.read_len) +
                                 " readable bytes and " + std::to_string(c.n_write) +
                                 " writable segments");
            return 0;
        }
        const std::size_t got = gather(c, 0, std::span<std::byte>(in.data(), c.read_len));
        const std::uint64_t seq = tst::le64_at(in.data());
        const std::size_t len = tst::le32_at(in.data() + 8);
        if (got != c.read_len || seq != expect) {
            fail(dev_.error, "device: popped seq " + std::to_string(seq) + ", expected " +
                                 std::to_string(expect) +
                                 " (lost, duplicated, reordered or stale)");
            return 0;
        }
        if (len != payload_len(seq) || c.read_len != kReqHdr + len) {
            fail(dev_.error, "device: seq " + std::to_string(seq) + " has length " +
                                 std::to_string(len) + " in " + std::to_string(c.read_len) +
                                 " readable bytes (torn request)");
            return 0;
        }
        for (std::size_t i = 0; i < len; ++i) {
            if (in[kReqHdr + i] != std::byte{req_byte(seq, i)}) {
                fail(dev_.error, "device: seq " + std::to_string(seq) + " request byte " +
                                     std::to_string(i) + " wrong (stale or torn request)");
                return 0;
            }
        }
        tst::put_le64(out.data(), seq + 1);
        for (std::size_t i = 0; i < len; ++i)
            out[kReplyHdr + i] = std::byte{reply_byte(seq, i)};
        const std::size_t n = kReplyHdr + len;
        if (scatter(c, 0, std::span<const std::byte>(out.data(), n)) != n) {
            fail(dev_.error, "device: reply of " + std::to_string(n) + " bytes did not fit " +
                                 std::to_string(c.write_len) + " writable bytes");
            return 0;
        }
        return static_cast<std::uint32_t>(n);
    }

    void device_loop(const Options& opt) {
        std::mt19937 rng(opt.event_idx ? 21 : 22);
        Chain c;
        std::uint64_t expect = 0;
        sq_.disable_notify();  // polling from the start
        while (!stop_.load(std::memory_order_acquire)) {
            // Serve a batch, then publish it as one used->idx store.
            const std::size_t batch = 1 + rng() % 8;
            std::size_t pushed = 0;
            PopResult pr = PopResult::ok;
            while (pushed < batch && (pr = sq_.pop(c)) == PopResult::ok) {
                if (rng() % 64 == 0) {
                    // Give the chain back and take it again: the same head must come out.
                    const std::uint16_t head = c.head;
                    sq_.unpop(1);
                    ++dev_.unpopped;
                    if (sq_.pop(c) != PopResult::ok || c.head != head) {
                        fail(dev_.error, "device: unpop(1) then pop() did not return head " +
                                             std::to_string(head));
                        break;
                    }
                }
                const std::uint32_t n = serve(c, expect);
                if (n == 0) break;
                sq_.push_used(c.head, n);
                ++expect;
                ++pushed;
            }
            if (!dev_.error.empty()) break;
            if (pr == PopResult::broken || pr == PopResult::bad_chain) {
                fail(dev_.error,
                     "device: queue " +
                         std::string(pr == PopResult::broken ? "broken: " : "bad chain") +
                         sq_.broken_reason());
                break;
            }
            if (pushed != 0) {
                sq_.publish_used();
                ++dev_.notify_checks;
                if (sq_.should_notify()) {
                    ++dev_.calls;
                    const std::uint64_t one = 1;
                    const ssize_t w = ::write(dq_->call_fd(), &one, sizeof one);
                    (void)w;  // EAGAIN: the counter is already non-zero, the driver wakes anyway
                }
                if (rng() % 512 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
                continue;
            }

            // Empty. The driver is done once it has every chain back, so nothing can be pending.
            if (driver_done_.load(std::memory_order_acquire)) break;
            // Now and then a pause between "found nothing" and asking for a kick: the driver
            // publishes meanwhile without kicking, and only enable_notify()'s re-check finds it.
            if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
            // §2.7.10: ask for a kick, then look once more before sleeping.
            if (sq_.enable_notify()) {
                ++dev_.rechecks;
                sq_.disable_notify();
                continue;
            }
            ++dev_.sleeps;
            const auto until = Clock::now() + opt.stall;
            Wait w = Wait::stalled;
            while (Clock::now() < until) {
                // Slices, so the driver's end (which sends no kick) is noticed promptly.
                w = wait_fd(dq_->kick_fd(), stop_, std::chrono::milliseconds(kSliceMs));
                if (w != Wait::stalled || driver_done_.load(std::memory_order_acquire)) break;
            }
            if (w == Wait::stopped) break;
            if (w == Wait::signalled) {
                ++dev_.woken;
                sq_.disable_notify();
                continue;
            }
            if (driver_done_.load(std::memory_order_acquire)) continue;  // loop exits above
            const std::uint16_t avail = sq_.available();
            fail(dev_.error,
                 "device: asleep for " + ms(opt.stall) + " ms with " + std::to_string(avail) +
                     " chains available" +
                     (avail != 0 ? " (lost kick)" : ", the driver silent (lost call?)"));
            break;
        }
        dev_.seen = expect;
    }

    // Everything a clean run must satisfy once both threads are done.
    void expect_clean_run(const Options& opt) {
        EXPECT_EQ(drv_.error, "");
        EXPECT_EQ(dev_.error, "");
        // Every chain added came back exactly once and in order (checked one by one above).
        EXPECT_EQ(drv_.reclaimed, drv_.added);
        EXPECT_EQ(dev_.seen, drv_.added);
        EXPECT_GE(drv_.added, std::min<std::uint64_t>(opt.chains, 1000));
        const auto& ds = dq_->stats();
        EXPECT_EQ(ds.chains_added, drv_.added);
        EXPECT_EQ(ds.chains_used, drv_.added);
        EXPECT_EQ(dq_->in_flight(), 0);
        EXPECT_EQ(dq_->num_free(), kQueueSize);
        EXPECT_EQ(ds.kicks_sent + ds.kicks_saved, drv_.kick_calls);
        // Eventfds coalesce: a side wakes at most once per notification sent.
        EXPECT_LE(dev_.woken, ds.kicks_sent);
        EXPECT_LE(drv_.woken, dev_.calls);

        const auto& c = sq_.counters();
        EXPECT_EQ(c.chains.get(), drv_.added + dev_.unpopped);
        EXPECT_EQ(c.bad_chains.get(), 0u);
        EXPECT_EQ(c.notify_sent.get(), dev_.calls);
        EXPECT_EQ(c.notify_sent.get() + c.notify_saved.get(), dev_.notify_checks);
        EXPECT_FALSE(sq_.broken()) << sq_.broken_reason();
        EXPECT_EQ(sq_.last_avail(), static_cast<std::uint16_t>(drv_.added));
        EXPECT_EQ(sq_.used_idx(), static_cast<std::uint16_t>(drv_.added));
        EXPECT_EQ(sq_.available(), 0);
        // How often each side hit §2.7.10's race (buffers arrived between "found nothing" and
        // the request for a notification) is printed above, not required: timing decides it, and
        // under TSan a run may not hit it at all (CI saw 0 on both sides in the flags case). The
        // re-check itself is tested deterministically in virtqueue_test.cpp (EnableNotify*);
        // here what counts is that no notification was lost in either direction.
        if (opt.event_idx) {
            // §2.7.10: with a used_event the driver does not move on every element, most
            // publishes need no interrupt, and most publishes of the driver need no kick.
            EXPECT_GT(c.notify_saved.get(), 0u);
            EXPECT_GT(ds.kicks_saved, 0u);
        }
    }

    std::unique_ptr<tst::GuestRam> ram_;
    std::unique_ptr<tst::DriverQueue> dq_;
    std::uint64_t bufs_ = 0;
    GuestMemory mem_;
    SplitQueue sq_;
    std::atomic<bool> stop_{false};         // a side failed: both stop
    std::atomic<bool> driver_done_{false};  // the driver has every chain back
    DriverSide drv_;
    DeviceSide dev_;
};

TEST_F(VirtqueueStress, TwoThreadsWithEventIdx) {
    Options opt;
    opt.event_idx = true;
    run(opt);
    expect_clean_run(opt);
}

TEST_F(VirtqueueStress, TwoThreadsWithFlags) {
    Options opt;
    opt.event_idx = false;
    run(opt);
    expect_clean_run(opt);
}

// The stall detector itself: a driver that loses its kicks must fail the run as a stall, not
// hang it. With EVENT_IDX a lost kick is never made up by a later one (avail_event stays behind),
// so the device sleeps with chains available and the driver waits for calls that cannot come.
TEST_F(VirtqueueStress, LostKickShowsAsStall) {
    Options opt;
    opt.event_idx = true;
    opt.chains = 5000;
    opt.stall = std::chrono::milliseconds(300);
    opt.drop_kicks_from = 1000;
    const auto t0 = Clock::now();
    run(opt);
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    EXPECT_GT(drv_.kicks_dropped, 0u);
    const std::string both = drv_.error + " | " + dev_.error;
    EXPECT_NE(both.find("lost kick"), std::string::npos) << both;
    EXPECT_LT(drv_.reclaimed, opt.chains);
}

}  // namespace
}  // namespace slipway::virtio
