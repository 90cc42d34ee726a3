// vhost-user:PATH — a vhost-user-net back end: slipway listens on a unix stream socket, a VMM
// (QEMU, cloud-hypervisor, a test front end) connects as the front end, shares the guest's memory
// and hands over one RX/TX virtqueue pair that VirtioNetDevice serves.
//
// One front end at a time. A second connection while one is attached is accepted and closed at
// once with a warning (like qemu:PATH): queueing it would leave a VMM waiting on a socket nobody
// answers. When the front end goes away (end of stream, a read or reply error, a protocol
// violation) both rings stop, guest memory is unmapped, the frames queued for the guest are
// dropped (drop_io), the switch forgets the port's MACs, and the listener takes the next
// connection: a restarted VMM reconnects to the same slipwayd.
//
// Messages are read whole: the 12-byte header, then its payload, each recvmsg() asking for no more
// than the rest of the current message, so a read never runs into the next message and the fds
// that arrive (SCM_RIGHTS, attached by the kernel to the first byte of the sendmsg that carried
// them) belong to the message being read. A message split across reads is kept in a small buffer
// until it is complete. Replies are a few bytes and the front end waits for them, so a reply that
// cannot be sent at once (would block, short, error) means a broken front end: the connection is
// closed.
//
// Counted: drop_wire for every connection closed over a malformed message or a protocol violation
// (bad version bits, a size or fd count the request does not take, more than 8 fds, features not
// offered; see vhost_user_session.cpp), each with a rate-limited warning; drop_io for frames owed
// to a guest that left. The data path's counters are VirtioNetDevice's.
#include "slipway/guest/vhost_user.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "attachment_impl.hpp"
#include "slipway/core/log.hpp"
#include "slipway/guest/virtio_net.hpp"
#include "stream_listener.hpp"

namespace slipway::guest::detail {
namespace {

namespace vu = vhost_user;

constexpr int kReadsPerEvent = 64;  // control messages are small; then yield to the loop

class VhostUser final : public Attachment {
  public:
    VhostUser(const AttachmentContext& ctx, std::string spec, std::string path)
        : Attachment(spec, PortKind::guest, PortCaps{false, false, ctx.mtu + 14}),
          ctx_(ctx),
          spec_(std::move(spec)),
          listener_(ctx.io, spec_, std::move(path), "vhost-user front end"),
          device_(ctx.io, ctx.pool, *this, spec_, ctx.mtu),
          session_(device_, spec_, ctx.mtu) {}
    ~VhostUser() override { stop(); }

    Result<void> start(std::string& error) override;
    void stop() noexcept override;
    [[nodiscard]] const std::string& spec() const noexcept override { return spec_; }
    [[nodiscard]] std::string state() const override {
        if (!listener_.listening()) return "stopped";
        if (!client_fd_.valid()) return "listening";
        return session_.queues_up() ? "up" : "connected";
    }
    [[nodiscard]] const VirtioNetCounters* virtio_counters() const noexcept override {
        return &device_.counters();
    }
    void on_frames_from_switch() noexcept override {
        if (client_fd_.valid())
            device_.on_egress();  // the device keeps frames in to_port() while RX is stopped
        else
            drop_egress();
    }

  private:
    void on_client(UniqueFd fd, std::unique_ptr<FdWatcher> w) noexcept;
    void arm_read() noexcept;
    void on_readable() noexcept;
    // Adds the fds of one recvmsg() to the message being read; false (fds closed) when there
    // were more than kMaxFds or the kernel had to truncate them.
    bool take_fds(msghdr& mh) noexcept;
    // Handles the complete message in msg_; false if the connection was closed.
    bool process_message() noexcept;
    // `why` by value: close_client() resets the session, whose error() it may refer to.
    void malformed(std::string why) noexcept;
    void clear_message() noexcept;
    // Closes the front end's connection. `stopping`: the attachment itself is going away, so the
    // switch (which may be torn down already) is not called back.
    void close_client(const std::string& why, bool error, bool stopping = false) noexcept;
    void drop_egress() noexcept;

    AttachmentContext ctx_;
    std::string spec_;
    StreamListener listener_;
    VirtioNetDevice device_;
    VhostUserSession session_;

    UniqueFd client_fd_;
    std::unique_ptr<FdWatcher> client_w_;
    AliveToken client_tok_;

    // The message being read: header (parsed once complete into hdr_), payload, fds.
    std::array<std::byte, vu::kHeaderSize + vu::kMaxPayload> msg_{};
    std::size_t have_ = 0;
    vu::MsgHeader hdr_{};
    std::array<UniqueFd, vu::kMaxFds> fds_;
    std::size_t nfds_ = 0;
};

Result<void> VhostUser::start(std::string& error) {
    return listener_.start(
        error, [this] { return client_fd_.valid(); },
        [this](UniqueFd fd, std::unique_ptr<FdWatcher> w) {
            on_client(std::move(fd), std::move(w));
        });
}

void VhostUser::stop() noexcept {
    if (client_fd_.valid()) close_client("attachment stopped", false, true);
    listener_.stop();
    drop_egress();
    PacketRef f;
    while (to_switch().try_pop(f))
        f.reset();
}

void VhostUser::on_client(UniqueFd fd, std::unique_ptr<FdWatcher> w) noexcept {
    client_w_ = std::move(w);
    client_fd_ = std::move(fd);
    client_tok_ = new_token();
    clear_message();
    SLW_INFO("{}: front end connected", spec_);
    // Messages may already be waiting (edge-triggered: no edge would report them).
    on_readable();
}

void VhostUser::arm_read() noexcept {
    client_w_->wait_readable([this, tok = client_tok_](bool ok) {
        if (!tok->alive || !ok) return;
        on_readable();
    });
}

void VhostUser::clear_message() noexcept {
    have_ = 0;
    hdr_ = vu::MsgHeader{};
    for (std::size_t i = 0; i < nfds_; ++i)
        fds_[i].reset();
    nfds_ = 0;
}

bool VhostUser::take_fds(msghdr& mh) noexcept {
    bool ok = (mh.msg_flags & MSG_CTRUNC) == 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char* data = CMSG_DATA(c);
        for (std::size_t i = 0; i < n; ++i) {
            int fd = -1;
            std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
            if (nfds_ < fds_.size()) {
                fds_[nfds_++].reset(fd);
            } else {
                ::close(fd);
                ok = false;
            }
        }
    }
    return ok;
}

void VhostUser::on_readable() noexcept {
    const AliveToken tok = client_tok_;
    // Room for one more fd than a message may carry, so "too many" is seen rather than silently
    // truncated; the kernel closes what does not fit and sets MSG_CTRUNC.
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * (vu::kMaxFds + 1))> cbuf;
    for (int i = 0; i < kReadsPerEvent; ++i) {
        const std::size_t end =
            have_ < vu::kHeaderSize ? vu::kHeaderSize : vu::kHeaderSize + hdr_.size;
        iovec iov{msg_.data() + have_, end - have_};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.data();
        mh.msg_controllen = cbuf.size();
        const ssize_t n = ::recvmsg(client_fd_.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == 0) {
            close_client(have_ == 0 ? "front end disconnected"
                                    : "front end disconnected in the middle of a message",
                         have_ != 0);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm_read();
                return;
            }
            close_client("read: " + errno_text(errno), true);
            return;
        }
        if (!take_fds(mh)) {
            malformed("more than " + std::to_string(vu::kMaxFds) + " fds with one message");
            return;
        }
        have_ += static_cast<std::size_t>(n);
        if (have_ == vu::kHeaderSize) {
            auto h = vu::parse_header(ByteView(msg_.data(), vu::kHeaderSize));
            if (!h) {
                // The low byte of the flags holds the version bits.
                const auto version = static_cast<unsigned>(msg_[4]) & vu::kVersionMask;
                malformed(h.error() == Errc::bad_version
                              ? "message with version " + std::to_string(version) + " (not 1)"
                              : std::string("message size above ") +
                                    std::to_string(vu::kMaxPayload) + " bytes");
                return;
            }
            hdr_ = *h;
        }
        if (have_ >= vu::kHeaderSize && have_ == vu::kHeaderSize + hdr_.size) {
            if (!process_message() || !tok->alive) return;
        }
    }
    // More may be waiting: continue after the rest of the loop had its turn.
    boost::asio::post(ctx_.io, [this, tok] {
        if (tok->alive) on_readable();
    });
}

bool VhostUser::process_message() noexcept {
    const AliveToken tok = client_tok_;
    SLW_DEBUG("{}: {} ({} bytes, {} fds, flags {})", spec_, vu::request_name(hdr_.request),
              hdr_.size, nfds_, hdr_.flags);
    auto reply = session_.handle(hdr_, ByteView(msg_.data() + vu::kHeaderSize, hdr_.size),
                                 std::span<UniqueFd>(fds_.data(), nfds_));
    clear_message();  // fds the session did not keep are closed here
    if (!tok->alive) return false;
    if (!reply) {
        malformed(session_.error());
        return false;
    }
    if (reply->empty()) return true;
    const ssize_t w =
        ::send(client_fd_.get(), reply->data(), reply->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != static_cast<ssize_t>(reply->size())) {
        close_client(w < 0 ? "cannot send a reply: " + errno_text(errno)
                           : std::string("cannot send a reply: short write"),
                     true);
        return false;
    }
    return true;
}

void VhostUser::malformed(std::string why) noexcept {
    counters().drop_wire.inc();
    close_client(why, true);
}

void VhostUser::close_client(const std::string& why, bool error, bool stopping) noexcept {
    if (!client_fd_.valid()) return;
    kill_token(client_tok_);
    client_w_.reset();
    client_fd_.reset();
    clear_message();
    session_.reset();  // both rings stopped, guest memory unmapped, fds closed
    drop_egress();
    if (stopping) {
        SLW_INFO("{}: front end detached ({})", spec_, why);
        return;
    }
    if (error)
        SLW_WARN_RATELIMITED("{}: {}; closing the connection and waiting for the next front end",
                             spec_, why);
    else
        SLW_INFO("{}: {}; waiting for the next front end", spec_, why);
    // A new guest may come on this socket with another MAC.
    if (id() != 0xffff) ctx_.sw.reset_port(*this);
}

void VhostUser::drop_egress() noexcept {
    std::array<PacketRef, kBurst> sink;
    for (;;) {
        const std::size_t got = to_port().pop_burst(sink);
        if (got == 0) break;
        counters().drop_io.add(got);
        for (std::size_t i = 0; i < got; ++i)
            sink[i].reset();
    }
}

}  // namespace

std::unique_ptr<Attachment> make_vhost_user(const AttachmentContext& ctx, std::string spec,
                                            std::string path) {
    return std::make_unique<VhostUser>(ctx, std::move(spec), std::move(path));
}

}  // namespace slipway::guest::detail
