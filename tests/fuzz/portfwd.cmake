# Port forwarding rules' text form: Rule::parse, spec() round trips, overlaps() symmetry and
# parse_host_port on arbitrary text.
slipway_fuzz_target(fuzz_portfwd_rule fuzz_portfwd_rule.cpp)
target_link_libraries(fuzz_portfwd_rule PRIVATE slipway::portfwd)
