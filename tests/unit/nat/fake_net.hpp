// Deterministic fakes around nat::TcpEngine (host sockets, poller, guest link) and a guest-side
// frame builder and parser, shared by the engine's unit tests and its fuzz target.
//
// FakeSockets models each fd as a stream socket: a send queue of configurable capacity (what
// write() took stays in `written`; drain() plays the peer acknowledging it), and a receive stream
// the test appends to, read with peek() exactly as HostSockets documents it in either peek mode
// (SO_PEEK_OFF: the offset is the kernel's and is checked against the engine's bookkeeping; the
// discard iovec: offsets up to max_peek_offset(), end of stream visible only at offset 0). Every
// breach of the HostSockets contract by the engine (discarding bytes it never peeked, peeking at an
// offset the kernel does not hold, writing after shutdown, touching a closed fd, ...) is recorded
// in `violations` (or aborts, for the fuzzer). FakePoller keeps each fd's interest and arms
// edge-triggered wake-ups the way epoll does; FakeNet::pump() delivers them. FakeLink collects the
// engine's frames; parse_out() checks and decodes them (IPv4 and TCP/ICMP checksums, partial
// checksums, GSO frames re-segmented by the switch's own segment_gso()).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/offload.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/virtio/net_hdr.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/frame.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/tcp.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/host_socket.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat::fake {

// ---- byte patterns -----------------------------------------------------------------------------

// Guest payload byte at absolute sequence number `seq`: a retransmission of any range carries the
// same bytes, so what reaches the socket can be checked byte for byte.
[[nodiscard]] inline std::uint8_t guest_byte(std::uint32_t seq) noexcept {
    return static_cast<std::uint8_t>((seq * 0x9E3779B1u) >> 24);
}
[[nodiscard]] inline std::vector<std::uint8_t> guest_bytes(std::uint32_t seq, std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = guest_byte(seq + static_cast<std::uint32_t>(i));
    return v;
}
// Host stream byte at offset `off` of socket `fd`'s receive stream.
[[nodiscard]] inline std::uint8_t host_byte(int fd, std::size_t off) noexcept {
    const auto x = static_cast<std::uint32_t>(off) * 0x85EBCA6Bu + static_cast<std::uint32_t>(fd);
    return static_cast<std::uint8_t>((x ^ (x >> 13)) * 0xC2B2AE35u >> 24);
}

// ---- FakeSockets ------------------------------------------------------------------------------

enum class PeekMode : std::uint8_t { peek_off, discard_iovec };

// Socket readiness bits, as sock_event names them.
inline constexpr std::uint32_t kEvAll =
    sock_event::in | sock_event::out | sock_event::error | sock_event::hup | sock_event::rdhup;
// Reported whatever the interest: epoll always reports EPOLLERR and EPOLLHUP, and EpollPoller
// asks for EPOLLRDHUP on every fd.
inline constexpr std::uint32_t kEvAlways = sock_event::error | sock_event::hup | sock_event::rdhup;

struct FakeSocket {
    enum class Conn : std::uint8_t { connecting, connected, failed };
    int fd = -1;
    std::uint64_t opened_at = 0;  // FakeSockets::clock when opened
    sockaddr_in addr{};
    bool adopted = false;
    Conn conn = Conn::connecting;
    int so_error = 0;   // pending error: reported once by write(), peek() or connect_result()
    bool dead = false;  // an error was reported: writes say EPIPE, reads see the end
    // Send side: every byte the socket ever took, and how many of them the peer acknowledged.
    std::size_t sndbuf = 0;
    std::vector<std::uint8_t> written;
    std::size_t drained = 0;
    std::uint32_t write_calls = 0;
    bool shut_wr = false;
    std::size_t written_at_shutdown = 0;
    std::uint32_t shutdown_calls = 0;
    // Receive side: every byte the peer ever sent; the first `consumed` were discarded.
    std::vector<std::uint8_t> stream;
    std::size_t consumed = 0;
    bool eof = false;
    std::size_t peeked_hi = 0;   // absolute stream offset: the end of what peek() ever returned
    std::size_t kernel_off = 0;  // SO_PEEK_OFF
    std::vector<std::size_t> peek_offsets;
    std::uint32_t peek_calls = 0, set_peek_calls = 0, discard_calls = 0;
    std::vector<std::size_t> set_peek_values;
    bool closed = false, reset = false;
    std::uint32_t close_calls = 0;
    std::uint32_t wake = 0;  // readiness changes since the poller last delivered

    [[nodiscard]] std::size_t queued() const noexcept { return written.size() - drained; }
    [[nodiscard]] std::size_t space() const noexcept {
        return sndbuf > queued() ? sndbuf - queued() : 0;
    }
    [[nodiscard]] std::size_t avail() const noexcept { return stream.size() - consumed; }
    [[nodiscard]] std::uint16_t remote_port() const noexcept { return ntohs(addr.sin_port); }
    [[nodiscard]] Ipv4Addr remote_ip() const noexcept {
        return Ipv4Addr{ntohl(addr.sin_addr.s_addr)};
    }
};

class FakeSockets final : public HostSockets {
  public:
    explicit FakeSockets(PeekMode m = PeekMode::peek_off, std::size_t discard_area = 256 * 1024,
                         std::size_t sndbuf = 64 * 1024)
        : mode(m), discard_area_len(discard_area), default_sndbuf(sndbuf) {}

    PeekMode mode;
    std::size_t discard_area_len;
    std::size_t default_sndbuf;
    // Results of the next open_connect() calls, in order: 0 = a socket whose connect is pending,
    // -errno = the connect fails at once. Empty: pending.
    std::deque<int> open_script;
    std::map<int, FakeSocket> socks;
    std::vector<int> opened;  // fds in order of creation
    std::uint32_t open_calls = 0, open_failures = 0;
    std::vector<std::string> violations;
    bool abort_on_violation = false;
    std::uint64_t clock = 0;  // shared ordering clock (FakeLink stamps frames with it too)
    int next_fd = 100;
    int last_fd = 4000;  // fds above this: EMFILE

    [[nodiscard]] FakeSocket* find(int fd) noexcept {
        auto it = socks.find(fd);
        return it == socks.end() ? nullptr : &it->second;
    }
    [[nodiscard]] const FakeSocket* find(int fd) const noexcept {
        auto it = socks.find(fd);
        return it == socks.end() ? nullptr : &it->second;
    }
    FakeSocket& at(int fd) {
        FakeSocket* s = find(fd);
        if (s == nullptr) {
            std::fprintf(stderr, "fake_net: no socket %d\n", fd);
            std::abort();
        }
        return *s;
    }
    [[nodiscard]] int last_opened() const noexcept { return opened.empty() ? -1 : opened.back(); }

    // ---- controls for the test -----------------------------------------------------------------

    // A connected stream the engine did not open (an accepted socket, the DNS service's end).
    int make_connected() {
        const int fd = new_socket();
        if (fd >= 0) at(fd).conn = FakeSocket::Conn::connected;
        return fd;
    }
    // The pending connect finished: 0 or an errno value (SO_ERROR).
    void complete_connect(int fd, int err) {
        FakeSocket& s = at(fd);
        s.conn = err == 0 ? FakeSocket::Conn::connected : FakeSocket::Conn::failed;
        s.so_error = err;
        s.wake |= kEvAll;
    }
    void push_recv(int fd, std::span<const std::uint8_t> bytes) {
        FakeSocket& s = at(fd);
        s.stream.insert(s.stream.end(), bytes.begin(), bytes.end());
        s.wake |= sock_event::in;
    }
    // Appends `n` bytes of the host pattern.
    void push_pattern(int fd, std::size_t n) {
        FakeSocket& s = at(fd);
        for (std::size_t i = 0; i < n; ++i)
            s.stream.push_back(host_byte(fd, s.stream.size()));
        s.wake |= sock_event::in;
    }
    void set_eof(int fd) {
        FakeSocket& s = at(fd);
        s.eof = true;
        s.wake |= sock_event::in | sock_event::rdhup | sock_event::hup;
    }
    // The peer reset (ECONNRESET) or another socket error: the next write/peek reports it.
    void inject_error(int fd, int err) {
        FakeSocket& s = at(fd);
        s.so_error = err;
        s.wake |= kEvAll;
    }
    // The host peer acknowledged `n` bytes of the send queue: they leave it, space returns.
    void drain(int fd, std::size_t n) {
        FakeSocket& s = at(fd);
        s.drained += std::min(n, s.queued());
        s.wake |= sock_event::out;
    }
    void set_sndbuf(int fd, std::size_t n) {
        FakeSocket& s = at(fd);
        s.sndbuf = n;
        s.wake |= sock_event::out;
    }
    // Readiness now (what tcp_poll would say).
    [[nodiscard]] std::uint32_t level(int fd) const noexcept {
        const FakeSocket* s = find(fd);
        if (s == nullptr || s->closed) return 0;
        if (s->conn == FakeSocket::Conn::connecting) return s->so_error != 0 ? kEvAll : 0;
        if (s->conn == FakeSocket::Conn::failed) return kEvAll;
        std::uint32_t ev = 0;
        if (s->avail() > 0 || s->eof || s->dead || s->so_error != 0) ev |= sock_event::in;
        if (s->shut_wr || s->dead || s->space() > 0) ev |= sock_event::out;
        if (s->so_error != 0) ev |= sock_event::error;
        if ((s->eof && s->shut_wr) || s->dead) ev |= sock_event::hup;
        if (s->eof || s->dead) ev |= sock_event::rdhup;
        return ev;
    }
    // Every fd the engine opened is closed exactly once (after reset_all() or a full close).
    [[nodiscard]] bool all_closed() const noexcept {
        for (const auto& [fd, s] : socks)
            if (!s.closed || s.close_calls != 1) return false;
        return true;
    }

    // ---- HostSockets ---------------------------------------------------------------------------

    int open_connect(const sockaddr* addr, socklen_t len) noexcept override {
        ++open_calls;
        int r = 0;
        if (!open_script.empty()) {
            r = open_script.front();
            open_script.pop_front();
        }
        if (addr == nullptr || addr->sa_family != AF_INET || len < sizeof(sockaddr_in)) {
            violate("open_connect: not an AF_INET address");
            return -EAFNOSUPPORT;
        }
        if (r < 0) {
            ++open_failures;
            return r;
        }
        const int fd = new_socket();
        if (fd < 0) return fd;
        std::memcpy(&at(fd).addr, addr, sizeof(sockaddr_in));
        return fd;
    }
    int connect_result(int fd) noexcept override {
        FakeSocket* s = live(fd, "connect_result");
        if (s == nullptr) return EBADF;
        if (s->conn == FakeSocket::Conn::connecting && s->so_error == 0) {
            // SO_ERROR says 0 while a connect is still pending: an engine asking before the
            // socket became writable would take that for success.
            violate("connect_result on fd " + std::to_string(fd) + " before its connect finished");
            return 0;
        }
        const int e = s->so_error;
        s->so_error = 0;
        if (e != 0 && s->conn == FakeSocket::Conn::connected) s->dead = true;
        return e;
    }
    ssize_t write(int fd, std::span<const iovec> iov) noexcept override {
        FakeSocket* s = live(fd, "write");
        if (s == nullptr) return -EBADF;
        ++s->write_calls;
        if (s->conn != FakeSocket::Conn::connected) {
            violate("write on fd " + std::to_string(fd) + " before its connect succeeded");
            return -ENOTCONN;
        }
        if (s->so_error != 0) return -report_error(*s);
        if (s->shut_wr) {
            violate("write on fd " + std::to_string(fd) + " after shutdown_write");
            return -EPIPE;
        }
        if (s->dead) return -EPIPE;
        std::size_t take = s->space();
        std::size_t done = 0;
        for (const iovec& v : iov) {
            const std::size_t n = std::min(take, v.iov_len);
            const auto* p = static_cast<const std::uint8_t*>(v.iov_base);
            s->written.insert(s->written.end(), p, p + n);
            take -= n;
            done += n;
            if (n < v.iov_len) break;
        }
        return static_cast<ssize_t>(done);
    }
    std::size_t send_space(int fd) noexcept override {
        FakeSocket* s = live(fd, "send_space");
        if (s == nullptr) return 0;
        return s->space();  // as SO_SNDBUF / 2 - SIOCOUTQ, also after a shutdown or an error
    }
    ssize_t peek(int fd, std::size_t offset, std::span<const iovec> iov) noexcept override {
        FakeSocket* s = live(fd, "peek");
        if (s == nullptr) return -EBADF;
        ++s->peek_calls;
        s->peek_offsets.push_back(offset);
        if (s->conn != FakeSocket::Conn::connected) {
            violate("peek on fd " + std::to_string(fd) + " before its connect succeeded");
            return -ENOTCONN;
        }
        if (mode == PeekMode::peek_off && offset != s->kernel_off) {
            violate("peek on fd " + std::to_string(fd) + " at offset " + std::to_string(offset) +
                    " but the kernel's SO_PEEK_OFF is " + std::to_string(s->kernel_off));
            offset = s->kernel_off;  // what the kernel would really do
        }
        if (mode == PeekMode::discard_iovec && offset > discard_area_len) {
            violate("peek on fd " + std::to_string(fd) + " at offset " + std::to_string(offset) +
                    " beyond max_peek_offset " + std::to_string(discard_area_len));
            return -EINVAL;
        }
        if (offset > s->avail()) {
            violate("peek on fd " + std::to_string(fd) + " at offset " + std::to_string(offset) +
                    " past the " + std::to_string(s->avail()) + " bytes queued");
            return -EINVAL;
        }
        std::size_t total = 0;
        for (const iovec& v : iov)
            total += v.iov_len;
        const std::size_t n = std::min(total, s->avail() - offset);
        if (n == 0) {
            if (total == 0) return 0;
            if (s->so_error != 0) return -report_error(*s);
            if (s->eof || s->dead) {
                // Without SO_PEEK_OFF the end shows only once nothing is left in the queue.
                if (mode == PeekMode::peek_off || s->avail() == 0) return 0;
            }
            return -EAGAIN;
        }
        std::size_t src = s->consumed + offset;
        std::size_t left = n;
        for (const iovec& v : iov) {
            const std::size_t k = std::min(left, v.iov_len);
            if (k != 0) std::memcpy(v.iov_base, s->stream.data() + src, k);
            src += k;
            left -= k;
            if (left == 0) break;
        }
        s->peeked_hi = std::max(s->peeked_hi, s->consumed + offset + n);
        if (mode == PeekMode::peek_off) s->kernel_off += n;
        return static_cast<ssize_t>(n);
    }
    void set_peek_offset(int fd, std::size_t offset) noexcept override {
        FakeSocket* s = live(fd, "set_peek_offset");
        if (s == nullptr) return;
        ++s->set_peek_calls;
        s->set_peek_values.push_back(offset);
        if (mode != PeekMode::peek_off) return;  // the offset travels with every peek()
        if (offset > s->avail())
            violate("set_peek_offset on fd " + std::to_string(fd) + " to " +
                    std::to_string(offset) + " past the " + std::to_string(s->avail()) +
                    " bytes queued");
        s->kernel_off = offset;
    }
    ssize_t discard(int fd, std::size_t n) noexcept override {
        FakeSocket* s = live(fd, "discard");
        if (s == nullptr) return -EBADF;
        ++s->discard_calls;
        if (n > s->avail()) {
            violate("discard of " + std::to_string(n) + " bytes on fd " + std::to_string(fd) +
                    " holding " + std::to_string(s->avail()));
            n = s->avail();
        }
        if (s->consumed + n > s->peeked_hi) {
            violate("discard on fd " + std::to_string(fd) + " up to stream offset " +
                    std::to_string(s->consumed + n) + " but only " + std::to_string(s->peeked_hi) +
                    " were ever peeked (sent)");
        }
        s->consumed += n;
        s->kernel_off = s->kernel_off > n ? s->kernel_off - n : 0;
        return static_cast<ssize_t>(n);
    }
    [[nodiscard]] std::size_t max_peek_offset() const noexcept override {
        return mode == PeekMode::peek_off ? std::size_t{1} << 30 : discard_area_len;
    }
    void shutdown_write(int fd) noexcept override {
        FakeSocket* s = live(fd, "shutdown_write");
        if (s == nullptr) return;
        if (++s->shutdown_calls == 1) s->written_at_shutdown = s->written.size();
        s->shut_wr = true;
        s->wake |= sock_event::out | sock_event::hup;
    }
    void close(int fd, bool reset) noexcept override {
        FakeSocket* s = find(fd);
        if (s == nullptr) {
            violate("close of unknown fd " + std::to_string(fd));
            return;
        }
        ++s->close_calls;
        if (s->closed) {
            violate("close of fd " + std::to_string(fd) + " twice");
            return;
        }
        s->closed = true;
        s->reset = reset;
    }
    void adopt(int fd) noexcept override {
        FakeSocket* s = live(fd, "adopt");
        if (s != nullptr) s->adopted = true;
    }

    void violate(const std::string& what) {
        if (abort_on_violation) {
            std::fprintf(stderr, "fake_net: HostSockets contract broken: %s\n", what.c_str());
            std::abort();
        }
        violations.push_back(what);
    }

  private:
    int new_socket() {
        if (next_fd > last_fd) return -EMFILE;
        const int fd = next_fd++;
        FakeSocket& s = socks[fd];
        s.fd = fd;
        s.opened_at = ++clock;
        s.sndbuf = default_sndbuf;
        opened.push_back(fd);
        return fd;
    }
    FakeSocket* live(int fd, const char* op) {
        FakeSocket* s = find(fd);
        if (s == nullptr || s->closed) {
            violate(std::string(op) + " on " + (s == nullptr ? "unknown" : "closed") + " fd " +
                    std::to_string(fd));
            return nullptr;
        }
        return s;
    }
    static int report_error(FakeSocket& s) {
        const int e = s.so_error;
        s.so_error = 0;
        s.dead = true;
        return e;
    }
};

// ---- FakePoller -------------------------------------------------------------------------------

class FakePoller final : public Poller {
  public:
    explicit FakePoller(FakeSockets* s = nullptr) : socks_(s) {}

    struct Watch {
        FlowId id = kNoFlow;
        std::uint32_t interest = 0;
    };
    std::map<int, Watch> watched;
    bool refuse = false;  // watch() fails (the kernel refused)
    std::uint32_t watch_calls = 0, rewatch_calls = 0, unwatch_calls = 0;

    bool watch(int fd, FlowId id, std::uint32_t interest) noexcept override {
        ++watch_calls;
        if (refuse) return false;
        if (socks_ != nullptr) {
            const FakeSocket* s = socks_->find(fd);
            if (s == nullptr || s->closed)
                socks_->violate("watch of a closed or unknown fd " + std::to_string(fd));
        }
        if (watched.count(fd) != 0 && socks_ != nullptr)
            socks_->violate("watch of fd " + std::to_string(fd) + " already watched (EEXIST)");
        watched[fd] = Watch{id, interest};
        arm(fd, interest);
        return true;
    }
    void rewatch(int fd, FlowId id, std::uint32_t interest) noexcept override {
        ++rewatch_calls;
        if (watched.count(fd) == 0 && socks_ != nullptr)
            socks_->violate("rewatch of fd " + std::to_string(fd) + " not watched (ENOENT)");
        watched[fd] = Watch{id, interest};
        arm(fd, interest);
    }
    void unwatch(int fd) noexcept override {
        ++unwatch_calls;
        watched.erase(fd);
    }
    [[nodiscard]] std::uint32_t interest(int fd) const noexcept {
        auto it = watched.find(fd);
        return it == watched.end() ? 0 : it->second.interest;
    }
    [[nodiscard]] bool is_watched(int fd) const noexcept { return watched.count(fd) != 0; }

  private:
    // epoll_ctl ADD/MOD queue the fd when it is already ready for its new interest.
    void arm(int fd, std::uint32_t interest) {
        if (socks_ == nullptr) return;
        FakeSocket* s = socks_->find(fd);
        if (s != nullptr) s->wake |= socks_->level(fd) & (interest | kEvAlways);
    }
    FakeSockets* socks_;
};

// ---- FakeLink ---------------------------------------------------------------------------------

class FakeLink final : public GuestLink {
    // First, so that it outlives `frames` (members are destroyed in reverse order).
    std::unique_ptr<PacketPool> owned_;
    PacketPool* pool_;

  public:
    explicit FakeLink(const PoolConfig& cfg = PoolConfig{.small_buffers = 1024,
                                                         .large_buffers = 64})
        : owned_(std::make_unique<PacketPool>(cfg)), pool_(owned_.get()) {}
    explicit FakeLink(PacketPool& external) : pool_(&external) {}

    std::vector<PacketRef> frames;
    std::vector<std::uint64_t> stamps;  // clock value of each frame's dispatch
    std::size_t room_per_call = 4096;   // what room() says after refill()
    std::size_t room_left = 4096;
    PortCaps caps{};
    std::uint64_t refused = 0, dispatched = 0, flushes = 0;
    std::uint16_t last_port = 0xffff;
    std::uint64_t* clock = nullptr;
    std::function<void(const PacketRef&)> on_dispatch;
    // The guest port's own queue: when set, room_to() is bounded by it, each dispatched frame
    // takes one of it (until the test says the guest drained its queue), and a frame dispatched
    // when it is gone counts as one the switch would have dropped.
    std::optional<std::size_t> port_room;
    std::uint64_t port_overflows = 0;

    [[nodiscard]] PacketPool& pool() noexcept override { return *pool_; }
    [[nodiscard]] std::size_t room() noexcept override { return room_left; }
    bool dispatch(PacketRef& frame) noexcept override {
        if (room_left == 0) {
            ++refused;
            return false;
        }
        --room_left;
        ++dispatched;
        if (port_room) {
            if (*port_room == 0)
                ++port_overflows;
            else
                --*port_room;
        }
        if (on_dispatch) on_dispatch(frame);
        stamps.push_back(clock != nullptr ? ++*clock : 0);
        frames.push_back(std::move(frame));
        return true;
    }
    void flush() noexcept override { ++flushes; }
    [[nodiscard]] PortCaps caps_of(std::uint16_t port) noexcept override {
        last_port = port;
        return caps;
    }
    [[nodiscard]] std::size_t room_to(std::uint16_t port) noexcept override {
        last_port = port;
        return port_room ? std::min(room_left, *port_room) : room_left;
    }
    // A new engine call: the link takes room_per_call frames again.
    void refill() noexcept { room_left = room_per_call; }
};

// ---- guest-side frames ------------------------------------------------------------------------

struct Endpoint {
    Ipv4Addr ip;
    std::uint16_t port = 0;
};

// One guest segment to build.
struct GuestSeg {
    std::uint8_t flags = wire::tcp_flag::ack;
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    std::uint16_t window = 65535;
    wire::TcpOptions opts{};
    std::vector<std::uint8_t> payload;
    bool bad_checksum = false;  // a checksum that does not verify (the engine need not care)
};

// Ethernet + IPv4 + TCP with correct checksums, into a buffer of `pool`. Empty on exhaustion.
inline PacketRef build_guest_frame(PacketPool& pool, MacAddr guest_mac, MacAddr gw_mac,
                                   Endpoint guest, Endpoint remote, const GuestSeg& s) {
    wire::TcpRepr t;
    t.src_port = L4Port{guest.port};
    t.dst_port = L4Port{remote.port};
    t.seq = TcpSeq{s.seq};
    t.ack = TcpSeq{s.ack};
    t.flags = s.flags;
    t.window = s.window;
    t.options = s.opts;
    const std::size_t tcp_len = t.header_len() + s.payload.size();
    wire::Ipv4Repr ip;
    ip.src = guest.ip;
    ip.dst = remote.ip;
    ip.protocol = IpProto::tcp;
    ip.dont_fragment = true;
    ip.payload_len = static_cast<std::uint16_t>(tcp_len);
    const wire::EthernetRepr eth{gw_mac, guest_mac, std::nullopt, EtherType::ipv4};
    const std::size_t len = eth.header_len() + ip.header_len() + tcp_len;
    auto r = pool.try_alloc(len);
    if (!r) return {};
    PacketRef f = std::move(*r);
    MutByteView out = f.data();
    std::size_t off = 0;
    if (!eth.emit(out)) return {};
    off += eth.header_len();
    if (!ip.emit(out.subspan(off))) return {};
    off += ip.header_len();
    if (!t.emit(out.subspan(off))) return {};
    if (!s.payload.empty())
        std::memcpy(out.data() + off + t.header_len(), s.payload.data(), s.payload.size());
    const MutByteView seg = out.subspan(off, tcp_len);
    const std::uint32_t pseudo = pseudo_header_sum_v4(guest.ip, remote.ip, IpProto::tcp,
                                                      static_cast<std::uint16_t>(tcp_len));
    std::uint16_t c = csum_finish(csum_partial(ByteView{seg}, pseudo));
    if (s.bad_checksum) c = static_cast<std::uint16_t>(c ^ 0x5a5a);
    store_be16(seg.data() + 16, c);
    return f;
}

// The engine's view of a guest frame (parsed as the gateway port parses it). The views point into
// `frame`, which must outlive end_burst().
inline std::optional<TcpSegmentIn> segment_in(const PacketRef& frame, std::uint16_t in_port) {
    auto p = wire::parse_frame(frame.data());
    if (!p || !p->ipv4 || !p->tcp) return std::nullopt;
    TcpSegmentIn s{p->eth.src(), p->eth.vlan(), in_port, *p->ipv4, *p->tcp};
    return s;
}

// ---- frames from the engine -------------------------------------------------------------------

struct OutFrame {
    bool ok = false;
    std::string why;  // what failed to check, when !ok
    MacAddr eth_src, eth_dst;
    Ipv4Addr ip_src, ip_dst;
    bool tcp = false, icmp = false;
    // TCP
    std::uint16_t sport = 0, dport = 0;
    std::uint32_t seq = 0, ack = 0;
    std::uint8_t flags = 0;
    std::uint16_t window = 0;
    wire::TcpOptions opts{};
    std::vector<std::uint8_t> payload;
    bool needs_csum = false;
    bool gso = false;
    std::uint16_t gso_size = 0;
    std::size_t gso_segments = 0;
    std::size_t frame_len = 0;
    // ICMP
    std::uint8_t icmp_type = 0, icmp_code = 0;
    std::vector<std::uint8_t> icmp_body;  // after the 8-byte ICMP header: the quoted packet

    [[nodiscard]] bool has(std::uint8_t f) const noexcept { return (flags & f) == f; }
    [[nodiscard]] bool rst() const noexcept { return tcp && has(wire::tcp_flag::rst); }
    [[nodiscard]] bool syn() const noexcept { return tcp && has(wire::tcp_flag::syn); }
    [[nodiscard]] bool fin() const noexcept { return tcp && has(wire::tcp_flag::fin); }
    [[nodiscard]] std::uint32_t end_seq() const noexcept {
        return seq + static_cast<std::uint32_t>(payload.size()) + (syn() ? 1u : 0u) +
               (fin() ? 1u : 0u);
    }
    [[nodiscard]] std::string str() const {
        if (!ok) return "bad frame: " + why;
        if (icmp)
            return "ICMP type " + std::to_string(icmp_type) + " code " + std::to_string(icmp_code);
        std::string f;
        const char* names = "FSRPAUEC";
        for (int i = 0; i < 8; ++i)
            if ((flags >> i) & 1) f += names[i];
        return "TCP " + std::to_string(sport) + "->" + std::to_string(dport) + " [" + f +
               "] seq=" + std::to_string(seq) + " ack=" + std::to_string(ack) +
               " win=" + std::to_string(window) + " len=" + std::to_string(payload.size()) +
               (gso ? " gso=" + std::to_string(gso_size) : std::string());
    }
};

namespace detail {
inline bool tcp_checksum_ok(Ipv4Addr src, Ipv4Addr dst, ByteView seg) {
    const std::uint32_t pseudo =
        pseudo_header_sum_v4(src, dst, IpProto::tcp, static_cast<std::uint16_t>(seg.size()));
    return csum_fold(csum_partial(seg, pseudo)) == 0xffff;
}
}  // namespace detail

// Decodes and checks a frame the engine emitted. `seg_pool`: where GSO frames are re-segmented
// (with the switch's segment_gso()) to check that each piece is a valid frame; null skips that.
// `max_frame`: the largest ordinary frame (MTU + 14).
inline OutFrame parse_out(const PacketRef& f, PacketPool* seg_pool = nullptr,
                          std::size_t max_frame = 1514) {
    OutFrame o;
    o.frame_len = f.len();
    const auto p = wire::parse_frame(f.data());
    if (!p) {
        o.why = "does not parse";
        return o;
    }
    o.eth_src = p->eth.src();
    o.eth_dst = p->eth.dst();
    if (!p->ipv4) {
        o.why = "not IPv4";
        return o;
    }
    const wire::Ipv4View& ip = *p->ipv4;
    o.ip_src = ip.src();
    o.ip_dst = ip.dst();
    if (!ip.header_checksum_ok()) {
        o.why = "bad IPv4 header checksum";
        return o;
    }
    if (ip.is_fragment()) {
        o.why = "a fragment";
        return o;
    }
    const virtio::NetHdr& vnet = f.meta().vnet;
    if (p->icmpv4) {
        o.icmp = true;
        if (!p->icmpv4->checksum_ok()) {
            o.why = "bad ICMP checksum";
            return o;
        }
        o.icmp_type = static_cast<std::uint8_t>(p->icmpv4->type());
        o.icmp_code = p->icmpv4->code();
        const ByteView b = p->icmpv4->payload();
        o.icmp_body.assign(reinterpret_cast<const std::uint8_t*>(b.data()),
                           reinterpret_cast<const std::uint8_t*>(b.data()) + b.size());
        o.ok = true;
        return o;
    }
    if (!p->tcp) {
        o.why = "neither TCP nor ICMP";
        return o;
    }
    const wire::TcpView& t = *p->tcp;
    o.tcp = true;
    o.sport = t.src_port().v;
    o.dport = t.dst_port().v;
    o.seq = t.seq().v;
    o.ack = t.ack().v;
    o.flags = t.flags();
    o.window = t.window();
    o.opts = t.parse_options();
    if (o.opts.malformed) {
        o.why = "malformed TCP options";
        return o;
    }
    const ByteView pl = t.payload();
    o.payload.assign(reinterpret_cast<const std::uint8_t*>(pl.data()),
                     reinterpret_cast<const std::uint8_t*>(pl.data()) + pl.size());
    o.needs_csum = vnet.needs_csum();
    const ByteView seg = t.segment();
    const std::size_t l4_off = p->eth.header_len() + ip.header_len();
    if (o.needs_csum) {
        if (vnet.csum_start != l4_off || vnet.csum_offset != 16) {
            o.why = "NEEDS_CSUM with csum_start/csum_offset not at the TCP checksum";
            return o;
        }
        // Complete it as the guest's driver would, then check the result.
        std::vector<std::byte> copy(seg.begin(), seg.end());
        store_be16(copy.data() + 16, csum_finish(csum_partial(ByteView{copy})));
        if (!detail::tcp_checksum_ok(o.ip_src, o.ip_dst, ByteView{copy})) {
            o.why = "partial checksum not seeded with the pseudo-header sum";
            return o;
        }
    } else if (!detail::tcp_checksum_ok(o.ip_src, o.ip_dst, seg)) {
        o.why = "bad TCP checksum";
        return o;
    }
    o.gso = vnet.is_gso();
    if (o.gso) {
        o.gso_size = vnet.gso_size;
        if (vnet.gso_kind() != virtio::kGsoTcpV4 || vnet.gso_size == 0) {
            o.why = "GSO type is not TCPv4 or gso_size is 0";
            return o;
        }
        const std::size_t want = o.payload.size() / o.gso_size + 2;
        if (seg_pool != nullptr && want <= 512) {
            std::vector<PacketRef> pieces(want);
            const auto n = segment_gso(f, *seg_pool, pieces);
            if (!n) {
                o.why = "segment_gso refused the GSO frame";
                return o;
            }
            o.gso_segments = *n;
            std::vector<std::uint8_t> joined;
            std::uint32_t next = o.seq;
            for (std::size_t i = 0; i < *n; ++i) {
                const OutFrame q = parse_out(pieces[i], nullptr, 65535 + 14);
                if (!q.ok || q.gso || q.payload.size() > o.gso_size || q.seq != next) {
                    o.why = "GSO piece " + std::to_string(i) + " bad: " + q.str();
                    return o;
                }
                next += static_cast<std::uint32_t>(q.payload.size());
                joined.insert(joined.end(), q.payload.begin(), q.payload.end());
            }
            if (joined != o.payload) {
                o.why = "GSO pieces do not add up to the frame's payload";
                return o;
            }
        }
    } else if (f.len() > max_frame + (p->eth.vlan() ? 4u : 0u)) {
        o.why = "ordinary frame of " + std::to_string(f.len()) + " bytes exceeds " +
                std::to_string(max_frame);
        return o;
    }
    o.ok = true;
    return o;
}

// ---- the whole bench --------------------------------------------------------------------------

inline constexpr MacAddr kGatewayMac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}};
inline constexpr MacAddr kGuestMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};
inline constexpr Ipv4Addr kGatewayIp = Ipv4Addr::from_octets(192, 168, 127, 1);
inline constexpr Ipv4Addr kGuestIp = Ipv4Addr::from_octets(192, 168, 127, 2);
inline constexpr Ipv4Addr kAliasIp = Ipv4Addr::from_octets(192, 168, 127, 254);
inline constexpr Ipv4Addr kRemoteIp = Ipv4Addr::from_octets(203, 0, 113, 5);

inline TcpConfig default_tcp_config() {
    TcpConfig c;
    c.gateway_mac = kGatewayMac;
    c.gateway = kGatewayIp;
    c.host_alias = kAliasIp;
    c.subnet = Ipv4Addr::from_octets(192, 168, 127, 0);
    c.prefix_len = 24;
    c.mtu = 1500;
    return c;
}

struct FakeNetOptions {
    PeekMode mode = PeekMode::peek_off;
    std::size_t discard_area = 256 * 1024;
    std::size_t sndbuf = 64 * 1024;
    PoolConfig pool{.small_buffers = 1024, .large_buffers = 64};
    PacketPool* external_pool = nullptr;  // use this instead of a pool of the link's own
    FlowTableConfig table{.capacity = 64, .max_fd = 4096, .cache_slots = 16};
    TcpConfig tcp = default_tcp_config();
};

// Engine + fakes, and a driver loop that plays the network thread.
class FakeNet {
  public:
    explicit FakeNet(const FakeNetOptions& o = {})
        : socks(o.mode, o.discard_area, o.sndbuf),
          poller(&socks),
          link(o.external_pool != nullptr ? FakeLink(*o.external_pool) : FakeLink(o.pool)),
          table(o.table),
          cfg(o.tcp),
          eng(cfg, table, socks, poller, link) {
        link.clock = &socks.clock;
    }

    FakeSockets socks;
    FakePoller poller;
    FakeLink link;
    FlowTable table;
    TcpConfig cfg;
    TcpEngine eng;
    std::uint64_t now = 1'000'000;
    std::uint16_t in_port = 1;

    // Guest frames as one burst: process_segment() for each, end_burst(), then the event loop.
    void burst(std::vector<PacketRef> frames) {
        link.refill();
        for (const PacketRef& f : frames) {
            if (!f) continue;
            if (auto s = segment_in(f, in_port)) eng.process_segment(*s, now);
        }
        eng.end_burst(now);
        frames.clear();
        pump();
    }
    // Delivers the readiness the poller queued (edge-triggered) and serves pending flows until
    // nothing is left to do (bounded). Returns whether anything happened.
    bool pump(int max_rounds = 64) {
        bool any_at_all = false;
        for (int r = 0; r < max_rounds; ++r) {
            bool any = false;
            std::vector<std::pair<int, FakePoller::Watch>> w(poller.watched.begin(),
                                                             poller.watched.end());
            for (const auto& [fd, watch] : w) {
                FakeSocket* s = socks.find(fd);
                if (s == nullptr || s->closed || s->wake == 0) continue;
                const std::uint32_t mask = watch.interest | kEvAlways;
                const bool woken = (s->wake & mask) != 0;
                s->wake = 0;
                if (!woken) continue;
                const std::uint32_t ev = socks.level(fd) & mask;
                if (ev == 0) continue;
                link.refill();
                eng.process_socket_event(watch.id, ev, now);
                any = true;
            }
            if (eng.has_pending()) {
                link.refill();
                eng.run_pending(now);
                any = true;
            }
            any_at_all = any_at_all || any;
            if (!any) break;
        }
        return any_at_all;
    }
    void tick(std::uint64_t advance_ms) {
        now += advance_ms;
        link.refill();
        eng.on_tick(now);
        pump();
    }
    // The frames emitted so far, decoded, and forgotten.
    std::vector<OutFrame> take() {
        std::vector<OutFrame> v;
        for (PacketRef& f : link.frames) {
            v.push_back(parse_out(f, &link.pool(), cfg.mtu + 14));
            f.reset();
        }
        link.frames.clear();
        link.stamps.clear();
        return v;
    }
    [[nodiscard]] std::uint32_t live_flows() const noexcept {
        return eng.flows_in(TcpState::connecting) + eng.flows_in(TcpState::established) +
               eng.flows_in(TcpState::closing);
    }
};

}  // namespace slipway::nat::fake
