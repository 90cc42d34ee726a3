// Forwarder on Linux: listening sockets, accept4() and recvmsg() bursts (theory of operation:
// forwarder.hpp).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "slipway/core/log.hpp"
#include "slipway/portfwd/forwarder.hpp"

namespace slipway::portfwd {

namespace {

constexpr int kAcceptBurst = 64;  // clients accepted per readable edge before yielding
constexpr int kRecvBurst = 64;    // datagrams read per readable edge before yielding
constexpr std::size_t kMaxDatagram = 65536;

bool set_int(int fd, int level, int opt, int v) noexcept {
    return ::setsockopt(fd, level, opt, &v, sizeof v) == 0;
}

// Why a bind failed, in words a user can act on.
std::string bind_reason(int err, const Rule& rule, std::uint16_t port) {
    switch (err) {
        case EADDRINUSE:
            return "address already in use (another program, or another slipwayd, holds it)";
        case EACCES:
            return port < 1024 ? "permission denied: ports below 1024 need CAP_NET_BIND_SERVICE "
                                 "or a lower net.ipv4.ip_unprivileged_port_start"
                               : std::string("permission denied");
        case EADDRNOTAVAIL:
            return "the host has no address " + rule.host.to_string();
        default:
            return std::strerror(err);
    }
}

}  // namespace

struct Forwarder::Listener {
    int fd = -1;
    RuleId rule = 0;
    Proto proto = Proto::tcp;
    bool v6 = false;
    std::uint16_t host_port = 0;
    std::uint16_t guest_port = 0;
    Ipv4Addr guest;
    std::unique_ptr<FdWatcher> watch;
    sockaddr_storage local{};  // the bound address (for TCP clients' `local`)
    socklen_t local_len = 0;
    // Cleared when the listener goes (its rule removed): a readiness handler already queued
    // then finds it false and leaves the freed listener alone.
    std::shared_ptr<bool> live = std::make_shared<bool>(true);
    ~Listener() {
        *live = false;
        if (watch) watch->release();
        if (fd >= 0) ::close(fd);
    }
};

struct Forwarder::RuleState {
    Entry entry;
    std::vector<std::unique_ptr<Listener>> listeners;
};

Forwarder::Forwarder(IoContext& io, InboundSink& sink)
    : io_(io), sink_(sink), buf_(std::make_unique<std::byte[]>(kMaxDatagram)) {}

Forwarder::~Forwarder() {
    *alive_ = false;
    clear();
}

void Forwarder::clear() noexcept {
    rules_.clear();
}

Result<RuleId> Forwarder::add(const Rule& rule, std::string& error) {
    for (const auto& r : rules_) {
        if (r->entry.rule.overlaps(rule)) {
            error = std::string(to_string(rule.proto)) + " " + rule.host_text() +
                    " overlaps forward " + std::to_string(r->entry.id) + " (" +
                    r->entry.rule.spec() + ")";
            return fail(Errc::conflict);
        }
    }
    auto st = std::make_unique<RuleState>();
    st->entry.id = next_id_;
    st->entry.rule = rule;
    const int family = rule.host.v6 ? AF_INET6 : AF_INET;
    const int type =
        (rule.proto == Proto::tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    for (std::uint32_t p = rule.host_first; p <= rule.host_last; ++p) {
        const auto port = static_cast<std::uint16_t>(p);
        const std::string where = std::string(to_string(rule.proto)) + " " + rule.host.to_string() +
                                  ":" + std::to_string(port);
        auto l = std::make_unique<Listener>();
        l->rule = st->entry.id;
        l->proto = rule.proto;
        l->v6 = rule.host.v6;
        l->host_port = port;
        l->guest_port = rule.guest_port_for(port);
        l->guest = rule.guest;
        l->fd = ::socket(family, type, 0);
        if (l->fd < 0) {
            error = where + ": socket: " + std::strerror(errno);
            return fail(Errc::io_error);
        }
        if (rule.host.v6) set_int(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        if (rule.proto == Proto::tcp) {
            // A restarted slipwayd can take its ports back while old connections sit in
            // TIME_WAIT (SO_REUSEADDR on TCP never lets two listeners share a port).
            set_int(l->fd, SOL_SOCKET, SO_REUSEADDR, 1);
        } else {
            // Mapping sockets share the port (forwarder.hpp); SO_REUSEPORT needs the same uid.
            set_int(l->fd, SOL_SOCKET, SO_REUSEPORT, 1);
            if (rule.host.v6)
                set_int(l->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
            else
                set_int(l->fd, IPPROTO_IP, IP_PKTINFO, 1);
        }
        l->local_len = rule.host.to_sockaddr(port, l->local);
        if (rule.proto == Proto::udp) {
            // SO_REUSEPORT would let the bind below share the port with another process of
            // this user that set it too (their datagrams then split between us): a probe bind
            // without it says whether the port is free.
            const int probe = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (probe >= 0) {
                if (rule.host.v6) set_int(probe, IPPROTO_IPV6, IPV6_V6ONLY, 1);
                const bool busy =
                    ::bind(probe, reinterpret_cast<const sockaddr*>(&l->local), l->local_len) != 0;
                const int err = errno;
                ::close(probe);
                if (busy) {
                    error = where + ": cannot bind: " + bind_reason(err, rule, port);
                    return fail(Errc::io_error);
                }
            }
        }
        if (::bind(l->fd, reinterpret_cast<const sockaddr*>(&l->local), l->local_len) != 0) {
            error = where + ": cannot bind: " + bind_reason(errno, rule, port);
            return fail(Errc::io_error);
        }
        if (rule.proto == Proto::tcp && ::listen(l->fd, SOMAXCONN) != 0) {
            error = where + ": cannot listen: " + std::strerror(errno);
            return fail(Errc::io_error);
        }
        boost::system::error_code ec;
        l->watch = FdWatcher::try_watch(io_, l->fd, ec);
        if (!l->watch) {
            error = where + ": cannot watch the socket: " + ec.message();
            return fail(Errc::io_error);
        }
        st->listeners.push_back(std::move(l));
    }
    ++next_id_;
    for (auto& l : st->listeners)
        arm(*l);
    SLW_INFO("forward {}: {} -> {} ({})", st->entry.id, rule.host_text(), rule.guest_text(),
             to_string(rule.proto));
    const RuleId id = st->entry.id;
    rules_.push_back(std::move(st));
    return id;
}

Result<void> Forwarder::remove(RuleId id, bool kill) {
    const auto it = std::find_if(rules_.begin(), rules_.end(),
                                 [id](const auto& r) { return r->entry.id == id; });
    if (it == rules_.end()) return fail(Errc::not_found);
    SLW_INFO("forward {} removed ({}){}", id, (*it)->entry.rule.spec(),
             kill ? ", its connections reset" : "");
    rules_.erase(it);  // closes the sockets: the ports refuse new clients from now on
    if (kill) sink_.kill_rule(id);
    return {};
}

std::vector<Forwarder::Entry> Forwarder::list() const {
    std::vector<Entry> out;
    out.reserve(rules_.size());
    for (const auto& r : rules_)
        out.push_back(r->entry);
    return out;
}

const Forwarder::Entry* Forwarder::find(RuleId id) const noexcept {
    for (const auto& r : rules_)
        if (r->entry.id == id) return &r->entry;
    return nullptr;
}

std::optional<RuleId> Forwarder::find(Proto proto, const HostAddr& addr,
                                      std::uint16_t port) const noexcept {
    for (const auto& r : rules_) {
        const Rule& x = r->entry.rule;
        if (x.proto == proto && x.host == addr && x.host_first == port) return r->entry.id;
    }
    return std::nullopt;
}

void Forwarder::note_mapping(RuleId id) noexcept {
    for (auto& r : rules_)
        if (r->entry.id == id) ++r->entry.accepted;
}

void Forwarder::note_refused(RuleId id) noexcept {
    for (auto& r : rules_)
        if (r->entry.id == id) ++r->entry.refused;
}

void Forwarder::arm(Listener& l) {
    l.watch->wait_readable([this, lp = &l, live = l.live, alive = alive_](bool ok) {
        if (ok && *alive && *live) on_readable(*lp);
    });
}

void Forwarder::on_readable(Listener& l) {
    if (l.proto == Proto::tcp)
        accept_burst(l);
    else
        recv_burst(l);
}

void Forwarder::accept_burst(Listener& l) {
    const RuleId rule = l.rule;
    for (int i = 0; i < kAcceptBurst; ++i) {
        Client c;
        c.addr_len = sizeof c.addr;
        const int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&c.addr), &c.addr_len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c_.accept_errors.inc();
                SLW_WARN_RATELIMITED("forward {}: accept on port {}: {}", rule, l.host_port,
                                     std::strerror(errno));
                // EMFILE/ENFILE: the client waits in the backlog; try again on the next turn
                // rather than spinning on a listener that stays readable.
                boost::asio::post(io_, [this, lp = &l, live = l.live, alive = alive_] {
                    if (*alive && *live) arm(*lp);
                });
                return;
            }
            break;
        }
        c.local_len = sizeof c.local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&c.local), &c.local_len) != 0)
            c.local_len = 0;
        c_.accepted.inc();
        note_mapping(rule);
        const auto live = l.live;
        sink_.accept_tcp(rule, fd, c, l.guest, l.guest_port);
        if (!*live) return;  // the sink removed the rule meanwhile (it never does today)
    }
    arm(l);
}

void Forwarder::recv_burst(Listener& l) {
    const RuleId rule = l.rule;
    for (int i = 0; i < kRecvBurst; ++i) {
        Client c;
        iovec iov{buf_.get(), kMaxDatagram};
        alignas(cmsghdr) std::byte ctrl[CMSG_SPACE(sizeof(in6_pktinfo))];
        msghdr msg{};
        msg.msg_name = &c.addr;
        msg.msg_namelen = sizeof c.addr;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        const ssize_t n = ::recvmsg(l.fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c_.recv_errors.inc();
                continue;  // an error queued by an ICMP message: read on
            }
            break;
        }
        c.addr_len = msg.msg_namelen;
        // Where the client wrote to: the rule's address, or for a wildcard rule the local
        // address IP_PKTINFO names, so the mapping's replies come from that address.
        c.local = l.local;
        c.local_len = l.local_len;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
            if (!l.v6 && cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                in_pktinfo pi{};
                std::memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                // ipi_spec_dst: the local address (ipi_addr is the header's destination, which
                // for a broadcast is no address to reply from).
                reinterpret_cast<sockaddr_in*>(&c.local)->sin_addr = pi.ipi_spec_dst;
            } else if (l.v6 && cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
                in6_pktinfo pi{};
                std::memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                auto* l6 = reinterpret_cast<sockaddr_in6*>(&c.local);
                l6->sin6_addr = pi.ipi6_addr;
                // A link-local address binds only with its interface.
                if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr)) l6->sin6_scope_id = pi.ipi6_ifindex;
            }
        }
        c_.datagrams.inc();
        const auto live = l.live;
        sink_.datagram_udp(rule, c, l.guest, l.guest_port,
                           ByteView{buf_.get(), static_cast<std::size_t>(n)});
        if (!*live) return;
    }
    arm(l);
}

int open_udp_mapping(const Client& client) noexcept {
    const int family = client.local.ss_family;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (family == AF_INET6) set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) ||
        ::bind(fd, reinterpret_cast<const sockaddr*>(&client.local), client.local_len) != 0 ||
        ::connect(fd, reinterpret_cast<const sockaddr*>(&client.addr), client.addr_len) != 0) {
        const int err = errno;
        ::close(fd);
        return -err;
    }
    return fd;
}

}  // namespace slipway::portfwd
