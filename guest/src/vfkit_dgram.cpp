// vfkit:PATH — a unix datagram socket server for vfkit/krunkit/libkrun: one Ethernet frame per
// datagram, no header; the peer is whoever sent last (learned from the datagram's source).
#include <sys/stat.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "attachment_impl.hpp"
#include "slipway/core/log.hpp"

namespace slipway::guest::detail {
namespace {

constexpr int kRecvCallsPerEvent = 4;  // then yield to the loop with a posted continuation
constexpr int kBurstsPerFlush = 8;
// vfkit's handshake: a datagram holding exactly these bytes announces the peer (not a frame).
constexpr std::array<char, 4> kMagic = {'V', 'F', 'K', 'T'};
// vfkit and gvproxy size their datagram buffers to 1 MiB / 4 MiB; a 64 KiB frame needs more than
// the default send buffer on both sides.
constexpr int kSockBuf = 4 * 1024 * 1024;
// Backoff when a writable wake-up made no progress (see flush_tx).
constexpr std::chrono::milliseconds kFullRetry{2};

std::string addr_text(const sockaddr_un& a, socklen_t len) {
    if (len <= static_cast<socklen_t>(offsetof(sockaddr_un, sun_path))) return "(unnamed)";
    const std::size_t plen = std::min(
        static_cast<std::size_t>(len) - offsetof(sockaddr_un, sun_path), sizeof a.sun_path);
    if (a.sun_path[0] != '\0') return std::string(a.sun_path, ::strnlen(a.sun_path, plen));
    // Abstract address: a leading NUL, then plen - 1 bytes of name (shown with '@', as ss does).
    std::string out(plen, '@');
    std::memcpy(out.data() + 1, a.sun_path + 1, plen - 1);
    return out;
}

class VfkitDgram final : public Attachment {
  public:
    VfkitDgram(const AttachmentContext& ctx, std::string spec, std::string path)
        : Attachment(spec, PortKind::guest, PortCaps{false, false, ctx.mtu + 14}),
          ctx_(ctx),
          spec_(std::move(spec)),
          path_(std::move(path)),
          timer_(ctx.io) {}
    ~VfkitDgram() override { stop(); }

    Result<void> start(std::string& error) override;
    void stop() noexcept override;
    [[nodiscard]] const std::string& spec() const noexcept override { return spec_; }
    [[nodiscard]] std::string state() const override {
        if (!fd_.valid()) return "stopped";
        return peer_len_ != 0 ? "connected" : "listening";
    }
    void on_frames_from_switch() noexcept override { flush_tx(); }

  private:
    void arm_read() noexcept;
    void on_readable() noexcept;
    // Handles datagram i of the last recvmmsg; returns true if it produced a frame in `out`.
    bool take_datagram(std::size_t i, PacketRef& out) noexcept;
    // True when datagram i of the current batch comes from a named sender other than the peer.
    [[nodiscard]] bool from_new_peer(std::size_t i) const noexcept;
    // Hands rx_burst_[0, n) to the switch; false if the attachment died meanwhile.
    bool push_gathered(std::size_t n, const AliveToken& tok) noexcept;
    void learn_peer(const sockaddr_un& a, socklen_t len) noexcept;
    void flush_tx() noexcept;
    void wait_for_room() noexcept;
    void drop_egress() noexcept;

    AttachmentContext ctx_;
    std::string spec_;
    std::string path_;
    bool created_socket_ = false;

    UniqueFd fd_;
    std::unique_ptr<FdWatcher> w_;
    AliveToken tok_;
    boost::asio::steady_timer timer_;
    bool write_armed_ = false;
    bool timer_armed_ = false;
    bool woke_writable_ = false;  // the last flush ran because the socket polled writable
    bool rx_posted_ = false;
    bool tx_posted_ = false;

    sockaddr_un peer_{};
    socklen_t peer_len_ = 0;  // 0: no peer yet

    // Receive slots: each datagram lands in a small pool buffer and, past its end, in the slot's
    // overflow area (untouched virtual memory until a jumbo datagram comes). Slots keep their small
    // buffer until a frame takes it.
    std::array<PacketRef, kBurst> rx_small_;
    std::unique_ptr<std::byte[]> overflow_;
    std::array<sockaddr_un, kBurst> rx_names_{};
    std::array<std::array<iovec, 2>, kBurst> rx_iov_{};
    std::array<mmsghdr, kBurst> rx_msgs_{};
    std::array<PacketRef, kBurst> rx_burst_;

    std::array<PacketRef, kBurst> tx_frames_;
    std::array<iovec, kBurst> tx_iov_{};
    std::array<mmsghdr, kBurst> tx_msgs_{};
    std::size_t tx_n_ = 0;
    std::size_t tx_idx_ = 0;
};

Result<void> VfkitDgram::start(std::string& error) {
    if (fd_.valid()) return {};
    auto bound = bind_unix_socket(path_, SOCK_DGRAM, path_, error, kSockBuf);
    if (!bound) return fail(bound.error());
    UniqueFd fd = std::move(*bound);
    created_socket_ = true;
    if (!overflow_) overflow_ = std::make_unique_for_overwrite<std::byte[]>(kBurst * kMaxWireFrame);
    fd_ = std::move(fd);
    peer_len_ = 0;
    w_ = std::make_unique<FdWatcher>(ctx_.io, fd_.get());
    tok_ = new_token();
    SLW_INFO("{}: waiting for a vfkit peer", spec_);
    arm_read();
    return {};
}

void VfkitDgram::stop() noexcept {
    kill_token(tok_);
    timer_.cancel();
    w_.reset();
    fd_.reset();
    if (created_socket_) {
        ::unlink(path_.c_str());
        created_socket_ = false;
    }
    write_armed_ = timer_armed_ = woke_writable_ = rx_posted_ = tx_posted_ = false;
    peer_len_ = 0;
    for (auto& s : rx_small_)
        s.reset();
    drop_egress();
    PacketRef f;
    while (to_switch().try_pop(f))
        f.reset();
}

void VfkitDgram::arm_read() noexcept {
    w_->wait_readable([this, tok = tok_](bool ok) {
        if (!tok->alive || !ok) return;
        on_readable();
    });
}

void VfkitDgram::learn_peer(const sockaddr_un& a, socklen_t len) noexcept {
    if (len == peer_len_ && std::memcmp(&a, &peer_, static_cast<std::size_t>(len)) == 0) return;
    if (peer_len_ == 0)
        SLW_INFO("{}: peer {} attached", spec_, addr_text(a, len));
    else
        SLW_INFO("{}: peer {} replaces {}", spec_, addr_text(a, len), addr_text(peer_, peer_len_));
    std::memcpy(&peer_, &a, static_cast<std::size_t>(len));
    peer_len_ = len;
    // A new peer may be another guest with another MAC.
    if (id() != 0xffff) ctx_.sw.reset_port(*this);
}

bool VfkitDgram::from_new_peer(std::size_t i) const noexcept {
    const socklen_t len = rx_msgs_[i].msg_hdr.msg_namelen;
    if (len <= static_cast<socklen_t>(offsetof(sockaddr_un, sun_path))) return false;
    return len != peer_len_ ||
           std::memcmp(&rx_names_[i], &peer_, static_cast<std::size_t>(len)) != 0;
}

bool VfkitDgram::push_gathered(std::size_t n, const AliveToken& tok) noexcept {
    push_burst_to_switch(*this, std::span<PacketRef>(rx_burst_.data(), n));
    return tok->alive;
}

bool VfkitDgram::take_datagram(std::size_t i, PacketRef& out) noexcept {
    const mmsghdr& m = rx_msgs_[i];
    const std::size_t len = m.msg_len;
    const socklen_t name_len = m.msg_hdr.msg_namelen;
    const bool named = name_len > static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
    std::byte* small = rx_iov_[i][0].iov_len != 0 ? rx_small_[i].room().data() : nullptr;
    const std::size_t small_len = rx_iov_[i][0].iov_len;
    const std::byte* over = overflow_.get() + i * kMaxWireFrame;

    if (len == kMagic.size()) {
        const std::byte* p = len <= small_len ? small : over;
        if (std::memcmp(p, kMagic.data(), kMagic.size()) == 0) {
            if (named) learn_peer(rx_names_[i], name_len);
            return false;
        }
    }
    if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0 || len < kMinFrame) {
        counters().drop_wire.inc();
        SLW_WARN_RATELIMITED("{}: dropped a {}-byte datagram (a frame is {} to {} bytes)", spec_,
                             len, kMinFrame, kMaxWireFrame);
        return false;
    }
    if (named) {
        learn_peer(rx_names_[i], name_len);
    } else {
        // An unbound sender cannot be answered; take its frames anyway.
        SLW_WARN_RATELIMITED("{}: datagram from an unnamed socket; replies cannot reach it", spec_);
    }
    if (small != nullptr && len <= small_len) {
        (void)rx_small_[i].set_len(len);
        out = std::move(rx_small_[i]);  // the slot gets a new buffer before the next recvmmsg
    } else {
        auto ref = ctx_.pool.try_alloc(len);
        if (!ref) {
            counters().drop_no_buffer.inc();
            return false;
        }
        std::byte* dst = ref->data().data();
        const std::size_t head = len < small_len ? len : small_len;
        if (head != 0) std::memcpy(dst, small, head);
        std::memcpy(dst + head, over, len - head);
        out = std::move(*ref);
    }
    out.meta().in_port = id();
    return true;
}

void VfkitDgram::on_readable() noexcept {
    const AliveToken tok = tok_;
    rx_posted_ = false;
    for (int call = 0; call < kRecvCallsPerEvent; ++call) {
        for (std::size_t i = 0; i < kBurst; ++i) {
            if (!rx_small_[i]) {
                if (auto s = ctx_.pool.try_alloc(SizeClass::small)) rx_small_[i] = std::move(*s);
            }
            // Without a small buffer (pool exhausted) the datagram lands in the overflow area.
            auto& iov = rx_iov_[i];
            if (rx_small_[i]) {
                const auto room = rx_small_[i].room();
                iov[0] = {room.data(), room.size()};
            } else {
                iov[0] = {nullptr, 0};
            }
            iov[1] = {overflow_.get() + i * kMaxWireFrame, kMaxWireFrame - iov[0].iov_len};
            msghdr& h = rx_msgs_[i].msg_hdr;
            h = msghdr{};
            h.msg_name = &rx_names_[i];
            h.msg_namelen = sizeof(sockaddr_un);
            h.msg_iov = iov.data();
            h.msg_iovlen = 2;
            rx_msgs_[i].msg_len = 0;
        }
        const int r = ::recvmmsg(fd_.get(), rx_msgs_.data(), kBurst, MSG_DONTWAIT, nullptr);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                SLW_WARN_RATELIMITED("{}: recvmmsg: {}", spec_, errno_text(errno));
            arm_read();
            return;
        }
        std::size_t n = 0;
        for (std::size_t i = 0; i < static_cast<std::size_t>(r); ++i) {
            // A new peer resets the port's MAC lock; the old peer's frames gathered so far must
            // reach the switch first, or they would lock the port to the old guest's MAC again.
            if (n != 0 && from_new_peer(i)) {
                if (!push_gathered(n, tok)) return;
                n = 0;
            }
            if (take_datagram(i, rx_burst_[n])) ++n;
        }
        if (!push_gathered(n, tok)) return;
        if (static_cast<std::size_t>(r) < kBurst) {
            // A short batch drained the socket: new datagrams raise a new edge.
            arm_read();
            return;
        }
    }
    continue_later(ctx_.io, rx_posted_, tok, [this] { on_readable(); });
}

void VfkitDgram::drop_egress() noexcept {
    drop_pending_egress(*this, tx_frames_, tx_idx_, tx_n_);
}

void VfkitDgram::wait_for_room() noexcept {
    if (woke_writable_) {
        // The socket polled writable yet the send still failed: the peer's receive queue is full,
        // which poll() does not report for an unconnected unix datagram socket. Retry shortly.
        timer_armed_ = true;
        timer_.expires_after(kFullRetry);
        timer_.async_wait([this, tok = tok_](const boost::system::error_code& ec) {
            if (!tok->alive) return;
            timer_armed_ = false;
            woke_writable_ = false;
            if (!ec) flush_tx();
        });
        return;
    }
    write_armed_ = true;
    w_->wait_writable([this, tok = tok_](bool ok) {
        if (!tok->alive) return;
        write_armed_ = false;
        woke_writable_ = true;
        if (ok) flush_tx();
    });
}

void VfkitDgram::flush_tx() noexcept {
    if (!fd_.valid() || peer_len_ == 0) {
        drop_egress();  // nobody to send to yet
        return;
    }
    if (write_armed_ || timer_armed_) return;  // frames wait here and in the ring
    for (int b = 0; b < kBurstsPerFlush; ++b) {
        if (tx_idx_ == tx_n_) {
            tx_n_ = to_port().pop_burst(tx_frames_);
            tx_idx_ = 0;
            std::size_t k = 0;
            for (std::size_t i = 0; i < tx_n_; ++i) {
                if (tx_frames_[i].len() > kMaxWireFrame) {
                    counters().drop_too_big.inc();
                    tx_frames_[i].reset();
                    continue;
                }
                if (k != i) tx_frames_[k] = std::move(tx_frames_[i]);
                ++k;
            }
            tx_n_ = k;
            if (tx_n_ == 0) {
                if (to_port().empty_approx()) return;
                continue;
            }
        }
        const std::size_t cnt = tx_n_ - tx_idx_;
        for (std::size_t j = 0; j < cnt; ++j) {
            const auto d = tx_frames_[tx_idx_ + j].data();
            tx_iov_[j] = {d.data(), d.size()};
            msghdr& h = tx_msgs_[j].msg_hdr;
            h = msghdr{};
            h.msg_name = &peer_;
            h.msg_namelen = peer_len_;
            h.msg_iov = &tx_iov_[j];
            h.msg_iovlen = 1;
        }
        const int r =
            ::sendmmsg(fd_.get(), tx_msgs_.data(), static_cast<unsigned>(cnt), MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                wait_for_room();
                return;
            }
            // ECONNREFUSED/ENOENT: the peer's socket is gone. Drop this burst; a restarted peer
            // announces itself again and becomes the peer.
            SLW_WARN_RATELIMITED("{}: sendmmsg to {}: {}", spec_, addr_text(peer_, peer_len_),
                                 errno_text(errno));
            counters().drop_io.add(cnt);
            for (std::size_t j = tx_idx_; j < tx_n_; ++j)
                tx_frames_[j].reset();
            tx_idx_ = tx_n_ = 0;
            continue;
        }
        woke_writable_ = false;
        for (std::size_t j = 0; j < static_cast<std::size_t>(r); ++j)
            tx_frames_[tx_idx_ + j].reset();
        tx_idx_ += static_cast<std::size_t>(r);
        // A short count means the next message hit an error or a full queue; the next round
        // finds out which.
    }
    if (tx_idx_ < tx_n_ || !to_port().empty_approx())
        continue_later(ctx_.io, tx_posted_, tok_, [this] { flush_tx(); });
}

}  // namespace

std::unique_ptr<Attachment> make_vfkit_dgram(const AttachmentContext& ctx, std::string spec,
                                             std::string path) {
    return std::make_unique<VfkitDgram>(ctx, std::move(spec), std::move(path));
}

}  // namespace slipway::guest::detail
