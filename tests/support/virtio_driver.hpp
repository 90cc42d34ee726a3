// The driver side of virtio-net for tests and benchmarks: guest RAM, split virtqueues as a guest
// driver fills them, a virtio-net driver, and a vhost-user front end (the VMM's side).
//
// Theory of operation
// -------------------
// slipway implements the device side of virtio-net (core/virtio, guest/). To test it the way a VM
// uses it, this library plays everything on the other side, written from the specifications and
// not from slipway's device code, so that a misreading on one side shows up as a failure:
//
//   - GuestRam is the guest's physical memory: one memfd mapped MAP_SHARED at a guest-physical
//     base, handed out by a bump allocator. The memfd is what a vhost-user front end passes with
//     SET_MEM_TABLE; region() is what an in-process VMM hands slipway directly.
//   - DriverQueue is one split virtqueue as a driver keeps it (virtio 1.2 §2.7): descriptor table,
//     available and used rings in GuestRam, a free-descriptor list, indirect tables (§2.7.5.3),
//     and both notification schemes: the NO_NOTIFY / NO_INTERRUPT flags and VIRTIO_F_EVENT_IDX's
//     used_event / avail_event (§2.7.10). It checks what the device gives back (a used id that is
//     not an outstanding head, a length larger than the chain's writable part) and reports it.
//   - NetDriver is a virtio-net driver over RX queue 0 and TX queue 1 (§5.1.2): it posts
//     mergeable receive buffers (§5.1.6.3), sends a header and frame as one descriptor, two, a
//     scatter list, or through an indirect table, and reassembles num_buffers merged buffers.
//   - VhostUserFrontend is the VMM's end of the vhost-user protocol (QEMU docs/interop/
//     vhost-user.rst) over a unix stream socket: feature and protocol-feature negotiation with
//     REPLY_ACK, the memory table, the vrings, GET_VRING_BASE on stop, and raw bytes for hostile
//     tests.
//
// Memory ordering (driver side, §2.7.13): descriptors and the available-ring entry are written
// first, then avail->idx is stored with release (pairs with the device's acquire load before it
// reads entries); used->idx is loaded with acquire (pairs with the device's release store after it
// wrote used elements). Deciding whether to kick or to sleep needs a full fence between publishing
// our index and reading the device's suppression field, as the device does on its side.
//
// Allocation: setup may allocate; NetDriver::send() and recv() do not, given a frame vector whose
// capacity covers the largest frame (benchmarks time them).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/core/virtio/net_hdr.hpp"
#include "slipway/core/virtio/virtqueue.hpp"

namespace slipway::testing {

using Millis = std::chrono::milliseconds;

// A run of guest-physical memory: what a descriptor points at.
struct Buf {
    std::uint64_t gpa = 0;
    std::uint32_t len = 0;
};

// ---- guest memory -----------------------------------------------------------------------------

class GuestRam {
  public:
    static constexpr std::uint64_t kDefaultBase = 0x40000000;  // 1 GiB, as a VM's RAM might start

    // `size` is rounded up to the page size. Errc::io_error when memfd_create, ftruncate or mmap
    // fails (`error` says which).
    static Result<std::unique_ptr<GuestRam>> create(std::size_t size, std::string& error,
                                                    std::uint64_t base = kDefaultBase);
    ~GuestRam();
    GuestRam(const GuestRam&) = delete;
    GuestRam& operator=(const GuestRam&) = delete;

    // Guest address of `len` fresh bytes aligned to `align` (a power of two); 0 when full.
    [[nodiscard]] std::uint64_t alloc(std::size_t len, std::size_t align = 16) noexcept;
    // Host pointer for guest [gpa, gpa + len), nullptr when it is not all inside the RAM.
    [[nodiscard]] std::byte* at(std::uint64_t gpa, std::size_t len = 1) const noexcept;
    // The VMM's virtual address of `gpa` (vhost-user ring addresses are in this space).
    [[nodiscard]] std::uint64_t user_addr(std::uint64_t gpa) const noexcept;

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] std::uint64_t base() const noexcept { return base_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t used() const noexcept { return next_; }
    [[nodiscard]] std::byte* host() const noexcept { return host_; }
    [[nodiscard]] virtio::MemRegion region() const noexcept;

  private:
    GuestRam() = default;
    UniqueFd fd_;
    std::byte* host_ = nullptr;
    std::uint64_t base_ = 0;
    std::size_t size_ = 0;
    std::size_t next_ = 0;  // bump allocator: offset of the first free byte
};

// ---- one split virtqueue, driver side ---------------------------------------------------------

struct DriverQueueStats {
    std::uint64_t chains_added = 0;
    std::uint64_t chains_used = 0;
    std::uint64_t kicks_sent = 0;
    std::uint64_t kicks_saved = 0;  // kick_needed() said the device does not want one
    std::uint64_t calls_taken = 0;  // wait_call() woken by the call eventfd
};

class DriverQueue {
  public:
    static constexpr std::uint16_t kMaxIndirect = 32;  // entries per indirect table

    // Rings and one indirect table per descriptor are allocated in `ram` with the spec's
    // alignment (§2.7: desc 16, avail 2, used 4). `size` must be a power of two up to 32768.
    static Result<std::unique_ptr<DriverQueue>> create(GuestRam& ram, std::uint16_t size,
                                                       bool event_idx, std::string& error);
    DriverQueue(const DriverQueue&) = delete;
    DriverQueue& operator=(const DriverQueue&) = delete;

    [[nodiscard]] std::uint16_t size() const noexcept { return size_; }
    [[nodiscard]] std::uint64_t desc_gpa() const noexcept { return desc_gpa_; }
    [[nodiscard]] std::uint64_t avail_gpa() const noexcept { return avail_gpa_; }
    [[nodiscard]] std::uint64_t used_gpa() const noexcept { return used_gpa_; }
    [[nodiscard]] int kick_fd() const noexcept { return kick_.get(); }
    [[nodiscard]] int call_fd() const noexcept { return call_.get(); }
    [[nodiscard]] bool event_idx() const noexcept { return event_idx_; }
    [[nodiscard]] std::uint16_t num_free() const noexcept { return num_free_; }
    [[nodiscard]] std::uint16_t in_flight() const noexcept { return in_flight_; }
    [[nodiscard]] const DriverQueueStats& stats() const noexcept { return stats_; }
    // What the device did wrong, once poll_used() returned an error.
    [[nodiscard]] const std::string& error() const noexcept { return error_; }

    // Puts a chain of device-readable then device-writable buffers in the descriptor table and
    // the next available-ring slot (not yet visible: see publish()). With `indirect`, the chain
    // is an indirect table (§2.7.5.3) behind one descriptor. Returns the head, or
    // Errc::would_block when there are not enough free descriptors, Errc::invalid_argument for an
    // empty chain or one longer than kMaxIndirect (indirect). Buffers are not checked against
    // guest memory, so hostile tests can point them anywhere.
    Result<std::uint16_t> add_chain(std::span<const Buf> readable, std::span<const Buf> writable,
                                    bool indirect = false) noexcept;
    // Makes the chains added so far visible to the device (release store of avail->idx).
    void publish() noexcept;

    // Takes one used element: true with `head` and `len` filled, false when there is none.
    // Errc::invalid_argument when the device returned an id that is not an outstanding head
    // (`head` untouched) or a length beyond the chain's writable bytes (`head` set, the chain
    // freed); error() says which. The element is consumed either way.
    Result<bool> poll_used(std::uint16_t& head, std::uint32_t& len) noexcept;

    // Whether the device asked to be notified of what publish() made visible since the last
    // check (§2.7.10 avail_event with EVENT_IDX, else the used ring's NO_NOTIFY flag).
    [[nodiscard]] bool kick_needed() noexcept;
    // Writes the kick eventfd if kick_needed() (or always with `force`); true if it did.
    bool kick(bool force = false) noexcept;

    // Asks for an interrupt at the next used element (used_event, or clearing NO_INTERRUPT).
    // True when used elements arrived meanwhile: poll again instead of sleeping.
    [[nodiscard]] bool enable_call() noexcept;
    // Asks the device not to interrupt (NO_INTERRUPT; with EVENT_IDX a used_event already
    // passed, which a device only reaches again after 64 Ki used elements).
    void disable_call() noexcept;
    // Sleeps until the device signals the call eventfd or `timeout` passes; returns at once when
    // enable_call() found work. True if there may be used elements to poll.
    bool wait_call(Millis timeout) noexcept;

    // Hostile-test helpers: raw writes into the rings, bypassing the bookkeeping.
    void poke_desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                   std::uint16_t next) noexcept;
    void poke_avail_ring(std::uint16_t slot, std::uint16_t head) noexcept;
    void poke_avail_idx(std::uint16_t idx) noexcept;
    [[nodiscard]] std::uint16_t avail_idx() const noexcept { return avail_shadow_; }
    // Used elements taken so far (the driver's copy of the used index).
    [[nodiscard]] std::uint16_t used_idx() const noexcept { return last_used_; }
    [[nodiscard]] std::uint64_t indirect_table_gpa(std::uint16_t head) const noexcept {
        return indirect_gpa_ + std::uint64_t{head} * kMaxIndirect * virtio::kDescSize;
    }

  private:
    DriverQueue() = default;
    void write_desc(std::byte* table, std::uint16_t i, const Buf& b, std::uint16_t flags,
                    std::uint16_t next) noexcept;
    std::uint16_t load_used_idx() const noexcept;

    GuestRam* ram_ = nullptr;
    std::uint16_t size_ = 0;
    bool event_idx_ = false;
    std::uint64_t desc_gpa_ = 0, avail_gpa_ = 0, used_gpa_ = 0, indirect_gpa_ = 0;
    std::byte* desc_ = nullptr;
    std::byte* avail_ = nullptr;
    std::byte* used_ = nullptr;
    std::byte* indirect_ = nullptr;
    UniqueFd kick_, call_;

    // Driver bookkeeping, kept outside guest memory so a device cannot corrupt it.
    std::vector<std::uint16_t> next_;        // free list / chain links of the descriptor table
    std::vector<std::uint16_t> chain_len_;   // descriptors a head's chain took (1 when indirect)
    std::vector<std::uint32_t> writable_;    // writable bytes of a head's chain
    std::vector<std::uint8_t> outstanding_;  // 1 while a head is with the device
    std::uint16_t free_head_ = 0;
    std::uint16_t num_free_ = 0;
    std::uint16_t in_flight_ = 0;
    std::uint16_t avail_shadow_ = 0;  // avail->idx as we will publish it
    std::uint16_t published_ = 0;     // avail->idx as published
    std::uint16_t kick_checked_ = 0;  // avail->idx at the last kick decision (event idx "old")
    std::uint16_t last_used_ = 0;     // next used-ring slot to read
    DriverQueueStats stats_;
    std::string error_;
};

// ---- virtio-net driver ------------------------------------------------------------------------

// How send() lays a frame out in descriptors (coverage of the device's gather code).
enum class TxShape : std::uint8_t {
    one,      // header and frame in one descriptor
    two,      // header, then the frame (what Linux does for a linear skb)
    scatter,  // header, then the frame in 4 KiB pieces (page fragments)
};

struct NetDriverStats {
    std::uint64_t tx_frames = 0, rx_frames = 0;
    std::uint64_t rx_merged = 0;  // frames that took more than one buffer
};

class NetDriver {
  public:
    static constexpr unsigned kRxQueue = 0;
    static constexpr unsigned kTxQueue = 1;
    static constexpr std::size_t kMaxFrame = 65535 + 14 + 4;  // IP packet + Ethernet + VLAN
    static constexpr std::uint32_t kScatterPiece = 4096;

    // Queues of `queue_size` in `ram`, with the layout and notification scheme `features`
    // (virtio feature bits, slipway::guest::vfeat) imply; TX buffers for every descriptor.
    static Result<std::unique_ptr<NetDriver>> create(GuestRam& ram, std::uint64_t features,
                                                     std::uint16_t queue_size, std::string& error);
    NetDriver(const NetDriver&) = delete;
    NetDriver& operator=(const NetDriver&) = delete;

    [[nodiscard]] DriverQueue& queue(unsigned q) noexcept { return q == kRxQueue ? *rx_ : *tx_; }
    [[nodiscard]] DriverQueue& rx() noexcept { return *rx_; }
    [[nodiscard]] DriverQueue& tx() noexcept { return *tx_; }
    [[nodiscard]] std::uint64_t features() const noexcept { return features_; }
    [[nodiscard]] bool has(std::uint64_t bit) const noexcept { return (features_ & bit) != 0; }
    [[nodiscard]] std::size_t hdr_len() const noexcept { return hdr_len_; }
    [[nodiscard]] bool mergeable() const noexcept { return mrg_; }
    [[nodiscard]] const NetDriverStats& stats() const noexcept { return stats_; }
    [[nodiscard]] const std::string& error() const noexcept { return error_; }

    // Allocates `n` receive buffers of `buf_len` bytes (at least the header; without MRG_RXBUF
    // each must hold a whole frame, §5.1.6.3.1), makes them available and kicks. Call once.
    Result<void> post_rx(std::uint16_t n, std::uint32_t buf_len);

    // Sends `frame` with header `hdr` (num_buffers is written as 0, §5.1.6.2). Reclaims finished
    // TX chains first and waits up to `timeout` for room. Errc::would_block when the device took
    // none back in time, Errc::too_large beyond kMaxFrame, Errc::invalid_argument for indirect
    // without VIRTIO_RING_F_INDIRECT_DESC.
    // `kick` false publishes without kicking, as a guest driver batching a burst does (Linux's
    // xmit_more): the caller kicks with tx().kick() after the burst.
    Result<void> send(const virtio::NetHdr& hdr, ByteView frame, TxShape shape = TxShape::two,
                      bool indirect = false, Millis timeout = Millis{1000},
                      bool kick = true) noexcept;
    // Returns finished TX chains to the free list. Errc::invalid_argument if the device returned a
    // bad element (error() says what).
    Result<void> reclaim_tx() noexcept;

    // Receives one frame: its header (num_buffers as the device wrote it) and the bytes after the
    // header, reassembled from num_buffers merged buffers, which are posted again. False when
    // nothing came within `timeout`; an error when the device broke the rules (error() says how:
    // a short buffer, a bad header, fewer buffers than num_buffers promised).
    Result<bool> recv(virtio::NetHdr& hdr, std::vector<std::byte>& frame, Millis timeout) noexcept;

  private:
    NetDriver() = default;
    Result<void> repost(std::uint16_t buf) noexcept;
    Result<bool> next_rx(std::uint16_t& buf, std::uint32_t& len,
                         std::chrono::steady_clock::time_point deadline) noexcept;

    GuestRam* ram_ = nullptr;
    std::uint64_t features_ = 0;
    std::size_t hdr_len_ = virtio::kNetHdrV1Len;
    bool mrg_ = false;
    std::unique_ptr<DriverQueue> rx_, tx_;

    std::vector<std::uint64_t> rx_bufs_;  // guest address of each receive buffer
    std::vector<std::uint16_t> rx_buf_of_head_;
    std::uint32_t rx_buf_len_ = 0;

    std::uint64_t tx_slots_gpa_ = 0;  // one slot of kTxSlot bytes per TX descriptor
    std::vector<std::uint16_t> tx_free_slots_;
    std::vector<std::uint16_t> tx_slot_of_head_;
    std::array<Buf, 2 + kMaxFrame / kScatterPiece + 1> tx_bufs_{};

    NetDriverStats stats_;
    std::string error_;
};

// ---- vhost-user front end ---------------------------------------------------------------------

namespace vhost {
// Front-end requests (vhost-user.rst "Front-end message types").
enum Request : std::uint32_t {
    kGetFeatures = 1,
    kSetFeatures = 2,
    kSetOwner = 3,
    kResetOwner = 4,
    kSetMemTable = 5,
    kSetLogBase = 6,
    kSetLogFd = 7,
    kSetVringNum = 8,
    kSetVringAddr = 9,
    kSetVringBase = 10,
    kGetVringBase = 11,
    kSetVringKick = 12,
    kSetVringCall = 13,
    kSetVringErr = 14,
    kGetProtocolFeatures = 15,
    kSetProtocolFeatures = 16,
    kGetQueueNum = 17,
    kSetVringEnable = 18,
    kSendRarp = 19,
    kNetSetMtu = 20,
    kGetConfig = 24,
    kSetConfig = 25,
    kResetDevice = 34,
    kGetMaxMemSlots = 36,
};
// Header flags: version 1 in bits 0-1, REPLY in bit 2, NEED_REPLY in bit 3.
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kFlagReply = 1u << 2;
inline constexpr std::uint32_t kFlagNeedReply = 1u << 3;
inline constexpr std::size_t kHeaderSize = 12;
// Virtio feature bit 30 (VHOST_USER_F_PROTOCOL_FEATURES).
inline constexpr std::uint64_t kFProtocolFeatures = 1ull << 30;
// Protocol feature bits.
inline constexpr std::uint64_t kPfMq = 1ull << 0;
inline constexpr std::uint64_t kPfReplyAck = 1ull << 3;
inline constexpr std::uint64_t kPfMtu = 1ull << 4;
inline constexpr std::uint64_t kPfConfig = 1ull << 9;
// SET_VRING_KICK/CALL/ERR payload: bit 8 says no file descriptor comes with it.
inline constexpr std::uint64_t kVringNoFd = 1ull << 8;
}  // namespace vhost

struct VhostMsg {
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
    std::vector<std::byte> payload;
};

class VhostUserFrontend {
  public:
    struct Options {
        std::uint64_t features = 0;  // virtio features wanted (intersected with the offer)
        std::uint64_t protocol_features = vhost::kPfReplyAck | vhost::kPfMtu;  // likewise
        std::uint16_t mtu = 1500;  // NET_SET_MTU when the MTU protocol feature is agreed
        Millis reply_timeout{3000};
    };

    VhostUserFrontend() = default;
    ~VhostUserFrontend() = default;
    VhostUserFrontend(const VhostUserFrontend&) = delete;
    VhostUserFrontend& operator=(const VhostUserFrontend&) = delete;

    // Connects to the back end's socket, retrying until `within` has passed (it may still be
    // starting). Errc::io_error with error() set when it never accepted.
    Result<void> connect(const std::string& path, Millis within);
    void close() noexcept;
    [[nodiscard]] bool connected() const noexcept { return sock_.valid(); }
    // True if the back end closed the connection (a read returns end of file) within `timeout`.
    [[nodiscard]] bool peer_closed(Millis timeout) noexcept;

    // The whole start-up sequence a VMM runs for a virtio-net device: GET_FEATURES,
    // GET/SET_PROTOCOL_FEATURES, SET_OWNER, SET_FEATURES, SET_MEM_TABLE, NET_SET_MTU, then
    // for each queue NUM/ADDR/BASE/CALL/KICK and SET_VRING_ENABLE. Returns the negotiated virtio
    // features; the caller then builds its NetDriver with them (queues must exist before the
    // vrings are described, so this is split in negotiate() and start_queues()).
    Result<std::uint64_t> negotiate(const Options& opt);
    Result<void> start_queues(const GuestRam& ram, NetDriver& drv);
    // GET_VRING_BASE for both queues (the back end stops them); returns their resume indices.
    Result<std::array<std::uint16_t, 2>> stop_queues();

    [[nodiscard]] std::uint64_t offered_features() const noexcept { return offered_; }
    [[nodiscard]] std::uint64_t offered_protocol_features() const noexcept { return offered_pf_; }
    [[nodiscard]] std::uint64_t protocol_features() const noexcept { return pf_; }
    [[nodiscard]] bool reply_ack() const noexcept { return (pf_ & vhost::kPfReplyAck) != 0; }
    [[nodiscard]] const std::string& error() const noexcept { return error_; }

    // One message each. Requests without a reply of their own carry NEED_REPLY when REPLY_ACK was
    // agreed, and the ack is checked (non-zero is Errc::unsupported).
    Result<std::uint64_t> get_features();
    Result<void> set_features(std::uint64_t f);
    Result<std::uint64_t> get_protocol_features();
    Result<void> set_protocol_features(std::uint64_t f);
    Result<void> set_owner();
    Result<void> set_mem_table(const GuestRam& ram);
    Result<void> set_mem_table(std::span<const virtio::MemRegion> regions, std::span<const int> fds,
                               std::span<const std::uint64_t> mmap_offsets = {});
    Result<void> net_set_mtu(std::uint16_t mtu);
    Result<void> set_vring_num(std::uint32_t index, std::uint32_t num);
    Result<void> set_vring_addr(std::uint32_t index, std::uint64_t desc_uaddr,
                                std::uint64_t used_uaddr, std::uint64_t avail_uaddr);
    Result<void> set_vring_base(std::uint32_t index, std::uint32_t base);
    Result<std::uint16_t> get_vring_base(std::uint32_t index);
    Result<void> set_vring_kick(std::uint32_t index, int fd);  // fd < 0: no fd (polling)
    Result<void> set_vring_call(std::uint32_t index, int fd);
    Result<void> set_vring_enable(std::uint32_t index, bool on);

    // Raw access for hostile tests. send_msg() adds the 12-byte header; send_raw() sends bytes
    // as given. recv_msg() reads one message (payload at most 4 KiB).
    Result<void> send_msg(std::uint32_t request, std::uint32_t flags, ByteView payload,
                          std::span<const int> fds = {});
    Result<void> send_raw(ByteView bytes, std::span<const int> fds = {});
    Result<VhostMsg> recv_msg(Millis timeout);
    // Sends a request that has no reply of its own, with NEED_REPLY when REPLY_ACK is agreed (or
    // `force_need_reply`), and checks the ack. The ack value is in last_ack().
    Result<void> request_ack(std::uint32_t request, ByteView payload, std::span<const int> fds = {},
                             bool force_need_reply = false);
    [[nodiscard]] std::uint64_t last_ack() const noexcept { return last_ack_; }
    // How long a reply may take (negotiate() sets it from Options too).
    void set_reply_timeout(Millis t) noexcept { opt_.reply_timeout = t; }

  private:
    Result<std::uint64_t> request_u64(std::uint32_t request);
    Result<void> fail_with(Errc e, std::string msg);

    UniqueFd sock_;
    Options opt_;
    std::uint64_t offered_ = 0, offered_pf_ = 0, features_ = 0, pf_ = 0;
    std::uint64_t last_ack_ = 0;
    std::string error_;
};

// Little-endian helpers for 32/64-bit fields (core/bytes.hpp has the 16-bit ones).
[[nodiscard]] inline std::uint32_t le32_at(const std::byte* p) noexcept {
    return static_cast<std::uint32_t>(load_le16(p)) |
           (static_cast<std::uint32_t>(load_le16(p + 2)) << 16);
}
[[nodiscard]] inline std::uint64_t le64_at(const std::byte* p) noexcept {
    return static_cast<std::uint64_t>(le32_at(p)) |
           (static_cast<std::uint64_t>(le32_at(p + 4)) << 32);
}
inline void put_le32(std::byte* p, std::uint32_t v) noexcept {
    store_le16(p, static_cast<std::uint16_t>(v & 0xffff));
    store_le16(p + 2, static_cast<std::uint16_t>(v >> 16));
}
inline void put_le64(std::byte* p, std::uint64_t v) noexcept {
    put_le32(p, static_cast<std::uint32_t>(v & 0xffffffffu));
    put_le32(p + 4, static_cast<std::uint32_t>(v >> 32));
}

}  // namespace slipway::testing
