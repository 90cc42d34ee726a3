# NAT flow-table benchmarks.
slipway_bench(bench_flow_table bench_flow_table.cpp)
target_link_libraries(bench_flow_table PRIVATE slipway::nat Boost::headers TBB::tbb)
