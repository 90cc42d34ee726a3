// DHCPv4 server of the gateway (RFC 2131/2132): address pool, static leases, lease file.
//
// Theory of operation: see dhcp/src/server.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/stats.hpp"
#include "slipway/core/types.hpp"
#include "slipway/dhcp/message.hpp"

namespace slipway::dhcp {

struct StaticLease {
    MacAddr mac;
    Ipv4Addr ip;
    std::string hostname;  // may be empty
};

struct ServerConfig {
    Ipv4Addr server_id;  // the gateway: option 54, source of replies, router, DNS
    Ipv4Addr subnet;
    std::uint8_t prefix_len = 24;
    Ipv4Addr router;
    Ipv4Addr dns;
    Ipv4Addr range_first;  // inclusive pool bounds inside the subnet
    Ipv4Addr range_last;
    std::vector<Ipv4Addr> excluded;  // never leased: the gateway, the host-loopback alias
    std::chrono::seconds lease_time{3600};
    std::uint32_t mtu = 1500;
    std::string domain;               // option 15, and the zone of guests' host names
    std::vector<std::string> search;  // option 119
    std::vector<StaticLease> statics;
    std::string lease_file;  // empty: leases only in memory
    std::chrono::seconds decline_quarantine{600};
};

struct ServerCounters {
    Counter discovers, offers, requests, acks, naks, releases, declines, informs;
    Counter no_address;  // a DISCOVER found no free address (pool exhausted): no offer
    Counter ignored;     // for another server, relayed (giaddr), or from a client we do not know
    Counter drop_malformed;  // failed MessageView::parse or not a BOOTREQUEST
    Counter persist_errors;  // the lease file could not be written

    template <class F>
    void for_each(F&& f) const {
        f("dhcp_discovers", discovers);
        f("dhcp_offers", offers);
        f("dhcp_requests", requests);
        f("dhcp_acks", acks);
        f("dhcp_naks", naks);
        f("dhcp_releases", releases);
        f("dhcp_declines", declines);
        f("dhcp_informs", informs);
        f("dhcp_no_address", no_address);
        f("dhcp_ignored", ignored);
        f("dhcp_drop_malformed", drop_malformed);
        f("dhcp_persist_errors", persist_errors);
    }
};

// A lease as the API shows it.
struct LeaseInfo {
    MacAddr mac;
    Ipv4Addr ip;
    std::string hostname;
    std::int64_t expires_unix = 0;  // seconds since the epoch
    bool is_static = false;
    bool bound = false;  // ACKed and not expired/released (else only offered or remembered)
};

// Where a reply goes (RFC 2131 §4.1 "Constructing and sending DHCP messages").
struct ReplyTarget {
    std::size_t len = 0;  // bytes of the DHCP message written to `out`
    Ipv4Addr dst_ip;      // 255.255.255.255 for broadcast
    MacAddr dst_mac;      // ff:ff:ff:ff:ff:ff for broadcast
    std::uint16_t dst_port = kClientPort;
    // A relay agent on the guest link (giaddr set, inside the subnet): the reply goes to giaddr,
    // port 67, at the MAC the request came from, which only the caller knows (dst_mac unset).
    bool to_relay = false;
};

class Server {
  public:
    // Validates the config, loads the lease file if any. A lease file that cannot be parsed is
    // moved aside (FILE.corrupt-<unix time>) with a logged error and the server starts empty;
    // an unreadable one (permissions) is an error. `error` is one line naming the flag.
    static Result<std::unique_ptr<Server>> create(ServerConfig cfg, std::string& error);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // One DHCP message from a guest (the UDP payload of a datagram to port 67) at time `now`
    // (unix seconds). Writes the reply message into `out` (at least 576 bytes) and says where to
    // send it, or nullopt when nothing is to be sent (counted).
    std::optional<ReplyTarget> process(ByteView payload, MutByteView out,
                                       std::int64_t now) noexcept;

    [[nodiscard]] const ServerCounters& counters() const noexcept { return counters_; }
    [[nodiscard]] std::vector<LeaseInfo> leases(std::int64_t now) const;
    // The address bound to a guest's host name (option 12), for the DNS local zone.
    [[nodiscard]] std::optional<Ipv4Addr> address_of(std::string_view hostname,
                                                     std::int64_t now) const;
    [[nodiscard]] const ServerConfig& config() const noexcept;

  private:
    struct Impl;
    explicit Server(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
    ServerCounters counters_;
};

// Parses `A-B` (two IPv4 addresses) for --dhcp-range.
[[nodiscard]] std::optional<std::pair<Ipv4Addr, Ipv4Addr>> parse_range(std::string_view text);
// Parses `MAC=IP[,hostname]` for --dhcp-static.
[[nodiscard]] std::optional<StaticLease> parse_static(std::string_view text);

}  // namespace slipway::dhcp
