// The vhost-user protocol, back-end side: message codec, request and feature constants, and the
// session state machine that turns a front end's messages into VirtioNetDevice calls.
//
// The session does no socket I/O: the attachment (guest/src/vhost_user.cpp) reads whole messages
// and the file descriptors that came with them and hands each to VhostUserSession::handle(),
// which returns the reply bytes to send. Unit tests and the fuzzer drive it the same way.
//
// References are to the vhost-user specification (QEMU docs/interop/vhost-user.rst): "Message
// Specification", "Ring states", "Front-end message types", "REPLY_ACK".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/core/virtio/virtqueue.hpp"
#include "slipway/guest/virtio_net.hpp"

namespace slipway::guest::vhost_user {

// ---- wire format ("Message Specification") --------------------------------------------------
// Header: le32 request, le32 flags, le32 size, then `size` bytes of payload. Native byte order per
// the spec; slipway runs on little-endian hosts only, so it is read as little-endian.
inline constexpr std::size_t kHeaderSize = 12;
// Far above the largest message slipway accepts (SET_MEM_TABLE: 8 + 8 * 32 bytes); a larger size
// field means the stream has lost its framing.
inline constexpr std::size_t kMaxPayload = 4096;
// File descriptors one message may carry (SCM_RIGHTS): the spec's 8 memory regions.
inline constexpr std::size_t kMaxFds = 8;

inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kFlagReply = 0x4;      // set on every back-end reply
inline constexpr std::uint32_t kFlagNeedReply = 0x8;  // REPLY_ACK: the front end wants an ack

// Front-end request ids ("Front-end message types").
namespace req {
inline constexpr std::uint32_t get_features = 1;
inline constexpr std::uint32_t set_features = 2;
inline constexpr std::uint32_t set_owner = 3;
inline constexpr std::uint32_t reset_owner = 4;
inline constexpr std::uint32_t set_mem_table = 5;
inline constexpr std::uint32_t set_log_base = 6;
inline constexpr std::uint32_t set_log_fd = 7;
inline constexpr std::uint32_t set_vring_num = 8;
inline constexpr std::uint32_t set_vring_addr = 9;
inline constexpr std::uint32_t set_vring_base = 10;
inline constexpr std::uint32_t get_vring_base = 11;
inline constexpr std::uint32_t set_vring_kick = 12;
inline constexpr std::uint32_t set_vring_call = 13;
inline constexpr std::uint32_t set_vring_err = 14;
inline constexpr std::uint32_t get_protocol_features = 15;
inline constexpr std::uint32_t set_protocol_features = 16;
inline constexpr std::uint32_t get_queue_num = 17;
inline constexpr std::uint32_t set_vring_enable = 18;
inline constexpr std::uint32_t send_rarp = 19;
inline constexpr std::uint32_t net_set_mtu = 20;
inline constexpr std::uint32_t set_backend_req_fd = 21;
inline constexpr std::uint32_t iotlb_msg = 22;
inline constexpr std::uint32_t set_vring_endian = 23;
inline constexpr std::uint32_t get_config = 24;
inline constexpr std::uint32_t set_config = 25;
inline constexpr std::uint32_t create_crypto_session = 26;
inline constexpr std::uint32_t close_crypto_session = 27;
inline constexpr std::uint32_t postcopy_advise = 28;
inline constexpr std::uint32_t postcopy_listen = 29;
inline constexpr std::uint32_t postcopy_end = 30;
inline constexpr std::uint32_t get_inflight_fd = 31;
inline constexpr std::uint32_t set_inflight_fd = 32;
inline constexpr std::uint32_t gpu_set_socket = 33;
inline constexpr std::uint32_t reset_device = 34;
inline constexpr std::uint32_t vring_kick = 35;
inline constexpr std::uint32_t get_max_mem_slots = 36;
inline constexpr std::uint32_t add_mem_reg = 37;
inline constexpr std::uint32_t rem_mem_reg = 38;
inline constexpr std::uint32_t set_status = 39;
inline constexpr std::uint32_t get_status = 40;
}  // namespace req

// "Protocol features" bits.
namespace pfeat {
inline constexpr std::uint64_t mq = 1ull << 0;
inline constexpr std::uint64_t log_shmfd = 1ull << 1;
inline constexpr std::uint64_t rarp = 1ull << 2;
inline constexpr std::uint64_t reply_ack = 1ull << 3;
inline constexpr std::uint64_t net_mtu = 1ull << 4;
inline constexpr std::uint64_t backend_req = 1ull << 5;
inline constexpr std::uint64_t cross_endian = 1ull << 6;
inline constexpr std::uint64_t config = 1ull << 9;
inline constexpr std::uint64_t inflight_shmfd = 1ull << 12;
inline constexpr std::uint64_t reset_device = 1ull << 13;
inline constexpr std::uint64_t inband_notifications = 1ull << 14;
inline constexpr std::uint64_t configure_mem_slots = 1ull << 15;
inline constexpr std::uint64_t status = 1ull << 16;
}  // namespace pfeat

// VHOST_USER_F_PROTOCOL_FEATURES: the transport's own bit in the virtio feature word ("the UNUSED
// (30) feature bit"), never passed to the device.
inline constexpr std::uint64_t kProtocolFeaturesBit = 1ull << 30;
// GET_FEATURES answer.
inline constexpr std::uint64_t kOfferedVirtioFeatures = kOfferedFeatures | kProtocolFeaturesBit;
// GET_PROTOCOL_FEATURES answer. Not MQ: front ends disagree on whether GET_QUEUE_NUM counts
// queue pairs (QEMU) or virtqueues (rust-vmm), and without MQ both assume one pair, which is all
// slipway serves. Not CONFIG (the config space is the front end's to emulate), not LOG_SHMFD (no
// dirty logging, so no live migration), not CONFIGURE_MEM_SLOTS (SET_MEM_TABLE's 8 regions).
inline constexpr std::uint64_t kOfferedProtocolFeatures =
    pfeat::reply_ack | pfeat::net_mtu | pfeat::reset_device | pfeat::status;

// SET_VRING_KICK/CALL/ERR payload: queue index in bits 0-7, bit 8 = no fd in the message.
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFd = 1ull << 8;

// One message region in SET_MEM_TABLE ("Memory regions description"): le64 guest_phys_addr,
// le64 memory_size, le64 userspace_addr, le64 mmap_offset, after a le32 count and le32 padding.
inline constexpr std::size_t kMemTableHeader = 8;
inline constexpr std::size_t kMemRegionSize = 32;
inline constexpr std::size_t kMaxMemRegions = 8;
static_assert(kMemTableHeader + kMaxMemRegions * kMemRegionSize <= kMaxPayload);
// Vring address description: le32 index, le32 flags, le64 desc, le64 used, le64 avail, le64 log.
inline constexpr std::size_t kVringAddrSize = 40;
inline constexpr std::size_t kVringStateSize = 8;  // le32 index, le32 num
inline constexpr std::size_t kU64Size = 8;

struct MsgHeader {
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
    std::uint32_t size = 0;  // payload bytes that follow the header
};

// Parses the 12-byte header. Errc::truncated for fewer bytes, Errc::bad_version for version bits
// other than 1, Errc::too_large for a payload size above kMaxPayload.
[[nodiscard]] Result<MsgHeader> parse_header(ByteView b) noexcept;
// Writes the header into out[0, kHeaderSize).
void emit_header(const MsgHeader& h, std::byte* out) noexcept;
// Writes header + payload into `out`; returns the bytes written (0 if `out` is too small or the
// payload exceeds kMaxPayload). For tests, fuzzers and test front ends.
std::size_t emit_message(std::uint32_t request, std::uint32_t flags, ByteView payload,
                         MutByteView out) noexcept;
// "GET_FEATURES", ... for log lines; "UNKNOWN" for ids slipway does not know.
[[nodiscard]] const char* request_name(std::uint32_t request) noexcept;

}  // namespace slipway::guest::vhost_user

namespace slipway::guest {

// One front end's session with the device. Runs on the network thread; not thread-safe.
//
// Ring lifecycle ("Ring states"): a ring is started by SET_VRING_KICK (with an fd) and stopped by
// GET_VRING_BASE; it is enabled by SET_VRING_ENABLE 1, or for every ring at once by a SET_FEATURES
// without VHOST_USER_F_PROTOCOL_FEATURES (a front end that does not speak protocol features
// never sends SET_VRING_ENABLE, and for it the spec has rings start enabled). slipway runs a ring
// in the device only while it is started, enabled, and has a size, addresses and memory; a
// started-but-disabled ring is simply not processed (the guest's TX waits instead of being
// discarded, and nothing is delivered to RX, which is what "disabled" asks for).
//
// Configuration changes (memory table, features, a ring's size/addresses/base/kick) stop the
// affected running rings, apply the change, and run them again from the index stop_queue()
// returned, so a front end may reconfigure on the fly.
class VhostUserSession {
  public:
    // `name` prefixes log lines (the attachment's spec); `mtu` is the network's IP MTU, the
    // largest NET_SET_MTU accepted.
    VhostUserSession(VirtioNetDevice& dev, std::string name, std::uint32_t mtu);
    ~VhostUserSession();
    VhostUserSession(const VhostUserSession&) = delete;
    VhostUserSession& operator=(const VhostUserSession&) = delete;

    // Handles one complete message. `fds` are the descriptors that arrived with it; the session
    // moves out those it keeps and the caller closes the rest. Returns the bytes to send back
    // (empty: no reply), valid until the next call; or an error when the connection must close
    // (malformed message, protocol violation), with the reason in error().
    [[nodiscard]] Result<ByteView> handle(const vhost_user::MsgHeader& h, ByteView payload,
                                          std::span<UniqueFd> fds);
    // Forgets the front end: stops both rings, unmaps guest memory, closes every fd, and returns
    // to the state of a fresh connection (features 0, nothing negotiated).
    void reset() noexcept;

    [[nodiscard]] const std::string& error() const noexcept { return error_; }
    // Both rings running in the device.
    [[nodiscard]] bool queues_up() const noexcept;
    [[nodiscard]] bool ring_running(unsigned q) const noexcept;
    [[nodiscard]] bool ring_enabled(unsigned q) const noexcept;
    [[nodiscard]] std::uint64_t acked_features() const noexcept { return features_; }
    [[nodiscard]] std::uint64_t protocol_features() const noexcept { return protocol_; }
    [[nodiscard]] std::size_t mem_regions() const noexcept { return mem_.regions().size(); }
    [[nodiscard]] std::uint8_t status() const noexcept { return status_; }
    [[nodiscard]] bool owned() const noexcept { return owner_; }

  private:
    static constexpr unsigned kRings = 2;  // one RX/TX pair

    struct Mapping {
        void* base = nullptr;
        std::size_t len = 0;
    };
    struct Ring {
        std::uint32_t num = 0;  // 0: not set (or refused)
        bool have_addr = false;
        std::uint64_t desc = 0, avail = 0, used = 0;
        std::uint16_t base = 0;  // where the ring resumes (SET_VRING_BASE, or the last stop)
        UniqueFd kick, call, err;
        bool started = false;  // "Ring states": SET_VRING_KICK seen since the last GET_VRING_BASE
        bool enabled = false;
        bool running = false;  // started in the device by this session
    };

    // Outcome of one request: `ok` feeds the REPLY_ACK ack; `close` ends the connection.
    enum class Verdict : std::uint8_t { ok, refused, close };

    Verdict dispatch(const vhost_user::MsgHeader& h, ByteView payload, std::span<UniqueFd> fds);
    Verdict protocol_error(std::string why);
    Verdict on_set_features(std::uint64_t v);
    Verdict on_set_protocol_features(std::uint64_t v);
    Verdict on_set_mem_table(ByteView payload, std::span<UniqueFd> fds);
    Verdict on_vring_fd(std::uint32_t request, std::uint64_t v, std::span<UniqueFd> fds);
    Verdict on_get_vring_base(unsigned q);
    // Starts or stops ring q in the device to match its state; false if it should run and the
    // device refused it.
    bool reconcile(unsigned q);
    void stop_ring(unsigned q) noexcept;
    void stop_rings() noexcept;
    void reset_device_state() noexcept;
    void unmap_all() noexcept;
    void reply_u64(std::uint32_t request, std::uint64_t v) noexcept;
    void reply_vring_state(std::uint32_t request, std::uint32_t index, std::uint32_t num) noexcept;

    VirtioNetDevice& dev_;
    std::string name_;
    std::uint32_t mtu_;
    std::string error_;

    bool owner_ = false;
    std::uint64_t features_ = 0;  // as the front end set them, bit 30 included
    std::uint64_t protocol_ = 0;
    std::uint8_t status_ = 0;
    std::array<Ring, kRings> rings_;
    virtio::GuestMemory mem_;
    std::array<Mapping, vhost_user::kMaxMemRegions> maps_{};
    std::size_t nmaps_ = 0;

    std::array<std::byte, vhost_user::kHeaderSize + vhost_user::kU64Size> reply_{};
    std::size_t reply_len_ = 0;
};

}  // namespace slipway::guest
