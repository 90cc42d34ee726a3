# Unit tests for the foundation pieces of core (ring, pool, virtio header, log, types).
slipway_unit_test(test_core_ring core/ring_test.cpp)
slipway_unit_test(test_core_misc core/misc_test.cpp)
