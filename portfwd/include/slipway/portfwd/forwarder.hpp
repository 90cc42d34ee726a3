// Forwarder: the host side of port forwarding — the rules in force and their listening sockets.
//
// Theory of operation
// -------------------
// Each rule binds one host socket per port of its range: a listening TCP socket, or a UDP socket,
// on the rule's host address (IPV6_V6ONLY for IPv6, so [::] and 0.0.0.0 are separate rules as they
// are separate sockets). Binding happens in add(), so a port in use, a privileged port or an
// address the host does not have is an error then, naming the address, and nothing of the rule
// stays bound. Rules of this forwarder may not overlap (same protocol, a common port, the same
// address or a wildcard of that family): the kernel would refuse most such binds anyway, but not
// UDP's, whose sockets set SO_REUSEPORT (below), so the check is ours.
//
// Readiness comes through the network thread's loop (one FdWatcher per socket). A readable TCP
// listener is drained with accept4() (a bounded number per turn); each client goes to the
// InboundSink with the guest port its host port maps to, and from there into the NAT engine,
// which opens the connection into the guest (TCP.md §3, inbound) and owns the socket from then on.
// A readable UDP socket is drained with recvmsg() (IP_PKTINFO tells which local address a client
// wrote to, which matters for a wildcard rule); each datagram goes to the sink, which keeps one
// mapping per client: a socket of its own, bound to the same local address and port with
// SO_REUSEPORT and connected to the client (open_udp_mapping), so the kernel hands that client's
// later datagrams to it rather than to the rule's socket (connected sockets win the lookup since
// Linux 5.4), and the mapping's replies leave from the port the client wrote to. The sink turns
// the mapping into an ordinary UDP flow of the engine.
//
// Removing a rule closes its sockets at once (the port refuses new clients); connections and
// mappings already made stay unless the caller asks for them to be reset (kill).
// Everything runs on the network thread; add/remove are control-plane calls and may allocate.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/portfwd/rule.hpp"

namespace slipway::portfwd {

using RuleId = std::uint32_t;

// A client of a rule as the sink gets it.
struct Client {
    sockaddr_storage addr{};  // the client's address and port
    socklen_t addr_len = 0;
    sockaddr_storage local{};  // the address and port the client reached
    socklen_t local_len = 0;
};

class InboundSink {
  public:
    // A TCP client accepted on rule `rule`: `fd` is non-blocking and the sink's from now on.
    virtual void accept_tcp(RuleId rule, int fd, const Client& client, Ipv4Addr guest,
                            std::uint16_t guest_port) noexcept = 0;
    // A datagram that reached rule `rule`'s socket from `client` (one the client's mapping socket,
    // if it has one yet, did not catch). `payload` is valid only during the call.
    virtual void datagram_udp(RuleId rule, const Client& client, Ipv4Addr guest,
                              std::uint16_t guest_port, ByteView payload) noexcept = 0;
    // The rule was removed with kill: reset its connections and mappings.
    virtual void kill_rule(RuleId rule) noexcept = 0;

  protected:
    ~InboundSink() = default;
};

struct ForwarderCounters {
    Counter accepted;       // TCP clients accepted
    Counter accept_errors;  // accept4() failures other than EAGAIN (EMFILE, ...)
    Counter datagrams;      // datagrams read from rule sockets
    Counter recv_errors;    // recvmsg() failures other than EAGAIN

    template <class F>
    void for_each(F&& f) const {
        f("fwd_accepted", accepted);
        f("fwd_accept_errors", accept_errors);
        f("fwd_datagrams", datagrams);
        f("fwd_recv_errors", recv_errors);
    }
};

class Forwarder {
  public:
    Forwarder(IoContext& io, InboundSink& sink);
    ~Forwarder();
    Forwarder(const Forwarder&) = delete;
    Forwarder& operator=(const Forwarder&) = delete;

    // Binds the rule's sockets. Errc::conflict when it overlaps a rule in force, Errc::io_error
    // when the kernel refuses a bind (in use, privileged port, address not on this host), with
    // `error` one line naming the address and the reason.
    Result<RuleId> add(const Rule& rule, std::string& error);
    // Closes the rule's sockets; `kill` also resets what it carries (InboundSink::kill_rule).
    // Errc::not_found for an unknown id.
    Result<void> remove(RuleId id, bool kill);
    // Closes every socket (shutdown).
    void clear() noexcept;

    struct Entry {
        RuleId id = 0;
        Rule rule;
        std::uint64_t accepted = 0;  // TCP clients accepted / UDP mappings opened
        std::uint64_t refused = 0;   // clients reset because the guest refused or never answered
    };
    [[nodiscard]] std::vector<Entry> list() const;
    [[nodiscard]] const Entry* find(RuleId id) const noexcept;
    // The rule whose host side is exactly `addr` and whose range starts at `port`.
    [[nodiscard]] std::optional<RuleId> find(Proto proto, const HostAddr& addr,
                                             std::uint16_t port) const noexcept;
    // Per-rule tallies the sink reports.
    void note_mapping(RuleId id) noexcept;
    void note_refused(RuleId id) noexcept;

    [[nodiscard]] const ForwarderCounters& counters() const noexcept { return c_; }

  private:
    struct Listener;
    struct RuleState;
    void arm(Listener& l);
    void on_readable(Listener& l);
    void accept_burst(Listener& l);
    void recv_burst(Listener& l);

    IoContext& io_;
    InboundSink& sink_;
    ForwarderCounters c_;
    std::vector<std::unique_ptr<RuleState>> rules_;
    RuleId next_id_ = 1;
    std::unique_ptr<std::byte[]> buf_;  // one datagram at a time, up to 64 KiB
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A UDP socket for one client of a rule: SO_REUSEPORT, bound to `local` (the address and port the
// client wrote to), connected to the client. The fd, or -errno.
int open_udp_mapping(const Client& client) noexcept;

}  // namespace slipway::portfwd
