# IPv4 fragment reassembly and fragmentation: round trips, the reassembly rules, pool exhaustion,
# no allocation on the hot path (with the allocation guard).
slipway_unit_test(test_nat_fragment nat/fragment_test.cpp support/alloc_guard.cpp LIBS slipway::nat)
target_include_directories(test_nat_fragment PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
