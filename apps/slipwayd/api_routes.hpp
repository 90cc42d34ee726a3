// The HTTP API's routes: what each method and path does, in slipway's /v1 shapes and gvproxy's,
// independent of the transport (api_server.cpp feeds it parsed requests and writes its answers).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "slipway/core/types.hpp"
#include "slipwayd/api_backend.hpp"

namespace slipway::apps {

// Who is asking. A host client on the --api socket may use every route; a guest connected to the
// gateway's port 80 (--guest-api) only gvproxy's three forwarder routes, as gvproxy's gateway
// listener allows (everything else is "404 page not found").
enum class ApiScope : std::uint8_t { host, guest };

struct ApiRequest {
    std::string method;  // as sent: "GET", "POST", ...
    std::string target;  // path and query string
    std::string body;
    ApiScope scope = ApiScope::host;
    // The guest's address on a guest-scope connection, when the network says which guest it is;
    // gvproxy's expose fills a remote without an address (":8080") from it.
    std::optional<Ipv4Addr> peer;
};

struct ApiResponse {
    unsigned status = 200;
    std::string content_type;  // empty: no Content-Type header (gvproxy's empty 200s have none)
    std::string body;
    std::string allow;     // the Allow header of a 405
    bool nosniff = false;  // X-Content-Type-Options: nosniff, as Go's http.Error sets it
};

// Bodies over this are refused with 413 before they reach a route.
inline constexpr std::size_t kMaxRequestBody = 64 * 1024;

class ApiRoutes : public std::enable_shared_from_this<ApiRoutes> {
  public:
    using Responder = std::function<void(ApiResponse)>;

    // Make it with std::make_shared: pending backend replies hold it alive.
    explicit ApiRoutes(ApiBackend& backend) : backend_(backend) {}

    // API thread. `respond` runs once: now, or when the backend replies (never when the network
    // stops first; the session's deadline then ends the connection).
    void handle(const ApiRequest& req, const Responder& respond);

  private:
    struct Target;
    void route_v1(const ApiRequest& req, const Target& t, const Responder& respond);
    void route_gvproxy(const ApiRequest& req, const Target& t, const Responder& respond);

    void v1_status(const Responder& respond);
    void v1_add_forward(const ApiRequest& req, const Responder& respond);
    void v1_remove_forward(const Target& t, std::string_view id_text, const Responder& respond);
    void v1_flows(const Target& t, const Responder& respond);
    void v1_add_dns(const ApiRequest& req, const Responder& respond);
    void metrics(const Responder& respond);

    void gv_expose(const ApiRequest& req, const Responder& respond);
    void gv_unexpose(const ApiRequest& req, const Responder& respond);
    void gv_dns_add(const ApiRequest& req, const Responder& respond);

    ApiBackend& backend_;
    // The "local" text each forward made through gvproxy's expose was asked for with (":8080"),
    // which gvproxy's list shows as given; pruned when the list shows the forward gone.
    std::map<std::uint32_t, std::string> gv_locals_;
};

}  // namespace slipway::apps
