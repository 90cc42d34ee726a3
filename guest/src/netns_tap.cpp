// netns:PATH[,ifname=NAME] — a TAP device with a virtio-net header inside another network
// namespace; the namespace's kernel is the guest's network stack.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <array>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <thread>

#include "attachment_impl.hpp"
#include "slipway/core/log.hpp"

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20  // Linux 6.2: UDP segmentation offload for IPv4
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace slipway::guest::detail {
namespace {

constexpr std::size_t kHdr = virtio::kNetHdrV1Len;  // virtio_net_hdr_v1 with num_buffers
constexpr int kBurstsPerFlush = 8;
constexpr std::size_t kVlanTag = 4;

// What the namespace thread reports back: the TAP fd, or the failed step and its errno.
struct TapOpen {
    int fd = -1;
    int err = 0;
    const char* step = nullptr;
    bool uso = false;
};

// Runs on a thread of its own: setns() changes the calling thread's namespace for good, so it must
// not be the network thread (nor any thread that outlives this call).
TapOpen open_tap_in_netns(const std::string& ns_path, const std::string& ifname) {
    TapOpen r;
    const UniqueFd ns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) {
        r.err = errno;
        r.step = "open namespace";
        return r;
    }
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
        r.err = errno;
        r.step = "setns";
        return r;
    }
    UniqueFd tap(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!tap.valid()) {
        r.err = errno;
        r.step = "open /dev/net/tun";
        return r;
    }
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());  // <= 15 bytes, checked by the parser
    ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    if (::ioctl(tap.get(), TUNSETIFF, &ifr) != 0) {
        r.err = errno;
        r.step = "TUNSETIFF";
        return r;
    }
    int hdr_sz = static_cast<int>(kHdr);
    if (::ioctl(tap.get(), TUNSETVNETHDRSZ, &hdr_sz) != 0) {
        r.err = errno;
        r.step = "TUNSETVNETHDRSZ";
        return r;
    }
    // The v1 header is little-endian; on a big-endian host the TAP must be told so. Failure only
    // matters there (kernels without the ioctl are little-endian-only in practice).
    int le = 1;
    (void)::ioctl(tap.get(), TUNSETVNETLE, &le);
    const unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (::ioctl(tap.get(), TUNSETOFFLOAD,
                static_cast<unsigned long>(base | TUN_F_USO4 | TUN_F_USO6)) == 0) {
        r.uso = true;
    } else if (::ioctl(tap.get(), TUNSETOFFLOAD, static_cast<unsigned long>(base)) != 0) {
        r.err = errno;
        r.step = "TUNSETOFFLOAD";
        return r;
    }
    r.fd = tap.release();
    return r;
}

class NetnsTap final : public Attachment {
  public:
    NetnsTap(const AttachmentContext& ctx, std::string spec, std::string path, std::string ifname)
        : Attachment(spec, PortKind::guest, PortCaps{true, true, ctx.mtu + 14}),
          ctx_(ctx),
          spec_(std::move(spec)),
          path_(std::move(path)),
          ifname_(std::move(ifname)) {}
    ~NetnsTap() override { stop(); }

    Result<void> start(std::string& error) override;
    void stop() noexcept override;
    [[nodiscard]] const std::string& spec() const noexcept override { return spec_; }
    [[nodiscard]] std::string state() const override {
        if (!fd_.valid()) return "stopped";
        return failed_ ? "down" : "up";
    }
    void on_frames_from_switch() noexcept override { flush_tx(); }

  private:
    void arm_read() noexcept;
    void on_readable() noexcept;
    // Turns the bytes read into `buf` into a PacketRef in `out`; false if the frame was dropped.
    bool take_frame(std::byte* buf, std::size_t n, bool in_staging, PacketRef& out) noexcept;
    void flush_tx() noexcept;
    void drop_egress() noexcept;
    // Prepends the virtio-net header; false (and counted) if the frame cannot go to the TAP.
    bool prepare_tx(PacketRef& f) noexcept;

    AttachmentContext ctx_;
    std::string spec_;
    std::string path_;
    std::string ifname_;

    UniqueFd fd_;
    std::unique_ptr<FdWatcher> w_;
    AliveToken tok_;
    bool failed_ = false;
    bool write_armed_ = false;
    bool rx_posted_ = false;
    bool tx_posted_ = false;

    // Large buffer every read() lands in (a TAP read returns one whole frame, so the buffer must
    // hold the largest GSO frame). Frames that fit a small buffer are copied out and the staging
    // buffer is reused; a larger frame takes the staging buffer with it and a new one is taken.
    PacketRef staging_;
    // Used only while the pool has no large buffer: the TAP must still be drained (or it stalls
    // under edge-triggered readiness), so frames land here and are copied or dropped.
    std::unique_ptr<std::byte[]> fallback_;
    std::array<PacketRef, kBurst> rx_burst_;

    std::array<PacketRef, kBurst> tx_frames_;
    std::size_t tx_n_ = 0;
    std::size_t tx_idx_ = 0;
    bool tx_prepared_ = false;  // tx_frames_[tx_idx_] already carries its header
};

Result<void> NetnsTap::start(std::string& error) {
    if (fd_.valid()) return {};
    TapOpen r;
    try {
        std::thread t([&] { r = open_tap_in_netns(path_, ifname_); });
        t.join();
    } catch (const std::system_error& e) {
        error = path_ + ": cannot start the namespace thread: " + e.what();
        return fail(Errc::io_error);
    }
    if (r.fd < 0) {
        error = path_ + " (" + ifname_ + "): " + r.step + ": " + errno_text(r.err);
        return fail(Errc::io_error);
    }
    UniqueFd fd(r.fd);
    // Opened with O_NONBLOCK already; make sure, since a blocking read would stall the network.
    const int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
        error = path_ + " (" + ifname_ + "): O_NONBLOCK: " + errno_text(errno);
        return fail(Errc::io_error);
    }
    if (!fallback_) fallback_ = std::make_unique_for_overwrite<std::byte[]>(kLargeBufferSize);
    if (auto s = ctx_.pool.try_alloc(SizeClass::large)) staging_ = std::move(*s);
    fd_ = std::move(fd);
    failed_ = false;
    w_ = std::make_unique<FdWatcher>(ctx_.io, fd_.get());
    tok_ = new_token();
    SLW_INFO("{}: TAP {} created{}", spec_, ifname_,
             r.uso ? " (TSO, USO, checksum offload)" : " (TSO, checksum offload)");
    on_readable();  // drain anything already queued: an edge that already happened never repeats
    return {};
}

void NetnsTap::stop() noexcept {
    kill_token(tok_);
    w_.reset();
    fd_.reset();  // the last fd of a non-persistent TAP: the kernel deletes the device
    write_armed_ = rx_posted_ = tx_posted_ = false;
    staging_.reset();
    drop_egress();
    PacketRef f;
    while (to_switch().try_pop(f))
        f.reset();
}

void NetnsTap::arm_read() noexcept {
    w_->wait_readable([this, tok = tok_](bool ok) {
        if (!tok->alive || !ok) return;
        on_readable();
    });
}

bool NetnsTap::take_frame(std::byte* buf, std::size_t n, bool in_staging, PacketRef& out) noexcept {
    if (n < kHdr + kMinFrame) {
        counters().drop_wire.inc();
        SLW_WARN_RATELIMITED("{}: {}-byte read from the TAP is shorter than header + frame", spec_,
                             n);
        return false;
    }
    const std::size_t frame_len = n - kHdr;
    auto hdr = virtio::NetHdr::parse(ByteView(buf, kHdr), kHdr);
    if (!hdr || !hdr->validate_for_frame(frame_len)) {
        counters().drop_wire.inc();
        SLW_WARN_RATELIMITED("{}: bad virtio-net header from the TAP (flags {:#x}, gso {:#x})",
                             spec_, static_cast<unsigned>(buf[0]), static_cast<unsigned>(buf[1]));
        return false;
    }
    // The TAP fills only the first 10 bytes and skips num_buffers, which is ours to set on output.
    hdr->num_buffers = 0;
    if (frame_len <= kSmallBufferSize - ctx_.pool.headroom() || !in_staging) {
        auto ref = ctx_.pool.try_alloc(frame_len);
        if (!ref) {
            counters().drop_no_buffer.inc();
            return false;
        }
        std::memcpy(ref->data().data(), buf + kHdr, frame_len);
        out = std::move(*ref);
    } else {
        // Hand the staging buffer over whole (no 64 KiB copy) if a replacement is there.
        auto next = ctx_.pool.try_alloc(SizeClass::large);
        if (!next) {
            counters().drop_no_buffer.inc();
            return false;
        }
        (void)staging_.set_len(n);  // fits: n <= room(), read() was bounded by it
        (void)staging_.pull_head(kHdr);
        out = std::move(staging_);
        staging_ = std::move(*next);
    }
    out.meta().vnet = *hdr;
    out.meta().in_port = id();
    return true;
}

void NetnsTap::on_readable() noexcept {
    const AliveToken tok = tok_;
    rx_posted_ = false;
    std::size_t n = 0;
    bool drained = false;
    for (std::size_t i = 0; i < kBurst; ++i) {
        if (!staging_) {
            if (auto s = ctx_.pool.try_alloc(SizeClass::large)) staging_ = std::move(*s);
        }
        const bool in_staging = static_cast<bool>(staging_);
        std::byte* buf = in_staging ? staging_.room().data() : fallback_.get();
        const std::size_t cap = in_staging ? staging_.room().size() : kLargeBufferSize;
        const ssize_t r = ::read(fd_.get(), buf, cap);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                drained = true;
                break;
            }
            // EBADFD/EIO: the device is gone (its namespace was deleted). Stop reading; stop()
            // or the owner cleans up.
            SLW_ERROR("{}: read from the TAP: {}; the attachment is down", spec_,
                      errno_text(errno));
            failed_ = true;
            break;
        }
        if (take_frame(buf, static_cast<std::size_t>(r), in_staging, rx_burst_[n])) ++n;
    }
    push_burst_to_switch(*this, std::span<PacketRef>(rx_burst_.data(), n));
    if (!tok->alive) return;
    if (failed_) return;
    if (drained) {
        arm_read();
    } else {
        continue_later(ctx_.io, rx_posted_, tok, [this] { on_readable(); });  // a full burst
    }
}

void NetnsTap::drop_egress() noexcept {
    drop_pending_egress(*this, tx_frames_, tx_idx_, tx_n_);
    tx_prepared_ = false;
}

bool NetnsTap::prepare_tx(PacketRef& f) noexcept {
    const virtio::NetHdr& vh = f.meta().vnet;
    const std::size_t len = f.len();
    // A GSO frame may be as large as a 64 KiB IP packet; anything else must fit the link.
    const std::size_t limit =
        vh.is_gso() ? kMaxFrameLen - kHdr : std::size_t{caps().max_frame} + kVlanTag;
    if (len > limit || len < kMinFrame) {
        counters().drop_too_big.inc();
        return false;
    }
    auto head = f.push_head(kHdr);
    if (!head) {
        counters().drop_io.inc();  // no headroom: a producer bug, not the guest's
        SLW_WARN_RATELIMITED("{}: frame without headroom for the virtio-net header", spec_);
        return false;
    }
    virtio::NetHdr out = vh;
    out.num_buffers = 0;
    (void)out.emit(*head, kHdr);
    return true;
}

void NetnsTap::flush_tx() noexcept {
    if (!fd_.valid() || failed_) {
        drop_egress();
        return;
    }
    if (write_armed_) return;  // the TAP is full; frames wait here and in the ring
    for (int b = 0; b < kBurstsPerFlush; ++b) {
        if (tx_idx_ == tx_n_) {
            tx_n_ = to_port().pop_burst(tx_frames_);
            tx_idx_ = 0;
            tx_prepared_ = false;
            if (tx_n_ == 0) return;
        }
        while (tx_idx_ < tx_n_) {
            PacketRef& f = tx_frames_[tx_idx_];
            if (!tx_prepared_) {
                if (!prepare_tx(f)) {
                    f.reset();
                    ++tx_idx_;
                    continue;
                }
                tx_prepared_ = true;
            }
            // One frame per write: that is the TAP's unit.
            const auto d = f.data();
            const ssize_t w = ::write(fd_.get(), d.data(), d.size());
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                write_armed_ = true;
                w_->wait_writable([this, tok = tok_](bool ok) {
                    if (!tok->alive) return;
                    write_armed_ = false;
                    if (ok) flush_tx();
                });
                return;
            }
            if (w < 0) {
                counters().drop_io.inc();
                SLW_WARN_RATELIMITED("{}: write to the TAP: {}", spec_, errno_text(errno));
            }
            f.reset();
            ++tx_idx_;
            tx_prepared_ = false;
        }
    }
    if (!to_port().empty_approx())
        continue_later(ctx_.io, tx_posted_, tok_, [this] { flush_tx(); });
}

}  // namespace

std::unique_ptr<Attachment> make_netns_tap(const AttachmentContext& ctx, std::string spec,
                                           std::string path, std::string ifname) {
    return std::make_unique<NetnsTap>(ctx, std::move(spec), std::move(path), std::move(ifname));
}

}  // namespace slipway::guest::detail
