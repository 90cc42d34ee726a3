# Ring and pool benchmarks.
slipway_bench(bench_ring bench_ring.cpp)
target_link_libraries(bench_ring PRIVATE Boost::headers TBB::tbb)
slipway_bench(bench_pool bench_pool.cpp)
target_link_libraries(bench_pool PRIVATE TBB::tbbmalloc)
