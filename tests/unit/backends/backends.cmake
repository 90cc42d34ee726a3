# Unit tests for backends/ (the userspace gateway).
slipway_unit_test(test_backends backends/gateway_test.cpp LIBS slipway::backends)
target_include_directories(test_backends PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
