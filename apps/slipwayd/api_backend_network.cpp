// NetworkBackend: the API's calls into a live Network, each one CommandChannel command.
#include "slipwayd/api_backend_network.hpp"

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace slipway::apps {

namespace {

tl::unexpected<ApiError> api_fail(Errc code, std::string message) {
    if (message.empty()) message = std::string(to_string(code));
    return tl::unexpected(ApiError{code, std::move(message)});
}

}  // namespace

NetworkBackend::NetworkBackend(Network& net, IoContext& api_io, std::size_t capacity)
    : net_(net), plan_(net.plan()), channel_(net.io(), api_io, capacity) {}

template <class T, class Work>
bool NetworkBackend::run(Work work, Reply<T> reply) {
    // One slot per call: `work` fills it on the network thread and `done` reads it on the API
    // thread; the channel's ring hand-over orders the two (command_channel.hpp). Both closures are
    // destroyed on the API thread, so the shared_ptr's count is only ever touched there.
    auto slot = std::make_shared<std::optional<ApiResult<T>>>();
    return channel_.call(
        [slot, work = std::move(work)]() mutable {
            try {
                slot->emplace(work());
            } catch (const std::exception& e) {
                slot->emplace(api_fail(Errc::io_error, std::string("internal error: ") + e.what()));
            } catch (...) {
                slot->emplace(api_fail(Errc::io_error, "internal error"));
            }
        },
        [slot, reply = std::move(reply)] {
            if (!*slot) {
                reply(api_fail(Errc::io_error, "internal error"));
                return;
            }
            reply(std::move(**slot));
        });
}

bool NetworkBackend::status(Reply<NetworkStatus> reply) {
    return run<NetworkStatus>([n = &net_]() -> ApiResult<NetworkStatus> { return n->status(); },
                              std::move(reply));
}

bool NetworkBackend::stats(Reply<NetworkStats> reply) {
    return run<NetworkStats>([n = &net_]() -> ApiResult<NetworkStats> { return n->stats(); },
                             std::move(reply));
}

bool NetworkBackend::forwards(Reply<std::vector<ForwardInfo>> reply) {
    return run<std::vector<ForwardInfo>>(
        [n = &net_]() -> ApiResult<std::vector<ForwardInfo>> { return n->forwards(); },
        std::move(reply));
}

bool NetworkBackend::add_forward(std::string spec, Reply<ForwardInfo> reply) {
    return run<ForwardInfo>(
        [n = &net_, spec = std::move(spec)]() -> ApiResult<ForwardInfo> {
            std::string error;
            auto r = n->add_forward(spec, error);
            if (!r) return api_fail(r.error(), std::move(error));
            return std::move(*r);
        },
        std::move(reply));
}

bool NetworkBackend::remove_forward(std::uint32_t id, bool kill, Reply<void> reply) {
    return run<void>(
        [n = &net_, id, kill]() -> ApiResult<void> {
            if (auto r = n->remove_forward(id, kill); !r) {
                return api_fail(r.error(), r.error() == Errc::not_found
                                               ? "no forward with id " + std::to_string(id)
                                               : std::string());
            }
            return {};
        },
        std::move(reply));
}

bool NetworkBackend::find_forward(std::string proto, std::string host,
                                  Reply<std::optional<std::uint32_t>> reply) {
    return run<std::optional<std::uint32_t>>(
        [n = &net_, proto = std::move(proto), host = std::move(host)]()
            -> ApiResult<std::optional<std::uint32_t>> { return n->find_forward(proto, host); },
        std::move(reply));
}

bool NetworkBackend::leases(Reply<std::vector<LeaseView>> reply) {
    return run<std::vector<LeaseView>>(
        [n = &net_]() -> ApiResult<std::vector<LeaseView>> { return n->leases(); },
        std::move(reply));
}

bool NetworkBackend::flows(FlowFilter filter, Reply<std::vector<FlowInfo>> reply) {
    return run<std::vector<FlowInfo>>(
        [n = &net_, filter = std::move(filter)]() -> ApiResult<std::vector<FlowInfo>> {
            return n->flows(filter);
        },
        std::move(reply));
}

bool NetworkBackend::dns_records(Reply<std::vector<DnsRecordView>> reply) {
    return run<std::vector<DnsRecordView>>(
        [n = &net_]() -> ApiResult<std::vector<DnsRecordView>> { return n->dns_records(); },
        std::move(reply));
}

bool NetworkBackend::add_dns_records(std::vector<std::pair<std::string, Ipv4Addr>> records,
                                     Reply<void> reply) {
    return run<void>(
        [n = &net_, records = std::move(records)]() -> ApiResult<void> {
            for (const auto& [name, addr] : records) {
                auto r = n->add_dns_record(name, addr);
                if (r) continue;
                if (r.error() == Errc::unsupported)
                    return api_fail(r.error(), "DNS is off (--no-dns)");
                return api_fail(r.error(), "not a valid domain name: " + name);
            }
            return {};
        },
        std::move(reply));
}

bool NetworkBackend::remove_dns_record(std::string name, Reply<void> reply) {
    return run<void>(
        [n = &net_, name = std::move(name)]() -> ApiResult<void> {
            if (!n->remove_dns_record(name))
                return api_fail(Errc::not_found, "no DNS record " + name);
            return {};
        },
        std::move(reply));
}

}  // namespace slipway::apps
