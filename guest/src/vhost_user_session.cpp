// The vhost-user back-end session: message codec and the per-request state machine that drives a
// VirtioNetDevice (guest/include/slipway/guest/vhost_user.hpp says what it implements).
//
// What a front end can get wrong, and what it costs it (spec "Communication": "If back-end
// detects some error such as incompatible features, it may also close the connection"):
//   - the connection is closed (handle() fails, the attachment counts drop_wire): a payload size
//     or fd count that does not fit the request, a queue index above 1, feature or protocol
//     feature bits that were not offered, a SET_MEM_TABLE whose regions do not describe mappable
//     memory, a request whose reply only exists with a protocol feature slipway did not offer
//     (the front end would wait for a reply forever);
//   - the request is refused (a non-zero REPLY_ACK ack when one was asked for, a warning either
//     way): polling instead of a kick fd, a ring size that is not a power of two up to 32768, a
//     ring the device refuses (outside memory, misaligned), an MTU above the network's, requests
//     for features slipway does not implement (dirty logging, IOTLB, config space, ...).
// Every fd a message brings and the session does not keep is closed by the caller.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "slipway/core/log.hpp"
#include "slipway/guest/vhost_user.hpp"

namespace slipway::guest {
namespace {

// Little-endian fields at an offset the caller has bounds-checked (the payload size is validated
// per request before any field is read).
std::uint32_t le32_at(ByteView b, std::size_t off) noexcept {
    std::uint32_t v = 0;
    for (std::size_t i = 4; i-- > 0;)
        v = (v << 8) | static_cast<std::uint32_t>(b[off + i]);
    return v;
}
std::uint64_t le64_at(ByteView b, std::size_t off) noexcept {
    return static_cast<std::uint64_t>(le32_at(b, off)) |
           (static_cast<std::uint64_t>(le32_at(b, off + 4)) << 32);
}
void put_le32(std::byte* p, std::uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}
void put_le64(std::byte* p, std::uint64_t v) noexcept {
    put_le32(p, static_cast<std::uint32_t>(v & 0xffffffffu));
    put_le32(p + 4, static_cast<std::uint32_t>(v >> 32));
}

}  // namespace

namespace vhost_user {

Result<MsgHeader> parse_header(ByteView b) noexcept {
    if (b.size() < kHeaderSize) return fail(Errc::truncated);
    MsgHeader h;
    h.request = le32_at(b, 0);
    h.flags = le32_at(b, 4);
    h.size = le32_at(b, 8);
    if ((h.flags & kVersionMask) != kVersion) return fail(Errc::bad_version);
    if (h.size > kMaxPayload) return fail(Errc::too_large);
    return h;
}

void emit_header(const MsgHeader& h, std::byte* out) noexcept {
    put_le32(out, h.request);
    put_le32(out + 4, h.flags);
    put_le32(out + 8, h.size);
}

std::size_t emit_message(std::uint32_t request, std::uint32_t flags, ByteView payload,
                         MutByteView out) noexcept {
    if (payload.size() > kMaxPayload || out.size() < kHeaderSize + payload.size()) return 0;
    emit_header(MsgHeader{request, flags, static_cast<std::uint32_t>(payload.size())}, out.data());
    if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
    return kHeaderSize + payload.size();
}

const char* request_name(std::uint32_t r) noexcept {
    static constexpr const char* kNames[] = {
        "NONE",
        "GET_FEATURES",
        "SET_FEATURES",
        "SET_OWNER",
        "RESET_OWNER",
        "SET_MEM_TABLE",
        "SET_LOG_BASE",
        "SET_LOG_FD",
        "SET_VRING_NUM",
        "SET_VRING_ADDR",
        "SET_VRING_BASE",
        "GET_VRING_BASE",
        "SET_VRING_KICK",
        "SET_VRING_CALL",
        "SET_VRING_ERR",
        "GET_PROTOCOL_FEATURES",
        "SET_PROTOCOL_FEATURES",
        "GET_QUEUE_NUM",
        "SET_VRING_ENABLE",
        "SEND_RARP",
        "NET_SET_MTU",
        "SET_BACKEND_REQ_FD",
        "IOTLB_MSG",
        "SET_VRING_ENDIAN",
        "GET_CONFIG",
        "SET_CONFIG",
        "CREATE_CRYPTO_SESSION",
        "CLOSE_CRYPTO_SESSION",
        "POSTCOPY_ADVISE",
        "POSTCOPY_LISTEN",
        "POSTCOPY_END",
        "GET_INFLIGHT_FD",
        "SET_INFLIGHT_FD",
        "GPU_SET_SOCKET",
        "RESET_DEVICE",
        "VRING_KICK",
        "GET_MAX_MEM_SLOTS",
        "ADD_MEM_REG",
        "REM_MEM_REG",
        "SET_STATUS",
        "GET_STATUS",
    };
    if (r < sizeof kNames / sizeof kNames[0]) return kNames[r];
    return "UNKNOWN";
}

}  // namespace vhost_user

namespace {

using namespace vhost_user;

// Device status bits (virtio 1.2 §2.1).
constexpr std::uint8_t kStatusNeedsReset = 0x40;

// Requests that only exist with a protocol feature slipway does not offer and that the front end
// waits on a reply for: answering nothing would hang it, so the connection is closed instead.
bool needs_unoffered_reply(std::uint32_t r) noexcept {
    switch (r) {
        case req::iotlb_msg:              // IOMMU_PLATFORM is not offered
        case req::get_config:             // CONFIG
        case req::create_crypto_session:  // CRYPTO_SESSION
        case req::postcopy_advise:        // PAGEFAULT
        case req::postcopy_end:
        case req::get_inflight_fd:    // INFLIGHT_SHMFD
        case req::get_max_mem_slots:  // CONFIGURE_MEM_SLOTS
        case req::add_mem_reg:        // (its reply exists in postcopy mode)
            return true;
        default:
            return false;
    }
}

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}

UniqueFd dup_fd(const UniqueFd& fd) noexcept {
    if (!fd.valid()) return UniqueFd{};
    return UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
}

}  // namespace

VhostUserSession::VhostUserSession(VirtioNetDevice& dev, std::string name, std::uint32_t mtu)
    : dev_(dev), name_(std::move(name)), mtu_(mtu) {
    dev_.set_memory(&mem_);
}

VhostUserSession::~VhostUserSession() {
    reset();
    dev_.set_memory(nullptr);
}

bool VhostUserSession::ring_running(unsigned q) const noexcept {
    return q < kRings && rings_[q].running && dev_.queue_running(q);
}

bool VhostUserSession::ring_enabled(unsigned q) const noexcept {
    return q < kRings && rings_[q].enabled;
}

bool VhostUserSession::queues_up() const noexcept {
    return ring_running(VirtioNetDevice::kRxQueue) && ring_running(VirtioNetDevice::kTxQueue);
}

void VhostUserSession::stop_ring(unsigned q) noexcept {
    Ring& r = rings_[q];
    if (!r.running) return;
    r.base = dev_.stop_queue(q);
    r.running = false;
}

void VhostUserSession::stop_rings() noexcept {
    for (unsigned q = 0; q < kRings; ++q)
        stop_ring(q);
}

void VhostUserSession::unmap_all() noexcept {
    mem_.clear();
    for (std::size_t i = 0; i < nmaps_; ++i) {
        ::munmap(maps_[i].base, maps_[i].len);
        maps_[i] = Mapping{};
    }
    nmaps_ = 0;
}

void VhostUserSession::reset_device_state() noexcept {
    stop_rings();
    dev_.stop_all();  // a ring the device broke on its own is stopped too
    for (Ring& r : rings_)
        r = Ring{};
    unmap_all();
    features_ = 0;
    status_ = 0;
    (void)dev_.set_features(0);  // back to the port's plain capabilities
}

void VhostUserSession::reset() noexcept {
    reset_device_state();
    protocol_ = 0;
    owner_ = false;
    error_.clear();
    reply_len_ = 0;
}

bool VhostUserSession::reconcile(unsigned q) {
    Ring& r = rings_[q];
    const bool want = r.started && r.enabled && r.num != 0 && r.have_addr && r.kick.valid() &&
                      !mem_.regions().empty();
    if (!want) {
        stop_ring(q);
        return true;
    }
    if (r.running) return true;
    VirtqueueSetup s;
    s.size = r.num;
    s.desc = r.desc;
    s.avail = r.avail;
    s.used = r.used;
    s.user_addrs = true;  // vhost-user ring addresses are the front end's virtual addresses
    s.last_avail = r.base;
    s.kick = dup_fd(r.kick);
    s.call = dup_fd(r.call);
    if (!s.kick.valid() || (r.call.valid() && !s.call.valid())) {
        SLW_WARN_RATELIMITED("{}: ring {}: cannot duplicate its eventfds: {}", name_, q,
                             errno_text(errno));
        return false;
    }
    std::string why;
    if (auto ok = dev_.start_queue(q, std::move(s), why); !ok) {
        SLW_WARN_RATELIMITED("{}: ring {} (size {}, desc {}, avail {}, used {}) refused: {}", name_,
                             q, r.num, hex(r.desc), hex(r.avail), hex(r.used), why);
        return false;
    }
    r.running = true;
    SLW_DEBUG("{}: ring {} running from index {}", name_, q, r.base);
    if (queues_up()) SLW_INFO("{}: queues up", name_);
    return true;
}

VhostUserSession::Verdict VhostUserSession::protocol_error(std::string why) {
    error_ = std::move(why);
    return Verdict::close;
}

Result<ByteView> VhostUserSession::handle(const MsgHeader& h, ByteView payload,
                                          std::span<UniqueFd> fds) {
    reply_len_ = 0;
    error_.clear();
    if ((h.flags & kVersionMask) != kVersion) {
        error_ = "bad version bits in flags " + hex(h.flags);
        return fail(Errc::bad_version);
    }
    if (payload.size() != h.size || payload.size() > kMaxPayload) {
        error_ = "payload of " + std::to_string(payload.size()) + " bytes for a size field of " +
                 std::to_string(h.size);
        return fail(Errc::bad_length);
    }
    if (fds.size() > kMaxFds) {
        error_ = std::to_string(fds.size()) + " fds in one message";
        return fail(Errc::bad_length);
    }
    if ((h.flags & kFlagReply) != 0) {
        error_ = std::string(request_name(h.request)) + " sent as a reply";
        return fail(Errc::invalid_argument);
    }
    const Verdict v = dispatch(h, payload, fds);
    if (v == Verdict::close) {
        reply_len_ = 0;
        if (error_.empty()) error_ = "protocol error";
        error_ = std::string(request_name(h.request)) + ": " + error_;
        return fail(Errc::invalid_argument);
    }
    // REPLY_ACK: a request without a reply of its own is acknowledged with a u64, 0 for success.
    if (reply_len_ == 0 && (h.flags & kFlagNeedReply) != 0 && (protocol_ & pfeat::reply_ack) != 0)
        reply_u64(h.request, v == Verdict::ok ? 0 : 1);
    return ByteView(reply_.data(), reply_len_);
}

void VhostUserSession::reply_u64(std::uint32_t request, std::uint64_t v) noexcept {
    emit_header(MsgHeader{request, kVersion | kFlagReply, kU64Size}, reply_.data());
    put_le64(reply_.data() + kHeaderSize, v);
    reply_len_ = kHeaderSize + kU64Size;
}

void VhostUserSession::reply_vring_state(std::uint32_t request, std::uint32_t index,
                                         std::uint32_t num) noexcept {
    emit_header(MsgHeader{request, kVersion | kFlagReply, kVringStateSize}, reply_.data());
    put_le32(reply_.data() + kHeaderSize, index);
    put_le32(reply_.data() + kHeaderSize + 4, num);
    reply_len_ = kHeaderSize + kVringStateSize;
}

VhostUserSession::Verdict VhostUserSession::dispatch(const MsgHeader& h, ByteView p,
                                                     std::span<UniqueFd> fds) {
    const std::uint32_t r = h.request;
    // Payload shape and fd count per request ("Front-end message types"). Unknown requests and
    // the ones refused below are checked only against the overall limits.
    auto expect = [&](std::size_t size, std::size_t nfds) {
        if (p.size() == size && fds.size() == nfds) return true;
        error_ = std::to_string(p.size()) + "-byte payload with " + std::to_string(fds.size()) +
                 " fds (expected " + std::to_string(size) + " bytes, " + std::to_string(nfds) +
                 " fds)";
        return false;
    };
    auto ring_index = [&](std::uint64_t idx, unsigned& q) {
        if (idx >= kRings) {
            error_ = "queue index " + std::to_string(idx) + " (slipway serves one RX/TX pair)";
            return false;
        }
        q = static_cast<unsigned>(idx);
        return true;
    };

    switch (r) {
        case req::get_features:
            if (!expect(0, 0)) return Verdict::close;
            reply_u64(r, kOfferedVirtioFeatures);
            return Verdict::ok;

        case req::set_features:
            if (!expect(kU64Size, 0)) return Verdict::close;
            return on_set_features(le64_at(p, 0));

        case req::get_protocol_features:
            if (!expect(0, 0)) return Verdict::close;
            reply_u64(r, kOfferedProtocolFeatures);
            return Verdict::ok;

        case req::set_protocol_features:
            if (!expect(kU64Size, 0)) return Verdict::close;
            return on_set_protocol_features(le64_at(p, 0));

        case req::set_owner:
            if (!expect(0, 0)) return Verdict::close;
            owner_ = true;
            return Verdict::ok;

        case req::reset_owner:
        case req::reset_device:
            if (!expect(0, 0)) return Verdict::close;
            if (r == req::reset_device && (protocol_ & pfeat::reset_device) == 0)
                return protocol_error("RESET_DEVICE without the RESET_DEVICE protocol feature");
            // RESET_OWNER is deprecated; the spec allows disabling all rings. slipway resets the
            // device state (rings, memory, features) but keeps the negotiated protocol features,
            // since front ends go on using REPLY_ACK afterwards.
            reset_device_state();
            SLW_INFO("{}: device reset by the front end", name_);
            return Verdict::ok;

        case req::set_mem_table:
            if (p.size() < kMemTableHeader) {
                (void)expect(kMemTableHeader, fds.size());
                return Verdict::close;
            }
            return on_set_mem_table(p, fds);

        case req::set_vring_num: {
            if (!expect(kVringStateSize, 0)) return Verdict::close;
            unsigned q = 0;
            if (!ring_index(le32_at(p, 0), q)) return Verdict::close;
            const std::uint32_t num = le32_at(p, 4);
            // virtio 1.2 §2.7: a split queue's size is a power of two, at most 32768.
            if (num == 0 || num > virtio::kMaxQueueSize || (num & (num - 1)) != 0) {
                SLW_WARN_RATELIMITED("{}: ring {}: size {} refused (a power of two up to {})",
                                     name_, q, num, virtio::kMaxQueueSize);
                stop_ring(q);
                rings_[q].num = 0;
                return Verdict::refused;
            }
            stop_ring(q);
            rings_[q].num = num;
            return reconcile(q) ? Verdict::ok : Verdict::refused;
        }

        case req::set_vring_addr: {
            if (!expect(kVringAddrSize, 0)) return Verdict::close;
            unsigned q = 0;
            if (!ring_index(le32_at(p, 0), q)) return Verdict::close;
            // flags bit 0 (VHOST_VRING_F_LOG) asks for used-ring dirty logging, which only
            // happens with VHOST_F_LOG_ALL; slipway never offers it, so the bit is ignored.
            Ring& ring = rings_[q];
            stop_ring(q);
            ring.desc = le64_at(p, 8);
            ring.used = le64_at(p, 16);
            ring.avail = le64_at(p, 24);
            ring.have_addr = true;
            return reconcile(q) ? Verdict::ok : Verdict::refused;
        }

        case req::set_vring_base: {
            if (!expect(kVringStateSize, 0)) return Verdict::close;
            unsigned q = 0;
            if (!ring_index(le32_at(p, 0), q)) return Verdict::close;
            const std::uint32_t base = le32_at(p, 4);
            // Split queues only (VIRTIO_F_RING_PACKED is not offered): the base is the 16-bit
            // index of the next available entry.
            if (base > 0xffff) {
                SLW_WARN_RATELIMITED("{}: ring {}: base {} refused (split rings use 16 bits)",
                                     name_, q, base);
                return Verdict::refused;
            }
            stop_ring(q);
            rings_[q].base = static_cast<std::uint16_t>(base);
            return reconcile(q) ? Verdict::ok : Verdict::refused;
        }

        case req::get_vring_base: {
            if (!expect(kVringStateSize, 0)) return Verdict::close;
            unsigned q = 0;
            if (!ring_index(le32_at(p, 0), q)) return Verdict::close;
            return on_get_vring_base(q);
        }

        case req::set_vring_kick:
        case req::set_vring_call:
        case req::set_vring_err: {
            if (p.size() != kU64Size) {
                (void)expect(kU64Size, fds.size());
                return Verdict::close;
            }
            return on_vring_fd(r, le64_at(p, 0), fds);
        }

        case req::set_vring_enable: {
            if (!expect(kVringStateSize, 0)) return Verdict::close;
            unsigned q = 0;
            if (!ring_index(le32_at(p, 0), q)) return Verdict::close;
            const std::uint32_t on = le32_at(p, 4);
            if (on > 1) {
                SLW_WARN_RATELIMITED("{}: ring {}: SET_VRING_ENABLE {} refused (0 or 1)", name_, q,
                                     on);
                return Verdict::refused;
            }
            rings_[q].enabled = on == 1;
            return reconcile(q) ? Verdict::ok : Verdict::refused;
        }

        case req::get_queue_num:
            if (!expect(0, 0)) return Verdict::close;
            reply_u64(r, 1);  // one queue pair
            return Verdict::ok;

        case req::net_set_mtu: {
            if (!expect(kU64Size, 0)) return Verdict::close;
            const std::uint64_t m = le64_at(p, 0);
            // virtio 1.2 §5.1.4.1: the device's MTU is at least 68. The guest may use a smaller
            // MTU than the network's, never a larger one (frames above it would be dropped).
            if (m < 68 || m > mtu_) {
                SLW_WARN_RATELIMITED("{}: guest MTU {} refused (68..{})", name_, m, mtu_);
                return Verdict::refused;
            }
            SLW_INFO("{}: front end set the guest MTU to {}", name_, m);
            return Verdict::ok;
        }

        case req::send_rarp:
            // Sent after a live migration so switches relearn the guest's MAC; slipway's switch
            // learns it from the guest's next frame, so there is nothing to do.
            if (!expect(kU64Size, 0)) return Verdict::close;
            return Verdict::ok;

        case req::set_status: {
            if (!expect(kU64Size, 0)) return Verdict::close;
            if ((protocol_ & pfeat::status) == 0)
                return protocol_error("SET_STATUS without the STATUS protocol feature");
            const std::uint64_t s = le64_at(p, 0);
            if (s > 0xff) {
                SLW_WARN_RATELIMITED("{}: device status {} refused (8 bits)", name_, hex(s));
                return Verdict::refused;
            }
            // Recorded for GET_STATUS. Rings follow the ring messages, not DRIVER_OK: front ends
            // send SET_STATUS after the rings are set up and 0 after GET_VRING_BASE.
            status_ = static_cast<std::uint8_t>(s);
            return Verdict::ok;
        }

        case req::get_status:
            if (!expect(0, 0)) return Verdict::close;
            if ((protocol_ & pfeat::status) == 0)
                return protocol_error("GET_STATUS without the STATUS protocol feature");
            // virtio 1.2 §2.1.2: DEVICE_NEEDS_RESET once the device cannot go on (a broken ring).
            reply_u64(r, status_ | (dev_.broken() ? kStatusNeedsReset : 0));
            return Verdict::ok;

        default:
            break;
    }

    if (needs_unoffered_reply(r))
        return protocol_error("its protocol feature was not offered and it expects a reply");
    // Known or unknown, the rest is nothing slipway does: refuse (with REPLY_ACK the front end
    // learns it), close whatever fds came along (the caller does), keep the session.
    SLW_WARN_RATELIMITED("{}: {} ({}) not supported; refused", name_, request_name(r), r);
    return Verdict::refused;
}

VhostUserSession::Verdict VhostUserSession::on_set_features(std::uint64_t v) {
    if ((v & ~kOfferedVirtioFeatures) != 0)
        return protocol_error("feature bits " + hex(v & ~kOfferedVirtioFeatures) +
                              " were not offered");
    // The device takes features with its rings stopped; running rings resume afterwards.
    bool was_running[kRings];
    for (unsigned q = 0; q < kRings; ++q) {
        was_running[q] = rings_[q].running;
        stop_ring(q);
    }
    if (auto ok = dev_.set_features(v & ~kProtocolFeaturesBit); !ok)
        return protocol_error("the device refused features " + hex(v));
    features_ = v;
    // "Ring states": without VHOST_USER_F_PROTOCOL_FEATURES there is no SET_VRING_ENABLE, and
    // rings are enabled. With it, SET_FEATURES leaves the enable state alone (it is also how
    // front ends toggle VHOST_F_LOG_ALL, which must not halt the device).
    if ((v & kProtocolFeaturesBit) == 0) {
        for (Ring& r : rings_)
            r.enabled = true;
    }
    SLW_INFO("{}: features {}", name_, hex(v));
    bool ok = true;
    for (unsigned q = 0; q < kRings; ++q) {
        if (!reconcile(q) && was_running[q]) ok = false;
    }
    return ok ? Verdict::ok : Verdict::refused;
}

VhostUserSession::Verdict VhostUserSession::on_set_protocol_features(std::uint64_t v) {
    if ((v & ~kOfferedProtocolFeatures) != 0)
        return protocol_error("protocol feature bits " + hex(v & ~kOfferedProtocolFeatures) +
                              " were not offered");
    protocol_ = v;
    SLW_DEBUG("{}: protocol features {}", name_, hex(v));
    return Verdict::ok;
}

VhostUserSession::Verdict VhostUserSession::on_set_mem_table(ByteView p, std::span<UniqueFd> fds) {
    const std::uint32_t n = le32_at(p, 0);
    if (n > kMaxMemRegions)
        return protocol_error(std::to_string(n) + " memory regions (at most " +
                              std::to_string(kMaxMemRegions) + ")");
    if (p.size() != kMemTableHeader + std::size_t{n} * kMemRegionSize)
        return protocol_error(std::to_string(p.size()) + "-byte payload for " + std::to_string(n) +
                              " regions");
    if (fds.size() != n)
        return protocol_error(std::to_string(n) + " regions but " + std::to_string(fds.size()) +
                              " fds");

    // Map the new table completely before touching the old one, so a bad table leaves nothing
    // half-done; the connection is closed anyway, but the unmapping stays in one place.
    static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    std::array<Mapping, kMaxMemRegions> maps{};
    std::size_t nmaps = 0;
    virtio::GuestMemory mem;
    auto undo = [&] {
        for (std::size_t i = 0; i < nmaps; ++i)
            ::munmap(maps[i].base, maps[i].len);
    };
    for (std::uint32_t i = 0; i < n; ++i) {
        const std::size_t off = kMemTableHeader + std::size_t{i} * kMemRegionSize;
        const std::uint64_t gpa = le64_at(p, off);
        const std::uint64_t size = le64_at(p, off + 8);
        const std::uint64_t uva = le64_at(p, off + 16);
        const std::uint64_t mmap_off = le64_at(p, off + 24);
        const std::string who = "region " + std::to_string(i) + " (guest " + hex(gpa) + ", " +
                                std::to_string(size) + " bytes, user " + hex(uva) + ", offset " +
                                hex(mmap_off) + "): ";
        std::uint64_t end = 0;
        if (size == 0 || __builtin_add_overflow(gpa, size - 1, &end) ||
            __builtin_add_overflow(uva, size - 1, &end) ||
            __builtin_add_overflow(mmap_off, size, &end)) {
            undo();
            return protocol_error(who + "empty or wraps around");
        }
        // Mapping past the end of the file would turn the first access into SIGBUS, so the
        // region must lie inside a regular file (memfd, tmpfs or hugetlbfs file) as it is now.
        struct stat st {};
        if (::fstat(fds[i].get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
            static_cast<std::uint64_t>(st.st_size) < end) {
            undo();
            return protocol_error(who + "its fd is not a file holding that range");
        }
        // mmap wants a page-aligned offset: map from the page below and skip the difference.
        const std::uint64_t aligned = mmap_off & ~(page - 1);
        const std::uint64_t skip = mmap_off - aligned;
        const std::size_t len = static_cast<std::size_t>(size + skip);
        void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i].get(),
                            static_cast<off_t>(aligned));
        if (base == MAP_FAILED) {
            const int e = errno;
            undo();
            return protocol_error(who + "mmap: " + errno_text(e));
        }
        maps[nmaps++] = Mapping{base, len};
        virtio::MemRegion mr;
        mr.guest_addr = gpa;
        mr.size = size;
        mr.user_addr = uva;
        mr.host = static_cast<std::byte*>(base) + skip;
        if (auto ok = mem.add(mr); !ok) {
            undo();
            return protocol_error(who + "overlaps another region or is unusable (" +
                                  std::string(to_string(ok.error())) + ")");
        }
    }

    // The rings must not touch the old mappings once they are gone: stop them, swap, and run
    // them again over the new table (from where they stopped).
    stop_rings();
    unmap_all();
    mem_ = mem;
    maps_ = maps;
    nmaps_ = nmaps;
    std::uint64_t total = 0;
    for (const auto& r : mem_.regions())
        total += r.size;
    SLW_INFO("{}: memory table: {} region(s), {} MiB", name_, n, total >> 20);
    bool ok = true;
    for (unsigned q = 0; q < kRings; ++q)
        ok = reconcile(q) && ok;
    return ok ? Verdict::ok : Verdict::refused;
}

VhostUserSession::Verdict VhostUserSession::on_vring_fd(std::uint32_t request, std::uint64_t v,
                                                        std::span<UniqueFd> fds) {
    const bool no_fd = (v & kVringNoFd) != 0;
    if ((v & ~(kVringIndexMask | kVringNoFd)) != 0)
        return protocol_error("unknown bits in " + hex(v));
    if (fds.size() != (no_fd ? 0u : 1u))
        return protocol_error(std::to_string(fds.size()) + " fds with the no-fd flag " +
                              (no_fd ? "set" : "clear"));
    if ((v & kVringIndexMask) >= kRings)
        return protocol_error("queue index " + std::to_string(v & kVringIndexMask) +
                              " (slipway serves one RX/TX pair)");
    const auto q = static_cast<unsigned>(v & kVringIndexMask);
    Ring& r = rings_[q];

    if (request == req::set_vring_kick) {
        if (no_fd) {
            // Polling the available ring without a kick would need a busy thread; slipway's rings
            // are driven by the loop's readiness events only.
            SLW_WARN_RATELIMITED("{}: ring {}: polling mode (no kick fd) is not supported", name_,
                                 q);
            stop_ring(q);
            r.kick.reset();
            r.started = false;
            return Verdict::refused;
        }
        // A new kick fd (re)starts the ring ("Ring states"); a running ring resumes where it was.
        stop_ring(q);
        r.kick = std::move(fds[0]);
        r.started = true;
        return reconcile(q) ? Verdict::ok : Verdict::refused;
    }
    if (request == req::set_vring_call) {
        // No fd: the front end polls the used ring, so slipway simply sends no interrupts.
        r.call = no_fd ? UniqueFd{} : std::move(fds[0]);
        if (r.running) dev_.set_call(q, dup_fd(r.call));
        return Verdict::ok;
    }
    // SET_VRING_ERR: kept so the fd's lifetime follows the protocol; the device reports a broken
    // ring through GET_STATUS (DEVICE_NEEDS_RESET) and its counters instead.
    r.err = no_fd ? UniqueFd{} : std::move(fds[0]);
    return Verdict::ok;
}

VhostUserSession::Verdict VhostUserSession::on_get_vring_base(unsigned q) {
    // "Ring states": GET_VRING_BASE stops the ring; the reply is where it would resume (the next
    // available index, which a later SET_VRING_BASE hands back).
    Ring& r = rings_[q];
    stop_ring(q);
    r.started = false;
    r.kick.reset();  // a restart comes with a new SET_VRING_KICK
    reply_vring_state(req::get_vring_base, q, r.base);
    return Verdict::ok;
}

}  // namespace slipway::guest
