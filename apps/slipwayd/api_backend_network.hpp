// ApiBackend over a live slipway::Network: each call is a CommandChannel command that runs the
// Network member on the network thread and brings the outcome back to the API thread.
#pragma once

#include <cstddef>

#include "slipway/core/command_channel.hpp"
#include "slipway/embed/network.hpp"
#include "slipwayd/api_backend.hpp"

namespace slipway::apps {

class NetworkBackend final : public ApiBackend {
  public:
    // Construct before the network runs (or on its thread): the plan is copied here. `api_io` is
    // the API thread's loop, where replies run. Destroy once the API loop has stopped and the
    // network loop no longer runs (CommandChannel's rule); commands still queued are dropped.
    NetworkBackend(Network& net, IoContext& api_io, std::size_t capacity = 64);

    [[nodiscard]] const NetworkPlan& plan() const override { return plan_; }
    bool status(Reply<NetworkStatus> reply) override;
    bool stats(Reply<NetworkStats> reply) override;
    bool forwards(Reply<std::vector<ForwardInfo>> reply) override;
    bool add_forward(std::string spec, Reply<ForwardInfo> reply) override;
    bool remove_forward(std::uint32_t id, bool kill, Reply<void> reply) override;
    bool find_forward(std::string proto, std::string host,
                      Reply<std::optional<std::uint32_t>> reply) override;
    bool leases(Reply<std::vector<LeaseView>> reply) override;
    bool flows(FlowFilter filter, Reply<std::vector<FlowInfo>> reply) override;
    bool dns_records(Reply<std::vector<DnsRecordView>> reply) override;
    bool add_dns_records(std::vector<std::pair<std::string, Ipv4Addr>> records,
                         Reply<void> reply) override;
    bool remove_dns_record(std::string name, Reply<void> reply) override;

  private:
    template <class T, class Work>
    bool run(Work work, Reply<T> reply);

    Network& net_;
    NetworkPlan plan_;
    CommandChannel channel_;
};

}  // namespace slipway::apps
