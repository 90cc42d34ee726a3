// slipwayctl's human output: the API's JSON documents as aligned, greppable text.
//
// Every renderer takes whatever document the server sent: a missing, null, empty or wrongly typed
// field prints as "-" (never an exception), and control characters in the server's strings print
// as '?' so that a guest's DHCP hostname cannot drive the terminal.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace slipway::apps {

// The address plan as "key value" lines, a blank line, then one row per port (NAME KIND STATE
// SPEC). Fields missing from the document print as "-".
std::string render_status_text(const nlohmann::json& status);

// One line per counter, every counter including zeros, in a fixed order (switch, ports, gateway,
// pool; names sorted within each):
//   switch NAME VALUE
//   port ID NAME VALUE      (ID is the port's spec, or its name when it has no spec)
//   gateway NAME VALUE
//   pool NAME VALUE
std::string render_stats_text(const nlohmann::json& stats);

// GET /v1/forwards: ID PROTO HOST GUEST ACTIVE ACCEPTED REFUSED.
std::string render_forwards_text(const nlohmann::json& forwards);
// POST /v1/forwards' reply: "forward ID: SPEC".
std::string render_forward_added(const nlohmann::json& forward);
// DELETE /v1/forwards/ID's reply: "forward ID deleted" plus ", connections reset" when killed.
std::string render_forward_deleted(const nlohmann::json& reply);

// GET /v1/leases: IP MAC HOSTNAME EXPIRES STATE. EXPIRES is the time left at `now_unix` ("3599s"),
// "static" or "expired"; STATE is "bound" or "offered".
std::string render_leases_text(const nlohmann::json& leases, std::int64_t now_unix);

// GET /v1/flows: PROTO DIR GUEST REMOTE STATE FWD (FWD "-" for a flow no forward made), then a
// note when the server cut the list short ("truncated").
std::string render_flows_text(const nlohmann::json& flows);

// GET /v1/dns: NAME IP.
std::string render_dns_text(const nlohmann::json& records);
// POST /v1/dns' reply: "dns NAME: IP".
std::string render_dns_added(const nlohmann::json& record);
// DELETE /v1/dns/NAME's reply: "dns NAME deleted".
std::string render_dns_deleted(const nlohmann::json& reply);

}  // namespace slipway::apps
