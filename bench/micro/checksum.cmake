# Checksum benchmarks.
slipway_bench(bench_checksum bench_checksum.cpp)
