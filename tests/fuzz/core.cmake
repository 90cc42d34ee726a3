# Fuzz targets for ring and pool.
slipway_fuzz_target(fuzz_ring fuzz_ring.cpp)
