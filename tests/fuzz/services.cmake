# Fuzz targets for the gateway's services: DHCP parsing and the server's state machine.
slipway_fuzz_target(fuzz_dhcp fuzz_dhcp.cpp)
target_link_libraries(fuzz_dhcp PRIVATE slipway::dhcp)
