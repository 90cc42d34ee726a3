// GET /metrics: the network's counters in the Prometheus text exposition format, version 0.0.4.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "slipway/embed/network.hpp"

namespace slipway::apps {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// One family per metric name, each with one "# HELP" and one "# TYPE" line and its samples right
// after them (the format wants a family's samples together):
//   slipway_up 1, slipway_forwards N (gauges);
//   slipway_switch_<c>, slipway_gateway_<c>, slipway_pool_<c> for each counter c of the group;
//   slipway_port_<c>{port="NAME"} for the ports' counters, one family for every port.
// A name that two counters of one group sanitise to keeps the first value (a family must not
// repeat a label set).
std::string metrics_text(const NetworkStats& stats, std::size_t forwards);

// "slipway_" + group + "_" + counter with every byte outside [a-zA-Z0-9_] replaced by '_'.
std::string metric_name(std::string_view group, std::string_view counter);
// Whether a counter of NetworkStats is a level that goes up and down (flows open now, capacity,
// free buffers, cache size) rather than a count of events.
bool is_gauge(std::string_view counter);
// A label value with '\', '"' and newline escaped as the format requires.
std::string escape_label_value(std::string_view value);

}  // namespace slipway::apps
