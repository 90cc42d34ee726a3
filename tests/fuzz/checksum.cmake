# Fuzz targets for checksum.
slipway_fuzz_target(fuzz_checksum fuzz_checksum.cpp)
