// slipwayd: the daemon that runs one virtual network for QEMU, vfkit and network namespaces.
//
// Theory of operation. slipwayd is a thin layer over slipway::Network (embed/):
//   1. Parse the command line and the --config TOML file (config.cpp); the command line wins.
//   2. log::init(level); Network::create (validates the address plan, MTU, pcap file, and binds
//      the --forward rules).
//   3. Write the pid file if asked.
//   4. Network::attach each --attach spec, in order; each starts listening at once.
//   5. The HTTP API (api_server.cpp, routes in api_routes.cpp) if --api or --guest-api is given.
//      It runs on a thread of its own with its own io_context, so parsing requests and rendering
//      documents never takes time from the network thread. Every call into the Network goes
//      through a CommandChannel (api_backend_network.cpp): the command runs on the network thread
//      between two loop handlers and its outcome comes back to the API thread; a full channel is
//      a 503. --api PATH serves every route on a unix socket. --guest-api serves gvproxy's
//      forwarder routes to guests at the gateway's port 80: the network thread terminates such a
//      connection on one end of a socketpair and hands the other end to the API thread through
//      GuestHandoff (a lock-free ring and an eventfd). Either flag starts the API thread; with
//      --guest-api alone it serves guests only.
//   6. SIGTERM/SIGINT through a boost::asio::signal_set on the network's io_context: the handler
//      calls Network::stop(). SIGPIPE is ignored: a peer closing its socket must show up as an
//      EPIPE on that socket, not kill the daemon.
//   7. Log one line containing "ready" once the loop runs (every attachment is listening by
//      then); scripts and tests wait for it. Then Network::run() until stopped.
//   8. On the way out: stop the API thread's loop and join it, close the API's connections and
//      remove its socket file, then destroy the channel and the server with no loop running; then
//      the pid file; exit 0.
// Exit status: 0 after a signal; 2 for a bad flag or value (including what Network::create and
// Network::attach reject as invalid), with one line on stderr naming it; 1 for failures while
// starting or running (a socket path that cannot be bound, a pid file that cannot be written).
#include <pthread.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "slipway/core/log.hpp"
#include "slipway/embed/network.hpp"
#include "slipwayd/api_backend_network.hpp"
#include "slipwayd/api_guest.hpp"
#include "slipwayd/api_server.hpp"
#include "slipwayd/config.hpp"

namespace {

using namespace slipway;
using namespace slipway::apps;

int fail_with(int code, const std::string& message) {
    std::fprintf(stderr, "slipwayd: %s\n", message.c_str());
    return code;
}

int exit_code_for(Errc e) {
    return e == Errc::invalid_argument ? kExitUsage : kExitRuntime;
}

NetworkOptions to_options(const DaemonConfig& cfg) {
    NetworkOptions o;
    o.subnet = cfg.subnet;
    o.prefix_len = cfg.prefix_len;
    o.gateway = cfg.gateway;
    o.host_alias = cfg.host_alias;
    o.no_host_alias = cfg.no_host_alias;
    o.mtu = cfg.mtu;
    o.isolate = cfg.isolate;
    o.mac_lock = !cfg.no_mac_lock;
    o.pcap_path = cfg.pcap;
    o.no_dhcp = cfg.no_dhcp;
    o.dhcp_range = cfg.dhcp_range;
    o.dhcp_static = cfg.dhcp_static;
    o.lease_time_s = cfg.lease_time_s;
    o.domain = cfg.domain;
    o.search = cfg.search;
    o.lease_file = cfg.lease_file;
    o.no_dns = cfg.no_dns;
    o.dns_upstreams = cfg.dns_upstreams;
    o.resolv_conf = cfg.resolv_conf;
    o.dns_records = cfg.dns_records;
    o.dns_cache_entries = cfg.dns_cache_entries;
    o.dns_cache_bytes = cfg.dns_cache_bytes;
    o.max_flows = cfg.max_flows;
    o.no_peek_off = cfg.no_peek_off;
    o.connect_timeout = std::chrono::seconds(cfg.connect_timeout_s);
    o.tcp_idle_timeout = std::chrono::seconds(cfg.tcp_idle_timeout_s);
    o.udp_timeout = std::chrono::seconds(cfg.udp_timeout_s);
    o.udp_dns_timeout = std::chrono::seconds(cfg.udp_dns_timeout_s);
    o.icmp_mode = cfg.icmp_mode;
    o.egress_rules = cfg.egress_rules;
    o.host_alias_ports = cfg.host_alias_ports;
    o.max_flows_per_guest = cfg.max_flows_per_guest;
    o.max_half_open = cfg.max_half_open;
    o.new_flow_rate = cfg.new_flow_rate;
    o.forwards = cfg.forwards;
    return o;
}

// Removes the pid file on every way out of main once it has been written.
struct PidFile {
    std::string path;
    bool written = false;
    ~PidFile() {
        if (written) ::unlink(path.c_str());
    }
};

// The HTTP API's thread and everything on it. Members are built in declaration order and
// destroyed in reverse; the destructor first stops and joins the thread, so the handoff, the
// server and the backend's CommandChannel are destroyed with no loop running (the channel's rule),
// before the io_context they are registered with.
struct ApiRuntime {
    explicit ApiRuntime(Network& net) : backend(net, io), server(io, backend) {}
    ~ApiRuntime() { stop(); }
    ApiRuntime(const ApiRuntime&) = delete;
    ApiRuntime& operator=(const ApiRuntime&) = delete;

    void start_thread() {
        thread = std::thread([this] {
            // A handler that throws costs that request, not the API: the loop carries on.
            for (;;) {
                try {
                    io.run();
                    return;
                } catch (const std::exception& e) {
                    SLW_ERROR("api: {}", e.what());
                }
            }
        });
    }

    // Idempotent. Closes the connections and removes the API socket file.
    void stop() noexcept {
        if (thread.joinable()) {
            io.stop();
            thread.join();
        }
        server.stop();
    }

    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work =
        boost::asio::make_work_guard(io);
    NetworkBackend backend;
    ApiServer server;
    std::optional<GuestHandoff> guests;
    std::thread thread;
};

int run_daemon(const DaemonConfig& cfg) {
    // SIGTERM/SIGINT wait (pending) until the signal_set below exists, so a stop request during
    // start-up still closes the sockets and removes the pid file instead of killing us midway.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    log::init(cfg.log_level);

    std::string error;
    auto created = Network::create(to_options(cfg), error);
    if (!created) return fail_with(exit_code_for(created.error()), error);
    std::unique_ptr<Network> net = std::move(*created);
    if (!cfg.config_file.empty()) SLW_INFO("config file {}", cfg.config_file);

    PidFile pid_file{cfg.pid_file};
    if (!cfg.pid_file.empty()) {
        std::ofstream out(cfg.pid_file, std::ios::trunc);
        out << ::getpid() << "\n";
        out.flush();
        if (!out) return fail_with(kExitRuntime, "--pid-file " + cfg.pid_file + ": cannot write");
        pid_file.written = true;
    }

    for (const auto& spec : cfg.attach) {
        error.clear();
        if (auto r = net->attach(spec, error); !r) {
            // Name the flag; add the spec unless the attachment's own message already has it.
            std::string line = "--attach";
            if (error.find(spec) == std::string::npos) line += " " + spec;
            line += ": " + (error.empty() ? std::string(to_string(r.error())) : error);
            return fail_with(exit_code_for(r.error()), line);
        }
    }

    // Declared after `net`: its channel and watchers go before the network's io_context.
    std::unique_ptr<ApiRuntime> api;
    if (!cfg.api.empty() || cfg.guest_api) {
        api = std::make_unique<ApiRuntime>(*net);
        if (!cfg.api.empty()) {
            error.clear();
            if (auto r = api->server.start(cfg.api, error); !r)
                return fail_with(exit_code_for(r.error()), error);
        }
        if (cfg.guest_api) {
            ApiServer* server = &api->server;
            // serve runs on the API thread, with the address of the guest that connected (a
            // gvproxy remote without an address, ":8080", means that guest).
            api->guests.emplace(
                api->io, [server](int fd, Ipv4Addr guest) { server->serve_guest(fd, guest); });
            net->serve_on_gateway(80,
                                  [g = &*api->guests](Ipv4Addr guest) { return g->open(guest); });
        }
    }

    std::signal(SIGPIPE, SIG_IGN);
    boost::asio::signal_set signals(net->io(), SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        SLW_INFO("signal {}: stopping", signo);
        net->stop();
    });
    // Started while SIGTERM/SIGINT are blocked, so the API thread inherits the mask and the
    // signals are delivered to this (the network) thread.
    if (api) api->start_thread();
    ::pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);  // a pending one is delivered now

    net->post([&] {
        const auto status = net->status();
        if (!status.ready) SLW_WARN("some attachments are not listening");
        // DESIGN §4: where the leases live is said at start-up.
        const std::string dhcp = !status.plan.dhcp
                                     ? std::string("off")
                                     : status.plan.dhcp_first.to_string() + "-" +
                                           status.plan.dhcp_last.to_string() + ", leases " +
                                           (cfg.lease_file.empty() ? std::string("in memory only")
                                                                   : "in " + cfg.lease_file);
        std::string dns = "off";
        if (status.plan.dns_enabled) {
            dns = status.plan.dns.to_string() + ":53, upstreams ";
            if (cfg.dns_upstreams.empty()) {
                dns += "from " + cfg.resolv_conf;
            } else {
                for (std::size_t i = 0; i < cfg.dns_upstreams.size(); ++i)
                    dns += (i ? "," : "") + cfg.dns_upstreams[i];
            }
        }
        // The clamp of --max-flows to RLIMIT_NOFILE is said here, once start-up succeeded: the
        // default asks for more than most limits allow, which is no reason for a warning.
        const NetworkPlan& p = status.plan;
        SLW_INFO("NAT: up to {} flows{} (RLIMIT_NOFILE {}); host data peeked with {}", p.max_flows,
                 p.max_flows < cfg.max_flows
                     ? " (--max-flows " + std::to_string(cfg.max_flows) + " clamped)"
                     : std::string(),
                 p.nofile,
                 p.peek_off ? "SO_PEEK_OFF"
                            : (p.peek_off_kernel ? "a discard iovec (--no-peek-off)"
                                                 : "a discard iovec (no SO_PEEK_OFF here)"));
        // --icmp auto's choice, the egress policy and the per-guest limits, as in force.
        std::string egress;
        for (std::size_t i = 0; i < p.egress_rules.size(); ++i)
            egress += (i ? "; " : "") + p.egress_rules[i];
        auto limit = [](std::uint32_t v, const char* unit) {
            return v == 0 ? std::string("unlimited") : std::to_string(v) + unit;
        };
        SLW_INFO(
            "NAT: icmp {}{}; UDP idle {}s ({}s to ports 53/123); per guest {} flows, {} "
            "connecting, {} new flows; host alias ports {}; egress: {}",
            p.icmp_mode.empty() ? "off" : p.icmp_mode,
            cfg.icmp_mode == "auto" ? " (--icmp auto)" : "", cfg.udp_timeout_s,
            cfg.udp_dns_timeout_s, limit(cfg.max_flows_per_guest, ""), limit(cfg.max_half_open, ""),
            limit(cfg.new_flow_rate, "/s"),
            !p.host_alias ? std::string("- (no host alias)")
                          : (p.host_alias_ports.empty() ? std::string("all") : p.host_alias_ports),
            egress.empty() ? "allow all" : egress);
        SLW_INFO(
            "slipwayd ready: {} attachment{}, api {}{}, subnet {}/{}, gateway {}, dhcp {}, dns {}",
            cfg.attach.size(), cfg.attach.size() == 1 ? "" : "s",
            cfg.api.empty() ? "none" : cfg.api,
            cfg.guest_api ? " (and guests at " + status.plan.gateway.to_string() + ":80)"
                          : std::string(),
            status.plan.subnet.to_string(), status.plan.prefix_len, status.plan.gateway.to_string(),
            dhcp, dns);
    });

    net->run();

    boost::system::error_code ignored;
    signals.cancel(ignored);
    net->serve_on_gateway(80, nullptr);  // the handoff goes with `api`: nothing may call it
    api.reset();                         // joins the API thread, removes the socket file
    SLW_INFO("slipwayd stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ParseOutcome parsed = parse_command_line(argc, argv);
    if (!parsed.config) {
        if (!parsed.out.empty()) std::fputs(parsed.out.c_str(), stdout);
        if (!parsed.err.empty()) std::fprintf(stderr, "%s\n", parsed.err.c_str());
        return parsed.exit_code;
    }
    try {
        return run_daemon(*parsed.config);
    } catch (const std::exception& e) {
        return fail_with(kExitRuntime, std::string("fatal: ") + e.what());
    }
}
