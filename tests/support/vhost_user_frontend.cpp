// The front-end (VMM) side of the vhost-user protocol (QEMU docs/interop/vhost-user.rst), for
// tests: what QEMU sends to bring up a vhost-user-net back end, and raw messages for hostile tests.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <thread>

#include "virtio_driver.hpp"

namespace slipway::testing {

namespace {

constexpr std::size_t kMaxPayload = 4096;
constexpr std::size_t kMaxFds = 8;  // vhost-user's baseline maximum of fds per message

const char* request_name(std::uint32_t r) noexcept {
    switch (r) {
        case vhost::kGetFeatures:
            return "GET_FEATURES";
        case vhost::kSetFeatures:
            return "SET_FEATURES";
        case vhost::kSetOwner:
            return "SET_OWNER";
        case vhost::kResetOwner:
            return "RESET_OWNER";
        case vhost::kSetMemTable:
            return "SET_MEM_TABLE";
        case vhost::kSetVringNum:
            return "SET_VRING_NUM";
        case vhost::kSetVringAddr:
            return "SET_VRING_ADDR";
        case vhost::kSetVringBase:
            return "SET_VRING_BASE";
        case vhost::kGetVringBase:
            return "GET_VRING_BASE";
        case vhost::kSetVringKick:
            return "SET_VRING_KICK";
        case vhost::kSetVringCall:
            return "SET_VRING_CALL";
        case vhost::kSetVringErr:
            return "SET_VRING_ERR";
        case vhost::kGetProtocolFeatures:
            return "GET_PROTOCOL_FEATURES";
        case vhost::kSetProtocolFeatures:
            return "SET_PROTOCOL_FEATURES";
        case vhost::kSetVringEnable:
            return "SET_VRING_ENABLE";
        case vhost::kNetSetMtu:
            return "NET_SET_MTU";
        default:
            return "request";
    }
}

std::string req_text(std::uint32_t r) {
    return std::string(request_name(r)) + "(" + std::to_string(r) + ")";
}

// u32 index, u32 num: struct vhost_vring_state.
std::array<std::byte, 8> vring_state(std::uint32_t index, std::uint32_t num) noexcept {
    std::array<std::byte, 8> b{};
    put_le32(b.data(), index);
    put_le32(b.data() + 4, num);
    return b;
}

std::array<std::byte, 8> u64_payload(std::uint64_t v) noexcept {
    std::array<std::byte, 8> b{};
    put_le64(b.data(), v);
    return b;
}

}  // namespace

Result<void> VhostUserFrontend::fail_with(Errc e, std::string msg) {
    error_ = std::move(msg);
    return fail(e);
}

Result<void> VhostUserFrontend::connect(const std::string& path, Millis within) {
    close();
    sockaddr_un sa{};
    socklen_t sl = 0;
    if (!make_unix_addr(path, sa, sl)) return fail_with(Errc::invalid_argument, "path too long");
    const auto deadline = std::chrono::steady_clock::now() + within;
    int last = 0;
    for (;;) {
        UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s.valid()) return fail_with(Errc::io_error, "socket: " + errno_text(errno));
        if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&sa), sl) == 0) {
            sock_ = std::move(s);
            return {};
        }
        last = errno;
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(Millis{50});
    }
    return fail_with(Errc::io_error, "connect " + path + ": " + errno_text(last));
}

void VhostUserFrontend::close() noexcept {
    sock_.reset();
    offered_ = offered_pf_ = features_ = pf_ = 0;
}

bool VhostUserFrontend::peer_closed(Millis timeout) noexcept {
    if (!sock_.valid()) return true;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        pollfd p{sock_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::max<Millis::rep>(0, left.count()))) <= 0)
            return false;
        std::array<std::byte, 256> junk{};
        const ssize_t n = ::recv(sock_.get(), junk.data(), junk.size(), MSG_DONTWAIT);
        if (n == 0) return true;
        if (n < 0 && errno != EAGAIN && errno != EINTR) return true;  // reset by peer
        // Unread replies (a hostile test may leave some): keep reading until EOF or timeout.
    }
}

Result<void> VhostUserFrontend::send_raw(ByteView bytes, std::span<const int> fds) {
    if (!sock_.valid()) return fail_with(Errc::io_error, "not connected");
    if (fds.size() > kMaxFds) return fail_with(Errc::invalid_argument, "too many fds");
    std::size_t off = 0;
    bool first = true;
    while (off < bytes.size() || (first && !fds.empty())) {
        iovec iov{const_cast<std::byte*>(bytes.data() + off), bytes.size() - off};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> cbuf{};
        if (first && !fds.empty()) {
            // The file descriptors ride on the first byte of the message (SCM_RIGHTS).
            mh.msg_control = cbuf.data();
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        }
        const ssize_t n = ::sendmsg(sock_.get(), &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_with(Errc::io_error, "send: " + errno_text(errno));
        }
        off += static_cast<std::size_t>(n);
        first = false;
        if (bytes.empty()) break;
    }
    return {};
}

Result<void> VhostUserFrontend::send_msg(std::uint32_t request, std::uint32_t flags,
                                         ByteView payload, std::span<const int> fds) {
    // Header (vhost-user.rst "Message Specification"): u32 request, u32 flags, u32 size.
    std::vector<std::byte> m(vhost::kHeaderSize + payload.size());
    put_le32(m.data(), request);
    put_le32(m.data() + 4, flags);
    put_le32(m.data() + 8, static_cast<std::uint32_t>(payload.size()));
    if (!payload.empty())
        std::memcpy(m.data() + vhost::kHeaderSize, payload.data(), payload.size());
    return send_raw(m, fds);
}

Result<VhostMsg> VhostUserFrontend::recv_msg(Millis timeout) {
    if (!sock_.valid()) {
        error_ = "not connected";
        return fail(Errc::io_error);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto read_exact = [&](std::byte* dst, std::size_t n) -> Result<void> {
        std::size_t got = 0;
        while (got < n) {
            const auto left =
                std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
            pollfd p{sock_.get(), POLLIN, 0};
            const int pr = ::poll(&p, 1, static_cast<int>(std::max<Millis::rep>(0, left.count())));
            if (pr == 0) return fail_with(Errc::would_block, "no reply within the timeout");
            if (pr < 0) {
                if (errno == EINTR) continue;
                return fail_with(Errc::io_error, "poll: " + errno_text(errno));
            }
            iovec iov{dst + got, n - got};
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> cbuf{};
            mh.msg_control = cbuf.data();
            mh.msg_controllen = cbuf.size();
            const ssize_t r = ::recvmsg(sock_.get(), &mh, MSG_CMSG_CLOEXEC);
            if (r == 0) return fail_with(Errc::io_error, "the back end closed the connection");
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                return fail_with(Errc::io_error, "recv: " + errno_text(errno));
            }
            // No reply we ask for carries descriptors: close any that came.
            for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
                const std::size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < nfd; ++i) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    if (fd >= 0) ::close(fd);
                }
            }
            got += static_cast<std::size_t>(r);
        }
        return {};
    };
    std::array<std::byte, vhost::kHeaderSize> h{};
    if (auto r = read_exact(h.data(), h.size()); !r) return fail(r.error());
    VhostMsg m;
    m.request = le32_at(h.data());
    m.flags = le32_at(h.data() + 4);
    const std::uint32_t size = le32_at(h.data() + 8);
    if (size > kMaxPayload) {
        error_ = "reply with a " + std::to_string(size) + "-byte payload";
        return fail(Errc::bad_length);
    }
    m.payload.resize(size);
    if (auto r = read_exact(m.payload.data(), size); !r) return fail(r.error());
    return m;
}

Result<std::uint64_t> VhostUserFrontend::request_u64(std::uint32_t request) {
    if (auto r = send_msg(request, vhost::kVersion, {}); !r) return fail(r.error());
    auto m = recv_msg(opt_.reply_timeout);
    if (!m) {
        error_ = req_text(request) + ": " + error_;
        return fail(m.error());
    }
    // A reply repeats the request code, sets REPLY and version 1, and carries a u64 here.
    if (m->request != request || (m->flags & vhost::kFlagReply) == 0 ||
        (m->flags & 0x3u) != vhost::kVersion || m->payload.size() != 8) {
        error_ = req_text(request) + ": malformed reply (request " + std::to_string(m->request) +
                 ", flags " + std::to_string(m->flags) + ", size " +
                 std::to_string(m->payload.size()) + ")";
        return fail(Errc::bad_length);
    }
    return le64_at(m->payload.data());
}

Result<void> VhostUserFrontend::request_ack(std::uint32_t request, ByteView payload,
                                            std::span<const int> fds, bool force_need_reply) {
    // REPLY_ACK (vhost-user.rst "Communication"): with the protocol feature agreed, the front
    // end may set NEED_REPLY on a message that has no reply of its own; the back end then answers
    // with a u64, zero for success.
    const bool need = reply_ack() || force_need_reply;
    const std::uint32_t flags = vhost::kVersion | (need ? vhost::kFlagNeedReply : 0u);
    if (auto r = send_msg(request, flags, payload, fds); !r) return r;
    last_ack_ = 0;
    if (!need) return {};
    auto m = recv_msg(opt_.reply_timeout);
    if (!m) return fail_with(m.error(), req_text(request) + ": no ack: " + error_);
    if (m->request != request || (m->flags & vhost::kFlagReply) == 0 || m->payload.size() != 8) {
        return fail_with(Errc::bad_length, req_text(request) + ": malformed ack (request " +
                                               std::to_string(m->request) + ", flags " +
                                               std::to_string(m->flags) + ", size " +
                                               std::to_string(m->payload.size()) + ")");
    }
    last_ack_ = le64_at(m->payload.data());
    if (last_ack_ != 0) {
        return fail_with(Errc::unsupported,
                         req_text(request) + ": back end answered " + std::to_string(last_ack_));
    }
    return {};
}

Result<std::uint64_t> VhostUserFrontend::get_features() {
    return request_u64(vhost::kGetFeatures);
}

Result<void> VhostUserFrontend::set_features(std::uint64_t f) {
    const auto p = u64_payload(f);
    return request_ack(vhost::kSetFeatures, p);
}

Result<std::uint64_t> VhostUserFrontend::get_protocol_features() {
    return request_u64(vhost::kGetProtocolFeatures);
}

Result<void> VhostUserFrontend::set_protocol_features(std::uint64_t f) {
    const auto p = u64_payload(f);
    return request_ack(vhost::kSetProtocolFeatures, p);
}

Result<void> VhostUserFrontend::set_owner() {
    return request_ack(vhost::kSetOwner, {});
}

Result<void> VhostUserFrontend::set_mem_table(const GuestRam& ram) {
    const virtio::MemRegion r = ram.region();
    const int fd = ram.fd();
    return set_mem_table(std::span<const virtio::MemRegion>(&r, 1), std::span<const int>(&fd, 1));
}

Result<void> VhostUserFrontend::set_mem_table(std::span<const virtio::MemRegion> regions,
                                              std::span<const int> fds,
                                              std::span<const std::uint64_t> mmap_offsets) {
    // Payload: u32 nregions, u32 padding, then per region u64 guest_phys_addr, memory_size,
    // userspace_addr, mmap_offset; one fd per region in the ancillary data.
    std::vector<std::byte> p(8 + 32 * regions.size());
    put_le32(p.data(), static_cast<std::uint32_t>(regions.size()));
    for (std::size_t i = 0; i < regions.size(); ++i) {
        std::byte* r = p.data() + 8 + 32 * i;
        put_le64(r, regions[i].guest_addr);
        put_le64(r + 8, regions[i].size);
        put_le64(r + 16, regions[i].user_addr);
        put_le64(r + 24, i < mmap_offsets.size() ? mmap_offsets[i] : 0);
    }
    return request_ack(vhost::kSetMemTable, p, fds);
}

Result<void> VhostUserFrontend::net_set_mtu(std::uint16_t mtu) {
    const auto p = u64_payload(mtu);
    return request_ack(vhost::kNetSetMtu, p);
}

Result<void> VhostUserFrontend::set_vring_num(std::uint32_t index, std::uint32_t num) {
    const auto p = vring_state(index, num);
    return request_ack(vhost::kSetVringNum, p);
}

Result<void> VhostUserFrontend::set_vring_addr(std::uint32_t index, std::uint64_t desc_uaddr,
                                               std::uint64_t used_uaddr,
                                               std::uint64_t avail_uaddr) {
    // struct vhost_vring_addr: u32 index, u32 flags, u64 descriptor, used, available, log.
    std::array<std::byte, 40> p{};
    put_le32(p.data(), index);
    put_le32(p.data() + 4, 0);  // no VHOST_VRING_F_LOG: we do not log dirty pages
    put_le64(p.data() + 8, desc_uaddr);
    put_le64(p.data() + 16, used_uaddr);
    put_le64(p.data() + 24, avail_uaddr);
    put_le64(p.data() + 32, 0);
    return request_ack(vhost::kSetVringAddr, p);
}

Result<void> VhostUserFrontend::set_vring_base(std::uint32_t index, std::uint32_t base) {
    const auto p = vring_state(index, base);
    return request_ack(vhost::kSetVringBase, p);
}

Result<std::uint16_t> VhostUserFrontend::get_vring_base(std::uint32_t index) {
    // GET_VRING_BASE has a reply of its own (the vring state), so no NEED_REPLY.
    const auto p = vring_state(index, 0);
    if (auto r = send_msg(vhost::kGetVringBase, vhost::kVersion, p); !r) return fail(r.error());
    auto m = recv_msg(opt_.reply_timeout);
    if (!m) {
        error_ = "GET_VRING_BASE: " + error_;
        return fail(m.error());
    }
    if (m->request != vhost::kGetVringBase || (m->flags & vhost::kFlagReply) == 0 ||
        m->payload.size() != 8 || le32_at(m->payload.data()) != index) {
        error_ = "GET_VRING_BASE: malformed reply (request " + std::to_string(m->request) +
                 ", size " + std::to_string(m->payload.size()) + ")";
        return fail(Errc::bad_length);
    }
    const std::uint32_t num = le32_at(m->payload.data() + 4);
    if (num > 0xffff) {
        error_ = "GET_VRING_BASE: index " + std::to_string(num) + " does not fit 16 bits";
        return fail(Errc::bad_length);
    }
    return static_cast<std::uint16_t>(num);
}

Result<void> VhostUserFrontend::set_vring_kick(std::uint32_t index, int fd) {
    // u64: the vring index in bits 0-7, bit 8 set when no fd is passed (the ring is polled).
    const auto p = u64_payload(std::uint64_t{index} | (fd < 0 ? vhost::kVringNoFd : 0));
    if (fd < 0) return request_ack(vhost::kSetVringKick, p);
    return request_ack(vhost::kSetVringKick, p, std::span<const int>(&fd, 1));
}

Result<void> VhostUserFrontend::set_vring_call(std::uint32_t index, int fd) {
    const auto p = u64_payload(std::uint64_t{index} | (fd < 0 ? vhost::kVringNoFd : 0));
    if (fd < 0) return request_ack(vhost::kSetVringCall, p);
    return request_ack(vhost::kSetVringCall, p, std::span<const int>(&fd, 1));
}

Result<void> VhostUserFrontend::set_vring_enable(std::uint32_t index, bool on) {
    const auto p = vring_state(index, on ? 1 : 0);
    return request_ack(vhost::kSetVringEnable, p);
}

Result<std::uint64_t> VhostUserFrontend::negotiate(const Options& opt) {
    opt_ = opt;
    pf_ = 0;
    auto f = get_features();
    if (!f) return fail(f.error());
    offered_ = *f;
    features_ = offered_ & opt.features;
    if ((offered_ & vhost::kFProtocolFeatures) != 0) {
        // Protocol features are read and set only when the back end offers bit 30
        // (vhost-user.rst "Protocol features").
        auto pf = get_protocol_features();
        if (!pf) return fail(pf.error());
        offered_pf_ = *pf;
        const std::uint64_t want = offered_pf_ & opt.protocol_features;
        // Sent before pf_ is set: REPLY_ACK applies to the messages after this one.
        if (auto r = set_protocol_features(want); !r) return fail(r.error());
        pf_ = want;
        features_ |= vhost::kFProtocolFeatures;
    }
    if (auto r = set_owner(); !r) return fail(r.error());
    if (auto r = set_features(features_); !r) return fail(r.error());
    return features_;
}

Result<void> VhostUserFrontend::start_queues(const GuestRam& ram, NetDriver& drv) {
    if (auto r = set_mem_table(ram); !r) return r;
    if ((pf_ & vhost::kPfMtu) != 0) {
        if (auto r = net_set_mtu(opt_.mtu); !r) return r;
    }
    for (std::uint32_t q = 0; q < 2; ++q) {
        DriverQueue& dq = drv.queue(q);
        if (auto r = set_vring_num(q, dq.size()); !r) return r;
        // QEMU passes ring addresses in its own virtual address space.
        if (auto r = set_vring_addr(q, ram.user_addr(dq.desc_gpa()), ram.user_addr(dq.used_gpa()),
                                    ram.user_addr(dq.avail_gpa()));
            !r)
            return r;
        if (auto r = set_vring_base(q, 0); !r) return r;
        if (auto r = set_vring_call(q, dq.call_fd()); !r) return r;
        // The kick fd comes last: a back end starts the ring when it arrives.
        if (auto r = set_vring_kick(q, dq.kick_fd()); !r) return r;
    }
    // Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled; with it they start disabled
    // and SET_VRING_ENABLE turns them on.
    if ((features_ & vhost::kFProtocolFeatures) != 0) {
        for (std::uint32_t q = 0; q < 2; ++q) {
            if (auto r = set_vring_enable(q, true); !r) return r;
        }
    }
    return {};
}

Result<std::array<std::uint16_t, 2>> VhostUserFrontend::stop_queues() {
    std::array<std::uint16_t, 2> out{};
    for (std::uint32_t q = 0; q < 2; ++q) {
        auto b = get_vring_base(q);
        if (!b) return fail(b.error());
        out[q] = *b;
    }
    return out;
}

}  // namespace slipway::testing
