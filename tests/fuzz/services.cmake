# Fuzz targets for the gateway's services: DHCP and DNS message parsing.
slipway_fuzz_target(fuzz_dhcp fuzz_dhcp.cpp)
target_link_libraries(fuzz_dhcp PRIVATE slipway::dhcp)
slipway_fuzz_target(fuzz_dns fuzz_dns.cpp)
target_link_libraries(fuzz_dns PRIVATE slipway::dns)
slipway_fuzz_target(fuzz_dns_forwarder fuzz_dns_forwarder.cpp)
target_link_libraries(fuzz_dns_forwarder PRIVATE slipway::dns)
# The NAT engine's TCP translation against the fakes of tests/unit/nat/fake_net.hpp: scripts of
# guest segments, socket events, timer ticks and link changes.
slipway_fuzz_target(fuzz_tcp_engine fuzz_tcp_engine.cpp)
target_link_libraries(fuzz_tcp_engine PRIVATE slipway::nat)
