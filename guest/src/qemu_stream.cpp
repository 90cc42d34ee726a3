// qemu:PATH — a unix stream socket server speaking QEMU's `-netdev stream` framing (4-byte
// big-endian length, then the Ethernet frame), one guest connection at a time.
//
// A second client that connects while one is attached is accepted and closed at once with a
// warning: queueing it would leave a VMM waiting on a socket that carries no traffic, while a
// closed connection is something QEMU reports (and retries with `reconnect=`). When the attached
// client leaves, the frames queued for it are dropped (drop_io), the switch forgets its MACs
// (reset_port: a new guest may come with another MAC) and the next connection is taken.
//
// A length prefix below 14 or above 65,550 cannot be a frame: the stream has lost its framing, so
// that connection is closed (drop_wire, error log); the listener and the other ports carry on.
// Lengths in between are frames even above max_frame (a guest with a larger MTU); the switch
// decides whether a destination can take them.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "attachment_impl.hpp"
#include "slipway/core/bytes.hpp"
#include "slipway/core/log.hpp"
#include "stream_listener.hpp"

namespace slipway::guest::detail {
namespace {

constexpr std::size_t kRxBufSize = 256 * 1024;  // many frames per read(), always > one max frame
constexpr int kReadsPerEvent = 4;               // then yield to the loop with a posted continuation
constexpr int kBurstsPerFlush = 8;              // egress bursts per call before yielding likewise
constexpr std::size_t kPrefix = 4;

class QemuStream final : public Attachment {
  public:
    QemuStream(const AttachmentContext& ctx, std::string spec, std::string path)
        : Attachment(spec, PortKind::guest, PortCaps{false, false, ctx.mtu + 14}),
          ctx_(ctx),
          spec_(std::move(spec)),
          listener_(ctx.io, spec_, std::move(path), "QEMU stream client") {}
    ~QemuStream() override { stop(); }

    Result<void> start(std::string& error) override;
    void stop() noexcept override;
    [[nodiscard]] const std::string& spec() const noexcept override { return spec_; }
    [[nodiscard]] std::string state() const override {
        if (!listener_.listening()) return "stopped";
        return client_fd_.valid() ? "connected" : "listening";
    }
    void on_frames_from_switch() noexcept override { flush_tx(); }

  private:
    void on_client(UniqueFd fd, std::unique_ptr<FdWatcher> w) noexcept;
    void arm_read() noexcept;
    void on_readable() noexcept;
    // Parses complete frames out of rx_buf_; false if the connection was closed meanwhile.
    bool process_rx() noexcept;
    bool push_rx_burst(std::size_t n, const AliveToken& tok) noexcept;
    // Closes the guest connection. `stopping`: the attachment itself is going away, so the switch
    // (which may be torn down already) is not called back.
    void close_client(const char* why, bool error, bool stopping = false) noexcept;
    void flush_tx() noexcept;
    void arm_write() noexcept;
    void drop_egress() noexcept;
    void break_client(int err) noexcept;

    AttachmentContext ctx_;
    std::string spec_;
    StreamListener listener_;

    UniqueFd client_fd_;
    std::unique_ptr<FdWatcher> client_w_;
    AliveToken client_tok_;
    bool write_armed_ = false;
    bool tx_broken_ = false;  // a write failed: drop egress until the read side sees the close
    bool tx_posted_ = false;  // a flush continuation is queued on the loop

    std::unique_ptr<std::byte[]> rx_buf_;
    std::size_t rx_len_ = 0;  // unparsed bytes at the front of rx_buf_
    std::array<PacketRef, kBurst> rx_burst_;

    // The egress burst being written: frames popped from to_port(), their length prefixes, and
    // how far the write got (frame index, byte offset within prefix + frame).
    std::array<PacketRef, kBurst> tx_frames_;
    std::array<std::array<std::byte, kPrefix>, kBurst> tx_prefix_{};
    std::size_t tx_n_ = 0;
    std::size_t tx_idx_ = 0;
    std::size_t tx_off_ = 0;
};

Result<void> QemuStream::start(std::string& error) {
    if (listener_.listening()) return {};
    if (!rx_buf_) rx_buf_ = std::make_unique_for_overwrite<std::byte[]>(kRxBufSize);
    return listener_.start(
        error, [this] { return client_fd_.valid(); },
        [this](UniqueFd fd, std::unique_ptr<FdWatcher> w) {
            on_client(std::move(fd), std::move(w));
        });
}

void QemuStream::stop() noexcept {
    if (client_fd_.valid()) close_client("attachment stopped", false, true);
    listener_.stop();
    drop_egress();
    PacketRef f;
    while (to_switch().try_pop(f))
        f.reset();
}

void QemuStream::on_client(UniqueFd fd, std::unique_ptr<FdWatcher> w) noexcept {
    client_w_ = std::move(w);
    client_fd_ = std::move(fd);
    client_tok_ = new_token();
    rx_len_ = 0;
    tx_broken_ = false;
    write_armed_ = false;
    SLW_INFO("{}: guest connected", spec_);
    // Data may already be waiting (edge-triggered: no edge would report it), so read now.
    on_readable();
}

void QemuStream::arm_read() noexcept {
    client_w_->wait_readable([this, tok = client_tok_](bool ok) {
        if (!tok->alive || !ok) return;
        on_readable();
    });
}

void QemuStream::on_readable() noexcept {
    const AliveToken tok = client_tok_;
    for (int i = 0; i < kReadsPerEvent; ++i) {
        const ssize_t n = ::read(client_fd_.get(), rx_buf_.get() + rx_len_, kRxBufSize - rx_len_);
        if (n == 0) {
            close_client("guest disconnected", false);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm_read();
                return;
            }
            SLW_WARN_RATELIMITED("{}: read: {}", spec_, errno_text(errno));
            close_client("read error", true);
            return;
        }
        const std::size_t asked = kRxBufSize - rx_len_;
        rx_len_ += static_cast<std::size_t>(n);
        if (!process_rx() || !tok->alive) return;
        if (static_cast<std::size_t>(n) < asked) {
            // A short read drained the socket: data arriving from now on raises a new edge.
            arm_read();
            return;
        }
    }
    boost::asio::post(ctx_.io, [this, tok] {
        if (tok->alive) on_readable();
    });
}

bool QemuStream::push_rx_burst(std::size_t n, const AliveToken& tok) noexcept {
    push_burst_to_switch(*this, std::span<PacketRef>(rx_burst_.data(), n));
    // The switch may have delivered frames back to this port and a write may have failed; the
    // connection is only closed from the read path, but check anyway before touching rx state.
    return tok->alive;
}

bool QemuStream::process_rx() noexcept {
    const AliveToken tok = client_tok_;
    const std::byte* buf = rx_buf_.get();
    std::size_t off = 0;
    std::size_t n = 0;
    while (rx_len_ - off >= kPrefix) {
        const std::uint32_t len = load_be32(buf + off);
        if (len < kMinFrame || len > kMaxWireFrame) {
            counters().drop_wire.inc();
            // Rate-limited: a broken client that reconnects in a loop must not flood the log.
            SLW_LOG_RATELIMITED(::spdlog::level::err,
                                "{}: frame length {} outside [{}, {}]; closing the connection",
                                spec_, len, kMinFrame, kMaxWireFrame);
            // Frames parsed before the bad one are good: hand them on first.
            if (!push_rx_burst(n, tok)) return false;
            close_client("bad frame length", true);
            return false;
        }
        if (rx_len_ - off - kPrefix < len) break;  // partial frame: keep it for the next read
        auto ref = ctx_.pool.try_alloc(len);
        if (ref) {
            std::memcpy(ref->data().data(), buf + off + kPrefix, len);
            ref->meta().in_port = id();
            rx_burst_[n++] = std::move(*ref);
        } else {
            counters().drop_no_buffer.inc();
        }
        off += kPrefix + len;
        if (n == kBurst) {
            if (!push_rx_burst(n, tok)) return false;
            n = 0;
        }
    }
    if (!push_rx_burst(n, tok)) return false;
    if (off != 0) {
        std::memmove(rx_buf_.get(), buf + off, rx_len_ - off);
        rx_len_ -= off;
    }
    return true;
}

void QemuStream::close_client(const char* why, bool error, bool stopping) noexcept {
    if (!client_fd_.valid()) return;
    kill_token(client_tok_);
    client_w_.reset();
    client_fd_.reset();
    rx_len_ = 0;
    write_armed_ = false;
    tx_broken_ = false;
    tx_posted_ = false;
    drop_egress();
    if (stopping) {
        SLW_INFO("{}: guest detached ({})", spec_, why);
        return;
    }
    if (error)
        SLW_LOG_RATELIMITED(::spdlog::level::err, "{}: {}; waiting for the next guest", spec_, why);
    else
        SLW_INFO("{}: {}; waiting for the next guest", spec_, why);
    // A new guest may come on this socket with another MAC.
    if (id() != 0xffff) ctx_.sw.reset_port(*this);
}

void QemuStream::drop_egress() noexcept {
    drop_pending_egress(*this, tx_frames_, tx_idx_, tx_n_);
    tx_off_ = 0;
}

void QemuStream::break_client(int err) noexcept {
    SLW_WARN_RATELIMITED("{}: write: {}", spec_, errno_text(err));
    tx_broken_ = true;
    // The read side sees the shutdown as end of stream and closes the connection from its own
    // handler, not from inside a switch callback.
    ::shutdown(client_fd_.get(), SHUT_RDWR);
    drop_egress();
}

void QemuStream::arm_write() noexcept {
    write_armed_ = true;
    client_w_->wait_writable([this, tok = client_tok_](bool ok) {
        if (!tok->alive) return;
        write_armed_ = false;
        if (!ok) return;
        flush_tx();
    });
}

void QemuStream::flush_tx() noexcept {
    if (!client_fd_.valid() || tx_broken_) {
        drop_egress();  // nobody to take them
        return;
    }
    if (write_armed_) return;  // the peer is full; frames wait in the pending burst and the ring
    for (int b = 0; b < kBurstsPerFlush; ++b) {
        if (tx_n_ == 0) {
            const std::size_t n = to_port().pop_burst(tx_frames_);
            if (n == 0) return;
            std::size_t k = 0;
            for (std::size_t i = 0; i < n; ++i) {
                const std::size_t len = tx_frames_[i].len();
                if (len > kMaxWireFrame || len < kMinFrame) {
                    counters().drop_too_big.inc();
                    tx_frames_[i].reset();
                    continue;
                }
                store_be32(tx_prefix_[k].data(), static_cast<std::uint32_t>(len));
                if (k != i) tx_frames_[k] = std::move(tx_frames_[i]);
                ++k;
            }
            tx_n_ = k;
            tx_idx_ = tx_off_ = 0;
            if (k == 0) continue;
        }
        std::array<iovec, 2 * kBurst> iov;
        std::size_t niov = 0;
        for (std::size_t i = tx_idx_; i < tx_n_; ++i) {
            const std::size_t skip = i == tx_idx_ ? tx_off_ : 0;
            const auto data = tx_frames_[i].data();
            if (skip < kPrefix) iov[niov++] = {tx_prefix_[i].data() + skip, kPrefix - skip};
            const std::size_t fskip = skip > kPrefix ? skip - kPrefix : 0;
            iov[niov++] = {data.data() + fskip, data.size() - fskip};
        }
        msghdr mh{};
        mh.msg_iov = iov.data();
        mh.msg_iovlen = niov;
        const ssize_t w = ::sendmsg(client_fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm_write();
                return;
            }
            break_client(errno);
            return;
        }
        // Advance past what was written; completed frames go back to the pool.
        auto left = static_cast<std::size_t>(w);
        while (left != 0 && tx_idx_ < tx_n_) {
            const std::size_t total = kPrefix + tx_frames_[tx_idx_].len();
            const std::size_t rest = total - tx_off_;
            if (left >= rest) {
                left -= rest;
                tx_frames_[tx_idx_++].reset();
                tx_off_ = 0;
            } else {
                tx_off_ += left;
                left = 0;
            }
        }
        if (tx_idx_ < tx_n_) {
            arm_write();  // partial write: the socket buffer is full
            return;
        }
        tx_n_ = tx_idx_ = tx_off_ = 0;
    }
    // More bursts may be waiting: continue after the rest of the loop had its turn.
    if (!to_port().empty_approx())
        continue_later(ctx_.io, tx_posted_, client_tok_, [this] { flush_tx(); });
}

}  // namespace

std::unique_ptr<Attachment> make_qemu_stream(const AttachmentContext& ctx, std::string spec,
                                             std::string path) {
    return std::make_unique<QemuStream>(ctx, std::move(spec), std::move(path));
}

}  // namespace slipway::guest::detail
