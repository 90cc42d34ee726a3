# Virtqueue unit tests (issue 8).
slipway_unit_test(test_core_virtqueue core/virtqueue_test.cpp)
