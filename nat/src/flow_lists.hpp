// Lists of flows the datagram engines keep, sized at start-up (nothing allocates afterwards).
// Internal to nat/.
//   LruList: flows ordered by last activity, an intrusive doubly linked list over flow ids
//     (push, remove and touch are O(1)). One per timeout class: the head is the flow idle
//     longest, so expiry and eviction look only at heads.
//   PendingQueue: flows with more to read than their last turn allowed, served in FIFO order.
//   FrameBacklog: the frames of one datagram the link could not take all at once (its
//     fragments), sent before anything else is read.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "slipway/core/packet_pool.hpp"
#include "slipway/nat/flow_table.hpp"

namespace slipway::nat::detail {

class LruList {
  public:
    explicit LruList(std::size_t capacity) : prev_(capacity, kNoFlow), next_(capacity, kNoFlow) {}

    [[nodiscard]] FlowId front() const noexcept { return head_; }
    [[nodiscard]] bool empty() const noexcept { return head_ == kNoFlow; }

    void push_back(FlowId id) noexcept {
        prev_[id] = tail_;
        next_[id] = kNoFlow;
        if (tail_ != kNoFlow)
            next_[tail_] = id;
        else
            head_ = id;
        tail_ = id;
    }
    void remove(FlowId id) noexcept {
        const FlowId p = prev_[id], n = next_[id];
        if (p != kNoFlow)
            next_[p] = n;
        else
            head_ = n;
        if (n != kNoFlow)
            prev_[n] = p;
        else
            tail_ = p;
        prev_[id] = next_[id] = kNoFlow;
    }
    // `id` (in this list) was just active: it moves to the tail.
    void touch(FlowId id) noexcept {
        if (tail_ == id) return;
        remove(id);
        push_back(id);
    }

  private:
    std::vector<FlowId> prev_, next_;
    FlowId head_ = kNoFlow, tail_ = kNoFlow;
};

// A FIFO of flow ids. The engine keeps a flag per flow so an id waits at most once.
class PendingQueue {
  public:
    // Live waiting ids never exceed `capacity`; an id freed while waiting leaves a stale entry
    // (skipped, its flag is clear) until a drain passes it, so unconsumed entries stay within
    // twice that, and a drain compacts whenever consumed ones outnumber the rest: the vector
    // never holds more than four times `capacity`, which it reserves, so it never reallocates.
    explicit PendingQueue(std::size_t capacity) { q_.reserve(4 * capacity + 1); }

    void push(FlowId id) noexcept { q_.push_back(id); }
    [[nodiscard]] bool empty() const noexcept { return head_ == q_.size(); }

    // Calls f(id) for the ids queued before this call, in order, until f returns false.
    template <class F>
    void drain(F&& f) noexcept {
        const std::size_t end = q_.size();
        while (head_ < end)
            if (!f(q_[head_++])) break;
        if (head_ == q_.size()) {
            q_.clear();
            head_ = 0;
        } else if (head_ > q_.size() / 2) {
            q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
            head_ = 0;
        }
    }

  private:
    std::vector<FlowId> q_;
    std::size_t head_ = 0;
};

// One datagram's frames waiting for room on the link (at most kMaxFrames: a 64 KiB datagram in
// fragments at an MTU of 400 or more).
class FrameBacklog {
  public:
    static constexpr std::size_t kMaxFrames = 192;

    // Where a datagram's frames are built; then set(n) and flush().
    [[nodiscard]] std::span<PacketRef> slots() noexcept { return frames_; }
    void set(std::size_t n) noexcept {
        head_ = 0;
        n_ = n;
    }
    [[nodiscard]] bool empty() const noexcept { return head_ == n_; }

    // Hands the waiting frames in order to dispatch(PacketRef&) until it refuses one: true when
    // none waits any more.
    template <class D>
    bool flush(D&& dispatch) noexcept {
        while (head_ < n_) {
            if (!dispatch(frames_[head_])) return false;
            ++head_;
        }
        head_ = n_ = 0;
        return true;
    }

  private:
    std::array<PacketRef, kMaxFrames> frames_;
    std::size_t head_ = 0, n_ = 0;
};

}  // namespace slipway::nat::detail
