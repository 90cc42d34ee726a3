# Fuzz targets for offload fix-up (segment_gso, complete_checksum) and the switch around it.
slipway_fuzz_target(fuzz_offload fuzz_offload.cpp)
