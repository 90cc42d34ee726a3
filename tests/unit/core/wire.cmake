# Unit tests for core/wire views. The shared allocation guard backs the no-allocation test.
slipway_unit_test(test_wire core/wire_l2_test.cpp core/wire_ip_test.cpp core/wire_l4_test.cpp
                  core/wire_frame_test.cpp support/alloc_guard.cpp)
target_include_directories(test_wire PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                                             ${CMAKE_CURRENT_SOURCE_DIR}/core)
