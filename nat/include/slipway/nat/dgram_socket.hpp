// The host-socket operations of the datagram engines (UDP, ICMP echo), behind an interface so the
// engines can be driven against a fake socket layer (unit tests, fuzz targets) as well as the
// kernel.
//
// Theory of operation
// -------------------
// Each guest UDP flow (and each ICMP echo flow in ping-socket mode) owns one connected datagram
// socket: connect() fixes the peer, so the kernel filters what arrives, picks one local port for
// the flow's whole life, and reports ICMP errors about the flow to that socket alone. IP_RECVERR
// queues each such error with its ICMP type, code, the address of the router or host that sent
// it and the start of the datagram it refers to; read_error() takes them off the queue so the
// engine can tell the guest with an ICMP message of its own. Datagrams move in batches:
// send_burst() is one sendmmsg() for the datagrams a burst of guest frames holds for one flow,
// recv_burst() one recvmmsg() into pool buffers. A receive buffer has two parts: the head (a
// pool buffer, enough for any datagram that fits an Ethernet frame) and a tail (a 64 KiB
// overflow area the engine owns) for the rare datagram that does not, so nothing is truncated.
// The raw-socket ICMP mode shares one unconnected raw socket for every echo flow (send_to(),
// and recv_burst() reports each packet's source). Every call is non-blocking and reports errors
// as negative errno values, never exceptions.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "slipway/core/types.hpp"

namespace slipway::nat {

struct DgramIn {
    iovec head{};         // in: where the datagram goes first
    iovec tail{};         // in: where the rest of a long one goes ({nullptr, 0}: nowhere)
    std::size_t len = 0;  // out: the datagram's length (beyond head + tail: it was truncated)
    Ipv4Addr from;        // out: its source (unconnected sockets)
};

// One entry of a socket's error queue (IP_RECVERR, ip(7)).
struct SockError {
    int err = 0;             // errno value (ECONNREFUSED, EHOSTUNREACH, EMSGSIZE, ...)
    bool from_icmp = false;  // SO_EE_ORIGIN_ICMP: an ICMP message arrived (else a local error)
    std::uint8_t type = 0;   // its ICMP type and code
    std::uint8_t code = 0;
    std::uint32_t info = 0;            // ee_info: the next-hop MTU for "fragmentation needed"
    Ipv4Addr offender;                 // who sent the ICMP message (0.0.0.0: unknown)
    std::array<std::byte, 64> data{};  // the start of the payload of the datagram it is about
    std::size_t data_len = 0;
};

class DgramSockets {
  public:
    virtual ~DgramSockets() = default;
    // A non-blocking, close-on-exec datagram socket of `protocol` (0: UDP; IPPROTO_ICMP: a ping
    // socket) connected to `to`, with IP_RECVERR on: the fd, or -errno.
    virtual int open_connected(int protocol, const sockaddr* to, socklen_t len) noexcept = 0;
    // An unconnected raw ICMP socket (needs CAP_NET_RAW): the fd, or -errno.
    virtual int open_raw_icmp() noexcept = 0;
    // Sends each iovec as one datagram, in order: how many went (stops at the first failure), or
    // -errno when the first one failed (-EAGAIN: the send buffer is full).
    virtual int send_burst(int fd, std::span<const iovec> datagrams) noexcept = 0;
    // One datagram to `to` on an unconnected socket: bytes sent or -errno.
    virtual int send_to(int fd, Ipv4Addr to, std::span<const std::byte> msg) noexcept = 0;
    // Receives up to msgs.size() datagrams: how many (0 when none is waiting), or -errno (a
    // pending error such as -ECONNREFUSED, which read_error() then explains).
    virtual int recv_burst(int fd, std::span<DgramIn> msgs) noexcept = 0;
    // Takes the oldest entry off the socket's error queue: false when it is empty.
    virtual bool read_error(int fd, SockError& e) noexcept = 0;
    virtual void close(int fd) noexcept = 0;
};

class LinuxDgramSockets final : public DgramSockets {
  public:
    // Whether this process may open ping sockets (net.ipv4.ping_group_range holds one of its
    // groups) and raw ICMP sockets (CAP_NET_RAW): probed with throwaway sockets.
    [[nodiscard]] static bool probe_ping() noexcept;
    [[nodiscard]] static bool probe_raw() noexcept;

    int open_connected(int protocol, const sockaddr* to, socklen_t len) noexcept override;
    int open_raw_icmp() noexcept override;
    int send_burst(int fd, std::span<const iovec> datagrams) noexcept override;
    int send_to(int fd, Ipv4Addr to, std::span<const std::byte> msg) noexcept override;
    int recv_burst(int fd, std::span<DgramIn> msgs) noexcept override;
    bool read_error(int fd, SockError& e) noexcept override;
    void close(int fd) noexcept override;
};

}  // namespace slipway::nat
