# Fuzz targets for offload fix-up (segment_gso, complete_checksum), the switch around it, and the
# gateway port behind it.
slipway_fuzz_target(fuzz_offload fuzz_offload.cpp)
# The gateway port (backends/userspace): ARP and ICMP echo answers on arbitrary frames.
slipway_fuzz_target(fuzz_gateway fuzz_gateway.cpp)
target_link_libraries(fuzz_gateway PRIVATE slipway::backends)
