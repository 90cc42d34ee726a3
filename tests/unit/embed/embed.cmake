# Unit tests for embed/ (slipway::Network).
# Label `stress` too: the in-process port test has a VMM thread and the network thread meeting
# through the port's rings, so the tsan preset runs it beside the ring and pool stress tests.
slipway_unit_test(test_embed embed/network_test.cpp LIBS slipway::embed LABELS unit stress)
target_include_directories(test_embed PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
