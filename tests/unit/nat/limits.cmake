# Per-guest flow admission (caps, half-open, new-flow rate) and table-full eviction.
slipway_unit_test(test_nat_limits nat/limits_test.cpp LIBS slipway::nat)
target_include_directories(test_nat_limits PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
