// slipwayctl's human output: the API's JSON documents as aligned, greppable text.
#pragma once

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

}  // namespace slipway::apps
