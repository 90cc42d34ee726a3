// Deterministic fakes around nat::UdpEngine and nat::IcmpEngine (a datagram socket layer, a poller
// that knows it, a bench holding both engines), guest-side UDP/ICMP frame builders, and a checker
// for the frames the engines emit, shared by the engines' unit tests and their fuzz target.
//
// FakeDgramSockets models each fd as the kernel's datagram socket as DgramSockets documents it: a
// connected UDP or ping socket (its peer, a kernel-chosen port or ping identifier, a receive queue
// the test fills, every datagram sent, an IP_RECVERR error queue with the socket's pending error)
// or the shared raw ICMP socket (send_to() recorded, received IPv4 packets with their source).
// Scripts make the next open_connected() fail (-ENETUNREACH, -EMFILE, ...), the next send_burst()
// calls fail (-EAGAIN, -ECONNREFUSED) or take only part of a burst, and open_raw_icmp() fail.
// Every breach of the contract by an engine (a call on a closed or unknown fd, a double close,
// closing a socket still watched, a ping socket sent something other than an echo request, a raw
// send with a bad ICMP checksum) is recorded in `violations` (or aborts, for the fuzzer).
// FakeDgramPoller keeps each fd's interest and arms edge-triggered wake-ups as epoll does;
// DgramNet::pump() delivers them the way the gateway's driver does (kRawIcmpSocket to the ICMP
// engine, flow ids by their key's protocol). DgramNet::take() checks and decodes what reached the
// FakeLink (fake_net.hpp): Ethernet and IPv4 headers, UDP and ICMP checksums (partial checksums
// completed as the guest's driver would), frame sizes against the MTU, and IPv4 fragments, which
// it reassembles with nat::Reassembler before decoding the datagram they carry.
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
#include <tuple>
#include <utility>
#include <vector>

#include "fake_net.hpp"
#include "slipway/core/bytes.hpp"
#include "slipway/core/checksum.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/core/wire/frame.hpp"
#include "slipway/core/wire/icmpv4.hpp"
#include "slipway/core/wire/ipv4.hpp"
#include "slipway/core/wire/udp.hpp"
#include "slipway/nat/dgram_socket.hpp"
#include "slipway/nat/flow_table.hpp"
#include "slipway/nat/fragment.hpp"
#include "slipway/nat/icmp.hpp"
#include "slipway/nat/limits.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/nat/udp.hpp"

namespace slipway::nat::fake {

using Bytes = std::vector<std::uint8_t>;

// ---- byte helpers -----------------------------------------------------------------------------

// Payload byte `i` of a datagram tagged `tag`: every datagram of a test or fuzz run can carry its
// own content, so what arrives can be checked byte for byte.
[[nodiscard]] inline std::uint8_t pattern_byte(std::uint32_t tag, std::size_t i) noexcept {
    const auto x = (static_cast<std::uint32_t>(i) + 1u) * 0x9E3779B1u ^ tag * 0x85EBCA6Bu;
    return static_cast<std::uint8_t>((x ^ (x >> 15)) >> 7);
}
// `n` bytes: the tag (big-endian, as far as it fits), then the pattern.
[[nodiscard]] inline Bytes pattern(std::uint32_t tag, std::size_t n) {
    Bytes v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = i < 4 ? static_cast<std::uint8_t>(tag >> (24 - 8 * i)) : pattern_byte(tag, i);
    return v;
}
// The tag of a patterned payload and whether the rest matches (payloads shorter than 4 bytes
// carry no tag: nullopt).
[[nodiscard]] inline std::optional<std::uint32_t> pattern_tag(std::span<const std::uint8_t> p) {
    if (p.size() < 4) return std::nullopt;
    const std::uint32_t tag =
        std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
    return tag;
}
[[nodiscard]] inline bool pattern_ok(std::span<const std::uint8_t> p) {
    const auto tag = pattern_tag(p);
    if (!tag) return true;
    for (std::size_t i = 4; i < p.size(); ++i)
        if (p[i] != pattern_byte(*tag, i)) return false;
    return true;
}

[[nodiscard]] inline ByteView as_bytes(std::span<const std::uint8_t> v) noexcept {
    return ByteView{reinterpret_cast<const std::byte*>(v.data()), v.size()};
}
[[nodiscard]] inline Bytes to_vec(ByteView v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
    return Bytes(p, p + v.size());
}
inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}
[[nodiscard]] inline std::uint16_t get16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

// An ICMP message (header with a correct checksum, then `payload`).
[[nodiscard]] inline Bytes icmp_message(std::uint8_t type, std::uint8_t code, std::uint32_t rest,
                                        std::span<const std::uint8_t> payload) {
    Bytes m(8 + payload.size());
    m[0] = type;
    m[1] = code;
    put16(m, 4, static_cast<std::uint16_t>(rest >> 16));
    put16(m, 6, static_cast<std::uint16_t>(rest));
    std::copy(payload.begin(), payload.end(), m.begin() + 8);
    put16(m, 2, csum_finish(csum_partial(as_bytes(m))));
    return m;
}
[[nodiscard]] inline Bytes echo(std::uint8_t type, std::uint16_t id, std::uint16_t seq,
                                std::span<const std::uint8_t> payload) {
    return icmp_message(type, 0, wire::Icmpv4Repr::echo_rest(id, seq), payload);
}
[[nodiscard]] inline bool icmp_checksum_ok(std::span<const std::uint8_t> m) {
    return m.size() >= 8 && csum_fold(csum_partial(as_bytes(m))) == 0xffff;
}
// A UDP datagram (header with a correct checksum, then `payload`).
[[nodiscard]] inline Bytes udp_datagram(Ipv4Addr src, std::uint16_t sport, Ipv4Addr dst,
                                        std::uint16_t dport,
                                        std::span<const std::uint8_t> payload) {
    Bytes d(8 + payload.size());
    put16(d, 0, sport);
    put16(d, 2, dport);
    put16(d, 4, static_cast<std::uint16_t>(d.size()));
    std::copy(payload.begin(), payload.end(), d.begin() + 8);
    const std::uint32_t pseudo =
        pseudo_header_sum_v4(src, dst, IpProto::udp, static_cast<std::uint16_t>(d.size()));
    const std::uint16_t c = csum_finish(csum_partial(as_bytes(d), pseudo));
    put16(d, 6, c == 0 ? 0xffff : c);
    return d;
}
// An IPv4 packet (20-byte header, valid checksum) around `l4`. `total_len`: what the header says
// (default: the real length; an ICMP error's quote says the original datagram's length).
[[nodiscard]] inline Bytes ipv4_packet(Ipv4Addr src, Ipv4Addr dst, IpProto proto,
                                       std::span<const std::uint8_t> l4, std::uint16_t ident = 0,
                                       std::uint8_t ttl = 64,
                                       std::optional<std::uint16_t> total_len = std::nullopt) {
    Bytes p(20 + l4.size());
    p[0] = 0x45;
    put16(p, 2, total_len.value_or(static_cast<std::uint16_t>(p.size())));
    put16(p, 4, ident);
    p[8] = ttl;
    p[9] = static_cast<std::uint8_t>(proto);
    put16(p, 12, static_cast<std::uint16_t>(src.v >> 16));
    put16(p, 14, static_cast<std::uint16_t>(src.v));
    put16(p, 16, static_cast<std::uint16_t>(dst.v >> 16));
    put16(p, 18, static_cast<std::uint16_t>(dst.v));
    put16(p, 10, csum_finish(csum_partial(as_bytes(std::span(p).first(20)))));
    std::copy(l4.begin(), l4.end(), p.begin() + 20);
    return p;
}

// ---- FakeDgramSockets -------------------------------------------------------------------------

struct FakeDatagram {
    Bytes bytes;
    Ipv4Addr from;
};

struct FakeDgramSocket {
    int fd = -1;
    int protocol = 0;  // 0: UDP, IPPROTO_ICMP: a ping socket
    bool raw = false;
    sockaddr_in addr{};       // the connected peer
    std::uint16_t local = 0;  // the kernel's local port (UDP) or echo identifier (ping)
    std::uint64_t opened_at = 0;
    bool closed = false;
    std::uint32_t close_calls = 0;
    // Receive side.
    std::deque<FakeDatagram> rx;
    std::deque<SockError> errq;
    int so_error = 0;  // reported once, as -so_error, by the next send_burst() or recv_burst()
    std::uint32_t recv_calls = 0, error_reads = 0;
    std::size_t delivered = 0;  // datagrams recv_burst() handed out
    // Send side.
    std::vector<Bytes> sent;               // send_burst(): every datagram taken, in order
    std::vector<std::size_t> burst_sizes;  // send_burst(): datagrams offered per call
    std::vector<std::pair<Ipv4Addr, Bytes>> sent_to;  // send_to() (raw socket)
    std::deque<int> send_script;  // per send_burst() call: < 0 fails with it, >= 0 takes at most
    std::uint32_t send_calls = 0;
    std::uint32_t wake = 0;  // readiness changes since the poller last delivered

    [[nodiscard]] Ipv4Addr remote_ip() const noexcept {
        return Ipv4Addr{ntohl(addr.sin_addr.s_addr)};
    }
    [[nodiscard]] std::uint16_t remote_port() const noexcept { return ntohs(addr.sin_port); }
};

class FakeDgramSockets final : public DgramSockets {
  public:
    std::map<int, FakeDgramSocket> socks;
    std::vector<int> opened;  // fds in order of creation
    // Results of the next open_connected() calls, in order: 0 = a socket, -errno = failure.
    std::deque<int> open_script;
    int raw_open_result = 0;  // open_raw_icmp(): 0 = a socket, -errno = failure
    std::uint32_t open_calls = 0, open_failures = 0, raw_open_calls = 0;
    std::vector<std::string> violations;
    bool abort_on_violation = false;
    std::uint64_t clock = 0;
    int next_fd = 100;
    int last_fd = 4000;  // fds above this: EMFILE
    std::uint16_t next_local = 33000;
    // Whether the poller still watches an fd (checked at close: an engine unwatches first).
    std::function<bool(int)> is_watched;

    [[nodiscard]] FakeDgramSocket* find(int fd) noexcept {
        auto it = socks.find(fd);
        return it == socks.end() ? nullptr : &it->second;
    }
    [[nodiscard]] const FakeDgramSocket* find(int fd) const noexcept {
        auto it = socks.find(fd);
        return it == socks.end() ? nullptr : &it->second;
    }
    FakeDgramSocket& at(int fd) {
        FakeDgramSocket* s = find(fd);
        if (s == nullptr) {
            std::fprintf(stderr, "fake_dgram: no socket %d\n", fd);
            std::abort();
        }
        return *s;
    }
    [[nodiscard]] int last_opened() const noexcept { return opened.empty() ? -1 : opened.back(); }
    // The open (not closed) sockets: all, or of one kind.
    [[nodiscard]] std::size_t open_count() const noexcept {
        std::size_t n = 0;
        for (const auto& [fd, s] : socks)
            n += s.closed ? 0 : 1;
        return n;
    }
    [[nodiscard]] std::size_t open_count(int protocol, bool raw = false) const noexcept {
        std::size_t n = 0;
        for (const auto& [fd, s] : socks)
            n += (!s.closed && s.raw == raw && s.protocol == protocol) ? 1 : 0;
        return n;
    }
    [[nodiscard]] int raw_fd() const noexcept {
        for (const auto& [fd, s] : socks)
            if (s.raw && !s.closed) return fd;
        return -1;
    }
    // Every socket ever opened was closed exactly once.
    [[nodiscard]] bool all_closed() const noexcept {
        for (const auto& [fd, s] : socks)
            if (!s.closed || s.close_calls != 1) return false;
        return true;
    }

    // ---- controls for the test -----------------------------------------------------------------

    // A datagram arrives (from the connected peer unless `from` says otherwise).
    void deliver(int fd, Bytes bytes, std::optional<Ipv4Addr> from = std::nullopt) {
        FakeDgramSocket& s = at(fd);
        s.rx.push_back(FakeDatagram{std::move(bytes), from.value_or(s.remote_ip())});
        s.wake |= sock_event::in;
    }
    // An ICMP error (or a local one) lands in the error queue; with IP_RECVERR the kernel also
    // sets the socket's pending error (sk_err), which the next send or receive reports.
    void push_error(int fd, const SockError& e, bool set_pending = true) {
        FakeDgramSocket& s = at(fd);
        s.errq.push_back(e);
        if (set_pending) s.so_error = e.err;
        s.wake |= sock_event::error | sock_event::in;
    }
    // The next send_burst() calls on `fd`: each entry < 0 fails with it, >= 0 takes at most that
    // many datagrams.
    void script_send(int fd, std::initializer_list<int> results) {
        FakeDgramSocket& s = at(fd);
        s.send_script.insert(s.send_script.end(), results.begin(), results.end());
    }
    // Readiness now (what udp_poll would say).
    [[nodiscard]] std::uint32_t level(int fd) const noexcept {
        const FakeDgramSocket* s = find(fd);
        if (s == nullptr || s->closed) return 0;
        std::uint32_t ev = sock_event::out;
        if (!s->rx.empty() || s->so_error != 0) ev |= sock_event::in;
        if (!s->errq.empty() || s->so_error != 0) ev |= sock_event::error;
        return ev;
    }

    // ---- DgramSockets --------------------------------------------------------------------------

    int open_connected(int protocol, const sockaddr* to, socklen_t len) noexcept override {
        ++open_calls;
        int r = 0;
        if (!open_script.empty()) {
            r = open_script.front();
            open_script.pop_front();
        }
        if (to == nullptr || to->sa_family != AF_INET || len < sizeof(sockaddr_in)) {
            violate("open_connected: not an AF_INET address");
            return -EAFNOSUPPORT;
        }
        if (protocol != 0 && protocol != IPPROTO_ICMP) {
            violate("open_connected: protocol " + std::to_string(protocol));
            return -EPROTONOSUPPORT;
        }
        if (r < 0) {
            ++open_failures;
            return r;
        }
        const int fd = new_socket();
        if (fd < 0) return fd;
        FakeDgramSocket& s = at(fd);
        s.protocol = protocol;
        std::memcpy(&s.addr, to, sizeof(sockaddr_in));
        if (protocol == 0 && s.remote_port() == 0) violate("UDP socket connected to port 0");
        return fd;
    }
    int open_raw_icmp() noexcept override {
        ++raw_open_calls;
        if (raw_open_result < 0) return raw_open_result;
        const int fd = new_socket();
        if (fd < 0) return fd;
        FakeDgramSocket& s = at(fd);
        s.raw = true;
        s.protocol = IPPROTO_ICMP;
        return fd;
    }
    int send_burst(int fd, std::span<const iovec> datagrams) noexcept override {
        FakeDgramSocket* s = live(fd, "send_burst");
        if (s == nullptr) return -EBADF;
        ++s->send_calls;
        if (s->raw) {
            violate("send_burst on the unconnected raw socket " + std::to_string(fd));
            return -EDESTADDRREQ;
        }
        if (datagrams.empty()) {
            violate("send_burst of nothing on fd " + std::to_string(fd));
            return 0;
        }
        s->burst_sizes.push_back(datagrams.size());
        if (s->so_error != 0) return -take_error(*s);
        std::size_t limit = datagrams.size();
        if (!s->send_script.empty()) {
            const int r = s->send_script.front();
            s->send_script.pop_front();
            if (r < 0) return r;
            limit = std::min(limit, static_cast<std::size_t>(r));
            if (limit == 0) return -EAGAIN;
        }
        for (std::size_t i = 0; i < limit; ++i) {
            const iovec& v = datagrams[i];
            const auto* p = static_cast<const std::uint8_t*>(v.iov_base);
            Bytes d(p, p + v.iov_len);
            if (s->protocol == IPPROTO_ICMP && (d.size() < 8 || d[0] != 8 || d[1] != 0))
                violate("ping socket " + std::to_string(fd) +
                        " sent something not an echo request");
            s->sent.push_back(std::move(d));
        }
        return static_cast<int>(limit);
    }
    int send_to(int fd, Ipv4Addr to, std::span<const std::byte> msg) noexcept override {
        FakeDgramSocket* s = live(fd, "send_to");
        if (s == nullptr) return -EBADF;
        ++s->send_calls;
        if (!s->raw) violate("send_to on the connected socket " + std::to_string(fd));
        Bytes m = to_vec(msg);
        // A raw ICMP socket sends the bytes as they are: the kernel computes no checksum.
        if (!icmp_checksum_ok(m)) violate("raw ICMP send with a bad checksum");
        if (!s->send_script.empty()) {
            const int r = s->send_script.front();
            s->send_script.pop_front();
            if (r < 0) return r;
        }
        s->sent_to.emplace_back(to, std::move(m));
        return static_cast<int>(msg.size());
    }
    int recv_burst(int fd, std::span<DgramIn> msgs) noexcept override {
        FakeDgramSocket* s = live(fd, "recv_burst");
        if (s == nullptr) return -EBADF;
        ++s->recv_calls;
        if (s->so_error != 0) return -take_error(*s);
        std::size_t n = 0;
        for (; n < msgs.size() && !s->rx.empty(); ++n) {
            const FakeDatagram d = std::move(s->rx.front());
            s->rx.pop_front();
            DgramIn& m = msgs[n];
            const std::size_t h = std::min(d.bytes.size(), m.head.iov_len);
            if (h != 0) std::memcpy(m.head.iov_base, d.bytes.data(), h);
            const std::size_t t = std::min(d.bytes.size() - h, m.tail.iov_len);
            if (t != 0) std::memcpy(m.tail.iov_base, d.bytes.data() + h, t);
            m.len = d.bytes.size();
            m.from = d.from;
            ++s->delivered;
        }
        return static_cast<int>(n);
    }
    bool read_error(int fd, SockError& e) noexcept override {
        FakeDgramSocket* s = live(fd, "read_error");
        if (s == nullptr || s->errq.empty()) return false;
        ++s->error_reads;
        e = s->errq.front();
        s->errq.pop_front();
        // MSG_ERRQUEUE takes the pending error along with the entry that raised it; the next
        // entry's error, if any, becomes pending (sock_dequeue_err_skb()).
        s->so_error = s->errq.empty() ? 0 : s->errq.front().err;
        return true;
    }
    void close(int fd) noexcept override {
        FakeDgramSocket* s = find(fd);
        if (s == nullptr) {
            violate("close of unknown fd " + std::to_string(fd));
            return;
        }
        ++s->close_calls;
        if (s->closed) {
            violate("close of fd " + std::to_string(fd) + " twice");
            return;
        }
        if (is_watched && is_watched(fd))
            violate("close of fd " + std::to_string(fd) + " still watched");
        s->closed = true;
    }

    void violate(const std::string& what) {
        if (abort_on_violation) {
            std::fprintf(stderr, "fake_dgram: DgramSockets contract broken: %s\n", what.c_str());
            std::abort();
        }
        violations.push_back(what);
    }

  private:
    int new_socket() {
        if (next_fd > last_fd) return -EMFILE;
        const int fd = next_fd++;
        FakeDgramSocket& s = socks[fd];
        s.fd = fd;
        s.opened_at = ++clock;
        s.local = next_local++;
        opened.push_back(fd);
        return fd;
    }
    FakeDgramSocket* live(int fd, const char* op) {
        FakeDgramSocket* s = find(fd);
        if (s == nullptr || s->closed) {
            violate(std::string(op) + " on " + (s == nullptr ? "unknown" : "closed") + " fd " +
                    std::to_string(fd));
            return nullptr;
        }
        return s;
    }
    static int take_error(FakeDgramSocket& s) {
        const int e = s.so_error;
        s.so_error = 0;
        return e;
    }
};

// An IP_RECVERR entry from an ICMP message: `quoted` is the start of the payload of the datagram it
// is about (what the kernel copies into the error message).
[[nodiscard]] inline SockError icmp_error(int err, std::uint8_t type, std::uint8_t code,
                                          Ipv4Addr offender, std::span<const std::uint8_t> quoted,
                                          std::uint32_t info = 0) {
    SockError e;
    e.err = err;
    e.from_icmp = true;
    e.type = type;
    e.code = code;
    e.info = info;
    e.offender = offender;
    e.data_len = std::min(quoted.size(), e.data.size());
    for (std::size_t i = 0; i < e.data_len; ++i)
        e.data[i] = static_cast<std::byte>(quoted[i]);
    return e;
}

// ---- FakeDgramPoller ----------------------------------------------------------------------------

class FakeDgramPoller final : public Poller {
  public:
    explicit FakeDgramPoller(FakeDgramSockets& s) : socks_(s) {
        socks_.is_watched = [this](int fd) { return is_watched(fd); };
    }
    ~FakeDgramPoller() override { socks_.is_watched = nullptr; }
    FakeDgramPoller(const FakeDgramPoller&) = delete;
    FakeDgramPoller& operator=(const FakeDgramPoller&) = delete;

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
        const FakeDgramSocket* s = socks_.find(fd);
        if (s == nullptr || s->closed)
            socks_.violate("watch of a closed or unknown fd " + std::to_string(fd));
        if (watched.count(fd) != 0)
            socks_.violate("watch of fd " + std::to_string(fd) + " already watched (EEXIST)");
        watched[fd] = Watch{id, interest};
        arm(fd, interest);
        return true;
    }
    void rewatch(int fd, FlowId id, std::uint32_t interest) noexcept override {
        ++rewatch_calls;
        if (watched.count(fd) == 0)
            socks_.violate("rewatch of fd " + std::to_string(fd) + " not watched (ENOENT)");
        watched[fd] = Watch{id, interest};
        arm(fd, interest);
    }
    void unwatch(int fd) noexcept override {
        ++unwatch_calls;
        if (watched.erase(fd) == 0)
            socks_.violate("unwatch of fd " + std::to_string(fd) + " not watched (ENOENT)");
    }
    [[nodiscard]] bool is_watched(int fd) const noexcept { return watched.count(fd) != 0; }
    [[nodiscard]] std::optional<FlowId> id_of(int fd) const noexcept {
        auto it = watched.find(fd);
        if (it == watched.end()) return std::nullopt;
        return it->second.id;
    }

  private:
    // epoll_ctl ADD/MOD queue the fd when it is already ready for its interest.
    void arm(int fd, std::uint32_t interest) {
        FakeDgramSocket* s = socks_.find(fd);
        if (s != nullptr) s->wake |= socks_.level(fd) & (interest | kEvAlways);
    }
    FakeDgramSockets& socks_;
};

// ---- guest-side frames ------------------------------------------------------------------------

// Ethernet (from the guest's MAC to the gateway's, optionally tagged) around an IPv4 packet.
inline PacketRef build_ipv4_frame(PacketPool& pool, MacAddr guest_mac,
                                  std::span<const std::uint8_t> packet,
                                  std::optional<wire::VlanTag> vlan = std::nullopt) {
    const wire::EthernetRepr eth{kGatewayMac, guest_mac, vlan, EtherType::ipv4};
    auto r = pool.try_alloc(eth.header_len() + packet.size());
    if (!r) return {};
    PacketRef f = std::move(*r);
    const MutByteView out = f.data();
    if (!eth.emit(out)) return {};
    std::memcpy(out.data() + eth.header_len(), packet.data(), packet.size());
    return f;
}
inline PacketRef build_udp_frame(PacketPool& pool, MacAddr guest_mac, Endpoint guest,
                                 Endpoint remote, std::span<const std::uint8_t> payload,
                                 std::optional<wire::VlanTag> vlan = std::nullopt) {
    const Bytes d = udp_datagram(guest.ip, guest.port, remote.ip, remote.port, payload);
    return build_ipv4_frame(pool, guest_mac, ipv4_packet(guest.ip, remote.ip, IpProto::udp, d, 7),
                            vlan);
}
inline PacketRef build_icmp_frame(PacketPool& pool, MacAddr guest_mac, Ipv4Addr src, Ipv4Addr dst,
                                  std::span<const std::uint8_t> icmp,
                                  std::optional<wire::VlanTag> vlan = std::nullopt) {
    return build_ipv4_frame(pool, guest_mac, ipv4_packet(src, dst, IpProto::icmp, icmp, 9), vlan);
}

// The engines' view of a guest frame (parsed as the gateway port parses it). The views point into
// `frame`, which must outlive end_burst().
inline std::optional<UdpDatagramIn> udp_in(const PacketRef& frame, std::uint16_t in_port) {
    auto p = wire::parse_frame(frame.data());
    if (!p || !p->ipv4 || !p->udp) return std::nullopt;
    return UdpDatagramIn{p->eth.src(), p->eth.vlan(), in_port, *p->ipv4, *p->udp};
}
inline std::optional<IcmpMessageIn> icmp_in(const PacketRef& frame, std::uint16_t in_port) {
    auto p = wire::parse_frame(frame.data());
    if (!p || !p->ipv4 || !p->icmpv4) return std::nullopt;
    return IcmpMessageIn{p->eth.src(), p->eth.vlan(), in_port, *p->ipv4, *p->icmpv4};
}

// ---- frames from the engines ------------------------------------------------------------------

struct DgramOut {
    bool ok = false;
    std::string why;  // what failed to check, when !ok
    MacAddr eth_src, eth_dst;
    std::optional<wire::VlanTag> vlan;
    Ipv4Addr ip_src, ip_dst;
    IpProto proto = IpProto::udp;
    std::uint16_t ident = 0;
    std::uint8_t ttl = 0;
    bool dont_fragment = false;
    bool is_fragment = false;   // a fragment, not decoded further (take() reassembles it)
    std::size_t fragments = 0;  // how many fragments this datagram was reassembled from (0: whole)
    std::size_t frame_len = 0;
    // UDP
    bool udp = false;
    std::uint16_t sport = 0, dport = 0;
    bool needs_csum = false;  // partial checksum (completed and checked)
    std::uint16_t udp_checksum = 0;
    // ICMP
    bool icmp = false;
    std::uint8_t icmp_type = 0, icmp_code = 0;
    std::uint32_t icmp_rest = 0;
    // The UDP payload, or the ICMP message after its 8-byte header.
    Bytes payload;

    [[nodiscard]] std::uint16_t echo_id() const noexcept {
        return static_cast<std::uint16_t>(icmp_rest >> 16);
    }
    [[nodiscard]] std::uint16_t echo_seq() const noexcept {
        return static_cast<std::uint16_t>(icmp_rest);
    }
    [[nodiscard]] std::string str() const {
        if (!ok) return "bad frame: " + why;
        std::string s = ip_src.to_string() + " -> " + ip_dst.to_string();
        if (fragments != 0) s += " (" + std::to_string(fragments) + " fragments)";
        if (is_fragment) return s + " fragment";
        if (udp)
            return "UDP " + s + " " + std::to_string(sport) + "->" + std::to_string(dport) +
                   " len=" + std::to_string(payload.size());
        return "ICMP " + s + " type " + std::to_string(icmp_type) + " code " +
               std::to_string(icmp_code) + " rest " + std::to_string(icmp_rest) +
               " len=" + std::to_string(payload.size());
    }
};

// Checks one frame an engine emitted: Ethernet, a 20-byte IPv4 header with a valid checksum and a
// total length that is the frame's, at most `mtu` bytes of IP; a fragment's rules (RFC 791 §3.2:
// DF off, every fragment but the last a multiple of 8 bytes); then, for a whole datagram, its UDP
// header and checksum (or the partial checksum the link's caps allow, completed as a driver would)
// or its ICMP checksum.
inline DgramOut check_frame(const PacketRef& f, std::size_t mtu) {
    DgramOut o;
    o.frame_len = f.len();
    const auto eth = wire::EthernetView::parse(f.data());
    if (!eth) {
        o.why = "Ethernet does not parse";
        return o;
    }
    o.eth_src = eth->src();
    o.eth_dst = eth->dst();
    o.vlan = eth->vlan();
    if (eth->ethertype() != EtherType::ipv4) {
        o.why = "not IPv4";
        return o;
    }
    const auto ip = wire::Ipv4View::parse(eth->payload());
    if (!ip) {
        o.why = "IPv4 does not parse";
        return o;
    }
    o.ip_src = ip->src();
    o.ip_dst = ip->dst();
    o.proto = ip->protocol();
    o.ident = ip->ident();
    o.ttl = ip->ttl();
    o.dont_fragment = ip->dont_fragment();
    if (!ip->header_checksum_ok()) {
        o.why = "bad IPv4 header checksum";
        return o;
    }
    if (ip->header_len() != 20) {
        o.why = "IPv4 options";
        return o;
    }
    if (ip->total_len() != eth->payload().size()) {
        o.why = "IPv4 total length " + std::to_string(ip->total_len()) + " but the frame holds " +
                std::to_string(eth->payload().size());
        return o;
    }
    if (ip->total_len() > mtu) {
        o.why = "IPv4 packet of " + std::to_string(ip->total_len()) + " bytes exceeds the MTU " +
                std::to_string(mtu);
        return o;
    }
    if (ip->ttl() == 0) {
        o.why = "TTL 0";
        return o;
    }
    const virtio::NetHdr& vnet = f.meta().vnet;
    if (vnet.is_gso()) {
        o.why = "GSO on a datagram frame";
        return o;
    }
    if (ip->is_fragment()) {
        o.is_fragment = true;
        if (ip->dont_fragment()) {
            o.why = "fragment with DF set";
            return o;
        }
        if (ip->more_fragments() && ip->payload().size() % 8 != 0) {
            o.why = "non-last fragment not a multiple of 8 bytes";
            return o;
        }
        if (ip->payload().empty()) {
            o.why = "empty fragment";
            return o;
        }
        if (vnet.needs_csum()) {
            o.why = "partial checksum on a fragment";
            return o;
        }
        o.ok = true;
        return o;
    }
    const ByteView l4 = ip->payload();
    const std::size_t l4_off = eth->header_len() + ip->header_len();
    if (ip->protocol() == IpProto::udp) {
        o.udp = true;
        const auto u = wire::UdpView::parse(l4);
        if (!u || u->length() != l4.size()) {
            o.why = "UDP length does not match the IPv4 payload";
            return o;
        }
        o.sport = u->src_port().v;
        o.dport = u->dst_port().v;
        o.udp_checksum = u->checksum();
        o.payload = to_vec(u->payload());
        const std::uint32_t pseudo = pseudo_header_sum_v4(o.ip_src, o.ip_dst, IpProto::udp,
                                                          static_cast<std::uint16_t>(l4.size()));
        o.needs_csum = vnet.needs_csum();
        if (o.needs_csum) {
            if (vnet.csum_start != l4_off || vnet.csum_offset != 6) {
                o.why = "NEEDS_CSUM with csum_start/csum_offset not at the UDP checksum";
                return o;
            }
            std::vector<std::byte> copy(l4.begin(), l4.end());
            std::uint16_t c = csum_finish(csum_partial(ByteView{copy}));
            if (c == 0) c = 0xffff;
            store_be16(copy.data() + 6, c);
            if (csum_fold(csum_partial(ByteView{copy}, pseudo)) != 0xffff) {
                o.why = "partial checksum not seeded with the pseudo-header sum";
                return o;
            }
        } else {
            if (o.udp_checksum == 0) {
                o.why = "UDP checksum left out";
                return o;
            }
            if (csum_fold(csum_partial(l4, pseudo)) != 0xffff) {
                o.why = "bad UDP checksum";
                return o;
            }
        }
        o.ok = true;
        return o;
    }
    if (ip->protocol() == IpProto::icmp) {
        o.icmp = true;
        const auto m = wire::Icmpv4View::parse(l4);
        if (!m) {
            o.why = "ICMP shorter than its header";
            return o;
        }
        if (vnet.needs_csum()) {
            o.why = "partial checksum on ICMP";
            return o;
        }
        if (!m->checksum_ok()) {
            o.why = "bad ICMP checksum";
            return o;
        }
        o.icmp_type = static_cast<std::uint8_t>(m->type());
        o.icmp_code = m->code();
        o.icmp_rest = m->rest_of_header();
        o.payload = to_vec(m->payload());
        o.ok = true;
        return o;
    }
    o.why = "neither UDP nor ICMP";
    return o;
}

// The datagram an ICMP error quotes (RFC 792: its IPv4 header and the start of its payload).
struct Quote {
    bool ok = false;
    std::string why;
    Ipv4Addr src, dst;
    IpProto proto = IpProto::udp;
    std::uint16_t total_len = 0;
    Bytes l4;  // what the quote holds of the payload
    [[nodiscard]] std::uint16_t sport() const { return l4.size() >= 2 ? get16(l4, 0) : 0; }
    [[nodiscard]] std::uint16_t dport() const { return l4.size() >= 4 ? get16(l4, 2) : 0; }
    [[nodiscard]] std::uint16_t echo_id() const { return l4.size() >= 6 ? get16(l4, 4) : 0; }
};
inline Quote parse_quote(std::span<const std::uint8_t> body) {
    Quote q;
    if (body.size() < 20 || (body[0] >> 4) != 4) {
        q.why = "quote holds no IPv4 header";
        return q;
    }
    const std::size_t hl = std::size_t{body[0] & 0x0fu} * 4;
    if (hl < 20 || hl > body.size()) {
        q.why = "quoted IPv4 header length";
        return q;
    }
    if (csum_fold(csum_partial(as_bytes(body.first(hl)))) != 0xffff) {
        q.why = "quoted IPv4 header checksum";
        return q;
    }
    q.total_len = get16(body, 2);
    q.proto = static_cast<IpProto>(body[9]);
    q.src = Ipv4Addr{std::uint32_t{get16(body, 12)} << 16 | get16(body, 14)};
    q.dst = Ipv4Addr{std::uint32_t{get16(body, 16)} << 16 | get16(body, 18)};
    q.l4.assign(body.begin() + static_cast<std::ptrdiff_t>(hl), body.end());
    q.ok = true;
    return q;
}

// ---- the bench --------------------------------------------------------------------------------

inline constexpr Ipv4Addr kSubnet = Ipv4Addr::from_octets(192, 168, 127, 0);

inline UdpConfig default_udp_config() {
    UdpConfig c;
    c.gateway_mac = kGatewayMac;
    c.gateway = kGatewayIp;
    c.dns_addr = kGatewayIp;
    c.host_alias = kAliasIp;
    c.subnet = kSubnet;
    c.prefix_len = 24;
    c.mtu = 1500;
    return c;
}
inline IcmpConfig default_icmp_config(IcmpMode mode = IcmpMode::ping) {
    IcmpConfig c;
    c.gateway_mac = kGatewayMac;
    c.gateway = kGatewayIp;
    c.dns_addr = kGatewayIp;
    c.host_alias = kAliasIp;
    c.subnet = kSubnet;
    c.prefix_len = 24;
    c.mtu = 1500;
    c.mode = mode;
    return c;
}

struct DgramNetOptions {
    PoolConfig pool{.small_buffers = 1024, .large_buffers = 64};
    PacketPool* external_pool = nullptr;  // the link's pool instead of one of its own
    FlowTableConfig table{.capacity = 64, .max_fd = 4096, .cache_slots = 16};
    UdpConfig udp = default_udp_config();
    IcmpConfig icmp = default_icmp_config();
    // Set: one FlowLimits for both engines, its evictor the engines' evict_idle() (as the
    // gateway installs it).
    std::optional<LimitsConfig> limits;
    // Set: an EgressPolicy of these rules (the built-in metadata deny follows them).
    std::optional<std::vector<PolicyRule>> policy;
    std::optional<PortSet> alias_ports;
    int raw_open_result = 0;             // open_raw_icmp() for the ICMP engine's constructor
    bool refuse_watch_at_start = false;  // the poller refuses the raw socket in the constructor
    std::uint32_t reassembly_slots = 32;
    PacketPool* reassembly_pool =
        nullptr;  // take()'s reassembly buffers (default: a pool of its own)
};

// Both datagram engines, their fakes, and a driver loop that plays the network thread.
class DgramNet {
  public:
    explicit DgramNet(const DgramNetOptions& o = {})
        : poller(socks),
          link(o.external_pool != nullptr ? FakeLink(*o.external_pool) : FakeLink(o.pool)),
          table(o.table),
          reasm_owned(o.reassembly_pool != nullptr
                          ? nullptr
                          : std::make_unique<PacketPool>(PoolConfig{
                                .small_buffers = 64, .large_buffers = o.reassembly_slots + 4})),
          reasm(o.reassembly_pool != nullptr ? *o.reassembly_pool : *reasm_owned,
                ReassemblyConfig{.slots = o.reassembly_slots,
                                 .timeout = std::chrono::milliseconds(1'000'000'000)}) {
        link.clock = &socks.clock;
        socks.raw_open_result = o.raw_open_result;
        if (o.limits) limits = std::make_unique<FlowLimits>(*o.limits);
        if (o.policy) {
            policy = std::make_unique<EgressPolicy>(*o.policy);
            if (o.alias_ports) policy->set_alias_ports(*o.alias_ports);
        }
        ucfg = o.udp;
        ucfg.limits = limits.get();
        ucfg.policy = policy.get();
        icfg = o.icmp;
        icfg.limits = limits.get();
        icfg.policy = policy.get();
        udp = std::make_unique<UdpEngine>(ucfg, table, socks, poller, link);
        poller.refuse = o.refuse_watch_at_start;
        icmp = std::make_unique<IcmpEngine>(icfg, table, socks, poller, link);
        poller.refuse = false;
        if (limits)
            limits->set_evictor([this](std::uint64_t t) {
                return (udp && udp->evict_idle(t)) || (icmp && icmp->evict_idle(t));
            });
    }
    ~DgramNet() { destroy_engines(); }
    DgramNet(const DgramNet&) = delete;
    DgramNet& operator=(const DgramNet&) = delete;

    FakeDgramSockets socks;
    FakeDgramPoller poller;
    FakeLink link;
    FlowTable table;
    std::unique_ptr<PacketPool> reasm_owned;
    Reassembler reasm;
    std::unique_ptr<FlowLimits> limits;
    std::unique_ptr<EgressPolicy> policy;
    UdpConfig ucfg;
    IcmpConfig icfg;
    std::unique_ptr<UdpEngine> udp;
    std::unique_ptr<IcmpEngine> icmp;
    std::uint64_t now = 1'000'000;
    std::uint16_t in_port = 1;
    // Fragments seen per datagram still being reassembled by take().
    std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint8_t, std::uint16_t>, std::size_t>
        frag_seen;
    std::uint64_t fragments_taken = 0;

    // Shutdown as the gateway does it: both engines freed (the ICMP engine's raw socket with it).
    void destroy_engines() {
        if (limits) limits->set_evictor(nullptr);
        icmp.reset();
        udp.reset();
    }

    // Guest frames as one burst: each UDP datagram or ICMP message to its engine, end_burst(),
    // then the event loop.
    void burst(std::vector<PacketRef> frames) {
        link.refill();
        for (const PacketRef& f : frames) {
            if (!f) continue;
            if (auto d = udp_in(f, in_port)) {
                udp->process_datagram(*d, now);
            } else if (auto m = icmp_in(f, in_port)) {
                icmp->process_message(*m, now);
            }
        }
        udp->end_burst(now);
        frames.clear();
        pump();
    }
    void send(PacketRef f) {
        std::vector<PacketRef> v;
        v.push_back(std::move(f));
        burst(std::move(v));
    }
    // Readiness of flow `id` (or kRawIcmpSocket) to the engine that owns it, as the driver does.
    void dispatch(FlowId id, std::uint32_t ev) {
        if (id == kRawIcmpSocket) {
            icmp->process_socket_event(id, ev, now);
            return;
        }
        if (!table.in_use(id)) return;  // a stale event of a flow freed meanwhile
        if (table.key(id).proto == IpProto::udp)
            udp->process_socket_event(id, ev, now);
        else if (table.key(id).proto == IpProto::icmp)
            icmp->process_socket_event(id, ev, now);
    }
    // Delivers the readiness the poller queued (edge-triggered) and serves pending flows until
    // nothing is left to do (bounded). Returns whether anything happened.
    bool pump(int max_rounds = 64) {
        bool any_at_all = false;
        for (int r = 0; r < max_rounds; ++r) {
            bool any = false;
            const std::vector<std::pair<int, FakeDgramPoller::Watch>> w(poller.watched.begin(),
                                                                        poller.watched.end());
            for (const auto& [fd, watch] : w) {
                FakeDgramSocket* s = socks.find(fd);
                if (s == nullptr || s->closed || s->wake == 0) continue;
                const std::uint32_t mask = watch.interest | kEvAlways;
                const bool woken = (s->wake & mask) != 0;
                s->wake = 0;
                if (!woken) continue;
                const std::uint32_t ev = socks.level(fd) & mask;
                if (ev == 0) continue;
                link.refill();
                dispatch(watch.id, ev);
                any = true;
            }
            if (udp->has_pending()) {
                link.refill();
                udp->run_pending(now);
                any = true;
            }
            if (icmp->has_pending()) {
                link.refill();
                icmp->run_pending(now);
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
        udp->on_tick(now);
        icmp->on_tick(now);
        pump();
    }

    // The frames emitted so far, checked and decoded (fragments reassembled: a datagram appears
    // where its last fragment arrived), and forgotten.
    std::vector<DgramOut> take() {
        std::vector<DgramOut> v;
        const std::size_t mtu = std::max(ucfg.mtu, icfg.mtu);
        for (PacketRef& f : link.frames) {
            DgramOut o = check_frame(f, mtu);
            if (o.ok && o.is_fragment) {
                ++fragments_taken;
                const auto eth = wire::EthernetView::parse(f.data());
                const auto ip = wire::Ipv4View::parse(eth->payload());
                const auto key =
                    std::make_tuple(ip->src().v, ip->dst().v,
                                    static_cast<std::uint8_t>(ip->protocol()), ip->ident());
                const std::size_t n = ++frag_seen[key];
                if (auto whole = reasm.process(f, *ip, now)) {
                    frag_seen.erase(key);
                    DgramOut w = check_frame(*whole, 65535);
                    w.fragments = n;
                    w.frame_len = 0;
                    w.eth_src = o.eth_src;
                    v.push_back(std::move(w));
                }
            } else {
                v.push_back(std::move(o));
            }
            f.reset();
        }
        link.frames.clear();
        link.stamps.clear();
        return v;
    }
    // Fragments of datagrams take() could not complete.
    [[nodiscard]] std::uint32_t incomplete_datagrams() const noexcept {
        return reasm.in_progress();
    }

    // Live table entries of one protocol.
    [[nodiscard]] std::uint32_t table_entries(IpProto p) const noexcept {
        std::uint32_t n = 0;
        for (FlowId id = 0; id < table.capacity(); ++id)
            if (table.in_use(id) && table.key(id).proto == p) ++n;
        return n;
    }
};

}  // namespace slipway::nat::fake
