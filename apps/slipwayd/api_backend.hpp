// The calls slipwayd's HTTP API makes into its network, as an interface: the daemon implements it
// over slipway::Network and a CommandChannel (api_backend_network.cpp), the unit tests with a fake,
// so the whole API can be driven over real sockets without a Network.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

#include "slipway/core/result.hpp"
#include "slipway/embed/network.hpp"

namespace slipway::apps {

// A failed call: the code the HTTP status is chosen from (api_routes.cpp, status_for) and one line
// for the client (may be empty when the code says it all).
struct ApiError {
    Errc code = Errc::io_error;
    std::string message;
};

template <class T>
using ApiResult = tl::expected<T, ApiError>;

// Every call but plan() is asynchronous: it queues one command for the network thread and returns
// true, and `reply` later runs on the API thread with the outcome (an exception on the network
// thread arrives as Errc::io_error with its text). It returns false, and `reply` never runs, when
// too many commands are already in flight: the API answers 503 "busy". All calls, and all replies,
// happen on the API thread.
class ApiBackend {
  public:
    template <class T>
    using Reply = std::function<void(ApiResult<T>)>;

    virtual ~ApiBackend() = default;

    // Fixed once the network is created, so the API thread may read it without a command.
    [[nodiscard]] virtual const NetworkPlan& plan() const = 0;

    virtual bool status(Reply<NetworkStatus> reply) = 0;
    virtual bool stats(Reply<NetworkStats> reply) = 0;

    virtual bool forwards(Reply<std::vector<ForwardInfo>> reply) = 0;
    // Network::add_forward: Errc::invalid_argument, conflict, io_error (and unsupported while
    // port forwarding is not built), each with the network's one-line reason.
    virtual bool add_forward(std::string spec, Reply<ForwardInfo> reply) = 0;
    // Errc::not_found for an unknown id.
    virtual bool remove_forward(std::uint32_t id, bool kill, Reply<void> reply) = 0;
    virtual bool find_forward(std::string proto, std::string host,
                              Reply<std::optional<std::uint32_t>> reply) = 0;

    virtual bool leases(Reply<std::vector<LeaseView>> reply) = 0;
    virtual bool flows(FlowFilter filter, Reply<std::vector<FlowInfo>> reply) = 0;

    virtual bool dns_records(Reply<std::vector<DnsRecordView>> reply) = 0;
    // Adds (or replaces) each record in order, in one command, so a gvproxy zone lands whole or
    // stops at the first record the network refuses: Errc::unsupported when DNS is off,
    // Errc::invalid_argument for a name the DNS service rejects (the message names it). The API
    // checks names beforehand, so a refusal midway does not happen in practice.
    virtual bool add_dns_records(std::vector<std::pair<std::string, Ipv4Addr>> records,
                                 Reply<void> reply) = 0;
    // Errc::not_found when no record has that name.
    virtual bool remove_dns_record(std::string name, Reply<void> reply) = 0;
};

}  // namespace slipway::apps
