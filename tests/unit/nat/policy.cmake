# Egress policy: rule and port-list parsing, first-match-wins, the metadata deny, no allocation.
slipway_unit_test(test_nat_policy nat/policy_test.cpp support/alloc_guard.cpp LIBS slipway::nat)
target_include_directories(test_nat_policy PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
