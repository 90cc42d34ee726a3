// The C ABI (slipway.h) over slipway::Network: options by key, a network on a thread of its own,
// frame ports and virtqueue pairs, forwards and counters.
//
// Theory of operation
// -------------------
// A slipway_network owns a Network and, once started, the std::thread that runs it. Control calls
// (attach, detach, forwards, stats, stop) are serialised by the network's mutex; those that touch
// the network's state run on its thread while it runs: the call is posted to the loop and the
// caller waits on a future. While the network is not running (before start, after stop) the
// caller's thread is the only one and the call runs in place. A posted call is claimed with an
// atomic flag, so that if the loop died (an exception out of run()) the waiting caller can run it
// itself exactly once instead of waiting forever.
//
// A frame port pairs the network's InProcessPort with what the VMM thread needs: an eventfd that
// on_frames_for_vmm (network thread) writes and the VMM polls, and a frame held back when the
// caller's buffer was too small. send() and recv() take no lock: the port's two SPSC rings are
// the only state the VMM thread and the network thread share (DESIGN §1), and buffers come from the
// network's pool, whose allocation and release are thread-safe.
//
// Errors: every entry point catches every exception (none crosses into C) and turns failures into
// a negative errno value plus a thread-local message. The message lives in a fixed thread-local
// buffer, so recording it cannot itself fail.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "slipway.h"
#include "slipway/core/log.hpp"
#include "slipway/core/parse.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/core/virtio/net_hdr.hpp"
#include "slipway/dhcp/server.hpp"
#include "slipway/dns/upstream.hpp"
#include "slipway/embed/network.hpp"
#include "slipway/nat/policy.hpp"
#include "slipway/portfwd/rule.hpp"

using slipway::Errc;

namespace {

// ---- errors ----------------------------------------------------------------------------------

thread_local char t_error[512] = "";

int set_error(int code, std::string_view msg) noexcept {
    const std::size_t n = std::min(msg.size(), sizeof t_error - 1);
    std::memcpy(t_error, msg.data(), n);
    t_error[n] = '\0';
    return code;
}

int to_errno(Errc e) noexcept {
    switch (e) {
        case Errc::unsupported:
            return -ENOTSUP;
        case Errc::too_large:
            return -EMSGSIZE;
        case Errc::pool_exhausted:
            return -ENOBUFS;
        case Errc::would_block:
            return -EAGAIN;
        case Errc::io_error:
            return -EIO;
        case Errc::conflict:
            return -EEXIST;
        case Errc::not_found:
            return -ENOENT;
        case Errc::truncated:
        case Errc::bad_length:
        case Errc::bad_version:
        case Errc::bad_checksum:
        case Errc::invalid_argument:
            break;
    }
    return -EINVAL;
}

// The current exception as a status: nothing thrown inside slipway reaches the C caller.
int from_exception() noexcept {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        return set_error(-ENOMEM, "out of memory");
    } catch (const std::exception& e) {
        const std::string_view what = e.what();
        char buf[256];
        const int n = std::snprintf(buf, sizeof buf, "internal error: %.*s",
                                    static_cast<int>(what.size()), what.data());
        return set_error(-EIO, std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    } catch (...) {
        return set_error(-EIO, "internal error");
    }
}

template <class F>
int guarded(F&& f) noexcept {
    try {
        return f();
    } catch (...) {
        return from_exception();
    }
}

template <class T, class F>
T* guarded_ptr(F&& f) noexcept {
    try {
        return f();
    } catch (...) {
        (void)from_exception();
        return nullptr;
    }
}

// ---- options ---------------------------------------------------------------------------------

// The whole text as a decimal integer in [lo, hi] (core/parse.hpp).
std::optional<long long> parse_bounded(std::string_view t, long long lo, long long hi) {
    return slipway::parse_decimal<long long>(t, lo, hi);
}

std::optional<bool> parse_bool(const char* value) {
    if (value == nullptr) return true;
    const std::string_view v = value;
    if (v.empty() || v == "true" || v == "1" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "0" || v == "no" || v == "off") return false;
    return std::nullopt;
}

// A DNS name: labels of letters, digits, '-' and '_' up to 63 bytes, 253 in all (RFC 1035 §2.3.4).
bool valid_domain(std::string_view d) {
    if (d.empty() || d.size() > 253) return false;
    std::size_t label = 0;
    for (const char c : d) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label != 0;
}

}  // namespace

struct slipway_options {
    slipway::NetworkOptions net;
    std::vector<std::string> attach;  // attached by slipway_network_new
    std::optional<spdlog::level::level_enum> log_level;
};

namespace {

// "option KEY: 'VALUE' PROBLEM", as slipwayd words a bad flag.
int bad_value(std::string_view key, std::string_view value, std::string_view problem) {
    return set_error(-EINVAL, "option " + std::string(key) + ": '" + std::string(value) + "' " +
                                  std::string(problem));
}

int set_option(slipway_options& o, std::string_view key, const char* raw) {
    slipway::NetworkOptions& n = o.net;
    const std::string_view v = raw == nullptr ? std::string_view{} : std::string_view(raw);
    const auto flag = [&](bool& out, bool invert) {
        const auto b = parse_bool(raw);
        if (!b) return bad_value(key, v, "is not a boolean (true|false|1|0|yes|no|on|off)");
        out = invert ? !*b : *b;
        return 0;
    };
    const auto needs_value = [&]() {
        return raw == nullptr ? set_error(-EINVAL, "option " + std::string(key) + ": needs a value")
                              : 0;
    };
    const auto address = [&](std::optional<slipway::Ipv4Addr>& out) {
        if (int rc = needs_value(); rc != 0) return rc;
        const auto a = slipway::Ipv4Addr::parse(v);
        if (!a) return bad_value(key, v, "is not an IPv4 address");
        out = *a;
        return 0;
    };
    const auto path = [&](std::string& out) {
        if (v.empty()) return set_error(-EINVAL, "option " + std::string(key) + ": empty path");
        out = std::string(v);
        return 0;
    };
    // Integer keys, with slipwayd's bounds.
    const auto number = [&](auto& out, long long lo, long long hi, std::string_view what) {
        const auto x = parse_bounded(v, lo, hi);
        if (!x)
            return bad_value(key, v,
                             "is not " + std::string(what) + " (" + std::to_string(lo) + " to " +
                                 std::to_string(hi) + ")");
        out = static_cast<std::remove_reference_t<decltype(out)>>(*x);
        return 0;
    };
    const auto seconds = [&](std::chrono::milliseconds& out, long long lo, long long hi) {
        long long s = 0;
        if (int rc = number(s, lo, hi, "a number of seconds"); rc != 0) return rc;
        out = std::chrono::seconds(s);
        return 0;
    };

    if (key == "subnet") {
        if (int rc = needs_value(); rc != 0) return rc;
        const auto slash = v.find('/');
        const auto addr = slipway::Ipv4Addr::parse(v.substr(0, slash));
        const auto len = slash == std::string_view::npos
                             ? std::nullopt
                             : parse_bounded(v.substr(slash + 1), 0, 32);
        if (!addr || !len) return bad_value(key, v, "is not a subnet in CIDR form (a.b.c.d/len)");
        n.subnet = *addr;
        n.prefix_len = static_cast<std::uint8_t>(*len);
        return 0;
    }
    if (key == "gateway") return address(n.gateway);
    if (key == "host-alias") return address(n.host_alias);
    if (key == "no-host-alias") return flag(n.no_host_alias, false);
    if (key == "mtu") return number(n.mtu, 576, 65520, "an MTU");
    if (key == "isolate") return flag(n.isolate, false);
    if (key == "no-mac-lock") return flag(n.mac_lock, true);
    if (key == "pcap") return path(n.pcap_path);
    if (key == "log-level") {
        const auto lv = slipway::log::parse_level(v);
        if (!lv) return bad_value(key, v, "is not a log level (trace|debug|info|warn|error|off)");
        o.log_level = *lv;
        return 0;
    }
    if (key == "attach") {
        if (v.empty()) return set_error(-EINVAL, "option attach: empty attachment spec");
        o.attach.emplace_back(v);
        return 0;
    }
    // DHCP
    if (key == "no-dhcp") return flag(n.no_dhcp, false);
    if (key == "dhcp-range") {
        const auto r = slipway::dhcp::parse_range(v);
        if (!r) return bad_value(key, v, "is not an address range (FIRST-LAST)");
        n.dhcp_range = *r;
        return 0;
    }
    if (key == "dhcp-static") {
        const auto st = slipway::dhcp::parse_static(v);
        if (!st) return bad_value(key, v, "is not MAC=IP[,hostname]");
        n.dhcp_static.push_back(slipway::DhcpStatic{st->mac, st->ip, st->hostname});
        return 0;
    }
    if (key == "lease-time") return number(n.lease_time_s, 60, 31536000, "a lease time in seconds");
    if (key == "domain") {
        if (!valid_domain(v)) return bad_value(key, v, "is not a domain name");
        n.domain = std::string(v);
        return 0;
    }
    if (key == "search") {
        // One domain or a comma-separated list per call, as --search takes it.
        std::vector<std::string> add;
        std::string_view rest = v;
        do {
            const auto comma = rest.find(',');
            const std::string_view d = rest.substr(0, comma);
            if (!valid_domain(d)) return bad_value(key, v, "is not a comma-separated domain list");
            add.emplace_back(d);
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        } while (!rest.empty());
        n.search.insert(n.search.end(), add.begin(), add.end());
        return 0;
    }
    if (key == "lease-file") return path(n.lease_file);
    // DNS
    if (key == "no-dns") return flag(n.no_dns, false);
    if (key == "dns-upstream") {
        if (!slipway::dns::parse_upstream(v))
            return bad_value(key, v, "is not ADDR[:PORT] or [IPV6]:PORT");
        n.dns_upstreams.emplace_back(v);
        return 0;
    }
    if (key == "resolv-conf") return path(n.resolv_conf);
    if (key == "dns-record") {
        const auto eq = v.find('=');
        const auto ip = eq == std::string_view::npos ? std::nullopt
                                                     : slipway::Ipv4Addr::parse(v.substr(eq + 1));
        if (!ip || eq == 0 || !valid_domain(v.substr(0, eq)))
            return bad_value(key, v, "is not NAME=IPV4");
        n.dns_records.emplace_back(std::string(v.substr(0, eq)), *ip);
        return 0;
    }
    if (key == "dns-cache-entries") return number(n.dns_cache_entries, 0, 65536, "an entry count");
    if (key == "dns-cache-bytes") return number(n.dns_cache_bytes, 4096, 1LL << 30, "a byte count");
    // NAT
    if (key == "max-flows") return number(n.max_flows, 16, 1LL << 24, "a flow count");
    if (key == "no-peek-off") return flag(n.no_peek_off, false);
    if (key == "connect-timeout") return seconds(n.connect_timeout, 1, 600);
    if (key == "tcp-idle-timeout") return seconds(n.tcp_idle_timeout, 10, 1LL << 24);
    if (key == "udp-timeout") return seconds(n.udp_timeout, 1, 86400);
    if (key == "udp-dns-timeout") return seconds(n.udp_dns_timeout, 1, 3600);
    if (key == "icmp") {
        if (v != "auto" && v != "ping" && v != "raw" && v != "gateway")
            return bad_value(key, v, "is not an ICMP mode (auto|ping|raw|gateway)");
        n.icmp_mode = std::string(v);
        return 0;
    }
    if (key == "allow" || key == "deny" || key == "egress") {
        // allow/deny take the RULE; egress takes "allow RULE" or "deny RULE" (the TOML form).
        std::string_view verb = key;
        std::string_view rule = v;
        if (key == "egress") {
            const auto sp = v.find(' ');
            verb = v.substr(0, sp);
            rule = sp == std::string_view::npos ? std::string_view{} : v.substr(sp + 1);
            if (verb != "allow" && verb != "deny")
                return bad_value(key, v, "is not \"allow RULE\" or \"deny RULE\"");
        }
        std::string why;
        const auto action =
            verb == "allow" ? slipway::nat::PolicyAction::allow : slipway::nat::PolicyAction::deny;
        if (!slipway::nat::PolicyRule::parse(rule, action, why))
            return set_error(-EINVAL, "option " + std::string(key) + ": " + why);
        n.egress_rules.push_back(std::string(verb) + " " + std::string(rule));
        return 0;
    }
    if (key == "host-alias-ports") {
        std::string why;
        if (!slipway::nat::PortSet::parse(v, why))
            return bad_value(key, v, "is not a port list (e.g. 22,8000-8100, or all): " + why);
        n.host_alias_ports = std::string(v);
        return 0;
    }
    if (key == "max-flows-per-guest")
        return number(n.max_flows_per_guest, 0, 1LL << 24, "a flow count (0: no cap)");
    if (key == "max-half-open")
        return number(n.max_half_open, 0, 1LL << 24, "a connection count (0: no cap)");
    if (key == "new-flow-rate")
        return number(n.new_flow_rate, 0, 10000000, "a rate in flows per second (0: unlimited)");
    if (key == "forward") {
        std::string why;
        if (!slipway::portfwd::Rule::parse(v, why))
            return set_error(-EINVAL, "option forward: " + why);
        n.forwards.emplace_back(v);
        return 0;
    }
    if (key == "api" || key == "pid-file" || key == "guest-api" || key == "config")
        return set_error(-EINVAL, "option " + std::string(key) +
                                      ": is slipwayd's, not the library's (no HTTP API, PID "
                                      "file or config file in an embedded network)");
    return set_error(-EINVAL, "unknown option key '" + std::string(key) + "'");
}

}  // namespace

// ---- networks and ports ------------------------------------------------------------------------

struct slipway_port {
    slipway::SwitchPort* port = nullptr;      // owned by the Network
    slipway::InProcessPort* frame = nullptr;  // frame ports only
    slipway::PacketPool* pool = nullptr;
    bool vnet_hdr = false;       // frames carry a virtio_net_hdr_v1 in front
    slipway::UniqueFd efd;       // frame ports: readable when frames wait for the VMM
    slipway::PacketRef pending;  // VMM thread: popped, but the caller's buffer was too small
};

struct slipway_network {
    std::unique_ptr<slipway::Network> net;
    std::mutex mu;  // serialises control calls; guards everything below
    std::thread thread;
    bool running = false;  // the thread runs the loop (started, not yet stopped)
    bool stopped = false;
    std::atomic<bool> loop_done{false};  // run() returned on the thread (normally or not)
    std::vector<std::unique_ptr<slipway_port>> ports;

    // Runs fn where the network's state may be touched: on its thread while it runs (posted, and
    // waited for), else right here. Called with mu held, so the network cannot stop meanwhile
    // except by dying, which the loop_done check covers.
    template <class F>
    auto on_network(F&& fn) -> decltype(fn()) {
        using R = decltype(fn());
        if (!running) return fn();
        struct Task {
            std::atomic<bool> claimed{false};
            std::promise<R> done;
        };
        auto task = std::make_shared<Task>();
        // fn is used only by whoever claims the task, and the caller waits for that to finish.
        auto run = [task, &fn] {
            if (task->claimed.exchange(true, std::memory_order_acq_rel)) return;
            try {
                if constexpr (std::is_void_v<R>) {
                    fn();
                    task->done.set_value();
                } else {
                    task->done.set_value(fn());
                }
            } catch (...) {
                task->done.set_exception(std::current_exception());
            }
        };
        auto fut = task->done.get_future();
        net->post(run);
        while (fut.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
            // acquire: pairs with the thread's release store after run() returned.
            if (loop_done.load(std::memory_order_acquire)) {
                run();  // the loop is gone: nobody else will (claimed guards a late run)
                break;
            }
        }
        return fut.get();
    }

    void stop_locked() {
        if (running) {
            net->stop();
            thread.join();
            running = false;
        }
        stopped = true;
    }
};

namespace {

slipway::PortCaps caps_from(unsigned flags, std::uint32_t max_frame, std::uint32_t mtu) {
    slipway::PortCaps c;
    c.gso = (flags & SLIPWAY_CAP_GSO) != 0;
    c.partial_csum = (flags & SLIPWAY_CAP_PARTIAL_CSUM) != 0;
    c.max_frame = max_frame != 0 ? max_frame : mtu + 14;
    return c;
}

constexpr std::size_t kEthHdrLen = 14;

}  // namespace

extern "C" {

const char* slipway_version(void) {
    return slipway::version().data();  // a string literal: NUL-terminated
}

const char* slipway_last_error(void) {
    return t_error;
}

slipway_options* slipway_options_new(void) {
    return guarded_ptr<slipway_options>([] { return new slipway_options(); });
}

int slipway_options_set(slipway_options* opts, const char* key, const char* value) {
    return guarded([&] {
        if (opts == nullptr || key == nullptr)
            return set_error(-EINVAL, "slipway_options_set: null options or key");
        return set_option(*opts, key, value);
    });
}

void slipway_options_free(slipway_options* opts) {
    delete opts;
}

slipway_network* slipway_network_new(const slipway_options* opts) {
    return guarded_ptr<slipway_network>([&]() -> slipway_network* {
        const slipway_options defaults;
        const slipway_options& o = opts != nullptr ? *opts : defaults;
        if (o.log_level) slipway::log::init(*o.log_level);
        std::string err;
        auto net = slipway::Network::create(o.net, err);
        if (!net) {
            set_error(to_errno(net.error()), err);
            return nullptr;
        }
        for (const std::string& spec : o.attach) {
            if (auto a = (*net)->attach(spec, err); !a) {
                set_error(to_errno(a.error()), "option attach: " + err);
                return nullptr;
            }
        }
        auto n = std::make_unique<slipway_network>();
        n->net = std::move(*net);
        return n.release();
    });
}

int slipway_network_start(slipway_network* n) {
    return guarded([&] {
        if (n == nullptr) return set_error(-EINVAL, "slipway_network_start: null network");
        const std::lock_guard lock(n->mu);
        if (n->running) return set_error(-EINVAL, "the network is running already");
        if (n->stopped)
            return set_error(-EINVAL, "the network was stopped and cannot be started again");
        n->thread = std::thread([n] {
            try {
                n->net->run();
            } catch (const std::exception& e) {
                SLW_ERROR("network thread: {}", e.what());
            } catch (...) {
                SLW_ERROR("network thread: unknown exception");
            }
            // release: pairs with the acquire load in on_network().
            n->loop_done.store(true, std::memory_order_release);
        });
        n->running = true;
        return 0;
    });
}

int slipway_network_stop(slipway_network* n) {
    return guarded([&] {
        if (n == nullptr) return set_error(-EINVAL, "slipway_network_stop: null network");
        const std::lock_guard lock(n->mu);
        n->stop_locked();
        return 0;
    });
}

void slipway_network_free(slipway_network* n) {
    if (n == nullptr) return;
    (void)guarded([&] {
        {
            const std::lock_guard lock(n->mu);
            n->stop_locked();
            // Held-back frames go back to the pool while it still exists.
            for (auto& p : n->ports)
                p->pending.reset();
        }
        // The network first: tearing it down may still hand frames to a port (the NAT engine's
        // RSTs), whose on_frames_for_vmm writes the wrapper's eventfd, so that must stay open.
        n->net.reset();
        n->ports.clear();
        delete n;
        return 0;
    });
}

slipway_port* slipway_attach_frame_port(slipway_network* n, const char* name, unsigned caps_flags,
                                        uint32_t max_frame) {
    return guarded_ptr<slipway_port>([&]() -> slipway_port* {
        if (n == nullptr || name == nullptr || *name == '\0') {
            set_error(-EINVAL, "slipway_attach_frame_port: null network or empty name");
            return nullptr;
        }
        if ((caps_flags & ~(SLIPWAY_CAP_GSO | SLIPWAY_CAP_PARTIAL_CSUM)) != 0) {
            set_error(-EINVAL, "slipway_attach_frame_port: unknown capability flags");
            return nullptr;
        }
        const std::lock_guard lock(n->mu);
        auto p = std::make_unique<slipway_port>();
        p->efd.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (!p->efd.valid()) {
            const int e = errno;
            set_error(-e, std::string("frame port ") + name + ": eventfd: " + std::strerror(e));
            return nullptr;
        }
        p->vnet_hdr = caps_flags != 0;
        p->pool = &n->net->pool();
        const slipway::PortCaps caps = caps_from(caps_flags, max_frame, n->net->plan().mtu);
        std::string err;
        const int efd = p->efd.get();
        auto port = n->on_network([&]() -> slipway::Result<slipway::InProcessPort*> {
            auto r = n->net->attach_in_process(name, caps, err);
            if (r) {
                // Network thread: wake the VMM. A failed write means the counter is already
                // non-zero (EAGAIN near 2^64): the VMM is woken anyway.
                (*r)->on_frames_for_vmm = [efd] {
                    const std::uint64_t one = 1;
                    [[maybe_unused]] const auto w = ::write(efd, &one, sizeof one);
                };
            }
            return r;
        });
        if (!port) {
            set_error(to_errno(port.error()), err);
            return nullptr;
        }
        p->frame = *port;
        p->port = *port;
        n->ports.push_back(std::move(p));
        return n->ports.back().get();
    });
}

int slipway_port_send(slipway_port* p, const void* frame, size_t len) {
    return guarded([&] {
        if (p == nullptr || p->frame == nullptr || (frame == nullptr && len != 0))
            return set_error(-EINVAL, "slipway_port_send: not a frame port, or a null frame");
        const auto* bytes = static_cast<const std::byte*>(frame);
        slipway::virtio::NetHdr hdr{};
        std::size_t hdr_len = 0;
        if (p->vnet_hdr) {
            hdr_len = slipway::virtio::kNetHdrV1Len;
            if (len < hdr_len + kEthHdrLen)
                return set_error(-EINVAL,
                                 "slipway_port_send: shorter than the virtio-net header "
                                 "and an Ethernet header");
            auto h = slipway::virtio::NetHdr::parse({bytes, hdr_len}, hdr_len);
            if (!h || !h->validate_for_frame(len - hdr_len))
                return set_error(-EINVAL, "slipway_port_send: invalid virtio-net header");
            hdr = *h;
            hdr.num_buffers = 0;
        } else if (len < kEthHdrLen) {
            return set_error(-EINVAL, "slipway_port_send: shorter than an Ethernet header");
        }
        const std::size_t flen = len - hdr_len;
        auto b = p->pool->try_alloc(flen);
        if (!b)
            return b.error() == Errc::pool_exhausted
                       ? set_error(-ENOBUFS, "slipway_port_send: the packet pool is empty")
                       : set_error(-EMSGSIZE,
                                   "slipway_port_send: frame larger than the largest "
                                   "pool buffer");
        std::memcpy(b->data().data(), bytes + hdr_len, flen);
        b->meta().vnet = hdr;
        if (!p->frame->to_switch().try_push(std::move(*b))) {
            p->frame->kick();  // it is full: make sure the network is draining it
            return -EAGAIN;
        }
        p->frame->kick();
        return 0;
    });
}

ssize_t slipway_port_recv(slipway_port* p, void* buf, size_t cap) {
    try {
        if (p == nullptr || p->frame == nullptr || (buf == nullptr && cap != 0))
            return set_error(-EINVAL, "slipway_port_recv: not a frame port, or a null buffer");
        if (!p->pending && !p->frame->to_port().try_pop(p->pending)) {
            // Empty: reset the eventfd, then look again, so a frame pushed between the first look
            // and the reset is not left waiting without a wake-up (the network thread writes the
            // eventfd after it pushed).
            std::uint64_t v = 0;
            [[maybe_unused]] const auto r = ::read(p->efd.get(), &v, sizeof v);
            if (!p->frame->to_port().try_pop(p->pending)) return -EAGAIN;
        }
        const std::size_t hdr_len = p->vnet_hdr ? slipway::virtio::kNetHdrV1Len : 0;
        const std::size_t need = hdr_len + p->pending.len();
        if (need > cap) {
            char msg[96];
            const int n = std::snprintf(msg, sizeof msg,
                                        "slipway_port_recv: the next frame needs %zu bytes", need);
            return set_error(-EMSGSIZE,
                             std::string_view(msg, n > 0 ? static_cast<std::size_t>(n) : 0));
        }
        auto* out = static_cast<std::byte*>(buf);
        if (hdr_len != 0) {
            slipway::virtio::NetHdr h = p->pending.meta().vnet;
            h.num_buffers = 1;  // one buffer per frame (virtio 1.2 §5.1.6.3.2 without MRG_RXBUF)
            if (!h.emit({out, hdr_len}, hdr_len))
                return set_error(-EIO, "slipway_port_recv: cannot encode the virtio-net header");
        }
        std::memcpy(out + hdr_len, p->pending.data().data(), p->pending.len());
        p->pending.reset();
        return static_cast<ssize_t>(need);
    } catch (...) {
        return from_exception();
    }
}

int slipway_port_fd(slipway_port* p) {
    if (p == nullptr || p->frame == nullptr)
        return set_error(-EINVAL, "slipway_port_fd: not a frame port");
    return p->efd.get();
}

uint64_t slipway_virtio_offered_features(void) {
    return slipway::virtio_offered_features();
}

slipway_port* slipway_attach_virtio(slipway_network* n, const slipway_virtio_config* cfg) {
    return guarded_ptr<slipway_port>([&]() -> slipway_port* {
        if (n == nullptr || cfg == nullptr) {
            set_error(-EINVAL, "slipway_attach_virtio: null network or config");
            return nullptr;
        }
        if (cfg->n_regions != 0 && cfg->regions == nullptr) {
            set_error(-EINVAL, "slipway_attach_virtio: n_regions without regions");
            return nullptr;
        }
        slipway::VirtioAttachOptions o;
        o.name = cfg->name != nullptr ? cfg->name : "";
        for (std::size_t i = 0; i < cfg->n_regions; ++i)
            o.regions.push_back(
                {cfg->regions[i].host, cfg->regions[i].guest_addr, cfg->regions[i].size});
        o.features = cfg->features;
        for (std::size_t q = 0; q < 2; ++q) {
            const slipway_virtqueue& c = cfg->queues[q];
            o.queues[q] = {.size = c.size,
                           .desc = c.desc,
                           .avail = c.avail,
                           .used = c.used,
                           .kick_fd = c.kick_fd,
                           .call_fd = c.call_fd,
                           .last_avail = c.last_avail};
        }
        const std::lock_guard lock(n->mu);
        auto p = std::make_unique<slipway_port>();
        std::string err;
        auto port = n->on_network([&] { return n->net->attach_virtio(o, err); });
        if (!port) {
            set_error(to_errno(port.error()), err);
            return nullptr;
        }
        p->port = *port;
        n->ports.push_back(std::move(p));
        return n->ports.back().get();
    });
}

int slipway_detach(slipway_network* n, slipway_port* p) {
    return guarded([&] {
        if (n == nullptr || p == nullptr)
            return set_error(-EINVAL, "slipway_detach: null network or port");
        const std::lock_guard lock(n->mu);
        const auto it = std::find_if(n->ports.begin(), n->ports.end(),
                                     [p](const auto& q) { return q.get() == p; });
        if (it == n->ports.end())
            return set_error(-ENOENT, "slipway_detach: not a port of this network");
        const slipway::SwitchPort* sp = p->port;
        auto r = n->on_network([&] { return n->net->detach(sp); });
        if (!r) return set_error(to_errno(r.error()), "slipway_detach: the network lost the port");
        n->ports.erase(it);  // the wrapper: its held-back frame and eventfd go with it
        return 0;
    });
}

int slipway_add_forward(slipway_network* n, const char* spec, uint32_t* id_out) {
    return guarded([&] {
        if (n == nullptr || spec == nullptr)
            return set_error(-EINVAL, "slipway_add_forward: null network or spec");
        const std::lock_guard lock(n->mu);
        std::string err;
        auto f = n->on_network([&] { return n->net->add_forward(spec, err); });
        if (!f) return set_error(to_errno(f.error()), err);
        if (id_out != nullptr) *id_out = f->id;
        return 0;
    });
}

int slipway_remove_forward(slipway_network* n, uint32_t id, int kill) {
    return guarded([&] {
        if (n == nullptr) return set_error(-EINVAL, "slipway_remove_forward: null network");
        const std::lock_guard lock(n->mu);
        auto r = n->on_network([&] { return n->net->remove_forward(id, kill != 0); });
        if (!r)
            return set_error(to_errno(r.error()),
                             "slipway_remove_forward: no forward " + std::to_string(id));
        return 0;
    });
}

int slipway_stats_foreach(slipway_network* n,
                          void (*cb)(const char* name, uint64_t value, void* ctx), void* ctx) {
    return guarded([&] {
        if (n == nullptr || cb == nullptr)
            return set_error(-EINVAL, "slipway_stats_foreach: null network or callback");
        slipway::NetworkStats st;
        {
            const std::lock_guard lock(n->mu);
            st = n->on_network([&] { return n->net->stats(); });
        }
        // Outside the lock: the callback may call slipway.
        std::string name;
        const auto emit = [&](std::string_view prefix, const slipway::CounterValue& c) {
            name.assign(prefix);
            name += c.name;
            cb(name.c_str(), c.value, ctx);
        };
        for (const auto& c : st.switch_counters)
            emit("switch.", c);
        for (const auto& p : st.ports) {
            const std::string prefix = "port." + p.name + ".";
            for (const auto& c : p.counters)
                emit(prefix, c);
        }
        for (const auto& c : st.gateway_counters)
            emit("gateway.", c);
        for (const auto& c : st.pool)
            emit("pool.", c);
        return 0;
    });
}

}  // extern "C"
