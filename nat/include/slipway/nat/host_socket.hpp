// The host-socket operations of the TCP translation (TCP.md §3-§6), behind an interface so the
// engine can be driven against a fake socket layer (the fuzz target) as well as the kernel.
//
// Theory of operation
// -------------------
// The engine holds no data of its own: guest->host bytes go straight into the socket's send
// queue, and are acknowledged to the guest only as far as write() says the socket took them;
// host->guest bytes stay in the socket's receive queue until the guest acknowledges them. So the
// engine reads host data with peek() at an offset (the bytes already sent to the guest but not yet
// acknowledged are skipped) and drops acknowledged bytes with discard(). Two ways to peek at an
// offset exist on Linux:
//   - SO_PEEK_OFF (TCP since Linux 6.9): the kernel keeps a peek offset per socket, advances it by
//     every MSG_PEEK and moves it back by every byte consumed. The engine tells the socket the
//     offset only when it rewinds (a retransmission): set_peek_offset().
//   - otherwise: the first iovec of the MSG_PEEK points at a discard area as long as the offset, so
//     the kernel copies the already-sent bytes there and the new ones behind them. The engine must
//     then keep its unacknowledged bytes within max_peek_offset() (the discard area's size).
// One visible difference: without SO_PEEK_OFF the end of the stream shows (peek() returns 0) only
// at offset 0, once the guest acknowledged everything; before that such a peek says -EAGAIN.
// LinuxSockets probes SO_PEEK_OFF once (probe_peek_off) and uses it unless told not to
// (--no-peek-off), so both paths are exercised by the tests.
// Every call is non-blocking and reports errors as negative errno values, never exceptions.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <span>

namespace slipway::nat {

class HostSockets {
  public:
    virtual ~HostSockets() = default;

    // A non-blocking, close-on-exec stream socket with its connect() started: the fd, or -errno
    // (a connect that fails at once, e.g. -ENETUNREACH, closes the socket).
    virtual int open_connect(const sockaddr* addr, socklen_t len) noexcept = 0;
    // The pending error of a socket whose connect finished (SO_ERROR): 0 or an errno value.
    virtual int connect_result(int fd) noexcept = 0;
    // Writes as much of `iov` as the socket takes now: bytes accepted (0 when its send queue is
    // full), or -errno (-EPIPE, -ECONNRESET, ...). Never blocks, never raises SIGPIPE.
    virtual ssize_t write(int fd, std::span<const iovec> iov) noexcept = 0;
    // Free space in the socket's send queue now (send buffer, less an allowance for the kernel's
    // per-buffer overhead, minus SIOCOUTQ): the most the guest may be offered as its window.
    virtual std::size_t send_space(int fd) noexcept = 0;
    // Copies received bytes, starting `offset` bytes past the head of the receive queue, into
    // `iov` without consuming them: bytes copied, 0 at end of stream (the peer's FIN, with nothing
    // at or past `offset`), -EAGAIN when nothing new is there, or -errno. With SO_PEEK_OFF the
    // kernel keeps the offset, so `offset` must be where the previous peek() ended, less what
    // discard() dropped since, or what set_peek_offset() said: the engine's own bookkeeping.
    virtual ssize_t peek(int fd, std::size_t offset, std::span<const iovec> iov) noexcept = 0;
    // The next peek() will be at `offset` although the last one ended elsewhere (a rewind).
    virtual void set_peek_offset(int fd, std::size_t offset) noexcept = 0;
    // Drops `n` bytes from the head of the receive queue (acknowledged by the guest): bytes
    // dropped or -errno.
    virtual ssize_t discard(int fd, std::size_t n) noexcept = 0;
    // Largest `offset` peek() supports (the discard area without SO_PEEK_OFF).
    [[nodiscard]] virtual std::size_t max_peek_offset() const noexcept = 0;
    // shutdown(SHUT_WR): the guest's FIN, once everything before it was written.
    virtual void shutdown_write(int fd) noexcept = 0;
    // Closes the socket; `reset`: SO_LINGER {1, 0} first, so the peer sees a RST (guest RST).
    virtual void close(int fd, bool reset) noexcept = 0;
    // Prepares a connected stream the engine did not open itself (an accepted socket, the DNS
    // service's stream): non-blocking, and the peek mode of the other sockets.
    virtual void adopt(int fd) noexcept = 0;
};

class LinuxSockets final : public HostSockets {
  public:
    // use_peek_off: use SO_PEEK_OFF (only when probe_peek_off() said the kernel has it);
    // discard_area: bytes of the discard area for the other path.
    LinuxSockets(bool use_peek_off, std::size_t discard_area = std::size_t{4} << 20);
    ~LinuxSockets() override;

    // Whether this kernel supports SO_PEEK_OFF on TCP sockets (probed on a throwaway socket).
    [[nodiscard]] static bool probe_peek_off() noexcept;
    [[nodiscard]] bool uses_peek_off() const noexcept { return peek_off_; }

    int open_connect(const sockaddr* addr, socklen_t len) noexcept override;
    int connect_result(int fd) noexcept override;
    ssize_t write(int fd, std::span<const iovec> iov) noexcept override;
    std::size_t send_space(int fd) noexcept override;
    ssize_t peek(int fd, std::size_t offset, std::span<const iovec> iov) noexcept override;
    void set_peek_offset(int fd, std::size_t offset) noexcept override;
    ssize_t discard(int fd, std::size_t n) noexcept override;
    [[nodiscard]] std::size_t max_peek_offset() const noexcept override;
    void shutdown_write(int fd) noexcept override;
    void close(int fd, bool reset) noexcept override;

    void adopt(int fd) noexcept override;

  private:
    // TCP_NODELAY, and SO_PEEK_OFF armed at 0 in that mode.
    void tune(int fd) noexcept;

    bool peek_off_;
    std::unique_ptr<std::byte[]> discard_;
    std::size_t discard_len_;
    // Where discard() drops bytes of streams that do not take MSG_TRUNC (AF_UNIX).
    std::unique_ptr<std::byte[]> scratch_;
};

}  // namespace slipway::nat
