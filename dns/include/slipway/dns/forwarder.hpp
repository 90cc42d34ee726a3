// The DNS forwarder at the gateway: local names, a TTL-honouring cache, and upstream resolvers
// raced over UDP with a TCP retry on truncation. See forwarder.cpp for the theory of operation.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/event_loop.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/core/wire/ethernet.hpp"
#include "slipway/dns/cache.hpp"
#include "slipway/dns/upstream.hpp"

namespace slipway::dns {

// Where a query came from, so its answer can go back: a guest's UDP socket (MAC, VLAN, address,
// port) or, when `stream` is non-zero, a stream session of serve_stream().
struct GuestEndpoint {
    MacAddr mac;
    std::optional<wire::VlanTag> vlan;
    Ipv4Addr ip;
    std::uint16_t port = 0;
    Ipv4Addr local;  // the address the query was sent to (the reply's source)
    std::uint32_t stream = 0;
};

// The gateway implements this: it turns a DNS message into a UDP frame to the guest.
class ReplySink {
  public:
    virtual void dispatch_dns_reply(const GuestEndpoint& to, ByteView msg) noexcept = 0;
    // Called after a batch of replies sent outside the sink's own receive path (upstream answers,
    // timeouts), so the sink can wake its consumer once.
    virtual void flush_dns_replies() noexcept = 0;

  protected:
    ~ReplySink() = default;
};

struct LocalRecord {
    std::string name;  // dotted, any case, no trailing dot needed
    Ipv4Addr addr;
};

inline constexpr std::string_view kLocalZone = "slipway.internal";

struct ForwarderConfig {
    std::vector<Upstream> upstreams;  // empty: the nameservers of resolv_conf
    std::string resolv_conf = "/etc/resolv.conf";
    std::chrono::milliseconds resolv_poll{2000};
    Ipv4Addr gateway;
    std::optional<Ipv4Addr> host_alias;
    std::vector<LocalRecord> records;  // --dns-record and the embedding API
    std::string domain;                // guests' DHCP host names resolve under it
    // Looks up a guest's DHCP host name (nullptr: none).
    std::function<std::optional<Ipv4Addr>(std::string_view)> host_lookup;
    CacheConfig cache;
    std::size_t max_pending = 1024;           // queries waiting for an upstream
    std::chrono::milliseconds timeout{1700};  // then SERVFAIL (the guest hears within 2 s)
    std::chrono::milliseconds hedge{250};     // then the next upstream is asked too
    std::uint16_t max_udp_reply = 1472;       // MTU - IPv4 - UDP: replies are never fragmented
};

struct ForwarderCounters {
    Counter queries;            // messages from guests that parsed as queries
    Counter local_answers;      // answered from the local zone
    Counter cache_hits;         // answered from the cache
    Counter upstream_queries;   // datagrams (and TCP queries) sent to upstreams
    Counter upstream_answers;   // matching answers taken from upstreams
    Counter upstream_timeouts;  // upstream attempts that did not answer in time
    Counter upstream_errors;    // refused, unreachable, mismatched or malformed upstream replies
    Counter tcp_retries;        // truncated UDP answers retried over TCP
    Counter truncated;          // answers too large for the guest, sent with TC set
    Counter servfail;           // SERVFAIL sent because no upstream answered
    Counter formerr;            // FORMERR/NOTIMP sent (malformed, no question, other opcodes)
    Counter drop_malformed;     // did not parse; FORMERR sent when the header reads as a query
    Counter drop_busy;          // pending table, or the guest's quarter of it, full: SERVFAIL
    Counter latency_us_total;   // sum of upstream answer latencies
    Counter latency_samples;    // how many went into latency_us_total
    Counter streams;            // stream sessions accepted by serve_stream()

    template <class F>
    void for_each(F&& f) const {
        f("dns_queries", queries);
        f("dns_local_answers", local_answers);
        f("dns_cache_hits", cache_hits);
        f("dns_upstream_queries", upstream_queries);
        f("dns_upstream_answers", upstream_answers);
        f("dns_upstream_timeouts", upstream_timeouts);
        f("dns_upstream_errors", upstream_errors);
        f("dns_tcp_retries", tcp_retries);
        f("dns_truncated", truncated);
        f("dns_servfail", servfail);
        f("dns_formerr", formerr);
        f("dns_drop_malformed", drop_malformed);
        f("dns_drop_busy", drop_busy);
        f("dns_upstream_latency_us_total", latency_us_total);
        f("dns_upstream_latency_samples", latency_samples);
        f("dns_streams", streams);
    }
};

class Forwarder {
  public:
    // Reads resolv_conf when no upstream is given (a missing file or no nameserver is logged, not
    // fatal: queries get SERVFAIL until the file names one). Errc::invalid_argument with `error`
    // set for a bad local record.
    static Result<std::unique_ptr<Forwarder>> create(IoContext& io, ForwarderConfig cfg,
                                                     ReplySink& sink, std::string& error);
    ~Forwarder();
    Forwarder(const Forwarder&) = delete;
    Forwarder& operator=(const Forwarder&) = delete;

    // A UDP payload sent by a guest to port 53. The answer goes to the sink, now (local names,
    // cache, errors) or later (upstream answers, SERVFAIL on timeout).
    void process_query(ByteView msg, const GuestEndpoint& from) noexcept;

    // Serves DNS over a connected stream socket (RFC 1035 §4.2.2: two-byte length prefix): the
    // NAT engine hands a guest's TCP connection to port 53 here. The forwarder owns `fd`.
    // Errc::too_large when all stream sessions are in use.
    Result<void> serve_stream(UniqueFd fd) noexcept;

    // Local records (the embedding API). add_record replaces an existing name.
    Result<void> add_record(std::string_view name, Ipv4Addr addr);
    bool remove_record(std::string_view name);
    [[nodiscard]] std::vector<LocalRecord> records() const;

    [[nodiscard]] std::vector<std::string> upstreams() const;
    [[nodiscard]] const ForwarderCounters& counters() const noexcept;
    [[nodiscard]] const Cache& cache() const noexcept;

  private:
    struct Impl;
    explicit Forwarder(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace slipway::dns
