# Unit tests for embed/ (slipway::Network).
slipway_unit_test(test_embed embed/network_test.cpp LIBS slipway::embed)
target_include_directories(test_embed PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
