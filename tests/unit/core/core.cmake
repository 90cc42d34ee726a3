# Unit tests for the foundation pieces of core (ring, pool, virtio header, log, types).
slipway_unit_test(test_core_ring core/ring_test.cpp)
slipway_unit_test(test_core_command_channel core/command_channel_test.cpp)
slipway_unit_test(test_core_pool core/pool_test.cpp)
slipway_unit_test(test_core_misc core/misc_test.cpp core/unix_socket_test.cpp)
# Two-thread stress tests: also the only tests the tsan preset runs (label `stress`).
slipway_unit_test(test_core_stress core/stress_test.cpp LABELS unit stress TIMEOUT 300)
# Hot-path guard: replaces operator new for this executable only.
slipway_unit_test(test_core_hot_path core/hot_path_test.cpp support/alloc_guard.cpp)
target_include_directories(test_core_hot_path PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
