// Guest RAM, split virtqueues (driver side, virtio 1.2 §2.7) and a virtio-net driver (§5.1) for
// tests and benchmarks.
#include "virtio_driver.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

namespace slipway::testing {

static_assert(std::endian::native == std::endian::little,
              "ring indices are accessed as native 16-bit atomics; virtio 1.x rings are LE");

namespace {

// Feature bits this driver acts on, from the spec (not from the device's headers on purpose).
constexpr std::uint64_t kFMrgRxbuf = 1ull << 15;      // §5.1.3
constexpr std::uint64_t kFIndirectDesc = 1ull << 28;  // §6
constexpr std::uint64_t kFEventIdx = 1ull << 29;      // §6
constexpr std::uint64_t kFVersion1 = 1ull << 32;      // §6

constexpr std::size_t kPage = 4096;
constexpr std::uint16_t kNoHead = 0xffff;  // poll_used() leaves `head` alone for a bogus id
constexpr std::size_t kTxHeadroom = 64;    // the header sits right before the frame in a TX slot
constexpr std::size_t kTxSlot = (kTxHeadroom + NetDriver::kMaxFrame + kPage - 1) / kPage * kPage;

// Ring fields shared with the device are 16-bit and naturally aligned (checked at allocation).
std::uint16_t* u16(std::byte* p) noexcept {
    return reinterpret_cast<std::uint16_t*>(p);
}

// §2.7.10: the other side wants a notification if `event` lies in [old, new).
bool need_event(std::uint16_t event, std::uint16_t new_idx, std::uint16_t old_idx) noexcept {
    return static_cast<std::uint16_t>(new_idx - event - 1) <
           static_cast<std::uint16_t>(new_idx - old_idx);
}

std::string errno_msg(const char* what) {
    return std::string(what) + ": " + errno_text(errno);
}

}  // namespace

// ---- GuestRam ---------------------------------------------------------------------------------

Result<std::unique_ptr<GuestRam>> GuestRam::create(std::size_t size, std::string& error,
                                                   std::uint64_t base) {
    std::unique_ptr<GuestRam> r(new GuestRam());
    size = (size + kPage - 1) / kPage * kPage;
    if (size == 0 || base % kPage != 0) {
        error = "guest RAM: size and base must be non-zero and page-aligned";
        return fail(Errc::invalid_argument);
    }
    r->fd_.reset(::memfd_create("slipway-test-guest-ram", MFD_CLOEXEC));
    if (!r->fd_.valid()) {
        error = errno_msg("memfd_create");
        return fail(Errc::io_error);
    }
    if (::ftruncate(r->fd_.get(), static_cast<off_t>(size)) != 0) {
        error = errno_msg("ftruncate");
        return fail(Errc::io_error);
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_.get(), 0);
    if (p == MAP_FAILED) {
        error = errno_msg("mmap");
        return fail(Errc::io_error);
    }
    r->host_ = static_cast<std::byte*>(p);
    r->base_ = base;
    r->size_ = size;
    return r;
}

GuestRam::~GuestRam() {
    if (host_ != nullptr) ::munmap(host_, size_);
}

std::uint64_t GuestRam::alloc(std::size_t len, std::size_t align) noexcept {
    if (align == 0 || (align & (align - 1)) != 0) return 0;
    const std::size_t start = (next_ + align - 1) & ~(align - 1);
    if (start > size_ || len > size_ - start) return 0;
    next_ = start + len;
    return base_ + start;
}

std::byte* GuestRam::at(std::uint64_t gpa, std::size_t len) const noexcept {
    if (gpa < base_) return nullptr;
    const std::uint64_t off = gpa - base_;
    if (off > size_ || len > size_ - off) return nullptr;
    return host_ + off;
}

std::uint64_t GuestRam::user_addr(std::uint64_t gpa) const noexcept {
    return reinterpret_cast<std::uintptr_t>(host_) + (gpa - base_);
}

virtio::MemRegion GuestRam::region() const noexcept {
    virtio::MemRegion r;
    r.guest_addr = base_;
    r.size = size_;
    r.user_addr = reinterpret_cast<std::uintptr_t>(host_);
    r.host = host_;
    return r;
}

// ---- DriverQueue ------------------------------------------------------------------------------

Result<std::unique_ptr<DriverQueue>> DriverQueue::create(GuestRam& ram, std::uint16_t size,
                                                         bool event_idx, std::string& error) {
    if (size == 0 || (size & (size - 1)) != 0) {
        error = "queue size must be a power of two";
        return fail(Errc::invalid_argument);
    }
    std::unique_ptr<DriverQueue> q(new DriverQueue());
    q->ram_ = &ram;
    q->size_ = size;
    q->event_idx_ = event_idx;
    // §2.7 alignment: descriptor table 16, available ring 2, used ring 4. Packed tightly on
    // purpose, so a device that assumes the legacy 4096-byte used-ring alignment fails here.
    q->desc_gpa_ = ram.alloc(virtio::desc_table_bytes(size), 16);
    q->avail_gpa_ = ram.alloc(virtio::avail_ring_bytes(size), 2);
    q->used_gpa_ = ram.alloc(virtio::used_ring_bytes(size), 4);
    q->indirect_gpa_ = ram.alloc(std::size_t{size} * kMaxIndirect * virtio::kDescSize, 16);
    if (q->desc_gpa_ == 0 || q->avail_gpa_ == 0 || q->used_gpa_ == 0 || q->indirect_gpa_ == 0) {
        error = "guest RAM too small for the rings";
        return fail(Errc::too_large);
    }
    q->desc_ = ram.at(q->desc_gpa_, virtio::desc_table_bytes(size));
    q->avail_ = ram.at(q->avail_gpa_, virtio::avail_ring_bytes(size));
    q->used_ = ram.at(q->used_gpa_, virtio::used_ring_bytes(size));
    q->indirect_ = ram.at(q->indirect_gpa_, std::size_t{size} * kMaxIndirect * virtio::kDescSize);
    std::memset(q->desc_, 0, virtio::desc_table_bytes(size));
    std::memset(q->avail_, 0, virtio::avail_ring_bytes(size));
    std::memset(q->used_, 0, virtio::used_ring_bytes(size));

    q->kick_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    q->call_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!q->kick_.valid() || !q->call_.valid()) {
        error = errno_msg("eventfd");
        return fail(Errc::io_error);
    }
    q->next_.resize(size);
    for (std::uint16_t i = 0; i < size; ++i)
        q->next_[i] = static_cast<std::uint16_t>(i + 1);
    q->chain_len_.assign(size, 0);
    q->writable_.assign(size, 0);
    q->outstanding_.assign(size, 0);
    q->free_head_ = 0;
    q->num_free_ = size;
    return q;
}

void DriverQueue::write_desc(std::byte* table, std::uint16_t i, const Buf& b, std::uint16_t flags,
                             std::uint16_t next) noexcept {
    // struct virtq_desc (§2.7.5): le64 addr, le32 len, le16 flags, le16 next.
    std::byte* d = table + std::size_t{i} * virtio::kDescSize;
    put_le64(d, b.gpa);
    put_le32(d + 8, b.len);
    store_le16(d + 12, flags);
    store_le16(d + 14, next);
}

Result<std::uint16_t> DriverQueue::add_chain(std::span<const Buf> readable,
                                             std::span<const Buf> writable,
                                             bool indirect) noexcept {
    const std::size_t total = readable.size() + writable.size();
    if (total == 0 || (indirect && total > kMaxIndirect)) return fail(Errc::invalid_argument);
    const std::size_t ndesc = indirect ? 1 : total;
    if (ndesc > num_free_) return fail(Errc::would_block);

    std::uint64_t wbytes = 0;
    for (const Buf& b : writable)
        wbytes += b.len;

    const std::uint16_t head = free_head_;
    auto buf_at = [&](std::size_t k) -> const Buf& {
        return k < readable.size() ? readable[k] : writable[k - readable.size()];
    };
    // §2.7.4.2: readable descriptors first, then writable ones; NEXT on all but the last.
    auto flags_at = [&](std::size_t k) {
        std::uint16_t f = k < readable.size() ? 0 : virtio::kDescFWrite;
        if (k + 1 < total) f = static_cast<std::uint16_t>(f | virtio::kDescFNext);
        return f;
    };
    if (indirect) {
        // §2.7.5.3: the table is an array of descriptors chained by index within the table.
        std::byte* table = indirect_ + std::size_t{head} * kMaxIndirect * virtio::kDescSize;
        for (std::size_t k = 0; k < total; ++k) {
            write_desc(table, static_cast<std::uint16_t>(k), buf_at(k), flags_at(k),
                       static_cast<std::uint16_t>(k + 1 < total ? k + 1 : 0));
        }
        const Buf t{indirect_table_gpa(head),
                    static_cast<std::uint32_t>(total * virtio::kDescSize)};
        write_desc(desc_, head, t, virtio::kDescFIndirect, 0);
        free_head_ = next_[head];
    } else {
        std::uint16_t i = head;
        for (std::size_t k = 0; k < total; ++k) {
            const std::uint16_t nxt = next_[i];
            write_desc(desc_, i, buf_at(k), flags_at(k), k + 1 < total ? nxt : 0);
            i = nxt;
        }
        free_head_ = i;
    }
    num_free_ = static_cast<std::uint16_t>(num_free_ - ndesc);
    chain_len_[head] = static_cast<std::uint16_t>(ndesc);
    writable_[head] = static_cast<std::uint32_t>(std::min<std::uint64_t>(wbytes, 0xffffffffu));
    outstanding_[head] = 1;
    ++in_flight_;

    // The entry is plain memory: the device reads it only after publish()'s release store.
    store_le16(avail_ + 4 + 2 * std::size_t{static_cast<std::uint16_t>(avail_shadow_ % size_)},
               head);
    ++avail_shadow_;
    ++stats_.chains_added;
    return head;
}

void DriverQueue::publish() noexcept {
    // Release: pairs with the device's acquire load of avail->idx in its pop(), so the
    // descriptors and ring entries written before are visible when it sees the new index.
    __atomic_store_n(u16(avail_ + 2), avail_shadow_, __ATOMIC_RELEASE);
    published_ = avail_shadow_;
}

std::uint16_t DriverQueue::load_used_idx() const noexcept {
    // Acquire: pairs with the device's release store in publish_used(), so the used elements
    // below the index are complete when we read them.
    return __atomic_load_n(u16(used_ + 2), __ATOMIC_ACQUIRE);
}

Result<bool> DriverQueue::poll_used(std::uint16_t& head, std::uint32_t& len) noexcept {
    const std::uint16_t idx = load_used_idx();
    if (idx == last_used_) return false;
    if (static_cast<std::uint16_t>(idx - last_used_) > in_flight_) {
        error_ = "used->idx moved " + std::to_string(static_cast<std::uint16_t>(idx - last_used_)) +
                 " past our last read with only " + std::to_string(in_flight_) +
                 " chains outstanding";
        return fail(Errc::invalid_argument);
    }
    const std::byte* e =
        used_ + 4 + 8 * std::size_t{static_cast<std::uint16_t>(last_used_ % size_)};
    const std::uint32_t id = le32_at(e);
    len = le32_at(e + 4);
    ++last_used_;
    if (id >= size_ || outstanding_[id] == 0) {
        error_ = "used element id " + std::to_string(id) + " is not an outstanding head";
        return fail(Errc::invalid_argument);
    }
    head = static_cast<std::uint16_t>(id);
    // Give the chain back before judging its length, so the queue stays consistent.
    std::uint16_t last = head;
    for (std::uint16_t k = 1; k < chain_len_[head]; ++k)
        last = next_[last];
    next_[last] = free_head_;
    free_head_ = head;
    num_free_ = static_cast<std::uint16_t>(num_free_ + chain_len_[head]);
    outstanding_[head] = 0;
    --in_flight_;
    ++stats_.chains_used;
    // §2.7.8: len is what the device wrote into the writable part; it cannot exceed it.
    if (len > writable_[head]) {
        error_ = "used element for head " + std::to_string(head) + " says " + std::to_string(len) +
                 " bytes written, the chain has " + std::to_string(writable_[head]) + " writable";
        return fail(Errc::invalid_argument);
    }
    return true;
}

bool DriverQueue::kick_needed() noexcept {
    // Full fence: our avail->idx store must be visible before we read the device's suppression
    // field, or both sides can decide the other will act (§2.7.13.4 and the device's fence in
    // enable_notify()).
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    const std::uint16_t old_idx = kick_checked_;
    const std::uint16_t new_idx = published_;
    kick_checked_ = new_idx;
    if (new_idx == old_idx) return false;
    if (event_idx_) {
        // §2.7.10: avail_event trails the used ring.
        const std::uint16_t ev =
            __atomic_load_n(u16(used_ + 4 + 8 * std::size_t{size_}), __ATOMIC_RELAXED);
        return need_event(ev, new_idx, old_idx);
    }
    // §2.7.8: without EVENT_IDX the device sets NO_NOTIFY in used->flags while polling.
    return (__atomic_load_n(u16(used_), __ATOMIC_RELAXED) & virtio::kUsedFNoNotify) == 0;
}

bool DriverQueue::kick(bool force) noexcept {
    const bool need = kick_needed();
    if (!need && !force) {
        ++stats_.kicks_saved;
        return false;
    }
    const std::uint64_t one = 1;
    const ssize_t n = ::write(kick_.get(), &one, sizeof one);
    (void)n;  // EAGAIN means the counter is already non-zero: the device will wake anyway
    ++stats_.kicks_sent;
    return true;
}

bool DriverQueue::enable_call() noexcept {
    if (event_idx_) {
        // §2.7.10: used_event trails the available ring: interrupt me once the element at
        // last_used_ is published.
        __atomic_store_n(u16(avail_ + 4 + 2 * std::size_t{size_}), last_used_, __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(u16(avail_), std::uint16_t{0}, __ATOMIC_RELAXED);
    }
    // Full fence: the request must be visible before we look at used->idx again, pairing with
    // the device's fence between publishing used->idx and reading our suppression field.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return load_used_idx() != last_used_;
}

void DriverQueue::disable_call() noexcept {
    if (event_idx_) {
        __atomic_store_n(u16(avail_ + 4 + 2 * std::size_t{size_}),
                         static_cast<std::uint16_t>(last_used_ - 1), __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(u16(avail_), virtio::kAvailFNoInterrupt, __ATOMIC_RELAXED);
    }
}

bool DriverQueue::wait_call(Millis timeout) noexcept {
    if (enable_call()) return true;
    pollfd p{call_.get(), POLLIN, 0};
    const int ms = static_cast<int>(std::max<Millis::rep>(0, timeout.count()));
    if (::poll(&p, 1, ms) <= 0) return false;
    std::uint64_t v = 0;
    const ssize_t n = ::read(call_.get(), &v, sizeof v);
    (void)n;
    ++stats_.calls_taken;
    return true;
}

void DriverQueue::poke_desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len,
                            std::uint16_t flags, std::uint16_t next) noexcept {
    write_desc(desc_, static_cast<std::uint16_t>(i % size_), Buf{addr, len}, flags, next);
}

void DriverQueue::poke_avail_ring(std::uint16_t slot, std::uint16_t head) noexcept {
    store_le16(avail_ + 4 + 2 * std::size_t{static_cast<std::uint16_t>(slot % size_)}, head);
}

void DriverQueue::poke_avail_idx(std::uint16_t idx) noexcept {
    __atomic_store_n(u16(avail_ + 2), idx, __ATOMIC_RELEASE);  // pairs as publish() does
    published_ = idx;
}

// ---- NetDriver --------------------------------------------------------------------------------

Result<std::unique_ptr<NetDriver>> NetDriver::create(GuestRam& ram, std::uint64_t features,
                                                     std::uint16_t queue_size, std::string& error) {
    std::unique_ptr<NetDriver> d(new NetDriver());
    d->ram_ = &ram;
    d->features_ = features;
    d->mrg_ = (features & kFMrgRxbuf) != 0;
    // §5.1.6: the header has num_buffers with VERSION_1 or MRG_RXBUF, else it is 10 bytes.
    d->hdr_len_ = (features & (kFVersion1 | kFMrgRxbuf)) != 0 ? virtio::kNetHdrV1Len
                                                              : virtio::kNetHdrLegacyLen;
    const bool ev = (features & kFEventIdx) != 0;
    auto rx = DriverQueue::create(ram, queue_size, ev, error);
    if (!rx) return fail(rx.error());
    auto tx = DriverQueue::create(ram, queue_size, ev, error);
    if (!tx) return fail(tx.error());
    d->rx_ = std::move(*rx);
    d->tx_ = std::move(*tx);
    d->tx_slots_gpa_ = ram.alloc(kTxSlot * queue_size, kPage);
    if (d->tx_slots_gpa_ == 0) {
        error = "guest RAM too small for the TX buffers";
        return fail(Errc::too_large);
    }
    d->tx_free_slots_.reserve(queue_size);
    for (std::uint16_t i = queue_size; i > 0; --i)
        d->tx_free_slots_.push_back(static_cast<std::uint16_t>(i - 1));
    d->tx_slot_of_head_.assign(queue_size, 0);
    d->rx_buf_of_head_.assign(queue_size, 0);
    return d;
}

Result<void> NetDriver::repost(std::uint16_t buf) noexcept {
    const Buf b{rx_bufs_[buf], rx_buf_len_};
    auto head = rx_->add_chain({}, std::span<const Buf>(&b, 1));
    if (!head) {
        error_ = "RX queue has no free descriptor to repost a buffer";
        return fail(head.error());
    }
    rx_buf_of_head_[*head] = buf;
    return {};
}

Result<void> NetDriver::post_rx(std::uint16_t n, std::uint32_t buf_len) {
    if (!rx_bufs_.empty() || n == 0 || n > rx_->size() || buf_len < hdr_len_) {
        error_ = "post_rx: called twice, or a count or buffer length out of range";
        return fail(Errc::invalid_argument);
    }
    rx_buf_len_ = buf_len;
    rx_bufs_.reserve(n);
    for (std::uint16_t i = 0; i < n; ++i) {
        const std::uint64_t gpa = ram_->alloc(buf_len, 64);
        if (gpa == 0) {
            error_ = "guest RAM too small for the RX buffers";
            return fail(Errc::too_large);
        }
        rx_bufs_.push_back(gpa);
        if (auto r = repost(i); !r) return r;
    }
    rx_->publish();
    rx_->kick();
    return {};
}

Result<void> NetDriver::reclaim_tx() noexcept {
    for (;;) {
        std::uint16_t head = kNoHead;
        std::uint32_t len = 0;
        auto r = tx_->poll_used(head, len);
        if (!r) {
            error_ = "TX used ring: " + tx_->error();
            // A valid head with a bad length was freed: its slot goes back too.
            if (head != kNoHead) tx_free_slots_.push_back(tx_slot_of_head_[head]);
            return fail(r.error());
        }
        if (!*r) return {};
        tx_free_slots_.push_back(tx_slot_of_head_[head]);
    }
}

Result<void> NetDriver::send(const virtio::NetHdr& hdr, ByteView frame, TxShape shape,
                             bool indirect, Millis timeout, bool kick) noexcept {
    if (frame.size() > kMaxFrame) return fail(Errc::too_large);
    if (indirect && !has(kFIndirectDesc)) return fail(Errc::invalid_argument);
    std::size_t nbufs = 0;
    const std::size_t pieces =
        frame.empty() ? 0 : (frame.size() + kScatterPiece - 1) / kScatterPiece;
    switch (shape) {
        case TxShape::one:
            nbufs = 1;
            break;
        case TxShape::two:
            nbufs = frame.empty() ? 1 : 2;
            break;
        case TxShape::scatter:
            nbufs = 1 + pieces;
            break;
    }
    const std::size_t ndesc = indirect ? 1 : nbufs;

    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (auto r = reclaim_tx(); !r) return r;
        if (!tx_free_slots_.empty() && tx_->num_free() >= ndesc) break;
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            error_ = "TX queue full: the device returned no chain in time";
            return fail(Errc::would_block);
        }
        tx_->wait_call(std::chrono::duration_cast<Millis>(deadline - now) + Millis{1});
    }

    const std::uint16_t slot = tx_free_slots_.back();
    tx_free_slots_.pop_back();
    const std::uint64_t frame_gpa = tx_slots_gpa_ + std::uint64_t{slot} * kTxSlot + kTxHeadroom;
    const std::uint64_t hdr_gpa = frame_gpa - hdr_len_;
    virtio::NetHdr h = hdr;
    h.num_buffers = 0;  // §5.1.6.2: the driver leaves num_buffers 0 on transmit
    if (auto e = h.emit(MutByteView(ram_->at(hdr_gpa, hdr_len_), hdr_len_), hdr_len_); !e) {
        tx_free_slots_.push_back(slot);
        error_ = "TX header does not encode";
        return fail(e.error());
    }
    if (!frame.empty()) std::memcpy(ram_->at(frame_gpa, frame.size()), frame.data(), frame.size());

    const auto hl = static_cast<std::uint32_t>(hdr_len_);
    std::size_t k = 0;
    switch (shape) {
        case TxShape::one:
            tx_bufs_[k++] = Buf{hdr_gpa, hl + static_cast<std::uint32_t>(frame.size())};
            break;
        case TxShape::two:
            tx_bufs_[k++] = Buf{hdr_gpa, hl};
            if (!frame.empty())
                tx_bufs_[k++] = Buf{frame_gpa, static_cast<std::uint32_t>(frame.size())};
            break;
        case TxShape::scatter:
            tx_bufs_[k++] = Buf{hdr_gpa, hl};
            for (std::size_t off = 0; off < frame.size(); off += kScatterPiece) {
                const auto n = static_cast<std::uint32_t>(
                    std::min<std::size_t>(kScatterPiece, frame.size() - off));
                tx_bufs_[k++] = Buf{frame_gpa + off, n};
            }
            break;
    }
    auto head = tx_->add_chain(std::span<const Buf>(tx_bufs_.data(), k), {}, indirect);
    if (!head) {
        tx_free_slots_.push_back(slot);
        error_ = "TX chain does not fit the queue";
        return fail(head.error());
    }
    tx_slot_of_head_[*head] = slot;
    tx_->publish();
    if (kick) tx_->kick();
    ++stats_.tx_frames;
    return {};
}

Result<bool> NetDriver::next_rx(std::uint16_t& buf, std::uint32_t& len,
                                std::chrono::steady_clock::time_point deadline) noexcept {
    for (;;) {
        std::uint16_t head = 0;
        auto r = rx_->poll_used(head, len);
        if (!r) {
            error_ = "RX used ring: " + rx_->error();
            return fail(r.error());
        }
        if (*r) {
            buf = rx_buf_of_head_[head];
            return true;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return false;
        rx_->wait_call(std::chrono::duration_cast<Millis>(deadline - now) + Millis{1});
    }
}

Result<bool> NetDriver::recv(virtio::NetHdr& hdr, std::vector<std::byte>& frame,
                             Millis timeout) noexcept {
    if (rx_bufs_.empty()) {
        error_ = "recv before post_rx";
        return fail(Errc::invalid_argument);
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::uint16_t buf = 0;
    std::uint32_t len = 0;
    auto got = next_rx(buf, len, deadline);
    if (!got || !*got) return got;

    auto finish = [this](Result<void> r) -> Result<bool> {
        rx_->publish();
        rx_->kick();
        if (!r) return fail(r.error());
        return true;
    };
    if (len < hdr_len_) {
        error_ = "RX buffer used with " + std::to_string(len) + " bytes, less than the " +
                 std::to_string(hdr_len_) + "-byte header";
        (void)repost(buf);
        return finish(fail(Errc::truncated));
    }
    const std::byte* p = ram_->at(rx_bufs_[buf], len);
    auto h = virtio::NetHdr::parse(ByteView(p, hdr_len_), hdr_len_);
    if (!h) {
        error_ = "RX header rejected: " + std::string(to_string(h.error()));
        (void)repost(buf);
        return finish(fail(h.error()));
    }
    std::uint32_t nbuf = 1;
    if (mrg_) {
        // §5.1.6.4: with MRG_RXBUF the device says how many buffers the frame took, at least 1.
        nbuf = h->num_buffers;
        if (nbuf == 0) {
            error_ = "RX header with num_buffers 0 (MRG_RXBUF negotiated)";
            (void)repost(buf);
            return finish(fail(Errc::bad_length));
        }
    } else if (hdr_len_ == virtio::kNetHdrV1Len && h->num_buffers != 1) {
        // §5.1.6.4: without MRG_RXBUF (VERSION_1 header) the device sets num_buffers to 1.
        error_ = "RX header with num_buffers " + std::to_string(h->num_buffers) +
                 " without MRG_RXBUF (must be 1)";
        (void)repost(buf);
        return finish(fail(Errc::bad_length));
    }
    frame.resize(len - hdr_len_);
    std::memcpy(frame.data(), p + hdr_len_, len - hdr_len_);
    if (auto r = repost(buf); !r) return finish(r);

    // The rest of a merged frame was published with its first buffer; allow a little time in
    // case a device publishes piecemeal.
    deadline = std::max(deadline, std::chrono::steady_clock::now() + Millis{1000});
    for (std::uint32_t i = 1; i < nbuf; ++i) {
        auto more = next_rx(buf, len, deadline);
        if (!more) return finish(fail(more.error()));
        if (!*more) {
            error_ = "num_buffers " + std::to_string(nbuf) + " but only " + std::to_string(i) +
                     " buffers arrived";
            return finish(fail(Errc::truncated));
        }
        const std::size_t old = frame.size();
        frame.resize(old + len);
        std::memcpy(frame.data() + old, ram_->at(rx_bufs_[buf], len), len);
        if (auto r = repost(buf); !r) return finish(r);
    }
    hdr = *h;
    ++stats_.rx_frames;
    if (nbuf > 1) ++stats_.rx_merged;
    return finish({});
}

}  // namespace slipway::testing
