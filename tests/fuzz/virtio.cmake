# fuzz_virtqueue (issue 8).
slipway_fuzz_target(fuzz_virtqueue fuzz_virtqueue.cpp)
