# Fuzz targets for the gateway's services: DHCP and DNS message parsing.
slipway_fuzz_target(fuzz_dhcp fuzz_dhcp.cpp)
target_link_libraries(fuzz_dhcp PRIVATE slipway::dhcp)
slipway_fuzz_target(fuzz_dns fuzz_dns.cpp)
target_link_libraries(fuzz_dns PRIVATE slipway::dns)
slipway_fuzz_target(fuzz_dns_forwarder fuzz_dns_forwarder.cpp)
target_link_libraries(fuzz_dns_forwarder PRIVATE slipway::dns)
